"""tf2bench doctor: run for real on this machine (expectations from what TensorFlow sees here), a failing check
exits 1, and the GPU branches judged on made-up machines (a GPU that TF cannot see, old or new compute capability,
no CUPTI, clocks from a fake nvidia-smi)."""

from __future__ import annotations

import io
import shutil

import pytest
from test_gpuinfo import A100, BOTH_LOCKED, CAPPED, DRIVER_GONE, fake_smi

from tf2bench import cli, doctor
from tf2bench.doctor import FAIL, INFO, OK, WARN, Check, Machine
from tf2bench.errors import EXIT_FAILED, EXIT_OK
from tf2bench.measure import gpuinfo

NAMES = [name for name, _ in doctor.CHECKS]
CUDA_BUILD = {
    "is_cuda_build": True,
    "cuda_version": "12.5.1",
    "cudnn_version": "9",
    "cuda_compute_capabilities": ["sm_60", "sm_70", "sm_80", "sm_89", "compute_90"],
}
A100_TF = {"name": "NVIDIA A100-SXM4-80GB", "cc": (8, 0), "growth": False}


def gpu_box(**kw) -> Machine:
    base = {"gpus": [A100_TF, A100_TF], "build": CUDA_BUILD, "smi": None, "tf_version": "2.21.0", "cores": 32}
    return Machine(**{**base, **kw})


def test_doctor_on_this_machine(capsys):
    import tensorflow as tf

    code = cli.main(["doctor"])
    out = capsys.readouterr().out
    print(out)  # the closing note quotes it
    lines = {line.split()[1]: line for line in out.splitlines()[1:-1]}
    assert list(lines) == NAMES
    statuses = {name: line.split()[0] for name, line in lines.items()}
    assert set(statuses.values()) <= {OK, INFO, WARN, FAIL}
    assert code == (EXIT_FAILED if FAIL in statuses.values() else EXIT_OK)
    assert out.splitlines()[-1].startswith(f"{sum(s == OK for s in statuses.values())} ok, ")
    build = tf.sysconfig.get_build_info()
    if build.get("cuda_version"):
        assert f"CUDA {build['cuda_version']}, cuDNN {build['cudnn_version']}" in lines["build"]
    assert statuses["xla"] == OK
    assert "the result is exact" in lines["xla"]
    assert statuses["mixed"] == OK
    assert "mixed_bfloat16" in lines["mixed"]
    if not tf.config.list_physical_devices("GPU") and shutil.which("nvidia-smi") is None:  # this CPU machine
        assert code == EXIT_OK  # nothing fails: the missing GPU is a warning
        assert statuses["devices"] == WARN
        assert "no GPU: TensorFlow sees the CPU only" in lines["devices"]
        assert statuses["profile"] == OK
        assert "on a CPU the host is the device" in lines["profile"]
        assert statuses["memory"] == INFO
        assert "mixed and graph_mixed loops use mixed_bfloat16" in lines["mixed"]
        assert lines["clocks"].startswith("info  clocks   nvidia-smi not found")


def test_a_failing_check_exits_1_and_a_crashing_check_is_a_failure(monkeypatch):
    fine = [("one", lambda m: Check(OK, "fine")), ("two", lambda m: Check(WARN, "so-so", "do this"))]
    out = io.StringIO()
    assert doctor.main(gpu_box(), fine, out) == EXIT_OK
    assert "warn  two      so-so -> fix: do this" in out.getvalue()
    assert (
        out.getvalue().splitlines()[-1]
        == "1 ok, 0 info, 1 warn, 0 fail: ready (the warnings say what the figures will mean)"
    )
    out = io.StringIO()
    assert doctor.main(gpu_box(), [*fine, ("bad", lambda m: Check(FAIL, "broken", "mend it"))], out) == EXIT_FAILED
    assert "fail  bad      broken -> fix: mend it" in out.getvalue()
    assert out.getvalue().splitlines()[-1].endswith("1 fail: fix the failures before a long run")
    out = io.StringIO()
    assert doctor.main(gpu_box(), [("boom", lambda m: 1 / 0)], out) == EXIT_FAILED
    assert "fail  boom     the check itself failed: ZeroDivisionError: division by zero" in out.getvalue()
    # through the command, as a user runs it
    monkeypatch.setattr(doctor.Machine, "here", classmethod(lambda cls: gpu_box()))
    monkeypatch.setattr(doctor, "CHECKS", [*fine, ("bad", lambda m: Check(FAIL, "broken", "mend it"))])
    assert cli.main(["doctor"]) == EXIT_FAILED


