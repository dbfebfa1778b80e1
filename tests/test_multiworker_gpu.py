"""multi_worker on a GPU host: each worker's GPUs and environment (pure functions, a fake host: a fake
``nvidia-smi`` on PATH, or a user's CUDA_VISIBLE_DEVICES), replicas = workers x GPUs each in the launcher's
pre-check, and windows that end on a sync of the worker's own devices (run on an asynchronous CPU). The
2-worker run on real GPUs is marked ``gpu``; the CPU runs are in tests/loops/test_distributed.py."""

from __future__ import annotations

import json
import os
import re
import stat
import time
from types import SimpleNamespace

import pytest

from tf2bench.errors import BadInputError
from tf2bench.loops import RunConfig
from tf2bench.multiworker import launch
from tf2bench.multiworker.worker import (
    WorkerFailedError,
    WorkerSpec,
    cuda_visible,
    partition_gpus,
    visible_gpus,
    worker_environments,
)

CLUSTER = ["127.0.0.1:1001", "127.0.0.1:1002"]
BASE = {"PATH": "/usr/bin", "HOME": "/home/u"}
FOUR_GPUS = ["0", "1", "2", "3"]


def task_of(env: dict[str, str]) -> int:
    return json.loads(env["TF_CONFIG"])["task"]["index"]


