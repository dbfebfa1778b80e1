"""Run-to-run noise and power: what a gate on two runs can tell, given the runs before them.

Rounds of one process are not independent samples of what changes from one process to the next
(XLA's compiled code, thread placement, memory layout, the machine's state that minute): two runs of
the same code differ by more than their rounds' spread suggests, so a test on rounds alone raises
false alarms. The gate therefore also tests a change against the scatter of the *runs* before it on
the same machine, as Conbench's lookback z-score does:

- a loop's level in a run is the log of its median time per sample (rounds pooled over model APIs);
- its run-to-run SD comes from the successive differences of the earlier runs' levels (the mean
  square successive difference: a single earlier step in the history does not inflate it);
- loops of one workload share a prior (the median of their variances, ``PRIOR_DF`` pseudo-runs):
  a moderated t (Smyth 2004), so a loop with few runs borrows strength from its neighbours;
- the baseline is the mean level of the runs of its commit in the history (one run or several: pyperf's
  several processes), so the change has variance sd^2 (1 + 1/n), 2 sd^2 against a lone baseline run;
  it is tested one-sided with Student's t, Benjamini-Hochberg over the loops of the comparison (a loop
  slowed alone needs p < alpha / loops: the family-wise false-alarm rate stays below alpha);
- a workload's loops slowed together (a model change, its data, the machine) are tested on the
  workload's median loop (tf2bench.analysis.shift), whose run-to-run scatter is smaller than any one
  loop's: Bonferroni over the workloads at alpha.

Cold start (fewer than ``MIN_RUNS`` runs up to the baseline, or a loop new to the history): there is no
estimate of the machine's own run-to-run noise, and the rounds alone cry wolf (docs/gate.md), so such a loop
is not gated (compare.NOT_GATED; a warning says how many more runs are needed). ``--prior-noise PCT`` gates it
against a run-to-run noise the user states instead (``prior``): the larger of that and what the one or two
runs so far show, taken as known (a normal test, no t tail). Its false-alarm rate is the gate's as long as
the machine is no noisier than stated, which no default could promise (docs/gate.md measures why).

Power ("could detect >= X%"): the slowdown found with probability ``POWER`` at the gate's alpha,
from the rounds' spread (within-run) and from the run-to-run SD, whichever is larger. No TensorFlow.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str, str]  # workload, api, loop

MIN_RUNS = 3  # earlier runs needed for a run-to-run estimate (two successive differences)
PRIOR_DF = 4.0  # pseudo-runs of the workload's pooled variance a loop's own estimate is shrunk towards
POWER = 0.8  # "could detect": the slowdown the gate flags four times in five
LOOKBACK = 20  # earlier runs read, newest first (older ones describe a machine that may have changed)
MAD_TO_SD = 1.4826  # MAD x this = standard deviation, for normal noise
MW_EFFICIENCY = 3.0 / math.pi  # Mann-Whitney's asymptotic efficiency vs the t test for normal data (0.955)


@dataclass(frozen=True)
class RunNoise:
    """A loop's run-to-run scatter: SD of a run's log median time per sample, with its degrees of freedom."""

    sd: float
    df: float
    runs: int
    prior: bool = False  # the stated cold-start prior (or more, when the runs so far scatter more): not measured

    @property
    def pct(self) -> float:
        return 100.0 * math.expm1(self.sd)


def level(costs: Sequence[float]) -> float:
    """A run's level for a loop: log of the median time per sample (or x fit's time) over its rounds."""
    return math.log(statistics.median(costs))


def mssd(series: Sequence[float]) -> tuple[float, float]:
    """Run-to-run variance from successive differences (the mean square successive difference), and its df."""
    diffs = [b - a for a, b in zip(series, series[1:], strict=False)]
    var = sum(d * d for d in diffs) / (2 * len(diffs))  # E[(y2 - y1)^2] = 2 var for independent runs
    return var, 2.0 * len(diffs) / 3.0  # the MSSD's efficiency vs the sample variance is ~2/3: count fewer runs


def estimate(levels: Sequence[Mapping[Key, float]]) -> dict[Key, RunNoise]:
    """Run-to-run noise per loop from the earlier runs' levels (oldest first); loops with < MIN_RUNS runs left out."""
    own: dict[Key, tuple[float, float, int]] = {}
    for key in {k for lv in levels for k in lv}:
        series = [lv[key] for lv in levels if key in lv]
        if len(series) < MIN_RUNS:
            continue
        var, df = mssd(series)
        own[key] = (var, df, len(series))
    prior: dict[str, list[float]] = defaultdict(list)
    for (workload, _, _), (var, _, _) in own.items():
        prior[workload].append(var)
    out = {}
    for key, (var, df, n) in own.items():
        pooled = statistics.median(prior[key[0]])
        moderated = (PRIOR_DF * pooled + df * var) / (PRIOR_DF + df)
        out[key] = RunNoise(math.sqrt(moderated), df + PRIOR_DF, n)
    return out


