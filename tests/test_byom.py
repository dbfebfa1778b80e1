"""Bring your own model: workloads declared only here run through every loop, from Python and from pytest."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import EQUIVALENT, ROOT, fp32_tolerance, update_distance, xla_tolerance

import tf2bench
from tf2bench.analysis import runs
from tf2bench.errors import BadInputError
from tf2bench.loops import LOOPS, RunConfig
from tf2bench.registry import Registry
from tf2bench.suite.runner import BenchmarkRun
from tf2bench.workloads import Workload, data, load_spec

DEFAULT_LOOPS = [v for v in LOOPS.names() if not LOOPS.get(v).opt_in]


def build_mlp():
    import keras

    return keras.Sequential(
        [keras.Input((10,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4, activation="softmax")],
        name="byom_mlp",
    )


def tabular(n: int = 1200, seed: int = 0):
    """Four Gaussian clusters in 10 dimensions: learnable, not separable at a glance."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(4, 10))
    y = rng.integers(0, 4, size=n)
    x = (centers[y] + rng.normal(scale=1.0, size=(n, 10))).astype("float32")
    cut = n * 4 // 5
    return (x[:cut], y[:cut]), (x[cut:], y[cut:])


def build_two_inputs():
    """What the Functional API is for: two named inputs, merged."""
    import keras
    from keras import layers

    numbers = keras.Input((6,), name="numbers")
    image = keras.Input((8, 8, 1), name="image")
    a = layers.Dense(16, activation="relu")(numbers)
    b = layers.Flatten()(layers.Conv2D(4, 3, activation="relu")(image))
    x = layers.Dense(16, activation="relu")(layers.Concatenate()([a, b]))
    return keras.Model({"numbers": numbers, "image": image}, layers.Dense(3, activation="softmax")(x), name="two_in")


def two_input_arrays(n: int, seed: int):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    numbers = (np.eye(3, 6)[y] + rng.normal(scale=0.8, size=(n, 6))).astype("float32")
    image = (y[:, None, None, None] / 3.0 + rng.normal(scale=0.5, size=(n, 8, 8, 1))).astype("float32")
    return {"numbers": numbers, "image": image}, y


def two_input_datasets():
    """(train, test) as batched tf.data datasets: tf2bench unbatches them and owns the batch order."""
    import tensorflow as tf

    train = tf.data.Dataset.from_tensor_slices(two_input_arrays(640, 1)).batch(50)
    test = tf.data.Dataset.from_tensor_slices(two_input_arrays(160, 2)).batch(50)
    return train, test


MLP = Workload(
    name="byom_mlp", model=build_mlp, data=tabular, loss="sparse_categorical_crossentropy", learning_rate=1e-2
)
TWO_INPUTS = Workload(
    name="byom_two_inputs",
    models={"functional": build_two_inputs},
    data=two_input_datasets,
    loss="sparse_categorical_crossentropy",
    optimizer=lambda: __import__("keras").optimizers.Adam(learning_rate=2e-3),
    batch_size=16,
)


def train(workload, loop, dataset, api):
    run = BenchmarkRun(workload, api, loop, dataset, RunConfig(steps=5, rounds=2, warmup_steps=2, seed=3))
    run.warmup()
    for _ in range(run.rounds):
        run.window()
    return run


@pytest.mark.slow
@pytest.mark.parametrize("workload", [MLP, TWO_INPUTS], ids=lambda w: w.name)
def test_own_workloads_agree_across_loops_as_the_suite_does(workload):
    dataset = data.load(workload)
    api = workload.apis[0]
    trained = {v: train(workload, v, dataset, api) for v in (*EQUIVALENT, "xla", "fit_xla", "graph_xla", "tutorial")}
    assert len({r.init_fingerprint for r in trained.values()}) == 1
    fit = trained["fit"]
    for v in EQUIVALENT[1:]:
        d = update_distance(trained[v], fit)
        assert d <= fp32_tolerance(), (
            f"{workload.name}: {v} is {d:.2e} of fit's update away (tol {fp32_tolerance():.1e})"
        )
    for v in ("xla", "fit_xla", "graph_xla"):
        d = update_distance(trained[v], fit)
        assert d <= xla_tolerance(), f"{workload.name}: {v} is {d:.2e} of fit's update away (tol {xla_tolerance():.1e})"
    assert update_distance(trained["tutorial"], fit) > 0.3  # one sample per step: a whole update away


