"""Baseline vs current run: which benchmarks got slower, beyond a threshold and beyond noise.

A regression needs all of: a slowdown larger than the threshold (time per sample, median
over rounds), a one-sided Mann-Whitney U test on the per-round figures with p < 0.01
(current slower than baseline) and, given a history of earlier runs, a change that stands
out from their run-to-run scatter, the loop's own or its workload's median loop's
(tf2bench.analysis.noise). Repeats and seeds of a benchmark are pooled,
so ``--repeat`` buys rounds. With ``normalize`` each round is expressed relative to
``fit`` of the same workload, api, run, repeat and seed: a uniformly slower machine
then changes nothing, which is what lets a baseline from another machine gate a run.

The gate's unit is the *loop* (``by="loop"``, the default): a workload's loop pools its
rounds over the model APIs, which compute the same function (the tests prove it). A
benchmark's rounds run back to back within seconds, so a load burst on a shared machine
shifts all of them alike and no test on them can tell it from a code change; the API
benchmarks of one loop run minutes apart, so pooled, a burst in one becomes spread the
test sees. ``by="benchmark"`` gates every benchmark alone (a quiet, dedicated runner).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from math import comb

import pandas as pd

from tf2bench.analysis import noise, runs, spread
from tf2bench.analysis.runs import SavedRun
from tf2bench.analysis.spread import round_costs  # per round: seconds per sample, or x fit's time (history reads it)
from tf2bench.errors import BadInputError
from tf2bench.measure import envinfo

DEFAULT_THRESHOLD_PCT = 10.0
DEFAULT_TARGET_PCT = 5.0  # the slowdown the repeat hint aims at
ALPHA = 0.01

REGRESSION = "REGRESSION"
SLOWER_NOISE = "slower, not significant"
SLOWER_UNTESTABLE = "slower, too few rounds"
FASTER = "faster"
FASTER_NOISE = "faster, not significant"
RUN_NOISE = {True: "slower, within run-to-run noise", False: "faster, within run-to-run noise"}
NOT_GATED = {True: "slower, not gated yet", False: "faster, not gated yet"}  # cold start: no run-to-run estimate
OK = "ok"
REFERENCE = "reference (fit)"

Key = tuple[str, str, str]  # workload, api, loop
BY = ("loop", "benchmark")
POOLED = "*"  # the api of a loop pooled over several model APIs


@dataclass
class Comparison:
    """The per-benchmark table plus what a reader must be told about it."""

    table: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> pd.DataFrame:
        return self.table[self.table["verdict"] == REGRESSION]


def min_p_value(n: int, m: int) -> float:
    """The smallest one-sided p an exact Mann-Whitney U test can return for samples of n and m."""
    return 1.0 / comb(n + m, n)


def _groups(base: dict[Key, list[float]], cur: dict[Key, list[float]], by: str) -> dict[Key, list[Key]]:
    """The gate's units among the benchmarks both runs have: a loop (its APIs pooled) or each benchmark alone."""
    if by == "benchmark":
        return {k: [k] for k in base if k in cur}
    apis: dict[tuple[str, str], list[str]] = defaultdict(list)
    for w, a, v in base:
        if (w, a, v) in cur:
            apis[(w, v)].append(a)
    return {(w, ns[0] if len(ns) == 1 else POOLED, v): [(w, a, v) for a in ns] for (w, v), ns in apis.items()}


def _pool(costs: dict[Key, list[float]], groups: dict[Key, list[Key]]) -> dict[Key, list[float]]:
    """Rounds per unit, for the units whose every benchmark the run has (like is compared with like)."""
    return {u: [x for k in ks for x in costs[k]] for u, ks in groups.items() if all(k in costs for k in ks)}


def lookback(baseline: SavedRun, current: SavedRun, candidates: Sequence[SavedRun]) -> list[SavedRun]:
    """The runs the run-to-run noise is read from: up to the baseline, same hardware and settings, oldest first."""
    same = [
        r
        for r in candidates
        if r.path.resolve() != current.path.resolve()
        and r.datetime <= baseline.datetime
        and runs.machine_of(r) == runs.machine_of(current)
        and not envinfo.differences(r.machine, current.machine)
    ]
    if not any(r.path.resolve() == baseline.path.resolve() for r in same):
        same.append(baseline)
    return sorted(same, key=lambda r: (r.datetime, runs.sort_key(r.path)))[-noise.LOOKBACK :]


