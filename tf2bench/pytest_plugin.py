"""The suite as a pytest plugin: options, cases, data cache, progress lines, machine info.

tf2bench's own ``bench/`` uses it exactly as a user's repository does — a ``conftest.py``
with ``from tf2bench.pytest_plugin import *`` and a test module with
``from tf2bench.pytest_plugin import test_train`` — then
``pytest bench --benchmark-autosave [--tf2bench-workload mypkg.bench:my_workload]``.
Results go to ``<rootdir>/results/benchmarks`` unless ``--benchmark-storage`` says otherwise.
"""

from __future__ import annotations

import contextlib
import signal
import time
import warnings
from pathlib import Path

import pytest

from tf2bench import process_plugin
from tf2bench.errors import Tf2benchError
from tf2bench.measure.timing import NOISY_CV
from tf2bench.saved import storage
from tf2bench.saved.storage import make_run_saves_atomic
from tf2bench.suite.options import DEPRECATED, FLAGS, OPTIONS, SuiteOptions, parse_options

DEFAULT_STORAGE = "file://./.benchmarks"  # pytest-benchmark's own default

__all__ = [  # what a conftest.py takes with `from tf2bench.pytest_plugin import *`
    "datasets",
    "pytest_addoption",
    "pytest_benchmark_update_json",
    "pytest_benchmark_update_machine_info",
    "pytest_configure",
    "pytest_generate_tests",
    "pytest_sessionstart",
    "pytest_terminal_summary",
    "pytest_unconfigure",
    "report_progress",
    "suite",
    "trace_run_dir",
]


# The plugin's state lives in the config's stash (pytest's typed store), one key per thing.
OPTIONS_KEY = pytest.StashKey[SuiteOptions]()
START_KEY = pytest.StashKey[float]()
RESULTS_KEY = pytest.StashKey[list]()
TRACE_DIR_KEY = pytest.StashKey[Path]()
SIGTERM_KEY = pytest.StashKey[object]()
OVERHEAD_KEY = pytest.StashKey[dict]()  # set by bench/test_overhead.py
CALIBRATION_KEY = pytest.StashKey[dict]()  # (workload, api) -> its calibrated windows (SuiteOptions.window_plan)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("tf2bench", "tf2bench suite (each also settable by its environment variable)")
    for name, (env, help_text) in OPTIONS.items():
        flag = {"action": "store_true"} if name in FLAGS else {}
        group.addoption(
            f"--{name.replace('_', '-')}", dest=f"tf2bench_{name}", default=None, help=f"{help_text} [{env}]", **flag
        )
    for old, (new, env) in DEPRECATED.items():  # still accepted, with a DeprecationWarning
        group.addoption(f"--{old}", dest=f"tf2bench_{old}", default=None, help=f"deprecated: use --{new} [{env}]")
    group.addoption(
        "--tf2bench-workload",
        dest="tf2bench_workload_specs",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="your own workload, a tf2bench.Workload importable as package.module:attribute (repeatable); "
        "runs it (with --workload too, if given)",
    )


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Validate options at once; point pytest-benchmark at results/ and at the suite's clock."""
    try:
        raw = {n: config.getoption(f"tf2bench_{n}") for n in (*OPTIONS, *DEPRECATED)}
        specs = config.getoption("tf2bench_workload_specs") or []
        if specs:
            raw["workload"] = ",".join(filter(None, [raw["workload"], *specs]))
        config.stash[OPTIONS_KEY] = parse_options(raw)
        if config.stash[
            OPTIONS_KEY
        ].devices:  # logical devices: before TensorFlow initialises (DevicesTooLateError if not)
            from tf2bench.loops.distributed import configure_devices

            configure_devices(config.stash[OPTIONS_KEY].devices)
    except Tf2benchError as exc:
        raise pytest.UsageError(str(exc)) from None
    if config.getoption("benchmark_storage") == DEFAULT_STORAGE:
        config.option.benchmark_storage = f"file://{Path(config.rootpath) / storage.BENCHMARKS}"
    # Rounds are timed by the windows themselves (device sync included, fit's set-up excluded).
    config.option.benchmark_timer = "tf2bench.measure.timing.bench_clock"
    config.option.benchmark_save_data = True  # round times: compare's significance test needs them
    config.stash[START_KEY] = time.perf_counter()
    config.stash[RESULTS_KEY] = []
    config.stash[CALIBRATION_KEY] = {}
    opts = process_plugin.configure(config, config.stash[OPTIONS_KEY], say, CALIBRATION_KEY, OVERHEAD_KEY)
    config.stash[OPTIONS_KEY] = opts  # --processes N: the parent's or a worker's part (tf2bench.process_plugin)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "case" in metafunc.fixturenames:
        cases = metafunc.config.stash[OPTIONS_KEY].cases()
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])


