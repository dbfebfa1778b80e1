"""An explanation (tf2bench.analysis.explain) presented: terminal lines, a markdown block, csv rows, an HTML page,
and the files ``tf2bench compare`` writes. Reads the plain dict ``explain.explain`` returns; decides nothing."""

from __future__ import annotations

import csv
import hashlib
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tf2bench.analysis.runs import SavedRun
from tf2bench.saved import storage

if TYPE_CHECKING:  # render imports pandas and matplotlib: only when files are written
    from tf2bench.analysis.render import Written

PARTS_SHOWN = 4  # breakdown parts in the terminal line (all of them are in the files)
PART_SHOWN_SHARE = 0.01  # ... those that moved by at least 1% of the step's change
OVERLAP = "ops on parallel threads overlap: their self times can add up to more than the step"


def bench_label(info: dict[str, Any]) -> str:
    extra = "".join(f" {k[0]}{info[k]}" for k in ("repeat", "seed") if info.get(k))
    return f"{info.get('workload')}/{info.get('api')}/{info.get('loop')}{extra}"


def rerun_hint(infos: Sequence[dict[str, Any]], where: str) -> str:
    """The command that records a profile of these benchmarks."""
    first = infos[0]
    apis = sorted({str(i.get("api")) for i in infos})
    api = f" --api {','.join(apis)}" if apis else ""
    return (
        f"{where}: re-run with `pytest bench --profile --workload {first.get('workload')}{api} "
        f"--loop {first.get('loop')}` (the CI example profiles every run)"
    )


def _d(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:+.{digits}f}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.0f}%"


def _share(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.0f}%"


def headline(expl: dict[str, Any]) -> str:
    """One line: the loop, the runs, and the profiled step's change (or why it cannot be explained)."""
    head = f"explain {expl['loop']} ({expl['base']} -> {expl['new']})"
    if expl["status"] != "explained":
        return f"{head}: no profile to explain it with"
    s, t = expl["step"], expl["timed"]
    of = f", {expl['benchmarks']} of {expl['pairs']} benchmarks" if expl["benchmarks"] != 1 else ""
    timed = f"; timed step {_pct(t['change_pct'])}" if t.get("change_pct") is not None else ""
    return (
        f"{head}{of}: profiled step {s['base_ms']:.2f} -> {s['new_ms']:.2f} ms ({_d(s['delta_ms'])} ms/step, "
        f"{_pct(s['change_pct'])}){timed}"
    )


def _op_line(r: dict[str, Any], name: str) -> str:
    figures = f"{_d(r['delta_ms']):>7} {_pct(r['change_pct']):>6} {_share(r['share']):>5}"
    return f"    {figures}  {name}  {r['base_ms']:.2f} -> {r['new_ms']:.2f}"


COLUMNS = "Δ ms/step, Δ %, share of the step's Δ; baseline -> current ms/step"


def lines(expl: dict[str, Any]) -> list[str]:
    """The explanation for the terminal: the headline, the breakdown's shift, the top ops and op types per side,
    the ops that appeared or vanished; or, without profiles, what to re-run."""
    out = [headline(expl)]
    if expl["status"] != "explained":
        out += [f"  {m['side']} {m['run']}: {m['benchmark']}: {m['why']}" for m in expl["missing"]]
        return out + [f"  {h}" for h in expl["rerun"]]
    big = [p for p in expl["parts"] if abs(p["delta_ms"]) >= PART_SHOWN_SHARE * abs(expl["step"]["delta_ms"])]
    parts = (big or expl["parts"][:1])[:PARTS_SHOWN]
    out.append(
        "  step breakdown, ms/step (share of the step's change): "
        + ", ".join(f"{p['label']} {_d(p['delta_ms'])} ({_share(p['share'])})" for p in parts)
    )
    for side, total in expl["sides"].items():
        out.append(
            f"  {side} ops by self time per train step, all {total['base_ms']:.2f} -> {total['new_ms']:.2f} ms "
            f"({_pct(total['change_pct'])}; {OVERLAP}). {COLUMNS}:"
        )
        out += [_op_line(r, f"{r['op']} [{r['type']}]" + _status(r)) for r in expl["ops"][side]]
        out.append(f"  {side} op types:")
        out += [_op_line(r, f"{r['type']} ({r['ops']} op{'s' if r['ops'] != 1 else ''})") for r in expl["types"][side]]
        for r in expl["appeared"][side]:
            out.append(
                f"  appeared ({side}): {r['op']} [{r['type']}] {r['new_ms']:.2f} ms/step "
                f"(absent or under {expl['min_ms']:.3f} ms/step before)"
            )
        for r in expl["vanished"][side]:
            out.append(
                f"  vanished ({side}): {r['op']} [{r['type']}] {r['base_ms']:.2f} ms/step before "
                f"(absent or under {expl['min_ms']:.3f} ms/step now)"
            )
    out += [f"  note: {m['side']} {m['run']}: {m['benchmark']}: {m['why']}" for m in expl["missing"]]
    return out + [f"  note: {n}" for n in expl["notes"]]


def _status(r: dict[str, Any]) -> str:
    return "" if r["status"] == "changed" else f" ({r['status']})"


def _md_table(header: Sequence[str], body: Sequence[Sequence[object]]) -> list[str]:
    cell = lambda v: str(v).replace("|", "\\|")  # noqa: E731
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return out + ["| " + " | ".join(cell(v) for v in row) + " |" for row in body]


