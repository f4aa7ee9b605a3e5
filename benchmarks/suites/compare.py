"""Suite `compare`: tflite_opt's recipes against what a user gets by hand, in one run.

Models: the digits CNN, a Dense-heavy MLP (both trained on 32x32 digits) and
MobileNetV2 (alpha 0.35, 96x96, random weights: latency and size only, since
nothing may download ImageNet weights here). Variants: float32, hand-written PTQ
dynamic-range and int8, hand-written tfmot QAT (benchmarks/baselines.py), and
tflite_opt's prune+QAT, prune+cluster+PCQAT and accuracy-aware int8. Latency is
measured interleaved across the variants of a model, at 1 and 2 threads.

"Best" per side = the smallest gzip size among its variants whose test accuracy
is within 1.0 point of the float Keras model (the accuracy bar of the issues).

Summary keys (stable): baseline_best_gzip_bytes, baseline_best_accuracy,
ours_best_gzip_bytes, ours_best_accuracy, ours_vs_baseline_gzip_ratio, wall_s.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from benchmarks import baselines
from benchmarks.common import example_float_model
from tflite_opt._keras import keras
from tflite_opt.data.digits import load_digits
from tflite_opt.files import atomic_write_bytes
from tflite_opt.models.builders import dense_mlp, digits_cnn, mobilenet_v2

ACCURACY_BAR_POINTS = 1.0


def _train_dense(data, epochs: int):
    keras.utils.set_random_seed(0)
    model = dense_mlp(input_shape=data.input_shape, hidden=(512, 256))
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, verbose=0)
    return model


def _timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def _our_variants(model, data, quick: bool) -> list[tuple[str, bytes, float, float | None]]:
    """(name, tflite bytes, conversion seconds, training seconds per epoch) of tflite_opt's recipes."""
    from tflite_opt.convert import convert, convert_accuracy_aware
    from tflite_opt.train import OptimizationPlan, Recipe

    # Accuracy-aware int8 is tuned on a validation split of the training data, never on test.
    n_val = len(data.x_train) // 5
    x_fit, y_fit = data.x_train[:-n_val], data.y_train[:-n_val]
    x_val, y_val = data.x_train[-n_val:], data.y_train[-n_val:]
    calibration = data.x_train[:200]
    default = Recipe.default().to_dict()
    prune_qat = {**default, "stages": [s for s in default["stages"] if s["type"] != "cluster"]}
    for stage in prune_qat["stages"]:
        if stage["type"] == "qat":
            stage["scheme"] = "pqat"
    recipes = {"prune+PQAT (tflite_opt)": prune_qat, "prune+cluster+PCQAT (tflite_opt)": default}
    out = []
    for name, recipe_dict in recipes.items():
        if quick:
            for stage in recipe_dict["stages"]:
                stage["epochs"] = 1
        recipe = Recipe.from_dict(recipe_dict)
        result = OptimizationPlan(recipe).run(
            model, train_data=(x_fit, y_fit), validation_data=None,
            loss="sparse_categorical_crossentropy", metrics=["accuracy"], optimizer="adam",
            batch_size=32, verbose=0)
        epochs = sum(s.epochs for s in result.stages)
        per_epoch = sum(s.seconds for s in result.stages) / max(epochs, 1)
        conversion, seconds = _timed(convert, result.model, "int8", representative_data=calibration)
        out.append((name, conversion.tflite_bytes, seconds, per_epoch))
    aware, seconds = _timed(convert_accuracy_aware, model, representative_data=calibration,
                            eval_data=(x_val, y_val), max_accuracy_drop=0.01 * ACCURACY_BAR_POINTS,
                            progress=False)
    out.append(("accuracy-aware int8 (tflite_opt)", aware.conversion.tflite_bytes, seconds, None))
    return out


def _hand_variants(model, data, quick: bool) -> list[tuple[str, bytes, float, float | None]]:
    calibration = data.x_train[:200]
    out = []
    for name, fn, args in (("float32", baselines.hand_float32, ()),
                           ("PTQ dynamic (hand)", baselines.hand_dynamic_range, ()),
                           ("PTQ int8 (hand)", baselines.hand_int8, (calibration,))):
        tflite, seconds = _timed(fn, model, *args)
        out.append((name, tflite, seconds, None))
    if data.y_train is not None:
        epochs = 1 if quick else 3
        start = time.perf_counter()
        tflite, _ = baselines.hand_qat(model, data.x_train, data.y_train, epochs=epochs)
        out.append(("tfmot QAT (hand)", tflite, time.perf_counter() - start, None))
    return out


