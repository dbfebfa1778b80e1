"""The two tiers of "does this loop learn the same thing as fit?", computed from saved records alone.

*Same math* compares weights after the same steps: every result saves a count sketch of its
initial weights, of its weights at a checkpoint and at the end (``tf2bench.workloads.build.weights_image``),
so the distance between a loop's weights and fit's is estimated from the JSON, as a share of
fit's own update ``||w - w_fit|| / ||w_fit - w_0||``. Relative to the update, not to ``||w||``:
the initial weights dominate ``||w||`` early on, and would hide a wrong update behind them.
Each loop declares the share its arithmetic allows (``Loop.weight_tier``).

The checkpoint is the first window end at or after CHECK_MIN_STEPS steps, and within
HORIZON_STEPS. Training amplifies rounding: smoothly (a few percent per step) and in jumps, when
a value crosses a kink (a ReLU, the cross-entropy's probability clip); docs/equivalence.md gives
the measurements. Only an early checkpoint keeps the difference near a bound derived from one step's
rounding (see the tolerances below). Every defect present from the first steps is visible there; a late one is left to
the quality tier, which judges the final model. No checkpoint in that range (e.g. a first
window longer than the horizon): the weight tier says so and does not judge.

*Same quality* compares per-sample correctness on the same test samples with an exact
McNemar test: a loop DIFFERS only when the difference is significant (p < alpha) *and*
larger than a practical margin. No TensorFlow import: the report runs without it.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CHECK_MIN_STEPS = 8  # fewer steps hide a defect that skips or shifts a batch now and then
HORIZON_STEPS = 32  # beyond this, amplified rounding (see above) may exceed the tolerances
ALPHA = 0.01  # McNemar significance level of the quality tier
DEFAULT_MARGIN_PP = 1.0  # practical margin: a smaller accuracy difference never fails, however significant

# Tolerances of the weight tier, as a share of fit's update ||w_fit - w_0|| at the checkpoint. Why each is what it is:
# - fp32 with other kernels or another summation order (eager, tf.function, tf.data, fit_spe, the in-graph loop,
#   an all-reduce): each gradient component of a length-n reduction moves by at most gamma_n = n u / (1 - n u),
#   u = 2^-24 (fp32 unit roundoff). The longest reductions in these models are conv weight gradients over
#   batch x H x W (32 x 26 x 26 = 21,632 < 2^15), so one step's update moves by at most ~2^15 x 2^-24 = 2^-9 of
#   itself; Adam's normalisation m / sqrt(v) keeps that relative. Later steps amplify what earlier ones left
#   (the kinks of ReLU and of the cross-entropy's clip turn a rounding-sized change into a different branch), so
#   the checkpoint is early (<= HORIZON_STEPS) and the tolerance allows 2^3 of amplification on top of one step's
#   bound: 2^-6 ~ 1.6e-2 (what the loops and the planted defects measure against it: docs/equivalence.md).
# - XLA (fusion, its own conv and reduction kernels): the same argument, with whole fused expressions
#   re-associated: twice the fp32 allowance, 2^-5.
# - bf16 compute (mixed): inputs of every matmul/conv are rounded to bf16, u = 2^-8 per element, so one step's
#   update may move by a few percent, amplified as above to tens of percent: a share comparable to a defect's.
#   The loop declares no tolerance and the quality tier judges it.
# - TF32 (float32 matmuls and convolutions on an Ampere or newer GPU, TensorFlow's default there): every input is
#   rounded to a 10-bit mantissa, u = 2^-11. Two loops that differ in any summation order hold inputs a rounding
#   apart, and each may then round to the other side of a TF32 step: each product moves by up to 2 u = 2^-10 of
#   itself, with or without cancellation counted as for fp32, on top of the fp32 reordering's 2^-9: one step's update
#   ~2^-8.4 of itself, 2^3 of amplification as above, and XLA's re-association on top (x2): 2^-4.
TOL_FP32 = 2.0**-6
TOL_XLA = 2.0**-5
TOL_TF32 = 2.0**-4


@dataclass(frozen=True)
class WeightImage:
    sketch: np.ndarray
    norm: float


def image(record: dict | None) -> WeightImage | None:
    """A saved weights image (``{"sketch": [...], "norm": x}``), or None when the record has none."""
    if not isinstance(record, dict) or not isinstance(record.get("sketch"), list):
        return None
    sketch = np.asarray(record["sketch"], dtype=np.float64)
    if sketch.ndim != 1 or not len(sketch) or not np.all(np.isfinite(sketch)):
        return None
    return WeightImage(sketch, float(record.get("norm", math.nan)))


def update_distance(final: WeightImage, fit_final: WeightImage, fit_init: WeightImage) -> float:
    """``||w - w_fit|| / ||w_fit - w_0||`` estimated from sketches (NaN if fit did not move or sizes differ)."""
    if not (len(final.sketch) == len(fit_final.sketch) == len(fit_init.sketch)):
        return math.nan
    moved = float(np.linalg.norm(fit_final.sketch - fit_init.sketch))
    if not moved > 0:
        return math.nan
    return float(np.linalg.norm(final.sketch - fit_final.sketch)) / moved


def weight_distance(final: WeightImage, fit_final: WeightImage) -> float:
    """``||w - w_fit|| / ||w_fit||``: the distance as a share of the weights themselves (shown, not judged)."""
    if len(final.sketch) != len(fit_final.sketch) or not fit_final.norm > 0:
        return math.nan
    return float(np.linalg.norm(final.sketch - fit_final.sketch)) / fit_final.norm


# ---- the quality tier -------------------------------------------------------------------------------------------


def pack_correct(correct: Sequence[bool] | np.ndarray) -> str:
    """Per-sample correctness as base64 of packed bits (1,000 test samples -> 168 characters)."""
    bits = np.packbits(np.asarray(correct, dtype=bool))
    return base64.b64encode(bits.tobytes()).decode("ascii")


def unpack_correct(text: str, n: int) -> np.ndarray:
    """The inverse of :func:`pack_correct` for ``n`` samples."""
    bits = np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype=np.uint8)
    out = np.unpackbits(bits)[:n].astype(bool)
    if len(out) != n:
        raise ValueError(f"correctness bits hold {len(out)} samples, expected {n}")
    return out


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from the discordant counts.

    b: samples the loop gets right and fit wrong; c: the reverse. Under "same quality" each discordant
    sample is a fair coin, so p = P(|X - n/2| >= |b - n/2|), X ~ Binomial(n = b + c, 1/2).
    """
    n = b + c
    if n == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue)


@dataclass(frozen=True)
class Paired:
    """The paired comparison of one loop with fit over the same test samples (pooled over seeds)."""

    samples: int
    loop_only: int  # loop right, fit wrong
    fit_only: int  # fit right, loop wrong
    p: float


def paired(pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> Paired | None:
    """McNemar over (loop, fit) correctness vectors, one pair per seed: discordant counts add up across seeds
    (each seed's samples are independent coin flips under the null). None when no pair can be made."""
    if not pairs:
        return None
    b = c = n = 0
    for loop, fit in pairs:
        if len(loop) != len(fit):
            return None
        b += int(np.sum(loop & ~fit))
        c += int(np.sum(~loop & fit))
        n += len(loop)
    return Paired(n, b, c, mcnemar_exact(b, c))
