"""Shared fixtures: tiny synthetic data, and a clean Keras cache per test."""

from __future__ import annotations

import atexit
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from tf2bench.analysis import equivalence

ROOT = Path(__file__).resolve().parent.parent
STORAGE = ROOT / "tests" / "fixtures" / "benchmarks"  # real runs saved by the suite


def fixture(number: str) -> Path:
    """The committed fixture run with this number, as this version saves it: the fixtures are runs of tf2bench 0.1
    (schema 2: ``variant`` keys), kept as they were so that tests reading STORAGE prove old runs still load; tests
    that edit a run's JSON get a copy with its records upgraded (tf2bench.saved.record.upgrade)."""
    (path,) = _upgraded_fixtures().glob(f"*/{number}_*.json")
    return path


def committed(number: str) -> Path:
    """The committed fixture run with this number, as tf2bench 0.1 saved it (what STORAGE holds)."""
    (path,) = STORAGE.glob(f"*/{number}_*.json")
    return path


@functools.cache
def _upgraded_fixtures() -> Path:
    from tf2bench.saved import record

    out = Path(tempfile.mkdtemp(prefix="tf2bench-fixtures-"))
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    for src in STORAGE.glob("*/*.json"):
        doc = json.loads(src.read_text())
        for bench in doc["benchmarks"]:
            record.upgrade(bench["extra_info"])
        (out / src.parent.name).mkdir(exist_ok=True)
        (out / src.parent.name / src.name).write_text(json.dumps(doc))
    return out


def edited(src: Path, dest: Path, edit) -> Path:
    """A copy of a real run with ``edit(doc)`` applied (same file name, another directory)."""
    doc = json.loads(src.read_text())
    edit(doc)
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / src.name
    out.write_text(json.dumps(doc))
    return out


def run_series(folder: Path, count: int, rounds, commit: str | None = None, start: int = 1) -> list:
    """Runs numbered start.. copied from fixture 0001, one a day, oldest first: ``rounds(k, bench)`` gives the
    k-th run's rounds of a benchmark. Each run has a commit of its own (main's history) unless one is given
    (runs of the same code)."""
    from tf2bench.analysis import runs

    doc = json.loads(fixture("0001").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k, i in enumerate(range(start, start + count)):
        d = json.loads(json.dumps(doc))
        d["datetime"] = f"2026-12-{i:02d}T10:00:00+00:00"
        d["commit_info"].update(id=commit or f"{i:04d}".ljust(40, "0"), dirty=False)
        for b in d["benchmarks"]:
            b["stats"]["data"] = rounds(k, b)
        path = folder / f"{i:04d}_abc{i:04d}_202612{i:02d}_100000.json"
        path.write_text(json.dumps(d))
        out.append(runs.load(path, True))
    return out


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty KERAS_HOME: tests never touch (or download into) the user's cache."""
    home = tmp_path / "keras_home"
    (home / "datasets").mkdir(parents=True)
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def offline(monkeypatch):
    """keras.utils.get_file fails the way it does without network (URL fetch failure)."""
    import keras

    calls = []

    def no_network(*args, **kwargs):
        calls.append(kwargs.get("origin"))
        raise Exception(f"URL fetch failure on {kwargs.get('origin')}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    return calls


@pytest.fixture
def run_bench():
    """Run ``pytest bench ARGS`` as a user would, in a subprocess; returns CompletedProcess."""
    return run_pytest_bench


def run_pytest_bench(
    *args: str, cwd: Path = ROOT, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Run the suite as a user would, in a subprocess."""
    return run_pytest("bench", *args, cwd=cwd, timeout=timeout, env=env)


def run_pytest(
    *args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """``python -m pytest ARGS`` in ``cwd`` (the suite, or a user's repository), in a subprocess, without the
    TF2BENCH_* variables of this environment (each of them would switch tf2bench on)."""
    own = {k: v for k, v in os.environ.items() if not k.startswith("TF2BENCH_")}
    env = {**own, "PYTHONWARNINGS": "ignore", "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# Loop equivalence, shared by the loop and bring-your-own-model tests.
# fp32 loops: other kernels and summation orders only. Their distance to fit's weights, as a share of fit's update,
# is bounded by the fp32 tolerance the loops declare (tf2bench.analysis.equivalence: one step's gamma_n of the longest
# reduction, 2^-9, with 2^3 of amplification: 2^-6); XLA by its own (2^-5). Measured here: <= ~1e-3 at 12 steps.
EQUIVALENT = ("fit", "eager", "tf_function", "tf_data", "fit_spe", "graph_loop")


def fp32_tolerance() -> float:
    """The fp32 loops' tolerance on this machine: TF32's where float32 matmuls run as TF32 (an Ampere+ GPU)."""
    from tf2bench.loops.base import tf32_in_use

    return equivalence.TOL_TF32 if tf32_in_use() else equivalence.TOL_FP32


def xla_tolerance() -> float:
    """XLA's tolerance on this machine (TF32's covers XLA's re-association too: analysis/equivalence.py)."""
    from tf2bench.loops.base import tf32_in_use

    return equivalence.TOL_TF32 if tf32_in_use() else equivalence.TOL_XLA


def update_distance(run, fit):
    """||w - w_fit|| / ||w_fit - w_0||, exact (all weights): the quantity the weight tier estimates."""
    from tf2bench.workloads import build

    w, w_fit = build.flat_weights(run.model), build.flat_weights(fit.model)
    w0 = build.flat_weights(build.build(fit.workload, fit.api, fit.config.seed))
    return float(np.linalg.norm(w - w_fit) / np.linalg.norm(w_fit - w0))
