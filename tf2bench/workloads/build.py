"""Build a workload's model for one API with seeded weights; count parameters and FLOPs."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from tf2bench import nest
from tf2bench.errors import BadInputError, reason
from tf2bench.workloads.workload import Workload


def build(workload: Workload, api: str, seed: int, sample: Any = None) -> Any:
    """A fresh model whose initial weights depend only on ``(workload, seed)``.

    The seed is set right before the builder runs, so every loop of one case
    starts from the same weights; ``weights_fingerprint`` lets results prove it.
    """
    import keras

    if api not in workload.models:
        from tf2bench.errors import UnknownNameError

        raise UnknownNameError(f"api of workload {workload.name!r}", api, workload.models)
    keras.utils.set_random_seed(seed)
    model = workload.models[api]()
    if not isinstance(model, keras.Model):
        raise BadInputError(
            f"workload {workload.name!r}: model builder for {api!r} returned {type(model).__name__}, not a keras.Model"
        )
    if getattr(model, "compiled", False) or getattr(model, "optimizer", None) is not None:
        raise BadInputError(
            f"workload {workload.name!r}: model builder for {api!r} returned a compiled model; "
            "return it uncompiled (tf2bench compiles it for the fit loops)"
        )
    if not model.built or not model.weights:  # e.g. a subclassed model: calling it creates the weights
        if sample is None and workload.input_shape is not None:
            import numpy as np

            sample = np.zeros((1, *workload.input_shape), dtype="float32")
        if sample is None:
            raise BadInputError(
                f"workload {workload.name!r}: model {api!r} has no weights yet and no sample to build it"
            )
        call_on_sample(workload, api, model, sample)
    return model


def call_on_sample(workload: Workload, api: str, model: Any, sample: Any) -> Any:
    """``model(sample)``, with an error that names the workload's data when they do not fit."""
    from tf2bench import nest

    try:
        return model(sample, training=False)
    except Exception as exc:  # Keras raises ValueError, TypeError, KeyError or a TF op error here
        raise BadInputError(
            f"workload {workload.name!r}: the data does not fit model {api!r}: inputs {nest.describe(sample)} "
            f"-> {type(exc).__name__}: {reason(exc)}"
        ) from exc


def param_count(model: Any) -> int:
    return int(sum(int(w.shape.num_elements()) for w in model.weights))


def weights_fingerprint(model: Any) -> str:
    """Short hash of all weights, in order: equal fingerprints mean identical weights."""
    digest = hashlib.sha256()
    for w in model.weights:
        digest.update(w.numpy().tobytes())
    return digest.hexdigest()[:16]


# The compact image of a model's weights saved with every result (the "same math" tier of the verdicts).
# A count sketch (a sparse random projection): element i of the flattened weights is added, with a random sign,
# to one of SKETCH_SIZE buckets. It is linear, so sketch(a) - sketch(b) = sketch(a - b), and ||sketch(z)||^2 is
# an unbiased estimate of ||z||^2 with relative variance <= 2 / SKETCH_SIZE (norm within ~9% at 64 buckets, 1
# sigma): plenty to tell a rounding difference (1e-7..1e-3 of an update) from different math (1e-1 and up).
# Both constants are part of the saved format: changing them makes old and new sketches incomparable.
SKETCH_SIZE = 64
SKETCH_SEED = 20261130


@functools.lru_cache(maxsize=8)
def _sketch_hash(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SKETCH_SEED)
    buckets = rng.integers(0, SKETCH_SIZE, size=n, dtype=np.int64)
    signs = rng.integers(0, 2, size=n, dtype=np.int8).astype(np.float64) * 2.0 - 1.0
    return buckets, signs


def flat_weights(model: Any) -> np.ndarray:
    """Every weight of the model, in order, as one float64 vector (trainable and not, e.g. BatchNorm stats)."""
    parts = [np.asarray(w.numpy(), dtype=np.float64).ravel() for w in model.weights]
    return np.concatenate(parts) if parts else np.zeros(0)


def sketch(flat: np.ndarray) -> np.ndarray:
    """The count sketch of a flat vector: SKETCH_SIZE floats, the same hash for every vector of its length."""
    buckets, signs = _sketch_hash(len(flat))
    return np.bincount(buckets, weights=flat * signs, minlength=SKETCH_SIZE)


