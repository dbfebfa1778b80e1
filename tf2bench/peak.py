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
"""

from __future__ import annotations

import re
import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from tf2bench.timing import sync_devices

MATMUL_N = 2048  # 17 GFLOP per matmul: long enough to swamp launch costs, short on a CPU (~0.1-0.3 s)
MATMUL_REPS = 5  # timed repetitions; the best counts (noise only ever slows a run down)
MATMULS_PER_REP = 2


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

    def __post_init__(self) -> None:
        if not self.precision:
            object.__setattr__(self, "precision", self.dtype)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for a summary: what was measured, and how fast (or why not)."""
        if self.gflops is None:
            return f"{self.dtype}: no peak ({self.error})"
        label = "tf32 (float32 on tensor cores)" if self.precision == "tf32" else self.precision
        median = f", median {self.median_gflops:.1f}" if self.median_gflops is not None else ""
        return f"{label} {self.gflops:.1f} GFLOP/s ({self.n}² matmuls{median})"


def measure_matmul_peak(
    n: int = MATMUL_N, reps: int = MATMUL_REPS, per_rep: int = MATMULS_PER_REP, dtype: str = "float32"
) -> Peak:
    """Time ``per_rep`` chained n x n ``dtype`` matmuls ``reps`` times (after one warm-up); best-of.

    An n x n by n x n matmul is n² dot products of length n: n³ multiply-adds, 2n³ FLOPs. The best
    repetition counts, not the mean: other processes, interrupts and frequency dips can only make a
    repetition slower, never faster, so the fastest one is the closest to what the device can do.
    Raises what TensorFlow raises when the device has no kernel for ``dtype``.
    """
    import tensorflow as tf

    # float32 random values cast down: the same matrices in every dtype, whatever RNG kernels the device has
    a = tf.cast(tf.random.stateless_uniform((n, n), seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_uniform((n, n), seed=(3, 4)), dtype)

    @tf.function
    def chain(x):
        for _ in range(per_rep):  # each result feeds the next: no matmul can be skipped or overlapped away
            x = tf.matmul(x, b) * (1.0 / n)  # entries stay ~0.25: no float16 overflow
        return x

    chain(a).numpy()  # trace, allocate, warm caches
    seconds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        chain(a)
        sync_devices()
        seconds.append(time.perf_counter() - t0)
    flops = 2.0 * n**3 * per_rep
    precision, tf32 = _precision(tf, dtype, a.device)
    return Peak(
        gflops=flops / min(seconds) / 1e9,
        n=n,
        reps=reps,
        matmuls_per_rep=per_rep,
        dtype=dtype,
        device=a.device,
        median_gflops=flops / statistics.median(seconds) / 1e9,
        precision=precision,
        tf32_enabled=tf32,
    )


def _precision(tf: Any, dtype: str, device: str) -> tuple[str, bool | None]:
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
        return measure_matmul_peak(n=MATMUL_N, reps=MATMUL_REPS, per_rep=MATMULS_PER_REP, dtype=dtype)
    except (tf.errors.OpError, TypeError, ValueError) as exc:  # no kernel, or not a dtype TF can matmul
        return Peak(None, MATMUL_N, MATMUL_REPS, MATMULS_PER_REP, dtype, "", None, error=reason(exc))


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
