"""Suite `keras3`: one recipe on a tf_keras and a Keras 3 model, and MobileNetV2 in Keras 3.

1. **The two Kerases side by side.** The digits CNN is built twice by
   ``models.builders.digits_cnn``, with tf_keras and with Keras 3 (``flavor=``), trained
   from the same seed for the same epochs, then taken through the same ``Recipe.default()``
   (prune to 75% -> 16 sparsity-preserving clusters -> PCQAT) by ``OptimizationPlan`` and
   converted to full int8 without calibration data. The tf_keras path runs on tfmot, the
   Keras 3 path on ``tflite_opt.train.keras3``. Bar: Keras 3 int8 accuracy within 1 point of
   tf_keras's, gzip size within 10%.
2. **MobileNetV2 (Keras 3).** ``keras.applications.MobileNetV2(weights=None, alpha=0.35,
   input_shape=(96, 96, 3), classes=10)`` through prune -> cluster -> PCQAT -> int8 on a
   small slice of the digits (96x96, grey repeated to RGB), one epoch per stage: this checks
   the file, not the accuracy: int8 input/output, float compute ops left (0 is the bar),
   sparsity and values per channel of the optimized kernels in the file, and the runtime
   checks (flatbuffer verification, an accuracy pass, a short benchmark).

Accuracy is on ``benchmarks.common.eval_data`` (3,240 augmented held-out digits; 1,080 with
``quick``).

Summary keys (stable): keras3_int8_accuracy, tf_keras_int8_accuracy, keras3_gzip_bytes,
tf_keras_gzip_bytes, float_ops_in_int8_file, mobilenet_max_unique_per_channel; plus
accuracy_gap_points (tf_keras - Keras 3), gzip_ratio_keras3_vs_tf_keras,
{keras3,tf_keras}_float_keras_accuracy, {keras3,tf_keras}_plan_seconds, mobilenet_sparsity,
mobilenet_runtime_checks.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np

from benchmarks.common import eval_data, tflite_accuracy
from tflite_opt.files import atomic_write_bytes
from tflite_opt.runtime import gzip_size
from tflite_opt.train import ClusterStage, OptimizationPlan, PruneStage, QATStage, Recipe

SEED = 0


def _recipe(quick: bool) -> Recipe:
    if quick:
        return Recipe(stages=(PruneStage(epochs=2), ClusterStage(epochs=1),
                              QATStage(epochs=1, scheme="pcqat")))
    return Recipe.default()


def _float_digits_cnn(flavor: str, data, epochs: int):
    """The digits CNN of ``flavor`` (``tf_keras`` or ``keras3``), trained from seed 0."""
    from tflite_opt._keras import keras_of_flavor
    from tflite_opt.models.builders import digits_cnn

    keras_of_flavor(flavor).utils.set_random_seed(SEED)
    model = digits_cnn(input_shape=data.input_shape, flavor=flavor)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    return model


def _int8(model) -> bytes:
    from tflite_opt.convert import convert

    result = convert(model, "int8", progress=False)
    if not result.quantization_aware:
        raise RuntimeError(f"{model.name}: the converter did not see a QAT model")
    return result.tflite_bytes


def _float_nodes(tflite_bytes: bytes) -> list[str]:
    """Ops that read or write a float32 tensor (float compute, DEQUANTIZE, QUANTIZE)."""
    from tflite_opt.runtime import inspect_model

    info = inspect_model(tflite_bytes)
    return [node["op"] for node in info.nodes
            if any(info.tensors[i]["dtype"] == "float32"
                   for i in (*node["inputs"], *node["outputs"]) if i >= 0)]


def _kernels_in_file(tflite_bytes: bytes, layers: tuple[str, ...]) -> dict[str, dict]:
    """Per optimized layer, its int8 weight tensor in the file (sparsity, values per channel).

    Keras 3 names the converter's tensors ``<model>/<layer>_<n>/<op>``, hence the suffix.
    """
    from tflite_opt.runtime import inspect_model

    out: dict[str, dict] = {}
    weights = [w for w in inspect_model(tflite_bytes).weights
               if w.get("role") == "weight" and w.get("dtype") == "int8"]
    for layer in layers:
        pattern = re.compile(rf"/{re.escape(layer)}(_\d+)?/")
        match = next((w for w in weights if pattern.search(w["name"])), None)
        if match is not None:
            out[layer] = {k: match.get(k) for k in ("num_elements", "sparsity", "unique_values",
                                                    "max_unique_per_channel")}
    return out


def _digits_path(flavor: str, data, recipe: Recipe, epochs: int, output_dir: Path) -> dict:
    float_model = _float_digits_cnn(flavor, data, epochs)
    predictions = float_model.predict(data.x_test, verbose=0)
    float_accuracy = float(np.mean(np.argmax(predictions, -1) == data.y_test))
    start = time.perf_counter()
    result = OptimizationPlan(recipe).run(float_model, (data.x_train, data.y_train),
                                          optimizer="adam", batch_size=32, verbose=0)
    plan_seconds = time.perf_counter() - start
    int8 = _int8(result.model)
    atomic_write_bytes(output_dir / f"keras3_suite_{flavor}_int8.tflite", int8)
    return {"float_keras_accuracy": float_accuracy,
            "int8_accuracy": tflite_accuracy(int8, data.x_test, data.y_test),
            "gzip_bytes": gzip_size(int8), "size_bytes": len(int8),
            "plan_seconds": plan_seconds, "sparsity": result.sparsity,
            "max_unique_weights": result.max_unique_weights,
            "float_nodes": _float_nodes(int8),
            "stages": [[r.name, r.epochs, round(r.seconds, 1),
                        round(r.metrics.get("accuracy", 0), 4), round(r.sparsity, 4),
                        r.max_unique_weights] for r in result.stages]}


def _mobilenet(quick: bool, output_dir: Path) -> dict:
    import keras

    from tflite_opt.data.digits import load_digits
    from tflite_opt.runtime import benchmark, evaluate_tflite, inspect_model, verify_tflite

    digits = load_digits(image_size=96, seed=SEED)
    count = 64 if quick else 256
    x_train = np.repeat(digits.x_train[:count], 3, axis=-1)
    y_train = digits.y_train[:count]
    x_test, y_test = np.repeat(digits.x_test, 3, axis=-1), digits.y_test
    keras.utils.set_random_seed(SEED)
    model = keras.applications.MobileNetV2(weights=None, alpha=0.35, input_shape=(96, 96, 3),
                                           classes=10)
    recipe = Recipe(stages=(PruneStage(epochs=1), ClusterStage(epochs=1),
                            QATStage(epochs=1, scheme="pcqat")))
    start = time.perf_counter()
    # One short epoch per stage: eager steps cost less than tracing MobileNetV2's QAT graph.
    result = OptimizationPlan(recipe).run(model, (x_train, y_train), optimizer="adam",
                                          batch_size=32, verbose=0, run_eagerly=True)
    plan_seconds = time.perf_counter() - start
    int8 = _int8(result.model)
    atomic_write_bytes(output_dir / "keras3_suite_mobilenet_v2_int8.tflite", int8)
    info = inspect_model(int8)
    kernels = _kernels_in_file(int8, result.optimized_layers)
    checks = {}
    verify_tflite(int8, name="MobileNetV2 int8")
    checks["verify"] = "ok"
    checks["accuracy_on_test"] = float(evaluate_tflite(int8, x_test, y_test).accuracy)
    checks["median_us"] = float(benchmark(int8, num_runs=10, warmup_runs=2).median_us)
    zeros = sum(k["sparsity"] * k["num_elements"] for k in kernels.values())
    elements = sum(k["num_elements"] for k in kernels.values())
    return {"plan_seconds": plan_seconds, "op_counts": info.op_counts,
            "input_dtype": info.inputs[0]["dtype"], "output_dtype": info.outputs[0]["dtype"],
            "float_nodes": _float_nodes(int8), "optimized_layers": len(result.optimized_layers),
            "layers_found_in_file": len(kernels),
            "keras_sparsity": result.sparsity,
            "keras_max_unique_weights": result.max_unique_weights,
            "file_sparsity": zeros / elements if elements else None,
            "file_max_unique_per_channel": max(
                (k["max_unique_per_channel"] or k["unique_values"] for k in kernels.values()),
                default=None),
            "runtime_checks": checks, "size_bytes": len(int8), "gzip_bytes": gzip_size(int8)}


def run(output_dir: Path, quick: bool = False) -> dict:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data = eval_data(quick)
    recipe = _recipe(quick)
    epochs = 6 if quick else 20
    paths = {flavor: _digits_path(flavor, data, recipe, epochs, output_dir)
             for flavor in ("tf_keras", "keras3")}
    mobile = _mobilenet(quick, output_dir)
    k3, k2 = paths["keras3"], paths["tf_keras"]
    summary = {
        "keras3_int8_accuracy": round(k3["int8_accuracy"], 4),
        "tf_keras_int8_accuracy": round(k2["int8_accuracy"], 4),
        "keras3_gzip_bytes": k3["gzip_bytes"],
        "tf_keras_gzip_bytes": k2["gzip_bytes"],
        "float_ops_in_int8_file": len(mobile["float_nodes"]),
        "mobilenet_max_unique_per_channel": mobile["file_max_unique_per_channel"],
        "accuracy_gap_points": round(100 * (k2["int8_accuracy"] - k3["int8_accuracy"]), 2),
        "gzip_ratio_keras3_vs_tf_keras": round(k3["gzip_bytes"] / k2["gzip_bytes"], 4),
        "keras3_float_keras_accuracy": round(k3["float_keras_accuracy"], 4),
        "tf_keras_float_keras_accuracy": round(k2["float_keras_accuracy"], 4),
        "keras3_plan_seconds": round(k3["plan_seconds"], 1),
        "tf_keras_plan_seconds": round(k2["plan_seconds"], 1),
        "mobilenet_sparsity": (None if mobile["file_sparsity"] is None
                               else round(mobile["file_sparsity"], 4)),
        # verify_tflite, evaluate_tflite and benchmark raise on a failure, so reaching this
        # line means all three ran on the MobileNetV2 int8 file.
        "mobilenet_runtime_checks": "passed",
    }
    rows = [[flavor, round(p["float_keras_accuracy"], 4), round(p["int8_accuracy"], 4),
             p["size_bytes"], p["gzip_bytes"], round(p["sparsity"], 4), p["max_unique_weights"],
             len(p["float_nodes"]), round(p["plan_seconds"], 1)] for flavor, p in paths.items()]
    stage_rows = [[flavor, *stage] for flavor, p in paths.items() for stage in p["stages"]]
    mobile_row = [[mobile["input_dtype"], mobile["output_dtype"], len(mobile["float_nodes"]),
                   ", ".join(f"{k} {v}" for k, v in sorted(mobile["op_counts"].items())),
                   mobile["file_sparsity"], mobile["file_max_unique_per_channel"],
                   f"{mobile['layers_found_in_file']}/{mobile['optimized_layers']}",
                   round(mobile["runtime_checks"]["accuracy_on_test"], 4),
                   round(mobile["runtime_checks"]["median_us"])]]
    return {
        "summary": summary,
        "tables": [
            {"title": f"Same recipe ({' -> '.join(s.type for s in recipe.stages)} -> int8), "
                      f"same seed and {epochs} float epochs, on both Kerases "
                      f"({len(data.y_test)} augmented held-out digits)",
             "columns": ["keras", "float Keras acc", "int8 .tflite acc", "bytes", "gzip bytes",
                         "sparsity", "max unique", "float ops in file", "plan s"],
             "rows": rows},
            {"title": "Plan stages",
             "columns": ["keras", "stage", "epochs", "seconds", "accuracy", "sparsity",
                         "max unique"],
             "rows": stage_rows},
            {"title": "MobileNetV2 (Keras 3, alpha 0.35, 96x96, random init) prune -> cluster "
                      "-> PCQAT -> int8, one short epoch per stage",
             "columns": ["input", "output", "float ops", "ops", "file sparsity",
                         "max unique per channel", "layers checked", "accuracy (untrained)",
                         "median µs"],
             "rows": mobile_row,
             "note": "The MobileNetV2 run checks the file (int8 compute only, structure kept, "
                     "runtime passes), not accuracy: three short epochs on 256 images."},
        ],
        "details": {"recipe": recipe.to_dict(), "digits": paths, "mobilenet_v2": mobile,
                    "quick": quick},
    }
