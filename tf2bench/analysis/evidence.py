"""What compare's verdicts rest on besides the rounds' test: the gate's units, each unit's level in every run read,
the run-to-run noise, and the run-to-run tests on it.

- A unit is a loop with its rounds pooled over the model APIs both runs have (``by="loop"``), or one benchmark.
- A run's level for a unit is the log of its median time per sample, or for a run saved with ``--processes N`` the
  mean over its processes of each process's (tf2bench.analysis.spread); the baseline's level is the mean over the
  runs of its commit (compare.replicates).
- A loop's run-to-run noise is the history's (noise.estimate), a stated prior on a cold start (noise.prior), with the
  between-process spread of runs saved with worker processes pooled in (spread.Runs.noises).
- Each loop's change is tested one-sided against that noise, Benjamini-Hochberg over the loops (noise.bh_cutoff); a
  workload's loops slowing together, on its median loop (tf2bench.analysis.shift), Bonferroni over the workloads.

Reads saved JSON only: no TensorFlow.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from tf2bench.analysis import noise, shift, spread
from tf2bench.analysis.runs import SavedRun
from tf2bench.analysis.spread import round_costs

Key = tuple[str, str, str]  # workload, api, loop
BY = ("loop", "benchmark")
POOLED = "*"  # the api of a loop pooled over several model APIs


def units(base: dict[Key, list[float]], cur: dict[Key, list[float]], by: str) -> dict[Key, list[Key]]:
    """The gate's units among the benchmarks both runs have: a loop (its APIs pooled) or each benchmark alone."""
    if by == "benchmark":
        return {k: [k] for k in base if k in cur}
    apis: dict[tuple[str, str], list[str]] = defaultdict(list)
    for workload, api, loop in base:
        if (workload, api, loop) in cur:
            apis[(workload, loop)].append(api)
    return {
        (workload, names[0] if len(names) == 1 else POOLED, loop): [(workload, api, loop) for api in names]
        for (workload, loop), names in apis.items()
    }


def pool(costs: dict[Key, list[float]], groups: dict[Key, list[Key]]) -> dict[Key, list[float]]:
    """Rounds per unit, for the units whose every benchmark the run has (like is compared with like)."""
    return {u: [x for k in ks for x in costs[k]] for u, ks in groups.items() if all(k in costs for k in ks)}


@dataclass
class Evidence:
    """Per gate unit: the baseline's rounds and level, the change, its noise and run-to-run p-values."""

    reps: list[SavedRun]  # the runs the baseline is the mean of: its commit's, the baseline last
    base: dict[Key, list[float]]  # their rounds, pooled
    n_base: dict[Key, int]  # how many of them have the unit
    base_level: dict[Key, float]
    log_change: dict[Key, float]  # the current run's level minus the baseline's: + is slower
    gated: list[Key]  # the units that can fail the gate (normalised, fit is the reference)
    noises: dict[Key, noise.RunNoise]  # run-to-run noise, for the units that have an estimate
    run_alpha: float  # Bonferroni: the level one loop changing alone must reach (its "detects")
    run_ps: dict[int, dict[Key, float]]  # one-sided run-to-run p: +1 slower, -1 faster
    cutoff: dict[int, float]  # Benjamini-Hochberg's over the gated loops, per direction
    shifts: dict[str, shift.Shift]  # the workload test, per workload it could run on
    shift_alpha: float  # Bonferroni over the workloads
    by_process: spread.Runs

    @property
    def shifted(self) -> set[str]:
        """The workloads whose loops slowed together."""
        return {w for w, sh in self.shifts.items() if sh.p <= self.shift_alpha}


class Levels:
    """Each run's rounds and level per unit, read once per run (the history holds the baseline)."""

    def __init__(self, groups: dict[Key, list[Key]], normalize: bool, baseline: SavedRun, own: dict) -> None:
        self.groups, self.normalize = groups, normalize
        self.rounds_by_path = {baseline.path.resolve(): own}
        self.by_process = spread.Runs(normalize, groups)  # runs saved with --processes N: the mean over them

    def rounds(self, run: SavedRun) -> dict[Key, list[float]]:
        path = run.path.resolve()
        if path not in self.rounds_by_path:
            self.rounds_by_path[path] = pool(round_costs(run, self.normalize)[0], self.groups)
        return self.rounds_by_path[path]

    def of(self, run: SavedRun) -> dict[Key, float]:
        return {k: self.by_process.level(run, k, v) for k, v in self.rounds(run).items()}

    def with_processes(self, run: SavedRun, levels: dict[Key, float]) -> shift.RunLevels:
        return shift.RunLevels(levels, self.by_process.process_levels(run))


def gather(
    current: SavedRun,
    cur: dict[Key, list[float]],
    levels: Levels,
    history: Sequence[SavedRun],
    reps: list[SavedRun],
    *,
    alpha: float,
    prior_pct: float | None,
) -> Evidence:
    """The evidence for every unit of ``levels.groups``: ``cur`` the current run's rounds per unit, ``history`` the
    runs the run-to-run noise is read from, ``reps`` the runs the baseline is the mean of."""
    normalize, by_process = levels.normalize, levels.by_process
    rep_rounds = [levels.rounds(r) for r in reps]
    base = {k: [x for rr in rep_rounds if k in rr for x in rr[k]] for k in rep_rounds[-1]}  # [-1]: the baseline
    past = [levels.of(h) for h in history]
    rep_levels = [levels.of(r) for r in reps]
    common = list(levels.groups)
    n_base = {k: sum(k in lv for lv in rep_levels) for k in common}
    base_level = {k: statistics.fmean(lv[k] for lv in rep_levels if k in lv) for k in common}
    gated = [k for k in common if not (normalize and k[2] == "fit")]
    noises = noise.estimate(past)
    if history and prior_pct:  # cold start: a loop without its own estimate is tested against the stated prior
        noises = {**noise.prior(past, [k for k in gated if k not in noises], prior_pct), **noises}
    noises = by_process.noises(noises, current, reps, rep_rounds)  # the between-process spread, pooled in
    log_change = {k: by_process.level(current, k, cur[k]) - base_level[k] for k in common}
    run_ps = {  # one-sided run-to-run p of every gated loop, slower and faster, for Benjamini-Hochberg over loops
        d: {k: noise.run_p_value(d * log_change[k], noises[k], n_base[k]) for k in gated if k in noises}
        for d in (1, -1)
    }
    shifts = {}
    if not normalize:  # a workload's loops slowed together (normalised, that is fit's own change: it cancels)
        now = levels.with_processes(current, {k: log_change[k] + base_level[k] for k in gated})
        shifts = shift.workload_shifts(
            [levels.with_processes(h, lv) for h, lv in zip(history, past, strict=True)],
            [levels.with_processes(r, lv) for r, lv in zip(reps, rep_levels, strict=True)],
            now,
        )
    return Evidence(
        reps=reps,
        base=base,
        n_base=n_base,
        base_level=base_level,
        log_change=log_change,
        gated=gated,
        noises=noises,
        run_alpha=alpha / max(1, len(gated)),
        run_ps=run_ps,
        cutoff={d: noise.bh_cutoff(list(ps.values()), alpha, len(gated)) for d, ps in run_ps.items()},
        shifts=shifts,
        shift_alpha=alpha / max(1, len(shifts)),
        by_process=by_process,
    )
