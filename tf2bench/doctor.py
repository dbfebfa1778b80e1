"""`tf2bench doctor`: check a machine before a long run, one line per check (ok / info / warn / fail) with the fix.

What it checks, in order: the devices TensorFlow sees (and nvidia-smi lists), the CUDA/cuDNN build against the
GPUs, whether XLA compiles and runs a tiny function (a missing ptxas or libdevice is the usual GPU failure), whether
a 2-step profile has device events (CUPTI privileges), which mixed-precision policies run, the GPU memory-growth
setting, and the GPU clocks (tf2bench.measure.gpuinfo). Exit 1 when a check fails, 0 otherwise: a warning says what the
figures will mean, a failure says that part of a run will break.

The facts are gathered once (``Machine``); each check is ``check(machine) -> Check``, so the GPU branches run in the
tests with a made-up Machine on a CPU. XLA, the profile and the policies are run for real on this machine's
devices.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tf2bench.errors import EXIT_FAILED, EXIT_OK
from tf2bench.measure import envinfo, gpuinfo

OK, INFO, WARN, FAIL = "ok", "info", "warn", "fail"
POLICIES = ("mixed_bfloat16", "mixed_float16")
BF16_UNITS = ("avx512_bf16", "amx_bf16")  # CPU units that run bf16 natively (oneDNN); without them it is emulated
PROFILE_STEPS = 2
AND_CUDA = "pip install 'tensorflow[and-cuda]'"


@dataclass(frozen=True)
class Check:
    status: str  # OK, INFO, WARN or FAIL
    line: str  # what was found
    fix: str = ""  # what to do about it (warn / fail)


@dataclass
class Machine:
    """What the checks judge: TF's GPUs (name, compute capability, memory growth), its build, nvidia-smi."""

    gpus: list[dict[str, Any]]
    build: dict[str, Any]
    smi: dict[str, Any] | None
    tf_version: str = "?"
    cpu: str = "?"
    isa: str = ""
    cores: int | None = None
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def here(cls) -> Machine:
        import tensorflow as tf

        gpus = []
        for dev in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(dev)
            gpus.append(
                {
                    "name": details.get("device_name", dev.name),
                    "cc": tuple(details.get("compute_capability") or ()),
                    "growth": bool(tf.config.experimental.get_memory_growth(dev)),
                }
            )
        keys = ("CUDA_VISIBLE_DEVICES", "TF_FORCE_GPU_ALLOW_GROWTH")
        return cls(
            gpus=gpus,
            build=dict(tf.sysconfig.get_build_info()),
            smi=gpuinfo.query(),
            tf_version=tf.__version__,
            cpu=envinfo.cpu_name(),
            isa=envinfo.cpu_flags()[1],
            cores=os.cpu_count(),
            env={k: os.environ[k] for k in keys if k in os.environ},
        )

    @property
    def smi_gpus(self) -> list[dict[str, Any]]:
        return (self.smi or {}).get("gpus") or []


def devices(m: Machine) -> Check:
    if m.gpus:
        names = ", ".join(f"{g['name']} (compute capability {'.'.join(map(str, g['cc'])) or '?'})" for g in m.gpus)
        line = f"TensorFlow sees {len(m.gpus)} GPU(s): {names}"
        hidden = len(m.smi_gpus) - len(m.gpus)
        if hidden > 0 and "CUDA_VISIBLE_DEVICES" not in m.env:
            return Check(WARN, f"{line}; nvidia-smi lists {len(m.smi_gpus)}", "check the driver and `nvidia-smi -L`")
        return Check(OK, line)
    hide = m.env.get("CUDA_VISIBLE_DEVICES")
    if m.smi_gpus and hide not in ("", "-1"):
        fix = (
            f"{AND_CUDA} (the CUDA and cuDNN libraries this CUDA {m.build.get('cuda_version')} build loads), and a "
            "driver that supports that CUDA version"
            if m.build.get("is_cuda_build")
            else f"this TensorFlow is a CPU build: {AND_CUDA}"
        )
        return Check(FAIL, f"nvidia-smi lists {len(m.smi_gpus)} GPU(s) but TensorFlow sees none", fix)
    why = f" (CUDA_VISIBLE_DEVICES={hide!r} hides them)" if hide is not None else ""
    why += f"; nvidia-smi: {m.smi['error']}" if m.smi and m.smi.get("error") else ""
    return Check(
        WARN,
        f"no GPU: TensorFlow sees the CPU only ({m.cores} cores){why}: every figure is a CPU figure",
        f"for GPU figures run on a machine with an NVIDIA GPU and driver, with {AND_CUDA}",
    )


