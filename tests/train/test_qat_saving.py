"""QAT models (plain, PQAT, CQAT, PCQAT) saved as ``.h5`` or ``.keras`` load back, both through
tflite_opt's ``load_model`` and the user's own ``keras.models.load_model`` in
``optimize_scope``, with every variable, and keep preserving: after more training the zeros
stay zero and the clusters stay.

tfmot 0.8.1's own quantizers save as plain 8-bit QAT ("Layer expects 7 weight(s). Received
10"); ``tflite_opt/train/qat_saving.py`` says why and what replaces them. Its QAT layers do not
load from ``.keras`` at all ("Layer 'quantize_layer' expected 5 variables, but received 3");
``tflite_opt/train/qat_keras_format.py`` says why and what replaces them.
"""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from tflite_opt._keras import import_tfmot, keras, keras3
from tflite_opt.errors import ModelLoadError
from tflite_opt.files import atomic_save_model
from tflite_opt.models.loading import load_model, optimize_scope
from tflite_opt.train import quantize_aware, weight_stats

CENTROIDS = (-0.3, -0.1, 0.2, 0.4)
KEEPS_ZEROS = {"default": False, "pqat": True, "cqat": False, "pcqat": True}
KEEPS_CLUSTERS = {"default": False, "pqat": False, "cqat": True, "pcqat": True}


def _pruned_clustered_cnn(k=keras):
    """conv2's kernel set directly: exactly half zeros, the rest from 4 centroids.

    conv1 (72 distinct values) is built as clustered into 72 by tfmot; the dense kernel
    (23,040 distinct values, no zeros) is left unclustered: the three layouts of a layer.
    ``k`` is the Keras to build it with (tf_keras or Keras 3).
    """
    k.utils.set_random_seed(0)
    model = k.Sequential([k.Input((16, 16, 1)), k.layers.Conv2D(8, 3, name="conv1"),
                          k.layers.Conv2D(16, 3, name="conv2"), k.layers.Flatten(),
                          k.layers.Dense(10, name="dense")])
    kernel, bias = model.get_layer("conv2").get_weights()
    rng = np.random.default_rng(0)
    values = rng.choice(CENTROIDS, size=kernel.size).astype(np.float32)
    values[rng.permutation(kernel.size)[: kernel.size // 2]] = 0.0
    model.get_layer("conv2").set_weights([values.reshape(kernel.shape), bias])
    return model


def _fit(model, data):
    # eager: two batches run faster than tracing the QAT graph
    k = keras3() if model.__class__.__module__.startswith("keras") else keras
    model.compile(k.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", run_eagerly=True)
    model.fit(*data, batch_size=32, epochs=1, verbose=0)
    return model


def _variables(model):
    """(name, value) of every variable; a loaded wrapped layer's are named quant_conv1/kernel."""
    return [(w.name.split("/")[-1], np.asarray(w.numpy())) for w in model.weights]


def _assert_same_model(loaded, saved, x):
    assert [n for n, _ in _variables(loaded)] == [n for n, _ in _variables(saved)]
    for (name, value), (_, expected) in zip(_variables(loaded), _variables(saved)):
        np.testing.assert_array_equal(value, expected, err_msg=name)
    np.testing.assert_array_equal(np.asarray(loaded(x, training=False)),
                                  np.asarray(saved(x, training=False)))


def _assert_keeps_what_it_preserves(scheme, model, data):
    """After one more fit: the zeros and clusters of conv2 that ``scheme`` preserves are kept,
    and those it does not are trained away (so the checks can fail)."""
    stats = weight_stats(_fit(model, data))["conv2"]
    if KEEPS_ZEROS[scheme]:  # the mask came back from the file: no zero trained away
        assert stats["sparsity"] >= 0.5
    else:
        assert stats["sparsity"] < 0.5
    if KEEPS_CLUSTERS[scheme]:  # the 4 centroids (one of them may reach 0 exactly) and the zeros
        assert stats["unique_values"] <= len(CENTROIDS) + 1
    else:
        assert stats["unique_values"] > len(CENTROIDS) + 1


@pytest.mark.parametrize("scheme, suffix", [
    *((scheme, ".keras") for scheme in KEEPS_ZEROS),
    ("pqat", ".h5"), ("pcqat", ".h5"),  # the .h5 of the other two takes the same path
])
def test_qat_model_loads_back_with_every_variable_and_keeps_preserving(scheme, suffix,
                                                                       tiny_train, tmp_path):
    # one fit first: the ranges and clusters saved are not the values a fresh build makes
    qat = _fit(quantize_aware(_pruned_clustered_cnn(), scheme), tiny_train)
    path = atomic_save_model(qat, tmp_path / f"{scheme}{suffix}")
    x = tiny_train[0][:8]

    with optimize_scope():  # the user's own load_model, in the scope the docs name
        by_user = keras.models.load_model(path)
    for loaded in (load_model(path), by_user):
        _assert_same_model(loaded, qat, x)
    _assert_keeps_what_it_preserves(scheme, load_model(path), tiny_train)


def test_qat_model_loaded_from_keras_saves_and_loads_again(tiny_train, tmp_path):
    qat = _fit(quantize_aware(_pruned_clustered_cnn(), "pcqat"), tiny_train)
    loaded = load_model(atomic_save_model(qat, tmp_path / "first.keras"))
    again = load_model(atomic_save_model(loaded, tmp_path / "second.keras"))
    _assert_same_model(again, qat, tiny_train[0][:8])

    def class_names(name):  # the layers' names for their classes, which loading looks up
        with zipfile.ZipFile(tmp_path / name) as archive:
            layers = json.loads(archive.read("config.json"))["config"]["layers"]
        return [(layer["class_name"], layer.get("registered_name")) for layer in layers]

    assert class_names("second.keras") == class_names("first.keras")  # tfmot's, not ours


def test_pcqat_keras_file_from_tfmot_itself_says_it_cannot_be_rebuilt(tmp_path):
    tfmot = import_tfmot()
    model = tfmot.quantization.keras.quantize_apply(
        tfmot.quantization.keras.quantize_annotate_model(_pruned_clustered_cnn()),
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(True))
    path = atomic_save_model(model, tmp_path / "tfmot_pcqat.keras")
    with pytest.raises(ModelLoadError, match=r"quant_conv\d.*does not record its quantizers"):
        load_model(path)


def test_keras3_qat_model_round_trips_through_a_keras_file(tiny_train, tmp_path):
    # Keras 3 QAT is tflite_opt's own (train/keras3/qat.py); its layers save their state
    qat = _fit(quantize_aware(_pruned_clustered_cnn(keras3()), "pcqat"), tiny_train)
    loaded = load_model(atomic_save_model(qat, tmp_path / "k3_pcqat.keras"))
    assert loaded.__class__.__module__.startswith("keras")  # read back as Keras 3
    _assert_same_model(loaded, qat, tiny_train[0][:8])
    _assert_keeps_what_it_preserves("pcqat", loaded, tiny_train)
