"""A workload's data, loaded and checked: arrays (or tf.data datasets) in, one ``Dataset`` out, with provenance.

``load`` never swaps data silently: the source actually used, why, the sizes and the cache
file's hash go into ``Dataset.provenance`` (saved with every result). The built-in image
sources (keras cache / download, embedded MNIST, synthetic) live in ``images.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tf2bench import nest
from tf2bench.errors import BadInputError, UnknownNameError
from tf2bench.workloads.workload import Workload, required_positional

SOURCES = ("auto", "keras", "embedded", "synthetic")


@dataclass
class Dataset:
    """Arrays ready for training (float32 /255 with a channel axis, int32 labels)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DataRequest:
    """What a run asks a workload's data function for; a data function may ignore it."""

    workload: Workload
    source: str = "auto"
    train_size: int | None = None  # None: all the function has
    test_size: int | None = None


def load(
    workload: Workload,
    source: str = "auto",
    *,
    train_size: int | None = None,
    test_size: int | None = None,
) -> Dataset:
    """Call ``workload.data`` and check what it returns; sizes cut a fixed prefix (the data is pre-shuffled)."""
    if source not in SOURCES:
        raise UnknownNameError("dataset", source, SOURCES)
    request = DataRequest(workload, source, train_size, test_size)
    fn = workload.data
    where = f"workload {workload.name!r}: data"
    takes_request = _takes_argument(fn)
    raw = fn(request) if takes_request else fn()
    if isinstance(raw, Dataset):
        dataset = raw
    else:
        dataset = _from_user(workload, raw, where)
        dataset.provenance.update(
            {
                "name": workload.name,
                "source": "workload",
                "requested": source,
                "note": f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}: the workload's own",
            }
        )
    x_train, y_train = _checked(dataset.x_train, dataset.y_train, f"{where} (train)")
    x_test, y_test = _checked(dataset.x_test, dataset.y_test, f"{where} (test)")
    available = (len(y_train), len(y_test))
    if not takes_request or not isinstance(raw, Dataset):  # the function did not cut the sizes itself
        for kind, size, have in (("train", train_size, available[0]), ("test", test_size, available[1])):
            if size is not None and size > have:
                raise BadInputError(f"{workload.name}: {kind} size {size} > the {have} samples the workload's data has")
        if train_size is not None:
            x_train, y_train = nest.take(x_train, slice(0, train_size)), y_train[:train_size]
        if test_size is not None:
            x_test, y_test = nest.take(x_test, slice(0, test_size)), y_test[:test_size]
    provenance = {
        **dataset.provenance,
        "train_size": len(y_train),
        "test_size": len(y_test),
    }
    provenance.setdefault("available", list(available))
    provenance.setdefault("subset", (len(y_train), len(y_test)) != tuple(provenance["available"]))
    return Dataset(x_train, y_train, x_test, y_test, provenance)


def _takes_argument(fn: Any) -> bool:
    """A data function gets the DataRequest if it has a required positional parameter or one named ``request``."""
    import inspect

    required = required_positional(fn)
    try:
        named = "request" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        named = False
    return bool(required) or named


def _from_user(workload: Workload, raw: Any, where: str) -> Dataset:
    """((x_train, y_train), (x_test, y_test)) arrays, or (train, test) tf.data datasets, as a Dataset."""
    if not isinstance(raw, (tuple, list)) or len(raw) != 2:
        raise BadInputError(
            f"{where} returned {type(raw).__name__}; expected ((x_train, y_train), (x_test, y_test)) "
            "or (train, test) tf.data datasets"
        )
    parts = []
    for kind, part in zip(("train", "test"), raw, strict=True):
        if type(part).__module__.startswith("tensorflow") and hasattr(part, "element_spec"):
            part = _materialize(part, f"{where} ({kind})")
        if not isinstance(part, (tuple, list)) or len(part) != 2:
            raise BadInputError(f"{where}: the {kind} part must be (x, y) or a tf.data dataset of (x, y)")
        parts.extend(part)
    x_train, y_train, x_test, y_test = parts
    return Dataset(x_train, y_train, x_test, y_test, {})


def _materialize(ds: Any, where: str) -> tuple[Any, np.ndarray]:
    """A finite tf.data dataset of (x, y), batched or not, as arrays: tf2bench owns batching and order,
    so every loop sees the same batches."""
    import tensorflow as tf

    if ds.cardinality() == tf.data.INFINITE_CARDINALITY:
        raise BadInputError(f"{where}: the tf.data dataset is infinite (.repeat()?); give a finite one")
    spec = ds.element_spec
    if not isinstance(spec, tuple) or len(spec) != 2:
        raise BadInputError(f"{where}: the tf.data dataset must yield (x, y) pairs, yields {spec}")
    batched = all(s.shape.rank and s.shape[0] is None for s in tf.nest.flatten(spec))
    if batched:
        ds = ds.unbatch()
    chunks = list(ds.batch(1 << 14).as_numpy_iterator())
    if not chunks:
        raise BadInputError(f"{where}: the tf.data dataset is empty")
    x = tf.nest.map_structure(lambda *a: np.concatenate(a), *[c[0] for c in chunks])
    y = np.concatenate([c[1] for c in chunks])
    return x, y


def _checked(x: Any, y: Any, where: str) -> tuple[Any, np.ndarray]:
    """Inputs normalized (lists -> tuples), labels integer class ids, the same number of each."""
    try:
        x = nest.normalize(x)
        n = nest.n_samples(x)
    except (ValueError, TypeError) as exc:
        raise BadInputError(f"{where}: x is not an array, a tuple or a dict of arrays ({exc})") from None
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1 or len(y) != n:
        raise BadInputError(f"{where}: x holds {n} samples ({nest.describe(x)}) but y has shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise BadInputError(
                f"{where}: y must be integer class labels (tf2bench compares loops by test accuracy), got {y.dtype}"
            )
    return x, np.ascontiguousarray(y.astype(np.int32))
