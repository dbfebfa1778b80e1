"""The two-tier verdicts: planted broken loops come out DIFFERS, and loops that legitimately differ do not.

Every check goes through the records a run saves and ``tf2bench.analysis.report.build``, as a user's report would.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import planted_loops
import pytest

from tf2bench.analysis import equivalence, report
from tf2bench.analysis.runs import SavedRun
from tf2bench.loops import RunConfig
from tf2bench.suite.runner import BenchmarkRun
from tf2bench.workloads import Workload, build, data


def clusters(n: int = 1500, seed: int = 0):
    """Four Gaussian clusters in 10 dimensions: an MLP learns them in a few dozen steps (chance 25%)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=1.5, size=(4, 10))
    y = rng.integers(0, 4, size=n)
    x = (centers[y] + rng.normal(size=(n, 10))).astype("float32")
    return (x[:1000], y[:1000]), (x[1000:], y[1000:])


def mlp():
    import keras

    return keras.Sequential(
        [keras.Input((10,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4, activation="softmax")]
    )


def mlp_with_random_layers():
    """A user's model with Dropout (random masks in training) and BatchNorm (moving statistics)."""
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input((10,)),
            layers.Dense(32),
            layers.BatchNormalization(),
            layers.Activation("relu"),
            layers.Dropout(0.3),
            layers.Dense(4, activation="softmax"),
        ]
    )


MLP = Workload(name="eq_mlp", model=mlp, data=clusters, loss="sparse_categorical_crossentropy", learning_rate=3e-3)
RANDOM = Workload(
    name="eq_random_layers",
    model=mlp_with_random_layers,
    data=clusters,
    loss="sparse_categorical_crossentropy",
    learning_rate=3e-3,
)


def records(workload: Workload, loops, steps: int = 10, rounds: int = 3) -> list[dict]:
    dataset = data.load(workload)
    out = []
    for v in loops:
        run = BenchmarkRun(workload, "model", v, dataset, RunConfig(steps=steps, rounds=rounds, warmup_steps=1, seed=3))
        run.warmup()
        for _ in range(run.rounds):
            run.window()
        out.append({**run.result(), "repeat": 0})
    return out


def verdicts(recs: list[dict]):
    run = SavedRun(path=Path("planted.json"), benchmarks=[{"name": r["loop"], "extra_info": r} for r in recs])
    return report.build([run]).set_index("loop")


# ---- planted defects ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted():
    names = [cls.name for cls in planted_loops.PLANTED]
    return verdicts(records(MLP, ["fit", "tf_function", *names]))


@pytest.mark.slow
def test_the_correct_loop_is_equivalent_in_both_tiers(planted):
    row = planted.loc["tf_function"]
    assert row["verdict"] == report.EQUIVALENT, row["verdict_note"]
    assert row["weights_verdict"] == report.SAME_MATH
    assert row["weight_distance"] <= equivalence.TOL_FP32
    assert planted.loc["fit", "test_accuracy"] > 0.6  # it learned: the quality tier has something to compare


@pytest.mark.slow
@pytest.mark.parametrize("cls", planted_loops.PLANTED, ids=lambda c: c.name)
def test_every_planted_defect_differs(planted, cls):
    row = planted.loc[cls.name]
    assert row["verdict"] == report.DIFFERS, row["verdict_note"]
    # Each defect moves the weights by a share of fit's update well above the rounding tolerance (measured here at
    # the 11-step checkpoint: 0.13 for a stale batch, which differs from fit in 2 of 11 batches, up to ~1 for
    # misaligned labels): four tolerances at least, so no defect passes by a hair.
    assert row["weight_distance"] > 4 * equivalence.TOL_FP32, row["weights_note"]
    assert row["weights_verdict"] == report.DIFFERENT_MATH
    assert "different math" in row["verdict_note"]


@pytest.mark.slow
def test_misaligned_labels_also_fail_the_quality_tier(planted):
    row = planted.loc["planted_misaligned_labels"]
    assert row["quality_verdict"] == report.DIFFERENT_QUALITY, row["verdict_note"]
    assert row["mcnemar_p"] < equivalence.ALPHA
    assert "different quality" in row["verdict_note"]


@pytest.mark.slow
def test_a_stale_batch_keeps_the_accuracy_but_not_the_math(planted):
    """Step k on batch k-1 learns as well as fit: only the weight tier can see it."""
    row = planted.loc["planted_stale_batch"]
    assert row["quality_verdict"] == report.SAME_QUALITY, row["verdict_note"]
    assert row["weights_verdict"] == report.DIFFERENT_MATH


@pytest.mark.slow
def test_report_exits_1_naming_the_tier(planted, tmp_path, capsys):
    lines = report.failures(planted.reset_index())
    assert len(lines) == len(planted_loops.PLANTED)
    assert all("different math" in line for line in lines)


# ---- loops that legitimately differ -----------------------------------------------------------------------


@pytest.mark.slow
def test_random_layers_under_xla_fall_back_to_the_quality_tier():
    recs = records(RANDOM, ["fit", "tf_function", "eager", "xla"])
    by = {r["loop"]: r for r in recs}
    assert by["fit"]["weight_tier"]["tolerance"] == equivalence.TOL_FP32
    xla = by["xla"]["weight_tier"]
    assert xla["tolerance"] is None
    assert "Dropout" in xla["why"]  # the record says why
    row = verdicts(recs)
    assert (row.loc[["tf_function", "eager"], "weights_verdict"] == report.SAME_MATH).all()  # same masks
    assert row.loc["xla", "weights_verdict"] == report.NOT_JUDGED
    assert row.loc["xla", "verdict"] == report.EQUIVALENT, row.loc["xla", "verdict_note"]
    assert "Dropout" in row.loc["xla", "verdict_note"]


