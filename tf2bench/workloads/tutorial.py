"""The tutorial's two workloads: its MNIST and CIFAR-100 CNNs, each written three ways.

Declared through the public :class:`Workload` like any user's; their data function is
:func:`tf2bench.workloads.images.image_classification`. Keras is imported only inside the
builders, so reading the registry does not import TensorFlow.
"""

from __future__ import annotations

from typing import Any

from tf2bench.workloads.images import image_classification
from tf2bench.workloads.workload import Workload, register_workload


def adam() -> Any:
    """The tutorial's optimizer: Adam with Keras's defaults (learning rate 1e-3)."""
    import keras

    return keras.optimizers.Adam(learning_rate=1e-3)


# --- the tutorial's MNIST CNN, three ways ----------------------------------------------

# The output layer computes in float32 under any mixed policy (Keras's mixed-precision guide): a float16 softmax
# over 100 classes loses the small probabilities the loss's log needs, and its sum drifts from 1. Under a float32
# policy this changes nothing.
OUTPUT_DTYPE = "float32"

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
            layers.Dense(10, activation="softmax", dtype=OUTPUT_DTYPE),
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
    outputs = layers.Dense(10, activation="softmax", dtype=OUTPUT_DTYPE)(x)
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
            self.dense2 = layers.Dense(10, activation="softmax", dtype=OUTPUT_DTYPE)

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
            layers.Dense(100, activation="softmax", dtype=OUTPUT_DTYPE),
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
    outputs = layers.Dense(100, activation="softmax", dtype=OUTPUT_DTYPE)(x)
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
            self.dense2 = layers.Dense(100, activation="softmax", dtype=OUTPUT_DTYPE)

        def call(self, x, training=False):
            x = self.pool1(self.conv1(x))
            x = self.pool2(self.conv2(x))
            return self.dense2(self.dense1(self.flatten(x)))

    return Cifar100Model()


register_workload(
    Workload(
        name="mnist",
        data=image_classification,
        loss="sparse_categorical_crossentropy",
        optimizer=adam,
        description="MNIST digits, 28x28x1 /255, 2xConv2D + 2xDense CNN (the tutorial's)",
        input_shape=MNIST_SHAPE,
        num_classes=10,
        models={
            "sequential": mnist_sequential,
            "functional": mnist_functional,
            "subclassing": mnist_subclassing,
        },
        keras_dataset="mnist",
        full_sizes=(60_000, 10_000),
    )
)
register_workload(
    Workload(
        name="cifar100",
        data=image_classification,
        loss="sparse_categorical_crossentropy",
        optimizer=adam,
        description="CIFAR-100, 32x32x3 /255, 2x(Conv2D+MaxPool) + 2xDense CNN (the tutorial's)",
        input_shape=CIFAR_SHAPE,
        num_classes=100,
        models={
            "sequential": cifar100_sequential,
            "functional": cifar100_functional,
            "subclassing": cifar100_subclassing,
        },
        keras_dataset="cifar100",
        full_sizes=(50_000, 10_000),
    )
)

BUILTIN_APIS = ("sequential", "functional", "subclassing")
BUILTIN = ("mnist", "cifar100")
