"""The device's measured matmul peak, per precision: a dense matmul microbenchmark, run once per dtype per process.

MFU (model FLOPs utilisation) = achieved training FLOP/s / the peak *of the precision the loop computes in*.
A mixed-precision loop computes its matmuls and convolutions in bfloat16 (CPU) or float16 (GPU), which
AMX-BF16 or tensor cores run several times faster than float32: judged against the float32 peak its MFU
would be inflated, and could pass 1. So each result names its ``compute_dtype`` (the model's dtype policy)
and is divided by the peak measured in that dtype, measured lazily the first time a result needs it.

On a GPU with TF32 on (TensorFlow's default) an Ampere or newer device runs float32 matmuls as TF32 on
tensor cores: that "float32" peak is a TF32 peak, and says so (``precision="tf32"``). A float32 model on
that GPU runs in TF32 too, so it is still the right denominator, named for what it is.

The peaks are measured, not taken from a datasheet, on the same device and in the same run as the
benchmarks they divide, so a shared or throttled machine is judged against what it could actually do then.

A timed repetition is one call of a tf.function of chained matmuls and one device sync (~0.1 ms). Fixed 2048²
matmuls, ~0.1 ms of work on an H100, timed mostly that: the peak read low and every MFU high. So the peak sizes
itself by time like the windows (:func:`size_matmuls`), until one repetition lasts ``MIN_REP_S``.
"""

from __future__ import annotations

import functools
import math
import re
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from tf2bench.measure.timing import planned_rounds, sync_devices

MIN_REP_S = 0.010  # a timed repetition lasts at least this: the ~0.1 ms call + sync is then <= 1% of it
START_N = 512  # the first probe's n x n: 0.27 GFLOP, cheap at any precision on any device
# grown to at least this: smaller matmuls do not fill a CPU's cores (measured here, 2-core Zen 4, float32:
# 512² 94, 1024² 177, 2048² 214, 4096² 224 GFLOP/s; bfloat16 258 / 378 / 402 / 382)
FILL_N = 2048
N_CAP = 8192  # 256 MB a float32 matrix; a fast GPU's repetition then grows by chaining matmuls
PER_REP_CAP = 64  # matmuls chained in one repetition, at most
# n stops growing below FILL_N when the next size's repetition (8x the work) would take longer: a slow precision's
# peak then costs <= ~4x this (a warm-up, MIN_REPS repetitions); a probe slowed 4-8x by a busy machine still grows
SLOW_REP_S = 0.75
MATMUL_REPS, MIN_REPS, REPS_BUDGET_S = 5, 3, 1.0  # timed repetitions, the best counts; >= 3 of them in ~1 s

Rep = Callable[[int, int], "float | None"]  # (n, matmuls per rep) -> one timed repetition's seconds; None: no memory


@dataclass(frozen=True)
class Peak:
    """One precision's measured peak; ``gflops`` is None (and ``error`` says why) when the device cannot run it."""

    gflops: float | None  # best repetition's GFLOP/s
    n: int  # square matrix size
    reps: int
    matmuls_per_rep: int
    dtype: str  # the matrices' dtype
    device: str
    median_gflops: float | None  # the median repetition, to show how noisy the machine was
    precision: str = ""  # what the matmuls computed in: the dtype, or "tf32" for float32 on an Ampere+ GPU
    tf32_enabled: bool | None = None  # TensorFlow's TF32 switch, recorded on a GPU (a CPU ignores it)
    error: str | None = None
    rep_s: float | None = None  # the best timed repetition, seconds (gflops = 2n³ x matmuls_per_rep / rep_s)
    min_rep_s: float | None = None  # the repetition length the sizing aimed at
    probes: tuple[tuple[int, int, float | None], ...] = ()  # the sizing: (n, matmuls per rep, seconds or None: OOM)
    bound: str | None = None  # why the sizing stopped short of its aim (a cap, memory, a slow precision); None if not
    wall_s: float | None = None  # what measuring this peak cost, warm-ups and tracing included

    def __post_init__(self) -> None:
        if not self.precision:
            object.__setattr__(self, "precision", self.dtype)

    def as_dict(self) -> dict[str, Any]:
        """The record of a peak (machine_info's ``peak_matmul`` and ``peaks``): its keys are declared here only."""
        record = asdict(self)
        record["probes"] = [list(p) for p in self.probes]  # JSON has lists: the record reads back equal
        return record

    def describe(self) -> str:
        """One line for a summary: what was measured, how fast (or why not), and how the size was chosen."""
        if self.gflops is None:
            return f"{self.dtype}: no peak ({self.error})"
        label = "tf32 (float32 on tensor cores)" if self.precision == "tf32" else self.precision
        median = f", median {self.median_gflops:.1f}" if self.median_gflops is not None else ""
        size = f"{self.n}² matmuls x{self.matmuls_per_rep}" + (f" in {1e3 * self.rep_s:.1f} ms" if self.rep_s else "")
        short = f", sized short: {self.bound}" if self.bound else ""
        return f"{label} {self.gflops:.1f} GFLOP/s ({size}, best of {self.reps}{median}{short})"


