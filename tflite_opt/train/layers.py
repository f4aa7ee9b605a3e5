"""Which layers of a model can be pruned, clustered or quantized, and which the policy selects.

The registry here is the one place that knows, per method, whether a layer can be wrapped and
which of its variables are "kernels" (the weights that sparsity and clustering act on). It defers
to tfmot's own registries so that it never claims more than tfmot can do.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from tflite_opt._keras import keras
from tflite_opt.errors import InvalidArgumentError, UnsupportedLayerError
from tflite_opt.train.recipe import LayerPolicy
from tflite_opt.train.selection import Selection, policy_candidates

# Layer classes whose kernels tflite_opt reports in weight_stats, with the attribute names of
# those kernels. Order matters: subclasses first (SeparableConv2D and DepthwiseConv2D are Conv2Ds).
# SeparableConv reports its pointwise kernel: it holds most of the weights and is the one tfmot
# prunes and clusters (its depthwise kernel, like DepthwiseConv2D's, is neither).
KERNEL_ATTRS: dict[type, tuple[str, ...]] = {
    keras.layers.SeparableConv2D: ("pointwise_kernel",),
    keras.layers.SeparableConv1D: ("pointwise_kernel",),
    keras.layers.DepthwiseConv2D: ("depthwise_kernel",),
    keras.layers.Conv1D: ("kernel",),
    keras.layers.Conv2D: ("kernel",),
    keras.layers.Conv3D: ("kernel",),
    keras.layers.Dense: ("kernel",),
    keras.layers.Embedding: ("embeddings",),
}

CONV_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
              keras.layers.DepthwiseConv2D, keras.layers.SeparableConv1D,
              keras.layers.SeparableConv2D)


def tfmot():
    """Imports tfmot lazily (slow to import, and only for tf_keras models), through
    ``_keras.import_tfmot`` so that the user's ``TF_USE_LEGACY_KERAS`` is left as it was."""
    from tflite_opt._keras import import_tfmot

    return import_tfmot()


def kernel_attrs(layer: keras.layers.Layer) -> tuple[str, ...]:
    """Names of ``layer``'s kernel attributes (empty for layers without kernels)."""
    for cls, attrs in KERNEL_ATTRS.items():
        if isinstance(layer, cls):
            return attrs
    return ()


def _prunable(layer: keras.layers.Layer) -> bool:
    from tensorflow_model_optimization.python.core.sparsity.keras import prunable_layer, prune_registry

    if isinstance(layer, prunable_layer.PrunableLayer):
        return bool(layer.get_prunable_weights())
    registry = prune_registry.PruneRegistry
    return registry.supports(layer) and bool(registry._weight_names(layer))  # noqa: SLF001


def _clusterable(layer: keras.layers.Layer) -> bool:
    from tensorflow_model_optimization.python.core.clustering.keras import clusterable_layer, clustering_registry

    if isinstance(layer, clusterable_layer.ClusterableLayer):
        return bool(layer.get_clusterable_weights())
    registry = clustering_registry.ClusteringRegistry
    return registry.supports(layer) and bool(registry._weight_names(layer))  # noqa: SLF001


def _wrappable_by_tfmot(layer: keras.layers.Layer) -> bool:
    """Whether tfmot knows this layer class at all (even if it has nothing to prune)."""
    from tensorflow_model_optimization.python.core.clustering.keras import clusterable_layer
    from tensorflow_model_optimization.python.core.sparsity.keras import prunable_layer, prune_registry

    return (isinstance(layer, (prunable_layer.PrunableLayer, clusterable_layer.ClusterableLayer))
            or prune_registry.PruneRegistry.supports(layer))


# method name -> predicate "this layer has weights the method acts on"
METHODS: dict[str, Callable[[keras.layers.Layer], bool]] = {
    "prune": _prunable,
    "cluster": _clusterable,
}


def _is_wrapper(layer: keras.layers.Layer) -> bool:
    return isinstance(layer, keras.layers.Wrapper) and _inner(layer) is not layer


