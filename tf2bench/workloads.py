"""The workloads: what is trained, on what data shape, with which model per API.

A workload is declared with :class:`Workload` and :func:`register_workload`; the two
tutorial workloads below use the same public path. Keras is imported inside the
builders so that reading the registry (CLI, report) does not import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from tf2bench.errors import BadInputError
from tf2bench.registry import Registry

ModelBuilder = Callable[[], Any]  # returns a fresh, uncompiled keras.Model


@dataclass(frozen=True)
class Workload:
    """Everything a training loop needs to know about a model and its data.

    ``models`` maps an API name to a builder of a fresh, uncompiled model; every
    builder of one workload must compute the same function (tests prove it).
    """

    name: str
    description: str
    input_shape: tuple[int, ...]
    num_classes: int
    models: Mapping[str, ModelBuilder]
    batch_size: int = 32
    learning_rate: float = 1e-3
    expected_params: int | None = None
    keras_dataset: str | None = None  # keras.datasets module name, if real data exists
    full_sizes: tuple[int, int] | None = None  # (train, test) of the real dataset
    reference_accuracy: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise BadInputError(f"workload name must be alphanumeric (with - or _), got {self.name!r}")
        if not self.models:
            raise BadInputError(f"workload {self.name!r}: no model builder given (models={{api: builder}})")
        for api, builder in self.models.items():
            if not callable(builder):
                raise BadInputError(f"workload {self.name!r}: model builder for api {api!r} is not callable")
        if self.batch_size <= 0 or self.num_classes <= 1 or self.learning_rate <= 0:
            raise BadInputError(f"workload {self.name!r}: batch_size, learning_rate must be > 0 and num_classes > 1")

    @property
    def apis(self) -> list[str]:
        return list(self.models)


WORKLOADS: Registry[Workload] = Registry("workload")


def register_workload(workload: Workload) -> Workload:
    return WORKLOADS.register(workload.name, workload)


def get_workload(name: str) -> Workload:
    return WORKLOADS.get(name)


# --- the tutorial's MNIST CNN, three ways ----------------------------------------------

MNIST_SHAPE = (28, 28, 1)
CIFAR_SHAPE = (32, 32, 3)


def mnist_sequential() -> Any:
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(MNIST_SHAPE),
            layers.Conv2D(32, 3, activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(128, activation="relu"),
            layers.Dense(10, activation="softmax"),
        ],
        name="mnist_sequential",
    )


def mnist_functional() -> Any:
    import keras
    from keras import layers

    inputs = keras.Input(MNIST_SHAPE)
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    outputs = layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="mnist_functional")


def mnist_subclassing() -> Any:
    import keras
    from keras import layers

    class MnistModel(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="mnist_subclassing")
            self.conv1 = layers.Conv2D(32, 3, activation="relu")
            self.conv2 = layers.Conv2D(64, 3, activation="relu")
            self.flatten = layers.Flatten()
            self.dense1 = layers.Dense(128, activation="relu")
            self.dense2 = layers.Dense(10, activation="softmax")

        def call(self, x, training=False):
            x = self.conv2(self.conv1(x))
            return self.dense2(self.dense1(self.flatten(x)))

    return MnistModel()


# --- the tutorial's CIFAR-100 CNN, three ways ------------------------------------------


def cifar100_sequential() -> Any:
    import keras
    from keras import layers

    return keras.Sequential(
        [
            keras.Input(CIFAR_SHAPE),
            layers.Conv2D(16, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dense(100, activation="softmax"),
        ],
        name="cifar100_sequential",
    )


def cifar100_functional() -> Any:
    import keras
    from keras import layers

    inputs = keras.Input(CIFAR_SHAPE)
    x = layers.Conv2D(16, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(32, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(256, activation="relu")(x)
    outputs = layers.Dense(100, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="cifar100_functional")


def cifar100_subclassing() -> Any:
    import keras
    from keras import layers

    class Cifar100Model(keras.Model):
        def __init__(self) -> None:
            super().__init__(name="cifar100_subclassing")
            self.conv1 = layers.Conv2D(16, 3, activation="relu")
            self.pool1 = layers.MaxPooling2D(2)
            self.conv2 = layers.Conv2D(32, 3, activation="relu")
            self.pool2 = layers.MaxPooling2D(2)
            self.flatten = layers.Flatten()
            self.dense1 = layers.Dense(256, activation="relu")
            self.dense2 = layers.Dense(100, activation="softmax")

        def call(self, x, training=False):
            x = self.pool1(self.conv1(x))
            x = self.pool2(self.conv2(x))
            return self.dense2(self.dense1(self.flatten(x)))

    return Cifar100Model()


register_workload(
    Workload(
        name="mnist",
        description="MNIST digits, 28x28x1 /255, 2xConv2D + 2xDense CNN (the tutorial's)",
        input_shape=MNIST_SHAPE,
        num_classes=10,
        models={
            "sequential": mnist_sequential,
            "functional": mnist_functional,
            "subclassing": mnist_subclassing,
        },
        expected_params=4_738_826,
        keras_dataset="mnist",
        full_sizes=(60_000, 10_000),
        reference_accuracy={"sequential": 0.9872, "functional": 0.9884, "subclassing": 0.9885},
    )
)
register_workload(
    Workload(
        name="cifar100",
        description="CIFAR-100, 32x32x3 /255, 2x(Conv2D+MaxPool) + 2xDense CNN (the tutorial's)",
        input_shape=CIFAR_SHAPE,
        num_classes=100,
        models={
            "sequential": cifar100_sequential,
            "functional": cifar100_functional,
            "subclassing": cifar100_subclassing,
        },
        expected_params=325_956,
        keras_dataset="cifar100",
        full_sizes=(50_000, 10_000),
        reference_accuracy={"sequential": 0.3546, "functional": 0.3556, "subclassing": 0.3539},
    )
)

BUILTIN_APIS = ("sequential", "functional", "subclassing")