@pytest.fixture(scope="session")
def suite(pytestconfig: pytest.Config) -> SuiteOptions:
    return pytestconfig.stash[OPTIONS_KEY]


@pytest.fixture(scope="session")
def trace_run_dir(suite: SuiteOptions, pytestconfig: pytest.Config) -> Path | None:
    """This session's trace directory (<trace-dir>/<run-id>), or None without --profile."""
    if not suite.profile:
        return None
    from tf2bench.measure.profiling import new_run_dir

    root = Path(suite.trace_dir) if suite.trace_dir else Path(pytestconfig.rootpath) / storage.TRACES
    pytestconfig.stash[TRACE_DIR_KEY] = new_run_dir(root)
    return pytestconfig.stash[TRACE_DIR_KEY]


@pytest.fixture(scope="session")
def datasets(suite: SuiteOptions):
    """Load each workload's data once per session; fallbacks warn once, visibly."""
    from tf2bench.workloads import data, get_workload

    cache = {}

    def get(workload: str):
        if workload not in cache:
            train, test = suite.sizes(workload)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    cache[workload] = data.load(get_workload(workload), suite.dataset, train_size=train, test_size=test)
                except Tf2benchError as exc:  # no data: stop the run; finished benchmarks are still saved
                    pytest.exit(f"tf2bench: {exc}", returncode=exc.exit_code)
            for w in caught:
                say(f"tf2bench: {w.message}")
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return cache[workload]

    return get


_CONFIG: list[pytest.Config] = []


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_sessionstart(session: pytest.Session) -> None:
    _CONFIG.append(session.config)
    # SIGTERM (CI cancel, kill) ends the run like Ctrl-C: finished benchmarks are saved, whole.
    session.config.stash[SIGTERM_KEY] = signal.signal(signal.SIGTERM, _terminate)
    bench_session = getattr(session.config, "_benchmarksession", None)
    if bench_session is not None:
        make_run_saves_atomic(bench_session.storage)


def pytest_unconfigure(config: pytest.Config) -> None:
    previous = config.stash.get(SIGTERM_KEY, None)
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


def say(line: str) -> None:
    """A progress line on the terminal, outside any test's captured output (the suite's and bench/'s)."""
    plugins = _CONFIG[-1].pluginmanager if _CONFIG else None
    tr = plugins.get_plugin("terminalreporter") if plugins else None
    if tr is None:
        print(line)
        return
    capman = plugins.get_plugin("capturemanager")  # progress goes to the terminal, not into a test's capture
    with capman.global_and_fixture_disabled() if capman else contextlib.nullcontext():
        tr.ensure_newline()
        tr.write_line(line)


def _mfu(info: dict) -> str:
    return "  -  " if info.get("mfu") is None else f"{info['mfu']:.3f}"


def progress(position: int, total: int, elapsed_s: float) -> str:
    """``[23/60, ~2 min left]``: where the run is, and the time left at the pace so far (cases differ in cost:
    an estimate, re-made at every case)."""
    left = elapsed_s / position * (total - position) if position > 0 else float("nan")
    if total - position <= 0:
        return f"[{position}/{total}]"
    when = f"~{left:.0f} s" if left < 90 else f"~{left / 60:.0f} min"
    return f"[{position}/{total}, {when} left]"


