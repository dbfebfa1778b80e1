"""The search of ``tf2bench bisect``: which commit to measure next, and whether a measured commit is as fast as GOOD or
as slow as BAD, with the gate's statistics. No git and no TensorFlow here: the caller measures (tf2bench.bisect runs
``pytest bench`` in a worktree; the tests pass a fake), this module decides.

It assumes one step, as asv's ``find`` does: every commit before the first bad one runs at GOOD's level, every one
from it on at BAD's. The statistics are the gate's (docs/gate.md), applied to runs made in this one session:

- a run's level for a loop is the log of its median time per sample, the loop's rounds pooled over the model APIs
  (``noise.level`` of ``compare``'s loop);
- the ends, GOOD and BAD, are measured ``ends_runs`` times each, interleaved. A loop has the step when BAD is slower
  than GOOD by more than the threshold, its rounds say so (one-sided Mann-Whitney, p < alpha) and its run levels do
  (one-sided Student t against the scatter of each end's repeated runs, Benjamini-Hochberg over the loops). No such
  loop: the slowdown is not reproducible here;
- a commit's score is the mean, over the loops with the step, of its runs' levels; the run-to-run SD of a score is
  the pooled SD of the scores of every commit measured more than once in the session (the ends, re-measured probes);
- a probe is *bad* when it is slower than GOOD (one-sided t, p < alpha) and within ``MARGIN`` of the step from BAD's
  level (position >= 0.75, 0 being GOOD's level and 1 BAD's), *good* the other way round: significant against one
  end and near the other, as the gate wants a change both significant and beyond a practical threshold. Else it is
  *ambiguous* and measured again, up to ``max_runs`` runs, then the answer is "cannot tell" rather than a guess. The
  margin, not a test against the near end, decides "near": a machine drifting by a few percent between the ends'
  runs and a probe's must not make a probe at BAD's level look "between" (seen here: a probe 2.8% faster than BAD at
  p 0.006, the step 19%), while a run that a load burst slowed half way (seen: position 0.68) is measured again.
  Both tests significant at a middle position is said (between the two levels: more than one step?). A call is
  wrong only through a test at alpha, so a session of N looks errs with probability <= N x alpha (when the noise is
  what its runs show).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from tf2bench.analysis import compare, evidence, noise
from tf2bench.analysis.runs import SavedRun

Key = tuple[str, str, str]  # workload, api ("*": pooled over several), loop
GOOD, BAD, AMBIGUOUS = "good", "bad", "ambiguous"
MARGIN = 0.25  # a probe is at an end's level when within this share of the step from it
FOUND, NOT_REPRODUCIBLE, CANNOT_TELL = "found", "not reproducible", "cannot tell"


class MeasureError(Exception):
    """A commit could not be measured (its suite failed, saved nothing, or lacks a loop); the message says why."""


@dataclass(frozen=True)
class Run:
    """One run of one commit: each loop's per-round cost (seconds per sample; higher is slower)."""

    rounds: dict[Key, list[float]]
    path: Path | None = None
    note: str = ""  # e.g. "pytest exit 1 (one test failed): see <log>"

    def level(self, key: Key) -> float:
        if not self.rounds.get(key):
            raise MeasureError(f"{self.path or 'a run'} has no rounds of {'/'.join(key)}")
        return noise.level(self.rounds[key])


def loop_rounds(run: SavedRun) -> dict[Key, list[float]]:
    """A saved run's rounds per loop, as compare gates a loop: absolute, pooled over the model APIs."""
    costs, _ = compare.round_costs(run, normalize=False)
    return evidence.pool(costs, evidence.units(costs, costs, "loop"))


def pooled_sd(groups: Iterable[Sequence[float]]) -> tuple[float, int]:
    """SD of replicates about their own group's mean, pooled over groups, and its degrees of freedom."""
    ss, df = 0.0, 0
    for g in groups:
        if len(g) >= 2:
            m = statistics.fmean(g)
            ss += sum((x - m) ** 2 for x in g)
            df += len(g) - 1
    return (math.sqrt(ss / df) if df else math.nan), df


