"""Clocks, device sync and the statistics of timed windows.

A *window* is a run of training steps timed as one block: its clock starts before
the first step and stops after a device sync, so asynchronous device work is paid
inside the window that queued it. No per-step sync happens inside a window.

pytest-benchmark times whatever its timer says; the suite sets its timer to
:func:`bench_clock`, a virtual clock that only advances by the seconds each window
measured (pyperf's model: the benchmark times itself). That keeps fixed per-call
costs, such as ``fit``'s data-adapter set-up, out of the recorded rounds.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

Clock = Callable[[], float]

NOISY_CV = 0.05  # a figure whose rounds vary more than this is flagged


def noisy_message(case_id: str, cv: float) -> str:
    """What a NoisyMeasurementWarning says about one benchmark (suite and Python API alike)."""
    return f"{case_id}: rounds vary by {100 * cv:.1f}% (CV > {100 * NOISY_CV:.0f}%)"


class VirtualClock:
    """A clock advanced explicitly by measured durations."""

    def __init__(self) -> None:
        self._now = 0.0

    def __call__(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        if not seconds >= 0:  # also rejects NaN
            raise ValueError(f"cannot advance a clock by {seconds!r} s")
        self._now += seconds


BENCH_CLOCK = VirtualClock()


def bench_clock() -> float:
    """pytest-benchmark's timer for the suite (``--benchmark-timer=tf2bench.measure.timing.bench_clock``)."""
    return BENCH_CLOCK()


def sync_devices() -> None:
    """Wait for all queued device work; call eagerly, outside any tf.function."""
    import tensorflow as tf

    tf.test.experimental.sync_devices()


