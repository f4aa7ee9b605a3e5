"""The end-to-end job: Keras model -> optimized (pruned, clustered, QAT) int8 .tflite -> report.

``run_pipeline`` ties the stages together: data -> float model -> recipe's training
stages -> conversion -> accuracy and latency on the TFLite runtime -> report.
Inputs are validated before anything is written; outputs are staged and moved into
place only when the run succeeds, and an interrupted run resumes from the float
model and stage checkpoints kept in ``<output_dir>/.work``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from tflite_opt._keras import keras
from tflite_opt.data.arrays import load_npz
from tflite_opt.data.calibration import ImagePreprocessing
from tflite_opt.data.digits import Dataset, load_digits
from tflite_opt.errors import DataError, InvalidArgumentError
from tflite_opt.files import (atomic_save_model, check_output_dir, lock_output_dir,
                              staged_output_dir)
from tflite_opt.models.loading import load_model
from tflite_opt.models.training import train_digits_cnn
from tflite_opt.runtime.cost import model_cost
from tflite_opt.runtime.interpreter import MAX_NUM_THREADS


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """Settings of one pipeline run; every field has the default the main job uses.

    Args:
        output_dir: Folder for the .tflite files, sidecars, report and plots.
        model: A ``.keras``/``.h5``/SavedModel path to optimize; None trains the
            bundled digits CNN from scratch.
        recipe: A recipe file (JSON/YAML); None uses ``Recipe.default()``
            (prune 75% -> 16 clusters -> PCQAT -> full int8).
        data: An ``.npz`` with ``x_train, y_train, x_test, y_test``; None uses
            scikit-learn's digits, upscaled to the model's input size.
        float_epochs: Epochs to train the float model when ``model`` is None.
        batch_size: Batch size of every training stage.
        learning_rate: Peak learning rate of the float training (cosine decay).
        seed: Seed of data split, weight init and shuffling.
        num_calibration_samples: Training samples used to calibrate int8 ranges.
        benchmark_runs: Timed inferences per variant.
        num_threads: Interpreter threads for accuracy and latency.
        verbose: Keras progress output (0 silent, 1 bars, 2 one line per epoch).
        trust_model: Load ``model`` even if it carries code (Lambda layers, modules outside
            Keras); see ``tflite_opt.load_model``. Defaults to False.
        target: Make the .tflite files for a runtime profile, e.g.
            ``"mediapipe_image_classifier"`` (uint8 RGB in, float32 scores out; the data's
            [0, 1] images are taken as pixels / 255). Defaults to None.
        metadata: Embed TFLite metadata (name, normalization, labels) in the .tflite
            files. Defaults to True.
    """

    output_dir: str = "outputs"
    model: str | None = None
    recipe: str | None = None
    data: str | None = None
    float_epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 2e-3
    seed: int = 0
    num_calibration_samples: int = 200
    benchmark_runs: int = 100
    num_threads: int = 1
    verbose: int = 2
    trust_model: bool = False
    target: str | None = None
    metadata: bool = True

    def __post_init__(self):
        for name in ("float_epochs", "batch_size", "num_calibration_samples", "benchmark_runs",
                     "num_threads"):
            if getattr(self, name) < 1:
                raise InvalidArgumentError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.num_threads > MAX_NUM_THREADS:
            raise InvalidArgumentError(f"num_threads must be at most {MAX_NUM_THREADS} (this "
                                       f"machine has {os.cpu_count()} CPUs), got {self.num_threads}")
        if not 0 <= self.seed < 2**32:  # the range numpy and TensorFlow accept as a seed
            raise InvalidArgumentError(f"seed must be an integer from 0 to 2**32 - 1, got "
                                       f"{self.seed}; pass --seed=0 or another non-negative integer")
        if Path(self.output_dir).exists() and not Path(self.output_dir).is_dir():
            raise InvalidArgumentError(f"output_dir {self.output_dir!r} exists and is not a folder; "
                                       "pass --output_dir=DIR naming a folder")
        if self.target is not None:
            from tflite_opt.convert.targets import Target

            Target.parse(self.target)
            if not self.metadata:
                raise InvalidArgumentError(f"target={self.target!r} needs the TFLite metadata its "
                                           "runtime reads; keep metadata=True (drop --nometadata)")


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    """What a run produced; ``to_dict()`` is the content of report.json."""

    output_dir: Path
    report: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.report


def load_data(path: str | None, input_shape: tuple[int, ...], seed: int = 0,
              num_outputs: int | None = None) -> Dataset:
    """Loads ``x_train, y_train, x_test, y_test`` from an .npz, or digits sized to the model.

    Args:
        path: The .npz file; None loads scikit-learn's digits at the model's input size.
        input_shape: The model's input shape without the batch dimension.
        seed: Seed of the digits' train/test split.
        num_outputs: The model's number of classes (outputs); labels must be below it.
            None skips that check (a model built for the data).

    Raises:
        DataError: the arrays are missing, empty, hold NaN/inf, do not match the
            model's input shape, or have labels the model has no output for.

    Example:
        >>> data = load_data("mine.npz", (32, 32, 1), num_outputs=10)
    """
    if path is None:
        if len(input_shape) != 3 or input_shape[0] != input_shape[1] or input_shape[2] not in (1, 3):
            raise DataError(f"the bundled digits data is square, grayscale or RGB, but the model "
                            f"takes {input_shape}; pass --data=FILE.npz with x_train, y_train, "
                            "x_test, y_test")
        if input_shape[2] == 3:
            from tflite_opt.data.digits_rgb import load_digits_rgb

            return load_digits_rgb(image_size=input_shape[0], seed=seed)
        return load_digits(image_size=input_shape[0], seed=seed)
    if not Path(path).is_file():
        raise DataError(f"data file {path!r} does not exist; pass --data=FILE.npz")
    # Headers (shapes, dtypes, sizes) are checked before any array is decompressed.
    arrays = load_npz(path, "--data", keys=("x_train", "y_train", "x_test", "y_test"),
                      sample_shapes={"x_train": input_shape, "x_test": input_shape})
    x_train, y_train, x_test, y_test = (arrays[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    for name, x in (("x_train", x_train), ("x_test", x_test)):
        if x.ndim == 0 or len(x) == 0:
            raise DataError(f"{name} in {path!r} is empty (shape {x.shape}); it needs at least one "
                            f"sample of shape {tuple(input_shape)}")
        if tuple(x.shape[1:]) != tuple(input_shape):
            raise DataError(f"{name} in {path!r} has samples of shape {tuple(x.shape[1:])}, the model "
                            f"expects {tuple(input_shape)}")
        if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
            raise DataError(f"{name} in {path!r} has dtype {x.dtype}; save real numbers "
                            "(float32 or integer pixels)")
        bad = ~np.isfinite(x.reshape(len(x), -1)).all(axis=1)
        if bad.any():  # caught here, not as a NaN loss after an hour of training
            raise DataError(f"{name} in {path!r} has NaN or inf values in {int(bad.sum())} of "
                            f"{len(x)} samples (first at index {int(np.argmax(bad))}); remove or "
                            "impute them before optimizing")
    for name, x, y in (("y_train", x_train, y_train), ("y_test", x_test, y_test)):
        if np.issubdtype(y.dtype, np.number) and not np.all(np.isfinite(y)):
            raise DataError(f"{name} in {path!r} has {int(np.sum(~np.isfinite(y)))} NaN or inf "
                            "labels; labels are integer class indices 0..num_classes-1")
        if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.number) \
                or np.any(y < 0) or np.any(y != np.round(y)):
            raise DataError(f"{name} in {path!r} must be {len(x)} integer class labels (shape "
                            f"({len(x)},)), got shape {y.shape} of {y.dtype}; convert one-hot "
                            "labels with y.argmax(axis=1)")
    num_classes = int(max(y_train.max(), y_test.max())) + 1
    if num_outputs is not None and num_classes > num_outputs:
        name = "y_train" if y_train.max() >= num_outputs else "y_test"
        raise DataError(f"{name} in {path!r} has label {num_classes - 1}, but the model has "
                        f"{num_outputs} outputs (classes 0..{num_outputs - 1}); pass data whose "
                        "labels the model can predict, or a model with one output per class")
    return Dataset(x_train.astype(np.float32), y_train.astype(np.int64), x_test.astype(np.float32),
                   y_test.astype(np.int64), num_classes=num_classes, name=Path(path).stem)


def _losses_of(model: Any) -> Any:
    """``keras.losses`` of the Keras that built ``model`` (Keras 3 or tf_keras)."""
    from tflite_opt._keras import keras3, keras_flavor

    return keras3().losses if keras_flavor(model) == "keras3" else keras.losses


def _num_outputs(model: keras.Model) -> int | None:
    """The class count of a single-output classifier, or None when it is not one."""
    shape = model.output_shape
    if isinstance(shape, tuple) and len(shape) == 2 and isinstance(shape[-1], int):
        return shape[-1]
    return None


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _file_identity(path: str | None) -> list | None:
    """Path, size and modification time: enough to tell two model or data files apart."""
    if path is None:
        return None
    stat = Path(path).stat()
    return [str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns]


def _train_float_model(config: PipelineConfig, data: Dataset, work_dir: Path) -> keras.Model:
    """Trains the bundled CNN, or reloads it from the work dir of an interrupted run."""
    key = _fingerprint("float", config.float_epochs, config.batch_size, config.learning_rate,
                       config.seed, data.input_shape, len(data.x_train))
    cached = work_dir / f"float_{key}.keras"
    if cached.exists():
        print(f"resuming: reusing the float model trained by an earlier run ({cached})")
        return load_model(cached)
    print(f"training the float model: {config.float_epochs} epochs on {len(data.x_train)} samples")
    model = train_digits_cnn(data, epochs=config.float_epochs, batch_size=config.batch_size,
                             learning_rate=config.learning_rate, seed=config.seed,
                             verbose=config.verbose)
    atomic_save_model(model, cached)
    return model


def _test_outputs(model: keras.Model, data: Dataset) -> tuple[np.ndarray, float]:
    """The model's outputs on the test split and its top-1 accuracy there."""
    probs = model.predict(data.x_test, batch_size=256, verbose=0)
    return probs, float(np.mean(np.argmax(probs, axis=-1) == data.y_test))


