"""Keras 3 layers that compute Conv2D, DepthwiseConv2D and Dense on fake-quantized kernels.

Each replaces one layer of the user's model, optionally with the BatchNormalization after it
folded in (``folding.py``) and a ReLU/ReLU6 fused on its output, which is the shape of one
int8 TFLite op (CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED with a fused activation). The
kernel is fake-quantized per output channel (``quantizers.py``) after folding; PQAT/CQAT keep
the kernel's zeros and shared values (``preserve.py``). The op is written with ``tf.nn``
directly (TensorFlow backend only) so the exported graph is exactly what the TFLite converter
pattern-matches: ``FakeQuant(const kernel) -> Conv2D -> BiasAdd -> Relu6``.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np

from tflite_opt._keras import tf
from tflite_opt.errors import InvalidArgumentError
from tflite_opt.train.keras3 import folding, preserve
from tflite_opt.train.keras3.quantizers import (fake_quant_weights_per_channel,
                                                fake_quant_weights_per_tensor)

# Activations that TFLite fuses into CONV_2D/DEPTHWISE_CONV_2D/FULLY_CONNECTED.
FUSED_ACTIVATIONS = {"linear": tf.identity, "relu": tf.nn.relu, "relu6": tf.nn.relu6}


class QuantizedKernelLayer(keras.layers.Layer):
    """Base of the QAT replacements: kernel parameterization, BN folding, fused activation.

    Args:
        source_config: ``get_config()`` of the replaced Conv2D/DepthwiseConv2D/Dense.
        kernel_shape: Shape of the replaced layer's kernel.
        activation: Fused output activation: ``linear``, ``relu`` or ``relu6``.
        batch_norm: Settings of the folded BatchNormalization (``epsilon``, ``momentum``,
            ``center``, ``scale``), or None when there is none.
        keep_zeros: Keep the kernel's zeros (PQAT).
        num_centroids: Number of trainable shared values (CQAT), or None.
        initial_weights: Starting values by name (``kernel`` or ``centroids``+``indices``,
            ``mask``, ``bias``, ``gamma``, ``beta``, ``moving_mean``, ``moving_variance``);
            None when the weights are loaded from a file afterwards.
        **kwargs: Keras layer arguments (``name``, ...).
    """

    # Tells tflite_opt.convert that the model carries its own int8 ranges (no calibration).
    fake_quantizes = True

    def __init__(self, source_config: dict[str, Any], kernel_shape: tuple[int, ...],
                 activation: str = "linear", batch_norm: dict[str, Any] | None = None,
                 keep_zeros: bool = False, num_centroids: int | None = None,
                 initial_weights: dict[str, np.ndarray] | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if activation not in FUSED_ACTIVATIONS:
            raise InvalidArgumentError(f"activation is {activation!r}; accepted: "
                             f"{', '.join(FUSED_ACTIVATIONS)}")
        self.source_config = dict(source_config)
        self.kernel_shape = tuple(int(d) for d in kernel_shape)
        self.activation = activation
        self.batch_norm = dict(batch_norm) if batch_norm else None
        self.keep_zeros = bool(keep_zeros)
        self.num_centroids = None if num_centroids is None else int(num_centroids)
        self.use_bias = bool(self.source_config.get("use_bias", True))
        self._initial_weights = initial_weights

    # -- what a subclass defines -------------------------------------------------------
    @property
    def channels(self) -> int:
        return self.kernel_shape[-1]

    def linear(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def to_kernel_shape(self, per_channel: tf.Tensor) -> tf.Tensor:
        return per_channel  # broadcasts over a kernel whose last axis is the channel

    def quantize_kernel(self, kernel: tf.Tensor) -> tf.Tensor:
        return fake_quant_weights_per_channel(kernel)

    # -- variables ---------------------------------------------------------------------
    def build(self, input_shape: Any) -> None:
        def variable(name: str, shape: tuple[int, ...], trainable: bool = True,
                     dtype: str = "float32", initializer: str = "zeros") -> Any:
            return self.add_weight(name=name, shape=shape, initializer=initializer,
                                   trainable=trainable, dtype=dtype)

        if self.num_centroids:
            self.centroids = variable("centroids", (self.num_centroids,))
            self.indices = variable("indices", self.kernel_shape, trainable=False, dtype="int32")
        else:
            self.kernel = variable("kernel", self.kernel_shape)
        if self.keep_zeros:
            self.mask = variable("mask", self.kernel_shape, trainable=False, initializer="ones")
        self.bias = variable("bias", (self.channels,)) if self.use_bias else None
        self.bn = None
        if self.batch_norm:
            settings = self.batch_norm
            learn = not settings.get("frozen", False)
            self.bn = folding.BatchNormVariables(
                gamma=variable("gamma", (self.channels,), trainable=learn, initializer="ones")
                if settings.get("scale", True) else None,
                beta=variable("beta", (self.channels,), trainable=learn)
                if settings.get("center", True) else None,
                moving_mean=variable("moving_mean", (self.channels,), trainable=False),
                moving_variance=variable("moving_variance", (self.channels,), trainable=False,
                                         initializer="ones"),
                epsilon=float(settings["epsilon"]), momentum=float(settings["momentum"]))
        if self._initial_weights is not None:
            for name, value in self._initial_weights.items():
                owner = self.bn if name in folding.BATCH_NORM_WEIGHTS else self
                getattr(owner, name).assign(value)
            self._initial_weights = None  # the arrays are not kept alive with the model

    def float_kernel(self) -> tf.Tensor:
        """The kernel before folding and quantization (centroids gathered, zeros masked)."""
        kernel = (preserve.clustered_kernel(self.centroids, self.indices) if self.num_centroids
                  else self.kernel)
        return kernel * self.mask if self.keep_zeros else kernel

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        kernel = self.float_kernel()

        def compute(k: tf.Tensor) -> tf.Tensor:
            return self.linear(inputs, k)

        if self.bn is not None:
            # A frozen (non-trainable) BatchNormalization runs in inference mode in Keras.
            learning = training and not self.batch_norm.get("frozen", False)
            fold = folding.folded_training if learning else folding.folded_inference
            outputs = fold(compute, kernel, self.bias, self.bn, self.to_kernel_shape,
                           self.quantize_kernel)
        else:
            outputs = compute(self.quantize_kernel(kernel))
            if self.bias is not None:
                outputs = tf.nn.bias_add(outputs, self.bias)
        return FUSED_ACTIVATIONS[self.activation](outputs)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "source_config": self.source_config,
                "kernel_shape": list(self.kernel_shape), "activation": self.activation,
                "batch_norm": self.batch_norm, "keep_zeros": self.keep_zeros,
                "num_centroids": self.num_centroids}


def _strides(config: dict[str, Any], key: str) -> list[int]:
    value = config.get(key, 1)
    pair = (value, value) if isinstance(value, int) else tuple(value)
    return [1, int(pair[0]), int(pair[1]), 1]


@keras.saving.register_keras_serializable(package="tflite_opt")
class QuantizedConv2D(QuantizedKernelLayer):
    """Conv2D (channels_last, groups=1) on a per-channel fake-quantized kernel.

    Example:
        >>> layer = QuantizedConv2D(conv.get_config(), conv.kernel.shape,
        ...                         initial_weights={"kernel": conv.kernel.numpy(), "bias": ...})
    """

    def linear(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        cfg = self.source_config
        return tf.nn.conv2d(inputs, kernel, strides=_strides(cfg, "strides"),
                            padding=cfg["padding"].upper(),
                            dilations=_strides(cfg, "dilation_rate"))

    def compute_output_shape(self, input_shape: Any) -> Any:
        return keras.layers.Conv2D.from_config(self.source_config).compute_output_shape(input_shape)


@keras.saving.register_keras_serializable(package="tflite_opt")
class QuantizedDepthwiseConv2D(QuantizedKernelLayer):
    """DepthwiseConv2D (channels_last) on a per-channel fake-quantized kernel.

    The kernel is ``(kh, kw, in, multiplier)``; TFLite's channels are ``in * multiplier``,
    so per-channel ranges and the folded batch norm act on that flattened axis.

    Example:
        >>> layer = QuantizedDepthwiseConv2D(dw.get_config(), dw.kernel.shape,
        ...                                  initial_weights={"kernel": dw.kernel.numpy()})
    """

    @property
    def channels(self) -> int:
        return self.kernel_shape[2] * self.kernel_shape[3]

    def linear(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        cfg = self.source_config
        return tf.nn.depthwise_conv2d(inputs, kernel, strides=_strides(cfg, "strides"),
                                      padding=cfg["padding"].upper(),
                                      dilations=_strides(cfg, "dilation_rate")[1:3])

    def to_kernel_shape(self, per_channel: tf.Tensor) -> tf.Tensor:
        return tf.reshape(per_channel, self.kernel_shape[2:])

    def quantize_kernel(self, kernel: tf.Tensor) -> tf.Tensor:
        kh, kw, cin, mult = self.kernel_shape
        flat = fake_quant_weights_per_channel(tf.reshape(kernel, (kh, kw, cin * mult)))
        return tf.reshape(flat, self.kernel_shape)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return keras.layers.DepthwiseConv2D.from_config(
            self.source_config).compute_output_shape(input_shape)


@keras.saving.register_keras_serializable(package="tflite_opt")
class QuantizedDense(QuantizedKernelLayer):
    """Dense on a fake-quantized kernel: per tensor (see ``fake_quant_weights_per_tensor``).

    Example:
        >>> layer = QuantizedDense(dense.get_config(), dense.kernel.shape,
        ...                        initial_weights={"kernel": dense.kernel.numpy(), "bias": ...})
    """

    def linear(self, inputs: tf.Tensor, kernel: tf.Tensor) -> tf.Tensor:
        return tf.matmul(inputs, kernel)

    def quantize_kernel(self, kernel: tf.Tensor) -> tf.Tensor:
        return fake_quant_weights_per_tensor(kernel)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return (*input_shape[:-1], self.kernel_shape[-1])


# The Keras layer class each QAT layer replaces.
QUANTIZED_LAYERS: dict[type, type[QuantizedKernelLayer]] = {
    keras.layers.Conv2D: QuantizedConv2D,
    keras.layers.DepthwiseConv2D: QuantizedDepthwiseConv2D,
    keras.layers.Dense: QuantizedDense,
}
