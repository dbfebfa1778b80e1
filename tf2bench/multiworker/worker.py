"""One ``multi_worker`` worker process: trains its replicas (its GPUs, or its CPU) in lockstep with the others; the
chief (worker 0) records the benchmark and saves it as an ordinary numbered run (tf2bench.saved.runfile). The case
is planned as every entry point's is: the spec's options parsed (tf2bench.suite.options) and planned
(tf2bench.suite.plan). Launched by ``multiworker.launch``, or one per host with ``TF_CONFIG`` set (see that module);
the environment the launcher gives each worker (TF_CONFIG, its own GPUs) is decided here, by pure functions."""

from __future__ import annotations

import functools
import io
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tf2bench.analysis import runs
from tf2bench.errors import BadInputError, Tf2benchError
from tf2bench.saved import runfile
from tf2bench.saved.storage import atomic_write
from tf2bench.suite.options import Case, SuiteOptions, parse_options
from tf2bench.suite.plan import Planner

WORKER_EXIT_TIMEOUT = 124
FAIL_ENV = "TF2BENCH_FAIL_WORKER"  # fault injection: this worker index exits right after its warm-up


class WorkerFailedError(Tf2benchError):
    """A worker exited with an error or the run outlived its time limit; the others were stopped."""

    exit_code = 1


@dataclass(frozen=True)
class WorkerSpec:
    """What every worker trains: the same case, so their replicas compute one model. The fields are suite options of
    the same names (tf2bench.suite.options.OPTIONS), checked the same way; None: the preset's."""

    workload: str = "cifar100"
    api: str = "functional"
    dataset: str = "synthetic"
    train_size: int | None = None
    test_size: int | None = None
    batch_size: int = 32  # the global batch, split over the replicas (strong); per replica with scaling="weak"
    steps: int = 20
    rounds: int = 3
    warmup_steps: int = 1
    seed: int = 0
    scaling: str = "strong"  # as the suite's --scaling (RunConfig.scaling); replicas = workers x GPUs (or 1 CPU) each
    preset: str = "quick"  # what the fields left None take (the sizes); steps are given, so windows are not calibrated
    mixed_precision: str = "auto"

    def options(self, devices: int | None = None) -> SuiteOptions:
        """The spec as the suite's options of the multi_worker loop, validated once, as every entry point's are;
        ``devices``: the replicas, so a batch strong scaling cannot split fails before any worker starts."""
        return parse_options({**asdict(self), "loop": "multi_worker", "devices": devices}, environ={})

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


# Where each worker runs: its TF_CONFIG and, on a GPU host, GPUs of its own. Pure functions of the launcher's
# environment (nvidia-smi aside), so a fake host tests them.


def tf_config(cluster: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})


def cuda_visible(value: str) -> list[str]:
    """The GPUs a ``CUDA_VISIBLE_DEVICES`` value shows, in its order: indices or UUIDs (GPU-..., MIG-...). CUDA
    stops at the first entry that is neither (``-1``, an empty one), and so does this: ``""`` or ``-1`` is none."""
    out = []
    for entry in (e.strip() for e in value.split(",")):
        if not re.fullmatch(r"\d+|(GPU|MIG)-\S+", entry):
            break
        out.append(entry)
    return out


def visible_gpus(env: Mapping[str, str]) -> list[str]:
    """The GPUs workers started with ``env`` may use, counted without initialising CUDA in this process: the user's
    ``CUDA_VISIBLE_DEVICES`` if set (their choice, partitioned as given), else ``nvidia-smi -L``'s indices, else none.

    Not tf.config.list_physical_devices: it initialises CUDA here, a context on every GPU (and seconds) in a process
    that trains nothing. The workers are fresh interpreters (Popen execs them), never forks of a CUDA process."""
    if "CUDA_VISIBLE_DEVICES" in env:
        return cuda_visible(env["CUDA_VISIBLE_DEVICES"])
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi is None:
        return []
    try:
        proc = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=60, env=dict(env))
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"multi_worker: `nvidia-smi -L` failed ({exc}): CPU workers", file=sys.stderr)
        return []
    if proc.returncode != 0:  # e.g. no driver loaded: CUDA would see no GPU either
        print(f"multi_worker: `nvidia-smi -L` exited {proc.returncode}: CPU workers", file=sys.stderr)
        return []
    return re.findall(r"^GPU (\d+):", proc.stdout, flags=re.MULTILINE)