def t_slower(change: float, sd: float, df: int, n_a: int, n_b: int) -> float:
    """One-sided p that the mean of n_b runs exceeds the mean of n_a runs of the same code by ``change`` (log)."""
    return t_sf(change, sd * math.sqrt(1.0 / n_a + 1.0 / n_b), df)


def t_sf(change: float, se: float, df: int) -> float:
    """One-sided p of a change (log, + slower) with this standard error: Student t with df degrees of freedom."""
    from scipy.stats import t

    if not se > 0:  # no scatter at all: only a real difference is one
        return 0.0 if change > 0 else 1.0
    return float(t.sf(change / se, df))


@dataclass(frozen=True)
class LoopStep:
    """A loop between the ends: BAD's level minus GOOD's (log, + slower), its two tests, whether it has the step."""

    key: Key
    change: float
    p_rounds: float
    p_runs: float
    sd: float
    df: int
    detects_pct: float = math.nan  # the step these runs find four times in five (the gate's "detects", loop alone)
    stepped: bool = False

    @property
    def pct(self) -> float:
        return 100.0 * math.expm1(self.change)


def ends_steps(good: Sequence[Run], bad: Sequence[Run], threshold_pct: float, alpha: float) -> list[LoopStep]:
    """Every loop both ends have, tested as the gate tests a loop (threshold, rounds, run levels, BH over loops)."""
    from scipy.stats import mannwhitneyu, t

    keys = [k for k in good[0].rounds if all(k in r.rounds for r in (*good, *bad))]
    out = []
    for k in keys:
        lg, lb = [r.level(k) for r in good], [r.level(k) for r in bad]
        sd, df = pooled_sd([lg, lb])
        change = statistics.fmean(lb) - statistics.fmean(lg)
        rg, rb = [x for r in good for x in r.rounds[k]], [x for r in bad for x in r.rounds[k]]
        p_rounds = float(mannwhitneyu(rb, rg, alternative="greater").pvalue)
        p_runs = t_slower(change, sd, df, len(lg), len(lb)) if df else math.nan
        q = t.ppf(1 - alpha / len(keys), df) + t.ppf(noise.POWER, df) if df else math.nan  # a loop slowed alone
        detects = max(threshold_pct, 100.0 * math.expm1(q * sd * math.sqrt(1 / len(lg) + 1 / len(lb))))
        out.append(LoopStep(k, change, p_rounds, p_runs, sd, df, detects))
    cutoff = noise.bh_cutoff([s.p_runs for s in out], alpha, len(out))
    limit = math.log1p(threshold_pct / 100.0)
    return [
        LoopStep(**{**s.__dict__, "stepped": s.change > limit and s.p_rounds < alpha and s.p_runs <= cutoff})
        for s in out
    ]


@dataclass(frozen=True)
class Verdict:
    """One look at a probe: its score against each end's (log; + slower), the tests, the call."""

    verdict: str
    vs_good: float  # probe - GOOD
    p_slower: float  # probe slower than GOOD
    vs_bad: float  # probe - BAD (negative: faster)
    p_faster: float  # probe faster than BAD
    sd: float
    df: int
    runs: int

    @property
    def position(self) -> float:
        """Where the probe sits between the ends: 0 at GOOD's level, 1 at BAD's."""
        span = self.vs_good - self.vs_bad
        return self.vs_good / span if span else math.nan


