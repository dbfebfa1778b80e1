"""tf2bench bisect: the search and the calls it makes on fake measurements (which commit is probed, what an ambiguous
probe does, the exit codes), bad input on real git repositories, and one real session on a tiny repository made of
this repository's HEAD with a slowdown planted in one commit (slow: it runs the suite a few times)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, fixture

from tf2bench import bisect, cli
from tf2bench.analysis import bisection, runs
from tf2bench.analysis.bisection import AMBIGUOUS, BAD, CANNOT_TELL, FOUND, GOOD, NOT_REPRODUCIBLE, Run

TF_FUNCTION = ("mnist", "functional", "tf_function")
TF_DATA = ("mnist", "functional", "tf_data")
STEP = math.log(1.2)  # the planted step: +20% time per sample
JITTER = (1.0, 1.01, 0.99, 1.02, 0.98)  # a run's rounds about its level; their median is the level exactly
WOBBLE = 0.02  # run-to-run: runs of a commit alternate +-2% about its level


class Line:
    """A fake commit line 0..n: ``level(i, k)`` is the log time per sample of commit i's k-th run (tf_function; the
    other loop never changes). Records the order in which commits were measured."""

    def __init__(self, n: int, level) -> None:
        self.n, self.level, self.calls = n, level, []

    def __call__(self, i: int) -> Run:
        k = self.calls.count(i)
        self.calls.append(i)
        x = self.level(i, k)
        return Run({TF_FUNCTION: [1e-3 * math.exp(x) * j for j in JITTER], TF_DATA: [2e-3 * j for j in JITTER]})

    def probes(self) -> list[int]:
        return [i for i in dict.fromkeys(self.calls) if i not in (0, self.n)]


def one_step(first_bad: int, step: float = STEP, wobble: float = WOBBLE, middle: int | None = None):
    """Commits from first_bad on are ``step`` slower, runs alternate +-wobble, commit ``middle`` is exactly half way."""
    return lambda i, k: step / 2 if i == middle else (step if i >= first_bad else 0.0) + (wobble if k % 2 else -wobble)


def search(line: Line, **kw) -> bisection.Outcome:
    said: list[str] = []
    kw = {"ends_runs": 4, "max_runs": 3, **kw}
    out = bisection.Bisection(line.n, line, say=said.append, **kw).search()
    out.said = said
    return out


def test_finds_the_step_probing_the_binary_search_path():
    line = Line(16, one_step(11))
    out = search(line)
    assert (out.status, out.hi, out.lo) == (FOUND, 11, 10)
    assert line.probes() == [8, 12, 10, 11]  # halving 0..16 towards 11
    assert [looks[-1].verdict for _, looks in out.probes] == [GOOD, BAD, GOOD, BAD]
    assert line.calls[:8] == [0, 16] * 4  # the ends first, interleaved
    assert out.keys == [TF_FUNCTION]  # tf_data never changed: not part of the score
    assert out.slowdown == pytest.approx(STEP, abs=2 * WOBBLE)
    assert out.p_value < 0.01


@pytest.mark.parametrize("first_bad", range(1, 17))
def test_every_position_is_found_in_log2_probes(first_bad):
    line = Line(16, one_step(first_bad))
    out = search(line)
    assert (out.status, out.hi) == (FOUND, first_bad)
    assert len(line.probes()) <= 4
    assert out.looks == len(line.probes())


def test_no_step_between_the_ends_is_not_reproducible():
    line = Line(16, lambda i, k: 0.05 if k % 2 else -0.05)
    out = search(line)
    assert out.status == NOT_REPRODUCIBLE
    assert not out.keys
    assert "do not differ" in out.reason
    assert line.probes() == []
    # what these runs could have found: (t(0.995, 6 df) 3.707 + t(0.8, 6 df) 0.906) x sd 5.77% x sqrt(1/4 + 1/4);
    # tf_data never scatters: the threshold (10%) is the smallest step it counts
    assert [round(s.detects_pct, 1) for s in out.steps] == [20.7, 10.0]
    assert "detect a step from 10%" in out.reason


def test_a_step_below_the_threshold_is_not_reproducible():
    line = Line(4, one_step(2, step=math.log(1.08)))  # +8%: significant, but the gate counts > 10% only
    out = search(line)
    (s,) = [s for s in out.steps if s.key == TF_FUNCTION]
    assert s.p_runs < 0.01
    assert not s.stepped
    assert out.status == NOT_REPRODUCIBLE


def test_a_probe_between_the_levels_is_measured_again_then_cannot_tell():
    line = Line(16, one_step(9, middle=8))  # commit 8 is half way: both ends' tests reject, run after run
    out = search(line, max_runs=3)
    assert out.status == CANNOT_TELL
    assert (out.lo, out.hi) == (0, 16)
    assert line.calls.count(8) == 3  # the stated limit, then stop: no guess
    assert line.probes() == [8]
    assert all(v.verdict == AMBIGUOUS for v in out.probes[0][1])
    assert "between the two levels" in out.reason


def test_a_probe_too_close_to_either_end_cannot_tell():
    # the ends scatter +-5% about a 28% step: a probe half way is within reach of both; two runs do not settle it
    line = Line(16, one_step(16, step=0.25, wobble=0.05, middle=8))
    out = search(line, max_runs=2)
    assert [s.stepped for s in out.steps] == [True, False]
    assert out.status == CANNOT_TELL
    assert line.calls.count(8) == 2
    assert "near neither (position 0.50" in out.reason
    assert all(v.p_slower >= 0.01 and v.p_faster >= 0.01 for v in out.probes[0][1])


def test_an_ambiguous_first_run_is_resolved_by_measuring_again():
    # commit 8's first run lands half way (both ends' tests reject), its next ones at BAD's level
    line = Line(16, lambda i, k: STEP / 2 if (i, k) == (8, 0) else one_step(5)(i, k))
    out = search(line)
    first = out.probes[0]
    assert first[0] == 8
    assert [v.verdict for v in first[1]] == [AMBIGUOUS, BAD]
    assert (out.status, out.hi) == (FOUND, 5)


def test_classify_reads_both_ends():
    def runs_at(level: float, n: int = 4) -> list[Run]:
        line = Line(1, lambda i, k: level + (WOBBLE if k % 2 else -WOBBLE) * (n > 1))
        return [line(0) for _ in range(n)]

    good, bad, keys = runs_at(0.0), runs_at(STEP), [TF_FUNCTION]
    call = lambda x, sd=WOBBLE: bisection.classify(runs_at(x, 1), good, bad, sd, 6, keys, 0.01)  # noqa: E731
    assert call(0.0).verdict == GOOD
    assert call(0.0).position == pytest.approx(0.0, abs=1e-9)
    assert call(STEP).verdict == BAD
    assert call(STEP).position == pytest.approx(1.0)
    assert call(STEP).vs_good == pytest.approx(STEP)  # the ends' means: GOOD's runs wobble about 0
    # the drift seen on a real run: a probe of BAD's code 2.8% faster than BAD's runs (significantly so), step 19%
    drifted = bisection.classify(runs_at(STEP - math.log(1.028), 1) * 3, good, bad, 0.012, 8, keys, 0.01)  # 3 runs
    assert drifted.p_faster < 0.01
    assert drifted.verdict == BAD
    # half way: significant against both ends, near neither
    assert call(STEP / 2).p_slower < 0.01
    assert call(STEP / 2).p_faster < 0.01
    assert call(STEP / 2).verdict == AMBIGUOUS
    # a load burst that slowed a good commit's run two thirds of the way (seen: position 0.68): measured again
    assert call(0.68 * STEP).verdict == AMBIGUOUS
    assert call(0.0, sd=0.5).verdict == AMBIGUOUS  # too noisy to be slower or faster than anything
    assert call(STEP * (1 - bisection.MARGIN)).verdict == BAD  # the margin: within a quarter step of BAD's level


def test_a_probe_that_cannot_be_measured_stops_the_search():
    def level(i, k):
        if i == 8:
            raise bisection.MeasureError("pytest exited 4 and saved no run")
        return one_step(3)(i, k)

    out = search(Line(16, level))
    assert out.status == CANNOT_TELL
    assert "could not be measured: pytest exited 4" in out.reason


# ---- the command, on real git repositories --------------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    ident = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    return subprocess.run(["git", "-C", str(repo), *ident, *args], check=True, capture_output=True, text=True).stdout


def tiny_repo(path: Path, commits: int) -> list[str]:
    """A git repository with a bench/ folder and ``commits`` commits; their hashes, oldest first."""
    (path / "bench").mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    shas = []
    for k in range(commits):
        (path / "bench" / "notes.txt").write_text(f"commit {k}\n")
        git(path, "add", "-A")
        git(path, "commit", "-qm", f"commit {k}")
        shas.append(git(path, "rev-parse", "HEAD").strip())
    return shas


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "repo"
    return path, tiny_repo(path, 4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["HEAD~2", "HEAD"], "uncommitted changes (1 file(s)) and BAD is its checked-out commit"),
        (["HEAD~2", "nope"], "unknown revision 'nope' (BAD)"),
        (["nope", "HEAD"], "unknown revision 'nope' (GOOD)"),
        (["HEAD", "HEAD~2"], "is not an ancestor of BAD"),
        (["HEAD", "HEAD"], "the same commit"),
        (["HEAD~3", "HEAD~1", "--suite", "benchmarks"], "has no benchmarks/: give --suite"),
        (["HEAD~3", "HEAD~1", "--", "--benchmark-storage=x"], "leave out --benchmark-storage=x"),
        (["HEAD~3", "HEAD~1", "--ends-runs", "1"], "--ends-runs must be >= 2"),
        (["HEAD~3", "HEAD~1", "--max-runs", "0"], "--max-runs must be a positive integer"),
        (["HEAD~3", "HEAD~1", "--threshold", "-5"], "--threshold must be a percentage between 0 and 1000"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(repo, tmp_path, capsys, argv, message):
    path, _ = repo
    (path / "bench" / "notes.txt").write_text("an uncommitted edit\n")  # matters only where an end is checked out
    code = cli.main(["bisect", "--repo", str(path), "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()  # nothing measured, nothing written


def test_not_a_repository_is_bad_input(tmp_path, capsys):
    assert cli.main(["bisect", "HEAD~1", "HEAD", "--repo", str(tmp_path)]) == 2
    assert "is not a git repository" in capsys.readouterr().err
    assert cli.main(["bisect", "HEAD~1", "HEAD", "--repo", str(tmp_path / "missing")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_merged_good_is_bad_input(tmp_path, capsys):
    path = tmp_path / "repo"
    shas = tiny_repo(path, 2)
    git(path, "checkout", "-qb", "side", shas[0])
    (path / "side.txt").write_text("x")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "side")
    side = git(path, "rev-parse", "HEAD").strip()
    git(path, "checkout", "-q", "main")
    git(path, "merge", "-q", "--no-ff", "-m", "merge", "side")
    assert cli.main(["bisect", side, "main", "--repo", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "not on BAD's first-parent line" in capsys.readouterr().err


def fake_measurer(n: int, first_bad: int, step: float, middle: int | None = None):
    """Measurer.__call__ writing real run files (copies of fixture 0001, rounds set by the fake line)."""
    doc = json.loads(fixture("0001").read_text())
    line = Line(n, one_step(first_bad, step, middle=middle))

    def measure(self, i: int) -> Run:
        k = line.calls.count(i)
        line.calls.append(i)
        x = line.level(i, k)
        d = json.loads(json.dumps(doc))
        for b in d["benchmarks"]:
            b["stats"]["data"] = [s * math.exp(x) * j for s, j in zip(b["stats"]["data"] * 3, JITTER, strict=False)]
        path = self.folder(i) / "runs" / "Linux" / f"{k + 1:04d}_{self.line[i].sha}_20261201_10000{k}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(d))
        return Run(bisection.loop_rounds(runs.load(path, True)), path)

    return measure, line


@pytest.mark.parametrize(
    ("step", "middle", "code", "status"),
    [(STEP, None, 0, "found"), (0.0, None, 1, "not reproducible"), (STEP, 2, 3, "cannot tell")],
)
def test_exit_codes_transcript_and_record(tmp_path, monkeypatch, capsys, step, middle, code, status):
    path = tmp_path / "repo"
    shas = tiny_repo(path, 6)  # GOOD = commit 0, BAD = commit 5; the step at commit 3
    measure, line = fake_measurer(5, 3, step, middle)
    monkeypatch.setattr(bisect.Measurer, "__call__", measure)
    before = git(path, "status", "--porcelain") + git(path, "rev-parse", "HEAD")
    out = tmp_path / "out"
    assert cli.main(["bisect", shas[0], shas[-1], "--repo", str(path), "--out", str(out), "--", "-k", "x"]) == code
    printed = capsys.readouterr().out
    (session,) = out.iterdir()
    record = json.loads((session / "bisect.json").read_text())
    assert record["status"] == status
    assert record["pytest_args"] == ["-k", "x"]
    assert (session / "transcript.txt").read_text() == printed
    assert "assumes one step, as asv's find does" in printed
    assert git(path, "status", "--porcelain") + git(path, "rev-parse", "HEAD") == before  # the tree untouched
    if status == "found":
        assert line.probes() == [2, 3]
        assert record["first_bad"]["sha"] == shas[3]
        assert f'first bad commit: {shas[3]} "commit 3"' in printed
        assert "explain cifar100/functional/" in printed
        assert record["slowdown_pct"] == pytest.approx(20.0, abs=6.0)
        assert record["p_value"] < 0.01
    if status == "cannot tell":
        assert "the first bad commit is one of these 5" in printed
        assert line.calls.count(2) == 4
    if status == "not reproducible":
        assert line.probes() == []
        assert "not reproducible" in printed


# ---- one real session -----------------------------------------------------------------------------------------------

ANCHOR = "                loss = self.step(nest.take(x, slice(i, i + b)), y[i : i + b])\n"
SLEEP_S = 0.1  # planted per tf_function step: an mnist smoke step takes ~30-80 ms here, so the loop is 2-4x slower


@pytest.mark.slow
def test_bisect_finds_a_planted_slowdown_in_a_real_repository(tmp_path):
    """HEAD's tree in a new repository, four commits on it, the second of which sleeps in tf_function's step: bisect
    must measure each commit's own code (the installed tf2bench has no sleep) and name that commit."""
    repo = tmp_path / "repo"
    repo.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(repo)], input=archive, check=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "HEAD of tf2bench")
    compiled = repo / "tf2bench" / "loops" / "compiled.py"
    assert compiled.read_text().count(ANCHOR) == 1, "tf_function's step line moved: update ANCHOR"
    for k, subject in enumerate(["docs: a", "planted: tf_function sleeps after each step", "docs: b", "docs: c"]):
        if subject.startswith("planted"):
            plant = ANCHOR + f"                __import__('time').sleep({SLEEP_S})  # planted\n"
            compiled.write_text(compiled.read_text().replace(ANCHOR, plant))
        else:
            (repo / "docs" / "notes.md").write_text(f"edit {k}\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", subject)
    shas = git(repo, "rev-list", "--reverse", "HEAD").split()
    out = tmp_path / "out"
    selection = ["--workload", "mnist", "--api", "functional", "--loop", "tf_function", "--preset", "smoke"]
    cmd = [sys.executable, "-m", "tf2bench.cli", "bisect", shas[0], shas[-1], "--repo", str(repo), "--out", str(out)]
    cmd += [
        "--ends-runs",
        "3",
        "--max-runs",
        "3",
        "--",
        *selection,
        "--steps",
        "4",
        "--rounds",
        "3",
        "-k",
        "test_train",
    ]
    done = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900, env={**os.environ})
    assert done.returncode == 0, done.stdout + done.stderr
    (session,) = out.iterdir()
    record = json.loads((session / "bisect.json").read_text())
    assert record["first_bad"]["sha"] == shas[2], done.stdout
    assert [p["index"] for p in record["probes"]] == [2, 1]
    assert [p["looks"][-1]["verdict"] for p in record["probes"]] == [BAD, GOOD]
    assert record["slowdown_pct"] > 50, done.stdout
    assert record["p_value"] < 0.01
    for i in (0, 1, 2, 4):  # every measured commit kept its runs, its pytest output and its traces
        (folder,) = session.glob(f"{i:03d}-{shas[i][:7]}")
        assert runs.saved_runs(folder / "runs")
        assert list(folder.glob("pytest-*.log"))
        assert list((folder / "traces").rglob("*.xplane.pb"))
    (expl,) = record["explanations"]
    assert expl["status"] == "explained", done.stdout
    # the sleep is untraced host time, SLEEP_S per step in the profiled window too (half of it: a loaded machine)
    idle = {p["part"]: p["delta_ms"] for p in expl["parts"]}["other_ms"]
    assert idle > 0.5 * 1000 * SLEEP_S, done.stdout
    assert git(repo, "status", "--porcelain") == ""
    assert len(git(repo, "worktree", "list").splitlines()) == 1
