"""Calibrated windows on a real loop (pyperf's calibration): the steps per window of every loop of a case.

The rules are pure functions of measured times in tf2bench.measure.timing (``step_cap``, ``calibrate``,
``calibrated_steps``); this module runs them on a warmed-up copy of the case's reference loop.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tf2bench import nest
from tf2bench.errors import BadInputError, reason
from tf2bench.loops import RunConfig
from tf2bench.measure import timing
from tf2bench.suite.runner import BenchmarkRun
from tf2bench.workloads import Workload
from tf2bench.workloads.data import Dataset

# The loop whose step calibrates a case's windows: the fastest standard fp32 loop (no Python per step); the next
# one if the model breaks it.
CALIBRATION_LOOPS = ("graph_loop", "tf_function")


def calibrate_case(
    workload: Workload,
    api: str,
    dataset: Dataset,
    config: RunConfig,
    min_window_s: float,
    max_steps: int,
    max_window_bytes: int = 256 * 2**20,
) -> dict[str, Any]:
    """The steps per window of every loop of a case: windows of its reference loop timed after warm-up
    (timing.calibrate), ``config.steps`` the floor. The cap is set by time and memory (timing.step_cap) from a first
    probe of ``config.steps``; ``max_steps`` is a ceiling. A model every reference loop breaks gets
    ``{"error": ...}``: its loops keep the floor."""
    floor = config.steps
    out: dict[str, Any] = {"min_window_s": min_window_s, "floor_steps": floor}
    per_step = config.batch_size * sum(a[0].nbytes for a in (*nest.leaves(dataset.x_train), dataset.y_train))
    memory_cap = max(floor, max_window_bytes // max(per_step, 1))
    errors = []
    for name in CALIBRATION_LOOPS:
        try:
            room = floor * PROBE_ROOM
            ref = _reference_run(workload, api, name, dataset, config, room)
            probe_s = min(ref._run(floor).seconds for _ in range(2)) / floor
            cap, cap_by = timing.step_cap(probe_s, min_window_s, floor, memory_cap, max_steps)
            if cap > room:  # a fast step: the reference run's pipeline is rebuilt for the longer windows
                ref = _reference_run(workload, api, name, dataset, config, cap)
            cal = timing.calibrate(lambda n, r=ref: r._run(n).seconds, min_window_s, floor, cap, repeats=3)
        except BadInputError:
            raise  # the declaration or data is wrong: the case's loops fail with it
        except Exception as exc:  # a loop this model breaks: try the next, say why
            errors.append(f"{name}: {type(exc).__name__}: {reason(exc)}")
            continue
        probes = [[n, s] for n, s in cal.probes]
        found = {**out, "max_steps": cap, "cap_by": cap_by, "reference_loop": name, "step_s": cal.step_s}
        found.update(steps=cal.steps, probes=probes, window_s=cal.steps * cal.step_s)
        found["cap_note"] = timing.cap_note(found)  # None unless the cap kept the window under min_window_s
        return found
    return {**out, "max_steps": max_steps, "error": "; ".join(errors)}


# The reference run's pipeline holds (repeats + 1) windows of floor x PROBE_ROOM steps; a faster step rebuilds it
PROBE_ROOM = 64


def _reference_run(workload: Workload, api: str, name: str, dataset: Dataset, config: RunConfig, room: int) -> Any:
    """A warmed-up run of the reference loop with room for the calibration's windows of up to ``room`` steps."""
    ref = BenchmarkRun(workload, api, name, dataset, replace(config, steps=room, rounds=6, profile_steps=0))
    ref.warmup()
    return ref
