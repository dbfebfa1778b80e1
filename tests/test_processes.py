"""--processes N: the split of rounds, the merged record, workers that crash or are interrupted, and real runs."""

from __future__ import annotations

import json
import math
import statistics
import sys
import textwrap
from pathlib import Path

import pytest

from tf2bench.errors import BadInputError
from tf2bench.suite import processes
from tf2bench.suite.options import parse_options
from tf2bench.suite.plan import Planner, round_share


@pytest.mark.parametrize(("total", "n"), [(5, 1), (5, 2), (5, 3), (5, 5), (3, 3), (7, 3), (2, 5), (1, 4)])
def test_round_share_spreads_the_rounds_over_the_processes(total, n):
    shares = [round_share(total, k, n) for k in range(1, n + 1)]
    assert sum(shares) == max(total, n)  # the rounds are kept, or one each when there are more processes
    assert min(shares) >= 1
    assert max(shares) - min(shares) <= 1  # evenly
    assert shares == sorted(shares, reverse=True)  # the first processes take the remainder
    assert round_share(total, 0, n) == total  # not a worker: every round


def test_a_worker_times_its_share_of_rounds_budget_and_minimum():
    raw = {"workload": "mnist", "api": "functional", "loop": "fit"}
    alone = parse_options(raw, environ={})
    workers = [parse_options(raw, environ={"TF2BENCH_PROCESS": f"{k}/3"}) for k in (1, 2, 3)]
    assert (alone.processes, alone.process) == (1, 0)
    assert [(w.processes, w.process) for w in workers] == [(3, 1), (3, 2), (3, 3)]
    assert [Planner(w).run_config("mnist", 0).rounds for w in workers] == [2, 2, 1]  # quick's 5 rounds
    assert Planner(alone).run_config("mnist", 0).rounds == 5
    # the windows come from the calibrations every worker shares; budget and minimum rounds are shared out
    cal = {"steps": 12, "round_budget_s": 6.0, "min_rounds": 3}
    first = Planner(workers[0], calibrations={("mnist", "functional"): cal})
    config, windows = first.windows("mnist", "functional", 0)
    assert (config.steps, windows.round_budget_s, windows.min_rounds) == (12, 2.0, 1)
    _, whole = Planner(alone, calibrations={("mnist", "functional"): cal}).windows("mnist", "functional", 0)
    assert (whole.round_budget_s, whole.min_rounds) == (6.0, 3)
    # a worker never spawns workers of its own, whatever --processes its inherited arguments say
    assert parse_options({**raw, "processes": "5"}, environ={"TF2BENCH_PROCESS": "2/3"}).processes == 3
    assert parse_options({**raw, "processes": "4"}, environ={}).processes == 4


@pytest.mark.parametrize(("raw", "env", "message"), [
    ({"processes": "0"}, {}, "--processes must be a positive integer"),
    ({}, {"TF2BENCH_PROCESS": "4/3"}, "TF2BENCH_PROCESS must be k/N"),
    ({}, {"TF2BENCH_PROCESS": "two"}, "TF2BENCH_PROCESS must be k/N"),
])  # fmt: skip
def test_bad_process_settings_fail_in_one_line(raw, env, message):
    with pytest.raises(BadInputError, match=message):
        parse_options({"workload": "mnist", **raw}, environ=env)


def _info(steps: int, seconds: list[float], **extra) -> dict:
    base = {
        "workload": "mnist", "api": "functional", "loop": "fit", "steps": steps, "samples_per_step": 32,
        "window_s": seconds, "rounds": len(seconds), "rounds_planned": len(seconds), "rounds_reason": None,
        "first_step_s": 2.0, "setup_s": 0.1, "build_s": 0.5, "epoch_s": None, "flops_per_sample": 1e6,
        "gflops_per_sec": 1.0, "peak_gflops": 200.0, "mfu": 0.005, "test_accuracy": 0.5, "calibration": None,
    }  # fmt: skip
    return {**base, **extra}


