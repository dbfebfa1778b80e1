"""What every training loop shares: the run config, the batch plan, the one train step, the Loop base, the registry.

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
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from tf2bench import nest
from tf2bench.analysis import equivalence
from tf2bench.errors import BadInputError, check_positive_int
from tf2bench.measure.timing import Stopwatch
from tf2bench.registry import Registry


@dataclass(frozen=True)
class RunConfig:
    """How long and how to train one benchmark; validated on creation."""

    SCALINGS: ClassVar[tuple[str, ...]] = ("strong", "weak")  # valid ``scaling``; see tf2bench.loops.distributed
    # valid ``mixed_precision``: the half precision of the mixed loops (auto: float16 on a GPU, bfloat16 on a CPU)
    MIXED_PRECISIONS: ClassVar[tuple[str, ...]] = ("auto", "float16", "bfloat16")
    batch_size: int = 32
    steps: int = 20  # steps per timed window (round)
    rounds: int = 3  # timed windows
    warmup_steps: int = 1  # untimed for throughput; their time is first_step_s
    seed: int = 0
    epochs: int | None = None  # if set, each window is one epoch and rounds = epochs
    jit_compile: bool = False
    profile_steps: int = 0  # an untimed, profiled window after the timed ones (0: none)
    scaling: str = "strong"  # distributed loops: batch_size is the global batch (strong) or per replica (weak)
    mixed_precision: str = "auto"  # the mixed loops' compute dtype (tf2bench.loops.mixed.policy_name)

    def __post_init__(self) -> None:
        for name in ("batch_size", "steps", "rounds", "warmup_steps"):
            check_positive_int(name, getattr(self, name), parse=False)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise BadInputError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.epochs is not None:
            check_positive_int("epochs", self.epochs, parse=False)
        if isinstance(self.profile_steps, bool) or not isinstance(self.profile_steps, int) or self.profile_steps < 0:
            raise BadInputError(f"profile_steps must be a non-negative integer, got {self.profile_steps!r}")
        if self.scaling not in self.SCALINGS:
            raise BadInputError(f"unknown scaling {self.scaling!r}; valid: {', '.join(self.SCALINGS)}")
        if self.mixed_precision not in self.MIXED_PRECISIONS:
            raise BadInputError(
                f"unknown mixed precision {self.mixed_precision!r}; valid: {', '.join(self.MIXED_PRECISIONS)}"
            )


class BatchPlan:
    """The batch order every loop follows: a seeded permutation per epoch, no remainder."""

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


def tf32_in_use() -> bool:
    """Whether float32 matmuls and convolutions run as TF32 here: TensorFlow's switch on (its default), an Ampere or
    newer GPU (compute capability >= 8.0), and no ``NVIDIA_TF32_OVERRIDE=0`` (which turns TF32 off in the CUDA
    libraries whatever TensorFlow's switch says). Never on a CPU."""
    import tensorflow as tf

    if os.environ.get("NVIDIA_TF32_OVERRIDE", "").strip() == "0":
        return False
    if not tf.config.experimental.tensor_float_32_execution_enabled():
        return False
    for gpu in tf.config.list_physical_devices("GPU"):
        capability = tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0)
        if tuple(capability) >= (8, 0):
            return True
    return False


def loss_scaled(optimizer: Any, model: Any) -> Any:
    """``optimizer`` wrapped in Keras's LossScaleOptimizer when ``model`` computes in float16, else itself.

    float16 gradients of these losses underflow to zero without loss scaling; ``train_step`` multiplies the loss
    by the scale (``scale_loss``) and ``apply`` divides the gradients by it, skips a step whose gradients are not
    finite and halves the scale (it doubles after 2,000 finite steps). Every loop that builds its own step gets
    it from here; ``fit`` compiles with ``auto_scale_loss=True``, which wraps the same way (Keras keys both on the
    model's float16 compute dtype). bfloat16 has float32's exponent range: no scaling.
    """
    import keras

    compute = str(getattr(getattr(model, "dtype_policy", None), "compute_dtype", "float32"))
    if compute != "float16" or isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)


def loss_scale_record(optimizer: Any) -> dict[str, Any]:
    """``{"loss_scale": the dynamic scale now}`` for a loss-scaled optimizer; ``{}`` otherwise."""
    scale = getattr(optimizer, "dynamic_scale", None)
    return {} if scale is None else {"loss_scale": float(np.asarray(scale))}


def compile_step(model: Any, optimizer: Any, loss_fn: Any, *, jit_compile: bool) -> Any:
    """A new tf.function around ``train_step`` for this model and optimizer (never shared)."""
    import tensorflow as tf

    def step(x, y):
        return train_step(model, optimizer, loss_fn, x, y)

    return tf.function(step, jit_compile=jit_compile)


@dataclass
class TrainContext:
    """What a loop trains: built by the runner, identical for every loop of a case."""

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


class Loop(ABC):
    """A way of writing the training loop."""

    name: ClassVar[str]
    description: ClassVar[str]
    opt_in: ClassVar[bool] = False  # True: only run when named (--loop), never in the default "all" selection

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
        """The "same math" tolerance this loop's arithmetic allows (analysis/equivalence.py), saved with the result.

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
        if tf32_in_use():
            return {
                "tolerance": equivalence.TOL_TF32,
                "basis": "tf32",
                "why": "float32 matmuls and convolutions run as TF32 on this GPU (inputs rounded to 10 bits)"
                + (", fused and reordered by XLA" if self.jit() else ", other kernels or summation order"),
            }
        if self.jit():
            return {"tolerance": equivalence.TOL_XLA, "basis": "xla", "why": "fp32 fused and reordered by XLA"}
        return {"tolerance": equivalence.TOL_FP32, "basis": "fp32", "why": "fp32, other kernels or summation order"}

    def info(self) -> dict[str, Any]:
        """Loop-specific settings saved with the result (e.g. steps_per_execution)."""
        return {}

    @classmethod
    def model_scope(cls, config: RunConfig) -> AbstractContextManager[Any]:
        """Entered while the runner builds the model: a loop that needs other layer dtypes sets them here.

        Raises UnsupportedError when the loop cannot run on this machine (the suite skips it).
        """
        return contextlib.nullcontext()

    def _window_arrays(self, start: int, steps: int) -> tuple[Any, np.ndarray]:
        idx = self.ctx.plan.indices(start, steps).reshape(-1)
        return nest.take(self.ctx.x, idx), self.ctx.y[idx]


LOOPS: Registry[type[Loop]] = Registry("loop")


def register_loop(cls: type[Loop]) -> type[Loop]:
    LOOPS.register(cls.name, cls)
    return cls


def loss_value(loss: Any) -> float:
    """The loss a window reports, read on the host (a NaN or inf here stops the run: DivergedError)."""
    return float(np.asarray(loss))


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


def get_loop(name: str) -> type[Loop]:
    return LOOPS.get(name)