def _inner(layer: keras.layers.Layer) -> keras.layers.Layer:
    """The layer inside tfmot's wrappers (pruning, clustering, quantization), or the layer."""
    seen = 0
    while hasattr(layer, "layer") and isinstance(getattr(layer, "layer"), keras.layers.Layer) \
            and seen < 4:
        layer = layer.layer
        seen += 1
    return layer


def iter_layers(model: keras.Model) -> Iterator[keras.layers.Layer]:
    """All layers of ``model``, descending into nested models (not into wrappers)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def check_graph_model(model: Any, what: str) -> None:
    """Raises unless ``model`` is a built Sequential or Functional Keras model."""
    if not isinstance(model, keras.Model):
        raise InvalidArgumentError(f"{what} needs a Keras model, got a {type(model).__name__}; "
                                   "put the layer in a model first, e.g. "
                                   "keras.Sequential([keras.Input(shape), layer])")
    if not (isinstance(model, keras.Sequential) or getattr(model, "_is_graph_network", False)):
        raise UnsupportedLayerError(
            f"model {model.name!r} ({type(model).__name__}) is a subclassed model; {what} needs a "
            "Sequential or Functional model (tfmot clones the layer graph). Rebuild it with "
            "keras.Input(...) and the functional API, or wrap its layers yourself with "
            "tflite_opt.train.prune/cluster on a functional model")
    if not model.built:
        raise InvalidArgumentError(f"model {model.name!r} is not built; call model.build(input_shape) "
                                   f"or give it an Input before {what}")


def select_layers(model: keras.Model, policy: LayerPolicy, method: str) -> Selection:
    """Applies ``policy`` to ``model`` for ``method`` (``prune`` or ``cluster``).

    Raises:
        UnsupportedLayerError: a nested model or a custom layer with weights is neither skipped
            nor supported; the message names the layer (name and class) and the way out.
        InvalidArgumentError: the policy names a layer that is not in the model.
    """
    check_graph_model(model, method)
    wrapped = [l for l in iter_layers(model)
               if _is_wrapper(l) and type(l).__module__.startswith("tensorflow_model_optimization")]
    if wrapped:
        layer = wrapped[0]
        raise InvalidArgumentError(
            f"model {model.name!r} is already wrapped (layer {layer.name!r} is a "
            f"{type(layer).__name__}); call tflite_opt.train.strip(model) before {method}, or "
            "use OptimizationPlan to chain prune -> cluster -> qat")
    has_weights = METHODS[method]
    chosen = []
    for layer in policy_candidates(model, policy, method, inner=_inner, conv_types=CONV_TYPES,
                                   dense_type=keras.layers.Dense, model_type=keras.Model):
        if has_weights(layer):
            chosen.append(layer.name)
        elif layer.trainable_weights and not _wrappable_by_tfmot(layer) and not kernel_attrs(layer):
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({type(layer).__name__}) has weights but is not a layer "
                f"tfmot can {method}; skip it with LayerPolicy(skip=[{layer.name!r}]) (policy: "
                "{skip: [...]} in a recipe), or annotate it: make the class implement "
                "tfmot.sparsity.keras.PrunableLayer.get_prunable_weights() / "
                "tfmot.clustering.keras.ClusterableLayer.get_clusterable_weights()")
    return Selection.of(chosen, policy, method)


def deep_copy(model: keras.Model) -> keras.Model:
    """A structurally identical model with its own variables (the caller's stays untouched)."""
    t = tfmot()
    with t.quantization.keras.quantize_scope(), t.sparsity.keras.prune_scope(), \
            t.clustering.keras.cluster_scope():
        copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def clone_with(model: keras.Model, wrap: Callable[[keras.layers.Layer], keras.layers.Layer | None]
               ) -> keras.Model:
    """Deep-copies ``model`` and replaces each layer for which ``wrap`` returns a new layer."""
    copy = deep_copy(model)

    def clone_function(layer: keras.layers.Layer) -> keras.layers.Layer:
        wrapped = wrap(layer)
        return layer if wrapped is None else wrapped

    return keras.models.clone_model(copy, clone_function=clone_function)
