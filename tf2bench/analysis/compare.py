"""Baseline vs current run: which benchmarks got slower, beyond a threshold and beyond noise.

A regression needs all of: a slowdown larger than the threshold (time per sample, median
over rounds), a one-sided Mann-Whitney U test on the per-round figures with p < 0.01
(current slower than baseline) and, given a history of earlier runs, a change that stands
out from their run-to-run scatter, the loop's own or its workload's median loop's
(tf2bench.analysis.evidence). Repeats and seeds of a benchmark are pooled,
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

from tf2bench.analysis import evidence, noise, runs, shift
from tf2bench.analysis.evidence import BY, POOLED, Evidence, Key
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


def check_options(threshold_pct: float, target_pct: float, prior_pct: float | None, by: str) -> None:
    """BadInputError naming the option, for a limit that is no positive percentage or an unknown --by."""
    limits = {"--threshold": threshold_pct, "--target": target_pct}
    for name, value in [*limits.items(), *([("--prior-noise", prior_pct)] if prior_pct is not None else [])]:
        if not (value > 0 and math.isfinite(value)):
            raise BadInputError(f"{name} must be a positive percentage, got {value!r}")
    if by not in BY:
        raise BadInputError(f"unknown --by {by!r}; valid: {', '.join(BY)}")


@dataclass
class Sides:
    """Both runs' rounds per benchmark, the gate's units among the benchmarks both have, and what is left out."""

    base_all: dict[Key, list[float]]
    cur_all: dict[Key, list[float]]
    skipped: tuple[list[Key], list[Key]]  # per run: no fit to normalise against
    groups: dict[Key, list[Key]]  # unit -> its benchmarks

    @classmethod
    def read(cls, baseline: SavedRun, current: SavedRun, normalize: bool, by: str) -> Sides:
        (base_all, base_skip), (cur_all, cur_skip) = round_costs(baseline, normalize), round_costs(current, normalize)
        sides = cls(base_all, cur_all, (base_skip, cur_skip), evidence.units(base_all, cur_all, by))
        if not sides.groups:
            with_fit = " with a fit in the same run (--normalize needs fit in both runs)" if normalize else ""
            raise BadInputError(
                f"no common benchmarks{with_fit} between {baseline.path} ({benchmark_names(base_all)}) and "
                f"{current.path} ({benchmark_names(cur_all)})"
            )
        return sides


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
    with the history's (tf2bench.analysis.spread): with 3 or more processes a loop is gated without a history,
    and so is the workload test (tf2bench.analysis.shift).
    """
    check_options(threshold_pct, target_pct, prior_pct, by)
    sides = Sides.read(baseline, current, normalize, by)
    own, cur = evidence.pool(sides.base_all, sides.groups), evidence.pool(sides.cur_all, sides.groups)
    tested = len(history) >= noise.MIN_RUNS or bool(history and prior_pct)  # by runs: measured noise, or the prior
    reps = replicates(baseline, history) if pool_commit and tested else [baseline]
    levels = evidence.Levels(sides.groups, normalize, baseline, own)
    ev = evidence.gather(current, cur, levels, history, reps, alpha=alpha, prior_pct=prior_pct)
    rows = [
        verdict_row(k, ev, own[k], cur[k], normalize=normalize, limit=threshold_pct / 100, alpha=alpha, history=history)
        for k in sides.groups
    ]
    untestable = [(len(ev.base[k]), len(cur[k])) for k, r in zip(sides.groups, rows, strict=True)
                  if r["verdict"] == SLOWER_UNTESTABLE]  # fmt: skip
    repeats, processes = min(_repeats(baseline), _repeats(current)), ev.by_process.processes(current)
    notes = machine_warning(baseline, current)
    notes += rounds_notes(sides, untestable, repeats, processes, baseline, current, normalize, threshold_pct, alpha)
    table = pd.DataFrame(rows)
    alphas = (alpha, ev.run_alpha, len(ev.gated))
    notes += noise.notes(table, ev.noises, len(history), alphas, target_pct, repeats, processes)
    notes += ev.by_process.notes(current, len(history))
    notes += shift.notes(ev.shifts, ev.shift_alpha, len(ev.reps), threshold_pct)
    return Comparison(table, notes)


