"""The training loops compute the same function: same start, same batches, same weights after."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tf2bench import data
from tf2bench.errors import BadInputError, DivergedError, UnknownNameError
from tf2bench.runner import BenchmarkRun
from tf2bench.variants import VARIANTS, BatchPlan, RunConfig, get_variant
from tf2bench.workloads import get_workload

CIFAR = get_workload("cifar100")
EQUIVALENT = ("fit", "eager", "tf_function", "tf_data")


@pytest.fixture(scope="module")
def tiny():
    return data.load(CIFAR, "synthetic", train_size=320, test_size=64)


def train(variant, dataset, api="functional", **config):
    cfg = RunConfig(**{"steps": 5, "rounds": 2, "warmup_steps": 2, "seed": 7, **config})
    run = BenchmarkRun(CIFAR, api, variant, dataset, cfg)
    run.warmup()
    for _ in range(run.rounds):
        run.window()
    return run


def max_relative_difference(a, b):
    return max(float(np.max(np.abs(x - y)) / max(np.max(np.abs(y)), 1e-12)) for x, y in zip(a, b, strict=True))


@pytest.mark.slow
@pytest.mark.parametrize("api", ["functional", "subclassing"])
def test_loops_agree_after_identical_batches(tiny, api):
    runs = {v: train(v, tiny, api=api) for v in (*EQUIVALENT, "tutorial")}
    assert all(r.position == 12 for r in runs.values())  # K = 12 identical batches
    assert len({r.init_fingerprint for r in runs.values()}) == 1  # same start
    reference = runs["fit"].model.get_weights()
    for v in EQUIVALENT[1:]:
        diff = max_relative_difference(runs[v].model.get_weights(), reference)
        assert diff <= 1e-5, f"{v} differs from fit by {diff:.2e} (relative)"
    # The tutorial's loop trains on other data (one sample per step): it must not agree.
    assert max_relative_difference(runs["tutorial"].model.get_weights(), reference) > 1e-3


@pytest.mark.slow
def test_result_records_every_key(tiny):
    run = train("tf_function", tiny)
    info = run.result()
    for key in (
        "workload", "api", "variant", "dataset", "batch_size", "epochs", "steps", "seed", "samples_per_sec",
        "step_time_ms", "step_time_ms_p90", "first_step_s", "setup_s", "epoch_s", "test_accuracy", "test_loss",
        "device", "tf_version", "keras_version", "flops_per_sample", "cv", "init_fingerprint", "final_fingerprint",
    ):  # fmt: skip
        assert key in info, key
    assert info["traces"] == 1  # compiled once: no retracing across windows
    assert info["samples_per_sec"] > 0
    assert info["first_step_s"] > 0
    assert info["device"]["kind"] == "CPU"
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
    assert run.variant.samples_per_step == 1
    assert run.result()["samples_per_step"] == 1


@pytest.mark.slow
def test_nan_loss_is_reported_with_its_steps(tiny):
    poisoned = dataclasses.replace(tiny, x_train=np.full_like(tiny.x_train, np.nan))
    run = BenchmarkRun(CIFAR, "functional", "tf_function", poisoned, RunConfig(steps=3, rounds=2, warmup_steps=1))
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


def test_variant_registry():
    assert VARIANTS.names()[:5] == ["fit", "eager", "tutorial", "tf_function", "tf_data"]
    with pytest.raises(UnknownNameError, match=r"unknown variant .tf-function.; valid: .*tf_function"):
        get_variant("tf-function")