def prior(levels: Sequence[Mapping[Key, float]], keys: Sequence[Key], prior_pct: float) -> dict[Key, RunNoise]:
    """The cold-start noise of each of ``keys``: the stated prior, or what the runs so far show when larger.

    One or two earlier runs give a run-to-run variance with one or two degrees of freedom: far too uncertain to
    test against, but a larger one is a warning that this machine is noisier than the prior (the max keeps the
    test conservative). Taken as known (df infinite: a normal test): the prior is an assumption, stated.
    """
    base = math.log1p(prior_pct / 100.0)
    out = {}
    for key in keys:
        series = [lv[key] for lv in levels if key in lv]
        seen = math.sqrt(mssd(series)[0]) if len(series) >= 2 else 0.0
        out[key] = RunNoise(max(base, seen), math.inf, len(series), prior=True)
    return out


def run_p_value(change_log: float, noise: RunNoise, n_base: int = 1) -> float:
    """One-sided p that a run of the same code differs by change_log or more (current slower) from the mean of
    n_base runs of the baseline's code: variance sd^2 (1 + 1/n_base), 2 sd^2 for a lone baseline run."""
    from scipy.stats import t

    return float(t.sf(change_log / (noise.sd * math.sqrt(1.0 + 1.0 / n_base)), noise.df))


def bh_cutoff(p_values: Sequence[float], alpha: float, m: int) -> float:
    """Benjamini-Hochberg over the m loops of a comparison: p-values <= the returned cutoff are discoveries.

    When no loop changed (an A/A pair) this keeps the chance of any false alarm <= alpha, as Bonferroni does;
    when many changed (a model change, a slower machine) it finds more of them. Loops without a p-value
    (no run-to-run estimate) count in m, so the correction never weakens by leaving them out.
    """
    ranked = sorted(p for p in p_values if not math.isnan(p))
    passed = [p for k, p in enumerate(ranked, 1) if p <= k * alpha / max(1, m)]
    return passed[-1] if passed else -1.0


def within_sd(base: Sequence[float], cur: Sequence[float]) -> float:
    """Robust SD of log round times about each side's own median (the rounds' spread, both sides pooled)."""
    devs = []
    for side in (base, cur):
        logs = [math.log(x) for x in side]
        mid = statistics.median(logs)
        devs += [abs(v - mid) for v in logs]
    return MAD_TO_SD * statistics.median(devs)


def detectable_within(sd: float, n: int, m: int, alpha: float) -> float:
    """The slowdown (fraction) a Mann-Whitney test on n vs m rounds finds with probability POWER."""
    from scipy.stats import norm

    z = norm.ppf(1 - alpha) + norm.ppf(POWER)
    return math.expm1(z * sd * math.sqrt(1 / n + 1 / m) / math.sqrt(MW_EFFICIENCY))


def detectable_run(noise: RunNoise, alpha: float, n_base: int = 1) -> float:
    """The slowdown (fraction) the run-to-run test finds with probability POWER at (corrected) alpha."""
    from scipy.stats import t

    q = t.ppf(1 - alpha, noise.df) + t.ppf(POWER, noise.df)
    return math.expm1(q * noise.sd * math.sqrt(1.0 + 1.0 / n_base))


def repeats_for(target: float, detect_within: float, repeats: int) -> int | None:
    """--repeat that brings the within-run detectable slowdown to target (rounds grow with repeats); None: never."""
    if target <= 0 or detect_within <= 0:
        return None
    ratio = math.log1p(detect_within) / math.log1p(target)
    return max(repeats, math.ceil(repeats * ratio * ratio))


def processes_for(target: float, detect_run: float, processes: int) -> int:
    """--processes that brings a loop limited by run-to-run noise to ``target`` (fractions), if that noise is what
    differs between processes (tf2bench.analysis.spread): a run's level then scatters as 1/sqrt(processes)."""
    ratio = math.log1p(detect_run) / math.log1p(target)
    return max(processes + 1, math.ceil(processes * ratio * ratio))


