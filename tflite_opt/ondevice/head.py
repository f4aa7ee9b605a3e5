"""Splitting a Keras model into a frozen base and the head that trains on the device.

On-device training updates only the head: the layers from the first trainable one to the
model's output. Their backward pass is written by hand (``ondevice/graph.py``), because
``tf.GradientTape`` emits ``ReluGrad`` and ``BroadcastGradientArgs``, which TFLite has only as
Flex ops; so the head may hold only the layers whose gradients are written there:

- ``Dense`` on a 2-D input, with activation ``linear``, ``relu``, ``tanh`` or ``sigmoid``
  (``softmax`` on the last one: it becomes part of the loss);
- ``Conv2D`` (channels last, ``valid`` or ``same`` padding, any strides, no dilation or
  groups) with those activations but softmax;
- ``Activation``/``ReLU``/``Softmax`` layers with those functions, ``Flatten``;
- ``Dropout``-like layers, which are identities here: the head trains as Keras infers
  (no random dropout on the device, so a step is deterministic).

Everything before the head is the base: it runs in inference mode and its weights are frozen
into the file as constants, so any layer the TFLite converter handles may sit there.

Example:
    >>> base, head = split_model(model, trainable="head")
    >>> [layer.name for layer in head if layer.trainable]
    ['classifier']
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np

from tflite_opt.errors import InvalidArgumentError, UnsupportedLayerError

ACTIVATIONS = ("linear", "relu", "tanh", "sigmoid", "softmax")
# Layers that are identities when Keras infers (training=False): the head trains like that.
IDENTITY_LAYERS = ("Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianNoise",
                   "GaussianDropout", "AlphaDropout", "ActivityRegularization", "InputLayer")
WEIGHTLESS_LAYERS = ("Flatten", "Activation", "ReLU", "Softmax") + IDENTITY_LAYERS
TRAINABLE_LAYERS = ("Dense", "Conv2D")  # layers whose weight gradients graph.py writes
WEIGHTED_KINDS = ("dense", "conv2d")


@dataclasses.dataclass(frozen=True)
class HeadLayer:
    """One layer of the head, as the exported graph computes it.

    Attributes:
        name: The Keras layer's name.
        kind: ``"dense"``, ``"conv2d"``, ``"flatten"``, ``"activation"`` or ``"identity"``.
        activation: One of ``ACTIVATIONS`` (``"linear"`` for weightless kinds but activation).
        weights: ``(kernel, bias)`` for a Dense or Conv2D layer (no bias: kernel only),
            float32.
        trainable: Whether the device updates its weights (frozen head layers still pass
            gradients to the trainable layers before them).
    """

    name: str
    kind: str
    activation: str = "linear"
    weights: tuple[np.ndarray, ...] = ()
    trainable: bool = False
    strides: tuple[int, int] = (1, 1)
    padding: str = "valid"  # Conv2D's, as tf.nn.conv2d takes it: "VALID" or "SAME" uppercased

    @property
    def weight_names(self) -> tuple[str, ...]:
        return ("kernel", "bias")[:len(self.weights)] if self.kind in WEIGHTED_KINDS else ()


def _activation_name(fn: Any, layer: Any) -> str:
    name = getattr(fn, "__name__", type(fn).__name__)
    if name not in ACTIVATIONS:
        raise UnsupportedLayerError(
            f"layer {layer.name!r} ({type(layer).__name__}) has activation {name!r}; the on-device "
            f"head supports {', '.join(ACTIVATIONS)} (softmax on the last layer only): freeze the "
            "layer into the base (trainable='head' or a trainable list that starts after it)")
    return name


def _keras_class(layer: Any) -> str:
    """The layer's class name if Keras defines the class (either Keras), else ``""``.

    Both Kerases name their layer classes alike, so one registry keyed by name serves both; a
    user's subclass or a same-named class from elsewhere is not matched, since its ``call`` may
    compute something else than the backward pass written here assumes.
    """
    cls = type(layer)
    return cls.__name__ if cls.__module__.split(".")[0] in ("keras", "tf_keras") else ""


def _dense(layer: Any, trainable: bool) -> HeadLayer:
    if len(layer.input.shape) != 2:
        raise UnsupportedLayerError(
            f"layer {layer.name!r} (Dense) gets a {len(layer.input.shape)}-D input; the "
            "on-device head supports Dense on flat (batch, features) inputs: add a Flatten "
            "before it, or freeze it into the base")
    weights = tuple(np.asarray(w, np.float32) for w in layer.get_weights())
    return HeadLayer(layer.name, "dense", _activation_name(layer.activation, layer), weights,
                     trainable)


def _conv2d(layer: Any, trainable: bool) -> HeadLayer:
    config = layer.get_config()
    shape = tuple(layer.input.shape)
    problems = []
    if config.get("data_format", "channels_last") not in ("channels_last", None):
        problems.append(f"data_format={config['data_format']!r} (needs channels_last)")
    if tuple(np.broadcast_to(config.get("dilation_rate", 1), 2)) != (1, 1):
        problems.append(f"dilation_rate={config['dilation_rate']!r} (needs 1)")
    if config.get("groups", 1) != 1:
        problems.append(f"groups={config['groups']!r} (needs 1)")
    if config.get("padding") not in ("valid", "same"):
        problems.append(f"padding={config.get('padding')!r} (needs valid or same)")
    if len(shape) != 4 or any(d is None for d in shape[1:]):
        problems.append(f"input shape {shape} (needs a fixed (batch, height, width, channels))")
    if problems:
        raise UnsupportedLayerError(f"layer {layer.name!r} (Conv2D) has {', '.join(problems)}; "
                                    "the on-device head's Conv2D backward pass is written for "
                                    "that case only: freeze the layer into the base")
    activation = _activation_name(layer.activation, layer)
    if activation == "softmax":
        raise UnsupportedLayerError(f"layer {layer.name!r} (Conv2D) has a softmax activation; "
                                    "the on-device head supports softmax only at the output")
    weights = tuple(np.asarray(w, np.float32) for w in layer.get_weights())
    strides = tuple(int(s) for s in np.broadcast_to(config.get("strides", 1), 2))
    return HeadLayer(layer.name, "conv2d", activation, weights, trainable, strides,
                     config["padding"].upper())


def _softmax(layer: Any, trainable: bool) -> HeadLayer:
    if getattr(layer, "axis", -1) not in (-1, [-1], (-1,)):
        raise UnsupportedLayerError(f"layer {layer.name!r} (Softmax) has axis {layer.axis!r}; "
                                    "the on-device head supports axis=-1")
    return HeadLayer(layer.name, "activation", "softmax")


def _relu(layer: Any, trainable: bool) -> HeadLayer:
    config = layer.get_config()
    if config.get("max_value") is None and not config.get("negative_slope") \
            and not config.get("threshold"):
        return HeadLayer(layer.name, "activation", "relu")
    raise UnsupportedLayerError(f"layer {layer.name!r} (ReLU with max_value, negative_slope or "
                                "threshold) is not supported in the on-device head; freeze it "
                                "into the base")


def _flatten(layer: Any, trainable: bool) -> HeadLayer:
    return HeadLayer(layer.name, "flatten")


def _activation(layer: Any, trainable: bool) -> HeadLayer:
    return HeadLayer(layer.name, "activation", _activation_name(layer.activation, layer))


def _identity(layer: Any, trainable: bool) -> HeadLayer:
    return HeadLayer(layer.name, "identity")


# Keras layer class name -> how the head computes it. Dense and Conv2D have weights to train.
_HEAD_LAYERS = {"Dense": _dense, "Conv2D": _conv2d, "Flatten": _flatten,
                "Activation": _activation, "Softmax": _softmax, "ReLU": _relu,
                **dict.fromkeys(IDENTITY_LAYERS, _identity)}


def describe_layer(layer: Any, trainable: bool) -> HeadLayer:
    """The ``HeadLayer`` for a Keras layer of the head, or an error saying what to do.

    Raises:
        UnsupportedLayerError: The layer's backward pass is not written with builtin ops.
    """
    cls = _keras_class(layer)
    if trainable and cls not in TRAINABLE_LAYERS:
        raise UnsupportedLayerError(
            f"layer {layer.name!r} ({type(layer).__name__}) cannot train on the device: only "
            "Keras Dense and Conv2D layers can (their gradient and update are written with "
            "TFLite builtin ops); leave it out of trainable=, which freezes it into the base")
    if cls not in _HEAD_LAYERS:
        raise UnsupportedLayerError(
            f"layer {layer.name!r} ({type(layer).__name__}) sits after the first trainable "
            f"layer, and the on-device head supports only Dense, Conv2D and "
            f"{', '.join(WEIGHTLESS_LAYERS[:4])} and dropout-like layers there (their backward "
            "pass is written with TFLite builtin ops): make only layers after it trainable, so "
            "that it is frozen into the base")
    return _HEAD_LAYERS[cls](layer, trainable)


def _layers(model: Any) -> list[Any]:
    return [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]


def trainable_layer_names(model: Any, trainable: str | Sequence[str]) -> list[str]:
    """Resolves ``trainable`` (``"all"``, ``"head"`` or layer names) to layer names.

    ``"head"`` is the last layer with weights (the classifier); ``"all"`` every layer with
    weights; a list names the layers, which must have weights.

    Raises:
        InvalidArgumentError: An unknown name or value, or a named layer without weights.
    """
    layers = _layers(model)
    with_weights = [layer.name for layer in layers if layer.weights]
    if not with_weights:
        raise InvalidArgumentError(f"model {model.name!r} has no layer with weights to train")
    if isinstance(trainable, str):
        if trainable == "all":
            return with_weights
        if trainable == "head":
            return with_weights[-1:]
        raise InvalidArgumentError(f"trainable={trainable!r} is not 'all', 'head' or a list of "
                                   "layer names")
    names = list(trainable)
    if not names or not all(isinstance(n, str) for n in names):
        raise InvalidArgumentError(f"trainable={trainable!r}: pass 'all', 'head' or a non-empty "
                                   "list of layer names")
    known = {layer.name for layer in layers}
    for name in names:
        if name not in known:
            raise InvalidArgumentError(f"trainable names layer {name!r}, which model "
                                       f"{model.name!r} does not have; its layers with weights: "
                                       f"{with_weights}")
        if name not in with_weights:
            raise InvalidArgumentError(f"trainable names layer {name!r}, which has no weights; "
                                       f"layers with weights: {with_weights}")
    return names


def split_model(model: Any, trainable: str | Sequence[str] = "head") -> tuple[Any | None,
                                                                            list[HeadLayer]]:
    """Splits ``model`` into a frozen base (a Keras model, or None) and the head's layers.

    The head runs from the first trainable layer to the output and must be a chain (each
    layer feeds only the next), since its backward pass is written layer by layer.

    Raises:
        InvalidArgumentError: ``trainable`` names no usable layer; the model has several
            inputs or outputs.
        UnsupportedLayerError: A head layer has no builtin-op backward pass, or the head is
            not a chain.
    """
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise InvalidArgumentError(f"model {model.name!r} has {len(model.inputs)} inputs and "
                                   f"{len(model.outputs)} outputs; on-device export takes one "
                                   "of each")
    names = trainable_layer_names(model, trainable)
    layers = _layers(model)
    start = min(i for i, layer in enumerate(layers) if layer.name in names)
    head = layers[start:]
    previous = head[0].input
    for layer in head:
        if layer.input is not previous or len(getattr(layer, "_inbound_nodes", [None])) > 1:
            raise UnsupportedLayerError(
                f"layer {layer.name!r} is in the trainable head (from {head[0].name!r} to the "
                "output) but does not take the previous layer's output alone, or is used more "
                "than once; the on-device head must be a chain: make only layers after the "
                "branch trainable")
        previous = layer.output
    if previous is not model.outputs[0]:
        raise UnsupportedLayerError(f"the head from {head[0].name!r} does not end at the model's "
                                    "output; make only layers of the final chain trainable")
    described = [describe_layer(layer, layer.name in names) for layer in head]
    for index, layer in enumerate(described):
        if layer.activation == "softmax" and any(h.kind != "identity"
                                                 for h in described[index + 1:]):
            raise UnsupportedLayerError(f"layer {layer.name!r} has a softmax before the last "
                                        "layer; the on-device head supports softmax only at "
                                        "the output (where it joins the cross-entropy loss)")
    if head[0].input is model.inputs[0]:
        return None, described
    keras = _keras_module(model)
    base = keras.Model(model.inputs, head[0].input, name=f"{model.name}_frozen_base")
    return base, described


def _keras_module(model: Any) -> Any:
    from tflite_opt._keras import keras_flavor, keras_of_flavor

    return keras_of_flavor(keras_flavor(model))


def reinitialize_layers(model: Any, names: Sequence[str], seed: int = 0) -> None:
    """Gives the named Dense/Conv2D layers fresh random weights, in place: a new head to train.

    Glorot-uniform kernels and zero biases (Keras's defaults for both), drawn from numpy with
    ``seed``, so both Kerases get the same head for the same seed.

    Raises:
        UnsupportedLayerError: A named layer is not a Dense or Conv2D layer.

    Example:
        >>> reinitialize_layers(model, ["dense1", "classifier"], seed=0)
    """
    rng = np.random.default_rng(seed)
    for name in names:
        layer = model.get_layer(name)
        if type(layer).__name__ not in TRAINABLE_LAYERS:
            raise UnsupportedLayerError(f"layer {name!r} ({type(layer).__name__}) cannot be "
                                        "re-initialized here; only Dense and Conv2D layers can")
        fresh = []
        for weight in layer.get_weights():
            if weight.ndim >= 2:  # Conv2D: fans times the kernel's receptive field, as Keras
                receptive = int(np.prod(weight.shape[:-2]))
                limit = np.sqrt(6.0 / (receptive * (weight.shape[-2] + weight.shape[-1])))
                fresh.append(rng.uniform(-limit, limit, weight.shape).astype(np.float32))
            else:
                fresh.append(np.zeros_like(weight))
        layer.set_weights(fresh)
