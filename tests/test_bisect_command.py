"""The tf2bench bisect command on real git repositories: bad input (one line, exit 2), the exit codes, transcript and
record on fake measurements of a tiny repository, and one real session on a repository made of this repository's
HEAD with a slowdown planted in one commit (slow: it runs the suite a few times)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, fixture
from test_bisect import JITTER, STEP, Line, one_step

from tf2bench import bisect, cli
from tf2bench.analysis import bisection, runs
from tf2bench.analysis.bisection import BAD, GOOD, Run


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
