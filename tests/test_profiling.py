"""Profiler traces: names and thresholds, then real captures, read back by xprof, served by a real TensorBoard
(profiling one run at a time: test_profiling_runs.py).

The suite runs once (smoke preset, cifar100, every loop, --profile) in a subprocess;
its traces and saved JSON are checked here, then served by `tf2bench tensorboard` on
a free loopback port and checked over HTTP.
"""

from __future__ import annotations

import gzip
import json
import os
import select
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tf2bench.errors import EXIT_BAD_INPUT, BadInputError
from tf2bench.measure.profiling import (
    INPUT_BOUND_HIGH_PCT,
    INPUT_BOUND_MODERATE_PCT,
    STEP_COLUMNS,
    input_bound_level,
    new_run_dir,
    run_name,
    safe_name,
    summarise_input_pipeline,
    unrolled_block,
    unrolled_blocks,
)
from tf2bench.workloads import get_workload

ROOT = Path(__file__).resolve().parent.parent
CIFAR = get_workload("cifar100")
# 6: the block loops profile in unrolled blocks of 2 (one unmarked, two marked); the per-step loops mark 6 steps,
# of which xprof drops the first and the last (it does so beyond 5 steps).
PROFILE_STEPS = 6
# Loops that run several steps per call as a while_loop, profiled in unrolled blocks instead.
BLOCK_LOOPS = ("graph_loop", "graph_xla", "fit_spe")
# The five loops of the issue and the block loops.
SUITE_LOOPS = ("fit", "eager", "tutorial", "tf_function", "tf_data", *BLOCK_LOOPS)
XPROF_DROPS_ENDS_ABOVE = 5  # xprof drops the first and last marked steps of a trace with more than this many


def _gpus() -> int:
    import tensorflow as tf

    return len(tf.config.list_physical_devices("GPU"))


GPUS = _gpus()  # the expectations below come from the machine the test runs on


# --- names and thresholds ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [("cifar100", "cifar100"), ("../../etc", "etc"), ("a/b\\c", "a_b_c"), ("tf_data", "tf_data"), (".x", "x")],
)
def test_safe_name_never_leaves_its_directory(text, expected):
    assert safe_name(text) == expected


@pytest.mark.parametrize("text", ["", "..", "/", "./"])
def test_safe_name_refuses_names_that_are_no_name(text):
    with pytest.raises(BadInputError):
        safe_name(text)


def test_run_name_joins_sanitised_parts_and_run_dirs_are_fresh(tmp_path):
    assert run_name("cifar100", "functional", "../fit") == "cifar100-functional-fit"
    first, second = new_run_dir(tmp_path, "x"), new_run_dir(tmp_path, "x")
    assert first != second
    assert first.parent == second.parent == tmp_path


def test_input_bound_levels_follow_xprof_thresholds():
    assert input_bound_level(INPUT_BOUND_HIGH_PCT) == "highly"
    assert input_bound_level(INPUT_BOUND_MODERATE_PCT) == "moderately"
    assert input_bound_level(INPUT_BOUND_MODERATE_PCT - 0.1) == "not"


@pytest.mark.parametrize(("steps", "block"), [(1, 1), (2, 1), (4, 1), (5, 1), (6, 2), (9, 3), (16, 4), (1000, 10)])
def test_unrolled_blocks_tile_the_window_and_leave_two_marked_after_the_warm_one(steps, block):
    assert unrolled_block(steps) == block
    blocks = unrolled_blocks(100, steps, block)
    assert [k for k, _ in blocks] == list(range(100, 100 + steps, block))  # every step once, in order
    marked = [k for k, m in blocks if m]
    assert len(marked) == (len(blocks) - 1 if len(blocks) > 1 else 1)  # the first block warms, unless alone
    assert len(marked) >= 2 or steps < 3


def _step_table(step_ms: list[float]) -> list[dict]:
    """input_pipeline_analyzer's step table as xprof returns it: host compute, 10% input."""
    cols = ["stepnum", "stepTimeMs", "infeedTimeMs", "hostComputeTimeMs", "deviceComputeTimeMs"]
    cols += ["kernelLaunchTimeMs", "compileTimeMs", "otherTimeMs"]
    rows = [
        {"c": [{"v": f"train {i}"}, {"v": t}, {"v": t / 10}, {"v": t * 0.9}] + [{"v": 0.0}] * 4}
        for i, t in enumerate(step_ms)
    ]
    return [{"cols": [{"id": c} for c in cols], "rows": rows, "p": {"steptime_ms_average": "1"}}]