def weights_image(model: Any) -> dict[str, Any]:
    """The saved image of a model's weights: its count sketch, its exact global L2 norm and its size."""
    flat = flat_weights(model)
    return {"sketch": [float(v) for v in sketch(flat)], "norm": float(np.linalg.norm(flat)), "size": int(len(flat))}


def random_layers(model: Any) -> list[str]:
    """The kinds of layer that draw random numbers in training (Dropout, GaussianNoise, ...): Keras 3 gives each
    a SeedGenerator. A loop with another random stream (XLA's own RNG) trains with other masks than fit."""
    layers = model._flatten_layers(include_self=False, recursive=True)
    return sorted({type(layer).__name__ for layer in layers if getattr(layer, "_seed_generators", None)})


@dataclass(frozen=True)
class Flops:
    """FLOPs per sample (multiply and add counted as 2) of the Conv2D and Dense layers.

    ``train`` = forward + backward: the backward pass costs one forward for the weight
    gradients and one for the input gradients, except the first layer, whose input
    gradient is never computed. Bias adds, activations and pooling are left out (< 1%).
    """

    forward: int | None  # None: declared by the workload (training FLOPs only)
    train: int


def count_flops(model: Any) -> Flops:
    """FLOPs per sample from the layer shapes of a Sequential or Functional model."""
    import keras

    total = 0
    first: int | None = None
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.Conv2D):
            out = layer.output.shape  # (None, H, W, C_out)
            k_h, k_w = layer.kernel_size
            c_in = layer.input.shape[-1]
            macs = out[1] * out[2] * out[3] * k_h * k_w * c_in // layer.groups
        elif isinstance(layer, keras.layers.Dense):
            macs = int(layer.input.shape[-1]) * layer.units
        else:
            continue
        flops = 2 * int(macs)
        total += flops
        if first is None:
            first = flops
    if first is None:
        raise BadInputError(f"model {model.name!r} has no Conv2D or Dense layer to count FLOPs from")
    return Flops(forward=total, train=3 * total - first)


_FLOPS: dict[int, tuple[Workload, Flops | None]] = {}  # id -> (the workload, kept alive; its count)


def flops_per_sample(workload: Workload) -> Flops | None:
    """Declared on the workload, else counted on the first API whose layers have symbolic shapes
    (Sequential/Functional); None when neither (MFU is then not reported). Counted once per workload:
    counting builds a model, which every result would otherwise pay for."""
    cached = _FLOPS.get(id(workload))
    if cached is None or cached[0] is not workload:
        cached = _FLOPS[id(workload)] = (workload, _count_workload(workload))
    return cached[1]


def _count_workload(workload: Workload) -> Flops | None:
    if workload.flops_per_sample is not None:
        return Flops(forward=None, train=workload.flops_per_sample)
    for builder in workload.models.values():
        model = builder()
        try:
            return count_flops(model)
        except (AttributeError, ValueError, BadInputError):  # subclassed: no layer.output; no Conv2D/Dense
            continue
    return None


EVAL_BATCH = 500


def evaluate(model: Any, loss_fn: Any, x: Any, y: np.ndarray) -> tuple[float, float, np.ndarray]:
    """Test accuracy, mean loss and per-sample correctness, in inference mode, batch by batch.

    Accuracy: argmax over the outputs; a single output is a binary classifier, thresholded at
    0.5 (probabilities) or 0 (logits, when the loss says ``from_logits``). The per-sample
    correctness is what the quality tier of the verdicts pairs between two loops.
    """
    loss_sum, correct = 0.0, []
    from_logits = bool(getattr(loss_fn, "from_logits", False) or getattr(loss_fn, "_fn_kwargs", {}).get("from_logits"))
    for i in range(0, len(y), EVAL_BATCH):
        out = model(nest.take(x, slice(i, i + EVAL_BATCH)), training=False)
        yb = y[i : i + EVAL_BATCH]
        loss_sum += float(loss_fn(yb, out)) * len(yb)
        out = np.asarray(out, dtype=np.float32).reshape(len(yb), -1)
        guess = np.argmax(out, axis=-1) if out.shape[1] > 1 else (out[:, 0] > (0.0 if from_logits else 0.5))
        correct.append(guess == yb)
    hits = np.concatenate(correct) if correct else np.zeros(0, dtype=bool)
    return float(np.mean(hits)) if len(hits) else 0.0, loss_sum / len(y), hits