def partition_gpus(gpus: Sequence[str], workers: int, per_worker: int | None = None) -> list[list[str]]:
    """Each worker's GPUs: contiguous, equal, disjoint groups of ``gpus``, ``per_worker`` each (default: as many
    as divide evenly; 0: none, CPU workers). BadInputError when the workers cannot each have their own."""
    if per_worker is None:
        if gpus and workers > len(gpus):
            raise BadInputError(
                f"multi_worker: {workers} workers on {len(gpus)} GPU(s) ({','.join(gpus)}): each worker needs GPUs "
                f"of its own (NCCL refuses two ranks on one device); use --workers {len(gpus)} or fewer, or "
                "--gpus-per-worker 0 for CPU workers"
            )
        per_worker = len(gpus) // workers
    elif per_worker < 0 or workers * per_worker > len(gpus):
        raise BadInputError(
            f"multi_worker: --gpus-per-worker {per_worker} x {workers} workers needs {workers * per_worker} GPUs, "
            f"{len(gpus)} are visible ({','.join(gpus) or 'none'}); valid: 0 to {len(gpus) // workers}"
        )
    return [list(gpus[i * per_worker : (i + 1) * per_worker]) for i in range(workers)]


def worker_environments(
    env: Mapping[str, str], cluster: Sequence[str], gpus: Sequence[str], per_worker: int | None = None
) -> list[dict[str, str]]:
    """The environment of each worker: ``env`` plus its ``TF_CONFIG`` and, on a GPU host, its own GPUs
    (``CUDA_VISIBLE_DEVICES``, see partition_gpus) with ``TF_FORCE_GPU_ALLOW_GROWTH=true`` unless ``env`` sets it.
    No GPU (``gpus`` empty): only TF_CONFIG, the CPU behaviour. Indices from nvidia-smi come with
    ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` (nvidia-smi's order; CUDA's default is fastest first) unless set."""
    groups = partition_gpus(gpus, len(cluster), per_worker)
    out = []
    for i, group in enumerate(groups):
        worker = {**env, "TF_CONFIG": tf_config(list(cluster), i)}
        if gpus:
            if "CUDA_VISIBLE_DEVICES" not in env:
                worker.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
            worker["CUDA_VISIBLE_DEVICES"] = ",".join(group)  # "": a CPU worker (--gpus-per-worker 0)
            worker.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
        out.append(worker)
    return out


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
    index, cluster = task()
    planner = Planner(spec.options())  # a bad spec fails here, before any TensorFlow work
    (case,) = planner.cases()
    if timeout:  # bounded: a peer lost mid-collective must not keep this process forever
        watchdog = threading.Timer(timeout, os._exit, (WORKER_EXIT_TIMEOUT,))
        watchdog.daemon = True
        watchdog.start()
    gpus = {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES", "TF_FORCE_GPU_ALLOW_GROWTH") if k in os.environ}
    settings = " ".join(f"{k}={v}" for k, v in gpus.items()) or "no GPU settings"  # what the launcher gave it
    print(f"worker {index} of {len(cluster)}: {settings}", flush=True)
    strategy = _strategy(index, gpus.get("CUDA_VISIBLE_DEVICES", ""))
    from tf2bench.suite.runner import run_case

    run = planner.prepare(case)
    info = run_case(run, rounds=functools.partial(_rounds, index), result=index == 0, case_id=case.id)
    out.mkdir(parents=True, exist_ok=True)
    record = _worker_record(run, out, index, cluster, strategy, gpus)
    if index != 0:
        _write_json(out / f"worker-{index}.json", record)
        return record
    info = {**info, "workers": len(cluster), "cluster": cluster, "spec": asdict(spec)}
    if single_replica_samples_per_sec is not None:
        info.update(scaling_record(info, single_replica_samples_per_sec))
    header = {"source": "tf2bench.multiworker", "workers": len(cluster), "cluster": cluster}
    path = save_run(planner, case, info, header, time.perf_counter() - started, Path(storage))
    print(f"multi_worker: saved run {path}", flush=True)
    _write_json(out / "worker-0.json", {**record, "run_file": str(path)})  # last: launch() reads the run from it
    return info


def task() -> tuple[int, list[str]]:
    """This worker's index and the cluster's addresses, from ``TF_CONFIG``."""
    if "TF_CONFIG" not in os.environ:
        raise WorkerFailedError(
            "a multi_worker worker needs TF_CONFIG (cluster and task); see python -m tf2bench.multiworker"
        )
    config = json.loads(os.environ["TF_CONFIG"])
    return int(config["task"]["index"]), list(config["cluster"]["worker"])


def _strategy(index: int, cuda_visible_devices: str) -> Any:
    """The MultiWorkerMirroredStrategy, first of any TensorFlow work (it starts this worker's collective server),
    made the multi_worker loop's; the chief's MFU peak then ends its windows on its own devices too."""
    import tensorflow as tf

    from tf2bench.loops import distributed
    from tf2bench.measure import peak

    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    given, used = cuda_visible(cuda_visible_devices), strategy.extended.worker_devices
    if given and len(given) != sum("GPU" in d for d in used):  # else a "GPU" run would quietly train elsewhere
        raise WorkerFailedError(
            f"worker {index}: given {len(given)} GPU(s) (CUDA_VISIBLE_DEVICES={cuda_visible_devices}) but "
            f"TensorFlow trains on {list(used)}: a CPU-only TensorFlow, or GPUs CUDA cannot open; "
            "--gpus-per-worker 0 runs CPU workers"
        )
    distributed.set_worker_strategy(strategy)
    if index == 0:
        # sync_devices() fails in a worker (it also targets the peers' devices): the MFU peak's matmul windows end
        # on this worker's own devices' sync, as the loop's windows do.
        peak.sync_devices = functools.partial(distributed.sync_local_devices, strategy)
    return strategy


def _rounds(index: int, window: Any, n: int) -> None:
    """The timed rounds, after the warm-up: where the test hook that kills a worker sits."""
    if os.environ.get(FAIL_ENV) == str(index):
        print(f"worker {index}: {FAIL_ENV}={index}, exiting after warm-up", flush=True)
        os._exit(17)
    for _ in range(n):
        window()


def _worker_record(run: Any, out: Path, index: int, cluster: list[str], strategy: Any, gpus: dict) -> dict[str, Any]:
    """What every worker writes beside the run: its weights (``worker-<i>-weights.npz``, for checks across workers)
    now, and the returned record (``worker-<i>.json``)."""
    from tf2bench.workloads import build

    weights = io.BytesIO()
    np.savez(weights, *run.model.get_weights())
    atomic_write(out / f"worker-{index}-weights.npz", weights.getvalue())
    return {
        "task_index": index,
        "workers": len(cluster),
        "local_devices": list(strategy.extended.worker_devices),
        **{k.lower(): v for k, v in gpus.items()},
        "init_fingerprint": run.init_fingerprint,
        "final_fingerprint": build.weights_fingerprint(run.model),
        "window_s": [w.seconds for w in run.windows],
        "train_loss": run.windows[-1].loss,
    }


def save_run(
    planner: Planner, case: Case, info: dict[str, Any], header: dict[str, Any], wall_s: float, storage: Path
) -> Path:
    """The chief's benchmark as a new numbered run under ``storage``: the run document every entry point writes
    (tf2bench.saved.runfile), its header the options' plus ``header``."""
    from tf2bench.suite.runner import machine_record

    bench = runfile.benchmark_json(case, info["window_s"], info, "tf2bench.multiworker")  # window times: round data
    doc = runfile.run_json([bench], {**planner.options.run_header(wall_s), **header}, machine_record())
    return runfile.save(doc, storage, runfile.default_tag())
