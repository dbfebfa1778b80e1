"""What is trained: workloads (declaration, registry), their data, and seeded model builds.

Importing the package registers the tutorial's two built-in workloads (``tutorial.py``).
"""

from tf2bench.workloads import tutorial as _tutorial  # noqa: F401  (registers mnist and cifar100)
from tf2bench.workloads.tutorial import BUILTIN, BUILTIN_APIS
from tf2bench.workloads.workload import (
    SINGLE_API,
    WORKLOADS,
    Workload,
    get_workload,
    load_spec,
    register_workload,
)

__all__ = [
    "BUILTIN",
    "BUILTIN_APIS",
    "SINGLE_API",
    "WORKLOADS",
    "Workload",
    "get_workload",
    "load_spec",
    "register_workload",
]
