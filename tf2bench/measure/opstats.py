"""Per-op self time from xprof's framework_op_stats: the top ops of a profile, and every op per train step.

``top_ops`` are the few ops a reader scans; ``ops_per_step`` keeps every op above a small share of the step, per
train step, host and device apart, so that two profiles can be diffed op by op later
(tf2bench.analysis.explain: what got slower inside the step). Both read the tables xprof's converter returns
(tf2bench.measure.profiling.tool_data); nothing here imports xprof or TensorFlow.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from tf2bench.errors import BadInputError

TOP_OPS = 5
# An op is kept per train step when its self time is at least this share of the step time: 0.1% of a 30 ms step is
# 30 us. What is left out is summed (``rest``), so each side's total self time is kept whole.
OPS_MIN_SHARE = 0.001
OPS_MAX = 400  # per side at most (the smoke and quick CNNs have ~60-100 ops above the share): records stay small

# framework_op_stats (xprof 2.24, TfStatsToDataTableJson in xprof/convert/op_stats_to_tf_stats.cc): two tables, with
# and without IDLE, each listing the device's ops (host_or_device "Device": GPU kernels grouped by TF op, at most
# 500) then the host's ("Host": op execution on CPU threads, which on a GPU includes launching the kernels, at most
# 500), ranked by self time within each side. The same op can appear on both sides: the two times are not one sum.
# Its times cover the whole profiler session (every op call between start and stop), in microseconds.
OP_SIDES = ("Device", "Host")

_NUMBERED = re.compile(r"^(.*?)((?:_\d+)+)$")  # Keras / TF scope numbering: conv2d_3, conv2d_3_1


def _split(component: str) -> tuple[str, tuple[int, ...]]:
    m = _NUMBERED.match(component)
    if not m or not m[1]:
        return component, ()
    return m[1], tuple(int(x) for x in m[2].strip("_").split("_"))


def canonical_names(names: Iterable[str]) -> dict[str, str]:
    """Each op name with its scopes renumbered as a fresh process would number them.

    Keras and TensorFlow number a scope by how many of its kind the process made before (``conv2d_7``, and ``_1``
    when a scope is entered again), so the same layer has another name in a run that built other models first.
    Within each parent scope, the distinct numberings of a base name are ranked (``conv2d_6_1`` < ``conv2d_7_1``)
    and renamed by rank (``conv2d``, ``conv2d_1``): the same model gives the same names in every run, given all its
    ops' names (a layer none of whose ops is listed would shift the ranks). The op's own name, the last component,
    is kept: a graph numbers it (``Sub_9``) the same way in every process. A model with a layer added or removed
    shifts the names after it (the by-type diff does not depend on names).
    """
    names = list(dict.fromkeys(names))
    parts = {n: n.split("/") for n in names}
    out: dict[str, list[str]] = {n: [] for n in names}
    pending, depth = [n for n in names if len(parts[n]) > 1], 0
    while pending:
        seen: dict[tuple[str, str], set[tuple[int, ...]]] = defaultdict(set)
        for n in pending:
            base, number = _split(parts[n][depth])
            seen[("/".join(out[n]), base)].add(number)
        rank = {k: {num: i for i, num in enumerate(sorted(v))} for k, v in seen.items()}
        for n in pending:
            base, number = _split(parts[n][depth])
            r = rank[("/".join(out[n]), base)][number]
            out[n].append(base if r == 0 else f"{base}_{r}")
        depth += 1
        pending = [n for n in pending if len(parts[n]) > depth + 1]
    return {n: "/".join([*out[n], parts[n][-1]]) for n in names}


def rows(table: dict[str, Any]) -> list[dict[str, Any]]:
    """A gviz DataTable's rows as dicts keyed by column id."""
    ids = [c["id"] for c in table.get("cols", [])]
    return [dict(zip(ids, [c.get("v") if c else None for c in row["c"]], strict=False)) for row in table["rows"]]


