"""The gate's run-to-run test (tf2bench.analysis.noise): the same slowdown is a regression after quiet runs and
"within run-to-run noise" after scattered ones; the power figure and the repeat hint follow from the spread.

Runs are real fixture runs (tests/fixtures/benchmarks 0001, 6 rounds per benchmark) with every round of a run
scaled by one factor: what a process that landed on a faster or slower state of the machine records.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from conftest import run_series

from tf2bench.analysis import compare, noise, runs
from tf2bench.cli import main

TF_DATA = "cifar100/functional/tf_data"


def series(folder, factors, start=1, commit=None):
    """Runs numbered start.. whose rounds are fixture 0001's x factor (one factor per run), oldest first."""
    return run_series(folder, len(factors), lambda k, b: [t * factors[k] for t in b["stats"]["data"]], commit, start)


def quiet(n, sd, seed=0):
    """n run-level factors with log-normal scatter sd (the run-to-run noise of a machine)."""
    return list(np.exp(np.random.default_rng(seed).normal(0.0, sd, n)))


def test_the_estimate_recovers_the_run_to_run_sd_and_ignores_one_earlier_step():
    rng = np.random.default_rng(1)
    levels = [{("w", "a", "v"): float(x)} for x in rng.normal(0.0, 0.05, 40)]
    est = noise.estimate(levels)[("w", "a", "v")]
    # 39 differences: the MSSD's relative error is ~ 1/sqrt(2 x 26 effective df) ~ 14%; 3 sigma = 42%
    assert 0.05 * 0.58 < est.sd < 0.05 * 1.42
    stepped = [{k: v + (0.5 if i >= 20 else 0.0) for k, v in lv.items()} for i, lv in enumerate(levels)]
    # one step of 10 sd enters one difference: it adds 0.5^2 / (2 x 39) = 0.0032 to the MSSD's variance
    # (0.0025 without it), sd ~1.6x; the sample SD of the levels would grow ~5x (variance 0.0625 + 0.0025)
    assert noise.estimate(stepped)[("w", "a", "v")].sd < 2.0 * est.sd
    assert np.std([lv[("w", "a", "v")] for lv in stepped]) > 4.0 * est.sd
    assert noise.estimate(levels[:2]) == {}  # below MIN_RUNS: no estimate


def test_the_same_slowdown_is_a_regression_after_quiet_runs_but_not_after_scattered_ones(tmp_path):
    calm = series(tmp_path / "calm", [*quiet(8, 0.01), 1.0, 1.8])
    rough = series(tmp_path / "rough", [*quiet(8, 0.3, seed=2), 1.0, 1.8])
    for history, verdict in ((calm[:-1], compare.REGRESSION), (rough[:-1], compare.RUN_NOISE[True])):
        cmp = compare.compare(history[-1], calm[-1] if verdict == compare.REGRESSION else rough[-1], history=history)
        row = cmp.table.set_index("benchmark").loc[TF_DATA]
        assert row.change_pct == pytest.approx(80.0)
        assert row.p_value < compare.ALPHA  # the rounds alone call it a regression either way
        assert row.verdict == verdict, cmp.notes
        assert not math.isnan(row.run_p)
    # the rounds-only gate (no history) cannot tell the two apart
    assert set(compare.compare(rough[-2], rough[-1]).regressions["benchmark"]) >= {TF_DATA}


def test_detects_is_the_slowdown_the_gate_then_catches(tmp_path):
    history = series(tmp_path, quiet(10, 0.02, seed=3))
    cmp = compare.compare(history[-2], history[-1], history=history[:-1])
    detects = cmp.table.set_index("benchmark")["detects_pct"]
    assert (detects >= compare.DEFAULT_THRESHOLD_PCT).all()
    worst = float(detects.max())
    slow = series(tmp_path / "slow", [1.5 * (1 + worst / 100)], start=11)[0]  # well beyond every loop's figure
    flagged = compare.compare(history[-1], slow, history=history)
    assert set(flagged.regressions["benchmark"]) == set(flagged.table["benchmark"])
    noisy = series(tmp_path / "noisy", quiet(10, 0.2, seed=4))
    louder = compare.compare(noisy[-2], noisy[-1], history=noisy[:-1]).table.set_index("benchmark")["detects_pct"]
    assert (louder > detects).all()  # more run-to-run scatter, a larger slowdown needed


def test_repeats_for_scales_with_the_square_of_the_ratio():
    # within-run detectable 20% at 3 repeats; 5% needs (ln 1.2 / ln 1.05)^2 = 13.6x the rounds
    assert noise.repeats_for(0.05, 0.20, 3) == math.ceil(3 * (math.log(1.2) / math.log(1.05)) ** 2)
    assert noise.repeats_for(0.05, 0.04, 3) == 3  # already enough: never fewer than now


def test_lookback_keeps_earlier_runs_of_the_same_machine_only(tmp_path):
    history = series(tmp_path, [1.0] * 6)
    chosen = compare.lookback(history[2], history[5], history)
    assert [r.number for r in chosen] == ["0001", "0002", "0003"]  # up to the baseline, never the current
    other = json.loads(history[0].path.read_text())
    other["machine_info"].setdefault("tf2bench", {})["cpu_name"] = "Another CPU"
    (tmp_path / "x").mkdir()
    moved = tmp_path / "x" / history[0].path.name
    moved.write_text(json.dumps(other))
    assert runs.load(moved) not in compare.lookback(history[2], history[5], [runs.load(moved), *history[1:]])


def test_cli_reads_the_history_beside_the_baseline_and_names_a_bad_file(tmp_path, capsys):
    history = series(tmp_path, [*quiet(6, 0.01, seed=5), 1.0, 1.8])
    (tmp_path / "0009_broken_20261209_100000.json").write_text("{not json")
    rc = main(["compare", str(history[-2].path), str(history[-1].path)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "run-to-run noise from 7 run(s)" in out
    assert "0009_broken" in out
    assert "left out" in out
    for column in ("run sd", "p run", "detects"):
        assert column in out
    rc = main(["compare", str(history[-2].path), str(history[-1].path), "--no-history"])
    assert "no run-to-run noise estimate" in capsys.readouterr().out
    assert rc == 1
    assert main(["compare", str(history[-2].path), str(history[-1].path), "--target", "-1"]) == 2
    assert "--target" in capsys.readouterr().err


def test_benjamini_hochberg_finds_a_shared_slowdown_bonferroni_would_miss():
    # 20 loops all slowed (a model change): each p = 0.004 > 0.01 / 20, yet 0.004 <= 20 x 0.01 / 20: all found
    assert noise.bh_cutoff([0.004] * 20, 0.01, 20) == 0.004
    # one loop alone at 0.004 is not enough (0.004 > 1 x 0.01 / 20), at 0.0004 it is
    assert noise.bh_cutoff([0.004] + [0.5] * 19, 0.01, 20) < 0
    assert noise.bh_cutoff([0.0004] + [0.5] * 19, 0.01, 20) == 0.0004
    # loops without a p-value still count in m
    assert noise.bh_cutoff([0.0006], 0.01, 20) < 0
