"""Peak memory covers the timed windows only: TensorFlow's memory APIs stubbed and logged in the order they are
called (no GPU here), and the host's resident set measured for real on a CPU."""

from __future__ import annotations

import numpy as np
import pytest

from tf2bench.loops import RunConfig
from tf2bench.measure import memory
from tf2bench.suite.runner import BenchmarkRun
from tf2bench.workloads import data, get_workload

MNIST = get_workload("mnist")


@pytest.fixture
def fake_gpus(monkeypatch):
    """Two GPUs as TensorFlow's memory API sees them; every call is appended to the returned log."""
    import tensorflow as tf

    log, peaks = [], {"GPU:0": [300, 700], "GPU:1": [200, 100]}  # per device: the peak read at each pause

    def reset(dev):
        log.append(("reset", dev))

    def info(dev):
        log.append(("read", dev))
        return {"current": 1, "peak": peaks[dev].pop(0)}

    monkeypatch.setattr(memory, "gpu_devices", lambda: ["GPU:0", "GPU:1"])
    monkeypatch.setattr(tf.config.experimental, "reset_memory_stats", reset)
    monkeypatch.setattr(tf.config.experimental, "get_memory_info", info)
    return log


def test_a_pause_keeps_each_device_s_largest_peak(fake_gpus):
    m = memory.PeakMemory()
    m.start()
    m.pause()  # e.g. an evaluation between rounds
    m.pause()  # idempotent: no second read
    m.start()
    assert m.record() == {
        "peak_memory_bytes": 700 + 200,  # the total of each device's largest stretch
        "peak_memory": {"kind": "device", "per_device": {"GPU:0": 700, "GPU:1": 200}, "total_bytes": 900},
    }
    assert fake_gpus == [("reset", "GPU:0"), ("reset", "GPU:1"), ("read", "GPU:0"), ("read", "GPU:1")] * 2


@pytest.mark.slow
def test_the_runner_reads_memory_between_warm_up_and_evaluation(fake_gpus, monkeypatch):
    """The order of events in one benchmark: warm-up, reset, the timed windows, read, then evaluation and the
    matmul peak, which allocate more than a train step and must not count."""
    from tf2bench.suite import runner

    tiny = data.load(MNIST, "synthetic", train_size=128, test_size=32)
    run = BenchmarkRun(MNIST, "functional", "tf_function", tiny, RunConfig(steps=2, rounds=2, warmup_steps=1))
    window = run.loop.run
    monkeypatch.setattr(
        run.loop, "run", lambda start, steps: (fake_gpus.append(("steps", start)), window(start, steps))[1]
    )
    evaluate, mfu = runner.build.evaluate, runner.peak.mfu_record
    monkeypatch.setattr(runner.build, "evaluate", lambda *a: (fake_gpus.append(("evaluate",)), evaluate(*a))[1])
    monkeypatch.setattr(runner.peak, "mfu_record", lambda *a: (fake_gpus.append(("peak",)), mfu(*a))[1])
    run.warmup()
    run.window()
    run.window()
    info = run.result()
    assert fake_gpus == [
        ("steps", 0),  # warm-up: tracing, autotuning scratch
        ("reset", "GPU:0"), ("reset", "GPU:1"),
        ("steps", 1), ("steps", 3),  # the timed windows
        ("read", "GPU:0"), ("read", "GPU:1"),
        ("evaluate",), ("peak",),
    ]  # fmt: skip
    assert info["peak_memory_bytes"] == 500
    assert info["peak_memory"]["per_device"] == {"GPU:0": 300, "GPU:1": 200}


def test_on_a_cpu_the_resident_set_peak_of_the_windows_is_measured():
    if not memory.CLEAR_REFS.exists():
        pytest.skip(f"no {memory.CLEAR_REFS}: not Linux, the host figure is null with the reason there")
    m = memory.PeakMemory()
    m.gpus = []  # the host path, whatever this machine has
    big = np.ones(64 * 2**20, dtype=np.uint8)  # touched pages: resident before the window opens
    del big  # freed: its pages may leave the resident set, but the high-water mark would remember them...
    m.start()  # ...so start() resets it: allocations before the window do not count
    inside = np.ones(96 * 2**20, dtype=np.uint8)
    del inside
    rec = m.record()["peak_memory"]
    if "why" in rec:
        pytest.skip(f"this kernel refuses the reset: {rec['why']}")
    # 96 MiB touched inside the window: the peak rose by about that over the level at the start, less what the
    # allocator reused of pages already resident (freed blocks: measured ~0.2 MiB here; 1 MiB allowed)
    assert rec["growth_bytes"] >= 95 * 2**20, rec
    assert rec["peak_bytes"] - rec["start_bytes"] == rec["growth_bytes"]


def test_a_refused_reset_gives_null_and_the_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "CLEAR_REFS", tmp_path / "missing" / "clear_refs")
    m = memory.PeakMemory()
    m.gpus = []
    m.start()
    rec = m.record()
    assert rec["peak_memory_bytes"] is None
    assert rec["peak_memory"]["kind"] == "host_rss"
    assert rec["peak_memory"]["why"].startswith("cannot reset the resident-set peak")
