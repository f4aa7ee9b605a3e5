"""Preserving QAT (CQAT, PCQAT, PQAT) models that save and load back: serializable quantizers.

Why tfmot 0.8.1's own do not (read in its ``cluster_preserve_quantize_registry.py`` and
``prune_preserve_quantize_registry.py``):

1. The collaborative schemes put their preserving weight quantizer into an 8-bit
   ``Default8BitQuantizeConfig``/``Default8BitConvQuantizeConfig``, whose ``get_config``
   records only the attribute names ("TODO(pulkitb): Add weight and activation quantizer to
   config"). A saved model therefore describes *plain* 8-bit QAT: loading rebuilds the plain
   quantizer, which makes 3 variables fewer than (P)CQAT saved (cluster centroids, original
   weights, pulling indices): "Layer expects 7 weight(s). Received 10". A PQAT file loads
   without an error, as plain QAT, and the next ``fit`` no longer keeps its zeros.
2. The quantizers build from the kernel's *values*: the number of centroids (a variable's
   shape), whether the layer is clustered at all, and the sparsity masks (tensors, never
   saved). While a file loads, the kernel still holds its initializer's random values.

Here each preserving quantizer records in its config what it built (the layout: clustered
or not, the centroids' and indices' shapes, whether zeros are kept), and keeps its masks in
non-trainable variables, so they are saved with the weights. When it is rebuilt from a
config that carries a layout, it creates the same variables in the same order with
placeholder values, which ``load_model``/``load_weights``/``set_weights`` then fill.
``PreservingQuantizeConfig`` is the 8-bit config that serializes its weight quantizer.
The classes are registered with tf_keras (package ``tflite_opt``) when this module is
imported: ``tflite_opt.optimize_scope()`` imports it, so a user's own ``load_model`` works
inside that scope. Nothing here runs code from a file: a config only names these classes.

Example:
    >>> qat = quantize_aware(clustered, "pcqat")      # uses these quantizers
    >>> qat.save("pcqat.h5")
    >>> with tflite_opt.optimize_scope():
    ...     again = keras.models.load_model("pcqat.h5")
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from tflite_opt._keras import import_tfmot, keras, tf

import_tfmot()  # before tfmot's submodules: keeps the user's TF_USE_LEGACY_KERAS as it was

# pylint: disable=wrong-import-position
from tensorflow_model_optimization.python.core.clustering.keras import (  # noqa: E402
    cluster_config, clustering_registry)
from tensorflow_model_optimization.python.core.quantization.keras import (  # noqa: E402
    quantizers)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (  # noqa: E402,E501
    cluster_preserve_quantize_registry as cpr)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (  # noqa: E402,E501
    prune_preserve_quantize_registry as ppr)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantize_registry as registry8, default_8bit_quantizers)

PACKAGE = "tflite_opt"
CENTROIDS_MASK_VARIABLE = "centroids_mask_tf"


@contextlib.contextmanager
def per_tensor_centroids(per_tensor: bool) -> Iterator[None]:
    """Makes tfmot's (P)CQAT read a Conv2D kernel's clusters per tensor.

    Workaround (tfmot 0.8.1): ``get_centroids`` guesses per-channel clustering for any Conv2D
    whose channels hold about the same number of unique values, which a per-tensor clustered
    kernel usually does; each channel's centroids then train apart and the kernel ends with
    up to clusters x channels unique values. The guess is replaced while the quantizer builds.

    Example:
        >>> with per_tensor_centroids(True):
        ...     result = quantizer.build(shape, "kernel", wrapper)
    """
    if not per_tensor:
        yield
        return
    original = cpr.get_centroids

    def get_centroids_per_tensor(layer, weight, data_format):
        centroids, index = cpr.get_unique(weight)
        return centroids, tf.size(centroids), index, False

    cpr.get_centroids = get_centroids_per_tensor
    try:
        yield
    finally:
        cpr.get_centroids = original


def _mask_variable(layer: Any, name: str, value: Any) -> Any:
    """A non-trainable variable holding a mask tfmot keeps as a tensor (so it is saved)."""
    return layer.add_weight(name, shape=value.shape, dtype=value.dtype, trainable=False,
                            initializer=keras.initializers.Constant(
                                keras.backend.batch_get_value([value])[0]))


def _placeholder(layer: Any, name: str, shape: Any, dtype: Any, trainable: bool) -> Any:
    """A variable of the saved shape; its value comes from the file's weights."""
    return layer.add_weight(name, shape=tuple(shape), dtype=dtype, trainable=trainable,
                            initializer=keras.initializers.Constant(0))