@pytest.mark.slow
def test_python_api_runs_every_loop_and_returns_the_report_table(tmp_path):
    df = tf2bench.benchmark(MLP, steps=8, rounds=3, save=tmp_path / "benchmarks")
    assert sorted(df["loop"]) == sorted(DEFAULT_LOOPS)
    assert df["error"].isna().all(), df[df["error"].notna()][["loop", "error"]].to_string()
    for column in ("samples_per_sec", "cv", "speedup_vs_fit", "test_accuracy", "acc_diff_pp", "verdict", "mfu"):
        assert column in df.columns
    row = df.set_index("loop")
    assert row.loc["fit", "speedup_vs_fit"] == 1.0
    assert (row["samples_per_sec"] > 0).all()
    assert row.loc["fit", "test_accuracy"] > 0.5  # four classes: chance is 0.25
    assert row.loc["tutorial", "verdict"] == "expected failure"
    assert row.loc["fit", "mfu"] > 0  # FLOPs counted from the Dense layers
    # The saved run is an ordinary suite run: report and compare read it.
    saved = runs.load(runs.resolve(df.attrs["path"])[0], require_round_data=True)
    assert {b["extra_info"]["loop"] for b in saved.benchmarks} == set(DEFAULT_LOOPS)
    second = tf2bench.benchmark(MLP, loops=["fit"], steps=5, rounds=3, save=tmp_path / "benchmarks")
    assert second.attrs["path"] != df.attrs["path"]  # a new numbered file: the first is kept
    assert sorted(p.name[:4] for p in (tmp_path / "benchmarks").glob("*/*.json")) == ["0001", "0002"]


def test_python_api_takes_a_two_input_model_fed_by_tf_data():
    df = tf2bench.benchmark(TWO_INPUTS, loops=["fit", "eager", "tf_data"], steps=4, rounds=2, dataset="auto")
    assert df["error"].isna().all(), df[["loop", "error"]].to_string()
    assert df["dataset"].iloc[0].startswith("workload 640/160")
    # Same math, not same bits: oneDNN may pick other kernels per code path on another CPU. The report's weight
    # tier (sketched weights, fp32 tolerance) must call both loops the same math as fit.
    row = df.set_index("loop")
    assert (row.loc[["eager", "tf_data"], "weights_verdict"] == "same math").all(), row["weights_note"].to_dict()
    assert (row.loc[["eager", "tf_data"], "weight_distance"] <= fp32_tolerance()).all()


class SideEffect:
    """A model whose call reads a tensor's value: fine eagerly, impossible inside a compiled graph."""

    @staticmethod
    def build():
        import keras

        class Peek(keras.layers.Layer):
            def call(self, x):
                float(np.asarray(x).sum())  # Python side effect: needs a concrete value
                return x

        return keras.Sequential([keras.Input((10,)), Peek(), keras.layers.Dense(4, activation="softmax")])


def test_a_loop_the_model_breaks_fails_with_its_reason_and_the_rest_run():
    broken = Workload(
        name="byom_side_effect", model=SideEffect.build, data=tabular, loss="sparse_categorical_crossentropy"
    )
    df = tf2bench.benchmark(broken, loops=["eager", "tf_function", "tf_data"], steps=3, rounds=2)
    row = df.set_index("loop")
    assert row.loc["eager", "samples_per_sec"] > 0
    assert row.loc["eager", "error"] is None
    for v in ("tf_function", "tf_data"):
        assert "numpy" in row.loc[v, "error"].lower() or "symbolic" in row.loc[v, "error"].lower(), row.loc[v, "error"]


def compiled_model():
    model = build_mlp()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def wrong_shape_data():
    (x, y), (xt, yt) = tabular()
    return (x[:, :7], y), (xt[:, :7], yt)


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        (lambda: Workload(name="w", model=build_mlp, data=tabular), "no loss given"),
        (lambda: Workload(name="w", data=tabular, loss="mse"), "no model given"),
        (lambda: Workload(name="w", model=build_mlp, loss="mse"), "no data function"),
        (lambda: Workload(name="w", model=build_mlp(), data=tabular, loss="mse"), "must be a function that builds"),
        (lambda: Workload(name="w bad", model=build_mlp, data=tabular, loss="mse"), "alphanumeric"),
        (lambda: Workload(name="w", model=build_mlp, data=tabular, loss="mse", batch_size=0), "batch_size"),
    ],
)
def test_a_declaration_missing_a_piece_names_it(declare, message):
    with pytest.raises(BadInputError, match=message):
        declare()


def test_an_optimizer_instance_is_refused_for_its_state():
    import keras

    with pytest.raises(BadInputError, match="optimizer must be a function returning a fresh optimizer"):
        Workload(name="w", model=build_mlp, data=tabular, loss="mse", optimizer=keras.optimizers.Adam())


