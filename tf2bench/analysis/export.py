"""`tf2bench export`: a saved run's figures in another tool's format, for teams whose CI already charts with it.

``github-action-benchmark`` (benchmark-action/github-action-benchmark) reads pytest-benchmark JSON itself, but
charts its ``ops``: windows per second here, which change with the calibrated window length, not with the
loop's speed. Its custom tools take a JSON list of ``{name, unit, value, range?, extra?}`` entries (its README;
src/extract.ts parses each entry with name, unit, range and extra as strings and value as a number):
``customBiggerIsBetter`` for samples/s, ``customSmallerIsBetter`` for the step time. One file per metric:
the action reads one tool per step. The figures are the report's (tf2bench.analysis.report: the median over the
rounds of each benchmark, its repeats and seeds pooled), so the chart and ``tf2bench report`` agree.

No TensorFlow; the file is written whole or not at all (storage.atomic_write). JSON has no NaN: a benchmark
without a figure is left out and named.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tf2bench.errors import EXIT_OK, BadInputError
from tf2bench.saved import storage

FORMATS = ("github-action-benchmark",)


@dataclass(frozen=True)
class Metric:
    column: str  # in report.build's table
    unit: str
    tool: str  # the action's `tool:` input for this file
    digits: int  # significant digits kept (the rounds' spread is percent, not parts per million)


METRICS = {
    "samples-per-sec": Metric("samples_per_sec", "samples/s", "customBiggerIsBetter", 5),
    "step-time": Metric("step_time_ms", "ms", "customSmallerIsBetter", 5),  # "ms": the action converts s/ms/us/ns
}


def _sig(value: float, digits: int) -> float:
    return float(f"{value:.{digits}g}")


def entries(run: Any, metric: str = "samples-per-sec") -> tuple[list[dict[str, Any]], list[str]]:
    """One entry per benchmark (workload/api/loop) of a run, and the benchmarks left out (no finite figure).

    range is "± sd" of the rounds (the step times' CV x the figure: the action parses "±" followed by a number);
    extra is the tooltip: rounds pooled, CV, speed-up vs fit, the accuracy verdict, run, commit and device.
    """
    from tf2bench.analysis import report

    if metric not in METRICS:
        raise BadInputError(f"unknown --metric {metric!r}; valid: {', '.join(METRICS)}")
    spec = METRICS[metric]
    df = report.build([run])
    out, skipped = [], []
    for r in df.itertuples():
        name = f"{r.workload}/{r.api}/{r.loop}"
        value = float(getattr(r, spec.column))
        if not math.isfinite(value) or value <= 0:
            skipped.append(name)
            continue
        speedup = "-" if math.isnan(r.speedup_vs_fit) else f"{r.speedup_vs_fit:.2f}x"
        extra = [
            f"rounds: {r.rounds} ({r.repeats} repeat(s), {r.seeds} seed(s))",
            f"CV: {100 * r.cv:.1f}%" + (" NOISY" if r.noisy else ""),
            f"speed-up vs fit: {speedup}",
            f"accuracy: {r.test_accuracy:.4f} ({r.verdict})",
            f"run: {run.run_id}, commit {run.commit or '?'}" + (" (uncommitted changes)" if run.dirty else ""),
            f"device: {r.device}",
        ]
        out.append(
            {
                "name": name,
                "unit": spec.unit,
                "value": _sig(value, spec.digits),
                "range": f"± {_sig(r.cv * value, 3)}",
                "extra": "\n".join(extra),
            }
        )
    return out, skipped


def dumps(items: list[dict[str, Any]]) -> str:
    """The action's file: a JSON list (allow_nan=False: JSON.parse in the action rejects NaN and Infinity)."""
    return json.dumps(items, indent=2, allow_nan=False) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tf2bench export`` (cli.py)."""
    parser.add_argument("file", type=Path, help="the file to write (replaced whole if it exists)")
    parser.add_argument(
        "source", nargs="?", metavar="RUN", help="a run file or number under --storage (default: the newest run)"
    )
    parser.add_argument("--storage", type=Path, default=storage.BENCHMARKS, help="where run numbers are looked up")
    parser.add_argument(
        "--format", choices=FORMATS, default=FORMATS[0], help="the target's format (default: %(default)s)"
    )
    parser.add_argument(
        "--metric",
        choices=tuple(METRICS),
        default="samples-per-sec",
        help="samples-per-sec (tool: customBiggerIsBetter, the default) or step-time in ms (customSmallerIsBetter)",
    )


def run(args: argparse.Namespace) -> int:
    """Write the file; print what was written and the action's `tool:` that reads it."""
    from tf2bench.analysis import runs

    found = runs.resolve(args.source, args.storage) if args.source else [runs.newest(args.storage)]
    if len(found) != 1:
        raise runs.RunFileError(args.source, f"the run to export must be one run, this names {len(found)}")
    path = found[0]
    saved = runs.load(path)
    items, skipped = entries(saved, args.metric)
    if not items:
        raise BadInputError(f"{path}: no benchmark with a finite {METRICS[args.metric].unit} figure to export")
    storage.atomic_write(args.file, dumps(items).encode())
    print(
        f"wrote {args.file}: {len(items)} benchmark(s) of {saved.run_id} in {METRICS[args.metric].unit}; "
        f"github-action-benchmark reads it with tool: '{METRICS[args.metric].tool}'"
    )
    for name in skipped:
        print(f"note: {name}: no finite figure, left out")
    return EXIT_OK
