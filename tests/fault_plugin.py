"""A pytest plugin (``-p fault_plugin``) that registers loops with injected faults.

Used by test_faults.py to check that one failing benchmark fails alone, with its reason,
and that the run's other results are still saved.
"""

from __future__ import annotations

import numpy as np

from tf2bench.variants import TfFunction, WindowResult, register_variant


@register_variant
class FaultOOM(TfFunction):
    name = "fault_oom"
    description = "tf_function, then a simulated device out-of-memory in the first timed window"

    def run(self, start: int, steps: int) -> WindowResult:
        import tensorflow as tf

        if start > 0:  # after warm-up, like an allocation that grows
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[32,64,24,24]")
        return super().run(start, steps)


@register_variant
class FaultNaN(TfFunction):
    name = "fault_nan"
    description = "tf_function on inputs that turn NaN from step 3 on: the loss diverges"

    def _window_arrays(self, start: int, steps: int) -> tuple[np.ndarray, np.ndarray]:
        x, y = super()._window_arrays(start, steps)
        if start >= 3:
            x = np.full_like(x, np.nan)
        return x, y
