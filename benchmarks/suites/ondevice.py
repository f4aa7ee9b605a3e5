"""Suite `ondevice`: a fresh classifier head trained only through a builtin-ops ``.tflite``.

The phone scenario: an app ships a feature extractor trained centrally, and learns the user's
classes on the phone from the user's own images, with nothing but the ``.tflite`` file and the
interpreter. Two bases, each with a fresh, randomly initialised head (``dense1`` + dropout +
``classifier``, 64 + 10 units) exported by ``tflite_opt.ondevice.export_trainable`` (Adam):

1. ``new classes`` (the headline): a Keras 3 ``digits_cnn`` trained on the training images of
   the digits 0-4 only (``BASE_CLASSES``); on the device the head learns all ten digits, so half
   of the classes were never seen by the base.
2. ``same task``: the tf_keras example model (``saved_models/digits_cnn.keras``, trained on the
   whole training split), its head replaced by a fresh random one.

The device trains on the digits' training split (1,437 images, all classes) through the
``train`` signature (``OnDeviceTrainer.fit``); accuracy is scored through the ``infer``
signature on ``benchmarks.common.eval_data`` (3,240 augmented held-out images, never trained
on) before training and after each epoch. The gain is paired on the same images (McNemar 95%
interval, ``tflite_opt.report.significance``). As a check of the file's math at scale, the
same head is trained in Keras from the same initial weights on the same batches in the same
order with dropout off (the device trains as Keras infers: dropout is an identity there).
``flex_ops``/``custom_ops`` are read back from the written file's operator table
(``tflite_opt.runtime.model_file.operator_codes``): distinct Flex and custom op codes.
File sizes: ``file_bytes`` is the file written; ``converter_bytes`` the converter's output
before Adam's zero moments were turned into FILL ops (``ondevice/zero_fill.py``), and
``head_bytes`` the trainable weights in float32.

Summary keys (stable): accuracy_before, accuracy_after, flex_ops, custom_ops, gain_points,
gain_ci95_low, gain_ci95_high, accuracy_after_base_classes, accuracy_after_new_classes
(held-out images of the digits the base saw / never saw), keras_same_batches_accuracy,
device_minus_keras_points, device_minus_keras_ci95_low, device_minus_keras_ci95_high, loss_first_epoch, loss_last_epoch,
same_task_accuracy_before, same_task_accuracy_after, train_step_ms, file_bytes,
converter_bytes, converter_over_file_ratio, head_bytes, epochs, eval_images, base_classes, cpu,
wall_s.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import eval_data, example_float_model
from tflite_opt._keras import keras_flavor, keras_of_flavor
from tflite_opt.data.digits import Dataset
from tflite_opt.models.builders import digits_cnn
from tflite_opt.ondevice.export import export_trainable
from tflite_opt.ondevice.runner import OnDeviceTrainer
from tflite_opt.report.significance import mcnemar_difference_ci
from tflite_opt.runtime.host_cpu import host_cpu
from tflite_opt.runtime.inspection import inspect_model
from tflite_opt.runtime.model_file import operator_codes, read_tflite

BASE_CLASSES = (0, 1, 2, 3, 4)
HEAD = ["dense1", "classifier"]
OPTIMIZER = {"optimizer": "adam", "learning_rate": 1e-3}
EPOCHS = 10
BATCH = 32
BASE_EPOCHS = 15
SEED = 0


def _base_on_some_classes(data: Dataset, epochs: int) -> Any:
    """A Keras 3 digits CNN trained on the training images of ``BASE_CLASSES`` only."""
    keras = keras_of_flavor("keras3")
    keras.utils.set_random_seed(SEED)
    keep = np.isin(data.y_train, BASE_CLASSES)
    model = digits_cnn(input_shape=data.input_shape, flavor="keras3")
    model.compile(keras.optimizers.Adam(2e-3), "sparse_categorical_crossentropy")
    model.fit(data.x_train[keep], data.y_train[keep], epochs=epochs, batch_size=BATCH, verbose=0)
    return model


def _fresh_head(trained: Any, data: Dataset, seed: int) -> Any:
    """``trained``'s layers up to the head, and a randomly initialised head (seeded)."""
    flavor = keras_flavor(trained)
    keras_of_flavor(flavor).utils.set_random_seed(seed)
    model = digits_cnn(input_shape=data.input_shape, flavor=flavor)
    for layer in model.layers:
        if layer.name not in HEAD and layer.weights:
            layer.set_weights(trained.get_layer(layer.name).get_weights())
    return model


