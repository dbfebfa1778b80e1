"""``multi_worker``: MultiWorkerMirroredStrategy across worker processes, launched here or one per host.

On one machine (tests, demos)::

    python -m tf2bench.multiworker launch --workers 2 --workload cifar100 --dataset synthetic --out results/mw

picks free ports on 127.0.0.1, starts one ``worker`` process per port with its own
``TF_CONFIG``, waits for all of them, and returns the chief's result (``result.json``).
A worker that fails, or a run that outlives ``--timeout``, ends the whole run with
:class:`WorkerFailedError` and the other workers killed: nothing waits on a dead peer.

Across real hosts, run the same worker command on every host, each with the same
cluster and its own index (worker 0 is the chief and writes ``result.json``)::

    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \\
        python -m tf2bench.multiworker worker --workload cifar100 --out results/mw

There, ``--timeout`` (a watchdog inside each worker) bounds the run, and the strategy's
own health checks make peers of a lost worker fail rather than wait.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tf2bench.distribute import split_batch
from tf2bench.errors import Tf2benchError
from tf2bench.variants import RunConfig

FAIL_ENV = "TF2BENCH_FAIL_WORKER"  # fault injection: this worker index exits right after its warm-up
WORKER_EXIT_TIMEOUT = 124
DEFAULT_TIMEOUT_S = 600.0


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


def tf_config(cluster: list[str], index: int) -> str:
    return json.dumps({"cluster": {"worker": cluster}, "task": {"type": "worker", "index": index}})


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
    timeout: float = DEFAULT_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``workers`` local worker processes over loopback; return the chief's result record.

    Raises WorkerFailedError (naming the worker, its exit code and its log's tail) as soon as one worker
    fails or ``timeout`` seconds pass; every worker still running is killed first.
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    split_batch(spec.batch_size, workers, spec.scaling)  # a batch strong scaling cannot split: fail before starting
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").unlink(missing_ok=True)
    cluster = [f"127.0.0.1:{p}" for p in free_ports(workers)]
    procs: list[subprocess.Popen] = []
    logs = [out / f"worker-{i}.log" for i in range(workers)]
    base_env = {**os.environ, **(env or {})}
    worker_timeout = str(timeout + 30)  # the workers' own watchdog: a backstop should this launcher die
    try:
        for i in range(workers):
            with open(logs[i], "w") as log:
                procs.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "tf2bench.multiworker", "worker", *spec.argv(), "--out", str(out)]
                        + ["--timeout", worker_timeout],
                        env={**base_env, "TF_CONFIG": tf_config(cluster, i)},
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + timeout
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c is not None and c != 0]
            if failed:
                i, code = failed[0]
                raise WorkerFailedError(
                    f"multi_worker: worker {i} of {workers} exited with code {code}; stopped the others. "
                    f"Its log ({logs[i]}) ends:\n{_tail(logs[i])}"
                )
            if all(c == 0 for c in codes):
                break
            if time.monotonic() > deadline:
                running = [i for i, c in enumerate(codes) if c is None]
                raise WorkerFailedError(
                    f"multi_worker: workers {running} still running after {timeout:.0f} s; killed them. "
                    f"Worker {running[0]}'s log ends:\n{_tail(logs[running[0]])}"
                )
            time.sleep(0.2)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        for p in procs:
            p.wait()
    result_path = out / "result.json"
    if not result_path.exists():
        raise WorkerFailedError(f"multi_worker: every worker exited 0 but the chief wrote no {result_path}")
    return json.loads(result_path.read_text())


def launch_scaling(workers: int, spec: WorkerSpec, out: Path, *, timeout: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
    """``launch`` one worker alone, then ``workers`` together, on the same case; the N-worker record gains
    ``scaling_efficiency`` = N-worker samples/s / (N x 1-worker samples/s) (global samples on both sides).

    The same spec on one worker trains what the mirrored loops' 1-replica twin does: under strong scaling the
    same global batch G (so efficiency = (t_1 / t_N) / N, the speed-up over N), under weak one per-replica
    batch (N workers train N x that batch, so efficiency = t_1 / t_N).

    The two runs follow each other (not interleaved like mirrored's windows): quote it with that caveat.
    """
    out = Path(out)
    single = launch(1, spec, out / "1-worker", timeout=timeout)
    info = launch(workers, spec, out, timeout=timeout)
    info["single_replica_samples_per_sec"] = single["samples_per_sec"]
    info["scaling_efficiency"] = info["samples_per_sec"] / (info["replicas"] * single["samples_per_sec"])
    info["scaling_method"] = "sequential launches: 1 worker, then N"
    _write_json(out / "result.json", info)
    return info


def _write_json(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(path)  # readers never see half a file


def run_worker(spec: WorkerSpec, out: Path, timeout: float | None = None) -> dict[str, Any]:
    """Train the case as one worker of the cluster in ``TF_CONFIG``; the chief (index 0) writes result.json."""
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
    from tf2bench import data, distribute, models
    from tf2bench.runner import BenchmarkRun
    from tf2bench.workloads import get_workload

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
    run.warmup()
    if os.environ.get(FAIL_ENV) == str(index):
        print(f"worker {index}: {FAIL_ENV}={index}, exiting after warm-up", flush=True)
        os._exit(17)
    for _ in range(run.rounds):
        run.window()
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "task_index": index,
        "workers": n,
        "init_fingerprint": run.init_fingerprint,
        "final_fingerprint": models.weights_fingerprint(run.model),
        "window_s": [w.seconds for w in run.windows],
        "train_loss": run.windows[-1].loss,
    }
    _write_json(out / f"worker-{index}.json", record)
    np.savez(out / f"worker-{index}-weights.npz", *run.model.get_weights())  # for checks across workers
    if index == 0:
        from tensorflow.python.eager import context

        from tf2bench import peak

        # SyncDevice fails in a worker ("Haven't set up remote eager worker"): the MFU peak's matmul windows end
        # on the eager executor instead, exact on CPU workers (their ops run to completion when called).
        peak.sync_devices = context.async_wait
        info = {**run.result(), "workers": n, "cluster": config["cluster"]["worker"], "spec": asdict(spec)}
        _write_json(out / "result.json", info)
        return info
    return record


def _spec_args(parser: argparse.ArgumentParser) -> None:
    defaults = WorkerSpec()
    for key, value in asdict(defaults).items():
        kind = str if isinstance(value, str) else int
        choices = RunConfig.SCALINGS if key == "scaling" else None
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, default=value, choices=choices)
    parser.add_argument("--out", type=Path, required=True, help="where workers write worker-N.json, result.json, logs")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="seconds before the run is failed")


def main(argv: list[str] | None = None) -> int:
    """``launch`` N local workers, or run one ``worker`` (TF_CONFIG from the environment)."""
    parser = argparse.ArgumentParser(prog="python -m tf2bench.multiworker", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    launch_p = sub.add_parser("launch", help="start N workers on this machine over 127.0.0.1")
    launch_p.add_argument("--workers", type=int, default=2)
    launch_p.add_argument("--efficiency", action="store_true", help="also time 1 worker alone: scaling_efficiency")
    _spec_args(launch_p)
    _spec_args(sub.add_parser("worker", help="be one worker of the cluster in TF_CONFIG"))
    args = parser.parse_args(argv)
    spec = WorkerSpec(**{k: getattr(args, k) for k in asdict(WorkerSpec())})
    try:
        if args.command == "launch":
            run = launch_scaling if args.efficiency else launch
            info = run(args.workers, spec, args.out, timeout=args.timeout)
            eff = info["scaling_efficiency"]
            print(
                f"multi_worker: {info['workers']} workers, {info['replicas']} replicas, {info['scaling']} scaling, "
                f"global batch {info['global_batch_size']}: {info['samples_per_sec']:.0f} samples/s "
                f"({info['samples_per_sec_per_replica']:.0f} per replica)"
                + (f", scaling efficiency {eff:.2f}" if eff is not None else "")
                + f"; result in {args.out / 'result.json'}"
            )
        else:
            run_worker(spec, args.out, args.timeout)
    except Tf2benchError as exc:
        print(f"tf2bench: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
