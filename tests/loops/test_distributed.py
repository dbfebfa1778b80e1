"""The distributed loops: mirrored over 2 logical CPUs (strong and weak scaling), multi_worker over 2 local
processes, failures bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tf2bench.errors import BadInputError, UnsupportedError
from tf2bench.loops import RunConfig
from tf2bench.multiworker import WorkerFailedError, launch
from tf2bench.multiworker.worker import FAIL_ENV, WorkerSpec
from tf2bench.suite.options import parse_options

# Tolerance, from float32 arithmetic. A distributed loop and its single-device reference run the same function on
# the same batches from the same weights; the one difference is the order of float32 sums: each replica sums the
# loss gradient over its share of the batch and the all-reduce adds the replicas' sums (oneDNN may also block the
# shorter per-replica reductions differently). The longest reduction behind any gradient element is the first
# conv's (kernel and bias): batch x its 30 x 30 output positions = K terms. Reordering a K-term float32 sum moves
# it by at most about 2 K u of the summed magnitudes (u = 2^-24, unit roundoff, both orders counted; no
# cancellation assumed): a relative gradient error delta <= 2 K u (3.4e-3 at batch 32). Adam moves each weight by
# lr m_hat / (sqrt(v_hat) + eps) per step, at most ~lr, and a relative error delta in the gradients moves that step by
# at most ~delta of it: after T steps the weights differ by at most T lr delta (3.4e-5 at batch 32, 10 steps, lr
# 1e-3); Adam's first moments m = sum (1 - beta1) beta1^k g carry the gradients' own relative error, delta.
# Measured here (10 steps, batch 32): 2.2e-7 for the weights (mirrored and fit_mirrored vs fit, vs tf_function).
# A loop that trains other batches misses it by far (weak scaling vs fit at 32: 1.4e-2), and a loss divided by the
# per-replica instead of the global batch doubles the moments (Adam's weights hide a gradient scale; m shows it).
UNIT_ROUNDOFF = 2.0**-24
FIRST_CONV_POSITIONS = 30 * 30  # cifar100 functional: Conv2D(16, 3) on 32 x 32 inputs
STEPS = 10  # warm-up 2 + 2 windows x 4, in every training below


def gradient_rel_error(global_batch: int) -> float:
    return 2 * global_batch * FIRST_CONV_POSITIONS * UNIT_ROUNDOFF


def weight_tolerance(global_batch: int, learning_rate: float = 1e-3) -> float:
    return STEPS * learning_rate * gradient_rel_error(global_batch)


# Logical devices must exist before TensorFlow initialises, so the checks run in a fresh interpreter; it leaves with
# os._exit once the result is printed (a clean interpreter exit waits ~30 s on the strategies' threads here).
SCRIPT_HEAD = textwrap.dedent(
    """
    import json, os, sys
    from tf2bench.loops import distributed as distribute
    devices = distribute.configure_devices(2)
    from tf2bench.measure import peak
    peak._PEAKS["float32"] = peak.measure_matmul_peak(n=512)  # a smaller MFU denominator: not checked here
    import numpy as np
    from tf2bench.workloads import data
    from tf2bench.suite.runner import BenchmarkRun
    from tf2bench.loops import RunConfig
    from tf2bench.workloads import get_workload

    wl = get_workload("cifar100")
    ds = data.load(wl, "synthetic", train_size=256, test_size=64)

    def train(loop, batch, **options):
        run = BenchmarkRun(wl, "functional", loop, ds, RunConfig(batch_size=batch, steps=4, rounds=2, seed=7,
                           warmup_steps=2, **options))
        run.warmup()
        for _ in range(run.rounds):
            run.window()
        return run

    def weight_distance(a, b):  # the largest absolute difference of any weight
        return max(float(np.max(np.abs(x - y)))
                   for x, y in zip(a.model.get_weights(), b.model.get_weights(), strict=True))

    def moments(run):  # Adam's first moments: they carry the gradients' scale
        return [v.numpy() for v in run.loop.ctx.optimizer.variables if "momentum" in v.path]

    def moment_distance(a, b):  # relative to each array's largest moment
        return max(float(np.max(np.abs(x - y)) / np.max(np.abs(y)))
                   for x, y in zip(moments(a), moments(b), strict=True))

    KEYS = ("scaling", "replicas", "global_batch_size", "per_replica_batch_size", "batch_size", "samples_per_step",
            "samples_per_sec", "samples_per_sec_global", "samples_per_sec_per_replica",
            "single_replica_samples_per_sec", "scaling_efficiency", "scaling_efficiency_windows", "strategy", "traces",
            "steps_total", "init_fingerprint", "final_fingerprint")

    def done(out):
        print("RESULT " + json.dumps({"devices": devices, **out}), flush=True)
        os._exit(0)
    """
)

# Strong scaling (the default): the suite's global batch 32, the same BatchPlan as fit, 16 per replica.
STRONG_CHECK = SCRIPT_HEAD + textwrap.dedent(
    """
    fit = train("fit", 32)
    single = train("tf_function", 32)
    mirrored = train("mirrored", 32)
    fit_mirrored = train("fit_mirrored", 32)
    info, fit_info = mirrored.result(), fit_mirrored.result()
    done({
        "mirrored_vs_fit": weight_distance(mirrored, fit),
        "mirrored_vs_tf_function": weight_distance(mirrored, single),
        "fit_mirrored_vs_fit": weight_distance(fit_mirrored, fit),
        "moments_mirrored": moment_distance(mirrored, single),
        "moments_fit_mirrored": moment_distance(fit_mirrored, fit),
        "moments": len(moments(single)),
        "fit_init": fit.init_fingerprint,
        "fit_mirrored": {k: fit_info[k] for k in KEYS},
        **{k: info[k] for k in KEYS},
    })
    """
)

# Weak scaling: 32 per replica, so global batches of 64; the reference is tf_function at 64.
WEAK_CHECK = SCRIPT_HEAD + textwrap.dedent(
    """
    single = train("tf_function", 64)
    mirrored = train("mirrored", 32, scaling="weak")
    info = mirrored.result()
    done({
        "mirrored_vs_tf_function": weight_distance(mirrored, single),
        "moments_mirrored": moment_distance(mirrored, single),
        "single_init": single.init_fingerprint,
        **{k: info[k] for k in KEYS},
    })
    """
)


# The tests above run on 2 logical CPU devices on any machine, a GPU runner too (its GPUs hidden from the script);
# the same checks on 2 real GPUs: test_strong_scaling_on_two_gpus.
HIDE_GPUS = {"CUDA_VISIBLE_DEVICES": ""}


def run_script(code: str, timeout: float = 300, env: dict[str, str] | None = None) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore", **(HIDE_GPUS if env is None else env)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def check_scaling_record(r: dict) -> None:
    """What every distributed result on 2 replicas records about its speed and its 1-replica twin."""
    assert r["replicas"] == 2
    assert r["strategy"] == "MirroredStrategy"
    assert r["samples_per_step"] == r["global_batch_size"]  # throughput counts global samples
    assert r["samples_per_sec_global"] == pytest.approx(r["samples_per_sec"])
    assert r["samples_per_sec_per_replica"] == pytest.approx(r["samples_per_sec"] / 2)
    assert r["single_replica_samples_per_sec"] > 0
    assert len(r["scaling_efficiency_windows"]) == 2  # one 1-replica window beside each timed window
    assert r["scaling_efficiency"] == pytest.approx(float(np.median(r["scaling_efficiency_windows"])))
    assert 0 < r["scaling_efficiency"] < 2
    assert r["steps_total"] == STEPS
    assert r["final_fingerprint"] != r["init_fingerprint"]  # it trained


@pytest.mark.slow
def test_strong_scaling_mirrored_loops_train_like_fit_on_the_same_batches():
    t0 = time.monotonic()
    r = run_script(STRONG_CHECK)
    assert len(r["devices"]) == 2
    assert all("CPU" in d for d in r["devices"])
    for rec in (r, r["fit_mirrored"]):
        assert rec["scaling"] == "strong"
        # the suite's batch is the global batch, fit's: split over the replicas
        assert (rec["batch_size"], rec["global_batch_size"], rec["per_replica_batch_size"]) == (32, 32, 16)
        assert rec["init_fingerprint"] == r["fit_init"]  # the same seeded start as fit
        check_scaling_record(rec)
    assert r["traces"] == 1
    tolerance = weight_tolerance(32)  # T lr 2 K u: see the derivation at the top of this file
    for pair in ("mirrored_vs_fit", "mirrored_vs_tf_function", "fit_mirrored_vs_fit"):
        assert r[pair] <= tolerance, f"{pair}: weights differ by {r[pair]:.2e} > {tolerance:.2e}"
    assert r["moments"] == 8  # Adam's first moment of each of the 8 trainable arrays
    for key in ("moments_mirrored", "moments_fit_mirrored"):
        assert r[key] <= gradient_rel_error(32), f"gradient scale is off: Adam's moments differ by {r[key]:.2e}"
    assert time.monotonic() - t0 < 60


@pytest.mark.gpu
@pytest.mark.slow
def test_strong_scaling_on_two_gpus():
    """MirroredStrategy over two real GPUs: the CPU test's checks, with TF32 off so float32's unit roundoff (and so
    the tolerance derived above) holds; with TF32 on, matmuls and convolutions round inputs to 10 mantissa bits."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if len(gpus) < 2:
        pytest.skip(f"needs 2 GPUs, this machine has {len(gpus)}: the same checks run on 2 logical CPUs above")
    r = run_script(STRONG_CHECK, env={"NVIDIA_TF32_OVERRIDE": "0"})
    assert len(r["devices"]) == 2
    assert all("GPU" in d for d in r["devices"])
    for rec in (r, r["fit_mirrored"]):
        assert (rec["batch_size"], rec["global_batch_size"], rec["per_replica_batch_size"]) == (32, 32, 16)
        check_scaling_record(rec)
    for pair in ("mirrored_vs_fit", "mirrored_vs_tf_function", "fit_mirrored_vs_fit"):
        assert r[pair] <= weight_tolerance(32), f"{pair}: weights differ by {r[pair]:.2e}"