def _change_cells(r: dict[str, Any]) -> list[str]:
    return [
        f"{r['base_ms']:.3f}",
        f"{r['new_ms']:.3f}",
        _d(r["delta_ms"], 3),
        _pct(r["change_pct"]),
        _share(r["share"]),
    ]


CHANGE = ["baseline ms", "current ms", "Δ ms/step", "Δ", "share of the step's Δ"]


def markdown(expl: dict[str, Any]) -> str:
    """A markdown block for a pull request or $GITHUB_STEP_SUMMARY: the headline, then tables."""
    out = [f"**{headline(expl)}**", ""]
    if expl["status"] != "explained":
        out += [f"- {m['side']} {m['run']}: {m['benchmark']}: {m['why']}" for m in expl["missing"]]
        return "\n".join(out + [f"- {h}" for h in expl["rerun"]]) + "\n"
    out += _md_table(["step breakdown", *CHANGE], [[p["label"], *_change_cells(p)] for p in expl["parts"]]) + [""]
    for side in expl["sides"]:
        body = [[f"`{r['op']}`" + _status(r), f"`{r['type']}`", *_change_cells(r)] for r in expl["ops"][side]]
        out += _md_table([f"{side} op", "type", *CHANGE], body) + [""]
        body = [[f"`{r['type']}`", r["ops"], *_change_cells(r)] for r in expl["types"][side]]
        out += _md_table([f"{side} op type", "ops", *CHANGE], body) + [""]
    out.append(f"Self time per train step; {OVERLAP}.")
    out += [f"- {m['side']} {m['run']}: {m['benchmark']}: {m['why']}" for m in expl["missing"]]
    out += [f"- note: {n}" for n in expl["notes"]]
    return "\n".join(out) + "\n"


ROW_KEYS = ["loop", "base", "new", "kind", "side", "name", "type", "status", "base_ms", "new_ms", "delta_ms"]
ROW_KEYS += ["change_pct", "share"]


def rows(expl: dict[str, Any]) -> list[dict[str, Any]]:
    """One csv row per figure: the step, each breakdown part, each listed op and op type (ms per train step)."""
    common = {"loop": expl["loop"], "base": expl["base"], "new": expl["new"]}
    if expl["status"] != "explained":
        return [{**common, "kind": "no profile", "name": h} for h in expl["rerun"]]
    out = [{**common, "kind": "step", "name": "profiled step", **expl["step"]}]
    out += [{**common, "kind": "part", "name": p["label"], **p} for p in expl["parts"]]
    for side in expl["sides"]:
        for kind in ("ops", "appeared", "vanished"):
            out += [{**common, "kind": "op", "side": side, "name": r["op"], **r} for r in expl[kind][side]]
        out += [{**common, "kind": "op type", "side": side, "name": r["type"], **r} for r in expl["types"][side]]
    seen, unique = set(), []
    for r in out:  # an op listed both among the top changes and as appeared is one row
        key = (r["kind"], r.get("side"), r["name"])
        if key not in seen:
            seen.add(key)
            unique.append({k: r.get(k) for k in ROW_KEYS})
    return unique


def csv_text(expls: Sequence[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, ROW_KEYS)
    writer.writeheader()
    for e in expls:
        writer.writerows(rows(e))
    return buf.getvalue()


def _html_table(header: Sequence[str], body: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r) + "</tr>" for r in body)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def html_page(expls: Sequence[dict[str, Any]], title: str) -> str:
    """One self-contained page (nothing fetched): each explanation's headline and tables."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em}}"
        "table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:2px 6px;"
        "text-align:right}td:first-child,th:first-child{text-align:left}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>Self time per train step, from each run's profile; {OVERLAP}.</p>",
    ]
    for e in expls:
        parts.append(f"<h2>{html.escape(headline(e))}</h2>")
        if e["status"] != "explained":
            items = [f"{m['side']} {m['run']}: {m['benchmark']}: {m['why']}" for m in e["missing"]] + e["rerun"]
            parts.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
            continue
        parts.append(_html_table(["step breakdown", *CHANGE], [[p["label"], *_change_cells(p)] for p in e["parts"]]))
        for side in e["sides"]:
            body = [[r["op"] + _status(r), r["type"], *_change_cells(r)] for r in e["ops"][side]]
            body += [[r["op"] + _status(r), r["type"], *_change_cells(r)] for k in ("appeared", "vanished")
                     for r in e[k][side] if r not in e["ops"][side]]  # fmt: skip
            parts.append(_html_table([f"{side} op", "type", *CHANGE], body))
            body = [[r["type"], r["ops"], *_change_cells(r)] for r in e["types"][side]]
            parts.append(_html_table([f"{side} op type", "ops", *CHANGE], body))
    return "\n".join([*parts, "</body></html>"]) + "\n"


def write(
    expls: Sequence[dict[str, Any]], baseline: SavedRun, current: SavedRun, out_root: Path = storage.REPORTS
) -> Written:
    """explain.md, explain.csv and explain.html into ``out_root/compare-<digest>/`` (the two runs, in order)."""
    from tf2bench.analysis import render

    paths = f"{baseline.path.resolve()}\n{current.path.resolve()}"
    directory = Path(out_root) / f"compare-{hashlib.sha1(paths.encode()).hexdigest()[:10]}"
    title = f"tf2bench compare: what changed in the step, {baseline.path.name} -> {current.path.name}"
    md = "\n".join([f"# {title}", "", *(markdown(e) for e in expls)])
    files = {"explain.md": md, "explain.csv": csv_text(expls), "explain.html": html_page(expls, title)}
    return render.write_files(directory, [baseline, current], {k: v.encode() for k, v in files.items()})
