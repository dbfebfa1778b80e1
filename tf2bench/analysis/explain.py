"""Why a loop got slower, read from the profiles of the two runs: the op-level diff of a slowdown.

For each side's profile of the same benchmark (workload, api, loop, repeat, seed): the ops whose self time per
train step changed most, by name and by type, in ms per step and as a share of the step's change; the ops that
appeared or vanished; and the shift of the step breakdown (input, host compute, device compute, compile,
idle/other, collectives, ...). A loop pooled over several benchmarks (its model APIs, repeats, seeds) is the mean
of its pairs, so its op changes still add up to its step's change.

Per-op times come from ``profile["ops"]`` (tf2bench.measure.opstats.ops_per_step), saved with every profiled result, or
are read again from the kept trace of a record saved before them (tf2bench.measure.profiling.read_ops: xprof, never
TensorFlow). Op names are compared as a fresh process would number them (``conv2d_7_1`` in a process that built
other models before is ``conv2d_1`` when it is the second ``conv2d`` of its model, see opstats.canonical_names), so the
same layer matches in both runs. Everything returned is plain JSON (bisect saves it beside its probes).
"""

from __future__ import annotations

import argparse
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tf2bench.analysis import explain_step as step_
from tf2bench.analysis import opnames
from tf2bench.analysis.explain_render import bench_label, html_page, lines, markdown, rerun_hint, rows, write  # noqa: F401
from tf2bench.errors import Tf2benchError
from tf2bench.measure import opstats, profiling
from tf2bench.saved import storage

TOP = 5
CHANGE_FLOOR_MS = 1e-9  # an op or type that changed by less has not changed: not listed
SIDES = ("device", "host")  # the device makes the step when it has ops (as profile["top_ops"])


# ---- what each benchmark's profile holds ----------------------------------------------------------------------------


