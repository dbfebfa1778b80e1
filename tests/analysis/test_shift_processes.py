"""The workload test on runs saved with --processes N (tf2bench.analysis.shift, issue 22): each worker process ran
every loop, so it has a workload factor of its own (the median over the workload's loops of its levels, each centred);
the run's factor is their mean, and their spread is a noise estimate for it, pooled with the history's as a loop's is.

Simulated process levels first (A/A false alarms against the stated 1%, a planted shared slowdown against the power
of the t test it makes), then saved runs (fixture 0001, every round tagged with its process) through compare.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from test_spread import tagged_run

from tf2bench.analysis import compare, noise, shift

SIMS = 3000
ALPHA = 0.01
LOOPS = ("fit", "eager", "tutorial", "tf_function", "tf_data")
OFFSETS = np.log([1.0, 40.0, 45.0, 0.6, 0.5])  # loops run at different speeds: the centring takes that out


def run_of(rng: np.random.Generator, n: int, sd: float, slower: float = 0.0, one: str | None = None) -> shift.RunLevels:
    """One run of n processes: each (loop, process) level drawn with SD ``sd`` about the loop's offset, all loops
    ``slower`` (log) or, with ``one``, that loop alone."""
    procs = {}
    for loop, offset in zip(LOOPS, OFFSETS, strict=True):
        move = slower if one in (None, loop) else 0.0
        procs[("w", "a", loop)] = {p: offset + move + float(rng.normal(0, sd)) for p in range(1, n + 1)}
    return shift.RunLevels({k: statistics.fmean(ps.values()) for k, ps in procs.items()}, procs)


def median_sd(k: int) -> float:
    """SD of the median of k independent standard normals (k odd), from its order-statistic density."""
    from scipy import integrate
    from scipy.special import comb
    from scipy.stats import norm

    j = (k + 1) // 2
    density = lambda x: k * comb(k - 1, j - 1) * norm.cdf(x) ** (j - 1) * norm.sf(x) ** (k - j) * norm.pdf(x)  # noqa: E731
    return math.sqrt(integrate.quad(lambda x: x * x * density(x), -10, 10)[0])


def binomial_band(rate: float) -> tuple[float, float]:
    """SIMS Bernoulli(rate) trials: their expected count and its SD."""
    return SIMS * rate, math.sqrt(SIMS * rate * (1 - rate))


def test_a_process_s_factor_is_the_median_of_its_centred_loops_and_a_run_s_is_their_mean():
    rng = np.random.default_rng(1)
    run = run_of(rng, 3, 0.05)
    keys = list(run.loops)
    centre = dict(zip(keys, OFFSETS, strict=True))
    got = shift.factors(run, keys, centre)
    assert got == [statistics.median(run.processes[k][p] - centre[k] for k in keys) for p in (1, 2, 3)]
    one = shift.RunLevels(run.loops)  # the same levels saved without processes: the median of the run's levels
    assert shift.factors(one, keys, centre) == [statistics.median(run.loops[k] - centre[k] for k in keys)]


@pytest.mark.parametrize("n", [3, 5])
def test_aa_pairs_without_history_alarm_at_the_stated_rate(n):
    """Two runs of the same code, n processes each, nothing before them: the workload test runs (2 (n - 1) df) and
    p < 0.01 comes up about 1% of the time. Process levels normal and independent, so a process's factor (the median
    of 5 of them) is nearly normal and the test a two-sample t on 2n factors: within 4 binomial SDs of 30 of 3,000."""
    rng = np.random.default_rng(n)
    alarms = 0
    for _ in range(SIMS):
        base, cur = run_of(rng, n, 0.04), run_of(rng, n, 0.04)
        sh = shift.workload_shifts([], [base], cur)["w"]
        assert (sh.process_df, sh.runs, sh.df) == (2 * (n - 1), 0, 2 * (n - 1))
        alarms += sh.p < ALPHA
    expected, sd = binomial_band(ALPHA)
    assert abs(alarms - expected) < 4 * sd, alarms


def test_aa_pairs_with_a_history_alarm_at_the_stated_rate():
    """The same after 8 earlier runs of 3 processes: the history's scatter of the factor (successive differences)
    pooled in by degrees of freedom, about 1% still."""
    rng = np.random.default_rng(11)
    alarms = 0
    for _ in range(SIMS):
        history = [run_of(rng, 3, 0.04) for _ in range(8)]
        sh = shift.workload_shifts(history, history[-1:], run_of(rng, 3, 0.04))["w"]
        assert (sh.runs, sh.process_df) == (8, 4)
        assert sh.df == pytest.approx(4 + 2 * 7 / 3)  # the processes' 2 (3 - 1) and the MSSD's 2/3 of 7 differences
        alarms += sh.p < ALPHA
    expected, sd = binomial_band(ALPHA)
    assert abs(alarms - expected) < 4 * sd, alarms


def test_a_shared_slowdown_is_found_as_often_as_the_t_test_s_power_says():
    """All five loops 8% slower, 3 processes a side, SD 4% a process and loop, no history. A process's factor has SD
    0.04 x median_sd(5) (0.54: the median of five), the change between two runs' means that x sqrt(2/3); the one-sided
    t on 4 df finds it with the noncentral t's power (0.71). The median of normals is not quite normal, nor the
    centring (the baseline's own levels) independent of it: within 4 binomial SDs plus 2% of the power."""
    from scipy.stats import nct, t

    rng = np.random.default_rng(5)
    sd, slower, df = 0.04, math.log(1.08), 4
    power = float(nct.sf(t.ppf(1 - ALPHA, df), df, slower / (sd * median_sd(5) * math.sqrt(2 / 3))))
    found = sum(
        shift.workload_shifts([], [run_of(rng, 3, sd)], run_of(rng, 3, sd, slower))["w"].p < ALPHA for _ in range(SIMS)
    )
    expected, band = binomial_band(power)
    assert abs(found - expected) < 4 * band + 0.02 * SIMS, (found, expected)
    # one loop 3x slower moves the median by one order statistic of the others' noise at most: rare alarms (4% here)
    alone = sum(
        shift.workload_shifts([], [run_of(rng, 3, sd)], run_of(rng, 3, sd, math.log(3), "tf_function"))["w"].p < ALPHA
        for _ in range(SIMS // 10)
    )
    assert alone < SIMS // 10 * 0.1, alone


def test_one_process_a_side_leaves_the_test_to_the_history():
    rng = np.random.default_rng(2)
    base, cur = run_of(rng, 1, 0.04), run_of(rng, 1, 0.04)
    assert shift.workload_shifts([], [base], cur) == {}  # no history, no between-process df: no test
    history = [run_of(rng, 1, 0.04) for _ in range(noise.MIN_RUNS)]
    sh = shift.workload_shifts(history, history[-1:], cur)["w"]
    assert (sh.runs, sh.process_df) == (noise.MIN_RUNS, 0)


def test_compare_flags_a_shared_slowdown_from_the_first_run_of_three_processes(tmp_path):
    """Saved runs of 3 processes, a baseline and no history before it: every loop 25% slower, each process's level
    scattering 6%. One loop alone would need about expm1((t(1 - 0.01/5, 4) + t(0.8, 4)) x 0.06 x sqrt(2/3)) = 49% to
    stand out; the median of five is flagged, and with it every loop beyond the threshold whose rounds agree."""
    rng = np.random.default_rng(8)
    base = tagged_run(tmp_path, 1, rng, 0.06)
    same = tagged_run(tmp_path, 2, rng, 0.06)
    slow = tagged_run(tmp_path, 3, rng, 0.06, slower=dict.fromkeys(LOOPS, 1.25))
    aa = compare.compare(base, same, history=[base])
    assert aa.regressions.empty
    assert (aa.table["shift_p"] > ALPHA).all(), aa.table
    ab = compare.compare(base, slow, history=[base])
    table = ab.table.set_index("benchmark")
    assert (table["shift_p"] <= ALPHA).all(), ab.notes
    beyond = table[(table["change_pct"] > compare.DEFAULT_THRESHOLD_PCT) & (table["p_value"] < ALPHA)]
    assert len(beyond) >= 3
    assert set(ab.regressions["benchmark"]) == set(beyond.index)
    cutoff = noise.bh_cutoff(list(table["run_p"].dropna()), ALPHA, len(table))
    assert (beyond["run_p"] > cutoff).any(), beyond[["change_pct", "run_p"]]  # some stood out only together
    note = next(n for n in ab.notes if n.startswith("cifar100: its loops slowed together"))
    assert "its worker processes' spread, 4 df" in note
    assert "earlier runs" not in note
