"""export: the last of the three lines a training script adds; strip, convert, save."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from tflite_opt import _name_like_its_function
from tflite_opt._keras import keras


def export(model: keras.Model, path: str | os.PathLike, precision: str = "int8",
           representative_data: Any = None, *, labels: Sequence[str] | None = None,
           overwrite: bool = False, **convert_options: Any) -> Path:
    """Strips training wrappers, converts to TFLite and saves the file with its sidecar.

    Pruning and clustering wrappers are removed first (their masks and centroids
    applied); a QAT model (any scheme, trained in your own ``fit``) goes to the converter
    as it is, its zeros and clusters intact.

    Args:
        model: A plain, pruned, clustered or QAT model, Keras 3 or tf_keras.
        path: Output ``.tflite`` file; ``FILE.json`` (and ``labels.txt``) are written beside it.
        precision: ``float32``, ``float16``, ``dynamic``, ``int8`` or ``int16x8``. Defaults to int8.
        representative_data: Calibration samples for int8/int16x8 (numpy, ``tf.data``, a
            generator or an image folder); not needed for a QAT model. Defaults to None.
        labels: Class names for the sidecar and ``labels.txt``. Defaults to None.
        overwrite: Replace an existing file. Defaults to False.
        **convert_options: Passed to ``tflite_opt.convert.convert``.

    Returns:
        The path of the written ``.tflite`` file.

    Example:
        >>> model = tflite_opt.prune(model, 0.75, end_step=epochs * steps)          # 1
        >>> model.fit(x, y, epochs=epochs, callbacks=tflite_opt.training_callbacks(model))  # 2
        >>> tflite_opt.export(model, "model.tflite", representative_data=x[:200])  # 3
    """
    from tflite_opt.convert import convert
    from tflite_opt.train import strip

    result = convert(strip(model), precision, representative_data=representative_data,
                     **convert_options)
    return result.save(path, overwrite=overwrite, labels=labels)


_name_like_its_function(__name__)  # tflite_opt.export(...) calls export() either way
