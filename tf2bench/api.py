"""``tf2bench.benchmark``: the suite from Python, on any workload, as a pandas DataFrame.

The same cases, runner and result record as ``pytest bench``; the run is laid out as a
pytest-benchmark JSON document (so ``tf2bench report`` and ``tf2bench compare`` read it
unchanged when saved) and the DataFrame comes from the report's own table builder. A
loop that cannot train the model (not XLA-compilable, Python side effects in ``call``)
gets a row with its ``error``; the others still run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tf2bench.errors import BadInputError, Tf2benchError, UnsupportedError, reason
from tf2bench.workloads import BUILTIN, WORKLOADS, Workload, load_spec


def benchmark(
    workload: Workload | str,
    loops: Sequence[str] | str = "all",
    *,
    apis: Sequence[str] | str = "all",
    preset: str = "quick",
    steps: int | None = None,
    rounds: int | None = None,
    seed: int = 0,
    dataset: str = "auto",
    train_size: int | None = None,
    test_size: int | None = None,
    mixed_precision: str = "auto",
    processes: int = 1,
    save: str | Path | None = None,
    verbose: bool = False,
    variants: Sequence[str] | str | None = None,
) -> Any:
    """Time ``loops`` of the training loop on ``workload``; one DataFrame row per (api, loop).

    ``workload``: a :class:`Workload` (registered for the call only), a registered name, or a
    ``"package.module:attribute"`` spec. ``save``: a pytest-benchmark storage directory
    (e.g. ``"results/benchmarks"``); the run is added there as a new numbered file, never
    overwriting one, and its path is in ``df.attrs["path"]``. ``steps``/``rounds``: fixed windows and rounds;
    unset, the preset's (``quick`` calibrates the steps per window, docs/measuring.md). Columns are the report's
    (``tf2bench.analysis.report.build``) plus ``params``, ``mfu``, ``final_fingerprint`` and ``error``.
    ``mixed_precision``: the mixed loops' half precision, ``auto`` (float16 on a GPU, bfloat16 on a CPU), ``float16``
    (with loss scaling) or ``bfloat16``. ``processes``: time the cases in that many fresh worker processes, one after
    another, each with a share of every case's rounds (``pytest bench --processes``, tf2bench.suite.processes); the rows
    are their merged records. The workers import the workload: pass a registered name or a module:attribute spec.
    """
    if variants is not None:  # the old name of ``loops``
        warnings.warn("benchmark(variants=...) is now benchmark(loops=...)", DeprecationWarning, stacklevel=2)
        loops = variants
    options = {
        "loops": loops, "apis": apis, "preset": preset, "steps": steps, "rounds": rounds, "seed": seed,
        "dataset": dataset, "train_size": train_size, "test_size": test_size, "save": save, "verbose": verbose,
        "mixed_precision": mixed_precision, "processes": processes,
    }  # fmt: skip
    if isinstance(workload, Workload) and processes != 1:
        raise BadInputError(
            f"processes={processes} times the cases in fresh Python processes, which import the workload: pass "
            f"{workload.name!r} as 'package.module:attribute' (a Workload object made here cannot be sent to them)"
        )
    if isinstance(workload, Workload):
        if workload.name in BUILTIN and WORKLOADS.get(workload.name) is not workload:
            raise BadInputError(f"workload {workload.name!r}: the name is taken by a built-in workload; choose another")
        with WORKLOADS.using(workload.name, workload):  # a re-declared workload (a notebook cell run again) is fine
            return _benchmark(workload.name, **options)
    if isinstance(workload, str) and ":" in workload:
        name = load_spec(workload).name
    elif isinstance(workload, str):
        name = WORKLOADS.get(workload).name  # UnknownNameError names the valid ones
        if processes != 1 and name not in BUILTIN:
            raise BadInputError(
                f"processes={processes}: workload {name!r} was registered in this process only; the worker processes "
                "import it: pass it as 'package.module:attribute'"
            )
    else:
        raise BadInputError(
            f"workload must be a tf2bench.Workload, a name or a module:attribute spec, got {workload!r}"
        )
    return _benchmark(name, source=workload, **options)


def _benchmark(
    name: str,
    *,
    source: str = "",
    loops: Sequence[str] | str,
    apis: Sequence[str] | str,
    preset: str,
    steps: int | None,
    rounds: int | None,
    seed: int,
    dataset: str,
    train_size: int | None,
    test_size: int | None,
    mixed_precision: str,
    processes: int,
    save: str | Path | None,
    verbose: bool,
) -> Any:
    from tf2bench.analysis import report, runs
    from tf2bench.suite.options import parse_options

    raw = {
        "workload": name,
        "loop": loops if isinstance(loops, str) else ",".join(loops),
        "api": apis if isinstance(apis, str) else ",".join(apis),
        "preset": preset,
        "steps": steps,
        "rounds": rounds,
        "seed": str(seed),
        "dataset": dataset,
        "train_size": train_size,
        "test_size": test_size,
        "mixed_precision": mixed_precision,
        "processes": processes,
    }
    opts = parse_options(raw, environ={})  # the arguments say it all: no TF2BENCH_* variables here
    started, records, failed, extra_record, machine = time.perf_counter(), [], [], {}, None
    say = print if verbose else None
    if opts.processes > 1:  # workers train; this process merges their records (tf2bench.suite.processes)
        from tf2bench.suite import processes as worker_processes

        spec = json.dumps({**{k: v for k, v in raw.items() if k != "processes"}, "workload": source or name})
        done = worker_processes.run(
            opts.processes,
            lambda k: [sys.executable, "-c", WORKER, spec],
            say=say or (lambda line: None),
            echo=lambda line: bool(verbose) and "samples/s" in line,
        )
        for case in opts.cases():
            info = done.merged(case.id)
            if info is None:
                why = [m for _, _, m in done.problems.get(case.id, [])] or ["no worker process finished it"]
                failed.append(_failure(case, why[0]))
            else:
                records.append(_benchmark_json(case, info["window_s"], info))
        extra_record, machine = {"processes": done.record()}, done.machine
    for case, info, error in () if opts.processes > 1 else _cases(name, opts, {}, say):
        if info is None:
            failed.append(_failure(case, error))
            continue
        records.append(_benchmark_json(case, info["window_s"], info))
        if verbose:
            print(f"{case.id}: {info['samples_per_sec']:.0f} samples/s ±{100 * info['cv']:.1f}%")
    record = {**opts.record(time.perf_counter() - started), "source": "tf2bench.benchmark", **extra_record}
    doc = _run_json(records, record, machine)
    path = _save(doc, Path(save)) if save is not None and records else None
    if records:
        run = runs.SavedRun(
            path=path or Path(f"api_{_stamp()}.json"),
            benchmarks=doc["benchmarks"],
            suite=doc["tf2bench"],
            datetime=doc["datetime"],
        )
        df = report.build([run])
        extra = {(b["extra_info"]["api"], b["extra_info"]["loop"]): b["extra_info"] for b in doc["benchmarks"]}
        cols = ("params", "gflops_per_sec", "flops_per_sample", "final_fingerprint", "init_fingerprint")
        for col in (*cols, "compute_dtype", "peak_dtype"):  # mfu is against the peak of peak_dtype
            df[col] = [extra[(a, v)].get(col) for a, v in zip(df["api"], df["loop"], strict=True)]
        df["error"] = None
    else:
        import pandas as pd

        df = pd.DataFrame(columns=["workload", "api", "loop", "error"])
    if failed:
        import pandas as pd

        df = pd.concat([df, pd.DataFrame(failed)], ignore_index=True)
    df.attrs["path"] = str(path) if path else None
    return df


def _cases(name: str, opts: Any, calibrations: dict, say: Any) -> Any:
    """Run every case of ``opts`` here, in turn: yields (case, record, None), or (case, None, why) for a case that
    cannot run (the rest still run). ``calibrations``: windows calibrated before (a later worker process's)."""
    from tf2bench.suite.runner import BenchmarkRun, run_case
    from tf2bench.workloads import data

    wl = WORKLOADS.get(name)
    train, test = opts.sizes(name)
    ds = data.load(wl, opts.dataset, train_size=train, test_size=test)
    for case in opts.cases():
        try:
            config, windows = opts.window_plan(name, case.api, case.seed, ds, calibrations, say)
            run = BenchmarkRun(wl, case.api, case.loop, ds, config, windows)
            info = run_case(run, repeat=case.repeat, case_id=case.id, warn_stacklevel=5)  # warns at the caller
        except BadInputError:
            raise  # the declaration or data is wrong: every loop would fail the same way
        except UnsupportedError as exc:
            yield case, None, f"skipped: {exc}"
            continue
        except Exception as exc:  # a loop this model breaks: record why, run the rest
            yield case, None, f"{type(exc).__name__}: {reason(exc)}"
            continue
        yield case, info, None


WORKER = "import sys, tf2bench.api; sys.exit(tf2bench.api.worker_main(sys.argv[1:]))"  # benchmark(processes=N)'s


def worker_main(argv: Sequence[str]) -> int:
    """One worker process of ``benchmark(processes=N)`` (suite.processes sets its role and folder): its share of
    every case, each appended to its events file as a record or as why the case did not run."""
    from tf2bench.suite import processes
    from tf2bench.suite.options import PROCESS_ENV, parse_options
    from tf2bench.suite.runner import machine_record

    role, folder = os.environ.get(PROCESS_ENV), os.environ.get(processes.DIR_ENV)
    if len(argv) != 1 or not role or not folder:
        print(f"usage: {PROCESS_ENV}=k/N {processes.DIR_ENV}=DIR python -c {WORKER!r} SPEC_JSON", file=sys.stderr)
        return 2
    process, spec = int(role.split("/")[0]), json.loads(argv[0])
    source = spec["workload"]
    name = load_spec(source).name if ":" in source else WORKLOADS.get(source).name
    opts = parse_options({**spec, "workload": name}, environ={PROCESS_ENV: role})
    for case, info, error in _cases(name, opts, processes.load_calibrations(Path(folder)), None):
        event = {"event": "case", "info": info} if info else {"event": "failed", "message": error}
        processes.append_event(Path(folder), process, {**event, "case": case.id, "nodeid": case.id})
        if info:
            print(f"{case.id}: {info['samples_per_sec']:.0f} samples/s ±{100 * info['cv']:.1f}%", flush=True)
    processes.append_event(Path(folder), process, {"event": "done", "exitstatus": 0, "machine": machine_record()})
    return 0


def _failure(case: Any, error: str) -> dict[str, Any]:
    return {"workload": case.workload, "api": case.api, "loop": case.loop, "error": error}


def _benchmark_json(
    case: Any, seconds: list[float], info: dict[str, Any], module: str = "tf2bench.api"
) -> dict[str, Any]:
    """One benchmark as pytest-benchmark writes it (stats over the rounds, round data included); ``case`` is a
    tf2bench.suite.options.Case, ``module`` the source named in its fullname (the multi-worker chief
    saves through here too)."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for s in seconds:
        stats.update(s)
    return {
        "group": f"{case.workload}-{case.api}",
        "name": f"test_train[{case.id}]",
        "fullname": f"{module}::test_train[{case.id}]",
        "params": {"case": case.id},
        "param": case.id,
        "extra_info": info,
        "options": {"timer": "tf2bench.measure.timing.bench_clock", "min_rounds": len(seconds), "warmup": False},
        "stats": {**stats.as_dict(), "data": list(seconds), "iterations": 1},
    }


def _run_json(
    benchmarks: list[dict[str, Any]], record: dict[str, Any], machine_tf2bench: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The run document around ``benchmarks``; ``record`` is its run-level ``tf2bench`` key (SuiteOptions.record
    plus ``source``), which report and compare read. ``machine_tf2bench``: machine_info's tf2bench part as the
    worker processes measured it (default: measured here)."""
    from pytest_benchmark import __version__
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
    from pytest_benchmark.utils import get_commit_info

    from tf2bench.suite.runner import machine_record

    machine = pytest_benchmark_generate_machine_info()
    # float32 as before per-dtype peaks, and every precision measured (a result's compute_dtype keys it)
    machine["tf2bench"] = machine_tf2bench or machine_record()
    return {
        "machine_info": machine,
        "commit_info": get_commit_info(),
        "benchmarks": benchmarks,
        "datetime": _dt.datetime.now(_dt.timezone.utc).isoformat(),
        "version": __version__,
        "tf2bench": record,
    }


def _stamp() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d_%H%M%S")


def _save(doc: dict[str, Any], storage: Path) -> Path:
    """A new numbered file under ``storage/<machine id>/``: pytest-benchmark's own FileStorage numbers it,
    saved atomically and never over an earlier run (tf2bench.saved.storage), as the suite's runs are."""
    from pytest_benchmark.logger import Logger
    from pytest_benchmark.storage.file import FileStorage
    from pytest_benchmark.utils import get_machine_id, get_tag

    from tf2bench.saved.storage import make_run_saves_atomic

    files = FileStorage(storage, Logger(Logger.QUIET), default_machine_id=get_machine_id())
    make_run_saves_atomic(files)
    for _ in range(5):  # another process may take the number between listing and linking
        number = files._next_num
        try:
            files.save(doc, get_tag())
        except FileExistsError:
            continue
        (path,) = files.path.joinpath(get_machine_id()).glob(f"{number}_*.json")
        return storage / path.relative_to(files.path)
    raise Tf2benchError(f"could not find a free run number under {storage}")
