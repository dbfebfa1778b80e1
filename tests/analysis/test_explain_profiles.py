"""The op-level explanation of a slowdown (tf2bench.analysis.explain) on two real profiled runs with a planted change
each (bench/error_rates.py's (a) a wider convolution and (b) a host round-trip of the weights): the ops that grew are
named, by op and by type, and the round-trip's host work shows where xprof puts untraced time.
"""

from __future__ import annotations

import pytest

from tf2bench.analysis import explain
from tf2bench.measure import profiling


def _cnn(width: int, dense: int = 0):
    """Conv(8) -> Conv(width) [-> Flatten -> Dense(dense)] -> pooled -> Dense(10): the second convolution makes the
    step unless ``dense`` adds a large weight matrix (what a host round-trip copies)."""

    def build():
        import keras
        from keras import layers

        inputs = keras.Input((28, 28, 1))
        x = layers.Conv2D(8, 3, activation="relu")(inputs)
        x = layers.Conv2D(width, 3, activation="relu")(x)
        x = layers.Dense(dense, activation="relu")(layers.Flatten()(x)) if dense else layers.GlobalAveragePooling2D()(x)
        return keras.Model(inputs, layers.Dense(10, activation="softmax")(x), name="explain_cnn")

    return build


def _images():
    import numpy as np

    rng = np.random.default_rng(0)
    x, y = rng.random((320, 28, 28, 1), dtype="float32"), rng.integers(0, 10, 320)
    return (x[:256], y[:256]), (x[256:], y[256:])


STEPS = 20  # profiled steps a run: a load spike on one op is averaged over them


def _profiled(width: int, loop: str, logdir, dense: int = 0) -> dict:
    from tf2bench.loops import RunConfig
    from tf2bench.suite.runner import BenchmarkRun
    from tf2bench.workloads import Workload, data

    loss = "sparse_categorical_crossentropy"
    work = Workload(name="explain_cnn", model=_cnn(width, dense), data=_images, loss=loss)
    run = BenchmarkRun(work, "model", loop, data.load(work), RunConfig(steps=2, rounds=1, profile_steps=STEPS))
    run.warmup()
    run.window()
    run.profile(logdir)
    info = run.result()
    assert "error" not in info["profile"], info["profile"]
    return info


@pytest.fixture
def round_trip_loop():
    """tf_function plus bench/error_rates.py's plant (b): every weight copied to the host and back after each step."""
    from tf2bench import nest
    from tf2bench.loops import LOOPS, WindowResult
    from tf2bench.loops.base import loss_value
    from tf2bench.loops.compiled import TfFunction

    class RoundTrip(TfFunction):
        name = "explain_round_trip"
        opt_in = True

        def run(self, start: int, steps: int) -> WindowResult:
            x, y = self._window_arrays(start, steps)
            b, loss = self.ctx.config.batch_size, None
            self.stopwatch.start()
            for k in range(steps):
                with self.step_marker(start + k):
                    loss = self.step(nest.take(x, slice(k * b, (k + 1) * b)), y[k * b : (k + 1) * b])
                    for w in self.ctx.model.trainable_variables:
                        w.assign(w.numpy())
            return WindowResult(self.stopwatch.stop(), loss_value(loss))

    with LOOPS.using(RoundTrip.name, RoundTrip):  # registered for the test only
        yield RoundTrip.name


@pytest.mark.slow
def test_real_profiles_name_the_wider_convolution_and_the_round_trips_host_time(tmp_path, round_trip_loop):
    narrow, wide = _profiled(16, "tf_function", tmp_path / "a"), _profiled(64, "tf_function", tmp_path / "b")
    saved = narrow["profile"]
    assert saved["ops"]["train_steps"] == saved["steps"] == STEPS  # the session's train steps: each op ÷ them
    assert profiling.read_ops(saved) == saved["ops"]  # the kept trace, read again, gives the record
    top = saved["top_ops_host"][0]  # the same op, per window (top_ops) and per train step (ops)
    per_step = next(o for o in saved["ops"]["host"] if o["op"] == top["op"])["self_ms_per_step"]
    assert per_step == pytest.approx(top["self_ms"] / STEPS, rel=1e-12)
    e = explain.explain(narrow, wide)
    text = "\n".join(explain.lines(e))
    # 4x the second convolution's filters: 4x its FLOPs, which are most of the step's (the rest is the 8-filter
    # convolution, the pooling and a 10-unit head): its three ops grow by ~3x their time, several ms a step, far
    # beyond what a load spike on one op adds averaged over 20 steps; they lead by name and by type
    conv = sum(r["delta_ms"] for r in e["ops"]["host"] if "/conv2d_1/" in r["op"])
    others = [abs(r["delta_ms"]) for r in e["ops"]["host"] if "/conv2d_1/" not in r["op"]]
    assert conv > 2 * max(others, default=0.0), text
    assert e["ops"]["host"][0]["op"].startswith(("explain_cnn/conv2d_1/", "gradient_tape/explain_cnn/conv2d_1/")), text
    assert "Conv2D" in e["types"]["host"][0]["type"], text

    plain = _profiled(16, "tf_function", tmp_path / "c", dense=256)
    trip = {**_profiled(16, round_trip_loop, tmp_path / "d", dense=256), "loop": "tf_function"}  # its commit's
    e = explain.explain(plain, trip)
    print("\n".join(explain.lines(e)))
    # w.numpy() is untraced host work: it lands in idle/other, at least as long as it takes on an idle machine (the
    # fastest of 5 here; load only slows it), while the ops of the graph are the same in both runs
    other = next(p for p in e["parts"] if p["part"] == "other_ms")
    assert other["delta_ms"] >= 0.5 * _numpy_copy_ms(), "\n".join(explain.lines(e))


def _numpy_copy_ms() -> float:
    """The fastest of 5 copies of the round-trip test's weights to numpy: what its plant does outside the graph."""
    import time

    import keras

    weights = [keras.Variable(w) for w in _cnn(16, 256)().get_weights()]
    times = []
    for _ in range(5):
        start = time.perf_counter()
        for w in weights:
            w.numpy()
        times.append(time.perf_counter() - start)
    return 1000.0 * min(times)
