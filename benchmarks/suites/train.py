"""Suite `train`: the collaborative-optimization chain on the digits CNN, end to end.

1. **The Bar.** The float digits CNN (``saved_models/digits_cnn.keras`` if present, else
   trained here) goes through ``Recipe.default()``: prune to 75% (polynomial), 16
   sparsity-preserving clusters, PCQAT; then full-int8 conversion. Test accuracy of the float
   Keras model vs the int8 ``.tflite``, and the gzip size of the int8 file vs the float32
   ``.tflite`` of the same float model.
2. **Preserved structure in the file.** Sparsity and unique values of the int8 weight tensors
   of the optimized layers, read back from the ``.tflite`` (not from Keras).
3. **Stage records** of the plan (epochs, seconds, metrics, sparsity, unique weights).
4. **Callback overhead.** Median epoch time of the float model's ``fit`` with
   ``training_callbacks`` + ``StageSummary`` over the same ``fit`` without, measured
   interleaved in one run (ratios, not absolute times, survive a shared machine).

Accuracy is on ``benchmarks.common.eval_data``: 3,240 augmented copies of the held-out
digits (1,080 with ``quick``), never a training image.

Summary keys (stable): float_keras_accuracy, int8_accuracy, gzip_ratio_vs_float, sparsity,
max_unique_weights, callback_overhead_ratio; plus accuracy_drop_points, float32_gzip_bytes,
int8_gzip_bytes, plan_seconds, tflite_max_unique_per_channel (unique int8 codes per output
channel of the optimized layers' weight tensors in the file).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import numpy as np

from benchmarks.common import eval_data, example_float_model, tflite_accuracy
from tflite_opt._keras import keras
from tflite_opt.files import atomic_write_bytes, atomic_write_json
from tflite_opt.runtime import gzip_size
from tflite_opt.train import (ClusterStage, OptimizationPlan, PruneStage, QATStage, Recipe,
                              StageSummary, training_callbacks)



def _convert(model, precision: str, calibration: np.ndarray) -> bytes:
    from tflite_opt.convert import convert

    return convert(model, precision, calibration, num_calibration_samples=len(calibration),
                   progress=False).tflite_bytes


def _tflite_weight_stats(tflite_bytes: bytes, layers: tuple[str, ...]) -> dict[str, dict]:
    """Per optimized layer: sparsity and unique values of its int8 weight tensor in the file.

    Conv kernels are quantized per output channel, so the 16 shared float values map to
    different int8 codes in each channel: the bound holds per channel
    (``max_unique_per_channel``), Dense kernels (per tensor) keep it over the whole tensor.
    """
    from tflite_opt.runtime import inspect_model

    out = {}
    for weight in inspect_model(tflite_bytes).weights:
        name = str(weight.get("layer", ""))
        name = name[len("quant_"):] if name.startswith("quant_") else name
        if name in layers and weight.get("role") == "weight" and name not in out:
            out[name] = {k: weight.get(k) for k in ("dtype", "num_elements", "sparsity",
                                                     "unique_values", "max_unique_per_channel")}
    return out


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times: list[float] = []
        self._t = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.times.append(time.perf_counter() - self._t)


def _callback_overhead(model, x, y, rounds: int) -> dict:
    """Median epoch time with our callbacks / without, interleaved, first (tracing) epoch dropped."""
    from tflite_opt.train.layers import deep_copy

    work = deep_copy(model)
    work.compile(keras.optimizers.Adam(1e-5), "sparse_categorical_crossentropy", ["accuracy"])
    with_cb, without = [], []
    for _ in range(rounds):
        for bucket, extra in ((without, []), (with_cb, [*training_callbacks(work), StageSummary()])):
            timer = _EpochTimer()
            work.fit(x, y, batch_size=32, epochs=2, verbose=0, callbacks=[timer, *extra])
            bucket.append(timer.times[-1])
    return {"with_callbacks_s": statistics.median(with_cb), "without_s": statistics.median(without),
            "ratio": statistics.median(with_cb) / statistics.median(without), "rounds": rounds}


def _plot(records, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r.name for r in records]
    fig, ax1 = plt.subplots(figsize=(6, 3.5))
    acc = [r.metrics.get("accuracy", float("nan")) for r in records]
    ax1.bar(names, acc, color="#4c72b0", label="train accuracy (last epoch)")
    ax1.set_ylim(0, 1.05)
    ax1.set_ylabel("accuracy")
    ax2 = ax1.twinx()
    ax2.plot(names, [r.sparsity for r in records], "o-", color="#dd8452", label="sparsity")
    ax2.set_ylim(0, 1.05)
    ax2.set_ylabel("sparsity of optimized layers")
    for i, r in enumerate(records):
        # a channel-pruning stage removes weights instead of zeroing them: say how many
        label = (f"params {r.channel_pruning['params_ratio']:.2f}x" if r.channel_pruning
                 else f"{r.max_unique_weights} unique")
        ax2.annotate(label, (i, r.sparsity), textcoords="offset points",
                     xytext=(0, 8), ha="center", fontsize=8)
    ax1.set_title("Optimization plan stages (digits CNN)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run(output_dir: Path, quick: bool = False) -> dict:
    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(0)
    data = eval_data(quick)
    model, model_source = example_float_model(data, quick)
    calibration = data.x_train[:100]
    float_acc = float(np.mean(np.argmax(model.predict(data.x_test, verbose=0), -1) == data.y_test))
    float32 = _convert(model, "float32", calibration)
    float32_acc = tflite_accuracy(float32, data.x_test, data.y_test)

    recipe = Recipe.default()
    if quick:
        recipe = Recipe(stages=(PruneStage(epochs=2), ClusterStage(epochs=1),
                                QATStage(epochs=1, scheme="pcqat")))
    plan_start = time.perf_counter()
    result = OptimizationPlan(recipe).run(model, (data.x_train, data.y_train), optimizer="adam",
                                          batch_size=32, verbose=0)
    plan_seconds = time.perf_counter() - plan_start
    int8 = _convert(result.model, "int8", calibration)
    int8_acc = tflite_accuracy(int8, data.x_test, data.y_test)
    atomic_write_bytes(output_dir / "train_float32.tflite", float32)
    atomic_write_bytes(output_dir / "train_int8_pcqat.tflite", int8)
    atomic_write_json(output_dir / "train_recipe.json", recipe.to_dict())
    gzip_float, gzip_int8 = gzip_size(float32), gzip_size(int8)
    file_stats = _tflite_weight_stats(int8, result.optimized_layers)
    overhead = _callback_overhead(model, data.x_train, data.y_train, rounds=2 if quick else 4)
    _plot(result.stages, output_dir / "train_stages.png")

    in_file_unique = [v["max_unique_per_channel"] or v["unique_values"] for v in file_stats.values()]
    summary = {
        "float_keras_accuracy": round(float_acc, 4),
        "int8_accuracy": round(int8_acc, 4),
        "gzip_ratio_vs_float": round(gzip_int8 / gzip_float, 4),
        "sparsity": round(result.sparsity, 4),
        "max_unique_weights": int(result.max_unique_weights),
        "callback_overhead_ratio": round(overhead["ratio"], 3),
        "accuracy_drop_points": round(100 * (float_acc - int8_acc), 2),
        "float32_gzip_bytes": gzip_float,
        "int8_gzip_bytes": gzip_int8,
        "plan_seconds": round(plan_seconds, 1),
        "tflite_max_unique_per_channel": max(in_file_unique) if in_file_unique else None,
    }
    stage_rows = [[r.name, r.epochs, round(r.seconds, 1), round(r.metrics.get("loss", 0.0), 4),
                   round(r.metrics.get("accuracy", 0.0), 4), round(r.sparsity, 4),
                   r.max_unique_weights] for r in result.stages]
    layer_rows = []
    for name, stats in result.layer_stats.items():
        in_file = file_stats.get(name, {})
        layer_rows.append([name, name in result.optimized_layers, stats["size"],
                           round(stats["sparsity"], 4), stats["unique_values"],
                           in_file.get("sparsity") if in_file else "",
                           in_file.get("unique_values") if in_file else "",
                           in_file.get("max_unique_per_channel") if in_file else ""])
    return {
        "summary": summary,
        "tables": [
            {"title": f"Float vs prune -> cluster -> PCQAT -> int8 (digits CNN, {len(data.y_test)} "
                      "augmented held-out images)",
             "columns": ["model", "size_bytes", "gzip_bytes", "test_accuracy"],
             "rows": [["float32 .tflite", len(float32), gzip_float, round(float32_acc, 4)],
                      ["int8 .tflite (PCQAT)", len(int8), gzip_int8, round(int8_acc, 4)],
                      ["float Keras", "", "", round(float_acc, 4)]]},
            {"title": "Plan stages",
             "columns": ["stage", "epochs", "seconds", "loss", "accuracy", "sparsity",
                         "max_unique_weights"],
             "rows": stage_rows},
            {"title": "Kernels per layer (Keras QAT model, and int8 tensor in the .tflite)",
             "columns": ["layer", "optimized", "size", "sparsity", "unique_values",
                         "tflite_sparsity", "tflite_unique_values",
                         "tflite_max_unique_per_channel"],
             "rows": layer_rows},
        ],
        "details": {"model_source": model_source, "quick": quick, "recipe": recipe.to_dict(),
                    "plan": result.to_dict(), "float32_tflite_accuracy": float32_acc,
                    "int8_file_weights": file_stats, "callback_overhead": overhead,
                    "suite_seconds": round(time.perf_counter() - start, 1),
                    "plot": "train_stages.png"},
    }
