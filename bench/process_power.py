"""--processes N measured on this machine (issue 22.3): A/A false alarms at N = 3 (cold and warm pairs), the gate's
``detects`` per loop for N = 1, 3, 5 with the wall time of each run, and the planted slowdowns of docs/gate.md at
N = 3. Not a timed test: a script that runs the suite many times.

    python bench/process_power.py collect --out DIR      # ~25 min on 2 cores
    python bench/process_power.py analyse --out DIR      # the tables of docs/gate.md

Every run is ``pytest bench --preset quick --workload mnist --api functional --loop LOOPS [--processes N]
--benchmark-autosave`` from a clone of HEAD's committed code (bench/error_rates.py's clones and plants), the
harness-overhead test left out of every run alike (it fails on plant (b) by design). The runs of the three Ns are
interleaved in time (SCHEDULE), so a busier stretch of the shared machine falls on all of them; then one run of
each plant at N = 3: (a) the second convolution widened (+15 % FLOPs), (b) tf_function's host round-trip per step,
(c) the base code pinned to one core. ``analyse`` compares each run with the one before it of the same N, the
earlier ones as history (a pair with fewer than 3 earlier runs is a cold start), and each planted run with the
last N = 3 run, with the N = 3 runs as history (warm) and with none but the baseline (cold).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # error_rates, beside this file

import error_rates  # noqa: E402

LOOPS = "fit,tf_function,tf_data,graph_loop"
SCHEDULE = (3, 1, 3, 5, 3, 1, 3, 5, 3, 1, 3, 1)  # six runs of N = 3, four of N = 1, two of N = 5, interleaved
PLANTS = ("a", "b", "c")
OVERHEAD = error_rates.OVERHEAD


def collect(out: Path, repo: Path, loops: str, schedule: tuple[int, ...] = SCHEDULE) -> None:
    out.mkdir(parents=True, exist_ok=True)
    base = error_rates._clone(out / "src" / "base", repo)
    flops = error_rates._clone(out / "src" / "flops", repo)
    error_rates.plant_flops(flops)
    trip = error_rates._clone(out / "src" / "round_trip", repo)
    error_rates.plant_round_trip(trip)
    plan = [(f"n{n}", base, n, False) for n in schedule]
    plan += [("a3", flops, 3, False), ("b3", trip, 3, False), ("c3", base, 3, True)]
    walls = out / "walls.jsonl"
    for i, (name, clone, n, pin) in enumerate(plan, 1):
        started = time.time()
        took = error_rates.run_suite(
            clone, out / "runs" / name, "functional", pin, deselect=(OVERHEAD,), workload="mnist", processes=n,
            loop=loops,
        )  # fmt: skip
        with open(walls, "a") as f:
            f.write(json.dumps({"folder": name, "processes": n, "seconds": took, "started": started}) + "\n")
        print(f"[{i}/{len(plan)}] {name}: {took:.0f} s", flush=True)


# ---- analyse: reads the saved runs only (no TensorFlow) -----------------------------------------------------------


def _pairs(folder: list) -> list[tuple]:
    """Each run against the one before it, the earlier ones as history: (pair label, history size, comparison)."""
    from tf2bench.analysis import compare

    out = []
    for i in range(1, len(folder)):
        base, cur = folder[i - 1], folder[i]
        hist = compare.lookback(base, cur, folder[:i])
        out.append((f"{base.number} -> {cur.number}", len(hist), compare.compare(base, cur, history=hist)))
    return out


def _loop(benchmark: str) -> str:
    return benchmark.split("/")[-1]


def _detects(cmp) -> dict[str, str]:
    t = cmp.table
    return {
        _loop(b): ("not gated" if math.isinf(d) else f">= {d:.0f}%")
        for b, d in zip(t["benchmark"], t["detects_pct"], strict=True)
    }


def analyse(out: Path) -> str:
    from tf2bench.analysis import compare, noise, spread

    folders = {p.name: error_rates._runs(p) for p in sorted((out / "runs").iterdir()) if p.is_dir()}
    walls: dict[str, list[float]] = {}
    for line in (out / "walls.jsonl").read_text().splitlines():
        rec = json.loads(line)
        walls.setdefault(rec["folder"], []).append(rec["seconds"])
    text = ["## A/A pairs (loops flagged / loops gated; cold: fewer than 3 earlier runs)", ""]
    text += ["| N | pair | earlier runs | flagged | gated | changes |", "|---|---|---|---|---|---|"]
    pairs, by_n = {}, sorted((k for k in folders if k[0] == "n" and k[1:].isdigit()), key=lambda k: int(k[1:]))
    for name in by_n:
        pairs[name] = _pairs(folders.get(name, []))
        for label, h, cmp in pairs[name]:
            t = cmp.table
            gated = int(t["detects_pct"].lt(math.inf).sum())
            moves = ", ".join(f"{_loop(b)} {c:+.1f}%" for b, c in zip(t["benchmark"], t["change_pct"], strict=True))
            text.append(f"| {name[1:]} | {label} | {h} | {len(cmp.regressions)} | {gated} | {moves} |")
    text += ["", "## detects per loop (the first pair: cold; the last: warm), wall time per run", ""]
    cols = [(n, k) for n in by_n for k in (0, -1) if pairs.get(n) and len(pairs[n]) > (k == -1)]
    header = [f"N={n[1:]} {'cold' if pairs[n][k][1] < 3 else 'warm'} ({pairs[n][k][1]} runs)" for n, k in cols]
    text += ["| loop | " + " | ".join(header) + " |", "|---" * (len(cols) + 1) + "|"]
    table = {(n, k): _detects(pairs[n][k][2]) for n, k in cols}
    for loop in LOOPS.split(","):
        text.append(f"| {loop} | " + " | ".join(table[c].get(loop, "-") for c in cols) + " |")
    wall = [f"{statistics.median(walls[n]):.0f} s" if n in walls else "-" for n, _ in cols]
    text.append("| **wall time, median run** | " + " | ".join(wall) + " |")
    for n, k in cols:
        said = [x for x in pairs[n][k][2].notes if "loops together" in x or x.startswith("between-process")]
        text += [f"- N={n[1:]} pair {pairs[n][k][0]}: {x}" for x in said]
    text += ["", "## What bounds it: one process's SD per loop in each run (N > 1), and N = 1's run-to-run SD", ""]
    text += ["| run | " + " | ".join(LOOPS.split(",")) + " |", "|---" * (len(LOOPS.split(",")) + 1) + "|"]
    for name in [n for n in by_n if n != "n1"] + [f"{p}3" for p in PLANTS]:
        for run in folders.get(name, []):
            costs = spread.process_costs(run, normalize=False)
            sds = {v: math.sqrt(spread.between([spread.levels(per)])[0]) for (_, _, v), per in costs.items()}
            text.append(
                f"| {name} {run.number} | " + " | ".join(f"{100 * sds[v]:.1f}%" for v in LOOPS.split(",")) + " |"
            )
    if len(folders.get("n1", [])) >= 3:
        lv = [{v: math.log(statistics.median(c)) for (_, _, v), c in compare.round_costs(r, False)[0].items()}
              for r in folders["n1"]]  # fmt: skip
        sd = {v: math.sqrt(noise.mssd([x[v] for x in lv])[0]) for v in LOOPS.split(",")}
        text.append("| n1 run-to-run (MSSD) | " + " | ".join(f"{100 * sd[v]:.1f}%" for v in LOOPS.split(",")) + " |")
    text += ["", "## Planted at N = 3 vs the last N = 3 run", "", "| plant | history | flagged | which |"]
    text.append("|---|---|---|---|")
    aa = folders.get("n3", [])
    for name in (f"{p}3" for p in PLANTS) if aa else ():  # no N = 3 A/A run to compare a plant with: no rows
        for cur in folders.get(name, []):
            base = aa[-1]
            for label, hist in (("warm", compare.lookback(base, cur, aa)), ("cold", [base])):
                cmp = compare.compare(base, cur, history=hist)
                bad = cmp.regressions
                which = ", ".join(
                    f"{_loop(b)} {c:+.0f}% (run p {q:.2g})"
                    for b, c, q in zip(bad["benchmark"], bad["change_pct"], bad["run_p"], strict=True)
                )
                t = cmp.table
                moves = "; ".join(f"{_loop(b)} {c:+.0f}%" for b, c in zip(t["benchmark"], t["change_pct"], strict=True))
                text.append(f"| ({name[0]}) | {label} ({len(hist)} runs) | {len(bad)} | {which or 'none'} [{moves}] |")
    return "\n".join(text) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("collect", help="run the suite: the schedule of N, then the plants at N = 3")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--repo", type=Path, default=error_rates.ROOT)
    c.add_argument("--loops", default=LOOPS)
    c.add_argument(
        "--schedule", default=",".join(map(str, SCHEDULE)), help="the runs' N in time order (default %(default)s)"
    )
    a = sub.add_parser("analyse", help="the tables, from the runs collect saved")
    a.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    if args.cmd == "collect":
        try:
            schedule = tuple(int(n) for n in args.schedule.split(","))
        except ValueError:
            p.error(f"--schedule: comma-separated process counts, e.g. 3,1,3,5; got {args.schedule!r}")
        if any(n < 1 for n in schedule):
            p.error(f"--schedule: every process count must be >= 1; got {args.schedule!r}")
        collect(args.out, args.repo, args.loops, schedule)
    else:
        text = analyse(args.out)
        (args.out / "process_power.md").write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