def fake_nvidia_smi(tmp_path, gpus: int, exit_code: int = 0) -> dict[str, str]:
    """An environment whose PATH finds a fake ``nvidia-smi`` printing ``-L`` as the real one does (a MIG line
    under GPU 0: it is not a GPU of its own to CUDA_VISIBLE_DEVICES indices)."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    lines = [f"GPU {i}: NVIDIA A100-SXM4-40GB (UUID: GPU-{i:08d}-1111-2222-3333-444455556666)" for i in range(gpus)]
    if gpus:
        lines.insert(1, "  MIG 1g.5gb      Device  0: (UUID: MIG-00000000-1111-2222-3333-444455556666)")
    script = bindir / "nvidia-smi"
    body = "".join(f"echo '{line}'\n" for line in lines) if exit_code == 0 else "echo 'NVIDIA-SMI has failed'\n"
    script.write_text(f'#!/bin/sh\n[ "$1" = -L ] || exit 2\n{body}exit {exit_code}\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return {"PATH": f"{bindir}:{os.environ['PATH']}"}


def test_four_gpus_two_workers_get_two_each_with_memory_growth():
    envs = worker_environments(BASE, CLUSTER, FOUR_GPUS)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0,1", "2,3"]
    assert [task_of(e) for e in envs] == [0, 1]
    for e in envs:
        assert e["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
        assert e["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"  # nvidia-smi's indices mean nvidia-smi's GPUs
        assert json.loads(e["TF_CONFIG"])["cluster"]["worker"] == CLUSTER
        assert {k: e[k] for k in BASE} == BASE  # the rest of the environment is passed on
    assert set(BASE) == {"PATH", "HOME"}  # the caller's mapping is left alone


def test_three_workers_on_four_gpus_get_one_each_and_one_is_idle():
    assert partition_gpus(FOUR_GPUS, 3) == [["0"], ["1"], ["2"]]
    envs = worker_environments(BASE, CLUSTER + ["127.0.0.1:1003"], FOUR_GPUS)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "2"]


def test_more_workers_than_gpus_is_refused_in_one_line_naming_the_numbers():
    with pytest.raises(BadInputError, match=r"multi_worker: 3 workers on 2 GPU\(s\) \(0,1\): each worker needs") as e:
        partition_gpus(["0", "1"], 3)
    assert "\n" not in str(e.value)
    assert "--workers 2 or fewer" in str(e.value)


def test_gpus_per_worker_picks_the_group_size_or_cpu_workers():
    assert partition_gpus(FOUR_GPUS, 2, per_worker=1) == [["0"], ["1"]]
    cpu = worker_environments(BASE, CLUSTER, FOUR_GPUS, per_worker=0)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in cpu] == ["", ""]  # hidden: not every worker on every GPU
    with pytest.raises(BadInputError, match=r"--gpus-per-worker 3 x 2 workers needs 6 GPUs, 4 are visible .*0 to 2"):
        partition_gpus(FOUR_GPUS, 2, per_worker=3)
    with pytest.raises(BadInputError, match=r"--gpus-per-worker 1 x 2 workers needs 2 GPUs, 0 are visible \(none\)"):
        partition_gpus([], 2, per_worker=1)


def test_no_gpu_leaves_the_environment_as_today():
    envs = worker_environments(BASE, CLUSTER, [])
    assert envs == [{**BASE, "TF_CONFIG": e["TF_CONFIG"]} for e in envs]
    assert [task_of(e) for e in envs] == [0, 1]


def test_a_users_cuda_visible_devices_is_partitioned_as_given():
    user = {**BASE, "CUDA_VISIBLE_DEVICES": "GPU-aaaa-1, GPU-bbbb-2,5,3", "TF_FORCE_GPU_ALLOW_GROWTH": "false"}
    gpus = visible_gpus(user)  # no nvidia-smi call: the user's list is the host
    assert gpus == ["GPU-aaaa-1", "GPU-bbbb-2", "5", "3"]
    envs = worker_environments(user, CLUSTER, gpus)
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["GPU-aaaa-1,GPU-bbbb-2", "5,3"]
    assert "CUDA_DEVICE_ORDER" not in envs[0]  # the user's indices keep the meaning they gave them
    assert envs[0]["TF_FORCE_GPU_ALLOW_GROWTH"] == "false"  # set by the user: theirs


def test_cuda_visible_devices_stops_where_cuda_stops():
    assert cuda_visible("0,2,-1,1") == ["0", "2"]  # CUDA: devices after an invalid entry are invisible
    assert cuda_visible("") == cuda_visible("-1") == []
    assert cuda_visible("MIG-0a1b2c3d-1111-2222-3333-444455556666") == ["MIG-0a1b2c3d-1111-2222-3333-444455556666"]


def test_gpus_are_counted_with_nvidia_smi_without_initialising_cuda(tmp_path, capsys):
    assert visible_gpus(fake_nvidia_smi(tmp_path, 4)) == FOUR_GPUS  # the MIG line is not a GPU
    assert visible_gpus({"PATH": str(tmp_path / "empty")}) == []  # no nvidia-smi: a CPU host
    assert visible_gpus(fake_nvidia_smi(tmp_path, 4, exit_code=9)) == []  # no driver: CUDA sees none either
    assert "`nvidia-smi -L` exited 9: CPU workers" in capsys.readouterr().err


def test_launch_refuses_more_workers_than_gpus_before_starting_any(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    out = tmp_path / "mw"
    with pytest.raises(BadInputError, match=r"3 workers on 2 GPU\(s\)"):
        launch(3, WorkerSpec(batch_size=30), out, env=fake_nvidia_smi(tmp_path, 2), timeout=5)
    assert not out.exists()  # no worker started, nothing written


def test_launch_counts_replicas_as_workers_times_gpus(tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    out = tmp_path / "mw"
    # 2 workers x 2 GPUs = 4 replicas: 30 splits over the 2 workers but not over the 4 replicas
    with pytest.raises(BadInputError, match=r"--batch-size 30 does not split evenly over 4 replicas"):
        launch(2, WorkerSpec(batch_size=30), out, env=fake_nvidia_smi(tmp_path, 4), timeout=5)
    with pytest.raises(BadInputError, match=r"--batch-size 30 does not split evenly over 4 replicas"):
        launch(2, WorkerSpec(batch_size=30), out, env={"CUDA_VISIBLE_DEVICES": "0,1,2,3"}, timeout=5)
    assert not out.exists()


def test_local_devices_are_this_tasks_own():
    from tf2bench.loops.distributed import local_devices

    names = [f"/job:worker/replica:0/task:{t}/device:{d}" for t in (0, 1, 10) for d in ("CPU:0", "GPU:0", "GPU:1")]
    assert local_devices(names, "worker", 1) == names[3:6]  # not task 10's, nor task 0's
    assert local_devices(names, None, None) == names  # no cluster: every device is local
    assert local_devices(["/device:CPU:0"], "worker", 0) == ["/device:CPU:0"]


SLEEP_S = 0.5  # the queued "update": long enough that a window missing it is unmistakably short


def test_a_multi_worker_window_ends_after_the_update_not_on_the_loss():
    """On an asynchronous CPU (tf.config.experimental.set_synchronous_execution(False), as a GPU is), the step
    returns its loss while a slow op queued after it (the optimizer's update on a GPU stream) still runs: reading
    the loss does not wait for it, the window's sync does."""
    import tensorflow as tf

    from tf2bench.loops.distributed import MultiWorker, sync_local_devices

    done: list[float] = []

    def update() -> list:
        time.sleep(SLEEP_S)
        done.append(time.perf_counter())
        return []

    def step(x, y):
        loss = tf.constant(0.25) * 4.0
        tf.py_function(update, [], [])  # queued after the loss
        return loss

    local = SimpleNamespace(task_type="localhost", task_id=0)  # this process's devices are /job:localhost/.../task:0
    strategy = SimpleNamespace(num_replicas_in_sync=2, cluster_resolver=local)
    loop = MultiWorker(SimpleNamespace(config=RunConfig(batch_size=32)), strategy=strategy)
    loop.step, loop.iterator, loop.position = step, iter([(None, None)] * 2), 1
    tf.config.experimental.set_synchronous_execution(False)
    try:
        assert float(step(None, None)) == 1.0
        assert not done, "the loss was read only after the queued op finished: this host cannot show the difference"
        sync_local_devices(strategy)  # drain the first step before timing a window
        assert len(done) == 1
        t0 = time.perf_counter()
        result = loop.run(1, 1)
    finally:
        tf.config.experimental.set_synchronous_execution(True)
    assert len(done) == 2
    assert done[1] <= t0 + result.seconds  # the update finished inside the window
    assert result.seconds >= SLEEP_S
    assert result.loss == 1.0
    assert loop.pairs == [(1, result.seconds, None)]


@pytest.mark.gpu
@pytest.mark.slow
def test_two_workers_on_real_gpus_each_train_on_their_own(tmp_path):
    gpus = visible_gpus(os.environ)
    if len(gpus) < 2:
        pytest.skip(f"needs 2 or more GPUs (this host shows {len(gpus)}): runs on a GPU runner")
    per = len(gpus) // 2
    spec = WorkerSpec(train_size=256, test_size=64, steps=3, rounds=2, warmup_steps=1, seed=3, batch_size=8 * 2 * per)
    info = launch(2, spec, tmp_path, storage=tmp_path / "benchmarks", timeout=600)
    assert (info["workers"], info["replicas"], info["per_replica_batch_size"]) == (2, 2 * per, 8)
    workers = [json.loads((tmp_path / f"worker-{i}.json").read_text()) for i in range(2)]
    assert [w["cuda_visible_devices"] for w in workers] == [",".join(g) for g in partition_gpus(gpus, 2)]
    assert all(w["tf_force_gpu_allow_growth"] == "true" for w in workers)
    assert all(len([d for d in w["local_devices"] if "GPU" in d]) == per for w in workers)
    assert workers[0]["final_fingerprint"] == workers[1]["final_fingerprint"]


@pytest.mark.slow
def test_workers_given_gpus_tensorflow_cannot_use_fail_the_run_naming_them(tmp_path, monkeypatch):
    """The fake host's partition reaches real worker processes (their logs say what each was given); their
    TensorFlow finds no such GPU, and a run that would quietly train on CPUs fails instead."""
    if visible_gpus(os.environ):
        pytest.skip("this host has GPUs: the fake host's indices would name real ones")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    spec = WorkerSpec(train_size=64, test_size=32, steps=1, rounds=1)
    with pytest.raises(WorkerFailedError, match=r"worker \d of 2 exited with code 1") as exc:
        launch(2, spec, tmp_path / "mw", env=fake_nvidia_smi(tmp_path, 4), timeout=120)
    message = str(exc.value)
    assert re.search(r"given 2 GPU\(s\) \(CUDA_VISIBLE_DEVICES=(0,1|2,3)\) but TensorFlow trains on \['/job", message)
    logs = [(tmp_path / "mw" / f"worker-{i}.log").read_text() for i in range(2)]
    for i, (log, gpus) in enumerate(zip(logs, ("0,1", "2,3"), strict=True)):
        assert f"worker {i} of 2: CUDA_VISIBLE_DEVICES={gpus} TF_FORCE_GPU_ALLOW_GROWTH=true" in log
