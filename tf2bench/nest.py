"""Model inputs as one array, a tuple of arrays or a dict of arrays (a multi-input model).

Every loop indexes samples the same way through these helpers, so a two-input Functional
model goes through the same batches as a one-input CNN. Lists become tuples on entry:
tf.data would stack a list of arrays into one tensor. No TensorFlow import here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

Inputs = Any  # np.ndarray | tuple[np.ndarray, ...] | dict[str, np.ndarray]


def normalize(x: Any) -> Inputs:
    """Arrays as contiguous numpy arrays; lists as tuples; dicts keep their keys."""
    if isinstance(x, Mapping):
        return {str(k): normalize(v) for k, v in x.items()}
    if isinstance(x, (tuple, list)):
        return tuple(normalize(v) for v in x)
    return np.ascontiguousarray(np.asarray(x))


def map_inputs(fn: Callable[[np.ndarray], Any], x: Inputs) -> Any:
    if isinstance(x, Mapping):
        return {k: map_inputs(fn, v) for k, v in x.items()}
    if isinstance(x, tuple):
        return tuple(map_inputs(fn, v) for v in x)
    return fn(x)


def leaves(x: Inputs) -> list[np.ndarray]:
    if isinstance(x, Mapping):
        return [leaf for v in x.values() for leaf in leaves(v)]
    if isinstance(x, tuple):
        return [leaf for v in x for leaf in leaves(v)]
    return [x]


def n_samples(x: Inputs) -> int:
    """Samples along the first axis; every input must have the same number."""
    counts = {len(leaf) if leaf.ndim else 0 for leaf in leaves(x)}
    if len(counts) != 1:
        raise ValueError(f"the inputs hold different numbers of samples: {sorted(counts)}")
    return counts.pop()


def take(x: Inputs, index: Any) -> Inputs:
    """``x[index]`` for every input (an int, a slice or an index array)."""
    return map_inputs(lambda a: a[index], x)


def stack(samples: Sequence[Inputs]) -> Inputs:
    """One batch from single samples (the eager loop builds its batches this way)."""
    first = samples[0]
    if isinstance(first, Mapping):
        return {k: stack([s[k] for s in samples]) for k in first}
    if isinstance(first, tuple):
        return tuple(stack([s[i] for s in samples]) for i in range(len(first)))
    return np.stack(samples)


def describe(x: Inputs) -> str:
    """Shapes and dtypes, for error messages: ``(100, 8) float32`` or ``{a: (100, 3) float32, ...}``."""
    if isinstance(x, Mapping):
        return "{" + ", ".join(f"{k}: {describe(v)}" for k, v in x.items()) + "}"
    if isinstance(x, tuple):
        return "(" + ", ".join(describe(v) for v in x) + ")"
    return f"{tuple(x.shape)} {x.dtype}"
