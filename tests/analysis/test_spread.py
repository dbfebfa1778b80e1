"""The gate on runs saved with --processes N (issue 22.2): a run's level is the mean over its processes, and their
spread is a noise estimate in its own right, pooled with the history's (tf2bench.analysis.spread).

Simulated data first (the estimate's bias and the test's false-alarm rate, against what the math says), then saved
runs built from fixture 0001 (cifar100, five loops, three repeats) with every round tagged with its process.
"""

from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
from conftest import fixture

from tf2bench.analysis import compare, history, noise, runs, spread

SIMS = 3000
ALPHA = 0.01


def _per_process(rng: np.random.Generator, n: int, sd: float, shift: float = 0.0, rounds: int = 1) -> dict:
    """One run of n processes: each process's level drawn around ``shift`` with SD ``sd``, its rounds at that level."""
    return {p: [math.exp(shift + rng.normal(0, sd))] * rounds for p in range(1, n + 1)}


def test_the_between_process_variance_is_unbiased():
    rng = np.random.default_rng(7)
    sd, n = 0.05, 3
    est = [spread.between([spread.levels(_per_process(rng, n, sd)) for _ in range(2)]) for _ in range(SIMS)]
    assert {df for _, df in est} == {2 * (n - 1)}
    mean_s2 = statistics.fmean(s2 for s2, _ in est)
    # s² on df degrees of freedom has variance 2 sd⁴ / df: the mean of SIMS of them lies within 4 of its SEs
    se = sd**2 * math.sqrt(2 / (2 * (n - 1)) / SIMS)
    assert abs(mean_s2 - sd**2) < 4 * se


@pytest.mark.parametrize("n", [3, 5])
def test_aa_comparisons_without_history_raise_alarms_at_the_stated_rate(n):
    """Two runs of the same code, n processes each, no history: p < 0.01 about 1% of the time (a two-sample t on the
    process levels, exact for normal levels). SIMS comparisons: Binomial(SIMS, 0.01), mean 30, SD 5.4."""
    rng = np.random.default_rng(n)
    alarms = 0
    for _ in range(SIMS):
        cur, base = _per_process(rng, n, 0.04), _per_process(rng, n, 0.04)
        rn, _, df = spread.run_noise(cur, [base], None)
        assert df == 2 * (n - 1)
        alarms += noise.run_p_value(spread.level(cur) - spread.level(base), rn, 1) < ALPHA
    expected, sd = SIMS * ALPHA, math.sqrt(SIMS * ALPHA * (1 - ALPHA))
    assert abs(alarms - expected) < 4 * sd, alarms


def test_pooled_with_a_history_the_rate_holds_and_power_grows():
    """The same with 8 earlier runs (their run-to-run estimate pooled in): still ~1% false alarms, and the noise has
    more degrees of freedom, so the limit of detection (column detects) is lower than from the processes alone: by
    the ratio of (t(1 - alpha) + t(0.8)) at the two df, times that of the median of an SD estimated on that many df
    (sqrt of chi² median / df), within 10% (the history's df are the MSSD's approximate ones, moderated)."""
    from scipy.stats import chi2, t

    rng = np.random.default_rng(11)
    key = ("w", "a", "v")
    alarms, alone, pooled, dfs = 0, [], [], []
    for _ in range(SIMS):
        hist = noise.estimate([{key: spread.level(_per_process(rng, 3, 0.04))} for _ in range(8)])[key]
        cur, base = _per_process(rng, 3, 0.04), _per_process(rng, 3, 0.04)
        rn, _, _ = spread.run_noise(cur, [base], hist)
        assert rn.df == pytest.approx(4 + hist.df)
        dfs.append(rn.df)
        alarms += noise.run_p_value(spread.level(cur) - spread.level(base), rn, 1) < ALPHA
        pooled.append(noise.detectable_run(rn, ALPHA, 1))
        alone.append(noise.detectable_run(spread.run_noise(cur, [base], None)[0], ALPHA, 1))
    expected, sd = SIMS * ALPHA, math.sqrt(SIMS * ALPHA * (1 - ALPHA))
    assert abs(alarms - expected) < 4 * sd, alarms
    df = statistics.median(dfs)

    def limit(d: float) -> float:
        return (t.ppf(1 - ALPHA, d) + t.ppf(0.8, d)) * math.sqrt(chi2.median(d) / d)

    assert statistics.median(pooled) / statistics.median(alone) == pytest.approx(limit(df) / limit(4), rel=0.1)


def test_fewer_than_two_degrees_of_freedom_leave_the_history_alone():
    rng = np.random.default_rng(3)
    hist = noise.RunNoise(0.1, 6.0, 5)
    got, _, df = spread.run_noise(_per_process(rng, 2, 0.05), [{0: [1.0]}], hist)
    assert df == 1
    assert got is hist  # one between-process df: the history decides
    prior = noise.RunNoise(0.1, math.inf, 1, prior=True)
    got, _, _ = spread.run_noise(_per_process(rng, 3, 0.05), [{0: [1.0]}], prior)
    assert not got.prior  # a measured spread replaces a stated prior


