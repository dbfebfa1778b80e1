"""The one case planner (tf2bench.suite.plan): cases and their order, data loaded once, calibration once per workload
and API, a worker process's share; and tf2bench.benchmark takes every suite option, by name, checked the same way."""

from __future__ import annotations

import inspect
from dataclasses import replace

import pytest

import tf2bench
from tf2bench.errors import BadInputError
from tf2bench.suite import plan, presets
from tf2bench.suite.names import DEPRECATED, OPTIONS
from tf2bench.suite.options import Case, parse_options
from tf2bench.suite.plan import Planner
from tf2bench.workloads import WORKLOADS, get_workload
from tf2bench.workloads.data import SOURCES


def planner(raw: dict, env: dict | None = None, **kwargs) -> Planner:
    return Planner(parse_options(raw, env or {}), **kwargs)


def test_cases_are_repeat_major_and_only_for_the_apis_a_workload_declares():
    own = replace(get_workload("mnist"), name="plan_only_functional", models={"functional": lambda: None})
    with WORKLOADS.using(own.name, own):
        p = planner({"workload": f"mnist,{own.name}", "api": "sequential,functional", "loop": "fit,eager",
                     "seed": "4", "seeds": "2", "repeat": "2"})  # fmt: skip
        cases = p.cases()
    per_round = [
        (s, w, a, loop)
        for s in (4, 5)
        for w, apis in (("mnist", ("sequential", "functional")), (own.name, ("functional",)))
        for a in apis
        for loop in ("fit", "eager")
    ]
    assert cases == [Case(r, *c) for r in (0, 1) for c in per_round]  # A B C ... then A B C ... again
    assert cases[0].id == "r0-s4-mnist-sequential-fit"


def test_each_workload_s_data_is_loaded_once_with_the_options_sizes(monkeypatch):
    loads = []
    monkeypatch.setattr(plan.data, "load", lambda wl, source, **sizes: loads.append((wl.name, source, sizes)) or wl)
    p = planner({"workload": "mnist,cifar100", "dataset": "synthetic", "train_size": "300"})
    for workload in ("mnist", "cifar100", "mnist", "cifar100"):
        assert p.dataset(workload) is get_workload(workload)
    assert loads == [  # --train-size over the preset's; the test size is quick's for each workload
        ("mnist", "synthetic", {"train_size": 300, "test_size": 1000}),
        ("cifar100", "synthetic", {"train_size": 300, "test_size": 1000}),
    ]


CAL = {"min_window_s": 0.2, "max_steps": 64, "floor_steps": 6, "steps": 48, "step_s": 0.005, "reference_loop": "x"}


def test_a_run_and_its_worker_processes_calibrate_once_per_workload_and_api(monkeypatch):
    calls = []
    monkeypatch.setattr(plan, "calibrate_case", lambda wl, api, *args: calls.append((wl.name, api)) or dict(CAL))
    monkeypatch.setattr(Planner, "dataset", lambda self, workload: None)  # the fake calibration trains nothing
    raw = {"workload": "mnist", "api": "sequential,functional", "loop": "fit,eager", "seeds": "2"}
    said = []
    first = planner(raw, {"TF2BENCH_PROCESS": "1/3"}, say=said.append)
    for case in first.cases():
        config, sizing = first.windows(case.workload, case.api, case.seed)
        assert (config.steps, config.seed, sizing.source) == (48, case.seed, "calibrated")
    assert calls == [("mnist", "sequential"), ("mnist", "functional")]
    assert len(said) == 2
    assert said[0].startswith("tf2bench: mnist sequential: windows of 48 steps")
    whole = first.calibrations["mnist", "sequential"]
    assert (whole["round_budget_s"], whole["min_rounds"]) == (5.0, 3)  # the whole run's, kept for the next workers
    # a later worker gets the first one's calibrations (suite.processes) and times its share with the same windows
    third = planner(raw, {"TF2BENCH_PROCESS": "3/3"}, calibrations=dict(first.calibrations))
    config, sizing = third.windows("mnist", "functional", 1)
    assert len(calls) == 2
    assert (config.steps, config.rounds, sizing.round_budget_s, sizing.min_rounds) == (48, 1, 5.0 / 3, 1)
    assert first.run_config("mnist", 0).rounds == 2  # quick's 5 rounds: 2, 2, 1
    # outside a worker: every round, the whole budget
    config, sizing = planner(raw, calibrations=dict(first.calibrations)).windows("mnist", "functional", 0)
    assert (config.rounds, sizing.round_budget_s, sizing.min_rounds) == (5, 5.0, 3)


