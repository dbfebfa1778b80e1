"""The between-process spread of runs saved with ``--processes N`` (tf2bench.suite.processes), for compare and history.

Such a run tags every round with its worker process (``rounds_process``). Its level for a loop is the mean over its
processes of each process's level (the log median time per sample of that process's rounds, the model APIs pooled
as compare pools them), and the spread of those levels is a noise estimate in its own right: what differs from one
process to the next (compiled code, thread placement, memory layout, the machine's state that minute) is what makes
two runs of the same code differ, and here it is sampled inside one run, at the same time as the change.

- ``between``: the between-process variance s² of a loop, pooled over the runs given (this run and the baseline's
  runs), on sum(N_r - 1) degrees of freedom.
- A change between the current run (N_c processes) and the mean of n baseline runs (N_i each) has variance
  s² (1/N_c + sum(1/N_i) / n²) (``change_variance``).
- ``run_noise``: that estimate pooled (weighted by degrees of freedom) with the history's run-to-run estimate
  where there is one, so a run with N >= 3 processes (2 df) is gated from its first run on, without a history.
  History runs with fewer processes than this one scatter more than this run's level does: pooling with them errs
  on the side of fewer alarms. What varies only from run to run and never between one run's processes (a whole run
  on a busier machine) is what this estimate cannot see and the history's can.

Reads saved JSON only: no TensorFlow.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence

from tf2bench.analysis.noise import RunNoise
from tf2bench.analysis.runs import SavedRun, round_seconds

Key = tuple[str, str, str]  # workload, api (or compare's pooled "*"), loop
PerProcess = dict[int, list[float]]  # process -> its rounds' costs
MIN_DF = 2  # between-process degrees of freedom that gate on their own: one run of 3 processes


def tagged(run: SavedRun) -> bool:
    """Whether the run was saved with worker processes (its rounds know their process)."""
    return any(b["extra_info"].get("rounds_process") for b in run.benchmarks)


def process_costs(run: SavedRun, normalize: bool) -> dict[Key, PerProcess]:
    """Per benchmark, per process, each round's cost: seconds per sample or, normalised, x the time of ``fit`` in
    the same process (repeat, seed, workload, api), as compare.round_costs does for the run as a whole."""
    rounds: dict[Key, list[tuple[int, int, int, float]]] = defaultdict(list)  # (repeat, seed, process, samples/s)
    for bench in run.benchmarks:
        info = bench["extra_info"]
        seconds = round_seconds(bench)
        tags = info.get("rounds_process") or []
        tags = tags if len(tags) == len(seconds) else [0] * len(seconds)  # a run of one process: process 0
        samples = float(info["steps"]) * float(info["samples_per_step"])
        key = (info["workload"], info["api"], info["loop"])
        rep = (info.get("repeat", 0), info.get("seed", 0))
        rounds[key] += [(*rep, p, samples / s) for p, s in zip(tags, seconds, strict=True) if s > 0]
    fit: dict[tuple, list[float]] = defaultdict(list)
    for (w, a, v), rs in rounds.items():
        for r, s, p, t in rs if v == "fit" else ():
            fit[(w, a, r, s, p)].append(t)
    out: dict[Key, PerProcess] = {}
    for (w, a, v), rs in rounds.items():
        per: PerProcess = defaultdict(list)
        for r, s, p, t in rs:
            ref = statistics.median(fit[(w, a, r, s, p)]) if normalize and fit.get((w, a, r, s, p)) else None
            if not normalize or ref is not None:
                per[p].append((ref or 1.0) / t)
        if per:
            out[(w, a, v)] = dict(per)
    return out


def round_costs(run: SavedRun, normalize: bool) -> tuple[dict[Key, list[float]], list[Key]]:
    """Per-round cost of every benchmark, pooled over repeats, seeds and processes: higher = slower. Absolute:
    seconds per sample; normalised: fit's median throughput (same run, repeat, seed, workload, api, process) / the
    round's throughput, i.e. how many times fit's time it took. Also the benchmarks without a fit to normalise by."""
    per = process_costs(run, normalize)
    keys = dict.fromkeys((b["extra_info"]["workload"], b["extra_info"]["api"], b["extra_info"]["loop"])
                         for b in run.benchmarks)  # fmt: skip
    costs = {k: [x for p in sorted(per[k]) for x in per[k][p]] for k in keys if k in per}
    return costs, [k for k in keys if k not in per and normalize]


def pool(per_benchmark: Mapping[Key, PerProcess], keys: Sequence[Key]) -> PerProcess | None:
    """One unit's rounds per process, its benchmarks (the model APIs of a loop) pooled; None if one is missing."""
    if not all(k in per_benchmark for k in keys):
        return None
    out: PerProcess = defaultdict(list)
    for k in keys:
        for p, costs in per_benchmark[k].items():
            out[p] += costs
    return dict(out)


def process_levels(per_process: PerProcess) -> dict[int, float]:
    """Each process's level, by process: the log of its median cost."""
    return {p: math.log(statistics.median(c)) for p, c in per_process.items() if c}


def levels(per_process: PerProcess) -> list[float]:
    """Each process's level: the log of its median cost."""
    return list(process_levels(per_process).values())


def level(per_process: PerProcess) -> float:
    """A run's level: the mean over its processes of their levels."""
    return statistics.fmean(levels(per_process))


