"""`tf2bench compare --summary FILE` / `--format markdown`: the gate's verdict as a short markdown block, where CI
users read it ($GITHUB_STEP_SUMMARY, a pull-request comment).

The block holds what a reviewer acts on, in this order: the verdict line; the cold-start warning when the gate
cannot yet measure the machine's run-to-run noise; each regression with its change, p-values, what the gate could
detect and, when the runs were profiled, what in the step got slower (tf2bench.analysis.explain);
the loops slower but not counted; the fastest loop equivalent to fit in the current run; then, folded, the whole
table and the notes. Nothing here decides a verdict: it presents compare's Comparison. No TensorFlow.

Append-safe: the block is appended to FILE in one write (GitHub gives each step its own summary file, and other
tools may append to it too), never truncating what is there.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tf2bench.errors import EXIT_FAILED, EXIT_OK, BadInputError, Tf2benchError

if TYPE_CHECKING:  # compare imports pandas and scipy: only when a block is made (cli.py builds its parser from here)
    from tf2bench.analysis.compare import Comparison
    from tf2bench.analysis.runs import SavedRun

FORMATS = ("text", "markdown")


def _code(text: str) -> str:
    """Inline code: loop names hold '*' (a loop pooled over APIs), which markdown would read as emphasis."""
    return f"`{text}`"


def _p(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2g}"


def _run(run: SavedRun) -> str:
    commit = f"commit {run.commit[:7]}" + ("-dirty" if run.dirty else "") if run.commit else "no commit"
    return f"{_code(run.number)} ({commit}, {run.datetime[:10] or '?'})"


def verdict_line(cmp: Comparison, threshold_pct: float) -> str:
    """One line: regressions named, or a pass with what it means (the detectable slowdowns)."""
    from tf2bench.analysis import compare as cmp_mod

    t = cmp.table
    gated = t[t["verdict"] != cmp_mod.REFERENCE]
    bad = cmp.regressions
    if len(bad):
        named = ", ".join(f"{_code(b)} {c:+.1f}%" for b, c in zip(bad["benchmark"], bad["change_pct"], strict=True))
        return f"❌ **{len(bad)} regression(s)** of {len(gated)} loop(s) (threshold {threshold_pct:g}%): {named}"
    detects = gated["detects_pct"].dropna()
    finite = detects[detects < math.inf]
    if len(detects) and finite.empty:  # a cold start without --prior-noise: nothing can fail the gate yet
        return f"⚠️ **not gated yet**: {len(gated)} loop(s), none can fail the gate (threshold {threshold_pct:g}%)"
    means = (
        f"; each could detect >= {finite.min():.0f}-{finite.max():.0f}% (median {finite.median():.0f}%)"
        if len(finite)
        else ""
    )
    ungated = f"; {len(detects) - len(finite)} not gated yet" if len(finite) < len(detects) else ""
    return f"✅ **no regression** in {len(gated)} loop(s) (threshold {threshold_pct:g}%{means}{ungated})"


def fastest(current: SavedRun) -> list[str]:
    """The report's "fastest equivalent" lines for the current run (one per workload); none if it cannot say."""
    from tf2bench.analysis import render, report

    try:
        return render.fastest_equivalent(report.build([current]))
    except (Tf2benchError, KeyError, ValueError):  # a run the report cannot judge: the block just leaves it out
        return []


def explanations(
    cmp: Comparison,
    baseline: SavedRun,
    current: SavedRun,
    computed: tuple[list[dict], str | None] | None = None,
) -> dict[str, str]:
    """Per regressed loop, markdown saying what in the step got slower (tf2bench.analysis.explain: per-op self
    time per train step from both runs' profiles, or what to re-run to get them). ``computed``: compare's
    ``explain.compute`` result, so the profiles are read once; computed here when not given."""
    from tf2bench.analysis import explain

    expls, why_not = computed or explain.compute(argparse.Namespace(explain=False), baseline, current, cmp)
    if why_not:  # the verdicts stand; say why they have no "why"
        return {b: why_not for b in cmp.regressions["benchmark"]}
    return {e["loop"]: explain.markdown(e) for e in expls if e["verdict"] == "REGRESSION"}


