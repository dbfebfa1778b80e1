"""``multi_worker``: MultiWorkerMirroredStrategy across worker processes, launched here or one per host.

On one machine (tests, demos)::

    python -m tf2bench.multiworker launch --workers 2 --workload cifar100 --dataset synthetic --out results/mw

picks free ports on 127.0.0.1, starts one ``worker`` process per port with its own
``TF_CONFIG``, waits for all of them, and returns the chief's result. The chief saves it as an ordinary
numbered pytest-benchmark run under ``--storage`` (default results/benchmarks, as the suite's), the same
document ``tf2bench.benchmark(save=...)`` writes, so ``tf2bench report`` and ``tf2bench compare`` read it.
A worker that fails, or a run that outlives ``--timeout``, ends the whole run with
:class:`WorkerFailedError` and the other workers killed: nothing waits on a dead peer.

Across real hosts, run the same worker command on every host, each with the same
cluster and its own index (worker 0 is the chief and saves the run; it prints the file's path)::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \\
        python -m tf2bench.multiworker worker --workload cifar100 --out results/mw

There, ``--timeout`` (a watchdog inside each worker) bounds the run, and the strategy's
own health checks make peers of a lost worker fail rather than wait.

On a GPU host the launcher gives each worker its own GPUs: contiguous, equal groups of the visible ones
(``CUDA_VISIBLE_DEVICES`` if set, else ``nvidia-smi -L``; ``--gpus-per-worker`` sets the group size), memory growth
on; more workers than GPUs is refused (NCCL refuses two ranks on one device). Replicas = workers x GPUs per worker.

Every worker also writes ``OUT/worker-<i>.json`` (its weights' fingerprints and window times; the chief's
names the saved run file) and ``OUT/worker-<i>-weights.npz``, each atomically (tf2bench.saved.storage).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tf2bench.analysis import runs
from tf2bench.errors import Tf2benchError
from tf2bench.loops import RunConfig
from tf2bench.multiworker.worker import (
    WorkerFailedError,
    WorkerSpec,
    partition_gpus,
    run_worker,
    visible_gpus,
    worker_environments,
)

DEFAULT_TIMEOUT_S = 600.0


def free_ports(n: int) -> list[int]:
    """``n`` distinct free TCP ports on 127.0.0.1 (held open together so they differ; freed before use)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def launch(
    workers: int,
    spec: WorkerSpec,
    out: Path,
    *,
    storage: Path = runs.DEFAULT_STORAGE,
    timeout: float = DEFAULT_TIMEOUT_S,
    env: dict[str, str] | None = None,
    single_replica_samples_per_sec: float | None = None,
    gpus_per_worker: int | None = None,
) -> dict[str, Any]:
    """Run ``workers`` local worker processes over loopback; return the chief's result record (the saved
    benchmark's extra_info) plus ``run_file``: the numbered run the chief saved under ``storage``.

    ``single_replica_samples_per_sec`` (one worker's samples/s on the same spec) adds the scaling efficiency
    to the record before it is saved (see ``launch_scaling``). ``gpus_per_worker``: see partition_gpus.

    Raises WorkerFailedError (naming the worker, its exit code and its log's tail) as soon as one worker
    fails or ``timeout`` seconds pass; every worker still running is killed first.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    base_env = {**os.environ, **(env or {})}
    gpus = visible_gpus(base_env)
    local = len(partition_gpus(gpus, workers, gpus_per_worker)[0])  # before starting anything: refuses too few GPUs
    # The spec checked as the workers will parse it; replicas = workers x local devices (GPUs, or the one CPU), so a
    # batch strong scaling cannot split fails here too.
    spec.options(devices=workers * max(local, 1))
    if idle := len(gpus) - workers * local:
        print(f"multi_worker: {workers} workers x {local} GPU(s) leave {idle} of {len(gpus)} idle", file=sys.stderr)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for i in range(workers):  # a chief's record left from an earlier launch must not name its run as this one's
        (out / f"worker-{i}.json").unlink(missing_ok=True)
    envs = worker_environments(base_env, [f"127.0.0.1:{p}" for p in free_ports(workers)], gpus, gpus_per_worker)
    argv = [*spec.argv(), "--out", str(out), "--timeout", str(timeout + 30)]  # the workers' own watchdog: a backstop
    argv += ["--storage", str(Path(storage).absolute())]  # the one the chief saves in, whatever its cwd
    if single_replica_samples_per_sec is not None:
        argv += ["--single-replica-samples-per-sec", repr(float(single_replica_samples_per_sec))]
    procs: list[subprocess.Popen] = []
    logs = [out / f"worker-{i}.log" for i in range(workers)]
    try:
        for log, worker_env in zip(logs, envs, strict=True):
            with open(log, "w") as f:
                command = [sys.executable, "-m", "tf2bench.multiworker", "worker", *argv]
                procs.append(subprocess.Popen(command, env=worker_env, stdout=f, stderr=subprocess.STDOUT))
        _wait(procs, logs, timeout)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()
    return _chief_result(out / "worker-0.json")


def _wait(procs: list[subprocess.Popen], logs: list[Path], timeout: float) -> None:
    """Until every worker exits 0; WorkerFailedError at the first that fails, or when ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        codes = [p.poll() for p in procs]
        failed = [(i, c) for i, c in enumerate(codes) if c is not None and c != 0]
        if failed:
            i, code = failed[0]
            raise WorkerFailedError(
                f"multi_worker: worker {i} of {len(procs)} exited with code {code}; stopped the others. "
                f"Its log ({logs[i]}) ends:\n{_tail(logs[i])}"
            )
        if all(c == 0 for c in codes):
            return
        if time.monotonic() > deadline:
            running = [i for i, c in enumerate(codes) if c is None]
            raise WorkerFailedError(
                f"multi_worker: workers {running} still running after {timeout:.0f} s; killed them. "
                f"Worker {running[0]}'s log ends:\n{_tail(logs[running[0]])}"
            )
        time.sleep(0.2)