def cold_start(noises: Mapping[Key, RunNoise], n_history: int, ungated: int) -> str:
    """The cold-start warning ("" when every gated loop's noise is measured): what is gated, what is needed."""
    priors = [n for n in noises.values() if n.prior]
    if not (priors or ungated):
        return ""
    if n_history < MIN_RUNS:
        need = (
            f"{n_history} run(s) of this machine up to the baseline, {MIN_RUNS} needed to measure its run-to-run "
            f"noise: {MIN_RUNS - n_history} more main run(s)"
        )
    else:
        need = f"loop(s) new to the history (fewer than {MIN_RUNS} runs of them)"
    if ungated:
        return (
            f"WARNING: not gated yet: {need}. {ungated} loop(s) cannot fail the gate (their slowdowns are listed "
            "as 'not gated yet'): rounds alone cry wolf between runs (docs/gate.md). --prior-noise PCT gates them "
            "against a run-to-run noise you state"
        )
    lo, hi = min(n.pct for n in priors), max(n.pct for n in priors)
    sd = f"{lo:.0f}%" if hi - lo < 0.5 else f"{lo:.0f}-{hi:.0f}%"
    return (
        f"WARNING: gated against a stated prior: {need}. {len(priors)} loop(s) tested against a run-to-run noise "
        f"of {sd} (--prior-noise, or what the runs so far show where larger): a false alarm if this machine is "
        "noisier; only slowdowns beyond column detects fail the gate"
    )


def notes(
    table: Any,
    noises: dict,
    n_history: int,
    alphas: tuple[float, float, int],
    target: float,
    repeats: int,
    processes: int = 1,
) -> list[str]:
    """What the run-to-run test rested on, and what a pass means: the smallest slowdown each loop could show.
    ``processes``: the current run's worker processes (a run saved with --processes N; spread.py)."""
    alpha, run_alpha, m = alphas
    if not n_history and not noises:
        return [
            f"no run-to-run noise estimate: {n_history} run(s) of this machine up to the baseline (needs "
            f"{MIN_RUNS}; see --history). These verdicts test rounds only, and two runs of the same code differ "
            "by more than their rounds suggest (docs/gate.md measures it): keep earlier runs beside the baseline"
        ]
    ungated = int((table["detects_pct"] == math.inf).sum())  # compare: a cold start without a prior
    measured = {"/".join(k): n for k, n in noises.items() if not n.prior}
    named = [r for r in table.itertuples() if r.benchmark in measured]
    out = [warning] if (warning := cold_start(noises, n_history, ungated)) else []
    if not noises:
        return out
    if any(n.runs or n.prior for n in noises.values()):  # (worker processes' spread alone: see spread.py's note)
        out.append(
            f"run-to-run noise from {max(n.runs for n in noises.values())} run(s) of this machine up to the baseline: "
            f"a regression must also stand out from it (one-sided {'t' if measured else 'normal test'} on the run "
            f"medians, Benjamini-Hochberg at {alpha:g} over {m} loops: a loop slowed alone needs p < {run_alpha:.2g}); "
            f"{len(named)} of {len(table)} loop(s) have an estimate"
        )
    gated = table[table["detects_pct"].notna() & (table["detects_pct"] < math.inf)]
    slow = gated[gated["detects_pct"] > target]
    if len(slow):
        by_rounds = slow[slow["within_detects_pct"] >= slow["detects_pct"] - 1e-9]
        by_runs = slow.drop(by_rounds.index)
        tips = []
        if len(by_rounds):
            need = max(repeats_for(target / 100, w / 100, repeats) or 0 for w in by_rounds["within_detects_pct"])
            tips.append(f"{len(by_rounds)} limited by the rounds' spread: --repeat {need} on both runs")
        if len(by_runs):
            need = max(processes_for(target / 100, d / 100, processes) for d in by_runs["detects_pct"])
            tips.append(
                f"{len(by_runs)} limited by run-to-run noise ({', '.join(by_runs['benchmark'])}): more repeats do not "
                f"help; --processes {need} on both runs would (at most: if that noise is what differs between "
                "processes, a run's level scatters as 1/sqrt(N), and its estimate gains degrees of freedom), or a "
                "quieter runner"
            )
        out.append(f"{len(slow)} loop(s) could not detect a {target:g}% slowdown (column detects): " + "; ".join(tips))
    return out
