"""tf2bench history: each loop's throughput across saved runs, and the steps in it (change points).

A series is one workload x loop x machine, oldest run first. A run's point is the median over its
rounds pooled over the model APIs, repeats and seeds, exactly as ``compare`` pools them per loop:
samples/s, or with ``normalize`` the speed-up vs fit of the same run (which travels between
machines). Runs on different hardware are never mixed: one series per machine, unless normalised
series are merged on request.

Steps are proposed by ruptures (Pelt, l2 cost on the log of the run medians) and then tested: a
step counts only when a two-sided t test on the run levels of the segment before vs the segment after
(the series' run-to-run noise as their scale) gives p < 0.01 *and* the time per sample changed by more
than the threshold (as in compare). A proposed step that does not count is dropped and its two segments
merged (the weakest first) until every remaining step counts, so "the newest segment vs the one
before it" is always a counted step, or none.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from tf2bench import storage
from tf2bench.analysis import compare, runs
from tf2bench.analysis.render import Written
from tf2bench.analysis.runs import RunFileError, SavedRun
from tf2bench.errors import BadInputError

MIN_RUNS = 2  # runs on each side of a step: a single run is an outlier, not a step (`compare` gates one run)
MAD_TO_SD = 1.4826  # MAD x this = standard deviation, for normal noise
MERGED = "all machines (normalised)"


@dataclass
class Point:
    """One run of a series: its rounds as log throughput (or log speed-up vs fit)."""

    run: SavedRun
    index: int  # position among all the runs read, oldest first
    label: str  # the run number (with its position when numbers repeat)
    logs: np.ndarray

    @property
    def value(self) -> float:
        return float(np.exp(np.median(self.logs)))


@dataclass
class Step:
    at: int  # position in the series of the first point after the step
    label: str
    commit: str
    date: str
    change_pct: float  # throughput after / before - 1, medians of the pooled rounds
    p_value: float
    counts: bool
    why: str  # slower, faster, not significant, within threshold

    def __str__(self) -> str:
        where = f"from run {self.label} (commit {self.commit}, {self.date}) on"
        return f"{where}: {self.change_pct:+.1f}% (p {self.p_value:.2g})"


@dataclass
class Series:
    workload: str
    variant: str
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
        if len(self.points) < 2 * MIN_RUNS:
            return f"too few runs (< {2 * MIN_RUNS})"
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
        pooled: dict[tuple[str, str], list[float]] = defaultdict(list)
        for (workload, _api, variant), cost in costs.items():
            if not (normalize and variant == "fit"):
                pooled[(workload, variant)] += cost
        for (workload, variant), cost in pooled.items():
            if cost:
                groups[(workload, variant, machine)].append(Point(run, i, label, -np.log(np.asarray(cost))))
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
      within-run spread cannot see: MAD of successive differences of y / sqrt(2) (robust to a few real steps).
    ruptures' Pelt minimises the l2 cost plus a penalty of 2 sigma^2 ln(n) per change point: the BIC of a mean
    shift in Gaussian noise (two parameters per change, its place and the new level), at least MIN_RUNS runs a side.
    """
    import ruptures as rpt

    pts, n = series.points, len(series.points)
    if n < 2 * MIN_RUNS:
        return
    y = np.array([np.median(p.logs) for p in pts])
    within = MAD_TO_SD * np.median(np.concatenate([np.abs(p.logs - np.median(p.logs)) for p in pts]))
    rounds = float(np.median([len(p.logs) for p in pts]))
    between = MAD_TO_SD * np.median(np.abs(np.diff(y))) / math.sqrt(2)
    series.noise = max(within * math.sqrt(math.pi / 2 / rounds), between, 1e-4)
    penalty = 2 * series.noise**2 * math.log(n)
    bounds = rpt.Pelt(model="l2", min_size=MIN_RUNS, jump=1).fit(y.reshape(-1, 1)).predict(pen=penalty)[:-1]
    while True:  # drop the weakest step that does not count, merge its segments, test the rest again
        edges = [0, *bounds, n]
        tested = [_test(pts, y, *edges[j : j + 3], threshold_pct, alpha, series.noise) for j in range(len(bounds))]
        weak = [s for s in tested if not s.counts]
        if not weak:
            series.steps = tested
            return
        worst = max(weak, key=lambda s: (s.p_value, -abs(s.change_pct)))
        series.dropped.append(worst)
        bounds.remove(worst.at)


def _test(
    pts: list[Point], y: np.ndarray, start: int, at: int, end: int, threshold_pct: float, alpha: float, noise: float
) -> Step:
    """Runs before vs after, as runs: a two-sided t on the run levels with the series' run-to-run noise.

    Not a test on the rounds: rounds of one process share its state, so pooled over a few runs they look like
    many independent samples and a slow minute becomes a "step" (docs/gate.md: on one history of 15 runs of
    windows that varied from run to run, 12 steps that were not code with the rounds test, 9 with this one).
    """
    from scipy.stats import t

    before, after = y[start:at], y[at:end]  # the run levels detect() segmented
    diff = float(after.mean() - before.mean())
    ratio = math.exp(diff)  # throughput after / before
    se = noise * math.sqrt(1 / len(before) + 1 / len(after))
    p = float(2 * t.sf(abs(diff) / se, max(1, len(pts) - 2)))
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


# ---- presented ----------------------------------------------------------------------------------------------------


def _fmt(value: float, normalize: bool) -> str:
    return f"{value:.3f}x" if normalize else f"{value:,.1f}/s"


TABLE = ["workload", "loop", "machine", "runs", "first_run", "newest_run", "newest", "noise_pct", "steps", "verdict"]