@pytest.fixture
def report_progress(pytestconfig: pytest.Config, suite: SuiteOptions):
    from tf2bench.suite.options import Case

    cases = suite.cases()

    def report(info: dict) -> None:
        pytestconfig.stash[RESULTS_KEY].append(info)
        case = Case(info["repeat"], info["seed"], info["workload"], info["api"], info["loop"])
        position = cases.index(case) + 1 if case in cases else len(pytestconfig.stash[RESULTS_KEY])
        where = progress(position, len(cases), time.perf_counter() - pytestconfig.stash[START_KEY])
        notes = "  NOISY" if info["cv"] > NOISY_CV else ""
        if info.get("rounds_reason"):  # a slow loop under a calibrated preset's round budget
            notes += f"  [{info['rounds']} of {info['rounds_planned']} rounds: slow windows]"
        if info.get("scaling_efficiency") is not None:  # distributed loops (tf2bench.distribute)
            notes += f"  [{info['replicas']} replicas, scaling efficiency {info['scaling_efficiency']:.2f}]"
        prof = info.get("profile")
        if prof:
            notes += (
                f"  [profile: no trace, {prof['error']}]"
                if "error" in prof
                else f"  [profile: step {prof['step_time_ms']:.1f} ms, input {prof['input_bound_pct']:.1f}%]"
            )
        say(
            f"{where:<22} {info['workload']:>8} {info['api']:<11} {info['loop']:<11} "
            f"{info['samples_per_sec']:9.0f} samples/s ±{100 * info['cv']:4.1f}%  "
            f"step {info['step_time_ms']:7.1f} ms  MFU {_mfu(info)}  first {info['first_step_s']:5.2f} s  "
            f"acc {info['test_accuracy']:.3f}  [{info['dataset']['source']}, r{info['repeat']} s{info['seed']}]{notes}"
        )

    return report


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    from tf2bench.suite.runner import machine_record

    machine_info["tf2bench"] = process_plugin.machine(config) or machine_record()  # --processes: the workers'


def pytest_benchmark_update_json(config: pytest.Config, benchmarks: list, output_json: dict) -> None:
    opts: SuiteOptions = config.stash[OPTIONS_KEY]
    output_json["tf2bench"] = opts.record(
        time.perf_counter() - config.stash[START_KEY],
        config.stash.get(OVERHEAD_KEY, None),  # bench/test_overhead.py
    )


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    tr = terminalreporter
    overhead = config.stash.get(OVERHEAD_KEY, None)
    if overhead:
        tr.section("tf2bench: harness overhead (timed tf_function window vs a bare loop)")
        o = overhead
        tr.write_line(
            f"{o['workload']} {o['api']}, {o['windows']} windows of {o['steps']} steps each: "
            f"harness {1000 * overhead['harness_s_median']:.1f} ms, bare {1000 * overhead['bare_s_median']:.1f} ms, "
            f"overhead {100 * overhead['overhead']:+.2f}% ±{100 * overhead['noise']:.2f}% "
            f"(whole call {100 * overhead['call_overhead']:+.2f}%; a figure, not a check"
            f"{', beyond its noise' if o.get('paired_outside_noise') else ''}); checked: bookkeeping "
            f"{o['bookkeeping_us_per_step']:.1f} µs/step (limit {o.get('max_bookkeeping_us', 10.0):g} µs) = "
            f"{100 * o['bookkeeping']:.3f}% of a {o.get('step_ms', float('nan')):.3f} ms step"
        )
        if o["bookkeeping"] > 0.01:  # a fast step: the harness's few microseconds are a visible share of it
            tr.write_line(
                f"note: the harness's bookkeeping is {100 * o['bookkeeping']:.1f}% of this step: figures of loops "
                "driven from Python per step (tf_function, tf_data, eager) carry it; graph_loop and fit_spe do not"
            )
    results = config.stash.get(RESULTS_KEY, None)
    if not results:
        return
    tr.section("tf2bench: steady-state throughput (median of rounds) and speed-up vs fit")
    fit = {
        (r["workload"], r["api"], r["repeat"], r["seed"]): r["samples_per_sec"] for r in results if r["loop"] == "fit"
    }
    for r in results:
        base = fit.get((r["workload"], r["api"], r["repeat"], r["seed"]))
        speedup = f"{r['samples_per_sec'] / base:5.2f}x" if base else "    - "
        tr.write_line(
            f"{r['workload']:>8} {r['api']:<11} {r['loop']:<11} {r['samples_per_sec']:9.0f}/s "
            f"±{100 * r['cv']:4.1f}%  {speedup} fit  MFU {_mfu(r)}  first {r['first_step_s']:5.2f} s  "
            f"acc {r['test_accuracy']:.3f}"
        )
    noisy = [r for r in results if r["cv"] > NOISY_CV]
    if noisy:
        tr.write_line(
            f"{len(noisy)} figure(s) vary by more than {100 * NOISY_CV:.0f}% between rounds (NOISY): "
            "use --repeat, --preset rigorous, or a quieter machine before trusting them"
        )
    for (workload, api), cal in config.stash.get(CALIBRATION_KEY, {}).items():
        if cal.get("cap_note"):  # a calibrated window that could not reach the preset's minimum time
            tr.write_line(f"note: {workload} {api}: {cal['cap_note']}")
    traces = config.stash.get(TRACE_DIR_KEY, None)
    if traces is not None:
        profiled = [r["profile"] for r in results if r.get("profile")]
        failed = [p for p in profiled if "error" in p]
        tr.write_line(
            f"profiler traces ({len(profiled) - len(failed)} of {len(results)}): tensorboard --logdir {traces}"
        )
        for p in failed:
            tr.write_line(f"  no trace for {p['trace_dir']}: {p['error']}")
    from tf2bench.measure import gpuinfo

    used = dict.fromkeys(r.get("compute_dtype", "float32") for r in results)  # each peak is measured once, cached
    tr.write_line(
        "MFU = achieved training GFLOP/s / the measured matmul peak of the loop's compute dtype: "
        + "; ".join(process_plugin.describe_peak(config, dtype) for dtype in used)
    )
    tr.write_line(f"wall time: {time.perf_counter() - config.stash[START_KEY]:.0f} s")
    if note := gpuinfo.clock_note(gpuinfo.query()):  # unlocked GPU clocks: the figures moved with boost clocks
        tr.write_line(f"note: {note}")


