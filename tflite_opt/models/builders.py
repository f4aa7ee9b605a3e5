"""Example architectures used by the default job, tests and benchmarks.

Efficient-architecture builders (and the architecture search) plug in here.
"""

from __future__ import annotations

from tflite_opt._keras import keras


def digits_cnn(input_shape: tuple[int, int, int] = (32, 32, 1), num_classes: int = 10,
               width: int = 16, dense_units: int = 64) -> keras.Model:
    """The default CNN of the main job: three conv blocks and a two-layer head.

    Most weights sit in the middle convolutions and the first dense layer, which is
    where pruning and clustering act (the first conv and the classifier are skipped
    by the default policy, as users usually do).

    Args:
        input_shape: ``(height, width, channels)``. Defaults to ``(32, 32, 1)``.
        num_classes: Classifier outputs. Defaults to 10.
        width: Filters of the first conv; later blocks use 2x and 4x. Defaults to 16.
        dense_units: Units of the hidden dense layer. Defaults to 64.

    Example:
        >>> model = digits_cnn()
        >>> model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    """
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
              hidden: tuple[int, ...] = (512, 256)) -> keras.Model:
    """A Dense-heavy model (flatten then fully connected layers).

    Example:
        >>> model = dense_mlp(hidden=(128,))
    """
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
