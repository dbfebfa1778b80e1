"""Suite options: their names (pytest flags, environment variables, ``tf2bench.benchmark``'s arguments) and values.

Validation happens here, once, before any TensorFlow work: a bad name or number fails the whole run at once with a
message naming the valid choices. Every entry point parses its options here and plans its cases from them with
tf2bench.suite.plan.Planner.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tf2bench.errors import BadInputError, check_positive_int
from tf2bench.loops import LOOPS, RunConfig
from tf2bench.loops.distributed import is_distributed, split_batch
from tf2bench.registry import parse_names
from tf2bench.suite.names import DEFAULT_PROFILE_STEPS, DEPRECATED, FLAGS, OPTIONS, PROCESS_ENV
from tf2bench.suite.presets import Preset, get_preset
from tf2bench.workloads import WORKLOADS, get_workload, load_spec
from tf2bench.workloads.data import SOURCES

__all__ = [  # the option table is tf2bench.suite.names's (no heavy imports: the pytest plugin reads it at start-up)
    "DEFAULT_PROFILE_STEPS", "DEPRECATED", "FLAGS", "OPTIONS", "PROCESS_ENV", "Case", "SuiteOptions", "parse_options",
    "workload_names",
]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """One benchmark: what pytest parametrizes over (tf2bench.suite.plan.Planner.cases lists them)."""

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
    warmup_steps: int | None = None  # None: the preset's
    profile: bool = False
    profile_steps: int = DEFAULT_PROFILE_STEPS
    trace_dir: str | None = None  # None: results/traces
    devices: int | None = None  # None: every GPU, or one CPU device (tf2bench.loops.distributed)
    scaling: str = "strong"  # the distributed loops' batch: global, split over replicas (strong), or per replica
    mixed_precision: str = "auto"  # RunConfig.MIXED_PRECISIONS
    processes: int = 1  # worker processes the selection runs in (tf2bench.suite.processes); 1: this process
    process: int = 0  # 1..processes: this is that worker (PROCESS_ENV), timing its share of the rounds; 0: not a worker

    def run_header(self, wall_s: float, harness_overhead: dict[str, Any] | None = None) -> dict[str, Any]:
        """The run-level ``tf2bench`` key saved beside the benchmarks (report and compare read it)."""
        return {
            "preset": self.preset.name,
            "dataset": self.dataset,
            "repeat": self.repeat,
            "seeds": self.seeds,
            "mixed_precision": self.mixed_precision,
            "wall_s": wall_s,
            "harness_overhead": harness_overhead,
        }


def _optional_int(name: str, value: Any) -> int | None:
    if value is None or value == "":
        return None
    return check_positive_int(f"--{name.replace('_', '-')}", value)


def _seed(value: Any) -> int:
    if value is None or value == "":
        return 0
    try:
        seed = int(str(value).strip())
    except ValueError:
        seed = -1
    if seed < 0:
        raise BadInputError(f"--seed must be a non-negative integer, got {value!r}")
    return seed


def _choice(name: str, value: Any, valid: tuple[str, ...]) -> str:
    text = str(value).strip()
    if text not in valid:
        raise BadInputError(f"unknown {name} {text!r}; valid: {', '.join(valid)}")
    return text


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
    if not any(a in get_workload(w).models for w in workloads for a in apis):
        raise BadInputError(f"the selection runs nothing: workloads {list(workloads)} have no api among {list(apis)}")
    scaling = _choice("scaling", get("scaling") or "strong", RunConfig.SCALINGS)
    processes, process = _optional_int("processes", get("processes")) or 1, 0
    if env.get(PROCESS_ENV):  # a worker of tf2bench.suite.processes: never spawns workers of its own
        process, processes = _worker_role(env[PROCESS_ENV])
    opts = SuiteOptions(
        workloads=tuple(workloads),
        apis=tuple(apis),
        loops=tuple(loops),
        dataset=_choice("dataset", get("dataset") or "auto", SOURCES),
        preset=get_preset(get("preset") or "quick"),
        steps=_optional_int("steps", get("steps")),
        rounds=_optional_int("rounds", get("rounds")),
        epochs=_optional_int("epochs", get("epochs")),
        batch_size=_optional_int("batch_size", get("batch_size")),
        seed=_seed(get("seed")),
        seeds=_optional_int("seeds", get("seeds")) or 1,
        repeat=_optional_int("repeat", get("repeat")) or 1,
        train_size=_optional_int("train_size", get("train_size")),
        test_size=_optional_int("test_size", get("test_size")),
        warmup_steps=_optional_int("warmup_steps", get("warmup_steps")),
        profile=_flag("profile", get("profile")),
        profile_steps=_optional_int("profile_steps", get("profile_steps")) or DEFAULT_PROFILE_STEPS,
        trace_dir=str(get("trace_dir")) if get("trace_dir") else None,
        devices=_optional_int("devices", get("devices")),
        scaling=scaling,
        mixed_precision=_choice("mixed precision", get("mixed_precision") or "auto", RunConfig.MIXED_PRECISIONS),
        processes=processes,
        process=process,
    )
    if opts.devices and any(is_distributed(LOOPS.get(v)) for v in loops):
        for w in workloads:  # a batch that strong scaling cannot split fails now, not in every distributed case
            split_batch(opts.batch_size or get_workload(w).batch_size, opts.devices, scaling)
    return opts
