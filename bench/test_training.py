"""The suite: every workload x model API x training loop, timed by pytest-benchmark.

The test lives in tf2bench.pytest_plugin, so that any repository runs it the same way.
"""

from tf2bench.pytest_plugin import test_train  # noqa: F401