def test_devices_a_gpu_tensorflow_cannot_see_is_a_failure(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch, A100)
    smi = gpuinfo.query()
    c = doctor.devices(gpu_box(gpus=[], smi=smi))
    assert c.status == FAIL
    assert c.line == "nvidia-smi lists 2 GPU(s) but TensorFlow sees none"
    assert "pip install 'tensorflow[and-cuda]'" in c.fix
    assert "CUDA 12.5.1" in c.fix
    hidden = doctor.devices(gpu_box(gpus=[], smi=smi, env={"CUDA_VISIBLE_DEVICES": ""}))
    assert hidden.status == WARN
    assert "CUDA_VISIBLE_DEVICES='' hides them" in hidden.line
    seen = doctor.devices(gpu_box(smi=smi))
    assert seen == Check(
        OK, "TensorFlow sees 2 GPU(s): " + ", ".join(["NVIDIA A100-SXM4-80GB (compute capability 8.0)"] * 2)
    )
    assert doctor.devices(gpu_box(gpus=[A100_TF], smi=smi)).status == WARN  # nvidia-smi lists one more
    fake_smi(tmp_path, monkeypatch, DRIVER_GONE, 9)
    assert "nvidia-smi: nvidia-smi exited with code 9" in doctor.devices(gpu_box(gpus=[], smi=gpuinfo.query())).line


@pytest.mark.parametrize(
    ("cc", "expected"),
    [((8, 0), "sass"), ((8, 6), "sass"), ((7, 5), "sass"), ((9, 0), "ptx"), ((12, 0), "ptx"), ((5, 2), "none")],
)
def test_build_which_gpus_this_build_runs_on(cc, expected):
    # 8.6 runs sm_80 code (same major, higher minor); 9.0 has no sm_90 but compute_90 PTX; 5.2 is older than sm_60
    assert doctor.arch_support(cc, CUDA_BUILD["cuda_compute_capabilities"]) == expected
    status = {"sass": OK, "ptx": WARN, "none": FAIL}[expected]
    assert doctor.build(gpu_box(gpus=[{**A100_TF, "cc": cc}])).status == status


def test_build_cpu_wheel_on_a_gpu_machine(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch, A100)
    c = doctor.build(gpu_box(gpus=[], build={"is_cuda_build": False}, smi=gpuinfo.query()))
    assert c == Check(
        WARN, "TensorFlow 2.21.0 is a CPU build (no CUDA, no cuDNN) on a machine with an NVIDIA GPU", doctor.AND_CUDA
    )


def test_profile_without_device_events_on_a_gpu_names_cupti():
    c = doctor.judge_profile(True, "2 marked steps measured (GPU)", device_ops=0, host_ops=7)
    assert c.status == WARN
    assert "CUPTI_ERROR_INSUFFICIENT_PRIVILEGES" in c.line
    assert "NVreg_RestrictProfilingToAdminUsers=0" in c.fix
    assert doctor.judge_profile(True, "2 marked steps measured (GPU)", 12, 7).status == OK
    assert doctor.judge_profile(False, "2 marked steps", 0, 0).status == WARN


def test_mixed_policies_judged_for_the_device():
    both = {"mixed_bfloat16": None, "mixed_float16": None}
    assert doctor.judge_mixed(both, "mixed_float16", gpu_box()).status == OK
    old = doctor.judge_mixed(both, "mixed_float16", gpu_box(gpus=[{**A100_TF, "cc": (6, 1)}]))
    assert "no Tensor Cores" in old.line
    broken = doctor.judge_mixed({**both, "mixed_float16": "no kernel"}, "mixed_float16", gpu_box())
    assert broken.status == WARN
    assert "they will be skipped" in broken.line
    no_bf16 = doctor.judge_mixed(both, "mixed_bfloat16", gpu_box(gpus=[], isa="avx2 fma avx512f"))
    assert "bf16 is emulated" in no_bf16.line
    assert "emulated" not in doctor.judge_mixed(both, "mixed_bfloat16", gpu_box(gpus=[], isa="avx512f amx_bf16")).line


def test_memory_growth_setting():
    assert "memory growth off" in doctor.memory(gpu_box()).line
    assert "memory growth on" in doctor.memory(gpu_box(gpus=[{**A100_TF, "growth": True}])).line
    assert "memory growth on" in doctor.memory(gpu_box(env={"TF_FORCE_GPU_ALLOW_GROWTH": "true"})).line
    assert doctor.memory(gpu_box(env={"TF_FORCE_GPU_ALLOW_GROWTH": "yes"})).status == WARN
    assert doctor.memory(gpu_box(gpus=[])).status == INFO


def test_clocks_from_nvidia_smi(tmp_path, monkeypatch):
    assert doctor.clocks(gpu_box(smi=None)).status == INFO
    fake_smi(tmp_path, monkeypatch, A100)
    c = doctor.clocks(gpu_box(smi=gpuinfo.query()))
    assert c.status == WARN
    assert "GPU 1: SM 1155 MHz when read, not locked" in c.line
    assert c.fix.startswith("clocks not locked on GPU 1")
    fake_smi(tmp_path, monkeypatch, BOTH_LOCKED)
    assert doctor.clocks(gpu_box(smi=gpuinfo.query())).status == OK
    fake_smi(tmp_path, monkeypatch, CAPPED)
    capped = doctor.clocks(gpu_box(smi=gpuinfo.query()))
    assert capped.status == WARN
    assert "power limit below its default on GPU 0" in capped.line
    assert "nvidia-smi -i 0 -pl" in capped.fix
    fake_smi(tmp_path, monkeypatch, DRIVER_GONE, 9)
    assert doctor.clocks(gpu_box(smi=gpuinfo.query())).status == WARN
