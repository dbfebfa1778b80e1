"""`tf2bench report | compare | history | export | bisect | tensorboard | doctor`: read saved runs, print tables,
export figures, find the commit of a slowdown, serve traces, check the machine; exit code.

``report``, ``compare``, ``history`` and ``export`` never import TensorFlow: reading results must be quick and work
on a CI box without it (``tensorboard`` starts TensorBoard's own server over the traces; ``doctor`` runs TensorFlow).
Each subcommand is one ``add_parser`` call plus a ``run(args) -> int`` function; add one by appending to SUBCOMMANDS.

Exit codes (tf2bench.errors): 0 fine; 1 a regression, a newest-segment slowdown (history), a loop that is not
equivalent to fit, or a failed doctor check; 2 bad input
(unreadable or foreign file, no common benchmarks, bad option); 3 baseline missing (bisect: cannot tell;
docs/errors.md has every command's codes).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tf2bench import bisect
from tf2bench.errors import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, Tf2benchError
from tf2bench.saved import storage

PROG = "tf2bench"


def _err(message: str) -> None:
    print(f"{PROG}: error: {message}", file=sys.stderr)


def _name_unusable(errors: list) -> None:
    """One line on stderr per input that could not be used; the rest are still read."""
    for exc in errors:
        _err(str(exc))


def _percent(text: str) -> float:
    try:
        value = float(text.strip().rstrip("%"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of percent such as 10 or 10%, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


# ---- report -------------------------------------------------------------------------------------------------------


def add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="tables, speed-ups, accuracy verdicts and charts from saved runs",
        description="Report saved suite runs: results/reports/<run-id>/report.{md,csv,html} plus a summary here. "
        "Exit 1 if a loop other than tutorial is not equivalent to fit in accuracy, 2 on bad input.",
    )
    p.add_argument("paths", nargs="*", help="run files, directories, globs or run numbers (default: the newest run)")
    p.add_argument("--storage", type=Path, default=storage.BENCHMARKS, help="where run numbers are looked up")
    p.add_argument("--out", type=Path, default=storage.REPORTS, help="reports go to OUT/<run-id>/")
    p.add_argument(
        "--tolerance",
        type=_percent,
        default=1.0,
        help="the quality tier's practical margin, percentage points: a loop's accuracy DIFFERS from fit's only "
        "beyond it and significantly (default 1; with several seeds at least 3x fit's seed-to-seed std)",
    )
    p.add_argument(
        "--alpha",
        type=float,
        default=0.01,
        help="significance level of the quality tier's paired McNemar test on the same test samples (default 0.01)",
    )
    p.set_defaults(run=run_report)


def run_report(args: argparse.Namespace) -> int:
    from tf2bench.analysis import render, report, runs

    loaded, errors = runs.load_many(args.paths, args.storage)
    _name_unusable(errors)
    if not loaded:
        return EXIT_BAD_INPUT
    df = report.build(loaded, args.tolerance, args.alpha)
    written = render.write(df, loaded, args.out)
    print(render.text_table(render.summary(df)))
    for line in render.notes(df, loaded):
        print(f"note: {line}")
    failed = report.failures(df)
    for line in failed:
        print(f"FAILED: {line}")
    names = ", ".join(p.name for p in written.files if p.name != "sources.json")
    print(f"wrote {written.directory}/: {names}")
    if errors:
        _err(f"{len(errors)} input(s) could not be used (see above); the report covers the other {len(loaded)} run(s)")
    if failed:
        return EXIT_FAILED
    return EXIT_BAD_INPUT if errors else EXIT_OK


# ---- compare ------------------------------------------------------------------------------------------------------


def add_compare(sub: argparse._SubParsersAction) -> None:
    from tf2bench.analysis import explain, summary  # stdlib-only at import: the parser stays quick

    p = sub.add_parser(
        "compare",
        help="regression gate: baseline run vs current run",
        description="Compare two saved runs loop by loop (or benchmark by benchmark with --by benchmark). A "
        "regression is a slowdown beyond --threshold that the rounds' one-sided Mann-Whitney U test finds "
        "significant (p < 0.01) and that stands out from the run-to-run noise (the history's runs, and the "
        "spread of --processes runs: a t on the run levels, Benjamini-Hochberg over loops, or the workload's "
        "median loop). With fewer than 3 runs of history and no process spread a loop is not gated yet "
        "(--prior-noise gates it against a stated noise). docs/gate.md. "
        "Exit 0 no regression, 1 regression, 2 bad input, 3 baseline missing.",
    )
    p.add_argument("baseline", help="baseline run: a file, or a run number under --storage")
    p.add_argument(
        "current", nargs="?", help="current run: a file, or a run number (default: the newest under --storage)"
    )
    p.add_argument("--storage", type=Path, default=storage.BENCHMARKS, help="where run numbers are looked up")
    p.add_argument("--threshold", type=_percent, default=10.0, help="slowdown that counts, percent (default 10)")
    p.add_argument(
        "--by",
        choices=("loop", "benchmark"),
        default="loop",
        help="the gate's unit: a loop pooled over the model APIs (default; robust to load bursts on a shared "
        "machine), or every benchmark alone (a quiet, dedicated runner)",
    )
    p.add_argument(
        "--normalize",
        action="store_true",
        help="compare speed-ups vs fit of the same run instead of absolute samples/s (for baselines from another "
        "machine)",
    )
    p.add_argument(
        "--history",
        action="append",
        metavar="RUNS",
        help="earlier runs the run-to-run noise is read from (files, directories, globs; repeatable); default: the "
        "runs saved beside the baseline. Only runs up to the baseline, of the same hardware and settings, count",
    )
    p.add_argument("--no-history", action="store_true", help="test rounds only (two runs, no run-to-run noise)")
    p.add_argument(
        "--baseline-alone",
        action="store_true",
        help="compare with the baseline run alone; default: the mean of its commit's runs in the history (a steadier "
        "baseline, as pyperf's several processes)",
    )
    p.add_argument("--target", type=_percent, default=5.0, help="slowdown the power hint aims at, percent (default 5)")
    p.add_argument(
        "--prior-noise",
        type=_percent,
        metavar="PCT",
        help="cold start (a loop with < 3 runs of history): gate it against this run-to-run noise, percent; "
        "default: not gated yet, with a warning (docs/gate.md)",
    )
    summary.add_arguments(p)  # --summary FILE, --format text|markdown
    explain.add_arguments(p)  # --explain, --out DIR
    p.set_defaults(run=run_compare)


def _one(spec: str, storage: Path, role: str, missing: type) -> Path:
    from tf2bench.analysis import runs

    paths = runs.resolve(spec, storage, missing=missing)
    if len(paths) != 1:
        raise runs.RunFileError(spec, f"the {role} must be one run, this names {len(paths)}")
    return paths[0]


def _history(specs: list[str], storage: Path, base: Any, cur: Any) -> list:
    """The earlier runs for the run-to-run noise; a file that cannot be read is named and left out, never fatal."""
    from tf2bench.analysis import compare, runs

    loaded, errors = runs.load_many(specs, storage, require_round_data=True)
    for e in errors:
        print(f"note: history: {e} (left out)")
    return compare.lookback(base, cur, loaded)


def run_compare(args: argparse.Namespace) -> int:
    from tf2bench.analysis import compare, explain, render, runs, summary

    base = runs.load(_one(args.baseline, args.storage, "baseline", runs.MissingBaselineError), True)
    current = _one(args.current, args.storage, "current run", runs.MissingRunError) if args.current else None
    cur = runs.load(current or runs.newest(args.storage), True)
    history = [] if args.no_history else _history(args.history or [str(base.path.parent)], args.storage, base, cur)
    result = compare.compare(
        base,
        cur,
        args.threshold,
        args.normalize,
        by=args.by,
        history=history,
        target_pct=args.target,
        pool_commit=not args.baseline_alone,
        prior_pct=args.prior_noise,
    )
    explained = explain.compute(args, base, cur, result)  # once: terminal, explain.* files and the summary
    if (code := summary.emit(args, base, cur, result, explained)) is not None:  # --format markdown: the block alone
        return code
    what = "speed-up vs fit of the same run" if args.normalize else "samples/s, median of pooled rounds"
    print(
        f"baseline {base.path}\ncurrent  {cur.path}\n({what}; time change + = slower; threshold {args.threshold:g}%,"
        f" p < {compare.ALPHA:g}: the rounds' one-sided Mann-Whitney U and the run-to-run test, docs/gate.md)"
    )
    print(render.text_table(compare.formatted(result)))
    for line in result.notes:
        print(f"note: {line}")
    explain.emit(args, base, cur, *explained)  # each REGRESSION (--explain: every loop) from the profiles
    bad = result.regressions
    for r in bad.itertuples():
        ps = f"p rounds {r.p_value:.2g}" + "".join(
            f", p {name} {v:.2g}"
            for name, v in (("run", r.run_p), ("workload", r.shift_p))
            if v == v  # not NaN
        )
        print(f"REGRESSION: {r.benchmark} is {r.change_pct:.1f}% slower ({ps})")
    if len(bad):
        return EXIT_FAILED
    ungated = int(result.table["verdict"].isin(compare.NOT_GATED.values()).sum()) if len(result.table) else 0
    print("no regression" + (f" ({ungated} loop(s) not gated yet: see the warning above)" if ungated else ""))
    return EXIT_OK


# ---- history ------------------------------------------------------------------------------------------------------


def add_history(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "history",
        help="each loop's throughput across saved runs, with the steps in it (change points)",
        description="Throughput of every workload/loop across runs (oldest first), one series per machine, with "
        "change points (ruptures) that count only when significant (a t test on the run levels, p < 0.01) and "
        "beyond --threshold. Writes results/reports/history-<digest>/. Exit 0 fine, 1 the newest segment of a "
        "series is such a slowdown, 2 bad input.",
    )
    p.add_argument("paths", nargs="*", help="run files, directories, globs or run numbers (default: every saved run)")
    p.add_argument("--storage", type=Path, default=storage.BENCHMARKS, help="where saved runs are looked up")
    p.add_argument("--out", type=Path, default=storage.REPORTS, help="files go to OUT/history-<digest>/")
    p.add_argument("--threshold", type=_percent, default=10.0, help="time change that counts, percent (default 10)")
    p.add_argument("--normalize", action="store_true", help="speed-up vs fit of the same run instead of samples/s")
    p.add_argument(
        "--merge-machines",
        action="store_true",
        help="with --normalize: one series across machines (otherwise each machine has its own)",
    )
    p.set_defaults(run=run_history)


def run_history(args: argparse.Namespace) -> int:
    from tf2bench.analysis import history_report

    return history_report.run(args)


# ---- export -------------------------------------------------------------------------------------------------------


def add_export(sub: argparse._SubParsersAction) -> None:
    from tf2bench.analysis import export  # stdlib-only at import

    p = sub.add_parser(
        "export",
        help="a run's samples/s (or step time) per benchmark for github-action-benchmark's custom tools",
        description="Write a saved run's figures per benchmark as github-action-benchmark's customBiggerIsBetter "
        "JSON (samples/s; --metric step-time: customSmallerIsBetter, ms). Exit 0 written, 2 bad input.",
    )
    export.add_arguments(p)
    p.set_defaults(run=export.run)


# ---- tensorboard --------------------------------------------------------------------------------------------------


def add_tensorboard(sub: argparse._SubParsersAction) -> None:
    from tf2bench import tb

    p = sub.add_parser(
        "tensorboard",
        help="serve profiler traces (pytest bench --profile) with TensorBoard on 127.0.0.1",
        description="Serve a run's profiler traces, one TensorBoard run per benchmark, on 127.0.0.1; prints the URL.",
    )
    tb.add_arguments(p)
    p.set_defaults(run=lambda args: tb.serve(args.logdir, args.port))


# ---- doctor -------------------------------------------------------------------------------------------------------


def add_doctor(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="check this machine before a long run: devices, CUDA build, XLA, profiler, mixed precision, clocks",
        description="Check this machine before a long run, one line per check (ok / info / warn / fail) with the "
        "fix: the devices TensorFlow sees, its CUDA/cuDNN build, XLA, a 2-step profile, the mixed-precision "
        "policies, GPU memory growth, GPU clocks. Exit 1 if a check fails, 0 otherwise.",
    )
    p.set_defaults(run=run_doctor)


def run_doctor(args: argparse.Namespace) -> int:
    from tf2bench import doctor  # imports TensorFlow: only this subcommand pays for it

    return doctor.main()


# ---- dispatch -----------------------------------------------------------------------------------------------------

SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_report,
    add_compare,
    add_history,
    add_export,
    bisect.add_subcommand,
    add_tensorboard,
    add_doctor,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="tf2bench: report and gate saved benchmark runs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tf2bench`` console script; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code or 0)
    try:
        return args.run(args)
    except Tf2benchError as exc:
        _err(str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
