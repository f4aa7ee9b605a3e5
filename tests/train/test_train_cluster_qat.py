"""cluster/quantize_aware: unique-value bounds, sparsity preservation, every QAT scheme, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt._keras import keras
from tflite_opt.errors import UnsupportedLayerError
from tflite_opt.train import (QAT_SCHEMES, LayerPolicy, cluster, prune, quantize_aware, strip,
                              training_callbacks, weight_stats)


def _fit(model, data, epochs=1, run_eagerly=False):
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy",
                  run_eagerly=run_eagerly)
    model.fit(*data, batch_size=32, epochs=epochs, verbose=0, callbacks=training_callbacks(model))
    return model


@pytest.fixture
def pruned_plain(tiny_cnn, small_train):
    """tiny_cnn pruned to 60% (stripped)."""
    return strip(_fit(prune(tiny_cnn, 0.6, schedule="constant", frequency=1), small_train))


def test_cluster_after_prune_keeps_sparsity_and_at_most_n_unique(pruned_plain, small_train):
    clustered = _fit(cluster(pruned_plain, 8, preserve_sparsity=True), small_train)
    wrapped_stats = weight_stats(clustered)
    stats = weight_stats(strip(clustered))
    for name in ("conv2", "conv3", "dense1"):
        assert stats[name]["unique_values"] <= 8
        assert stats[name]["sparsity"] >= 0.6 - 1e-6
        assert wrapped_stats[name]["unique_values"] <= 8  # as the wrapped layer computes
    assert stats["conv1"]["unique_values"] > 8  # skipped by the default policy


@pytest.mark.parametrize("init", ["kmeans++", "linear", "density", "random"])
def test_cluster_each_init_bounds_unique_values(tiny_cnn, tiny_train, init):
    stats = weight_stats(strip(_fit(cluster(tiny_cnn, 4, init=init, preserve_sparsity=False),
                                    tiny_train)))
    assert max(stats[n]["unique_values"] for n in ("conv2", "conv3", "dense1")) <= 4


def _max_unique_per_channel(kernel: np.ndarray) -> int:
    return max(np.unique(kernel[..., c]).size for c in range(kernel.shape[-1]))


def test_cluster_per_channel_then_pcqat_bounds_unique_per_output_channel(pruned_plain, tiny_train):
    # eager: per-channel clustering builds one set of ops per channel, slow to trace
    plain = strip(_fit(cluster(pruned_plain, 4, per_channel=True), tiny_train, run_eagerly=True))
    kernel = plain.get_layer("conv3").get_weights()[0]
    assert _max_unique_per_channel(kernel) <= 4 and np.unique(kernel).size > 4
    qat = _fit(quantize_aware(plain, "pcqat", per_channel_clusters=True), tiny_train,
               run_eagerly=True)
    qat_kernel = qat.get_layer("quant_conv3")._weight_vars[0][0].numpy()
    assert _max_unique_per_channel(qat_kernel) <= 4
    assert weight_stats(qat)["conv3"]["sparsity"] >= 0.6 - 1e-6


def test_per_layer_cluster_override(tiny_cnn, tiny_train):
    policy = LayerPolicy(clusters={"dense1": 3})
    stats = weight_stats(strip(_fit(cluster(tiny_cnn, 8, policy=policy, preserve_sparsity=False),
                                    tiny_train)))
    assert stats["dense1"]["unique_values"] <= 3 and 3 < stats["conv2"]["unique_values"] <= 8


def test_quantize_aware_every_scheme_wraps_all_kernels(pruned_plain):
    for scheme in sorted(QAT_SCHEMES):
        qat = quantize_aware(pruned_plain, scheme=scheme)
        names = {l.name for l in qat.layers}
        assert {"quant_conv1", "quant_conv2", "quant_dense1", "quant_classifier"} <= names, scheme
        assert set(weight_stats(qat)) == {"conv1", "conv2", "conv3", "dense1", "classifier"}


def test_pcqat_keeps_sparsity_and_cluster_count_in_every_layer(pruned_plain, small_train):
    """Guards the workaround for tfmot's shared (P)CQAT quantizer (see qat.py)."""
    clustered = strip(_fit(cluster(pruned_plain, 8), small_train))
    before = weight_stats(clustered)
    qat = _fit(quantize_aware(clustered, scheme="pcqat"), small_train, epochs=2)
    after = weight_stats(qat)
    for name in ("conv2", "conv3", "dense1"):
        assert after[name]["sparsity"] == pytest.approx(before[name]["sparsity"])
        assert after[name]["unique_values"] <= before[name]["unique_values"]


