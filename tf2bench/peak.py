"""The device's measured fp32 peak: a dense matmul microbenchmark, run once per process.

MFU (model FLOPs utilisation) = achieved training FLOP/s / this peak. The peak is
measured, not taken from a datasheet, on the same device and in the same run as the
benchmarks it divides, so a shared or throttled machine is judged against what it
could actually do at the time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from tf2bench.timing import sync_devices

MATMUL_N = 2048  # 17 GFLOP per matmul: long enough to swamp launch costs, short on a CPU (~0.1 s)
MATMUL_REPS = 5  # timed repetitions; the best counts (noise only ever slows a run down)
MATMULS_PER_REP = 2


@dataclass(frozen=True)
class Peak:
    gflops: float  # best repetition's fp32 GFLOP/s
    n: int  # square matrix size
    reps: int
    matmuls_per_rep: int
    dtype: str
    device: str
    median_gflops: float  # the median repetition, to show how noisy the machine was

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_matmul_peak(n: int = MATMUL_N, reps: int = MATMUL_REPS, per_rep: int = MATMULS_PER_REP) -> Peak:
    """Time ``per_rep`` chained n x n fp32 matmuls ``reps`` times (after one warm-up); best-of."""
    import statistics

    import tensorflow as tf

    a = tf.random.stateless_uniform((n, n), seed=(1, 2), dtype=tf.float32)
    b = tf.random.stateless_uniform((n, n), seed=(3, 4), dtype=tf.float32)

    @tf.function
    def chain(x):
        for _ in range(per_rep):  # each result feeds the next: no matmul can be skipped or overlapped away
            x = tf.matmul(x, b) * (1.0 / n)
        return x

    chain(a).numpy()  # trace, allocate, warm caches
    seconds = []
    for _ in range(reps):
        t0 = time.perf_counter()
        chain(a)
        sync_devices()
        seconds.append(time.perf_counter() - t0)
    flops = 2.0 * n**3 * per_rep
    return Peak(
        gflops=flops / min(seconds) / 1e9,
        n=n,
        reps=reps,
        matmuls_per_rep=per_rep,
        dtype="float32",
        device=a.device,
        median_gflops=flops / statistics.median(seconds) / 1e9,
    )


_PEAK: Peak | None = None


def peak() -> Peak:
    """The measured peak, measured on first use and cached for the rest of the process (the session)."""
    global _PEAK
    if _PEAK is None:
        _PEAK = measure_matmul_peak()
    return _PEAK


def mfu(flops_per_sample: float, samples_per_sec: float, peak_gflops: float) -> tuple[float, float]:
    """(achieved GFLOP/s, MFU) of a training run."""
    if peak_gflops <= 0:
        raise ValueError(f"peak must be positive, got {peak_gflops}")
    achieved = flops_per_sample * samples_per_sec / 1e9
    return achieved, achieved / peak_gflops