def _versions() -> dict[str, str]:
    from importlib import metadata

    names = ("tensorflow", "tf-keras", "tensorflow-model-optimization", "ai-edge-litert", "numpy")
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def run_pipeline(config: PipelineConfig = PipelineConfig()) -> PipelineResult:
    """Runs the whole job and returns where the outputs are and what was measured.

    The output folder is checked for writability first and locked for the run: a
    second run into the same folder fails at once, naming the first one's PID,
    instead of deleting its resume checkpoints when it finishes.

    Raises:
        InvalidArgumentError: a bad setting, an output folder that cannot be written,
            or one that another run is using.
        DataError, ModelLoadError, RecipeError: a bad input file (before any training).

    Example:
        >>> result = run_pipeline(PipelineConfig(output_dir="outputs"))
        >>> result.report["headline"]["accuracy_drop_points"]
    """
    output_dir = check_output_dir(config.output_dir, "output_dir")
    created = not output_dir.exists()
    with lock_output_dir(output_dir, f"{WORK_DIR}/lock"):
        try:
            return _run_locked(config)
        finally:
            _remove_unused_work_dir(output_dir, created)


WORK_DIR = ".work"  # resume checkpoints and the lock, inside the output folder


def _remove_unused_work_dir(output_dir: Path, created: bool) -> None:
    """After a run that failed before training, leaves no trace but the folder it found."""
    work_dir = output_dir / WORK_DIR
    if work_dir.is_dir() and [p.name for p in work_dir.iterdir()] == ["lock"]:
        (work_dir / "lock").unlink()
        work_dir.rmdir()
        if created:
            try:
                output_dir.rmdir()
            except OSError:  # not empty: keep it
                pass


