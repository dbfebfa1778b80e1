"""report.html: the report as the page an engineer opens first (Jinja2 template + pandas' Styler for the table).

Self-contained: the charts are embedded as data: URIs and nothing is fetched (no CDN, no web font), so the one
file can be mailed or attached as a CI artifact. A small inline script checks, in the browser, that the page
loaded without errors, that every chart decoded and that every verdict is coloured, and writes what it found
into ``<body data-check=...>`` (tests/analysis/test_report_browser.py reads it back from headless Chromium).
"""

from __future__ import annotations

import base64
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from tf2bench.analysis.report import (
    DIFFERS,
    EQUIVALENT,
    EXPECTED,
    EXPECTED_FAILURES,
    NO_FAILURES,
    NO_FIT,
    NOT_COMPARABLE,
    REFERENCE,
)
from tf2bench.analysis.runs import SavedRun
from tf2bench.measure import gpuinfo

TEMPLATES = Path(__file__).resolve().parent / "templates"
VERDICT_CLASS = {
    REFERENCE: "v-ref", EQUIVALENT: "v-ok", DIFFERS: "v-bad", EXPECTED: "v-warn", NOT_COMPARABLE: "v-warn",
    NO_FIT: "v-warn",
}  # fmt: skip
NO_TRACE = "no trace (run with --profile)"
NO_TRACES = "no traces (run with --profile)"
FINDING = "fastest equivalent"  # the notes shown beside the verdicts (render.fastest_equivalent)
CHARTS = {  # file -> (heading, caption), in the order the page shows them
    "speedup.png": (
        "Speed-up vs fit",
        "samples/s ÷ fit's samples/s of the same run and api: right of the dashed 1.0 line is faster than fit. "
        "Whiskers: the slowest and the fastest round over fit's median; the number is the loop's median.",
    ),
    "throughput.png": (
        "Throughput",
        "Median samples/s over the pooled rounds (repeats and seeds), on a linear axis from zero. "
        "Whiskers: the slowest and the fastest round.",
    ),
    "accuracy.png": (
        "Accuracy",
        "Test accuracy (mean over seeds; whiskers ± seed-to-seed std). Light band: fit's accuracy ± the quality "
        "tier's margin (--tolerance, widened to 3× fit's seed-to-seed std with several seeds); dark band: fit ± "
        "that std (several seeds only). Loops far outside, such as the tutorial's expected failure, sit at the edge.",
    ),
    "history.png": (
        "Throughput over the runs",
        "Each loop's median samples/s per run, rounds pooled over its APIs, repeats and seeds (log scale). "
        "`tf2bench history` on the same runs tests the steps.",
    ),
    "step_time.png": (
        "Step time",
        "Milliseconds per training step, median of the rounds, on a linear axis from zero; whiskers: the fastest and "
        "the slowest round.",
    ),
}


