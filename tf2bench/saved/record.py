"""The result record, declared once: every key a benchmark's ``extra_info`` may hold, with its unit.

``runner.BenchmarkRun.result`` builds the record and :func:`finish` checks it against this
declaration (an undeclared key is a bug, caught before anything is saved) and stamps the schema
version; ``analysis.runs`` reads :data:`REQUIRED` to refuse a file that lacks what report and compare
need; docs/record.md explains each key (a test checks that every key here is documented there).
"""

from __future__ import annotations

from typing import Any

# 2: two-tier verdict records (weights images, weight_tier, test_correct), per-precision MFU, scaling.
# Still 2 with the window-sizing keys (window_steps_source, calibration, rounds_planned, rounds_reason,
# settle_steps): added keys only, every existing key keeps its meaning; a record without them had fixed windows.
# Still 2 with peak_memory, mixed_precision, loss_scale; peak_memory_bytes now covers the timed windows only.
# Still 2 with processes, rounds_process, process_samples_per_sec (--processes N only).
# 3: variant -> loop, variant_description -> loop_description (one word for a training loop); a schema-2 record is
# read with its keys renamed (upgrade, called by analysis.runs when a file is loaded).
SCHEMA_VERSION = 3

FIELDS: dict[str, str] = {
    # the case
    "workload": "text",
    "api": "text",
    "loop": "text",
    "loop_description": "text",
    "dataset": "object (provenance)",
    "seed": "-",
    "repeat": "index",
    # how long
    "batch_size": "samples",
    "samples_per_step": "samples",
    "steps": "steps",
    "rounds": "windows",
    "rounds_planned": "windows",
    "rounds_reason": "text",
    "window_steps_source": "text",
    "calibration": "object",
    "warmup_steps": "steps",
    "settle_steps": "steps",
    "eval_steps": "steps",
    "steps_total": "steps",
    "epochs": "epochs",
    "jit_compile": "bool",
    # throughput and time
    "samples_per_sec": "samples/s",
    "samples_per_sec_min": "samples/s",
    "samples_per_sec_max": "samples/s",
    "cv": "share",
    "noisy": "bool",
    "step_time_ms": "ms",
    "step_time_ms_p90": "ms",
    "window_s": "s (list)",
    # --processes N: a benchmark merged from its worker processes (suite.processes); absent from a one-process run
    "processes": "process numbers (list)",
    "rounds_process": "process number (list, one per round)",
    "process_samples_per_sec": "samples/s (list, one per process)",
    "first_step_s": "s",
    "setup_s": "s",
    "build_s": "s",
    "epoch_s": "s",
    "traces": "count",
    # what it learned
    "train_loss": "loss",
    "test_accuracy": "share",
    "test_loss": "loss",
    "test_samples": "samples",
    "test_correct": "base64 (packed bits)",
    "init_fingerprint": "hash",
    "final_fingerprint": "hash",
    "init_weights": "object (weights image)",
    "weights_checkpoint": "object (weights image + step)",
    "weights": "object (weights image)",
    "weight_tier": "object",
    # compute
    "params": "count",
    "flops_per_sample": "FLOP/sample",
    "flops_per_sample_forward": "FLOP/sample",
    "gflops_per_sec": "GFLOP/s",
    "mfu": "share",
    "mfu_error": "text",
    "compute_dtype": "dtype",
    "peak_dtype": "precision",
    "peak_gflops": "GFLOP/s",
    "peak_matmul_n": "n",
    # where
    "device": "object",
    "peak_memory_bytes": "bytes",
    "peak_memory": "object (per device, or the host's resident set)",
    "tf_version": "text",
    "keras_version": "text",
    "profile": "object",
    # loop-specific (Loop.info)
    "steps_per_execution": "steps",
    "dtype_policy": "text",
    "mixed_precision": "text",
    "loss_scale": "factor",
    "strategy": "text",
    "replicas": "count",
    "devices": "list",
    "scaling": "text",
    "global_batch_size": "samples",
    "per_replica_batch_size": "samples",
    "samples_per_sec_global": "samples/s",
    "samples_per_sec_per_replica": "samples/s",
    "single_replica_samples_per_sec": "samples/s",
    "scaling_efficiency": "share",
    "scaling_efficiency_windows": "share (list)",
    "scaling_method": "text",
    "workers": "count",
    "cluster": "list",
    "spec": "object",
    "schema_version": "version",
}

# What tf2bench report and compare need from every benchmark (older files without the rest still load).
REQUIRED = ("workload", "api", "loop", "samples_per_sec", "steps", "samples_per_step", "test_accuracy")


def finish(values: dict[str, Any]) -> dict[str, Any]:
    """The record as saved: checked against FIELDS and stamped with the schema version."""
    unknown = sorted(set(values) - set(FIELDS))
    if unknown:
        raise RuntimeError(f"result keys not declared in tf2bench.saved.record.FIELDS: {unknown}")
    missing = [k for k in REQUIRED if k not in values]
    if missing:
        raise RuntimeError(f"a result without {missing}: report and compare could not read it")
    return {**values, "schema_version": SCHEMA_VERSION}


# Keys schema-2 records saved under their old names: upgraded on reading, so every reader sees one word (a training
# loop is a "loop"; those runs called it a "variant").
RENAMED_KEYS = {"variant": "loop", "variant_description": "loop_description"}


def upgrade(info: dict) -> dict:
    """A benchmark's record with the old key names of earlier versions renamed, in place (and returned)."""
    for old, new in RENAMED_KEYS.items():
        if old in info and new not in info:
            info[new] = info.pop(old)
    return info
