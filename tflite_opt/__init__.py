"""tflite_opt: a Keras model in, a fast, small, accurate ``.tflite`` out.

The public API is declared here once (and pinned by ``tests/test_public_api.py``):

    >>> import tflite_opt
    >>> model = tflite_opt.prune(model, 0.75, end_step=epochs * steps_per_epoch)
    >>> model.fit(x, y, epochs=epochs, callbacks=tflite_opt.training_callbacks(model))
    >>> tflite_opt.export(model, "model.tflite", representative_data=x[:200])

Names resolve on first use (PEP 562): ``import tflite_opt`` stays cheap, so the
``.tflite``-only tools (inspect, benchmark) start without loading TensorFlow. Models built with
Keras 3 (``import keras``) and with tf_keras (Keras 2) are both accepted; importing tflite_opt
does not change which Keras ``tf.keras`` is for the user's code (see ``tflite_opt/_keras.py``).
"""

from __future__ import annotations

import importlib
import sys
import types

__version__ = "0.1.0"

# Public name -> module that defines it, in the order of the flow.
_EXPORTS: dict[str, str] = {
    # data
    **dict.fromkeys(("Dataset", "load_digits"), "tflite_opt.data.digits"),
    **dict.fromkeys(("load_digits_eval", "augmented_validation_split"),
                    "tflite_opt.data.digits_eval"),
    "load_digits_rgb": "tflite_opt.data.digits_rgb",
    **dict.fromkeys(("Augmentation", "augmented_dataset"), "tflite_opt.data.augment"),
    **dict.fromkeys(("ImagePreprocessing", "InputSpec", "load_calibration_data",
                     "load_evaluation_data"), "tflite_opt.data.calibration"),
    # models
    **dict.fromkeys(("digits_cnn", "dense_mlp", "mobilenet_v2"), "tflite_opt.models.builders"),
    **dict.fromkeys(("mobilenet_v2_like", "mobilenet_v3_small", "mobilenet_v3_small_like",
                     "shufflenet_v2_like"), "tflite_opt.models.efficient"),
    "load_model": "tflite_opt.models.loading",
    "load_tfmot_qat_weights": "tflite_opt.train.tfmot_qat_weights",
    "keras_flavor": "tflite_opt._keras",
    **dict.fromkeys(("train_digits_cnn", "train_from_scratch"), "tflite_opt.models.training"),
    # train
    **dict.fromkeys(("prune", "strip", "cluster", "quantize_aware", "training_callbacks",
                     "PruningStep", "SparsityLogger", "StageSummary", "Recipe", "PruneStage",
                     "ClusterStage", "QATStage", "LayerPolicy", "OptimizationPlan", "PlanResult",
                     "StageRecord", "weight_stats", "optimize_scope"), "tflite_opt.train"),
    **dict.fromkeys(("distill", "Distiller", "DistillStage", "SelfDistill"), "tflite_opt.train"),
    "freeze_batch_norm": "tflite_opt.train.distill",
    **dict.fromkeys(("decompose", "DecompositionResult", "LayerDecomposition"),
                    "tflite_opt.train.decompose"),
    "DecomposeStage": "tflite_opt.train.recipe",
    **dict.fromkeys(("prune_channels", "ChannelPruningResult"), "tflite_opt.train.channel_pruning"),
    # convert
    **dict.fromkeys(("convert", "ConversionResult", "Precision", "convert_accuracy_aware",
                     "AccuracyAwareResult", "quantization_report", "QuantizationReport",
                     "ModelInfo", "read_metadata"), "tflite_opt.convert"),
    "export": "tflite_opt.export",
    # runtime
    **dict.fromkeys(("read_tflite", "evaluate_tflite", "AccuracyResult", "benchmark",
                     "BenchmarkResult", "compare", "CompareResult", "find_fastest_config",
                     "inspect_model", "Inspection", "profile_ops", "benchmark_compiled_model",
                     "InterpreterOptions", "DelegateSpec"), "tflite_opt.runtime"),
    **dict.fromkeys(("HostCPU", "host_cpu"), "tflite_opt.runtime.host_cpu"),
    **dict.fromkeys(("ModelCost", "model_cost"), "tflite_opt.runtime.cost"),
    **dict.fromkeys(("ArenaEstimate", "arena_estimate"), "tflite_opt.runtime.allocation_guard"),
    # hardware-aware architecture search
    **dict.fromkeys(("run_search", "SearchConfig", "SearchResult", "SearchSpace", "Candidate",
                     "Budgets", "LatencyTable", "retrain_final"), "tflite_opt.search"),
    # on-device and federated learning
    **dict.fromkeys(("export_trainable", "OnDeviceExport"), "tflite_opt.ondevice.export"),
    "OnDeviceTrainer": "tflite_opt.ondevice.runner",
    "warmup_cosine": "tflite_opt.ondevice.schedules",
    **dict.fromkeys(("Partition", "dirichlet_partition"), "tflite_opt.federated.partition"),
    **dict.fromkeys(("FedAvgConfig", "FederatedResult", "run_fedavg"), "tflite_opt.federated.fedavg"),
    "run_flower": "tflite_opt.federated.flower",
    **dict.fromkeys(("FederatedJobConfig", "FederatedJobResult", "run_federated_job"),
                    "tflite_opt.federated.job"),
    # the main job
    **dict.fromkeys(("PipelineConfig", "PipelineResult", "run_pipeline"), "tflite_opt.pipeline"),
    # errors
    **dict.fromkeys(("TfliteOptError", "InvalidArgumentError", "ModelLoadError",
                     "UnsupportedLayerError", "DataError", "RecipeError", "ConversionError",
                     "InvalidTFLiteError", "OutputExistsError", "UnsafeModelError",
                     "UpdateRejectedError"),
                    "tflite_opt.errors"),
}

__all__ = sorted(_EXPORTS)


class _ModuleNamedLikeItsFunction(types.ModuleType):
    """A submodule that shares its name with a public function: ``convert``, ``export``.

    Importing the submodule ``tflite_opt.convert`` (which any of our own modules may do first)
    makes Python's import system set the attribute ``tflite_opt.convert`` to that module, hiding
    the lazily resolved function of the same name. Such a module calls its namesake function,
    so ``tflite_opt.convert(model, "int8")`` works whichever of the two the attribute holds.
    """

    def __call__(self, *args, **kwargs):
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


def _name_like_its_function(module_name: str) -> None:
    """Makes ``module_name`` (a submodule named like a public function) call that function."""
    sys.modules[module_name].__class__ = _ModuleNamedLikeItsFunction


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tflite_opt' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # resolve once
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
