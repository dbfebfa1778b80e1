"""tf2bench history, presented: the table (terminal, history.md, history.csv), the step lines, series.csv,
history.png and the files, and the subcommand's body (cli.py keeps its options). tf2bench.analysis.history finds
and tests the steps; nothing here decides one. No TensorFlow.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from tf2bench.analysis import history
from tf2bench.analysis.history import Series
from tf2bench.analysis.render import Written
from tf2bench.analysis.runs import SavedRun
from tf2bench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK
from tf2bench.saved import storage


def _fmt(value: float, normalize: bool) -> str:
    return f"{value:.3f}x" if normalize else f"{value:,.1f}/s"


TABLE = ["workload", "loop", "machine", "runs", "first_run", "newest_run", "newest", "noise_pct", "steps", "verdict"]


def table(series: list[Series], normalize: bool) -> pd.DataFrame:
    """One row per workload/loop/machine (history.csv): the newest value, the counted steps, the verdict."""
    rows = [
        (s.workload, s.loop, s.machine, len(s.points), s.points[0].label, s.points[-1].label,
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
        name = f"{s.workload}/{s.loop} [{s.machine}]"
        out += [f"{'SLOWDOWN' if x is s.slowdown else 'step'}: {name} {x}" for x in s.steps]
        out += [f"not counted ({x.why}): {name} {x}" for x in s.dropped]
    return out


def series_table(series: list[Series], normalize: bool) -> pd.DataFrame:
    """Every point: the series as data (series.csv)."""
    value = "speedup_vs_fit" if normalize else "samples_per_sec"
    columns = ["workload", "loop", "machine", "run", "number", "commit", "date", "rounds", value]
    rows = [
        (s.workload, s.loop, s.machine, p.run.run_id, p.label, p.run.commit, p.run.datetime, len(p.logs), p.value)
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
        (line,) = ax.plot([p.index for p in s.points], [p.value for p in s.points], marker="o", ms=3, label=s.loop)
        for step in s.steps:
            x = (s.points[step.at - 1].index + s.points[step.at].index) / 2
            ax.axvline(x, color=line.get_color(), ls="--", lw=1)
            ax.annotate(
                f"{s.loop} {step.change_pct:+.0f}%", (x, s.points[step.at].value), fontsize=7,
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
        for label, r in zip(history.labels(loaded), loaded, strict=True)
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


def run(args: argparse.Namespace) -> int:
    """`tf2bench history`: read, find the steps, print, write; exit 1 when a series ends in a counted slowdown."""
    from tf2bench.analysis import render

    loaded, errors = history.load(args.paths, args.storage)
    for exc in errors:  # one line per input that could not be used; the rest are still read
        print(f"tf2bench: error: {exc}", file=sys.stderr)
    if not loaded:
        return EXIT_BAD_INPUT
    series, notes = history.build(loaded, args.normalize, args.merge_machines)
    history.analyse(series, args.threshold)
    written = write(series, loaded, args.normalize, args.out)
    what = "speed-up vs fit of the same run" if args.normalize else "samples/s"
    print(
        f"{len(loaded)} run(s), {loaded[0].run_id} .. {loaded[-1].run_id}\n({what}, median of each run's rounds "
        f"pooled over the model APIs; a step counts when p < 0.01 and the time changes by > {args.threshold:g}%)"
    )
    print(render.text_table(printed(series, args.normalize)))
    for line in step_lines(series):
        print(line)
    for line in notes:
        print(f"note: {line}")
    print(f"wrote {written.directory}/: {', '.join(p.name for p in written.files if p.name != 'sources.json')}")
    if errors:
        print(
            f"tf2bench: error: {len(errors)} input(s) could not be used (see above); the history covers the other "
            f"{len(loaded)} run(s)",
            file=sys.stderr,
        )
    if any(s.slowdown for s in series):
        return EXIT_FAILED
    return EXIT_BAD_INPUT if errors else EXIT_OK
