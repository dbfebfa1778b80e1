"""The suite's option table: names, environment variables, help. Imports nothing heavy (no TensorFlow, no loops or
workloads): the pytest plugin reads it when any pytest run starts. The values are parsed and checked by
tf2bench.suite.options.parse_options; ``tf2bench.benchmark`` takes the same names as arguments.
"""

from __future__ import annotations

DEFAULT_PROFILE_STEPS = 5

# option name -> (environment variable, help)
OPTIONS: dict[str, tuple[str, str]] = {
    "workload": ("TF2BENCH_WORKLOAD", "workloads, comma-separated, or package.module:attribute specs (default: all)"),
    "api": ("TF2BENCH_API", "model APIs: sequential, functional, subclassing (default: all)"),
    "loop": ("TF2BENCH_LOOP", "training loops, comma-separated (default: all)"),
    "dataset": ("TF2BENCH_DATASET", "data source: auto, keras, embedded, synthetic (default: auto)"),
    "preset": ("TF2BENCH_PRESET", "quick (default), smoke, rigorous, tutorial"),
    "epochs": ("TF2BENCH_EPOCHS", "time whole epochs, this many (overrides --steps/--rounds)"),
    "steps": ("TF2BENCH_STEPS", "steps per timed window (default: from the preset)"),
    "rounds": ("TF2BENCH_ROUNDS", "timed windows per benchmark (default: from the preset)"),
    "warmup_steps": ("TF2BENCH_WARMUP_STEPS", "untimed steps before the timed windows (default: from the preset)"),
    "batch_size": ("TF2BENCH_BATCH_SIZE", "batch size (default: the workload's, 32)"),
    "seed": ("TF2BENCH_SEED", "first seed (default 0)"),
    "seeds": ("TF2BENCH_SEEDS", "number of seeds per case, seed, seed+1, ... (default 1)"),
    "repeat": ("TF2BENCH_REPEAT", "run the whole selection N times in turn, A B C A B C (default 1)"),
    "train_size": ("TF2BENCH_TRAIN_SIZE", "training samples to use (default: from the preset)"),
    "test_size": ("TF2BENCH_TEST_SIZE", "test samples to evaluate (default: from the preset)"),
    "profile": ("TF2BENCH_PROFILE", "capture a profiler trace of an untimed window after the timed rounds"),
    "profile_steps": ("TF2BENCH_PROFILE_STEPS", f"steps in the profiled window (default {DEFAULT_PROFILE_STEPS})"),
    "trace_dir": ("TF2BENCH_TRACE_DIR", "where --profile writes traces: <dir>/<run-id>/... (default results/traces)"),
    "devices": ("TF2BENCH_DEVICES", "replica devices for the distributed loops: N GPUs, or N logical CPU devices"),
    "mixed_precision": (
        "TF2BENCH_MIXED_PRECISION",
        "the mixed loops' half precision: auto (default: float16 + loss scaling on a GPU, bfloat16 on a CPU), "
        "float16 or bfloat16",
    ),
    "scaling": (
        "TF2BENCH_SCALING",
        "distributed loops: strong (default; --batch-size is the global batch, split over the replicas) "
        "or weak (--batch-size per replica)",
    ),
    "processes": (
        "TF2BENCH_PROCESSES",
        "run the selection in N fresh worker processes, one after another, each timing a share of every benchmark's "
        "rounds; saved as one run whose rounds keep their process (default 1: in this process)",
    ),
}
FLAGS = frozenset({"profile"})  # options that take no value
# Old spellings still accepted where users type them (flag and environment variable), with a DeprecationWarning.
DEPRECATED: dict[str, tuple[str, str]] = {"variant": ("loop", "TF2BENCH_VARIANT")}
PROCESS_ENV = (
    "TF2BENCH_PROCESS"  # "k/N": this process is worker k of N (set by tf2bench.suite.processes, never by hand)
)
