"""The mixed-precision loops: ``mixed`` (tf_data) and ``graph_mixed`` (the in-graph loop, the two techniques that
help independently, stacked), in float16 with loss scaling or in bfloat16 (``RunConfig.mixed_precision``; ``auto``:
float16 on a GPU, bfloat16 on a CPU).

float16 runs on a CPU too (TensorFlow has float16 CPU kernels, ~3x slower than float32 here), so the GPU's path
(a ``mixed_float16`` model, ``LossScaleOptimizer``, non-finite steps skipped) executes in the tests on any machine.
The loss scaling itself is the runner's (tf2bench.suite.runner.loss_scaled): every loop that builds its own step gets a
``LossScaleOptimizer`` for a float16 model, and ``fit`` compiles with ``auto_scale_loss=True``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any

from tf2bench.errors import UnsupportedError
from tf2bench.loops.compiled import GraphLoop, TfData


def mixed_policy_name(choice: str = "auto") -> str:
    """The Keras policy of ``choice`` (RunConfig.MIXED_PRECISIONS): auto is mixed_float16 where a GPU runs it
    (tensor cores; float16 is what every GPU since Volta runs fast) and mixed_bfloat16 on a CPU (AVX512-BF16/AMX)."""
    if choice == "auto":
        import tensorflow as tf

        choice = "float16" if tf.config.list_physical_devices("GPU") else "bfloat16"
    return f"mixed_{choice}"


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
    """A loop whose model computes in the chosen mixed policy (the runner scales a float16 model's loss)."""

    ctx: Any

    @classmethod
    def model_scope(cls, config: Any) -> AbstractContextManager[Any]:
        name = mixed_policy_name(config.mixed_precision)
        check_policy_supported(name)
        return dtype_policy(name)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "dtype_policy": self.ctx.model.dtype_policy.name}  # type: ignore[misc]


class Mixed(_MixedPrecision, TfData):
    name = "mixed"
    description = "tf_data with a mixed-precision model: float16 + loss scaling (GPU default) or bfloat16 (CPU default)"


class GraphMixed(_MixedPrecision, GraphLoop):
    name = "graph_mixed"
    description = "graph_loop with the mixed-precision model: Python out of the step and bf16 (fp16 on a GPU) compute"
    opt_in = True  # two techniques stacked: run it by name (--loop graph_mixed)


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
