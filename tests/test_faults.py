"""Faults are contained: a failing or diverging benchmark fails alone and the rest are saved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT

from tf2bench.errors import EXIT_DATA_UNAVAILABLE
from tf2bench.plugin.storage import RunStorage
from tf2bench.saved.storage import atomic_write

TESTS = os.path.dirname(__file__)


@pytest.mark.slow
def test_one_failing_benchmark_does_not_lose_the_others(tmp_path, run_bench):
    storage = tmp_path / "benchmarks"
    result = run_bench(
        "-p", "fault_plugin", "--preset", "smoke", "--workload", "cifar100", "--api", "functional",
        "--loop", "fit,fault_oom,fault_nan,tf_data", "--benchmark-autosave", f"--benchmark-storage=file://{storage}",
        env={"PYTHONPATH": TESTS},
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]  # tests failed: pytest's exit 1
    assert "ResourceExhaustedError" in out
    assert "OOM when allocating tensor" in out
    assert "loss became nan within steps 3..4" in out  # the window where it happened
    assert "2 failed, 2 passed" in out
    (saved,) = storage.glob("*/*.json")
    names = [b["extra_info"]["loop"] for b in json.loads(saved.read_text())["benchmarks"]]
    assert names == ["fit", "tf_data"]  # the survivors are saved; the diverged run reports no throughput


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_run_keeps_earlier_results_and_writes_no_partial_file(tmp_path, signum):
    storage = tmp_path / "benchmarks"
    earlier = storage / "Linux-CPython-3.11-64bit" / "0001_earlier.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"benchmarks": [], "machine_info": {}, "commit_info": {}, "version": "5.3.1"}')
    before = earlier.read_bytes()
    # unbuffered: through a pipe the child's output would come in blocks, and the line that says the first
    # benchmark ended could arrive when the run is already over (then there is nothing left to interrupt)
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
    # Ctrl-C handling restored first: a shell without job control starts background jobs with SIGINT ignored
    # and the child inherits it (this test failed so under `nohup ... &`, as a user's Ctrl-C never would)
    restore = "import signal, sys, pytest; signal.signal(signal.SIGINT, signal.default_int_handler); "
    restore += "sys.exit(pytest.main(sys.argv[1:]))"
    cmd = [sys.executable, "-c", restore, "bench", "-p", "no:cacheprovider", "--preset", "smoke",
           "--workload", "cifar100", "--loop", "fit,eager,tf_data", "--benchmark-autosave",
           f"--benchmark-storage=file://{storage}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        deadline = time.monotonic() + 240
        for line in proc.stdout:  # wait until the first benchmark has finished
            seen.append(line)
            if "samples/s" in line or time.monotonic() > deadline:
                break
        assert any("samples/s" in line for line in seen), "".join(seen)[-2000:]
        proc.send_signal(signum)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert "KeyboardInterrupt" in rest or "Interrupted" in rest  # ended like Ctrl-C, not killed
    assert earlier.read_bytes() == before  # the earlier run is intact
    for path in storage.glob("*/*.json"):
        json.loads(path.read_text())  # every file is whole, valid JSON (none half-written)
    leftovers = [p for p in storage.rglob("*") if p.is_file() and not p.name.endswith(".json")]
    assert not leftovers, leftovers


@pytest.mark.slow
def test_corrupt_keras_cache_stops_the_run_with_the_data_exit_code(tmp_path, run_bench):
    datasets = tmp_path / "keras_home" / "datasets"
    datasets.mkdir(parents=True)
    (datasets / "mnist.npz").write_bytes(b"PK\x03\x04 truncated download")
    storage = tmp_path / "benchmarks"
    result = run_bench(
        "--preset", "smoke", "--workload", "mnist", "--dataset", "keras", "--benchmark-autosave",
        f"--benchmark-storage=file://{storage}", env={"KERAS_HOME": str(tmp_path / "keras_home")}, timeout=300,
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == EXIT_DATA_UNAVAILABLE, out[-2000:]
    assert f"mnist: cache file {datasets / 'mnist.npz'} is unreadable" in out
    assert "choose --dataset embedded or synthetic" in out
    assert (datasets / "mnist.npz").read_bytes() == b"PK\x03\x04 truncated download"  # never deleted


def test_run_files_are_written_whole_and_never_overwritten(tmp_path, monkeypatch):
    """The suite's pytest-benchmark storage: its numbering and loading, saving through tf2bench.saved.runfile."""
    monkeypatch.chdir(tmp_path)  # pytest-benchmark names saved files relative to the working directory
    logged = []
    logger = type("L", (), {"info": lambda self, m: logged.append(m)})()
    storage = RunStorage(Path("benchmarks"), logger=logger, default_machine_id="m")
    storage.save({"benchmarks": [], "n": 1}, "first")
    folder = tmp_path / "benchmarks" / "m"
    (first,) = folder.glob("*.json")
    assert first.name == "0001_first.json"
    assert json.loads(first.read_text())["n"] == 1
    storage.save({"benchmarks": [], "n": 2}, "second")
    assert sorted(p.name for p in folder.iterdir()) == ["0001_first.json", "0002_second.json"]
    (folder / "0007_other.json").write_text('{"benchmarks": []}')  # a run saved by pytest-benchmark itself
    storage.save({"benchmarks": [], "n": 3}, "third")  # numbered after it, never over it
    assert logged[-1] == f"Saved benchmark data in: {folder / '0008_third.json'}"
    assert [doc.get("n") for _, doc in storage.load()] == [1, 2, None, 3]  # read back as pytest-benchmark reads
    with pytest.raises(FileExistsError):
        atomic_write(first, b"{}", overwrite=False)
    assert json.loads(first.read_text())["n"] == 1  # untouched
    assert sorted(p.name for p in folder.iterdir()) == [
        "0001_first.json",
        "0002_second.json",
        "0007_other.json",
        "0008_third.json",
    ]  # no temporary file or number claim left behind