def table(series: list[Series], normalize: bool) -> pd.DataFrame:
    """One row per workload/loop/machine (history.csv): the newest value, the counted steps, the verdict."""
    rows = [
        (s.workload, s.variant, s.machine, len(s.points), s.points[0].label, s.points[-1].label,
         _fmt(s.points[-1].value, normalize), round(100 * s.noise, 2), "; ".join(map(str, s.steps)) or "none",
         s.verdict, s.steps[-1].change_pct if s.steps else math.nan, s.steps[-1].p_value if s.steps else math.nan,
         "; ".join(f"{x} {x.why}" for x in s.dropped))
        for s in series
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=[*TABLE, "newest_step_pct", "newest_step_p", "not_counted"])


def printed(series: list[Series], normalize: bool) -> pd.DataFrame:
    """The table as printed and in history.md: the steps in short (run: change, p); the lines below say more."""
    out = table(series, normalize)[["workload", "loop", "machine", "runs", "newest", "noise_pct", "verdict"]].copy()
    out["noise_pct"] = ["-" if math.isnan(v) else f"{v:.1f}%" for v in out["noise_pct"]]
    short = [", ".join(f"{x.label}: {x.change_pct:+.1f}% (p {x.p_value:.2g})" for x in s.steps) for s in series]
    out.insert(6, "steps", [text or "none" for text in short])
    return out.rename(columns={"noise_pct": "noise"})


def step_lines(series: list[Series]) -> list[str]:
    """Every counted step (SLOWDOWN when it starts a series' newest segment), then the proposals that did not count."""
    out = []
    for s in series:
        name = f"{s.workload}/{s.variant} [{s.machine}]"
        out += [f"{'SLOWDOWN' if x is s.slowdown else 'step'}: {name} {x}" for x in s.steps]
        out += [f"not counted ({x.why}): {name} {x}" for x in s.dropped]
    return out


def series_table(series: list[Series], normalize: bool) -> pd.DataFrame:
    """Every point: the series as data (series.csv)."""
    value = "speedup_vs_fit" if normalize else "samples_per_sec"
    columns = ["workload", "loop", "machine", "run", "number", "commit", "date", "rounds", value]
    rows = [
        (s.workload, s.variant, s.machine, p.run.run_id, p.label, p.run.commit, p.run.datetime, len(p.logs), p.value)
        for s in series
        for p in s.points
    ]
    return pd.DataFrame(rows, columns=columns)


def chart(series: list[Series], normalize: bool) -> bytes:
    """history.png: a panel per machine x workload, one line per loop, counted steps as annotated vertical lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tf2bench.analysis.render import png

    machines = list(dict.fromkeys(s.machine for s in series))
    workloads = list(dict.fromkeys(s.workload for s in series))
    fig, axes = plt.subplots(
        len(machines), len(workloads), figsize=(7 * len(workloads), 4.5 * len(machines)), squeeze=False
    )
    labels = {p.index: p.label for s in series for p in s.points}
    for s in series:
        ax = axes[machines.index(s.machine)][workloads.index(s.workload)]
        (line,) = ax.plot([p.index for p in s.points], [p.value for p in s.points], marker="o", ms=3, label=s.variant)
        for step in s.steps:
            x = (s.points[step.at - 1].index + s.points[step.at].index) / 2
            ax.axvline(x, color=line.get_color(), ls="--", lw=1)
            ax.annotate(
                f"{s.variant} {step.change_pct:+.0f}%", (x, s.points[step.at].value), fontsize=7,
                color=line.get_color(), rotation=90, va="bottom",
            )  # fmt: skip
    for r, machine in enumerate(machines):
        for c, workload in enumerate(workloads):
            ax = axes[r][c]
            ax.set_title(f"{workload} on {machine}", fontsize=9)
            ax.set_xticks(sorted(labels), [labels[i] for i in sorted(labels)], rotation=60, fontsize=7)
            ax.set_ylabel("speed-up vs fit (median of rounds)" if normalize else "samples/s (median of rounds, log)")
            if not normalize:
                ax.set_yscale("log")
            if ax.lines:
                ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    return png(fig, plt)


def write(
    series: list[Series], loaded: Sequence[SavedRun], normalize: bool, out_root: Path = storage.REPORTS
) -> Written:
    """history.csv, history.md, series.csv and history.png in out_root/history-<digest>/ (never another set's dir)."""
    from tf2bench.analysis.render import markdown_table, refuse_foreign, write_files

    sources = "\n".join(sorted(str(r.path.resolve()) for r in loaded))
    directory = out_root / f"history-{hashlib.sha1(sources.encode()).hexdigest()[:10]}"
    refuse_foreign(directory, loaded)  # before any work: a foreign directory is never written into
    df = table(series, normalize)
    runs_md = [
        f"- {label}: {r.run_id}, {r.datetime or '?'}, commit {r.commit or '?'}{' (uncommitted changes)' * r.dirty}"
        for label, r in zip(labels(loaded), loaded, strict=True)
    ]
    what = "speed-up vs fit of the same run" if normalize else "samples/s"
    md = ["# tf2bench history", "", f"Median {what} over each run's rounds pooled over the model APIs.", ""]
    md += [markdown_table(printed(series, normalize)), "", *[f"- {line}" for line in step_lines(series)], ""]
    md += ["## Runs", "", *runs_md, "", "![history.png](history.png)", ""]
    files = {
        "history.csv": df.to_csv(index=False).encode(),
        "series.csv": series_table(series, normalize).to_csv(index=False).encode(),
        "history.md": "\n".join(md).encode(),
        "history.png": chart(series, normalize),
    }
    return write_files(directory, loaded, files)
