"""The report, presented: the summary table (terminal, markdown, html), notes, charts, and the report files.

Everything here reads the table ``report.build`` made; nothing decides a verdict.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from tf2bench.analysis import html
from tf2bench.analysis.charts import charts, png  # noqa: F401  (png: history's charts use it too)
from tf2bench.analysis.report import (
    DIFFERS,
    EQUIVALENT,
    EXPECTED,
    NO_FAILURES,
    NOT_COMPARABLE,
    failed_tiers,
    failures,
)
from tf2bench.analysis.runs import SavedRun
from tf2bench.errors import BadInputError
from tf2bench.measure import gpuinfo
from tf2bench.measure.timing import NOISY_CV  # stdlib-only module: no TensorFlow import
from tf2bench.saved import storage
from tf2bench.saved.storage import atomic_write

DEFAULT_OUT = storage.REPORTS


def summary(df: pd.DataFrame) -> pd.DataFrame:
    """The columns a reader scans, formatted as strings (shared by terminal, md and html)."""
    cols: dict[str, list[str]] = {}
    if df["run"].nunique() > 1:
        cols["run"] = [r[:4] for r in df["run"]]
    for key in ("workload", "api", "loop"):
        cols[key] = list(df[key])
    cols["samples/s"] = [f"{v:,.0f}" for v in df["samples_per_sec"]]
    cols["CV"] = [f"{100 * v:.1f}%" + (" NOISY" if n else "") for v, n in zip(df["cv"], df["noisy"], strict=True)]
    cols["vs fit"] = [f"{v:.2f}x" if not math.isnan(v) else "-" for v in df["speedup_vs_fit"]]
    cols["step ms"] = [f"{v:.1f}" for v in df["step_time_ms"]]
    cols["MFU"] = [f"{v:.3f}" if not math.isnan(v) else "-" for v in df["mfu"]]
    cols["first step s"] = [f"{v:.2f}" for v in df["first_step_s"]]
    cols["accuracy"] = [
        f"{a:.4f}" + ("" if math.isnan(s) else f" ± {s:.4f}")
        for a, s in zip(df["test_accuracy"], df["test_accuracy_std"], strict=True)
    ]
    cols["Δacc pp"] = [f"{v:+.2f}" if not math.isnan(v) else "-" for v in df["acc_diff_pp"]]
    cols["p"] = [f"{v:.2g}" if not math.isnan(v) else "-" for v in df["mcnemar_p"]]
    cols["Δw/update"] = [
        "-" if math.isnan(d) else f"{d:.1e}" + ("" if d <= t else f" > {t:.0e}")
        for d, t in zip(df["weight_distance"], df["weight_tolerance"], strict=True)
    ]
    cols["verdict"] = [
        v + (f" ({failed_tiers(r)})" if v in (DIFFERS, EXPECTED) else "")
        for v, r in zip(df["verdict"], df.itertuples(), strict=True)
    ]
    return pd.DataFrame(cols)


def text_table(table: pd.DataFrame) -> str:
    """Aligned plain-text table for the terminal (no extra dependency such as tabulate)."""
    cols = [str(c) for c in table.columns]
    cells = [[str(v) for v in row] for row in table.itertuples(index=False)]
    widths = [max(len(c), *(len(r[i]) for r in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def markdown_table(table: pd.DataFrame) -> str:
    cols = [str(c) for c in table.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += [
        "| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |" for row in table.itertuples(index=False)
    ]
    return "\n".join(lines)


def fastest_equivalent(df: pd.DataFrame) -> list[str]:
    """Per run and workload, the fastest loop that is equivalent to fit (median speed-up over the model APIs),
    with what its equivalence rests on: "fastest equivalent: graph_loop 1.64x fit, weights within 1.7e-06"."""
    lines = []
    several = df["run"].nunique() > 1
    for (run, workload), grp in df.groupby(["run", "workload"], sort=False):
        ok = grp[grp["verdict"] == EQUIVALENT]
        if ok.empty:
            continue
        by_loop = ok.groupby("loop", sort=False)
        speed = by_loop["speedup_vs_fit"].median().dropna()
        if speed.empty:
            continue
        best = speed.idxmax()
        rows = ok[ok["loop"] == best]
        dist = rows["weight_distance"].max()
        why = str(rows["weights_note"].iloc[0]).removeprefix("weight tier not applied: ")
        basis = (
            "weights identical to fit's"
            if dist == 0
            else f"weights within {dist:.1e} of fit's update"
            if not math.isnan(dist)
            else f"weights not judged ({why.split(': ')[0].split(', so')[0]})"
        )
        quality = (
            f", quality same (McNemar p >= {rows['mcnemar_p'].min():.2g})" if rows["paired_samples"].gt(0).all() else ""
        )
        where = f" [run {str(run)[:4]}]" if several else ""
        lines.append(f"fastest equivalent on {workload}{where}: {best} {speed[best]:.2f}x fit, {basis}{quality}")
    return lines


def notes(df: pd.DataFrame, runs: Sequence[SavedRun] = ()) -> list[str]:
    """What a reader must know before quoting a figure: noise, data provenance, expected failures."""
    out = [
        f"{r.path}: no round data (saved without --benchmark-save-data); figures come from the suite's own "
        "window times, and `tf2bench compare` cannot use this run"
        for r in runs
        if not r.has_round_data
    ]
    out += fastest_equivalent(df)
    out += list(dict.fromkeys(n for r in runs if (n := gpuinfo.clock_note(r.machine.get("gpu")))))  # once each
    noisy = df[df["noisy"]]
    if len(noisy):
        out.append(
            f"{len(noisy)} of {len(df)} figures vary by more than {100 * NOISY_CV:.0f}% between rounds (NOISY): "
            "use --repeat, --preset rigorous or a quieter machine before quoting them."
        )
    several = df["run"].nunique() > 1
    fallbacks = {}
    for r in df[df["weights_note"].str.startswith("weight tier not applied")].itertuples():
        fallbacks.setdefault((r.loop, r.weights_note), []).append(f"{r.workload}/{r.api}")
    for (loop, why), where in fallbacks.items():
        out.append(f"{loop} ({', '.join(where)}): {why}.")
    for r in df[df["verdict"] == NOT_COMPARABLE].itertuples():
        out.append(f"{r.workload}/{r.api} {r.loop}: {r.verdict_note}.")
    for r in df[df["verdict"] == EXPECTED].itertuples():
        out.append(f"{r.workload}/{r.api} {r.loop}{f' [run {r.run[:4]}]' if several else ''}: {r.verdict_note}.")
    for (workload, dataset), grp in df.groupby(["workload", "dataset"], sort=False):
        note = grp["dataset_note"].iloc[0]
        out.append(f"data for {workload}: {dataset}" + (f" — {note}" if note else ""))
    return out


# ---- files --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    directory: Path
    files: list[Path]


def report_id(runs: Sequence[SavedRun]) -> str:
    """The report directory name: the run's own id, or a stable digest of a set of runs."""
    if len(runs) == 1:
        return runs[0].run_id
    digest = hashlib.sha1("\n".join(sorted(str(r.path.resolve()) for r in runs)).encode()).hexdigest()[:10]
    return f"combined-{len(runs)}runs-{digest}"


