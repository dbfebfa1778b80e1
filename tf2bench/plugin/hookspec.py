"""The hooks a user's conftest.py (or plugin) implements to extend tf2bench, as pytest-benchmark's
``pytest_benchmark_update_json``: registered with ``pluginmanager.add_hookspecs`` by ``pytest_addhooks``.

Adding a training loop needs no hook: ``tf2bench.loops.register_loop`` in a conftest.py or a ``-p`` plugin makes
``--loop NAME`` valid (tests/fault_plugin.py does so).
"""

from __future__ import annotations

from typing import Any

import pytest


@pytest.hookspec
def pytest_tf2bench_update_record(config: pytest.Config, case: Any, record: dict[str, Any]) -> None:
    """Change one benchmark's record in place before it is stored in ``benchmark.extra_info`` (and so saved).

    Called once per benchmark, in the process that saves the run: a run in one process calls it on each
    record as measured; the parent of ``--processes N`` on the record merged from its workers (the workers, which
    save nothing, do not call it). ``case`` is the benchmark's ``tf2bench.suite.options.Case`` (repeat, seed,
    workload, api, loop). Keys tf2bench writes are read by ``tf2bench report`` and ``compare``: add your own
    rather than change those.
    """
