"""The suite: every workload x model API x training loop, timed by pytest-benchmark.

Each round of a benchmark is one steady-state window of training steps, timed by the
loop itself and ended by a device sync (see tf2bench.timing). Warm-up (tracing and
compilation) runs before the rounds and is reported apart as ``first_step_s``;
evaluation runs after them. With ``--profile`` an untimed, profiled window of
``--profile-steps`` steps runs between the rounds and evaluation, in every variant alike.
"""

from __future__ import annotations

import warnings

import pytest

from tf2bench.errors import NoisyMeasurementWarning, UnsupportedError
from tf2bench.profiling import run_name
from tf2bench.runner import BenchmarkRun
from tf2bench.timing import BENCH_CLOCK, NOISY_CV
from tf2bench.workloads import get_workload


def test_train(benchmark, case, suite, datasets, report_progress, trace_run_dir):
    workload = get_workload(case.workload)
    config = suite.run_config(case.workload, case.seed)
    try:
        run = BenchmarkRun(workload, case.api, case.variant, datasets(case.workload), config)
    except UnsupportedError as exc:  # e.g. a precision this device cannot run: say why, run the rest
        pytest.skip(str(exc))
    run.warmup()
    benchmark.group = f"{case.workload}-{case.api}"
    benchmark.pedantic(lambda: BENCH_CLOCK.advance(run.window()), rounds=run.rounds, iterations=1)
    if trace_run_dir is not None:
        extra = [f"r{case.repeat}"] if case.repeat else []
        extra += [f"s{case.seed}"] if suite.seeds > 1 or case.seed else []
        run.profile(trace_run_dir / run_name(case.workload, case.api, case.variant, *extra))
    info = run.result()
    info["repeat"] = case.repeat
    benchmark.extra_info.update(info)
    report_progress(info)
    if info["noisy"]:
        warnings.warn(
            NoisyMeasurementWarning(
                f"{case.id}: rounds vary by {100 * info['cv']:.1f}% (CV > {100 * NOISY_CV:.0f}%); "
                "use --repeat or --preset rigorous before trusting this figure"
            ),
            stacklevel=1,
        )
