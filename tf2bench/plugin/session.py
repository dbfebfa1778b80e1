"""tf2bench in a pytest run that uses it: the options, the case planners, the progress, and the hooks that only
then take effect (registered as the plugin ``tf2bench-session``; a run that does not use tf2bench has none).

Public through the ``tf2bench_session`` fixture: ``options``, ``planner``, ``say(line)``, ``process`` /
``processes`` (``--processes N``: this worker's number, 0 outside a worker) and ``overhead``, where
bench/test_overhead.py puts its record (saved in the run's ``tf2bench.harness_overhead``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tf2bench.errors import Tf2benchError
from tf2bench.plugin import options as flags
from tf2bench.plugin import processes, storage, summary
from tf2bench.plugin.case import declared_workloads
from tf2bench.plugin.options import MARKER
from tf2bench.saved.storage import BENCHMARKS
from tf2bench.suite.names import DEPRECATED
from tf2bench.suite.options import SuiteOptions, parse_options
from tf2bench.suite.plan import Planner

NAME = "tf2bench-session"
KEY = pytest.StashKey["Session"]()


def activate(config: pytest.Config, *, at_configure: bool) -> Session:
    """tf2bench's session for this run, made at the first use: at configure when an option or variable asks for
    it (bad input stops the run there, a one-line UsageError), else when a collected test asks for its fixture."""
    if KEY in config.stash:
        return config.stash[KEY]
    try:
        session = Session(config, flags.raw(config))
        if at_configure and session.options.devices:  # logical devices: before TensorFlow initialises
            from tf2bench.loops.distributed import configure_devices

            configure_devices(session.options.devices)
    except Tf2benchError as exc:
        raise pytest.UsageError(str(exc)) from None
    config.stash[KEY] = session
    if at_configure:
        session.parent = processes.configure(config, session)
    config.pluginmanager.register(session, NAME)
    if not at_configure:  # collection: the session has started already
        session.begin()
    return session


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


class Session:
    """tf2bench's state in one pytest run, and its hooks."""

    def __init__(self, config: pytest.Config, raw: dict[str, Any]) -> None:
        self.config, self.raw = config, raw
        self.options: SuiteOptions = parse_options(raw)
        self.calibrations: dict = {}  # (workload, api) -> calibration, shared by every planner and worker process
        self.planner = Planner(self.options, say=self.say, calibrations=self.calibrations)
        self.overhead: dict[str, Any] | None = None  # bench/test_overhead.py's record
        self.parent: processes.Parent | None = None  # --processes N: the parent's part
        self.results: list[dict[str, Any]] = []
        self.order: list[str] = []  # the benchmarks' node ids, in the order they run
        self.started = time.perf_counter()
        self._planners: dict[tuple[str, ...], Planner] = {}
        self._sigterm: Any = None
        self._begun = False

    @property
    def process(self) -> int:
        return self.options.process

    @property
    def processes(self) -> int:
        return self.options.processes

    def say(self, line: str) -> None:
        """A progress line on the terminal, outside any test's captured output."""
        plugins = self.config.pluginmanager
        tr = plugins.get_plugin("terminalreporter")
        if tr is None:
            print(line)
            return
        capman = plugins.get_plugin("capturemanager")
        with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
            tr.ensure_newline()
            tr.write_line(line)

    # ---- cases ------------------------------------------------------------------------------------------------------

    def planner_for(self, node: Any) -> Planner | str:
        """The planner of ``node``'s cases: its ``tf2bench`` marker's workloads', else the session's; a string says
        why none of the marker's workloads runs (--workload chose others)."""
        marker = node.get_closest_marker(MARKER)
        if marker is None:
            return self.planner
        names = declared_workloads(marker)
        if flags.workload_given(self.config):  # --workload narrows what a test declares
            chosen = [n for n in names if n in self.options.workloads]
            if not chosen:
                return f"--workload {','.join(self.options.workloads)} selects none of this test's: {', '.join(names)}"
            names = chosen
        key = tuple(names)
        if key not in self._planners:
            raw = {k: v for k, v in self.raw.items() if k not in DEPRECATED}  # (their warning was given once)
            raw.update(workload=",".join(names), loop=",".join(self.options.loops))
            env = {k: v for k, v in os.environ.items() if k not in {e for _, e in DEPRECATED.values()}}
            opts = parse_options(raw, environ=env)  # the APIs: those of these workloads
            self._planners[key] = Planner(opts, say=self.say, calibrations=self.calibrations)
        return self._planners[key]

    def parametrize(self, metafunc: pytest.Metafunc) -> None:
        """``tf2bench_case``: one parameter per case, in the planner's order (repeat-major)."""
        try:
            planner = self.planner_for(metafunc.definition)
        except Tf2benchError as exc:
            raise pytest.Collector.CollectError(f"tf2bench: {metafunc.definition.nodeid}: {exc}") from None
        if isinstance(planner, str):
            skipped = pytest.param(None, marks=pytest.mark.skip(reason=planner), id="no-workload")
            metafunc.parametrize("tf2bench_case", [skipped], indirect=True)
            return
        cases = planner.cases()
        metafunc.parametrize("tf2bench_case", cases, ids=[c.id for c in cases], indirect=True)

    @pytest.hookimpl(trylast=True)  # after -k / -m deselection
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        from tf2bench.measure.timing import bench_clock

        ours = [item for item in items if "tf2bench_case" in getattr(item, "fixturenames", ())]
        self.order = [item.nodeid for item in ours]
        for item in ours:  # rounds timed on the windows' own clock: pytest-benchmark's per-test marker
            mark = item.get_closest_marker("benchmark")
            item.add_marker(pytest.mark.benchmark(**{**(mark.kwargs if mark else {}), "timer": bench_clock}), False)

    def finished(self, nodeid: str, info: dict[str, Any], announce: bool = True) -> None:
        """A benchmark's record, kept for the summary; its progress line unless ``announce`` is False."""
        self.results.append(info)
        if announce:
            position = self.order.index(nodeid) + 1 if nodeid in self.order else len(self.results)
            total = max(len(self.order), position)
            where = summary.progress(position, total, time.perf_counter() - self.started)
            self.say(summary.progress_line(where, info))

    # ---- the run's life ---------------------------------------------------------------------------------------------

    def begin(self) -> None:
        """Saving through tf2bench's writer (results/benchmarks unless --benchmark-storage), and SIGTERM (CI cancel,
        kill) ending the run like Ctrl-C: finished benchmarks are saved, whole."""
        if self._begun:
            return
        self._begun = True
        storage.use_run_storage(self.config, Path(self.config.rootpath) / BENCHMARKS)
        self._sigterm = signal.signal(signal.SIGTERM, _terminate)

    def pytest_sessionstart(self) -> None:
        self.begin()

    def pytest_unconfigure(self) -> None:
        if self._sigterm is not None:
            signal.signal(signal.SIGTERM, self._sigterm)

    def harness_overhead(self) -> dict[str, Any] | None:
        """This process's overhead record, or the worker process's that measured it."""
        return self.overhead or (self.parent.harness_overhead() if self.parent else None)

    # ---- what is saved ----------------------------------------------------------------------------------------------

    def pytest_benchmark_update_machine_info(self, machine_info: dict[str, Any]) -> None:
        from tf2bench.suite.runner import machine_record

        machine_info["tf2bench"] = (self.parent.machine() if self.parent else None) or machine_record()

    def pytest_benchmark_update_json(self, output_json: dict[str, Any]) -> None:
        output_json["tf2bench"] = self.options.run_header(time.perf_counter() - self.started, self.harness_overhead())
        for bench in output_json["benchmarks"]:
            params = bench.get("params") or {}
            case = params.get("tf2bench_case")
            if case is None or "window_s" not in bench.get("extra_info", {}):
                continue  # not a tf2bench benchmark
            bench["params"] = {**params, "tf2bench_case": case.id}  # the case's id, not its repr
            # the rounds themselves, which compare's significance tests need (without --benchmark-save-data too)
            bench["stats"].setdefault("data", list(bench["extra_info"]["window_s"]))

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        tr = terminalreporter
        overhead = self.harness_overhead()
        if overhead:
            tr.section("tf2bench: harness overhead (timed tf_function window vs a bare loop)")
            where = f"worker process {overhead['process']} of {self.processes}" if overhead.get("process") else None
            for line in summary.overhead_lines(overhead, where):
                tr.write_line(line)
        if not self.results:
            return
        tr.section("tf2bench: steady-state throughput (median of rounds) and speed-up vs fit")
        for line in summary.throughput_lines(self.results):
            tr.write_line(line)
        for (workload, api), cal in self.calibrations.items():
            if cal.get("cap_note"):  # a calibrated window that could not reach the preset's minimum time
                tr.write_line(f"note: {workload} {api}: {cal['cap_note']}")
        for line in summary.trace_lines(self.results):
            tr.write_line(line)
        from tf2bench.measure import gpuinfo

        used = dict.fromkeys(r.get("compute_dtype", "float32") for r in self.results)  # each peak measured once
        peaks = "; ".join(processes.describe_peak(self.parent, dtype) for dtype in used)
        tr.write_line(
            f"MFU = achieved training GFLOP/s / the measured matmul peak of the loop's compute dtype: {peaks}"
        )
        tr.write_line(f"wall time: {time.perf_counter() - self.started:.0f} s")
        if note := gpuinfo.clock_note(gpuinfo.query()):  # unlocked GPU clocks: the figures moved with boost clocks
            tr.write_line(f"note: {note}")