@pytest.mark.parametrize(
    ("pieces", "message"),
    [
        ({"model": compiled_model}, "returned a compiled model"),
        ({"data": wrong_shape_data}, r"the data does not fit model 'model': inputs \(2, 7\) float32"),
        ({"loss": "no_such_loss"}, "loss 'no_such_loss' is not a Keras loss"),
        ({"loss": "binary_crossentropy"}, "the loss cannot take labels"),
        ({"data": lambda: ((np.zeros((5, 10)), np.zeros(4, int)), tabular()[1])}, r"x holds 5 samples .* y has shape"),
        ({"data": lambda: ((np.zeros((64, 10)), np.full(64, 0.5)), tabular()[1])}, "y must be integer class labels"),
        ({"data": lambda: np.zeros(3)}, r"expected \(\(x_train, y_train\), \(x_test, y_test\)\)"),
        ({"optimizer": lambda: "adam"}, "the optimizer factory returned str"),
    ],
)
def test_wrong_pieces_fail_before_training_with_a_clear_error(pieces, message):
    wl = Workload(
        **{"name": "w", "model": build_mlp, "data": tabular, "loss": "sparse_categorical_crossentropy", **pieces}
    )
    with pytest.raises(BadInputError, match=message):
        tf2bench.benchmark(wl, loops=["tf_function"], steps=2, rounds=1)


def test_specs_import_and_register_a_workload(tmp_path, monkeypatch):
    (tmp_path / "myspecs.py").write_text(
        "from test_byom import MLP as workload\nnot_a_workload = 3\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    fresh = Registry("workload")  # registrations land here for this test; the process's registry is left alone
    monkeypatch.setattr("tf2bench.workloads.workload.WORKLOADS", fresh)
    assert load_spec("myspecs:workload") is MLP
    assert fresh.get("byom_mlp") is MLP  # registered
    assert load_spec("myspecs:workload") is MLP  # twice is fine
    for spec, message in [
        ("myspecs", "must look like 'package.module:attribute'"),
        ("nosuchmodule:w", "cannot import 'nosuchmodule'"),
        ("myspecs:nope", "has no 'nope'; workloads in it: workload"),
        ("myspecs:not_a_workload", "is a int, not a tf2bench.Workload"),
    ]:
        with pytest.raises(BadInputError, match=message):
            load_spec(spec)


@pytest.mark.slow
def test_the_examples_run_from_python_and_from_pytest_and_report_reads_them(tmp_path):
    """examples/my_model: the README's two ways, run as a user would (its own directory, its own results/)."""
    example = tmp_path / "my_model"
    subprocess.run(["cp", "-r", str(ROOT / "examples" / "my_model"), str(example)], check=True)
    env_python = sys.executable
    py = subprocess.run(
        [env_python, "benchmark_my_model.py", "results/benchmarks"], cwd=example, capture_output=True, text=True
    )
    assert py.returncode == 0, py.stdout + py.stderr
    assert "tf_data" in py.stdout
    assert "saved: results/benchmarks/" in py.stdout
    bench = subprocess.run(
        [env_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tf2bench-workload", "my_model:workload",
         "--steps", "4", "--rounds", "5", "--loop", "fit,tf_function,tf_data,graph_loop", "--benchmark-autosave"],
        cwd=example, capture_output=True, text=True,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-3000:] + bench.stderr[-3000:]
    files = sorted((example / "results" / "benchmarks").glob("*/*.json"))
    assert [f.name[:4] for f in files] == ["0001", "0002"]  # the Python run, then pytest's: numbered, both kept
    doc = json.loads(files[1].read_text())
    assert {b["extra_info"]["workload"] for b in doc["benchmarks"]} == {"tabular_mlp"}
    assert {b["extra_info"]["loop"] for b in doc["benchmarks"]} == {"fit", "tf_function", "tf_data", "graph_loop"}
    cli = [env_python, "-m", "tf2bench.cli"]
    rep = subprocess.run(
        [*cli, "report", str(files[1]), "--out", str(tmp_path / "reports")], capture_output=True, text=True
    )
    assert rep.returncode == 0, rep.stdout + rep.stderr
    assert "tabular_mlp" in rep.stdout
    cmp = subprocess.run([*cli, "compare", str(files[1]), str(files[1])], capture_output=True, text=True)
    assert cmp.returncode == 0, cmp.stdout + cmp.stderr  # a run against itself: no regression
    bad = subprocess.run(
        [env_python, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tf2bench-workload", "my_model:nope"],
        cwd=example, capture_output=True, text=True,
    )  # fmt: skip
    assert bad.returncode == 4
    assert "my_model has no 'nope'; workloads in it: workload" in bad.stderr
