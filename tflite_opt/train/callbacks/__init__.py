"""Keras callbacks for the user's own ``model.fit``; one per module."""

from __future__ import annotations

import os

from tflite_opt._keras import keras
from tflite_opt.train.callbacks.pruning_step import PruningStep
from tflite_opt.train.callbacks.sparsity_logger import SparsityLogger
from tflite_opt.train.callbacks.stage_summary import StageSummary


def training_callbacks(model: keras.Model, *, log_dir: str | os.PathLike | None = None,
                       verbose: int = 0) -> list[keras.callbacks.Callback]:
    """The callbacks an optimized model needs in ``fit``: add them to your own list.

    Returns ``[PruningStep()]`` when ``model`` has pruned layers, then a ``SparsityLogger``
    (epoch logs get ``sparsity`` and ``max_unique_weights``; TensorBoard scalars with
    ``log_dir``).

    Example:
        >>> model.fit(x, y, epochs=4, callbacks=[*my_callbacks, *training_callbacks(model)])
    """
    # One implementation for both Kerases (Keras 3 models get PruningStepKeras3).
    from tflite_opt.train.dispatch import training_callbacks as for_either_keras

    return for_either_keras(model, log_dir=log_dir, verbose=verbose)


__all__ = ["PruningStep", "SparsityLogger", "StageSummary", "training_callbacks"]
