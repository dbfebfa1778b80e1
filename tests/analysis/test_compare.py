"""tf2bench compare: the regression gate on real runs (tests/fixtures/benchmarks) and edited copies.

0001/0002 are an A/A pair (same code, consecutive runs, 2 rounds x 3 repeats each); 0003 is another workload.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, STORAGE, committed, edited, fixture

from tf2bench.analysis import compare, runs
from tf2bench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_MISSING_BASELINE, EXIT_OK, BadInputError


def slowed(factor: float, loops: tuple[str, ...] | None = None):
    """Round times x factor (what a slower build records), for all or some loops."""

    def edit(doc):
        for bench in doc["benchmarks"]:
            if loops is None or bench["extra_info"]["loop"] in loops:
                bench["stats"]["data"] = [t * factor for t in bench["stats"]["data"]]

    return edit


def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-m", "tf2bench.cli", "compare", "--storage", str(STORAGE), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    """The CLI in-process (same code path as the console script, without paying for a new interpreter)."""
    from tf2bench.cli import main

    rc = main(["compare", "--storage", str(STORAGE), *args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def verdicts(result: compare.Comparison) -> dict[str, str]:
    return dict(zip(result.table["benchmark"].str.split("/").str[-1], result.table["verdict"], strict=True))


def test_an_aa_pair_of_real_runs_is_not_flagged():
    proc = cli("0001", "0002")
    assert proc.returncode == EXIT_OK, proc.stdout + proc.stderr
    assert "no regression" in proc.stdout
    for column in ("baseline", "current", "time change", "p-value", "verdict"):
        assert column in proc.stdout
    assert "6/6" in proc.stdout  # 2 rounds x 3 repeats pooled per side
    normalized = compare.compare(runs.load(fixture("0001")), runs.load(fixture("0002")), normalize=True)
    assert normalized.regressions.empty


def test_current_defaults_to_the_newest_run(capsys):
    rc, out, _ = run_main(capsys, "0001")
    assert rc == EXIT_OK
    assert f"current  {committed('0002')}" in out  # the file in --storage itself (fixture() is an upgraded copy)


def test_a_slowed_down_copy_is_flagged_exit_1(tmp_path):
    # the rounds' test (--no-history): the fixture storage holds too few runs for a run-to-run estimate, and a cold
    # start is not gated by default (tests/analysis/test_cold_start.py)
    slow = edited(fixture("0001"), tmp_path, slowed(2.0))
    proc = cli("0001", str(slow), "--no-history")
    assert proc.returncode == EXIT_FAILED, proc.stdout + proc.stderr
    for loop in ("fit", "eager", "tf_function", "tf_data"):
        assert f"REGRESSION: cifar100/functional/{loop} is 100.0% slower" in proc.stdout
    # tutorial's rounds vary by +-70% (one sample per step): even twice as slow is not significant there
    assert "cifar100/functional/tutorial     6/6" in proc.stdout
    assert "slower, not significant" in proc.stdout
    assert "+100.0%" in proc.stdout


def test_a_slowdown_within_the_noise_is_not_a_regression(tmp_path):
    # These rounds vary by about +-25% between repeats: 30% slower cannot reach p < 0.01 with 6 vs 6 rounds.
    result = compare.compare(runs.load(fixture("0001")), runs.load(edited(fixture("0001"), tmp_path, slowed(1.3))))
    assert set(verdicts(result).values()) == {compare.SLOWER_NOISE}
    assert (result.table["change_pct"].round(1) == 30.0).all()
    # ... and below the threshold nothing is even tested
    relaxed = compare.compare(runs.load(fixture("0001")), runs.load(edited(fixture("0001"), tmp_path, slowed(1.3))), 50)
    assert set(verdicts(relaxed).values()) == {compare.OK}


def test_normalize_ignores_a_uniformly_slower_machine_but_catches_one_slower_loop(tmp_path):
    base = runs.load(fixture("0001"))
    everything = runs.load(edited(fixture("0001"), tmp_path / "all", slowed(2.0)))
    assert compare.compare(base, everything, normalize=True).regressions.empty
    one = runs.load(edited(fixture("0001"), tmp_path / "one", slowed(2.0, ("tf_function",))))
    result = compare.compare(base, one, normalize=True)
    assert verdicts(result)["tf_function"] == compare.REGRESSION
    assert verdicts(result)["fit"] == compare.REFERENCE
    assert list(result.regressions["benchmark"]) == ["cifar100/functional/tf_function"]


def test_too_few_rounds_says_so_and_what_to_do(tmp_path, capsys):
    def three_rounds_one_repeat(doc):
        doc["benchmarks"] = [b for b in doc["benchmarks"] if b["extra_info"]["repeat"] == 0]
        for b in doc["benchmarks"]:
            b["stats"]["data"] = (b["stats"]["data"] * 2)[:3]

    short = edited(fixture("0001"), tmp_path / "base", three_rounds_one_repeat)
    slow = edited(short, tmp_path / "slow", slowed(2.0))
    rc, out, _ = run_main(capsys, str(short), str(slow))
    assert rc == EXIT_OK
    assert "slower, too few rounds" in out
    assert "3 vs 3 rounds the smallest p a Mann-Whitney test can give is 0.050" in out
    assert "NOT counted as regressions" in out
    assert "--repeat" in out
    assert compare.min_p_value(3, 3) == pytest.approx(0.05)
    assert compare.min_p_value(5, 5) < compare.ALPHA < compare.min_p_value(4, 4)


def test_missing_baseline_is_exit_3_and_missing_current_exit_2(tmp_path, capsys):
    proc = cli(str(tmp_path / "baseline.json"), "0002")
    assert proc.returncode == EXIT_MISSING_BASELINE
    assert "baseline.json: no such file" in proc.stderr
    assert run_main(capsys, "0009", "0002")[0] == EXIT_MISSING_BASELINE
    rc, _, err = run_main(capsys, "0001", str(tmp_path / "current.json"))
    assert rc == EXIT_BAD_INPUT
    assert "current.json: no such file" in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "empty file"),
        ('{"benchmarks": [', "not valid JSON"),
        ('{"created": 1.0, "tests": []}', "not a pytest-benchmark run"),
        ("NO_ROUNDS", "no round data (stats.data)"),
    ],
)
def test_unusable_files_exit_2_naming_the_file(tmp_path, content, problem, capsys):
    from tf2bench.cli import main

    if content == "NO_ROUNDS":
        path = edited(fixture("0002"), tmp_path, lambda d: [b["stats"].pop("data") for b in d["benchmarks"]])
    else:
        path = tmp_path / "run.json"
        path.write_text(content)
    for args in ([str(path), "0002"], ["0001", str(path)]):  # as baseline, then as current
        assert main(["compare", "--storage", str(STORAGE), *args]) == EXIT_BAD_INPUT
        (line,) = capsys.readouterr().err.strip().splitlines()
        assert line.startswith("tf2bench: error: ")
        assert str(path) in line
        assert problem in line


def test_no_common_benchmarks_is_bad_input(capsys):
    rc, _, err = run_main(capsys, "0001", "0003")
    assert rc == EXIT_BAD_INPUT
    assert "no common benchmarks" in err
    assert "mnist/functional/fit" in err


def test_threshold_must_be_a_positive_percentage():
    base = runs.load(fixture("0001"))
    with pytest.raises(BadInputError, match="--threshold"):
        compare.compare(base, base, threshold_pct=0)
    from tf2bench.cli import main

    assert main(["compare", "0001", "0002", "--threshold", "ten"]) == EXIT_BAD_INPUT


def three_apis(burst: float, api_slowed: str = "subclassing"):
    """The fixture's benchmarks as three APIs of each loop (copies), with a load burst on one API's block."""
    import copy

    def edit(doc):
        out = []
        for bench in doc["benchmarks"]:
            for api in ("sequential", "functional", "subclassing"):
                b = copy.deepcopy(bench)
                b["extra_info"]["api"] = api
                b["name"] = b["name"].replace("functional", api)
                if api == api_slowed and b["extra_info"]["loop"] != "fit":
                    b["stats"]["data"] = [t * burst for t in b["stats"]["data"]]
                out.append(b)
        doc["benchmarks"] = out

    return edit


def test_a_burst_on_one_api_is_spread_by_the_loop_gate_but_a_slower_loop_is_not(tmp_path):
    base = runs.load(edited(fixture("0001"), tmp_path / "base", three_apis(1.0)))
    burst = runs.load(edited(fixture("0001"), tmp_path / "burst", three_apis(1.5)))
    per_benchmark = compare.compare(base, burst, by="benchmark")
    assert "cifar100/subclassing/tf_data" in list(per_benchmark.regressions["benchmark"])  # taken for a regression
    per_loop = compare.compare(base, burst)
    assert per_loop.regressions.empty  # 1 of 3 APIs: the pooled median does not move
    assert set(per_loop.table["benchmark"]) >= {"cifar100/*/tf_data", "cifar100/*/fit"}
    assert set(per_loop.table["rounds"]) == {"18/18"}  # 3 APIs x 2 rounds x 3 repeats
    assert any("gated per loop" in n for n in per_loop.notes)
    slower = runs.load(edited(fixture("0001"), tmp_path / "slow", lambda d: (three_apis(1.0)(d), slowed(2.0)(d))))
    assert "cifar100/*/tf_data" in list(compare.compare(base, slower).regressions["benchmark"])
    with pytest.raises(BadInputError, match="unknown --by 'api'; valid: loop, benchmark"):
        compare.compare(base, burst, by="api")


def _machine(isa: str, threads: int):
    def edit(doc):
        doc["machine_info"].setdefault("tf2bench", {}).update(
            {"isa": isa, "onednn_opts": "on (default)", "intra_op_threads": threads, "inter_op_threads": 0}
        )

    return edit


def test_compare_warns_when_the_runs_differ_in_what_the_figures_depend_on(tmp_path):
    """Another ISA (AVX2 vs AMX: other oneDNN kernels) or thread count changes the figures as much as code does."""
    a = runs.load(edited(fixture("0001"), tmp_path / "a", _machine("avx2 fma", 0)), True)
    b = runs.load(edited(fixture("0002"), tmp_path / "b", _machine("avx2 fma avx512f amx_bf16", 2)), True)
    (warning,) = [n for n in compare.compare(a, b).notes if n.startswith("WARNING")]
    assert "isa: 'avx2 fma' -> 'avx2 fma avx512f amx_bf16'" in warning
    assert "intra_op_threads: 0 -> 2" in warning
    same = runs.load(edited(fixture("0002"), tmp_path / "c", _machine("avx2 fma", 0)), True)
    assert not [n for n in compare.compare(a, same).notes if n.startswith("WARNING")]
