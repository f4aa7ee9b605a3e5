"""Every layer type the issue lists goes through prune -> cluster -> QAT; stats and callbacks."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt._keras import keras
from tflite_opt.train import (ClusterStage, OptimizationPlan, PruneStage, QATStage, Recipe,
                              StageSummary, cluster, prune, quantize_aware, strip, weight_stats)
from tflite_opt.train.qat import is_quantize_aware


def layer_zoo() -> keras.Model:
    """A functional model with Conv2D, DepthwiseConv2D, SeparableConv2D, Dense, BN, ReLU,
    ReLU6, Add, Concatenate, pooling, Dropout and Rescaling."""
    inputs = keras.Input((16, 16, 1), name="image")
    x = keras.layers.Rescaling(1.0 / 1.0, name="rescale")(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", name="stem")(x)
    x = keras.layers.BatchNormalization(name="stem_bn")(x)
    x = keras.layers.ReLU(6.0, name="stem_relu6")(x)
    a = keras.layers.DepthwiseConv2D(3, padding="same", name="dw")(x)
    a = keras.layers.BatchNormalization(name="dw_bn")(a)
    a = keras.layers.ReLU(name="dw_relu")(a)
    a = keras.layers.Conv2D(8, 1, name="pw")(a)
    x = keras.layers.Add(name="add")([x, a])
    b = keras.layers.SeparableConv2D(8, 3, padding="same", name="sep")(x)
    c = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="branch")(x)
    x = keras.layers.Concatenate(name="concat")([b, c])
    x = keras.layers.MaxPooling2D(name="pool")(x)
    x = keras.layers.AveragePooling2D(name="avgpool")(x)
    x = keras.layers.GlobalAveragePooling2D(name="gap")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc")(x)
    x = keras.layers.Dropout(0.2, name="drop")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs, name="zoo")


def test_layer_zoo_goes_through_whole_plan(tiny_train):
    model = layer_zoo()
    recipe = Recipe(stages=(PruneStage(epochs=1, schedule="constant", target_sparsity=0.5),
                            ClusterStage(epochs=1, number_of_clusters=4), QATStage(epochs=1)))
    result = OptimizationPlan(recipe).run(model, tiny_train, verbose=0, run_eagerly=True)
    assert is_quantize_aware(result.model)
    # selected: every prunable kernel but the first conv ("stem") and the classifier ("head")
    assert set(result.optimized_layers) == {"pw", "sep", "branch", "fc"}
    stats = result.layer_stats
    # "branch" feeds the Concatenate: guards the ConcatTransform workaround in qat.py
    for name in ("pw", "branch", "fc"):
        assert stats[name]["sparsity"] >= 0.5 - 1e-6 and stats[name]["unique_values"] <= 4
    # tfmot's QAT splits SeparableConv2D "sep" into a DepthwiseConv2D and a Conv2D ("conv2d")
    assert stats["conv2d"]["sparsity"] >= 0.5 - 1e-6 and stats["conv2d"]["unique_values"] <= 4
    assert set(stats) >= {"stem", "dw", "pw", "branch", "fc", "head"}
    assert max(s.max_unique_weights for s in result.stages[1:]) <= 4


def test_layer_zoo_sequential_form_prunes_and_strips(tiny_train):
    model = keras.Sequential([
        keras.Input((16, 16, 1)),
        keras.layers.Rescaling(1.0),
        keras.layers.Conv2D(4, 3),
        keras.layers.BatchNormalization(),
        keras.layers.ReLU(6.0),
        keras.layers.SeparableConv2D(8, 3),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.1),
        keras.layers.Dense(16),
        keras.layers.Dense(10),
    ])
    pruned = prune(model, 0.5, schedule="constant", frequency=1)
    pruned.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    from tflite_opt.train import training_callbacks

    pruned.fit(*tiny_train, epochs=1, verbose=0, callbacks=training_callbacks(pruned))
    plain = strip(pruned)
    assert isinstance(plain, keras.Sequential)
    assert [type(l) for l in plain.layers] == [type(l) for l in model.layers]
    assert weight_stats(plain)[model.layers[8].name]["sparsity"] == pytest.approx(0.5, abs=1e-2)


def test_weight_stats_same_keys_for_plain_pruned_clustered_and_qat(tiny_cnn):
    keys = set(weight_stats(tiny_cnn))
    assert keys == {"conv1", "conv2", "conv3", "dense1", "classifier"}
    assert set(weight_stats(prune(tiny_cnn, 0.5, schedule="constant"))) == keys
    assert set(weight_stats(cluster(tiny_cnn, 4))) == keys
    assert set(weight_stats(quantize_aware(tiny_cnn))) == keys
    dense = weight_stats(tiny_cnn)["dense1"]
    assert dense["size"] == tiny_cnn.get_layer("dense1").kernel.shape.num_elements()
    assert dense["sparsity"] == 0.0 and dense["unique_values"] > 0.99 * dense["size"]


def test_stage_summary_hooks_record_epochs_metrics_and_sparsity(tiny_cnn):
    summary = StageSummary("prune")
    summary.set_model(prune(tiny_cnn, 0.5, schedule="constant"))
    for _ in range(2):  # reusable: state resets on train begin
        summary.on_train_begin()
        summary.on_epoch_end(0, {"loss": 1.5, "accuracy": 0.5})
        summary.on_epoch_end(1, {"loss": 1.0, "accuracy": 0.75, "sparsity": 0.5})
        summary.on_train_end()
        assert summary.summary["epochs"] == 2
        assert summary.summary["metrics"] == {"loss": 1.0, "accuracy": 0.75}
        assert summary.summary["sparsity"] == 0.0  # no training step yet: masks all ones
        assert summary.summary["max_unique_weights"] > 4


def test_cluster_then_strip_on_separable_and_depthwise_bounds_unique(tiny_train):
    model = layer_zoo()
    clustered = cluster(model, 4, preserve_sparsity=False)
    clustered.compile("adam", "sparse_categorical_crossentropy")
    clustered.fit(*tiny_train, epochs=1, verbose=0)
    stats = weight_stats(strip(clustered))
    assert stats["pw"]["unique_values"] <= 4 and stats["fc"]["unique_values"] <= 4
    # tfmot clusters SeparableConv2D's pointwise kernel only; the depthwise one stays float
    sep = strip(clustered).get_layer("sep")
    assert np.unique(sep.pointwise_kernel.numpy()).size <= 4
