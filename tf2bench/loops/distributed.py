"""The same loops under tf.distribute: ``mirrored``, ``fit_mirrored`` and ``multi_worker``.

TensorFlow's own distribution engine is measured, not reimplemented. A distributed loop
rebuilds the runner's seeded model and its optimizer inside ``strategy.scope()`` (the
weights are copied, so every loop still starts from the same point). What it trains
depends on ``RunConfig.scaling`` (``--scaling``):

- ``strong`` (the default): the suite's global batch (--batch-size), the same batches in
  the same order as ``fit`` (one ``BatchPlan``), split over the replicas: per-replica
  batch = global / replicas (it must divide). Same samples, same steps, same function as
  the single-device loops: only the speed may differ, so accuracy compares with ``fit``.
- ``weak``: --batch-size is the per-replica batch and the global batch is that x replicas
  (TensorFlow's convention: each device does the same work per step as one device alone);
  it trains other batches than ``fit`` and ends at another accuracy.

Scaling efficiency is measured inside one benchmark: next to the N-replica loop sits
the same loop under a 1-replica strategy (its own model) — at the same global batch under
strong scaling, at the per-replica batch under weak — and every timed window of one is
followed or preceded (alternately) by an equal window of the other. Per pair of windows,
strong: efficiency = speed-up / N = (t_1 / t_N) / N; weak: efficiency = t_1 / t_N; the
record keeps their median (see ``_Distributed.info``).

Devices: the visible GPUs, or N logical CPU devices made by :func:`configure_devices`
(``--devices N``) before TensorFlow initialises its runtime. The loops are opt-in: the
suite's default ("all") selection leaves them out; name them with ``--loop``.
"""

from __future__ import annotations

import dataclasses
import functools
import statistics
from typing import Any, ClassVar

from tf2bench.errors import BadInputError, Tf2benchError, UnsupportedError, check_positive_int
from tf2bench.loops.base import BatchPlan, Loop, TrainContext, WindowResult, iterate_steps, make_dataset, train_step
from tf2bench.loops.fit import Fit
from tf2bench.measure.timing import Stopwatch

_REQUESTED_DEVICES: int | None = None  # set by configure_devices
_WORKER_STRATEGY: Any = None  # a MultiWorkerMirroredStrategy, set by tf2bench.multiworker.launch inside a worker


class DevicesTooLateError(Tf2benchError):
    """Logical devices were asked for after TensorFlow had initialised its runtime."""


def configure_devices(n: int) -> list[str]:
    """Make ``n`` replica devices: the first n GPUs, or n logical CPU devices on a CPU-only machine.

    Logical devices can only be made before TensorFlow initialises its runtime (its first op or
    device listing), so call this first: the suite does it in ``pytest_configure``.
    """
    import tensorflow as tf

    global _REQUESTED_DEVICES
    n = check_positive_int("--devices", n)
    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        if n > len(gpus):
            raise BadInputError(f"--devices {n}: only {len(gpus)} GPU(s) are visible")
    else:
        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
        except RuntimeError as exc:  # "Virtual devices cannot be modified after being initialized"
            have = len(tf.config.list_logical_devices("CPU"))
            if have != n:
                raise DevicesTooLateError(
                    f"--devices {n}: too late, TensorFlow has already initialised its runtime with {have} logical "
                    "CPU device(s). Configure devices before any TensorFlow work: the suite does it in "
                    "pytest_configure; a script calls tf2bench.configure_devices() first."
                ) from exc
    _REQUESTED_DEVICES = n
    return replica_devices()


def replica_devices() -> list[str]:
    """The devices a mirrored strategy replicates over: GPUs if any, else the logical CPU devices."""
    import tensorflow as tf

    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    return devices[: _REQUESTED_DEVICES or len(devices)]


@functools.cache
def mirrored_strategy(devices: tuple[str, ...]) -> Any:
    """One MirroredStrategy per device set, reused across benchmarks (TF's default all-reduce for them)."""
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(list(devices))