def classify(
    probe: Sequence[Run],
    good: Sequence[Run],
    bad: Sequence[Run],
    noise_sd: float,
    df: int,
    keys: Sequence[Key],
    alpha: float,
) -> Verdict:
    """Bad: slower than GOOD at p < alpha and near BAD's level; good the other way round; else ambiguous."""
    sp, sg, sb = (statistics.fmean(score(r, keys) for r in runs) for runs in (probe, good, bad))
    p_slower = t_slower(sp - sg, noise_sd, df, len(good), len(probe))
    p_faster = t_slower(sb - sp, noise_sd, df, len(probe), len(bad))
    v = Verdict(AMBIGUOUS, sp - sg, p_slower, sp - sb, p_faster, noise_sd, df, len(probe))
    if p_slower < alpha and v.position >= 1.0 - MARGIN:
        return replace(v, verdict=BAD)
    if p_faster < alpha and v.position <= MARGIN:
        return replace(v, verdict=GOOD)
    return v


def score(run: Run, keys: Sequence[Key]) -> float:
    """A run's level over the loops with the step: the mean of their log times per sample."""
    return statistics.fmean(run.level(k) for k in keys)


@dataclass
class Outcome:
    """What the search found; indices are positions in the commit line (0 = GOOD, n = BAD)."""

    status: str
    lo: int  # the last commit known good
    hi: int  # the first commit known bad
    steps: list[LoopStep] = field(default_factory=list)
    probes: list[tuple[int, list[Verdict]]] = field(default_factory=list)  # probe index, its looks
    runs: dict[int, list[Run]] = field(default_factory=dict)
    keys: list[Key] = field(default_factory=list)
    slowdown: float = math.nan  # first bad vs its parent (log)
    p_value: float = math.nan
    reason: str = ""

    @property
    def looks(self) -> int:
        return sum(len(v) for _, v in self.probes)

    def loop_changes(self, a: int, b: int) -> dict[Key, float]:
        """Each stepped loop's mean level at commit b minus at commit a (log; + slower)."""
        mean = {i: {k: statistics.fmean(r.level(k) for r in self.runs[i]) for k in self.keys} for i in (a, b)}
        return {k: mean[b][k] - mean[a][k] for k in self.keys}


