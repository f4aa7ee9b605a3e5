"""Keras 3 pruning and clustering internals: schedules, masks, centroids, errors, files.

The end-to-end cases run on both Kerases in ``test_train_both_kerases.py``; these pin the math
of the hand-written Keras 3 implementation against closed forms and its error messages.
"""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

import tflite_opt  # noqa: E402
from tflite_opt.errors import (ConversionError, InvalidArgumentError, UnsafeModelError,  # noqa: E402
                               UnsupportedLayerError)
from tflite_opt.train import LayerPolicy, PruneStage, cluster, prune, strip  # noqa: E402
from tflite_opt.train.keras3 import (ClusterWeights, ConstantSparsity, PolynomialDecay,  # noqa: E402
                                     PruneLowMagnitude, initial_centroids, m_by_n_mask,
                                     magnitude_mask, schedule_for_stage)


def _mlp():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8,)), keras.layers.Dense(12, name="hidden"),
                             keras.layers.Dense(16, name="dense1"),
                             keras.layers.Dense(3, name="classifier")])


def _as_numpy(value):
    return np.asarray(keras.ops.convert_to_numpy(value))


@pytest.mark.parametrize("step", [0, 10, 35, 60, 100, 130])
def test_polynomial_decay_matches_the_closed_form(step):
    schedule = PolynomialDecay(0.1, 0.8, begin_step=10, end_step=110, power=3, frequency=25)
    should_prune, sparsity = schedule(step)
    progress = min(max((step - 10) / 100, 0.0), 1.0)
    assert float(_as_numpy(sparsity)) == pytest.approx(0.8 + (0.1 - 0.8) * (1 - progress) ** 3,
                                                       abs=1e-6)
    assert bool(_as_numpy(should_prune)) == (10 <= step <= 110 and (step - 10) % 25 == 0)


def test_schedules_round_trip_through_keras_serialization():
    for schedule in (PolynomialDecay(0.0, 0.5, begin_step=2, end_step=40, frequency=4),
                     ConstantSparsity(0.3, begin_step=5, frequency=7)):
        config = keras.saving.serialize_keras_object(schedule)
        again = keras.saving.deserialize_keras_object(config)
        assert type(again) is type(schedule) and again.get_config() == schedule.get_config()


def test_constant_sparsity_prunes_every_frequency_steps_without_end():
    schedule = ConstantSparsity(0.6, begin_step=4, frequency=3)
    pruning_steps = [s for s in range(40) if bool(_as_numpy(schedule(s)[0]))]
    assert pruning_steps == list(range(4, 40, 3))
    assert float(_as_numpy(schedule(1000)[1])) == pytest.approx(0.6)


def test_schedule_for_stage_ends_the_ramp_on_the_update_grid():
    schedule = schedule_for_stage(PruneStage(target_sparsity=0.7, end_fraction=0.7, frequency=3),
                                  total_steps=100)
    assert (schedule.end_step - schedule.begin_step) % schedule.frequency == 0
    assert schedule.end_step <= 100 and schedule.final_sparsity == 0.7


def test_bad_schedule_arguments_name_the_argument():
    with pytest.raises(InvalidArgumentError, match="end_step"):
        PolynomialDecay(0.0, 0.5, begin_step=10, end_step=10)
    with pytest.raises(InvalidArgumentError, match="target_sparsity"):
        ConstantSparsity(1.0)


def test_magnitude_mask_keeps_the_largest_weights_and_never_revives_zeros():
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(10, 10)).astype("float32")
    weights[0, :5] = 0.0  # pruned earlier
    mask = _as_numpy(magnitude_mask(keras.ops.convert_to_tensor(weights), 0.3))
    assert mask.sum() == 70
    assert (mask[0, :5] == 0).all()
    kept, dropped = np.abs(weights[mask == 1]), np.abs(weights[mask == 0])
    assert kept.min() >= dropped.max()