def verdict_row(
    key: Key,
    ev: Evidence,
    own: list[float],
    cur: list[float],
    *,
    normalize: bool,
    limit: float,
    alpha: float,
    history: Sequence[SavedRun],
) -> dict:
    """One unit's row: its change, tests and what it could detect, and the verdict they give.

    A slowdown beyond the threshold is a regression when its rounds' test (one-sided Mann-Whitney on the rounds of
    the baseline's runs vs the current's) gives p < alpha *and* it stands out from the run-to-run noise (its run p
    below Benjamini-Hochberg's cutoff) or its workload's loops slowed together. Without a run-to-run estimate:
    the rounds alone with no history given (--no-history), not gated on a cold start."""
    from scipy.stats import mannwhitneyu

    b, rn = ev.base[key], ev.noises.get(key)
    slowdown = math.expm1(ev.log_change[key])  # time per sample: + is slower
    within = noise.detectable_within(noise.within_sd(own, cur), len(own), len(cur), alpha)
    run_limit = noise.detectable_run(rn, ev.run_alpha, ev.n_base[key]) if rn else (math.inf if history else 0.0)
    workload = ev.shifts.get(key[0])
    row = {
        "benchmark": "/".join(key),
        "rounds": f"{len(b)}/{len(cur)}",
        "baseline": math.exp(-ev.base_level[key]),
        "current": 1.0 / statistics.median(cur),
        "unit": "x fit" if normalize else "samples/s",
        "change_pct": 100.0 * slowdown,
        "p_value": math.nan,
        "run_sd_pct": rn.pct if rn else math.nan,
        "run_p": math.nan,
        "shift_p": workload.p if workload else math.nan,
        "detects_pct": 100.0 * max(limit, within, run_limit),
        "within_detects_pct": 100.0 * within,
        "verdict": OK,
    }
    if key not in ev.gated:
        return {**row, "verdict": REFERENCE, "detects_pct": math.nan}
    if abs(slowdown) <= limit:
        return row
    slower = slowdown > 0
    side = 1 if slower else -1
    row["p_value"] = float(mannwhitneyu(cur, b, alternative="greater" if slower else "less").pvalue)
    if rn:
        row["run_p"] = ev.run_ps[side][key]
    shared = slower and key[0] in ev.shifted  # its workload's loops slowed together
    stands_out = math.isnan(row["run_p"]) or row["run_p"] <= ev.cutoff[side] or shared
    if row["p_value"] < alpha and math.isinf(run_limit) and not shared:
        row["verdict"] = NOT_GATED[slower]
    elif row["p_value"] < alpha:
        row["verdict"] = (REGRESSION if slower else FASTER) if stands_out else RUN_NOISE[slower]
    elif not slower:
        row["verdict"] = FASTER_NOISE
    else:
        row["verdict"] = SLOWER_NOISE if min_p_value(len(b), len(cur)) < alpha else SLOWER_UNTESTABLE
    return row


def machine_warning(baseline: SavedRun, current: SavedRun) -> list[str]:
    """A warning to read first when the two runs differ in what the figures depend on besides the code."""
    differ = envinfo.differences(baseline.machine, current.machine)
    if not differ:
        return []
    return [
        "WARNING: the two runs differ in what the figures depend on besides the code ("
        + "; ".join(differ)
        + "): an absolute change may come from that; --normalize removes only what scales every loop alike"
    ]


def rounds_notes(
    sides: Sides,
    untestable: list[tuple[int, int]],
    repeats: int,
    processes: int,
    baseline: SavedRun,
    current: SavedRun,
    normalize: bool,
    threshold_pct: float,
    alpha: float,
) -> list[str]:
    """What the rounds' test rested on: slowdowns too few rounds cannot test (``untestable``: their rounds, baseline
    and current), what only one run has, the settings that differ, the pooling over APIs, too few repeats."""
    notes = []
    if untestable:
        n, m = min(untestable)
        need = next(k for k in range(2, 100) if min_p_value(k, k) < alpha)
        notes.append(
            f"{len(untestable)} benchmark(s) slowed by more than {threshold_pct:g}% but cannot be tested: with "
            f"{n} vs {m} rounds the smallest p a Mann-Whitney test can give is {min_p_value(n, m):.3f}, not "
            f"< {alpha:g}. They are NOT counted as regressions. Give each side at least {need} rounds: run the "
            f"suite with --repeat N (rounds of repeats are pooled) or --rounds {need}."
        )
    only_base = [k for k in sides.base_all if k not in sides.cur_all]
    only_cur = [k for k in sides.cur_all if k not in sides.base_all]
    if only_base:
        notes.append(f"only in the baseline (not compared): {benchmark_names(only_base)}")
    if only_cur:
        notes.append(f"only in the current run (not compared): {benchmark_names(only_cur)}")
    for run, skipped in zip((baseline, current), sides.skipped, strict=True):
        if skipped:
            notes.append(f"{run.path}: no fit to normalise against for {benchmark_names(skipped)} (not compared)")
    notes += runs.setting_notes(baseline, current, normalize)
    pooled = [k for k in sides.groups if k[1] == POOLED]
    if pooled:
        notes.append(
            f"gated per loop: each loop's rounds are pooled over the model APIs ({len(pooled)} loop(s)), whose "
            "benchmarks ran minutes apart, so a load burst during one of them widens the spread instead of "
            "shifting the median; on a quiet, dedicated runner --by benchmark gates every benchmark alone"
        )
    if repeats < 3 and not pooled and processes < 3:  # processes spread a benchmark in time
        notes.append(
            f"{repeats} repeat(s) per benchmark: rounds of one repeat run back to back, so a load change between "
            "the two runs (or during fit's benchmark, with --normalize) shifts every round alike and the test cannot "
            "tell it from a code change. Gate on a quiet, dedicated runner and interleave with --repeat 3 or more."
        )
    return notes


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
