"""Conversion to TFLite: every precision, calibration from any source, Android handoff.

Public API (re-exported here; nothing else in the subpackage is public):

Example:
    >>> from tflite_opt.convert import convert, convert_accuracy_aware
    >>> result = convert(model, "int8", representative_data=data.x_train)
    >>> result.save("out/model_int8.tflite", labels=[str(d) for d in range(10)])
    >>> aware = convert_accuracy_aware(model, data.x_train, (x_val, y_val), max_accuracy_drop=0.01)
    >>> rgb = convert(rgb_model, "int8", representative_data=x, target="mediapipe_image_classifier")
"""

from tflite_opt import _name_like_its_function
from tflite_opt.convert.accuracy_aware import AccuracyAwareResult, Trial, convert_accuracy_aware
from tflite_opt.convert.converter import MIN_CALIBRATION_SAMPLES, ConversionResult, convert
from tflite_opt.convert.metadata import ModelInfo, embed_metadata, read_metadata
from tflite_opt.convert.precision import PRECISIONS, Precision, PrecisionSpec
from tflite_opt.convert.quant_report import LayerError, QuantizationReport, quantization_report
from tflite_opt.convert.sidecar import build_sidecar, sidecar_path
from tflite_opt.convert.targets import TARGETS, Target
from tflite_opt.convert.tensors import (flex_ops, io_details, operator_names, signatures,
                                        tensor_dtypes)

__all__ = [
    "AccuracyAwareResult", "ConversionResult", "LayerError", "MIN_CALIBRATION_SAMPLES",
    "ModelInfo", "PRECISIONS", "Precision", "PrecisionSpec", "QuantizationReport", "TARGETS",
    "Target", "Trial", "build_sidecar", "convert", "convert_accuracy_aware", "embed_metadata",
    "flex_ops", "io_details", "operator_names", "quantization_report", "read_metadata",
    "sidecar_path", "signatures", "tensor_dtypes",
]

_name_like_its_function(__name__)  # tflite_opt.convert(...) calls convert() either way
