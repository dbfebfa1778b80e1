"""What ran the benchmark: versions, devices, GPU name and memory, CPU, threads."""

from __future__ import annotations

import os
import platform
from functools import cache
from typing import Any


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@cache
def device() -> dict[str, Any]:
    """The device the benchmarks run on: the first GPU if TF sees one, else the CPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return {
            "kind": "GPU",
            "name": details.get("device_name", gpus[0].name),
            "compute_capability": list(details.get("compute_capability", ()) or ()),
            "count": len(gpus),
        }
    return {"kind": "CPU", "name": cpu_name(), "count": 1, "cores": os.cpu_count()}


def reset_peak_memory() -> None:
    """Start a fresh peak-memory window on the GPU (no-op on CPU, where TF reports zeros)."""
    import tensorflow as tf

    if device()["kind"] == "GPU":
        tf.config.experimental.reset_memory_stats("GPU:0")


def peak_memory_bytes() -> int | None:
    """Peak device memory since the last reset, on a GPU; None on CPU."""
    import tensorflow as tf

    if device()["kind"] != "GPU":
        return None
    return int(tf.config.experimental.get_memory_info("GPU:0")["peak"])


@cache
def versions() -> dict[str, str]:
    import keras
    import tensorflow as tf

    build = tf.sysconfig.get_build_info()
    return {
        "tf_version": tf.__version__,
        "keras_version": keras.__version__,
        "cuda_version": str(build.get("cuda_version", "")),
        "cudnn_version": str(build.get("cudnn_version", "")),
        "python": platform.python_version(),
    }


def machine_info() -> dict[str, Any]:
    """Added to pytest-benchmark's machine_info for every saved run."""
    import tensorflow as tf

    return {
        **versions(),
        "device": device(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "cpu_name": cpu_name(),
        "cpu_count": os.cpu_count(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
    }