def split_batch(batch_size: int, replicas: int, scaling: str) -> tuple[int, int]:
    """(global batch, per-replica batch) for ``--batch-size`` over ``replicas`` under ``scaling`` (strong|weak).

    Strong scaling cuts the global batch into equal per-replica batches: it must divide (BadInputError if not).
    """
    if scaling == "weak":
        return batch_size * replicas, batch_size
    if scaling != "strong":
        raise BadInputError(f"unknown scaling {scaling!r}; valid: strong, weak")
    if batch_size % replicas:
        below, above = batch_size // replicas * replicas, (batch_size // replicas + 1) * replicas
        choices = f"{below} or {above}" if below else str(above)
        raise BadInputError(
            f"--batch-size {batch_size} does not split evenly over {replicas} replicas (strong scaling cuts the "
            f"global batch into equal per-replica batches): use a multiple of {replicas} ({choices}), or "
            f"--scaling weak for {batch_size} per replica"
        )
    return batch_size, batch_size // replicas


def set_worker_strategy(strategy: Any) -> None:
    """Called by a worker process (tf2bench.multiworker.launch) before any other TensorFlow work."""
    global _WORKER_STRATEGY
    _WORKER_STRATEGY = strategy


def local_devices(names: list[str], job: str | None, task: int | None) -> list[str]:
    """Those of ``names`` on task ``task`` of ``job`` (job None: no cluster, all local; no job/task field: local)."""
    here = (f"/job:{job}/", f"/task:{task}/")  # TF's full names: /job:worker/replica:0/task:1/device:GPU:0
    return [n for n in names if job is None or "/job:" not in n or (n.startswith(here[0]) and here[1] in n)]


def sync_local_devices(strategy: Any = None) -> None:
    """tf.test.experimental.sync_devices() on this worker's own devices: SyncDevice on each (drains a GPU's compute
    stream, update kernels included), then async_wait (the eager queue, SyncDevice included). Eager only."""
    import tensorflow as tf
    from tensorflow.python.eager import context

    resolver = getattr(strategy, "cluster_resolver", None)
    job, task = (resolver.task_type, resolver.task_id) if resolver is not None else (None, None)
    for name in local_devices([d.name for d in tf.config.list_logical_devices()], job, task):
        with tf.device(name):
            tf.raw_ops.SyncDevice()
    context.async_wait()


def replicate(ctx: TrainContext, strategy: Any) -> tuple[Any, Any]:
    """The context's model and optimizer rebuilt under ``strategy.scope()``, with the same weights and settings."""
    if ctx.build_model is None:
        raise RuntimeError("a distributed loop needs TrainContext.build_model (BenchmarkRun provides it)")
    weights = ctx.model.get_weights()
    with strategy.scope():
        model = ctx.build_model()
        model.set_weights(weights)
        optimizer = type(ctx.optimizer).from_config(ctx.optimizer.get_config())
        optimizer.build(model.trainable_variables)
    return model, optimizer


