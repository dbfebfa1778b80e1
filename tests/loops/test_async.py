"""Windows contain their work on an asynchronous device: a slow op planted in a window's last step is timed inside it.

On a GPU an op returns before it has run; ``tf.config.experimental.set_synchronous_execution(False)`` makes this CPU
behave the same way (ops are queued and Python goes on). A window whose clock stopped without waiting for its device
work would then read too fast. Every loop's window ends with ``Stopwatch.stop()``, which calls
``tf.test.experimental.sync_devices()`` (every device, every queued op, not only the loss). The tests plant a slow op
(a chain of 512 x 512 matmuls, ~0.25 s) in the last step of a window, run under asynchronous execution, and check
that the window lasts at least the op's own time; and, so that the check can fail, that the same window timed by a
stopwatch without the sync reads short where the loop's calls return before their work is done.
"""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest

from tf2bench.loops import RunConfig
from tf2bench.measure.timing import Stopwatch, sync_devices
from tf2bench.suite.runner import BenchmarkRun
from tf2bench.workloads import Workload, data

N = 512  # the slow op's matrices: 512 x 512, ~1 ms a matmul on 2 CPU cores
TARGET_S = 0.25  # how long the slow op lasts: far above a tiny window (~10 ms), far below a slow test
STEPS = 4  # steps per window: the slow step is the last
FRACTION = 0.5  # of the op's own time: the bound a window must reach (the why is beside the assertion)
# Every single-process loop (the distributed ones need logical devices set before TensorFlow starts: not here).
LOOPS = (
    "fit", "fit_xla", "fit_spe", "eager", "tutorial", "tf_function", "tf_data", "xla", "graph_loop", "graph_xla",
    "mixed",
)  # fmt: skip
# Loops whose calls return before their work is done under async execution: timed without the sync, their window
# reads short, so the sync is what the check below relies on. The others block on the host before the window's end
# whatever the stopwatch does (measured here, not asserted: it is TensorFlow's and Keras's behaviour, not ours):
# fit waits for the eager queue at each epoch's end (Keras's TFEpochIterator.catch_stop_iteration calls
# context.async_wait(), keras/src/backend/tensorflow/trainer.py), and the eager loops read tensor shapes on the
# host in every layer call, which waits for the op behind them, and the async executor runs its queue in order
# (tensorflow/core/common_runtime/eager/eager_executor.h: "Support out-of-order execution" is a TODO).
RETURN_EARLY = ("tf_function", "tf_data", "xla", "graph_loop", "graph_xla", "mixed")


def slow_work(x, iters):
    """``iters`` chained 512 x 512 matmuls seeded by the batch: no compiler can fold it away or start it early."""
    import tensorflow as tf

    seed = tf.reduce_mean(tf.cast(x, tf.float32))  # float32 also under a mixed policy (bf16 inputs)
    m = tf.tanh(tf.random.stateless_normal((N, N), seed=(1, 2)) + seed)

    def body(i, a):
        return i + 1, tf.tanh(tf.matmul(a, m))  # tanh keeps the chain bounded (|a| <= 1)

    _, a = tf.while_loop(lambda i, a: i < iters, body, (tf.constant(0), m))
    return tf.reduce_sum(a)


def slow_layer(iters: int):
    import keras
    import tensorflow as tf

    class SlowOnStep(keras.layers.Layer):
        """Identity on its input; on the training call numbered ``slow_at`` it also runs ``slow_work`` and stores
        the result in a variable, off the loss's path: only a sync of all device work waits for it."""

        def build(self, input_shape):
            self.count = self.add_weight(shape=(), dtype="int64", initializer="zeros", trainable=False, name="count")
            self.slow_at = self.add_weight(
                shape=(), dtype="int64", initializer=keras.initializers.Constant(-1), trainable=False, name="slow_at"
            )
            self.sink = self.add_weight(shape=(), initializer="zeros", trainable=False, name="sink")

            # One function: called eagerly (the eager loop) it is one queued op, as in the compiled loops, where
            # it is inlined. An eager tf.cond or tf.while_loop would read its predicate on the host, a sync.
            self.planted = tf.function(self.plant)

        def plant(self, x):
            self.count.assign_add(1)
            hit = tf.equal(self.count.value, self.slow_at.value)
            self.sink.assign(tf.cond(hit, lambda: slow_work(x, iters), lambda: 0.0))

        def call(self, x, training=False):
            if training:
                self.planted(x)
            return x

    return SlowOnStep(name="slow_on_step")


