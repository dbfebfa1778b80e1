"""The suite's pytest plugin, taken in the same way a user's repository takes it (see README)."""

from tf2bench.pytest_plugin import *  # noqa: F403