def _run_locked(config: PipelineConfig) -> PipelineResult:
    """``run_pipeline``'s body, run while holding the output folder's lock."""
    from tflite_opt.convert import convert
    from tflite_opt.convert.targets import to_pixels
    from tflite_opt.report import latency_guidance, write_report
    from tflite_opt.runtime import benchmark, compare, evaluate_tflite, host_cpu
    from tflite_opt.train import OptimizationPlan, Recipe
    from tflite_opt.train.plan import outputs_are_logits

    timings: dict[str, float] = {}
    start = time.perf_counter()

    # 1. Validate everything the user gave before writing anything.
    recipe = Recipe.from_file(config.recipe) if config.recipe else Recipe.default()
    user_model = load_model(config.model, trust_model=config.trust_model) if config.model \
        else None
    input_shape = tuple(user_model.input_shape[1:]) if user_model is not None else (32, 32, 1)
    num_outputs = _num_outputs(user_model) if user_model is not None else None
    data = load_data(config.data, input_shape, seed=config.seed, num_outputs=num_outputs)
    if config.target is not None:  # a model the target's runtime cannot run fails before training
        from tflite_opt.convert.targets import check_model

        if user_model is None:
            raise InvalidArgumentError(
                f"target={config.target!r} needs an RGB model, and the bundled digits CNN is "
                "grayscale (32x32x1): pass --model=saved_models/digits_rgb.keras (the RGB "
                "example, made by `make rgb-example`) or your own RGB model")
        check_model(config.target, user_model)
    output_dir = Path(config.output_dir)
    work_dir = output_dir / WORK_DIR
    work_dir.mkdir(parents=True, exist_ok=True)
    # Checkpoints of an interrupted run are reused only for the same model, data and recipe.
    run_key = _fingerprint(recipe.to_dict(), config.seed, config.batch_size,
                           _file_identity(config.model), _file_identity(config.data),
                           None if config.model else (config.float_epochs, config.learning_rate))

    # 2. The float model: the user's, or the bundled CNN trained here.
    t = time.perf_counter()
    float_model = user_model if user_model is not None else _train_float_model(config, data, work_dir)
    timings["float_training"] = time.perf_counter() - t
    # The float outputs are both its accuracy and the reference the .tflite files are checked against.
    reference, float_accuracy = _test_outputs(float_model, data)
    print(f"float Keras test accuracy: {100 * float_accuracy:.2f}%")
    logits = outputs_are_logits(reference)
    if logits:
        print("note: the model's outputs are logits (no final softmax: they do not sum to 1); "
              "training with SparseCategoricalCrossentropy(from_logits=True)")
    loss = _losses_of(float_model).SparseCategoricalCrossentropy(from_logits=logits)

    # 3. The recipe's training stages (prune -> cluster -> QAT by default).
    t = time.perf_counter()
    plan_result = OptimizationPlan(recipe).run(
        float_model, train_data=(data.x_train, data.y_train),
        validation_data=(data.x_test, data.y_test), loss=loss,
        metrics=["accuracy"], optimizer="adam", batch_size=config.batch_size,
        checkpoint_dir=str(work_dir / f"plan_{run_key}"),
        verbose=config.verbose)
    timings["optimization_stages"] = time.perf_counter() - t
    _, optimized_accuracy = _test_outputs(plan_result.model, data)

    calibration = data.x_train[: config.num_calibration_samples]
    labels = [str(i) for i in range(num_outputs or data.num_classes)]  # one per model output
    # The digits' 17 grey levels were scaled to [0, 1]: an app feeding 8-bit grey pixels
    # divides by 255. For a user's .npz the preprocessing is unknown, so none is claimed.
    normalization = ImagePreprocessing(scale=1 / 255) if config.data is None else None
    # A target's file takes uint8 pixels and normalizes inside (the data's [0, 1] = pixel / 255).
    pixels = ImagePreprocessing(scale=1 / 255) if config.target else None
    x_eval = data.x_test if pixels is None else to_pixels(data.x_test, pixels)
    variants = []
    with staged_output_dir(output_dir) as stage:
        # 4. Convert the float baseline and the optimized model.
        t = time.perf_counter()
        stage_names = "+".join(record.name for record in plan_result.stages) or "no training"
        conversions = [
            ("float32", "float32", convert(float_model, "float32", target=config.target,
                                           preprocessing=pixels)),
            (f"{recipe.precision} ({stage_names})", recipe.precision,
             convert(plan_result.model, recipe.precision, representative_data=calibration,
                     num_calibration_samples=config.num_calibration_samples,
                     target=config.target, preprocessing=pixels)),
        ]
        timings["conversion"] = time.perf_counter() - t
        # 5. Accuracy and latency of each file on the TFLite runtime.
        t = time.perf_counter()
        for name, precision, conversion in conversions:
            filename = f"model_{precision}.tflite"
            path = conversion.save(stage / filename, overwrite=True, labels=labels,
                                   normalization=normalization, metadata=config.metadata)
            accuracy = evaluate_tflite(path, x_eval, data.y_test, reference_outputs=reference,
                                       num_threads=config.num_threads)
            latency = benchmark(path, num_runs=config.benchmark_runs, num_threads=config.num_threads)
            variants.append({
                "name": name, "file": filename, "precision": precision,
                "size_bytes": latency.size_bytes, "gzip_bytes": latency.gzip_bytes,
                "accuracy": accuracy.accuracy, "agreement": accuracy.agreement,
                "max_abs_diff": accuracy.max_abs_diff, "mean_abs_diff": accuracy.mean_abs_diff,
                "conversion_time_s": conversion.conversion_time_s, "latency": latency.to_dict(),
                # read from the file: what channel pruning removed shows here, zeros do not
                "cost": model_cost(path).to_dict(),
            })
        float_variant, optimized = variants[0], variants[-1]
        # The headline ratio comes from interleaved runs, so machine noise hits both alike.
        interleaved = compare([stage / float_variant["file"], stage / optimized["file"]],
                              num_runs=config.benchmark_runs, num_threads=config.num_threads)
        timings["evaluation_and_benchmark"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - start
        # A host ratio says little about a phone: name the CPU, and say why and what to do
        # when the integer file loses to float here.
        cpu = host_cpu()
        latency_ratio = interleaved.ratio(optimized["file"], float_variant["file"])
        latency_within_noise = not interleaved.distinguishable[optimized["file"]][float_variant["file"]]
        guidance = latency_guidance(latency_ratio, latency_within_noise, cpu,
                                    str(output_dir / optimized["file"]), recipe.precision,
                                    num_threads=config.num_threads)
        report = {
            "model": {"source": config.model or "digits_cnn (trained here)",
                      "input_shape": list(input_shape), "params": int(float_model.count_params())},
            "data": {"name": data.name, "train_samples": len(data.x_train),
                     "test_samples": len(data.x_test), "seed": config.seed},
            "recipe": recipe.to_dict(),
            "headline": {
                "float_keras_accuracy": float_accuracy,
                "optimized_keras_accuracy": optimized_accuracy,
                "optimized_tflite_accuracy": optimized["accuracy"],
                "accuracy_drop_points": 100 * (float_accuracy - optimized["accuracy"]),
                "gzip_ratio_vs_float": optimized["gzip_bytes"] / float_variant["gzip_bytes"],
                "size_ratio_vs_float": optimized["size_bytes"] / float_variant["size_bytes"],
                "latency_ratio_vs_float": latency_ratio,
                "latency_ratio_within_noise": latency_within_noise,
                "int8_vs_float_latency_ratio": latency_ratio if recipe.precision == "int8" else None,
                "host_int8_dot_product": cpu.int8_dot_product,
            },
            "host_cpu": cpu.to_dict(),
            "latency_guidance": guidance.to_dict(),
            "variants": variants,
            "stages": [s.to_dict() for s in plan_result.stages],
            "weight_stats": plan_result.layer_stats,
            "runtime": {"interpreter": optimized["latency"]["interpreter"],
                        "op_resolver": optimized["latency"]["op_resolver"],
                        "num_threads": config.num_threads},
            "timings_s": timings,
            "versions": _versions(),
            "config": dataclasses.asdict(config),
        }
        report["model"]["outputs"] = "logits" if logits else "probabilities"
        report["model"]["loss"] = f"sparse categorical cross-entropy, from_logits={logits}"
        recipe.save(stage / "recipe.json", overwrite=True)
        write_report(report, stage)
    shutil.rmtree(work_dir, ignore_errors=True)  # the run finished: nothing left to resume
    return PipelineResult(output_dir=output_dir, report=report)
