"""Op names compared across runs: one model scope for a loop pooled over its model APIs.

Each record saves every op's name renumbered as a fresh process would number it (measure.opstats.canonical_names:
the same layer is ``conv2d_1`` in every run); a loop pooled over APIs still has each API's model name in front.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def model_scope(ops: dict[str, dict[str, Any]]) -> str | None:
    """The top-level scope holding the most self time once ``gradient_tape/`` is set aside: the model's."""
    time: dict[str, float] = defaultdict(float)
    for name, op in ops.items():
        time[name.removeprefix("gradient_tape/").split("/")[0]] += op["ms"]
    return max(time, key=lambda k: time[k]) if time else None


def rename_scope(ops: dict[str, dict[str, Any]], scope: str) -> dict[str, dict[str, Any]]:
    """The ops with the top-level scope ``scope`` (after any ``gradient_tape/``) named ``<model>``."""

    def renamed(name: str) -> str:
        tape = "gradient_tape/" if name.startswith("gradient_tape/") else ""
        first, sep, rest = name.removeprefix(tape).partition("/")
        return tape + ("<model>" if first == scope else first) + sep + rest

    return {renamed(n): op for n, op in ops.items()}
