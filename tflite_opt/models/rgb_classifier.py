"""The RGB example: a small MobileNet-like classifier for the colored digits.

MobileNet's building block (a depthwise 3x3 conv then a pointwise 1x1 conv, each with
BatchNorm and ReLU6) at a width that trains in about a minute on 2 cores. It is the
model behind ``make rgb-example`` and the MediaPipe Tasks path in docs/android.md;
``tflite_opt.mobilenet_v2`` is the full-size architecture for real images.
"""

from __future__ import annotations

import numpy as np

from tflite_opt._keras import keras
from tflite_opt.data.digits import Dataset


def mobilenet_like(input_shape: tuple[int, int, int] = (32, 32, 3), num_classes: int = 10,
                   width: int = 16) -> keras.Model:
    """A stem conv, four depthwise-separable blocks (two with stride 2), pooling, softmax.

    Args:
        input_shape: ``(height, width, 3)``. Defaults to ``(32, 32, 3)``.
        num_classes: Output classes. Defaults to 10.
        width: Channels of the stem; blocks use 1x, 2x, 2x and 4x. Defaults to 16.

    Example:
        >>> model = mobilenet_like((32, 32, 3), num_classes=10)
    """
    layers = keras.layers

    def conv_bn(x, filters, kernel, stride, name):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                          name=f"{name}_conv")(x)
        x = layers.BatchNormalization(name=f"{name}_bn")(x)
        return layers.ReLU(6.0, name=f"{name}_relu")(x)

    def separable(x, filters, stride, name):
        x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False,
                                   name=f"{name}_dw")(x)
        x = layers.BatchNormalization(name=f"{name}_dw_bn")(x)
        x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
        return conv_bn(x, filters, 1, 1, f"{name}_pw")

    inputs = keras.Input(input_shape, name="image")
    x = conv_bn(inputs, width, 3, 2, "stem")
    x = separable(x, width, 1, "block1")
    x = separable(x, 2 * width, 2, "block2")
    x = separable(x, 2 * width, 1, "block3")
    x = separable(x, 4 * width, 2, "block4")
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    outputs = layers.Dense(num_classes, activation="softmax", name="classifier")(x)
    return keras.Model(inputs, outputs, name="digits_rgb_mobilenet")


def train_rgb_classifier(data: Dataset, epochs: int = 30, batch_size: int = 32,
                         learning_rate: float = 3e-3, width: int = 16, seed: int = 0,
                         verbose: int = 2) -> keras.Model:
    """Trains :func:`mobilenet_like` on ``data`` with Adam and cosine decay.

    Example:
        >>> model = train_rgb_classifier(load_digits_rgb(), epochs=30)
    """
    keras.utils.set_random_seed(seed)
    model = mobilenet_like(data.input_shape, data.num_classes, width)
    steps = epochs * int(np.ceil(len(data.x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size,
              validation_data=(data.x_test, data.y_test), verbose=verbose)
    return model
