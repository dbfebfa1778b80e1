"""tf2bench: a benchmark and profiling harness for TensorFlow 2 training loops."""

__version__ = "0.1.0"
