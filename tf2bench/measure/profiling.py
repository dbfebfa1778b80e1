"""Profiler traces of an untimed window of training steps, summarised by xprof itself.

A benchmark's profile window runs after its timed rounds with every step marked
(``Loop.profile``), so tracing never touches a timing figure. The trace is read
back with xprof's own converters -- the numbers TensorBoard's profile plugin shows --
and reduced to a small dict saved in ``extra_info["profile"]``. Nothing here parses
protobufs by hand.

Traces land in ``<root>/<run-id>/<workload>-<api>-<loop>/plugins/profile/<time>/``,
so ``tensorboard --logdir <root>/<run-id>`` lists one run per benchmark.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tf2bench.errors import EXIT_FAILED, BadInputError, Tf2benchError, check_positive_int
from tf2bench.measure.opstats import OP_SIDES, TOP_OPS, ops_per_step, rows, summarise_ops, top_ops  # noqa: F401 (their old home)

T = TypeVar("T")

# xprof's own thresholds for "waiting for input" as a share of step time.
INPUT_BOUND_MODERATE_PCT = 5.0
INPUT_BOUND_HIGH_PCT = 20.0
MAX_UNROLL = 16  # most train steps unrolled into one marked block (trace time grows with it)
WARM_BLOCKS = 1  # unmarked blocks before the marked ones when a loop is profiled in unrolled blocks

# input_pipeline_analyzer's step table for CPUs and GPUs alike (xprof 2.24, GenerateGenericInputPipelineAnalysis-
# DataTable in xprof/convert/op_stats_to_input_pipeline_analysis.cc; the same ids in the installed frontend bundle):
# one row per marked step, one ms column per part. A step's time is split into non-overlapping event spans, each
# instant going to its highest-priority event type (xprof/utils/event_span.h); the time no event covers is "All
# others" (xprof/convert/step_events_to_steps_db.cc), so the parts add up to stepTimeMs. Column <- event types:
#   deviceComputeTimeMs      DEVICE_COMPUTE_16 + DEVICE_COMPUTE_32 (GPU kernels)
#   deviceToDeviceTimeMs     DEVICE_TO_DEVICE (MemcpyDtoD) + DEVICE_WAIT_DEVICE
#   deviceCollectivesTimeMs  DEVICE_COLLECTIVES (GPU kernels named nccl*: all-reduce and friends)
#   hostComputeTimeMs        HOST_COMPUTE (all op time on a CPU-only machine)
#   kernelLaunchTimeMs       HOST_PREPARE (launching device work)
#   infeedTimeMs "Input"     HOST_WAIT_INPUT + HOST_TO_DEVICE + DEVICE_WAIT_HOST (host-to-device is not apart here)
#   outfeedTimeMs "Output"   DEVICE_TO_HOST
#   compileTimeMs            HOST_COMPILE
#   otherTimeMs "All others" UNKNOWN_TIME (Python, untraced host work)
# Host-to-host copies (HOST_TO_HOST) count in the step but in no column: the one known way the parts fall short.
STEP_TIME_COLUMN = "stepTimeMs"
STEP_COLUMNS = {  # xprof's column -> our key (ms); keys of old records keep their names
    STEP_TIME_COLUMN: "step_time_ms",
    "infeedTimeMs": "input_ms",
    "hostComputeTimeMs": "host_compute_ms",
    "deviceComputeTimeMs": "device_compute_ms",
    "kernelLaunchTimeMs": "kernel_launch_ms",
    "compileTimeMs": "compile_ms",
    "otherTimeMs": "other_ms",
    "deviceToDeviceTimeMs": "device_to_device_ms",
    "deviceCollectivesTimeMs": "device_collectives_ms",
    "outfeedTimeMs": "output_ms",
}
# Each part is a sum of whole picoseconds that together make the step's duration, sent as round-trip doubles
# (nlohmann::json): the only gap is float rounding, <= ~12 additions x 2**-53 ~ 1.3e-15 of the step. 1e-9 is far
# above that and far below any real time (1 ns in a 1 ms step is 1e-6).
PARTS_REL_TOLERANCE = 1e-9

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class ProfileError(Tf2benchError):
    """No usable trace: another profiler session is active, or the trace has no marked steps."""

    exit_code = EXIT_FAILED


def safe_name(text: str) -> str:
    """One path component from user-supplied text: no separators, no ``..``, never empty."""
    name = _UNSAFE.sub("_", str(text)).strip("._")
    if not name:
        raise BadInputError(f"{text!r} gives no usable directory name")
    return name


def run_name(*parts: object) -> str:
    """The TensorBoard run (directory) name of one benchmark, e.g. ``cifar100-functional-fit``."""
    return "-".join(safe_name(str(p)) for p in parts)


def new_run_dir(root: Path, run_id: str | None = None) -> Path:
    """A fresh directory for one suite run's traces (a timestamp unless ``run_id`` is given)."""
    base = safe_name(run_id or time.strftime("%Y%m%d-%H%M%S"))
    root.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        path = root / (base if n == 0 else f"{base}-{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise ProfileError(f"could not create a new trace directory under {root}")


def _start(logdir: Path) -> None:
    import tensorflow as tf

    try:
        tf.profiler.experimental.start(str(logdir))
    except tf.errors.AlreadyExistsError:
        raise ProfileError(
            "another profiler session is already active in this process (TensorFlow allows one at a time); "
            "stop it before profiling, or run without --profile"
        ) from None


def _stop() -> None:
    import tensorflow as tf

    tf.profiler.experimental.stop()


def find_trace(logdir: Path, since: float = 0.0) -> Path:
    """The newest ``*.xplane.pb`` under ``logdir`` written at or after ``since`` (a time.time())."""
    found = [p for p in Path(logdir).glob("plugins/profile/*/*.xplane.pb") if p.stat().st_mtime >= since - 1.0]
    if not found:
        raise ProfileError(f"the profiler wrote no trace under {logdir}/plugins/profile/")
    return max(found, key=lambda p: p.stat().st_mtime)


def unrolled_block(steps: int, cap: int = MAX_UNROLL) -> int:
    """Train steps per block for a loop whose ``steps``-step window is profiled in unrolled blocks.

    xprof measures no step of a trace that runs a ``while_loop``, so such loops run their window as blocks of
    this many steps unrolled, the first block unmarked (a new function's first call pays graph optimisation
    and kernel set-up, which the timed windows never pay). The length is the largest divisor of ``steps``
    up to its square root (and ``cap``): the blocks tile the window, so the profiled run trains exactly the
    unprofiled run's steps; and it is 1 unless at least two marked blocks remain after the warm one
    (4 -> 1, 5 -> 1, 6 -> 2, 16 -> 4).
    """
    return max(
        d
        for d in range(1, min(cap, math.isqrt(steps)) + 1)
        if steps % d == 0 and (d == 1 or steps // d >= WARM_BLOCKS + 2)
    )


def unrolled_blocks(start: int, steps: int, n: int) -> list[tuple[int, bool]]:
    """(first train step, marked?) of each ``n``-step block of the window ``[start, start + steps)``.

    The first ``WARM_BLOCKS`` blocks are unmarked, unless no other block is left to mark.
    """
    firsts = list(range(start, start + steps, n))
    warm = WARM_BLOCKS if len(firsts) > WARM_BLOCKS else 0
    return [(k, i >= warm) for i, k in enumerate(firsts)]


def profile_window(
    logdir: Path, train: Callable[[], T], train_steps_per_marked_step: int = 1, train_steps: int | None = None
) -> tuple[T, dict[str, Any]]:
    """Run ``train()`` under the profiler and summarise its trace.

    ``train()`` always runs, traced or not: its steps are part of every loop's training,
    so skipping them would break the equal-batches comparison. When no trace can be had the
    summary is ``{"error": ..., "trace_dir": ...}`` and the benchmark keeps its results.
    ``train_steps_per_marked_step``: train steps inside one marked step; the summary's ms are per train step.
    ``train_steps``: the train steps ``train()`` runs, marked or not (each op's self time is divided by it).
    """
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    since = time.time()
    try:
        _start(logdir)
    except ProfileError as exc:
        return train(), {"error": str(exc), "trace_dir": str(logdir)}
    try:
        result = train()
    except BaseException:
        with contextlib.suppress(Exception):  # the training error is the one to report
            _stop()
        raise
    trace = None
    try:
        _stop()
        trace = find_trace(logdir, since)
        summary = summarise(trace, train_steps_per_marked_step, train_steps)
    except Exception as exc:  # a benchmark's timings outlive a failed trace or conversion
        failed = {"error": f"{type(exc).__name__}: {exc}", "trace_dir": str(logdir)}
        if trace is not None:  # still worth opening in the trace viewer
            failed["trace_path"] = str(trace)
        return result, failed
    return result, {"trace_dir": str(logdir), **summary}


def tool_data(xplane: Path, tool: str) -> list[dict[str, Any]]:
    """One profile-plugin tool's gviz DataTables for a trace, computed fresh by xprof."""
    from xprof.convert import raw_to_tool_data

    data, _ = raw_to_tool_data.xspace_to_tool_data([str(xplane)], tool, {"use_saved_result": False})
    if not data:
        raise ProfileError(f"xprof could not produce {tool} for {xplane}")
    tables = json.loads(data)
    return tables if isinstance(tables, list) else [tables]


def input_bound_level(pct: float) -> str:
    """xprof's wording: "highly" (>= 20%), "moderately" (>= 5%) or "not" input-bound."""
    if pct >= INPUT_BOUND_HIGH_PCT:
        return "highly"
    if pct >= INPUT_BOUND_MODERATE_PCT:
        return "moderately"
    return "not"


def step_parts(table: dict[str, Any]) -> list[str]:
    """The step table's part columns: those xprof's step-time chart stacks into a step.

    xprof names them in ``step_time_graph_column_ids`` (its frontend draws exactly those); without that list, every
    ms column but the step time. A part this module has no name for still counts, so the parts add up.
    """
    numeric = [c["id"] for c in table.get("cols", []) if c.get("type", "number") == "number"]
    numeric = [c for c in numeric if c != STEP_TIME_COLUMN]
    listed = {c.strip() for c in str((table.get("p") or {}).get("step_time_graph_column_ids", "")).split(",")}
    return [c for c in numeric if c in listed] or [c for c in numeric if c.endswith("TimeMs")]


def summarise_input_pipeline(tables: list[dict[str, Any]], train_steps_per_marked_step: int = 1) -> dict[str, Any]:
    """Step-time breakdown from input_pipeline_analyzer: averages over the marked steps, in ms per train step.

    xprof times marked steps; a loop profiled in blocks of ``train_steps_per_marked_step`` train steps gets each
    figure divided by it, so every loop's ``step_time_ms`` means the same thing. ``marked_step_time_ms`` keeps
    xprof's own per-marked-step average. Every part xprof reports is kept (``STEP_COLUMNS`` by name, any other in
    ``extra_parts_ms``) and their sum is checked against the step time, step by step (``parts_add_up``).
    """
    per = check_positive_int("train_steps_per_marked_step", train_steps_per_marked_step, parse=False)
    table = next((t for t in tables if "steptime_ms_average" in (t.get("p") or {})), None)
    if table is None:
        raise ProfileError("xprof's input_pipeline_analyzer has no step-time table")
    ids = [c["id"] for c in table.get("cols", [])]
    if STEP_TIME_COLUMN not in ids:
        raise ProfileError(
            f"xprof's step table has no {STEP_TIME_COLUMN} column (it has {', '.join(ids)}): "
            "tf2bench reads xprof's CPU/GPU step table"
        )
    steps = rows(table)
    step_ms = [float(s[STEP_TIME_COLUMN] or 0.0) for s in steps]
    if not steps or not sum(step_ms) > 0:
        raise ProfileError(
            "no step time measured: xprof found no marked steps. Each step must run inside "
            "Trace(..., step_num=i, _r=1); on CPU xprof also counts no step in a trace whose graphs run a "
            "tf.while_loop (several steps per call: fit's steps_per_execution > 1, a tf.range loop in a "
            "tf.function): profile such loops in unrolled blocks"
        )

    def ms(col: str) -> float:  # mean per train step; a column this xprof does not report counts 0
        return statistics.fmean(float(s.get(col) or 0.0) for s in steps) / per

    per_step = [t / per for t in step_ms]
    parts = step_parts(table)
    sums = [sum(float(s.get(c) or 0.0) for c in parts) for s in steps]
    out: dict[str, Any] = {
        "steps_measured": len(steps),  # marked (profiler) steps
        "train_steps_per_marked_step": per,
        "train_steps_measured": len(steps) * per,
        "marked_step_time_ms": statistics.fmean(step_ms),
        **{key: ms(col) for col, key in STEP_COLUMNS.items()},
        "step_time_ms_stddev": statistics.stdev(per_step) if len(per_step) > 1 else 0.0,
        "step_time_ms_min": min(per_step),
        "step_time_ms_max": max(per_step),
        "extra_parts_ms": {col: ms(col) for col in parts if col not in STEP_COLUMNS},
        "parts_ms": statistics.fmean(sums) / per,
        "unattributed_ms": statistics.fmean(t - p for t, p in zip(step_ms, sums, strict=True)) / per,
        "parts_add_up": all(abs(t - p) <= PARTS_REL_TOLERANCE * t for t, p in zip(step_ms, sums, strict=True)),
    }
    pct = 100.0 * out["input_ms"] / out["step_time_ms"]
    p = table["p"]
    out.update(
        input_bound_pct=pct,
        input_bound=input_bound_level(pct),
        conclusion=p.get("input_conclusion", ""),
        next_step=p.get("summary_nextstep", ""),
        hardware_type=p.get("hardware_type", ""),
    )
    return out


def summarise(xplane: Path, train_steps_per_marked_step: int = 1, train_steps: int | None = None) -> dict[str, Any]:
    """The profile summary of one trace: step-time breakdown (ms per train step), input-bound %, top ops, and every
    op's self time per train step (``ops``; ``train_steps``: the train steps the session ran, default the marked
    ones)."""
    summary: dict[str, Any] = {"trace_path": str(xplane)}
    tables = tool_data(xplane, "input_pipeline_analyzer")
    summary.update(summarise_input_pipeline(tables, train_steps_per_marked_step))
    ops = tool_data(xplane, "framework_op_stats")
    summary.update(summarise_ops(ops))
    summary["ops"] = ops_per_step(ops, train_steps or summary["train_steps_measured"], summary["step_time_ms"])
    return summary


def read_ops(profile: dict[str, Any]) -> dict[str, Any]:
    """``profile["ops"]`` read again from a saved profile's kept trace (a record saved before per-op times).

    The session's train steps are the record's ``steps`` (the profile window; the marked ones in older records
    without it). ProfileError when the trace is not there; ImportError without xprof.
    """
    trace = Path(str(profile.get("trace_path") or ""))
    if not profile.get("trace_path") or not trace.is_file():
        raise ProfileError(f"the trace {profile.get('trace_path') or '(none recorded)'} is not here")
    steps = int(profile.get("steps") or profile.get("train_steps_measured") or 0)
    if not (steps > 0 and float(profile.get("step_time_ms") or 0) > 0):
        raise ProfileError(f"the profile of {trace} records no step time or steps to divide its ops by")
    return ops_per_step(tool_data(trace, "framework_op_stats"), steps, float(profile["step_time_ms"]))
