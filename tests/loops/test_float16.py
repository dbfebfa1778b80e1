"""float16 mixed precision with loss scaling: the GPU's path, executed on any machine.

TensorFlow has float16 CPU kernels (about 3x slower than float32 here), so ``--mixed-precision float16`` runs for
real on a CPU: the model computes in float16 with a float32 output layer, every loop that builds its own step scales
the loss with Keras's LossScaleOptimizer, a step whose gradients are not finite is skipped and halves the scale, and
the quality tier judges the loop against fit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tf2bench.errors import BadInputError
from tf2bench.loops import RunConfig
from tf2bench.suite.runner import BenchmarkRun
from tf2bench.workloads import Workload, data, get_workload
from tf2bench.workloads.tutorial import cifar100_functional

CIFAR = get_workload("cifar100")
SCALE0 = 2.0**15  # Keras 3's LossScaleOptimizer(initial_scale=2**15)


@pytest.fixture(scope="module")
def tiny():
    return data.load(CIFAR, "synthetic", train_size=320, test_size=64)


def train(loop, dataset, workload=CIFAR, **config):
    cfg = RunConfig(**{"steps": 5, "rounds": 2, "warmup_steps": 2, "seed": 7, "mixed_precision": "float16", **config})
    run = BenchmarkRun(workload, "functional", loop, dataset, cfg)
    run.warmup()
    for _ in range(run.rounds):
        run.window()
    return run


def gradient_overflow_at(step: int) -> Workload:
    """CIFAR-100's functional CNN behind a layer that is the identity forward and whose gradient is inf on the
    ``step``-th training call only (0-based): the overflow loss scaling exists for, planted, with a finite loss."""
    import keras
    import tensorflow as tf

    class OverflowOnce(keras.layers.Layer):
        def build(self, input_shape):
            self.calls = self.add_weight(shape=(), initializer="zeros", trainable=False, dtype="int64", name="calls")

        def call(self, x, training=False):
            if not training:
                return x
            hit = tf.equal(self.calls, step)
            self.calls.assign_add(1)

            @tf.custom_gradient
            def identity(t):
                def grad(g):
                    return tf.where(hit, tf.fill(tf.shape(g), tf.constant(np.inf, g.dtype)), g)

                return tf.identity(t), grad

            return identity(x)

    def model():
        inner = cifar100_functional()
        inputs = keras.Input((32, 32, 3))
        # after the network (a layer on the inputs gets no gradient), float32 like the output layer it follows
        return keras.Model(inputs, OverflowOnce(dtype="float32")(inner(inputs)))

    return Workload(
        name="cifar100_overflow", models={"functional": model}, data=CIFAR.data, loss=CIFAR.loss, batch_size=32
    )


def scale(run) -> float:
    return float(np.asarray(run.loop.ctx.optimizer.dynamic_scale))


def applied(run) -> int:
    """Steps the inner optimizer applied (a skipped step applies nothing)."""
    return int(np.asarray(run.loop.ctx.optimizer.inner_optimizer.iterations))


@pytest.mark.slow
@pytest.mark.parametrize("loop", ["mixed", "graph_mixed"])
def test_float16_runs_with_loss_scaling_and_one_trace(tiny, loop):
    import keras

    run = train(loop, tiny)
    info = run.result()
    assert run.model.dtype_policy.name == "mixed_float16"
    assert run.model.layers[-1].compute_dtype == "float32"  # the softmax stays float32 under any mixed policy
    assert isinstance(run.loop.ctx.optimizer, keras.optimizers.LossScaleOptimizer)
    assert info["traces"] == 1
    assert np.isfinite(info["train_loss"])
    assert info["compute_dtype"] == "float16"
    assert info["dtype_policy"] == "mixed_float16"
    assert info["mixed_precision"] == "float16"
    # The scale only halves (overflow) or doubles after 2,000 finite steps: after 12 steps it is 2^15 / 2^k.
    k = np.log2(SCALE0 / info["loss_scale"])
    assert k == int(k), info["loss_scale"]
    assert k >= 0, info["loss_scale"]
    assert applied(run) == 12 - int(k)  # every halving is one skipped step
    assert info["weight_tier"]["tolerance"] is None
    assert "float16" in info["weight_tier"]["why"]


@pytest.mark.slow
def test_an_overflow_skips_its_step_and_halves_the_scale(tiny):
    """The planted step is the last of the second window (global step 2 + 5 + 4 = 11): up to it both runs are the
    same computation, so the planted run ends with one step fewer applied and half the scale."""
    clean = train("mixed", tiny, workload=gradient_overflow_at(10**6))
    planted = train("mixed", tiny, workload=gradient_overflow_at(11))
    assert planted.position == clean.position == 12
    assert applied(planted) == applied(clean) - 1
    assert scale(planted) == scale(clean) / 2
    assert np.isfinite(planted.windows[-1].loss)  # the loss was finite: only the gradients overflowed
    assert planted.loop.trace_count() == 1


@pytest.mark.slow
def test_the_quality_tier_judges_float16_against_fit(tiny):
    from tf2bench.analysis import report
    from tf2bench.analysis.runs import SavedRun

    records = [{**train(v, tiny).result(), "repeat": 0} for v in ("fit", "mixed")]
    df = report.build([SavedRun(path=Path("t.json"), benchmarks=[{"extra_info": r} for r in records])])
    row = df.set_index("loop").loc["mixed"]
    assert row["weights_verdict"] == report.NOT_JUDGED  # float16 rounding: no fp32 bound applies
    assert row["verdict"] == report.EQUIVALENT, row["verdict_note"]
    assert row["paired_samples"] == len(tiny.y_test)


def test_the_choice_is_validated_and_auto_follows_the_device():
    import tensorflow as tf

    from tf2bench.loops.mixed import mixed_policy_name
    from tf2bench.suite.options import parse_options
    from tf2bench.suite.plan import Planner

    with pytest.raises(BadInputError, match=r"unknown mixed precision 'fp16'; valid: auto, float16, bfloat16"):
        RunConfig(mixed_precision="fp16")
    with pytest.raises(BadInputError, match="valid: auto, float16, bfloat16"):
        parse_options({"mixed_precision": "half"}, environ={})
    opts = parse_options({}, environ={"TF2BENCH_MIXED_PRECISION": "float16"})
    assert Planner(opts).run_config("mnist", 0).mixed_precision == "float16"
    assert mixed_policy_name("bfloat16") == "mixed_bfloat16"
    gpu = bool(tf.config.list_physical_devices("GPU"))  # the expectation comes from this machine
    assert mixed_policy_name("auto") == ("mixed_float16" if gpu else "mixed_bfloat16")