def _chief_result(chief: Path) -> dict[str, Any]:
    """The saved benchmark's record, read back from the run the chief's record names, plus ``run_file``."""
    run_file = json.loads(chief.read_text()).get("run_file") if chief.exists() else None
    if not run_file:
        raise WorkerFailedError(f"multi_worker: every worker exited 0 but the chief saved no run (see {chief})")
    (bench,) = runs.load(Path(run_file), require_round_data=True).benchmarks
    return {**bench["extra_info"], "run_file": run_file}


def launch_scaling(workers: int, spec: WorkerSpec, out: Path, **options: Any) -> dict[str, Any]:
    """``launch`` one worker with one replica (one GPU on a GPU host), then ``workers`` together, on the same case;
    the N-worker record gains ``scaling_efficiency`` = its samples/s / (R x 1-replica samples/s), R its replicas
    (workers x GPUs each), global samples on both sides, before its chief saves it under ``storage``. The 1-worker
    run is saved apart, under OUT/1-worker/benchmarks: a baseline, not a second result beside the one asked for.
    ``options``: launch's (storage, timeout, env, gpus_per_worker).

    The same spec on one worker trains what the mirrored loops' 1-replica twin does: under strong scaling the
    same global batch G (so efficiency = (t_1 / t_R) / R, the speed-up over R), under weak one per-replica
    batch (R replicas train R x that batch, so efficiency = t_1 / t_R).

    The two runs follow each other (not interleaved like mirrored's windows): quote it with that caveat.
    """
    out, per_worker = Path(out), options.get("gpus_per_worker")
    one = min(1, len(visible_gpus(os.environ)) if per_worker is None else per_worker)  # 1 GPU, or the CPU
    baseline = {**options, "storage": out / "1-worker" / "benchmarks", "gpus_per_worker": one}
    single = launch(1, spec, out / "1-worker", **baseline)
    if single["replicas"] != 1:  # the efficiency's denominator is one replica's speed
        raise WorkerFailedError(f"multi_worker: the 1-worker baseline ran {single['replicas']} replicas, not 1")
    return launch(workers, spec, out, single_replica_samples_per_sec=single["samples_per_sec"], **options)


def _spec_args(parser: argparse.ArgumentParser) -> None:
    defaults = WorkerSpec()
    for key, value in asdict(defaults).items():
        kind = str if isinstance(value, str) else int
        if key == "scaling":  # 0.1 also took a bare --scaling ("also time 1 worker"): that is --efficiency
            parser.add_argument("--scaling", default=value, choices=RunConfig.SCALINGS)
            continue
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, default=value)
    parser.add_argument("--out", type=Path, required=True, help="where workers write worker-N.json, weights, logs")
    parser.add_argument(
        "--storage",
        type=Path,
        default=runs.DEFAULT_STORAGE,
        help="where the chief saves the run, numbered, as the suite's (default: results/benchmarks)",
    )
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds before the run is failed")


def main(argv: list[str] | None = None) -> int:
    """``launch`` N local workers, or run one ``worker`` (TF_CONFIG from the environment)."""
    parser = argparse.ArgumentParser(prog="python -m tf2bench.multiworker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    launch_p = sub.add_parser("launch", help="start N workers on this machine over 127.0.0.1")
    launch_p.add_argument("--workers", type=int, default=2)
    launch_p.add_argument("--efficiency", action="store_true", help="also time 1 worker alone: scaling_efficiency")
    launch_p.add_argument(
        "--gpus-per-worker", type=int, default=None, help="GPUs each worker gets (default: GPUs // workers; 0: CPU)"
    )
    _spec_args(launch_p)
    worker_p = sub.add_parser("worker", help="be one worker of the cluster in TF_CONFIG")
    _spec_args(worker_p)
    worker_p.add_argument(
        "--single-replica-samples-per-sec",
        type=float,
        default=None,
        help="one worker's samples/s on the same spec: the chief records the scaling efficiency (launch --efficiency)",
    )
    args = parser.parse_args(argv)
    spec = WorkerSpec(**{k: getattr(args, k) for k in asdict(WorkerSpec())})
    try:
        if args.command == "launch":
            run = launch_scaling if args.efficiency else launch
            gpus = args.gpus_per_worker
            info = run(args.workers, spec, args.out, storage=args.storage, timeout=args.timeout, gpus_per_worker=gpus)
            eff = info["scaling_efficiency"]
            print(
                f"multi_worker: {info['workers']} workers, {info['replicas']} replicas, {info['scaling']} scaling, "
                f"global batch {info['global_batch_size']}: {info['samples_per_sec']:.0f} samples/s "
                f"({info['samples_per_sec_per_replica']:.0f} per replica)"
                + (f", scaling efficiency {eff:.2f}" if eff is not None else "")
                + f"; saved run {info['run_file']}"
            )
        else:
            run_worker(
                spec,
                args.out,
                args.timeout,
                storage=args.storage,
                single_replica_samples_per_sec=args.single_replica_samples_per_sec,
            )
    except Tf2benchError as exc:
        print(f"tf2bench: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
