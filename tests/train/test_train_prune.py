"""prune/strip: schedules, per-layer policy, 2:4 structure, callbacks and checkpoint resume."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt._keras import keras
from tflite_opt.errors import InvalidArgumentError
from tflite_opt.train import (LayerPolicy, PruneStage, PruningStep, SparsityLogger, optimize_scope,
                              prune, pruning_schedule, strip, training_callbacks, weight_stats)


def _fit(model, data, epochs=1, callbacks=()):
    x, y = data
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    return model.fit(x, y, batch_size=32, epochs=epochs, verbose=0,
                     callbacks=[*training_callbacks(model), *callbacks])


def test_prune_polynomial_then_strip_reaches_target_and_skips_first_conv_and_classifier(
        tiny_cnn, small_train):
    before = [w.copy() for w in tiny_cnn.get_weights()]
    pruned = prune(tiny_cnn, 0.75, end_step=8, frequency=2)
    _fit(pruned, small_train)
    stats = weight_stats(strip(pruned))
    for name in ("conv2", "conv3", "dense1"):
        assert stats[name]["sparsity"] == pytest.approx(0.75, abs=1e-3)
    assert stats["conv1"]["sparsity"] == 0.0 and stats["classifier"]["sparsity"] == 0.0
    # the caller's model is untouched
    assert all(np.array_equal(a, b) for a, b in zip(before, tiny_cnn.get_weights()))


def test_strip_returns_plain_layers_with_same_names(tiny_cnn, small_train):
    pruned = prune(tiny_cnn, 0.5, schedule="constant", frequency=1)
    _fit(pruned, small_train)
    plain = strip(pruned)
    assert [l.name for l in plain.layers] == [l.name for l in tiny_cnn.layers]
    assert [type(l) for l in plain.layers] == [type(l) for l in tiny_cnn.layers]


def test_constant_schedule_prunes_to_target_from_first_update(tiny_cnn, small_train):
    pruned = prune(tiny_cnn, 0.5, schedule="constant", frequency=1)
    _fit(pruned, small_train)
    assert weight_stats(strip(pruned))["dense1"]["sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_polynomial_schedule_end_step_snapped_to_frequency_grid():
    schedule = pruning_schedule(PruneStage(target_sparsity=0.8, frequency=7), end_step=50)
    config = schedule.get_config()["config"]
    assert (config["end_step"] - config["begin_step"]) % config["frequency"] == 0
    assert config["end_step"] <= 50
    # at the snapped end step, the schedule asks for exactly the target
    should_prune, sparsity = schedule(config["end_step"])
    assert bool(should_prune) and float(sparsity) == pytest.approx(0.8)


def test_polynomial_without_steps_raises_naming_end_step(tiny_cnn):
    with pytest.raises(InvalidArgumentError, match="end_step"):
        prune(tiny_cnn, 0.5)


def test_per_layer_sparsity_override_applies_to_that_layer(tiny_cnn, small_train):
    policy = LayerPolicy(sparsity={"dense1": 0.9})
    pruned = prune(tiny_cnn, 0.5, schedule="constant", frequency=1, policy=policy)
    _fit(pruned, small_train)
    stats = weight_stats(strip(pruned))
    assert stats["dense1"]["sparsity"] == pytest.approx(0.9, abs=1e-3)
    assert stats["conv2"]["sparsity"] == pytest.approx(0.5, abs=1e-3)


def test_policy_skip_and_only_select_layers(tiny_cnn, small_train):
    pruned = prune(tiny_cnn, 0.5, schedule="constant", frequency=1,
                   policy=LayerPolicy(only=("conv3", "classifier"), skip_classifier=False))
    _fit(pruned, small_train)
    stats = weight_stats(strip(pruned))
    assert stats["conv3"]["sparsity"] == pytest.approx(0.5, abs=1e-3)
    assert stats["classifier"]["sparsity"] == pytest.approx(0.5, abs=1e-2)
    assert stats["conv2"]["sparsity"] == 0.0 and stats["dense1"]["sparsity"] == 0.0


def test_policy_naming_missing_layer_raises_listing_layers(tiny_cnn):
    with pytest.raises(InvalidArgumentError, match="'nope'.*conv2"):
        prune(tiny_cnn, 0.5, schedule="constant", policy=LayerPolicy(skip=("nope",)))


def test_m_by_n_2_4_every_block_of_four_has_two_zeros(tiny_cnn, small_train):
    pruned = prune(tiny_cnn, 0.5, schedule="constant", frequency=1, m_by_n=(2, 4))
    _fit(pruned, small_train)
    kernel = strip(pruned).get_layer("dense1").get_weights()[0]  # (in, out); blocks along in
    blocks = kernel.T.reshape(kernel.shape[1], -1, 4)
    assert np.all((blocks == 0).sum(axis=-1) >= 2)


def test_sequential_model_prunes_dense_and_conv(small_train):
    model = keras.Sequential([
        keras.layers.Rescaling(1.0, input_shape=(16, 16, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.DepthwiseConv2D(3),
        keras.layers.SeparableConv2D(8, 3),
        keras.layers.ReLU(6.0),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(16, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    pruned = prune(model, 0.5, schedule="constant", frequency=1)
    _fit(pruned, small_train)
    plain = strip(pruned)
    stats = weight_stats(plain)
    assert stats[model.layers[6].name]["sparsity"] == pytest.approx(0.5, abs=1e-2)
    # tfmot prunes the pointwise kernel of SeparableConv2D, not its depthwise kernel
    pointwise = plain.layers[3].pointwise_kernel.numpy()
    assert np.mean(pointwise == 0) == pytest.approx(0.5)
    assert stats[model.layers[1].name]["sparsity"] == 0.0  # first conv skipped


def test_pruning_step_resumes_after_model_checkpoint_reload(tiny_cnn, small_train, tmp_path):
    x, y = small_train
    steps = len(x) // 32
    pruned = prune(tiny_cnn, 0.6, end_step=2 * steps, frequency=1)
    pruned.compile("adam", "sparse_categorical_crossentropy")
    path = tmp_path / "mid.keras"
    pruned.fit(x, y, batch_size=32, epochs=1, verbose=0,
               callbacks=[PruningStep(), keras.callbacks.ModelCheckpoint(str(path))])
    mid_sparsity = weight_stats(pruned)["dense1"]["sparsity"]
    assert 0.0 < mid_sparsity < 0.6
    with optimize_scope():
        reloaded = keras.models.load_model(path)
    step = PruningStep()
    reloaded.fit(x, y, batch_size=32, epochs=1, verbose=0, callbacks=[step])
    assert step.start_step == steps  # continues where the checkpoint left the schedule
    assert step.step == 2 * steps
    assert weight_stats(strip(reloaded))["dense1"]["sparsity"] == pytest.approx(0.6, abs=1e-3)


def test_sparsity_logger_adds_logs_and_writes_tensorboard_events(tiny_cnn, small_train, tmp_path):
    pruned = prune(tiny_cnn, 0.5, schedule="constant", frequency=1)
    logger = SparsityLogger(log_dir=tmp_path / "tb")
    pruned.compile("adam", "sparse_categorical_crossentropy")
    history = pruned.fit(*small_train, batch_size=32, epochs=2, verbose=0,
                         callbacks=[PruningStep(), logger])
    assert history.history["sparsity"][-1] == pytest.approx(0.5, abs=1e-3)
    assert len(logger.history) == 2 and "dense1" in logger.history[-1]["layers"]
    from tflite_opt._keras import tf

    events = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    tags = {value.tag for path in events
            for event in tf.compat.v1.train.summary_iterator(str(path))
            for value in event.summary.value}
    assert {"sparsity/model", "sparsity/dense1", "unique_values/dense1"} <= tags


def test_prune_or_cluster_on_wrapped_model_raises_telling_to_strip(tiny_cnn):
    from tflite_opt.train import cluster

    pruned = prune(tiny_cnn, 0.5, schedule="constant")
    with pytest.raises(InvalidArgumentError, match="already wrapped.*strip"):
        cluster(pruned, 4)
    with pytest.raises(InvalidArgumentError, match="already wrapped.*strip"):
        prune(pruned, 0.5, schedule="constant")
