"""Each loop's throughput with asynchronous vs synchronous eager execution, measured side by side in one process.

    python bench/async_vs_sync.py [--workload mnist] [--api sequential] [--loops fit,tf_function,...] [--rounds 21]

A GPU returns from an op before it has run; ``tf.config.experimental.set_synchronous_execution(False)`` makes this
CPU do the same. Every loop's window ends on ``tf.test.experimental.sync_devices()``, so its work is paid inside the
window either way (tests/loops/test_async.py plants a slow op to show it) and the throughput should not move: if a
window stopped its clock early, async would read faster. Here each loop trains two copies of the model (same seed,
same batches): one whose windows run with asynchronous execution, one with synchronous; the mode is switched at
run time around each window. Windows as the quick preset sizes them (calibrated, via the suite's own window plan);
warm-up and settle steps run in each copy's own mode. Rounds interleave the two copies of every loop, in turn
A S / S A, so drift hits both alike. Per loop: each side's median throughput and CV, the median of the per-round
async/sync ratios with their quartiles, and a 95% interval of the mean log-ratio (t over the rounds). Not a test:
it times things.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LOOPS = "fit,tf_function,tf_data,graph_loop,xla"
MODES = ("async", "sync")


def set_mode(mode: str) -> None:
    import tensorflow as tf

    tf.config.experimental.set_synchronous_execution(mode == "sync")  # waits for the queue before switching
    if tf.config.experimental.get_synchronous_execution() != (mode == "sync"):
        raise SystemExit(f"could not switch to {mode} execution")


def async_is_real() -> tuple[float, float]:
    """(seconds until a call returned, seconds until its work was done) for a chain of matmuls under async: a call
    that returns long before its work shows that the mode really defers work on this device."""
    import tensorflow as tf

    from tf2bench.measure.timing import sync_devices

    @tf.function
    def chain(a):
        for _ in range(20):
            a = tf.tanh(tf.matmul(a, a))
        return a

    a = tf.random.normal((1024, 1024))
    chain(a)  # traced synchronously
    sync_devices()
    set_mode("async")
    try:
        t0 = time.perf_counter()
        chain(a)
        returned = time.perf_counter() - t0
        sync_devices()
        done = time.perf_counter() - t0
    finally:
        set_mode("sync")
    return returned, done


def mean_ratio_interval(ratios: list[float]) -> tuple[float, float]:
    """95% interval of the geometric mean of paired ratios (t on the log-ratios)."""
    from scipy import stats

    logs = [math.log(r) for r in ratios]
    half = stats.t.ppf(0.975, len(logs) - 1) * statistics.stdev(logs) / math.sqrt(len(logs))
    centre = statistics.fmean(logs)
    return math.exp(centre - half), math.exp(centre + half)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="mnist")
    parser.add_argument("--api", default="sequential")
    parser.add_argument("--loops", default=LOOPS, help=f"comma-separated (default {LOOPS})")
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--dataset", default="auto", help="auto (as the suite), keras, embedded or synthetic")
    args = parser.parse_args()

    from tf2bench.measure import envinfo
    from tf2bench.suite.options import parse_options
    from tf2bench.suite.plan import Planner
    from tf2bench.suite.runner import BenchmarkRun
    from tf2bench.workloads import get_workload

    started = time.perf_counter()
    raw = {"workload": args.workload, "api": args.api, "loop": args.loops, "preset": args.preset}
    opts = parse_options({**raw, "rounds": args.rounds, "seed": "0", "dataset": args.dataset}, environ={})
    planner = Planner(opts)
    workload = get_workload(args.workload)
    dataset = planner.dataset(args.workload)
    returned, done = async_is_real()
    runs: dict[tuple[str, str], BenchmarkRun] = {}
    for case in planner.cases():
        config, sizing = planner.windows(case.workload, case.api, case.seed)
        for mode in MODES:
            set_mode(mode)
            try:
                runs[case.loop, mode] = run = BenchmarkRun(workload, case.api, case.loop, dataset, config, sizing)
                run.warmup()
            finally:
                set_mode("sync")
    loops = list(dict.fromkeys(loop for loop, _ in runs))
    for r in range(args.rounds):  # A S, then S A: a trend within a round favours neither side
        for loop in loops:
            for mode in MODES if r % 2 == 0 else MODES[::-1]:
                set_mode(mode)
                try:
                    runs[loop, mode].window()
                finally:
                    set_mode("sync")

    versions = envinfo.versions()
    print(
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {envinfo.cpu_name()}, {os.cpu_count()} CPUs, "
        f"TensorFlow {versions['tf_version']}, Keras {versions['keras_version']}, load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )
    print(
        f"{args.workload} {args.api}, preset {args.preset} windows, {args.rounds} interleaved rounds a side; "
        f"async check: a 20-matmul call returned after {1000 * returned:.1f} ms, its work took {1000 * done:.0f} ms"
    )
    print()
    print("| loop | steps | sync samples/s | CV | async samples/s | CV | async/sync: median [quartiles] | 95% CI |")
    print("|---|---|---|---|---|---|---|---|")
    for loop in loops:
        tput = {m: [runs[loop, m].steps_per_window * runs[loop, m].loop.samples_per_step / w.seconds
                    for w in runs[loop, m].windows] for m in MODES}  # fmt: skip
        ratios = [a / s for a, s in zip(tput["async"], tput["sync"], strict=True)]
        q1, _, q3 = statistics.quantiles(ratios, n=4)
        lo, hi = mean_ratio_interval(ratios)
        cells = [f"`{loop}`", str(runs[loop, "sync"].steps_per_window)]
        for m in ("sync", "async"):
            cells += [
                f"{statistics.median(tput[m]):,.0f}",
                f"{100 * statistics.stdev(tput[m]) / statistics.fmean(tput[m]):.1f}%",
            ]
        cells += [f"{statistics.median(ratios):.3f} [{q1:.3f}-{q3:.3f}]", f"{lo:.3f}-{hi:.3f}"]
        print("| " + " | ".join(cells) + " |")
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
