"""A finished plan whose last stage is QAT is restored from its folder with the first run's
model: from ``final.keras`` (written for every last stage, after which its epoch checkpoint is
removed), and from a folder written before QAT ``.keras`` files loaded (no ``final.keras``, and
the last checkpoint kept: rebuilt from the stage input and checkpoint); with either Keras.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tflite_opt._keras import keras, keras_of_flavor
from tflite_opt.models.builders import digits_cnn
from tflite_opt.train import OptimizationPlan, QATStage, Recipe
from tflite_opt.train.plan import FINAL_MODEL, STATE_FILE

# PCQAT alone, on a model whose kernels are set pruned and clustered: a prune and a cluster
# stage before it would triple the test's time and change nothing in how the end is saved.
RECIPE = Recipe(stages=(QATStage(epochs=1, scheme="pcqat"),))
CENTROIDS = (-0.3, -0.1, 0.2, 0.4)


def _pruned_clustered_cnn(flavor):
    keras.utils.set_random_seed(0)
    model = digits_cnn(input_shape=(16, 16, 1), width=8, dense_units=32, flavor=flavor)
    rng = np.random.default_rng(0)
    for name in ("conv2", "conv3", "dense1"):
        kernel, bias = model.get_layer(name).get_weights()
        values = rng.choice(CENTROIDS, size=kernel.size).astype(np.float32)
        values[rng.permutation(kernel.size)[: kernel.size // 2]] = 0.0
        model.get_layer(name).set_weights([values.reshape(kernel.shape), bias])
    return model


def _epoch_counter(flavor):
    class Epochs(keras_of_flavor(flavor).callbacks.Callback):
        epochs = 0

        def on_epoch_end(self, epoch, logs=None):
            self.epochs += 1

    return Epochs()


def _checkpoint_keeper(flavor, plan_dir, keep):
    """Copies the stage's last epoch checkpoint aside as training ends (before the plan saves
    final.keras and removes it): what a folder written before QAT files loaded still holds."""
    class Keeper(keras_of_flavor(flavor).callbacks.Callback):
        name = None

        def on_train_end(self, logs=None):
            Keeper.name = json.loads((plan_dir / STATE_FILE).read_text())["checkpoint"]
            shutil.copytree(plan_dir / Keeper.name, keep)

    return Keeper()


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
def test_finished_pcqat_plan_restored_from_either_folder_layout_predicts_as_first_run(
        digits16, tmp_path, flavor):
    model = _pruned_clustered_cnn(flavor)
    train, x = (digits16.x_train[:64], digits16.y_train[:64]), digits16.x_test[:64]
    plan_dir, kept = tmp_path / "plan", tmp_path / "kept_checkpoint"

    def run(callbacks=()):
        return OptimizationPlan(RECIPE).run(model, train, batch_size=32, callbacks=list(callbacks),
                                            checkpoint_dir=plan_dir, verbose=0, run_eagerly=True)

    keeper = _checkpoint_keeper(flavor, plan_dir, kept)
    first = run([keeper])
    assert (plan_dir / FINAL_MODEL).exists()  # the QAT model, as every last stage's
    assert not (plan_dir / keeper.name).exists()  # its checkpoint is not needed any more
    assert json.loads((plan_dir / STATE_FILE).read_text())["checkpoint"] is None
    stats = first.layer_stats["dense1"]  # PCQAT kept the zeros and the clusters
    assert stats["sparsity"] >= 0.5 and stats["unique_values"] <= len(CENTROIDS) + 1
    want = np.asarray(first.model(x, training=False))
    weights = [w.numpy() for w in first.model.weights]
    for layout in ("final.keras", "no final.keras (written before QAT files loaded)"):
        if layout.startswith("no"):
            (plan_dir / FINAL_MODEL).unlink()
            shutil.copytree(kept, plan_dir / keeper.name)
            state = json.loads((plan_dir / STATE_FILE).read_text())
            (plan_dir / STATE_FILE).write_text(json.dumps({**state, "checkpoint": keeper.name}))
        counter = _epoch_counter(flavor)
        restored = run([counter])
        assert counter.epochs == 0, layout  # restored, not trained
        assert np.array_equal(np.asarray(restored.model(x, training=False)), want), layout
        assert len(restored.model.weights) == len(weights), layout
        for a, b in zip(restored.model.weights, weights):
            assert np.array_equal(a.numpy(), b), (layout, a.name)
        assert restored.stages == first.stages and restored.layer_stats == first.layer_stats
