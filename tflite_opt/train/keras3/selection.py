"""Which layers of a Keras 3 model a ``LayerPolicy`` selects for pruning or clustering.

The same rules as the tf_keras path (``tflite_opt/train/layers.py``), so one recipe means the
same on both Kerases: skip the first convolution and the classifier by default, ``skip`` and
``only`` by layer name, per-layer sparsity or cluster counts; a nested model or an unknown layer
with weights is an error that names the layer and the way out.
"""

from __future__ import annotations

from typing import Any

from tflite_opt._keras import keras3
from tflite_opt.errors import InvalidArgumentError, UnsupportedLayerError
from tflite_opt.train.keras3.cloning import check_graph_model
from tflite_opt.train.keras3.registry import CONV_TYPES, inner_layer, iter_layers, kernel_slot
from tflite_opt.train.recipe import LayerPolicy
from tflite_opt.train.selection import Selection, policy_candidates

keras = keras3()


def _is_tflite_opt_wrapper(layer: Any) -> bool:
    return isinstance(layer, keras.layers.Wrapper) and \
        type(layer).__module__.startswith("tflite_opt.")


def select_layers(model: Any, policy: LayerPolicy, method: str) -> Selection:
    """Applies ``policy`` to a Keras 3 ``model`` for ``method`` (``prune`` or ``cluster``).

    Raises:
        UnsupportedLayerError: a nested model or a custom layer with weights is neither skipped
            nor supported; the message names the layer (name and class) and the way out.
        InvalidArgumentError: the model is already wrapped, or the policy names a layer that is
            not in the model.

    Example:
        >>> select_layers(model, LayerPolicy(), "prune").names
        ('conv2', 'dense1')
    """
    check_graph_model(model, method)
    wrapped = [l for l in iter_layers(model) if _is_tflite_opt_wrapper(l)]
    if wrapped:
        layer = wrapped[0]
        raise InvalidArgumentError(
            f"model {model.name!r} is already wrapped (layer {layer.name!r} is a "
            f"{type(layer).__name__}); call tflite_opt.strip(model) before {method}, or use "
            "OptimizationPlan to chain prune -> cluster -> qat")
    chosen = []
    for layer in policy_candidates(model, policy, method, inner=inner_layer,
                                   conv_types=CONV_TYPES, dense_type=keras.layers.Dense,
                                   model_type=keras.Model):
        if kernel_slot(layer) is not None:
            chosen.append(layer.name)
        elif layer.trainable_weights and not _has_no_kernel(layer):
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({type(layer).__name__}) has weights but is not a layer "
                f"tflite_opt can {method} on Keras 3 (Conv, DepthwiseConv, SeparableConv, Dense, "
                f"Embedding); skip it with LayerPolicy(skip=[{layer.name!r}]) (policy: "
                "{skip: [...]} in a recipe)")
    return Selection.of(chosen, policy, method)


# Built-in layers with weights but no kernel to prune or cluster (as in tfmot's registries).
def _has_no_kernel(layer: Any) -> bool:
    return isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization,
                              keras.layers.GroupNormalization, keras.layers.PReLU,
                              keras.layers.Normalization))
