"""The pytest side of ``--processes N`` (tf2bench.suite.processes): the parent that merges, and the worker that records.

The parent (``pytest bench --processes 3``) trains nothing. At its first benchmark it runs the workers, each
``python -m pytest`` with the parent's own arguments (the same selection, plugins and options) and
``TF2BENCH_PROCESS=k/N``; its ``test_train`` then hands pytest-benchmark the merged rounds of its case (on the
windows' own clock, as always), so the run is saved as one ordinary numbered file. Tests other than the
benchmarks (``bench/test_overhead.py``) run in the workers only; the parent reports their outcome. A worker saves
nothing itself: it appends each finished benchmark's record to its events file (tf2bench.suite.processes), writes one
``done`` line at its end, and times the windows the first worker calibrated.
"""

from __future__ import annotations

import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tf2bench.measure.timing import BENCH_CLOCK
from tf2bench.suite import processes
from tf2bench.suite.options import SuiteOptions

PARENT = "tf2bench-processes-parent"
WORKER = "tf2bench-processes-worker"


def configure(config: pytest.Config, opts: SuiteOptions, say: Any, calibration_key: Any, overhead_key: Any) -> Any:
    """Register the parent's or the worker's part (nothing for a run in one process); returns the options to use."""
    if opts.process:
        if not os.environ.get(processes.DIR_ENV):
            raise pytest.UsageError(f"a worker process needs {processes.DIR_ENV}: tf2bench.suite.processes sets both")
        folder = Path(os.environ[processes.DIR_ENV])
        config.stash[calibration_key].update(processes.load_calibrations(folder))
        for name, off in (("benchmark_autosave", None), ("benchmark_save", None), ("benchmark_json", None),
                          ("benchmark_compare", []), ("benchmark_compare_fail", None), ("benchmark_histogram", []),
                          ("benchmark_csv", [])):  # fmt: skip
            setattr(config.option, name, off)  # the parent saves the run: a worker's rounds go to its events file
        config.pluginmanager.register(Worker(folder, opts.process, overhead_key), WORKER)
        return replace(opts, profile=opts.profile and opts.process == 1)  # one profile per benchmark: the first's
    if opts.processes > 1:
        config.pluginmanager.register(Parent(config, opts, say), PARENT)
    return opts


def _short(report: pytest.TestReport) -> str:
    if report.skipped and isinstance(report.longrepr, tuple):
        return str(report.longrepr[2]).removeprefix("Skipped: ")
    text = report.longreprtext.strip().splitlines()
    errors = [line for line in text if line.startswith("E ")]
    return (errors[-1][1:].strip() if errors else text[-1] if text else "failed")[:500]


class Worker:
    """One worker process of a --processes run: every finished benchmark's record, and its failures, to the file."""

    def __init__(self, folder: Path, process: int, overhead_key: Any) -> None:
        self.folder, self.process, self.overhead_key = folder, process, overhead_key

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any) -> Any:
        report = yield
        case = getattr(item, "callspec", None) and item.callspec.params.get("case")
        case_id = getattr(case, "id", None)
        if report.when == "call" and report.passed and case_id is not None:
            info = dict(item.funcargs["benchmark"].extra_info)
            processes.append_event(self.folder, self.process, {"event": "case", "case": case_id, "info": info})
        elif report.failed or (report.skipped and report.when != "teardown"):
            event = {"event": "failed" if report.failed else "skipped", "nodeid": item.nodeid, "case": case_id}
            processes.append_event(self.folder, self.process, {**event, "message": _short(report)})
        return report

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        from tf2bench.suite.runner import machine_record

        done = {"event": "done", "exitstatus": int(exitstatus), "machine": machine_record()}
        done["harness_overhead"] = session.config.stash.get(self.overhead_key, None)
        processes.append_event(self.folder, self.process, done)


def _echo(line: str) -> bool:
    """A worker's progress line (``[3/10, ...] mnist ...``) or a tf2bench notice: shown by the parent."""
    return line.startswith("tf2bench:") or (line.startswith("[") and line[1:2].isdigit())


class Parent:
    """The parent of a --processes run: runs the workers once, and knows what they left."""

    def __init__(self, config: pytest.Config, opts: SuiteOptions, say: Any) -> None:
        self.config, self.opts, self.say = config, opts, say
        self.done: processes.Processes | None = None
        self.elsewhere: list[str] = []  # tests the workers run and the parent does not

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        others = [item for item in items if "case" not in getattr(item, "fixturenames", ())]
        if others:
            items[:] = [item for item in items if item not in others]
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
                if line.startswith("tf2bench:"):
                    new = line not in seen
                    seen.add(line)
                    return new
                return _echo(line)

            self.done = processes.run(self.opts.processes, command, cwd=params.dir, say=self.say, echo=echo)
        return self.done

    @pytest.hookimpl(trylast=True)
    def pytest_benchmark_update_json(self, config: pytest.Config, benchmarks: list, output_json: dict) -> None:
        if self.done is not None:
            run = output_json.setdefault("tf2bench", {})
            run["processes"] = self.done.record()
            run["harness_overhead"] = run.get("harness_overhead") or self.done.harness_overhead

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
            tr.write_line(f"run in the worker processes only: {', '.join(self.elsewhere)}")
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


def parent(config: pytest.Config) -> Parent | None:
    return config.pluginmanager.get_plugin(PARENT)


def record_case(config: pytest.Config, case: Any, benchmark: Any, trace_dir: Path | None) -> dict[str, Any]:
    """The parent's benchmark of ``case``: the merged rounds of every worker that finished it, recorded by
    pytest-benchmark on the windows' own clock, and the merged record as its extra_info; one line says so."""
    p = parent(config)
    done = p.results(trace_dir)
    info = done.merged(case.id)
    if info is None:
        found = done.problems.get(case.id, [])
        why = "; ".join(f"process {p}: {message}" for p, _, message in found) or "no worker process finished it"
        if found and all(kind == "skipped" for _, kind, _ in found):
            pytest.skip(why)
        pytest.fail(why, pytrace=False)
    seconds = iter(info["window_s"])
    benchmark.group = f"{case.workload}-{case.api}"
    benchmark.pedantic(lambda: BENCH_CLOCK.advance(next(seconds)), rounds=len(info["window_s"]), iterations=1)
    benchmark.extra_info.update(info)
    spread = processes.process_spread(info)
    between = f", between them ±{100 * spread:.1f}%" if spread is not None else ""
    p.say(
        f"merged {case.workload:>8} {case.api:<11} {case.loop:<11} {info['samples_per_sec']:9.0f} samples/s "
        f"±{100 * info['cv']:4.1f}% over {len(info['rounds_process'])} rounds of {len(info['processes'])} "
        f"processes{between}  [r{case.repeat} s{case.seed}]"
    )
    return info


def machine(config: pytest.Config) -> dict[str, Any] | None:
    """machine_info's tf2bench part as the workers measured it (the parent measures nothing), or None."""
    p = parent(config)
    return p.done.machine if p is not None and p.done is not None else None


def describe_peak(config: pytest.Config, dtype: str) -> str:
    """The summary's peak line for ``dtype``: the workers' measurement in a parent, else this process's."""
    from tf2bench.measure import peak

    found = ((machine(config) or {}).get("peaks") or {}).get(dtype)
    if found:
        return peak.Peak(**{**found, "probes": tuple(tuple(p) for p in found.get("probes", ()))}).describe()
    return peak.peak(dtype).describe()
