"""The run document, written in one place: what ``tf2bench.benchmark``, the multi-worker chief and the pytest suite
save, laid out as pytest-benchmark writes it so its readers and tf2bench's (report, compare, history) load it.

:func:`save` is tf2bench's own writer: ``<storage>/<machine id>/<NNNN>_<tag>.json``, pytest-benchmark's naming,
numbered after the highest number already there, written whole (``storage.atomic_write``) and never over an
earlier run. Saves running at the same time get different numbers: a save claims its number first with a
hidden ``.NNNN.saving`` file that only one of them can create, and gives it up once the run file is in place.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Any

from tf2bench.errors import Tf2benchError
from tf2bench.saved.storage import atomic_write

ATTEMPTS = 100  # numbers tried before giving up (each failure means another save took that number meanwhile)
_NUMBERED = re.compile(r"^\.?(\d{4,})[_.]")  # 0003_<tag>.json, or a claim .0004.saving


def benchmark_json(case: Any, seconds: list[float], info: dict[str, Any], module: str) -> dict[str, Any]:
    """One benchmark as pytest-benchmark writes it: stats over the rounds ``seconds`` (round data included), the
    tf2bench record ``info`` as its extra_info. ``case``: a tf2bench.suite.options.Case; ``module``: the source
    named in its fullname (``tf2bench.api``, ``tf2bench.multiworker``)."""
    from pytest_benchmark.stats import Stats

    stats = Stats()
    for s in seconds:
        stats.update(s)
    return {
        "group": f"{case.workload}-{case.api}",
        "name": f"test_train[{case.id}]",
        "fullname": f"{module}::test_train[{case.id}]",
        "params": {"case": case.id},
        "param": case.id,
        "extra_info": info,
        "options": {"timer": "tf2bench.measure.timing.bench_clock", "min_rounds": len(seconds), "warmup": False},
        "stats": {**stats.as_dict(), "data": list(seconds), "iterations": 1},
    }


def run_json(benchmarks: list[dict[str, Any]], header: dict[str, Any], machine: dict[str, Any]) -> dict[str, Any]:
    """The run document around ``benchmarks``: ``header`` is its run-level ``tf2bench`` key
    (SuiteOptions.run_header plus ``source``), which report and compare read; ``machine`` is machine_info's
    tf2bench part (tf2bench.suite.runner.machine_record, measured here or by the worker processes)."""
    from pytest_benchmark import __version__
    from pytest_benchmark.plugin import pytest_benchmark_generate_machine_info
    from pytest_benchmark.utils import get_commit_info

    machine_info = pytest_benchmark_generate_machine_info()
    machine_info["tf2bench"] = machine
    return {
        "machine_info": machine_info,
        "commit_info": get_commit_info(),
        "benchmarks": benchmarks,
        "datetime": dt.datetime.now(dt.timezone.utc).isoformat(),
        "version": __version__,
        "tf2bench": header,
    }


def default_tag() -> str:
    """pytest-benchmark's tag of an autosaved run: ``<commit>_<date>_<time>[_uncommitted-changes]``."""
    from pytest_benchmark.utils import get_tag

    return get_tag()


def numbers(folder: Path) -> list[int]:
    """The run numbers taken in ``folder``: saved runs and claims of saves under way."""
    if not folder.is_dir():
        return []
    return [int(m[1]) for p in folder.iterdir() if (m := _NUMBERED.match(p.name))]


def save(doc: dict[str, Any], storage: Path, tag: str, machine_id: str | None = None) -> Path:
    """Save ``doc`` as a new numbered run ``<storage>/<machine_id>/<NNNN>_<tag>.json`` and return its path.

    ``machine_id`` defaults to pytest-benchmark's (``Linux-CPython-3.11-64bit``). The number follows the highest in
    that folder (runs saved by pytest-benchmark itself included); the file is written atomically and never
    replaces one; a save that loses its number to another takes the next.
    """
    from pytest_benchmark.utils import get_machine_id, safe_dumps

    folder = Path(storage) / (machine_id or get_machine_id())
    folder.mkdir(parents=True, exist_ok=True)
    data = safe_dumps(doc, ensure_ascii=True, indent=4).encode()
    for _ in range(ATTEMPTS):
        number = f"{max(numbers(folder), default=0) + 1:04d}"
        claim = folder / f".{number}.saving"
        try:
            atomic_write(claim, b"", overwrite=False)  # only one save can claim a number
        except FileExistsError:
            continue
        try:
            if any(folder.glob(f"{number}_*")):  # saved (and its claim given up) between the listing and the claim
                continue
            path = folder / f"{number}_{tag}.json"
            atomic_write(path, data, overwrite=False)
            return path
        except FileExistsError:  # a writer that claims nothing (pytest-benchmark's own) took the name
            continue
        finally:
            claim.unlink(missing_ok=True)
    raise Tf2benchError(f"could not find a free run number under {folder} in {ATTEMPTS} attempts")
