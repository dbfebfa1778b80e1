"""The training loops, one registry, one train step.

Every loop trains the same model (same seeded weights) with the same optimizer
settings on the same batches in the same order (``BatchPlan``); only the way the
loop is written differs. A loop implements ``setup`` (untimed: compile, build
pipelines) and ``run(start, steps)``, which trains global steps
``[start, start + steps)`` and returns the seconds it measured, ended by a device sync.
Each loop wraps one step (the batch fetch included) in ``self.step_marker(step)``: a
no-op in timed windows, a profiler step marker inside ``profile(start, steps)``. Loops
that run several steps as a while_loop (``graph_loop``, ``fit_spe``), which xprof cannot
measure, profile in marked blocks of the same step unrolled (``train_steps_per_marked_step``).
"""

from __future__ import annotations

import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tf2bench import equivalence, nest
from tf2bench.errors import BadInputError, UnsupportedError
from tf2bench.registry import Registry
from tf2bench.timing import Stopwatch, sync_devices


@dataclass(frozen=True)
class RunConfig:
    """How long and how to train one benchmark; validated on creation."""

    SCALINGS: ClassVar[tuple[str, ...]] = ("strong", "weak")  # valid ``scaling``; see tf2bench.distribute
    batch_size: int = 32
    steps: int = 20  # steps per timed window (round)
    rounds: int = 3  # timed windows
    warmup_steps: int = 1  # untimed for throughput; their time is first_step_s
    seed: int = 0
    epochs: int | None = None  # if set, each window is one epoch and rounds = epochs
    jit_compile: bool = False
    profile_steps: int = 0  # an untimed, profiled window after the timed ones (0: none)
    scaling: str = "strong"  # distributed loops: batch_size is the global batch (strong) or per replica (weak)

    def __post_init__(self) -> None:
        for name in ("batch_size", "steps", "rounds", "warmup_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise BadInputError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise BadInputError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs <= 0):
            raise BadInputError(f"epochs must be a positive integer, got {self.epochs!r}")
        if isinstance(self.profile_steps, bool) or not isinstance(self.profile_steps, int) or self.profile_steps < 0:
            raise BadInputError(f"profile_steps must be a non-negative integer, got {self.profile_steps!r}")
        if self.scaling not in self.SCALINGS:
            raise BadInputError(f"unknown scaling {self.scaling!r}; valid: {', '.join(self.SCALINGS)}")


class BatchPlan:
    """The batch order every variant follows: a seeded permutation per epoch, no remainder."""

    def __init__(self, n_samples: int, batch_size: int, seed: int) -> None:
        if n_samples < batch_size:
            raise BadInputError(f"{n_samples} training samples cannot fill one batch of {batch_size}")
        self.n, self.batch_size, self.seed = n_samples, batch_size, seed
        self.steps_per_epoch = n_samples // batch_size
        self._perms: dict[int, np.ndarray] = {}

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            self._perms[epoch] = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        return self._perms[epoch]

    def indices(self, start: int, steps: int) -> np.ndarray:
        """Sample indices of global steps ``[start, start+steps)``, shape (steps, batch)."""
        rows = []
        for k in range(start, start + steps):
            epoch, j = divmod(k, self.steps_per_epoch)
            rows.append(self._perm(epoch)[j * self.batch_size : (j + 1) * self.batch_size])
        return np.stack(rows)


def train_step(model: Any, optimizer: Any, loss_fn: Any, x: Any, y: Any) -> Any:
    """The one train step every custom loop runs (eagerly or compiled)."""
    import tensorflow as tf

    with tf.GradientTape() as tape:
        predictions = model(x, training=True)
        loss = loss_fn(y, predictions)
        scaled = optimizer.scale_loss(loss)  # identity unless loss scaling is on (mixed_float16), as in fit
    grads = tape.gradient(scaled, model.trainable_variables)
    optimizer.apply(grads, model.trainable_variables)
    return loss


def compile_step(model: Any, optimizer: Any, loss_fn: Any, *, jit_compile: bool) -> Any:
    """A new tf.function around ``train_step`` for this model and optimizer (never shared)."""
    import tensorflow as tf

    def step(x, y):
        return train_step(model, optimizer, loss_fn, x, y)

    return tf.function(step, jit_compile=jit_compile)


@dataclass
class TrainContext:
    """What a loop trains: built by the runner, identical for every variant of a case."""

    model: Any
    optimizer: Any
    loss_fn: Any
    x: Any  # an array, a tuple or a dict of arrays (tf2bench.nest)
    y: np.ndarray
    plan: BatchPlan
    config: RunConfig
    total_steps: int  # warm-up + all windows + the profile window: pipelines are sized for it
    # A fresh model with the case's seeded weights, built in whatever scope is active: a loop that must own its
    # model under a tf.distribute strategy builds it here, copies ``model``'s weights, then replaces ``model``.
    build_model: Callable[[], Any] | None = None


@dataclass(frozen=True)
class WindowResult:
    seconds: float  # steady-state time of the window, device work included
    loss: float  # the loss reported at the window's end
    setup_s: float = 0.0  # fixed per-call cost outside the window (fit's data adapter)


class Variant(ABC):
    """A way of writing the training loop."""

    name: ClassVar[str]
    description: ClassVar[str]
    opt_in: ClassVar[bool] = False  # True: only run when named (--variant), never in the default "all" selection

    @classmethod
    def global_batch_size(cls, config: RunConfig) -> int:
        """Samples per step over all replicas: the runner plans batches of this size (one device: batch_size)."""
        return config.batch_size

    def __init__(self, ctx: TrainContext) -> None:
        self.ctx = ctx
        self.stopwatch = Stopwatch()
        self.marking = False  # True only inside profile(): steps get profiler markers

    @property
    def samples_per_step(self) -> int:
        return self.ctx.config.batch_size

    def setup(self) -> None:  # noqa: B027 - optional hook
        """Untimed preparation (compile, build pipelines)."""

    @abstractmethod
    def run(self, start: int, steps: int) -> WindowResult: ...

    def profile(self, start: int, steps: int) -> WindowResult:
        """``run`` with every step marked for the profiler; never timed (markers cost a little per step)."""
        self.marking = True
        try:
            return self.run(start, steps)
        finally:
            self.marking = False

    def step_marker(self, step: int) -> AbstractContextManager[Any]:
        """Wraps one step, batch fetch included: xprof counts only steps marked with ``_r=1``."""
        if not self.marking:
            return contextlib.nullcontext()
        import tensorflow as tf

        return tf.profiler.experimental.Trace("train", step_num=step, _r=1)

    def trace_count(self) -> int | None:
        """How often the compiled step was traced (None: not a tf.function loop)."""
        return None

    def jit(self) -> bool:
        """Whether the step is compiled by XLA."""
        return False

    def same_random_stream(self) -> bool:
        """Whether random layers (Dropout, noise) draw the same values as in ``fit`` (not under XLA's own RNG)."""
        return not self.jit()

    def weight_tier(self, random_layers: Sequence[str] = ()) -> dict[str, Any]:
        """The "same math" tolerance this loop's arithmetic allows (tf2bench.equivalence), saved with the result.

        ``tolerance`` is a share of fit's update ||w_fit - w_0||; None means the weight tier cannot judge this
        loop and the verdict falls back to the quality tier, for the reason given.
        """
        compute = str(getattr(getattr(self.ctx.model, "dtype_policy", None), "compute_dtype", "float32"))
        if compute != "float32":
            return {
                "tolerance": None,
                "basis": compute,
                "why": f"{compute} compute: rounding to a {compute} mantissa moves Adam's updates by a share "
                "comparable to a defect's, so the verdict falls back to the quality tier",
            }
        if random_layers and not self.same_random_stream():
            return {
                "tolerance": None,
                "basis": "random stream",
                "why": f"random layers ({', '.join(random_layers)}) draw other values in this loop than in fit "
                "(XLA's own RNG, or one stream per replica), so the verdict falls back to the quality tier",
            }
        if self.jit():
            return {"tolerance": equivalence.TOL_XLA, "basis": "xla", "why": "fp32 fused and reordered by XLA"}
        return {"tolerance": equivalence.TOL_FP32, "basis": "fp32", "why": "fp32, other kernels or summation order"}

    def info(self) -> dict[str, Any]:
        """Loop-specific settings saved with the result (e.g. steps_per_execution)."""
        return {}

    @classmethod
    def model_scope(cls) -> AbstractContextManager[Any]:
        """Entered while the runner builds the model: a loop that needs other layer dtypes sets them here.

        Raises UnsupportedError when the loop cannot run on this machine (the suite skips it).
        """
        return contextlib.nullcontext()

    def _window_arrays(self, start: int, steps: int) -> tuple[Any, np.ndarray]:
        idx = self.ctx.plan.indices(start, steps).reshape(-1)
        return nest.take(self.ctx.x, idx), self.ctx.y[idx]


VARIANTS: Registry[type[Variant]] = Registry("variant")


def register_variant(cls: type[Variant]) -> type[Variant]:
    VARIANTS.register(cls.name, cls)
    return cls


def _finite_loss(loss: Any) -> float:
    return float(np.asarray(loss))


@register_variant
class Fit(Variant):
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
        c.model.compile(optimizer=c.optimizer, loss=c.loss_fn, jit_compile=self.jit(), steps_per_execution=spe)

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


@register_variant
class Eager(Variant):
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
        return WindowResult(seconds, _finite_loss(loss))


@register_variant
class Tutorial(Variant):
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
        return WindowResult(seconds, _finite_loss(loss))


class _CompiledStep(Variant):
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


@register_variant
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
        return WindowResult(seconds, _finite_loss(loss))


def make_dataset(x: Any, y: np.ndarray, batch_indices: np.ndarray) -> Any:
    """tf.data pipeline yielding the planned batches: index batches gathered from the arrays."""
    import tensorflow as tf

    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    index = tf.data.Dataset.from_tensor_slices(batch_indices)
    ds = tf.data.Dataset.zip((index, data)).map(
        lambda i, d: (tf.nest.map_structure(lambda a: tf.gather(a, i), d[0]), tf.gather(d[1], i)),
        num_parallel_calls=tf.data.AUTOTUNE,
    )
    return ds.prefetch(tf.data.AUTOTUNE)


def iterate_steps(loop: Any, start: int, steps: int) -> Any:
    """Train ``loop.step`` on the next ``steps`` batches of ``loop.iterator``, in order; the last loss, unsynced.

    Shared by every loop that consumes one persistent iterator (tf_data and the distributed loops).
    """
    if start != loop.position:
        raise RuntimeError(f"{loop.name} runs its steps in order: expected step {loop.position}, got {start}")
    it, loss = loop.iterator, None
    for k in range(steps):
        with loop.step_marker(start + k):
            x, y = next(it)
            loss = loop.step(x, y)
    loop.position += steps
    return loss


@register_variant
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
        return WindowResult(seconds, _finite_loss(loss))


@register_variant
class FitXla(Fit):
    name = "fit_xla"
    description = "fit with compile(jit_compile=True): Keras's own step compiled by XLA"
    jit_compile = True


SPE_CAP = 200  # measured here: fit with steps_per_execution=200 ran 1.5x plain fit on cifar100


@register_variant
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
        from tf2bench.profiling import unrolled_block

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

        from tf2bench.profiling import unrolled_blocks

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


@register_variant
class Xla(TfData):
    name = "xla"
    description = "tf_data with the step compiled by XLA (tf.function(jit_compile=True))"
    jit_compile = True


@register_variant
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
        return WindowResult(seconds, _finite_loss(loss))

    def train_steps_per_marked_step(self, steps: int) -> int:
        """Train steps in one marked step of a ``steps``-step profile window (the unrolled block's length)."""
        from tf2bench.profiling import unrolled_block

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
        from tf2bench.profiling import unrolled_blocks

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
        return WindowResult(seconds, _finite_loss(loss))


@register_variant
class GraphXla(GraphLoop):
    name = "graph_xla"
    description = "graph_loop with the step inside the block compiled by XLA: no Python per step, fused kernels"
    opt_in = True  # two techniques stacked (graph_loop + xla): run it by name, the default set stays the ten loops
    step_jit = True


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


@register_variant
class Mixed(TfData):
    name = "mixed"
    description = "tf_data with a mixed-precision model: mixed_float16 + loss scaling on GPU, mixed_bfloat16 on CPU"

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
        super().setup()

    def info(self) -> dict[str, Any]:
        return {**super().info(), "dtype_policy": self.ctx.model.dtype_policy.name}


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


def get_variant(name: str) -> type[Variant]:
    return VARIANTS.get(name)


VariantFactory = Callable[[TrainContext], Variant]
__all__ = [
    "VARIANTS",
    "BatchPlan",
    "RunConfig",
    "TrainContext",
    "Variant",
    "WindowResult",
    "get_variant",
    "sync_devices",
]

# Loops kept in their own modules register on import; they import this module, so this stays last.
from tf2bench import distribute as _distribute  # noqa: E402, F401