@dataclass
class Stopwatch:
    """Times one window: ``start()``, work, ``stop()`` (which syncs first)."""

    clock: Clock = time.perf_counter
    sync: Callable[[], None] | None = sync_devices
    _t0: float | None = None

    def start(self) -> None:
        self._t0 = self.clock()

    def stop(self) -> float:
        if self._t0 is None:
            raise RuntimeError("Stopwatch.stop() before start()")
        if self.sync is not None:
            self.sync()
        elapsed = self.clock() - self._t0
        self._t0 = None
        return elapsed


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (numpy's default method), q in [0, 100]."""
    if not values:
        raise ValueError("percentile of no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


@dataclass(frozen=True)
class WindowStats:
    """Steady-state figures from the timed windows of one benchmark."""

    samples_per_sec: float  # median over windows of (samples in window / window time)
    samples_per_sec_min: float
    samples_per_sec_max: float
    step_time_ms_median: float  # window time / steps, median over windows
    step_time_ms_p90: float
    window_s_median: float
    cv: float  # stddev / mean of the per-window step times (0 with one window)
    windows: int

    @property
    def noisy(self) -> bool:
        return self.cv > NOISY_CV

    def record(self) -> dict[str, float | bool]:
        """The result record's throughput keys (tf2bench.saved.record), from these windows."""
        return {
            "samples_per_sec": self.samples_per_sec,
            "samples_per_sec_min": self.samples_per_sec_min,
            "samples_per_sec_max": self.samples_per_sec_max,
            "cv": self.cv,
            "noisy": self.noisy,
            "step_time_ms": self.step_time_ms_median,
            "step_time_ms_p90": self.step_time_ms_p90,
        }


def window_stats(
    window_seconds: Sequence[float], steps_per_window: Sequence[int], samples_per_step: int
) -> WindowStats:
    """Statistics of windows that may differ in length (e.g. a short last epoch)."""
    if not window_seconds or len(window_seconds) != len(steps_per_window):
        raise ValueError("need one step count per window, and at least one window")
    if any(not s > 0 for s in window_seconds) or any(n <= 0 for n in steps_per_window):
        raise ValueError(f"window times and step counts must be positive: {window_seconds}, {steps_per_window}")
    step_ms = [1000.0 * s / n for s, n in zip(window_seconds, steps_per_window, strict=True)]
    throughput = [n * samples_per_step / s for s, n in zip(window_seconds, steps_per_window, strict=True)]
    cv = statistics.stdev(step_ms) / statistics.fmean(step_ms) if len(step_ms) > 1 else 0.0
    return WindowStats(
        samples_per_sec=statistics.median(throughput),
        samples_per_sec_min=min(throughput),
        samples_per_sec_max=max(throughput),
        step_time_ms_median=statistics.median(step_ms),
        step_time_ms_p90=percentile(step_ms, 90),
        window_s_median=statistics.median(window_seconds),
        cv=cv,
        windows=len(window_seconds),
    )


# Window calibration (pyperf's): how many steps make a window long enough to time, and how many rounds a slow loop
# can afford. Pure functions of measured times; tf2bench.suite.calibration.calibrate_case runs them on a real loop.


def calibrated_steps(step_s: float, min_window_s: float, floor: int, cap: int) -> int:
    """The fewest steps of the form floor x 2^k whose window lasts at least ``min_window_s``, at most ``cap``.

    Powers of two over the floor (pyperf calibrates its loops the same way): the step time measured at
    calibration varies from run to run with the machine's state (here by up to 1.7x between quick runs), and a
    loop's throughput depends a little on its window length (fit pays a fixed cost per call), so windows sized
    to the exact need gave every run another length and added run-to-run scatter that looked like code changes.
    On a grid of doubling lengths, runs of one machine pick the same window unless its speed sits at a boundary.
    The floor (the preset's fixed steps) wins over the cap: the cap bounds the cost of fast devices, never
    shortens a window below what the preset times without calibration.
    """
    if not step_s > 0 or not min_window_s > 0:
        raise ValueError(f"step time and minimum window must be positive, got {step_s!r} and {min_window_s!r}")
    need = math.ceil(min_window_s / step_s * (1 - 1e-9))  # 0.2 / 0.001 is 200.00000000000003: 200 steps, not 201
    steps = floor
    while steps < need and steps < cap:
        steps *= 2
    return max(floor, min(cap, steps))


# A window may need this many times the steps the first probe's pace says before the time cap binds: the pace after
# warm-up still improves (caches, autotuning) and machines here vary 1.7x between runs.
TIME_CAP_FACTOR = 4


def step_cap(probe_step_s: float, min_window_s: float, floor: int, memory_cap: int, ceiling: int) -> tuple[int, str]:
    """(the most steps a calibrated window may have, what sets it: "time", "memory" or "ceiling").

    Set by time: ``TIME_CAP_FACTOR`` x the steps that last ``min_window_s`` at the probe's pace, so a fast device
    (a GPU step of ~0.1 ms) reaches the preset's minimum time where a fixed step count would stop it short; by
    memory: the window's arrays (``memory_cap`` steps of batches); and a sanity ``ceiling``. Never below ``floor``.
    """
    if not probe_step_s > 0:
        raise ValueError(f"probe step time must be positive, got {probe_step_s!r}")
    by_time = math.ceil(TIME_CAP_FACTOR * min_window_s / probe_step_s)
    cap, by = min((by_time, "time"), (memory_cap, "memory"), (ceiling, "ceiling"))
    return max(cap, floor), by


def cap_note(cal: dict) -> str | None:
    """What to say when a calibrated window is shorter than the preset's minimum because its cap bound (None if not)."""
    if "steps" not in cal or "step_s" not in cal:
        return None
    window_s = cal["steps"] * cal["step_s"]
    if cal["steps"] < cal.get("max_steps", math.inf) or window_s >= cal["min_window_s"]:
        return None
    return (
        f"windows capped at {cal['steps']} steps by {cal.get('cap_by', 'the cap')} last ~{window_s:.3g} s, under the "
        f"preset's {cal['min_window_s']:g} s minimum: more timer and launch jitter per window"
    )


@dataclass(frozen=True)
class Calibration:
    step_s: float  # the fastest per-step time of the calibration windows
    steps: int  # calibrated_steps(step_s, ...)
    probes: tuple[tuple[int, float], ...]  # every calibration window: (steps, seconds)


def calibrate(
    window: Callable[[int], float], min_window_s: float, floor: int, cap: int, repeats: int = 3
) -> Calibration:
    """Time windows of a warmed-up loop (``window(n)`` trains n steps, returns seconds) and size the window.

    Grow the window from ``floor`` steps, at least doubling, until one lasts half of ``min_window_s`` (or the cap is
    reached); time that length ``repeats`` times in all and take the fastest: noise only adds time, so the fastest
    window is the loop's own speed. A window's fixed cost (the sync, one call: ~0.1 ms on a CPU) is spread over the
    half-length window's steps, so the calibrated window may fall short of ``min_window_s`` by at most that cost.
    Costs about 1.5 x ``min_window_s`` of training.
    """
    n, probes = floor, []
    while True:
        probes.append((n, window(n)))
        seconds = probes[-1][1]
        if seconds >= min_window_s / 2 or n >= cap:
            break
        guess = math.ceil(n * min_window_s / 2 / seconds) if seconds > 0 else cap
        n = min(cap, max(2 * n, guess))
    probes += [(n, window(n)) for _ in range(repeats - 1)]
    step_s = min(s for k, s in probes if k == n) / n
    return Calibration(step_s, calibrated_steps(step_s, min_window_s, floor, cap), tuple(probes))


def planned_rounds(rounds: int, window_s: float, budget_s: float | None, min_rounds: int) -> int:
    """Rounds a benchmark runs: all of them when they fit in ``budget_s``, else as many as fit, never fewer than
    ``min_rounds`` (what a median and a CV need) nor more than ``rounds``."""
    if budget_s is None or rounds * window_s <= budget_s:
        return rounds
    return max(min(min_rounds, rounds), min(rounds, int(budget_s // window_s)))
