"""Quantization-aware training for Keras 3 models: ``quantize_aware_keras3(model, scheme)``.

No library does this for Keras 3 (tfmot 0.8.1 only wraps tf_keras models; Keras 3's
``model.quantize()`` is post-training and Dense-only), so the graph rewrite is here. It
follows tfmot's default 8-bit scheme:

- every Conv2D / DepthwiseConv2D / Dense becomes a layer that runs on a per-channel
  fake-quantized kernel (``quant_layers.py``), with the BatchNormalization right after it
  folded in (``folding.py``) and a ReLU/ReLU6 right after that fused;
- the model inputs and the outputs of ops that make new values (those layers, Add,
  Concatenate, GlobalAveragePooling2D, Rescaling, a ReLU that is not fused, ...) get an
  activation fake-quant with a range learned in training (``quantizers.py``);
- ops that only move or pick values (pooling, padding, reshape, dropout) keep their input's
  range, as TFLite's int8 kernels require, and get none.

The result trains in the user's own ``compile``/``fit`` and goes to the TFLite converter as
is (``tflite_opt.convert(model, "int8")``): every compute op comes out int8, with no float
BatchNorm and no Dequantize/Quantize pair inside the graph. Needs the TensorFlow backend.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import keras
import numpy as np

from tflite_opt.errors import InvalidArgumentError, UnsupportedLayerError
from tflite_opt.train.keras3.preserve import KernelStructure
from tflite_opt.train.keras3.quant_layers import QUANTIZED_LAYERS, QuantizedDepthwiseConv2D
from tflite_opt.train.keras3.quantizers import ActivationFakeQuant
from tflite_opt.train.recipe import LayerPolicy


@dataclasses.dataclass(frozen=True)
class QATScheme:
    """What a QAT scheme keeps of the kernels it starts from.

    Attributes:
        keep_zeros: Pruned weights stay exactly 0 (PQAT).
        keep_clusters: Each kernel's distinct values train as shared centroids (CQAT).
    """

    keep_zeros: bool
    keep_clusters: bool


# The same scheme names as the tf_keras path (tflite_opt.train.qat.QAT_SCHEMES).
KERAS3_QAT_SCHEMES: dict[str, QATScheme] = {
    "default": QATScheme(keep_zeros=False, keep_clusters=False),
    "pqat": QATScheme(keep_zeros=True, keep_clusters=False),
    "cqat": QATScheme(keep_zeros=False, keep_clusters=True),
    "pcqat": QATScheme(keep_zeros=True, keep_clusters=True),
}

# Ops whose int8 kernels keep the input's scale: no fake-quant after them.
SAME_RANGE_LAYERS = (
    keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.Flatten,
    keras.layers.Reshape, keras.layers.ZeroPadding2D, keras.layers.Dropout,
    keras.layers.Identity,
)
# Weightless ops that compute new values: their output gets a fake-quant.
QUANTIZED_OUTPUT_LAYERS = (
    keras.layers.Add, keras.layers.Subtract, keras.layers.Multiply, keras.layers.Average,
    keras.layers.Concatenate, keras.layers.GlobalAveragePooling2D, keras.layers.ReLU,
    keras.layers.Activation,
)
# Activations whose int8 TFLite op has a fixed output range: the fake-quant goes before them.
FIXED_RANGE_ACTIVATIONS = ("softmax", "sigmoid", "tanh")

_SUPPORTED = ("Conv2D, DepthwiseConv2D, Dense, BatchNormalization after one of those, ReLU, "
              "Activation (relu, relu6, softmax, sigmoid, tanh, linear), Add, Subtract, "
              "Multiply, Average, Concatenate, GlobalAveragePooling2D, Rescaling, "
              "MaxPooling2D, AveragePooling2D, Flatten, Reshape, ZeroPadding2D, Dropout")


def quantize_aware_keras3(model: keras.Model, scheme: str = "default",
                          policy: LayerPolicy | None = None) -> keras.Model:
    """Returns a new Keras 3 model that trains with int8 fake quantization.

    The caller's model is not changed. Conv2D/DepthwiseConv2D/Dense layers keep their names
    in the new model (BatchNormalization and ReLU layers folded into them disappear), and the
    fake-quant layers added are named ``<layer>_act_quant`` (``<input>_input_quant``).

    Args:
        model: A built Keras 3 Sequential or Functional model (plain or stripped: no pruning
            or clustering wrappers), TensorFlow backend. A Sequential comes back Functional.
        scheme: ``default``; ``pqat`` (pruned weights stay 0); ``cqat`` (each kernel's
            distinct values train as shared centroids with fixed assignments, so a clustered
            kernel keeps its cluster count); ``pcqat`` (both). Defaults to ``default``.
        policy: Only ``policy.skip`` is read: layers left as in the float model (no fake
            quantization; converting to int8 then needs representative data). Defaults to
            ``LayerPolicy()``.

    Returns:
        The QAT model: compile and fit it, then convert it (no calibration data needed).

    Raises:
        InvalidArgumentError: not a Keras 3 model, not the TensorFlow backend, unknown
            scheme, or ``policy.skip`` names a missing layer.
        UnsupportedLayerError: a layer that Keras 3 QAT cannot quantize; the message names
            it and the way out.

    Example:
        >>> qat = quantize_aware_keras3(model, scheme="pcqat")
        >>> qat.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
        >>> qat.fit(x, y, epochs=2)
        >>> tflite_opt.convert(qat, "int8").save("model_int8.tflite")
    """
    _check_model(model)
    if scheme not in KERAS3_QAT_SCHEMES:
        raise InvalidArgumentError(
            f"scheme is {scheme!r}; accepted: {', '.join(KERAS3_QAT_SCHEMES)}")
    policy = policy or LayerPolicy()
    names = {layer.name for layer in model.layers}
    missing = [name for name in policy.skip if name not in names]
    if missing:
        raise InvalidArgumentError(f"policy.skip names layer {missing[0]!r}, which is not in "
                                   f"model {model.name!r}")
    functional = (keras.Model(model.inputs[0], model.outputs[0], name=model.name)
                  if isinstance(model, keras.Sequential) else model)
    plan = _plan(_Graph(functional), set(policy.skip))
    rewriter = _Rewriter(plan, KERAS3_QAT_SCHEMES[scheme])
    inputs = keras.tree.map_structure(
        lambda t: keras.Input(batch_shape=t.shape, dtype=t.dtype, name=t.name), functional.input)
    rewriter.quantize_inputs(keras.tree.flatten(inputs))
    # The original layers are never called (clone_function keeps them only as graph keys):
    # the rewriter builds every layer of the new model.
    new = keras.models.clone_model(functional, input_tensors=inputs,
                                   clone_function=lambda layer: layer,
                                   call_function=rewriter.call)
    return keras.Model(new.input, new.output, name=f"{model.name}_qat")


def _check_model(model: Any) -> None:
    if not isinstance(model, keras.Model):
        hint = ("; for a tf_keras model use tflite_opt.quantize_aware"
                if "tf_keras" in type(model).__module__ else "")
        raise InvalidArgumentError(
            f"model has type {type(model).__name__}; quantize_aware_keras3 takes a Keras 3 "
            f"keras.Model{hint}")
    if keras.backend.backend() != "tensorflow":
        raise InvalidArgumentError(
            f"Keras 3 QAT needs the TensorFlow backend, the backend is "
            f"{keras.backend.backend()!r}; set KERAS_BACKEND=tensorflow before importing keras")
    for layer in model.layers:
        if getattr(layer, "compute_dtype", "float32") not in ("float32", None):
            raise InvalidArgumentError(
                f"layer {layer.name!r} ({type(layer).__name__}) computes in "
                f"{layer.compute_dtype}; Keras 3 QAT trains in float32 (int8 conversion starts "
                "from float32 anyway): rebuild the model under "
                "keras.config.set_dtype_policy('float32')")
    if not getattr(model, "inputs", None):
        raise InvalidArgumentError(
            f"model {model.name!r} has no defined inputs (a subclassed model, or a Sequential "
            "without keras.Input); build it as a Sequential starting with keras.Input(shape) or "
            "as a Functional model")


class _Graph:
    """Producers and consumers of each layer, within one Functional model's graph.

    A layer also used by another model (a copy that shares it) has nodes of that model too;
    only the nodes of this graph (the ones ``clone_model`` walks) count.
    """

    def __init__(self, model: keras.Model) -> None:
        self.model = model
        graph_nodes = {id(node) for nodes in model._nodes_by_depth.values()  # noqa: SLF001
                       for node in nodes}
        self.consumers: dict[str, list[keras.layers.Layer]] = {}
        self.layer_outputs: dict[str, set[int]] = {}
        self.calls: dict[str, Any] = {}  # layer name -> its node in this graph
        for layer in model.layers:
            if isinstance(layer, keras.Model):
                raise UnsupportedLayerError(
                    f"layer {layer.name!r} ({type(layer).__name__}) is a nested model, which "
                    "Keras 3 QAT does not rewrite; build the outer model from its layers "
                    "(call the inner layers on the outer tensors) instead")
            calls = [n for n in layer._inbound_nodes if id(n) in graph_nodes]  # noqa: SLF001
            if len(calls) > 1:
                raise UnsupportedLayerError(
                    f"layer {layer.name!r} ({type(layer).__name__}) is called {len(calls)} "
                    "times (a shared layer); Keras 3 QAT needs one call per layer: use a "
                    "separate layer for each call")
            self.consumers[layer.name] = [n.operation for n in layer._outbound_nodes  # noqa: SLF001
                                          if id(n) in graph_nodes]
            self.layer_outputs[layer.name] = {id(t) for node in calls for t in node.outputs}
            if calls:
                self.calls[layer.name] = calls[0]
        self.output_ids = {id(t) for t in model.outputs}

    def rank(self, layer: keras.layers.Layer, which: str = "outputs") -> int:
        """Rank of the layer's (first) output or input tensor in this graph."""
        node = self.calls[layer.name]
        tensors = node.outputs if which == "outputs" else node.input_tensors
        return len(tensors[0].shape)

    def channels_in(self, layer: keras.layers.Layer) -> int:
        return int(self.calls[layer.name].input_tensors[0].shape[-1])

    def sole_consumer(self, layer: keras.layers.Layer) -> keras.layers.Layer | None:
        """The one layer reading ``layer``'s output, if it is read once and is no model output."""
        consumers = self.consumers.get(layer.name, [])
        if len(consumers) != 1 or self.layer_outputs[layer.name] & self.output_ids:
            return None
        return consumers[0]