@pytest.mark.parametrize("shape", [(10, 6), (3, 3, 5, 4)])
def test_m_by_n_mask_keeps_two_of_every_four_inputs_in_tflite_order(shape):
    weights = np.random.default_rng(1).normal(size=shape).astype("float32")
    mask = _as_numpy(m_by_n_mask(keras.ops.convert_to_tensor(weights), (2, 4)))
    rows = mask.T if mask.ndim == 2 else np.moveaxis(mask, -1, 0).reshape(-1, shape[-2])
    columns = rows.shape[1]
    padded = np.pad(rows, ((0, 0), (0, (-columns) % 4)))
    assert (padded.reshape(rows.shape[0], -1, 4).sum(-1) <= 2).all()
    # in each full block the two kept weights are the two largest
    full = (columns // 4) * 4
    magnitude = np.abs(weights.T if weights.ndim == 2 else
                       np.moveaxis(weights, -1, 0).reshape(-1, shape[-2]))[:, :full]
    blocks, kept = magnitude.reshape(-1, 4), rows[:, :full].reshape(-1, 4)
    assert (np.sort(blocks, -1)[:, 2:].sum(-1) == pytest.approx((blocks * kept).sum(-1)))


def test_initial_centroids_follow_the_requested_init():
    values = np.linspace(-1.0, 1.0, 201)
    assert initial_centroids(values, 5, "linear") == pytest.approx([-1.0, -0.5, 0.0, 0.5, 1.0])
    assert initial_centroids(values, 3, "density") == pytest.approx([-1.0, 0.0, 1.0])
    seeded = initial_centroids(values, 4, "kmeans++", seed=3)
    assert seeded.shape == (4,) and set(seeded) <= set(values.astype("float32"))
    # fewer distinct values than centroids: each value is a centroid
    assert set(initial_centroids(np.array([0.5, 0.5, 2.0]), 4, "kmeans++")) == {0.5, 2.0}
    with pytest.raises(InvalidArgumentError, match="init"):
        initial_centroids(values, 4, "median")


def test_sparsity_preserving_cluster_reserves_one_of_k_values_for_zero():
    model = _mlp()
    kernel = model.get_layer("dense1").kernel
    values = _as_numpy(kernel)
    values[:, :8] = 0.0
    kernel.assign(values)
    clustered = cluster(model, 6, init="linear", policy=LayerPolicy(only=("dense1",)))
    wrapper = clustered.get_layer("cluster_dense1")
    assert isinstance(wrapper, ClusterWeights) and wrapper.reserve_zero
    assert tuple(wrapper.cluster_centroids.shape) == (5,)  # 5 centroids + the preserved zero
    out = _as_numpy(strip(clustered).get_layer("dense1").kernel)
    assert (out[:, :8] == 0).all() and np.unique(out).size <= 6


def test_strip_returns_plain_keras3_layers_and_leaves_the_callers_model_alone():
    model = _mlp()
    before = [w.copy() for w in model.get_weights()]
    pruned = prune(model, 0.5, schedule="constant", frequency=1)
    assert any(isinstance(l, PruneLowMagnitude) for l in pruned.layers)
    plain = strip(pruned)
    assert [l.name for l in plain.layers] == [l.name for l in model.layers]
    assert [type(l) for l in plain.layers] == [type(l) for l in model.layers]
    assert all(np.array_equal(a, b) for a, b in zip(before, model.get_weights()))


def test_prune_on_a_wrapped_model_says_to_strip_first():
    pruned = prune(_mlp(), 0.5, schedule="constant")
    with pytest.raises(InvalidArgumentError, match="strip"):
        cluster(pruned, 8)


def test_subclassed_and_unknown_layers_are_refused_with_the_way_out():
    class Subclassed(keras.Model):
        def __init__(self):
            super().__init__()
            self.dense = keras.layers.Dense(2)

        def call(self, x):
            return self.dense(x)

    subclassed = Subclassed()
    subclassed(np.zeros((1, 4), "float32"))
    with pytest.raises(UnsupportedLayerError, match="subclassed"):
        prune(subclassed, 0.5, schedule="constant")

    inputs = keras.Input((4, 6))
    outputs = keras.layers.Dense(2, name="head")(keras.layers.LSTM(5, name="rnn")(inputs))
    recurrent = keras.Model(inputs, outputs)
    with pytest.raises(UnsupportedLayerError, match=r"'rnn' \(LSTM\).*LayerPolicy\(skip=\['rnn'\]\)"):
        prune(recurrent, 0.5, schedule="constant", policy=LayerPolicy(skip_classifier=False))
    with pytest.raises(InvalidArgumentError, match="'nope'"):
        prune(_mlp(), 0.5, schedule="constant", policy=LayerPolicy(skip=("nope",)))


def test_load_model_reads_a_keras3_file_as_keras3_and_scans_it_first(tmp_path):
    model = _mlp()
    path = tmp_path / "k3.keras"
    model.save(path)
    loaded = tflite_opt.load_model(path)
    assert tflite_opt.keras_flavor(loaded) == "keras3"
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), loaded.get_weights()))

    inputs = keras.Input((3,))
    lambda_model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2, name="double")(inputs))
    lambda_path = tmp_path / "lambda.keras"
    lambda_model.save(lambda_path)
    with pytest.raises(UnsafeModelError, match="double"):
        tflite_opt.load_model(lambda_path)


