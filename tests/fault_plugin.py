"""A pytest plugin (``-p fault_plugin``) that registers loops with injected faults.

Used by test_faults.py to check that one failing benchmark fails alone, with its reason,
and that the run's other results are still saved.
"""

from __future__ import annotations

import numpy as np

from tf2bench.loops import WindowResult, compile_step, register_loop
from tf2bench.loops.compiled import TfFunction


@register_loop
class FaultOOM(TfFunction):
    name = "fault_oom"
    description = "tf_function, then a simulated device out-of-memory in the first timed window"

    def run(self, start: int, steps: int) -> WindowResult:
        import tensorflow as tf

        if start > 0:  # after warm-up, like an allocation that grows
            raise tf.errors.ResourceExhaustedError(None, None, "OOM when allocating tensor with shape[32,64,24,24]")
        return super().run(start, steps)


@register_loop
class FaultNaN(TfFunction):
    name = "fault_nan"
    description = "tf_function whose loss turns NaN from step 3 on: the loss diverges"

    def setup(self) -> None:
        super().setup()
        c = self.ctx
        # NaN enters through an IEEE multiply, which propagates it on every kernel and CPU (NaN *inputs* do not:
        # a max-based relu may turn NaN into 0 on one CPU and not on another).
        self.poisoned = compile_step(c.model, c.optimizer, lambda y, p: c.loss_fn(y, p) * np.float32("nan"),
                                     jit_compile=self.jit())  # fmt: skip

    def run(self, start: int, steps: int) -> WindowResult:
        if start >= 3:
            self.step = self.poisoned
        return super().run(start, steps)