def test_block_figures_are_divided_into_per_train_step_ms():
    tables = _step_table([40.0, 60.0])
    one = summarise_input_pipeline(tables)
    four = summarise_input_pipeline(tables, train_steps_per_marked_step=4)
    assert one["step_time_ms"] == one["marked_step_time_ms"] == four["marked_step_time_ms"] == 50.0
    assert (four["step_time_ms"], four["step_time_ms_min"], four["step_time_ms_max"]) == (12.5, 10.0, 15.0)
    assert four["input_ms"] == pytest.approx(1.25)
    assert four["host_compute_ms"] == pytest.approx(11.25)
    assert four["input_bound_pct"] == pytest.approx(one["input_bound_pct"]) == pytest.approx(10.0)
    assert (four["steps_measured"], four["train_steps_per_marked_step"], four["train_steps_measured"]) == (2, 4, 8)
    with pytest.raises(BadInputError):
        summarise_input_pipeline(tables, train_steps_per_marked_step=0)


def test_the_tensorboard_command_refuses_a_missing_logdir_and_a_bad_port(tmp_path, capsys):
    from tf2bench.cli import main

    assert main(["tensorboard", "--logdir", str(tmp_path / "nothing"), "--port", "0"]) == EXIT_BAD_INPUT
    assert "no traces at" in capsys.readouterr().err
    assert main(["tensorboard", "--logdir", str(tmp_path), "--port", "70000"]) == EXIT_BAD_INPUT
    assert "--port must be 0..65535" in capsys.readouterr().err


# --- the suite with --profile -------------------------------------------------------------