def replicates(baseline: SavedRun, history: Sequence[SavedRun]) -> list[SavedRun]:
    """The baseline and the runs of its code in the history (same commit, clean trees, same preset), oldest
    first: like pyperf's several processes, several samples of one code; their mean is a steadier baseline."""
    if not baseline.commit or baseline.dirty:
        return [baseline]
    preset = baseline.suite.get("preset")
    same = [
        r
        for r in history
        if (r.commit, r.dirty, r.suite.get("preset")) == (baseline.commit, False, preset)
        and r.path.resolve() != baseline.path.resolve()
    ]
    return [*same, baseline]


def compare(
    baseline: SavedRun,
    current: SavedRun,
    threshold_pct: float = DEFAULT_THRESHOLD_PCT,
    normalize: bool = False,
    alpha: float = ALPHA,
    by: str = "loop",
    history: Sequence[SavedRun] = (),
    target_pct: float = DEFAULT_TARGET_PCT,
    pool_commit: bool = True,
    prior_pct: float | None = None,
) -> Comparison:
    """Verdicts per loop (pooled over model APIs) or per benchmark; BadInputError when nothing can be compared.

    history: earlier runs of the same machine, baseline included (see lookback); with >= noise.MIN_RUNS of
    them a regression must also stand out from the run-to-run scatter (tf2bench.analysis.noise), and the
    baseline is the mean of its commit's runs among them (see replicates; pool_commit=False: the baseline alone).
    A loop the history cannot measure yet (cold start) is not gated (NOT_GATED: rounds alone cry wolf), or with
    prior_pct tested against that stated run-to-run noise (noise.prior). No history at all: the rounds decide.
    A run saved with --processes N is its processes' mean, and their spread is a noise estimate of its own, pooled
    with the history's (tf2bench.analysis.spread): with 3 or more processes a loop is gated without a history.
    """
    from scipy.stats import mannwhitneyu

    limits = {"--threshold": threshold_pct, "--target": target_pct}
    for name, value in [*limits.items(), *([("--prior-noise", prior_pct)] if prior_pct is not None else [])]:
        if not (value > 0 and math.isfinite(value)):
            raise BadInputError(f"{name} must be a positive percentage, got {value!r}")
    if by not in BY:
        raise BadInputError(f"unknown --by {by!r}; valid: {', '.join(BY)}")
    base_all, base_skip = round_costs(baseline, normalize)
    cur_all, cur_skip = round_costs(current, normalize)
    only_base = [k for k in base_all if k not in cur_all]
    only_cur = [k for k in cur_all if k not in base_all]
    groups = _groups(base_all, cur_all, by)
    own, cur = _pool(base_all, groups), _pool(cur_all, groups)
    pooled = {baseline.path.resolve(): own}  # each run's rounds per unit, read once (history holds the baseline)

    def pooled_of(run: SavedRun) -> dict[Key, list[float]]:
        path = run.path.resolve()
        if path not in pooled:
            pooled[path] = _pool(round_costs(run, normalize)[0], groups)
        return pooled[path]

    tested = len(history) >= noise.MIN_RUNS or bool(history and prior_pct)  # by runs: measured noise, or the prior
    reps = replicates(baseline, history) if pool_commit and tested else [baseline]
    rep_costs = [pooled_of(r) for r in reps]
    base = {k: [x for rc in rep_costs if k in rc for x in rc[k]] for k in own}  # the rounds of the baseline's runs
    common = list(groups)
    notes: list[str] = []
    if not common:
        what = (
            "benchmarks with a fit in the same run (--normalize needs fit in both runs)" if normalize else "benchmarks"
        )
        listed = (benchmark_names(base_all), benchmark_names(cur_all))
        raise BadInputError(f"no common {what} between {baseline.path} ({listed[0]}) and {current.path} ({listed[1]})")
    by_process = spread.Runs(normalize, groups)  # runs saved with --processes N: the mean over their processes
    levels = [{k: by_process.level(h, k, v) for k, v in pooled_of(h).items()} for h in history]
    noises = noise.estimate(levels)
    rep_levels = [{k: by_process.level(r, k, v) for k, v in rc.items()} for r, rc in zip(reps, rep_costs, strict=True)]
    n_base = {k: sum(k in lv for lv in rep_levels) for k in common}
    base_level = {k: statistics.fmean(lv[k] for lv in rep_levels if k in lv) for k in common}
    gated = [k for k in common if not (normalize and k[2] == "fit")]
    if history and prior_pct:  # cold start: a loop without its own estimate is tested against the stated prior
        noises = {**noise.prior(levels, [k for k in gated if k not in noises], prior_pct), **noises}
    noises = by_process.noises(noises, current, reps, rep_costs)  # the between-process spread, pooled in
    run_alpha = alpha / max(1, len(gated))  # Bonferroni: the level one loop changing alone must reach ("detects")
    log_change = {k: by_process.level(current, k, cur[k]) - base_level[k] for k in common}  # + is slower
    run_ps = {  # one-sided run-to-run p of every gated loop, slower and faster, for Benjamini-Hochberg over loops
        d: {k: noise.run_p_value(d * log_change[k], noises[k], n_base[k]) for k in gated if k in noises}
        for d in (1, -1)
    }
    cutoff = {d: noise.bh_cutoff(list(ps.values()), alpha, len(gated)) for d, ps in run_ps.items()}
    # a workload whose loops slowed together (absolute only: normalised, that is fit's own change)
    cur_levels = {k: log_change[k] + base_level[k] for k in gated}
    shifts = {} if normalize else noise.workload_shifts(levels, rep_levels, cur_levels)
    shift_alpha = alpha / max(1, len(shifts))  # Bonferroni over the workloads
    shifted = {w for w, sh in shifts.items() if sh.p <= shift_alpha}
    rows, untestable = [], []
    limit = threshold_pct / 100.0
    for key in common:
        b, c = base[key], cur[key]
        unit = "x fit" if normalize else "samples/s"
        slowdown = math.expm1(log_change[key])  # time per sample: + is slower
        rn = noises.get(key)
        within = noise.detectable_within(noise.within_sd(own[key], c), len(own[key]), len(c), alpha)
        # no estimate: rounds alone with no history given (--no-history); a cold start without a prior is not gated
        run_limit = noise.detectable_run(rn, run_alpha, n_base[key]) if rn else (math.inf if history else 0.0)
        row = {
            "benchmark": "/".join(key),
            "rounds": f"{len(b)}/{len(c)}",
            "baseline": math.exp(-base_level[key]),
            "current": 1.0 / statistics.median(c),
            "unit": unit,
            "change_pct": 100.0 * slowdown,
            "p_value": math.nan,
            "run_sd_pct": rn.pct if rn else math.nan,
            "run_p": math.nan,
            "shift_p": shifts[key[0]].p if key[0] in shifts else math.nan,
            "detects_pct": 100.0 * max(limit, within, run_limit),
            "within_detects_pct": 100.0 * within,
            "verdict": OK,
        }
        if normalize and key[2] == "fit":
            row["verdict"] = REFERENCE
            row["detects_pct"] = math.nan
        elif abs(slowdown) > limit:
            slower = slowdown > 0
            row["p_value"] = float(mannwhitneyu(c, b, alternative="greater" if slower else "less").pvalue)
            if rn:
                row["run_p"] = run_ps[1 if slower else -1][key]
            shared = slower and key[0] in shifted  # its workload's loops slowed together
            stands_out = math.isnan(row["run_p"]) or row["run_p"] <= cutoff[1 if slower else -1] or shared
            if row["p_value"] < alpha and math.isinf(run_limit) and not shared:
                row["verdict"] = NOT_GATED[slower]
            elif row["p_value"] < alpha:
                row["verdict"] = (REGRESSION if slower else FASTER) if stands_out else RUN_NOISE[slower]
            elif not slower:
                row["verdict"] = FASTER_NOISE
            elif min_p_value(len(b), len(c)) < alpha:
                row["verdict"] = SLOWER_NOISE
            else:
                row["verdict"] = SLOWER_UNTESTABLE
                untestable.append((key, len(b), len(c)))
        rows.append(row)
    table = pd.DataFrame(rows)
    if untestable:
        n, m = min((x[1], x[2]) for x in untestable)
        need = next(k for k in range(2, 100) if min_p_value(k, k) < alpha)
        notes.append(
            f"{len(untestable)} benchmark(s) slowed by more than {threshold_pct:g}% but cannot be tested: with "
            f"{n} vs {m} rounds the smallest p a Mann-Whitney test can give is {min_p_value(n, m):.3f}, not "
            f"< {alpha:g}. They are NOT counted as regressions. Give each side at least {need} rounds: run the "
            f"suite with --repeat N (rounds of repeats are pooled) or --rounds {need}."
        )
    if only_base:
        notes.append(f"only in the baseline (not compared): {benchmark_names(only_base)}")
    if only_cur:
        notes.append(f"only in the current run (not compared): {benchmark_names(only_cur)}")
    for run, skipped in ((baseline, base_skip), (current, cur_skip)):
        if skipped:
            notes.append(f"{run.path}: no fit to normalise against for {benchmark_names(skipped)} (not compared)")
    notes += runs.setting_notes(baseline, current, normalize)
    pooled = [k for k in common if k[1] == POOLED]
    if pooled:
        notes.append(
            f"gated per loop: each loop's rounds are pooled over the model APIs ({len(pooled)} loop(s)), whose "
            "benchmarks ran minutes apart, so a load burst during one of them widens the spread instead of "
            "shifting the median; on a quiet, dedicated runner --by benchmark gates every benchmark alone"
        )
    repeats = min(_repeats(baseline), _repeats(current))
    if repeats < 3 and not pooled and by_process.processes(current) < 3:  # processes spread a benchmark in time
        notes.append(
            f"{repeats} repeat(s) per benchmark: rounds of one repeat run back to back, so a load change between "
            "the two runs (or during fit's benchmark, with --normalize) shifts every round alike and the test cannot "
            "tell it from a code change. Gate on a quiet, dedicated runner and interleave with --repeat 3 or more."
        )
    alphas = (alpha, run_alpha, len(gated))
    notes += noise.notes(table, noises, len(history), alphas, target_pct, repeats, by_process.processes(current))
    notes += by_process.notes(current, len(history))
    notes += noise.shift_notes(shifts, shift_alpha, len(reps), threshold_pct)
    differ = envinfo.differences(baseline.machine, current.machine)
    if differ:  # the figures depend on these as much as on the code: say so before anyone reads a verdict
        notes.insert(
            0,
            "WARNING: the two runs differ in what the figures depend on besides the code ("
            + "; ".join(differ)
            + "): an absolute change may come from that; --normalize removes only what scales every loop alike",
        )
    return Comparison(table, notes)


