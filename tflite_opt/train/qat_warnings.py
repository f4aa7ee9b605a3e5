"""What tfmot prints while a (P)CQAT model is built and trained, made actionable or quiet.

Three messages come from tfmot 0.8.1 and tf_keras under the cluster-preserving schemes:

- "Gradients do not exist for variables [...]" (tf_keras, at every trace of the train step and
  every step under ``run_eagerly``): (P)CQAT trains a copy of each clustered kernel and writes
  the clustered result back into the kernel variable, which therefore never has a gradient.
  Expected and not actionable, so one filter on the ``tensorflow`` logger drops it, but only
  when every variable it lists is such a kernel of a live QAT model; any other variable
  without a gradient (a real problem) is still reported.
- "Input layer does not contain zero weights, so apply CQAT instead." (PCQAT, once per layer
  without zeros, without naming it) and "No clustering performed on layer X. Too many
  centroids" (once per unclustered layer): silenced while ``quantize_aware`` builds the
  model, and replaced by one warning naming the layers and the fix when the scheme preserves
  nothing in them. Layers the policy skipped (the first conv and the classifier keep their
  few hundred distinct values and no zeros) are expected and not reported.

Example:
    >>> with silence_tfmot_build_notes():
    ...     qat = tfmot.quantization.keras.quantize_apply(annotated, scheme)
    >>> warn_unpreserved_layers(qat, "pcqat")
    >>> quiet_clustered_kernel_gradients(qat)
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
import weakref
from typing import Any, Iterator

from tflite_opt._keras import keras

NO_GRADIENT = "Gradients do not exist for variables"
NO_ZEROS = "Input layer does not contain zero weights"
NOT_CLUSTERED = "No clustering performed on layer"


def _cluster_preserve():
    from tensorflow_model_optimization.python.core.quantization.keras.collab_opts.cluster_preserve import (
        cluster_preserve_quantize_registry as cpr,
    )

    return cpr


def _cluster_preserving_kernels(model: keras.Model) -> Iterator[tuple[keras.layers.Layer, Any,
                                                                      Any, dict]]:
    """(wrapper, kernel variable, quantizer, its variables) of each (P)CQAT-quantized kernel."""
    cpr = _cluster_preserve()
    for layer in model.layers:
        for weight, quantizer, variables in getattr(layer, "_weight_vars", ()):
            if isinstance(quantizer, cpr.ClusterPreserveDefaultWeightsQuantizer):
                yield layer, weight, quantizer, variables


class _ClusteredKernelsWithoutGradient(logging.Filter):
    """Drops tf_keras's "Gradients do not exist" warning when it lists only (P)CQAT kernels.

    Models are held weakly: the filter forgets a model's kernels when the model is freed.
    """

    def __init__(self) -> None:
        super().__init__()
        self._kernels: "weakref.WeakKeyDictionary[keras.Model, frozenset[str]]" = (
            weakref.WeakKeyDictionary())

    def register(self, model: keras.Model) -> None:
        """Records the kernels of ``model`` that (P)CQAT overwrites (nothing if none)."""
        centroids = _cluster_preserve().CLUSTER_CENTROIDS
        names = frozenset(weight.name for _layer, weight, _quantizer, variables
                          in _cluster_preserving_kernels(model) if centroids in variables)
        if names:
            self._kernels[model] = names

    def filter(self, record: logging.LogRecord) -> bool:
        if not (isinstance(record.msg, str) and record.msg.startswith(NO_GRADIENT)):
            return True
        listed = record.args[0] if isinstance(record.args, tuple) and record.args else None
        if not isinstance(listed, (list, tuple)) or not listed:
            return True
        expected = frozenset().union(*self._kernels.values())
        return not set(listed) <= expected


_NO_GRADIENT_FILTER = _ClusteredKernelsWithoutGradient()


def quiet_clustered_kernel_gradients(model: keras.Model) -> keras.Model:
    """Stops the per-step no-gradient warning for ``model``'s (P)CQAT kernels; returns ``model``.

    Example:
        >>> qat = quiet_clustered_kernel_gradients(qat)
    """
    logger = logging.getLogger("tensorflow")  # the logger tf_keras's optimizers warn through
    if _NO_GRADIENT_FILTER not in logger.filters:
        logger.addFilter(_NO_GRADIENT_FILTER)
    _NO_GRADIENT_FILTER.register(model)
    return model


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


@contextlib.contextmanager
def silence_tfmot_build_notes() -> Iterator[None]:
    """Keeps tfmot's per-layer (P)CQAT build notes off the terminal while the model is built.

    Example:
        >>> with silence_tfmot_build_notes():
        ...     qat = quantize_apply(annotated, scheme)
    """
    root = logging.getLogger()  # tfmot's cluster_preserve registry logs through the root logger
    drop = _DropMessage(NO_ZEROS)
    root.addFilter(drop)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=NOT_CLUSTERED)
            yield
    finally:
        root.removeFilter(drop)


def _user_stacklevel() -> int:
    """``stacklevel`` of the first frame outside tflite_opt, so a warning names the user's line."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1  # the caller of this function, which calls warn
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package):
        frame, level = frame.f_back, level + 1
    return level


def warn_unpreserved_layers(model: keras.Model, scheme: str) -> None:
    """One warning when a (P)CQAT scheme preserves nothing in some layers, naming them and the fix.

    Warns when kernels have no clusters to preserve (more than 1024 distinct values: the model
    was not clustered), when under ``pcqat`` no kernel has zeros (the model was not pruned),
    or both at once, with the scheme the layers effectively train under.

    Example:
        >>> warn_unpreserved_layers(qat, "pcqat")
    """
    kernels = list(_cluster_preserving_kernels(model))
    if not kernels:
        return
    centroids = _cluster_preserve().CLUSTER_CENTROIDS
    unclustered = [layer.layer.name for layer, _w, _q, variables in kernels
                   if centroids not in variables]
    no_zeros = scheme == "pcqat" and not any(q.preserve_sparsity for _l, _w, q, _v in kernels)
    not_clustered = (f"the kernels of {', '.join(unclustered)} have no clusters to preserve "
                     "(more than 1024 distinct values)")
    if unclustered and no_zeros:
        found, effective, fix = (f"model {model.name!r} has no zero weights and {not_clustered}",
                                 "default", "prune and cluster the model first")
    elif unclustered:
        found, effective, fix = (not_clustered, "default" if scheme == "cqat" else "pqat",
                                 "cluster the model first (tflite_opt.cluster, fit, strip)")
    elif no_zeros:
        found, effective, fix = (f"no kernel of model {model.name!r} has zero weights", "cqat",
                                 "prune the model first (tflite_opt.prune, fit, strip)")
    else:
        return
    warnings.warn(f"quantize_aware(scheme={scheme!r}): {found}, so they train as under "
                  f"scheme={effective!r}; {fix} or pass scheme={effective!r}", UserWarning,
                  stacklevel=_user_stacklevel())
