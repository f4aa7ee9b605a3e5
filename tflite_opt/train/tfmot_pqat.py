"""PQAT files made by tfmot itself: told apart from plain QAT by their zeros, loaded as PQAT.

A prune-preserving QAT model quantized by tfmot 0.8.1's own scheme (``quantize_apply`` with
``Default8BitPrunePreserveQuantizeScheme``, as tfmot's PQAT guide does it) saves a config
that names the plain 8-bit quantizers (``qat_saving.py`` says why): in ``.keras``, ``.h5``
and SavedModel alike, its config is byte for byte a plain QAT model's (measured: the two
files' configs differ only in a layer name Keras numbered). Loaded as the file says, it is
plain QAT, and the next ``fit`` trains its zeros away.

Its weights tell it apart. A pruned kernel's zeros are its sparsity (tfmot prunes to a
target of a few percent or more; tflite_opt's recipes to 20% and more), and PQAT keeps them
(the mask zeroes their gradient). A trained kernel that was never pruned has essentially
none: it starts from a continuous random initializer, and an update lands a weight on
exactly 0.0 only when it equals the weight to the last bit (Sterbenz: ``w - u`` is exact
when the two are within a factor of two), about one chance in 2**23 per step in which a
weight crosses zero, and a zero it reaches moves again at the next step. So a kernel with at
least ``PRUNED_MIN_ZEROS`` (1%) exact zeros was pruned: four orders of magnitude above what
training leaves (measured, docs/qat_saving.md: none in 5 M trained unpruned kernel weights)
and below any sparsity worth pruning to. A kernel of all zeros is not counted (nothing was
pruned from it: it was never trained, e.g. a ``zeros`` initializer). Plain QAT of a pruned
model keeps the zeros of weights whose input is always zero (measured: 2-38% of a dense
kernel), so its file looks pruned too: ``load_model`` warns, and ``keep_zeros=False`` loads it
as plain QAT.

``preserve_zeros_in_place`` turns such a loaded model into the model ``quantize_aware(
pre_qat_model, "pqat")`` would have built: each plain 8-bit quantized Conv2D/Dense kernel
(the layers tfmot's PQAT preserves) gets tflite_opt's savable PQAT quantizer and a sparsity
mask made from its zeros, the way tfmot's build made it (1 where the kernel is non-zero).
Its predictions do not change (kernel x mask = kernel), and it saves a file that records its
quantizers. ``tflite_opt.load_model`` does this when a file looks pruned (``keep_zeros``).

Example:
    >>> model = keras.models.load_model("tfmot_pqat.keras")   # inside optimize_scope()
    >>> pruned_kernels(model)
    {'quant_conv2': 0.5, 'quant_dense1': 0.5}
    >>> preserve_zeros_in_place(model)                         # fit now keeps the zeros
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tflite_opt._keras import import_tfmot, keras, tf

import_tfmot()  # before tfmot's submodules: keeps the user's TF_USE_LEGACY_KERAS as it was

# pylint: disable=wrong-import-position
from tensorflow_model_optimization.python.core.quantization.keras import (  # noqa: E402
    quantizers)
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (  # noqa: E402,E501
    cluster_preserve_quantize_registry as cpr)
from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (  # noqa: E402
    default_8bit_quantizers)

from tflite_opt.train.qat_saving import (  # noqa: E402
    PreservingQuantizeConfig, PrunePreservingConvWeightsQuantizer,
    PrunePreservingWeightsQuantizer, _mask_variable)

# A kernel with at least this fraction of exact zeros was pruned (module docstring: why).
PRUNED_MIN_ZEROS = 0.01

# The layers whose kernel tfmot's PQAT keeps sparse (its registry's map, DepthwiseConv2D
# disabled there), and the exact plain 8-bit quantizer a loaded file gives each -> ours.
_PRESERVED_LAYERS = (keras.layers.Conv2D, keras.layers.Dense)
_PRUNE_PRESERVING = {
    default_8bit_quantizers.Default8BitConvWeightsQuantizer: PrunePreservingConvWeightsQuantizer,
    quantizers.LastValueQuantizer: PrunePreservingWeightsQuantizer,
}


def _plain_quantized_kernels(model: Any) -> list[tuple[Any, int]]:
    """(wrapper, index in its ``_weight_vars``) of each kernel tfmot's PQAT would preserve
    that is quantized by a plain 8-bit quantizer (exact class: ours subclass them)."""
    found = []
    for layer in model.layers:
        if type(getattr(layer, "layer", None)) not in _PRESERVED_LAYERS:
            continue
        for index, (_, quantizer, _) in enumerate(getattr(layer, "_weight_vars", ())):
            if type(quantizer) in _PRUNE_PRESERVING:
                found.append((layer, index))
    return found


def pruned_kernels(model: Any) -> dict[str, float]:
    """The layers of a loaded QAT model whose plainly quantized kernels look pruned.

    Args:
        model: A tf_keras QAT model (tfmot's wrappers), typically loaded from a file.

    Returns:
        {wrapper name: fraction of exact zeros} of each Conv2D/Dense kernel under a plain
        8-bit quantizer with at least ``PRUNED_MIN_ZEROS`` zeros, not all zeros; empty for
        plain QAT of an unpruned model and for models whose quantizers preserve already.

    Example:
        >>> pruned_kernels(load_model("qat.keras", keep_zeros=False))
        {}
    """
    fractions = {}
    for wrapper, index in _plain_quantized_kernels(model):
        kernel = np.asarray(wrapper._weight_vars[index][0])  # pylint: disable=protected-access
        zeros = float(np.mean(kernel == 0)) if kernel.size else 0.0
        if PRUNED_MIN_ZEROS <= zeros < 1.0:
            fractions[wrapper.name] = max(zeros, fractions.get(wrapper.name, 0.0))
    return fractions


def preserve_zeros_in_place(model: Any) -> list[str]:
    """Makes every plainly quantized Conv2D/Dense kernel of ``model`` keep its zeros (PQAT).

    The model changes in place (its compiled optimizer and loss stay valid: only
    non-trainable mask variables are added). Each such kernel gets tflite_opt's savable PQAT
    quantizer and a sparsity mask from its zeros, placed among the wrapper's variables where
    ``quantize_aware(..., "pqat")`` puts it, so the model saves and loads back as PQAT.

    Args:
        model: A tf_keras QAT model loaded from a tfmot-made PQAT file, not yet trained.

    Returns:
        The names of the wrappers changed.

    Example:
        >>> preserve_zeros_in_place(model)
        ['quant_conv1', 'quant_conv2', 'quant_dense1', 'quant_classifier']
    """
    changed = []
    for wrapper, index in _plain_quantized_kernels(model):
        weight, quantizer, quantizer_vars = wrapper._weight_vars[index]  # pylint: disable=W0212
        ours = _PRUNE_PRESERVING[type(quantizer)](restored=True)  # its mask is a variable
        with tf.name_scope(wrapper.name):  # named as a build names it: quant_conv2/sparsity_mask
            mask = _mask_variable(wrapper, cpr.SPARSITY_MASK,
                                  tf.math.divide_no_nan(weight, weight))
        # add_weight appended it; a PQAT build makes it just before the kernel's range, and
        # .keras/.h5 files restore a layer's variables by position.
        own = wrapper._non_trainable_weights  # pylint: disable=protected-access
        own.pop(next(i for i, w in enumerate(own) if w is mask))
        own.insert(next(i for i, w in enumerate(own) if w is quantizer_vars["min_var"]), mask)
        wrapper._weight_vars[index] = (weight, ours,  # pylint: disable=protected-access
                                       {cpr.SPARSITY_MASK: mask, **quantizer_vars})
        wrapper.quantize_config = PreservingQuantizeConfig.wrapping(wrapper.quantize_config,
                                                                    ours)
        changed.append(wrapper.name)
    return changed
