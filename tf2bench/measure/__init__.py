"""Measurement: clocks and device sync, the matmul peak, memory, profiler traces and their op tables, the machine."""
