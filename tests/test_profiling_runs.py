"""Profiling one run (tf2bench.measure.profiling through BenchmarkRun.profile): an input-bound loop is reported so
and a plain one is not, profiling inside another profiler session keeps the benchmark, the block loops profile their
steps and train what an unprofiled run trains, and traces xprof cannot time are refused with a clear error.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from test_profiling import BLOCK_LOOPS, CIFAR, PROFILE_STEPS

from tf2bench.loops import LOOPS, RunConfig
from tf2bench.loops.compiled import TfData
from tf2bench.measure.profiling import ProfileError, summarise, unrolled_block
from tf2bench.workloads import data


@pytest.fixture(scope="module")
def tiny_cifar():
    return data.load(CIFAR, "synthetic", train_size=256, test_size=64)


class _SlowInput(TfData):
    """tf_data with a deliberately slow last map stage: the step waits on input."""

    name = "tf_data_slow_input"
    description = "test only: tf_data plus a sleeping map stage"
    sleep_s = 0.02

    def make_dataset(self):
        import tensorflow as tf

        def slow(x, y):
            done = tf.numpy_function(lambda: np.int64(time.sleep(self.sleep_s) or 0), [], tf.int64)
            with tf.control_dependencies([done]):
                return tf.identity(x), tf.identity(y)

        return super().make_dataset().map(slow)


@pytest.fixture
def slow_input_loop():
    with LOOPS.using(_SlowInput.name, _SlowInput):  # registered for the test only
        yield _SlowInput


def _profiled_run(loop: str, dataset, logdir: Path, profile_steps: int = 5):
    from tf2bench.suite.runner import BenchmarkRun

    run = BenchmarkRun(CIFAR, "functional", loop, dataset, RunConfig(steps=2, rounds=1, profile_steps=profile_steps))
    run.warmup()
    run.window()
    return run, run.profile(logdir)


@pytest.mark.slow
def test_a_sleeping_input_stage_is_reported_input_bound_and_plain_tf_data_is_not(tiny_cifar, slow_input_loop, tmp_path):
    _, plain = _profiled_run("tf_data", tiny_cifar, tmp_path / "plain")
    assert "error" not in plain, plain
    assert plain["input_bound_pct"] < 20, plain
    # Sleep well beyond the step's own time, measured on this machine, so load cannot hide it.
    slow_input_loop.sleep_s = max(0.02, 3 * plain["step_time_ms"] / 1000)
    _, slow = _profiled_run(slow_input_loop.name, tiny_cifar, tmp_path / "slow")
    assert "error" not in slow, slow
    assert slow["input_bound_pct"] > 50, slow
    assert slow["input_bound"] == "highly"
    assert "input-bound" in slow["conclusion"].lower()
    assert "NOT" not in slow["conclusion"]
    # tf.data may overlap the sleep with the step (it injects a prefetch): the wait is sleep - compute
    assert slow["input_ms"] >= 0.5 * 1000 * slow_input_loop.sleep_s


@pytest.mark.slow
def test_profiling_inside_another_session_keeps_the_benchmark_and_trains_the_same_steps(tiny_cifar, tmp_path):
    import tensorflow as tf

    traced, summary = _profiled_run("tf_function", tiny_cifar, tmp_path / "first", profile_steps=2)
    assert "error" not in summary
    assert summary["steps_measured"] == 2
    with pytest.raises(RuntimeError, match="already profiled"):
        traced.profile(tmp_path / "again")

    tf.profiler.experimental.start(str(tmp_path / "someone_elses"))
    try:
        blocked, summary = _profiled_run("tf_function", tiny_cifar, tmp_path / "second", profile_steps=2)
    finally:
        tf.profiler.experimental.stop()
    assert "already active" in summary["error"]
    info = blocked.result()  # the benchmark keeps its results
    assert info["profile"]["error"] == summary["error"]
    assert info["samples_per_sec"] > 0
    # untraced, the profile window's steps still ran: same steps, same weights as the traced run
    assert info["steps_total"] == traced.result()["steps_total"]
    for a, b in zip(blocked.model.get_weights(), traced.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("loop", BLOCK_LOOPS)
def test_a_block_loop_profiles_its_steps_and_trains_what_an_unprofiled_run_trains(loop, tiny_cifar, tmp_path):
    from tf2bench.suite.runner import BenchmarkRun

    config = RunConfig(steps=PROFILE_STEPS, rounds=1, profile_steps=PROFILE_STEPS)
    profiled = BenchmarkRun(CIFAR, "functional", loop, tiny_cifar, config)
    profiled.warmup()
    profiled.window()
    model, keras_train_function = profiled.model, profiled.model.train_function
    summary = profiled.profile(tmp_path)
    assert "error" not in summary, summary
    per = unrolled_block(PROFILE_STEPS)
    assert per > 1
    assert summary["train_steps_per_marked_step"] == per
    assert summary["steps_measured"] == PROFILE_STEPS // per - 1  # the first block runs unmarked
    assert summary["step_time_ms"] == pytest.approx(summary["marked_step_time_ms"] / per)
    if loop == "fit_spe":  # Keras's own configuration is back for any later fit
        assert model.steps_per_execution == profiled.loop.steps_per_execution() == PROFILE_STEPS
        assert model.train_function is keras_train_function

    plain = BenchmarkRun(CIFAR, "functional", loop, tiny_cifar, config)  # the same steps, all unmarked
    plain.warmup()
    plain.window()
    plain.window()
    assert plain.position == profiled.position
    for a, b in zip(profiled.model.get_weights(), plain.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_a_trace_without_step_markers_is_refused(tmp_path):
    import tensorflow as tf

    f = tf.function(lambda a: tf.reduce_sum(a * 2.0))
    f(tf.ones(4))
    tf.profiler.experimental.start(str(tmp_path))
    try:
        for _ in range(3):
            f(tf.ones(4))
    finally:
        tf.profiler.experimental.stop()
    (trace,) = tmp_path.glob("plugins/profile/*/*.xplane.pb")
    with pytest.raises(ProfileError, match="no step time measured"):
        summarise(trace)


@pytest.mark.slow
def test_a_loop_in_the_graph_gives_a_clear_error_and_keeps_the_trace(tmp_path):
    import tensorflow as tf

    from tf2bench.measure.profiling import profile_window

    a = tf.Variable(tf.ones((64, 64)))

    @tf.function
    def several_steps(n):
        total = tf.constant(0.0)
        for _ in tf.range(n):
            total += tf.reduce_sum(a @ a)
        return total

    several_steps(tf.constant(2))

    def train():
        for i in range(3):
            with tf.profiler.experimental.Trace("train", step_num=i, _r=1):
                several_steps(tf.constant(2)).numpy()
        return "trained"

    result, summary = profile_window(tmp_path, train)
    assert result == "trained"
    assert "no step time measured" in summary["error"]
    assert "steps_per_execution" in summary["error"]
    assert Path(summary["trace_path"]).is_file()
