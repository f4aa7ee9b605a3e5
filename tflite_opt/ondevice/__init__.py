"""On-device training: a ``.tflite`` that trains with builtin ops only, and its Python runner.

Names resolve on first use, so ``OnDeviceTrainer`` (LiteRT only) starts without TensorFlow.

Example:
    >>> from tflite_opt.ondevice import OnDeviceTrainer, export_trainable
    >>> export_trainable(model, "train.tflite", trainable="head", optimizer="adam")
    >>> trainer = OnDeviceTrainer("train.tflite")
    >>> trainer.fit(x, y, epochs=5)
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"OnDeviceExport": "tflite_opt.ondevice.export",
            "export_trainable": "tflite_opt.ondevice.export",
            "OnDeviceTrainer": "tflite_opt.ondevice.runner",
            "warmup_cosine": "tflite_opt.ondevice.schedules"}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
