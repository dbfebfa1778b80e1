"""tf2bench: a benchmark and profiling harness for TensorFlow 2 training loops.

Bring your own model::

    import tf2bench
    wl = tf2bench.Workload(name="mlp", model=build_mlp, data=load_data, loss="sparse_categorical_crossentropy")
    df = tf2bench.benchmark(wl, loops=["fit", "tf_function", "tf_data"])

Importing this package imports nothing else: each public name below is imported from its module when first used
(PEP 562), so ``import tf2bench.suite.names`` (the pytest plugin, at every pytest start) stays light. Running a
benchmark imports TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

# public name -> the module that defines it
_PUBLIC = {
    "benchmark": "tf2bench.api",
    "train_step": "tf2bench.loops",
    "configure_devices": "tf2bench.loops.distributed",
    "Workload": "tf2bench.workloads",
    "get_workload": "tf2bench.workloads",
    "register_workload": "tf2bench.workloads",
    "DataRequest": "tf2bench.workloads.data",
    "Dataset": "tf2bench.workloads.data",
}
__all__ = [
    "DataRequest",
    "Dataset",
    "Workload",
    "benchmark",
    "configure_devices",
    "get_workload",
    "register_workload",
    "train_step",
]

if TYPE_CHECKING:  # what type checkers and IDEs see
    from tf2bench.api import benchmark
    from tf2bench.loops import train_step
    from tf2bench.loops.distributed import configure_devices
    from tf2bench.workloads import Workload, get_workload, register_workload
    from tf2bench.workloads.data import DataRequest, Dataset


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # imported once
        return value
    raise AttributeError(f"module 'tf2bench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