def build(m: Machine) -> Check:
    b = m.build
    if not b.get("is_cuda_build"):
        kind = "ROCm build" if b.get("is_rocm_build") else "CPU build (no CUDA, no cuDNN)"
        if m.smi_gpus:
            return Check(WARN, f"TensorFlow {m.tf_version} is a {kind} on a machine with an NVIDIA GPU", AND_CUDA)
        return Check(OK, f"TensorFlow {m.tf_version}, {kind}")
    archs = [str(a) for a in b.get("cuda_compute_capabilities") or ()]
    line = f"TensorFlow {m.tf_version} built with CUDA {b.get('cuda_version')}, cuDNN {b.get('cudnn_version')}"
    line += f", kernels for {' '.join(archs)}" if archs else ""
    if not m.gpus:
        return Check(OK, f"{line}; with no GPU it runs on the CPU")
    for g in m.gpus:
        found = arch_support(tuple(g["cc"]), archs)
        cc = ".".join(map(str, g["cc"]))
        if found == "none":
            return Check(FAIL, f"{line}: nothing runs on {g['name']} (compute capability {cc})", "a newer GPU")
        if found == "ptx":
            return Check(
                WARN,
                f"{line}: no prebuilt kernels for {g['name']} (compute capability {cc}): the driver JIT-compiles "
                "the PTX at start, minutes the first time, and first_step_s carries it",
                "keep the JIT cache between runs (CUDA_CACHE_MAXSIZE=4294967296), or a TensorFlow built for this GPU",
            )
    return Check(OK, line)


