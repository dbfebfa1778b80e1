"""Two ways the gate gains power without more false alarms (tf2bench.analysis.noise, compare):

- the runs of the baseline's commit in the history are averaged into the baseline (several processes of
  one code, as pyperf spawns): the change is tested with variance sd^2 (1 + 1/n) instead of 2 sd^2;
- a workload whose loops slowed together (a model change) is tested on its median loop, which scatters
  less from run to run than any one loop: each of its loops beyond the threshold is then flagged.

Runs are fixture 0001 (one workload, five loops, 6 rounds each) whose rounds are set to one figure x a factor of
each loop's own per run: loops that scatter independently from run to run, as the measured ones mostly do,
with rounds that agree within the run (what makes the rounds-only gate cry wolf).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
from conftest import fixture, run_series
from scipy.stats import t

from tf2bench.analysis import compare, noise, shift

LOOPS = ("fit", "eager", "tutorial", "tf_function", "tf_data")


def runs_of(folder, factors, commit=None, start=1):
    """One run per row of factors (a factor per loop, LOOPS order); each run its own commit unless given."""
    doc = json.loads(fixture("0001").read_text())
    ref = {b["extra_info"]["loop"]: b["stats"]["data"][0] for b in doc["benchmarks"]}  # one figure per loop

    def rounds(k, bench):  # rounds 0.2% apart: the run's level is its factor, the rounds agree
        f = factors[k][LOOPS.index(bench["extra_info"]["loop"])]
        return [ref[bench["extra_info"]["loop"]] * f * (1 + 0.002 * j) for j in range(len(bench["stats"]["data"]))]

    return run_series(folder, len(factors), rounds, commit, start)


def scatter(n, sd, seed):
    """n runs x 5 loops of independent log-normal factors (each loop's own run-to-run noise)."""
    return np.exp(np.random.default_rng(seed).normal(0.0, sd, (n, len(LOOPS))))


def test_the_baseline_is_the_mean_of_its_commit_s_clean_runs(tmp_path):
    factors = scatter(6, 0.05, seed=0)
    same = runs_of(tmp_path / "same", factors, commit="c0ffee".ljust(40, "0"))
    base, cur = same[-2], same[-1]
    history = same[:-1]
    assert compare.replicates(base, history) == history  # every earlier run of the code, the baseline last
    dirty = dataclasses.replace(history[0], dirty=True)
    other = dataclasses.replace(history[1], commit="beef000000")
    rigorous = dataclasses.replace(history[2], suite={**history[2].suite, "preset": "rigorous"})
    assert compare.replicates(base, [dirty, other, rigorous, *history[3:]]) == history[3:]
    assert compare.replicates(dataclasses.replace(base, dirty=True), history) == [dataclasses.replace(base, dirty=True)]

    row = compare.compare(base, cur, history=history).table.set_index("benchmark").loc["cifar100/functional/tf_data"]
    col = LOOPS.index("tf_data")
    # time per sample x factor: the change is the current factor over the geometric mean of the baseline runs'
    expected = factors[-1, col] / math.exp(np.log(factors[:-1, col]).mean()) - 1
    assert row.change_pct == pytest.approx(100 * expected, rel=1e-9)
    alone = compare.compare(base, cur, history=history, pool_commit=False).table.set_index("benchmark")
    assert alone.loc["cifar100/functional/tf_data"].change_pct == pytest.approx(
        100 * (factors[-1, col] / factors[-2, col] - 1), rel=1e-9
    )
    cmp = compare.compare(base, cur, history=history)
    assert any(n.startswith("baseline: the mean of 5 runs of its commit") for n in cmp.notes), cmp.notes


def test_averaged_baseline_runs_shrink_the_change_s_variance_to_one_plus_one_over_n():
    rn = noise.RunNoise(sd=0.04, df=8.0, runs=12)
    z = 2.5
    for n in (1, 4, 12):
        change = z * rn.sd * math.sqrt(1 + 1 / n)
        assert noise.run_p_value(change, rn, n) == pytest.approx(float(t.sf(z, rn.df)), rel=1e-9)
    # the same 15% change stands out more against 12 baseline runs than against one
    assert noise.run_p_value(math.log(1.15), rn, 12) < noise.run_p_value(math.log(1.15), rn, 1)
    assert noise.detectable_run(rn, 0.0005, 12) < noise.detectable_run(rn, 0.0005, 1)


def _levels(matrix):
    return [shift.RunLevels({("w", "api", v): float(x) for v, x in zip(LOOPS, row, strict=True)}) for row in matrix]


def test_the_median_loop_finds_a_change_all_loops_share_but_not_one_loop_s():
    sd = 0.06
    rng = np.random.default_rng(7)
    history = _levels(rng.normal(0.0, sd, (12, len(LOOPS))))
    now = rng.normal(0.0, sd, len(LOOPS))
    shared = shift.workload_shifts(history, history[-1:], _levels([now + math.log(1.3)])[0])["w"]
    # the median of 5 independent loops has ~0.56 of one loop's SD (1.2533 / sqrt 5); its change between two
    # runs sqrt 2 x 0.56 x 0.06 = 0.048 in log units, so a shared 30% change (log 1.3 = 0.26) is ~5.5 SD in
    # expectation; with this seed it must at least clear Bonferroni over two workloads at 0.01
    assert shared.p < 0.005, shared
    assert shared.loops == len(LOOPS)
    assert shared.runs == 12
    one = now.copy()
    one[LOOPS.index("tf_function")] += math.log(3.0)  # one loop 3x slower: the median does not move with it
    alone = shift.workload_shifts(history, history[-1:], _levels([one])[0])["w"]
    assert alone.p > 0.05, alone
    assert abs(alone.change) < math.log(1.3) / 2
    few = [shift.RunLevels({k: v for k, v in lv.loops.items() if k[2] in LOOPS[:2]}) for lv in history]
    assert shift.workload_shifts(few, few[-1:], few[-1]) == {}  # two loops: no median to speak of


def test_a_model_change_too_small_for_a_loop_alone_is_flagged_on_the_loops_it_slowed(tmp_path):
    history = runs_of(tmp_path, scatter(12, 0.08, seed=3))
    cur = runs_of(tmp_path / "cur", scatter(1, 0.08, seed=4) * 1.3, start=13)[0]
    cmp = compare.compare(history[-1], cur, history=history)
    table = cmp.table.set_index("benchmark")
    beyond = table[(table["change_pct"] > compare.DEFAULT_THRESHOLD_PCT) & (table["p_value"] < compare.ALPHA)]
    assert len(beyond) >= 3
    assert (beyond["shift_p"] <= compare.ALPHA).all(), cmp.notes  # the median loop stands out ...
    # ... so every loop beyond the threshold whose rounds agree is a regression, including loops whose own
    # run-to-run noise hides the change (above the Benjamini-Hochberg cutoff over the 5 loops at 0.01)
    assert set(cmp.regressions["benchmark"]) == set(beyond.index)
    cutoff = noise.bh_cutoff(list(table["run_p"].dropna()), compare.ALPHA, len(table))
    assert (beyond["run_p"] > cutoff).any(), beyond[["change_pct", "run_p"]]
    assert any("its loops slowed together" in n for n in cmp.notes), cmp.notes
    # without the workload test (normalised: a change fit shares with every loop is no change) nothing is flagged
    assert compare.compare(history[-1], cur, history=history, normalize=True).regressions.empty


@pytest.mark.parametrize("n_base", [1, 6])
def test_the_median_loop_s_p_value_is_calibrated_on_runs_of_the_same_code(n_base):
    # 2000 A/A comparisons of 10 independent loops after 12 earlier runs: p < 0.01 should happen ~20 times.
    # Binomial sd sqrt(2000 x 0.01 x 0.99) = 4.4; the MSSD's t approximation (df = 2/3 of the differences) adds
    # some slack either way: 3 to 45 (a test that cried wolf 2.25x too often, or almost never, fails)
    rng = np.random.default_rng(11)
    hits = 0
    for _ in range(2000):
        rows = rng.normal(0.0, 0.05, (13, 10))
        lv = [shift.RunLevels({("w", "a", str(j)): float(x) for j, x in enumerate(row)}) for row in rows]
        history, cur = lv[:12], lv[12]
        hits += shift.workload_shifts(history, history[-n_base:], cur)["w"].p < 0.01
    assert 3 <= hits <= 45, hits


def test_cli_prints_the_workload_test_and_can_compare_with_the_baseline_run_alone(tmp_path, capsys):
    from tf2bench.cli import main

    same = runs_of(tmp_path, scatter(6, 0.02, seed=5), commit="c0ffee".ljust(40, "0"))
    args = ["compare", str(same[-2].path), str(same[-1].path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "p workload" in out
    assert "baseline: the mean of 5 runs of its commit" in out
    assert "a change slowing its loops together is detected from >=" in out
    assert main([*args, "--baseline-alone"]) == 0
    assert "baseline: the mean" not in capsys.readouterr().out