def test_merged_record_keeps_every_round_and_its_process():
    parts = [
        (2, _info(12, [0.40, 0.42], first_step_s=3.0, test_accuracy=0.7)),
        (1, _info(12, [0.30, 0.31], test_accuracy=0.6)),
        (3, _info(24, [1.0], first_step_s=4.0, rounds_reason="slow")),  # windows twice as long: scaled to 12 steps
    ]
    m = processes.merge_case(parts)
    assert m["window_s"] == pytest.approx([0.30, 0.31, 0.40, 0.42, 0.5])  # process order, the third scaled
    assert m["rounds_process"] == [1, 1, 2, 2, 3]
    assert m["processes"] == [1, 2, 3]
    assert m["rounds"] == 5
    assert m["rounds_planned"] == 5
    assert m["rounds_reason"] == "slow"
    per_sample = [12 * 32 / s for s in m["window_s"]]
    assert m["samples_per_sec"] == pytest.approx(statistics.median(per_sample))
    per_process = [[0.30, 0.31], [0.40, 0.42], [0.5]]  # each process's level: the median of its rounds' throughput
    assert m["process_samples_per_sec"] == pytest.approx([statistics.median(384 / s for s in r) for r in per_process])
    assert m["test_accuracy"] == 0.6  # what process 1 learned
    assert m["first_step_s"] == 3.0  # the median of the processes' compile times
    assert m["gflops_per_sec"] == pytest.approx(1e6 * m["samples_per_sec"] / 1e9)
    assert m["mfu"] == pytest.approx(m["gflops_per_sec"] / 200.0)
    levels = [math.log(v) for v in m["process_samples_per_sec"]]
    assert processes.process_spread(m) == pytest.approx(statistics.stdev(levels))
    assert processes.process_spread(processes.merge_case(parts[:1])) is None


FAKE_WORKER = textwrap.dedent("""
    import json, os, signal, sys, time
    from pathlib import Path
    from tf2bench.suite.processes import append_event, CALIBRATION_FILE, DIR_ENV
    k, n = (int(v) for v in os.environ["TF2BENCH_PROCESS"].split("/"))
    folder = Path(os.environ[DIR_ENV])
    seen = json.loads((folder / CALIBRATION_FILE).read_text())
    print("tf2bench: calibration seen", len(seen), flush=True)
    def case(name, seconds):
        info = {"workload": "mnist", "api": "functional", "loop": name, "steps": 10, "samples_per_step": 32,
                "window_s": seconds, "calibration": {"steps": 10, "by": k}}
        append_event(folder, k, {"event": "case", "case": name, "info": info})
        print(f"[{name}] {name} samples/s", flush=True)
    case("a", [0.1 * k])
    if k == 2 and sys.argv[1] == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if k == 2 and sys.argv[1] == "hang":
        print("[2/2] waiting", flush=True)
        time.sleep(60)
    case("b", [0.2 * k])
    append_event(folder, k, {"event": "failed", "nodeid": "bench/test_x.py::test_x", "case": None, "message": "boom"})
    append_event(folder, k, {"event": "done", "exitstatus": 1, "machine": {"by": k}})
""")


def test_a_killed_worker_loses_only_its_unfinished_benchmarks(tmp_path):
    shown = []
    done = processes.run(
        3, lambda k: [sys.executable, "-c", FAKE_WORKER, "kill"], say=shown.append,
        echo=lambda line: line.startswith("["), folder=tmp_path / "p",
    )  # fmt: skip
    assert [o.status for o in done.outcomes] == ["finished", "failed", "finished"]
    assert done.outcomes[1].reason.startswith("killed by SIGKILL after 1 benchmark(s)")
    assert [p for p, _ in done.records["a"]] == [1, 2, 3]
    assert [p for p, _ in done.records["b"]] == [1, 3]  # process 2 died before it
    assert done.merged("b")["rounds_process"] == [1, 3]
    record = done.record()
    assert record["planned"] == 3
    assert record["finished"] == [1, 3]
    assert record["missing"][0]["process"] == 2
    assert record["missing"][0]["benchmarks"] == 1
    assert record["logs"] == str(tmp_path / "p")
    assert (tmp_path / "p" / "process-2.log").is_file()
    assert done.machine == {"by": 1}
    assert [k for k, _, _ in done.problems["bench/test_x.py::test_x"]] == [1, 3]
    # later workers time the windows the first one calibrated
    logs = [(tmp_path / "p" / f"process-{k}.log").read_text() for k in (1, 2, 3)]
    assert [log.splitlines()[0] for log in logs] == [f"tf2bench: calibration seen {c}" for c in (0, 1, 1)]
    assert done.calibrations() == [["mnist", "functional", {"steps": 10, "by": 1}]]
    assert "p1/3 [a] a samples/s" in shown
    assert "p3/3 [b] b samples/s" in shown
    assert any("process 2 of 3 failed: killed by SIGKILL" in line for line in shown)


