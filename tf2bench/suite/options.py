"""Suite options (from pytest flags or environment variables) and the list of cases.

Validation happens here, once, before any TensorFlow work: a bad name or number
fails the whole run at once with a message naming the valid choices.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from tf2bench.errors import BadInputError, check_positive_int
from tf2bench.loops import LOOPS, RunConfig
from tf2bench.loops.distributed import is_distributed, split_batch
from tf2bench.registry import parse_names
from tf2bench.suite.presets import Preset, get_preset
from tf2bench.workloads import WORKLOADS, get_workload, load_spec
from tf2bench.workloads.data import SOURCES

DEFAULT_PROFILE_STEPS = 5

# option name -> (environment variable, help)
OPTIONS: dict[str, tuple[str, str]] = {
    "workload": ("TF2BENCH_WORKLOAD", "workloads, comma-separated, or package.module:attribute specs (default: all)"),
    "api": ("TF2BENCH_API", "model APIs: sequential, functional, subclassing (default: all)"),
    "loop": ("TF2BENCH_LOOP", "training loops, comma-separated (default: all)"),
    "dataset": ("TF2BENCH_DATASET", f"data source: {', '.join(SOURCES)} (default: auto)"),
    "preset": ("TF2BENCH_PRESET", "quick (default), smoke, rigorous, tutorial"),
    "epochs": ("TF2BENCH_EPOCHS", "time whole epochs, this many (overrides --steps/--rounds)"),
    "steps": ("TF2BENCH_STEPS", "steps per timed window (default: from the preset)"),
    "rounds": ("TF2BENCH_ROUNDS", "timed windows per benchmark (default: from the preset)"),
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


def round_share(total: int, process: int, processes: int) -> int:
    """The rounds worker ``process`` (1..processes) times of a benchmark's ``total``: spread evenly, the first
    processes taking the remainder, at least one each (a process that timed nothing would tell nothing of its level).
    ``process`` 0 is not a worker: all of them."""
    if process == 0 or processes <= 1:
        return total
    return max(1, total // processes + (process <= total % processes))


@dataclass(frozen=True)
class Case:
    """One benchmark: what pytest parametrizes over."""

    repeat: int
    seed: int
    workload: str
    api: str
    loop: str

    @property
    def id(self) -> str:
        return f"r{self.repeat}-s{self.seed}-{self.workload}-{self.api}-{self.loop}"


@dataclass(frozen=True)
class SuiteOptions:
    workloads: tuple[str, ...]
    apis: tuple[str, ...]
    loops: tuple[str, ...]
    dataset: str
    preset: Preset
    steps: int | None
    rounds: int | None
    epochs: int | None
    batch_size: int | None
    seed: int
    seeds: int
    repeat: int
    train_size: int | None
    test_size: int | None
    profile: bool = False
    profile_steps: int = DEFAULT_PROFILE_STEPS
    trace_dir: str | None = None  # None: results/traces
    devices: int | None = None  # None: every GPU, or one CPU device (see tf2bench.distribute)
    scaling: str = "strong"  # the distributed loops' batch: global, split over replicas (strong), or per replica
    mixed_precision: str = "auto"  # RunConfig.MIXED_PRECISIONS
    processes: int = 1  # worker processes the selection runs in (tf2bench.suite.processes); 1: this process
    process: int = 0  # 1..processes: this is that worker (PROCESS_ENV), timing its share of the rounds; 0: not a worker

    def share(self, total: int) -> int:
        """This process's share of ``total`` rounds (all of them outside a worker)."""
        return round_share(total, self.process, self.processes)

    def cases(self) -> list[Case]:
        """Repeat-major order, so every loop sees the same machine drift."""
        out = []
        for r in range(self.repeat):
            for s in range(self.seed, self.seed + self.seeds):
                for w in self.workloads:
                    apis = [a for a in self.apis if a in get_workload(w).models]
                    for a in apis:
                        for v in self.loops:
                            out.append(Case(r, s, w, a, v))
        return out

    def run_config(self, workload: str, seed: int) -> RunConfig:
        wl = get_workload(workload)
        epochs = self.epochs if self.epochs is not None else self.preset.epochs
        epochs = self.share(epochs) if epochs else epochs  # a worker process times its share of the windows
        return RunConfig(
            batch_size=self.batch_size or wl.batch_size,
            steps=self.steps or self.preset.steps_for(workload),
            rounds=epochs or self.share(self.rounds or self.preset.rounds),
            warmup_steps=self.preset.warmup_steps,
            seed=seed,
            epochs=epochs,
            profile_steps=self.profile_steps if self.profile else 0,
            scaling=self.scaling,
            mixed_precision=self.mixed_precision,
        )

    def window_plan(
        self, workload: str, api: str, seed: int, dataset: Any, cache: dict, say: Any = None
    ) -> tuple[RunConfig, Any]:
        """One benchmark's RunConfig and window sizing (tf2bench.suite.runner.Windows).

        A preset with ``min_window_s`` calibrates the steps once per workload and API, at its first benchmark, into
        ``cache``: every loop, seed and repeat then times the same steps (the weight tier compares loops after the
        same steps; repeats repeat the same measurement). ``--steps`` or ``--epochs`` fix the windows instead, and
        ``--rounds`` turns off the round budget. ``say(line)``, if given, announces each calibration.
        """
        from tf2bench.suite.calibration import calibrate_case
        from tf2bench.suite.runner import Windows

        config, p = self.run_config(workload, seed), self.preset
        if config.epochs or self.steps or p.min_window_s is None:
            return config, Windows(source="epochs" if config.epochs else "option" if self.steps else "preset")
        if (workload, api) not in cache:
            cal = calibrate_case(
                get_workload(workload), api, dataset, config, p.min_window_s, p.max_steps, p.max_window_bytes
            )
            budget = None if self.rounds else p.round_budget_s
            cache[workload, api] = {**cal, "round_budget_s": budget, "min_rounds": p.min_rounds}
            if say is not None:
                say(calibration_line(workload, api, cache[workload, api]))
        cal = cache[workload, api]
        if "error" in cal:  # no reference loop runs this model: the preset's steps, and why
            return config, Windows(source="preset", calibration=cal)
        # a worker process's share of the budget and of the minimum rounds (the cache keeps the whole run's: workers
        # after the first get it from tf2bench.suite.processes and time the same windows, calibrated once)
        budget = cal["round_budget_s"]
        if budget is not None and self.process:
            budget /= self.processes
        windows = Windows("calibrated", cal, budget, self.share(cal["min_rounds"]))
        return replace(config, steps=cal["steps"]), windows

    def record(self, wall_s: float, harness_overhead: dict[str, Any] | None = None) -> dict[str, Any]:
        """The run-level ``tf2bench`` record saved beside the benchmarks (report and compare read it)."""
        return {
            "preset": self.preset.name,
            "dataset": self.dataset,
            "repeat": self.repeat,
            "seeds": self.seeds,
            "mixed_precision": self.mixed_precision,
            "wall_s": wall_s,
            "harness_overhead": harness_overhead,
        }

    def sizes(self, workload: str) -> tuple[int | None, int | None]:
        train = self.train_size or self.preset.train_size.get(workload)
        test = self.test_size or self.preset.test_size.get(workload)
        return train, test


