"""The public API is declared once, in tflite_opt/__init__.py; this pins it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import tflite_opt

EXPECTED = {
    "AccuracyAwareResult", "AccuracyResult", "BenchmarkResult", "ClusterStage", "CompareResult",
    "ConversionError", "ConversionResult", "DataError", "Dataset", "DelegateSpec", "DistillStage",
    "Distiller", "HostCPU", "SelfDistill", "distill",
    "DecomposeStage", "DecompositionResult", "LayerDecomposition", "decompose",
    "mobilenet_v2_like", "mobilenet_v3_small", "mobilenet_v3_small_like", "shufflenet_v2_like",
    "ImagePreprocessing", "InputSpec", "Inspection", "InterpreterOptions", "InvalidArgumentError",
    "InvalidTFLiteError", "LayerPolicy", "ModelInfo", "ModelLoadError", "OptimizationPlan", "OutputExistsError",
    "PipelineConfig", "PipelineResult", "PlanResult", "Precision", "PruneStage", "PruningStep",
    "QATStage", "QuantizationReport", "Recipe", "RecipeError", "SparsityLogger", "StageRecord",
    "StageSummary", "TfliteOptError", "UnsafeModelError", "UnsupportedLayerError", "benchmark",
    "benchmark_compiled_model", "cluster", "compare", "convert", "convert_accuracy_aware",
    "dense_mlp", "digits_cnn", "evaluate_tflite", "export", "find_fastest_config", "host_cpu",
    "inspect_model", "keras_flavor", "load_calibration_data", "load_digits", "load_digits_eval",
    "load_digits_rgb", "load_evaluation_data", "load_model", "load_tfmot_qat_weights",
    "mobilenet_v2", "optimize_scope", "profile_ops", "prune", "quantization_report",
    "quantize_aware", "read_metadata", "read_tflite", "run_pipeline", "strip", "train_digits_cnn",
    "training_callbacks", "weight_stats",
    "ChannelPruningResult", "prune_channels", "ModelCost", "model_cost",
    "OnDeviceExport", "OnDeviceTrainer", "export_trainable", "warmup_cosine",
    "ArenaEstimate", "arena_estimate", "augmented_validation_split",
    "FedAvgConfig", "FederatedJobConfig", "FederatedJobResult", "FederatedResult", "Partition",
    "UpdateRejectedError", "dirichlet_partition", "run_fedavg", "run_federated_job", "run_flower",
    "Budgets", "Candidate", "LatencyTable", "SearchConfig", "SearchResult", "SearchSpace",
    "run_search", "retrain_final", "Augmentation", "augmented_dataset", "freeze_batch_norm",
    "train_from_scratch",
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


def _fresh_python(code: str) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env)
    return out.stdout.split()


def test_import_tflite_opt_leaves_keras_choice_and_tensorflow_alone():
    code = ("import os, sys; import tflite_opt; "
            "print(os.environ.get('TF_USE_LEGACY_KERAS', 'unset'), 'tensorflow' in sys.modules)")
    assert _fresh_python(code) == ["unset", "False"]


def test_tf_keras_stays_keras3_after_tflite_opt_prunes_a_tf_keras_model():
    # Pruning a tf_keras model imports tfmot, whose compat module sets TF_USE_LEGACY_KERAS=1.
    code = ("import os; import tflite_opt; import tf_keras; import tensorflow as tf; "
            "m = tf_keras.Sequential([tf_keras.Input((8,)), tf_keras.layers.Dense(4), "
            "tf_keras.layers.Dense(2)]); "
            "tflite_opt.prune(m, 0.5, end_step=10, policy=tflite_opt.LayerPolicy(skip_classifier=False)); "
            "import sys; assert 'tensorflow_model_optimization' in sys.modules; "
            "print(tf.keras.version(), tf.optimizers.Adam.__module__.split('.')[0], "
            "os.environ.get('TF_USE_LEGACY_KERAS', 'unset'))")
    version, optimizers_package, variable = _fresh_python(code)
    assert version.startswith("3.")
    assert optimizers_package == "keras"
    assert variable == "unset"


def test_keras_flavor_names_each_keras_and_rejects_other_objects():
    import keras
    import tf_keras

    assert tflite_opt.keras_flavor(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])) \
        == "keras3"
    assert tflite_opt.keras_flavor(
        tf_keras.Sequential([tf_keras.Input((2,)), tf_keras.layers.Dense(1)])) == "tf_keras"
    with pytest.raises(tflite_opt.InvalidArgumentError, match="not a Keras model"):
        tflite_opt.keras_flavor(object())


def test_functions_named_like_submodules_stay_callable_after_submodule_imports():
    # Importing tflite_opt.convert (the package) or tflite_opt.export (the module) first makes
    # Python bind the module to the package attribute; calls must still reach the function.
    out = _fresh_python(
        "import numpy as np, tflite_opt, tflite_opt.convert.precision, tflite_opt.export\n"
        "from tflite_opt._keras import keras\n"
        "model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])\n"
        "result = tflite_opt.convert(model, 'float32')\n"
        "print(type(result).__name__, len(result.tflite_bytes) > 0)\n"
        "print(callable(tflite_opt.export))\n")
    assert out[-3:] == ["ConversionResult", "True", "True"]
