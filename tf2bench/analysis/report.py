"""Saved runs -> one pandas table: throughput, speed-up vs fit, and the two-tier verdict against fit.

A row is one run x workload x api x loop. Repeats and seeds of the same case are
pooled: throughput is the median over all their rounds (so drift between repeats shows
up in the CV instead of hiding in a mean of medians) and accuracy is the mean over
seeds. Speed-ups are only ever taken against ``fit`` of the same run, where both ran
on the same machine minutes apart.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import pandas as pd

from tf2bench.analysis import equivalence
from tf2bench.analysis.runs import SavedRun, round_seconds, round_throughputs
from tf2bench.errors import BadInputError
from tf2bench.measure.timing import NOISY_CV, percentile  # stdlib-only module: no TensorFlow import

DEFAULT_TOLERANCE_PP = equivalence.DEFAULT_MARGIN_PP  # the quality tier's practical margin (--tolerance)
EXPECTED_FAILURES = {"tutorial": "expected: the tutorial's loop trains on 1/32 of the samples"}
KEYS = ["run", "workload", "api", "loop"]
NO_FAILURES = "no unexpected accuracy failure: every loop is equivalent to fit, or an expected failure"

# Verdicts (the `verdict` column).
REFERENCE, EQUIVALENT, DIFFERS, EXPECTED, NO_FIT = "reference", "equivalent", "DIFFERS", "expected failure", "no fit"
NOT_COMPARABLE = "not comparable"  # trains another global batch than fit (weak scaling): no verdict
# The weight tier (the `weights` column).
SAME_MATH, DIFFERENT_MATH, NOT_JUDGED = "same math", "DIFFERENT MATH", "n/a"
# The quality tier (the `quality` column).
SAME_QUALITY, DIFFERENT_QUALITY = "same quality", "DIFFERENT QUALITY"


def benchmark_rows(runs: Sequence[SavedRun]) -> pd.DataFrame:
    """One row per saved benchmark (before pooling repeats and seeds)."""
    rows = []
    for run in runs:
        for bench in run.benchmarks:
            info = bench["extra_info"]
            seconds = round_seconds(bench)
            steps = float(info["steps"])
            ds, dev = info.get("dataset") or {}, info.get("device") or {}
            rows.append(
                {
                    "run": run.run_id,
                    "workload": info["workload"],
                    "api": info["api"],
                    "loop": info["loop"],
                    "seed": info.get("seed", 0),
                    "repeat": info.get("repeat", 0),
                    "round_tput": round_throughputs(bench),
                    "round_step_ms": [1000.0 * s / steps for s in seconds],
                    "first_step_s": info.get("first_step_s", math.nan),
                    "test_accuracy": float(info["test_accuracy"]),
                    "weights": _checkpoint(info),
                    "init_weights": equivalence.image(info.get("init_weights")),
                    "weight_tier": info.get("weight_tier") if isinstance(info.get("weight_tier"), dict) else None,
                    "test_correct": _correct(info),
                    "global_batch": info.get("global_batch_size") or info.get("batch_size"),
                    "scaling": info.get("scaling"),
                    "flops_per_sample": _number(info.get("flops_per_sample")),
                    "peak_gflops": _number(info.get("peak_gflops")),
                    "batch_size": info.get("batch_size"),
                    "dataset": _provenance(ds),
                    "dataset_note": ds.get("note", ""),
                    "device": " ".join(str(dev[k]) for k in ("kind", "name") if dev.get(k)) or "unknown",
                    "preset": run.suite.get("preset", ""),
                }
            )
    return pd.DataFrame(rows)


def _checkpoint(info: dict[str, Any]) -> Any:
    """The weights image the weight tier judges, with its step: (step, WeightImage), or None."""
    saved = info.get("weights_checkpoint")
    picture = equivalence.image(saved)
    return (int(saved["step"]), picture) if picture is not None and isinstance(saved.get("step"), int) else None


def _correct(info: dict[str, Any]) -> Any:
    """The per-sample correctness bits of a result, or None (older records, or unreadable bits)."""
    bits, n = info.get("test_correct"), info.get("test_samples")
    if not isinstance(bits, str) or not isinstance(n, int) or n <= 0:
        return None
    try:
        return equivalence.unpack_correct(bits, n)
    except ValueError:  # binascii.Error is a ValueError
        return None


def _number(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _provenance(ds: dict[str, Any]) -> str:
    if not ds:
        return "unknown"
    text = f"{ds.get('source', '?')} {ds.get('train_size', '?')}/{ds.get('test_size', '?')}"
    return text + (" subset" if ds.get("subset") else "")


def _pool(group: pd.DataFrame) -> dict[str, Any]:
    tput = [t for ts in group["round_tput"] for t in ts]
    step_ms = [s for ss in group["round_step_ms"] for s in ss]
    per_seed = group.groupby("seed")["test_accuracy"].mean()
    first = group.iloc[0]
    return {
        "benchmarks": len(group),
        "seeds": int(group["seed"].nunique()),
        "repeats": int(group["repeat"].nunique()),
        "rounds": len(tput),
        "samples_per_sec": statistics.median(tput) if tput else math.nan,
        "samples_per_sec_min": min(tput) if tput else math.nan,
        "samples_per_sec_max": max(tput) if tput else math.nan,
        "cv": statistics.stdev(step_ms) / statistics.fmean(step_ms) if len(step_ms) > 1 else 0.0,
        "step_time_ms": statistics.median(step_ms) if step_ms else math.nan,
        "step_time_ms_p90": percentile(step_ms, 90) if step_ms else math.nan,
        "first_step_s": float(group["first_step_s"].median()),
        # achieved training GFLOP/s over the matmul peak measured in the same run (NaN: FLOPs unknown)
        "mfu": (
            statistics.median(tput) * first["flops_per_sample"] / (1e9 * first["peak_gflops"])
            if tput and first["peak_gflops"] > 0
            else math.nan
        ),
        "test_accuracy": float(per_seed.mean()),
        "test_accuracy_std": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else math.nan,
        "round_step_ms": step_ms,
        # per seed (a repeat of a seed trains the same model): what the verdicts pair with fit's
        "seed_weights": _first_per_seed(group, "weights"),
        "seed_init_weights": _first_per_seed(group, "init_weights"),
        "seed_correct": _first_per_seed(group, "test_correct"),
        "weight_tier": first["weight_tier"],
        "global_batch": first["global_batch"],
        "scaling": first["scaling"],
        "batch_size": first["batch_size"],
        "dataset": first["dataset"],
        "dataset_note": first["dataset_note"],
        "device": first["device"],
        "preset": first["preset"],
    }


def _first_per_seed(group: pd.DataFrame, column: str) -> dict[int, Any]:
    out: dict[int, Any] = {}
    for seed, value in zip(group["seed"], group[column], strict=True):
        if seed not in out and value is not None:
            out[int(seed)] = value
    return out


def build(
    runs: Sequence[SavedRun], tolerance_pp: float = DEFAULT_TOLERANCE_PP, alpha: float = equivalence.ALPHA
) -> pd.DataFrame:
    """The report table: pooled figures, speed-up and the two-tier verdict against fit of the same run.

    ``tolerance_pp`` is the quality tier's practical margin (widened to 3x fit's seed-to-seed spread with several
    seeds); ``alpha`` its McNemar significance level. See tf2bench.analysis.equivalence for both tiers.
    """
    if not tolerance_pp >= 0:
        raise BadInputError(f"--tolerance must be >= 0 percentage points, got {tolerance_pp!r}")
    if not 0 < alpha < 1:
        raise BadInputError(f"--alpha must be between 0 and 1, got {alpha!r}")
    raw = benchmark_rows(runs)
    groups = raw.groupby(KEYS, sort=False)  # rows in the suite's order (first appearance)
    df = pd.DataFrame([{**dict(zip(KEYS, key, strict=True)), **_pool(grp)} for key, grp in groups])
    fit = df[df["loop"] == "fit"].set_index(["run", "workload", "api"])
    idx = pd.MultiIndex.from_frame(df[["run", "workload", "api"]])
    fit_tput = fit["samples_per_sec"].reindex(idx).to_numpy()
    fit_acc = fit["test_accuracy"].reindex(idx).to_numpy()
    fit_std = fit["test_accuracy_std"].reindex(idx).to_numpy()
    df["speedup_vs_fit"] = df["samples_per_sec"].to_numpy() / fit_tput
    df["acc_diff_pp"] = 100.0 * (df["test_accuracy"].to_numpy() - fit_acc)
    # Several seeds: a difference smaller than fit's own seed-to-seed spread says nothing.
    df["tolerance_pp"] = [tolerance_pp if math.isnan(s) else max(tolerance_pp, 300.0 * s) for s in fit_std]
    df["noisy"] = df["cv"] > NOISY_CV
    fits = {key: row for key, row in zip(fit.index, fit.itertuples(), strict=True)}
    tiers = [_tiers(r, fits.get((r.run, r.workload, r.api)), alpha) for r in df.itertuples()]
    for column in ("weight_distance", "weight_distance_w", "weight_tolerance", "weights_verdict", "weights_note"):
        df[column] = [t[column] for t in tiers]
    for column in ("mcnemar_p", "paired_samples"):
        df[column] = [t[column] for t in tiers]
    # One seed, and a loop whose trajectory departs from fit's by design (no weight tolerance: bf16, random
    # layers under XLA): the two models then differ as two seeds' would, which one seed cannot measure (measured:
    # graph_mixed -1.7 pp, McNemar p 0.0095 with seed 0; +0.2 pp, p 0.57 over seeds 0-2). The margin is at least
    # 3 sd of the difference of two independent classifiers' accuracies on n samples, sqrt(2 a (1 - a) / n): a
    # floor on what training noise adds, not a bound on it (--seeds 3 measures the spread).
    for i, r in enumerate(df.itertuples()):
        free = isinstance(r.weight_tier, dict) and "tolerance" in r.weight_tier and r.weight_tier["tolerance"] is None
        if free and math.isnan(fit_std[i]) and r.paired_samples > 0 and not math.isnan(fit_acc[i]):
            floor = 300.0 * math.sqrt(2 * fit_acc[i] * (1 - fit_acc[i]) / r.paired_samples)
            df.loc[df.index[i], "tolerance_pp"] = max(r.tolerance_pp, floor)
    df["quality_verdict"] = [
        NOT_JUDGED if r.loop == "fit" or math.isnan(r.acc_diff_pp) else _quality(r, alpha)[0] for r in df.itertuples()
    ]
    verdicts = [_verdict(r, alpha) for r in df.itertuples()]
    df["verdict"] = [v for v, _ in verdicts]
    df["verdict_note"] = [n for _, n in verdicts]
    return df.drop(columns=["seed_weights", "seed_init_weights", "seed_correct", "weight_tier"])


def _tiers(row: Any, fit: Any, alpha: float) -> dict[str, Any]:
    """Both tiers of one row against fit's row of the same run, workload and api (pooled over common seeds)."""
    out: dict[str, Any] = {
        "weight_distance": math.nan,  # ||w - w_fit|| / ||w_fit - w_0||, the worst seed
        "weight_distance_w": math.nan,  # ||w - w_fit|| / ||w_fit||, shown for reference
        "weight_tolerance": math.nan,
        "weights_verdict": NOT_JUDGED,
        "weights_note": "",
        "mcnemar_p": math.nan,
        "paired_samples": 0,
    }
    if fit is None or row.loop == "fit":
        return out
    tier = row.weight_tier or {}
    seeds = sorted(set(row.seed_weights) & set(fit.seed_weights) & set(fit.seed_init_weights))
    steps = {row.seed_weights[s][0] for s in seeds} | {fit.seed_weights[s][0] for s in seeds}
    if tier.get("tolerance") is None and tier:
        out["weights_note"] = f"weight tier not applied: {tier.get('why', 'no tolerance declared by the loop')}"
    elif not seeds:
        out["weights_note"] = (
            f"weight tier not applied: no window ended between steps {equivalence.CHECK_MIN_STEPS} and "
            f"{equivalence.HORIZON_STEPS}, where weights are checked (or a record from before the tiers)"
        )
    elif len(steps) != 1 or min(steps) < 2:
        out["weights_note"] = f"weight tier not applied: checkpoints at different or too few steps ({sorted(steps)})"
    else:
        (step,) = steps
        distances = [
            equivalence.update_distance(row.seed_weights[s][1], fit.seed_weights[s][1], fit.seed_init_weights[s])
            for s in seeds
        ]
        out["weight_distance"] = max(distances)
        out["weight_distance_w"] = max(
            equivalence.weight_distance(row.seed_weights[s][1], fit.seed_weights[s][1]) for s in seeds
        )
        out["weight_tolerance"] = float(tier.get("tolerance", math.nan))
        same = out["weight_distance"] <= out["weight_tolerance"]
        out["weights_verdict"] = SAME_MATH if same else DIFFERENT_MATH
        out["weights_note"] = (
            f"weights {out['weight_distance']:.2g} of fit's update away from fit's after {step} steps "
            f"(tolerance {out['weight_tolerance']:.1e}, {tier.get('basis', '?')})"
        )
    pairs = [(row.seed_correct[s], fit.seed_correct[s]) for s in sorted(set(row.seed_correct) & set(fit.seed_correct))]
    test = equivalence.paired(pairs)
    if test is not None:
        out["mcnemar_p"], out["paired_samples"] = test.p, test.samples
    return out


