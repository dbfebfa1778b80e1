"""The tf2bench suite in this repository: `pytest --tf2bench-workload my_model:workload --benchmark-autosave`."""

from tf2bench.pytest_plugin import *  # noqa: F403