def profile_ops(info: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """(profile["ops"] or the same read from the kept trace, "") or (None, why there is none)."""
    profile = info.get("profile")
    if not profile:
        return None, "no profile (not run with --profile)"
    if profile.get("error"):
        return None, f"its profile failed: {profile['error']}"
    if isinstance(profile.get("ops"), dict):
        return profile["ops"], ""
    try:
        return profiling.read_ops(profile), ""
    except ImportError:
        return None, "saved before per-op times, and reading its trace needs xprof (pip install xprof)"
    except Exception as exc:  # a trace that is gone or unreadable: say so, explain the rest
        return None, f"saved before per-op times, and its trace cannot be read ({exc})"


def _side_ops(ops: dict[str, Any], side: str) -> dict[str, dict[str, Any]]:
    found = ops.get(side) or []
    fallback = opstats.canonical_names(o["op"] for o in found)  # a record without "name": from its kept ops
    return {o.get("name") or fallback[o["op"]]: {"type": o["type"], "ms": float(o["self_ms_per_step"])} for o in found}


def _side_total(ops: dict[str, Any], side: str) -> float:
    rest = (ops.get("rest") or {}).get(side) or {}
    return sum(float(o["self_ms_per_step"]) for o in ops.get(side) or []) + float(rest.get("self_ms_per_step", 0.0))


# ---- the diff ------------------------------------------------------------------------------------------------------


def _as_list(infos: dict[str, Any] | Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [infos] if isinstance(infos, dict) else list(infos)


def _pair_key(info: dict[str, Any]) -> tuple:
    return info.get("workload"), info.get("api"), info.get("loop"), info.get("repeat", 0), info.get("seed", 0)


def explain(
    base_info: dict[str, Any] | Sequence[dict[str, Any]],
    new_info: dict[str, Any] | Sequence[dict[str, Any]],
    *,
    top: int = TOP,
    base_label: str = "baseline",
    new_label: str = "current",
) -> dict[str, Any]:
    """The op-level explanation of one loop between two runs (see the module's docstring); plain JSON.

    ``base_info`` / ``new_info``: a benchmark's ``extra_info``, or a list of them (a loop's benchmarks: paired by
    workload, api, loop, repeat and seed). ``status`` is ``explained`` (from ``benchmarks`` of ``pairs`` pairs,
    ``missing`` naming the others) or ``no profile`` (``rerun`` says what to run).
    """
    base, new = _as_list(base_info), _as_list(new_info)
    by_key = {_pair_key(i): i for i in new}
    pairs = [(b, by_key[_pair_key(b)]) for b in base if _pair_key(b) in by_key]
    first = (base or new)[0]
    loop = f"{first.get('workload', '?')}/{_loop_api(base or new)}/{first.get('loop', '?')}"
    out: dict[str, Any] = {"loop": loop, "base": base_label, "new": new_label, "pairs": len(pairs), "missing": []}
    usable = []
    for b, n in pairs:
        (bo, bwhy), (no, nwhy) = profile_ops(b), profile_ops(n)
        for side, why, label in (("baseline", bwhy, base_label), ("current", nwhy, new_label)):
            if why:
                out["missing"].append({"side": side, "run": label, "benchmark": bench_label(b), "why": why})
        if bo is not None and no is not None:
            usable.append((b, n, bo, no))
    out["benchmarks"] = len(usable)
    if not usable:
        out["status"] = "no profile"
        lacking = defaultdict(list)
        for m in out["missing"]:
            lacking[(m["side"], m["run"])].append(m)
        hints = []
        for (side, run), ms in lacking.items():
            infos = [i for i in (base if side == "baseline" else new) if bench_label(i) in {m["benchmark"] for m in ms}]
            hints.append(rerun_hint(infos or (base if side == "baseline" else new), f"{side} {run}"))
        out["rerun"] = hints or [f"no benchmark of {loop} is in both runs"]
        return out
    out["status"] = "explained"
    out.update(_diff(usable, top))
    return out


def _loop_api(infos: Sequence[dict[str, Any]]) -> str:
    apis = {str(i.get("api")) for i in infos}
    return apis.pop() if len(apis) == 1 else "*"


def _pooled_ops(usable: list[tuple], side: str) -> tuple[dict[str, float], dict[str, float], dict[str, str]]:
    """Each op's mean self time per step over the pairs (0 in a pair without it), baseline and current, and its type.

    Pairs of several model APIs name the same layers under each API's model scope: that scope becomes ``<model>``.
    """
    per_pair = [(_side_ops(bo, side), _side_ops(no, side)) for _, _, bo, no in usable]
    scopes = {s for pair in per_pair for ops in pair if (s := opnames.model_scope(ops))}
    rename = len({b.get("api") for b, _, _, _ in usable}) > 1 and len(scopes) > 1
    base: dict[str, float] = defaultdict(float)
    new: dict[str, float] = defaultdict(float)
    kinds: dict[str, str] = {}
    for pair in per_pair:
        for target, ops in zip((base, new), pair, strict=True):
            if rename:
                ops = opnames.rename_scope(ops, opnames.model_scope(ops) or "")
            for name, op in ops.items():
                target[name] += op["ms"] / len(usable)
                kinds[name] = op["type"]
    return dict(base), dict(new), kinds


def _side(usable: list[tuple], side: str, step_delta: float, top: int) -> dict[str, Any]:
    """One side's op diff: its total, the top ops and op types by change, the ops that appeared or vanished.

    A record leaves out ops under its cut (``min_ms``), so an op missing on one side may have run there under it:
    it counts as appeared (vanished) only when it is at least twice the other side's cut (then at least half of
    its time is new), else its status says it was under the cut.
    """
    base, new, kinds = _pooled_ops(usable, side)
    cut = (
        max(float(o.get("min_ms", 0.0)) for *_, o, _ in usable),
        max(float(o.get("min_ms", 0.0)) for *_, o in usable),
    )
    totals = (
        step_.mean(_side_total(bo, side) for *_, bo, _ in usable),
        step_.mean(_side_total(no, side) for *_, no in usable),
    )
    ops = []
    for name in base.keys() | new.keys():
        b, n = base.get(name, 0.0), new.get(name, 0.0)
        status = "changed"
        if name not in base:
            status = "appeared" if n >= 2 * cut[0] else "under the cut before"
        elif name not in new:
            status = "vanished" if b >= 2 * cut[1] else "under the cut now"
        row = {"op": name, "type": kinds[name], "status": status, **step_.change(b, n, step_delta)}
        ops.append(row)
    ops.sort(key=lambda r: (-abs(r["delta_ms"]), r["op"]))
    by_type: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0])
    for r in ops:
        t = by_type[r["type"]]
        t[0], t[1], t[2] = t[0] + r["base_ms"], t[1] + r["new_ms"], t[2] + 1
    types = [{"type": t, "ops": int(v[2]), **step_.change(v[0], v[1], step_delta)} for t, v in by_type.items()]
    return {
        "total": step_.change(totals[0], totals[1], step_delta),
        "ops": [r for r in ops if abs(r["delta_ms"]) > CHANGE_FLOOR_MS][:top],
        "types": [
            r
            for r in sorted(types, key=lambda r: (-abs(r["delta_ms"]), r["type"]))
            if abs(r["delta_ms"]) > CHANGE_FLOOR_MS
        ][:top],
        "appeared": sorted((r for r in ops if r["status"] == "appeared"), key=lambda r: -r["new_ms"])[:top],
        "vanished": sorted((r for r in ops if r["status"] == "vanished"), key=lambda r: -r["base_ms"])[:top],
    }