@pytest.fixture(scope="module")
def profiled_suite(tmp_path_factory):
    """Run `pytest bench --profile` once: (trace run dir, saved benchmarks JSON)."""
    tmp = tmp_path_factory.mktemp("profiled_suite")
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "2"}
    args = [
        *("--preset", "smoke", "--workload", "cifar100", "--api", "functional", "--dataset", "synthetic"),
        *("--loop", ",".join(SUITE_LOOPS)),
        *("--profile", "--profile-steps", str(PROFILE_STEPS), "--trace-dir", str(tmp / "traces")),
        *(f"--benchmark-storage=file://{tmp / 'bench'}", "--benchmark-autosave"),
    ]
    cmd = [sys.executable, "-m", "pytest", "bench", "-p", "no:cacheprovider", *args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (run_dir,) = (tmp / "traces").iterdir()
    (saved,) = (tmp / "bench").rglob("*.json")
    return run_dir, json.loads(saved.read_text())


@pytest.mark.slow
def test_every_benchmark_saves_a_profile_summary_with_measured_steps(profiled_suite):
    run_dir, saved = profiled_suite
    benchmarks = {b["extra_info"]["loop"]: b["extra_info"] for b in saved["benchmarks"]}
    assert sorted(benchmarks) == sorted(SUITE_LOOPS)
    for loop, info in benchmarks.items():
        prof = info["profile"]
        assert "error" not in prof, (loop, prof)
        assert Path(prof["trace_dir"]) == run_dir / f"cifar100-functional-{loop}"
        assert Path(prof["trace_path"]).is_file()
        assert Path(prof["trace_path"]).is_relative_to(prof["trace_dir"])
        assert prof["steps"] == PROFILE_STEPS
        per = unrolled_block(PROFILE_STEPS) if loop in BLOCK_LOOPS else 1
        marked = PROFILE_STEPS // per - 1 if loop in BLOCK_LOOPS else PROFILE_STEPS  # blocks: one warms
        measured = marked - 2 if marked > XPROF_DROPS_ENDS_ABOVE else marked
        assert prof["train_steps_per_marked_step"] == per, loop
        assert (prof["steps_measured"], prof["train_steps_measured"]) == (measured, measured * per), loop
        assert prof["step_time_ms"] == pytest.approx(prof["marked_step_time_ms"] / per), loop  # per train step
        assert prof["step_time_ms"] > 0
        # comparable to the timed step: no tracing or first-call cost inside a marked step (those are 20-100x)
        assert prof["step_time_ms"] < 10 * info["step_time_ms"], loop
        assert prof["step_time_ms_stddev"] >= 0
        assert prof["step_time_ms_min"] <= prof["step_time_ms"] <= prof["step_time_ms_max"]
        assert 0 <= prof["input_bound_pct"] <= 100
        # the breakdown adds up: every column xprof reports, summed step by step (profiling.PARTS_REL_TOLERANCE)
        assert prof["parts_add_up"], (loop, prof["unattributed_ms"], prof["extra_parts_ms"])
        parts = sum(prof[k] for k in STEP_COLUMNS.values() if k != "step_time_ms") + sum(
            prof["extra_parts_ms"].values()
        )
        assert parts == pytest.approx(prof["step_time_ms"], rel=1e-9), loop
        if not GPUS:  # a CPU has no device-to-device copies, collectives or device-to-host output
            assert prof["device_collectives_ms"] == prof["device_to_device_ms"] == prof["output_ms"] == 0.0
        assert "input-bound" in prof["conclusion"]
        # the profiled steps are training steps, after the timed ones, before evaluation
        assert info["steps_total"] == info["warmup_steps"] + info["rounds"] * info["steps"] + PROFILE_STEPS
    for loop in ("eager", "tutorial"):  # xprof lists eager ops with no self time on a CPU: not top ops
        assert all(op["self_ms"] > 0 for op in benchmarks[loop]["profile"]["top_ops"]), loop
    for loop in ("fit", "tf_function", "tf_data", *BLOCK_LOOPS):  # graph ops are attributed; eager ops not (CPU)
        ops = benchmarks[loop]["profile"]["top_ops"]
        if GPUS:  # the step's ops run on the device: top_ops are the device's (CUPTI permitting: tf2bench doctor)
            assert ops == benchmarks[loop]["profile"]["top_ops_device"], loop
        else:  # a CPU-only trace: host ops only
            assert ops == benchmarks[loop]["profile"]["top_ops_host"], loop
            assert benchmarks[loop]["profile"]["top_ops_device"] == [], loop
        assert 0 < len(ops) <= 5, loop
        assert all(op["self_ms"] > 0 for op in ops), loop
        assert [op["self_ms"] for op in ops] == sorted((op["self_ms"] for op in ops), reverse=True)


def _get(url: str, timeout: float = 60.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - loopback only
        body = resp.read()
        if resp.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
    return json.loads(body)


@pytest.fixture
def tensorboard(profiled_suite):
    """`tf2bench tensorboard` on a free loopback port over the suite's traces; stopped at teardown."""
    run_dir, _ = profiled_suite
    cli = "import sys; from tf2bench.cli import main; sys.exit(main(sys.argv[1:]))"  # the installed command's code
    proc = subprocess.Popen(
        [sys.executable, "-c", cli, "tensorboard", "--logdir", str(run_dir), "--port", "0"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline, line = time.monotonic() + 90, ""
        while "http://" not in line:
            ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready or proc.poll() is not None:
                pytest.fail(f"TensorBoard printed no URL (exit code {proc.poll()})")
            line = proc.stdout.readline()
        url = line[line.index("http://") :].split()[0].split("#")[0]
        assert url.startswith("http://127.0.0.1:")
        yield url.rstrip("/")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stdout.close()


@pytest.mark.slow
def test_tensorboard_serves_one_profiled_run_per_benchmark(tensorboard):
    api = f"{tensorboard}/data/plugin/profile"
    runs = _get(f"{api}/runs")
    by_benchmark = {r.split("/")[0]: r for r in runs}
    assert sorted(by_benchmark) == sorted(f"cifar100-functional-{v}" for v in SUITE_LOOPS)
    for run in by_benchmark.values():
        q = urllib.parse.quote(run, safe="")
        tools = _get(f"{api}/run_tools?run={q}")
        assert {"overview_page", "input_pipeline_analyzer"} <= set(tools), tools
        assert any(t.startswith("trace_viewer") for t in tools), tools
        hosts = _get(f"{api}/hosts?run={q}&tag=input_pipeline_analyzer")
        host = urllib.parse.quote(hosts[0]["hostname"], safe="")
        tables = _get(f"{api}/data?run={q}&tag=input_pipeline_analyzer&host={host}")
        (step_table,) = [t for t in tables if "steptime_ms_average" in (t.get("p") or {})]
        assert float(step_table["p"]["steptime_ms_average"]) > 0, run
