"""The on-device training graph: forward, hand-written backward, loss and update, as tf.functions.

``TrainingModule`` holds the head's trainable weights and the optimizer's state in resource
variables (TFLite's ``VAR_HANDLE``/``READ_VARIABLE``/``ASSIGN_VARIABLE`` builtins) and exposes
the four signatures of TFLite's on-device training recipe, and one for the learning rate:

- ``train(x, y) -> {"loss"}``: one optimizer step on a batch; the loss before the step.
- ``infer(x) -> {"probabilities"}`` if the model ends in softmax, else ``{"logits"}``.
- ``save() -> {name: weight or optimizer state}``: the weights (``w000_...``), the optimizer
  state (``s000_...``, its last the step counter ``sNNN_step``) and ``learning_rate`` as
  outputs, in place of the recipe's ``tf.raw_ops.Save`` (a Flex op).
- ``restore(**same names) -> {"restored"}``: assigns them (the recipe's ``Restore`` is Flex too);
  a ``learning_rate`` that is not a finite number > 0 keeps the rate in effect.
- ``set_learning_rate(learning_rate) -> {"learning_rate"}``: sets the rate every later
  ``train`` call uses (initially the exported one); returns the rate in effect.

The learning rate is a variable set through its own signature rather than a third input of
``train``: a signature's inputs are all required (LiteRT's Python runner refuses a missing one,
and Android's ``runSignature`` would read whatever the tensor held), so an input could not
default to the exported rate and every existing ``train(x, y)`` caller would break; a variable
keeps them working, and an app calls ``set_learning_rate`` only when its schedule changes the
rate (once per epoch, or before each step for warm-up). Like the weights, it lives in the
interpreter; ``save``/``restore`` carry it with the weights, so an app that checkpoints through
them resumes at the rate it stopped at.

The step counter (float32, exact to 2**24 steps) counts ``train`` calls since the optimizer
state was last zeroed, as Keras's ``optimizer.iterations``: Adam's bias correction reads it,
and an app (or ``OnDeviceTrainer.fit``) computes a schedule's rate from it, so a schedule
resumed from a checkpoint continues where it stopped. Every optimizer keeps it (SGD's update
does not read it).

The backward pass is written by hand: ``tf.GradientTape`` on a Dense/ReLU head lowers to
``ReluGrad`` and ``BroadcastGradientArgs``, which TFLite has only as Flex ops (checked with
TensorFlow 2.21's converter). Gradients here use ``BATCH_MATMUL``/``FULLY_CONNECTED``, ``SUM``,
``MUL``, ``SOFTMAX``, ``LOG_SOFTMAX`` and ``ONE_HOT``; a Conv2D's use ``CONV_2D``,
``TRANSPOSE_CONV``, ``STRIDED_SLICE``, ``PAD`` and ``PACK``.

Example:
    >>> module = TrainingModule(base, head, make_optimizer("sgd"), loss, (32, 32, 1), 10, None)
    >>> signatures = module.signatures()
"""

from __future__ import annotations

import math
import re
from typing import Any, Sequence

import numpy as np

from tflite_opt._keras import tf
from tflite_opt.ondevice.head import HeadLayer
from tflite_opt.ondevice.optimizers import OptimizerSpec, apply_update

LOSSES = ("sparse_categorical_crossentropy", "categorical_crossentropy")
SIGNATURES = ("train", "infer", "save", "restore", "set_learning_rate")
LEARNING_RATE = "learning_rate"  # set_learning_rate's input and output tensor name
WEIGHT_PREFIX = "w"
SLOT_PREFIX = "s"


