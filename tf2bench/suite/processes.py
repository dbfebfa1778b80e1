"""``--processes N``: a run's benchmarks timed in N fresh worker processes, saved as one run (pyperf's design).

What varies between processes (compiled code, thread placement, memory layout, the machine's state that minute)
is averaged only by sampling processes; rounds of one process share it. So the parent trains nothing: it starts N
worker processes one after another (``subprocess``: fresh interpreters, never forks), each running every benchmark
of the selection with its share of the rounds (``suite.plan.round_share``), so each benchmark's processes are spread
over the whole run and a slow minute hits one process's stretch of every loop alike. Worker 1 calibrates the
windows; the later ones time the same windows (``calibration.json``). Each worker appends one JSON line per
finished benchmark to ``process-K.jsonl`` (and its failures, and a last ``done`` line); the parent merges them into
one ordinary record per benchmark (:func:`merge_case`): the rounds of every process, each tagged with its process
(``rounds_process``), so report and compare read the run unchanged and the gate can see the between-process spread.
A worker that crashes or is interrupted loses only its unfinished benchmarks; the run says which processes are
missing (:meth:`Processes.record`). The pytest side is :mod:`tf2bench.process_plugin`; ``tf2bench.benchmark``'s
workers are ``tf2bench.api.worker_main``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tf2bench.measure.timing import window_stats
from tf2bench.suite.options import PROCESS_ENV

DIR_ENV = "TF2BENCH_PROCESS_DIR"  # where a worker writes its process-K.jsonl and reads calibration.json
CALIBRATION_FILE = "calibration.json"
STOP_WAIT_S = 60.0  # an interrupted worker's time to end its benchmark and write its last line, then it is killed

Say = Callable[[str], None]


def events_path(folder: Path, process: int) -> Path:
    return Path(folder) / f"process-{process}.jsonl"


def append_event(folder: Path, process: int, event: dict[str, Any]) -> None:
    """One line per event, flushed and synced at once: a worker killed later keeps every line written before."""
    with open(events_path(folder, process), "a", encoding="utf-8") as f:
        f.write(json.dumps(event, default=str) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_events(path: Path) -> list[dict[str, Any]]:
    """A worker's events; a last line cut short by a crash is left out (every whole line before it counts)."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return out
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def load_calibrations(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """The windows calibrated by earlier processes: a worker's ``Planner(calibrations=...)``."""
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return {}
    return {(w, a): cal for w, a, cal in json.loads(path.read_text())}


# ---- merging: one record per benchmark from its processes' records (pure) -------------------------------------------

_PER_PROCESS_MEDIAN = ("first_step_s", "setup_s", "build_s")  # one value per process: the median of them


def merge_case(parts: Sequence[tuple[int, dict[str, Any]]]) -> dict[str, Any]:
    """One benchmark's record from its processes' records ``(process, extra_info)``: every round of every process
    (``window_s``, the throughput figures recomputed over all of them), each round's process in ``rounds_process``,
    each process's median samples/s in ``process_samples_per_sec`` (aligned with ``processes``). What a process
    learned (accuracy, weights, the quality and weight tiers) is the first process's: every loop of one process
    trained the same steps, so the tiers compare like with like. Rounds of a process whose windows had another
    length (calibrated apart, after a crash) are scaled to the first's steps, keeping its time per sample."""
    if not parts:
        raise ValueError("merge_case needs at least one process's record")
    parts = sorted(parts, key=lambda p: p[0])
    first = parts[0][1]
    steps, samples = first["steps"], first["samples_per_step"]
    seconds, tags, levels = [], [], []
    for process, info in parts:
        scaled = [s * steps / info["steps"] for s in info["window_s"]]
        seconds += scaled
        tags += [process] * len(scaled)
        levels.append(statistics.median(steps * samples / s for s in scaled))
    stats = window_stats(seconds, [steps] * len(seconds), samples)
    merged = {
        **first,
        "rounds": len(seconds),
        "rounds_planned": sum(info.get("rounds_planned") or len(info["window_s"]) for _, info in parts),
        "rounds_reason": next((info["rounds_reason"] for _, info in parts if info.get("rounds_reason")), None),
        **stats.record(),  # the throughput figures, over every process's rounds
        "window_s": seconds,
        "epoch_s": stats.window_s_median if first.get("epoch_s") is not None else None,
        "processes": [p for p, _ in parts],
        "rounds_process": tags,
        "process_samples_per_sec": levels,
    }
    for key in _PER_PROCESS_MEDIAN:
        values = [info[key] for _, info in parts if info.get(key) is not None]
        merged[key] = statistics.median(values) if values else first.get(key)
    if first.get("flops_per_sample") and first.get("gflops_per_sec") is not None:
        merged["gflops_per_sec"] = first["flops_per_sample"] * stats.samples_per_sec / 1e9
        if first.get("peak_gflops"):
            merged["mfu"] = merged["gflops_per_sec"] / first["peak_gflops"]
    return merged


def process_spread(info: dict[str, Any]) -> float | None:
    """SD between a merged benchmark's processes of their log median throughput (None with fewer than two)."""
    levels = [math.log(v) for v in info.get("process_samples_per_sec") or []]
    return statistics.stdev(levels) if len(levels) > 1 else None


# ---- the run: N workers, one after another ----------------------------------------------------------------------


@dataclass
class Outcome:
    """How one worker process ended."""

    process: int
    status: str  # finished | failed | interrupted | not started
    returncode: int | None = None
    cases: int = 0  # benchmarks it finished
    wall_s: float = 0.0
    reason: str = ""

    @property
    def finished(self) -> bool:
        return self.status == "finished"


@dataclass
class Processes:
    """What the workers left: per benchmark, each process's record; per process, how it ended."""

    n: int
    folder: Path
    records: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)  # case id -> (process, info)
    problems: dict[str, list[tuple[int, str, str]]] = field(default_factory=dict)  # node/case -> (process, kind, why)
    outcomes: list[Outcome] = field(default_factory=list)
    machine: dict[str, Any] | None = None  # machine_record() of the first worker that finished
    harness_overhead: dict[str, Any] | None = None
    interrupted: bool = False

    def merged(self, case_id: str) -> dict[str, Any] | None:
        parts = self.records.get(case_id)
        return merge_case(parts) if parts else None

    @property
    def missing(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.finished]

    def record(self) -> dict[str, Any]:
        """The run-level ``processes`` record: how many were planned, which finished, which are missing."""
        return {
            "planned": self.n,
            "finished": [o.process for o in self.outcomes if o.finished],
            "missing": [
                {
                    "process": o.process,
                    "status": o.status,
                    "returncode": o.returncode,
                    "benchmarks": o.cases,
                    "reason": o.reason,
                }
                for o in self.missing
            ],  # fmt: skip
            "wall_s": [o.wall_s for o in self.outcomes],
            "logs": str(self.folder) if self.missing else None,
        }

    def calibrations(self) -> list[list[Any]]:
        """Every benchmark's calibration so far, once per workload and API (what later workers reuse)."""
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for parts in self.records.values():
            for _, info in parts:
                if info.get("calibration"):
                    seen.setdefault((info["workload"], info["api"]), info["calibration"])
        return [[w, a, cal] for (w, a), cal in seen.items()]

    def take(self, process: int, events: list[dict[str, Any]]) -> dict[str, Any] | None:
        """File one worker's events; returns its ``done`` event, if it wrote one."""
        done = None
        for ev in events:
            if ev.get("event") == "case":
                self.records.setdefault(ev["case"], []).append((process, ev["info"]))
            elif ev.get("event") in ("failed", "skipped"):  # keyed by the case (a benchmark), else the test's node id
                key = ev.get("case") or ev["nodeid"]
                self.problems.setdefault(key, []).append((process, ev["event"], ev.get("message", "")))
            elif ev.get("event") == "done":
                done = ev
                self.machine = self.machine or ev.get("machine")
                self.harness_overhead = self.harness_overhead or ev.get("harness_overhead")
        return done