@dataclass(frozen=True)
class Sizing:
    """What :func:`size_matmuls` chose, and every probe that led there."""

    n: int
    per_rep: int
    probes: tuple[tuple[int, int, float | None], ...]  # (n, matmuls per rep, seconds; None: out of memory)
    bound: str | None  # why the chosen size falls short of the rule's aim; None when it reached it

    @property
    def rep_s(self) -> float:
        """The chosen size's probe: a timed repetition like the ones after it."""
        return next(s for n, k, s in reversed(self.probes) if (n, k) == (self.n, self.per_rep) and s is not None)


def size_matmuls(
    rep: Rep,
    min_rep_s: float = MIN_REP_S,
    start_n: int = START_N,
    fill_n: int = FILL_N,
    n_cap: int = N_CAP,
    per_rep_cap: int = PER_REP_CAP,
    slow_rep_s: float = SLOW_REP_S,
) -> Sizing:
    """The matrix size and the matmuls per repetition that make one timed repetition last ``min_rep_s``.

    ``rep(n, k)`` times one repetition of k chained n x n matmuls (warmed up) and returns its seconds (None: out
    of memory). From ``start_n`` and one matmul, each step one probe:
    1. double n while it is below ``n_cap`` and either below ``fill_n`` or its repetition is shorter than
       ``min_rep_s`` (a device that fast is a big one, which small matmuls do not fill), unless the next size
       would take more than ``slow_rep_s`` (8x the work: a slow precision stays cheap) or does not fit;
    2. then, while the repetition is shorter than ``min_rep_s``, chain more matmuls per repetition: the power of
       two the last probe predicts is enough (at least double), at most ``per_rep_cap``.
    A pure function of the probes' times, so a fake clock tests it. On this CPU: 512, 1024, 2048 with one matmul
    (80 ms), done; on an H100 (estimated, ~0.7 PFLOP/s float16): n 8192, 8 matmuls (~13 ms).
    """
    if not 0 < start_n <= fill_n <= n_cap or per_rep_cap < 1 or min_rep_s <= 0:
        raise ValueError(f"need 0 < n {start_n} <= {fill_n} <= {n_cap}, cap {per_rep_cap} >= 1, {min_rep_s} s > 0")
    n, k, seconds = start_n, 1, rep(start_n, 1)
    probes = [(n, k, seconds)]
    if seconds is None:
        raise MemoryError(f"{n}x{n} matmuls do not fit in the device's memory")
    cut = ""  # why n stopped below n_cap
    while n < n_cap and (n < fill_n or seconds < min_rep_s):
        if 8 * seconds > slow_rep_s:
            cut = f"a {2 * n}² repetition would take ~{8 * seconds:.1f} s"
            break
        probes.append((2 * n, 1, rep(2 * n, 1)))
        if probes[-1][2] is None:
            cut = f"{2 * n}² does not fit in memory"
            break
        n, seconds = 2 * n, probes[-1][2]
    while seconds < min_rep_s and k < per_rep_cap:
        need = k * min_rep_s / seconds if seconds > 0 else per_rep_cap
        k = min(per_rep_cap, max(2 * k, 2 ** math.ceil(math.log2(need * (1 - 1e-9)))))
        probes.append((n, k, _fits(rep(n, k), n, k)))
        seconds = probes[-1][2]
    bound = f"n {n} < {fill_n}: {cut}" if n < fill_n else None
    if seconds < min_rep_s:
        caps = cut or f"n capped at {n_cap}"
        bound = f"{1e3 * seconds:.2f} ms < {1e3 * min_rep_s:g} ms: {caps}, {k} matmuls a repetition (cap {per_rep_cap})"
    return Sizing(n, k, tuple(probes), bound)


def _fits(seconds: float | None, n: int, k: int) -> float:
    if seconds is None:  # a size that fitted once ran out of memory: not a state to measure a peak in
        raise MemoryError(f"{k} chained {n}x{n} matmuls ran out of memory after fitting before")
    return seconds


def time_reps(
    rep: Rep, sizing: Sizing, reps: int = MATMUL_REPS, budget_s: float = REPS_BUDGET_S, min_reps: int = MIN_REPS
) -> list[float]:
    """``reps`` timed repetitions of the chosen size, the sizing's probe the first; fewer when they would take more
    than ``budget_s`` (a slow precision), never fewer than ``min_reps``."""
    planned = planned_rounds(reps, sizing.rep_s, budget_s, min_reps)
    return [sizing.rep_s] + [_fits(rep(sizing.n, sizing.per_rep), sizing.n, sizing.per_rep) for _ in range(planned - 1)]