class _Distributed(Loop):
    """A loop run under a strategy, with an interleaved 1-replica twin for scaling efficiency."""

    opt_in = True

    def __init__(self, ctx: TrainContext, strategy: Any = None) -> None:
        super().__init__(ctx)
        self.strategy = strategy if strategy is not None else self.default_strategy()
        self.replicas = int(self.strategy.num_replicas_in_sync)
        self.scaling = ctx.config.scaling
        self.global_batch, self.per_replica_batch = split_batch(ctx.config.batch_size, self.replicas, self.scaling)
        self.reference: _Distributed | None = None
        self.reference_position = 0
        self.pairs: list[tuple[int, float, float | None]] = []  # (steps, seconds, 1-replica seconds) per window

    @classmethod
    def default_strategy(cls) -> Any:
        return mirrored_strategy(tuple(replica_devices()))

    @classmethod
    def reference_strategy(cls, strategy: Any) -> Any:
        """The 1-replica strategy timed alongside (None: none in this process)."""
        return mirrored_strategy(tuple(strategy.extended.worker_devices[:1]))

    def same_random_stream(self) -> bool:
        # Each replica draws its random layers' values for its own shard: not fit's draws for the whole batch.
        return self.replicas == 1 and super().same_random_stream()

    @classmethod
    def global_batch_size(cls, config: Any) -> int:
        """Strong scaling: --batch-size itself (fit's plan); weak: --batch-size x replicas."""
        return split_batch(config.batch_size, int(cls.default_strategy().num_replicas_in_sync), config.scaling)[0]

    def setup(self) -> None:
        c = self.ctx
        if self.replicas > 1:
            reference = self.reference_strategy(self.strategy)
            if reference is not None:
                # The twin's one replica trains what one of ours would under this scaling: the same global batch
                # (strong; c.config.batch_size is already it) or one per-replica batch (weak).
                twin_batch = self.global_batch if self.scaling == "strong" else self.per_replica_batch
                plan = BatchPlan(len(c.y), twin_batch, c.config.seed)
                self.reference = type(self)(dataclasses.replace(c, plan=plan), strategy=reference)
                self.reference.setup()
        c.config = dataclasses.replace(c.config, batch_size=self.global_batch)  # the loop's view: global batches
        c.model, c.optimizer = replicate(c, self.strategy)
        with self.strategy.scope():
            super().setup()

    def run(self, start: int, steps: int) -> WindowResult:
        if self.marking:  # the profiled window: the N-replica loop only
            return super().run(start, steps)
        reference_first = len(self.pairs) % 2 == 1  # A B, B A, ...: drift hits both sides alike
        ref = self._run_reference(steps) if reference_first else None
        result = super().run(start, steps)
        if self.reference is not None and not reference_first:
            ref = self._run_reference(steps)
        if start > 0:  # start 0 is the warm-up: both sides trace there
            self.pairs.append((steps, result.seconds, ref.seconds if ref else None))
        return result

    def _run_reference(self, steps: int) -> WindowResult | None:
        if self.reference is None:
            return None
        result = self.reference.run(self.reference_position, steps)
        self.reference_position += steps
        return result

    def info(self) -> dict[str, Any]:
        out = {
            **super().info(),
            "strategy": type(self.strategy).__name__,
            "replicas": self.replicas,
            "devices": list(self.strategy.extended.worker_devices),
            "scaling": self.scaling,
            "global_batch_size": self.global_batch,
            "per_replica_batch_size": self.per_replica_batch,
            "samples_per_sec_global": None,
            "samples_per_sec_per_replica": None,
            "single_replica_samples_per_sec": None,
            "scaling_efficiency": None,  # None: one replica, or no 1-replica twin in this process
            "scaling_efficiency_windows": [],
        }
        if not self.pairs:
            return out
        rate = statistics.median(n * self.global_batch / s for n, s, _ in self.pairs)
        out["samples_per_sec_global"] = rate
        out["samples_per_sec_per_replica"] = rate / self.replicas
        timed = [(n, s, r) for n, s, r in self.pairs if r is not None]
        if timed and self.reference is not None:
            g1 = self.reference.global_batch  # the twin's batch: G (strong) or G / N (weak)
            single = statistics.median(n * g1 / r for n, _, r in timed)
            out["single_replica_samples_per_sec"] = single
            # A pair: n steps of global batch G in s seconds on N replicas, n steps of batch g1 in r s on one.
            # efficiency = (n·G / s) / (N · n·g1 / r) = (G / g1) · (r / s) / N, so
            #   strong (g1 = G):     (t_1 / t_N) / N = speed-up / N, the same work done by N replicas;
            #   weak   (g1 = G / N):  t_1 / t_N,                    N times the work in the same time.
            ratios = [(self.global_batch / g1) * (r / s) / self.replicas for _, s, r in timed]
            out["scaling_efficiency_windows"] = ratios
            out["scaling_efficiency"] = statistics.median(ratios)
        return out