def calibration_line(workload: str, api: str, cal: dict[str, Any]) -> str:
    """What the progress output says about a case's calibration."""
    if "error" in cal:
        return f"tf2bench: {workload} {api}: windows not calibrated, {cal['floor_steps']} steps ({cal['error']})"
    line = (
        f"tf2bench: {workload} {api}: windows of {cal['steps']} steps ({cal['reference_loop']} "
        f"{1000 * cal['step_s']:.2f} ms/step; >= {cal['min_window_s']:g} s, floor {cal['floor_steps']}, "
        f"cap {cal['max_steps']}{' by ' + cal['cap_by'] if cal.get('cap_by') else ''})"
    )
    return f"{line}: {cal['cap_note']}" if cal.get("cap_note") else line


def _optional_int(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    return check_positive_int(f"--{name.replace('_', '-')}", value)


def _flag(name: str, value: Any) -> bool:
    if value is None or value is False or value == "":
        return False
    if value is True:
        return True
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise BadInputError(f"{OPTIONS[name][0]} must be 1/0, true/false, yes/no or on/off, got {value!r}")


def _worker_role(value: str) -> tuple[int, int]:
    try:
        k, n = (int(v) for v in value.split("/"))
    except ValueError:
        k = n = 0
    if not 1 <= k <= n:
        raise BadInputError(
            f"{PROCESS_ENV} must be k/N with 1 <= k <= N (set by tf2bench.suite.processes), got {value!r}"
        )
    return k, n


def workload_names(value: str) -> str:
    """Registered names stay; ``package.module:attribute`` specs are imported, registered and named."""
    return ",".join(load_spec(t.strip()).name if ":" in t else t for t in str(value).split(","))


def parse_options(raw: dict[str, Any], environ: Mapping[str, str] | None = None) -> SuiteOptions:
    """Build options from ``raw`` (flag values; None = not given), falling back to ``environ`` (os.environ)."""
    env = os.environ if environ is None else environ

    def get(name: str) -> Any:
        value = raw.get(name)
        if value is None:
            value = env.get(OPTIONS[name][0]) or None
        return value

    raw = dict(raw)
    for old, (new, old_env) in DEPRECATED.items():
        value = raw.get(old) if raw.get(old) is not None else env.get(old_env) or None
        if value is not None:
            warnings.warn(
                f"--{old} ({old_env}) is now --{new} ({OPTIONS[new][0]}); the old spelling will go",
                DeprecationWarning,
                stacklevel=2,
            )
            if get(new) is None:
                raw[new] = value

    workloads = parse_names("workload", workload_names(get("workload") or "all"), WORKLOADS.names())
    all_apis = list(dict.fromkeys(a for w in workloads for a in get_workload(w).apis))
    apis = parse_names("api", get("api") or "all", all_apis)
    loops = parse_names("loop", get("loop") or "all", LOOPS.names())
    if str(get("loop") or "all").strip() == "all":  # opt-in loops (the distributed ones) run only when named
        loops = [v for v in loops if not LOOPS.get(v).opt_in]
    dataset = get("dataset") or "auto"
    if dataset not in SOURCES:
        raise BadInputError(f"unknown dataset {dataset!r}; valid: {', '.join(SOURCES)}")
    seed_raw = get("seed")
    if seed_raw is None:
        seed = 0
    else:
        try:
            seed = int(str(seed_raw))
        except ValueError:
            seed = -1
        if seed < 0:
            raise BadInputError(f"--seed must be a non-negative integer, got {seed_raw!r}")
    scaling = str(get("scaling") or "strong").strip()
    if scaling not in RunConfig.SCALINGS:
        raise BadInputError(f"unknown scaling {scaling!r}; valid: {', '.join(RunConfig.SCALINGS)}")
    mixed_precision = str(get("mixed_precision") or "auto").strip()
    if mixed_precision not in RunConfig.MIXED_PRECISIONS:
        raise BadInputError(
            f"unknown mixed precision {mixed_precision!r}; valid: {', '.join(RunConfig.MIXED_PRECISIONS)}"
        )
    processes, process = _optional_int("processes", get("processes")) or 1, 0
    if env.get(PROCESS_ENV):  # a worker of tf2bench.suite.processes: never spawns workers of its own
        process, processes = _worker_role(env[PROCESS_ENV])
    opts = SuiteOptions(
        workloads=tuple(workloads),
        apis=tuple(apis),
        loops=tuple(loops),
        dataset=dataset,
        preset=get_preset(get("preset") or "quick"),
        steps=_optional_int("steps", get("steps")),
        rounds=_optional_int("rounds", get("rounds")),
        epochs=_optional_int("epochs", get("epochs")),
        batch_size=_optional_int("batch_size", get("batch_size")),
        seed=seed,
        seeds=_optional_int("seeds", get("seeds")) or 1,
        repeat=_optional_int("repeat", get("repeat")) or 1,
        train_size=_optional_int("train_size", get("train_size")),
        test_size=_optional_int("test_size", get("test_size")),
        profile=_flag("profile", get("profile")),
        profile_steps=_optional_int("profile_steps", get("profile_steps")) or DEFAULT_PROFILE_STEPS,
        trace_dir=get("trace_dir"),
        devices=_optional_int("devices", get("devices")),
        scaling=scaling,
        mixed_precision=mixed_precision,
        processes=processes,
        process=process,
    )
    if not opts.cases():
        raise BadInputError(f"the selection runs nothing: workloads {list(workloads)} have no api among {list(apis)}")
    if opts.devices and any(is_distributed(LOOPS.get(v)) for v in loops):
        for w in workloads:  # a batch that strong scaling cannot split fails now, not in every distributed case
            split_batch(opts.batch_size or get_workload(w).batch_size, opts.devices, scaling)
    return opts