def test_random_layers_are_found_in_a_model():
    assert build.random_layers(mlp_with_random_layers()) == ["Dropout"]
    assert build.random_layers(mlp()) == []


# ---- the pieces ------------------------------------------------------------------------------------------------


def test_sketch_is_linear_and_estimates_distances():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=100_000), rng.normal(size=100_000)
    np.testing.assert_allclose(build.sketch(a) - build.sketch(b), build.sketch(a - b), atol=1e-9)
    # ||sketch(z)||^2 estimates ||z||^2 with relative variance <= 2/64: 4 sigma is ~71% on the square, so a
    # norm estimate within a factor 1.6 either way never fails by chance (the hash is fixed anyway).
    for z in (a - b, np.where(rng.random(100_000) < 0.01, a, 0.0)):
        ratio = np.linalg.norm(build.sketch(z)) / np.linalg.norm(z)
        assert 1 / 1.6 < ratio < 1.6


def test_sketch_hash_is_fixed_forever():
    """Saved sketches are compared across runs: the hash must never change (SKETCH_SEED, SKETCH_SIZE)."""
    z = np.arange(1000, dtype=np.float64)
    s = build.sketch(z)
    assert len(s) == build.SKETCH_SIZE == 64
    assert s.sum() == pytest.approx(build.sketch(z).sum())
    assert np.linalg.norm(s) == pytest.approx(float(np.linalg.norm(build.sketch(z.copy()))))


def test_correctness_bits_round_trip():
    correct = np.random.default_rng(1).random(1001) < 0.3
    text = equivalence.pack_correct(correct)
    assert len(text) <= 4 * (1001 // 8 + 3) // 3 + 4
    np.testing.assert_array_equal(equivalence.unpack_correct(text, 1001), correct)
    with pytest.raises(ValueError, match="expected 2000"):
        equivalence.unpack_correct(text, 2000)


@pytest.mark.parametrize(
    ("b", "c", "p"),
    [(0, 0, 1.0), (5, 5, 1.0), (0, 10, 2 * 0.5**10), (10, 0, 2 * 0.5**10), (3, 9, 0.14599609375)],
)
def test_mcnemar_exact_p_values(b, c, p):
    # (3, 9): 2 * P(X <= 3), X ~ Bin(12, 1/2) = 2 * (1 + 12 + 66 + 220) / 4096
    assert equivalence.mcnemar_exact(b, c) == pytest.approx(p)


def test_paired_adds_discordant_counts_over_seeds():
    loop = [np.array([1, 1, 0, 0], bool), np.array([1, 0], bool)]
    fit = [np.array([1, 0, 1, 0], bool), np.array([0, 0], bool)]
    test = equivalence.paired(list(zip(loop, fit, strict=True)))
    assert (test.samples, test.loop_only, test.fit_only) == (6, 2, 1)
    assert equivalence.paired([]) is None


@pytest.mark.slow
def test_one_seed_of_a_loop_off_fit_s_trajectory_is_held_to_the_sampling_floor():
    """bf16 and random layers under XLA train another trajectory by design (no weight tolerance): with one seed
    their accuracy may differ from fit's as another seed's would, significantly on the same test samples. The
    quality margin is then at least 3 sd of two independent classifiers' accuracy difference; beyond it, DIFFERS."""
    recs = records(MLP, ["fit", "tf_function"])
    fit, loop = recs
    n, acc = loop["test_samples"], fit["test_accuracy"]
    floor_pp = 300.0 * (2 * acc * (1 - acc) / n) ** 0.5
    correct = equivalence.unpack_correct(loop["test_correct"], n)

    def off_trajectory(flips: int) -> dict:
        bits = correct.copy()
        bits[np.flatnonzero(bits)[:flips]] = False  # right -> wrong: p of McNemar ~ 2^-flips
        return {**loop, "test_correct": equivalence.pack_correct(bits), "test_accuracy": float(bits.mean()),
                "weight_tier": {"tolerance": None, "why": "bfloat16 compute"}}  # fmt: skip

    small = math.ceil(0.5 * floor_pp / 100 * n)  # half the floor: significant, beyond the 1 pp margin
    row = verdicts([fit, off_trajectory(small)]).loc["tf_function"]
    assert row.mcnemar_p < 0.01
    assert abs(row.acc_diff_pp) > report.DEFAULT_TOLERANCE_PP
    assert row.tolerance_pp == pytest.approx(floor_pp)
    assert row.verdict == report.EQUIVALENT, row.verdict_note
    large = math.ceil(1.5 * floor_pp / 100 * n)
    assert verdicts([fit, off_trajectory(large)]).loc["tf_function", "verdict"] == report.DIFFERS
    # a loop on fit's trajectory (a weight tolerance declared) keeps the 1 pp margin: the same change DIFFERS
    same_path = {**off_trajectory(small), "weight_tier": loop["weight_tier"]}
    assert verdicts([fit, same_path]).loc["tf_function", "verdict"] == report.DIFFERS
