"""The workload test: a workload's loops slowing together (a model, its data, the machine), seen on its median loop.

A model change slows most of a workload's loops, each by less than its own run-to-run noise lets through. A run's
*workload factor* is the median over the workload's loops of each loop's level (log time per sample) minus that
loop's centre (its mean level over the history, or over the baseline's runs without one): the median of ten loops
scatters less than any one of them. The change is the current run's factor minus the mean factor of the baseline's
runs (the baseline and the earlier runs of its commit), tested one-sided with Student's t against:

- the history's run-to-run scatter of the factor: the successive differences of the earlier runs' factors (as a
  loop's, noise.mssd), given ``noise.MIN_RUNS`` runs of history; and
- for runs saved with ``--processes N``, the spread of the factor between the worker processes: each process ran
  every loop (tf2bench.suite.processes), so it has a factor of its own, and a run's factor is their mean. Their
  variance, pooled over the current and the baseline's runs, is pooled with the history's as for one loop
  (spread.pooled_noise), so with N >= 3 processes the test runs from the first run on, without a history.

Bonferroni over the workloads (compare). Reads levels only: no TensorFlow.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tf2bench.analysis.noise import MIN_RUNS, POWER, Key, RunNoise, mssd
from tf2bench.analysis.spread import MIN_DF, pooled_noise

MIN_SHIFT_LOOPS = 3  # a median of fewer loops is one loop's noise


@dataclass(frozen=True)
class RunLevels:
    """A run's level per loop (log time per sample) and, for a run saved with --processes N, each worker process's
    (loop -> process -> level; empty for a run of one process)."""

    loops: Mapping[Key, float]
    processes: Mapping[Key, Mapping[int, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Shift:
    """A workload's loops moving together (a model, data or machine change): its median loop's change."""

    workload: str
    change: float  # log of the median loop's time per sample, current vs the baseline's runs: + is slower
    sd: float  # SD of the change (log) for this comparison's number of baseline runs
    df: float
    loops: int
    runs: int  # earlier runs whose scatter the SD rests on (0: the worker processes' spread alone)
    p: float  # one-sided: current slower
    process_df: int = 0  # between-process degrees of freedom pooled in (runs saved with --processes N)

    @property
    def pct(self) -> float:
        return 100.0 * math.expm1(self.change)


def process_factors(run: RunLevels, keys: Sequence[Key], centre: Mapping[Key, float]) -> list[float]:
    """Each worker process's workload factor (the processes that ran every loop of ``keys``); [] for a run of one."""
    if not all(k in run.processes for k in keys):
        return []
    procs = set.intersection(*(set(run.processes[k]) for k in keys))
    return [statistics.median(run.processes[k][p] - centre[k] for k in keys) for p in sorted(procs)]


def factors(run: RunLevels, keys: Sequence[Key], centre: Mapping[Key, float]) -> list[float]:
    """The run's workload factor per process, or its one factor (the median of its loops' levels) without them."""
    return process_factors(run, keys, centre) or [statistics.median(run.loops[k] - centre[k] for k in keys)]


def workload_shifts(history: Sequence[RunLevels], base: Sequence[RunLevels], cur: RunLevels) -> dict[str, Shift]:
    """Per workload of ``cur`` with at least MIN_SHIFT_LOOPS loops in every run: the change of its factor vs the
    mean factor of ``base`` (the baseline's runs) and its one-sided p, against the history's scatter of the factor
    and the worker processes' spread (module docstring). Workloads with neither estimate are left out."""
    from scipy.stats import t

    out = {}
    for workload in sorted({k[0] for k in cur.loops}):
        keys = [k for k in cur.loops if k[0] == workload and all(k in r.loops for r in (*history, *base))]
        if len(keys) < MIN_SHIFT_LOOPS or not base:
            continue
        centre = {k: statistics.fmean(r.loops[k] for r in (history or base)) for k in keys}
        scatter = None
        if len(history) >= MIN_RUNS:
            var, df = mssd([statistics.fmean(factors(r, keys, centre)) for r in history])
            scatter = RunNoise(math.sqrt(var), df, len(history))
        now, then = factors(cur, keys, centre), [factors(b, keys, centre) for b in base]
        found, _, process_df = pooled_noise(now, then, scatter)
        if found is None:
            continue
        sd = found.sd * math.sqrt(1.0 + 1.0 / len(base))
        change = statistics.fmean(now) - statistics.fmean(statistics.fmean(f) for f in then)
        p = float(t.sf(change / sd, found.df)) if sd > 0 else (0.0 if change > 0 else 1.0)
        used = process_df if process_df >= MIN_DF else 0
        out[workload] = Shift(workload, change, sd, found.df, len(keys), found.runs, p, used)
    return out


def detectable_shift(shift: Shift, alpha: float) -> float:
    """The slowdown of a workload's median loop found with probability POWER at alpha."""
    from scipy.stats import t

    return math.expm1((t.ppf(1 - alpha, shift.df) + t.ppf(POWER, shift.df)) * shift.sd)


def notes(shifts: Mapping[str, Shift], alpha: float, n_base: int, threshold_pct: float) -> list[str]:
    """What the baseline rested on and, per workload, whether its loops slowed together (and what that test sees)."""
    out = []
    if n_base > 1:
        out.append(
            f"baseline: the mean of {n_base} runs of its commit (the baseline and {n_base - 1} earlier run(s) of the "
            f"same code in the history): the run-to-run tests see {math.sqrt(2.0 / (1.0 + 1.0 / n_base)):.2f}x "
            "smaller changes than against the baseline run alone"
        )
    for sh in shifts.values():
        rests_on = [f"{sh.runs} earlier runs"] if sh.runs else []
        rests_on += [f"its worker processes' spread, {sh.process_df} df"] if sh.process_df else []
        what = (
            f"the median of its {sh.loops} loops {sh.pct:+.1f}% vs the baseline's run(s), p {sh.p:.2g} against that "
            f"median's run-to-run scatter ({100 * math.expm1(sh.sd):.1f}%, {' and '.join(rests_on)})"
        )
        if sh.p <= alpha:
            out.append(
                f"{sh.workload}: its loops slowed together: {what} < {alpha:.2g} (Bonferroni over the workloads). A "
                f"change they share: the model, its data, or the machine. Each of its loops slower by more than "
                f"{threshold_pct:g}% with its rounds' test is flagged on it, even where the loop's own noise hides it"
            )
        else:
            out.append(
                f"{sh.workload}: {what}; a change slowing its loops together is detected from "
                f">= {100 * detectable_shift(sh, alpha):.0f}% (median loop, p < {alpha:.2g})"
            )
    return out
