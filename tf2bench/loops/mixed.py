"""The mixed-precision loops (bf16 on a CPU, fp16 with loss scaling on a GPU): ``mixed`` (tf_data) and
``graph_mixed`` (the in-graph loop), which stacks the two techniques that help independently."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from tf2bench.errors import UnsupportedError
from tf2bench.loops.compiled import GraphLoop, TfData


def mixed_policy_name() -> str:
    """mixed_float16 where a GPU runs it; mixed_bfloat16 on a CPU."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"


@contextlib.contextmanager
def dtype_policy(name: str) -> Iterator[None]:
    """Set Keras's global dtype policy and restore the previous one, whatever happens."""
    import keras

    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


class _MixedPrecision:
    """A loop whose model computes in the device's mixed policy; with float16, the optimizer scales the loss."""

    ctx: Any

    @classmethod
    def model_scope(cls) -> AbstractContextManager[Any]:
        name = mixed_policy_name()
        check_policy_supported(name)
        return dtype_policy(name)

    def setup(self) -> None:
        import keras

        c = self.ctx
        if mixed_policy_name() == "mixed_float16":  # float16 gradients underflow without loss scaling
            c.optimizer = keras.optimizers.LossScaleOptimizer(c.optimizer)
            c.optimizer.build(c.model.trainable_variables)
        super().setup()  # type: ignore[misc]

    def info(self) -> dict[str, Any]:
        return {**super().info(), "dtype_policy": self.ctx.model.dtype_policy.name}  # type: ignore[misc]


class Mixed(_MixedPrecision, TfData):
    name = "mixed"
    description = "tf_data with a mixed-precision model: mixed_float16 + loss scaling on GPU, mixed_bfloat16 on CPU"


class GraphMixed(_MixedPrecision, GraphLoop):
    name = "graph_mixed"
    description = "graph_loop with the mixed-precision model: Python out of the step and bf16 (fp16 on a GPU) compute"
    opt_in = True  # two techniques stacked: run it by name (--variant graph_mixed)


def check_policy_supported(name: str) -> None:
    """Run one tiny conv + matmul + gradient under ``name``; raise UnsupportedError if TF cannot."""
    import tensorflow as tf

    dtype = name.removeprefix("mixed_")
    try:
        x = tf.ones((1, 8, 8, 2), dtype=dtype)
        k = tf.Variable(tf.ones((3, 3, 2, 4), dtype=dtype))
        with tf.GradientTape() as tape:
            y = tf.reduce_sum(tf.matmul(tf.reshape(tf.nn.conv2d(x, k, 1, "VALID"), (1, -1)), tf.ones((144, 2), dtype)))
        tape.gradient(y, k).numpy()
    except (tf.errors.OpError, TypeError, ValueError) as exc:
        raise UnsupportedError(f"{name} does not run on this device with TF {tf.__version__}: {exc}") from exc
