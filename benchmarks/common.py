"""Shared pieces of the benchmark suites."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tflite_opt.data.digits import Dataset

LARGE_KERNEL = 1024  # weights; smaller tensors are left in float by the default policy
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


def tflite_correct(tflite, x, y, reference_outputs=None):
    """``evaluate_tflite``'s result and the per-image 0/1 correctness the paired statistics need.

    ``evaluate_tflite`` returns aggregates only; its ``metric`` hook sees the labels and the
    dequantized outputs, so it is used to keep which images were right.
    """
    from tflite_opt.runtime import evaluate_tflite

    kept = {}

    def top1_correct(labels, outputs):
        kept["correct"] = np.argmax(outputs, axis=-1) == np.asarray(labels)
        return float(np.mean(kept["correct"]))

    result = evaluate_tflite(tflite, x, y, reference_outputs=reference_outputs, metric=top1_correct)
    return result, kept["correct"]


def eval_data(quick: bool = False) -> Dataset:
    """The data every suite scores accuracy on: the digits' training split, and 3,240
    augmented copies of its 360 held-out images (``tflite_opt.data.load_digits_eval``);
    ``quick`` keeps 3 copies (1,080 images)."""
    from tflite_opt.data.digits_eval import load_digits_eval

    return load_digits_eval(image_size=32, copies=3 if quick else 9)


def file_structure(tflite) -> dict:
    """Sparsity and values per channel of the large kernels (>= 1,024 weights) in a ``.tflite``.

    What actually reached the file, read back from it: the first conv and the classifier
    (skipped by the default policy, and small) are left out, so the figures describe the
    layers the recipes optimize.
    """
    from tflite_opt.runtime import inspect_model

    kernels = [w for w in inspect_model(tflite).weights
               if w.get("role") == "weight" and (w.get("num_elements") or 0) >= LARGE_KERNEL]
    if not kernels:
        return {"tflite_sparsity": None, "tflite_max_unique_per_channel": None}
    zeros = sum(w["zeros"] for w in kernels)
    elements = sum(w["num_elements"] for w in kernels)
    return {"tflite_sparsity": zeros / elements,
            "tflite_max_unique_per_channel": max(w["max_unique_per_channel"] or w["unique_values"]
                                                 for w in kernels)}
