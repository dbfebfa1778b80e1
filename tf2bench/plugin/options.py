"""tf2bench's command-line options in pytest, and whether a run gave any of them.

Registering them changes nothing: a run that gives none (and sets no ``TF2BENCH_*`` variable) leaves tf2bench
inactive until a collected test asks for its fixture. The table comes from tf2bench.suite.names, which imports
nothing heavy: this module is imported when any pytest run starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pytest

from tf2bench.suite.names import DEPRECATED, FLAGS, OPTIONS, PROCESS_ENV

WORKLOAD_SPECS = "tf2bench_workload_specs"  # --tf2bench-workload's dest
MARKER = "tf2bench"
MARKER_HELP = (
    "tf2bench(workload=W): the tf2bench_case benchmarks of this test train W (a tf2bench.Workload, a registered name "
    "or a 'package.module:attribute' spec, or a list of them) instead of the --workload selection"
)
DEFAULT_STORAGE = "file://./.benchmarks"  # pytest-benchmark's own default: --benchmark-storage was not given
# whether pytest-benchmark's default folder is made by this run (it makes it at configure, before tf2bench knows
# whether it is used; a run that saves into results/benchmarks removes it again if it stayed empty)
DEFAULT_DIR_NEW = pytest.StashKey[bool]()
ENVIRONMENT = (*(e for e, _ in OPTIONS.values()), *(e for _, e in DEPRECATED.values()), PROCESS_ENV)


def add(parser: pytest.Parser) -> None:
    group = parser.getgroup("tf2bench", "tf2bench suite (each also settable by its environment variable)")
    for name, (env, help_text) in OPTIONS.items():
        flag = {"action": "store_true"} if name in FLAGS else {}
        group.addoption(
            f"--{name.replace('_', '-')}", dest=f"tf2bench_{name}", default=None, help=f"{help_text} [{env}]", **flag
        )
    for old, (new, env) in DEPRECATED.items():  # still accepted, with a DeprecationWarning
        group.addoption(f"--{old}", dest=f"tf2bench_{old}", default=None, help=f"deprecated: use --{new} [{env}]")
    group.addoption(
        "--tf2bench-workload",
        dest=WORKLOAD_SPECS,
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="your own workload, a tf2bench.Workload importable as package.module:attribute (repeatable); "
        "runs it (with --workload too, if given)",
    )


def raw(config: pytest.Config) -> dict[str, Any]:
    """The values given on the command line (None: not given); --tf2bench-workload joins --workload."""
    values = {n: config.getoption(f"tf2bench_{n}") for n in (*OPTIONS, *DEPRECATED)}
    specs = config.getoption(WORKLOAD_SPECS) or []
    if specs:
        values["workload"] = ",".join(filter(None, [values["workload"], *specs]))
    return values


def given(config: pytest.Config, environ: Mapping[str, str] | None = None) -> bool:
    """Whether this run asks for tf2bench by an option or a ``TF2BENCH_*`` variable (a worker process's included)."""
    env = os.environ if environ is None else environ
    return any(v is not None for v in raw(config).values()) or any(env.get(n) for n in ENVIRONMENT)


def storage_given(config: pytest.Config) -> bool:
    return config.getoption("benchmark_storage") != DEFAULT_STORAGE


def note_default_storage(config: pytest.Config) -> None:
    """Before pytest-benchmark's configure: does its default folder exist yet?"""
    config.stash[DEFAULT_DIR_NEW] = (
        not storage_given(config) and not (config.invocation_params.dir / ".benchmarks").exists()
    )


def workload_given(config: pytest.Config, environ: Mapping[str, str] | None = None) -> bool:
    """Whether the workloads were chosen (--workload, --tf2bench-workload or TF2BENCH_WORKLOAD)."""
    env = os.environ if environ is None else environ
    return raw(config)["workload"] is not None or bool(env.get(OPTIONS["workload"][0]))