def is_distributed(loop: type[Loop]) -> bool:
    """True for the loops that train under a strategy (and so split or multiply the batch)."""
    return issubclass(loop, _Distributed)


class _StrategyStep(Loop):
    """The shared train step run by ``strategy.run`` on a distributed tf.data pipeline of the planned batches."""

    strategy: Any
    shard_policy: ClassVar[str | None] = None  # tf.data AutoShardPolicy name; None: TF's default

    def setup(self) -> None:
        import tensorflow as tf

        c, strategy = self.ctx, self.strategy
        global_batch = c.config.batch_size  # the global batch: _Distributed set the loop's view
        per_example = type(c.loss_fn).from_config({**c.loss_fn.get_config(), "reduction": "none"})

        def loss_fn(y: Any, predictions: Any) -> Any:
            # Summed over the replica's samples and divided by the *global* batch: the optimizer sums gradients
            # across replicas, so their total equals the single-device mean over the global batch.
            return tf.nn.compute_average_loss(per_example(y, predictions), global_batch_size=global_batch)

        def replica_step(x: Any, y: Any) -> Any:
            return train_step(c.model, c.optimizer, loss_fn, x, y)

        replica = tf.function(replica_step, jit_compile=True) if c.config.jit_compile else replica_step

        def step(x: Any, y: Any) -> Any:
            return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(replica, args=(x, y)), axis=None)

        self.step = tf.function(step)
        dataset = make_dataset(c.x, c.y, c.plan.indices(0, c.total_steps))
        if self.shard_policy is not None:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = getattr(
                tf.data.experimental.AutoShardPolicy, self.shard_policy
            )
            dataset = dataset.with_options(options)
        self.iterator = iter(strategy.experimental_distribute_dataset(dataset))  # splits each global batch
        self.position = 0

    def trace_count(self) -> int | None:
        return int(self.step.experimental_get_tracing_count())

    def run(self, start: int, steps: int) -> WindowResult:
        self.stopwatch.start()
        loss = iterate_steps(self, start, steps)
        seconds = self.stopwatch.stop()  # a device sync ends the window: reading the loss waits for less
        return WindowResult(seconds, float(loss))


class Mirrored(_Distributed, _StrategyStep):
    name = "mirrored"
    description = (
        "MirroredStrategy over the GPUs or --devices N logical CPUs: the shared step via strategy.run, "
        "experimental_distribute_dataset, loss / global batch; global batch = --batch-size (--scaling strong, "
        "the default: split over the replicas) or --batch-size x replicas (--scaling weak)"
    )


class FitMirrored(_Distributed, Fit):
    name = "fit_mirrored"
    description = "model.fit under the same MirroredStrategy (model and optimizer built and compiled in its scope)"


class MultiWorker(Mirrored):
    name = "multi_worker"
    description = (
        "MultiWorkerMirroredStrategy across worker processes (python -m tf2bench.multiworker), one TF_CONFIG each; "
        "the chief records the result"
    )
    shard_policy = "DATA"  # every worker reads the same planned global batches and keeps its slice of each

    def __init__(self, ctx: TrainContext, strategy: Any = None) -> None:
        super().__init__(ctx, strategy)
        # tf.test.experimental.sync_devices() also targets the peers' devices and fails there ("Haven't set up remote
        # eager worker"): a window ends on this worker's own devices' sync; the step's all-reduce ties the peers.
        self.stopwatch = Stopwatch(sync=functools.partial(sync_local_devices, self.strategy))

    @classmethod
    def default_strategy(cls) -> Any:
        if _WORKER_STRATEGY is None:
            raise UnsupportedError(
                "multi_worker runs inside worker processes: launch it with `python -m tf2bench.multiworker launch "
                "--workers N ...` (or one `... worker` per host with TF_CONFIG set)"
            )
        return _WORKER_STRATEGY

    @classmethod
    def reference_strategy(cls, strategy: Any) -> Any:
        return None  # a 1-replica twin would share this host's cores with the other workers: not a fair baseline