@pytest.mark.slow
def test_weak_scaling_trains_per_replica_batches_and_records_the_global_batch():
    t0 = time.monotonic()
    r = run_script(WEAK_CHECK)
    assert r["scaling"] == "weak"
    assert (r["batch_size"], r["global_batch_size"], r["per_replica_batch_size"]) == (32, 64, 32)
    check_scaling_record(r)
    assert r["init_fingerprint"] == r["single_init"]
    tolerance = weight_tolerance(64)
    assert r["mirrored_vs_tf_function"] <= tolerance, f"vs tf_function at 64: {r['mirrored_vs_tf_function']:.2e}"
    assert r["moments_mirrored"] <= gradient_rel_error(64)
    assert time.monotonic() - t0 < 60


def efficiency_of(scaling: str, seconds: float, single_seconds: float) -> dict:
    """_Distributed.info on hand-made timings: one pair of 10-step windows, 2 replicas, global batch 32."""
    from types import SimpleNamespace

    from tf2bench.loops.distributed import Mirrored, split_batch

    loop = object.__new__(Mirrored)
    loop.strategy = SimpleNamespace(extended=SimpleNamespace(worker_devices=("CPU:0", "CPU:1")))
    loop.replicas, loop.scaling = 2, scaling
    loop.global_batch, loop.per_replica_batch = split_batch(32 if scaling == "strong" else 16, 2, scaling)
    loop.reference = SimpleNamespace(global_batch=32 if scaling == "strong" else 16)
    loop.pairs = [(10, seconds, single_seconds)]
    return loop.info()


