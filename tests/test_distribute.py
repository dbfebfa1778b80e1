"""The distributed loops: mirrored over 2 logical CPUs, multi_worker over 2 local processes, failures bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tf2bench.errors import UnsupportedError
from tf2bench.multiworker import FAIL_ENV, WorkerFailedError, WorkerSpec, launch
from tf2bench.suite import parse_options

# mirrored and fit_mirrored (2 replicas x 32) vs tf_function (batch 64) on the same global batches: the
# per-replica losses are summed over half batches and all-reduced, so float32 sums run in another order.
# Measured (relative to each array's largest value): weights 1.1e-6 after this test's 10 steps, Adam's moments
# 2.0e-6; 7.2e-6 after 12 steps on 512 samples; multi_worker vs tf_function 1.2e-6.
MIRRORED_TOLERANCE = 5e-5

# Logical devices must exist before TensorFlow initialises, so the check runs in a fresh interpreter.
MIRRORED_CHECK = textwrap.dedent(
    """
    import json, sys
    from tf2bench import distribute
    devices = distribute.configure_devices(2)
    from tf2bench import peak
    peak._PEAK = peak.measure_matmul_peak(n=512)  # MFU's denominator, smaller: the figure is not checked here
    import numpy as np
    from tf2bench import data
    from tf2bench.runner import BenchmarkRun
    from tf2bench.variants import RunConfig
    from tf2bench.workloads import get_workload

    wl = get_workload("cifar100")
    ds = data.load(wl, "synthetic", train_size=256, test_size=64)

    def train(variant, batch):
        run = BenchmarkRun(wl, "functional", variant, ds, RunConfig(batch_size=batch, steps=4, rounds=2, seed=7,
                           warmup_steps=2))
        run.warmup()
        for _ in range(run.rounds):
            run.window()
        return run

    single = train("tf_function", 64)  # one device, the mirrored run's global batch
    mirrored = train("mirrored", 32)  # 32 per replica x 2 replicas
    rel = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
              for a, b in zip(mirrored.model.get_weights(), single.model.get_weights(), strict=True))
    # Adam's update m / sqrt(v) mostly cancels a gradient's scale; its first moments carry it (m = sum (1-beta1) g):
    # a loss divided by the wrong batch shows there directly (measured: 1.15 relative with a per-replica mean).
    def moments(run):
        return [v.numpy() for v in run.variant.ctx.optimizer.variables if "momentum" in v.path]

    m_single, m_mirrored = moments(single), moments(mirrored)
    moment_rel = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                     for a, b in zip(m_mirrored, m_single, strict=True))
    fit = train("fit_mirrored", 32)
    fit_rel = max(float(np.max(np.abs(a - b)) / np.max(np.abs(b)))
                  for a, b in zip(fit.model.get_weights(), single.model.get_weights(), strict=True))
    info = mirrored.result()
    print("RESULT " + json.dumps({"devices": devices, "rel": rel, "fit_rel": fit_rel, "moment_rel": moment_rel,
          "moments": len(m_single),
          "fit_replicas": fit.result()["replicas"], "init_same": mirrored.init_fingerprint
          == single.init_fingerprint, "trained": info["final_fingerprint"] != info["init_fingerprint"],
          **{k: info[k] for k in ("replicas", "global_batch_size", "per_replica_batch_size", "batch_size",
             "samples_per_step", "samples_per_sec", "samples_per_sec_global", "samples_per_sec_per_replica",
             "single_replica_samples_per_sec", "scaling_efficiency", "scaling_efficiency_windows", "strategy",
             "traces", "steps_total")}}))
    """
)


def run_script(code: str, timeout: float = 300) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


@pytest.mark.slow
def test_mirrored_loops_on_two_logical_cpus_train_like_one_device_at_the_global_batch():
    r = run_script(MIRRORED_CHECK)
    assert len(r["devices"]) == 2
    assert all("CPU" in d for d in r["devices"])
    assert r["strategy"] == "MirroredStrategy"
    assert r["replicas"] == 2
    assert (r["per_replica_batch_size"], r["global_batch_size"], r["batch_size"]) == (32, 64, 32)
    assert r["samples_per_step"] == 64  # throughput counts global samples
    assert r["steps_total"] == 10
    assert r["init_same"]
    assert r["trained"]
    assert r["rel"] <= MIRRORED_TOLERANCE, f"mirrored differs from single-device tf_function by {r['rel']:.2e}"
    assert r["moments"] == 8  # Adam's first moment of each of the 8 trainable arrays
    assert r["moment_rel"] <= MIRRORED_TOLERANCE, (
        f"gradient scale is off: Adam's moments differ by {r['moment_rel']:.2e}"
    )
    assert r["fit_rel"] <= MIRRORED_TOLERANCE, f"fit_mirrored differs by {r['fit_rel']:.2e}"
    assert r["fit_replicas"] == 2
    assert r["samples_per_sec_global"] == pytest.approx(r["samples_per_sec"])
    assert r["samples_per_sec_per_replica"] == pytest.approx(r["samples_per_sec"] / 2)
    assert r["single_replica_samples_per_sec"] > 0
    assert len(r["scaling_efficiency_windows"]) == 2  # one 1-replica window beside each timed window
    assert r["scaling_efficiency"] == pytest.approx(float(np.median(r["scaling_efficiency_windows"])))
    assert 0 < r["scaling_efficiency"] < 2
    assert r["traces"] == 1


TINY = WorkerSpec(train_size=256, test_size=64, steps=3, rounds=2, warmup_steps=1, seed=3)


def load_weights(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


@pytest.mark.slow
def test_two_local_workers_finish_with_identical_weights_and_the_chief_saves_the_result(tmp_path):
    info = launch(2, TINY, tmp_path, timeout=300)
    saved = json.loads((tmp_path / "result.json").read_text())
    assert saved == json.loads(json.dumps(info))
    assert (info["variant"], info["strategy"], info["workers"]) == ("multi_worker", "CollectiveAllReduceStrategy", 2)
    assert (info["replicas"], info["global_batch_size"], info["per_replica_batch_size"]) == (2, 64, 32)
    assert info["samples_per_sec"] > 0
    assert info["rounds"] == 2
    assert all(c.startswith("127.0.0.1:") for c in info["cluster"])
    workers = [json.loads((tmp_path / f"worker-{i}.json").read_text()) for i in range(2)]
    assert [w["task_index"] for w in workers] == [0, 1]
    assert workers[0]["final_fingerprint"] == workers[1]["final_fingerprint"] == info["final_fingerprint"]
    assert info["final_fingerprint"] != info["init_fingerprint"]  # they trained
    for a, b in zip(*(load_weights(tmp_path / f"worker-{i}-weights.npz") for i in range(2)), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_worker_that_dies_fails_the_run_quickly_and_clearly(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(WorkerFailedError, match=r"worker 1 of 2 exited with code 17; stopped the others") as exc:
        launch(2, TINY, tmp_path, timeout=240, env={FAIL_ENV: "1"})
    elapsed = time.monotonic() - t0
    assert elapsed < 120, f"took {elapsed:.0f} s to notice a dead worker"  # not the 240 s limit: at once
    assert f"{FAIL_ENV}=1, exiting after warm-up" in str(exc.value)  # the dead worker's log tail
    assert not (tmp_path / "result.json").exists()


def test_a_run_that_outlives_its_limit_is_killed(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(WorkerFailedError, match=r"workers \[0, 1\] still running after 2 s; killed them"):
        launch(2, TINY, tmp_path, timeout=2)
    assert time.monotonic() - t0 < 30


def test_multi_worker_outside_a_worker_is_skipped_with_the_reason():
    from tf2bench import data
    from tf2bench.runner import BenchmarkRun
    from tf2bench.variants import RunConfig
    from tf2bench.workloads import get_workload

    wl = get_workload("cifar100")
    ds = data.load(wl, "synthetic", train_size=64, test_size=32)
    with pytest.raises(UnsupportedError, match=r"python -m tf2bench.multiworker launch"):
        BenchmarkRun(wl, "functional", "multi_worker", ds, RunConfig(steps=1, rounds=1))


def test_distributed_loops_are_opt_in():
    default = parse_options({}).variants
    assert not {"mirrored", "fit_mirrored", "multi_worker"} & set(default)
    named = parse_options({"variant": "tf_data,mirrored,fit_mirrored", "devices": "2"})
    assert named.variants == ("tf_data", "mirrored", "fit_mirrored")
    assert named.devices == 2
    assert parse_options({}).devices is None


def test_devices_asked_for_too_late_say_so():
    import tensorflow as tf

    from tf2bench.distribute import DevicesTooLateError, configure_devices

    tf.config.list_logical_devices()  # initialises the runtime, as any earlier TensorFlow work would
    with pytest.raises(DevicesTooLateError, match=r"--devices 3: too late, TensorFlow has already initialised"):
        configure_devices(3)


def test_a_worker_without_tf_config_says_what_it_needs(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    proc = subprocess.run(
        [sys.executable, "-m", "tf2bench.multiworker", "worker", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 1
    assert "a multi_worker worker needs TF_CONFIG (cluster and task)" in proc.stderr
