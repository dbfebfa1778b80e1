"""``tf2bench.benchmark``: the suite from Python, on any workload, as a pandas DataFrame.

The same cases, runner and result record as ``pytest bench``; the run is laid out as a
pytest-benchmark JSON document (so ``tf2bench report`` and ``tf2bench compare`` read it
unchanged when saved) and the DataFrame comes from the report's own table builder. A
variant that cannot train the model (not XLA-compilable, Python side effects in ``call``)
gets a row with its ``error``; the others still run.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tf2bench.errors import BadInputError, Tf2benchError, UnsupportedError, reason
from tf2bench.workloads import BUILTIN, WORKLOADS, Workload, load_spec


def benchmark(
    workload: Workload | str,
    variants: Sequence[str] | str = "all",
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
    save: str | Path | None = None,
    verbose: bool = False,
) -> Any:
    """Time ``variants`` of the training loop on ``workload``; one DataFrame row per (api, variant).

    ``workload``: a :class:`Workload` (registered for the call only), a registered name, or a
    ``"package.module:attribute"`` spec. ``save``: a pytest-benchmark storage directory
    (e.g. ``"results/benchmarks"``); the run is added there as a new numbered file, never
    overwriting one, and its path is in ``df.attrs["path"]``. ``steps``/``rounds``: fixed windows and rounds;
    unset, the preset's (``quick`` calibrates the steps per window, docs/measuring.md). Columns are the report's
    (``tf2bench.analysis.report.build``) plus ``params``, ``mfu``, ``final_fingerprint`` and ``error``.
    ``mixed_precision``: the mixed loops' half precision, ``auto`` (float16 on a GPU, bfloat16 on a CPU), ``float16``
    (with loss scaling) or ``bfloat16``.
    """
    options = {
        "variants": variants, "apis": apis, "preset": preset, "steps": steps, "rounds": rounds, "seed": seed,
        "dataset": dataset, "train_size": train_size, "test_size": test_size, "save": save, "verbose": verbose,
        "mixed_precision": mixed_precision,
    }  # fmt: skip
    if isinstance(workload, Workload):
        if workload.name in BUILTIN and WORKLOADS.get(workload.name) is not workload:
            raise BadInputError(f"workload {workload.name!r}: the name is taken by a built-in workload; choose another")
        with WORKLOADS.using(workload.name, workload):  # a re-declared workload (a notebook cell run again) is fine
            return _benchmark(workload.name, **options)
    if isinstance(workload, str) and ":" in workload:
        name = load_spec(workload).name
    elif isinstance(workload, str):
        name = WORKLOADS.get(workload).name  # UnknownNameError names the valid ones
    else:
        raise BadInputError(
            f"workload must be a tf2bench.Workload, a name or a module:attribute spec, got {workload!r}"
        )
    return _benchmark(name, **options)


def _benchmark(
    name: str,
    *,
    variants: Sequence[str] | str,
    apis: Sequence[str] | str,
    preset: str,
    steps: int | None,
    rounds: int | None,
    seed: int,
    dataset: str,
    train_size: int | None,
    test_size: int | None,
    mixed_precision: str,
    save: str | Path | None,
    verbose: bool,
) -> Any:
    from tf2bench.analysis import report, runs
    from tf2bench.runner import BenchmarkRun, run_case
    from tf2bench.suite import parse_options
    from tf2bench.workloads import data

    raw = {
        "workload": name,
        "variant": variants if isinstance(variants, str) else ",".join(variants),
        "api": apis if isinstance(apis, str) else ",".join(apis),
        "preset": preset,
        "steps": steps,
        "rounds": rounds,
        "seed": str(seed),
        "dataset": dataset,
        "train_size": train_size,
        "test_size": test_size,
        "mixed_precision": mixed_precision,
    }
    opts = parse_options(raw, environ={})  # the arguments say it all: no TF2BENCH_* variables here
    wl = WORKLOADS.get(name)
    train, test = opts.sizes(name)
    ds = data.load(wl, opts.dataset, train_size=train, test_size=test)
    started, records, failed, calibrations = time.perf_counter(), [], [], {}
    say = print if verbose else None
    for case in opts.cases():
        try:
            config, windows = opts.window_plan(name, case.api, case.seed, ds, calibrations, say)
            run = BenchmarkRun(wl, case.api, case.variant, ds, config, windows)
            info = run_case(run, repeat=case.repeat, case_id=case.id, warn_stacklevel=4)  # warns at the caller
            seconds = [w.seconds for w in run.windows]
        except BadInputError:
            raise  # the declaration or data is wrong: every variant would fail the same way
        except UnsupportedError as exc:
            failed.append(_failure(case, f"skipped: {exc}"))
            continue
        except Exception as exc:  # a loop this model breaks: record why, run the rest
            failed.append(_failure(case, f"{type(exc).__name__}: {reason(exc)}"))
            continue
        records.append(_benchmark_json(case, seconds, info))
        if verbose:
            print(f"{case.id}: {info['samples_per_sec']:.0f} samples/s ±{100 * info['cv']:.1f}%")
    doc = _run_json(records, {**opts.record(time.perf_counter() - started), "source": "tf2bench.benchmark"})
    path = _save(doc, Path(save)) if save is not None and records else None
    if records:
        run = runs.SavedRun(
            path=path or Path(f"api_{_stamp()}.json"),
            benchmarks=doc["benchmarks"],
            suite=doc["tf2bench"],
            datetime=doc["datetime"],
        )
        df = report.build([run])
        extra = {(b["extra_info"]["api"], b["extra_info"]["variant"]): b["extra_info"] for b in doc["benchmarks"]}
        cols = ("params", "gflops_per_sec", "flops_per_sample", "final_fingerprint", "init_fingerprint")
        for col in (*cols, "compute_dtype", "peak_dtype"):  # mfu is against the peak of peak_dtype
            df[col] = [extra[(a, v)].get(col) for a, v in zip(df["api"], df["variant"], strict=True)]
        df["error"] = None
    else:
        import pandas as pd

        df = pd.DataFrame(columns=["workload", "api", "variant", "error"])
    if failed:
        import pandas as pd

        df = pd.concat([df, pd.DataFrame(failed)], ignore_index=True)
    df.attrs["path"] = str(path) if path else None
    return df


def _failure(case: Any, error: str) -> dict[str, Any]:
    return {"workload": case.workload, "api": case.api, "variant": case.variant, "error": error}


def _benchmark_json(
    case: Any, seconds: list[float], info: dict[str, Any], module: str = "tf2bench.api"
) -> dict[str, Any]:
    """One benchmark as pytest-benchmark writes it (stats over the rounds, round data included); ``case`` is a
    tf2bench.suite.Case, ``module`` the source named in its fullname (tf2bench.multiworker saves through here too)."""
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
        "options": {"timer": "tf2bench.timing.bench_clock", "min_rounds": len(seconds), "warmup": False},
        "stats": {**stats.as_dict(), "data": list(seconds), "iterations": 1},
    }


def _run_json(benchmarks: list[dict[str, Any]], record: dict[str, Any]) -> dict[str, Any]:
    """The run document around ``benchmarks``; ``record`` is its run-level ``tf2bench`` key (SuiteOptions.record
    plus ``source``), which report and compare read."""
    from pytest_benchmark import __version__
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
    from pytest_benchmark.utils import get_commit_info

    from tf2bench.runner import machine_record

    machine = pytest_benchmark_generate_machine_info()
    # float32 as before per-dtype peaks, and every precision measured (a result's compute_dtype keys it)
    machine["tf2bench"] = machine_record()
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
    saved atomically and never over an earlier run (tf2bench.storage), as the suite's runs are."""
    from pytest_benchmark.logger import Logger
    from pytest_benchmark.storage.file import FileStorage
    from pytest_benchmark.utils import get_machine_id, get_tag

    from tf2bench.storage import make_run_saves_atomic

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
