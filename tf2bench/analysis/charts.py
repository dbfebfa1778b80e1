"""The report's charts (PNG, matplotlib Agg): speed-up vs fit, throughput, accuracy, step times, and, with several
runs, throughput over the runs.

Per workload a panel, one row per loop; points with interval whiskers, never bars: a loop's rows are its model
APIs (or, with several runs, its runs, the APIs as marker shapes). Reads the table ``report.build`` made.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from tf2bench.analysis.report import EXPECTED, NOT_COMPARABLE
from tf2bench.analysis.runs import SavedRun, round_throughputs

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"]
MARKERS = {"sequential": "o", "functional": "s", "subclassing": "^"}
FIT_BAND, FIT_SPREAD = "#2ca02c", "#1a7f1a"
DPI = 100


def png(fig: Any, plt: Any, dpi: int = 90) -> bytes:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def charts(df: pd.DataFrame, runs: Sequence[SavedRun] = ()) -> dict[str, bytes]:
    """speedup.png, throughput.png, accuracy.png, step_time.png; history.png when there are several runs."""
    plt = _pyplot()
    fit_tput = df["samples_per_sec"] / df["speedup_vs_fit"]
    steps = [(min(s), max(s)) if len(s) else (math.nan, math.nan) for s in df["round_step_ms"]]
    out = {
        "speedup.png": _dots(
            df, plt, "Speed-up vs fit (same run, same api)", "samples/s ÷ fit's samples/s  (whiskers: min–max round)",
            df["speedup_vs_fit"], df["samples_per_sec_min"] / fit_tput, df["samples_per_sec_max"] / fit_tput,
            "{:.2f}×", _speedup_axis,
        ),
        "throughput.png": _dots(
            df, plt, "Throughput", "samples/s, median of rounds  (whiskers: min–max round)",
            df["samples_per_sec"], df["samples_per_sec_min"], df["samples_per_sec_max"], "{:,.0f}/s",
            lambda ax, sub, ys: ax.set_xlim(left=0),
        ),
        "accuracy.png": _dots(
            df, plt, "Test accuracy, and fit's equivalence band", "test accuracy  (whiskers: ± seed-to-seed std)",
            df["test_accuracy"], df["test_accuracy"] - df["test_accuracy_std"].fillna(0),
            df["test_accuracy"] + df["test_accuracy_std"].fillna(0), "{:.3f}", _accuracy_axis,
        ),
        "step_time.png": _dots(
            df, plt, "Step time over the rounds", "ms per training step, median of rounds  (whiskers: min–max round)",
            df["step_time_ms"], pd.Series([lo for lo, _ in steps], index=df.index),
            pd.Series([hi for _, hi in steps], index=df.index), "{:.1f} ms", lambda ax, sub, ys: ax.set_xlim(left=0),
        ),
    }  # fmt: skip
    if len(runs) > 1:
        out["history.png"] = history_chart(runs, plt)
    return out


def _lanes(df: pd.DataFrame) -> tuple[str, Callable[[Any], str]]:
    """What the rows of a loop are: its runs (several runs) or its model APIs."""
    if df["run"].nunique() > 1:
        return "run", lambda r: str(r.run)[:4]
    return "api", lambda r: str(r.api)


def _dots(
    df: pd.DataFrame, plt: Any, title: str, xlabel: str, x: pd.Series, lo: pd.Series, hi: pd.Series, fmt: str,
    axis: Callable[[Any, pd.DataFrame, dict], None],
) -> bytes:  # fmt: skip
    """A panel per workload, a row per loop; each of the loop's rows a point with an interval whisker."""
    workloads = list(dict.fromkeys(df["workload"]))
    kind, lane_of = _lanes(df)
    lanes = list(dict.fromkeys(lane_of(r) for r in df.itertuples()))
    loops = max(df.groupby("workload")["loop"].nunique())
    cols = min(2, len(workloads))
    rows = math.ceil(len(workloads) / cols)
    panel_h = 0.9 + loops * max(0.36, 0.15 * len(lanes))
    fig, axes = plt.subplots(rows, cols, figsize=(7 * cols, panel_h * rows + 1.0), squeeze=False, layout="constrained")
    for ax in axes.flat[len(workloads) :]:
        ax.set_visible(False)
    for ax, workload in zip(axes.flat, workloads, strict=False):
        sub = df[df["workload"] == workload]
        names = list(dict.fromkeys(sub["loop"]))
        ys: dict[Any, float] = {}
        for r in sub.itertuples():
            lane = lanes.index(lane_of(r))
            y = names.index(r.loop) + (lane - (len(lanes) - 1) / 2) * 0.8 / len(lanes)
            if kind == "run":  # the APIs side by side within their run's row
                y += (list(MARKERS).index(r.api) - 1 if r.api in MARKERS else 0) * 0.2 / len(lanes)
            ys[r.Index] = y
            if math.isnan(x[r.Index]):
                continue
            err = [[max(x[r.Index] - lo[r.Index], 0)], [max(hi[r.Index] - x[r.Index], 0)]]
            err = None if any(math.isnan(e[0]) for e in err) or not any(e[0] for e in err) else err
            ax.errorbar(
                x[r.Index], y, xerr=err, fmt=MARKERS.get(r.api, "D"), ms=5, capsize=2, lw=1.2, zorder=3,
                color=COLOURS[lane % len(COLOURS)],
            )  # fmt: skip
        for i, name in enumerate(names):
            idx = sub.index[sub["loop"] == name]
            values = x[idx].dropna()
            if len(values):
                edge = np.nanmax(np.r_[hi[idx].to_numpy(float), values.to_numpy(float)])
                ax.annotate(fmt.format(values.median()), (edge, i), xytext=(6, 0), textcoords="offset points",
                            va="center", fontsize=8.5, color="#333")  # fmt: skip
        ax.set_yticks(range(len(names)), names, fontsize=10)
        ax.set_ylim(len(names) - 0.5, -0.5)
        ax.set_title(workload, fontsize=12, loc="left", fontweight="bold")
        ax.set_xlabel(xlabel, fontsize=9.5)
        ax.grid(axis="x", alpha=0.35)
        ax.margins(x=0.14)
        axis(ax, sub, ys)
    handles = [
        plt.Line2D([], [], color=COLOURS[i % len(COLOURS)], marker="o" if kind == "run" else MARKERS.get(lane, "D"),
                   ls="", label=f"run {lane}" if kind == "run" else lane)
        for i, lane in enumerate(lanes)
    ]  # fmt: skip
    if kind == "run":
        apis = set(df["api"])
        handles += [plt.Line2D([], [], color="#555", marker=m, ls="", label=a) for a, m in MARKERS.items() if a in apis]
    handles += axes.flat[0].get_legend_handles_labels()[0]
    fig.suptitle(title, fontsize=14, x=0.01, ha="left")
    ncol = len(handles) if len(handles) <= 6 else math.ceil(len(handles) / 2)
    fig.legend(handles=handles, loc="outside lower center", ncol=ncol, fontsize=9.5, frameon=False)
    return png(fig, plt, DPI)