_PEAK_RSS_CHILD = """
import sys
import numpy as np
from ai_edge_litert.interpreter import Interpreter, OpResolverType

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

base = hwm()
try:
    interpreter = Interpreter(model_path=sys.argv[1], num_threads=1)
    interpreter.allocate_tensors()
except RuntimeError:  # XNNPACK refused it: builtin kernels, as tflite_opt.runtime does
    interpreter = Interpreter(model_path=sys.argv[1], num_threads=1,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
for detail in interpreter.get_input_details():
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
for _ in range(10):
    interpreter.invoke()
print(base, hwm())
"""


def _isolated_peak_memory(path: Path) -> tuple[int, int]:
    """(peak RSS, peak RSS above the bare interpreter process) of one model, in bytes.

    Measured in a child that imports only LiteRT: in this process TensorFlow's own
    ~1 GB would swamp the few MB a small model adds, and the peak cannot be reset.
    """
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PEAK_RSS_CHILD, str(path)], capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    base, peak = int(out[-2]), int(out[-1])
    return peak, peak - base


def _measure(model_name, model, data, variants, folder: Path, quick: bool) -> list[dict]:
    from tflite_opt.runtime import compare, evaluate_tflite

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, tflite, _, _ in variants:
        slug = name.split(" (")[0].replace(" ", "_").replace("+", "_").lower()
        suffix = "ours" if "tflite_opt" in name else "hand"
        paths.append(atomic_write_bytes(folder / f"{model_name}_{slug}_{suffix}.tflite", tflite))
    runs = 20 if quick else 100
    latency = {threads: compare(paths, num_runs=runs, num_threads=threads).results for threads in (1, 2)}
    memory = [_isolated_peak_memory(path) for path in paths]
    float_accuracy = reference = None
    if data is not None:
        reference = model.predict(data.x_test, batch_size=256, verbose=0)
        float_accuracy = float(np.mean(np.argmax(reference, -1) == data.y_test))
    rows = []
    for i, (name, tflite, conversion_s, train_epoch_s) in enumerate(variants):
        row = {"model": model_name, "variant": name, "ours": "tflite_opt" in name,
               "file": paths[i].name, "size_bytes": len(tflite),
               "gzip_bytes": latency[1][i].gzip_bytes, "conversion_s": conversion_s,
               "train_s_per_epoch": train_epoch_s, "float_keras_accuracy": float_accuracy,
               "accuracy": None, "agreement": None,
               "median_us_1t": latency[1][i].stats.median_us, "p90_us_1t": latency[1][i].stats.p90_us,
               "median_us_2t": latency[2][i].stats.median_us, "p90_us_2t": latency[2][i].stats.p90_us,
               "peak_rss_mib": memory[i][0] / 2**20, "model_rss_mib": memory[i][1] / 2**20}
        if data is not None:
            acc = evaluate_tflite(paths[i], data.x_test, data.y_test, reference_outputs=reference)
            row["accuracy"], row["agreement"] = acc.accuracy, acc.agreement
        rows.append(row)
    return rows


def _best(rows: list[dict], ours: bool) -> dict | None:
    eligible = [r for r in rows if r["ours"] == ours and r["accuracy"] is not None
                and 100 * (r["float_keras_accuracy"] - r["accuracy"]) <= ACCURACY_BAR_POINTS]
    if not ours:
        eligible = [r for r in eligible if r["variant"] != "float32"] or eligible
    return min(eligible, key=lambda r: r["gzip_bytes"]) if eligible else None