@dataclasses.dataclass
class _KernelPlan:
    layer: keras.layers.Layer
    batch_norm: keras.layers.BatchNormalization | None = None
    activation: str = "linear"  # fused: linear, relu, relu6
    after: str | None = None  # a fixed-range activation applied after the fake-quant
    channels: int | None = None  # input channels (a Rescaling rewritten as a depthwise conv)


def _plan(graph: _Graph, skip: set[str]) -> dict[str, Any]:
    """Decides each layer's role: a kernel plan, or folded/same_range/quantized_output/float."""
    plan: dict[str, Any] = {}
    for layer in graph.model.layers:
        if layer.name in plan:
            continue  # already folded into the layer before it
        if layer.name in skip:
            plan[layer.name] = "float"
        elif type(layer) in QUANTIZED_LAYERS:
            plan[layer.name] = _kernel_plan(graph, layer, skip, plan)
        elif isinstance(layer, keras.layers.InputLayer) or isinstance(layer, SAME_RANGE_LAYERS):
            plan[layer.name] = "same_range"
        elif isinstance(layer, keras.layers.BatchNormalization):
            raise UnsupportedLayerError(
                f"layer {layer.name!r} (BatchNormalization) does not directly follow a Conv2D, "
                "DepthwiseConv2D or Dense (with no activation) whose only reader it is, so Keras "
                f"3 QAT cannot fold it; move it right after one, or pass policy=LayerPolicy("
                f"skip=({layer.name!r},)) to keep it in float (int8 conversion then needs "
                "representative data)")
        elif isinstance(layer, keras.layers.Rescaling):
            if graph.rank(layer, "inputs") != 4:
                raise _unsupported(layer, "Keras 3 QAT rewrites Rescaling on images (rank 4) only")
            plan[layer.name] = _KernelPlan(layer, channels=graph.channels_in(layer))
        elif isinstance(layer, QUANTIZED_OUTPUT_LAYERS):
            if isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
                activation = _activation_name(layer)
                if activation is None:
                    raise _unsupported(layer, "its activation has no int8 TFLite kernel here")
                if activation in FIXED_RANGE_ACTIVATIONS:
                    plan[layer.name] = "same_range"  # the converter sets its output range
                    continue
            plan[layer.name] = "quantized_output"
        elif isinstance(layer, keras.layers.Wrapper):
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({type(layer).__name__}) is a wrapper (pruning or "
                "clustering); strip the model first with tflite_opt.strip(model), or call "
                "tflite_opt.quantize_aware(model, ...), which strips it for you")
        else:
            raise _unsupported(layer, "Keras 3 QAT has no int8 rewrite for this class")
    return plan


