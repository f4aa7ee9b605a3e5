"""Preserving QAT models (PCQAT, PQAT) saved as ``.h5`` load back, both through tflite_opt's
``load_model`` and the user's own ``keras.models.load_model`` in ``optimize_scope``, with every
variable, and keep preserving: after more training the zeros stay zero and the clusters stay.

tfmot 0.8.1's own quantizers save as plain 8-bit QAT ("Layer expects 7 weight(s). Received
10"); ``tflite_opt/train/qat_saving.py`` says why and what replaces them.
"""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt._keras import keras
from tflite_opt.files import atomic_save_model
from tflite_opt.models.loading import load_model, optimize_scope
from tflite_opt.train import quantize_aware, weight_stats

CENTROIDS = (-0.3, -0.1, 0.2, 0.4)


def _pruned_clustered_cnn() -> keras.Model:
    """conv2's kernel set directly: exactly half zeros, the rest from 4 centroids.

    conv1 (72 distinct values) is built as clustered into 72 by tfmot; the dense kernel
    (23,040 distinct values, no zeros) is left unclustered: the three layouts of a layer.
    """
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Conv2D(8, 3, name="conv1"),
                              keras.layers.Conv2D(16, 3, name="conv2"), keras.layers.Flatten(),
                              keras.layers.Dense(10, name="dense")])
    kernel, bias = model.get_layer("conv2").get_weights()
    rng = np.random.default_rng(0)
    values = rng.choice(CENTROIDS, size=kernel.size).astype(np.float32)
    values[rng.permutation(kernel.size)[: kernel.size // 2]] = 0.0
    model.get_layer("conv2").set_weights([values.reshape(kernel.shape), bias])
    return model


def _fit(model: keras.Model, data) -> keras.Model:
    # eager: two batches run faster than tracing the QAT graph
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  run_eagerly=True)
    model.fit(*data, batch_size=32, epochs=1, verbose=0)
    return model


@pytest.mark.parametrize("scheme", ["pcqat", "pqat"])
def test_preserving_qat_h5_loads_back_and_keeps_preserving(scheme, tiny_train, tmp_path):
    qat = quantize_aware(_pruned_clustered_cnn(), scheme)  # its variables are all built
    path = atomic_save_model(qat, tmp_path / f"{scheme}.h5")
    x = tiny_train[0][:8]
    expected = qat(x, training=False).numpy()

    def variables(model):  # a loaded wrapped layer's variables are named quant_conv1/kernel
        return [(w.name.split("/")[-1], w.numpy()) for w in model.weights]

    with optimize_scope():  # the user's own load_model, in the scope the docs name
        by_user = keras.models.load_model(path)
    for loaded in (load_model(path), by_user):
        assert [n for n, _ in variables(loaded)] == [n for n, _ in variables(qat)]
        for (name, value), (_, saved) in zip(variables(loaded), variables(qat)):
            np.testing.assert_array_equal(value, saved, err_msg=name)
        np.testing.assert_array_equal(loaded(x, training=False).numpy(), expected)

    stats = weight_stats(_fit(load_model(path), tiny_train))["conv2"]
    assert stats["sparsity"] >= 0.5  # the mask came back from the file: no zero trained away
    if scheme == "pcqat":  # the 4 centroids (one of them may reach 0 exactly) and the zeros
        assert stats["unique_values"] <= len(CENTROIDS) + 1
