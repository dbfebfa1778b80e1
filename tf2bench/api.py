"""``tf2bench.benchmark``: the suite from Python, on any workload, as a pandas DataFrame.

Every option of ``pytest bench`` is an argument here, by the same name and with the same checks
(tf2bench.suite.options.parse_options), and the cases are planned by the same planner (tf2bench.suite.plan);
the run is laid out as a pytest-benchmark JSON document (tf2bench.saved.runfile, so ``tf2bench report`` and
``tf2bench compare`` read it unchanged when saved) and the DataFrame comes from the report's own table builder.
A loop that cannot train the model (not XLA-compilable, Python side effects in ``call``) gets a row with its
``error``; the others still run.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tf2bench.errors import BadInputError, UnsupportedError, reason
from tf2bench.workloads import BUILTIN, WORKLOADS, Workload

MODULE = "tf2bench.api"  # the source named in a saved benchmark's fullname
Outcome = tuple[Any, dict[str, Any] | None, str | None]  # (case, its record, or why it did not run)


def benchmark(
    workload: Workload | str,
    loops: Sequence[str] | str = "all",
    *,
    apis: Sequence[str] | str = "all",
    preset: str = "quick",
    dataset: str = "auto",
    epochs: int | None = None,
    steps: int | None = None,
    rounds: int | None = None,
    warmup_steps: int | None = None,
    batch_size: int | None = None,
    seed: int = 0,
    seeds: int = 1,
    repeat: int = 1,
    train_size: int | None = None,
    test_size: int | None = None,
    profile: bool = False,
    profile_steps: int | None = None,
    trace_dir: str | Path | None = None,
    devices: int | None = None,
    mixed_precision: str = "auto",
    scaling: str = "strong",
    processes: int = 1,
    save: str | Path | None = None,
    verbose: bool = False,
    variants: Sequence[str] | str | None = None,
) -> Any:
    """Time ``loops`` of the training loop on ``workload``; one DataFrame row per (workload, api, loop).

    ``workload``: a :class:`Workload` (registered for the call only), a registered name, or a
    ``"package.module:attribute"`` spec. ``loops``, ``apis``: names, or ``"all"``. Every other option is
    ``pytest bench``'s of the same name (``pytest bench --help``, docs/measuring.md), checked the same way:
    ``steps``/``rounds`` fix the windows and rounds (unset, the preset's: ``quick`` calibrates the steps per window);
    ``seeds``/``repeat`` run every case for several seeds / the whole selection several times, interleaved;
    ``profile`` traces an untimed window per benchmark under ``trace_dir`` (default results/traces);
    ``devices`` makes N replica devices for the distributed loops (before TensorFlow starts);
    ``mixed_precision``: ``auto`` (float16 on a GPU, bfloat16 on a CPU), ``float16`` (with loss scaling) or
    ``bfloat16``; ``processes``: time the cases in that many fresh worker processes, one after another, each with a
    share of every case's rounds (tf2bench.suite.processes), the rows their merged records; the workers import
    the workload: pass a registered name or a module:attribute spec.

    ``save``: a pytest-benchmark storage directory (e.g. ``"results/benchmarks"``); the run is added there as a new
    numbered file, never overwriting one, and its path is in ``df.attrs["path"]``. Columns are the report's
    (``tf2bench.analysis.report.build``) plus ``params``, ``mfu``, ``final_fingerprint`` and ``error``.
    """
    if variants is not None:  # the old name of ``loops``
        warnings.warn("benchmark(variants=...) is now benchmark(loops=...)", DeprecationWarning, stacklevel=2)
        loops = variants
    raw = {
        "loop": loops, "api": apis, "preset": preset, "dataset": dataset, "epochs": epochs, "steps": steps,
        "rounds": rounds, "warmup_steps": warmup_steps, "batch_size": batch_size, "seed": seed, "seeds": seeds,
        "repeat": repeat, "train_size": train_size, "test_size": test_size, "profile": profile,
        "profile_steps": profile_steps, "trace_dir": trace_dir, "devices": devices,
        "mixed_precision": mixed_precision, "scaling": scaling, "processes": processes,
    }  # fmt: skip
    if isinstance(workload, Workload):
        if workload.name in BUILTIN and WORKLOADS.get(workload.name) is not workload:
            raise BadInputError(f"workload {workload.name!r}: the name is taken by a built-in workload; choose another")
        with WORKLOADS.using(workload.name, workload):  # a re-declared workload (a notebook cell run again) is fine
            return _benchmark({**raw, "workload": workload.name}, save, verbose, here_only=[workload.name])
    if not isinstance(workload, str):
        raise BadInputError(
            f"workload must be a tf2bench.Workload, a name or a module:attribute spec, got {workload!r}"
        )
    # names registered by this process alone (not built in, not a spec the workers can import)
    here_only = [t.strip() for t in workload.split(",") if ":" not in t and t.strip() not in (*BUILTIN, "all")]
    return _benchmark({**raw, "workload": workload}, save, verbose, here_only=here_only)


def _benchmark(raw: dict[str, Any], save: str | Path | None, verbose: bool, here_only: list[str]) -> Any:
    """Parse, run (here, or in worker processes), save, and build the table."""
    from tf2bench.saved import runfile
    from tf2bench.suite.options import parse_options
    from tf2bench.suite.plan import Planner
    from tf2bench.suite.runner import machine_record

    opts = parse_options(raw, environ={})  # the arguments say it all: no TF2BENCH_* variables here
    if opts.processes > 1 and here_only:
        raise BadInputError(
            f"processes={opts.processes} times the cases in fresh Python processes, which import the workload: "
            f"pass {here_only[0]!r} as 'package.module:attribute' (a workload made or registered in this process "
            "cannot be sent to them)"
        )
    started, header, machine = time.perf_counter(), {}, None
    planner = Planner(opts, say=print if verbose else None)
    if opts.devices and opts.processes == 1:  # before TensorFlow initialises (DevicesTooLateError if not)
        from tf2bench.loops.distributed import configure_devices

        configure_devices(opts.devices)  # (each worker process configures its own)
    if opts.processes > 1:  # workers train; this process merges their records (tf2bench.suite.processes)
        outcomes, header, machine = _run_in_processes(planner, raw, verbose)
    else:
        outcomes = list(run_cases(planner, verbose=verbose, warn_stacklevel=5))  # warns at benchmark()'s caller
    header = {**opts.run_header(time.perf_counter() - started), "source": "tf2bench.benchmark", **header}
    done = [runfile.benchmark_json(case, info["window_s"], info, MODULE) for case, info, _ in outcomes if info]
    failed = [_failure(case, error) for case, info, error in outcomes if not info]
    doc = runfile.run_json(done, header, machine or machine_record()) if done else None
    path = runfile.save(doc, Path(save), runfile.default_tag()) if save is not None and doc else None
    return _frame(doc, failed, path)


def run_cases(planner: Any, *, verbose: bool = False, warn_stacklevel: int = 2) -> Iterator[Outcome]:
    """Run every case of ``planner`` here, in turn: yields (case, record, None), or (case, None, why) for a case
    that cannot run (the rest still run). A wrong declaration or data (BadInputError) stops them all."""
    from tf2bench.suite.runner import run_case

    for case in planner.cases():
        try:
            run = planner.prepare(case)
            profile_dir = planner.profile_dir(case)
            info = run_case(
                run, repeat=case.repeat, profile_dir=profile_dir, case_id=case.id, warn_stacklevel=warn_stacklevel
            )
        except BadInputError:
            raise  # the declaration or data is wrong: every loop would fail the same way
        except UnsupportedError as exc:
            yield case, None, f"skipped: {exc}"
            continue
        except Exception as exc:  # a loop this model breaks: record why, run the rest
            yield case, None, f"{type(exc).__name__}: {reason(exc)}"
            continue
        if verbose:
            print(f"{case.id}: {info['samples_per_sec']:.0f} samples/s ±{100 * info['cv']:.1f}%", flush=True)
        yield case, info, None


def _run_in_processes(planner: Any, raw: dict[str, Any], verbose: bool) -> tuple[list[Outcome], dict, dict | None]:
    """The cases timed by ``planner.options.processes`` worker processes (``worker_main``), their records merged:
    (outcomes, the run header's ``processes`` key, machine_info's tf2bench part as the workers measured it)."""
    from tf2bench.suite import processes

    trace_dir = planner.trace_run_dir()  # made here: the first worker profiles into it
    spec = {**raw, "processes": None, "trace_dir": str(trace_dir) if trace_dir else None}
    done = processes.run(
        planner.options.processes,
        lambda k: [sys.executable, "-c", WORKER, json.dumps(spec, default=str)],
        say=print if verbose else (lambda line: None),
        echo=lambda line: verbose and "samples/s" in line,
    )
    outcomes: list[Outcome] = []
    for case in planner.cases():
        info = done.merged(case.id)
        why = [m for _, _, m in done.problems.get(case.id, [])] or ["no worker process finished it"]
        outcomes.append((case, info, None if info else why[0]))
    return outcomes, {"processes": done.record()}, done.machine


WORKER = "import sys, tf2bench.api; sys.exit(tf2bench.api.worker_main(sys.argv[1:]))"  # benchmark(processes=N)'s


def worker_main(argv: Sequence[str]) -> int:
    """One worker process of ``benchmark(processes=N)`` (suite.processes sets its role and folder): its share of
    every case, each appended to its events file as a record or as why the case did not run."""
    from tf2bench.suite import processes
    from tf2bench.suite.options import PROCESS_ENV, parse_options
    from tf2bench.suite.plan import Planner
    from tf2bench.suite.runner import machine_record

    role, folder = os.environ.get(PROCESS_ENV), os.environ.get(processes.DIR_ENV)
    if len(argv) != 1 or not role or not folder:
        print(f"usage: {PROCESS_ENV}=k/N {processes.DIR_ENV}=DIR python -c {WORKER!r} SPEC_JSON", file=sys.stderr)
        return 2
    opts = parse_options(json.loads(argv[0]), environ={PROCESS_ENV: role})
    if opts.devices:
        from tf2bench.loops.distributed import configure_devices

        configure_devices(opts.devices)
    planner = Planner(opts, calibrations=processes.load_calibrations(Path(folder)))
    for case, info, error in run_cases(planner, verbose=True):
        event = {"event": "case", "info": info} if info else {"event": "failed", "message": error}
        processes.append_event(Path(folder), opts.process, {**event, "case": case.id, "nodeid": case.id})
    processes.append_event(Path(folder), opts.process, {"event": "done", "exitstatus": 0, "machine": machine_record()})
    return 0


def _failure(case: Any, error: str | None) -> dict[str, Any]:
    return {"workload": case.workload, "api": case.api, "loop": case.loop, "error": error}


def _frame(doc: dict[str, Any] | None, failed: list[dict[str, Any]], path: Path | None) -> Any:
    """The report's table of ``doc``'s benchmarks (plus a few of their record's columns), then a row per case that
    did not run, with its ``error``; ``attrs["path"]``: the saved file, if any."""
    import datetime as dt

    import pandas as pd

    from tf2bench.analysis import report, runs

    if doc is not None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d_%H%M%S")
        run = runs.SavedRun(
            path=path or Path(f"api_{stamp}.json"),
            benchmarks=doc["benchmarks"],
            suite=doc["tf2bench"],
            datetime=doc["datetime"],
        )
        df = report.build([run])
        infos = [b["extra_info"] for b in doc["benchmarks"]]
        extra = {(i["workload"], i["api"], i["loop"]): i for i in infos}
        cols = ("params", "gflops_per_sec", "flops_per_sample", "final_fingerprint", "init_fingerprint")
        keys = list(zip(df["workload"], df["api"], df["loop"], strict=True))
        for col in (*cols, "compute_dtype", "peak_dtype"):  # mfu is against the peak of peak_dtype
            df[col] = [extra[k].get(col) for k in keys]
        df["error"] = None
    else:
        df = pd.DataFrame(columns=["workload", "api", "loop", "error"])
    if failed:
        df = pd.concat([df, pd.DataFrame(failed)], ignore_index=True)
    df.attrs["path"] = str(path) if path else None
    return df
