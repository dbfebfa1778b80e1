"""The pytest side of ``--processes N`` (tf2bench.suite.processes): the parent that merges, the worker that records.

The parent (``pytest bench --processes 3``) trains nothing. At its first benchmark it runs the workers, each
``python -m pytest`` with the parent's own arguments (the same selection, plugins and options) and
``TF2BENCH_PROCESS=k/N``; each of its ``tf2bench_case`` benchmarks then hands pytest-benchmark the merged rounds of
its case (on the windows' own clock, as always), so the run is saved as one ordinary numbered file. Tests other
than the benchmarks (bench/test_overhead.py) run in the workers only, and the parent reports their outcome; a test
that measures something once per run (the harness overhead) runs in worker 1 and skips in the others. A worker
saves nothing itself: it appends each finished benchmark's record to its events file (tf2bench.suite.processes),
writes one ``done`` line at its end, and times the windows the first worker calibrated.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from tf2bench.suite import processes

PARENT = "tf2bench-processes-parent"
WORKER = "tf2bench-processes-worker"
SAVING = (("benchmark_autosave", None), ("benchmark_save", None), ("benchmark_json", None), ("benchmark_compare", []),
          ("benchmark_compare_fail", None), ("benchmark_histogram", []), ("benchmark_csv", []))  # fmt: skip


def ours(item: pytest.Item) -> bool:
    """A tf2bench benchmark (a test using the tf2bench_case fixture)."""
    return "tf2bench_case" in getattr(item, "fixturenames", ())


def configure(config: pytest.Config, session: Any) -> Parent | None:
    """At configure: register the worker's part (and turn its saving off) or the parent's; returns the parent."""
    if session.process:
        if not os.environ.get(processes.DIR_ENV):
            raise pytest.UsageError(f"a worker process needs {processes.DIR_ENV}: tf2bench.suite.processes sets both")
        folder = Path(os.environ[processes.DIR_ENV])
        session.calibrations.update(processes.load_calibrations(folder))  # the first worker's windows
        for name, off in SAVING:  # the parent saves the run: a worker's rounds go to its events file
            setattr(config.option, name, off)
        config.pluginmanager.register(Worker(folder, session), WORKER)
        return None
    if session.processes > 1:
        parent = Parent(config, session)
        config.pluginmanager.register(parent, PARENT)
        return parent
    return None


def _short(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    text = report.longreprtext.strip().splitlines()
    errors = [line for line in text if line.startswith("E ")]
    return (errors[-1][1:].strip() if errors else text[-1] if text else "failed")[:500]


class Worker:
    """One worker process of a --processes run: every finished benchmark's record, and its failures, to the file."""

    def __init__(self, folder: Path, session: Any) -> None:
        self.folder, self.session, self.process = folder, session, session.process

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Any:
        report = yield
        key = item.nodeid if ours(item) else None  # the parent's benchmark of the same node takes its records
        if report.when == "call" and report.passed and key is not None:
            info = dict(item.funcargs["benchmark"].extra_info)
            processes.append_event(self.folder, self.process, {"event": "case", "case": key, "info": info})
        elif report.failed or (report.skipped and report.when != "teardown"):
            event = {"event": "failed" if report.failed else "skipped", "nodeid": item.nodeid, "case": key}
            processes.append_event(self.folder, self.process, {**event, "message": _short(report)})
        return report

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from tf2bench.suite.runner import machine_record

        done = {"event": "done", "exitstatus": int(exitstatus), "machine": machine_record()}
        overhead = self.session.overhead
        done["harness_overhead"] = {**overhead, "process": self.process} if overhead else None  # who measured it
        processes.append_event(self.folder, self.process, done)


def _echo(line: str) -> bool:
    """A worker's progress line (``[3/10, ...] mnist ...``) or a tf2bench notice: shown by the parent."""
    text = line.lstrip(".sFExX")  # pytest -q writes each test's outcome letter on the line these follow
    return text.startswith("tf2bench:") or (text.startswith("[") and text[1:2].isdigit())