def refuse_foreign(directory: Path, runs: Sequence[SavedRun]) -> None:
    """A report directory may only be rewritten for the same source runs (sources.json); anything else is refused."""
    marker = directory / "sources.json"
    if directory.exists() and (json.loads(marker.read_text()) if marker.is_file() else None) != _sources(runs):
        raise BadInputError(f"{directory} exists and was not made from these runs; not overwriting it (choose --out)")


def _sources(runs: Sequence[SavedRun]) -> list[str]:
    return sorted(str(r.path.resolve()) for r in runs)


def write_files(directory: Path, runs: Sequence[SavedRun], files: dict[str, bytes]) -> Written:
    """sources.json and ``files`` into ``directory``, each atomically (checked first with refuse_foreign)."""
    refuse_foreign(directory, runs)
    files = {"sources.json": json.dumps(_sources(runs), indent=1).encode(), **files}
    for name, data in files.items():
        atomic_write(directory / name, data)
    return Written(directory, [directory / n for n in files])


def write(df: pd.DataFrame, runs: Sequence[SavedRun], out_root: Path = DEFAULT_OUT) -> Written:
    """Write report.md, report.csv, report.html and the PNG charts into out_root/<run-id>/.

    The directory may only be rewritten for the same source runs (a regenerated report);
    anything else there is refused rather than overwritten.
    """
    directory = out_root / report_id(runs)
    refuse_foreign(directory, runs)
    pngs = charts(df, runs)
    table = summary(df)
    lines = notes(df, runs)
    failed = failures(df)
    files = {
        "report.csv": df.drop(columns=["round_step_ms"]).to_csv(index=False).encode(),
        "report.md": _markdown(runs, table, lines, failed, pngs).encode(),
        "report.html": html.page(df, runs, table, lines, failed, pngs).encode(),
        **pngs,
    }
    return write_files(directory, runs, files)


def _run_lines(runs: Sequence[SavedRun]) -> list[str]:
    return [
        f"{r.run_id}: {r.datetime or '?'}, preset {r.suite.get('preset', '?')}, commit {r.commit or '?'}"
        + (" (uncommitted changes)" if r.dirty else "")
        + (f", wall {r.suite['wall_s']:.0f} s" if "wall_s" in r.suite else "")
        + machine_line(r.machine)
        for r in runs
    ]


def machine_line(m: dict[str, Any]) -> str:
    """What the figures depend on besides the code (envinfo.FIGURE_SETTINGS), as the report's header shows it."""
    if not m:
        return ""
    dev = m.get("device") or {}
    parts = [
        str(dev.get("name") or m.get("cpu_name") or "?") + (f" ({dev['cores']} cores)" if dev.get("cores") else ""),
        f"ISA {m['isa']}" if m.get("isa") else "",
        f"oneDNN {m['onednn_opts']}" if m.get("onednn_opts") else "",
        f"threads {m.get('intra_op_threads', 0) or 'default'}/{m.get('inter_op_threads', 0) or 'default'}",
        f"XLA flags {m['xla_flags']}" if m.get("xla_flags") else "",
        f"TF {m.get('tf_version', '?')}, Keras {m.get('keras_version', '?')}",
        *gpuinfo.header(m.get("gpu")),  # driver, then each GPU's clocks and power limit
    ]
    return "; machine: " + ", ".join(x for x in parts if x)


def _markdown(runs: Sequence[SavedRun], table: pd.DataFrame, lines: list[str], failed: list[str], pngs: dict) -> str:
    parts = ["# tf2bench report", "", "Runs:", *[f"- {x}" for x in _run_lines(runs)], ""]
    parts += [markdown_table(table), ""]
    parts += ["## Accuracy", "", *([f"- **{f}**" for f in failed] or [f"- {NO_FAILURES}"]), ""]
    parts += ["## Notes", "", *[f"- {n}" for n in lines], ""]
    parts += ["## Charts", "", *[f"![{n}]({n})" for n in pngs], ""]
    return "\n".join(parts)
