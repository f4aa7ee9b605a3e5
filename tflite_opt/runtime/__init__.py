"""Runtime checks of ``.tflite`` files: validation, accuracy, latency, delegates, inspection.

This file is the subpackage's public API; everything else is internal.

Example:
    >>> from tflite_opt.runtime import read_tflite, evaluate_tflite, benchmark
    >>> acc = evaluate_tflite("model.tflite", x_test, y_test)
    >>> bench = benchmark("model.tflite", num_runs=50)
"""

from tflite_opt.runtime.accuracy import AccuracyResult, evaluate_tflite, load_image_folder
from tflite_opt.runtime.android import android_benchmark_commands
from tflite_opt.runtime.benchmark import BenchmarkResult, benchmark, gzip_size
from tflite_opt.runtime.compare import (CompareResult, FastestConfig, compare,
                                        find_fastest_config)
from tflite_opt.runtime.compiled import AcceleratorResult, benchmark_compiled_model
from tflite_opt.runtime.delegates import DELEGATES, DelegateResult, DelegateSpec
from tflite_opt.runtime.gpu_compat import GpuCompatibility
from tflite_opt.runtime.host_cpu import HostCPU, host_cpu, parse_cpuinfo
from tflite_opt.runtime.inspection import Inspection, inspect_model
from tflite_opt.runtime.interpreter import (BACKENDS, OP_RESOLVERS, InterpreterOptions,
                                            make_interpreter)
from tflite_opt.runtime.model_file import read_tflite, verify_tflite
from tflite_opt.runtime.profile import OpProfile, profile_ops
from tflite_opt.runtime.quantization import dequantize_output, quantize_input
from tflite_opt.runtime.stats import LatencyStats, latency_stats, nearest_rank_percentile

__all__ = [
    "AcceleratorResult", "AccuracyResult", "BACKENDS", "BenchmarkResult", "CompareResult",
    "DELEGATES", "DelegateResult", "DelegateSpec", "FastestConfig", "GpuCompatibility", "HostCPU",
    "Inspection", "InterpreterOptions", "LatencyStats", "OP_RESOLVERS", "OpProfile",
    "android_benchmark_commands", "benchmark", "benchmark_compiled_model", "compare",
    "dequantize_output", "evaluate_tflite", "find_fastest_config", "gzip_size", "host_cpu",
    "inspect_model", "latency_stats", "load_image_folder", "make_interpreter",
    "nearest_rank_percentile", "parse_cpuinfo", "profile_ops", "quantize_input", "read_tflite",
    "verify_tflite",
]