def test_prepare_builds_a_run_with_the_planned_windows():
    p = planner({"workload": "mnist", "api": "functional", "loop": "tf_function", "dataset": "synthetic",
                 "train_size": "96", "test_size": "32", "steps": "2", "rounds": "2", "batch_size": "16"})  # fmt: skip
    (case,) = p.cases()
    run = p.prepare(case)
    assert (run.config.steps, run.config.rounds, run.config.batch_size, run.sizing.source) == (2, 2, 16, "option")
    assert run.dataset is p.dataset("mnist")
    assert run.case_id == "mnist-functional-tf_function-s0"


def test_only_the_first_worker_profiles_into_the_run_s_trace_directory(tmp_path):
    raw = {"workload": "mnist", "api": "functional", "loop": "fit", "profile": "1", "trace_dir": str(tmp_path)}
    here = planner({**raw, "seeds": "2"})
    run_dir = here.trace_run_dir()
    assert run_dir.parent == tmp_path  # <trace-dir>/<run id>, made once
    assert run_dir.is_dir()
    assert here.trace_run_dir() == run_dir
    cases = here.cases()
    assert here.profile_dir(cases[1]) == run_dir / "mnist-functional-fit-s1"
    assert here.run_config("mnist", 0).profile_steps == 5
    first = planner({**raw, "trace_dir": str(run_dir)}, {"TF2BENCH_PROCESS": "1/2"})
    assert first.profile_dir(first.cases()[0]) == run_dir / "mnist-functional-fit"  # the parent's run directory
    second = planner({**raw, "trace_dir": str(run_dir)}, {"TF2BENCH_PROCESS": "2/2"})
    assert (second.trace_run_dir(), second.run_config("mnist", 0).profile_steps) == (None, 0)
    assert planner({"workload": "mnist"}).profile_dir(cases[0]) is None  # no --profile


def test_the_option_table_names_every_choice():
    assert all(source in OPTIONS["dataset"][1] for source in SOURCES)
    assert all(name in OPTIONS["preset"][1] for name in presets.PRESETS)


# tf2bench.benchmark's argument for each suite option: the same name, except the selections it always took
ARGUMENT = {"api": "apis", "loop": "loops"}
# option -> (a value parse_options refuses, one it takes); every option is here (checked below)
VALUES = {
    "workload": ("imagenet", "cifar100"),
    "api": ("keras", "functional"),
    "loop": ("fastest", "fit,tf_data"),
    "dataset": ("imagenet", "synthetic"),
    "preset": ("fast", "smoke"),
    "epochs": (0, 2),
    "steps": ("ten", 7),
    "rounds": (-1, 4),
    "warmup_steps": (0, 2),
    "batch_size": (2.5, 16),
    "seed": (-1, 3),
    "seeds": (0, 2),
    "repeat": ("2.5", 2),
    "train_size": (0, 300),
    "test_size": (0, 100),
    "profile": ("maybe", True),
    "profile_steps": (0, 3),
    "trace_dir": (None, "elsewhere/traces"),  # any path is one: nothing to refuse
    "devices": (0, 2),
    "mixed_precision": ("half", "bfloat16"),
    "scaling": ("linear", "weak"),
    "processes": (0, 2),
}


class Planned(Exception):
    """Raised by the planner stand-in: the options tf2bench.benchmark parsed, before anything runs."""


@pytest.fixture
def planned(monkeypatch):
    def stop(options, **kwargs):
        raise Planned(options)

    monkeypatch.setattr(plan, "Planner", stop)