def markdown(
    cmp: Comparison,
    baseline: SavedRun,
    current: SavedRun,
    threshold_pct: float,
    normalize: bool = False,
    explained: Mapping[str, str] | None = None,
    fastest_lines: Sequence[str] = (),
) -> str:
    """The block: verdict, cold start, regressions (with their explanation), not counted, fastest, details."""
    from tf2bench.analysis import compare as cmp_mod
    from tf2bench.analysis import runs
    from tf2bench.analysis.render import markdown_table

    t = cmp.table
    what = "speed-up vs fit of the same run" if normalize else "samples/s"
    out = [
        "### tf2bench compare",
        "",
        verdict_line(cmp, threshold_pct),
        "",
        f"baseline {_run(baseline)} vs current {_run(current)} on {runs.machine_of(current)}; {what}, "
        "time change + = slower",
    ]
    warnings = [n.removeprefix("WARNING: ") for n in cmp.notes if n.startswith("WARNING")]
    out += ["", *[f"> ⚠️ {w}" for w in warnings]] if warnings else []
    bad = cmp.regressions
    if len(bad):
        rows = [
            (_code(r.benchmark), f"{r.change_pct:+.1f}%", _p(r.p_value), _p(r.run_p), _p(r.shift_p),
             f">= {r.detects_pct:.0f}%")
            for r in bad.itertuples()
        ]  # fmt: skip
        head = ["loop", "time change", "p rounds", "p run-to-run", "p workload", "detects"]
        out += ["", "#### Regressions", "", _table(head, rows)]
        for b, text in (explained or {}).items():
            out += ["", f"**Why {_code(b)} got slower**", "", text.strip()]
    not_counted = (cmp_mod.NOT_GATED[True], cmp_mod.RUN_NOISE[True], cmp_mod.SLOWER_NOISE, cmp_mod.SLOWER_UNTESTABLE)
    slower = t[t["verdict"].isin(not_counted)]
    if len(slower):
        listed = "; ".join(
            f"{_code(b)} {c:+.1f}% ({v})"
            for b, c, v in zip(slower["benchmark"], slower["change_pct"], slower["verdict"], strict=True)
        )
        out += ["", f"Slower but not counted: {listed}"]
    if fastest_lines:
        out += ["", "#### Fastest equivalent loop (current run)", "", *[f"- {line}" for line in fastest_lines]]
    table = cmp_mod.formatted(cmp)
    table["benchmark"] = [_code(b) for b in table["benchmark"]]
    out += ["", f"<details><summary>All {len(t)} loop(s) and the notes</summary>", "", markdown_table(table), ""]
    out += [f"- {n}" for n in cmp.notes] + ["", "</details>", ""]
    return "\n".join(out)


def _table(head: list[str], rows: list[tuple]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join([*lines, *("| " + " | ".join(map(str, r)) + " |" for r in rows)])


def append(path: Path, block: str) -> None:
    """Append the block (one write, a blank line before it); the file and its directory are made if missing."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write("\n" + block.rstrip("\n") + "\n")
    except OSError as exc:
        raise BadInputError(f"{path}: cannot append the summary ({exc.strerror or exc})") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """compare's --summary and --format (cli.py)."""
    parser.add_argument(
        "--summary",
        type=Path,
        metavar="FILE",
        help="also append the verdict as a short markdown block to FILE (e.g. $GITHUB_STEP_SUMMARY)",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="text", help="text (the table; default) or markdown (the block alone)"
    )


def emit(
    args: argparse.Namespace,
    baseline: SavedRun,
    current: SavedRun,
    cmp: Comparison,
    computed: tuple[list[dict], str | None] | None = None,
) -> int | None:
    """Write the block where asked; with --format markdown print it and return the exit code (None: go on)."""
    if not (args.summary or args.format == "markdown"):
        return None
    why = explanations(cmp, baseline, current, computed)
    block = markdown(cmp, baseline, current, args.threshold, args.normalize, why, fastest(current))
    if args.summary:
        append(args.summary, block)
    if args.format != "markdown":
        return None
    print(block)
    return EXIT_FAILED if len(cmp.regressions) else EXIT_OK