def _kernel_plan(graph: _Graph, layer: keras.layers.Layer, skip: set[str],
                 plan: dict[str, Any]) -> _KernelPlan:
    config = layer.get_config()
    if config.get("data_format", "channels_last") != "channels_last":
        raise _unsupported(layer, "it is channels_first; TFLite convolutions are channels_last")
    if config.get("groups", 1) != 1:
        raise _unsupported(layer, "it is a grouped convolution (groups > 1)")
    result = _KernelPlan(layer)
    activation = config.get("activation", "linear")
    if activation == "linear":
        after = graph.sole_consumer(layer)
        if (isinstance(after, keras.layers.BatchNormalization) and after.name not in skip
                and after.axis in (-1, graph.rank(layer) - 1)):
            result.batch_norm = after
            plan[after.name] = "folded"
            tail = after
        else:
            tail = layer
        after = graph.sole_consumer(tail)
        fused = _activation_name(after) if isinstance(
            after, (keras.layers.ReLU, keras.layers.Activation)) else None
        if fused in ("relu", "relu6", "linear") and after.name not in skip:
            result.activation = fused
            plan[after.name] = "folded"
    elif activation in ("relu", "relu6"):
        result.activation = activation
    elif activation in FIXED_RANGE_ACTIVATIONS:
        result.after = activation
    else:
        raise _unsupported(layer, f"its activation {activation!r} has no int8 fused form; use "
                           "relu, relu6, softmax, sigmoid, tanh or linear")
    return result


