"""tf2bench: a benchmark and profiling harness for TensorFlow 2 training loops.

Bring your own model::

    import tf2bench
    wl = tf2bench.Workload(name="mlp", model=build_mlp, data=load_data, loss="sparse_categorical_crossentropy")
    df = tf2bench.benchmark(wl, loops=["fit", "tf_function", "tf_data"])

Importing this package does not import TensorFlow; running a benchmark does.
"""

from tf2bench.api import benchmark
from tf2bench.loops import train_step
from tf2bench.loops.distributed import configure_devices
from tf2bench.workloads import Workload, get_workload, register_workload
from tf2bench.workloads.data import DataRequest, Dataset

__version__ = "0.1.0"
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