def _pareto_plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows if r["accuracy"] is not None})
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 4.5), squeeze=False)
    for ax, model in zip(axes[0], models):
        points = [r for r in rows if r["model"] == model]
        for r in points:
            ax.scatter(r["gzip_bytes"] / 1024, 100 * r["accuracy"], s=30 + r["median_us_1t"] / 20,
                       marker="o" if r["ours"] else "s", color="tab:blue" if r["ours"] else "tab:gray")
            ax.annotate(r["variant"].replace(" (tflite_opt)", "*").replace(" (hand)", ""),
                        (r["gzip_bytes"] / 1024, 100 * r["accuracy"]), fontsize=7,
                        xytext=(4, 3), textcoords="offset points")
        front, best = [], -1.0
        for r in sorted(points, key=lambda r: r["gzip_bytes"]):
            if r["accuracy"] > best:
                front.append(r)
                best = r["accuracy"]
        ax.plot([r["gzip_bytes"] / 1024 for r in front], [100 * r["accuracy"] for r in front],
                "--", color="tab:green", linewidth=1, label="Pareto front")
        ax.set_xscale("log")
        ax.set_xlabel("gzip size (KiB, log)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"{model}: circles = tflite_opt (*), squares = by hand; area ~ latency")
        ax.title.set_fontsize(9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _scaling(folder: Path, quick: bool) -> list[list]:
    """Conversion and benchmark time of the same CNN at three widths."""
    from tflite_opt.convert import convert
    from tflite_opt.runtime import benchmark

    rng = np.random.default_rng(0)
    calibration = rng.random((100, 32, 32, 1), dtype=np.float32)
    rows = []
    for width in (8, 16, 32):
        keras.utils.set_random_seed(0)
        model = digits_cnn(width=width, dense_units=4 * width)
        conversion, conversion_s = _timed(convert, model, "int8", representative_data=calibration)
        path = atomic_write_bytes(folder / f"scaling_w{width}.tflite", conversion.tflite_bytes)
        bench, bench_s = _timed(benchmark, path, num_runs=20 if quick else 100)
        rows.append([width, model.count_params(), len(conversion.tflite_bytes), round(conversion_s, 2),
                     round(bench_s, 2), round(bench.median_us)])
    return rows


def run(output_dir: Path, quick: bool = False) -> dict:
    start = time.perf_counter()
    folder = output_dir / "compare_files"
    data = load_digits(image_size=32)
    rows: list[dict] = []
    trained = {"digits_cnn": example_float_model(data, quick)[0],
               "dense_mlp": _train_dense(data, epochs=4 if quick else 15)}
    for name, model in trained.items():
        variants = _hand_variants(model, data, quick) + _our_variants(model, data, quick)
        rows += _measure(name, model, data, variants, folder, quick)

    # MobileNetV2 with random weights: size and latency only (accuracy would need real images).
    mobilenet = mobilenet_v2((96, 96, 3), alpha=0.35)
    calibration = np.random.default_rng(0).random((32, 96, 96, 3), dtype=np.float32)
    from tflite_opt.convert import convert

    float32, float32_s = _timed(baselines.hand_float32, mobilenet)
    hand_int8, hand_int8_s = _timed(baselines.hand_int8, mobilenet, calibration)
    ours, ours_s = _timed(convert, mobilenet, "int8", representative_data=calibration)
    variants = [("float32", float32, float32_s, None), ("PTQ int8 (hand)", hand_int8, hand_int8_s, None),
                ("int8 (tflite_opt)", ours.tflite_bytes, ours_s, None)]
    rows += _measure("mobilenet_v2_035_96", mobilenet, None, variants, folder, quick)

    baseline_best, ours_best = _best(rows, ours=False), _best(rows, ours=True)
    _pareto_plot(rows, output_dir / "compare_pareto.png")
    scaling = _scaling(folder, quick)
    columns = ["model", "variant", "size_bytes", "gzip_bytes", "accuracy", "agreement",
               "median_us_1t", "p90_us_1t", "median_us_2t", "p90_us_2t", "conversion_s",
               "train_s_per_epoch", "peak_rss_mib", "model_rss_mib"]

    def fmt(value):
        if value is None:
            return "n/a"
        return round(value, 4) if isinstance(value, float) else value

    summary = {
        "baseline_best_gzip_bytes": baseline_best and baseline_best["gzip_bytes"],
        "baseline_best_accuracy": baseline_best and baseline_best["accuracy"],
        "baseline_best_variant": baseline_best and f"{baseline_best['model']}: {baseline_best['variant']}",
        "ours_best_gzip_bytes": ours_best and ours_best["gzip_bytes"],
        "ours_best_accuracy": ours_best and ours_best["accuracy"],
        "ours_best_variant": ours_best and f"{ours_best['model']}: {ours_best['variant']}",
        "ours_vs_baseline_gzip_ratio": (ours_best["gzip_bytes"] / baseline_best["gzip_bytes"]
                                        if ours_best and baseline_best else None),
        "wall_s": time.perf_counter() - start,
    }
    tables = [
        {"title": "All variants (latency interleaved per model; accuracy on the 360 digits test images)",
         "columns": columns, "rows": [[fmt(r[c]) for c in columns] for r in rows],
         "note": "MobileNetV2 has random weights, so its accuracy is n/a; its rows show size and "
                 "latency. peak_rss_mib: peak resident memory of a process that imports only LiteRT, "
                 "loads the file and runs it 10 times; model_rss_mib: the part above the bare process."},
        {"title": "Scaling: digits CNN at three widths (int8)",
         "columns": ["width", "params", "tflite bytes", "conversion s", "benchmark wall s", "median µs"],
         "rows": scaling},
    ]
    return {"summary": summary, "tables": tables, "details": {"rows": rows}}
