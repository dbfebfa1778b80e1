"""The gate's cold start and tf2bench history's power, measured on the A/A runs of bench/error_rates.py (issue 21.4).

    python bench/error_rates.py collect --out DIR --aa 8 --planted 0 --workload mnist   # ~15 min on 2 cores
    python bench/cold_start.py --out DIR [--sims 200] [--false-sims 2000] [--history-only]  # docs/gate.md's tables

Cold-start pairs: a baseline run with 0, 1 or 2 runs before it as its history (3 for reference: the gate then
measures the noise itself), compared with every later run of the same code: as compare did before (rounds alone
below 3 runs of history), as it does now (not gated yet, with a warning), and with a stated prior run-to-run noise
(--prior-noise 12 and 25; the baseline's commit pooled and alone). Every flagged loop is a false alarm. Reads the
saved runs only (no TensorFlow).

History's power: simulated series through tf2bench.analysis.history.detect (the smallest step counted at its run
with 3, 5, 10 runs a side; how often 20 runs of the same code get a counted step, with its 95% upper bound).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # error_rates, beside this file
from error_rates import _flagged, _runs  # noqa: E402

PRIORS = (12.0, 25.0)  # --prior-noise figures tried: above every loop's noise in docs/gate.md's sets, and twice it


def _modes() -> dict[str, tuple[bool, dict]]:
    """Gate name -> (rounds alone below MIN_RUNS runs of history, as compare did before; compare's keywords)."""
    out = {"rounds alone (before)": (True, {}), "not gated yet (default)": (False, {})}
    for prior in PRIORS:
        out[f"--prior-noise {prior:g}"] = (False, {"prior_pct": prior})
        out[f"--prior-noise {prior:g} --baseline-alone"] = (False, {"prior_pct": prior, "pool_commit": False})
    return out


def _cold_start(aa: list) -> list[str]:
    """Cold-start pairs: baseline run i with the h runs before it as its history (h = 0, 1, 2; 3 for reference,
    where the noise is measured), compared with every later run j of the same code."""
    from tf2bench.analysis import compare, noise

    lines = [
        "| runs before the baseline | pairs | gate | absolute: loops flagged | pairs with a false alarm | detects "
        "(median) | normalised: loops flagged | pairs with a false alarm | detects (median) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for h in (0, 1, 2, 3):
        pairs = [(aa[i - h : i + 1], aa[i], aa[j]) for i in range(h, len(aa) - 1) for j in range(i + 1, len(aa))]
        if not pairs:
            continue
        for mode, (before, kwargs) in _modes().items():
            cells = []
            for normalize in (False, True):
                flagged, gated, alarms, detects, which, ungated = 0, 0, 0, [], [], 0
                for hist, base, cur in pairs:
                    given = [] if before and len(hist) < noise.MIN_RUNS else hist
                    cmp = compare.compare(base, cur, normalize=normalize, history=given, **kwargs)
                    rows = cmp.table[cmp.table["verdict"] != compare.REFERENCE]
                    flagged, gated = flagged + len(cmp.regressions), gated + len(rows)
                    alarms += bool(len(cmp.regressions))
                    detects += list(rows["detects_pct"])
                    ungated += int(rows["verdict"].eq(compare.NOT_GATED[True]).sum())
                    which += [f"{base.number}->{cur.number} {_flagged(cmp)}"] if len(cmp.regressions) else []
                shown = f"{flagged}/{gated}" + (
                    f" ({'; '.join(which[:3])}{' ...' * (len(which) > 3)})" if which else ""
                )
                shown += f", {ungated} slower not gated" if ungated else ""
                median = statistics.median(detects)
                cells += [shown, f"{alarms}/{len(pairs)}", "not gated" if math.isinf(median) else f">= {median:.0f}%"]
            lines.append(f"| {h} | {len(pairs)} | {mode} | " + " | ".join(cells) + " |")
    return lines


GRID = [10, 12.5, 15, 17.5, 20, 22.5, 25, 30, 35, 40, 50, 60, 80, 100, 150, 200, 300]  # steps tried, time per sample %
NOISE_GRID = [2.0, 3.0, 5.0, 8.0, 11.0, 25.0]  # run-to-run SD, %: docs/gate.md's quiet sets span 3-11% per loop


def _rate(sd: float, deviations: Any, rounds: int, n: int, step_pct: float, sims: int, rng: Any) -> float:
    """The share of simulated series (n runs a side, run levels ~ N(0, sd), each run's rounds drawn from
    ``deviations`` about its level) in which history counts the step at run n (step 0: any counted step)."""
    import numpy as np

    from tf2bench.analysis import history
    from tf2bench.analysis.runs import SavedRun

    dummy = SavedRun(path=Path("simulated.json"), benchmarks=[])
    hits = 0
    for _ in range(sims):
        levels = rng.normal(0.0, sd, 2 * n) - np.log1p(step_pct / 100) * (np.arange(2 * n) >= n)
        pts = [history.Point(dummy, i, str(i), lv + rng.choice(deviations, rounds)) for i, lv in enumerate(levels)]
        sim = history.Series("sim", "sim", "sim", pts)
        history.detect(sim)
        hits += bool([x for x in sim.steps if x.at == n and x.change_pct < 0] if step_pct else sim.steps)
    return hits / sims


SIDES = (3, 5, 10)  # runs on each side of the step
POWER = 0.8  # counted four times in five, as compare's "detects"


def _power_cells(sd: float, deviations: Any, rounds: int, sims: int, false_sims: int, rng: Any) -> list[str]:
    """False steps over 20 runs (share of false_sims series, and its 95% upper bound: Clopper-Pearson, one-sided),
    then per runs a side: the smallest step of GRID counted at its run in >= 80% of sims series."""
    from scipy.stats import beta

    hits = round(_rate(sd, deviations, rounds, 10, 0.0, false_sims, rng) * false_sims)
    upper = 1.0 if hits == false_sims else float(beta.ppf(0.95, hits + 1, false_sims - hits))
    cells = [f"{hits / false_sims:.1%} (<= {upper:.1%})"]
    for n in SIDES:
        found = next((g for g in GRID if _rate(sd, deviations, rounds, n, g, sims, rng) >= POWER), None)
        cells.append(f"{'> 300' if found is None else f'{found:g}'}%")
    return cells


def _history_power(aa: list, sims: int, false_sims: int, seed: int = 0) -> list[str]:
    """The smallest step tf2bench history counts four times in five with 3, 5, 10 runs a side (the step at the
    middle run, found there and counted), simulated: run levels ~ N(0, sd), 5 rounds a run spread 3% about it
    (within-run spread of these runs), sd from NOISE_GRID; then per loop of the A/A runs, sd from the successive
    differences of its levels (which already hold the rounds' share: conservative) and its rounds' real deviations.
    No formula beside it: Pelt must propose the cut before it is tested, and a small step is often placed a run off
    (its run then widens the scatter the test reads)."""
    import numpy as np

    from tf2bench.analysis import history, noise

    rng = np.random.default_rng(seed)
    sides = "".join(f" {n} a side |" for n in SIDES)
    lines = ["| run-to-run sd | false steps (20 runs, no step) |" + sides, "|---|---|" + "---|" * 3]
    for pct in NOISE_GRID:
        sd = math.log1p(pct / 100)
        lines.append(
            f"| {pct:g}% | " + " | ".join(_power_cells(sd, rng.normal(0, 0.03, 4000), 5, sims, false_sims, rng)) + " |"
        )
    series, _ = history.build(aa)
    history.analyse(series)
    lines += ["", "| loop (A/A runs) | run-to-run sd | history's sigma | false steps |" + sides]
    lines.append("|---|---|---|---|" + "---|" * 3)
    for s in sorted(series, key=lambda s: (s.workload, s.loop)):
        sd = math.sqrt(noise.mssd([float(np.median(p.logs)) for p in s.points])[0])
        dev = np.concatenate([p.logs - np.median(p.logs) for p in s.points])
        rounds = int(np.median([len(p.logs) for p in s.points]))
        cells = _power_cells(sd, dev, rounds, sims, false_sims, rng)
        lines.append(
            f"| {s.workload}/{s.loop} | {100 * math.expm1(sd):.1f}% | {100 * s.noise:.1f}% | "
            + " | ".join(cells)
            + " |"
        )
    return lines


def analyse(out: Path, sims: int, false_sims: int = 2000, history_only: bool = False) -> str:
    """Cold start and history's power, from the A/A runs alone (collect --planted 0 is enough)."""
    aa = _runs(out / "runs" / "aa")
    text = []
    if not history_only:
        text += [f"## Cold start: {len(aa)} A/A runs, every later run vs a baseline with 0-3 runs before it", ""]
        text += [*_cold_start(aa), ""]
    text += [f"## tf2bench history's power, simulated from the noise of the {len(aa)} A/A runs", ""]
    text += [f"({sims} series per power cell: smallest step, time per sample, counted in >= 80% of them; {false_sims}"]
    text += ["series of 20 runs per false-step cell)", ""]
    return "\n".join([*text, *_history_power(aa, sims, false_sims)]) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True, help="the folder error_rates.py collect wrote (runs/aa/)")
    p.add_argument("--sims", type=int, default=200, help="simulated series per cell of the power table")
    p.add_argument("--false-sims", type=int, default=2000, help="simulated 20-run A/A series per false-step cell")
    p.add_argument("--history-only", action="store_true", help="history's power alone (cold_start-history.md)")
    args = p.parse_args(argv)
    text = analyse(args.out, args.sims, args.false_sims, args.history_only)
    (args.out / ("cold_start-history.md" if args.history_only else "cold_start.md")).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
