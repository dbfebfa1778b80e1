"""The harness's own cost: its timed ``tf_function`` window against a bare loop over the same compiled step.

Both run in this process, on the same model and batches, interleaved A B B A so that machine
drift hits both alike. The bare loop is what anyone would write by hand: a plain ``for`` over
batch slices, ``perf_counter`` around it, one device sync at the end. Paired windows show any
gross overhead but cannot resolve 1% on a noisy machine, so the harness's bookkeeping is also
timed exactly, both loops over a step that does nothing. That cost per step may be at most
``MAX_BOOKKEEPING_US``: the pass/fail check, an absolute bound that holds on any device. Its share of the real
step is reported, not asserted: a GPU step of these CNNs takes ~0.1-0.5 ms, a small MLP's compiled step ~0.2 ms
on this CPU, so the same few microseconds are 0.02 % of a CIFAR-100 step on a CPU and a few % of a fast step
(the check would fail on the device the harness is for; a note says when the share passes 1 %). The paired
figure, with its noise, is reported and not asserted (a warning when far outside its noise). The windows are the
case's calibrated windows (the preset's minimum time), as every benchmark's. The figures go into the saved run's
``tf2bench`` record (``harness_overhead``) and the terminal summary. Runs when ``tf_function`` is selected, once
per run: with ``--processes N`` in worker process 1 (the others skip it, saying so).
"""

from __future__ import annotations

import math
import statistics
import time
import warnings
from typing import Any

import numpy as np
import pytest

from tf2bench import nest
from tf2bench.errors import NoisyMeasurementWarning
from tf2bench.measure.timing import sync_devices
from tf2bench.suite.options import Case
from tf2bench.workloads import get_workload

MAX_OVERHEAD = 0.01  # the paired figure's reference line (reported, with a warning far beyond its noise)
# The check: the harness's own Python per step (a nullcontext marker, the batch slice through tf2bench.nest). Measured
# ~3.5 us on a 2-core EPYC; 10 us is 10 % of the fastest compiled step these CNNs take on a GPU (~0.1 ms), and a
# per-step host read, sync or log line (tens of us and up) cannot pass it.
MAX_BOOKKEEPING_US = 10.0
PAIRS = 6  # A B B A blocks: 12 windows of each loop
MIN_STEPS = 20  # windows long enough to time (the smoke preset's 2 steps are not)
NOOP_STEPS, NOOP_REPEATS = 200, 7  # the bookkeeping measurement: steps that do nothing, best of 7


def bare_window(step, x: Any, y: np.ndarray, steps: int, batch: int) -> float:
    """The same compiled step in a plain loop: perf_counter around it, one sync at the end."""
    if not isinstance(x, np.ndarray):  # a multi-input model's tuple or dict of arrays
        return _bare_window_nested(step, x, y, steps, batch)
    t0 = time.perf_counter()
    for k in range(steps):
        i = k * batch
        step(x[i : i + batch], y[i : i + batch])
    sync_devices()
    return time.perf_counter() - t0


def _bare_window_nested(step, x: Any, y: np.ndarray, steps: int, batch: int) -> float:
    t0 = time.perf_counter()
    for k in range(steps):
        i = k * batch
        step(nest.take(x, slice(i, i + batch)), y[i : i + batch])
    sync_devices()
    return time.perf_counter() - t0


def noop_step(x: Any, y: Any) -> float:
    return 0.0


