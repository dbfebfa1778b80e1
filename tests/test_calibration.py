"""Calibrated windows (pyperf's min_time): the rule against fake windows, and a calibrated run end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import tf2bench
from tf2bench.measure.timing import calibrate, calibrated_steps, cap_note, planned_rounds, step_cap
from tf2bench.suite import plan, presets, runner
from tf2bench.suite.options import parse_options
from tf2bench.suite.plan import Planner, calibration_line
from tf2bench.suite.presets import Preset


@pytest.mark.parametrize(
    ("step_s", "min_window_s", "floor", "cap", "expected"),
    [
        (0.001, 0.2, 6, 500, 384),  # need 200: 6 x 2^6 (6 x 2^5 = 192 would last 0.192 s)
        (0.001, 0.192, 6, 500, 192),  # exactly 192 steps' worth: 192, not 384 (0.192 / 0.001 > 192 in floats)
        (0.0045, 0.2, 15, 500, 60),  # cifar100 here: need 45 -> 60, as for any step time in (3.3, 6.7] ms
        (0.05, 0.2, 6, 500, 6),  # slow steps: the preset's steps are the floor
        (1e-5, 0.2, 6, 500, 500),  # fast steps: capped
        (1e-5, 0.2, 600, 500, 600),  # a floor above the cap wins: calibration never shortens a window
    ],
)
def test_calibrated_steps_reach_the_minimum_window_within_floor_and_cap(step_s, min_window_s, floor, cap, expected):
    steps = calibrated_steps(step_s, min_window_s, floor, cap)
    assert steps == expected
    if floor < steps < cap:
        assert steps * step_s >= min_window_s * (1 - 1e-12) > (steps // 2) * step_s  # the shortest on the grid


def test_runs_a_little_faster_or_slower_pick_the_same_window():
    # step times from 3.4 to 6.6 ms (what one machine measured across quick runs): one window length
    assert {calibrated_steps(s / 1000, 0.2, 15, 500) for s in (3.4, 4.0, 4.5, 5.0, 5.5, 6.0, 6.6)} == {60}


def test_calibrated_steps_refuse_a_step_time_that_is_no_time():
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="must be positive"):
            calibrated_steps(bad, 0.2, 6, 500)


class FakeLoop:
    """A loop whose window takes ``overhead + n * step`` seconds, plus noise on chosen calls."""

    def __init__(self, step: float, overhead: float = 0.0, noise: dict[int, float] | None = None) -> None:
        self.step, self.overhead, self.noise, self.calls = step, overhead, noise or {}, []

    def __call__(self, n: int) -> float:
        self.calls.append(n)
        return self.overhead + n * self.step + self.noise.get(len(self.calls), 0.0)


def test_calibrate_grows_the_window_then_times_it_and_keeps_the_fastest():
    loop = FakeLoop(step=0.001, noise={3: 0.05})  # one calibration window hit by a 50 ms stall
    cal = calibrate(loop, min_window_s=0.2, floor=6, cap=500, repeats=3)
    assert loop.calls[0] == 6  # starts at the floor
    assert all(b >= 2 * a for a, b in zip(loop.calls[:-3], loop.calls[1:-2], strict=True))  # grows fast
    n = loop.calls[-1]
    assert loop.calls[-3:] == [n, n, n]  # the grown length timed three times
    assert n * 0.001 >= 0.1  # half the target: extrapolated from a window of that length
    assert cal.step_s == pytest.approx(0.001)  # the stall is not the loop's speed
    assert cal.steps == 384  # need 200: the grid 6 x 2^k
    expected = [(k, pytest.approx(0.001 * k + loop.noise.get(i + 1, 0.0))) for i, k in enumerate(loop.calls)]
    assert list(cal.probes) == expected  # every window it timed, recorded


def test_calibrate_stops_at_the_cap_and_at_a_slow_floor():
    fast = FakeLoop(step=1e-6)
    assert calibrate(fast, 0.2, 6, 50).steps == 50
    assert max(fast.calls) == 50
    slow = FakeLoop(step=0.2)
    cal = calibrate(slow, 0.2, 6, 500)
    assert cal.steps == 6
    assert slow.calls == [6, 6, 6]


def test_a_window_fixed_cost_shortens_the_calibrated_window_by_less_than_itself():
    # 5 ms of sync/call per window (~0.1 ms really), 1 ms per step: at ~110 steps a step reads 1.045 ms
    cal = calibrate(FakeLoop(step=0.001, overhead=0.005), 0.2, 6, 500)
    assert 0.2 - 0.005 <= 0.005 + cal.steps * 0.001 <= 0.2 + 0.001


@pytest.mark.parametrize(
    ("rounds", "window_s", "budget_s", "min_rounds", "expected"),
    [
        (5, 0.2, 5.0, 3, 5),  # fast loop: fits
        (5, 1.8, 5.0, 3, 3),  # eager: 2 fit the budget, but a median and a CV need 3
        (5, 0.9, 5.0, 3, 5),  # 4.5 s: fits
        (5, 1.2, 5.0, 3, 4),  # as many as fit
        (5, 10.0, None, 3, 5),  # no budget: every round
        (2, 10.0, 5.0, 3, 2),  # never more than planned
    ],
)
def test_slow_loops_run_fewer_rounds_within_the_budget(rounds, window_s, budget_s, min_rounds, expected):
    assert planned_rounds(rounds, window_s, budget_s, min_rounds) == expected


# The suite's side: one calibration per workload and API, shared by every loop, seed and repeat.

CALIBRATED = Preset(
    "calibrated_test",
    "tiny calibrated windows for the tests",
    default_steps=4,
    rounds=3,
    min_window_s=0.03,
    max_steps=64,
    round_budget_s=1e-6,  # every loop is "slow": each runs min_rounds, and says why
    min_rounds=2,
)
FIXED = Preset("fixed_test", "the same, uncalibrated", default_steps=4, rounds=3)


@pytest.fixture
def test_presets(monkeypatch):
    monkeypatch.setitem(presets.PRESETS, CALIBRATED.name, CALIBRATED)
    monkeypatch.setitem(presets.PRESETS, FIXED.name, FIXED)


def planner(raw: dict, **kwargs) -> Planner:
    """A planner whose data is never loaded (the fake calibrations below do not train)."""
    out = Planner(parse_options(raw, {}), **kwargs)
    out.dataset = lambda workload: None
    return out


def test_the_planner_calibrates_once_per_workload_and_api(test_presets, monkeypatch):
    calls = []

    def fake_calibrate(workload, api, dataset, config, min_window_s, max_steps, max_window_bytes):
        calls.append((workload.name, api, config.steps, min_window_s, max_steps))
        return {"min_window_s": min_window_s, "max_steps": max_steps, "floor_steps": config.steps, "steps": 40,
                "step_s": 0.001, "reference_loop": "graph_loop"}  # fmt: skip

    monkeypatch.setattr(plan, "calibrate_case", fake_calibrate)
    said = []
    plans = planner({"preset": CALIBRATED.name, "workload": "mnist", "api": "sequential,functional"}, say=said.append)
    for seed in (0, 1):
        for api in ("sequential", "functional", "sequential"):
            config, windows = plans.windows("mnist", api, seed)
            assert (config.steps, config.seed, windows.source) == (40, seed, "calibrated")
            assert windows.round_budget_s == 1e-6
            assert windows.min_rounds == 2
    assert calls == [("mnist", "sequential", 4, 0.03, 64), ("mnist", "functional", 4, 0.03, 64)]
    assert (
        said[0]
        == "tf2bench: mnist sequential: windows of 40 steps (graph_loop 1.00 ms/step; >= 0.03 s, floor 4, cap 64)"
    )
    assert list(plans.calibrations) == [("mnist", "sequential"), ("mnist", "functional")]  # shared with workers
    # --rounds: calibrated steps, no round budget; --steps, --epochs, an uncalibrated preset: no calibration at all
    config, windows = planner({"preset": CALIBRATED.name, "rounds": "3"}).windows("mnist", "sequential", 0)
    assert windows.source == "calibrated"
    assert windows.round_budget_s is None
    for raw, source, steps in (
        ({"preset": CALIBRATED.name, "steps": "7"}, "option", 7),
        ({"preset": CALIBRATED.name, "epochs": "2"}, "epochs", 4),
        ({"preset": FIXED.name}, "preset", 4),
    ):
        config, windows = planner(raw).windows("mnist", "sequential", 0)
        assert (windows.source, config.steps, windows.calibration) == (source, steps, None)
    assert len(calls) == 3


def test_a_model_no_reference_loop_runs_keeps_the_preset_steps(test_presets, monkeypatch):
    error = {"min_window_s": 0.03, "max_steps": 64, "floor_steps": 4, "error": "graph_loop: ValueError: no"}
    monkeypatch.setattr(plan, "calibrate_case", lambda *args, **kwargs: dict(error))
    config, windows = planner({"preset": CALIBRATED.name, "workload": "mnist"}).windows("mnist", "sequential", 0)
    assert (config.steps, windows.source, windows.calibration["error"]) == (4, "preset", error["error"])


def build_mlp():
    import keras

    return keras.Sequential(
        [keras.Input((10,)), keras.layers.Dense(32, activation="relu"), keras.layers.Dense(4, activation="softmax")]
    )


def tabular():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, size=800)
    x = (rng.normal(size=(4, 10))[y] + rng.normal(size=(800, 10))).astype("float32")
    return (x[:640], y[:640]), (x[640:], y[640:])


MLP = tf2bench.Workload(name="calibration_mlp", model=build_mlp, data=tabular, loss="sparse_categorical_crossentropy")
LOOPS = ["fit", "eager", "tf_function", "graph_loop"]


def saved_records(df) -> dict[str, dict]:
    assert df["error"].isna().all(), df[df["error"].notna()][["loop", "error"]].to_string()
    doc = json.loads(Path(df.attrs["path"]).read_text())
    return {b["extra_info"]["loop"]: b["extra_info"] for b in doc["benchmarks"]}


@pytest.mark.slow
def test_a_calibrated_preset_gives_every_loop_of_a_case_the_same_steps_and_records_why(test_presets, tmp_path):
    records = saved_records(tf2bench.benchmark(MLP, LOOPS, preset=CALIBRATED.name, save=tmp_path))
    assert sorted(records) == sorted(LOOPS)
    cal = records["fit"]["calibration"]
    assert cal["reference_loop"] == "graph_loop"
    assert cal["step_s"] > 0
    assert (cal["min_window_s"], cal["floor_steps"], cal["min_rounds"]) == (0.03, 4, 2)
    # the cap: the preset's ceiling of 64 steps, or 4 x the steps of 0.03 s at the first probe's pace if fewer
    assert cal["max_steps"] <= 64
    assert cal["cap_by"] == ("ceiling" if cal["max_steps"] == 64 else "time")
    assert cal["steps"] == calibrated_steps(cal["step_s"], 0.03, 4, cal["max_steps"])
    assert cal["probes"][0][0] == 4
    assert len(cal["probes"]) >= 3
    settle = runner.SETTLE_TO - CALIBRATED.warmup_steps
    for loop, info in records.items():
        assert info["calibration"] == cal, loop  # one calibration for the case
        assert info["steps"] == cal["steps"], loop
        assert info["window_steps_source"] == "calibrated"
        assert info["settle_steps"] == settle
        assert info["weights_checkpoint"]["step"] == runner.SETTLE_TO  # the weight tier judges them all alike
        assert info["steps_total"] == CALIBRATED.warmup_steps + settle + info["rounds"] * info["steps"]
        # the budget is tiny: every loop is cut to min_rounds, and says why
        assert (info["rounds"], info["rounds_planned"], len(info["window_s"])) == (2, 3, 2)
        assert "2 rounds, not 3" in info["rounds_reason"]
        # the test set is evaluated after min_rounds windows in every loop: the quality tier compares like with like
        assert info["eval_steps"] == CALIBRATED.warmup_steps + settle + 2 * info["steps"]


@pytest.mark.parametrize(
    ("probe_step_s", "memory_cap", "ceiling", "expected"),
    [
        (0.005, 10_000, 100_000, (160, "time")),  # a CPU CNN step: 4 x the 40 steps 0.2 s needs
        (1.65e-4, 100_000, 100_000, (4849, "time")),  # the example MLP here: 1,213 steps for 0.2 s, x 4
        (1e-4, 682, 100_000, (682, "memory")),  # a GPU CIFAR-100 step: 256 MiB of its batches bind first
        (1e-7, 10**9, 100_000, (100_000, "ceiling")),
        (10.0, 10_000, 100_000, (15, "time")),  # the floor wins: a cap never shortens a window
    ],
)
def test_the_step_cap_is_set_by_time_and_memory(probe_step_s, memory_cap, ceiling, expected):
    assert step_cap(probe_step_s, 0.2, 15, memory_cap, ceiling) == expected


def test_a_binding_cap_is_said_in_the_record_and_the_progress_line():
    cal = {"min_window_s": 0.2, "floor_steps": 15, "max_steps": 682, "cap_by": "memory", "reference_loop": "graph_loop"}
    assert cap_note({**cal, "steps": 480, "step_s": 1e-3}) is None  # under the cap: 0.48 s
    assert cap_note({**cal, "steps": 682, "step_s": 1e-3}) is None  # at the cap, but long enough
    note = cap_note({**cal, "steps": 682, "step_s": 1e-4})
    assert note == "windows capped at 682 steps by memory last ~0.0682 s, under the preset's 0.2 s minimum: more " \
        "timer and launch jitter per window"  # fmt: skip
    line = calibration_line("cifar100", "functional", {**cal, "steps": 682, "step_s": 1e-4, "cap_note": note})
    assert line.endswith(f"cap 682 by memory): {note}")


CAPPED = Preset(
    "capped_test", "a ceiling the MLP's windows hit", default_steps=4, rounds=3, min_window_s=0.05, max_steps=8
)


@pytest.mark.slow
def test_a_run_whose_cap_binds_says_so_in_every_record(monkeypatch, tmp_path):
    monkeypatch.setitem(presets.PRESETS, CAPPED.name, CAPPED)
    records = saved_records(tf2bench.benchmark(MLP, ["tf_function", "graph_loop"], preset=CAPPED.name, save=tmp_path))
    for info in records.values():
        cal = info["calibration"]
        assert (cal["steps"], cal["max_steps"], cal["cap_by"]) == (8, 8, "ceiling")  # 8 steps of ~0.2 ms < 0.05 s
        assert cal["cap_note"].startswith("windows capped at 8 steps by ceiling")


@pytest.mark.slow
def test_an_uncalibrated_preset_keeps_its_fixed_steps(test_presets, tmp_path):
    records = saved_records(tf2bench.benchmark(MLP, ["fit", "tf_function"], preset=FIXED.name, save=tmp_path))
    for info in records.values():
        assert (info["steps"], info["rounds"], info["rounds_planned"]) == (4, 3, 3)
        assert (info["window_steps_source"], info["calibration"], info["rounds_reason"]) == ("preset", None, None)
        assert info["settle_steps"] == 0
        assert info["steps_total"] == 1 + 3 * 4
        assert info["eval_steps"] == info["steps_total"]  # evaluated at the end, after the same rounds in every loop
