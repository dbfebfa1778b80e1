"""tf2bench history: each loop's throughput across saved runs, and the steps in it (change points).

A series is one workload x loop x machine, oldest run first. A run's point is the median over its
rounds pooled over the model APIs, repeats and seeds, exactly as ``compare`` pools them per loop:
samples/s, or with ``normalize`` the speed-up vs fit of the same run (which travels between
machines). Runs on different hardware are never mixed: one series per machine, unless normalised
series are merged on request.

Steps are proposed by ruptures (Pelt, l2 cost on the log of the run medians) and then tested: a
step counts only when a two-sided t test on the run levels of the segment before vs the segment after
(their own scatter as the scale, corrected for Pelt having chosen the cut: _test) gives p < 0.01 *and* the
time per sample changed by more than the threshold (as in compare). A proposed step that does not count is
dropped and its two segments merged (the weakest first) until every remaining step counts, so "the newest
segment vs the one before it" is always a counted step, or none.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tf2bench.analysis import compare, runs, spread
from tf2bench.analysis.noise import MAD_TO_SD
from tf2bench.analysis.runs import RunFileError, SavedRun
from tf2bench.errors import BadInputError

# Runs on each side of a step: a single run is an outlier, not a step (`compare` gates one run). Not
# noise.MIN_RUNS (the earlier runs a run-to-run estimate needs): a segment's length, not a history's.
MIN_SEGMENT = 2
MERGED = "all machines (normalised)"


@dataclass
class Point:
    """One run of a series: its rounds as log throughput (or log speed-up vs fit)."""

    run: SavedRun
    index: int  # position among all the runs read, oldest first
    label: str  # the run number (with its position when numbers repeat)
    logs: np.ndarray
    process_levels: tuple[float, ...] = ()  # a run saved with --processes N: each process's log median (spread.py)

    @property
    def level(self) -> float:
        """The run's level: the mean over its processes, or the log median of its rounds."""
        return float(np.mean(self.process_levels)) if self.process_levels else float(np.median(self.logs))

    @property
    def value(self) -> float:
        return float(np.exp(self.level))


@dataclass
class Step:
    at: int  # position in the series of the first point after the step
    label: str
    commit: str
    date: str
    change_pct: float  # throughput after / before - 1, from the mean log run level of each side
    p_value: float
    counts: bool
    why: str  # slower, faster, not significant, within threshold

    def __str__(self) -> str:
        where = f"from run {self.label} (commit {self.commit}, {self.date}) on"
        return f"{where}: {self.change_pct:+.1f}% (p {self.p_value:.2g})"


@dataclass
class Series:
    workload: str
    loop: str
    machine: str
    points: list[Point]
    noise: float = math.nan  # sigma of a run's median, log units (the penalty's scale)
    steps: list[Step] = field(default_factory=list)  # counted
    dropped: list[Step] = field(default_factory=list)  # proposed by ruptures, not counted

    @property
    def slowdown(self) -> Step | None:
        """The newest segment's step when it is a counted slowdown."""
        return self.steps[-1] if self.steps and self.steps[-1].change_pct < 0 else None

    @property
    def verdict(self) -> str:
        if len(self.points) < 2 * MIN_SEGMENT:
            return f"too few runs (< {2 * MIN_SEGMENT})"
        if self.slowdown:
            return "SLOWDOWN"
        return "faster" if self.steps else "ok"


def load(specs: Sequence[str], storage_dir: Path) -> tuple[list[SavedRun], list[RunFileError]]:
    """The runs named (files, directories, globs, run numbers), or every saved run under storage_dir; oldest first."""
    if not specs:
        specs = [str(p) for p in (runs.saved_runs(storage_dir) if storage_dir.is_dir() else [])]
        if not specs:
            raise runs.MissingRunError(storage_dir, "no saved runs here; run `pytest bench --benchmark-autosave` first")
    loaded, errors = runs.load_many(specs, storage_dir)
    return sorted(loaded, key=lambda r: (r.datetime, runs.sort_key(r.path))), errors


def labels(loaded: Sequence[SavedRun]) -> list[str]:
    """Each run's number, with its position among the runs read when numbers repeat (runs from several storages)."""
    numbers = [r.number for r in loaded]
    return [n if numbers.count(n) == 1 else f"{n} [#{i + 1}]" for i, n in enumerate(numbers)]


