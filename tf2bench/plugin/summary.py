"""What a run says on the terminal: one progress line per benchmark, and the summary at the end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tf2bench.measure.timing import NOISY_CV


def progress(position: int, total: int, elapsed_s: float) -> str:
    """``[23/60, ~2 min left]``: where the run is, and the time left at the pace so far (cases differ in cost:
    an estimate, re-made at every case)."""
    left = elapsed_s / position * (total - position) if position > 0 else float("nan")
    if total - position <= 0:
        return f"[{position}/{total}]"
    when = f"~{left:.0f} s" if left < 90 else f"~{left / 60:.0f} min"
    return f"[{position}/{total}, {when} left]"


def _mfu(info: dict[str, Any]) -> str:
    return "  -  " if info.get("mfu") is None else f"{info['mfu']:.3f}"


def progress_line(where: str, info: dict[str, Any]) -> str:
    """One finished benchmark: throughput and its spread, step, MFU, compile time, accuracy, and what to know."""
    notes = "  NOISY" if info["cv"] > NOISY_CV else ""
    if info.get("rounds_reason"):  # a slow loop under a calibrated preset's round budget
        notes += f"  [{info['rounds']} of {info['rounds_planned']} rounds: slow windows]"
    if info.get("scaling_efficiency") is not None:  # the distributed loops
        notes += f"  [{info['replicas']} replicas, scaling efficiency {info['scaling_efficiency']:.2f}]"
    prof = info.get("profile")
    if prof:
        notes += (
            f"  [profile: no trace, {prof['error']}]"
            if "error" in prof
            else f"  [profile: step {prof['step_time_ms']:.1f} ms, input {prof['input_bound_pct']:.1f}%]"
        )
    return (
        f"{where:<22} {info['workload']:>8} {info['api']:<11} {info['loop']:<11} "
        f"{info['samples_per_sec']:9.0f} samples/s ±{100 * info['cv']:4.1f}%  "
        f"step {info['step_time_ms']:7.1f} ms  MFU {_mfu(info)}  first {info['first_step_s']:5.2f} s  "
        f"acc {info['test_accuracy']:.3f}  [{info['dataset']['source']}, r{info['repeat']} s{info['seed']}]{notes}"
    )


def overhead_lines(o: dict[str, Any], where: str | None) -> list[str]:
    """bench/test_overhead.py's figures; ``where``: the worker process that measured them (--processes), or None."""
    measured = f"; measured in {where}" if where else ""
    lines = [
        f"{o['workload']} {o['api']}, {o['windows']} windows of {o['steps']} steps each{measured}: "
        f"harness {1000 * o['harness_s_median']:.1f} ms, bare {1000 * o['bare_s_median']:.1f} ms, "
        f"overhead {100 * o['overhead']:+.2f}% ±{100 * o['noise']:.2f}% "
        f"(whole call {100 * o['call_overhead']:+.2f}%; a figure, not a check"
        f"{', beyond its noise' if o.get('paired_outside_noise') else ''}); checked: bookkeeping "
        f"{o['bookkeeping_us_per_step']:.1f} µs/step (limit {o.get('max_bookkeeping_us', 10.0):g} µs) = "
        f"{100 * o['bookkeeping']:.3f}% of a {o.get('step_ms', float('nan')):.3f} ms step"
    ]
    if o["bookkeeping"] > 0.01:  # a fast step: the harness's few microseconds are a visible share of it
        lines.append(
            f"note: the harness's bookkeeping is {100 * o['bookkeeping']:.1f}% of this step: figures of loops "
            "driven from Python per step (tf_function, tf_data, eager) carry it; graph_loop and fit_spe do not"
        )
    return lines


def throughput_lines(results: list[dict[str, Any]]) -> list[str]:
    """Every benchmark's median throughput and its speed-up against fit of the same workload, API, repeat, seed."""
    fit = {
        (r["workload"], r["api"], r["repeat"], r["seed"]): r["samples_per_sec"] for r in results if r["loop"] == "fit"
    }
    lines = []
    for r in results:
        base = fit.get((r["workload"], r["api"], r["repeat"], r["seed"]))
        speedup = f"{r['samples_per_sec'] / base:5.2f}x" if base else "    - "
        lines.append(
            f"{r['workload']:>8} {r['api']:<11} {r['loop']:<11} {r['samples_per_sec']:9.0f}/s "
            f"±{100 * r['cv']:4.1f}%  {speedup} fit  MFU {_mfu(r)}  first {r['first_step_s']:5.2f} s  "
            f"acc {r['test_accuracy']:.3f}"
        )
    noisy = [r for r in results if r["cv"] > NOISY_CV]
    if noisy:
        lines.append(
            f"{len(noisy)} figure(s) vary by more than {100 * NOISY_CV:.0f}% between rounds (NOISY): "
            "use --repeat, --preset rigorous, or a quieter machine before trusting them"
        )
    return lines


def trace_lines(results: list[dict[str, Any]]) -> list[str]:
    """Where the profiler traces are (one line per run directory), and the benchmarks that got none."""
    profiled = [r["profile"] for r in results if r.get("profile")]
    lines = []
    for run_dir in dict.fromkeys(Path(p["trace_dir"]).parent for p in profiled):
        here = [p for p in profiled if Path(p["trace_dir"]).parent == run_dir]
        ok = sum("error" not in p for p in here)
        lines.append(f"profiler traces ({ok} of {len(results)}): tensorboard --logdir {run_dir}")
    return lines + [f"  no trace for {p['trace_dir']}: {p['error']}" for p in profiled if "error" in p]
