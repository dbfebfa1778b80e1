"""`tf2bench tensorboard`: serve the suite's profiler traces on loopback and print the URL.

TensorBoard (with the xprof profile plugin) binds 127.0.0.1 only: traces name hosts,
paths and command lines, so they are not published to the network by default.
By default it serves the newest run under results/traces, one TensorBoard run per benchmark.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from tf2bench.errors import EXIT_BAD_INPUT, EXIT_OK
from tf2bench.saved import storage

HOST = "127.0.0.1"
DEFAULT_TRACES = storage.TRACES


def latest_run(traces: Path) -> Path | None:
    """The newest run directory (by name: run ids are timestamps) under ``traces``, if any."""
    runs = sorted(p for p in traces.iterdir() if p.is_dir()) if traces.is_dir() else []
    return runs[-1] if runs else None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``tf2bench tensorboard`` (cli.py adds them to its subcommand)."""
    parser.add_argument(
        "--logdir",
        type=Path,
        default=None,
        help=f"a run's trace directory (default: the newest run under {DEFAULT_TRACES})",
    )
    parser.add_argument("--port", type=int, default=6006, help="port on 127.0.0.1 (default 6006; 0 picks a free one)")


def serve(logdir: Path | None, port: int) -> int:
    """Serve ``logdir`` until interrupted (Ctrl+C: a normal end); returns an exit code."""
    logdir = logdir if logdir is not None else latest_run(DEFAULT_TRACES)
    if logdir is None or not logdir.is_dir():
        where = logdir if logdir is not None else f"{DEFAULT_TRACES}/<run-id>"
        print(f"tf2bench tensorboard: no traces at {where}; make some with `pytest bench --profile`", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not 0 <= port <= 65535:
        print(f"tf2bench tensorboard: --port must be 0..65535, got {port}", file=sys.stderr)
        return EXIT_BAD_INPUT

    from tensorboard import program

    board = program.TensorBoard()
    board.configure(logdir=str(logdir.resolve()), host=HOST, port=port)
    try:
        url = board.launch()
    except program.TensorBoardServerException as exc:  # e.g. the port is taken
        print(f"tf2bench tensorboard: {exc.msg} (try --port 0)", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(f"TensorBoard serving {logdir} at {url}#profile  (Ctrl+C to stop)", flush=True)
    try:
        threading.Event().wait()  # TensorBoard serves from its own threads
    except KeyboardInterrupt:  # the way to stop it: a normal end
        pass
    return EXIT_OK