def measure_matmul_peak(
    dtype: str = "float32", *, n: int | None = None, reps: int = MATMUL_REPS, min_rep_s: float = MIN_REP_S
) -> Peak:
    """The best of ``reps`` timed repetitions of chained ``dtype`` matmuls sized by :func:`size_matmuls` (``n`` pins
    the matrix size: only the matmuls per repetition grow); raises what TensorFlow raises for a dtype it cannot run.

    An n x n by n x n matmul is n³ multiply-adds, 2n³ FLOPs. The best repetition counts, not the mean: other
    processes, interrupts and frequency dips only ever slow a repetition down, so the fastest is the closest to
    what the device can do.
    """
    import tensorflow as tf

    started = time.perf_counter()
    chains = _Chains(tf, dtype)
    pinned = {} if n is None else {"start_n": n, "fill_n": n, "n_cap": n}
    sizing = size_matmuls(chains.rep, min_rep_s, **pinned)
    seconds = time_reps(chains.rep, sizing, reps)
    flops = 2.0 * sizing.n**3 * sizing.per_rep
    precision, tf32 = matmul_precision(tf, dtype, chains.device)
    return Peak(
        gflops=flops / min(seconds) / 1e9,
        n=sizing.n,
        reps=len(seconds),
        matmuls_per_rep=sizing.per_rep,
        dtype=dtype,
        device=chains.device,
        median_gflops=flops / statistics.median(seconds) / 1e9,
        precision=precision,
        tf32_enabled=tf32,
        rep_s=min(seconds),
        min_rep_s=min_rep_s,
        probes=sizing.probes,
        bound=sizing.bound,
        wall_s=time.perf_counter() - started,
    )


def matmul_inputs(tf: Any, dtype: str, n: int) -> tuple[Any, Any]:
    """The n x n ``dtype`` matrices a chain multiplies: (a, b).

    float32 random values cast down: the same matrices in every dtype, whatever RNG kernels the device has. b is
    non-negative and each of its rows sums to 1, so every product keeps each row's sum (~n/2) and the entries stay
    ~0.5 however many are chained: no float16 overflow, no slow denormals, and no rescaling op (uncounted
    memory-bound work, which a fast device's small matmul does not swamp).
    """
    a = tf.cast(tf.random.stateless_uniform((n, n), seed=(1, 2)), dtype)
    u = tf.random.stateless_uniform((n, n), seed=(3, 4))
    return a, tf.cast(u / tf.reduce_sum(u, axis=1, keepdims=True), dtype)


def matmul_chain(tf: Any, b: Any, per_rep: int) -> Any:
    """A tf.function of ``per_rep`` chained matmuls by ``b``: x @ b @ b ... (on a ``functools.partial``: TensorFlow
    counts traces per function code, and the sizing traces each (n, k) on purpose: no "frequent retracing" warning)"""
    return tf.function(functools.partial(_chain, tf=tf, b=b, per_rep=per_rep))


def _chain(x: Any, *, tf: Any, b: Any, per_rep: int) -> Any:
    for _ in range(per_rep):  # each product feeds the next: none can be skipped or overlapped away
        x = tf.matmul(x, b)
    return x


class _Chains:
    """``rep(n, k)`` for :func:`size_matmuls` on the real device: one call of k chained matmuls and one sync, timed.

    A new (n, k) runs once untimed first (tracing, allocation, warm caches, a GPU library's choice of kernel). Only
    the current n's matrices are held, dropped before a larger n is tried: memory in use is that of one size.
    """

    def __init__(self, tf: Any, dtype: str) -> None:
        self.tf, self.dtype, self.device, self.n = tf, dtype, "", 0
        self.inputs: tuple[Any, Any] = (None, None)  # the current n's (a, b)
        self.chains: dict[int, Any] = {}  # k -> chain of the current n

    def rep(self, n: int, k: int) -> float | None:
        try:
            if n != self.n:
                self.n, self.inputs, self.chains = 0, (None, None), {}  # dropped before a larger n is tried
                self.inputs, self.n = matmul_inputs(self.tf, self.dtype, n), n
                self.device = self.inputs[0].device
            if k not in self.chains:
                chain = matmul_chain(self.tf, self.inputs[1], k)
                chain(self.inputs[0])  # the warm-up, untimed
                sync_devices()
                self.chains[k] = chain
        except self.tf.errors.ResourceExhaustedError:
            return None
        t0 = time.perf_counter()
        self.chains[k](self.inputs[0])
        sync_devices()  # looked up when called: a multi-worker chief replaces it (tf2bench.multiworker.worker)
        return time.perf_counter() - t0


