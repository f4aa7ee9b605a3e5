"""Runtime checks of ``.tflite`` files: validation, accuracy, latency, delegates, inspection.

Public API (re-exported here; nothing else in the subpackage is public):

Example:
    >>> from tflite_opt.runtime import read_tflite, evaluate_tflite, benchmark
    >>> acc = evaluate_tflite("model.tflite", x_test, y_test)
    >>> bench = benchmark("model.tflite", num_runs=50)
"""

from tflite_opt.runtime.accuracy import AccuracyResult, evaluate_tflite, load_image_folder
from tflite_opt.runtime.benchmark import BenchmarkResult, benchmark, gzip_size
from tflite_opt.runtime.delegates import DELEGATES, DelegateResult, DelegateSpec
from tflite_opt.runtime.interpreter import (BACKENDS, OP_RESOLVERS, InterpreterOptions,
                                            make_interpreter)
from tflite_opt.runtime.model_file import read_tflite, verify_tflite
from tflite_opt.runtime.quantization import dequantize_output, quantize_input
from tflite_opt.runtime.stats import LatencyStats, latency_stats, nearest_rank_percentile

__all__ = [
    "AccuracyResult", "BACKENDS", "BenchmarkResult", "DELEGATES", "DelegateResult",
    "DelegateSpec", "InterpreterOptions", "LatencyStats", "OP_RESOLVERS", "benchmark",
    "dequantize_output", "evaluate_tflite", "gzip_size", "latency_stats", "load_image_folder",
    "make_interpreter", "nearest_rank_percentile", "quantize_input", "read_tflite",
    "verify_tflite",
]
