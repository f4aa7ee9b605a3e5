"""Efficient architectures for small inputs: MobileNetV2-, MobileNetV3-small- and ShuffleNetV2-like.

Each builder takes a width multiplier (channels), a depth multiplier (blocks per stage), the
depthwise kernel size and the input resolution, and builds the same graph with either Keras
(``flavor="tf_keras"`` or ``"keras3"``): the layers used exist with the same arguments in both.

Why not ``keras.applications``: its MobileNetV2/MobileNetV3Small take a width (``alpha``) but no
depth or kernel size, start with a stride-2 stem sized for 224x224 images (a 32x32 digit is 1x1
after five stride-2 stages), and tf_keras's MobileNetV3 builds its hard-swish from raw TF ops
(``TFOpLambda`` layers). :func:`mobilenet_v3_small` and ``builders.mobilenet_v2`` give the
applications models as they are.
The stage tables below are the papers' (Sandler et al. 2018; Howard et al. 2019; Ma et al.
2018), shortened for digits: fewer stride-2 stages and narrower channels at ``width=1``.

Only standard layers are used (no Lambda, no custom classes), so the models save, load safely
and convert to int8: hard-sigmoid is ``Rescaling(1/6, offset=0.5)`` then ``ReLU(max_value=1)``;
ShuffleNet's channel split is ``Reshape`` + ``Cropping2D`` and its shuffle ``Reshape`` +
``Permute``.
"""

from __future__ import annotations

import math
from typing import Any

from tflite_opt._keras import keras_of_flavor
from tflite_opt.errors import InvalidArgumentError

# BatchNorm's moving statistics follow the batches faster than Keras's 0.99: a digits epoch is
# ~45 steps, and with 0.99 a 3-epoch model still scored chance in inference mode (97% in training).
BN_MOMENTUM = 0.9

# MobileNetV2 inverted residuals: (expansion, channels at width 1, repeats at depth 1, stride).
MOBILENET_V2_STAGES = ((1, 16, 1, 1), (4, 24, 2, 2), (4, 32, 2, 2), (4, 64, 2, 2), (4, 96, 1, 1))
# MobileNetV3-small: (big kernel?, expansion channels, channels, squeeze-excite, hard-swish,
# stride); "big kernel" blocks use ``kernel_size`` (5 in the paper), the others 3.
MOBILENET_V3_SMALL_BLOCKS = (
    (False, 16, 16, True, False, 2), (False, 72, 24, False, False, 2),
    (False, 88, 24, False, False, 1), (True, 96, 40, True, True, 2),
    (True, 240, 40, True, True, 1), (True, 120, 48, True, True, 1), (True, 144, 48, True, True, 1),
)
# ShuffleNetV2: (channels at width 1, units at depth 1); every stage starts with a stride-2 unit.
SHUFFLENET_V2_STAGES = ((48, 2), (96, 4), (192, 2))


def _check(builder: str, input_shape: Any, num_classes: Any, width: Any, depth: Any,
           kernel_size: Any) -> None:
    if not (isinstance(input_shape, (tuple, list)) and len(input_shape) == 3 and
            all(isinstance(v, int) and v >= 1 for v in input_shape) and min(input_shape[:2]) >= 8):
        raise InvalidArgumentError(f"{builder}: input_shape is {input_shape!r}; accepted: "
                                   "(height, width, channels) with height and width >= 8")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 2:
        raise InvalidArgumentError(f"{builder}: num_classes is {num_classes!r}; accepted: an "
                                   "integer >= 2")
    for name, value in (("width", width), ("depth", depth)):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                not 0.0 < value <= 4.0:
            raise InvalidArgumentError(f"{builder}: {name} is {value!r}; accepted: a multiplier "
                                       "in (0, 4], e.g. 0.5 or 1.0")
    if not isinstance(kernel_size, int) or kernel_size not in (3, 5, 7):
        raise InvalidArgumentError(f"{builder}: kernel_size is {kernel_size!r}; accepted: 3, 5 "
                                   "or 7 (the depthwise kernel)")


