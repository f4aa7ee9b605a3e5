"""Pruning, clustering and stripping for Keras 3 models (``import keras``).

tfmot 0.8.1 only works on tf_keras, and Keras 3 has no pruning or clustering; this package is
tflite_opt's own implementation, written with ``keras.ops`` so it runs on any Keras backend
(conversion to TFLite needs ``KERAS_BACKEND=tensorflow``). Users reach it through the public
functions (``tflite_opt.prune``, ``cluster``, ``strip``, ...), which pick it for Keras 3 models.

The wrapper layers and schedules are registered with
``keras.saving.register_keras_serializable(package="tflite_opt")``: importing this package
is what lets ``keras.saving.load_model`` read a checkpoint saved mid-training
(``tflite_opt.load_model`` does it for you).
"""

from __future__ import annotations

from typing import Any

from tflite_opt.train.keras3.callbacks import PruningStepKeras3
from tflite_opt.train.keras3.cloning import check_graph_model, deep_copy
from tflite_opt.train.keras3.clustering import ClusterWeights, cluster_keras3, initial_centroids
from tflite_opt.train.keras3.pruning import (PruneLowMagnitude, m_by_n_mask, magnitude_mask,
                                             prune_keras3)
from tflite_opt.train.keras3.schedules import ConstantSparsity, PolynomialDecay, schedule_for_stage
from tflite_opt.train.keras3.selection import select_layers
from tflite_opt.train.keras3.stats import optimized_layers_keras3, weight_stats_keras3
from tflite_opt.train.keras3.strip import is_clustered_keras3, is_pruned_keras3, strip_keras3


def register_saved_classes() -> None:
    """Imports every module that registers tflite_opt's Keras 3 classes (wrappers, schedules,
    and the QAT layers of ``qat.py`` when that module is present), so files using them load."""
    import importlib

    try:
        importlib.import_module("tflite_opt.train.keras3.qat")
    except ModuleNotFoundError as exc:
        if exc.name != "tflite_opt.train.keras3.qat":
            raise


def custom_objects() -> dict[str, Any]:
    """tflite_opt's Keras 3 classes by name, for ``keras.saving.custom_object_scope``."""
    objects: dict[str, Any] = {cls.__name__: cls for cls in (
        PruneLowMagnitude, ClusterWeights, PolynomialDecay, ConstantSparsity)}
    return objects


__all__ = [
    "ClusterWeights", "ConstantSparsity", "PolynomialDecay", "PruneLowMagnitude",
    "PruningStepKeras3", "check_graph_model", "cluster_keras3", "custom_objects", "deep_copy",
    "initial_centroids", "is_clustered_keras3", "is_pruned_keras3", "m_by_n_mask",
    "magnitude_mask", "optimized_layers_keras3", "prune_keras3", "register_saved_classes",
    "schedule_for_stage",
    "select_layers", "strip_keras3", "weight_stats_keras3",
]
