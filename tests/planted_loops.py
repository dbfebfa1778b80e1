"""Broken training loops, planted to prove the verdicts catch them (tests/test_equivalence.py).

Each is a plausible bug in a hand-written loop; each must come out DIFFERS in ``tf2bench report``.
Registered on import under names no real loop uses.
"""

from __future__ import annotations

import numpy as np

from tf2bench import nest
from tf2bench.loops import LOOPS, WindowResult, register_loop
from tf2bench.loops.compiled import TfFunction


class _Planted(TfFunction):
    """tf_function with one thing wrong in which batch or which update a step uses."""

    opt_in = True  # never part of the default selection of a suite run in the same process

    def batch(self, step: int) -> tuple[object, np.ndarray]:
        idx = self.ctx.plan.indices(step, 1).reshape(-1)
        return nest.take(self.ctx.x, idx), self.ctx.y[idx]

    def train(self, step: int) -> object:
        x, y = self.batch(step)
        return self.step(x, y)

    def run(self, start: int, steps: int) -> WindowResult:
        loss = None
        self.stopwatch.start()
        for k in range(start, start + steps):
            loss = self.train(k)
        seconds = self.stopwatch.stop()
        return WindowResult(seconds, float(np.asarray(loss)))


class SkipsEveryOtherUpdate(_Planted):
    name = "planted_skip_update"
    description = "planted defect: the optimizer update is applied on every other batch only"

    def setup(self) -> None:
        import tensorflow as tf

        super().setup()
        c = self.ctx
        self.forward = tf.function(lambda x, y: c.loss_fn(y, c.model(x, training=True)))

    def train(self, step: int) -> object:
        x, y = self.batch(step)
        return self.step(x, y) if step % 2 == 0 else self.forward(x, y)


class MisalignedLabels(_Planted):
    name = "planted_misaligned_labels"
    description = "planted defect: labels shifted by one sample inside each batch"

    def batch(self, step: int) -> tuple[object, np.ndarray]:
        x, y = super().batch(step)
        return x, np.roll(y, 1)


class StaleBatch(_Planted):
    name = "planted_stale_batch"
    description = "planted defect: step k trains on batch k-1 (an off-by-one in the loop index)"

    def batch(self, step: int) -> tuple[object, np.ndarray]:
        return super().batch(max(step - 1, 0))


PLANTED = (SkipsEveryOtherUpdate, MisalignedLabels, StaleBatch)
for _cls in PLANTED:
    if _cls.name not in LOOPS.names():
        register_loop(_cls)
