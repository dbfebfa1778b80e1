"""Files that are never half-written and never overwrite an earlier run.

Everything tf2bench writes goes through ``atomic_write``: a temporary file in the same
directory, then a rename (or a hard link, when the target must not exist yet), so an
interrupted run leaves either the whole file or nothing.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Where everything generated goes, relative to the working directory (the suite: pytest's rootdir). Named once.
RESULTS = Path("results")
BENCHMARKS = RESULTS / "benchmarks"  # numbered pytest-benchmark runs
REPORTS = RESULTS / "reports"  # tf2bench report / history output
TRACES = RESULTS / "traces"  # profiler traces (--profile)


def atomic_write(path: Path, data: bytes, *, overwrite: bool = True) -> None:
    """Write ``data`` to ``path`` atomically; with ``overwrite=False`` an existing file is an error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if overwrite:
            os.replace(tmp, path)
        else:
            os.link(tmp, path)  # fails with FileExistsError rather than replace an earlier run
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
