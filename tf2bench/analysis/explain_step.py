"""The step's side of an explanation (tf2bench.analysis.explain): the shift of the step breakdown, part by part,
and what the profiles' own noise allows one to read from them. Plain dicts in, plain dicts out."""

from __future__ import annotations

import statistics
from collections.abc import Iterable
from typing import Any

PART_FLOOR_MS = 1e-6  # a part under 1 ns a step is float rounding (parts_add_up: ~1e-15 of the step)
OUTSIDE_OPS = 0.5  # ops' change under this share of a clear step change: the change is outside them
NOISE_SE = 2.0  # a profiled step change under this many standard errors is within the profile's own noise
PARTS = {  # the step breakdown's record keys (docs/profiling.md), in xprof's order; an older record lacks some: 0
    "input_ms": "input",
    "host_compute_ms": "host compute",
    "device_compute_ms": "device compute",
    "kernel_launch_ms": "kernel launch",
    "compile_ms": "compile",
    "device_to_device_ms": "device to device",
    "device_collectives_ms": "collectives",
    "output_ms": "output",
    "other_ms": "idle/other (untraced: Python, waits)",
}


def mean(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.fmean(values) if values else 0.0


def change(base: float, new: float, step_delta: float) -> dict[str, Any]:
    delta = new - base
    return {
        "base_ms": base,
        "new_ms": new,
        "delta_ms": delta,
        "change_pct": 100.0 * delta / base if base > 0 else None,
        "share": delta / step_delta if abs(step_delta) > 1e-12 else None,  # of the step's change
    }


def parts(bp: list[dict[str, Any]], np_: list[dict[str, Any]], step_delta: float) -> list[dict[str, Any]]:
    """The step breakdown's shift, part by part, largest change first (parts both runs have as 0 left out)."""
    extra = sorted({c for p in bp + np_ for c in (p.get("extra_parts_ms") or {})})
    keys = [*PARTS.items(), *((f"extra:{c}", c) for c in extra), ("unattributed_ms", "in no column (host-to-host)")]
    out = []
    for key, label in keys:

        def part(p: dict[str, Any], key: str = key) -> float:
            if key.startswith("extra:"):
                return float((p.get("extra_parts_ms") or {}).get(key[6:], 0.0))
            return float(p.get(key) or 0.0)

        row = {"part": key, "label": label, **change(mean(map(part, bp)), mean(map(part, np_)), step_delta)}
        if max(abs(row["base_ms"]), abs(row["new_ms"])) > PART_FLOOR_MS:
            out.append(row)
    return sorted(out, key=lambda r: -abs(r["delta_ms"]))


def var_of_mean(profiles: list[dict[str, Any]]) -> float:
    """The variance of the mean profiled step over these profiles, from each one's step-to-step spread."""
    k = len(profiles)
    return (
        sum(
            float(p.get("step_time_ms_stddev") or 0.0) ** 2 / max(1, int(p.get("steps_measured") or 1))
            for p in profiles
        )
        / k**2
    )


def pct_of(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%"


def noise_notes(step: dict[str, Any], timed: dict[str, Any], profiles: list[dict[str, Any]]) -> list[str]:
    """When the profiles cannot carry the explanation: a change within their own noise, or unlike the timed one."""
    notes = []
    steps = min(int(p.get("steps_measured") or 0) for p in profiles)
    window = max(int(p.get("steps") or p.get("train_steps_measured") or 0) for p in profiles)  # --profile-steps
    if abs(step["delta_ms"]) < NOISE_SE * step["se_ms"]:
        notes.append(
            f"the profiled step changed by {step['delta_ms']:+.2f} ms, less than {NOISE_SE:g} standard errors of the "
            f"profiled steps' own spread ({step['se_ms']:.2f} ms, {steps} steps a side): the ops' changes are "
            f"noise as much as signal; profile more steps (--profile-steps {2 * window}) or --repeat the suite"
        )
    t, p = timed.get("change_pct"), step["change_pct"]
    if t is not None and p is not None and abs(t) >= 5.0 and (p * t < 0 or abs(p) < abs(t) / 2):
        notes.append(
            f"the profiled steps changed by {p:+.0f}%, the timed rounds by {t:+.0f}%: the profile window, a few "
            "steps after the timed rounds, did not meet what the rounds met (a shared machine's load moves both); "
            "re-run both sides to confirm before reading the ops"
        )
    return notes


def outside_ops_notes(step: dict[str, Any], ops: dict[str, Any] | None) -> list[str]:
    """When the step clearly changed but the ops' self time (``ops``: the side's total change) hardly did."""
    d = step["delta_ms"]
    if not ops or d <= NOISE_SE * step["se_ms"] or ops["delta_ms"] >= OUTSIDE_OPS * d:
        return []
    return [
        f"the ops' self time changed by {ops['delta_ms']:+.2f} ms/step, {pct_of(ops['delta_ms'], d)} of the step's "
        "change: the rest is time outside the profiled ops (eager ops, Python, host copies; a CPU trace gives eager "
        "ops no self time): read the step breakdown"
    ]
