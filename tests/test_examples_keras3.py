"""Keras 3 end to end through the scripts: the README's Keras 3 example and optimize.py on a
Keras 3 ``.keras`` file."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT


def _int8_io_and_dense1_sparsity(path):
    from tflite_opt.runtime import inspect_model

    info = inspect_model(path).to_dict()
    io_types = {t["dtype"] for t in info["inputs"] + info["outputs"]}
    # Keras 3's SavedModel export suffixes op scopes ("dense1_1").
    dense1 = [w["sparsity"] for w in info["weights"]
              if re.fullmatch(r"dense1(_\d+)?", w["layer"]) and w["role"] == "weight"]
    return io_types, dense1


def test_train_example_keras3_script_writes_pruned_int8_tflite(tmp_path):
    output = tmp_path / "example_keras3.tflite"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "train_example_keras3.py"),
                             "--output", str(output), "--epochs", "2"],
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dense1 sparsity 0.75" in result.stdout and "Keras 3." in result.stdout
    io_types, dense1 = _int8_io_and_dense1_sparsity(output)
    assert io_types == {"int8"}
    assert dense1 and np.isclose(dense1[0], 0.75, atol=0.01), dense1


def test_optimize_script_takes_a_keras3_file_and_data(tmp_path, digits16):
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Conv2D(4, 3, activation="relu", name="conv1"),
        keras.layers.Conv2D(8, 3, strides=2, activation="relu", name="conv2"),
        keras.layers.Flatten(name="flatten"),
        keras.layers.Dense(16, activation="relu", name="dense1"),
        keras.layers.Dense(10, activation="softmax", name="classifier"),
    ])
    model_path, data_path = tmp_path / "k3.keras", tmp_path / "data.npz"
    model.save(model_path)
    np.savez(data_path, x_train=digits16.x_train[:256], y_train=digits16.y_train[:256],
             x_test=digits16.x_test[:64], y_test=digits16.y_test[:64])
    recipe = tmp_path / "chain.yaml"
    recipe.write_text("precision: int8\nstages:\n"
                      "  - {type: prune, epochs: 1, learning_rate: 0.001, target_sparsity: 0.75}\n"
                      "  - {type: cluster, epochs: 1, learning_rate: 0.0001, number_of_clusters: 8}\n"
                      "  - {type: qat, epochs: 1, learning_rate: 0.0001, scheme: pcqat}\n")
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(REPO_ROOT / "scripts" / "optimize.py"),
                             f"--model={model_path}", f"--data={data_path}", f"--recipe={recipe}",
                             f"--output_dir={out}", "--verbose=0"],
                            capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-3000:])
    io_types, dense1 = _int8_io_and_dense1_sparsity(out / "model_int8.tflite")
    assert io_types == {"int8"}
    assert dense1 and np.isclose(dense1[0], 0.75, atol=0.01), dense1
    import json

    stages = json.loads((out / "report.json").read_text())["stages"]
    assert [s["name"] for s in stages] == ["prune", "cluster", "qat"]
    # PCQAT kept both: the zeros and at most 8 values per optimized kernel
    assert stages[-1]["sparsity"] == pytest.approx(0.75, abs=0.01)
    assert stages[-1]["max_unique_weights"] <= 8
