"""The public API is declared once, in tflite_opt/__init__.py; this pins it."""

from __future__ import annotations

import subprocess
import sys

import tflite_opt

EXPECTED = {
    "AccuracyAwareResult", "AccuracyResult", "BenchmarkResult", "ClusterStage", "CompareResult",
    "ConversionError", "ConversionResult", "DataError", "Dataset", "DelegateSpec", "HostCPU",
    "ImagePreprocessing", "InputSpec", "Inspection", "InterpreterOptions", "InvalidArgumentError",
    "InvalidTFLiteError", "LayerPolicy", "ModelLoadError", "OptimizationPlan", "OutputExistsError",
    "PipelineConfig", "PipelineResult", "PlanResult", "Precision", "PruneStage", "PruningStep",
    "QATStage", "QuantizationReport", "Recipe", "RecipeError", "SparsityLogger", "StageRecord",
    "StageSummary", "TfliteOptError", "UnsupportedLayerError", "benchmark",
    "benchmark_compiled_model", "cluster", "compare", "convert", "convert_accuracy_aware",
    "dense_mlp", "digits_cnn", "evaluate_tflite", "export", "find_fastest_config", "host_cpu",
    "inspect_model", "load_calibration_data", "load_digits", "load_digits_eval",
    "load_evaluation_data", "load_model",
    "mobilenet_v2", "optimize_scope", "profile_ops", "prune", "quantization_report",
    "quantize_aware", "read_tflite", "run_pipeline", "strip", "train_digits_cnn",
    "training_callbacks", "weight_stats",
}


def test_public_api_all_names_pinned():
    assert set(tflite_opt.__all__) == EXPECTED


def test_public_api_every_name_resolves():
    for name in tflite_opt.__all__:
        assert getattr(tflite_opt, name) is not None, name


def test_public_api_errors_share_one_base():
    for name in tflite_opt.__all__:
        value = getattr(tflite_opt, name)
        if name.endswith("Error"):
            assert issubclass(value, tflite_opt.TfliteOptError), name


def test_import_tflite_opt_sets_legacy_keras_without_loading_tensorflow():
    code = ("import os, sys; import tflite_opt; "
            "print(os.environ['TF_USE_LEGACY_KERAS'], 'tensorflow' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "False"]