class Parent:
    """The parent of a --processes run: runs the workers once, and knows what they left."""

    def __init__(self, config: pytest.Config, session: Any) -> None:
        self.config, self.session = config, session
        self.done: processes.Processes | None = None
        self.elsewhere: list[str] = []  # tests the workers run and the parent does not

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        others = [item for item in items if not ours(item)]
        if others:
            items[:] = [item for item in items if ours(item)]
            config.hook.pytest_deselected(items=others)
            self.elsewhere = [item.nodeid for item in others]

    def results(self, trace_dir: Path | None) -> processes.Processes:
        """The workers' records, run at the first call. ``trace_dir`` (--profile): the run's trace directory, where
        the first worker's traces go (it alone profiles)."""
        if self.done is None:
            params = self.config.invocation_params
            args = list(params.args)
            seen = set()

            def command(k: int) -> list[str]:
                extra = ["--trace-dir", str(trace_dir)] if trace_dir is not None and k == 1 else []
                return [sys.executable, "-m", "pytest", *args, *extra]

            def echo(line: str) -> bool:  # notices once (from the first worker that says them), progress from all
                text = line.lstrip(".sFExX")
                if text.startswith("tf2bench:"):
                    new = text not in seen
                    seen.add(text)
                    return new
                return _echo(line)

            n = self.session.processes
            self.done = processes.run(n, command, cwd=params.dir, say=self.session.say, echo=echo)
        return self.done

    def merged(self, nodeid: str, case: Any, trace_dir: Path | None) -> dict[str, Any]:
        """The record of ``case`` merged from every worker that finished it (skipped or failed, with the workers'
        reasons, when none did); one line says so."""
        done = self.results(trace_dir)
        info = done.merged(nodeid)
        if info is None:
            found = done.problems.get(nodeid, [])
            why = "; ".join(f"process {p}: {message}" for p, _, message in found) or "no worker process finished it"
            if found and all(kind == "skipped" for _, kind, _ in found):
                pytest.skip(why)
            pytest.fail(why, pytrace=False)
        spread = processes.process_spread(info)
        between = f", between them ±{100 * spread:.1f}%" if spread is not None else ""
        self.session.say(
            f"merged {case.workload:>8} {case.api:<11} {case.loop:<11} {info['samples_per_sec']:9.0f} samples/s "
            f"±{100 * info['cv']:4.1f}% over {len(info['rounds_process'])} rounds of {len(info['processes'])} "
            f"processes{between}  [r{case.repeat} s{case.seed}]"
        )
        return info

    def harness_overhead(self) -> dict[str, Any] | None:
        return self.done.harness_overhead if self.done is not None else None

    def machine(self) -> dict[str, Any] | None:
        """machine_info's tf2bench part as the workers measured it (the parent measures nothing), or None."""
        return self.done.machine if self.done is not None else None

    @pytest.hookimpl(trylast=True)
    def pytest_benchmark_update_json(self, config: pytest.Config, benchmarks: list, output_json: dict) -> None:
        if self.done is not None:
            output_json.setdefault("tf2bench", {})["processes"] = self.done.record()

    def skips(self, nodeid: str) -> str:
        """``nodeid`` and the processes that skipped it, by reason (a test measured once, in worker 1, says so)."""
        by_reason: dict[str, list[str]] = {}
        for p, kind, message in self.done.problems.get(nodeid, []) if self.done else []:
            if kind == "skipped":
                by_reason.setdefault(message, []).append(str(p))
        notes = [f"skipped in process {', '.join(ps)}: {why}" for why, ps in by_reason.items()]
        return f"{nodeid} ({'; '.join(notes)})" if notes else nodeid

    def failures(self) -> list[str]:
        """Tests that failed in a worker (the benchmarks' failures in every process the parent reports itself)."""
        if self.done is None:
            return []
        return [
            f"{key} failed in process {p}: {message}"
            for key, found in self.done.problems.items()
            for p, kind, message in found
            if kind == "failed"
        ]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        done, tr = self.done, terminalreporter
        if done is None:
            return
        tr.section(f"tf2bench: {done.n} worker processes, one after another")
        walls = ", ".join(f"{o.wall_s:.0f}" for o in done.outcomes if o.status != "not started")
        tr.write_line(
            f"each timed a 1/{done.n} share of every benchmark's rounds (at least one); wall times {walls} s; "
            f"finished: {len(done.outcomes) - len(done.missing)} of {done.n}"
        )
        for o in done.missing:
            tr.write_line(
                f"MISSING process {o.process} ({o.status}: {o.reason or 'not run'}): the benchmarks it finished are "
                "merged; the others hold the other processes' rounds"
            )
        spreads = sorted(
            (s, key) for key in done.records if (s := processes.process_spread(done.merged(key) or {})) is not None
        )
        if spreads:
            mid, (top, worst) = spreads[len(spreads) // 2][0], spreads[-1]
            tr.write_line(
                f"between-process spread of a benchmark's level (SD of the processes' log median throughput): median "
                f"{100 * mid:.1f}%, largest {100 * top:.1f}% ({worst})"
            )
        if self.elsewhere:
            tr.write_line(f"run in the worker processes only: {', '.join(self.skips(n) for n in self.elsewhere)}")
        for line in self.failures():
            tr.write_line(f"FAILED {line}")

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if self.done is None:
            return
        if self.done.interrupted:
            session.exitstatus = pytest.ExitCode.INTERRUPTED
        elif (self.done.missing or self.failures()) and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED  # the run is saved, and says what it lacks


def describe_peak(parent: Parent | None, dtype: str) -> str:
    """The summary's peak line for ``dtype``: the workers' measurement in a parent, else this process's."""
    from tf2bench.measure import peak

    found = (((parent.machine() if parent else None) or {}).get("peaks") or {}).get(dtype)
    if found:
        return peak.Peak(**{**found, "probes": tuple(tuple(p) for p in found.get("probes", ()))}).describe()
    return peak.peak(dtype).describe()
