"""Keras 3 twins of the example architectures in ``builders.py`` (which are tf_keras).

The same layers, names and defaults, built with ``import keras`` (Keras 3), so the two
Kerases can be compared on one recipe (``benchmarks/suites/keras3.py``) and tests can run
the Keras 3 paths on the model the tf_keras paths use.
"""

from __future__ import annotations

from typing import Any


def digits_cnn_keras3(input_shape: tuple[int, int, int] = (32, 32, 1), num_classes: int = 10,
                      width: int = 16, dense_units: int = 64) -> Any:
    """``builders.digits_cnn`` in Keras 3: three conv blocks (two with BatchNorm), a dense head.

    Args:
        input_shape: ``(height, width, channels)``. Defaults to ``(32, 32, 1)``.
        num_classes: Classifier outputs. Defaults to 10.
        width: Filters of the first conv; later blocks use 2x and 4x. Defaults to 16.
        dense_units: Units of the hidden dense layer. Defaults to 64.

    Example:
        >>> model = digits_cnn_keras3((16, 16, 1), width=8, dense_units=32)
        >>> model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    """
    import keras

    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Conv2D(width, 3, padding="same", activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(2 * width, 3, padding="same", name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.ReLU(name="relu2")(x)
    x = keras.layers.MaxPooling2D(name="pool2")(x)
    x = keras.layers.Conv2D(4 * width, 3, padding="same", name="conv3")(x)
    x = keras.layers.BatchNormalization(name="bn3")(x)
    x = keras.layers.ReLU(name="relu3")(x)
    x = keras.layers.MaxPooling2D(name="pool3")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense1")(x)
    x = keras.layers.Dropout(0.3, name="dropout")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")
