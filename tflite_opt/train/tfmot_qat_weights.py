"""Loading the weights of a (P)CQAT/PQAT file made by tfmot itself into ``quantize_aware``'s model.

A (P)CQAT model quantized by tfmot 0.8.1's own quantizers (``quantize_apply`` with
``Default8BitClusterPreserveQuantizeScheme``, or tflite_opt before ``qat_saving.py``) cannot be
rebuilt from its file: the config names the plain 8-bit quantizer (``qat_saving.py`` says
why). Its weights are all there, though, and ``quantize_aware(pre_qat_model, scheme,
per_channel_clusters=True)`` builds the same variables in the same order: tfmot's
(centroids, original weights, pulling indices, ranges), plus, for PCQAT, the two masks
tflite_opt keeps in variables so that they are saved (``sparsity_mask``, ``centroids_mask_tf``),
which tfmot held as tensors and so never wrote. A plain ``load_weights`` therefore works for
CQAT and fails for PCQAT ("Layer expects 12 weight(s). Received 10").

A PQAT file made by tfmot (``Default8BitPrunePreserveQuantizeScheme``) loads with
``tflite_opt.load_model`` (``tfmot_pqat.py``: its zeros tell it apart); its weights load here
as well, into ``quantize_aware(pruned_model, "pqat")``: the same variables plus the sparsity
mask, rebuilt from the kernel's zeros.

``load_tfmot_qat_weights`` hides the two mask variables from Keras while ``load_weights``
reads the file (``.h5`` or ``.keras``, both restored by position within a layer; for
``.keras`` each wrapper's ``load_own_variables`` is tf_keras's own without the step that would
put the masks back), then rebuilds the masks from the loaded values with tfmot's own formulas
(``cluster_preserve_quantize_registry._build_clusters``): the sparsity mask is 1 where the
kernel is non-zero, the centroids mask is 0 at the centroid nearest zero. Training keeps the
masked weights at zero (the zero centroid is masked to 0 and the kernel is written from the
centroids on every step), so the loaded kernel's zeros are those of the kernel tfmot built
its masks from (a weight trained across the midpoint to the zero centroid would add one).
Only weights are read (Keras's ``load_weights``): nothing in the file is deserialized or run.

``per_channel_clusters=True`` matters: tfmot guesses per-channel clusters for any Conv2D whose
channels hold about as many distinct values each, and ``quantize_aware`` makes the same guess
only with that flag (by default it clusters per tensor, as ``cluster`` does).

Example:
    >>> qat = quantize_aware(clustered, "pcqat", per_channel_clusters=True)
    >>> load_tfmot_qat_weights(qat, "tfmot_pcqat.h5")   # or .keras
    >>> qat.fit(x, y, epochs=1)                          # keeps the file's zeros and clusters
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from tflite_opt._keras import import_tfmot, tf
from tflite_opt.errors import InvalidArgumentError, ModelLoadError

import_tfmot()  # before tfmot's submodules: keeps the user's TF_USE_LEGACY_KERAS as it was

# pylint: disable=wrong-import-position
from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (  # noqa: E402,E501
    cluster_preserve_quantize_registry as cpr)

# Keys of a (P)CQAT quantizer's variables; the two masks are the ones tflite_opt adds.
_CLUSTER_CENTROIDS = cpr.CLUSTER_CENTROIDS
_SPARSITY_MASK = cpr.SPARSITY_MASK
_CENTROIDS_MASK = cpr.CENTROIDS_MASK


def _mask_variables(wrapper: Any) -> list[tuple[Any, Any, dict[str, Any]]]:
    """(weight, mask variables, quantizer vars) of each quantized weight of a QAT wrapper."""
    found = []
    for weight, _, quantizer_vars in getattr(wrapper, "_weight_vars", ()):
        masks = [quantizer_vars[key] for key in (_SPARSITY_MASK, _CENTROIDS_MASK)
                 if isinstance(quantizer_vars.get(key), tf.Variable)]
        found.append((weight, masks, quantizer_vars))
    return found


def _own_variables_loader(wrapper: Any) -> Any:
    """``Layer.load_own_variables`` of tf_keras 2.21 for ``wrapper``, over its lists as they are."""

    def load_own_variables(store: Any) -> None:
        own = wrapper._trainable_weights + wrapper._non_trainable_weights  # pylint: disable=W0212
        if len(store.keys()) != len(own):
            raise ValueError(f"Layer '{wrapper.name}' expected {len(own)} variables without "
                             f"tflite_opt's masks, but the file has {len(store.keys())}")
        for i, variable in enumerate(own):
            variable.assign(store[f"{i}"])

    return load_own_variables


def load_tfmot_qat_weights(model: Any, path: str | os.PathLike) -> Any:
    """Loads a tfmot-made CQAT/PCQAT/PQAT file's weights into ``model`` and rebuilds its masks.

    Args:
        model: The model from ``tflite_opt.train.quantize_aware(pre_qat_model, "cqat" or
            "pcqat", per_channel_clusters=True)``, ``pre_qat_model`` being the clustered (and,
            for PCQAT, pruned) model tfmot quantized: the number of clusters of each layer is
            read from its values; or from ``quantize_aware(pruned_model, "pqat")``.
        path: The ``.h5`` or ``.keras`` file tfmot's QAT model was saved to.

    Returns:
        ``model``, with the file's weights and masks rebuilt from its zeros.

    Raises:
        InvalidArgumentError: ``model`` is not quantization-aware (no QAT wrapper).
        ModelLoadError: not a ``.h5``/``.keras`` file, or its weights do not fit ``model``
            (the message names the variable and the likely fix). ``model`` may then hold part
            of the file's weights: build it again before another try.

    Example:
        >>> qat = quantize_aware(clustered, "cqat", per_channel_clusters=True)
        >>> load_tfmot_qat_weights(qat, "tfmot_cqat.keras").predict(x)
    """
    path = Path(path)
    if path.suffix.lower() not in (".h5", ".hdf5", ".keras") or not path.is_file():
        raise ModelLoadError(f"{str(path)!r} is not a .h5/.keras file; load_tfmot_qat_weights "
                             "reads the weights of a QAT model saved with model.save('x.h5') "
                             "or model.save('x.keras')")
    wrappers = [layer for layer in model.layers if hasattr(layer, "_weight_vars")]
    if not wrappers:
        raise InvalidArgumentError(f"model {model.name!r} is not quantization-aware; pass "
                                   "tflite_opt.train.quantize_aware(pre_qat_model, scheme, "
                                   "per_channel_clusters=True)")
    hidden: list[tuple[list, int, Any]] = []
    overridden = []
    for wrapper in wrappers:
        masks = [mask for _, found, _ in _mask_variables(wrapper) for mask in found]
        own = wrapper._non_trainable_weights  # pylint: disable=protected-access
        for mask in masks:
            index = next(i for i, w in enumerate(own) if w is mask)
            hidden.append((own, index, own.pop(index)))
        if masks:
            # .keras: Layer.load_own_variables first re-adds every tracked variable missing
            # from the lists (_update_trackables), masks included; this one reads the lists.
            object.__setattr__(wrapper, "load_own_variables", _own_variables_loader(wrapper))
            overridden.append(wrapper)
    try:
        model.load_weights(os.fspath(path))
    except ValueError as exc:
        hint = ""
        if _CLUSTER_CENTROIDS in str(exc):
            hint = ("; the number of clusters differs: build the model with "
                    "quantize_aware(pre_qat_model, scheme, per_channel_clusters=True) (tfmot's "
                    "per-channel guess) from the clustered model tfmot quantized")
        raise ModelLoadError(f"the weights in {str(path)!r} do not fit model {model.name!r}: "
                             f"{str(exc).strip().splitlines()[0][:300]}{hint}") from exc
    finally:
        for own, index, mask in reversed(hidden):  # back where they were, in order
            own.insert(index, mask)
        for wrapper in overridden:
            object.__delattr__(wrapper, "load_own_variables")
    for wrapper in wrappers:
        for weight, masks, quantizer_vars in _mask_variables(wrapper):
            if not masks:
                continue
            if isinstance(quantizer_vars.get(_SPARSITY_MASK), tf.Variable):
                # From the kernel, as tfmot's build does: the original weights are masked at
                # the start of each step, so the last update leaves them non-zero there.
                quantizer_vars[_SPARSITY_MASK].assign(tf.math.divide_no_nan(weight, weight))
            if isinstance(quantizer_vars.get(_CENTROIDS_MASK), tf.Variable):
                centroids = quantizer_vars[_CLUSTER_CENTROIDS]
                nearest_zero = tf.argmin(tf.abs(centroids), axis=-1)
                quantizer_vars[_CENTROIDS_MASK].assign(
                    1.0 - tf.one_hot(nearest_zero, centroids.shape[-1], dtype=centroids.dtype))
    return model
