"""tf2bench report: real runs saved by the suite (tests/fixtures/benchmarks) and hand-edited copies of them.

Fixtures (smoke preset, cifar100 functional on synthetic data unless noted):
0001, 0002: an A/A pair, --steps 10 --repeat 3; 0003: mnist (embedded real digits) --repeat 2 --seeds 2.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, STORAGE, edited, fixture

from tf2bench.analysis import render, report, runs
from tf2bench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, BadInputError


def cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the CLI as a user does."""
    env = {**os.environ, "PYTHONWARNINGS": "error", "MPLBACKEND": "Agg"}
    return subprocess.run(
        [sys.executable, "-m", "tf2bench.cli", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_report_of_a_real_run_writes_md_csv_html_with_charts_and_tutorial_as_expected(tmp_path):
    proc = cli("report", "0001", "--storage", str(STORAGE), "--out", str(tmp_path))
    assert proc.returncode == EXIT_OK, proc.stderr
    out_dir = tmp_path / fixture("0001").stem
    assert {p.name for p in out_dir.iterdir()} == {
        "report.md",
        "report.csv",
        "report.html",
        "speedup.png",
        "throughput.png",
        "accuracy.png",
        "step_time.png",
        "sources.json",
    }
    assert "expected failure" in proc.stdout
    assert "expected: the tutorial's loop trains on 1/32 of the samples" in proc.stdout
    html = (out_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4  # one chart, history.png, only with several runs
    assert (out_dir / "throughput.png").read_bytes()[:4] == b"\x89PNG"
    md = (out_dir / "report.md").read_text()
    assert "| tutorial |" in md
    assert "![throughput.png](throughput.png)" in md
    import pandas as pd

    csv = pd.read_csv(out_dir / "report.csv")
    assert list(csv["loop"]) == ["fit", "eager", "tutorial", "tf_function", "tf_data"]
    for col in ("samples_per_sec", "cv", "step_time_ms", "first_step_s", "speedup_vs_fit", "test_accuracy"):
        assert csv[col].notna().all(), col
    assert {"acc_diff_pp", "verdict", "dataset", "device"} <= set(csv.columns)
    assert csv.set_index("loop").loc["fit", "speedup_vs_fit"] == 1.0


def test_default_is_the_newest_run_and_no_tensorflow_is_imported(tmp_path):
    code = (
        "import sys; from tf2bench.cli import main; "
        f"rc = main(['report', '--storage', {str(STORAGE)!r}, '--out', {str(tmp_path)!r}]); "
        "assert 'tensorflow' not in sys.modules, 'the CLI imported TensorFlow'; sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == EXIT_OK, proc.stderr
    newest = max(STORAGE.glob("*/*.json"), key=lambda p: p.name.split("_")[2:4])  # name timestamp
    assert [p.name for p in tmp_path.iterdir()] == [newest.stem]


def test_repeats_and_seeds_are_pooled_and_widen_the_tolerance():
    (run,) = runs.load_many([str(fixture("0003"))])[0]
    df = report.build([run]).set_index("loop")
    fit = df.loc["fit"]
    assert (fit["benchmarks"], fit["seeds"], fit["repeats"], fit["rounds"]) == (4, 2, 2, 8)
    assert fit["test_accuracy_std"] > 0
    # two seeds: tolerance = max(1 pp, 3 x fit's seed-to-seed std)
    assert df.loc["eager", "tolerance_pp"] == pytest.approx(max(1.0, 300 * fit["test_accuracy_std"]))
    assert df.loc["eager", "verdict"] == report.EQUIVALENT
    assert df.loc["tutorial", "verdict"] == report.EXPECTED
    assert report.failures(df.reset_index()) == []
    assert "±" in render.summary(df.reset_index()).set_index("loop").loc["fit", "accuracy"]


def _shift_accuracy(loop: str, delta: float):
    def edit(doc):
        for bench in doc["benchmarks"]:
            if bench["extra_info"]["loop"] == loop:
                bench["extra_info"]["test_accuracy"] += delta

    return edit


def test_a_diverging_loop_fails_the_report_and_says_by_how_much(tmp_path, capsys):
    from tf2bench.cli import main

    diverged = edited(fixture("0001"), tmp_path / "runs", _shift_accuracy("eager", -0.05))
    assert main(["report", str(diverged), "--out", str(tmp_path / "reports")]) == EXIT_FAILED
    out = capsys.readouterr().out
    assert "FAILED: eager is not equivalent to fit on cifar100/functional: accuracy 0.0203 vs 0.0703" in out
    # a run saved before per-sample records: the quality tier holds the accuracy difference to the margin alone
    assert "different quality: -5.0 pp vs fit (no per-sample record: not paired) (margin 1.0 pp" in out
    assert [line for line in out.splitlines() if line.startswith("FAILED")] == [
        line for line in out.splitlines() if line.startswith("FAILED: eager")
    ]  # tutorial fails too, but as expected: not a FAILED line
    assert "expected failure" in out


def test_tolerance_option_decides_equivalence(tmp_path):
    run = runs.load(edited(fixture("0001"), tmp_path, _shift_accuracy("tf_data", 0.005)))
    assert report.failures(report.build([run])) == []
    (line,) = report.failures(report.build([run], tolerance_pp=0.25))
    assert line.startswith("tf_data is not equivalent")
    assert "+0.5 pp" in line
    with pytest.raises(BadInputError, match="--tolerance"):
        report.build([run], tolerance_pp=-1)


def test_bad_files_are_named_and_the_good_ones_still_reported(tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.json").write_text(fixture("0001").read_text()[:500])
    (bad / "empty.json").write_text("")
    (bad / "other.json").write_text(json.dumps({"created": 1.0, "tests": [], "summary": {"passed": 3}}))
    foreign = edited(
        fixture("0001"), bad / "plain", lambda d: [b.__setitem__("extra_info", {}) for b in d["benchmarks"]]
    )
    no_rounds = edited(fixture("0002"), bad / "norounds", lambda d: [b["stats"].pop("data") for b in d["benchmarks"]])
    proc = cli(
        "report",
        str(fixture("0001")),
        *(str(bad / n) for n in ("corrupt.json", "empty.json", "other.json")),
        str(foreign),
        str(no_rounds),
        str(bad / "missing.json"),
        "0042",
        "--storage",
        str(STORAGE),
        "--out",
        str(tmp_path / "reports"),
    )
    assert proc.returncode == EXIT_BAD_INPUT
    *errors, last = proc.stderr.strip().splitlines()
    assert len(errors) == 6, proc.stderr
    assert "6 input(s) could not be used" in last
    assert "covers the other 2 run(s)" in last
    expect = {
        "corrupt.json": "not valid JSON",
        "empty.json": "empty file",
        "other.json": "not a pytest-benchmark run",
        "missing.json": "no such file",
        str(foreign): "no tf2bench record in extra_info",
        "0042": "valid run numbers: 0001, 0002, 0003",
    }
    for name, problem in expect.items():
        assert any(name in e and problem in e and e.startswith("tf2bench: error: ") for e in errors), (name, errors)
    # the good run and the run without round data are both in the table; the latter with a note
    assert proc.stdout.count("tutorial") >= 2
    assert f"{no_rounds}: no round data" in proc.stdout
    assert (tmp_path / "reports").is_dir()


def test_reports_of_the_same_run_may_be_regenerated_but_nothing_else_is_overwritten(tmp_path):
    out = tmp_path / "reports"
    run = runs.load(fixture("0001"))
    first = render.write(report.build([run]), [run], out)
    again = render.write(report.build([run]), [run], out)
    assert first.directory == again.directory
    assert not [p for p in first.directory.iterdir() if p.name.endswith(".tmp")]
    twin = runs.load(edited(fixture("0001"), tmp_path / "elsewhere", lambda d: None))  # same name, other file
    with pytest.raises(BadInputError, match="not made from these runs; not overwriting"):
        render.write(report.build([twin]), [twin], out)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--tolerance", "abc"], "--tolerance"),
        (["frobnicate"], "invalid choice"),
        (["report", "--storage", "/nonexistent"], "no saved runs here"),
    ],
)
def test_bad_arguments_exit_2_with_one_clear_line(args, message, capsys):
    from tf2bench.cli import main

    assert main(args) == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err


def test_the_report_names_the_fastest_equivalent_loop_per_workload():
    df = report.build([runs.load(fixture("0001"))])
    (line,) = render.fastest_equivalent(df)
    ok = df[df["verdict"] == report.EQUIVALENT]
    best = ok.groupby("loop")["speedup_vs_fit"].median().idxmax()
    assert line.startswith(f"fastest equivalent on cifar100: {best} ")
    assert "x fit, weights" in line