def op_rows(tables: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The op table's rows with self time, IDLE left out (a CPU trace lists eager ops with none: xprof times none)."""
    table = next((t for t in tables if any(c["id"] == "total_self_time" for c in t.get("cols", []))), None)
    if table is None:
        return []
    return [r for r in rows(table) if r.get("type") != "IDLE" and float(r["total_self_time"] or 0) > 0]


def top_ops(tables: list[dict[str, Any]], n: int = TOP_OPS, where: str | None = None) -> list[dict[str, Any]]:
    """The ``n`` framework ops with the most self time on one side, ``where`` "Device" or "Host".

    Default: the device when the trace has device ops (a GPU's kernels make the step), else the host. ``self_pct``
    is the share of that side's self time (of the ops xprof lists), never of host and device time added together.
    """
    if where is not None and where not in OP_SIDES:
        raise BadInputError(f"unknown op side {where!r}: choose one of {', '.join(OP_SIDES)}")
    ops = op_rows(tables)
    if where is None:
        where = "Device" if any(r.get("host_or_device") == "Device" for r in ops) else "Host"
    ops = sorted((r for r in ops if r.get("host_or_device") == where), key=lambda r: -float(r["total_self_time"]))
    total_us = sum(float(r["total_self_time"]) for r in ops) or 1.0
    return [
        {
            "op": r["operation"],
            "type": r["type"],
            "where": r["host_or_device"],
            "occurrences": int(r["occurrences"]),
            "self_ms": float(r["total_self_time"]) / 1000.0,  # xprof reports microseconds
            "self_pct": 100.0 * float(r["total_self_time"]) / total_us,
        }
        for r in ops[:n]
    ]


def summarise_ops(tables: list[dict[str, Any]], n: int = TOP_OPS) -> dict[str, Any]:
    """``top_ops`` (the side that makes the step: the device if any), and ``top_ops_device`` / ``top_ops_host``."""
    return {
        "top_ops": top_ops(tables, n),
        "top_ops_device": top_ops(tables, n, "Device"),
        "top_ops_host": top_ops(tables, n, "Host"),
    }


def ops_per_step(
    tables: list[dict[str, Any]], train_steps: int, step_time_ms: float, min_share: float = OPS_MIN_SHARE
) -> dict[str, Any]:
    """Every op's self time per train step, host and device apart: the record ``profile["ops"]``.

    xprof's op table covers the whole profiler session, so each op's self time is divided by the train steps the
    session ran (``train_steps``: the profile window, unmarked warm-up blocks included). An op is kept when that is
    at least ``min_share`` of ``step_time_ms`` (``min_ms``); the others are summed into ``rest`` per side, so a
    side's total self time per step is its ops plus its rest. Ops on parallel threads overlap: a side's self
    times can add up to more than the step.
    """
    if not (isinstance(train_steps, int) and train_steps > 0):
        raise BadInputError(f"train_steps must be a positive whole number of steps, got {train_steps!r}")
    cut = min_share * step_time_ms
    out: dict[str, Any] = {"train_steps": train_steps, "min_share": min_share, "min_ms": cut}
    rest: dict[str, dict[str, Any]] = {}
    found = op_rows(tables)
    names = canonical_names(r["operation"] for r in found)  # from every op, kept or not: stable ranks
    for where in OP_SIDES:
        side = sorted(
            (r for r in found if r.get("host_or_device") == where), key=lambda r: -float(r["total_self_time"])
        )
        kept: list[dict[str, Any]] = []
        left: list[float] = []
        for r in side:
            ms = float(r["total_self_time"]) / 1000.0 / train_steps  # xprof reports microseconds
            if ms < cut or len(kept) >= OPS_MAX:
                left.append(ms)
                continue
            op = {"op": r["operation"], "name": names[r["operation"]], "type": r["type"], "self_ms_per_step": ms}
            op["calls_per_step"] = float(r["occurrences"] or 0) / train_steps
            if r.get("eager") == "Eager":  # run eagerly, outside any tf.function
                op["eager"] = True
            kept.append(op)
        out[where.lower()] = kept
        rest[where.lower()] = {"ops": len(left), "self_ms_per_step": sum(left)}
    out["rest"] = rest
    return out