def test_converting_on_another_keras_backend_names_the_tensorflow_backend(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(ConversionError, match="KERAS_BACKEND=tensorflow"):
        tflite_opt.convert(_mlp(), "float32")


def test_training_callbacks_of_a_pruned_keras3_model_log_sparsity_in_fit():
    model = prune(_mlp(), 0.5, schedule="constant", frequency=1)
    model.compile(optimizer="sgd", loss="mse")
    callbacks = tflite_opt.training_callbacks(model)
    assert type(callbacks[0]).__name__ == "PruningStepKeras3"
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    history = model.fit(x, np.zeros((16, 3), "float32"), batch_size=8, epochs=1, verbose=0,
                        callbacks=callbacks)
    assert history.history["sparsity"] == [pytest.approx(0.5, abs=1 / (12 * 16))]
    assert callbacks[0].step == 2


def test_plan_runs_prune_then_cluster_on_keras3_and_restores_a_finished_run(small_train, tmp_path):
    from tflite_opt.train import ClusterStage, OptimizationPlan, Recipe

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(name="flatten"),
                              keras.layers.Dense(24, activation="relu", name="dense1"),
                              keras.layers.Dense(10, activation="softmax", name="classifier")])
    recipe = Recipe(stages=(PruneStage(epochs=1, target_sparsity=0.5),
                            ClusterStage(epochs=1, number_of_clusters=8)))
    result = OptimizationPlan(recipe).run(model, small_train, verbose=0, checkpoint_dir=tmp_path)
    assert tflite_opt.keras_flavor(result.model) == "keras3"
    assert [s.name for s in result.stages] == ["prune", "cluster"]
    assert result.optimized_layers == ("dense1",)
    assert result.sparsity == pytest.approx(0.5, abs=1 / (256 * 24))
    assert result.max_unique_weights <= 8
    # a rerun with the same recipe and folder restores the final model without training
    again = OptimizationPlan(recipe).run(model, small_train, verbose=0, checkpoint_dir=tmp_path)
    assert tflite_opt.keras_flavor(again.model) == "keras3"
    assert all(np.array_equal(a, b) for a, b in zip(result.model.get_weights(),
                                                    again.model.get_weights()))


def test_a_keras3_prune_fit_strip_export_never_imports_tfmot(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, numpy as np, keras, tflite_opt\n"
        "m = keras.Sequential([keras.Input((8,)), keras.layers.Dense(12, name='hidden'),\n"
        "                      keras.layers.Dense(3, name='classifier')])\n"
        "p = tflite_opt.prune(m, 0.5, schedule='constant', frequency=1)\n"
        "p.compile(optimizer='sgd', loss='mse')\n"
        "x = np.random.default_rng(0).normal(size=(16, 8)).astype('float32')\n"
        "p.fit(x, np.zeros((16, 3), 'float32'), epochs=1, verbose=0,\n"
        "      callbacks=tflite_opt.training_callbacks(p))\n"
        "tflite_opt.weight_stats(tflite_opt.strip(p))\n"
        f"tflite_opt.export(p, {str(tmp_path / 'm.tflite')!r}, 'float32')\n"
        "print('tensorflow_model_optimization' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.split()[-1] == "False"


@pytest.mark.parametrize("make_layer", ["keras", "tf_keras"])
def test_a_bare_layer_of_either_keras_is_refused_with_the_public_way_out(make_layer):
    module = keras if make_layer == "keras" else pytest.importorskip("tf_keras")
    with pytest.raises(InvalidArgumentError, match=r"keras\.Sequential\(\[keras\.Input"):
        prune(module.layers.Dense(2), 0.5, schedule="constant")


def test_the_public_pruning_step_callback_also_serves_keras3_models():
    from tflite_opt.train import PruningStep

    model = prune(_mlp(), 0.5, schedule="constant", frequency=1)
    model.compile(optimizer="sgd", loss="mse")
    x = np.random.default_rng(0).normal(size=(16, 8)).astype("float32")
    callback = PruningStep()
    model.fit(x, np.zeros((16, 3), "float32"), batch_size=8, epochs=1, verbose=0,
              callbacks=[callback])
    assert (callback.start_step, callback.step) == (0, 2)


def test_plan_interrupted_mid_stage_resumes_keras3_from_its_epoch_checkpoint(small_train, tmp_path):
    from tflite_opt.train import OptimizationPlan, Recipe

    class Interrupt(Exception):
        pass

    class StopAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise Interrupt  # after the plan's own checkpoint of this epoch

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16, 16, 1)), keras.layers.Flatten(name="flatten"),
                              keras.layers.Dense(24, activation="relu", name="dense1"),
                              keras.layers.Dense(10, activation="softmax", name="classifier")])
    recipe = Recipe(stages=(PruneStage(epochs=2, target_sparsity=0.5, end_fraction=1.0),))
    with pytest.raises(Interrupt):
        OptimizationPlan(recipe).run(model, small_train, verbose=0, checkpoint_dir=tmp_path,
                                     callbacks=[StopAfterFirstEpoch()])
    assert list(tmp_path.glob("stage0_epoch001/ckpt.weights.h5"))
    result = OptimizationPlan(recipe).run(model, small_train, verbose=0, checkpoint_dir=tmp_path)
    assert result.stages[0].epochs == 2
    # the schedule went on from step 8 (not 0), so it reached its target at step 16
    assert result.sparsity == pytest.approx(0.5, abs=1 / (256 * 24))
