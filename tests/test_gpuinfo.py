"""measure.gpuinfo with a fake ``nvidia-smi`` first on PATH: two GPUs (clocks locked on one), a GeForce card that
reports no application clocks, a missing binary, one that fails, one that prints something else, one that hangs;
then the record (machine_info), compare's warning and the report's header built on it."""

from __future__ import annotations

import stat
import time
from pathlib import Path

import pytest
from conftest import edited, fixture

from tf2bench.analysis import compare, html, render, report, runs
from tf2bench.measure import envinfo, gpuinfo

# What `nvidia-smi --query-gpu=<gpuinfo.FIELDS> --format=csv,noheader,nounits` prints on an A100 box where GPU 0's
# application clocks were set to the maximum pair (`nvidia-smi -ac 1593,1410`) and GPU 1's were left at the
# default 1275 MHz (it boosts as it likes: 1155 MHz when read).
A100 = """\
0, NVIDIA A100-SXM4-80GB, GPU-5c1e5a2b-3f7d-8c9e-1a2b-3c4d5e6f7a8b, 550.54.15, Enabled, 1410, 1410, 1593, 1410, 1275, 400.00, 400.00
1, NVIDIA A100-SXM4-80GB, GPU-9d8c7b6a-5f4e-3d2c-1b0a-9f8e7d6c5b4a, 550.54.15, Enabled, 1155, 1410, 1593, 1275, 1275, 400.00, 400.00
"""  # noqa: E501
BOTH_LOCKED = A100.replace("1155, 1410, 1593, 1275, 1275", "1410, 1410, 1593, 1410, 1275")
CAPPED = BOTH_LOCKED.replace("1275, 400.00, 400.00\n1,", "1275, 300.00, 400.00\n1,")  # GPU 0: -pl 300
GEFORCE = "0, NVIDIA GeForce RTX 4090, GPU-1b72, 560.35.03, Disabled, 2520, 3105, 10501, [N/A], [N/A], 450.00, 450.00\n"
DRIVER_GONE = (
    "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. Make sure that the latest NVIDIA "
    "driver is installed and running.\n"
)


