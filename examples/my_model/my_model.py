"""An example workload: a small MLP on synthetic tabular data (8 features, 3 classes).

The data is generated here (three Gaussian clusters, deterministic): it says what it is,
and it needs no download. Replace ``build_mlp`` and ``tabular_data`` with your own.
"""

import keras
import numpy as np

import tf2bench


def build_mlp() -> keras.Model:
    """A fresh, uncompiled model: every training loop trains its own copy from the same seed."""
    return keras.Sequential(
        [
            keras.Input((8,)),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(3, activation="softmax"),
        ],
        name="tabular_mlp",
    )


def tabular_data():
    """((x_train, y_train), (x_test, y_test)): 2,400 / 600 samples of three overlapping clusters."""
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(3, 8))
    y = rng.integers(0, 3, size=3000)
    x = (centers[y] + rng.normal(scale=1.2, size=(3000, 8))).astype("float32")
    return (x[:2400], y[:2400]), (x[2400:], y[2400:])


workload = tf2bench.Workload(
    name="tabular_mlp",
    model=build_mlp,
    data=tabular_data,
    loss="sparse_categorical_crossentropy",
    optimizer=lambda: keras.optimizers.Adam(learning_rate=1e-3),
    batch_size=32,
)
