"""Quantization-aware training: ``quantize_aware(model, scheme=...)``.

Schemes (a registry, so tests loop over them):

- ``default``: tfmot's 8-bit QAT.
- ``cqat``: cluster-preserving QAT (the clustered kernels keep their cluster count).
- ``pqat``: prune-preserving QAT (the zeros stay zero).
- ``pcqat``: both (the collaborative-optimization path: prune -> cluster -> PCQAT).

The QAT model is what goes to the TFLite converter; there is nothing to strip.

What tfmot prints while a (P)CQAT model is built and trained is handled in
:mod:`tflite_opt.train.qat_warnings`.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any, Callable, Iterator

from tflite_opt._keras import keras
from tflite_opt.errors import InvalidArgumentError, UnsupportedLayerError
from tflite_opt.train.layers import check_graph_model, deep_copy, tfmot
from tflite_opt.train.qat_warnings import (quiet_clustered_kernel_gradients,
                                           silence_tfmot_build_notes, warn_unpreserved_layers)


def _default_scheme(per_channel: bool = False) -> Any:
    return tfmot().quantization.keras.default_8bit.Default8BitQuantizeScheme()


def _cluster_preserve_scheme(preserve_sparsity: bool, per_channel: bool = False) -> Any:
    """tfmot's (P)CQAT scheme with one weight quantizer per layer, clusters read per tensor.

    Workaround (tfmot 0.8.1): ``ClusterPreserveQuantizeRegistry`` shares one weight-quantizer
    instance (and the 8-bit registry one quantize config) among all layers of a class, and that
    quantizer sets its own ``preserve_sparsity = False`` when it builds on a layer without
    zeros (e.g. the unpruned first conv). Every later layer then silently gets CQAT instead of
    PCQAT and loses its sparsity. A fresh config and quantizer per layer keep the decision per
    layer. The quantizers and config are ``qat_saving``'s, so the model saves and loads back;
    see also ``qat_saving.per_tensor_centroids``.
    """
    import copy

    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        cluster_preserve_quantize_registry as cpr,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    from tflite_opt.train.qat_saving import (ClusterPreservingConvWeightsQuantizer,
                                             ClusterPreservingWeightsQuantizer,
                                             PreservingQuantizeConfig)

    def ConvQuantizer(keep_zeros: bool) -> Any:
        return ClusterPreservingConvWeightsQuantizer(keep_zeros, per_channel=per_channel)

    def WeightsQuantizer(keep_zeros: bool) -> Any:
        return ClusterPreservingWeightsQuantizer(keep_zeros, per_channel=per_channel)

    class PerLayerRegistry(cpr.Default8bitClusterPreserveQuantizeRegistry):
        def __init__(self, preserve_sparsity: bool) -> None:
            super().__init__(preserve_sparsity)
            self.keep_zeros = preserve_sparsity

        def get_quantize_config(self, layer):
            base = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
            if not base.supports(layer):
                # tfmot's registry claims every weightless layer (e.g. Rescaling) but then
                # fails on it when the next layer asks for its output to be quantized;
                # None makes quantize_apply leave it float, as the default scheme does.
                return None
            config = copy.copy(base.get_quantize_config(layer))
            config = self.apply_cluster_preserve_quantize_config(layer, config)
            # A config that saves its quantizer (tfmot's drop it: see qat_saving).
            quantizer = getattr(config, "weight_quantizer", None)
            if isinstance(quantizer, cpr.ClusterPreserveDefault8BitConvWeightsQuantizer):
                return PreservingQuantizeConfig.wrapping(config, ConvQuantizer(self.keep_zeros))
            if isinstance(quantizer, cpr.ClusterPreserveDefault8BitWeightsQuantizer):
                return PreservingQuantizeConfig.wrapping(config, WeightsQuantizer(self.keep_zeros))
            return config

    base = tfmot().experimental.combine.Default8BitClusterPreserveQuantizeScheme

    class PerLayerScheme(base):
        def get_quantize_registry(self):
            return PerLayerRegistry(self.preserve_sparsity)

        def weight_quantizer_for(self, layer_class: type) -> Any:
            """The preserving weight quantizer for layers fed to a Concatenate (see below)."""
            if layer_class is keras.layers.Conv2D:
                return ConvQuantizer(self.preserve_sparsity)
            if layer_class is keras.layers.Dense:
                return WeightsQuantizer(self.preserve_sparsity)
            return None

    return PerLayerScheme(preserve_sparsity=preserve_sparsity)


@contextlib.contextmanager
def _concat_inputs_use(scheme: Any) -> Iterator[None]:
    """Makes tfmot's Concatenate transform give its input layers the scheme's weight quantizer.

    Workaround (tfmot 0.8.1): ``ConcatTransform`` assigns the *default* 8-bit config to every
    layer feeding a ``Concatenate``, bypassing the scheme's registry, so under PQAT/CQAT/PCQAT
    those layers silently lose their sparsity and clusters while training. The transform looks
    the registry up through its module, so a subclass is swapped in while quantize_apply runs.
    """
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_transforms as transforms,
    )

    quantizer_for = getattr(scheme, "weight_quantizer_for", None)
    if quantizer_for is None:
        yield
        return
    module = transforms.default_8bit_quantize_registry
    from tflite_opt.train.qat_saving import PreservingQuantizeConfig

    class Registry(module.Default8BitQuantizeRegistry):
        def _get_quantize_config(self, layer_type):
            config = super()._get_quantize_config(layer_type)
            quantizer = quantizer_for(layer_type)
            if quantizer is not None and isinstance(config, module.Default8BitQuantizeConfig):
                return PreservingQuantizeConfig.wrapping(config, quantizer)  # saves it
            return config

    shim = type(module)(module.__name__)
    shim.__dict__.update(module.__dict__)
    shim.Default8BitQuantizeRegistry = Registry
    transforms.default_8bit_quantize_registry = shim
    try:
        yield
    finally:
        transforms.default_8bit_quantize_registry = module


def _cqat_scheme(per_channel: bool = False) -> Any:
    return _cluster_preserve_scheme(preserve_sparsity=False, per_channel=per_channel)


def _pqat_scheme(per_channel: bool = False) -> Any:
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.prune_preserve import (
        prune_preserve_quantize_registry as ppr,
    )
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    from tflite_opt.train.qat_saving import (PreservingQuantizeConfig,
                                             PrunePreservingConvWeightsQuantizer,
                                             PrunePreservingWeightsQuantizer)

    class Registry(ppr.Default8bitPrunePreserveQuantizeRegistry):
        def get_quantize_config(self, layer):
            # Same weightless-layer fix as in _cluster_preserve_scheme.
            if not default_8bit_quantize_registry.Default8BitQuantizeRegistry().supports(layer):
                return None
            config = super().get_quantize_config(layer)
            # tfmot's shared quantizer, in a config that does not save it: ours, one per layer
            quantizer = getattr(config, "weight_quantizer", None)
            if isinstance(quantizer, ppr.PrunePreserveDefault8BitConvWeightsQuantizer):
                return PreservingQuantizeConfig.wrapping(config,
                                                         PrunePreservingConvWeightsQuantizer())
            if isinstance(quantizer, ppr.PrunePreserveDefault8BitWeightsQuantizer):
                return PreservingQuantizeConfig.wrapping(config, PrunePreservingWeightsQuantizer())
            return config

    class Scheme(tfmot().experimental.combine.Default8BitPrunePreserveQuantizeScheme):
        def get_quantize_registry(self):
            return Registry()

        def weight_quantizer_for(self, layer_class: type) -> Any:
            if layer_class is keras.layers.Conv2D:
                return PrunePreservingConvWeightsQuantizer()
            if layer_class is keras.layers.Dense:
                return PrunePreservingWeightsQuantizer()
            return None

    return Scheme()


def _pcqat_scheme(per_channel: bool = False) -> Any:
    return _cluster_preserve_scheme(preserve_sparsity=True, per_channel=per_channel)


# name -> factory(per_channel_clusters) of the tfmot quantize scheme
QAT_SCHEMES: dict[str, Callable[[bool], Any]] = {
    "default": _default_scheme,
    "cqat": _cqat_scheme,
    "pqat": _pqat_scheme,
    "pcqat": _pcqat_scheme,
}


# Layers the 8-bit registry does not list but tfmot's layout transforms rewrite into ones it does.
TRANSFORM_HANDLED = (keras.layers.BatchNormalization, keras.layers.SeparableConv1D,
                     keras.layers.SeparableConv2D)


# What ``auto`` reads from a model without wrappers (e.g. after ``strip``): a trained float
# kernel of a thousand weights has almost no exact zeros and almost no repeated values, while
# a pruned one is mostly zeros and a clustered one holds at most a few dozen values.
AUTO_MIN_KERNEL_SIZE = 1024
AUTO_MIN_SPARSITY = 0.2
AUTO_MAX_CLUSTERS = 256


def optimized_from_kernels(stats: dict[str, dict[str, float | int]]) -> tuple[bool, bool]:
    """(pruned, clustered) as a stripped model's kernel statistics (``weight_stats``) show it.

    Example:
        >>> pruned, clustered = optimized_from_kernels(weight_stats(strip(model)))
    """
    large = [s for s in stats.values() if int(s["size"]) >= AUTO_MIN_KERNEL_SIZE]
    return (any(float(s["sparsity"]) >= AUTO_MIN_SPARSITY for s in large),
            any(int(s["unique_values"]) <= AUTO_MAX_CLUSTERS for s in large))


def resolve_scheme(scheme: str, pruned: bool, clustered: bool) -> str:
    """Maps ``auto`` to the scheme that preserves what the earlier stages did."""
    if scheme != "auto":
        return scheme
    return {(True, True): "pcqat", (False, True): "cqat", (True, False): "pqat",
            (False, False): "default"}[(pruned, clustered)]


def quantize_aware(model: keras.Model, scheme: str = "default", *,
                   skip: tuple[str, ...] | list[str] = (),
                   per_channel_clusters: bool = False) -> keras.Model:
    """Returns a copy of ``model`` wrapped for quantization-aware training.

    Pruning and clustering wrappers are stripped first. Layers the 8-bit registry does not know
    but that have no weights (e.g. ``Rescaling``) are left unannotated; the int8 converter
    still quantizes them from calibration data. Train the result with your own ``compile`` and
    ``fit``, then pass it to ``export`` as it is. Under ``cqat``/``pcqat``, tf_keras's warning
    that the clustered kernels have no gradient (expected: tfmot writes them) is filtered for
    this model only, and tfmot's per-layer build notes become one warning, only when a layer
    keeps nothing the scheme preserves (see :mod:`tflite_opt.train.qat_warnings`).

    Args:
        model: A built Sequential or Functional tf_keras model.
        scheme: ``default``, ``cqat``, ``pqat``, ``pcqat`` (or ``auto``: picks from the model's
            sparsity and cluster wrappers, or, on a stripped model, from its kernels: any
            kernel of >= 1024 weights with >= 20% zeros counts as pruned, with <= 256 distinct
            values (or ``per_channel_clusters``) as clustered). Defaults to ``default``.
        skip: Layer names left in float (the way out for custom layers with weights).
        per_channel_clusters: The model was clustered per channel (``cluster(...,
            per_channel=True)``); (P)CQAT then keeps clusters per channel. Defaults to False.

    Raises:
        UnsupportedLayerError: a layer with weights is not supported by 8-bit QAT and not
            skipped; the message names it and the fix.
        InvalidArgumentError: unknown scheme, a ``skip`` name not in the model, or a model
            that is already quantization-aware.

    Example:
        >>> qat_model = quantize_aware(strip(clustered), scheme="pcqat")
        >>> qat_model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
        >>> qat_model.fit(x, y, epochs=2)
    """
    from tflite_opt.train.cluster import is_clustered
    from tflite_opt.train.prune import is_pruned, strip

    check_graph_model(model, "quantize_aware")
    if is_quantize_aware(model):
        wrapped = next(l for l in model.layers if _is_quantize_wrapper(l))
        raise InvalidArgumentError(
            f"model {model.name!r} is already quantization-aware (layer {wrapped.name!r} is a "
            f"{type(wrapped).__name__}); pass the model from before quantize_aware, or train and "
            "export this one as it is")
    pruned, clustered = is_pruned(model), is_clustered(model)
    if scheme == "auto" and not (pruned or clustered):
        from tflite_opt.train.stats import weight_stats

        pruned, clustered = optimized_from_kernels(weight_stats(model))
        clustered = clustered or per_channel_clusters
    scheme = resolve_scheme(scheme, pruned, clustered)
    if scheme not in QAT_SCHEMES:
        raise InvalidArgumentError(f"scheme is {scheme!r}; accepted: auto, {', '.join(QAT_SCHEMES)}")
    plain = strip(model) if (is_pruned(model) or is_clustered(model)) else deep_copy(model)
    q = tfmot().quantization.keras
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry,
    )

    from tensorflow_model_optimization.python.core.quantization.keras import quantize_annotate

    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    annotate_cls = quantize_annotate.QuantizeAnnotate
    names = {layer.name for layer in plain.layers}
    missing = [n for n in skip if n not in names]
    if missing:
        raise InvalidArgumentError(f"skip names layer {missing[0]!r}, which is not in model "
                                   f"{plain.name!r}")

    def annotate(layer: keras.layers.Layer) -> keras.layers.Layer:
        if layer.name in skip or isinstance(layer, keras.layers.InputLayer):
            return layer
        if isinstance(layer, keras.Model):
            raise UnsupportedLayerError(
                f"layer {layer.name!r} ({type(layer).__name__}) is a nested model, which 8-bit QAT "
                f"cannot wrap; pass skip=[{layer.name!r}] (recipe policy.skip) to keep it in float, "
                "or flatten it into the outer functional model")
        if isinstance(layer, annotate_cls):
            return layer  # annotated by the user with their own QuantizeConfig
        # tfmot's layout transforms fold BatchNormalization into the conv before it and
        # split SeparableConv into depthwise + pointwise convs, so the registry never sees them.
        if registry.supports(layer) or isinstance(layer, TRANSFORM_HANDLED):
            return q.quantize_annotate_layer(layer)
        # Weightless layers the registry does not know (Rescaling, Lambda, ...) stay float in
        # the QAT graph; the int8 converter quantizes them from calibration data.
        if not layer.weights:
            return layer
        raise UnsupportedLayerError(
            f"layer {layer.name!r} ({type(layer).__name__}) has weights but 8-bit QAT does not "
            f"support it; pass skip=[{layer.name!r}] (recipe policy.skip) to keep it in float "
            "(register the class with keras.utils.register_keras_serializable so it can be "
            "cloned), or annotate it yourself with tfmot.quantization.keras."
            "quantize_annotate_layer(layer, quantize_config=YourQuantizeConfig())")

    annotated = keras.models.clone_model(plain, clone_function=annotate)
    try:
        with q.quantize_scope():
            tfmot_scheme = QAT_SCHEMES[scheme](per_channel_clusters)
            with _concat_inputs_use(tfmot_scheme), silence_tfmot_build_notes():
                qat_model = q.quantize_apply(annotated, tfmot_scheme)
    except RuntimeError as exc:
        match = re.search(r"Layer (\S+):<class '([^']+)'> is not supported", str(exc))
        if not match:
            raise
        name, cls = match.group(1), match.group(2).rsplit(".", 1)[-1]
        raise UnsupportedLayerError(
            f"layer {name!r} ({cls}) is not supported by 8-bit QAT (scheme {scheme!r}); pass "
            f"skip=[{name!r}] (recipe policy.skip) to keep it in float, or annotate it with "
            "tfmot.quantization.keras.quantize_annotate_layer(layer, quantize_config=...) "
            "inside a quantize_scope") from exc
    warn_unpreserved_layers(qat_model, scheme)
    return quiet_clustered_kernel_gradients(qat_model)


def is_quantize_aware(model: keras.Model) -> bool:
    """Whether any layer of ``model`` is wrapped for QAT."""
    return any(_is_quantize_wrapper(l) for l in model.layers)


def _is_quantize_wrapper(layer: keras.layers.Layer) -> bool:
    from tensorflow_model_optimization.python.core.quantization.keras import quantize_wrapper

    return isinstance(layer, quantize_wrapper.QuantizeWrapper)