def test_pqat_keeps_sparsity(pruned_plain, tiny_train):
    qat = _fit(quantize_aware(pruned_plain, scheme="pqat"), tiny_train)
    assert weight_stats(qat)["dense1"]["sparsity"] == pytest.approx(0.6, abs=1e-3)


def test_resolve_scheme_auto_picks_what_earlier_stages_did():
    from tflite_opt.train.qat import resolve_scheme

    assert resolve_scheme("auto", True, True) == "pcqat"
    assert resolve_scheme("auto", False, True) == "cqat"
    assert resolve_scheme("auto", True, False) == "pqat"
    assert resolve_scheme("auto", False, False) == "default"


def test_quantize_aware_leaves_rescaling_float_and_wraps_the_rest(tiny_train):
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Rescaling(2.0, offset=-1.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(x)
    qat = _fit(quantize_aware(keras.Model(inputs, outputs)), tiny_train)
    names = {l.name for l in qat.layers}
    assert "rescale" in names and "quant_conv" in names and "quant_head" in names


class Scale(keras.layers.Layer):
    """A custom layer with a weight that tfmot does not know."""

    def build(self, input_shape):
        self.scale = self.add_weight(name="scale", shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return inputs * self.scale


def _custom_model():
    inputs = keras.Input((16, 16, 1))
    x = keras.layers.Conv2D(4, 3, name="conv_a")(inputs)
    x = keras.layers.Conv2D(4, 3, name="conv_b")(x)
    x = Scale(name="my_scale")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10, name="head")(x)
    return keras.Model(inputs, outputs)


@pytest.mark.parametrize("wrap", [
    lambda m, **kw: prune(m, 0.5, schedule="constant", **kw),
    lambda m, **kw: cluster(m, 4, **kw),
])
def test_custom_layer_raises_naming_layer_and_fix_then_skip_works(wrap):
    with pytest.raises(UnsupportedLayerError) as info:
        wrap(_custom_model())
    message = str(info.value)
    assert "'my_scale'" in message and "Scale" in message and "skip" in message
    wrapped = wrap(_custom_model(), policy=LayerPolicy(skip=("my_scale",)))
    assert any("conv_b" in l.name and l.name != "conv_b" for l in wrapped.layers)


def test_custom_layer_qat_raises_naming_layer_then_skip_keeps_it_float():
    with pytest.raises(UnsupportedLayerError, match="'my_scale' \\(Scale\\).*skip"):
        quantize_aware(_custom_model())
    with keras.utils.custom_object_scope({"Scale": Scale}):
        qat = quantize_aware(_custom_model(), skip=("my_scale",))
    assert "my_scale" in {l.name for l in qat.layers}


def test_nested_model_raises_naming_it():
    inner_in = keras.Input((8,))
    inner = keras.Model(inner_in, keras.layers.Dense(8, name="inner_dense")(inner_in), name="block")
    inputs = keras.Input((8,))
    x = keras.layers.Dense(8, name="d0")(inputs)
    x = inner(x)
    outputs = keras.layers.Dense(2, name="head")(x)
    model = keras.Model(inputs, outputs)
    with pytest.raises(UnsupportedLayerError, match="'block'.*nested model.*skip"):
        prune(model, 0.5, schedule="constant")
    with pytest.raises(UnsupportedLayerError, match="'block'.*nested"):
        quantize_aware(model)


def test_subclassed_model_raises_naming_class():
    class Net(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, inputs):
            return self.dense(inputs)

    net = Net()
    net(np.zeros((1, 4), np.float32))
    with pytest.raises(UnsupportedLayerError, match="Net.*subclassed.*functional"):
        prune(net, 0.5, schedule="constant")