def _tensor_name(text: str) -> str:
    """A signature tensor name: letters, digits and underscores only."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _activate(x: Any, activation: str) -> Any:
    if activation == "relu":
        return tf.nn.relu(x)
    if activation == "tanh":
        return tf.tanh(x)
    if activation == "sigmoid":
        return tf.sigmoid(x)
    if activation == "softmax":
        return tf.nn.softmax(x)
    return x


def _activation_backward(grad: Any, z: Any, a: Any, activation: str) -> Any:
    """d loss / d z from d loss / d a, for a = activation(z)."""
    if activation == "relu":  # Keras's relu has gradient 0 at 0, as here
        return grad * tf.cast(tf.greater(z, 0.0), tf.float32)
    if activation == "tanh":
        return grad * (1.0 - a * a)
    if activation == "sigmoid":
        return grad * a * (1.0 - a)
    return grad  # linear (softmax only at the output, folded into the loss)


def _frozen(base: Any | None, input_shape: tuple[int, ...]) -> Any | None:
    """The base as a function of constants (inference mode), or None.

    Done here rather than left to the converter, which freezes only the variables it sees as
    read-only: a Keras 3 base's variables stayed resource variables that no signature
    initializes, and reading them failed at run time.
    """
    if base is None:
        return None
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function = tf.function(lambda x: base(x, training=False)).get_concrete_function(
        tf.TensorSpec((None, *input_shape), tf.float32))
    return convert_variables_to_constants_v2(function)


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's SAME padding (before, after) of one spatial axis."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _conv2d_kernel_gradient(inputs: Any, grad: Any, kernel_shape: Any, layer: HeadLayer) -> Any:
    """d loss / d kernel of a Conv2D, with builtin ops.

    TensorFlow's own gradient is ``Conv2DBackpropFilter``, which TFLite has only as a Flex op.
    By definition dK[i, j, :, :] = sum over batch and output positions of
    x_padded[b, i + s*p, j + s*q, :]^T g[b, p, q, :]: one strided slice of the (padded) input
    per kernel tap, times the output gradient, as a matmul (STRIDED_SLICE, RESHAPE,
    BATCH_MATMUL; PACK joins the taps). A 3x3 kernel is 9 matmuls of (cin, B*P*Q)x(B*P*Q, cout).
    """
    kh, kw, cin, cout = (int(d) for d in kernel_shape)
    sh, sw = layer.strides
    height, width = int(inputs.shape[1]), int(inputs.shape[2])
    out_h, out_w = int(grad.shape[1]), int(grad.shape[2])
    if layer.padding == "SAME":
        pads = [[0, 0], list(_same_padding(height, kh, sh)), list(_same_padding(width, kw, sw)),
                [0, 0]]
        inputs = tf.pad(inputs, pads)
    grad_rows = tf.reshape(grad, [-1, cout])
    taps = []
    for i in range(kh):
        for j in range(kw):
            window = inputs[:, i:i + sh * (out_h - 1) + 1:sh, j:j + sw * (out_w - 1) + 1:sw, :]
            taps.append(tf.matmul(tf.reshape(window, [-1, cin]), grad_rows, transpose_a=True))
    return tf.reshape(tf.stack(taps), [kh, kw, cin, cout])


class TrainingModule(tf.Module):
    """Variables and signatures of an on-device training file.

    Args:
        base: The frozen base (a Keras model run with ``training=False``), or None.
        head: The head's layers from ``split_model``.
        optimizer: The optimizer and its hyperparameters.
        loss: One of ``LOSSES``.
        input_shape: One sample's shape.
        num_classes: Classes of the output.
        batch_size: The ``train`` signature's fixed batch size, or None for any.
    """

    def __init__(self, base: Any | None, head: Sequence[HeadLayer], optimizer: OptimizerSpec,
                 loss: str, input_shape: tuple[int, ...], num_classes: int,
                 batch_size: int | None):
        super().__init__(name="on_device_training")
        self.base = _frozen(base, input_shape)
        self.head = list(head)
        self.optimizer = optimizer
        self.loss_name = loss
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.batch_size = batch_size
        self.first_trainable = min(i for i, layer in enumerate(self.head) if layer.trainable)
        effective = [i for i, layer in enumerate(self.head) if layer.kind != "identity"]
        last = effective[-1] if effective else len(self.head) - 1
        # A softmax at the output joins the loss: its input is the logits.
        self.softmax_index = last if self.head[last].activation == "softmax" else None
        self.output_kind = "probabilities" if self.softmax_index is not None else "logits"
        self.weight_names: list[str] = []
        self.slot_names: list[str] = []
        self.layer_params: list[list[Any]] = []
        self.trainable_variables_: list[Any] = []
        self.slot_variables: list[list[Any]] = []
        for layer in self.head:
            params = []
            for weight_name, value in zip(layer.weight_names, layer.weights):
                if not layer.trainable:
                    params.append(tf.constant(value))
                    continue
                name = (f"{WEIGHT_PREFIX}{len(self.weight_names):03d}_"
                        f"{_tensor_name(layer.name)}_{weight_name}")
                variable = tf.Variable(value, name=name, dtype=tf.float32)
                self.weight_names.append(name)
                params.append(variable)
                self.trainable_variables_.append(variable)
                slots = []
                for slot in optimizer.slots_per_weight():
                    slot_name = (f"{SLOT_PREFIX}{len(self.slot_names):03d}_{slot}_"
                                 f"{_tensor_name(layer.name)}_{weight_name}")
                    slots.append(tf.Variable(np.zeros_like(value), name=slot_name,
                                             dtype=tf.float32))
                    self.slot_names.append(slot_name)
                self.slot_variables.append(slots)
            self.layer_params.append(params)
        self.learning_rate = tf.Variable(optimizer.learning_rate, name=LEARNING_RATE,
                                         dtype=tf.float32)
        # The last slot: zeroed with the rest of the optimizer state, as Keras's iterations.
        self.step_name = f"{SLOT_PREFIX}{len(self.slot_names):03d}_step"
        self.step = tf.Variable(0.0, name=self.step_name, dtype=tf.float32)
        self.slot_names.append(self.step_name)

    # -- the math -------------------------------------------------------------------------

    def _forward(self, x: Any) -> tuple[Any, Any, list[tuple[Any, Any, Any]]]:
        """Returns (output, logits, per-layer (input, pre-activation, activation))."""
        h = x
        if self.base is not None:
            h = self.base(x)
            h = h[0] if isinstance(h, (list, tuple)) else h  # a frozen function returns a list
        cache = []
        logits = None
        for index, (layer, params) in enumerate(zip(self.head, self.layer_params)):
            inputs = h
            if layer.kind == "dense":
                z = tf.matmul(h, params[0])
                if len(params) > 1:
                    z = z + params[1]
            elif layer.kind == "conv2d":
                z = tf.nn.conv2d(h, params[0], layer.strides, layer.padding)
                if len(params) > 1:
                    z = z + params[1]
            elif layer.kind == "flatten":
                z = tf.reshape(h, [-1, math.prod(h.shape[1:])])
            else:
                z = h
            if index == self.softmax_index:
                logits = z
            h = _activate(z, layer.activation)
            cache.append((inputs, z, h))
        return h, (h if logits is None else logits), cache

    def _labels(self, y: Any) -> Any:
        if self.loss_name == "sparse_categorical_crossentropy":
            return tf.one_hot(y, self.num_classes, dtype=tf.float32)
        return y

    def _loss_and_gradients(self, x: Any, y: Any) -> tuple[Any, list[Any]]:
        _, logits, cache = self._forward(x)
        target = self._labels(y)
        count = tf.cast(tf.shape(logits)[0], tf.float32)
        # Cross-entropy from logits (Keras takes the logits of a softmax output too), mean
        # over the batch as Keras's "sum_over_batch_size".
        loss = -tf.reduce_sum(target * tf.nn.log_softmax(logits)) / count
        grad = (tf.nn.softmax(logits) - target) / count  # d loss / d logits
        start = self.softmax_index if self.softmax_index is not None else len(self.head) - 1
        gradients: dict[int, list[Any]] = {}
        for index in range(start, self.first_trainable - 1, -1):
            layer, params = self.head[index], self.layer_params[index]
            inputs, z, a = cache[index]
            if index != self.softmax_index:
                grad = _activation_backward(grad, z, a, layer.activation)
            if layer.kind == "dense":
                if layer.trainable:
                    grads = [tf.matmul(inputs, grad, transpose_a=True)]
                    if len(params) > 1:
                        grads.append(tf.reduce_sum(grad, axis=0))
                    gradients[index] = grads
                if index > self.first_trainable:
                    grad = tf.matmul(grad, params[0], transpose_b=True)
            elif layer.kind == "conv2d":
                if layer.trainable:
                    grads = [_conv2d_kernel_gradient(inputs, grad, params[0].shape, layer)]
                    if len(params) > 1:
                        grads.append(tf.reduce_sum(grad, axis=[0, 1, 2]))
                    gradients[index] = grads
                if index > self.first_trainable:
                    # d loss / d input: the transposed convolution (TFLite's TRANSPOSE_CONV).
                    grad = tf.nn.conv2d_transpose(grad, params[0], tf.shape(inputs),
                                                  layer.strides, layer.padding)
            elif layer.kind == "flatten":
                grad = tf.reshape(grad, tf.shape(inputs))
        ordered = [g for index in sorted(gradients) for g in gradients[index]]
        return loss, ordered

    # -- the signatures -------------------------------------------------------------------

    def _x_spec(self, batch: int | None) -> Any:
        return tf.TensorSpec((batch, *self.input_shape), tf.float32, name="x")

    def _y_spec(self) -> Any:
        if self.loss_name == "sparse_categorical_crossentropy":
            return tf.TensorSpec((self.batch_size,), tf.int32, name="y")
        return tf.TensorSpec((self.batch_size, self.num_classes), tf.float32, name="y")

    def _state(self) -> list[tuple[str, Any]]:
        slots = [v for group in self.slot_variables for v in group] + [self.step]
        # slot_names were appended weight by weight then the step: same order as ``slots``.
        return list(zip(self.weight_names, self.trainable_variables_)) + \
            list(zip(self.slot_names, slots))

    def _set_rate(self, learning_rate: Any) -> Any:
        """Assigns ``learning_rate`` if it is a finite number > 0; returns the rate in effect.

        A signature cannot raise an error, so another value (NaN fails both comparisons) is
        ignored rather than let it wreck the weights.
        """
        valid = tf.logical_and(learning_rate > 0.0, learning_rate < float("inf"))
        self.learning_rate.assign(tf.where(valid, learning_rate, self.learning_rate.read_value()))
        return self.learning_rate.read_value()

    def signatures(self) -> dict[str, Any]:
        """The concrete functions of ``SIGNATURES``, by signature name."""

        @tf.function(input_signature=[self._x_spec(self.batch_size), self._y_spec()])
        def train(x, y):
            loss, gradients = self._loss_and_gradients(x, y)
            learning_rate = self.learning_rate.read_value()
            self.step.assign_add(1.0)
            step = self.step.read_value()
            for variable, gradient, slots in zip(self.trainable_variables_, gradients,
                                                 self.slot_variables):
                apply_update(tf, self.optimizer, variable, gradient, slots, step, learning_rate)
            return {"loss": loss}

        @tf.function(input_signature=[tf.TensorSpec((), tf.float32, name=LEARNING_RATE)])
        def set_learning_rate(learning_rate):
            # The output says which rate is in effect, so 0 reads it without changing it.
            return {LEARNING_RATE: self._set_rate(learning_rate)}

        @tf.function(input_signature=[self._x_spec(None)])
        def infer(x):
            return {self.output_kind: self._forward(x)[0]}

        @tf.function(input_signature=[])
        def save():
            return {name: tf.identity(variable.read_value())
                    for name, variable in self._state() + [(LEARNING_RATE, self.learning_rate)]}

        state = self._state()

        # The rate is restored with the weights so that a checkpoint resumes at its rate; a
        # caller that has none (a checkpoint from before it was saved) passes 0 to keep it.
        @tf.function(input_signature=[tf.TensorSpec(v.shape, tf.float32, name=n)
                                      for n, v in state]
                     + [tf.TensorSpec((), tf.float32, name=LEARNING_RATE)])
        def restore(*values):
            for (_, variable), value in zip(state, values[:-1]):
                variable.assign(value)
            self._set_rate(values[-1])
            return {"restored": tf.constant(len(values), tf.int32)}

        return {"train": train.get_concrete_function(), "infer": infer.get_concrete_function(),
                "save": save.get_concrete_function(), "restore": restore.get_concrete_function(),
                "set_learning_rate": set_learning_rate.get_concrete_function()}
