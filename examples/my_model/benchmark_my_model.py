"""Benchmark my model from Python: `python examples/my_model/benchmark_my_model.py [storage-dir]`.

Times fit against the compiled loops on the workload in my_model.py, prints the table and adds
the run to results/benchmarks (or the directory given), where `tf2bench report` and
`tf2bench compare` read it like any suite run.
"""

import sys

from my_model import workload

import tf2bench

df = tf2bench.benchmark(
    workload, loops=["fit", "tf_function", "tf_data"], save=(sys.argv[1:] or ["results/benchmarks"])[0]
)
columns = ["loop", "samples_per_sec", "cv", "speedup_vs_fit", "mfu", "test_accuracy", "verdict"]
print(df[columns].round({"samples_per_sec": 0, "cv": 3, "speedup_vs_fit": 2, "mfu": 4}).to_string(index=False))
print(f"saved: {df.attrs['path']}")