def between(runs: Sequence[Sequence[float]]) -> tuple[float, int]:
    """The between-process variance of a statistic's process levels (one list per run), pooled over ``runs``,
    and its degrees of freedom."""
    ss, df = 0.0, 0
    for lv in runs:
        if len(lv) > 1:
            mid = statistics.fmean(lv)
            ss += sum((x - mid) ** 2 for x in lv)
            df += len(lv) - 1
    return (ss / df if df else math.nan), df


def change_variance(s2: float, n_current: int, n_baseline: Sequence[int]) -> float:
    """Variance of the current run's level minus the mean level of the baseline runs, from process variance s2."""
    n = len(n_baseline)
    return s2 * (1.0 / n_current + sum(1.0 / m for m in n_baseline) / (n * n))


def run_noise(
    current: PerProcess, baselines: Sequence[PerProcess], history: RunNoise | None
) -> tuple[RunNoise | None, float, int]:
    """A loop's run-to-run noise (pooled_noise) from its rounds per process in the current and the baseline runs."""
    return pooled_noise(levels(current), [levels(b) for b in baselines], history)


def pooled_noise(
    current: Sequence[float], baselines: Sequence[Sequence[float]], history: RunNoise | None
) -> tuple[RunNoise | None, float, int]:
    """The run-to-run noise a change is tested against, from each process's level in the current run and in each
    baseline run (one level for a run of one process), as compare's RunNoise (its sd is scaled so that sd² (1 + 1/n)
    is the change's variance, n the baseline runs), and the between-process variance and its df. Used for a loop
    (run_noise) and for a workload's median loop (tf2bench.analysis.shift).

    With fewer than MIN_DF between-process degrees of freedom, the history's estimate as it is. A stated prior
    (cold start) gives way to a measured process spread."""
    s2, df = between([current, *baselines])
    if df < MIN_DF or not math.isfinite(s2):
        return history, s2, df
    n_base = len(baselines)
    v = change_variance(s2, len(current), [len(b) for b in baselines])
    total, runs = float(df), 0
    if history is not None and not history.prior:
        v_hist = history.sd**2 * (1.0 + 1.0 / n_base)
        v = (df * v + history.df * v_hist) / (df + history.df)
        total, runs = df + history.df, history.runs
    return RunNoise(math.sqrt(v / (1.0 + 1.0 / n_base)), total, runs), s2, df


class Runs:
    """compare's view of the runs' processes: each run's rounds per gate unit and process, read once per run."""

    def __init__(self, normalize: bool, groups: Mapping[Key, Sequence[Key]]) -> None:
        self.normalize, self.groups = normalize, groups
        self.cache: dict[object, dict[Key, PerProcess]] = {}
        self.used: dict[Key, tuple[float, int]] = {}  # per loop: the process variance and df its noise rests on

    def units(self, run: SavedRun) -> dict[Key, PerProcess]:
        """Each unit's rounds per process, for a run saved with processes (empty for a run of one process)."""
        path = run.path.resolve()
        if path not in self.cache:
            per = process_costs(run, self.normalize) if tagged(run) else {}
            self.cache[path] = {u: got for u, keys in self.groups.items() if per and (got := pool(per, keys))}
        return self.cache[path]

    def per_process(self, run: SavedRun, key: Key) -> PerProcess | None:
        """The unit's rounds per process, for a run saved with processes (None for a run of one process)."""
        return self.units(run).get(key)

    def process_levels(self, run: SavedRun) -> dict[Key, dict[int, float]]:
        """Each unit's level per process (the workload test's input; empty for a run of one process)."""
        return {k: process_levels(per) for k, per in self.units(run).items()}

    def level(self, run: SavedRun, key: Key, rounds: Sequence[float]) -> float:
        """The run's level for a unit: the mean over its processes, or the log median of its rounds."""
        per = self.per_process(run, key)
        return level(per) if per else math.log(statistics.median(rounds))

    def noises(
        self, noises: Mapping[Key, RunNoise], current: SavedRun, reps: Sequence[SavedRun], rep_rounds: Sequence[dict]
    ) -> dict[Key, RunNoise]:
        """``noises`` (the history's, or a prior) with each loop's between-process spread pooled in (run_noise)."""
        out = dict(noises)
        for key in self.groups:
            cur = self.per_process(current, key)
            bases = [
                self.per_process(r, key) or {0: rr[key]} for r, rr in zip(reps, rep_rounds, strict=True) if key in rr
            ]
            if cur is None or not bases:
                continue
            found, s2, df = run_noise(cur, bases, noises.get(key))
            if found is not None and df >= MIN_DF:
                out[key], self.used[key] = found, (s2, df)
        return out

    def processes(self, run: SavedRun) -> int:
        """The run's worker processes (1 for a run saved without)."""
        return max([len(self.per_process(run, k) or {0: 0}) for k in self.groups] or [1])

    def notes(self, current: SavedRun, n_history: int) -> list[str]:
        """What the process part of the noise rested on (nothing when no loop had one)."""
        if not self.used:
            return []
        sds = sorted(100 * math.expm1(math.sqrt(s2)) for s2, _ in self.used.values())
        pooled = (
            f", pooled with the run-to-run noise of {n_history} run(s)" if n_history >= 3 else ", no history needed"
        )
        return [
            f"between-process noise: this run has {self.processes(current)} worker processes; {len(self.used)} loop(s) "
            f"are tested against the spread of their process levels (one process's SD {sds[0]:.1f}-{sds[-1]:.1f}%, "
            f">= {min(df for _, df in self.used.values())} df over this run and the baseline's{pooled}); a run's level "
            "is the mean over its processes"
        ]