def test_scaling_efficiency_is_speedup_over_replicas_under_strong_and_time_ratio_under_weak():
    # strong: 1 replica takes 1.5 s for what 2 replicas do in 1 s: speed-up 1.5 over 2 replicas = 0.75
    strong = efficiency_of("strong", 1.0, 1.5)
    assert strong["scaling"] == "strong"
    assert strong["scaling_efficiency"] == pytest.approx(0.75)
    assert strong["samples_per_sec_global"] == pytest.approx(320.0)
    assert strong["single_replica_samples_per_sec"] == pytest.approx(320 / 1.5)
    # weak: 1 replica trains 16 per step (the per-replica batch), 2 replicas 32 per step; same time = perfect
    weak = efficiency_of("weak", 1.0, 1.0)
    assert weak["scaling"] == "weak"
    assert (weak["global_batch_size"], weak["per_replica_batch_size"]) == (32, 16)
    assert weak["scaling_efficiency"] == pytest.approx(1.0)
    assert weak["single_replica_samples_per_sec"] == pytest.approx(160.0)


def test_strong_scaling_splits_the_global_batch_or_names_the_valid_choices():
    from tf2bench.loops.distributed import split_batch

    assert split_batch(32, 2, "strong") == (32, 16)
    assert split_batch(32, 1, "strong") == (32, 32)
    assert split_batch(33, 2, "weak") == (66, 33)
    with pytest.raises(BadInputError, match=r"--batch-size 33 does not split evenly over 2 replicas .*"
                       r"use a multiple of 2 \(32 or 34\), or --scaling weak for 33 per replica"):  # fmt: skip
        split_batch(33, 2, "strong")
    with pytest.raises(BadInputError, match=r"use a multiple of 4 \(4\)"):
        split_batch(3, 4, "strong")
    with pytest.raises(BadInputError, match=r"unknown scaling 'linear'; valid: strong, weak"):
        RunConfig(scaling="linear")
    assert RunConfig().scaling == "strong"