def matmul_precision(tf: Any, dtype: str, device: str) -> tuple[str, bool | None]:
    """(what a ``dtype`` matmul computes in on ``device``, TF32 switch or None off a GPU)."""
    if "GPU" not in device.upper():
        return dtype, None
    enabled = bool(tf.config.experimental.tensor_float_32_execution_enabled())
    if dtype != "float32" or not enabled:
        return dtype, enabled
    index = re.search(r"GPU:(\d+)", device, flags=re.I)
    gpus = tf.config.list_physical_devices("GPU")
    gpu = gpus[int(index.group(1))] if index and int(index.group(1)) < len(gpus) else gpus[0]
    capability = tf.config.experimental.get_device_details(gpu).get("compute_capability") or (0, 0)
    return ("tf32" if tuple(capability) >= (8, 0) else dtype), enabled  # tensor-core TF32 from Ampere (8.0) on


_PEAKS: dict[str, Peak] = {}  # dtype -> its peak, for the rest of the process (the session)


def peak(dtype: str = "float32") -> Peak:
    """The peak of ``dtype``, measured on first use and cached for the rest of the process.

    A dtype the device cannot run gives a Peak with ``gflops=None`` and the reason, never an exception:
    the results it would divide then carry MFU None and that reason.
    """
    if dtype not in _PEAKS:
        _PEAKS[dtype] = _measure_or_reason(dtype)
    return _PEAKS[dtype]


def _measure_or_reason(dtype: str) -> Peak:
    import tensorflow as tf

    from tf2bench.errors import reason

    try:
        return measure_matmul_peak(dtype=dtype)
    except (tf.errors.OpError, TypeError, ValueError, MemoryError) as exc:  # no kernel, no dtype TF can matmul, OOM
        return Peak(None, START_N, 0, 1, dtype, "", None, error=reason(exc), min_rep_s=MIN_REP_S)


def peaks() -> dict[str, dict[str, Any]]:
    """Every peak measured so far in this process, by dtype (for machine_info)."""
    return {dtype: p.as_dict() for dtype, p in _PEAKS.items()}


def compute_dtype(model: Any) -> str:
    """The dtype a model computes in: its Keras dtype policy's ``compute_dtype`` (``bfloat16`` under
    mixed_bfloat16, whose variables stay float32); ``float32`` for a model without a policy."""
    policy = getattr(model, "dtype_policy", None)
    return str(getattr(policy, "compute_dtype", None) or "float32")


def mfu(flops_per_sample: float, samples_per_sec: float, peak_gflops: float) -> tuple[float, float]:
    """(achieved GFLOP/s, MFU) of a training run."""
    if peak_gflops <= 0:
        raise ValueError(f"peak must be positive, got {peak_gflops}")
    achieved = flops_per_sample * samples_per_sec / 1e9
    return achieved, achieved / peak_gflops


def mfu_record(flops_per_sample: float | None, samples_per_sec: float, dtype: str) -> dict[str, Any]:
    """A result's MFU keys, against the peak of the loop's compute ``dtype`` (measured on first use).

    ``peak_gflops`` and ``peak_matmul_n`` are the peak actually divided by, so a reader that recomputes
    MFU as samples/s x FLOPs per sample / peak_gflops (tf2bench.report) gets the same figure.
    ``mfu_error`` says why ``mfu`` is None, when it is.
    """
    p = peak(dtype)
    record: dict[str, Any] = {
        "gflops_per_sec": None,  # training FLOPs (flops_per_sample) x samples_per_sec
        "mfu": None,  # gflops_per_sec / peak_gflops
        "mfu_error": None,
        "compute_dtype": dtype,  # the model's dtype policy: the precision its matmuls and convolutions run in
        "peak_dtype": p.precision,  # the peak's precision: compute_dtype, or "tf32" for float32 on an Ampere+ GPU
        "peak_gflops": p.gflops,
        "peak_matmul_n": p.n,
    }
    if flops_per_sample is None:
        record["mfu_error"] = (
            "FLOPs per sample unknown: tf2bench counts the Conv2D and Dense layers of Sequential/Functional "
            "models; give the workload flops_per_sample otherwise"
        )
        return record
    record["gflops_per_sec"] = flops_per_sample * samples_per_sec / 1e9
    if p.gflops is None:
        record["mfu_error"] = f"no {dtype} matmul peak on this device: {p.error}"
    else:
        record["gflops_per_sec"], record["mfu"] = mfu(flops_per_sample, samples_per_sec, p.gflops)
    return record