def build_model(iters: int):
    import keras

    return keras.Sequential(
        [
            keras.Input((16,)),
            slow_layer(iters),
            keras.layers.Dense(16, activation="relu"),
            keras.layers.Dense(4, activation="softmax"),
        ],
        name="async_probe",
    )


def arrays():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=704)
    x = (np.eye(4, 16)[y] + rng.normal(scale=0.5, size=(704, 16))).astype("float32")
    return (x[:640], y[:640]), (x[640:], y[640:])


def slow_op_seconds(iters: int, jit: tuple[bool, ...] = (False, True), repeats: int = 3) -> float:
    """The planted op's own time, alone and synchronous: the fastest of ``repeats`` runs in each form given (the
    loops run it as a plain graph and under XLA), so no window is held to a time the op beats in either form."""
    import tensorflow as tf

    x = tf.constant(arrays()[0][0][:32])
    best = float("inf")
    for jit_compile in jit:
        fn = tf.function(slow_work, jit_compile=jit_compile)
        fn(x, tf.constant(1))  # traced and compiled outside the timing
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn(x, tf.constant(iters))
            sync_devices()
            best = min(best, time.perf_counter() - t0)
    return best


@pytest.fixture(scope="module")
def planted():
    """The slow op sized to last ~TARGET_S on this machine, its measured time, and the workload that plants it."""
    probe = 64
    per_iter = slow_op_seconds(probe, jit=(False,)) / probe
    iters = int(min(20_000, max(probe, TARGET_S / per_iter)))  # the cap bounds a device with very fast matmuls
    workload = Workload(
        name="async_probe",
        model=functools.partial(build_model, iters),
        data=arrays,
        loss="sparse_categorical_crossentropy",
    )
    return workload, data.load(workload), slow_op_seconds(iters)


@pytest.fixture
def asynchronous():
    """Asynchronous eager execution for the test, the previous mode restored after (other tests stay synchronous)."""
    import tensorflow as tf

    before = tf.config.experimental.get_synchronous_execution()
    tf.config.experimental.set_synchronous_execution(False)
    try:
        yield
    finally:
        sync_devices()  # nothing queued leaks into the next test
        tf.config.experimental.set_synchronous_execution(before)


def timed_window(run: BenchmarkRun, *, slow: bool, stopwatch: Stopwatch | None = None) -> float:
    """One window of ``run``; with ``slow``, its last step runs the planted op; ``stopwatch`` replaces the loop's."""
    layer = run.model.get_layer("slow_on_step")
    layer.slow_at.assign(run.position + run.steps_per_window if slow else -1)  # count is 1-based: last step's
    saved = run.loop.stopwatch
    if stopwatch is not None:
        run.loop.stopwatch = stopwatch
    try:
        return run.window()
    finally:
        run.loop.stopwatch = saved
        sync_devices()  # a stopwatch without sync leaves the op running: it must not spill into what follows


@pytest.mark.slow
@pytest.mark.parametrize("loop", LOOPS)
def test_window_contains_a_slow_last_step(planted, asynchronous, loop):
    import tensorflow as tf

    workload, dataset, slow_s = planted
    assert not tf.config.experimental.get_synchronous_execution()
    run = BenchmarkRun(workload, "model", loop, dataset, RunConfig(steps=STEPS, rounds=2, warmup_steps=2))
    run.warmup()
    layer = run.model.get_layer("slow_on_step")
    seconds = timed_window(run, slow=True)
    # The op ran, once per training step, and on the window's last step (sink is 0.0 after any other step).
    assert int(layer.count.numpy()) == run.position
    assert float(layer.sink.numpy()) != 0.0
    # Half the op's own time: the window ran the op once, after its clock started, and its sync waited for it, so
    # it lasts at least the op's time as the window ran it; that is below slow_s only if the machine ran the op
    # faster than at its fastest alone: these shared machines drift by +-25% within minutes, 0.5 leaves twice that.
    # The unsynced windows below read 1-30 ms here (under 0.15 of it with the machine loaded): the bound sits between.
    assert seconds >= FRACTION * slow_s, (
        f"{loop}: a window whose last step runs a {slow_s:.3f} s op read {seconds:.4f} s under async execution"
    )
    if loop in RETURN_EARLY:  # the check can fail: without the sync, the same window reads short
        unsynced = timed_window(run, slow=True, stopwatch=Stopwatch(sync=None))
        assert float(layer.sink.numpy()) != 0.0
        assert unsynced < FRACTION * slow_s, (
            f"{loop}: without a sync the window still read {unsynced:.4f} s (op {slow_s:.3f} s): the test would not "
            "catch a window that stops its clock early"
        )
