"""``strip_keras3``: a plain Keras 3 model with the pruning masks and clusters written in."""

from __future__ import annotations

from typing import Any

from tflite_opt._keras import keras3
from tflite_opt.train.keras3.cloning import deep_copy
from tflite_opt.train.keras3.clustering import ClusterWeights
from tflite_opt.train.keras3.pruning import PruneLowMagnitude
from tflite_opt.train.keras3.registry import iter_layers

keras = keras3()


def strip_keras3(model: Any) -> Any:
    """Returns a plain copy of a Keras 3 ``model`` without tflite_opt's wrappers.

    Pruned kernels come out as ``kernel * mask`` (exactly the mask's sparsity); clustered
    kernels hold their centroid values. The caller's model is not modified; other layers
    (QAT wrappers included) are copied as they are.

    Example:
        >>> plain = strip_keras3(pruned)
    """
    work = deep_copy(model)
    for layer in iter_layers(work):
        if isinstance(layer, PruneLowMagnitude):
            layer.apply_mask()
        elif isinstance(layer, ClusterWeights):
            layer.apply_clusters()

    def unwrap(layer: Any) -> Any:
        if isinstance(layer, (PruneLowMagnitude, ClusterWeights)):
            return layer.layer
        return layer

    unwrapped = keras.models.clone_model(work, clone_function=unwrap)
    # clone_model reuses the unwrapped layers of ``work``; copy once more so the result owns
    # its variables.
    return deep_copy(unwrapped)


def is_pruned_keras3(model: Any) -> bool:
    """Whether any layer of a Keras 3 ``model`` is wrapped for pruning."""
    return any(isinstance(l, PruneLowMagnitude) for l in iter_layers(model))


def is_clustered_keras3(model: Any) -> bool:
    """Whether any layer of a Keras 3 ``model`` is wrapped for clustering."""
    return any(isinstance(l, ClusterWeights) for l in iter_layers(model))