class Bisection:
    """Binary search over the commit line 0..n (0 = GOOD, n = BAD) with ``measure(i)`` -> one more Run of commit i.

    ``say`` receives the transcript's lines; ``label(i)`` names commit i in them.
    """

    def __init__(
        self,
        n: int,
        measure: Callable[[int], Run],
        *,
        ends_runs: int = 4,
        max_runs: int = 4,
        alpha: float = compare.ALPHA,
        threshold_pct: float = compare.DEFAULT_THRESHOLD_PCT,
        say: Callable[[str], None] = print,
        label: Callable[[int], str] = str,
    ) -> None:
        if n < 1:
            raise ValueError("the line needs GOOD and at least one commit after it")
        self.n, self.measure, self.ends_runs, self.max_runs = n, measure, ends_runs, max_runs
        self.alpha, self.threshold_pct, self.say, self.label = alpha, threshold_pct, say, label
        self.out = Outcome(NOT_REPRODUCIBLE, 0, n)

    def _run(self, i: int, what: str) -> Run:
        run = self.measure(i)
        self.out.runs.setdefault(i, []).append(run)
        levels = ", ".join(f"{k[2]} {math.exp(-noise.level(v)):,.0f}/s" for k, v in run.rounds.items() if v)
        self.say(f"  {what} {self.label(i)} run {len(self.out.runs[i])}: {levels}{'  ' + run.note if run.note else ''}")
        return run

    def _noise(self) -> tuple[float, int]:
        return pooled_sd([score(r, self.out.keys) for r in runs] for runs in self.out.runs.values())

    def search(self) -> Outcome:
        out, n = self.out, self.n
        self.say(f"measuring the ends, interleaved, {self.ends_runs} runs each:")
        for _ in range(self.ends_runs):
            self._run(0, "GOOD")
            self._run(n, "BAD ")
        out.steps = ends_steps(out.runs[0], out.runs[n], self.threshold_pct, self.alpha)
        for s in out.steps:
            mark = "STEP" if s.stepped else "no step"
            self.say(
                f"  {'/'.join(s.key)}: BAD vs GOOD {s.pct:+.1f}% (rounds p {s.p_rounds:.2g}, runs p {s.p_runs:.2g}, "
                f"run-to-run sd {100 * math.expm1(s.sd):.1f}%, {s.df} df; detects >= {s.detects_pct:.0f}%): {mark}"
            )
        out.keys = [s.key for s in out.steps if s.stepped]
        if not out.keys:
            out.reason = (
                f"the ends do not differ: no loop is slower at BAD by more than {self.threshold_pct:g}% with both "
                f"tests at p < {self.alpha:g}. With this scatter, {self.ends_runs} runs of each end detect a step from "
                f"{min(s.detects_pct for s in out.steps):.0f}% (column detects): more runs (--ends-runs), more rounds "
                "(-- --rounds N) or a quieter machine find smaller ones"
            )
            return out
        lo, hi = 0, n
        while hi - lo > 1:
            mid = (lo + hi) // 2
            looks: list[Verdict] = []
            out.probes.append((mid, looks))
            try:
                self._probe(mid, lo, hi, looks)
            except MeasureError as exc:
                return self._stop(lo, hi, f"{self.label(mid)} could not be measured: {exc}")
            if looks[-1].verdict == AMBIGUOUS:
                between = looks[-1].p_slower < self.alpha and looks[-1].p_faster < self.alpha
                where = f"position {looks[-1].position:.2f}, 0 GOOD 1 BAD"
                why = f"between the two levels ({where}: more than one step?)" if between else f"near neither ({where})"
                return self._stop(lo, hi, f"{self.label(mid)} is ambiguous after {len(looks)} run(s): {why}")
            lo, hi = (lo, mid) if looks[-1].verdict == BAD else (mid, hi)
        out.status, out.lo, out.hi = FOUND, lo, hi
        sd, df = self._noise()
        a, b = out.runs[lo], out.runs[hi]
        out.slowdown = self._mean_score(b) - self._mean_score(a)
        out.p_value = t_slower(out.slowdown, sd, df, len(a), len(b)) if df else math.nan
        return out

    def _stop(self, lo: int, hi: int, reason: str) -> Outcome:
        self.out.status, self.out.lo, self.out.hi, self.out.reason = CANNOT_TELL, lo, hi, reason
        return self.out

    def _mean_score(self, runs: Sequence[Run]) -> float:
        return statistics.fmean(score(r, self.out.keys) for r in runs)

    def _probe(self, i: int, lo: int, hi: int, looks: list[Verdict]) -> None:
        """Measure commit i until it is good or bad, or it has max_runs runs; each look is appended to ``looks``."""
        out = self.out
        self.say(
            f"probe {len(out.probes)}: commit {i} of {self.n} (the first bad one is in {lo + 1}..{hi}): {self.label(i)}"
        )
        while not looks or (looks[-1].verdict == AMBIGUOUS and len(out.runs[i]) < self.max_runs):
            self._run(i, "probe")
            sd, df = self._noise()
            v = classify(out.runs[i], out.runs[0], out.runs[self.n], sd, df, out.keys, self.alpha)
            looks.append(v)
            call = v.verdict.upper() if v.verdict != AMBIGUOUS else "ambiguous"
            if v.verdict == AMBIGUOUS and len(out.runs[i]) < self.max_runs:
                call += f", measuring it again ({len(out.runs[i])} of at most {self.max_runs} runs)"
            self.say(
                f"    {v.runs} run(s): {100 * math.expm1(v.vs_good):+.1f}% vs GOOD (slower: p {v.p_slower:.2g}), "
                f"{100 * math.expm1(v.vs_bad):+.1f}% vs BAD (faster: p {v.p_faster:.2g}); position {v.position:.2f} "
                f"(0 GOOD, 1 BAD; run-to-run sd {100 * math.expm1(sd):.1f}%, {df} df) -> {call}"
            )