def _quality(row: Any, alpha: float) -> tuple[str, str]:
    """The quality tier: DIFFERENT only when significant (paired McNemar, p < alpha) *and* beyond the margin.

    Without per-sample records (runs saved before them) the accuracy difference alone is held to the margin.
    """
    beyond = abs(row.acc_diff_pp) > row.tolerance_pp
    paired = row.paired_samples > 0
    significant = paired and row.mcnemar_p < alpha
    how = f"{row.acc_diff_pp:+.1f} pp vs fit"
    how += f", McNemar p {row.mcnemar_p:.2g}" if paired else " (no per-sample record: not paired)"
    how += f" (margin {row.tolerance_pp:.1f} pp, alpha {alpha:g})"
    return (DIFFERENT_QUALITY if beyond and (significant or not paired) else SAME_QUALITY), how


def _verdict(row: Any, alpha: float) -> tuple[str, str]:
    if row.loop == "fit":
        return REFERENCE, ""
    if math.isnan(row.acc_diff_pp):
        return NO_FIT, "no fit benchmark of this workload and api in the run"
    if row.scaling == "weak" and row.global_batch != row.batch_size:
        return NOT_COMPARABLE, (
            f"weak scaling: trains a global batch of {row.global_batch} against fit's {row.batch_size}; "
            "run with --scaling strong (the default) to check equivalence"
        )
    failed = []
    if row.weights_verdict == DIFFERENT_MATH:
        failed.append(f"different math: {row.weights_note}")
    quality, how = _quality(row, alpha)
    if quality == DIFFERENT_QUALITY:
        failed.append(f"different quality: {how}")
    notes = [] if row.weights_verdict == SAME_MATH else [row.weights_note]
    if not failed:
        return EQUIVALENT, "; ".join(n for n in [*notes, how] if n)
    if row.loop in EXPECTED_FAILURES:
        return EXPECTED, f"{'; '.join(failed)}; {EXPECTED_FAILURES[row.loop]}"
    return DIFFERS, "; ".join(failed)


def failed_tiers(row: Any) -> str:
    tiers = [name for name, bad in (("math", row.weights_verdict == DIFFERENT_MATH),
                                    ("quality", row.quality_verdict == DIFFERENT_QUALITY)) if bad]  # fmt: skip
    return "+".join(tiers) or "?"


def failures(df: pd.DataFrame) -> list[str]:
    """One line per unexpected failure: which loop, where, which tier, by how much."""
    bad = df[df["verdict"] == DIFFERS]
    return [
        f"{r.loop} is not equivalent to fit on {r.workload}/{r.api}: accuracy {r.test_accuracy:.4f} vs "
        f"{r.test_accuracy - r.acc_diff_pp / 100:.4f}; {r.verdict_note} [run {r.run}]"
        for r in bad.itertuples()
    ]