def _activation_name(layer: keras.layers.Layer | None) -> str | None:
    """``relu``, ``relu6``, ``linear``, a fixed-range name, or None for anything else."""
    if isinstance(layer, keras.layers.ReLU):
        cfg = layer.get_config()
        if cfg.get("negative_slope", 0.0) or cfg.get("threshold", 0.0):
            return None
        max_value = cfg.get("max_value")
        return {None: "relu", 6.0: "relu6"}.get(None if max_value is None else float(max_value))
    if isinstance(layer, keras.layers.Activation):
        name = layer.get_config()["activation"]
        if isinstance(name, str) and name in ("relu", "relu6", "linear", *FIXED_RANGE_ACTIVATIONS):
            return name
    return None


def _unsupported(layer: keras.layers.Layer, why: str) -> UnsupportedLayerError:
    return UnsupportedLayerError(
        f"layer {layer.name!r} ({type(layer).__name__}) is not supported by Keras 3 QAT: {why}. "
        f"Supported: {_SUPPORTED}. Pass policy=LayerPolicy(skip=({layer.name!r},)) to keep it "
        "in float (int8 conversion then needs representative data), or rebuild the model "
        "with supported layers")


class _Rewriter:
    """Called by ``keras.models.clone_model`` for each layer call of the float model."""

    def __init__(self, plan: dict[str, Any], scheme: QATScheme) -> None:
        self.plan = plan
        self.scheme = scheme
        self.quantized_inputs: dict[int, Any] = {}

    def quantize_inputs(self, inputs: list[Any]) -> None:
        for tensor in inputs:
            quant = ActivationFakeQuant(mode="all_values", name=f"{tensor.name}_input_quant")
            self.quantized_inputs[id(tensor)] = quant(tensor)

    def call(self, layer: keras.layers.Layer, *args: Any, **kwargs: Any) -> Any:
        args, kwargs = keras.tree.map_structure(
            lambda x: self.quantized_inputs.get(id(x), x), (args, kwargs))
        role = self.plan[layer.name]
        if role == "folded":
            return args[0]  # computed inside the kernel layer before it
        if isinstance(role, _KernelPlan):
            outputs = self._kernel_layer(role)(args[0])
            outputs = ActivationFakeQuant(name=f"{layer.name}_act_quant")(outputs)
            if role.after:
                outputs = keras.layers.Activation(role.after, name=f"{layer.name}_{role.after}")(
                    outputs)
            return outputs
        clone = layer.__class__.from_config(layer.get_config())
        outputs = clone(*args, **kwargs)
        if role == "float":
            clone.set_weights(layer.get_weights())
        elif role == "quantized_output":
            outputs = ActivationFakeQuant(name=f"{layer.name}_act_quant")(outputs)
        return outputs

    def _kernel_layer(self, kernel_plan: _KernelPlan) -> keras.layers.Layer:
        if isinstance(kernel_plan.layer, keras.layers.Rescaling):
            return _rescaling_as_depthwise(kernel_plan.layer, kernel_plan.channels)
        layer, bn = kernel_plan.layer, kernel_plan.batch_norm
        kernel = np.asarray(keras.ops.convert_to_numpy(layer.kernel), np.float32)
        structure = KernelStructure.from_kernel(kernel, self.scheme.keep_zeros,
                                                self.scheme.keep_clusters)
        weights: dict[str, np.ndarray] = {}
        if structure.centroids is not None:
            weights.update(centroids=structure.centroids, indices=structure.indices)
        else:
            weights["kernel"] = kernel
        if structure.keep_zeros:
            weights["mask"] = (kernel != 0).astype(np.float32)
        config = layer.get_config()
        bias = keras.ops.convert_to_numpy(layer.bias) if config.get("use_bias") else None
        batch_norm = None
        if bn is None and bias is not None:
            weights["bias"] = bias
        if bn is not None:
            batch_norm = {"epsilon": float(bn.epsilon), "momentum": float(bn.momentum),
                          "center": bool(bn.center), "scale": bool(bn.scale),
                          "frozen": not bn.trainable}
            for name in ("gamma", "beta", "moving_mean", "moving_variance"):
                variable = getattr(bn, name, None)
                if variable is not None:
                    weights[name] = keras.ops.convert_to_numpy(variable)
            if bias is not None:
                # Batch norm subtracts the batch mean, so a bias before it never changes the
                # output in training and gets no gradient; it moves into the moving mean
                # (BN(conv + b) with mean m is BN(conv) with mean m - b) and the op has one bias.
                weights["moving_mean"] = weights["moving_mean"] - bias
                config["use_bias"] = False
        quantized = QUANTIZED_LAYERS[type(layer)](
            config, kernel.shape, activation=kernel_plan.activation,
            batch_norm=batch_norm, keep_zeros=structure.keep_zeros,
            num_centroids=None if structure.centroids is None else len(structure.centroids),
            initial_weights=weights, name=layer.name, trainable=layer.trainable)
        return quantized


def _rescaling_as_depthwise(layer: keras.layers.Rescaling, channels: int) -> keras.layers.Layer:
    """``x * scale + offset`` as a 1x1 depthwise convolution: one int8 DEPTHWISE_CONV_2D.

    The converter leaves a Rescaling's MUL/ADD in float (its constants carry no int8 range),
    with a DEQUANTIZE/QUANTIZE pair around them; per channel, ``scale`` is the one kernel
    value (exact in int8: it is the channel's range) and ``offset`` the bias.
    """
    scale = np.broadcast_to(np.asarray(keras.ops.convert_to_numpy(layer.scale), np.float32),
                            (channels,))
    offset = np.broadcast_to(np.asarray(keras.ops.convert_to_numpy(layer.offset), np.float32),
                             (channels,))
    config = {"kernel_size": (1, 1), "strides": (1, 1), "padding": "valid",
              "dilation_rate": (1, 1), "depth_multiplier": 1, "use_bias": True}
    return QuantizedDepthwiseConv2D(
        config, (1, 1, channels, 1), initial_weights={
            "kernel": scale.reshape(1, 1, channels, 1).copy(), "bias": offset.copy()},
        name=layer.name, trainable=False)
