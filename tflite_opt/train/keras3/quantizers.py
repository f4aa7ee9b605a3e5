"""Fake quantization for Keras 3 QAT: per-channel weights and EMA-tracked activation ranges.

Both go through ``tf.quantization.fake_quant_with_min_max_vars(_per_channel)``: those are
the ops the TFLite converter reads quantization parameters from, so a graph that carries them
converts to a full-int8 model without calibration data. The numerics follow TFLite's int8
spec: weights symmetric per output channel in narrow range [-127, 127] (zero point 0),
activations asymmetric per tensor in [-128, 127] with zero exactly representable.

Keras 3 has no fake-quant layer for this (its ``model.quantize()`` is post-training only) and
tfmot's quantizers are tf_keras objects, so these are written here; the range tracking is
tfmot's ``MovingAvgQuantize`` / ``AllValuesQuantize`` (``quant_ops.py``) in Keras 3 form.
"""

from __future__ import annotations

from typing import Any

import keras

from tflite_opt._keras import tf
from tflite_opt.errors import InvalidArgumentError

NUM_BITS = 8
# Range statistics: "ema" follows the batch ranges with an exponential moving average
# (tfmot's MovingAverageQuantizer, for layer outputs); "all_values" keeps the widest range
# seen (tfmot's AllValuesQuantizer, for the model inputs).
RANGE_MODES = ("ema", "all_values")


def fake_quant_weights_per_tensor(kernel: tf.Tensor) -> tf.Tensor:
    """Fake-quantizes ``kernel`` with one symmetric narrow range for the whole tensor.

    For Dense kernels, as tfmot's default 8-bit scheme does: the converter transposes a
    Dense kernel into FULLY_CONNECTED's ``(out, in)`` layout, and it rejects that transpose
    on a per-channel quantized constant ("mismatched quantized axes").

    Example:
        >>> wq = fake_quant_weights_per_tensor(tf.constant([[0.5, -1.0], [0.25, 0.1]]))
    """
    magnitude = tf.maximum(tf.reduce_max(tf.abs(kernel)), 1e-8)
    return tf.quantization.fake_quant_with_min_max_vars(
        kernel, -magnitude, magnitude, num_bits=NUM_BITS, narrow_range=True)


def fake_quant_weights_per_channel(kernel: tf.Tensor) -> tf.Tensor:
    """Fake-quantizes ``kernel`` per channel of its last axis, symmetric, narrow range.

    The range of each channel is its largest magnitude, read from the tensor itself at every
    step (tfmot's ``LastValueQuantizer``). In the exported graph the kernel is a constant, so
    the converter folds the range into the int8 per-channel scales.

    Args:
        kernel: A float kernel whose last axis is the output channel.

    Returns:
        The kernel rounded to ``scale * q`` with integer ``q`` in [-127, 127] per channel;
        the gradient passes straight through inside the range.

    Example:
        >>> wq = fake_quant_weights_per_channel(tf.constant([[0.5, -1.0], [0.25, 0.1]]))
    """
    reduce_axes = list(range(len(kernel.shape) - 1))
    magnitude = tf.reduce_max(tf.abs(kernel), axis=reduce_axes)
    # An all-zero channel (fully pruned) still needs a non-empty range; its values stay 0.
    magnitude = tf.maximum(magnitude, 1e-8)
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        kernel, -magnitude, magnitude, num_bits=NUM_BITS, narrow_range=True)


@keras.saving.register_keras_serializable(package="tflite_opt")
class ActivationFakeQuant(keras.layers.Layer):
    """Fake-quantizes a tensor per tensor (asymmetric int8) with a range learned in training.

    In training, the range follows the batch minimum and maximum (widened to include 0):
    with ``mode="ema"`` as an exponential moving average started from the first batch,
    with ``mode="all_values"`` as the widest range seen. In inference the stored range is
    used as is, and the converter reads it as the tensor's int8 scale and zero point.

    Args:
        mode: ``"ema"`` or ``"all_values"``. Defaults to ``"ema"``.
        ema_decay: Weight of the old range per training step with ``mode="ema"``.
            Defaults to 0.999 (tfmot's default).
        **kwargs: Keras layer arguments (``name``, ...).

    Example:
        >>> x = keras.Input((4,))
        >>> y = ActivationFakeQuant(name="x_quant")(keras.layers.Dense(3)(x))
    """

    # Tells tflite_opt.convert that the model carries its own int8 ranges (no calibration).
    fake_quantizes = True

    def __init__(self, mode: str = "ema", ema_decay: float = 0.999, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in RANGE_MODES:
            raise InvalidArgumentError(f"mode is {mode!r}; accepted: {', '.join(RANGE_MODES)}")
        if not 0.0 <= ema_decay < 1.0:
            raise InvalidArgumentError(f"ema_decay is {ema_decay!r}; accepted: a float in [0, 1)")
        self.mode = mode
        self.ema_decay = float(ema_decay)

    def build(self, input_shape: Any) -> None:
        # tfmot's starting range, so that an untrained QAT model still computes something;
        # the first training batch replaces it.
        self.range_min = self.add_weight(name="range_min", shape=(),
                                         initializer=keras.initializers.Constant(-6.0),
                                         trainable=False)
        self.range_max = self.add_weight(name="range_max", shape=(),
                                         initializer=keras.initializers.Constant(6.0),
                                         trainable=False)
        # Batches seen; the first one sets the range instead of being averaged into zeros.
        self.batches_seen = self.add_weight(name="batches_seen", shape=(), initializer="zeros",
                                            trainable=False)

    def call(self, inputs: tf.Tensor, training: bool | None = None) -> tf.Tensor:
        if training:
            self._track_range(inputs)
        low = tf.identity(self.range_min)
        high = tf.identity(self.range_max)
        return tf.quantization.fake_quant_with_min_max_vars(
            inputs, low, tf.maximum(high, low + 1e-6), num_bits=NUM_BITS, narrow_range=False)

    def _track_range(self, inputs: tf.Tensor) -> None:
        batch_min = tf.minimum(tf.reduce_min(inputs), 0.0)
        batch_max = tf.maximum(tf.reduce_max(inputs), 0.0)
        first = tf.equal(self.batches_seen, 0.0)
        if self.mode == "ema":
            decay = tf.where(first, 0.0, self.ema_decay)
            new_min = decay * self.range_min + (1.0 - decay) * batch_min
            new_max = decay * self.range_max + (1.0 - decay) * batch_max
        else:
            new_min = tf.where(first, batch_min, tf.minimum(self.range_min, batch_min))
            new_max = tf.where(first, batch_max, tf.maximum(self.range_max, batch_max))
        self.range_min.assign(new_min)
        self.range_max.assign(new_max)
        self.batches_seen.assign_add(1.0)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode, "ema_decay": self.ema_decay}