def test_multi_worker_launch_refuses_a_batch_it_cannot_split_before_starting_workers(tmp_path):
    with pytest.raises(BadInputError, match=r"--batch-size 32 does not split evenly over 3 replicas"):
        launch(3, TINY, tmp_path, timeout=5, **CPU_WORKERS)
    assert not list(tmp_path.iterdir())  # no worker started, nothing written
    argv = WorkerSpec(scaling="weak", mixed_precision="bfloat16").argv()  # what every worker is started with
    assert argv[argv.index("--scaling") + 1] == "weak"
    assert argv[argv.index("--mixed-precision") + 1] == "bfloat16"
    with pytest.raises(BadInputError, match=r"^unknown preset 'fast'; valid: "):  # the suite's checks, before any
        launch(2, WorkerSpec(preset="fast"), tmp_path, timeout=5, **CPU_WORKERS)  # worker starts
    assert not list(tmp_path.iterdir())


TINY = WorkerSpec(train_size=256, test_size=64, steps=3, rounds=2, warmup_steps=1, seed=3)
# One CPU replica per worker on any host, a GPU runner too (its GPUs hidden): the CPU path, with the figures below.
# The GPU partition and a run on real GPUs: tests/test_multiworker_gpu.py.
CPU_WORKERS = {"gpus_per_worker": 0}


