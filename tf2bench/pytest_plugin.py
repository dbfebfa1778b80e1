"""Deprecated: tf2bench's pytest plugin registers itself now (the ``pytest11`` entry point, tf2bench.plugin).

Old repositories keep working, with a DeprecationWarning: a conftest.py with ``from tf2bench.pytest_plugin
import *`` (remove that line) and a test module with ``from tf2bench.pytest_plugin import test_train`` (write the
test instead: ``def test_train(tf2bench_case): tf2bench_case()``). This module exports no hooks: the plugin's are
registered once, by its entry point; a second registration would add its options twice.
"""

from __future__ import annotations

import warnings
from typing import Any

__all__ = ["test_train"]  # noqa: F822  (given by __getattr__, with its warning): `import *` takes no hooks


def _test_train(tf2bench_case: Any) -> None:
    """One benchmark of the selected cases (tf2bench.plugin's tf2bench_case fixture)."""
    tf2bench_case()


_test_train.__name__ = _test_train.__qualname__ = "test_train"


def __getattr__(name: str) -> Any:
    if name == "test_train":
        warnings.warn(
            "tf2bench.pytest_plugin is deprecated: the tf2bench plugin now registers itself when tf2bench is "
            "installed; remove `from tf2bench.pytest_plugin import ...` and write the test: "
            "`def test_train(tf2bench_case): tf2bench_case()`",
            DeprecationWarning,
            stacklevel=2,
        )
        return _test_train
    if name == "progress":  # moved to tf2bench.plugin.summary (tests/test_suite.py imports it from here)
        from tf2bench.plugin.summary import progress

        return progress
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
