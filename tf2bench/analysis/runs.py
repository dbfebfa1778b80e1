"""Saved suite runs: find them (paths, globs, run numbers, newest) and read them, checked.

pytest-benchmark writes one JSON file per run; the suite puts its record into each
benchmark's ``extra_info`` (tf2bench.suite.runner.BenchmarkRun.result). report and compare
both start here, so a bad file is diagnosed the same way everywhere: one line that
names the file and says what is wrong with it. No TensorFlow import: reading results
must stay cheap and work on machines without it.
"""

from __future__ import annotations

import glob
import json
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tf2bench.errors import EXIT_MISSING_BASELINE, BadInputError
from tf2bench.saved import record, storage

DEFAULT_STORAGE = storage.BENCHMARKS

REQUIRED_FIELDS = record.REQUIRED  # extra_info fields report/compare rely on

_RUN_NAME = re.compile(r"^(?P<number>\d{4})_(?P<commit>[^_]*)_(?P<date>\d{8})_(?P<time>\d{6})")


class RunFileError(BadInputError):
    """A run file (or a way of naming one) that cannot be used; the message names it."""

    def __init__(self, source: str | Path, problem: str) -> None:
        self.source = str(source)
        super().__init__(f"{source}: {problem}")


class MissingRunError(RunFileError):
    """The named run does not exist (for a baseline this is its own exit code)."""


class MissingBaselineError(MissingRunError):
    exit_code = EXIT_MISSING_BASELINE


@dataclass(frozen=True)
class SavedRun:
    """One checked pytest-benchmark file from the suite."""

    path: Path
    benchmarks: list[dict[str, Any]]
    suite: dict[str, Any] = field(default_factory=dict)  # the top-level "tf2bench" key
    datetime: str = ""
    commit: str = ""
    dirty: bool = False
    machine: dict[str, Any] = field(default_factory=dict)  # machine_info["tf2bench"]: versions, CPU, ISA, settings

    @property
    def run_id(self) -> str:
        return self.path.stem

    @property
    def number(self) -> str:
        m = _RUN_NAME.match(self.path.name)
        return m["number"] if m else self.path.stem

    @property
    def has_round_data(self) -> bool:
        return all(isinstance(b.get("stats", {}).get("data"), list) for b in self.benchmarks)


def sort_key(path: Path) -> tuple[str, str, float]:
    """Newest = latest timestamp in the name (mtimes lie after a git checkout), then run number."""
    m = _RUN_NAME.match(path.name)
    stamp = f"{m['date']}{m['time']}" if m else ""
    number = m["number"] if m else ""
    return stamp, number, path.stat().st_mtime


def saved_runs(storage: Path) -> list[Path]:
    """Every run file under a pytest-benchmark storage directory, oldest first."""
    return sorted((p for p in storage.glob("*/*.json") if p.is_file()), key=sort_key)


