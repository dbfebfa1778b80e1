"""``fit``, ``fit_xla`` and ``fit_spe``: Keras's own training loop, timed with epoch hooks only."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from tf2bench.loops.base import Loop, WindowResult


class Fit(Loop):
    name = "fit"
    description = "model.compile + model.fit on the window's arrays (shuffle=False), jit_compile explicit"
    jit_compile: ClassVar[bool | None] = None  # None: RunConfig.jit_compile

    def steps_per_execution(self) -> int:
        return 1

    def jit(self) -> bool:
        return self.ctx.config.jit_compile if self.jit_compile is None else self.jit_compile

    def info(self) -> dict[str, Any]:
        return {"jit_compile": self.jit()}  # what this loop compiled with, not just the config's default

    def setup(self) -> None:
        c, spe = self.ctx, self.steps_per_execution()
        # auto_scale_loss: a float16 model's loss is scaled, as every other loop's (loops.base.loss_scaled)
        c.model.compile(
            optimizer=c.optimizer, loss=c.loss_fn, jit_compile=self.jit(), steps_per_execution=spe, auto_scale_loss=True
        )

    def run(self, start: int, steps: int) -> WindowResult:
        import keras

        x, y = self._window_arrays(start, steps)
        stopwatch, seconds = self.stopwatch, []

        class EpochTimer(keras.callbacks.Callback):
            # Epoch-level hooks only: a per-batch hook would force a host sync per step.
            def on_epoch_begin(self, epoch, logs=None):
                stopwatch.start()

            def on_epoch_end(self, epoch, logs=None):
                seconds.append(stopwatch.stop())

        marker = self.step_marker

        class StepMarkers(keras.callbacks.Callback):
            # A marker per batch (fit fetches the batch inside its step). Per-batch hooks cost a host
            # sync per step, so this runs only in the untimed profile window.
            def on_train_batch_begin(self, batch, logs=None):
                self.open = marker(start + batch)
                self.open.__enter__()

            def on_train_batch_end(self, batch, logs=None):
                self.open.__exit__(None, None, None)

        callbacks = [EpochTimer(), StepMarkers()] if self.marking else [EpochTimer()]
        t0 = time.perf_counter()
        history = self.ctx.model.fit(
            x, y, batch_size=self.ctx.config.batch_size, epochs=1, shuffle=False, verbose=0, callbacks=callbacks
        )
        call_s = time.perf_counter() - t0
        return WindowResult(seconds[0], float(history.history["loss"][-1]), setup_s=call_s - seconds[0])


class FitXla(Fit):
    name = "fit_xla"
    description = "fit with compile(jit_compile=True): Keras's own step compiled by XLA"
    jit_compile = True


SPE_CAP = 200  # beyond a few hundred steps per call, the per-call overhead it saves is already negligible


class FitSpe(Fit):
    name = "fit_spe"
    description = "fit with steps_per_execution=N (default: one window's steps, capped at 200): N steps per call"

    def steps_per_execution(self) -> int:
        c = self.ctx
        window = c.plan.steps_per_epoch if c.config.epochs else c.config.steps
        return min(window, SPE_CAP)

    def info(self) -> dict[str, Any]:
        return {**super().info(), "steps_per_execution": self.steps_per_execution()}

    def train_steps_per_marked_step(self, steps: int) -> int:
        """Train steps in one marked step (one execution) of a ``steps``-step profile window."""
        from tf2bench.measure.profiling import unrolled_block

        return unrolled_block(steps)

    def profile(self, start: int, steps: int) -> WindowResult:
        """fit over the window, each execution ``n`` of Keras's own train steps unrolled, one marker per execution.

        Keras runs steps_per_execution > 1 as a tf.while_loop (``unrolled_steps_per_execution`` only unrolls
        its body, the loop stays), and xprof measures no step of a trace that runs one. So for this window fit
        runs with ``steps_per_execution = n`` and a ``train_function`` of n unrolled ``model.train_step`` calls
        (Keras's one_step_on_data on one device, same jit_compile): the same batches, order and math, several
        steps per execution as before. Tracing and the first execution stay outside the markers.
        """
        import tensorflow as tf

        from tf2bench.measure.profiling import unrolled_blocks

        model = self.ctx.model
        n = self.train_steps_per_marked_step(steps)
        one_step = tf.function(model.train_step, jit_compile=self.jit(), reduce_retracing=True)

        def run_unrolled(iterator):
            for _ in range(n):  # Python range: n copies of the step, no while_loop
                logs = one_step(iterator.get_next())
            return logs

        block = tf.function(run_unrolled, reduce_retracing=True)
        blocks = iter(unrolled_blocks(start, steps, n))

        def train_function(iterator: Any) -> Any:  # fit calls it once per execution (n steps)
            first_step, marked = next(blocks)
            block.get_concrete_function(iterator)  # traces once, consumes no batch
            self.marking = marked
            try:
                with self.step_marker(first_step):
                    return block(iterator)
            finally:
                self.marking = False

        saved = model.train_function, model.steps_per_execution
        model.train_function, model.steps_per_execution = train_function, n  # fit keeps a train_function it has
        try:
            return self.run(start, steps)  # not marking: fit adds no per-batch callbacks
        finally:
            model.train_function, model.steps_per_execution = saved
