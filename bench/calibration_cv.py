"""Fixed short windows against calibrated ones, on a model whose compiled step takes ~1 ms: how much the CV drops.

    python bench/calibration_cv.py [--rounds 15] [--fixed-steps 6] [--min-window 0.2]

What a GPU does to the quick preset's fixed 6/15-step windows, shown on a CPU: a small MLP (64 -> 256 -> 256 -> 10,
batch 32; ~1 ms a step compiled on 2 Zen 4 cores) declared as a ``tf2bench.Workload``. In one process, each compiled
loop trains two copies of the model: one timed in fixed windows of ``--fixed-steps`` steps, one in windows calibrated
as the quick preset does (``suite.calibration.calibrate_case``: >= ``--min-window`` s on the reference loop). Both
copies train the same untimed steps first (tf2bench.suite.runner.SETTLE_TO), then their windows alternate, fixed and
calibrated of every loop in turn, for ``--rounds`` rounds, so drift hits both alike. The table gives each side's
median window and throughput and the CV of its per-round throughput (stdev / mean). Not a test: it times things.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import time

import numpy as np

import tf2bench  # imports no TensorFlow: the log level below is set before it loads

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LOOPS = ("fit", "tf_function", "tf_data", "graph_loop")
MAX_STEPS = 2000


def build_mlp():
    import keras

    hidden = [keras.layers.Dense(256, activation="relu") for _ in range(2)]
    return keras.Sequential([keras.Input((64,)), *hidden, keras.layers.Dense(10, activation="softmax")], name="mlp_1ms")


def blobs():
    """Ten Gaussian clusters in 64 dimensions, 8,192 / 1,024 samples: learnable, deterministic, no download."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=9216)
    x = (rng.normal(size=(10, 64))[y] + rng.normal(scale=2.0, size=(9216, 64))).astype("float32")
    return (x[:8192], y[:8192]), (x[8192:], y[8192:])


MLP = tf2bench.Workload(name="mlp_1ms", model=build_mlp, data=blobs, loss="sparse_categorical_crossentropy")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def throughput(run) -> list[float]:
    return [run.steps_per_window * run.loop.samples_per_step / w.seconds for w in run.windows]


def cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.fmean(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--fixed-steps", type=int, default=6)
    parser.add_argument("--min-window", type=float, default=0.2)
    args = parser.parse_args()

    from tf2bench.loops import RunConfig
    from tf2bench.measure import envinfo
    from tf2bench.suite.calibration import calibrate_case
    from tf2bench.suite.runner import SETTLE_TO, BenchmarkRun, WindowSizing
    from tf2bench.workloads import data

    started = time.perf_counter()
    dataset = data.load(MLP)
    api = MLP.apis[0]
    fixed_cfg = RunConfig(steps=args.fixed_steps, rounds=args.rounds, warmup_steps=1)
    cal = calibrate_case(MLP, api, dataset, fixed_cfg, args.min_window, MAX_STEPS)
    if "error" in cal:
        raise SystemExit(f"calibration failed: {cal['error']}")
    cal_cfg = RunConfig(steps=cal["steps"], rounds=args.rounds, warmup_steps=1)
    # both sides train warm-up + the same untimed steps before their first window (SETTLE_TO)
    fixed_untimed = RunConfig(steps=args.fixed_steps, rounds=args.rounds, warmup_steps=SETTLE_TO)
    runs = {}
    for loop in LOOPS:
        runs[loop, "fixed"] = BenchmarkRun(MLP, api, loop, dataset, fixed_untimed, WindowSizing(source="option"))
        runs[loop, "calibrated"] = BenchmarkRun(MLP, api, loop, dataset, cal_cfg, WindowSizing("calibrated", cal))
    for run in runs.values():
        run.warmup()
    for _ in range(args.rounds):  # interleaved: fixed and calibrated of every loop, round after round
        for run in runs.values():
            run.window()

    versions = envinfo.versions()
    print(
        f"{dt.date.today().isoformat()}, {cpu_model()}, {os.cpu_count()} CPUs, TensorFlow {versions['tf_version']}, "
        f"Keras {versions['keras_version']}"
    )
    print(
        f"workload {MLP.name}: 64-256-256-10 MLP, batch 32; calibration on {cal['reference_loop']}: "
        f"{1000 * cal['step_s']:.3f} ms/step -> {cal['steps']} steps for windows >= {args.min_window:g} s "
        f"(floor {args.fixed_steps}, cap {MAX_STEPS}); {args.rounds} interleaved rounds each side"
    )
    print()
    print("| loop | fixed: steps | window ms | samples/s | CV | calibrated: steps | window ms | samples/s | CV |")
    print("|---|---|---|---|---|---|---|---|---|")
    for loop in LOOPS:
        cells = [f"`{loop}`"]
        for side in ("fixed", "calibrated"):
            run = runs[loop, side]
            tput = throughput(run)
            window_ms = 1000 * statistics.median(w.seconds for w in run.windows)
            cells += [
                str(run.steps_per_window),
                f"{window_ms:.1f}",
                f"{statistics.median(tput):,.0f}",
                f"{100 * cv(tput):.1f}%",
            ]
        print("| " + " | ".join(cells) + " |")
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
