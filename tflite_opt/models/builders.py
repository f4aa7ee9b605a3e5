"""Example architectures used by the default job, tests and benchmarks.

Efficient-architecture builders (and the architecture search) plug in here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tflite_opt._keras import keras, keras_of_flavor


def digits_cnn(input_shape: tuple[int, int, int] = (32, 32, 1), num_classes: int = 10,
               width: int = 16, dense_units: int = 64, flavor: str = "tf_keras") -> Any:
    """The default CNN of the main job: three conv blocks and a two-layer head.

    Most weights sit in the middle convolutions and the first dense layer, which is
    where pruning and clustering act (the first conv and the classifier are skipped
    by the default policy, as users usually do).

    Args:
        input_shape: ``(height, width, channels)``. Defaults to ``(32, 32, 1)``.
        num_classes: Classifier outputs. Defaults to 10.
        width: Filters of the first conv; later blocks use 2x and 4x. Defaults to 16.
        dense_units: Units of the hidden dense layer. Defaults to 64.
        flavor: ``tf_keras`` or ``keras3``: which Keras builds it (the same layers and names,
            so the two Kerases can be compared on one recipe). Defaults to tf_keras.

    Example:
        >>> model = digits_cnn()
        >>> model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        >>> twin = digits_cnn((16, 16, 1), width=8, dense_units=32, flavor="keras3")
    """
    keras = keras_of_flavor(flavor)
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


def dense_mlp(input_shape: tuple[int, ...] = (32, 32, 1), num_classes: int = 10,
              hidden: tuple[int, ...] = (512, 256), flavor: str = "tf_keras") -> Any:
    """A Dense-heavy model (flatten then fully connected layers), with either Keras (``flavor``).

    Example:
        >>> model = dense_mlp(hidden=(128,))
    """
    keras = keras_of_flavor(flavor)
    inputs = keras.Input(shape=input_shape, name="image")
    x = keras.layers.Flatten(name="flatten")(inputs)
    for i, units in enumerate(hidden):
        x = keras.layers.Dense(units, activation="relu", name=f"dense{i + 1}")(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="dense_mlp")


def mobilenet_v2(input_shape: tuple[int, int, int] = (96, 96, 3), num_classes: int = 10,
                 alpha: float = 0.35) -> keras.Model:
    """``tf_keras.applications.MobileNetV2`` with random weights (nothing downloads).

    Example:
        >>> model = mobilenet_v2((96, 96, 3), alpha=0.35)
    """
    return keras.applications.MobileNetV2(input_shape=input_shape, alpha=alpha, weights=None,
                                          classes=num_classes, classifier_activation="softmax")


def with_activation_outliers(model: keras.Model, layer: str, next_layer: str, x: np.ndarray,
                             num_units: int = 2, factor: float = 300.0) -> keras.Model:
    """A copy of ``model`` computing the same function, with a few huge activation units.

    ReLU is positively homogeneous, so scaling some units of ``layer`` by ``factor``
    and the matching input rows of ``next_layer`` by ``1/factor`` leaves the float
    outputs unchanged. Per-tensor int8 activation quantization then spends its range
    on those units and rounds the others to zero: the channel-range imbalance that
    cross-layer equalization exists to fix. Tests and benchmarks use it to make a
    model that plain int8 PTQ honestly hurts. The scaled units are the ``num_units``
    most active ones on ``x`` (a dead ReLU unit scaled by any factor is still zero).

    Example:
        >>> hostile = with_activation_outliers(model, "dense1", "classifier", x_train[:200])
    """
    probe = keras.Model(model.input, model.get_layer(layer).output)
    units = list(np.argsort(probe.predict(x, verbose=0).reshape(len(x), -1).mean(0))[-num_units:])
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    w, b = clone.get_layer(layer).get_weights()
    w[..., units] *= factor
    b[units] *= factor
    clone.get_layer(layer).set_weights([w, b])
    wn, bn = clone.get_layer(next_layer).get_weights()
    wn[units, :] /= factor
    clone.get_layer(next_layer).set_weights([wn, bn])
    return clone