def build(
    loaded: Sequence[SavedRun], normalize: bool = False, merge_machines: bool = False
) -> tuple[list[Series], list[str]]:
    """One series per workload x loop x machine (fit is left out when normalised: it is the reference)."""
    if merge_machines and not normalize:
        raise BadInputError("--merge-machines needs --normalize: absolute samples/s do not travel between machines")
    names = labels(loaded)
    groups: dict[tuple[str, str, str], list[Point]] = defaultdict(list)
    notes: list[str] = []
    for i, run in enumerate(loaded):
        label = names[i]
        machine = MERGED if merge_machines else runs.machine_of(run)
        costs, unnormalizable = compare.round_costs(run, normalize)  # per round: seconds per sample, or x fit's time
        per_process = spread.process_costs(run, normalize) if spread.tagged(run) else {}
        pooled: dict[tuple[str, str], list[float]] = defaultdict(list)
        for (workload, _api, loop), cost in costs.items():
            if not (normalize and loop == "fit"):
                pooled[(workload, loop)] += cost
        for (workload, loop), cost in pooled.items():
            keys = [k for k in per_process if (k[0], k[2]) == (workload, loop)]  # the loop's APIs
            procs = tuple(-x for x in spread.levels(spread.pool(per_process, keys) or {})) if keys else ()
            if cost:
                point = Point(run, i, label, -np.log(np.asarray(cost)), procs if len(procs) > 1 else ())
                groups[(workload, loop, machine)].append(point)
        if unnormalizable:
            notes.append(
                f"run {label}: no fit to normalise against for {compare.benchmark_names(unnormalizable)} (left out)"
            )
    if not groups:
        raise BadInputError("no benchmark rounds in these runs" + (" with a fit to normalise against" * normalize))
    machines = sorted({m for _, _, m in groups})
    if len(machines) > 1:
        notes.append(f"{len(machines)} machines, one series each (never mixed): {'; '.join(machines)}")
    return [Series(w, v, m, pts) for (w, v, m), pts in groups.items()], notes


def detect(series: Series, threshold_pct: float = compare.DEFAULT_THRESHOLD_PCT, alpha: float = compare.ALPHA) -> None:
    """Find and test the steps of one series (fills noise, steps, dropped).

    The rule: y = log median of each run. Its noise sigma is the larger of
    - the spread of single rounds within runs (MAD of each round's log throughput around its run's median,
      pooled over all runs, so one noisy run cannot dominate), as the error of a median of m rounds:
      x sqrt(pi/2) / sqrt(m), m the median number of rounds per run; and
    - the scatter between runs that a run's rounds share (a busy machine slows all of them alike), which the
      within-run spread cannot see: MAD of successive differences of y / sqrt(2) (robust to a few real steps),
      pooled (by degrees of freedom) with the spread between the worker processes of runs saved with --processes N
      divided by N, an estimate of the same scatter from inside each run (tf2bench.analysis.spread); y is then the
      mean over the run's processes.
    ruptures' Pelt minimises the l2 cost plus a penalty of 2 sigma^2 ln(n) per change point: the BIC of a mean
    shift in Gaussian noise (two parameters per change, its place and the new level), at least MIN_SEGMENT runs a side.
    sigma sets the penalty only (which cuts are proposed); whether a cut counts is _test's, on the levels themselves.
    """
    import ruptures as rpt

    pts, n = series.points, len(series.points)
    if n < 2 * MIN_SEGMENT:
        return
    y = np.array([p.level for p in pts])
    within = MAD_TO_SD * np.median(np.concatenate([np.abs(p.logs - np.median(p.logs)) for p in pts]))
    rounds = float(np.median([len(p.logs) for p in pts]))
    between = MAD_TO_SD * np.median(np.abs(np.diff(y))) / math.sqrt(2)
    procs = [np.asarray(p.process_levels) for p in pts if p.process_levels]
    if procs:  # the between-process variance / N, on sum(N - 1) df; the successive differences' df ~ 2(n - 1)/3
        df_p, df_b = sum(len(v) - 1 for v in procs), 2 * (n - 1) / 3
        per_run = (
            sum(float(((v - v.mean()) ** 2).sum()) for v in procs) / df_p / float(np.median([len(v) for v in procs]))
        )
        between = math.sqrt((df_b * between**2 + df_p * per_run) / (df_b + df_p))
    series.noise = max(within * math.sqrt(math.pi / 2 / rounds), between, 1e-4)
    penalty = 2 * series.noise**2 * math.log(n)
    bounds = rpt.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(y.reshape(-1, 1)).predict(pen=penalty)[:-1]
    while True:  # drop the weakest step that does not count, merge its segments, test the rest again
        edges = [0, *bounds, n]
        tested = [_test(pts, y, *edges[j : j + 3], threshold_pct, alpha) for j in range(len(bounds))]
        weak = [s for s in tested if not s.counts]
        if not weak:
            series.steps = tested
            return
        worst = max(weak, key=lambda s: (s.p_value, -abs(s.change_pct)))
        series.dropped.append(worst)
        bounds.remove(worst.at)


