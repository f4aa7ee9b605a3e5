"""Suite `convert`: the five precisions, and accuracy-aware int8 where plain PTQ fails.

1. **Precisions.** The digits CNN (``saved_models/digits_cnn.keras`` if present,
   else trained here) converted to float32, float16, dynamic, int8 and int16x8:
   size, gzip size, test accuracy, conversion time and latency.
2. **Accuracy-aware int8.** Plain int8 PTQ is fine on that CNN, so the suite
   builds a model on which it is not, honestly and reproducibly: the same CNN
   with the two most active units of ``dense1`` scaled by 100 and the matching input rows of
   ``classifier`` scaled by 1/100. ReLU is positively homogeneous, so the float
   model computes exactly the same function (checked below), but ``dense1``'s
   activations now have a few outlier channels. Per-tensor int8 activation
   quantization spends its 256 levels on them and rounds the other units to
   zero. This channel-range imbalance is what real networks show after BN
   folding (the reason cross-layer equalization exists); here it is made
   deliberately large. Accuracy-aware int8 picks the float layers on a
   validation split of the *training* data and is scored on the test set.
3. **Sparsity.** The CNN magnitude-pruned to 75% (no fine-tuning; the point is
   the file encoding): size with and without ``EXPERIMENTAL_SPARSITY``.
4. **Calibration count.** int8 test accuracy for 10 to 500 calibration samples.

"Test" accuracy is on ``benchmarks.common.eval_data``: 3,240 augmented copies of the
held-out digits (1,080 with ``quick``), never a training image.

Summary keys (stable): ptq_int8_drop, accuracy_aware_drop, max_accuracy_drop,
float_layer_fraction (test-set drops, as fractions), plus the details below.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks.common import eval_data, example_float_model, tflite_accuracy
from tflite_opt._keras import keras
from tflite_opt.convert import Precision, convert, convert_accuracy_aware
from tflite_opt.files import atomic_write_bytes
from tflite_opt.models.builders import with_activation_outliers
from tflite_opt.runtime import gzip_size

MAX_ACCURACY_DROP = 0.01
OUTLIER_UNITS = 2
OUTLIER_FACTOR = 100.0


def _latency_us(tflite_bytes: bytes, runs: int) -> float:
    from tflite_opt.runtime import benchmark

    return float(benchmark(tflite_bytes, num_runs=runs, warmup_runs=5).median_us)


def run(output_dir: Path, quick: bool = False) -> dict:
    start = time.perf_counter()
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data = eval_data(quick)
    runs = 30 if quick else 200
    model, model_source = example_float_model(data, quick)
    calibration = data.x_train[:200]
    keras_acc = float(np.mean(np.argmax(model.predict(data.x_test, verbose=0), -1) == data.y_test))

    # 1. Precisions.
    precision_rows, precisions = [], {}
    for precision in Precision:
        result = convert(model, precision, calibration, num_calibration_samples=200, progress=False)
        acc = tflite_accuracy(result.tflite_bytes, data.x_test, data.y_test)
        precisions[precision.value] = {**result.to_dict(), "accuracy": acc,
                                       "gzip_bytes": gzip_size(result.tflite_bytes),
                                       "median_us": _latency_us(result.tflite_bytes, runs)}
        p = precisions[precision.value]
        precision_rows.append([precision.value, p["size_bytes"], p["gzip_bytes"], round(100 * acc, 2),
                               round(100 * (keras_acc - acc), 2), f"{p['input_type']}/{p['output_type']}",
                               round(p["conversion_time_s"], 2), round(p["median_us"], 1)])

    # 2. Accuracy-aware int8 on the outlier model.
    outlier = with_activation_outliers(model, "dense1", "classifier", calibration,
                                       num_units=OUTLIER_UNITS, factor=OUTLIER_FACTOR)
    float_gap = float(np.max(np.abs(outlier.predict(data.x_test, verbose=0) -
                                    model.predict(data.x_test, verbose=0))))
    n_val = len(data.x_train) // 5
    x_val, y_val = data.x_train[-n_val:], data.y_train[-n_val:]
    aware = convert_accuracy_aware(outlier, calibration, (x_val, y_val),
                                   max_accuracy_drop=MAX_ACCURACY_DROP, progress=False)
    float32 = convert(outlier, "float32")
    plain = convert(outlier, "int8", calibration, num_calibration_samples=200, progress=False)
    int16x8 = convert(outlier, "int16x8", calibration, num_calibration_samples=200, progress=False)
    dynamic = convert(outlier, "dynamic")
    test = {name: tflite_accuracy(b, data.x_test, data.y_test) for name, b in (
        ("float32", float32.tflite_bytes), ("int8 PTQ", plain.tflite_bytes),
        ("accuracy-aware int8", aware.conversion.tflite_bytes), ("int16x8", int16x8.tflite_bytes),
        ("dynamic", dynamic.tflite_bytes))}
    sizes = {"float32": float32.size_bytes, "int8 PTQ": plain.size_bytes,
             "accuracy-aware int8": aware.size_bytes, "int16x8": int16x8.size_bytes,
             "dynamic": dynamic.size_bytes}
    lat = {"float32": _latency_us(float32.tflite_bytes, runs),
           "int8 PTQ": _latency_us(plain.tflite_bytes, runs),
           "accuracy-aware int8": _latency_us(aware.conversion.tflite_bytes, runs),
           "int16x8": _latency_us(int16x8.tflite_bytes, runs),
           "dynamic": _latency_us(dynamic.tflite_bytes, runs)}
    outlier_rows = [[name, sizes[name], round(100 * test[name], 2),
                     round(100 * (test["float32"] - test[name]), 2), round(lat[name], 1)]
                    for name in test]
    atomic_write_bytes(output_dir / "convert_outlier_int8_accuracy_aware.tflite",
                       aware.conversion.tflite_bytes)
    aware.report.plot(output_dir / "convert_quant_report.png",
                      title="int8 error per layer, outlier digits CNN")
    trial_rows = [[i + 1, t.step, len(t.float_nodes), ", ".join(t.float_nodes),
                   round(100 * t.accuracy, 2), t.size_bytes] for i, t in enumerate(aware.trials)]

    # 3. Sparsity-aware conversion of a magnitude-pruned copy.
    pruned = keras.models.clone_model(model)
    weights = []
    for w in model.get_weights():
        if w.ndim >= 2:
            w = np.where(np.abs(w) >= np.quantile(np.abs(w), 0.75), w, 0).astype(w.dtype)
        weights.append(w)
    pruned.set_weights(weights)
    sparsity_rows = []
    for precision in ("float32", "int8"):
        dense = convert(pruned, precision, calibration, sparsity=False, progress=False)
        sparse = convert(pruned, precision, calibration, sparsity=True, progress=False)
        sparsity_rows.append([precision, dense.size_bytes, sparse.size_bytes,
                              round(sparse.size_bytes / dense.size_bytes, 3),
                              gzip_size(dense.tflite_bytes), gzip_size(sparse.tflite_bytes),
                              round(_latency_us(dense.tflite_bytes, runs), 1),
                              round(_latency_us(sparse.tflite_bytes, runs), 1),
                              round(100 * tflite_accuracy(dense.tflite_bytes, data.x_test, data.y_test), 2),
                              round(100 * tflite_accuracy(sparse.tflite_bytes, data.x_test, data.y_test), 2)])

    # 4. Calibration sample count.
    calib_rows = []
    for n in ((10, 100) if quick else (10, 50, 100, 500)):
        r = convert(model, "int8", data.x_train, num_calibration_samples=n, progress=False)
        calib_rows.append([n, round(100 * tflite_accuracy(r.tflite_bytes, data.x_test, data.y_test), 2),
                           round(r.conversion_time_s, 2)])

    ptq_drop = test["float32"] - test["int8 PTQ"]
    aware_drop = test["float32"] - test["accuracy-aware int8"]
    summary = {
        "ptq_int8_drop": round(ptq_drop, 4),
        "accuracy_aware_drop": round(aware_drop, 4),
        "max_accuracy_drop": MAX_ACCURACY_DROP,
        "float_layer_fraction": round(aware.float_layer_fraction, 4),
        "float_layers": ", ".join(aware.float_layers),
        "num_quantized_layers": aware.num_layers,
        "accuracy_aware_met_bound_on_validation": aware.met_bound,
        "accuracy_aware_size_cost_bytes": aware.size_cost_bytes,
        "accuracy_aware_latency_cost_us": round(lat["accuracy-aware int8"] - lat["int8 PTQ"], 2),
        "accuracy_aware_search_s": round(aware.search_time_s, 2),
        "int8_clean_model_drop": round(keras_acc - precisions["int8"]["accuracy"], 4),
        "wall_s": round(time.perf_counter() - start, 1),
    }
    tables = [
        {"title": f"Five precisions, digits CNN ({model_source}, Keras test accuracy "
                  f"{100 * keras_acc:.2f}%, 1 thread)",
         "columns": ["precision", "bytes", "gzip bytes", "test accuracy %", "drop (points)",
                     "input/output", "conversion s", "median µs"], "rows": precision_rows},
        {"title": "Outlier digits CNN: plain PTQ vs accuracy-aware int8 (test set)",
         "columns": ["variant", "bytes", "test accuracy %", "drop (points)", "median µs"],
         "rows": outlier_rows,
         "note": f"The example model was trained on all training images, so validation "
                 f"accuracies in the search are optimistic; the test set was not used to choose. "
                 f"Float outputs of the outlier model differ from the original by at most "
                 f"{float_gap:.2g}. Float layers chosen on a validation split of the training "
                 f"data (bound {100 * MAX_ACCURACY_DROP:.1f} point): {', '.join(aware.float_layers)} "
                 f"= {len(aware.float_layers)}/{aware.num_layers} quantized layers."},
        {"title": "Accuracy-aware search steps (validation accuracy)",
         "columns": ["#", "step", "float layers", "which", "val accuracy %", "bytes"],
         "rows": trial_rows},
        {**aware.report.table(), "title": "Per-layer int8 error, outlier digits CNN "
                                          "(plot: convert_quant_report.png)"},
        {"title": "Sparsity-aware conversion, CNN pruned to 75% by magnitude (no fine-tuning)",
         "columns": ["precision", "dense bytes", "sparse bytes", "ratio", "dense gzip",
                     "sparse gzip", "dense median µs", "sparse median µs", "dense accuracy %",
                     "sparse accuracy %"], "rows": sparsity_rows,
         "note": "Sparse int8 fully connected layers are not supported by XNNPACK, so that "
                 "model runs on the builtin kernels; this is why sparsity='auto' only encodes "
                 "float models. Accuracy is low because the pruning had no fine-tuning; "
                 "dense and sparse files compute the same function."},
        {"title": "int8 test accuracy vs calibration samples (clean CNN)",
         "columns": ["samples", "test accuracy %", "conversion s"], "rows": calib_rows},
    ]
    details = {"precisions": precisions, "accuracy_aware": aware.to_dict(),
               "outlier_test_accuracy": test, "outlier_float_max_abs_diff": float_gap,
               "model_source": model_source, "keras_test_accuracy": keras_acc}
    return {"summary": summary, "tables": tables, "details": details}
