"""Faults are contained: a failing or diverging benchmark fails alone and the rest are saved."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT

TESTS = os.path.dirname(__file__)


@pytest.mark.slow
def test_one_failing_benchmark_does_not_lose_the_others(tmp_path, run_bench):
    storage = tmp_path / "benchmarks"
    result = run_bench(
        "-p", "fault_plugin", "--preset", "smoke", "--workload", "cifar100", "--api", "functional",
        "--variant", "fit,fault_oom,fault_nan,tf_data", "--benchmark-autosave", f"--benchmark-storage=file://{storage}",
        env={"PYTHONPATH": TESTS},
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]  # tests failed: pytest's exit 1
    assert "ResourceExhaustedError" in out
    assert "OOM when allocating tensor" in out
    assert "loss became nan within steps 3..4" in out  # the window where it happened
    assert "2 failed, 2 passed" in out
    (saved,) = storage.glob("*/*.json")
    names = [b["extra_info"]["variant"] for b in json.loads(saved.read_text())["benchmarks"]]
    assert names == ["fit", "tf_data"]  # the survivors are saved; the diverged run reports no throughput


@pytest.mark.slow
def test_interrupted_run_keeps_earlier_results_and_writes_no_partial_file(tmp_path):
    storage = tmp_path / "benchmarks"
    earlier = storage / "Linux-CPython-3.11-64bit" / "0001_earlier.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text('{"benchmarks": [], "machine_info": {}, "commit_info": {}, "version": "5.3.1"}')
    before = earlier.read_bytes()
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", "--preset", "smoke",
           "--workload", "mnist", "--benchmark-autosave", f"--benchmark-storage=file://{storage}"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        seen = []
        deadline = time.monotonic() + 240
        for line in proc.stdout:  # wait until the first benchmark has finished
            seen.append(line)
            if "samples/s" in line or time.monotonic() > deadline:
                break
        assert any("samples/s" in line for line in seen), "".join(seen)[-2000:]
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert earlier.read_bytes() == before  # the earlier run is intact
    for path in storage.glob("*/*.json"):
        json.loads(path.read_text())  # every file is whole, valid JSON (none half-written)
    leftovers = [p for p in storage.rglob("*") if p.is_file() and not p.name.endswith(".json")]
    assert not leftovers, leftovers