def _inner_weights_first(wrapper: Any) -> None:
    """Puts the wrapped layer's trainable weights before the quantizer's, as when it was made.

    ``QuantizeWrapperV2.build`` lists the inner layer's trainable weights first only if that
    layer is already built: true in ``quantize_aware`` (the layer comes from a model), false
    while a file loads (tfmot builds it afterwards). The cluster quantizer adds trainable
    weights (centroids, original weights), and ``.h5`` weights are restored by position, so
    without this the kernel's values would go to the centroids. (tfmot's own ``_dedup_weights``
    drops the later duplicates.)
    """
    own = wrapper._trainable_weights  # pylint: disable=protected-access
    missing = [w for w in wrapper.layer.trainable_weights if not any(w is o for o in own)]
    own[:0] = missing


class _ConfigDefined:
    """A quantizer rebuilt from, and compared by, its config (what a saved file holds)."""

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Any:
        return cls(**config)

    def __eq__(self, other: Any) -> bool:
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __ne__(self, other: Any) -> bool:
        return not self == other


class _ClusterPreserving(_ConfigDefined):
    """Build, save and rebuild of tfmot's cluster-preserving weight quantizers.

    ``layout`` is None while ``quantize_aware`` builds (read from the kernel's values, as
    tfmot does); after that it describes the variables, and a quantizer made from a config
    holding it creates the same ones without reading any value.
    """

    def _setup(self, preserve_sparsity: bool, per_channel: bool,
               layout: dict[str, Any] | None) -> None:
        self.preserve_sparsity = bool(preserve_sparsity)
        self.per_channel = bool(per_channel)
        self.layout = dict(layout) if layout is not None else None

    def _build_range(self, tensor_shape: Any, name: str, layer: Any) -> dict[str, Any]:
        raise NotImplementedError

    def build(self, tensor_shape: Any, name: str, layer: Any) -> dict[str, Any]:
        _inner_weights_first(layer)
        result = self._build_from_values(name, layer) if self.layout is None else \
            self._build_from_layout(name, layer)
        result.update(self._build_range(tensor_shape, name, layer))
        return result

    def _build_from_values(self, name: str, layer: Any) -> dict[str, Any]:
        with per_tensor_centroids(not self.per_channel):
            result = self._build_clusters(name, layer)  # may switch preserve_sparsity off
        clustered = cpr.CLUSTER_CENTROIDS in result
        if cpr.SPARSITY_MASK in result:
            result[cpr.SPARSITY_MASK] = _mask_variable(layer, cpr.SPARSITY_MASK,
                                                       result[cpr.SPARSITY_MASK])
        if result.get(cpr.CENTROIDS_MASK) is not None:
            result[cpr.CENTROIDS_MASK] = _mask_variable(layer, CENTROIDS_MASK_VARIABLE,
                                                        result[cpr.CENTROIDS_MASK])
        self.layout = {"clustered": clustered, "preserve_sparsity": self.preserve_sparsity}
        if clustered:
            centroids, indices = result[cpr.CLUSTER_CENTROIDS], result[cpr.PULLING_INDICES]
            self.layout.update(centroids_shape=[int(d) for d in centroids.shape],
                               indices_shape=[int(d) for d in indices.shape],
                               indices_dtype=indices.dtype.name)
        return result

    def _build_from_layout(self, name: str, layer: Any) -> dict[str, Any]:
        layout = self.layout
        self.preserve_sparsity = bool(layout["preserve_sparsity"])
        weights = getattr(layer.layer, name)
        result: dict[str, Any] = {}
        # The same variables in the same order as _build_from_values (tf_keras restores
        # .h5 weights by position within a layer).
        if layout["clustered"]:
            centroids = _placeholder(layer, cpr.CLUSTER_CENTROIDS, layout["centroids_shape"],
                                     weights.dtype, trainable=True)
            original = _placeholder(layer, cpr.ORIGINAL_WEIGHTS, weights.shape, weights.dtype,
                                    trainable=True)
            per_channel = len(layout["centroids_shape"]) > 1  # (channels, clusters)
            impl_class = clustering_registry.ClusteringLookupRegistry().get_clustering_impl(
                layer.layer, name, cluster_per_channel=per_channel)
            impl = impl_class(centroids, cluster_config.GradientAggregation.SUM,
                              getattr(layer.layer, "data_format", None))
            indices = _placeholder(layer, cpr.PULLING_INDICES, layout["indices_shape"],
                                   tf.as_dtype(layout["indices_dtype"]), trainable=False)
            result.update({cpr.CLUSTER_CENTROIDS: centroids, cpr.ORIGINAL_WEIGHTS: original,
                           cpr.PULLING_INDICES: indices, cpr.WEIGHT_NAME: name,
                           cpr.CLUSTERING_IMPL: impl, cpr.CENTROIDS_MASK: None})
        if self.preserve_sparsity:
            result[cpr.SPARSITY_MASK] = _placeholder(layer, cpr.SPARSITY_MASK, weights.shape,
                                                     weights.dtype, trainable=False)
            if layout["clustered"]:
                result[cpr.CENTROIDS_MASK] = _placeholder(
                    layer, CENTROIDS_MASK_VARIABLE, layout["centroids_shape"], weights.dtype,
                    trainable=False)
        return result

    def get_config(self) -> dict[str, Any]:
        return {"preserve_sparsity": self.preserve_sparsity, "per_channel": self.per_channel,
                "layout": self.layout}


