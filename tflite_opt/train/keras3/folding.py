"""Batch-norm folding for QAT: a Conv2D/DepthwiseConv2D/Dense and the BatchNormalization
after it become one quantized op.

After training, ``BN(conv(x, W) + b)`` equals ``conv(x, W * s) + (beta + s * (b - mean))``
with ``s = gamma / sqrt(var + eps)`` per output channel. Quantizing ``W * s`` rather than
``W`` is what makes the int8 file match training: the converter would otherwise fold BN into
a kernel that was quantized before folding, or leave a float MUL/ADD behind.

During training the folded op must still behave like batch norm in training mode (batch
statistics, moving averages updated). This follows Krishnamoorthi, "Quantizing deep
convolutional networks for efficient inference" (2018), section 3.2 (the scheme tfmot's
experimental ``_ConvBatchNorm2D`` and TF's ``contrib.quantize`` implement): the kernel is
always folded with the *moving* standard deviation, so its quantization grid does not jump
with each batch, and the output is rescaled by ``sigma_moving / sigma_batch`` and shifted
with the batch mean, so training sees batch-norm statistics. That costs one extra float
convolution per step to measure the batch statistics.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from tflite_opt._keras import tf


BATCH_NORM_WEIGHTS = ("gamma", "beta", "moving_mean", "moving_variance")


@dataclasses.dataclass
class BatchNormVariables:
    """The variables of the folded BatchNormalization (channel vectors) and its settings."""

    gamma: tf.Variable | None  # None when the BN had scale=False
    beta: tf.Variable | None  # None when the BN had center=False
    moving_mean: tf.Variable
    moving_variance: tf.Variable
    epsilon: float
    momentum: float

    def scale(self, variance: tf.Tensor) -> tf.Tensor:
        """``gamma / sqrt(variance + eps)`` per channel."""
        inv_std = tf.math.rsqrt(variance + self.epsilon)
        return inv_std if self.gamma is None else self.gamma * inv_std

    def offset(self) -> tf.Tensor:
        return tf.zeros_like(self.moving_mean) if self.beta is None else self.beta


def folded_inference(compute: Callable[[tf.Tensor], tf.Tensor], kernel: tf.Tensor,
                     bias: tf.Tensor | None, bn: BatchNormVariables,
                     to_kernel_shape: Callable[[tf.Tensor], tf.Tensor],
                     quantize: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """``conv(x, q(W * s)) + beta + s * (b - moving_mean)`` with the moving statistics.

    Args:
        compute: The linear op, ``kernel -> output`` (conv or matmul of the layer input).
        kernel: The float kernel (after the preserve transforms).
        bias: The layer's own bias, or None.
        bn: The folded batch norm.
        to_kernel_shape: Reshapes a per-output-channel vector to broadcast over the kernel.
        quantize: The weight fake-quant.
    """
    scale = bn.scale(bn.moving_variance)
    folded_kernel = quantize(kernel * to_kernel_shape(scale))
    shift = -bn.moving_mean if bias is None else bias - bn.moving_mean
    return tf.nn.bias_add(compute(folded_kernel), bn.offset() + scale * shift)


def folded_training(compute: Callable[[tf.Tensor], tf.Tensor], kernel: tf.Tensor,
                    bias: tf.Tensor | None, bn: BatchNormVariables,
                    to_kernel_shape: Callable[[tf.Tensor], tf.Tensor],
                    quantize: Callable[[tf.Tensor], tf.Tensor]) -> tf.Tensor:
    """Batch norm in training mode on the quantized folded op; updates the moving statistics.

    Same arguments as :func:`folded_inference`.
    """
    float_out = compute(kernel)  # conv(x, W) without bias: the statistics batch norm sees
    axes = list(range(len(float_out.shape) - 1))
    batch_mean, batch_variance = tf.nn.moments(float_out, axes=axes)
    # Keras's BatchNormalization update: moving = moving * momentum + batch * (1 - momentum);
    # the layer bias shifts the mean batch norm saw, not the variance.
    seen_mean = batch_mean if bias is None else batch_mean + bias
    bn.moving_mean.assign(bn.moving_mean * bn.momentum
                          + tf.stop_gradient(seen_mean) * (1.0 - bn.momentum))
    bn.moving_variance.assign(bn.moving_variance * bn.momentum
                              + tf.stop_gradient(batch_variance) * (1.0 - bn.momentum))
    moving_scale = bn.scale(bn.moving_variance)
    batch_scale = bn.scale(batch_variance)
    quantized_out = compute(quantize(kernel * to_kernel_shape(moving_scale)))
    # q(W * s_moving) * (s_batch / s_moving) ~ W * s_batch: batch norm's training output.
    # (written with the variances so that a zero gamma cannot divide by zero)
    correction = (tf.sqrt(bn.moving_variance + bn.epsilon)
                  * tf.math.rsqrt(batch_variance + bn.epsilon))
    return quantized_out * correction + (bn.offset() - batch_scale * batch_mean)