def test_harness_overhead(tf2bench_session):
    session, suite = tf2bench_session, tf2bench_session.options
    if session.process > 1:  # --processes N: a cost of the harness, not of a process; measured once
        pytest.skip(f"the harness overhead is measured once per run, in worker process 1 of {session.processes}")
    if "tf_function" not in suite.loops:
        pytest.skip("the harness overhead is measured on the tf_function loop: select --loop tf_function")
    workload = "cifar100" if "cifar100" in suite.workloads else suite.workloads[0]
    api = next(a for a in ("functional", *suite.apis) if a in suite.apis and a in get_workload(workload).models)
    # the same calibrated windows as the case's benchmarks (calibrated once per workload and API)
    run = session.planner.prepare(Case(0, suite.seed, workload, api, "tf_function"))
    run.steps_per_window = steps = max(run.steps_per_window, MIN_STEPS)
    run.warmup()
    batch, step = run.config.batch_size, run.loop.step

    harness, bare, calls = [], [], []

    def timed_harness() -> None:
        t0 = time.perf_counter()
        harness.append(run.window())  # what the suite records
        calls.append(time.perf_counter() - t0)  # the whole call: batch gather and bookkeeping too

    def timed_bare() -> None:
        x, y = run.loop._window_arrays(run.position, steps)  # the same batches the harness would take next
        bare.append(bare_window(step, x, y, steps, batch))
        run.position += steps

    for _ in range(PAIRS):
        for measure in (timed_harness, timed_bare, timed_bare, timed_harness):
            measure()
    assert run.loop.trace_count() == 1  # both loops ran the one trace

    # The paired windows above cannot resolve 1% on a machine whose windows vary by 5%. The harness's own
    # cost is its Python bookkeeping per step (marker, slicing, stopwatch), the same whatever the step
    # computes: time it exactly by running both loops over a step that does nothing, best of NOOP_REPEATS.
    x, y = run.loop._window_arrays(run.position, NOOP_STEPS)
    run.loop.step = noop_step
    harness_noop, bare_noop = [], []
    for _ in range(NOOP_REPEATS):
        harness_noop.append(run.loop.run(run.position, NOOP_STEPS).seconds)
        bare_noop.append(bare_window(noop_step, x, y, NOOP_STEPS, batch))
    run.loop.step = step
    per_step_s = max(min(harness_noop) - min(bare_noop), 0.0) / NOOP_STEPS
    bookkeeping = per_step_s / (statistics.median(bare) / steps)

    ratios = [math.log(h / b) for h, b in zip(harness, bare, strict=True)]
    overhead = math.exp(statistics.median(ratios)) - 1
    # standard error of a median ~ 1.25 sigma / sqrt(n): the noise this estimate carries
    noise = 1.2533 * statistics.stdev(ratios) / math.sqrt(len(ratios))
    record = {
        "workload": workload,
        "api": api,
        "steps": steps,
        "windows": len(harness),
        "harness_s_median": statistics.median(harness),
        "bare_s_median": statistics.median(bare),
        "call_s_median": statistics.median(calls),
        "overhead": overhead,  # timed harness window vs bare loop (median of paired ratios)
        "call_overhead": math.exp(statistics.median(math.log(c / b) for c, b in zip(calls, bare, strict=True))) - 1,
        "noise": noise,
        "bookkeeping_us_per_step": 1e6 * per_step_s,  # harness minus bare loop, both over a no-op step
        "bookkeeping": bookkeeping,  # that cost relative to the real step: reported (a few % on a fast device)
        "max_bookkeeping_us": MAX_BOOKKEEPING_US,  # the check
        "step_ms": 1000 * statistics.median(bare) / steps,  # the real step, from the bare loop
        "window_s": statistics.median(harness),
        "max_overhead": MAX_OVERHEAD,
    }
    # The paired figure is reported (saved and printed), never asserted: a noisy machine can push a median of
    # 12 ratios past any bound its own standard error allows (it failed once on an Intel machine and passed on
    # the rerun). Far outside its noise, it earns a warning, which pyproject shows and never makes fatal.
    record["paired_outside_noise"] = overhead > MAX_OVERHEAD + 2 * noise  # beyond the limit by > 2 standard errors
    session.overhead = record  # saved in the run's tf2bench.harness_overhead, shown in the summary
    if record["paired_outside_noise"]:
        warnings.warn(
            NoisyMeasurementWarning(
                f"paired windows differ by {100 * overhead:+.2f}%, more than {100 * MAX_OVERHEAD:.0f}% + 2 x their "
                f"noise (±{100 * noise:.2f}%), while the harness's bookkeeping, timed exactly, is "
                f"{100 * bookkeeping:.3f}% of a step: a busy machine, or a cost outside the per-step code; "
                "rerun on a quieter machine to tell"
            ),
            stacklevel=1,
        )
    # The check: the harness's own cost per step, exact (both loops over a no-op step), within an absolute limit
    # that does not depend on how fast the device runs the step.
    assert record["bookkeeping_us_per_step"] <= MAX_BOOKKEEPING_US, record