def _keras_twin(model: Any, epochs: int, data: Dataset) -> np.ndarray:
    """Trains ``model``'s head in Keras on the batches ``OnDeviceTrainer.fit`` uses; correctness."""
    keras = keras_of_flavor(keras_flavor(model))
    for layer in model.layers:
        layer.trainable = layer.name in HEAD
        if type(layer).__name__ == "Dropout":
            layer.rate = 0.0  # the device trains as Keras infers
    model.compile(keras.optimizers.Adam(OPTIMIZER["learning_rate"]),
                  "sparse_categorical_crossentropy")
    for epoch in range(epochs):
        order = np.random.default_rng(SEED + epoch).permutation(len(data.x_train))
        for start in range(0, len(order), BATCH):
            batch = order[start:start + BATCH]
            model.train_on_batch(data.x_train[batch], data.y_train[batch])
    outputs = model.predict(data.x_test, batch_size=256, verbose=0)
    return outputs.argmax(axis=1) == data.y_test


def _train_on_device(model: Any, path: Path, data: Dataset, epochs: int) -> dict:
    """Exports ``model`` for on-device training, trains it through the file, scores each epoch."""
    export = export_trainable(model, path, trainable=HEAD, overwrite=True, **OPTIMIZER)
    info = inspect_model(path)
    codes = operator_codes(read_tflite(path))  # the file's op table: Flex and custom ops show there
    trainer = OnDeviceTrainer(path)

    def correct() -> np.ndarray:
        return trainer.infer(data.x_test).argmax(axis=1) == data.y_test

    curve = [float(correct().mean())]
    before = correct()
    losses = []
    step_s = []
    for epoch in range(epochs):
        start = time.perf_counter()
        losses += trainer.fit(data.x_train, data.y_train, epochs=1, batch_size=BATCH,
                              seed=SEED + epoch)
        step_s.append((time.perf_counter() - start) / -(-len(data.x_train) // BATCH))
        curve.append(float(correct().mean()))
    return {"export": export, "before": before, "after": correct(), "losses": losses,
            "curve": curve, "step_ms": 1e3 * float(np.median(step_s)),
            "flex_ops": sum(1 for code in codes if code.name.startswith("Flex")),
            "custom_ops": sum(1 for code in codes
                              if code.builtin == "CUSTOM" and not code.name.startswith("Flex")),
            "ops": sorted(info.op_counts)}


def _head_bytes(export: Any) -> int:
    """Bytes of the trainable weights in float32."""
    return 4 * sum(int(np.prod(shape)) for shape in export.weight_shapes)


def _plot(runs: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    for name, run in runs.items():
        epochs = range(len(run["curve"]))
        right.plot(epochs, [100 * a for a in run["curve"]], marker="o", label=name)
        left.plot(range(1, len(run["losses"]) + 1), run["losses"], marker="o", label=name)
    left.set_xlabel("epoch on the device")
    left.set_ylabel("mean training loss (train signature)")
    right.set_xlabel("epochs on the device")
    right.set_ylabel("held-out accuracy (%), infer signature")
    right.set_ylim(0, 100)
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("A fresh head trained only through the builtin-ops .tflite", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(output_dir: Path, quick: bool = False) -> dict:
    start = time.perf_counter()
    data = eval_data(quick)
    epochs = 3 if quick else EPOCHS
    scratch = tempfile.TemporaryDirectory(prefix="ondevice_suite_")  # the .tflite files
    work = Path(scratch.name)

    base = _base_on_some_classes(data, 5 if quick else BASE_EPOCHS)
    example, example_source = example_float_model(data, quick)
    runs = {}
    for name, trained in (("new classes", base), ("same task", example)):
        model = _fresh_head(trained, data, seed=SEED + 1)
        runs[name] = _train_on_device(model, work / f"{name.replace(' ', '_')}.tflite", data,
                                      epochs)
        runs[name]["keras"] = _keras_twin(_fresh_head(trained, data, seed=SEED + 1), epochs, data)
        runs[name]["flavor"] = keras_flavor(model)
    scratch.cleanup()
    headline = runs["new classes"]
    gain = mcnemar_difference_ci(headline["after"], headline["before"])
    versus_keras = mcnemar_difference_ci(headline["after"], headline["keras"])
    _plot(runs, output_dir / "ondevice.png")
    seen = np.isin(data.y_test, BASE_CLASSES)  # digits the base was trained on

    rows = []
    for name, run_ in runs.items():
        gain_ = mcnemar_difference_ci(run_["after"], run_["before"])
        rows.append([name, run_["flavor"], "0-4" if name == "new classes" else "0-9",
                     round(100 * run_["before"].mean(), 2), round(100 * run_["after"].mean(), 2),
                     f"{100 * gain_.ci95_low:+.1f} to {100 * gain_.ci95_high:+.1f}",
                     round(100 * run_["keras"].mean(), 2), round(run_["losses"][0], 4),
                     round(run_["losses"][-1], 4), run_["flex_ops"], run_["custom_ops"],
                     round(run_["step_ms"], 2), run_["export"].size_bytes,
                     run_["export"].converter_bytes, _head_bytes(run_["export"])])
    cpu = host_cpu()
    summary = {
        "accuracy_before": float(headline["before"].mean()),
        "accuracy_after": float(headline["after"].mean()),
        "flex_ops": headline["flex_ops"],
        "custom_ops": headline["custom_ops"],
        "gain_points": 100 * gain.difference,
        "gain_ci95_low": 100 * gain.ci95_low,
        "gain_ci95_high": 100 * gain.ci95_high,
        "accuracy_after_base_classes": float(headline["after"][seen].mean()),
        "accuracy_after_new_classes": float(headline["after"][~seen].mean()),
        "keras_same_batches_accuracy": float(headline["keras"].mean()),
        "device_minus_keras_points": 100 * versus_keras.difference,
        "device_minus_keras_ci95_low": 100 * versus_keras.ci95_low,
        "device_minus_keras_ci95_high": 100 * versus_keras.ci95_high,
        "loss_first_epoch": headline["losses"][0],
        "loss_last_epoch": headline["losses"][-1],
        "same_task_accuracy_before": float(runs["same task"]["before"].mean()),
        "same_task_accuracy_after": float(runs["same task"]["after"].mean()),
        "train_step_ms": headline["step_ms"],
        "file_bytes": headline["export"].size_bytes,
        "converter_bytes": headline["export"].converter_bytes,
        "converter_over_file_ratio": (headline["export"].converter_bytes
                                      / headline["export"].size_bytes),
        "head_bytes": _head_bytes(headline["export"]),
        "epochs": epochs,
        "eval_images": int(len(data.y_test)),
        "base_classes": list(BASE_CLASSES),
        "cpu": cpu.describe(),
        "wall_s": time.perf_counter() - start,
    }
    return {
        "summary": summary,
        "tables": [{
            "title": (f"A fresh random head (dense1 + classifier) trained only through the "
                      f".tflite (Adam lr {OPTIMIZER['learning_rate']}, {epochs} epochs of "
                      f"batch {BATCH} on the 1,437 training images); accuracy through the infer "
                      f"signature on {len(data.y_test)} augmented held-out images; gain CI: "
                      "McNemar 95%; keras: same head, same batches, trained in Keras; "
                      f"step ms on {cpu.describe()}"),
            "columns": ["base", "Keras of the base", "base trained on digits",
                        "accuracy before (%)",
                        "accuracy after (%)", "gain CI95 (points)", "keras same batches (%)",
                        "loss epoch 1", f"loss epoch {epochs}", "flex ops", "custom ops",
                        "train step ms", "file bytes", "file bytes with stored zeros",
                        "head bytes"],
            "rows": rows,
        }],
        "details": {
            "optimizer": OPTIMIZER, "head": HEAD, "batch_size": BATCH, "seed": SEED,
            "example_model": example_source,
            "runs": {name: {"accuracy_per_epoch": r["curve"], "loss_per_epoch": r["losses"],
                            "ops": r["ops"], "export": r["export"].to_dict()}
                     for name, r in runs.items()},
            "gain": gain.to_dict(), "device_vs_keras": versus_keras.to_dict(),
        },
    }
