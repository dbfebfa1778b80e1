"""Collects the suite's benchmark, one per (workload, api, loop) the options select."""

from tf2bench.pytest_plugin import test_train  # noqa: F401