def _diff(usable: list[tuple], top: int) -> dict[str, Any]:
    bp = [b["profile"] for b, _, _, _ in usable]
    np_ = [n["profile"] for _, n, _, _ in usable]
    step = step_.change(step_.mean(p["step_time_ms"] for p in bp), step_.mean(p["step_time_ms"] for p in np_), 0.0)
    d = step["delta_ms"]
    timed_base = step_.mean(float(b.get("step_time_ms") or 0.0) for b, _, _, _ in usable)
    timed_new = step_.mean(float(n.get("step_time_ms") or 0.0) for _, n, _, _ in usable)
    out: dict[str, Any] = {
        "step": step,
        "timed": step_.change(timed_base, timed_new, 0.0) if timed_base > 0 and timed_new > 0 else {"change_pct": None},
        "parts": step_.parts(bp, np_, d),
        "min_ms": max(float(o.get("min_ms", 0.0)) for *_, bo, no in usable for o in (bo, no)),
    }
    out.update(sides={}, ops={}, types={}, appeared={}, vanished={})
    for side in SIDES:
        if any(o.get(side) for *_, bo, no in usable for o in (bo, no)):
            diff = _side(usable, side, d, top)
            out["sides"][side] = diff.pop("total")
            for key, value in diff.items():
                out[key][side] = value
    step["se_ms"] = math.sqrt(step_.var_of_mean(bp) + step_.var_of_mean(np_))
    out["notes"] = step_.noise_notes(step, out["timed"], bp + np_)
    lead = next((out["sides"][s] for s in SIDES if s in out["sides"]), None)
    out["notes"] += step_.outside_ops_notes(step, lead)
    return out


# ---- from a comparison ----------------------------------------------------------------------------------------------


def run_label(run: Any) -> str:
    """A saved run as the explanation names it: its number, and its commit when recorded."""
    commit = run.commit[:7] if re.fullmatch(r"[0-9a-f]{7,}", run.commit or "") else ""
    return run.number + (f" (commit {commit}{', uncommitted changes' if run.dirty else ''})" if commit else "")


def unit_infos(run: Any, workload: str, api: str, loop: str) -> list[dict[str, Any]]:
    """The records of a compared unit's benchmarks in one run (api "*": a loop pooled over its model APIs)."""
    found = [b["extra_info"] for b in run.benchmarks]
    return [i for i in found if (i["workload"], i["loop"]) == (workload, loop) and api in ("*", i["api"])]


def for_comparison(result: Any, baseline: Any, current: Any, every: bool = False, top: int = TOP) -> list[dict]:
    """An explanation per REGRESSION of a ``compare.Comparison`` (``every``: per loop compared), baseline run vs
    current run (the baseline run alone, not its commit's other runs). ``verdict`` and ``change_pct`` are
    compare's own, beside the profiles' figures."""
    out = []
    for r in result.table.itertuples():
        if not (every or r.verdict == "REGRESSION"):
            continue
        workload, api, loop = str(r.benchmark).split("/")

        pair = [unit_infos(run, workload, api, loop) for run in (baseline, current)]
        expl = explain(*pair, top=top, base_label=run_label(baseline), new_label=run_label(current))
        expl["loop"] = str(r.benchmark)
        expl.update(verdict=r.verdict, change_pct=float(r.change_pct))
        out.append(expl)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    """compare's options for the explanation."""
    p.add_argument(
        "--explain",
        action="store_true",
        help="explain every loop compared from the two runs' profiles (default: each REGRESSION): the ops whose "
        "self time per train step changed most, the step breakdown's shift",
    )
    p.add_argument("--out", type=Path, default=storage.REPORTS, help="explanations go to OUT/compare-<digest>/")


def compute(args: argparse.Namespace, baseline: Any, current: Any, result: Any) -> tuple[list[dict], str | None]:
    """compare's explanations, computed once for the terminal, the files and the summary: (for_comparison's list,
    None), or ([], why not) - a failure to explain is a note, never a change of the gate's verdict or exit code."""
    try:
        return for_comparison(result, baseline, current, every=args.explain), None
    except (Tf2benchError, OSError, KeyError, ValueError) as exc:
        return [], f"no explanation ({type(exc).__name__}: {exc})"


def emit(args: argparse.Namespace, baseline: Any, current: Any, expls: list[dict], why_not: str | None) -> None:
    """compare's explanation output: the lines, and explain.{md,csv,html} (``compute``'s result)."""
    if why_not:
        print(f"note: {why_not}")
        return
    try:
        for e in expls:
            print("\n".join(lines(e)))
        if any(e["status"] == "explained" for e in expls):
            written = write(expls, baseline, current, args.out)
            print(f"explanations: {written.directory}/ (explain.md, explain.csv, explain.html)")
    except (Tf2benchError, OSError, KeyError, ValueError) as exc:
        print(f"note: no explanation ({type(exc).__name__}: {exc})")
