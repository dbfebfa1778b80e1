"""The workloads: what is trained, on which data, with which loss and optimizer.

A workload is declared with :class:`Workload` and :func:`register_workload` — the public
API for bringing your own model. The two tutorial workloads below are declared through
the same path (their data function is :func:`tf2bench.workloads.images.image_classification`).
Keras is imported only inside builders and factories, so reading the registry (CLI,
report) does not import TensorFlow.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tf2bench.errors import BadInputError, check_positive_int
from tf2bench.registry import Registry

ModelBuilder = Callable[[], Any]  # returns a fresh, uncompiled keras.Model
DataFunction = Callable[..., Any]  # () or (DataRequest) -> arrays, tf.data datasets or a data.Dataset
SINGLE_API = "model"  # the api name of a workload declared with model= (one builder)


@dataclass(frozen=True, kw_only=True)
class Workload:
    """Everything a training loop needs to know about a model and its data.

    Required: ``name``, the model (``model=builder`` or ``models={api: builder}``; every
    builder returns a fresh, uncompiled ``keras.Model``, and the builders of one workload
    compute the same function), ``data`` and ``loss``. ``data`` returns
    ``((x_train, y_train), (x_test, y_test))`` — x an array, a tuple or a dict of arrays
    (multi-input models), y integer class labels — or ``(train, test)`` finite
    ``tf.data`` datasets of ``(x, y)``, or a :class:`tf2bench.workloads.data.Dataset`. It may take one
    argument, a :class:`tf2bench.workloads.data.DataRequest` (source and sizes the run asks for).
    ``loss``: a Keras loss name, a ``keras.losses.Loss`` or a function ``(y_true, y_pred)``.
    ``optimizer``: a function returning a fresh optimizer (every loop gets its own), or a
    Keras optimizer name; default Adam at ``learning_rate``.
    ``flops_per_sample``: training FLOPs per sample, if tf2bench cannot count them from
    the layer shapes (it counts Conv2D and Dense layers of a Sequential/Functional model).
    """

    name: str
    data: DataFunction | None = None
    loss: Any = None
    model: ModelBuilder | None = None
    models: Mapping[str, ModelBuilder] = field(default_factory=dict)
    optimizer: Any = None
    batch_size: int = 32
    learning_rate: float = 1e-3
    flops_per_sample: int | None = None
    description: str = ""
    # Built-in image workloads: the shape and classes of the images, and the real dataset behind them.
    input_shape: tuple[int, ...] | None = None
    num_classes: int | None = None
    keras_dataset: str | None = None  # keras.datasets module name, if real data exists
    full_sizes: tuple[int, int] | None = None  # (train, test) of the real dataset

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.replace("_", "").replace("-", "").isalnum():
            raise BadInputError(f"workload name must be alphanumeric (with - or _), got {self.name!r}")
        where = f"workload {self.name!r}"
        if self.model is not None and self.models:
            raise BadInputError(f"{where}: give model= (one builder) or models={{api: builder}}, not both")
        if self.model is not None:
            object.__setattr__(self, "models", {SINGLE_API: self.model})
        if not self.models:
            raise BadInputError(f"{where}: no model given (model=a function returning a fresh keras.Model)")
        if not isinstance(self.models, Mapping):
            raise BadInputError(f"{where}: models must map an api name to a builder, got {type(self.models).__name__}")
        for api, builder in self.models.items():
            if not callable(builder) or _is_keras_object(builder):
                raise BadInputError(
                    f"{where}: the model for api {api!r} must be a function that builds a fresh model, "
                    f"got {type(builder).__name__} (every loop trains its own copy)"
                )
        if self.data is None or not callable(self.data):
            raise BadInputError(
                f"{where}: no data function (data=a function returning ((x_train, y_train), (x_test, y_test)) "
                "or (train, test) tf.data datasets)"
            )
        if self.loss is None:
            raise BadInputError(
                f"{where}: no loss given (loss='sparse_categorical_crossentropy', a keras.losses.Loss, "
                "or a function (y_true, y_pred))"
            )
        if not isinstance(self.loss, str) and not callable(self.loss):
            raise BadInputError(f"{where}: loss must be a Keras loss name, a Loss or a function, got {self.loss!r}")
        if self.optimizer is not None and not isinstance(self.optimizer, str):
            if not callable(self.optimizer) or _is_keras_object(self.optimizer):
                raise BadInputError(
                    f"{where}: optimizer must be a function returning a fresh optimizer (or a Keras optimizer name), "
                    f"got {type(self.optimizer).__name__}: one instance would carry its state from loop to loop"
                )
        for name in ("batch_size", "flops_per_sample"):
            if getattr(self, name) is not None or name == "batch_size":
                check_positive_int(f"{where}: {name}", getattr(self, name), parse=False)
        if not self.learning_rate > 0:
            raise BadInputError(f"{where}: learning_rate must be > 0, got {self.learning_rate!r}")
        if self.num_classes is not None and self.num_classes <= 1:
            raise BadInputError(f"{where}: num_classes must be > 1, got {self.num_classes!r}")

    @property
    def apis(self) -> list[str]:
        return list(self.models)

    def make_loss(self) -> Any:
        """A ``keras.losses.Loss`` (mean over the batch) from the declared loss."""
        import keras

        loss = self.loss
        try:
            if isinstance(loss, str):
                camel = "".join(part.capitalize() for part in loss.split("_"))  # the Loss class, reduced by mean
                try:
                    loss = keras.losses.get(camel) if "_" in loss else keras.losses.get(loss)
                except (ValueError, TypeError):
                    loss = keras.losses.get(loss)
            elif inspect.isclass(loss):
                loss = loss()
            elif not isinstance(loss, keras.losses.Loss) and required_positional(loss) == []:
                loss = loss()  # a factory
        except (ValueError, TypeError) as exc:
            raise BadInputError(f"workload {self.name!r}: loss {self.loss!r} is not a Keras loss ({exc})") from None
        if isinstance(loss, keras.losses.Loss):
            return loss
        if callable(loss):
            return _function_loss(loss)
        raise BadInputError(f"workload {self.name!r}: loss {self.loss!r} gave {type(loss).__name__}, not a loss")

    def make_optimizer(self) -> Any:
        """A fresh optimizer for one loop."""
        import keras

        if self.optimizer is None:
            return keras.optimizers.Adam(learning_rate=self.learning_rate)
        try:
            opt = keras.optimizers.get(self.optimizer) if isinstance(self.optimizer, str) else self.optimizer()
        except (ValueError, TypeError) as exc:
            raise BadInputError(f"workload {self.name!r}: optimizer {self.optimizer!r} failed: {exc}") from None
        if not isinstance(opt, keras.optimizers.Optimizer):
            raise BadInputError(
                f"workload {self.name!r}: the optimizer factory returned {type(opt).__name__}, not a keras optimizer"
            )
        return opt


def _function_loss(fn: Callable[[Any, Any], Any]) -> Any:
    """A per-sample loss function as a ``keras.losses.Loss`` (mean over the batch, like Keras's own)."""
    import keras

    class FunctionLoss(keras.losses.Loss):
        def call(self, y_true: Any, y_pred: Any) -> Any:
            return fn(y_true, y_pred)

    return FunctionLoss(name=getattr(fn, "__name__", "loss"))


def _is_keras_object(obj: Any) -> bool:
    """A built model or optimizer passed where a factory belongs (without importing keras)."""
    module = type(obj).__module__ or ""
    return module.startswith(("keras", "tf_keras", "tensorflow")) and not inspect.isfunction(obj)


WORKLOADS: Registry[Workload] = Registry("workload")


def register_workload(workload: Workload) -> Workload:
    if not isinstance(workload, Workload):
        raise BadInputError(f"register_workload needs a tf2bench.Workload, got {type(workload).__name__}")
    return WORKLOADS.register(workload.name, workload)


def get_workload(name: str) -> Workload:
    return WORKLOADS.get(name)


def load_spec(spec: str) -> Workload:
    """Import ``"package.module:attribute"`` (a Workload, or a function returning one) and register it.

    Registering the same object twice is fine; a different workload under a taken name is an error.
    """
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise BadInputError(f"workload spec {spec!r} must look like 'package.module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BadInputError(f"workload spec {spec!r}: cannot import {module_name!r} ({exc})") from None
    try:
        obj = getattr(module, attr)
    except AttributeError:
        found = sorted(k for k, v in vars(module).items() if isinstance(v, Workload))
        raise BadInputError(
            f"workload spec {spec!r}: {module_name} has no {attr!r}; workloads in it: {', '.join(found) or 'none'}"
        ) from None
    if not isinstance(obj, Workload) and callable(obj):
        obj = obj()
    if not isinstance(obj, Workload):
        raise BadInputError(f"workload spec {spec!r} is a {type(obj).__name__}, not a tf2bench.Workload")
    if obj.name in WORKLOADS.names():
        if WORKLOADS.get(obj.name) is not obj:
            raise BadInputError(f"workload spec {spec!r}: the name {obj.name!r} is taken by another workload")
        return obj
    return register_workload(obj)


def required_positional(fn: Any) -> list[str] | None:
    """Names of ``fn``'s required positional parameters plus any named ``request``; None: no signature."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return None
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in params if p.kind in positional and p.default is inspect.Parameter.empty]
