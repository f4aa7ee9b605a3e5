"""Errors raised by tflite_opt.

Every message names the argument, layer or file at fault, what was found, what is
accepted, and the call or flag that fixes it. Scripts turn a ``TfliteOptError``
into one line on stderr and exit code 2 (see ``scripts/_cli.py``).
"""

from __future__ import annotations


class TfliteOptError(Exception):
    """Base class of every error tflite_opt raises on bad input."""


class InvalidArgumentError(TfliteOptError, ValueError):
    """An argument or flag has a value that is not accepted."""


class ModelLoadError(TfliteOptError):
    """A Keras model path does not exist or does not hold a loadable model."""


class UnsafeModelError(ModelLoadError):
    """A model file would run code from the file when loaded (a Lambda layer, a module outside
    Keras/TensorFlow); refused unless the user passes ``trust_model=True`` / ``--trust_model``."""


class UnsupportedLayerError(TfliteOptError):
    """A layer cannot be pruned, clustered or quantized by the requested method."""


class DataError(TfliteOptError, ValueError):
    """Calibration or evaluation data has the wrong shape, dtype, size or values."""


class RecipeError(TfliteOptError, ValueError):
    """A recipe file or config has unknown keys or values out of range."""


class ConversionError(TfliteOptError):
    """The TFLite converter could not convert the model."""


class InvalidTFLiteError(TfliteOptError):
    """A file is not a readable TFLite flatbuffer (missing, empty, corrupt, truncated)."""


class OutputExistsError(TfliteOptError, FileExistsError):
    """An output file exists and ``overwrite`` was not requested."""


class UpdateRejectedError(TfliteOptError, ValueError):
    """A federated client update does not fit the server's model (``tflite_opt.federated``).

    ``reason`` is a short code (``"shape"``, ``"non_finite"``, ``"stale_round"``, ...) that the
    server records per round; the message says what was found and what was expected.
    """

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason
