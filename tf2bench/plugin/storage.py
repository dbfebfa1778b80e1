"""Where pytest-benchmark saves a tf2bench run: tf2bench's own writer, and results/benchmarks by default.

pytest-benchmark 5 writes a run by opening its numbered file and writing into it: a run killed in that moment
leaves half a JSON behind, and two runs saving at once can take the same number. :class:`RunStorage` is its
``FileStorage`` (numbering, naming, loading and ``--benchmark-compare`` unchanged) whose ``save`` goes through
``tf2bench.saved.runfile.save``: written whole, numbered after the highest number there, never over an earlier run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pytest_benchmark.storage.file import FileStorage

from tf2bench.plugin.options import DEFAULT_DIR_NEW, storage_given
from tf2bench.saved import runfile


class RunStorage(FileStorage):
    """pytest-benchmark's file storage, saving through tf2bench's atomic, numbered writer."""

    def save(self, output_json: dict[str, Any], save: str) -> None:
        path = runfile.save(output_json, self.path, save, machine_id=self.default_machine_id)
        self.logger.info(f"Saved benchmark data in: {path}")


def use_run_storage(config: pytest.Config, default: Path | None = None) -> None:
    """Make this session's pytest-benchmark save through :class:`RunStorage`; at ``default`` when
    --benchmark-storage was not given and ``default`` is (tf2bench became active after pytest-benchmark had opened
    its own default; the runs to compare against are then read from ``default`` too).

    pytest-benchmark has no public way to choose a session's storage object: its ``BenchmarkSession`` (registered
    as the plugin ``pytest-benchmark``, the object ``config._benchmarksession`` points at) builds one from
    --benchmark-storage at configure and keeps it in its ``storage`` attribute, which is what we replace here,
    keeping that storage's path, logger and machine id. An elasticsearch storage is left as it is.
    """
    session = config.pluginmanager.get_plugin("pytest-benchmark")
    current = getattr(session, "storage", None)
    if session is None or type(current) is not FileStorage:  # not a file storage, or already ours
        return
    path = default if default is not None and not storage_given(config) else current.path
    session.storage = RunStorage(path, logger=current.logger, default_machine_id=current.default_machine_id)
    if path == current.path:
        return
    if session.compare:  # --benchmark-compare: the runs saved where this one will be
        session.handle_loading()
    if config.stash.get(DEFAULT_DIR_NEW, False) and current.path.is_dir() and not any(current.path.iterdir()):
        current.path.rmdir()  # made empty by pytest-benchmark at configure, for a run that saves elsewhere
