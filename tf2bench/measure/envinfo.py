"""What ran the benchmark: versions, devices, GPU name and memory, CPU and its ISA extensions, threads, and the
settings that change a CPU's or a GPU's figures (oneDNN, XLA flags, TF32)."""

from __future__ import annotations

import os
import platform
from functools import cache
from typing import Any

from tf2bench.measure import gpuinfo


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The CPU extensions that change these figures: oneDNN picks its kernels by them (AVX-512 vs AVX2; bf16 runs on
# AVX512-BF16 or AMX units, or is emulated), so two runs are only comparable with the same set.
ISA_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
# What a run's figures depend on beyond the code: `tf2bench compare` warns when two runs differ in any of these.
# The GPU's: its CUDA/cuDNN build, and from nvidia-smi (tf2bench.measure.gpuinfo) driver, clock setting, power limit.
FIGURE_SETTINGS = (
    "cpu_name", "isa", "onednn_opts", "intra_op_threads", "inter_op_threads", "xla_flags", "tf32", "device",
    "cuda_version", "cudnn_version", "gpu_driver", "gpu_clocks", "gpu_power_limit",
)  # fmt: skip


def cpu_flags() -> tuple[str, str]:
    """(vendor, the ISA_FLAGS this CPU has, space-separated) from /proc/cpuinfo; ("", "") where there is none."""
    vendor, flags = "", set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("vendor_id") and not vendor:
                    vendor = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return vendor, " ".join(f for f in ISA_FLAGS if f in flags)


def figure_settings() -> dict[str, Any]:
    """The settings beyond the code that change the figures, as recorded in machine_info."""
    import tensorflow as tf

    vendor, isa = cpu_flags()
    onednn = os.environ.get("TF_ENABLE_ONEDNN_OPTS")
    return {
        "cpu_vendor": vendor,
        "isa": isa,
        # TF 2.9+ turns oneDNN's custom ops on by default on x86 Linux; the variable turns them off with 0
        "onednn_opts": "on (default)" if onednn is None else ("off" if onednn.strip() == "0" else "on"),
        "xla_flags": " ".join(filter(None, (os.environ.get("TF_XLA_FLAGS", ""), os.environ.get("XLA_FLAGS", "")))),
        "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),  # matters on an Ampere+ GPU
    }


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The FIGURE_SETTINGS two machine records disagree on, as "name: a -> b" (records without one are skipped;
    the CUDA/cuDNN build only where either ran on a GPU: a CPU's figures do not depend on it)."""
    on_gpu = any((m.get("device") or {}).get("kind") == "GPU" for m in (a, b))
    out = []
    for key in FIGURE_SETTINGS:
        if key in ("cuda_version", "cudnn_version") and not on_gpu:
            continue
        if key in a and key in b and a[key] != b[key]:
            out.append(f"{key}: {a[key]!r} -> {b[key]!r}")
    return out


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


def host_memory_bytes() -> int | None:
    """Physical memory of the host (None where the OS does not say): the report's header shows it."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def machine_info() -> dict[str, Any]:
    """Added to pytest-benchmark's machine_info for every saved run; ``gpu`` is nvidia-smi's reading (None without
    it), its stable part flattened into FIGURE_SETTINGS' gpu_* keys."""
    import tensorflow as tf

    gpu = gpuinfo.query()
    return {
        **versions(),
        "device": device(),
        "devices": [d.name for d in tf.config.list_logical_devices()],
        "cpu_name": cpu_name(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": host_memory_bytes(),
        "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads(),
        "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads(),
        **figure_settings(),
        "gpu": gpu,
        **gpuinfo.figure_settings(gpu),
    }
