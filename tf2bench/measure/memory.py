"""Peak memory of the timed windows: every GPU the process uses, or the host's resident set on a CPU.

What a benchmark's memory figure must cover is training, and only training: the warm-up (tracing, cuDNN/XLA
autotuning scratch), the evaluation (batches of 500) and the matmul peak (large square matrices) each allocate
more than a train step, so the window opens after the warm-up and closes before anything else runs. The runner
pauses it around an evaluation that falls between rounds and reads it once after the last timed window.

On a GPU, TensorFlow's allocator keeps the figure: ``reset_memory_stats(dev)`` then ``get_memory_info(dev)["peak"]``,
per device (a mirrored loop uses several), and the total. On a CPU ``get_memory_info`` has nothing to say (it returns
zeros in TF 2.21), so the figure is the process's resident set: Linux keeps its high-water mark (VmHWM), which
writing ``5`` to ``/proc/self/clear_refs`` resets to the current resident set. That is the whole process (Python,
TensorFlow, the data), so the record gives the peak and its growth over the level at the window's start; the
growth reads ~0 when the warm-up already allocated every buffer the steps reuse, which is the common case.
Where the kernel refuses the reset, the CPU figure is null with the reason.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def gpu_devices() -> list[str]:
    """The GPUs this process sees, as TensorFlow names them for its memory APIs (``GPU:0``, ``GPU:1``...)."""
    import tensorflow as tf

    return [d.name.split("device:")[-1] for d in tf.config.list_logical_devices("GPU")]


def _status_kib(field: str) -> int | None:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _reset_host_peak() -> str | None:
    """Reset the resident-set high-water mark; the reason when it cannot be."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError as exc:
        return f"cannot reset the resident-set peak ({CLEAR_REFS}: {exc.strerror or exc})"
    if _status_kib("VmHWM") is None:
        return f"no VmHWM in {STATUS}"
    return None


class PeakMemory:
    """``start()`` after the warm-up, ``pause()`` before anything that is not training, ``start()`` again after it;
    ``record()`` gives the peak over every open stretch."""

    def __init__(self) -> None:
        self.gpus = gpu_devices()
        self.per_device: dict[str, int] = {}
        self.host_start_kib: int | None = None
        self.host_peak_kib: int | None = None
        self.why: str | None = None
        self.running = False
        self.stretches = 0

    def start(self) -> None:
        if self.running:
            return
        if self.gpus:
            import tensorflow as tf

            for dev in self.gpus:
                tf.config.experimental.reset_memory_stats(dev)
        elif self.why is None:
            self.why = _reset_host_peak()
            if self.host_start_kib is None and self.why is None:
                self.host_start_kib = _status_kib("VmRSS")
        self.running = True
        self.stretches += 1

    def pause(self) -> None:
        if not self.running:
            return
        self.running = False
        if self.gpus:
            import tensorflow as tf

            for dev in self.gpus:
                peak = int(tf.config.experimental.get_memory_info(dev)["peak"])
                self.per_device[dev] = max(peak, self.per_device.get(dev, 0))
            return
        if self.why is None:
            hwm = _status_kib("VmHWM")
            self.host_peak_kib = max(hwm or 0, self.host_peak_kib or 0)  # start() resets it for the next stretch

    def record(self) -> dict[str, Any]:
        """``peak_memory_bytes`` (device memory: the total over the GPUs; None on a CPU) and ``peak_memory``."""
        self.pause()
        if self.gpus:
            total = sum(self.per_device.values()) if self.per_device else None
            return {
                "peak_memory_bytes": total,
                "peak_memory": {"kind": "device", "per_device": dict(self.per_device), "total_bytes": total},
            }
        if self.host_peak_kib is None or self.host_start_kib is None:
            why = self.why or "the timed windows never ran"
            return {"peak_memory_bytes": None, "peak_memory": {"kind": "host_rss", "why": why}}
        peak, start = 1024 * self.host_peak_kib, 1024 * self.host_start_kib
        return {
            "peak_memory_bytes": None,  # no device memory on a CPU: the host figures below are the whole process
            "peak_memory": {
                "kind": "host_rss",
                "peak_bytes": peak,  # the process's resident-set high-water mark over the timed windows
                "start_bytes": start,  # its resident set when the first window opened
                "growth_bytes": max(peak - start, 0),
            },
        }
