"""Conversion to TFLite: every precision, calibration from any source, Android handoff.

Example:
    >>> from tflite_opt.convert import convert
    >>> result = convert(model, "int8", representative_data=data.x_train)
    >>> result.save("out/model_int8.tflite", labels=[str(d) for d in range(10)])
"""

from tflite_opt.convert.accuracy_aware import AccuracyAwareResult, Trial, convert_accuracy_aware
from tflite_opt.convert.converter import (MIN_CALIBRATION_SAMPLES, ConversionResult, convert)
from tflite_opt.convert.precision import PRECISIONS, Precision
from tflite_opt.convert.quant_report import LayerError, QuantizationReport, quantization_report
from tflite_opt.convert.sidecar import build_sidecar, sidecar_path
from tflite_opt.convert.tensors import flex_ops, io_details, operator_names, tensor_dtypes

__all__ = [
    "AccuracyAwareResult", "ConversionResult", "LayerError", "QuantizationReport", "Trial",
    "convert_accuracy_aware", "quantization_report", "MIN_CALIBRATION_SAMPLES", "PRECISIONS", "Precision", "build_sidecar",
    "convert", "flex_ops", "io_details", "operator_names", "sidecar_path", "tensor_dtypes",
]
