"""OptimizationPlan: stage records, data/optimizer forms, MobileNetV2, distribution, resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tflite_opt._keras import keras, tf
from tflite_opt.errors import DataError, InvalidArgumentError, RecipeError
from tflite_opt.train import (ClusterStage, OptimizationPlan, PruneStage, QATStage, Recipe,
                              weight_stats)
from tflite_opt.train.qat import is_quantize_aware

HERE = Path(__file__).resolve().parent
SHORT = Recipe(stages=(PruneStage(epochs=2, target_sparsity=0.75), ClusterStage(epochs=1),
                       QATStage(epochs=1, scheme="pcqat")))


class EpochCounter(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.epochs = 0
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.epochs += 1
        self.logs.append(dict(logs or {}))


def test_run_default_chain_records_each_stage_and_returns_qat_model(trained_tiny_cnn, digits16,
                                                                   small_train):
    model, _ = trained_tiny_cnn
    before = [w.copy() for w in model.get_weights()]
    start_accuracy = float(np.mean(np.argmax(model.predict(digits16.x_test, verbose=0), 1)
                                   == digits16.y_test))
    counter = EpochCounter()
    # The whole training split (1,437 images): with 256 the QAT model's accuracy swung from
    # 0.46 to 0.64 with the CPU's float math (oneDNN on/off); with all of it, it stays near
    # the starting model's on every CPU tried.
    train = (digits16.x_train, digits16.y_train)
    result = OptimizationPlan(SHORT).run(model, train, (digits16.x_test, digits16.y_test),
                                         optimizer=keras.optimizers.Adam(1e-3), callbacks=[counter],
                                         verbose=0)
    assert [s.name for s in result.stages] == ["prune", "cluster", "qat"]
    assert [s.epochs for s in result.stages] == [2, 1, 1] and counter.epochs == 4
    assert result.stages[0].sparsity == pytest.approx(0.75, abs=1e-3)
    assert result.stages[1].max_unique_weights <= 16
    assert result.stages[2].max_unique_weights <= 16
    assert result.stages[2].sparsity >= 0.75 - 1e-3
    # the epoch logs of the QAT stage cover the same (clustered) layers, not every QAT-wrapped one
    assert counter.logs[-1]["max_unique_weights"] <= 16
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(result.stages[2].metrics)
    assert result.optimized_layers == ("conv2", "conv3", "dense1")
    assert is_quantize_aware(result.model)
    json.dumps(result.to_dict())  # plain data all the way down
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    # the QAT model still classifies about as well as the trained model it started from
    # (10 points = 36 of the 360 test images; measured changes: +1 and +5 points)
    result.model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    qat_accuracy = result.model.evaluate(digits16.x_test, digits16.y_test, verbose=0)[1]
    assert start_accuracy > 0.5  # trained: five times chance
    assert qat_accuracy >= start_accuracy - 0.10
    # ... and its full-int8 file keeps the sparsity and the cluster count of each layer
    from tflite_opt.convert import convert
    from tflite_opt.runtime import inspect_model

    tflite = convert(result.model, "int8", small_train[0][:64], progress=False).tflite_bytes
    weights = {w["layer"]: w for w in inspect_model(tflite).weights if w.get("role") == "weight"}
    for name in ("conv2", "conv3", "dense1"):
        tensor = weights[f"quant_{name}"]
        assert tensor["dtype"] == "int8"
        assert tensor["sparsity"] >= 0.75 - 1e-3
        # conv kernels are quantized per output channel, dense kernels per tensor
        assert (tensor["max_unique_per_channel"] or tensor["unique_values"]) <= 16


def test_run_without_qat_returns_stripped_model_from_dataset_and_factory(tiny_cnn, small_train):
    x, y = small_train
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(32)
    recipe = Recipe(stages=(PruneStage(epochs=1, schedule="constant", target_sparsity=0.5),))
    result = OptimizationPlan(recipe).run(tiny_cnn, dataset,
                                          optimizer=lambda: keras.optimizers.SGD(0.01), verbose=0)
    assert [type(l) for l in result.model.layers] == [type(l) for l in tiny_cnn.layers]
    assert weight_stats(result.model)["dense1"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert result.stages[0].seconds > 0


@pytest.mark.parametrize("data, error", [
    ((np.zeros((4, 16, 16, 1)), np.zeros(3)), DataError),
    ((np.zeros((0, 16, 16, 1)), np.zeros(0)), DataError),
    (np.zeros((4, 16, 16, 1)), DataError),
])
def test_run_bad_data_raises_before_training(tiny_cnn, data, error):
    with pytest.raises(error):
        OptimizationPlan().run(tiny_cnn, data, verbose=0)


def test_run_bad_optimizer_raises_invalid_argument(tiny_cnn, tiny_train):
    with pytest.raises(InvalidArgumentError, match="optimizer"):
        OptimizationPlan(Recipe(stages=(PruneStage(epochs=1),))).run(
            tiny_cnn, tiny_train, optimizer=42, verbose=0)


def test_run_mobilenet_v2_through_whole_plan(digits16):
    from tflite_opt.models.builders import mobilenet_v2

    model = mobilenet_v2((32, 32, 3), num_classes=10, alpha=0.35)
    x = np.repeat(tf.image.resize(digits16.x_train[:16], (32, 32)).numpy(), 3, axis=-1)
    recipe = Recipe(stages=(PruneStage(epochs=1, schedule="constant", target_sparsity=0.5),
                            ClusterStage(epochs=1, number_of_clusters=8), QATStage(epochs=1)))
    # One step per stage; eager, because tracing MobileNetV2's training graphs costs far more
    # than the step itself.
    result = OptimizationPlan(recipe).run(model, (x, digits16.y_train[:16]), batch_size=16,
                                          verbose=0, run_eagerly=True)
    assert [s.name for s in result.stages] == ["prune", "cluster", "qat"]
    assert is_quantize_aware(result.model)
    assert result.stages[0].sparsity == pytest.approx(0.5, abs=1e-2)
    assert result.max_unique_weights <= 8 and result.sparsity >= 0.5 - 1e-2
    assert "Conv1" not in result.optimized_layers and "predictions" not in result.optimized_layers


def _python(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_run_under_mirrored_strategy_on_two_cpus():
    proc = _python(str(HERE / "_mirrored_worker.py"))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["replicas"] == 2
    assert out["stages"] == ["prune", "cluster", "qat"]
    assert out["sparsity"] >= 0.5 - 1e-3 and out["max_unique_weights"] <= 8


def _result(proc: subprocess.CompletedProcess) -> dict:
    line = next(l for l in proc.stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_run_killed_mid_stage_resumes_to_same_sparsity_and_structure(tmp_path):
    killed = _python(str(HERE / "_resume_worker.py"), str(tmp_path / "run"), "0:2")
    assert killed.returncode == -9, killed.stderr[-2000:]
    state = json.loads((tmp_path / "run" / "plan_state.json").read_text())
    assert state["stage"] == 0 and state["epoch"] == 2
    resumed = _python(str(HERE / "_resume_worker.py"), str(tmp_path / "run"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 2" in resumed.stdout
    got = _result(resumed)
    # An uninterrupted run strips back to the float model's structure and reaches exactly the
    # schedule's sparsity after pruning; the resumed run must do the same.
    from tflite_opt.models.builders import digits_cnn

    want = [[layer.name, type(layer).__name__, [list(w.shape) for w in layer.weights]]
            for layer in digits_cnn(input_shape=(16, 16, 1), width=8, dense_units=32).layers]
    assert got["structure"] == want
    assert [s["epochs"] for s in got["stages"]] == [3, 1]
    assert got["stages"][0]["sparsity"] == pytest.approx(0.6, abs=1e-3)
    for name in ("conv2", "conv3", "dense1"):
        assert got["layers"][name]["unique_values"] <= 8
        assert got["layers"][name]["sparsity"] >= 0.6 - 1e-3


def test_checkpoint_dir_of_other_recipe_raises_recipe_error(tiny_cnn, tiny_train, tmp_path):
    recipe = Recipe(stages=(PruneStage(epochs=1, schedule="constant"),))
    OptimizationPlan(recipe).run(tiny_cnn, tiny_train, checkpoint_dir=tmp_path, verbose=0)
    assert (tmp_path / "plan_state.json").exists()
    other = Recipe(stages=(PruneStage(epochs=2, schedule="constant"),))
    with pytest.raises(RecipeError, match="different recipe"):
        OptimizationPlan(other).run(tiny_cnn, tiny_train, checkpoint_dir=tmp_path, verbose=0)


def test_run_killed_mid_qat_resumes_then_finished_run_restores_final_model(tmp_path):
    run = str(tmp_path / "run")
    killed = _python(str(HERE / "_resume_worker.py"), run, "1:1", "qat")
    assert killed.returncode == -9, killed.stderr[-2000:]
    state = json.loads((tmp_path / "run" / "plan_state.json").read_text())
    assert (state["stage"], state["epoch"]) == (1, 1)
    resumed = _python(str(HERE / "_resume_worker.py"), run, "-", "qat")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming after epoch 1" in resumed.stdout
    got = _result(resumed)
    assert [s["name"] for s in got["stages"]] == ["prune", "qat"]
    assert got["structure"][2][0] == "quant_conv1"  # the QAT-wrapped model
    assert got["layers"]["dense1"]["sparsity"] == pytest.approx(0.6, abs=1e-3)  # PQAT kept it
    # a third run finds the plan finished: no training, same final model and records
    again = _python(str(HERE / "_resume_worker.py"), run, "-", "qat")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "already done" in again.stdout and "Epoch" not in again.stdout
    assert _result(again)["layers"] == got["layers"]
    assert _result(again)["stages"] == got["stages"]