def test_the_processes_hint_reaches_the_target():
    for detect, n in ((0.20, 1), (0.20, 3), (0.08, 5)):
        need = noise.processes_for(0.05, detect, n)
        assert math.log1p(detect) * math.sqrt(n / need) <= math.log1p(0.05) + 1e-12
        assert math.log1p(detect) * math.sqrt(n / (need - 1)) > math.log1p(0.05) or need == n + 1


LOOPS = ("fit", "eager", "tutorial", "tf_function", "tf_data")


def tagged_run(folder, number: int, rng, sd: float, slower: dict | None = None, n: int = 3, rounds: int = 2):
    """Fixture 0001 as a run of n worker processes: each (benchmark, process) level drawn with SD ``sd`` around the
    fixture's first round, ``rounds`` rounds per process 0.2% apart; ``slower``: loop -> time factor."""
    doc = json.loads(fixture("0001").read_text())
    doc["datetime"] = f"2026-12-{number:02d}T10:00:00+00:00"
    doc["commit_info"].update(id=f"{number:04d}".ljust(40, "0"), dirty=False)
    for b in doc["benchmarks"]:
        info, ref = b["extra_info"], b["stats"]["data"][0]
        factor = (slower or {}).get(info["loop"], 1.0)
        levels = [ref * factor * math.exp(rng.normal(0, sd)) for _ in range(n)]
        b["stats"]["data"] = [x * (1 + 0.002 * j) for x in levels for j in range(rounds)]
        info["rounds_process"] = [p for p in range(1, n + 1) for _ in range(rounds)]
        info["processes"] = list(range(1, n + 1))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{number:04d}_abc{number:04d}_202612{number:02d}_100000.json"
    path.write_text(json.dumps(doc))
    return runs.load(path, True)


def test_a_run_of_three_processes_is_gated_from_its_first_run_on(tmp_path):
    rng = np.random.default_rng(5)
    base = tagged_run(tmp_path, 1, rng, 0.03)
    same = tagged_run(tmp_path, 2, rng, 0.03)
    slow = tagged_run(tmp_path, 3, rng, 0.03, slower={"tf_function": 1.4})
    aa = compare.compare(base, same, history=[base])  # one run of history: a cold start
    assert aa.regressions.empty
    assert compare.NOT_GATED[True] not in set(aa.table["verdict"])
    assert np.isfinite(aa.table["detects_pct"]).all()  # every loop gated, with what it could detect
    assert any("between-process noise: this run has 3 worker processes" in n for n in aa.notes)
    assert not any(n.startswith("WARNING: not gated yet") for n in aa.notes)
    ab = compare.compare(base, slow, history=[base])
    assert list(ab.regressions["benchmark"]) == ["cifar100/functional/tf_function"]
    assert ab.regressions["run_p"].iloc[0] < 1e-3


def test_a_runs_level_is_the_mean_over_its_processes(tmp_path):
    rng = np.random.default_rng(9)
    run = tagged_run(tmp_path, 1, rng, 0.05)
    per = spread.process_costs(run, normalize=False)[("cifar100", "functional", "fit")]
    assert sorted(per) == [1, 2, 3]
    by_process = spread.Runs(False, {("cifar100", "functional", "fit"): [("cifar100", "functional", "fit")]})
    flat = compare.round_costs(run, False)[0][("cifar100", "functional", "fit")]
    assert sorted(flat) == sorted(x for costs in per.values() for x in costs)  # the same rounds, by process
    lv = by_process.level(run, ("cifar100", "functional", "fit"), flat)
    assert lv == pytest.approx(statistics.fmean(math.log(statistics.median(c)) for c in per.values()))
    (point,) = [p for s in history.build([run])[0] if s.loop == "fit" for p in s.points]
    assert point.level == pytest.approx(-lv)  # history's level: log throughput, the same mean
    assert len(point.process_levels) == 3


def test_history_pools_the_process_spread_into_its_noise(tmp_path):
    """Runs whose levels do not move from run to run (successive differences 0) but whose processes scatter: the
    series' noise is the process variance / N, weighted by its df against the successive differences' 2(n-1)/3
    (6 rounds a process keep the rounds' own term, ~half of it, out of the way)."""
    rng = np.random.default_rng(2)
    made = [tagged_run(tmp_path, i, rng, 0.05, rounds=6) for i in range(1, 7)]
    for r in made:  # one repeat; its process levels re-centred on 1: no run-to-run movement
        d = json.loads(r.path.read_text())
        d["benchmarks"] = [b for b in d["benchmarks"] if b["extra_info"]["repeat"] == 0]
        for b in d["benchmarks"]:
            data = b["stats"]["data"]
            centre = math.exp(statistics.fmean(math.log(x) for x in data[::6]))
            b["stats"]["data"] = [x / centre for x in data]
        r.path.write_text(json.dumps(d))
    loaded = [runs.load(r.path, True) for r in made]
    (series,) = [s for s in history.build(loaded)[0] if s.loop == "fit"]
    history.detect(series)
    procs = [np.asarray(p.process_levels) for p in series.points]
    df_p = sum(len(v) - 1 for v in procs)
    per_run = sum(float(((v - v.mean()) ** 2).sum()) for v in procs) / df_p / 3
    df_b = 2 * (len(procs) - 1) / 3
    assert series.noise == pytest.approx(max(math.sqrt(df_p * per_run / (df_b + df_p)), 1e-4), rel=1e-6)