def _test(pts: list[Point], y: np.ndarray, start: int, at: int, end: int, threshold_pct: float, alpha: float) -> Step:
    """Runs before vs after, as runs: a two-sided pooled t on the run levels of the stretch [start, end) between
    the neighbouring cuts, Bonferroni-corrected for the cuts Pelt could have chosen in it.

    Not a test on the rounds: rounds of one process share its state, so pooled over a few runs they look like
    many independent samples and a slow minute becomes a "step" (docs/gate.md: on one history of 15 runs of
    windows that varied from run to run, 12 steps that were not code with the rounds test, 9 with this one).

    Derivation. Null: the L = end - start levels of the stretch are independent N(mu, s^2) (the code did not
    change). For a cut k given in advance, T_k = (mean after - mean before) / (s_k sqrt(1/a + 1/b)), s_k^2 the
    variance pooled about each side's own mean, is exactly Student's t on L - 2 df (s_k^2 is independent of the
    two means, whatever s). Two corrections to the test this replaces (docs/gate.md, history's power):
    1. The scale. It was the series' sigma (MAD of the n - 1 successive differences, the penalty's scale) read as
       known to n - 2 df. That estimator's tails match a t on only ~0.9 + 0.37 (n - 1) df (simulated, 200,000
       series of n = 4..40: 2.0 df at n = 4, 8.3 at 20), and a MAD gauges the normal scale, not the SD a mean's
       error is made of: levels with heavier tails (t, 4 df) went further. The pooled s_k is the SD itself, on
       its exact df; a run hit by a load burst, or a drift inside the stretch, widens it (fewer steps counted,
       never more). The process spread of runs saved with --processes N stays out: it sees a run's level
       scatter only in part (not what a run's processes share), so pooled in it would shrink s_k below it.
    2. The cut. Pelt placed k where the levels differ most; T at a chosen cut is not t-distributed (a scan
       statistic). Whatever rule chose it among the K = L - 2 MIN_SEGMENT + 1 cuts with MIN_SEGMENT runs a side,
       P(|T_chosen| > c) <= P(max_k |T_k| > c) <= sum_k P(|T_k| > c) = K P(|t_{L-2}| > c), for any dependence
       between the T_k: p = min(1, K p_k). Its price against the exact maximum is small, as the maximum is
       made at the little-correlated cuts near the ends: with sigma known, at 1% the critical |Z| is 2.94 vs
       2.89 exact for L = 6 and 3.44 vs 3.30 for L = 20 (simulated); Sidak's 1 - (1 - p_k)^K is the same to 3
       digits. Not covered: the neighbouring cuts are Pelt's too, and the merge loop tests again; measured
       instead (bench/cold_start.py: false steps per 20-run series, docs/gate.md).
    """
    from scipy.stats import t

    before, after = y[start:at], y[at:end]  # the run levels detect() segmented
    diff = float(after.mean() - before.mean())
    ratio = math.exp(diff)  # throughput after / before
    df = end - start - 2  # >= 2: MIN_SEGMENT >= 2 a side
    pooled = float(((before - before.mean()) ** 2).sum() + ((after - after.mean()) ** 2).sum()) / df
    se = max(math.sqrt(pooled), 1e-4) * math.sqrt(1 / len(before) + 1 / len(after))  # floor: identical levels
    cuts = end - start - 2 * MIN_SEGMENT + 1
    p = min(1.0, cuts * float(2 * t.sf(abs(diff) / se, df)))
    beyond = abs(1.0 / ratio - 1.0) > threshold_pct / 100.0  # time per sample, as compare's threshold
    if p >= alpha:
        why = "not significant"
    elif not beyond:
        why = "within threshold"
    else:
        why = "slower" if ratio < 1 else "faster"
    run = pts[at].run
    commit = (run.commit[:7] or "?") + ("-dirty" if run.dirty else "")
    date = run.datetime[:10] or "?"
    return Step(at, pts[at].label, commit, date, 100 * (ratio - 1), p, why in ("slower", "faster"), why)


def analyse(series: list[Series], threshold_pct: float = compare.DEFAULT_THRESHOLD_PCT) -> list[Series]:
    if not (threshold_pct > 0 and math.isfinite(threshold_pct)):
        raise BadInputError(f"--threshold must be a positive percentage, got {threshold_pct!r}")
    for s in series:
        detect(s, threshold_pct)
    return series