def page(
    df: pd.DataFrame, runs: Sequence[SavedRun], table: pd.DataFrame, notes: list[str], failed: list[str], pngs: dict
) -> str:
    """The HTML page: header (machine, versions, preset, commit, date), verdicts, charts, the coloured table."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True, undefined=jinja2.StrictUndefined
    )
    one = runs[0] if len(runs) == 1 else None
    counts = df["verdict"].value_counts()
    return env.get_template("report.html.j2").render(
        title=f"tf2bench report: run {one.number}" if one else f"tf2bench report: {len(runs)} runs",
        subtitle=" · ".join(run_facts(one)[1:4]) if one else "",
        facts=header_facts(runs),
        runs=[run_facts(r) for r in runs],
        counts=[(v, int(counts[v]), VERDICT_CLASS[v]) for v in VERDICT_CLASS if v in counts],
        failed=failed,
        no_failures=NO_FAILURES,
        findings=[n for n in notes if n.startswith(FINDING)],
        notes=[n for n in notes if not n.startswith(FINDING) and not _expected(n)],
        expected=[n for n in notes if _expected(n)],
        charts=[
            {"name": name, "heading": CHARTS[name][0], "caption": CHARTS[name][1], "src": data_uri(pngs[name])}
            for name in CHARTS
            if name in pngs
        ],
        table=styled(table, df, runs),
    )


def _expected(note: str) -> bool:
    """A note on an expected failure (the tutorial's, one per api and run): shown folded."""
    return any(why in note for why in EXPECTED_FAILURES.values())


def data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def styled(table: pd.DataFrame, df: pd.DataFrame, runs: Sequence[SavedRun]) -> str:
    """The summary table with a trace column, through pandas' Styler: verdicts and noisy figures as CSS classes."""
    first = [c for c in ("run", "workload", "api", "loop", "verdict", "vs fit", "samples/s") if c in table]
    table = table[first + [c for c in table if c not in first]].assign(trace=traces(df, runs)).reset_index(drop=True)
    classes = pd.DataFrame("", index=table.index, columns=table.columns)
    classes["verdict"] = ["verdict " + VERDICT_CLASS.get(v, "v-warn") for v in df["verdict"]]
    classes["CV"] = ["noisy" if n else "" for n in df["noisy"]]
    classes["trace"] = ["trace none" if t == NO_TRACE else "trace" for t in table["trace"]]
    for name in ("workload", "api", "loop", *(["run"] if "run" in table else [])):
        classes[name] = "key"
    styler = table.style.hide(axis="index").set_td_classes(classes).format(escape="html")
    text = [i for i, c in enumerate(table.columns) if c in (*first[:-2], "trace")]  # left-aligned headers
    styler = styler.set_table_styles([{"selector": f"th.col{i}", "props": "text-align: left"} for i in text])
    return styler.set_uuid("results").set_table_attributes('class="results"').to_html()


def traces(df: pd.DataFrame, runs: Sequence[SavedRun]) -> list[str]:
    """Per row, how to open its profiler trace: the `tf2bench tensorboard` command, the failure, or NO_TRACE."""
    found: dict[tuple, list[dict[str, Any]]] = {}
    for run in runs:
        for bench in run.benchmarks:
            info = bench["extra_info"]
            if isinstance(info.get("profile"), dict) and info["profile"].get("trace_dir"):
                key = (run.run_id, info["workload"], info["api"], info["loop"])
                found.setdefault(key, []).append(info["profile"])
    out = []
    for r in df.itertuples():
        profiles = found.get((r.run, r.workload, r.api, r.loop), [])
        dirs = list(dict.fromkeys(Path(p["trace_dir"]) for p in profiles if "error" not in p or p.get("trace_path")))
        errors = [f"trace failed: {p['error']}" for p in profiles if "error" in p]
        if len(dirs) == 1:
            text = [f"tf2bench tensorboard --logdir {shlex.quote(str(dirs[0]))}"]
        elif dirs:  # repeats and seeds: one TensorBoard run each, under the suite run's trace directory
            parent = dirs[0].parent
            names = ", ".join(d.name for d in dirs)
            text = [f"tf2bench tensorboard --logdir {shlex.quote(str(parent))}  # TensorBoard runs {names}"]
        else:
            text = []
        out.append("; ".join(text + errors) or NO_TRACE)
    return out


def header_facts(runs: Sequence[SavedRun]) -> list[tuple[str, str]]:
    """(label, value) for the header: machine, software, settings; per run where the runs differ."""
    out = []
    for i, label in enumerate(("Machine", "Software", "Settings")):
        values = {r.run_id: machine_facts(r)[i] for r in runs}
        if len(set(values.values())) == 1:
            out.append((label, next(iter(values.values()))))
        else:
            out.append((label, "; ".join(f"run {k[:4]}: {v}" for k, v in values.items())))
    return out


def machine_facts(run: SavedRun) -> tuple[str, str, str]:
    """What ran it: hardware (CPU, cores, GPU, memory), software versions, and the settings that change figures."""
    m = run.machine
    infos = [b["extra_info"] for b in run.benchmarks]
    dev = m.get("device") or infos[0].get("device") or {}
    cpu = m.get("cpu_name") or (dev.get("name") if dev.get("kind", "CPU") == "CPU" else None) or "CPU not recorded"
    cores = m.get("cpu_count") or dev.get("cores")
    gpu = f"{dev.get('count', 1)}× {dev.get('name', '?')}" if dev.get("kind") == "GPU" else "no GPU"
    peak = [i["peak_memory_bytes"] for i in infos if isinstance(i.get("peak_memory_bytes"), int)]
    memory = m.get("memory_bytes")
    hardware = [
        cpu + (f", {cores} cores" if cores else ""),
        gpu + (f" (peak memory used {max(peak) / 2**30:.1f} GiB)" if peak else ""),
        f"{memory / 2**30:.0f} GiB memory" if isinstance(memory, (int, float)) else "host memory not recorded",
    ]
    gpu_software, gpu_settings = gpuinfo.header(m.get("gpu"))  # nvidia-smi's reading: driver, clocks, power limit
    software = [
        f"TensorFlow {m.get('tf_version') or infos[0].get('tf_version', '?')}",
        f"Keras {m.get('keras_version') or infos[0].get('keras_version', '?')}",
        f"Python {m['python']}" if m.get("python") else "",
        f"CUDA {m['cuda_version']}, cuDNN {m.get('cudnn_version', '?')}" if dev.get("kind") == "GPU" else "",
        gpu_software,
    ]
    settings = [
        gpu_settings,
        f"ISA {m['isa']}" if m.get("isa") else "",
        f"oneDNN {m['onednn_opts']}" if m.get("onednn_opts") else "",
        f"threads intra/inter {m.get('intra_op_threads', 0) or 'default'}/{m.get('inter_op_threads', 0) or 'default'}",
        f"XLA flags {m['xla_flags']}" if m.get("xla_flags") else "",
        f"TF32 {'on' if m['tf32'] else 'off'}" if "tf32" in m else "",
    ]
    return tuple(" · ".join(x for x in xs if x) for xs in (hardware, software, settings))  # type: ignore[return-value]


def run_facts(run: SavedRun) -> list[str]:
    """A row of the runs table: number, date, preset, commit, wall time, benchmarks, matmul peak, trace directory."""
    s = run.suite
    peaks = {k: v for k, v in (run.machine.get("peaks") or {}).items() if isinstance(v, dict) and v.get("gflops")}
    profiles = [b["extra_info"].get("profile") for b in run.benchmarks]
    roots = dict.fromkeys(Path(p["trace_dir"]).parent for p in profiles if isinstance(p, dict) and p.get("trace_dir"))
    preset = f"preset {s.get('preset') or '?'}" + "".join(
        f", {k} {s[k]}" for k in ("repeat", "seeds") if isinstance(s.get(k), int) and s[k] > 1
    )
    commit = f"commit {run.commit[:10] or '?'}" + (" (uncommitted changes)" if run.dirty else "")
    return [
        run.number,
        run.datetime[:19].replace("T", " ") + (" UTC" if run.datetime.endswith("+00:00") else "") or "date ?",
        preset,
        commit,
        f"{s['wall_s'] / 60:.1f} min" if isinstance(s.get("wall_s"), (int, float)) else "",
        f"{len(run.benchmarks)} benchmarks",
        "matmul peak " + ", ".join(f"{k} {v['gflops']:.0f}" for k, v in peaks.items()) + " GFLOP/s" if peaks else "",
        "; ".join(f"traces: tf2bench tensorboard --logdir {shlex.quote(str(d))}" for d in roots) or NO_TRACES,
    ]