def test_train(benchmark, case, suite, datasets, report_progress, trace_run_dir, pytestconfig):
    """One benchmark: each round is one steady-state window of training steps, timed by the loop itself
    and ended by a device sync (tf2bench.measure.timing). Warm-up (tracing, compilation) runs before the rounds
    and is reported apart as ``first_step_s``; evaluation runs after them. With ``--profile`` an untimed,
    profiled window runs between the rounds and evaluation, in every loop alike.

    Import it into a test module (``from tf2bench.pytest_plugin import test_train``) to collect it.
    """
    from tf2bench.errors import UnsupportedError
    from tf2bench.measure.profiling import run_name
    from tf2bench.measure.timing import BENCH_CLOCK
    from tf2bench.suite.runner import BenchmarkRun, run_case
    from tf2bench.workloads import get_workload

    if suite.processes > 1 and not suite.process:  # the workers trained it (--processes): their rounds, merged
        info = process_plugin.record_case(pytestconfig, case, benchmark, trace_run_dir)
        return pytestconfig.stash[RESULTS_KEY].append(info)
    workload = get_workload(case.workload)
    calibrations = pytestconfig.stash[CALIBRATION_KEY]
    config, windows = suite.window_plan(case.workload, case.api, case.seed, datasets(case.workload), calibrations, say)
    try:
        run = BenchmarkRun(workload, case.api, case.loop, datasets(case.workload), config, windows)
    except UnsupportedError as exc:  # e.g. a precision this device cannot run: say why, run the rest
        pytest.skip(str(exc))
    benchmark.group = f"{case.workload}-{case.api}"
    profile_dir = None
    if trace_run_dir is not None:
        extra = [f"r{case.repeat}"] if case.repeat else []
        extra += [f"s{case.seed}"] if suite.seeds > 1 or case.seed else []
        profile_dir = trace_run_dir / run_name(case.workload, case.api, case.loop, *extra)

    def timed_by_pytest_benchmark(window, n: int) -> None:  # rounds on the windows' own (virtual) clock
        benchmark.pedantic(lambda: BENCH_CLOCK.advance(window()), rounds=n, iterations=1)

    info = run_case(run, repeat=case.repeat, rounds=timed_by_pytest_benchmark, profile_dir=profile_dir, case_id=case.id)
    benchmark.extra_info.update(info)
    report_progress(info)