def fake_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stdout: str = A100, code: int = 0, hang: bool = False):
    """An ``nvidia-smi`` first on PATH that answers gpuinfo's query with ``stdout`` and exit ``code``; any other
    arguments get nvidia-smi's usage error (exit 2), as the real one does."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "answer.txt").write_text(stdout)
    query, fmt = gpuinfo.COMMAND
    body = "exec sleep 30\n" if hang else f'cat "{bin_dir}/answer.txt"\nexit {code}\n'
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        f'if [ "$1" != "{query}" ] || [ "$2" != "{fmt}" ]; then\n'
        "  echo \"Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\"; exit 2\nfi\n" + body
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    return script


def test_two_gpus_one_locked(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch)
    info = gpuinfo.query()
    g0, g1 = info["gpus"]
    assert (g0["index"], g0["driver"], g0["sm_mhz"], g0["max_sm_mhz"], g0["app_mhz"]) == (
        0,
        "550.54.15",
        1410,
        1410,
        1410,
    )
    assert (g1["sm_mhz"], g1["default_app_mhz"], g1["power_limit_w"]) == (1155, 1275, 400.0)
    assert [g["clocks_locked"] for g in info["gpus"]] == [True, False]
    assert info["summary"].startswith("GPU 0, 1: NVIDIA A100-SXM4-80GB; driver 550.54.15; GPU 0: SM 1410 MHz when read")
    note = gpuinfo.clock_note(info)
    assert note.startswith("clocks not locked on GPU 1: figures move with boost clocks")
    assert "sudo nvidia-smi -i 1 -ac 1593,1410" in note
    assert "-lgc" in note
    assert gpuinfo.figure_settings(info) == {
        "gpu_driver": "550.54.15",
        "gpu_clocks": "GPU 0: locked: application clocks 1410 MHz (max 1410 MHz); "
        "GPU 1: not locked: default application clocks 1275 MHz, boost to max 1410 MHz",
        "gpu_power_limit": "GPU 0, 1: 400 W",
    }


def test_locked_everywhere_needs_no_note_and_geforce_is_unknown(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch, BOTH_LOCKED)
    assert gpuinfo.clock_note(gpuinfo.query()) is None
    fake_smi(tmp_path, monkeypatch, GEFORCE)
    info = gpuinfo.query()
    assert info["gpus"][0]["clocks_locked"] is None
    assert info["gpus"][0]["app_mhz"] is None
    assert "GPU 0 reports no application clocks" in gpuinfo.clock_note(info)
    assert "application clocks not reported (max 3105 MHz)" in info["summary"]


def test_no_nvidia_smi_is_none_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert gpuinfo.query() is None
    assert gpuinfo.clock_note(None) is None
    assert gpuinfo.figure_settings(None) == {}
    assert gpuinfo.header(None) == ("", "")


@pytest.mark.parametrize(
    ("stdout", "code", "why"),
    [
        (DRIVER_GONE, 9, "nvidia-smi exited with code 9: NVIDIA-SMI has failed because it couldn't communicate"),
        ("No devices were found\n", 6, "nvidia-smi exited with code 6: No devices were found"),
        ("<html>proxy error</html>\n", 0, "nvidia-smi's answer could not be read: line 1 has 1 fields, 12 were"),
        (A100.replace("1155", "idle"), 0, "line 2: sm_mhz is 'idle', not a number"),
        ("", 0, "nvidia-smi's answer could not be read: no GPU rows"),
    ],
)
def test_a_failing_or_garbled_nvidia_smi_is_recorded_with_the_reason(tmp_path, monkeypatch, stdout, code, why):
    fake_smi(tmp_path, monkeypatch, stdout, code)
    info = gpuinfo.query()
    assert info["gpus"] == []
    assert why in info["error"]
    assert gpuinfo.clock_note(info) == f"GPU clocks not recorded: {info['error']}"
    assert gpuinfo.figure_settings(info) == {}
    assert gpuinfo.header(info) == ("", f"GPU clocks not recorded: {info['error']}")


def test_a_hung_nvidia_smi_is_cut_off_by_the_timeout(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch, hang=True)
    start = time.perf_counter()
    info = gpuinfo.query(timeout=0.5)
    assert info == {"error": "nvidia-smi did not answer within 0.5 s (a hung driver?)", "gpus": []}
    assert time.perf_counter() - start < 5  # killed, not waited for (the fake sleeps 30 s)


def test_machine_info_records_what_nvidia_smi_says(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch)
    machine = envinfo.machine_info()  # imports TensorFlow (seconds, the first time in a session)
    assert machine["gpu"]["gpus"][1]["clocks_locked"] is False
    assert machine["gpu_clocks"].startswith("GPU 0: locked")
    assert machine["gpu_driver"] == "550.54.15"
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi: recorded as None, no gpu_* settings
    machine = envinfo.machine_info()
    assert machine["gpu"] is None
    assert not [k for k in machine if k.startswith("gpu_")]


def test_compare_warns_when_gpu_clocks_or_power_limits_differ(tmp_path, monkeypatch):
    def with_gpu(text: str):
        def edit(doc):
            fake_smi(tmp_path, monkeypatch, text)
            info = gpuinfo.query()
            doc["machine_info"]["tf2bench"].update(gpu=info, **gpuinfo.figure_settings(info))

        return edit

    a = runs.load(edited(fixture("0001"), tmp_path / "a", with_gpu(A100)), True)
    b = runs.load(edited(fixture("0002"), tmp_path / "b", with_gpu(CAPPED)), True)
    (warning,) = [n for n in compare.compare(a, b).notes if n.startswith("WARNING")]
    assert "gpu_clocks: 'GPU 0: locked" in warning
    assert "gpu_power_limit: 'GPU 0, 1: 400 W' -> 'GPU 0: 300 W" in warning
    same = runs.load(edited(fixture("0002"), tmp_path / "c", with_gpu(A100)), True)
    assert not [n for n in compare.compare(a, same).notes if n.startswith("WARNING")]
    # a CPU's figures do not depend on the CUDA build: two CPU runs of a CUDA and a CPU wheel compare without warning
    cpu = {"device": {"kind": "CPU"}, "cuda_version": "12.5.1"}
    assert envinfo.differences(cpu, {**cpu, "cuda_version": ""}) == []
    gpu = {"device": {"kind": "GPU"}, "cuda_version": "12.5.1"}
    assert envinfo.differences(gpu, {**gpu, "cuda_version": "12.3"}) == ["cuda_version: '12.5.1' -> '12.3'"]


def test_the_report_header_and_notes_show_the_gpu_facts(tmp_path, monkeypatch):
    fake_smi(tmp_path, monkeypatch)
    info = gpuinfo.query()

    def on_a100(doc):
        doc["machine_info"]["tf2bench"].update(gpu=info, device={"kind": "GPU", "name": "NVIDIA A100", "count": 2})

    run = runs.load(edited(fixture("0001"), tmp_path / "gpu", on_a100))
    hardware, software, settings = html.machine_facts(run)
    assert "2× NVIDIA A100" in hardware
    assert "CUDA 12.5.1, cuDNN 9" in software
    assert "NVIDIA driver 550.54.15" in software
    assert settings.startswith("GPU 0: SM 1410 MHz when read, locked: application clocks 1410 MHz (max 1410 MHz)")
    assert "GPU 1: SM 1155 MHz when read, not locked" in settings
    assert "power limit 400 W" in settings
    assert "NVIDIA driver 550.54.15, GPU 0: SM 1410 MHz" in render.machine_line(run.machine)  # report.md's runs
    notes = render.notes(report.build([run]), [run])
    assert gpuinfo.clock_note(info) in notes
    plain = runs.load(fixture("0001"))  # a CPU run: no GPU facts, no clock note
    assert "driver" not in " ".join(html.machine_facts(plain))
    assert not [n for n in render.notes(report.build([plain]), [plain]) if "clocks" in n]