def load_weights(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


@pytest.mark.slow
def test_two_local_workers_finish_with_identical_weights_and_the_chief_saves_a_numbered_run(tmp_path, capsys):
    from pytest_benchmark.utils import get_machine_id

    from tf2bench import cli
    from tf2bench.analysis import runs

    storage = tmp_path / "benchmarks"
    earlier = storage / get_machine_id() / "0001_earlier_20260101_000000.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text("{}")  # a run already there: the chief's takes the next number and leaves this one alone
    info = launch(2, TINY, tmp_path, storage=storage, timeout=300, **CPU_WORKERS)
    (path,) = storage.glob("*/0002_*.json")
    assert info["run_file"] == str(path)
    assert earlier.read_text() == "{}"
    saved = runs.load(path, require_round_data=True)  # what report and compare read
    (bench,) = saved.benchmarks
    assert bench["extra_info"] == {k: v for k, v in info.items() if k != "run_file"}
    assert (bench["stats"]["data"], bench["stats"]["rounds"]) == (info["window_s"], 2)  # the windows: round data
    assert (bench["fullname"].split("::")[0], saved.suite["source"]) == ("tf2bench.multiworker",) * 2
    assert (info["loop"], info["strategy"], info["workers"]) == ("multi_worker", "CollectiveAllReduceStrategy", 2)
    # strong scaling, the default: the spec's batch 32 is the global batch, 16 on each worker
    assert info["scaling"] == "strong"
    assert (info["replicas"], info["global_batch_size"], info["per_replica_batch_size"]) == (2, 32, 16)
    assert info["samples_per_sec"] > 0
    assert info["rounds"] == 2
    assert all(c.startswith("127.0.0.1:") for c in info["cluster"])
    workers = [json.loads((tmp_path / f"worker-{i}.json").read_text()) for i in range(2)]
    assert [w["task_index"] for w in workers] == [0, 1]
    # one CPU device each: replicas = workers x local devices = 2
    assert [w["local_devices"] for w in workers] == [[f"/job:worker/replica:0/task:{i}/device:CPU:0"] for i in (0, 1)]
    assert workers[0]["final_fingerprint"] == workers[1]["final_fingerprint"] == info["final_fingerprint"]
    assert info["final_fingerprint"] != info["init_fingerprint"]  # they trained
    for a, b in zip(*(load_weights(tmp_path / f"worker-{i}-weights.npz") for i in range(2)), strict=True):
        np.testing.assert_array_equal(a, b)
    capsys.readouterr()
    assert cli.main(["report", str(path), "--out", str(tmp_path / "reports")]) == 0  # read unchanged
    (row,) = [line for line in capsys.readouterr().out.splitlines() if "multi_worker" in line]
    assert row.split()[:3] == ["cifar100", "functional", "multi_worker"]
    assert (tmp_path / "reports" / path.stem / "report.md").is_file()


@pytest.mark.slow
def test_a_worker_that_dies_fails_the_run_quickly_and_clearly(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(WorkerFailedError, match=r"worker 1 of 2 exited with code 17; stopped the others") as exc:
        launch(2, TINY, tmp_path, storage=tmp_path / "benchmarks", timeout=240, env={FAIL_ENV: "1"}, **CPU_WORKERS)
    elapsed = time.monotonic() - t0
    assert elapsed < 120, f"took {elapsed:.0f} s to notice a dead worker"  # not the 240 s limit: at once
    assert f"{FAIL_ENV}=1, exiting after warm-up" in str(exc.value)  # the dead worker's log tail
    assert not list(tmp_path.glob("benchmarks/*/*.json"))  # no run saved


def test_a_run_that_outlives_its_limit_is_killed(tmp_path):
    t0 = time.monotonic()
    with pytest.raises(WorkerFailedError, match=r"workers \[0, 1\] still running after 2 s; killed them"):
        launch(2, TINY, tmp_path, storage=tmp_path / "benchmarks", timeout=2, **CPU_WORKERS)
    assert time.monotonic() - t0 < 30


def test_multi_worker_outside_a_worker_is_skipped_with_the_reason():
    from tf2bench.loops import RunConfig
    from tf2bench.suite.runner import BenchmarkRun
    from tf2bench.workloads import data, get_workload

    wl = get_workload("cifar100")
    ds = data.load(wl, "synthetic", train_size=64, test_size=32)
    with pytest.raises(UnsupportedError, match=r"python -m tf2bench.multiworker launch"):
        BenchmarkRun(wl, "functional", "multi_worker", ds, RunConfig(steps=1, rounds=1))


def test_distributed_loops_are_opt_in():
    default = parse_options({}).loops
    assert not {"mirrored", "fit_mirrored", "multi_worker"} & set(default)
    named = parse_options({"loop": "tf_data,mirrored,fit_mirrored", "devices": "2"})
    assert named.loops == ("tf_data", "mirrored", "fit_mirrored")
    assert named.devices == 2
    assert parse_options({}).devices is None


def test_devices_asked_for_too_late_say_so():
    import tensorflow as tf

    from tf2bench.loops.distributed import DevicesTooLateError, configure_devices

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


# A planted defect: a mirrored loop whose replicas do not all-reduce their gradients. Replica 0 applies only its own
# shard's mean gradient (its loss weighted by N, the others' by 0: what each replica would apply alone).
NO_ALLREDUCE_CHECK = SCRIPT_HEAD + textwrap.dedent(
    """
    import keras
    import tensorflow as tf
    from pathlib import Path
    from tf2bench.analysis import report
    from tf2bench.loops.distributed import Mirrored
    from tf2bench.analysis.runs import SavedRun
    from tf2bench.loops import register_loop

    @register_loop
    class NoAllReduce(Mirrored):
        name = "planted_no_allreduce"
        description = "planted defect: each replica applies only its own gradient"

        def setup(self):
            n = self.replicas

            class OwnGradientOnly(keras.losses.SparseCategoricalCrossentropy):
                def call(self, y_true, y_pred):
                    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
                    return super().call(y_true, y_pred) * tf.cast(tf.equal(replica, 0), y_pred.dtype) * n

            self.ctx.loss_fn = OwnGradientOnly()
            super().setup()

    records = [{**train(v, 32).result(), "repeat": 0} for v in ("fit", "mirrored", "planted_no_allreduce")]
    df = report.build([SavedRun(path=Path("x.json"), benchmarks=[{"extra_info": r} for r in records])])
    row = df.set_index("loop")
    done({v: {k: (None if isinstance(row.loc[v, k], float) and row.loc[v, k] != row.loc[v, k] else row.loc[v, k])
              for k in ("verdict", "verdict_note", "weights_verdict", "weight_distance")}
          for v in ("mirrored", "planted_no_allreduce")})
    """
)


@pytest.mark.slow
def test_a_mirrored_loop_without_all_reduce_differs():
    out = run_script(NO_ALLREDUCE_CHECK)
    assert out["mirrored"]["verdict"] == "equivalent", out["mirrored"]
    assert out["mirrored"]["weights_verdict"] == "same math"
    broken = out["planted_no_allreduce"]
    assert broken["verdict"] == "DIFFERS", broken
    assert broken["weights_verdict"] == "DIFFERENT MATH"
    assert broken["weight_distance"] > 0.05  # half the batch's gradient missing: far beyond fp32 rounding (2e-3)
