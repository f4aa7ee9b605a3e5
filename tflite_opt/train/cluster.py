"""Weight clustering: ``cluster(model, ...)`` wraps the selected layers; ``strip`` unwraps.

Built on ``tfmot.clustering.keras``; adds the per-layer policy, string enums for the centroid
initialization, and copies instead of mutation.
"""

from __future__ import annotations

from tflite_opt._keras import keras
from tflite_opt.train.layers import clone_with, select_layers, tfmot
from tflite_opt.train.recipe import ClusterStage, LayerPolicy

# recipe name -> tfmot CentroidInitialization member name
CENTROID_INITS = {
    "kmeans++": "KMEANS_PLUS_PLUS",
    "linear": "LINEAR",
    "density": "DENSITY_BASED",
    "random": "RANDOM",
}


def cluster(model: keras.Model, number_of_clusters: int = 16, *, init: str = "kmeans++",
            preserve_sparsity: bool = True, per_channel: bool = False,
            policy: LayerPolicy | None = None, stage: ClusterStage | None = None) -> keras.Model:
    """Returns a copy of ``model`` whose selected kernels share ``number_of_clusters`` values.

    Fine-tune the result with ``fit`` (no callback needed), then call :func:`strip`: each
    clustered kernel then holds at most ``number_of_clusters`` distinct values (per output
    channel with ``per_channel``), the zero of a pruned model being one of them.

    Args:
        model: A built Sequential or Functional tf_keras model (plain or stripped, not wrapped).
        number_of_clusters: Clusters per kernel; >= 2. Defaults to 16.
        init: ``kmeans++``, ``linear``, ``density`` or ``random``. Defaults to kmeans++.
        preserve_sparsity: Keep the zeros of a pruned model zero. Defaults to True.
        per_channel: Cluster each output channel of Conv2D kernels separately. Defaults to False.
        policy: Which layers, and per-layer cluster counts. Defaults to ``LayerPolicy()``.
        stage: A full ``ClusterStage`` config; overrides the keyword settings above.

    Raises:
        UnsupportedLayerError: a custom layer or nested model is neither supported nor skipped.

    Example:
        >>> clustered = cluster(strip(pruned), 16, preserve_sparsity=True)
        >>> clustered.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
        >>> clustered.fit(x, y, epochs=2)
        >>> plain = strip(clustered)
    """
    policy = policy or LayerPolicy()
    if stage is None:
        stage = ClusterStage(number_of_clusters=number_of_clusters, init=init,
                             preserve_sparsity=preserve_sparsity, per_channel=per_channel)
    stage.validate(source=None, prefix="cluster")
    policy.validate()
    selection = select_layers(model, policy, "cluster")
    cl = tfmot().clustering.keras
    init_enum = getattr(cl.CentroidInitialization, CENTROID_INITS[stage.init])

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer | None:
        if layer.name not in selection.names:
            return None
        n = selection.overrides.get(layer.name, stage.number_of_clusters)
        # tfmot only clusters Conv2D per channel; other layers fall back to per-tensor.
        per_channel = stage.per_channel and isinstance(layer, keras.layers.Conv2D) and \
            type(layer) is keras.layers.Conv2D
        return cl.cluster_weights(layer, number_of_clusters=n, cluster_centroids_init=init_enum,
                                  preserve_sparsity=stage.preserve_sparsity,
                                  cluster_per_channel=per_channel)

    return clone_with(model, wrap)


def is_clustered(model: keras.Model) -> bool:
    """Whether any layer of ``model`` is wrapped for clustering."""
    from tensorflow_model_optimization.python.core.clustering.keras import cluster_wrapper

    from tflite_opt.train.layers import iter_layers

    return any(isinstance(l, cluster_wrapper.ClusterWeights) for l in iter_layers(model))