def _ended(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit {returncode}"


def run(
    n: int,
    command: Callable[[int], list[str]],
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    say: Say = print,
    echo: Callable[[str], bool] = lambda line: False,
    folder: Path | None = None,
) -> Processes:
    """Run workers 1..n one after another, ``command(k)`` each, and file what they wrote.

    Each worker gets ``TF2BENCH_PROCESS=k/n`` and ``TF2BENCH_PROCESS_DIR``; its output goes to ``process-k.log``, and
    the lines ``echo`` picks are shown through ``say``. A worker that fails or is killed is reported and the next one
    starts; Ctrl-C (or SIGTERM, which the suite turns into it) stops the running worker, starts no other, and returns
    what the finished ones left (``interrupted``); with nothing finished at all it re-raises.
    """
    folder = Path(folder or tempfile.mkdtemp(prefix="tf2bench-processes-"))
    folder.mkdir(parents=True, exist_ok=True)
    out = Processes(n, folder)
    started = time.perf_counter()
    for k in range(1, n + 1):
        if out.interrupted:
            out.outcomes.append(Outcome(k, "not started", reason="the run was interrupted"))
            continue
        (folder / CALIBRATION_FILE).write_text(json.dumps(out.calibrations(), default=str))
        left_s = (time.perf_counter() - started) / max(1, k - 1) * (n - k + 1)  # at the pace of the processes so far
        left = "" if k == 1 else f", ~{left_s:.0f} s left" if left_s < 90 else f", ~{left_s / 60:.0f} min left"
        say(f"tf2bench: process {k} of {n}, a fresh interpreter: every benchmark, a 1/{n} share of its rounds{left}")
        worker_env = {**os.environ, **(env or {}), PROCESS_ENV: f"{k}/{n}", DIR_ENV: str(folder)}
        worker_env["PYTHONUNBUFFERED"] = "1"  # its progress lines arrive as printed
        t0 = time.perf_counter()
        log = folder / f"process-{k}.log"
        with (
            open(log, "w", encoding="utf-8") as log_file,
            subprocess.Popen(
                command(k), cwd=cwd, env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            ) as proc,
        ):
            try:
                for line in proc.stdout:
                    log_file.write(line)
                    if echo(line):
                        say(f"p{k}/{n} {line.rstrip()}")
                proc.wait()
            except KeyboardInterrupt:
                out.interrupted = True
                _stop(proc)
        events = read_events(events_path(folder, k))
        done = out.take(k, events)
        cases = sum(ev.get("event") == "case" for ev in events)
        outcome = Outcome(k, "finished", proc.returncode, cases, time.perf_counter() - t0)
        if out.interrupted:
            outcome.status, outcome.reason = "interrupted", f"interrupted after {cases} benchmark(s)"
        elif done is None or done.get("exitstatus") not in (0, 1):  # 1: some tests failed, the worker ran to its end
            outcome.status = "failed"
            outcome.reason = f"{_ended(proc.returncode)} after {cases} benchmark(s); log {log}"
        out.outcomes.append(outcome)
        if not outcome.finished:
            say(f"tf2bench: process {k} of {n} {outcome.status}: {outcome.reason}")
    if out.interrupted and not out.records:
        raise KeyboardInterrupt("interrupted before any worker process finished a benchmark")
    if not out.missing:
        shutil.rmtree(folder, ignore_errors=True)
    return out


def _stop(proc: subprocess.Popen) -> None:
    """End a worker as Ctrl-C does (its finished benchmarks are already on disk), killed if it does not end."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_WAIT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    except KeyboardInterrupt:  # a second Ctrl-C: do not wait
        proc.kill()
        proc.wait()