@keras.utils.register_keras_serializable(package=PACKAGE)
class ClusterPreservingWeightsQuantizer(_ClusterPreserving,
                                        cpr.ClusterPreserveDefault8BitWeightsQuantizer):
    """tfmot's (P)CQAT quantizer for Dense kernels (per tensor), savable.

    Example:
        >>> ClusterPreservingWeightsQuantizer(preserve_sparsity=True).get_config()["layout"]
    """

    def __init__(self, preserve_sparsity: bool, per_channel: bool = False,
                 layout: dict[str, Any] | None = None) -> None:
        cpr.ClusterPreserveDefault8BitWeightsQuantizer.__init__(self, preserve_sparsity)
        self._setup(preserve_sparsity, per_channel, layout)

    def _build_range(self, tensor_shape: Any, name: str, layer: Any) -> dict[str, Any]:
        return quantizers.LastValueQuantizer.build(self, tensor_shape, name, layer)


@keras.utils.register_keras_serializable(package=PACKAGE)
class ClusterPreservingConvWeightsQuantizer(_ClusterPreserving,
                                            cpr.ClusterPreserveDefault8BitConvWeightsQuantizer):
    """tfmot's (P)CQAT quantizer for Conv2D kernels (per output channel), savable.

    Example:
        >>> ClusterPreservingConvWeightsQuantizer(preserve_sparsity=False, per_channel=True)
    """

    def __init__(self, preserve_sparsity: bool, per_channel: bool = False,
                 layout: dict[str, Any] | None = None) -> None:
        cpr.ClusterPreserveDefault8BitConvWeightsQuantizer.__init__(self, preserve_sparsity)
        self._setup(preserve_sparsity, per_channel, layout)

    def _build_range(self, tensor_shape: Any, name: str, layer: Any) -> dict[str, Any]:
        return default_8bit_quantizers.Default8BitConvWeightsQuantizer.build(
            self, tensor_shape, name, layer)


