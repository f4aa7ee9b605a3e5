"""Kernel statistics (sparsity, unique values) of plain and wrapped models."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from tflite_opt._keras import keras
from tflite_opt.train.layers import _inner, iter_layers, kernel_attrs


def _effective_kernels(layer: keras.layers.Layer) -> list[np.ndarray]:
    """The kernel values the layer computes with, whatever wrapper it sits in."""
    from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_wrapper

    inner = _inner(layer)
    attrs = kernel_attrs(inner)
    if not attrs:
        return []
    if isinstance(layer, cluster_wrapper.ClusterWeights):
        # The wrapper keeps the trainable original kernel; the layer computes with
        # centroids[pulling_indices]. Rebuild that eagerly.
        out = []
        for attr in attrs:
            if attr in layer.original_clusterable_weights:
                algo = layer.clustering_algorithms[attr]
                indices = layer.pulling_indices[attr]
                weight = np.array(algo.get_clustered_weight(
                    indices, layer.original_clusterable_weights[attr]))
                if layer.preserve_sparsity and attr in layer.zero_idx:
                    # The layer zeroes the centroid nearest to 0 at every call (the optimizer
                    # moves it off zero between calls); mirror that here without mutating.
                    weight[np.asarray(indices) == np.asarray(layer.zero_idx[attr])] = 0.0
                out.append(weight)
            else:
                out.append(np.asarray(getattr(inner, attr)))
        return out
    if isinstance(layer, quantize_wrapper.QuantizeWrapper):
        # During QAT the wrapper replaces the kernel attribute by a (symbolic) quantized
        # tensor; the variables stay in _weight_vars. (P)CQAT assigns the clustered values
        # to them each training step.
        by_name = {}
        for weight, _quantizer, _vars in getattr(layer, "_weight_vars", []):
            by_name[weight.name.split("/")[-1].split(":")[0]] = weight
        out = []
        for attr in attrs:
            var = by_name.get(attr)
            if var is None:
                var = next((w for w in inner.weights if w.name.split("/")[-1].startswith(attr)), None)
            if var is not None:
                out.append(np.asarray(var.numpy()))
        return out
    return [np.asarray(getattr(inner, attr).numpy()) for attr in attrs if hasattr(inner, attr)]


def weight_stats(model: keras.Model) -> dict[str, dict[str, float | int]]:
    """Sparsity and unique-value count of each layer's kernels.

    Works on plain models and on models wrapped for pruning, clustering or QAT; keys are the
    names of the layers inside the wrappers, so they stay the same across stages. Only kernel
    weights count (not biases, not BatchNormalization).

    Returns:
        ``{layer_name: {"sparsity": float, "unique_values": int, "size": int}}``.

    Example:
        >>> stats = weight_stats(strip(pruned))
        >>> stats["dense1"]["sparsity"]
        0.75
    """
    stats: dict[str, dict[str, float | int]] = {}
    for layer in iter_layers(model):
        kernels = _effective_kernels(layer)
        if not kernels:
            continue
        flat = np.concatenate([k.ravel() for k in kernels])
        stats[_inner(layer).name] = {
            "sparsity": float(np.mean(flat == 0)) if flat.size else 0.0,
            "unique_values": int(np.unique(flat).size),
            "size": int(flat.size),
        }
    return stats


def summarize(stats: dict[str, dict[str, float | int]],
              layers: Iterable[str] | None = None) -> tuple[float, int]:
    """Size-weighted sparsity and max unique values over ``layers`` (default: all)."""
    names = list(stats) if layers is None else [n for n in layers if n in stats]
    if not names:
        return 0.0, 0
    size = sum(int(stats[n]["size"]) for n in names)
    zeros = sum(float(stats[n]["sparsity"]) * int(stats[n]["size"]) for n in names)
    return (zeros / size if size else 0.0), max(int(stats[n]["unique_values"]) for n in names)


def optimized_layers(model: keras.Model) -> list[str]:
    """Names (inner) of the layers wrapped for pruning or clustering in ``model``."""
    from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    return [_inner(layer).name for layer in iter_layers(model)
            if isinstance(layer, (pruning_wrapper.PruneLowMagnitude, cluster_wrapper.ClusterWeights))]
