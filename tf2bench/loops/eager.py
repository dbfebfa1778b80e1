"""The tutorial's eager loops: Python walks the samples and calls the step eagerly."""

from __future__ import annotations

import numpy as np

from tf2bench import nest
from tf2bench.loops.base import Loop, WindowResult, loss_value, train_step


class Eager(Loop):
    name = "eager"
    description = "the tutorial's eager loop, fixed: Python walks every sample, numpy builds each batch"

    def run(self, start: int, steps: int) -> WindowResult:
        c = self.ctx
        idx = c.plan.indices(start, steps)
        loss = None
        self.stopwatch.start()
        for k, rows in enumerate(idx):
            with self.step_marker(start + k):
                xs, ys = [], []
                for j in rows:  # one sample at a time, as the tutorial walks them
                    xs.append(nest.take(c.x, j))
                    ys.append(c.y[j])
                loss = train_step(c.model, c.optimizer, c.loss_fn, nest.stack(xs), np.array(ys))
        seconds = self.stopwatch.stop()
        return WindowResult(seconds, loss_value(loss))


class Tutorial(Loop):
    name = "tutorial"
    description = "the tutorial's eager loop verbatim, defect included: one sample per step, every 32nd sample"

    @property
    def samples_per_step(self) -> int:
        return 1  # the defect: the step sees only the first sample of each would-be batch

    def run(self, start: int, steps: int) -> WindowResult:
        c = self.ctx
        idx = c.plan.indices(start, steps)
        loss = None
        self.stopwatch.start()
        for k, rows in enumerate(idx):  # one would-be batch per step: the tutorial walks all of it
            with self.step_marker(start + k):
                for i, j in enumerate(rows):
                    if i % c.config.batch_size == 0:
                        one = nest.take(c.x, slice(j, j + 1))
                        loss = train_step(c.model, c.optimizer, c.loss_fn, one, c.y[j : j + 1])
        seconds = self.stopwatch.stop()
        return WindowResult(seconds, loss_value(loss))
