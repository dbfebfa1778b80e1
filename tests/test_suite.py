"""The suite as a user runs it: `pytest bench ...` in a subprocess, real JSON, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tf2bench.errors import BadInputError, UnknownNameError
from tf2bench.suite.options import parse_options
from tf2bench.suite.plan import Planner

EXTRA_INFO_KEYS = {
    "workload", "api", "loop", "dataset", "batch_size", "epochs", "steps", "seed", "samples_per_sec",
    "step_time_ms", "step_time_ms_p90", "first_step_s", "setup_s", "epoch_s", "repeat", "test_accuracy",
    "test_loss", "device", "tf_version", "keras_version", "flops_per_sample", "cv", "window_s", "gflops_per_sec",
    "mfu", "peak_gflops",
}  # fmt: skip


N_DEFAULT = 60  # 2 workloads x 3 APIs x 10 loops: the default selection


def saved_runs(storage: Path) -> list[Path]:
    return sorted(storage.glob("*/*.json"))


@pytest.mark.slow
def test_smoke_run_saves_every_case_and_never_overwrites(tmp_path, run_bench):
    storage = tmp_path / "benchmarks"
    first = run_bench("--preset", "smoke", "--benchmark-autosave", f"--benchmark-storage=file://{storage}")
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    runs = saved_runs(storage)
    assert len(runs) == 1
    assert runs[0].name.startswith("0001_")
    doc = json.loads(runs[0].read_text())
    assert len(doc["benchmarks"]) == N_DEFAULT  # 2 workloads x 3 APIs x 10 loops
    for bench in doc["benchmarks"]:
        missing = EXTRA_INFO_KEYS - set(bench["extra_info"])
        assert not missing, (bench["name"], missing)
        assert bench["stats"]["rounds"] == 2
        assert len(bench["stats"]["data"]) == 2
        # pytest-benchmark's rounds are exactly the windows the loop timed itself
        assert bench["stats"]["data"] == pytest.approx(bench["extra_info"]["window_s"])
    assert doc["machine_info"]["tf2bench"]["tf_version"]
    machine = doc["machine_info"]["tf2bench"]  # what the figures depend on besides the code
    assert {"isa", "cpu_vendor", "onednn_opts", "xla_flags", "tf32", "intra_op_threads", "memory_bytes"} <= set(machine)
    assert machine["memory_bytes"] > 2**30  # the host's RAM, shown in the report's header
    assert machine["onednn_opts"] in ("on (default)", "on", "off")
    assert doc["machine_info"]["tf2bench"]["peak_matmul"]["gflops"] > 0  # the MFU denominator, measured
    peaks = doc["machine_info"]["tf2bench"]["peaks"]  # every precision measured, by dtype
    assert peaks["float32"] == doc["machine_info"]["tf2bench"]["peak_matmul"]  # kept for older readers
    for bench in doc["benchmarks"]:  # each against its compute dtype's peak, measured once per run
        info = bench["extra_info"]
        assert info["peak_gflops"] == peaks[info["compute_dtype"]]["gflops"]
        assert info["peak_dtype"] == peaks[info["compute_dtype"]]["precision"]
    assert {b["options"]["timer"] for b in doc["benchmarks"]} == {"bench_clock"}  # the windows' own clock
    assert doc["tf2bench"]["preset"] == "smoke"
    assert doc["tf2bench"]["wall_s"] > 0
    # one progress line per case, then the summary
    assert first.stdout.count("samples/s") >= N_DEFAULT
    assert "steady-state throughput" in first.stdout
    assert "wall time:" in first.stdout
    before = runs[0].read_bytes()

    second = run_bench(
        "--preset", "smoke", "--workload", "cifar100", "--api", "functional", "--loop", "fit,tf_data",
        "--repeat", "2", "--benchmark-autosave", f"--benchmark-storage=file://{storage}",
    )  # fmt: skip
    assert second.returncode == 0, second.stdout[-3000:]
    runs = saved_runs(storage)
    assert [p.name[:4] for p in runs] == ["0001", "0002"]
    assert runs[0].read_bytes() == before  # the earlier run is untouched
    names = [b["name"] for b in json.loads(runs[1].read_text())["benchmarks"]]
    # --repeat interleaves the whole selection: A B A B
    assert [n.split("-")[-1].rstrip("]") for n in names] == ["fit", "tf_data", "fit", "tf_data"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workload", "imagenet"], "unknown workload 'imagenet'; valid: cifar100, mnist"),
        (["--api", "keras"], "unknown api 'keras'; valid: functional, sequential, subclassing"),
        (["--loop", "fastest"], "unknown loop 'fastest'; valid: "),
        (["--loop", ","], "unknown loop ','; valid: "),
        (["--dataset", "imagenet"], "unknown dataset 'imagenet'; valid: auto, keras, embedded, synthetic"),
        (["--preset", "fast"], "unknown preset 'fast'; valid: quick, rigorous, smoke, tutorial"),
        (["--batch-size", "0"], "--batch-size must be a positive integer, got '0'"),
        (["--steps", "ten"], "--steps must be a positive integer, got 'ten'"),
        (["--epochs", "-1"], "--epochs must be a positive integer, got '-1'"),
        (["--repeat", "2.5"], "--repeat must be a positive integer, got '2.5'"),
        (["--seed", "x"], "--seed must be a non-negative integer, got 'x'"),
        (["--scaling", "linear"], "unknown scaling 'linear'; valid: strong, weak"),
        (
            ["--loop", "mirrored", "--devices", "2", "--batch-size", "33"],
            "--batch-size 33 does not split evenly over 2 replicas (strong scaling cuts the global batch into equal "
            "per-replica batches): use a multiple of 2 (32 or 34), or --scaling weak for 33 per replica",
        ),
    ],
)
def test_bad_options_fail_at_once_naming_the_choices(args, message, tmp_path, run_bench):
    result = run_bench(*args, f"--benchmark-storage=file://{tmp_path}", timeout=120)
    assert result.returncode == 4  # pytest's usage error: nothing ran
    assert message in result.stderr
    assert not list(tmp_path.iterdir())  # nothing written


def test_environment_variables_set_options(monkeypatch):
    monkeypatch.setenv("TF2BENCH_LOOP", "fit,eager")
    monkeypatch.setenv("TF2BENCH_REPEAT", "2")
    opts = parse_options({"workload": "mnist", "api": None})
    assert opts.loops == ("fit", "eager")
    assert opts.repeat == 2
    assert len(Planner(opts).cases()) == 2 * 3 * 2
    monkeypatch.setenv("TF2BENCH_STEPS", "0")
    with pytest.raises(BadInputError, match="--steps must be a positive integer"):
        parse_options({})


def test_flags_override_environment(monkeypatch):
    monkeypatch.setenv("TF2BENCH_WORKLOAD", "nope")
    assert parse_options({"workload": "cifar100"}).workloads == ("cifar100",)
    with pytest.raises(UnknownNameError):
        parse_options({})


def plan(raw: dict) -> Planner:
    return Planner(parse_options(raw))


def test_presets_shape_the_run():
    quick = plan({})
    assert len(quick.cases()) == N_DEFAULT
    cfg = quick.run_config("cifar100", seed=0)
    assert (cfg.steps, cfg.rounds, cfg.batch_size, cfg.epochs, cfg.warmup_steps) == (15, 5, 32, None, 1)
    assert quick.sizes("cifar100") == (5000, 1000)
    tutorial = plan({"preset": "tutorial"})
    cfg = tutorial.run_config("mnist", seed=0)
    assert cfg.epochs == 5
    assert tutorial.sizes("mnist") == (None, None)
    cfg = plan({"steps": "7", "rounds": "4", "warmup_steps": "2", "train_size": "300"}).run_config("mnist", 0)
    assert (cfg.steps, cfg.rounds, cfg.warmup_steps) == (7, 4, 2)
    assert plan({"train_size": "300"}).sizes("mnist") == (300, 1000)


def test_scaling_is_strong_unless_asked_and_reaches_the_run_config(monkeypatch):
    assert plan({}).run_config("cifar100", 0).scaling == "strong"
    monkeypatch.setenv("TF2BENCH_SCALING", "weak")
    assert plan({}).run_config("cifar100", 0).scaling == "weak"
    assert parse_options({"scaling": "strong"}).scaling == "strong"  # the flag wins over the environment
    # weak scaling multiplies the batch: any batch size goes; strong must split it, checked only for distributed loops
    assert parse_options({"loop": "mirrored", "devices": "2", "batch_size": "33"}).batch_size == 33
    monkeypatch.delenv("TF2BENCH_SCALING")
    assert parse_options({"loop": "fit", "devices": "2", "batch_size": "33"}).batch_size == 33
    with pytest.raises(BadInputError, match=r"--batch-size 32 does not split evenly over 3 replicas"):
        parse_options({"loop": "fit,fit_mirrored", "devices": "3"})  # the workload's batch, 32
    with pytest.raises(BadInputError, match=r"^unknown scaling 'Strong'; valid: strong, weak$"):
        parse_options({"scaling": "Strong"})


@pytest.mark.parametrize(
    ("position", "total", "elapsed", "expected"),
    [(23, 60, 115.0, "[23/60, ~3 min left]"), (1, 10, 5.0, "[1/10, ~45 s left]"), (60, 60, 300.0, "[60/60]")],
)
def test_progress_says_where_the_run_is_and_the_time_left(position, total, elapsed, expected):
    from tf2bench.plugin.summary import progress

    assert progress(position, total, elapsed) == expected