class _PrunePreserving(_ConfigDefined):
    """PQAT quantizers whose sparsity mask is a saved variable (tfmot's is a tensor)."""

    def _build_sparsity_mask(self, name: str, layer: Any) -> dict[str, Any]:
        weights = getattr(layer.layer, name)
        if self.restored:  # the mask comes from the file's weights
            mask = _placeholder(layer, cpr.SPARSITY_MASK, weights.shape, weights.dtype,
                                trainable=False)
        else:
            mask = _mask_variable(layer, cpr.SPARSITY_MASK, tf.math.divide_no_nan(weights, weights))
            self.restored = True  # from now on its config describes a built mask
        return {cpr.SPARSITY_MASK: mask}

    def get_config(self) -> dict[str, Any]:
        return {"restored": self.restored}


@keras.utils.register_keras_serializable(package=PACKAGE)
class PrunePreservingWeightsQuantizer(_PrunePreserving,
                                      ppr.PrunePreserveDefault8BitWeightsQuantizer):
    """tfmot's PQAT quantizer for Dense kernels, savable.

    Example:
        >>> PrunePreservingWeightsQuantizer().get_config()
        {'restored': False}
    """

    def __init__(self, restored: bool = False) -> None:
        ppr.PrunePreserveDefault8BitWeightsQuantizer.__init__(self)
        self.restored = bool(restored)

    def build(self, tensor_shape: Any, name: str, layer: Any) -> dict[str, Any]:
        result = self._build_sparsity_mask(name, layer)
        result.update(quantizers.LastValueQuantizer.build(self, tensor_shape, name, layer))
        return result


@keras.utils.register_keras_serializable(package=PACKAGE)
class PrunePreservingConvWeightsQuantizer(_PrunePreserving,
                                          ppr.PrunePreserveDefault8BitConvWeightsQuantizer):
    """tfmot's PQAT quantizer for Conv2D kernels, savable.

    Example:
        >>> PrunePreservingConvWeightsQuantizer(restored=True)
    """

    def __init__(self, restored: bool = False) -> None:
        ppr.PrunePreserveDefault8BitConvWeightsQuantizer.__init__(self)
        self.restored = bool(restored)

    def build(self, tensor_shape: Any, name: str, layer: Any) -> dict[str, Any]:
        result = self._build_sparsity_mask(name, layer)
        result.update(default_8bit_quantizers.Default8BitConvWeightsQuantizer.build(
            self, tensor_shape, name, layer))
        return result


@keras.utils.register_keras_serializable(package=PACKAGE)
class PreservingQuantizeConfig(registry8.Default8BitQuantizeConfig):
    """tfmot's 8-bit quantize config that saves its weight quantizer with it.

    Example:
        >>> config = PreservingQuantizeConfig.wrapping(default_config, quantizer)
    """

    def __init__(self, weight_attrs: list[str], activation_attrs: list[str],
                 quantize_output: bool, weight_quantizer: Any = None) -> None:
        super().__init__(weight_attrs, activation_attrs, quantize_output)
        if weight_quantizer is not None:
            self.weight_quantizer = weight_quantizer

    @classmethod
    def wrapping(cls, config: Any, weight_quantizer: Any) -> "PreservingQuantizeConfig":
        """``config`` (a ``Default8Bit[Conv]QuantizeConfig``) with ``weight_quantizer``."""
        return cls(list(config.weight_attrs), list(config.activation_attrs),
                   bool(config.quantize_output), weight_quantizer)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(),
                # tfmot's wrappers serialize with the legacy functions: registered names
                "weight_quantizer": keras.utils.legacy.serialize_keras_object(
                    self.weight_quantizer)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "PreservingQuantizeConfig":
        config = dict(config)
        quantizer = keras.utils.legacy.deserialize_keras_object(config.pop("weight_quantizer"))
        return cls(**config, weight_quantizer=quantizer)


def custom_objects() -> dict[str, type]:
    """These classes by their registered names (for ``custom_objects=``/safety scans).

    Example:
        >>> sorted(custom_objects())[0]
        'tflite_opt>ClusterPreservingConvWeightsQuantizer'
    """
    classes = (ClusterPreservingWeightsQuantizer, ClusterPreservingConvWeightsQuantizer,
               PrunePreservingWeightsQuantizer, PrunePreservingConvWeightsQuantizer,
               PreservingQuantizeConfig)
    return {keras.utils.get_registered_name(c): c for c in classes}