def _speedup_axis(ax: Any, sub: pd.DataFrame, ys: dict) -> None:
    ax.axvline(1.0, color="#222", ls="--", lw=1.3, zorder=2, label="fit = 1.0×")
    ax.set_xlim(left=0)


def _accuracy_axis(ax: Any, sub: pd.DataFrame, ys: dict) -> None:
    """fit's band: ± the quality tier's margin (at least 3x fit's seed std), and ± its seed std when there are seeds;
    zoomed on fit, with the loops far outside (tutorial) drawn at the edge with their value."""
    fits = sub[sub["loop"] == "fit"]
    if fits.empty:
        return
    for k, f in enumerate(fits.drop_duplicates(["test_accuracy", "tolerance_pp", "test_accuracy_std"]).itertuples()):
        margin = f.tolerance_pp / 100
        ax.axvspan(f.test_accuracy - margin, f.test_accuracy + margin, color=FIT_BAND, alpha=0.13, lw=0, zorder=0,
                   label=None if k else f"fit ± margin ({f.tolerance_pp:.1f} pp"
                   + ("; one seed: no spread)" if math.isnan(f.test_accuracy_std) else ")"))  # fmt: skip
        if not math.isnan(f.test_accuracy_std):
            std = f.test_accuracy_std
            ax.axvspan(f.test_accuracy - std, f.test_accuracy + std, color=FIT_SPREAD, alpha=0.22, lw=0, zorder=1,
                       label=None if k else "fit ± seed-to-seed std")  # fmt: skip
    centre = float(fits["test_accuracy"].median())
    # a loop with its own, wider margin (one seed, off fit's trajectory by design: report.build) gets it drawn on
    # its row, so a point outside fit's band but inside its own is seen as what the verdict says
    wider = sub[(sub["loop"] != "fit") & (sub["tolerance_pp"] > float(fits["tolerance_pp"].max()) + 1e-9)]
    for k, (i, r) in enumerate(zip(wider.index, wider.itertuples(), strict=True)):
        own = "the loop's own margin (one seed, off fit's path)"
        ax.hlines(ys[i], centre - r.tolerance_pp / 100, centre + r.tolerance_pp / 100, color=FIT_BAND, lw=7,
                  alpha=0.3, zorder=0, label=None if k else own)  # fmt: skip
    margin = float(sub["tolerance_pp"].max()) / 100
    near = sub[~sub["verdict"].isin([EXPECTED, NOT_COMPARABLE])]
    spread = float((near["test_accuracy"] - centre).abs().max() + near["test_accuracy_std"].fillna(0).max())
    half = max(2.5 * margin, 1.2 * spread, 0.005)
    left, right = centre - half, centre + half
    ax.set_xlim(left, right)
    off = sub[(sub["test_accuracy"] < left) | (sub["test_accuracy"] > right)]
    names = list(dict.fromkeys(sub["loop"]))
    for loop, rows in off.groupby("loop", sort=False):
        low = rows["test_accuracy"].median() < left
        edge, marker, ha, dx = (left, "<", "left", 10) if low else (right, ">", "right", -10)
        ax.plot([edge] * len(rows), [ys[i] for i in rows.index], marker=marker, ls="", color="#b45f06", ms=7,
                clip_on=False, zorder=4)  # fmt: skip
        ax.annotate(f"{rows['test_accuracy'].median():.3f}, off scale", (edge, names.index(loop)), xytext=(dx, 0),
                    ha=ha, textcoords="offset points", va="center", fontsize=8.5, color="#b45f06")  # fmt: skip


