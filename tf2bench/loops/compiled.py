"""The compiled loops: the shared step under tf.function, fed by slices, by tf.data, or looped in the graph."""

from __future__ import annotations

from typing import Any, ClassVar

from tf2bench import nest
from tf2bench.loops.base import Loop, WindowResult, compile_step, iterate_steps, loss_value, make_dataset, train_step


class _CompiledStep(Loop):
    jit_compile: ClassVar[bool | None] = None  # None: RunConfig.jit_compile

    def jit(self) -> bool:
        return self.ctx.config.jit_compile if self.jit_compile is None else self.jit_compile

    def info(self) -> dict[str, Any]:
        return {"jit_compile": self.jit()}

    def setup(self) -> None:
        c = self.ctx
        self.step = compile_step(c.model, c.optimizer, c.loss_fn, jit_compile=self.jit())

    def trace_count(self) -> int | None:
        return int(self.step.experimental_get_tracing_count())


class TfFunction(_CompiledStep):
    name = "tf_function"
    description = "the same step compiled with tf.function, fed batch slices of the window's arrays"

    def run(self, start: int, steps: int) -> WindowResult:
        x, y = self._window_arrays(start, steps)
        b = self.ctx.config.batch_size
        loss = None
        self.stopwatch.start()
        for k in range(steps):
            with self.step_marker(start + k):
                i = k * b
                loss = self.step(nest.take(x, slice(i, i + b)), y[i : i + b])
        seconds = self.stopwatch.stop()
        return WindowResult(seconds, loss_value(loss))


class TfData(_CompiledStep):
    name = "tf_data"
    description = "a tf.data pipeline (index gather, prefetch AUTOTUNE) in the planned order feeding the compiled step"

    def setup(self) -> None:
        super().setup()
        self.dataset = self.make_dataset()
        self.iterator = iter(self.dataset)
        self.position = 0

    def make_dataset(self) -> Any:
        """The pipeline this loop consumes, sized for every step of the run."""
        c = self.ctx
        return make_dataset(c.x, c.y, c.plan.indices(0, c.total_steps))

    def run(self, start: int, steps: int) -> WindowResult:
        self.stopwatch.start()
        loss = iterate_steps(self, start, steps)
        seconds = self.stopwatch.stop()
        return WindowResult(seconds, loss_value(loss))


class Xla(TfData):
    name = "xla"
    description = "tf_data with the step compiled by XLA (tf.function(jit_compile=True))"
    jit_compile = True


class GraphLoop(TfData):
    name = "graph_loop"
    description = "a window of steps in one tf.function iterating the tf.data pipeline in the graph (tf.range)"

    step_jit: ClassVar[bool] = False  # compile the step inside the block with XLA (graph_xla)

    def setup(self) -> None:
        import tensorflow as tf

        c = self.ctx
        model, optimizer, loss_fn = c.model, c.optimizer, c.loss_fn
        step = (
            compile_step(model, optimizer, loss_fn, jit_compile=True)  # an XLA cluster called from the loop
            if self.step_jit
            else lambda x, y: train_step(model, optimizer, loss_fn, x, y)
        )

        def run_block(iterator, n):
            loss = tf.constant(0.0)
            for _ in tf.range(n):  # autograph: a while_loop, so Python runs once per block
                x, y = next(iterator)
                loss = step(x, y)
            return loss

        self.block = tf.function(run_block)
        self.inner_step = step  # the step inside the block, also run by the profile window's unrolled blocks
        self.unrolled: dict[int, Any] = {}
        self.dataset = self.make_dataset()
        self.iterator = iter(self.dataset)
        self.position = 0

    def jit(self) -> bool:
        # XLA cannot compile the in-graph iterator ops: the block is a plain graph; graph_xla compiles the step in it
        return self.step_jit

    def trace_count(self) -> int | None:
        return int(self.block.experimental_get_tracing_count())

    def run(self, start: int, steps: int) -> WindowResult:
        import tensorflow as tf

        if start != self.position:
            raise RuntimeError(f"{self.name} runs its steps in order: expected step {self.position}, got {start}")
        n = tf.constant(steps, dtype=tf.int32)  # a tensor: any block length reuses the one trace
        self.stopwatch.start()
        loss = self.block(self.iterator, n)  # never marked: profile() runs unrolled blocks instead
        seconds = self.stopwatch.stop()
        self.position += steps
        return WindowResult(seconds, loss_value(loss))

    def train_steps_per_marked_step(self, steps: int) -> int:
        """Train steps in one marked step of a ``steps``-step profile window (the unrolled block's length)."""
        from tf2bench.measure.profiling import unrolled_block

        return unrolled_block(steps)

    def unrolled_block(self, n: int) -> Any:
        """A tf.function running the block's step ``n`` times, unrolled at trace time: the same graph minus the
        while_loop, which hides every step from xprof on CPU."""
        import tensorflow as tf

        if n not in self.unrolled:
            step = self.inner_step

            def run_unrolled(iterator):
                loss = tf.constant(0.0)
                for _ in range(n):  # Python range: n copies of the step, no while_loop
                    x, y = next(iterator)
                    loss = step(x, y)
                return loss

            self.unrolled[n] = tf.function(run_unrolled)
        return self.unrolled[n]

    def profile(self, start: int, steps: int) -> WindowResult:
        """The window as unrolled blocks on the same iterator: the same batches, order and step as ``run``.

        The block is traced before any marker and its first call (graph optimisation, kernel set-up) is
        left unmarked (``profiling.unrolled_blocks``), so marked steps time only training.
        """
        from tf2bench.measure.profiling import unrolled_blocks

        if start != self.position:
            raise RuntimeError(f"{self.name} runs its steps in order: expected step {self.position}, got {start}")
        n = self.train_steps_per_marked_step(steps)
        block = self.unrolled_block(n)
        block.get_concrete_function(self.iterator)  # traces, consumes no batch
        self.stopwatch.start()
        for k, marked in unrolled_blocks(start, steps, n):
            self.marking = marked
            try:
                with self.step_marker(k):  # step_num: the block's first train step
                    loss = block(self.iterator)
            finally:
                self.marking = False
        seconds = self.stopwatch.stop()
        self.position += steps
        return WindowResult(seconds, loss_value(loss))


class GraphXla(GraphLoop):
    name = "graph_xla"
    description = "graph_loop with the step inside the block compiled by XLA: no Python per step, fused kernels"
    opt_in = True  # two techniques stacked (graph_loop + xla): run it by name, the default set stays the ten loops
    step_jit = True
