"""The ``tf2bench_case`` fixture's value: one benchmark, run when the test calls it.

``def test_train(tf2bench_case): tf2bench_case()`` is all a test module needs. pytest parametrizes the test at
collection by the cases the options select (``--loop/--api/--seed/--seeds/--repeat/--workload``), or by the
workloads its ``@pytest.mark.tf2bench(workload=...)`` marker declares.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tf2bench.errors import BadInputError, Tf2benchError, UnsupportedError
from tf2bench.measure.timing import BENCH_CLOCK
from tf2bench.plugin.options import MARKER
from tf2bench.suite.options import Case
from tf2bench.suite.runner import run_case
from tf2bench.workloads import WORKLOADS, Workload, load_spec, register_workload


def workload_name(workload: Any) -> str:
    """The registered name of a Workload, a name or a ``package.module:attribute`` spec (a Workload object is
    registered under its name for the session; another workload under that name is an error)."""
    if isinstance(workload, Workload):
        if workload.name not in WORKLOADS.names():
            register_workload(workload)
        elif WORKLOADS.get(workload.name) is not workload:
            raise BadInputError(f"workload {workload.name!r}: the name is taken by another workload; choose another")
        return workload.name
    if isinstance(workload, str) and ":" in workload:
        return load_spec(workload.strip()).name
    if isinstance(workload, str):
        return WORKLOADS.get(workload.strip()).name  # UnknownNameError names the valid ones
    raise BadInputError(f"a workload is a tf2bench.Workload, a name or a module:attribute spec, got {workload!r}")


def declared_workloads(marker: pytest.Mark) -> list[str]:
    """The workloads a ``@pytest.mark.tf2bench(workload=...)`` marker declares, registered and named."""
    unknown = sorted(set(marker.kwargs) - {"workload"})
    if marker.args or unknown or "workload" not in marker.kwargs:
        given = ", ".join([*(repr(a) for a in marker.args), *unknown]) or "nothing"
        raise BadInputError(f"@pytest.mark.{MARKER} takes workload=W (W or a list of them); got {given}")
    value = marker.kwargs["workload"]
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    return list(dict.fromkeys(workload_name(w) for w in items))


class CaseRun:
    """One benchmark of a test: ``tf2bench_case()`` runs it and returns its record (also the benchmark's
    ``extra_info``). Warm-up (tracing, compilation) runs before the timed rounds and is reported apart as
    ``first_step_s``; each round is one steady-state window of training steps, timed by the loop itself and ended
    by a device sync, handed to pytest-benchmark on the windows' own clock (tf2bench.measure.timing); with
    ``--profile`` an untimed, profiled window follows the rounds; evaluation comes last."""

    def __init__(self, session: Any, request: pytest.FixtureRequest, benchmark: Any) -> None:
        if not hasattr(request, "param"):
            raise pytest.UsageError(
                "tf2bench_case is parametrized when pytest collects the test: request it as a test's argument "
                "(or through a fixture's), not with request.getfixturevalue"
            )
        self.session, self.node, self.benchmark = session, request.node, benchmark
        self.case: Case = request.param
        self.planner = session.planner_for(request.node)

    def __repr__(self) -> str:
        return f"<tf2bench_case {self.case.id}>"

    def __call__(self, workload: Any = None) -> dict[str, Any]:
        if workload is not None:
            self._check(workload)
        parent = self.session.parent
        info = self._merged(parent) if parent is not None else self._run()
        if not self.session.process:  # a worker saves nothing: its parent calls the hook on the merged record
            config = self.session.config
            config.hook.pytest_tf2bench_update_record(config=config, case=self.case, record=info)
        self.benchmark.extra_info.update(info)
        self.session.finished(self.node.nodeid, info, announce=parent is None)
        return info

    def _check(self, workload: Any) -> None:
        try:
            name = workload_name(workload)
        except Tf2benchError as exc:
            pytest.fail(f"tf2bench_case({workload!r}): {exc}", pytrace=False)
        if name != self.case.workload:
            marked = self.node.get_closest_marker(MARKER) is not None
            source = "its @pytest.mark.tf2bench marker" if marked else "the --workload selection"
            pytest.fail(
                f"tf2bench_case({name!r}) in a benchmark of {self.case.workload!r}: the cases are chosen when pytest "
                f"collects the test, from {source}"
                f"; declare the workload on the test: @pytest.mark.{MARKER}(workload={name})",
                pytrace=False,
            )

    def _run(self) -> dict[str, Any]:
        case, planner, benchmark = self.case, self.planner, self.benchmark
        try:
            planner.dataset(case.workload)  # no data: the run stops here; finished benchmarks are still saved
        except Tf2benchError as exc:
            pytest.exit(f"tf2bench: {exc}", returncode=exc.exit_code)
        try:
            run = planner.prepare(case)
        except UnsupportedError as exc:  # e.g. a precision this device cannot run: say why, run the rest
            pytest.skip(str(exc))
        benchmark.group = f"{case.workload}-{case.api}"

        def timed_by_pytest_benchmark(window: Any, n: int) -> None:  # rounds on the windows' own (virtual) clock
            benchmark.pedantic(lambda: BENCH_CLOCK.advance(window()), rounds=n, iterations=1)

        return run_case(
            run, repeat=case.repeat, rounds=timed_by_pytest_benchmark, profile_dir=planner.profile_dir(case),
            case_id=case.id,
        )  # fmt: skip

    def _merged(self, parent: Any) -> dict[str, Any]:
        """--processes N: the workers trained it; the merged rounds of every worker that finished it."""
        info = parent.merged(self.node.nodeid, self.case, self.planner.trace_run_dir())
        seconds = iter(info["window_s"])
        self.benchmark.group = f"{self.case.workload}-{self.case.api}"
        self.benchmark.pedantic(lambda: BENCH_CLOCK.advance(next(seconds)), rounds=len(info["window_s"]), iterations=1)
        return info
