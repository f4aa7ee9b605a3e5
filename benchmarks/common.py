"""Shared pieces of the benchmark suites."""

from __future__ import annotations

from pathlib import Path

from tflite_opt.data.digits import Dataset

EXAMPLE_MODEL = Path(__file__).resolve().parents[1] / "saved_models" / "digits_cnn.keras"


def example_float_model(data: Dataset, quick: bool = False):
    """The float digits CNN: ``saved_models/digits_cnn.keras`` when it fits ``data``, else trained.

    The saved model is what ``train_digits_cnn`` makes with its defaults (20 epochs, seed 0),
    so loading it saves each suite half a minute without changing the starting point.

    Returns:
        ``(model, source)`` where ``source`` says which of the two it is.
    """
    from tflite_opt.models.loading import load_model
    from tflite_opt.models.training import train_digits_cnn

    if EXAMPLE_MODEL.exists():
        model = load_model(EXAMPLE_MODEL)
        if tuple(model.input_shape[1:]) == data.input_shape:
            return model, EXAMPLE_MODEL.name
    return train_digits_cnn(data, epochs=6 if quick else 20, verbose=0), "trained here"


def tflite_accuracy(tflite_bytes: bytes, x, y) -> float:
    """Top-1 accuracy of a ``.tflite`` on ``(x, y)`` through ``tflite_opt.runtime``."""
    from tflite_opt.runtime import evaluate_tflite

    return float(evaluate_tflite(tflite_bytes, x, y).accuracy)
