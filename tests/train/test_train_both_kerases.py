"""The same optimization cases on both Kerases: tf_keras (tfmot) and Keras 3 (train/keras3).

Every test runs once per flavor through the public API, which picks the implementation from
the model; bounds come from the recipe (target sparsity, cluster count, 2:4), never from what
one run printed.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import tflite_opt
from tflite_opt.train import LayerPolicy, cluster, prune, strip, training_callbacks, weight_stats

FLAVORS = ("tf_keras", "keras3")
STEPS_PER_EPOCH = 8  # 256 images, batch 32


def _keras(flavor):
    if flavor == "keras3":
        import keras
    else:
        import tf_keras as keras
    return keras


def _cnn(flavor):
    keras = _keras(flavor)
    keras.utils.set_random_seed(0)
    layers = keras.layers
    return keras.Sequential([
        keras.Input((16, 16, 1)),
        layers.Conv2D(4, 3, activation="relu", name="conv1"),
        layers.Conv2D(8, 3, strides=2, activation="relu", name="conv2"),
        layers.Flatten(name="flatten"),
        layers.Dense(16, activation="relu", name="dense1"),
        layers.Dense(10, activation="softmax", name="classifier"),
    ])


def _fit(model, data, epochs=1, callbacks=()):
    x, y = data
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    step_and_logger = training_callbacks(model)
    history = model.fit(x, y, batch_size=32, epochs=epochs, verbose=0,
                        callbacks=[*step_and_logger, *callbacks])
    return history, step_and_logger


def _tflite_layout_rows(kernel):
    """[in, out] or [h, w, in, out] -> rows of input weights, as TFLite stores them."""
    if kernel.ndim == 2:
        return kernel.T
    return np.moveaxis(kernel, -1, 0).reshape(-1, kernel.shape[-2])


@pytest.mark.parametrize("flavor", FLAVORS)
def test_prune_reaches_target_sparsity_and_logs_it_on_both_kerases(flavor, small_train):
    model = _cnn(flavor)
    pruned = prune(model, 0.75, end_step=6, frequency=2)
    assert tflite_opt.keras_flavor(pruned) == flavor
    history, _ = _fit(pruned, small_train)
    stats = weight_stats(strip(pruned))
    for name in ("conv2", "dense1"):  # one kernel element is 1/288 of conv2
        assert stats[name]["sparsity"] == pytest.approx(0.75, abs=1 / stats[name]["size"])
    assert stats["conv1"]["sparsity"] == 0.0 and stats["classifier"]["sparsity"] == 0.0
    assert history.history["sparsity"][-1] == pytest.approx(0.75, abs=1e-2)
    # the caller's model is untouched: no zeros were written into it
    assert weight_stats(model)["dense1"]["sparsity"] == 0.0


@pytest.mark.parametrize("flavor", FLAVORS)
def test_prune_2_by_4_holds_the_pattern_along_input_channels(flavor, small_train):
    pruned = prune(_cnn(flavor), schedule="constant", frequency=2, m_by_n=(2, 4))
    _fit(pruned, small_train)
    plain = strip(pruned)
    for name in ("conv2", "dense1"):
        kernel = np.asarray(plain.get_layer(name).get_weights()[0])
        rows = _tflite_layout_rows(kernel)
        blocks = rows.reshape(rows.shape[0], -1, 4)  # conv2: 4 inputs, dense1: 392
        assert (np.count_nonzero(blocks, axis=-1) <= 2).all(), name
        assert weight_stats(plain)[name]["sparsity"] == pytest.approx(0.5, abs=1e-6)


@pytest.mark.parametrize("flavor", FLAVORS)
def test_cluster_after_prune_keeps_zeros_and_at_most_k_values_per_layer_and_channel(
        flavor, small_train):
    pruned = prune(_cnn(flavor), 0.5, schedule="constant", frequency=1)
    _fit(pruned, small_train)
    sparse = strip(pruned)
    per_channel = cluster(sparse, 4, per_channel=True, init="linear",
                          policy=LayerPolicy(only=("conv2",), skip_first_conv=False))
    per_layer = cluster(sparse, 4, init="kmeans++", policy=LayerPolicy(only=("dense1",)))
    for clustered in (per_channel, per_layer):
        _fit(clustered, small_train)
    conv2 = np.asarray(strip(per_channel).get_layer("conv2").get_weights()[0])
    for channel in np.moveaxis(conv2, -1, 0):
        assert np.unique(channel).size <= 4
    dense1_stats = weight_stats(strip(per_layer))["dense1"]
    assert dense1_stats["unique_values"] <= 4
    # sparsity-preserving: the pruned zeros are still zeros (and zero is one of the 4 values)
    assert dense1_stats["sparsity"] >= weight_stats(sparse)["dense1"]["sparsity"] - 1e-9
    assert np.mean(conv2 == 0) >= weight_stats(sparse)["conv2"]["sparsity"] - 1e-9


@pytest.mark.parametrize("flavor", FLAVORS)
def test_pruning_resumes_at_the_saved_step_after_reloading_a_checkpoint(
        flavor, small_train, tmp_path):
    keras = _keras(flavor)
    path = tmp_path / f"{flavor}.keras"
    pruned = prune(_cnn(flavor), 0.75, end_step=4 * STEPS_PER_EPOCH)
    _, callbacks = _fit(pruned, small_train, callbacks=[keras.callbacks.ModelCheckpoint(str(path))])
    assert callbacks[0].step == STEPS_PER_EPOCH
    sparsity_after_one_epoch = weight_stats(pruned)["dense1"]["sparsity"]

    reloaded = tflite_opt.load_model(path)
    assert tflite_opt.keras_flavor(reloaded) == flavor
    assert weight_stats(reloaded)["dense1"]["sparsity"] == pytest.approx(sparsity_after_one_epoch)
    _, callbacks = _fit(reloaded, small_train)
    assert (callbacks[0].start_step, callbacks[0].step) == (STEPS_PER_EPOCH, 2 * STEPS_PER_EPOCH)
    # the ramp went on from where it stopped instead of starting over
    assert weight_stats(reloaded)["dense1"]["sparsity"] > sparsity_after_one_epoch


@pytest.mark.parametrize("flavor", FLAVORS)
def test_export_of_a_pruned_model_writes_int8_io_and_keeps_sparsity(flavor, small_train, tmp_path):
    pruned = prune(_cnn(flavor), 0.75, end_step=6, frequency=2)
    _fit(pruned, small_train)
    path = tflite_opt.export(pruned, tmp_path / f"{flavor}.tflite",
                             representative_data=small_train[0][:32])
    info = tflite_opt.inspect_model(path).to_dict()
    assert {t["dtype"] for t in info["inputs"] + info["outputs"]} == {"int8"}
    # Keras 3's SavedModel export suffixes op scopes ("dense1_1"); tf_keras keeps "dense1".
    dense1 = [w for w in info["weights"]
              if re.fullmatch(r"dense1(_\d+)?", w["layer"]) and w["role"] == "weight"]
    assert dense1 and dense1[0]["sparsity"] == pytest.approx(0.75, abs=0.01)