def _repeats(run: SavedRun) -> int:
    """The fewest repeats any benchmark of the run has."""
    seen: dict[Key, set] = defaultdict(set)
    for bench in run.benchmarks:
        info = bench["extra_info"]
        seen[(info["workload"], info["api"], info["loop"])].add(info.get("repeat", 0))
    return min(len(v) for v in seen.values())


def benchmark_names(keys: object) -> str:
    return ", ".join("/".join(k) for k in keys) or "none"


def formatted(cmp: Comparison) -> pd.DataFrame:
    """The table as printed: baseline, current, change, p-value, verdict."""
    t = cmp.table
    fmt = [(lambda v, u=u: f"{v:.3f}x" if u == "x fit" else f"{v:,.1f}/s") for u in t["unit"]]
    return pd.DataFrame(
        {
            "benchmark": t["benchmark"],
            "rounds b/c": t["rounds"],
            "baseline": [f(v) for f, v in zip(fmt, t["baseline"], strict=True)],
            "current": [f(v) for f, v in zip(fmt, t["current"], strict=True)],
            "time change": [f"{v:+.1f}%" for v in t["change_pct"]],
            "p-value": ["-" if math.isnan(p) else f"{p:.4f}" for p in t["p_value"]],
            "run sd": ["-" if math.isnan(v) else f"{v:.1f}%" for v in t["run_sd_pct"]],
            "p run": ["-" if math.isnan(p) else f"{p:.2g}" for p in t["run_p"]],
            "p workload": ["-" if math.isnan(p) else f"{p:.2g}" for p in t["shift_p"]],
            "detects": [
                "-" if math.isnan(v) else "not gated" if math.isinf(v) else f">= {v:.0f}%" for v in t["detects_pct"]
            ],
            "verdict": t["verdict"],
        }
    )