def history_series(runs: Sequence[SavedRun]) -> tuple[list[str], dict[tuple[str, str], list[tuple[int, float]]]]:
    """Each workload/loop's median samples/s in each run (rounds pooled over APIs, repeats and seeds, as history
    pools them), runs oldest first: (run labels, {(workload, loop): [(run position, samples/s)]})."""
    ordered = sorted(runs, key=lambda r: r.datetime)
    numbers = [r.number for r in ordered]
    labels = [n if numbers.count(n) == 1 else f"{n} [#{i + 1}]" for i, n in enumerate(numbers)]
    series: dict[tuple[str, str], list[tuple[int, float]]] = defaultdict(list)
    for i, run in enumerate(ordered):
        pooled: dict[tuple[str, str], list[float]] = defaultdict(list)
        for bench in run.benchmarks:
            info = bench["extra_info"]
            pooled[(info["workload"], info["loop"])] += round_throughputs(bench)
        for key, tput in pooled.items():
            if tput:
                series[key].append((i, statistics.median(tput)))
    return labels, dict(series)


def history_chart(runs: Sequence[SavedRun], plt: Any = None) -> bytes:
    """A panel per workload: each loop's median samples/s across the runs, one line per loop (log scale)."""
    plt = plt or _pyplot()
    from matplotlib import ticker

    labels, series = history_series(runs)
    workloads = list(dict.fromkeys(w for w, _ in series))
    loops = list(dict.fromkeys(v for _, v in series))
    palette = plt.get_cmap("tab10" if len(loops) <= 10 else "tab20")
    fig, axes = plt.subplots(1, len(workloads), figsize=(7 * len(workloads), 5.2), squeeze=False, layout="constrained")
    for ax, workload in zip(axes[0], workloads, strict=True):
        for (w, loop), points in series.items():
            if w == workload:
                xs, values = zip(*points, strict=True)
                ax.plot(xs, values, marker="o", ms=4, lw=1.5, color=palette(loops.index(loop)), label=loop)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(ticker.StrMethodFormatter("{x:,.0f}"))
        ax.yaxis.set_minor_formatter(ticker.NullFormatter())
        ax.set_xticks(range(len(labels)), labels, rotation=30 if len(labels) > 6 else 0, fontsize=9)
        ax.set_xlabel("run (oldest first)", fontsize=9.5)
        ax.set_ylabel("samples/s, median of rounds (log)", fontsize=9.5)
        ax.set_title(workload, fontsize=12, loc="left", fontweight="bold")
        ax.grid(alpha=0.35)
    handles = [plt.Line2D([], [], color=palette(i), marker="o", label=loop) for i, loop in enumerate(loops)]
    fig.suptitle("Throughput over the runs (every loop pooled over its APIs)", fontsize=14, x=0.01, ha="left")
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(loops), 10), fontsize=9.5, frameon=False)
    return png(fig, plt, DPI)
