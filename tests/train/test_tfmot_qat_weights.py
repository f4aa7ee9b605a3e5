"""A CQAT/PCQAT file written by tfmot's own quantizers: ``load_model``'s message names the way
out, and following it (``quantize_aware(..., per_channel_clusters=True)`` then
``load_tfmot_qat_weights``) gives every saved variable, the masks tfmot trained with, the same
predictions, and a model that keeps the zeros and clusters when trained further.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from tflite_opt._keras import import_tfmot, keras
from tflite_opt.errors import ModelLoadError
from tflite_opt.files import atomic_save_model
from tflite_opt.models.loading import load_model
from tflite_opt.train import quantize_aware
from tflite_opt.train.tfmot_qat_weights import load_tfmot_qat_weights

CENTROIDS = (-0.3, -0.1, 0.2, 0.4)  # and 0: five values per kernel


def _pruned_clustered():
    """Both kernels pruned and clustered: every layer has zeros, so tfmot keeps them all.

    conv: each channel's 9 weights are 5 zeros and CENTROIDS scaled by the channel (17 values
    in all, 5 in each channel), which tfmot guesses to be clustered per channel; dense: half
    zeros, the rest from CENTROIDS (clustered per tensor).
    """
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, name="conv"),
                              keras.layers.Flatten(), keras.layers.Dense(10, name="dense")])
    rng = np.random.default_rng(0)
    kernel, bias = model.get_layer("conv").get_weights()
    channels = [np.concatenate([np.multiply(CENTROIDS, 1 + c / 10), np.zeros(5)])[
        rng.permutation(9)] for c in range(4)]
    model.get_layer("conv").set_weights(
        [np.stack(channels, axis=-1).reshape(kernel.shape).astype(np.float32), bias])
    kernel, bias = model.get_layer("dense").get_weights()
    values = rng.choice(CENTROIDS, size=kernel.size).astype(np.float32)
    values[rng.permutation(kernel.size)[: kernel.size // 2]] = 0.0
    model.get_layer("dense").set_weights([values.reshape(kernel.shape), bias])
    return model


def _fit(model, epochs=1):
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(64, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, 64)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  run_eagerly=True)  # two batches run faster than tracing the QAT graph
    model.fit(x, y, batch_size=32, epochs=epochs, verbose=0)
    return model


def _tfmot_masks(model):
    """{layer: (sparsity mask, centroids mask)} as tfmot's quantizers hold them (tensors)."""
    masks = {}
    for layer in model.layers:
        for _, _, qvars in getattr(layer, "_weight_vars", ()):
            masks[layer.name] = tuple(None if qvars.get(k) is None else np.asarray(qvars[k])
                                      for k in ("sparsity_mask", "centroids_mask"))
    return masks


@pytest.mark.parametrize("scheme", ["cqat", "pcqat"])
def test_tfmot_made_file_loads_as_the_error_message_says(scheme, tmp_path):
    tfmot = import_tfmot()
    made = _fit(tfmot.quantization.keras.quantize_apply(
        tfmot.quantization.keras.quantize_annotate_model(_pruned_clustered()),
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(scheme == "pcqat")))
    x = np.random.default_rng(2).normal(size=(8, 8, 8, 1)).astype(np.float32)
    for suffix in (".h5", ".keras"):
        path = atomic_save_model(made, tmp_path / f"tfmot_{scheme}{suffix}")
        with pytest.raises(ModelLoadError) as caught:
            load_model(path)
        message = str(caught.value)
        # The message's own recipe, read from it: the call and the flag it names.
        assert f"load_tfmot_qat_weights(qat, {str(path)!r})" in message
        assert re.search(r"quantize_aware\(pre_qat_model, 'cqat' or 'pcqat', "
                         r"per_channel_clusters=True\)", message)
        qat = quantize_aware(_pruned_clustered(), scheme, per_channel_clusters=True)
        assert load_tfmot_qat_weights(qat, path) is qat
        ours = [w for w in qat.weights if "mask" not in w.name]
        assert [w.shape for w in ours] == [w.shape for w in made.weights]
        for a, b in zip(ours, made.weights):
            assert np.array_equal(a.numpy(), b.numpy()), a.name
        assert np.array_equal(qat(x, training=False), made(x, training=False))
        ours_masks = {layer: tuple(None if m is None else np.asarray(m) for m in pair)
                      for layer, pair in _tfmot_masks(qat).items()}
        for layer, (sparsity, centroids) in _tfmot_masks(made).items():
            if scheme == "pcqat":  # rebuilt from the zeros: tfmot's own masks
                assert np.array_equal(ours_masks[layer][0], sparsity), layer
                assert np.array_equal(ours_masks[layer][1], centroids), layer
            else:
                assert sparsity is None and ours_masks[layer] == (None, None)
    assert made.get_layer("quant_conv").weights[2].shape == (4, 5)  # tfmot's per-channel guess
    # Trained further, PCQAT keeps every zero of the file, and both keep 5 values a channel
    # (conv, per channel as tfmot guessed) or a kernel (dense).
    zeros = {n: qat.get_layer(f"quant_{n}").layer.kernel.numpy() == 0 for n in ("conv", "dense")}
    _fit(qat, epochs=2)
    for name in ("conv", "dense"):
        kernel = qat.get_layer(f"quant_{name}").layer.kernel.numpy()
        if scheme == "pcqat":
            assert np.all(kernel[zeros[name]] == 0), name
        per_channel = kernel.reshape(-1, kernel.shape[-1]).T if name == "conv" else [kernel]
        assert max(len(np.unique(c)) for c in per_channel) <= len(CENTROIDS) + 1, name


def test_plain_load_weights_fails_for_pcqat_and_the_helper_names_the_flag(tmp_path):
    tfmot = import_tfmot()
    made = tfmot.quantization.keras.quantize_apply(
        tfmot.quantization.keras.quantize_annotate_model(_pruned_clustered()),
        tfmot.experimental.combine.Default8BitClusterPreserveQuantizeScheme(True))
    path = atomic_save_model(made, tmp_path / "tfmot_pcqat.h5")
    qat = quantize_aware(_pruned_clustered(), "pcqat", per_channel_clusters=True)
    with pytest.raises(ValueError, match=r"expects 1\d weight\(s\)\. Received \d+"):
        qat.load_weights(path)  # why the helper exists: the masks are extra variables
    per_tensor = quantize_aware(_pruned_clustered(), "pcqat")  # no per-channel guess
    with pytest.raises(ModelLoadError, match="per_channel_clusters=True"):
        load_tfmot_qat_weights(per_tensor, path)
