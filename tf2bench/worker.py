"""One ``multi_worker`` worker process: trains its replica in lockstep with the others; the chief (worker 0)
records the benchmark and saves it as an ordinary numbered run. Launched by ``tf2bench.multiworker``, or one
per host with ``TF_CONFIG`` set (see that module)."""

from __future__ import annotations

import io
import json
import os
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tf2bench.analysis import runs
from tf2bench.errors import Tf2benchError
from tf2bench.loops import RunConfig
from tf2bench.storage import atomic_write

WORKER_EXIT_TIMEOUT = 124
FAIL_ENV = "TF2BENCH_FAIL_WORKER"  # fault injection: this worker index exits right after its warm-up


class WorkerFailedError(Tf2benchError):
    """A worker exited with an error or the run outlived its time limit; the others were stopped."""

    exit_code = 1


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker trains: the same case, so their replicas compute one model."""

    workload: str = "cifar100"
    api: str = "functional"
    dataset: str = "synthetic"
    train_size: int | None = None
    test_size: int | None = None
    batch_size: int = 32  # the global batch, split over the workers (strong); per replica with scaling="weak"
    steps: int = 20
    rounds: int = 3
    warmup_steps: int = 1
    seed: int = 0
    scaling: str = "strong"  # as the suite's --scaling (RunConfig.scaling; one replica per CPU worker)

    def argv(self) -> list[str]:
        out = []
        for key, value in asdict(self).items():
            if value is not None:
                out += [f"--{key.replace('_', '-')}", str(value)]
        return out


def scaling_record(info: dict[str, Any], single_replica_samples_per_sec: float) -> dict[str, Any]:
    """The keys ``launch_scaling`` adds to the N-worker record, from the 1-worker run's samples/s."""
    return {
        "single_replica_samples_per_sec": single_replica_samples_per_sec,
        "scaling_efficiency": info["samples_per_sec"] / (info["replicas"] * single_replica_samples_per_sec),
        "scaling_method": "sequential launches: 1 worker, then N",
    }


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    atomic_write(path, json.dumps(doc, indent=1, default=str).encode())  # readers never see half a file


def run_worker(
    spec: WorkerSpec,
    out: Path,
    timeout: float | None = None,
    *,
    storage: Path = runs.DEFAULT_STORAGE,
    single_replica_samples_per_sec: float | None = None,
) -> dict[str, Any]:
    """Train the case as one worker of the cluster in ``TF_CONFIG``; the chief (index 0) saves the benchmark
    as a numbered run under ``storage`` and names that file in its ``worker-0.json``."""
    started = time.perf_counter()
    if "TF_CONFIG" not in os.environ:
        raise WorkerFailedError("a multi_worker worker needs TF_CONFIG (cluster and task); see tf2bench.multiworker")
    config = json.loads(os.environ["TF_CONFIG"])
    index, n = int(config["task"]["index"]), len(config["cluster"]["worker"])
    if timeout:  # bounded: a peer lost mid-collective must not keep this process forever
        watchdog = threading.Timer(timeout, os._exit, (WORKER_EXIT_TIMEOUT,))
        watchdog.daemon = True
        watchdog.start()

    import tensorflow as tf

    # The strategy first: it starts this worker's collective server before any other TensorFlow work.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    from tf2bench.loops import distributed as distribute
    from tf2bench.runner import BenchmarkRun, run_case
    from tf2bench.workloads import build, data, get_workload

    distribute.set_worker_strategy(strategy)
    workload = get_workload(spec.workload)
    dataset = data.load(workload, spec.dataset, train_size=spec.train_size, test_size=spec.test_size)
    cfg = RunConfig(
        batch_size=spec.batch_size,
        steps=spec.steps,
        rounds=spec.rounds,
        warmup_steps=spec.warmup_steps,
        seed=spec.seed,
        scaling=spec.scaling,
    )
    run = BenchmarkRun(workload, spec.api, "multi_worker", dataset, cfg)

    def rounds(window: Any, n: int) -> None:  # after the warm-up: the test hook that kills a worker sits here
        if os.environ.get(FAIL_ENV) == str(index):
            print(f"worker {index}: {FAIL_ENV}={index}, exiting after warm-up", flush=True)
            os._exit(17)
        for _ in range(n):
            window()

    if index == 0:
        from tensorflow.python.eager import context

        from tf2bench import peak

        # SyncDevice fails in a worker ("Haven't set up remote eager worker"): the MFU peak's matmul windows end
        # on the eager executor instead, exact on CPU workers (their ops run to completion when called).
        peak.sync_devices = context.async_wait
    info = run_case(run, rounds=rounds, record=index == 0, case_id=f"multi_worker-{spec.workload}-{spec.api}")
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "task_index": index,
        "workers": n,
        "init_fingerprint": run.init_fingerprint,
        "final_fingerprint": build.weights_fingerprint(run.model),
        "window_s": [w.seconds for w in run.windows],
        "train_loss": run.windows[-1].loss,
    }
    weights = io.BytesIO()
    np.savez(weights, *run.model.get_weights())
    atomic_write(out / f"worker-{index}-weights.npz", weights.getvalue())  # for checks across workers
    if index != 0:
        _write_json(out / f"worker-{index}.json", record)
        return record
    info = {**info, "workers": n, "cluster": config["cluster"]["worker"], "spec": asdict(spec)}
    if single_replica_samples_per_sec is not None:
        info.update(scaling_record(info, single_replica_samples_per_sec))
    path = _save_run(info, spec, time.perf_counter() - started, Path(storage))
    print(f"multi_worker: saved run {path}", flush=True)
    _write_json(out / "worker-0.json", {**record, "run_file": str(path)})  # last: launch() reads the run from it
    return info


def _save_run(info: dict[str, Any], spec: WorkerSpec, wall_s: float, storage: Path) -> Path:
    """The chief's benchmark as a new numbered run under ``storage``: the document and the save of
    ``tf2bench.benchmark(save=...)`` (pytest-benchmark's FileStorage, atomic, never over an earlier run)."""
    from tf2bench.api import _benchmark_json, _run_json, _save
    from tf2bench.suite import Case

    case = Case(repeat=0, seed=spec.seed, workload=info["workload"], api=spec.api, variant="multi_worker")
    bench = _benchmark_json(case, info["window_s"], info, module="tf2bench.multiworker")  # window times: round data
    record = {  # SuiteOptions.record's keys; no preset: the spec sets steps, rounds and sizes
        "preset": "none",
        "dataset": spec.dataset,
        "repeat": 1,
        "seeds": 1,
        "wall_s": wall_s,
        "harness_overhead": None,
        "source": "tf2bench.multiworker",
        "workers": info["workers"],
        "cluster": info["cluster"],
    }
    return _save(_run_json([bench], record), storage)
