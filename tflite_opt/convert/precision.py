"""The five TFLite precisions and how each one configures the converter.

Each precision is a registry entry (a function that sets converter options),
not a branch in an ``if`` chain, so tests can loop over ``PRECISIONS``.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable

from tflite_opt.errors import InvalidArgumentError


class Precision(str, enum.Enum):
    """A TFLite precision.

    * ``FLOAT32``: no quantization.
    * ``FLOAT16``: float16 weights, float32 compute on CPU (half the size).
    * ``DYNAMIC``: int8 weights, activations quantized on the fly; no calibration data.
    * ``INT8``: full integer: int8 weights and activations; needs calibration data
      (or a quantization-aware-trained model). Runs on NPUs/DSPs/Edge TPU.
    * ``INT16X8``: int16 activations, int8 weights; needs calibration data; more
      accurate than int8 where activations have a wide range.

    Example:
        >>> Precision("int8") is Precision.INT8
        True
    """

    FLOAT32 = "float32"
    FLOAT16 = "float16"
    DYNAMIC = "dynamic"
    INT8 = "int8"
    INT16X8 = "int16x8"

    @classmethod
    def parse(cls, value: "str | Precision") -> "Precision":
        """Returns the Precision for ``value`` or raises a clear error."""
        try:
            return cls(value.value if isinstance(value, Precision) else str(value).lower())
        except ValueError:
            raise InvalidArgumentError(
                f"precision={value!r} is not supported; accepted: "
                f"{', '.join(p.value for p in cls)}") from None

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class PrecisionSpec:
    """What a precision needs and allows.

    Attributes:
        needs_calibration: Whether representative data is required (unless QAT).
        io_types: Accepted ``input_type``/``output_type`` values; the first is the default.
        configure: Sets optimizations and target spec on a ``tf.lite.TFLiteConverter``.
    """

    needs_calibration: bool
    io_types: tuple[str, ...]
    configure: Callable[[Any, bool], None]


def _float32(converter: Any, qat: bool) -> None:
    del converter, qat  # the converter's defaults are float32


def _float16(converter: Any, qat: bool) -> None:
    from tflite_opt._keras import tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_types = [tf.float16]


def _dynamic(converter: Any, qat: bool) -> None:
    from tflite_opt._keras import tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]


def _int8(converter: Any, qat: bool) -> None:
    from tflite_opt._keras import tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if qat:
        # QAT models carry their own ranges; the converter insists on a
        # representative dataset once the op set is restricted, so leave it open
        # (inference_input/output_type still make the model fully int8).
        return
    # Builtins-int8 only: an op without an int8 kernel fails conversion instead of
    # silently staying float, which would break NPU/Edge TPU deployment.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]


def _int16x8(converter: Any, qat: bool) -> None:
    from tflite_opt._keras import tf

    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [
        tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8]


PRECISIONS: dict[Precision, PrecisionSpec] = {
    Precision.FLOAT32: PrecisionSpec(False, ("float32",), _float32),
    Precision.FLOAT16: PrecisionSpec(False, ("float32",), _float16),
    Precision.DYNAMIC: PrecisionSpec(False, ("float32",), _dynamic),
    Precision.INT8: PrecisionSpec(True, ("int8", "uint8", "float32"), _int8),
    Precision.INT16X8: PrecisionSpec(True, ("float32", "int16"), _int16x8),
}
