"""Weight clustering for Keras 3: the ``ClusterWeights`` wrapper and ``cluster_keras3``.

Hand-written because no library clusters Keras 3 models (tfmot 0.8.1 only wraps tf_keras
layers). As in tfmot's ``cluster_wrapper.py``: each clustered kernel is replaced in the forward
pass by ``centroids[assignment]``, where each weight's assignment is its nearest centroid,
recomputed at every call from the current (trained) weights; the centroids are trainable (they
get the summed gradient of their members) and the original weights get the same gradient
through a straight-through estimator, so weights can move between clusters.

Sparsity is preserved the way tflite_opt's recipes need it: the zeros of a pruned kernel are
not members of any centroid (a fixed mask keeps them exactly zero), and one of the
``number_of_clusters`` values is reserved for that zero, so a stripped kernel holds at most
``number_of_clusters`` distinct values, zero included (per output channel with
``per_channel``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tflite_opt._keras import keras3
from tflite_opt.errors import InvalidArgumentError
from tflite_opt.train.keras3.cloning import clone_with
from tflite_opt.train.keras3.registry import (PER_CHANNEL_TYPES, call_inner, kernel_replaced,
                                              kernel_slot, kernel_variable)
from tflite_opt.train.keras3.selection import select_layers
from tflite_opt.train.recipe import CENTROID_INITS, ClusterStage, LayerPolicy

keras = keras3()
ops = keras.ops


def initial_centroids(values: np.ndarray, count: int, init: str, seed: int = 0) -> np.ndarray:
    """``count`` starting centroids for the 1-D array ``values`` (the weights to cluster).

    ``linear``: evenly spaced between min and max; ``density``: at evenly spaced quantiles (the
    weight distribution's density, as tfmot's density-based init); ``random``: uniform between
    min and max; ``kmeans++``: scikit-learn's ``kmeans_plusplus`` seeding.

    Example:
        >>> initial_centroids(np.array([-1.0, 0.2, 0.9]), 2, "linear")
        array([-1. ,  0.9], dtype=float32)
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return np.zeros(count, np.float32)
    low, high = float(values.min()), float(values.max())
    if init == "linear":
        out = np.linspace(low, high, count)
    elif init == "density":
        out = np.quantile(values, np.linspace(0.0, 1.0, count))
    elif init == "random":
        out = np.sort(np.random.default_rng(seed).uniform(low, high, count))
    elif init == "kmeans++":
        distinct = np.unique(values)
        if distinct.size <= count:
            out = np.concatenate([distinct, np.full(count - distinct.size, distinct[-1])])
        else:
            from sklearn.cluster import kmeans_plusplus

            out, _ = kmeans_plusplus(values.reshape(-1, 1), n_clusters=count, random_state=seed)
            out = np.sort(out.ravel())
    else:
        raise InvalidArgumentError(f"init is {init!r}; accepted: {', '.join(CENTROID_INITS)}")
    return np.asarray(out, np.float32)


def _channels_first(weights: Any) -> Any:
    """Kernel ``[..., channels]`` -> ``[channels, members]``."""
    channels = int(weights.shape[-1])
    return ops.transpose(ops.reshape(weights, (-1, channels)))


@keras.saving.register_keras_serializable(package="tflite_opt")
class ClusterWeights(keras.layers.Wrapper):
    """Wraps a Keras 3 layer so that its kernel takes only a few shared (trainable) values.

    Variables: ``cluster_centroids`` (``[clusters]``, or ``[channels, clusters]`` per channel)
    and ``sparsity_mask`` (1 where the kernel was non-zero when wrapped, if
    ``preserve_sparsity``).

    Args:
        layer: A built layer with a registered kernel.
        number_of_clusters: Distinct values per kernel (per channel), zero included when the
            kernel has zeros to preserve; >= 2.
        init: ``kmeans++``, ``linear``, ``density`` or ``random``. Defaults to kmeans++.
        preserve_sparsity: Keep the zeros of a pruned kernel zero. Defaults to True.
        per_channel: One set of centroids per output channel (Conv1D/2D/3D). Defaults to False.
        reserve_zero: One of the ``number_of_clusters`` values is the preserved zero. Defaults
            to None: decided when built (the kernel has zeros and ``preserve_sparsity``).

    Example:
        >>> wrapped = ClusterWeights(dense, 16, init="linear")
    """

    def __init__(self, layer: Any, number_of_clusters: int = 16, init: str = "kmeans++",
                 preserve_sparsity: bool = True, per_channel: bool = False,
                 reserve_zero: bool | None = None, **kwargs: Any) -> None:
        if kernel_slot(layer) is None:
            raise InvalidArgumentError(
                f"layer {layer.name!r} ({type(layer).__name__}) has no kernel tflite_opt can "
                "cluster on Keras 3; skip it with LayerPolicy(skip=[...])")
        if not isinstance(number_of_clusters, int) or number_of_clusters < 2:
            raise InvalidArgumentError(f"number_of_clusters is {number_of_clusters!r} for layer "
                                       f"{layer.name!r}; accepted: an integer >= 2")
        if init not in CENTROID_INITS:
            raise InvalidArgumentError(f"init is {init!r}; accepted: {', '.join(CENTROID_INITS)}")
        kwargs.setdefault("name", f"cluster_{layer.name}")
        super().__init__(layer, **kwargs)
        self.number_of_clusters = number_of_clusters
        self.init = init
        self.preserve_sparsity = bool(preserve_sparsity)
        self.per_channel = bool(per_channel) and isinstance(layer, PER_CHANNEL_TYPES)
        self.reserve_zero = reserve_zero
        self.cluster_centroids = None
        self.sparsity_mask = None

    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        kernel = kernel_variable(self.layer)
        values = np.asarray(ops.convert_to_numpy(kernel), np.float32)
        nonzero = values != 0 if self.preserve_sparsity else np.ones(values.shape, bool)
        if self.reserve_zero is None:
            self.reserve_zero = bool(self.preserve_sparsity and not nonzero.all())
        count = self.number_of_clusters - int(self.reserve_zero)
        if self.per_channel:
            by_channel = values.reshape(-1, values.shape[-1]).T
            keep = nonzero.reshape(-1, values.shape[-1]).T
            start = np.stack([initial_centroids(row[k], count, self.init, seed=i)
                              for i, (row, k) in enumerate(zip(by_channel, keep))])
        else:
            start = initial_centroids(values[nonzero], count, self.init)
        self.cluster_centroids = self.add_weight(
            name="cluster_centroids", shape=start.shape,
            initializer=keras.initializers.Constant(start), dtype="float32", trainable=True)
        self.sparsity_mask = self.add_weight(
            name="sparsity_mask", shape=values.shape,
            initializer=keras.initializers.Constant(nonzero.astype(np.float32)), dtype="float32",
            trainable=False)
        self.built = True

    def clustered_kernel(self) -> Any:
        """The kernel the layer computes with: nearest centroids, zeros kept, gradient passed on."""
        weights = ops.convert_to_tensor(kernel_variable(self.layer))
        centroids = ops.convert_to_tensor(self.cluster_centroids)
        if self.per_channel:
            members = _channels_first(weights)  # [channels, members]
            distance = ops.abs(ops.expand_dims(members, -1) - ops.expand_dims(centroids, 1))
            nearest = ops.argmin(distance, axis=-1)
            values = ops.take_along_axis(centroids, nearest, axis=1)
            values = ops.reshape(ops.transpose(values), tuple(weights.shape))
        else:
            nearest = ops.argmin(ops.abs(ops.expand_dims(weights, -1) - centroids), axis=-1)
            values = ops.take(centroids, nearest)
        # Forward: the centroid values; backward: the weights' gradient also reaches the
        # original weights (straight-through), the centroids get their members' sum.
        values = values + (weights - ops.stop_gradient(weights))
        return ops.multiply(values, self.sparsity_mask)

    def call(self, inputs: Any, training: Any = None, **kwargs: Any) -> Any:
        kernel = ops.cast(self.clustered_kernel(), self.layer.compute_dtype)
        with kernel_replaced(self.layer, kernel):
            return call_inner(self.layer, inputs, training, kwargs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.layer.compute_output_shape(input_shape)

    def apply_clusters(self) -> None:
        """Writes the clustered values into the kernel variable (done by ``strip``)."""
        kernel_variable(self.layer).assign(ops.stop_gradient(self.clustered_kernel()))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(number_of_clusters=self.number_of_clusters, init=self.init,
                      preserve_sparsity=self.preserve_sparsity, per_channel=self.per_channel,
                      reserve_zero=self.reserve_zero)
        return config


def cluster_keras3(model: Any, stage: ClusterStage, *, policy: LayerPolicy | None = None) -> Any:
    """Returns a copy of a Keras 3 ``model`` whose selected kernels share a few trained values.

    The Keras 3 implementation behind ``tflite_opt.cluster`` (same arguments, as a stage).

    Example:
        >>> clustered = cluster_keras3(strip(pruned), ClusterStage(number_of_clusters=16))
        >>> clustered.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
        >>> clustered.fit(x, y, epochs=2)
    """
    policy = policy or LayerPolicy()
    stage.validate(source=None, prefix="cluster")
    policy.validate()
    selection = select_layers(model, policy, "cluster")

    def wrap(layer: Any) -> Any | None:
        if layer.name not in selection.names:
            return None
        clusters = selection.overrides.get(layer.name, stage.number_of_clusters)
        return ClusterWeights(layer, clusters, init=stage.init,
                              preserve_sparsity=stage.preserve_sparsity,
                              per_channel=stage.per_channel)

    return clone_with(model, wrap)