def resolve(spec: str, storage: Path = DEFAULT_STORAGE, missing: type[MissingRunError] = MissingRunError) -> list[Path]:
    """Turn one user argument into run files: a path, a directory, a glob, or a run number like 0003."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(p for p in path.rglob("*.json") if p.is_file())
        if not found:
            raise missing(spec, "directory holds no .json run files")
        return sorted(found, key=sort_key)
    if re.fullmatch(r"\d{1,4}", spec):
        number = spec.zfill(4)
        found = [p for p in saved_runs(storage) if p.name.startswith(f"{number}_")]
        if len(found) == 1:
            return found
        if len(found) > 1:
            raise RunFileError(spec, f"run {number} is ambiguous under {storage}: {', '.join(map(str, found))}")
        valid = ", ".join(sorted({p.name[:4] for p in saved_runs(storage)})) or "none"
        raise missing(spec, f"no run {number} under {storage}; valid run numbers: {valid}")
    if glob.has_magic(spec):
        found = sorted((Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()), key=sort_key)
        if not found:
            raise missing(spec, "the pattern matches no files")
        return found
    raise missing(spec, "no such file (give a run file, a directory, a glob, or a run number such as 0003)")


def newest(storage: Path = DEFAULT_STORAGE) -> Path:
    """The most recent run under ``storage``; a clear error when there is none."""
    runs = saved_runs(storage) if storage.is_dir() else []
    if not runs:
        raise MissingRunError(
            storage, "no saved runs here; run `pytest bench --benchmark-autosave` first, or name run files"
        )
    return runs[-1]


def load(path: Path, require_round_data: bool = False) -> SavedRun:
    """Read and check one run file; every problem raises RunFileError naming the file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RunFileError(
            path, f"cannot read it ({exc.__class__.__name__}: {getattr(exc, 'strerror', exc)})"
        ) from None
    if not text.strip():
        raise RunFileError(path, "empty file (an interrupted run?)")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RunFileError(path, f"not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("benchmarks"), list):
        keys = ", ".join(list(doc)[:6]) if isinstance(doc, dict) else type(doc).__name__
        raise RunFileError(path, f"not a pytest-benchmark run: no 'benchmarks' list (found: {keys})")
    if not doc["benchmarks"]:
        raise RunFileError(path, "a pytest-benchmark run with no benchmarks in it")
    for bench in doc["benchmarks"]:
        info = bench.get("extra_info") if isinstance(bench, dict) else None
        name = bench.get("name", "?") if isinstance(bench, dict) else "?"
        if isinstance(info, dict):
            record.upgrade(info)
        if not isinstance(info, dict) or not all(k in info for k in ("workload", "api", "loop")):
            raise RunFileError(
                path, f"benchmark {name!r} has no tf2bench record in extra_info: not saved by `pytest bench`?"
            )
        lacking = [k for k in REQUIRED_FIELDS if k not in info]
        if lacking:
            raise RunFileError(path, f"benchmark {name!r} lacks extra_info field(s): {', '.join(lacking)}")
        if require_round_data and not isinstance(bench.get("stats", {}).get("data"), list):
            raise RunFileError(
                path,
                "no round data (stats.data): saved without --benchmark-save-data, so there are no per-round "
                "times to test; re-run the suite (bench/conftest.py turns it on)",
            )
    commit = doc.get("commit_info") or {}
    return SavedRun(
        path=path,
        benchmarks=doc["benchmarks"],
        suite=doc.get("tf2bench") or {},
        datetime=str(doc.get("datetime", "")),
        commit=str(commit.get("id") or "")[:10],
        dirty=bool(commit.get("dirty")),
        machine=((doc.get("machine_info") or {}).get("tf2bench") or {})
        if isinstance(doc.get("machine_info"), dict)
        else {},
    )


def load_many(
    specs: Sequence[str], storage: Path = DEFAULT_STORAGE, require_round_data: bool = False
) -> tuple[list[SavedRun], list[RunFileError]]:
    """Load every run the arguments name; bad ones become errors, good ones are still returned."""
    errors: list[RunFileError] = []
    paths: list[Path] = []
    if not specs:
        try:
            paths.append(newest(storage))
        except RunFileError as exc:
            errors.append(exc)
    for spec in specs:
        try:
            paths.extend(resolve(spec, storage))
        except RunFileError as exc:
            errors.append(exc)
    runs, seen = [], set()
    for path in paths:
        if path.resolve() in seen:
            continue
        seen.add(path.resolve())
        try:
            runs.append(load(path, require_round_data))
        except RunFileError as exc:
            errors.append(exc)
    return runs, errors


def machine_of(run: SavedRun) -> str:
    """The hardware a run measured: CPU model and count, and the accelerator (not the host name: CI hosts change)."""
    own = run.machine
    device = own.get("device") or run.benchmarks[0]["extra_info"].get("device") or {}
    name = own.get("cpu_name") or (device.get("name") if device.get("kind") == "CPU" else None)
    count = own.get("cpu_count") or device.get("cores")
    label = f"{name or 'unknown CPU'}" + (f" x{count}" if count else "")
    if device.get("kind") not in (None, "CPU"):
        label += f", {device.get('count', 1)}x {device['kind']} {device.get('name', '?')}"
    return label


def round_seconds(bench: dict[str, Any]) -> list[float]:
    """Per-round window times: pytest-benchmark's round data, else the suite's own copy."""
    data = bench.get("stats", {}).get("data")
    if not isinstance(data, list) or not data:
        data = bench["extra_info"].get("window_s") or []
    return [float(s) for s in data]


def round_throughputs(bench: dict[str, Any]) -> list[float]:
    """Samples/s of each round (a round is one window of ``steps`` steps)."""
    info = bench["extra_info"]
    samples = float(info["steps"]) * float(info["samples_per_step"])
    return [samples / s for s in round_seconds(bench) if s > 0]


def setting_notes(baseline: SavedRun, current: SavedRun, normalize: bool) -> list[str]:
    """Differences in set-up that make absolute figures incomparable: say so rather than guess."""

    def settings(run: SavedRun) -> dict[tuple[str, str, str], dict]:
        out = {}
        for bench in run.benchmarks:
            info = bench["extra_info"]
            ds = info.get("dataset") or {}
            dev = info.get("device") or {}
            out[(info["workload"], info["api"], info["loop"])] = {
                "batch size": info.get("batch_size"),
                "steps per round": info.get("steps"),  # calibrated: the same on one machine unless its speed halved
                "data": f"{ds.get('source')} {ds.get('train_size')}",
                "device": f"{dev.get('kind')} {dev.get('name')}",
                "jit_compile": info.get("jit_compile"),
            }
        return out

    b, c = settings(baseline), settings(current)
    diffs: dict[str, set] = defaultdict(set)
    for key in (k for k in b if k in c):
        for name, value in b[key].items():
            if c[key][name] != value:
                diffs[name].add((str(value), str(c[key][name])))
    notes = []
    for name, pairs in diffs.items():
        text = "; ".join(f"{x} -> {y}" for x, y in sorted(pairs))
        advice = " (absolute figures do not travel between devices: use --normalize)" if name == "device" else ""
        if not (name == "device" and normalize):
            notes.append(f"{name} differs between baseline and current: {text}{advice}")
    return notes