def arch_support(cc: tuple[int, ...], archs: list[str]) -> str:
    """How a GPU of compute capability ``cc`` runs this build: "sass" (a prebuilt kernel of its major version and
    an equal or lower minor: binary compatible), "ptx" (JIT from compute_XY PTX of an equal or lower version),
    or "none"."""
    if len(cc) < 2 or not archs:
        return "sass"  # nothing to judge by: assume it runs
    version = cc[0] * 10 + cc[1]
    sass = [int(a[3:]) for a in archs if a.startswith("sm_") and a[3:].isdigit()]
    ptx = [int(a[8:]) for a in archs if a.startswith("compute_") and a[8:].isdigit()]
    if any(s // 10 == cc[0] and s <= version for s in sass):
        return "sass"
    return "ptx" if any(p <= version for p in ptx) else "none"


def xla(m: Machine) -> Check:
    import numpy as np
    import tensorflow as tf

    # small integers: every product and sum is exact in float32 and TF32, so XLA must match eager exactly
    x = tf.constant(np.arange(-8, 8, dtype=np.float32).reshape(4, 4) % 5 - 2)
    w = tf.constant(np.arange(16, dtype=np.float32).reshape(4, 4) % 3 - 1)
    start = time.perf_counter()
    try:
        got = tf.function(lambda a, b: tf.nn.relu(tf.matmul(a, b)), jit_compile=True)(x, w)
        seconds = time.perf_counter() - start
        want = tf.nn.relu(tf.matmul(x, w))
    except Exception as exc:  # tf.errors.OpError mostly; whatever it is, XLA does not work here
        text = " ".join(str(exc).split())[:300]
        hint = "ptxas" in text or "libdevice" in text
        return Check(
            FAIL,
            f"XLA could not compile a tiny function: {type(exc).__name__}: {text}",
            "XLA on a GPU needs the CUDA toolkit's ptxas and libdevice: pip install nvidia-cuda-nvcc-cu12, or set "
            "XLA_FLAGS=--xla_gpu_cuda_data_dir=<CUDA dir with nvvm/libdevice>"
            if hint or m.gpus
            else "the xla, graph_xla and fit_xla loops will fail: leave them out (--loop) until XLA works",
        )
    if not np.array_equal(got.numpy(), want.numpy()):
        return Check(FAIL, "XLA ran a tiny integer matmul and got another result than TensorFlow", "report this")
    where = got.device.rpartition("device:")[2] or "?"
    return Check(OK, f"XLA compiled and ran a tiny matmul on {where} in {seconds:.2f} s; the result is exact")


def profile(m: Machine) -> Check:
    import tensorflow as tf

    from tf2bench.measure import profiling

    w = tf.Variable(tf.ones((64, 64)))
    step = tf.function(lambda x: w.assign_sub(1e-6 * tf.matmul(x, x, transpose_a=True)))
    x = tf.ones((32, 64))
    step(x)  # traced before the profile, like the suite's warm-up

    def train() -> None:
        for i in range(PROFILE_STEPS):
            with tf.profiler.experimental.Trace("train", step_num=i, _r=1):
                step(x).numpy()

    with tempfile.TemporaryDirectory(prefix="tf2bench-doctor-") as tmp:
        _, summary = profiling.profile_window(Path(tmp), train)
        if "error" in summary:
            return Check(
                FAIL,
                f"a {PROFILE_STEPS}-step profile gave no usable trace: {summary['error']}",
                "`pytest bench --profile` would record no profiles; is xprof installed (pip install xprof)?",
            )
        ops = profiling.top_ops(profiling.tool_data(Path(summary["trace_path"]), "framework_op_stats"), n=10**6)
    where = {w: sum(1 for op in ops if op["where"] == w) for w in ("Device", "Host")}
    steps = f"{summary.get('steps_measured')} marked steps measured ({summary.get('hardware_type') or '?'})"
    return judge_profile(bool(m.gpus), steps, where["Device"], where["Host"])


def judge_profile(gpu: bool, steps: str, device_ops: int, host_ops: int) -> Check:
    if gpu and device_ops:
        return Check(OK, f"{steps}, {device_ops} op types with device (GPU) time: CUPTI traces the GPU")
    if gpu:
        return Check(
            WARN,
            f"{steps} but no device events: CUPTI could not trace the GPU (CUPTI_ERROR_INSUFFICIENT_PRIVILEGES in "
            "a container, or libcupti not found); profiles will lack GPU time, timings are unaffected",
            "run the container with --cap-add SYS_ADMIN, or on the host `options nvidia "
            "NVreg_RestrictProfilingToAdminUsers=0` in /etc/modprobe.d and reload the driver; CUPTI comes with "
            f"{AND_CUDA}",
        )
    if host_ops:
        return Check(
            OK,
            f"{steps}, {host_ops} op types timed on the host; on a CPU the host is the device, so what is checked is "
            "that marked steps and host op events are in the trace (device events need a GPU)",
        )
    return Check(WARN, f"{steps} but no op events at all", "profiles will show no ops; check the xprof version")


def mixed(m: Machine) -> Check:
    from tf2bench.errors import UnsupportedError
    from tf2bench.loops.mixed import check_policy_supported, mixed_policy_name

    results: dict[str, str | None] = {}
    for name in POLICIES:
        try:
            check_policy_supported(name)
            results[name] = None
        except UnsupportedError as exc:
            results[name] = str(exc)
    return judge_mixed(results, mixed_policy_name(), m)


def judge_mixed(results: dict[str, str | None], used: str, m: Machine) -> Check:
    runs = [n for n, err in results.items() if err is None]
    line = f"{' and '.join(runs) or 'no mixed policy'} run{'s' if len(runs) == 1 else ''}"
    line += "".join(f"; {n} does not: {err}" for n, err in results.items() if err)
    if results.get(used):
        return Check(WARN, f"{line}; the mixed loops use {used}: they will be skipped", "run without mixed loops")
    line += f"; the mixed and graph_mixed loops use {used} here"
    ccs = [tuple(g["cc"]) for g in m.gpus]
    if m.gpus and any(cc < (7, 0) for cc in ccs if len(cc) == 2):
        line += " (a GPU below compute capability 7.0 has no Tensor Cores: expect little gain)"
    elif not m.gpus and not any(u in m.isa.split() for u in BF16_UNITS):
        line += " (no AVX512-BF16 or AMX on this CPU: bf16 is emulated, expect no gain)"
    return Check(OK, line)


def memory(m: Machine) -> Check:
    env = m.env.get("TF_FORCE_GPU_ALLOW_GROWTH")
    if env is not None and env.strip().lower() not in ("true", "false"):
        return Check(WARN, f"TF_FORCE_GPU_ALLOW_GROWTH={env!r} is neither true nor false: TF ignores it", "set true")
    if not m.gpus:
        return Check(INFO, "no GPU: memory growth does not apply (peak_memory_bytes is recorded on a GPU only)")
    # the variable, when set to true or false, overrides set_memory_growth (TF's GPU allocator reads it)
    grow = env.strip().lower() == "true" if env is not None else all(g["growth"] for g in m.gpus)
    if grow:
        return Check(OK, "memory growth on: TF takes GPU memory as needed; nvidia-smi shows about what it uses")
    return Check(
        OK,
        "memory growth off (TF's default): TF reserves most of each GPU's memory at start, so nvidia-smi shows the "
        "reservation; peak_memory_bytes is TF's own peak, and a second process on the same GPU runs out of memory",
    )


def clocks(m: Machine) -> Check:
    if m.smi is None:
        return Check(INFO, "nvidia-smi not found: no GPU clocks to check")
    if m.smi.get("error"):
        return Check(WARN, f"nvidia-smi failed: {m.smi['error']}", "`nvidia-smi` must run: check the NVIDIA driver")
    gpus = m.smi_gpus
    note = gpuinfo.clock_note(m.smi)
    capped = [
        g
        for g in gpus
        if isinstance(g.get("power_limit_w"), float)
        and isinstance(g.get("default_power_limit_w"), float)
        and g["power_limit_w"] < g["default_power_limit_w"]
    ]
    line = gpuinfo.settings_text(gpus)
    if capped:
        ids = ", ".join(str(g.get("index")) for g in capped)
        line += f"; power limit below its default on GPU {ids}: figures lower than the card can do"
        note = "; ".join(filter(None, (note, f"restore it with `sudo nvidia-smi -i {ids} -pl <default W>`")))
    return Check(WARN if note else OK, line, note or "")


CHECKS: list[tuple[str, Callable[[Machine], Check]]] = [
    ("devices", devices),
    ("build", build),
    ("xla", xla),
    ("profile", profile),
    ("mixed", mixed),
    ("memory", memory),
    ("clocks", clocks),
]


def run_checks(machine: Machine, checks: list[tuple[str, Callable[[Machine], Check]]] | None = None) -> list:
    """(name, Check) for every check; a check that raises is a failure that names the exception."""
    out = []
    for name, check in checks if checks is not None else CHECKS:
        try:
            result = check(machine)
        except Exception as exc:
            result = Check(FAIL, f"the check itself failed: {type(exc).__name__}: {exc}", "report this")
        out.append((name, result))
    return out


def format_line(name: str, c: Check) -> str:
    return f"{c.status:<5} {name:<8} {c.line}" + (f" -> fix: {c.fix}" if c.fix else "")


def main(machine: Machine | None = None, checks: list | None = None, out: Any = None) -> int:
    """Run the checks, print one line each and a count; exit 1 on a fail, else 0."""
    out = out or sys.stdout
    machine = machine or Machine.here()
    print(f"tf2bench doctor: TensorFlow {machine.tf_version}, {machine.cpu}, {machine.cores} cores", file=out)
    results = run_checks(machine, checks)
    for name, c in results:
        print(format_line(name, c), file=out, flush=True)
    counts = {s: sum(1 for _, c in results if c.status == s) for s in (OK, INFO, WARN, FAIL)}
    verdict = "fix the failures before a long run" if counts[FAIL] else "ready"
    verdict += " (the warnings say what the figures will mean)" if counts[WARN] and not counts[FAIL] else ""
    print(", ".join(f"{n} {s}" for s, n in counts.items()) + f": {verdict}", file=out)
    return EXIT_FAILED if counts[FAIL] else EXIT_OK