def test_an_interrupted_run_stops_its_worker_and_keeps_the_finished_ones(tmp_path):
    def say(line: str) -> None:
        if line.startswith("p2/3 [2/2]"):  # Ctrl-C while worker 2 runs
            raise KeyboardInterrupt

    done = processes.run(
        3, lambda k: [sys.executable, "-c", FAKE_WORKER, "hang"], say=say,
        echo=lambda line: line.startswith("["), folder=tmp_path / "p",
    )  # fmt: skip
    assert done.interrupted
    assert [o.status for o in done.outcomes] == ["finished", "interrupted", "not started"]
    assert done.outcomes[1].returncode != 0  # ended by the SIGINT it was sent, well before its 60 s sleep
    assert [p for p, _ in done.records["a"]] == [1, 2]
    assert [m["process"] for m in done.record()["missing"]] == [2, 3]


def test_nothing_finished_before_an_interrupt_reraises_it(tmp_path):
    def say(line: str) -> None:
        if line.startswith("p1/"):  # Ctrl-C while the first worker runs
            raise KeyboardInterrupt

    script = "import time; print('[1/1] started', flush=True); time.sleep(60)"
    with pytest.raises(KeyboardInterrupt):
        processes.run(2, lambda k: [sys.executable, "-c", script], say=say, echo=lambda line: True, folder=tmp_path)


def test_processes_in_python_need_a_workload_the_workers_can_import():
    from dataclasses import replace

    import tf2bench
    from tf2bench.workloads import get_workload

    own = replace(get_workload("mnist"), name="mine")
    with pytest.raises(BadInputError, match="as 'package.module:attribute'"):
        tf2bench.benchmark(own, processes=2)


@pytest.mark.slow
def test_two_processes_save_one_run_with_each_round_tagged(tmp_path, run_bench):
    storage = tmp_path / "benchmarks"
    result = run_bench(
        "-p", "fault_plugin", "--preset", "smoke", "--workload", "mnist", "--api", "functional",
        "--loop", "fit,fault_nan,tf_function", "--rounds", "4", "--processes", "2", "--benchmark-autosave",
        f"--benchmark-storage=file://{storage}", env={"PYTHONPATH": str(Path(__file__).parent)},
    )  # fmt: skip
    out = result.stdout + result.stderr
    assert result.returncode == 1, out[-3000:]  # the loop that diverges from step 3 on fails, in both processes
    assert "loss became nan within steps 3..4" in out
    assert "2 passed, 1 failed" in out or "1 failed, 2 passed" in out
    (saved,) = storage.glob("*/*.json")  # one ordinary run, the survivors in it
    doc = json.loads(saved.read_text())
    assert [b["extra_info"]["loop"] for b in doc["benchmarks"]] == ["fit", "tf_function"]
    for bench in doc["benchmarks"]:
        info = bench["extra_info"]
        assert info["processes"] == [1, 2]
        assert info["rounds_process"] == [1, 1, 2, 2]  # 4 rounds: two in each process
        assert bench["stats"]["data"] == pytest.approx(info["window_s"])  # pytest-benchmark recorded the merged rounds
        assert bench["stats"]["rounds"] == 4
    assert doc["tf2bench"]["processes"]["finished"] == [1, 2]  # a failing test does not make a process missing
    assert doc["tf2bench"]["processes"]["missing"] == []
    assert doc["machine_info"]["tf2bench"]["peaks"]["float32"]["gflops"] > 0  # measured by the workers
    assert "p1/2 [" in out  # the workers' progress, shown by the parent
    assert "p2/2 [" in out
    assert "2 worker processes, one after another" in out
    assert "over 4 rounds of 2 processes, between them" in out
    # the harness overhead, a cost of the harness and not of a process, is measured once: in worker 1
    assert doc["tf2bench"]["harness_overhead"]["process"] == 1
    assert "; measured in worker process 1 of 2: harness" in out
    assert (
        "run in the worker processes only: bench/test_overhead.py::test_harness_overhead (skipped in process 2: the "
        "harness overhead is measured once per run, in worker process 1 of 2)"
    ) in out


@pytest.mark.slow
def test_benchmark_in_python_with_processes(tmp_path):
    import tf2bench

    df = tf2bench.benchmark(
        "mnist", "fit", apis="functional", preset="smoke", processes=2, save=tmp_path / "b", dataset="embedded"
    )
    assert list(df["loop"]) == ["fit"]
    assert df["error"].isna().all()
    doc = json.loads(Path(df.attrs["path"]).read_text())
    assert doc["benchmarks"][0]["extra_info"]["rounds_process"] == [1, 2]
    assert doc["tf2bench"]["processes"]["finished"] == [1, 2]