def call(option: str, value) -> None:
    if option == "workload":
        tf2bench.benchmark(value)
    else:
        tf2bench.benchmark("mnist", **{ARGUMENT.get(option, option): value})


def test_benchmark_takes_every_suite_option_by_its_name():
    assert set(VALUES) == set(OPTIONS)
    params = inspect.signature(tf2bench.benchmark).parameters
    missing = [o for o in OPTIONS if ARGUMENT.get(o, o) not in params]
    assert not missing, f"tf2bench.benchmark lacks suite options {missing}"


@pytest.mark.parametrize("option", [o for o, (bad, _) in VALUES.items() if bad is not None])
def test_benchmark_refuses_a_bad_value_as_the_suite_does(option, planned):
    bad = VALUES[option][0]
    with pytest.raises(BadInputError) as suite:
        parse_options({"workload": "mnist", option: bad}, environ={})
    with pytest.raises(BadInputError) as api:
        call(option, bad)
    assert str(api.value) == str(suite.value)


@pytest.mark.parametrize("option", list(VALUES))
def test_benchmark_plans_with_the_options_the_suite_would(option, planned):
    good = VALUES[option][1]
    with pytest.raises(Planned) as caught:
        call(option, good)
    (options,) = caught.value.args
    assert options == parse_options({"workload": "mnist", option: good}, environ={})


def test_benchmark_ignores_the_environment_and_still_takes_variants(monkeypatch, planned):
    monkeypatch.setenv("TF2BENCH_STEPS", "0")  # the arguments say it all
    monkeypatch.setenv(DEPRECATED["variant"][1], "eager")
    with pytest.warns(DeprecationWarning, match=r"benchmark\(variants=...\) is now benchmark\(loops=...\)"):
        with pytest.raises(Planned) as caught:
            tf2bench.benchmark("mnist", variants=["fit"])
    assert caught.value.args[0].loops == ("fit",)
    assert caught.value.args[0].steps is None


def build_mlp():
    import keras

    layers = [keras.layers.Dense(8, activation="relu"), keras.layers.Dense(3, activation="softmax")]
    return keras.Sequential([keras.Input((6,)), *layers])


def tabular():
    import numpy as np

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=320)
    x = (np.eye(3, 6)[y] + rng.normal(scale=0.5, size=(320, 6))).astype("float32")
    return (x[:256], y[:256]), (x[256:], y[256:])


@pytest.mark.slow
def test_benchmark_runs_with_the_suite_s_options_from_python(tmp_path):
    """seeds, repeat, warm-up steps and a profile window, end to end: the cases in the suite's order, each record
    with what was asked, each profile in the run's trace directory."""
    import json
    from pathlib import Path

    mlp = tf2bench.Workload(name="plan_mlp", model=build_mlp, data=tabular, loss="sparse_categorical_crossentropy")
    df = tf2bench.benchmark(
        mlp, ["tf_function"], steps=3, rounds=2, warmup_steps=2, seeds=2, repeat=2, profile=True, profile_steps=2,
        trace_dir=tmp_path / "traces", save=tmp_path / "benchmarks",
    )  # fmt: skip
    assert df["error"].isna().all(), df["error"].tolist()
    infos = [b["extra_info"] for b in json.loads(Path(df.attrs["path"]).read_text())["benchmarks"]]
    assert [(i["repeat"], i["seed"]) for i in infos] == [(0, 0), (0, 1), (1, 0), (1, 1)]  # repeat-major
    sizes = {(i["warmup_steps"], i["steps"], i["rounds"], i["window_steps_source"]) for i in infos}
    assert sizes == {(2, 3, 2, "option")}
    (run_dir,) = (tmp_path / "traces").iterdir()  # one trace directory for the run
    names = [f"plan_mlp-model-tf_function{r}-s{s}" for r in ("", "-r1") for s in (0, 1)]  # seeds > 1: each named
    assert [Path(i["profile"]["trace_dir"]) for i in infos] == [run_dir / n for n in names]
    assert all(i["profile"]["steps"] == 2 for i in infos)
