"""tf2bench's command-line options in pytest, and whether a run gave any of them.

Registering them changes nothing: a run that gives none (and sets no ``TF2BENCH_*`` variable) leaves tf2bench
inactive until a collected test asks for its fixture. The table comes from tf2bench.suite.names, which imports
nothing heavy: this module is imported when any pytest run starts.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
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


GROUP = ("tf2bench", "tf2bench suite (each option also as --NAME when typed so, and by its environment variable)")


def short(name: str) -> str:
    return f"--{name.replace('_', '-')}"


def add(parser: pytest.Parser) -> None:
    """Every option under its own prefix, ``--tf2bench-NAME``: no other plugin or conftest can be refused an option
    name because tf2bench is installed. The short spellings (``--loop``, ``--seed``, ``--profile``) are added by
    :func:`add_typed` in the runs that type them."""
    group = parser.getgroup(*GROUP)
    for name, (env, help_text) in OPTIONS.items():
        if name == "workload":  # --tf2bench-workload is the spec option below, which takes names too
            continue
        flag = {"action": "store_true"} if name in FLAGS else {}
        group.addoption(
            f"--tf2bench-{name.replace('_', '-')}",
            dest=f"tf2bench_{name}",
            default=None,
            help=f"{help_text} [{env}]",
            **flag,
        )
    for old, (new, _env) in DEPRECATED.items():  # still accepted, with a DeprecationWarning
        group.addoption(f"--tf2bench-{old}", dest=f"tf2bench_{old}", default=None, help=f"deprecated: use --{new}")
    group.addoption(
        "--tf2bench-workload",
        dest=WORKLOAD_SPECS,
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="your own workload, a tf2bench.Workload importable as package.module:attribute (repeatable); "
        "runs it (with --workload too, if given)",
    )


def typed(args: list[str]) -> list[str]:
    """The tf2bench options ``args`` spell without the prefix (``--loop fit``, ``--seed=3``, ``--profile``)."""
    words = {a.split("=", 1)[0] for a in args if a.startswith("--")}
    return [n for n in (*OPTIONS, *DEPRECATED) if short(n) in words]


def add_typed(parser: pytest.Parser, args: list[str]) -> list[str]:
    """Add the short spelling of each tf2bench option ``args`` use, after the conftests added theirs; a name another
    plugin or conftest already owns stays theirs (returned, so the run can say so)."""
    group, taken = parser.getgroup(*GROUP), []
    owned = names_in_use(parser)
    for name in typed(args):
        if short(name) in owned:
            taken.append(short(name))
            continue
        flag = {"action": "store_true"} if name in FLAGS else {}
        help_text = f"the short spelling of --tf2bench-{name.replace('_', '-')}"
        group.addoption(short(name), dest=f"tf2bench_{name}", default=None, help=help_text, **flag)
    return taken


def names_in_use(parser: pytest.Parser) -> set[str]:
    """Every option string registered so far. pytest checks a new name only against its own group (argparse then
    fails the whole run on a clash across groups), and has no public list: its ``_groups`` and ``_anonymous`` are
    read here, and nothing is known (so nothing is added) if they change."""
    groups = [*getattr(parser, "_groups", []), getattr(parser, "_anonymous", None)]
    if any(g is None or not hasattr(g, "options") for g in groups):
        return {short(n) for n in (*OPTIONS, *DEPRECATED)}
    return {name for g in groups for opt in g.options for name in opt.names()}


def raw(config: pytest.Config) -> dict[str, Any]:
    """The values given on the command line (None: not given); --tf2bench-workload joins --workload."""
    values = {n: config.getoption(f"tf2bench_{n}", None) for n in (*OPTIONS, *DEPRECATED)}
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


def keep_out_of(checkout: Path) -> list[str]:
    """pytest arguments for a run in ``checkout`` (tf2bench bisect's worktrees): none, unless it holds a tf2bench
    from before this plugin (its ``bench/conftest.py`` imports the hooks itself), which with this plugin installed
    would find no ``tf2bench.plugin`` to load."""
    old = (checkout / "tf2bench").is_dir() and not (checkout / "tf2bench" / "plugin").is_dir()
    return ["-p", "no:tf2bench"] if old else []
