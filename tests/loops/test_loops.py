"""The training loops compute the same function: same start, same batches, same weights after."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from conftest import EQUIVALENT, fp32_tolerance, update_distance, xla_tolerance

from tf2bench.errors import BadInputError, DivergedError, UnknownNameError
from tf2bench.loops import LOOPS, BatchPlan, RunConfig, get_loop
from tf2bench.suite.runner import BenchmarkRun
from tf2bench.workloads import data, get_workload

CIFAR = get_workload("cifar100")


@pytest.fixture(scope="module")
def tiny():
    return data.load(CIFAR, "synthetic", train_size=320, test_size=64)


def train(loop, dataset, api="functional", **config):
    cfg = RunConfig(**{"steps": 5, "rounds": 2, "warmup_steps": 2, "seed": 7, **config})
    run = BenchmarkRun(CIFAR, api, loop, dataset, cfg)
    run.warmup()
    for _ in range(run.rounds):
        run.window()
    return run


@pytest.mark.slow
@pytest.mark.parametrize("api", ["functional", "subclassing"])
def test_loops_agree_after_identical_batches(tiny, api):
    runs = {v: train(v, tiny, api=api) for v in (*EQUIVALENT, "tutorial")}
    assert all(r.position == 12 for r in runs.values())  # K = 12 identical batches
    assert len({r.init_fingerprint for r in runs.values()}) == 1  # same start
    for v in EQUIVALENT[1:]:
        d = update_distance(runs[v], runs["fit"])
        assert d <= fp32_tolerance(), f"{v} is {d:.2e} of fit's update away from fit (tolerance {fp32_tolerance():.1e})"
    # The tutorial's loop trains on other data (one sample per step): its weights are a whole update away.
    assert update_distance(runs["tutorial"], runs["fit"]) > 0.3


def record(run):
    return {**run.result(), "repeat": 0}


@pytest.mark.slow
def test_xla_and_mixed_loops_learn_the_same_function(tiny):
    import keras

    from tf2bench.analysis import report
    from tf2bench.analysis.runs import SavedRun
    from tf2bench.loops.mixed import mixed_policy_name

    runs = {v: train(v, tiny) for v in ("fit", "xla", "fit_xla", "graph_xla", "mixed")}
    for v in ("xla", "fit_xla", "graph_xla"):
        d = update_distance(runs[v], runs["fit"])
        assert d <= xla_tolerance(), f"{v} is {d:.2e} of fit's update away from fit (tolerance {xla_tolerance():.1e})"
    mixed, fit = runs["mixed"], runs["fit"]
    assert mixed.model.dtype_policy.name.startswith("mixed_")
    assert keras.mixed_precision.global_policy().name == "float32"  # restored after building
    assert mixed.init_fingerprint == fit.init_fingerprint  # float32 variables, same start
    # bf16 rounding moves the updates by a share no fp32 bound covers: the loop says so and the verdict falls
    # back to the quality tier (paired McNemar on the same test samples), which must not flag it.
    records = {v: record(r) for v, r in runs.items()}
    half = mixed_policy_name().removeprefix("mixed_")  # this machine's auto choice: float16 on a GPU, else bfloat16
    assert records["mixed"]["weight_tier"]["tolerance"] is None
    assert half in records["mixed"]["weight_tier"]["why"]
    assert records["xla"]["weight_tier"] == {**records["xla"]["weight_tier"], "tolerance": xla_tolerance()}
    df = report.build([SavedRun(path=Path("t.json"), benchmarks=[{"extra_info": i} for i in records.values()])])
    row = df.set_index("loop")
    assert row.loc["mixed", "verdict"] == report.EQUIVALENT, row.loc["mixed", "verdict_note"]
    assert row.loc["mixed", "weights_verdict"] == report.NOT_JUDGED
    assert row.loc["mixed", "paired_samples"] == len(tiny.y_test)
    assert (row.loc[["xla", "fit_xla", "graph_xla"], "weights_verdict"] == report.SAME_MATH).all()
    assert all(r.loop.trace_count() == 1 for r in (runs["xla"], mixed))
    assert records["xla"]["jit_compile"] is True  # the record says what ran, not the config default
    assert runs["fit_xla"].loop.info() == {"jit_compile": True}
    assert runs["graph_xla"].loop.trace_count() == 1  # one block trace, the XLA step compiled inside it
    assert records["graph_xla"]["jit_compile"] is True


@pytest.mark.slow
def test_new_loops_compile_once_and_record_their_settings(tiny):
    spe = train("fit_spe", tiny).result()
    assert spe["steps_per_execution"] == 5  # one window's steps (cap 200)
    assert spe["jit_compile"] is False
    block = train("graph_loop", tiny)
    assert block.loop.trace_count() == 1  # the block length is a tensor: warm-up and windows share a trace
    assert block.result()["traces"] == 1


def test_dtype_policy_is_restored_even_on_error():
    import keras

    from tf2bench.loops.mixed import dtype_policy

    def build_fails():
        with dtype_policy("mixed_bfloat16"):
            seen.append(keras.mixed_precision.global_policy().name)
            raise RuntimeError("build failed")

    before, seen = keras.mixed_precision.global_policy().name, []
    with pytest.raises(RuntimeError, match="build failed"):
        build_fails()
    assert seen == ["mixed_bfloat16"]
    assert keras.mixed_precision.global_policy().name == before


def test_an_unsupported_precision_is_reported_not_crashed(monkeypatch):
    import tensorflow as tf

    from tf2bench.errors import UnsupportedError
    from tf2bench.loops import mixed

    def no_kernel(*args, **kwargs):
        raise tf.errors.NotFoundError(None, None, "no Conv2D kernel for bfloat16")

    monkeypatch.setattr(tf.nn, "conv2d", no_kernel)
    with pytest.raises(UnsupportedError, match="mixed_bfloat16 does not run on this device"):
        mixed.check_policy_supported("mixed_bfloat16")


@pytest.mark.slow
def test_result_records_every_key(tiny):
    run = train("tf_function", tiny)
    info = run.result()
    for key in (
        "workload", "api", "loop", "dataset", "batch_size", "epochs", "steps", "seed", "samples_per_sec",
        "step_time_ms", "step_time_ms_p90", "first_step_s", "setup_s", "epoch_s", "test_accuracy", "test_loss",
        "device", "tf_version", "keras_version", "flops_per_sample", "cv", "init_fingerprint", "final_fingerprint",
    ):  # fmt: skip
        assert key in info, key
    assert info["traces"] == 1  # compiled once: no retracing across windows
    assert info["gflops_per_sec"] == pytest.approx(info["flops_per_sample"] * info["samples_per_sec"] / 1e9)
    assert info["mfu"] == pytest.approx(info["gflops_per_sec"] / info["peak_gflops"])
    assert 0 < info["mfu"] < 2  # a measured peak: above 1 only if the matmul run was badly disturbed
    assert info["samples_per_sec"] > 0
    assert info["first_step_s"] > 0
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")  # the expectation comes from the machine the test runs on
    assert info["device"]["kind"] == ("GPU" if gpus else "CPU")
    assert info["device"]["count"] == max(len(gpus), 1)
    memory = info["peak_memory"]
    if gpus:  # device memory of the timed windows, every GPU, and its total
        assert memory["kind"] == "device"
        assert info["peak_memory_bytes"] == memory["total_bytes"] > 0
    else:  # the host's resident set (or why it could not be read)
        assert info["peak_memory_bytes"] is None
        assert memory["kind"] == "host_rss"
        assert "why" in memory or memory["peak_bytes"] >= memory["start_bytes"] > 0
    assert info["dataset"]["source"] == "synthetic"
    assert 0.0 <= info["test_accuracy"] <= 1.0


@pytest.mark.slow
def test_fit_setup_cost_is_kept_out_of_the_window(tiny):
    run = train("fit", tiny)
    assert all(w.setup_s > 0 for w in run.windows)  # the per-call cost was measured and set apart
    info = run.result()
    assert info["setup_s"] == pytest.approx(np.median([w.setup_s for w in run.windows]))


@pytest.mark.slow
def test_tutorial_trains_on_one_sample_per_step(tiny):
    run = train("tutorial", tiny)
    assert run.loop.samples_per_step == 1
    assert run.result()["samples_per_step"] == 1


def nan_loss(y_true, y_pred):
    """Cross-entropy times NaN: an IEEE multiply propagates NaN on every kernel and CPU (NaN *inputs* need not
    survive a max-based relu), so the loss diverges everywhere."""
    import keras

    return keras.losses.sparse_categorical_crossentropy(y_true, y_pred) * np.float32("nan")


@pytest.mark.slow
def test_nan_loss_is_reported_with_its_steps(tiny):
    diverging = dataclasses.replace(CIFAR, loss=nan_loss)
    run = BenchmarkRun(diverging, "functional", "tf_function", tiny, RunConfig(steps=3, rounds=2, warmup_steps=1))
    with pytest.raises(DivergedError, match=r"loss became nan within steps 0\.\.0"):
        run.warmup()


def test_batch_plan_covers_each_epoch_once_in_seeded_order():
    plan = BatchPlan(100, 32, seed=5)
    assert plan.steps_per_epoch == 3  # remainder dropped
    epoch0 = plan.indices(0, 3)
    assert epoch0.shape == (3, 32)
    assert len(set(epoch0.ravel())) == 96
    np.testing.assert_array_equal(plan.indices(1, 1)[0], epoch0[1])
    assert not np.array_equal(plan.indices(3, 1)[0], epoch0[0])  # a new permutation next epoch
    np.testing.assert_array_equal(BatchPlan(100, 32, seed=5).indices(0, 4), plan.indices(0, 4))
    assert not np.array_equal(BatchPlan(100, 32, seed=6).indices(0, 1), epoch0[:1])


def test_batch_plan_needs_one_full_batch():
    with pytest.raises(BadInputError, match="cannot fill one batch"):
        BatchPlan(10, 32, seed=0)


@pytest.mark.parametrize(
    ("field", "value"), [("batch_size", 0), ("steps", -1), ("rounds", 1.5), ("warmup_steps", True), ("seed", -2)]
)
def test_run_config_refuses_bad_numbers(field, value):
    with pytest.raises(BadInputError, match=field):
        RunConfig(**{field: value})


def test_loop_registry():
    assert LOOPS.names()[:5] == ["fit", "eager", "tutorial", "tf_function", "tf_data"]
    with pytest.raises(UnknownNameError, match=r"unknown loop .tf-function.; valid: .*tf_function"):
        get_loop("tf-function")


@pytest.mark.slow
def test_graph_mixed_stacks_the_in_graph_loop_and_mixed_precision(tiny):
    from tf2bench.loops import LOOPS

    run = train("graph_mixed", tiny)
    info = run.result()
    assert LOOPS.get("graph_mixed").opt_in  # run by name only: the default selection stays the ten loops
    assert info["dtype_policy"].startswith("mixed_")
    assert info["compute_dtype"] in ("bfloat16", "float16")
    assert info["traces"] == 1  # one block trace for warm-up and every window
    assert info["weight_tier"]["tolerance"] is None  # bf16: judged by the quality tier, and the record says why
    assert info["peak_dtype"] == info["compute_dtype"]  # MFU against the peak of its own precision


@pytest.mark.parametrize(
    ("gpus", "switch", "override", "expected"),
    [
        ([(8, 0)], True, None, True),  # an A100: TF32 is TensorFlow's default there
        ([(7, 0), (9, 0)], True, None, True),  # any Ampere+ GPU in the process
        ([(7, 5)], True, None, False),  # a T4: no TF32 units
        ([(8, 6)], False, None, False),  # tf.config.experimental.enable_tensor_float_32_execution(False)
        ([(9, 0)], True, "0", False),  # NVIDIA_TF32_OVERRIDE=0 turns it off in the CUDA libraries
        ([], True, None, False),  # a CPU
    ],
)
def test_tf32_is_detected_and_widens_the_weight_tier(monkeypatch, gpus, switch, override, expected):
    import types

    import tensorflow as tf

    from tf2bench.analysis import equivalence
    from tf2bench.loops import base
    from tf2bench.loops.compiled import TfFunction, Xla

    devices = [types.SimpleNamespace(name=f"/physical_device:GPU:{i}", cc=cc) for i, cc in enumerate(gpus)]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: devices if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details", lambda d: {"compute_capability": d.cc})
    monkeypatch.setattr(tf.config.experimental, "tensor_float_32_execution_enabled", lambda: switch)
    if override is None:
        monkeypatch.delenv("NVIDIA_TF32_OVERRIDE", raising=False)
    else:
        monkeypatch.setenv("NVIDIA_TF32_OVERRIDE", override)
    assert base.tf32_in_use() is expected
    ctx = types.SimpleNamespace(model=None, config=RunConfig())
    for loop, fp32 in ((TfFunction, equivalence.TOL_FP32), (Xla, equivalence.TOL_XLA)):
        tier = loop(ctx).weight_tier()
        assert tier["tolerance"] == (equivalence.TOL_TF32 if expected else fp32), (loop.name, tier)
        assert (tier["basis"] == "tf32") is expected