def _channels(value: float, divisor: int = 8) -> int:
    """``value`` rounded to a multiple of ``divisor``, never below 90% of it (MobileNet's rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _repeats(n: int, depth: float) -> int:
    return max(1, math.ceil(n * depth))


def _conv_bn(K: Any, x: Any, filters: int, kernel: int, stride: int, name: str,
             activation: str | None = "relu6") -> Any:
    x = K.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                        name=f"{name}_conv")(x)
    x = K.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_bn")(x)
    return _activation(K, x, activation, name)


def _depthwise_bn(K: Any, x: Any, kernel: int, stride: int, name: str,
                  activation: str | None = "relu6") -> Any:
    x = K.layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                 name=f"{name}_dw")(x)
    x = K.layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"{name}_dw_bn")(x)
    return _activation(K, x, activation, f"{name}_dw")


def _hard_sigmoid(K: Any, x: Any, name: str) -> Any:
    # relu6(x + 3) / 6 == clip(x / 6 + 0.5, 0, 1), from two standard layers.
    x = K.layers.Rescaling(1.0 / 6.0, offset=0.5, name=f"{name}_hs_scale")(x)
    return K.layers.ReLU(max_value=1.0, name=f"{name}_hs_clip")(x)


def _activation(K: Any, x: Any, activation: str | None, name: str) -> Any:
    if activation is None:
        return x
    if activation == "relu6":
        return K.layers.ReLU(6.0, name=f"{name}_relu6")(x)
    if activation == "relu":
        return K.layers.ReLU(name=f"{name}_relu")(x)
    # hard-swish: x * hard_sigmoid(x)
    return K.layers.Multiply(name=f"{name}_hswish")([x, _hard_sigmoid(K, x, name)])


def _classifier(K: Any, x: Any, num_classes: int, hidden: int | None = None,
                hidden_activation: str = "relu") -> Any:
    x = K.layers.GlobalAveragePooling2D(name="pool")(x)
    if hidden:
        x = K.layers.Dense(hidden, name="head")(x)
        x = _activation(K, x, hidden_activation, "head")
    return K.layers.Dense(num_classes, activation="softmax", name="classifier")(x)


def mobilenet_v2_like(input_shape: tuple[int, int, int] = (32, 32, 1), num_classes: int = 10, *,
                      width: float = 1.0, depth: float = 1.0, kernel_size: int = 3,
                      flavor: str = "tf_keras") -> Any:
    """A MobileNetV2-like network: inverted residual blocks (1x1 expand, depthwise, 1x1 project).

    Args:
        input_shape: ``(height, width, channels)``; height and width >= 8. Defaults to
            ``(32, 32, 1)`` (the digits).
        num_classes: Classifier outputs. Defaults to 10.
        width: Channel multiplier. Defaults to 1.0 (140k parameters at 32x32x1, 10 classes).
        depth: Multiplier of the blocks per stage (rounded up). Defaults to 1.0 (8 blocks).
        kernel_size: Depthwise kernel, 3, 5 or 7. Defaults to 3.
        flavor: ``tf_keras`` or ``keras3``: which Keras builds it. Defaults to tf_keras.

    Raises:
        InvalidArgumentError: an argument out of range (the message names it).

    Example:
        >>> model = mobilenet_v2_like((32, 32, 1), width=0.5, flavor="keras3")
        >>> model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    """
    K = keras_of_flavor(flavor)
    _check("mobilenet_v2_like", input_shape, num_classes, width, depth, kernel_size)
    inputs = K.Input(shape=tuple(input_shape), name="image")
    x = _conv_bn(K, inputs, _channels(16 * width), 3, 1, "stem")
    block = 0
    for expansion, channels, repeats, stride in MOBILENET_V2_STAGES:
        out = _channels(channels * width)
        for i in range(_repeats(repeats, depth)):
            block += 1
            name = f"block{block}"
            shortcut = x
            in_channels = x.shape[-1]
            if expansion != 1:
                x = _conv_bn(K, x, in_channels * expansion, 1, 1, f"{name}_expand")
            x = _depthwise_bn(K, x, kernel_size, stride if i == 0 else 1, name)
            x = _conv_bn(K, x, out, 1, 1, f"{name}_project", activation=None)
            if (stride == 1 or i > 0) and in_channels == out:
                x = K.layers.Add(name=f"{name}_add")([shortcut, x])
    x = _conv_bn(K, x, _channels(max(128, 128 * width)), 1, 1, "top")
    return K.Model(inputs, _classifier(K, x, num_classes), name="mobilenet_v2_like")


def _squeeze_excite(K: Any, x: Any, name: str) -> Any:
    channels = x.shape[-1]
    s = K.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_se_pool")(x)
    s = K.layers.Conv2D(_channels(channels / 4), 1, activation="relu", name=f"{name}_se_reduce")(s)
    s = K.layers.Conv2D(channels, 1, name=f"{name}_se_expand")(s)
    s = _hard_sigmoid(K, s, f"{name}_se")
    return K.layers.Multiply(name=f"{name}_se_scale")([x, s])


def mobilenet_v3_small_like(input_shape: tuple[int, int, int] = (32, 32, 1),
                            num_classes: int = 10, *, width: float = 1.0, depth: float = 1.0,
                            kernel_size: int = 5, flavor: str = "tf_keras") -> Any:
    """A MobileNetV3-small-like network: inverted residuals with squeeze-excite and hard-swish.

    The paper's first seven blocks (its last stride-2 stage dropped for small inputs), a
    stride-1 stem, a 1x1 conv, pooling, a hard-swish hidden layer and the classifier.

    Args:
        input_shape: ``(height, width, channels)``; height and width >= 8. Defaults to
            ``(32, 32, 1)``.
        num_classes: Classifier outputs. Defaults to 10.
        width: Channel multiplier. Defaults to 1.0 (228k parameters at 32x32x1, 10 classes).
        depth: Multiplier of each block's repeats (rounded up). Defaults to 1.0 (7 blocks).
        kernel_size: Depthwise kernel of the later (hard-swish) blocks; the first ones keep 3.
            Defaults to 5, as in the paper.
        flavor: ``tf_keras`` or ``keras3``. Defaults to tf_keras.

    Raises:
        InvalidArgumentError: an argument out of range (the message names it).

    Example:
        >>> model = mobilenet_v3_small_like((32, 32, 1), width=0.75, kernel_size=3)
    """
    K = keras_of_flavor(flavor)
    _check("mobilenet_v3_small_like", input_shape, num_classes, width, depth, kernel_size)
    inputs = K.Input(shape=tuple(input_shape), name="image")
    x = _conv_bn(K, inputs, _channels(16 * width), 3, 1, "stem", activation="hswish")
    block = 0
    for big, expansion, channels, se, hswish, stride in MOBILENET_V3_SMALL_BLOCKS:
        for i in range(_repeats(1, depth)):
            block += 1
            name = f"block{block}"
            shortcut = x
            in_channels = x.shape[-1]
            activation = "hswish" if hswish else "relu"
            exp = _channels(expansion * width)
            if exp != in_channels:
                x = _conv_bn(K, x, exp, 1, 1, f"{name}_expand", activation=activation)
            x = _depthwise_bn(K, x, kernel_size if big else 3, stride if i == 0 else 1, name,
                              activation=activation)
            if se:
                x = _squeeze_excite(K, x, name)
            out = _channels(channels * width)
            x = _conv_bn(K, x, out, 1, 1, f"{name}_project", activation=None)
            if (stride == 1 or i > 0) and in_channels == out:
                x = K.layers.Add(name=f"{name}_add")([shortcut, x])
    x = _conv_bn(K, x, _channels(288 * width), 1, 1, "top", activation="hswish")
    outputs = _classifier(K, x, num_classes, hidden=_channels(256 * width),
                          hidden_activation="hswish")
    return K.Model(inputs, outputs, name="mobilenet_v3_small_like")


def mobilenet_v3_small(input_shape: tuple[int, int, int] = (32, 32, 1), num_classes: int = 10,
                       *, width: float = 1.0, minimalistic: bool = False,
                       flavor: str = "keras3") -> Any:
    """``keras.applications.MobileNetV3Small`` itself, random weights (nothing downloads).

    The published architecture, for when depth and kernel size need not change (then use
    :func:`mobilenet_v3_small_like`). Its stem and four stride-2 stages are sized for 224x224:
    a 32x32 input ends at 1x1, and its 1,024-unit head holds most of the parameters (1.0M at
    ``width=0.75``). tf_keras's version computes hard-swish with raw TF ops (``TFOpLambda``).

    Args:
        input_shape: ``(height, width, channels)``; height and width >= 32. Defaults to
            ``(32, 32, 1)``.
        num_classes: Classifier outputs. Defaults to 10.
        width: ``alpha``, the channel multiplier. Defaults to 1.0.
        minimalistic: No squeeze-excite, hard-swish or 5x5 kernels. Defaults to False.
        flavor: ``keras3`` or ``tf_keras``. Defaults to keras3.

    Example:
        >>> model = mobilenet_v3_small((32, 32, 1), width=0.75)
    """
    K = keras_of_flavor(flavor)
    _check("mobilenet_v3_small", input_shape, num_classes, width, 1.0, 3)
    if min(input_shape[:2]) < 32:
        raise InvalidArgumentError(f"mobilenet_v3_small: input_shape is {tuple(input_shape)!r}; "
                                   "keras.applications.MobileNetV3Small needs height and width "
                                   ">= 32 (use mobilenet_v3_small_like for smaller inputs)")
    return K.applications.MobileNetV3Small(
        input_shape=tuple(input_shape), alpha=width, minimalistic=minimalistic, weights=None,
        classes=num_classes, include_preprocessing=False, classifier_activation="softmax")


def _channel_half(K: Any, x: Any, first: bool, name: str) -> Any:
    # (h, w, c) -> (h*w, 2, c/2), crop one of the two rows of axis 2, back to (h, w, c/2):
    # a strided slice in the .tflite, without a Lambda layer.
    h, w, c = x.shape[1:]
    y = K.layers.Reshape((h * w, 2, c // 2), name=f"{name}_split_view")(x)
    y = K.layers.Cropping2D(((0, 0), (0, 1) if first else (1, 0)), name=f"{name}_split")(y)
    return K.layers.Reshape((h, w, c // 2), name=f"{name}_split_out")(y)


def _channel_shuffle(K: Any, x: Any, name: str) -> Any:
    h, w, c = x.shape[1:]
    y = K.layers.Reshape((h, w, 2, c // 2), name=f"{name}_shuffle_view")(x)
    y = K.layers.Permute((1, 2, 4, 3), name=f"{name}_shuffle")(y)
    return K.layers.Reshape((h, w, c), name=f"{name}_shuffle_out")(y)


def shufflenet_v2_like(input_shape: tuple[int, int, int] = (32, 32, 1), num_classes: int = 10, *,
                       width: float = 1.0, depth: float = 1.0, kernel_size: int = 3,
                       flavor: str = "tf_keras") -> Any:
    """A ShuffleNetV2-like network: channel split, a 1x1-depthwise-1x1 branch, concat, shuffle.

    Args:
        input_shape: ``(height, width, channels)``; height and width >= 8. Defaults to
            ``(32, 32, 1)``.
        num_classes: Classifier outputs. Defaults to 10.
        width: Channel multiplier. Defaults to 1.0 (135k parameters at 32x32x1, 10 classes).
        depth: Multiplier of the units per stage (rounded up). Defaults to 1.0 (8 units).
        kernel_size: Depthwise kernel, 3, 5 or 7. Defaults to 3.
        flavor: ``tf_keras`` or ``keras3``. Defaults to tf_keras.

    Raises:
        InvalidArgumentError: an argument out of range (the message names it).

    Example:
        >>> model = shufflenet_v2_like((32, 32, 1), width=0.5, depth=2.0, flavor="keras3")
    """
    K = keras_of_flavor(flavor)
    _check("shufflenet_v2_like", input_shape, num_classes, width, depth, kernel_size)
    inputs = K.Input(shape=tuple(input_shape), name="image")
    x = _conv_bn(K, inputs, _channels(24 * width), 3, 1, "stem", activation="relu")
    unit = 0
    for channels, repeats in SHUFFLENET_V2_STAGES:
        half = _channels(channels * width) // 2
        for i in range(_repeats(repeats, depth)):
            unit += 1
            name = f"unit{unit}"
            if i == 0:  # stride 2: both branches see the whole input
                left = _depthwise_bn(K, x, kernel_size, 2, f"{name}_left", activation=None)
                left = _conv_bn(K, left, half, 1, 1, f"{name}_left_pw", activation="relu")
                right, stride = x, 2
            else:
                left = _channel_half(K, x, True, f"{name}_left")
                right, stride = _channel_half(K, x, False, f"{name}_right"), 1
            right = _conv_bn(K, right, half, 1, 1, f"{name}_pw1", activation="relu")
            right = _depthwise_bn(K, right, kernel_size, stride, name, activation=None)
            right = _conv_bn(K, right, half, 1, 1, f"{name}_pw2", activation="relu")
            x = K.layers.Concatenate(name=f"{name}_concat")([left, right])
            x = _channel_shuffle(K, x, name)
    x = _conv_bn(K, x, _channels(256 * width), 1, 1, "top", activation="relu")
    return K.Model(inputs, _classifier(K, x, num_classes), name="shufflenet_v2_like")
