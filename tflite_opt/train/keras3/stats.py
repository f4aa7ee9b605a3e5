"""Kernel statistics (sparsity, unique values) of plain and wrapped Keras 3 models."""

from __future__ import annotations

from typing import Any

import numpy as np

from tflite_opt._keras import keras3
from tflite_opt.train.keras3.clustering import ClusterWeights
from tflite_opt.train.keras3.pruning import PruneLowMagnitude
from tflite_opt.train.keras3.registry import inner_layer, iter_layers, kernel_slot, kernel_variable

keras = keras3()
ops = keras.ops


def effective_kernel(layer: Any) -> np.ndarray | None:
    """The kernel values ``layer`` computes with, whatever tflite_opt wrapper it sits in."""
    if isinstance(layer, PruneLowMagnitude):
        return np.asarray(ops.convert_to_numpy(kernel_variable(layer.layer))) * \
            np.asarray(ops.convert_to_numpy(layer.mask))
    if isinstance(layer, ClusterWeights):
        return np.asarray(ops.convert_to_numpy(layer.clustered_kernel()))
    float_kernel = getattr(layer, "float_kernel", None)
    if _is_qat_layer(layer) and callable(float_kernel):
        # A Keras 3 QAT layer (train/keras3/quant_layers.py): its kernel before fake quantization.
        return np.asarray(ops.convert_to_numpy(float_kernel()))
    inner = inner_layer(layer)
    if kernel_slot(inner) is None or not inner.built:
        return None
    return np.asarray(ops.convert_to_numpy(kernel_variable(inner)))


def _is_qat_layer(layer: Any) -> bool:
    from tflite_opt.train.keras3.quant_layers import QuantizedKernelLayer

    return isinstance(layer, QuantizedKernelLayer)


def weight_stats_keras3(model: Any) -> dict[str, dict[str, float | int]]:
    """``{layer: {"sparsity", "unique_values", "size"}}`` of a Keras 3 model's kernels.

    Keys are the names of the layers inside the wrappers, as for tf_keras models.

    Example:
        >>> weight_stats_keras3(strip_keras3(pruned))["dense1"]["sparsity"]
    """
    stats: dict[str, dict[str, float | int]] = {}
    for layer in iter_layers(model):
        kernel = effective_kernel(layer)
        if kernel is None:
            continue
        flat = kernel.ravel()
        stats[inner_layer(layer).name] = {
            "sparsity": float(np.mean(flat == 0)) if flat.size else 0.0,
            "unique_values": int(np.unique(flat).size),
            "size": int(flat.size),
        }
    return stats


def optimized_layers_keras3(model: Any) -> list[str]:
    """Names (inner) of the layers wrapped for pruning or clustering."""
    return [inner_layer(l).name for l in iter_layers(model)
            if isinstance(l, (PruneLowMagnitude, ClusterWeights))]
