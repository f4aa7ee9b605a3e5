"""OnDeviceTrainer: training only through the .tflite matches Keras, learns, checkpoints exactly."""

from __future__ import annotations

import numpy as np
import pytest

from tests.ondevice.conftest import CASES, one_hot

IDS = [case.id for case in CASES]
STEPS = 4
BATCH = 8


def _batches(digits8, case):
    x = digits8.x_train[:STEPS * BATCH]
    y = digits8.y_train[:STEPS * BATCH]
    labels = one_hot(y) if case.loss == "categorical_crossentropy" else y.astype(np.int32)
    return [(x[i:i + BATCH], labels[i:i + BATCH]) for i in range(0, len(x), BATCH)]


def _keras_twin(item, optimizer=None):
    """The exported model in Keras, from the same initial weights, base frozen, same optimizer
    (or ``optimizer``, an ``OptimizerSpec``)."""
    from tflite_opt._keras import keras_of_flavor
    from tests.ondevice.conftest import build_model

    case = item.case
    keras = keras_of_flavor(case.flavor)
    model = build_model(case)
    model.set_weights(item.initial_weights)
    for layer in model.layers:
        layer.trainable = layer.name in item.result.trainable_layers
    loss_class = {"sparse_categorical_crossentropy": keras.losses.SparseCategoricalCrossentropy,
                  "categorical_crossentropy": keras.losses.CategoricalCrossentropy}[case.loss]
    model.compile(optimizer=(optimizer or item.result.optimizer).keras_optimizer(keras),
                  loss=loss_class(from_logits=item.result.output == "logits"))
    return model


@pytest.mark.parametrize("case_id", IDS)
def test_train_steps_match_keras_training(exported, digits8, case_id):
    """The same steps, initial weights, data and optimizer math as Keras give the same numbers."""
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    item = exported[case_id]
    trainer = OnDeviceTrainer(item.result.path)
    keras_model = _keras_twin(item)
    batches = _batches(digits8, item.case)
    device_losses = [trainer.train_step(x, y) for x, y in batches]
    keras_losses = [float(np.asarray(keras_model.train_on_batch(x, y))) for x, y in batches]
    # float32 forward/backward in a different op order: agreement to ~1e-5 relative; a wrong
    # gradient, update or loss would differ at the first or second step by far more.
    np.testing.assert_allclose(device_losses, keras_losses, rtol=2e-4, atol=1e-5)
    assert device_losses[-1] < device_losses[0]
    expected = [w for name in item.result.trainable_layers
                for w in keras_model.get_layer(name).get_weights()]
    for got, want in zip(trainer.get_weights(), expected):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-5)
    # ...and the trained weights moved away from the initial ones by more than that tolerance.
    initial = OnDeviceTrainer(item.result.path).get_weights()
    assert max(np.abs(a - b).max() for a, b in zip(trainer.get_weights(), initial)) > 1e-3


def test_fit_lowers_loss_and_raises_held_out_accuracy(exported, digits8):
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    trainer = OnDeviceTrainer(exported["keras3-mlp-adam"].result.path)
    before = trainer.evaluate(digits8.x_test, digits8.y_test)
    losses = trainer.fit(digits8.x_train, digits8.y_train, epochs=4, batch_size=32, seed=0)
    after = trainer.evaluate(digits8.x_test, digits8.y_test)
    assert len(losses) == 4 and losses[-1] < losses[0] * 0.5
    assert after["loss"] < before["loss"]
    # 360 held-out images: chance is 10% (+-5 points at 3 sigma); a learned 64-16-10 MLP on
    # the digits is far above, so 50% cannot be reached by chance or by a broken update.
    assert before["accuracy"] < 0.3 and after["accuracy"] > 0.5


def test_fixed_batch_size_is_enforced_and_fit_skips_the_remainder(exported, digits8):
    from tflite_opt.errors import DataError, InvalidArgumentError
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    trainer = OnDeviceTrainer(exported["keras3-cnn-sgd"].result.path)
    assert trainer.batch_size == 8
    x, y = digits8.x_train[:20], digits8.y_train[:20]
    with pytest.raises(DataError, match="batch_size=8"):
        trainer.train_step(x[:5], y[:5])
    with pytest.raises(InvalidArgumentError, match="pass batch_size=8"):
        trainer.fit(x, y, batch_size=4)
    assert len(trainer.fit(x, y, batch_size=8, seed=0)) == 1  # 2 batches of 8; 4 skipped
    assert trainer.infer(x[:3]).shape == (3, 10)  # infer takes any batch


@pytest.mark.parametrize("case_id", ["tf_keras-mlp-sgd", "keras3-mlp-adam"])
def test_checkpoint_round_trip_is_exact_and_resumes_training(exported, digits8, tmp_path,
                                                             case_id):
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    item = exported[case_id]
    trainer = OnDeviceTrainer(item.result.path)
    batches = _batches(digits8, item.case)
    for x, y in batches[:2]:
        trainer.train_step(x, y)
    weights, state = trainer.get_weights(), trainer.get_optimizer_state()
    trainer.save(tmp_path / "ckpt.npz")
    continued = [trainer.train_step(x, y) for x, y in batches[2:]]
    resumed = OnDeviceTrainer(item.result.path)
    resumed.restore(tmp_path / "ckpt.npz")
    for a, b in zip(resumed.get_weights() + resumed.get_optimizer_state(), weights + state):
        np.testing.assert_array_equal(a, b)
    # Same weights and optimizer state, same kernels: the same losses bit for bit.
    assert [resumed.train_step(x, y) for x, y in batches[2:]] == continued


def test_set_weights_starts_a_fresh_optimizer_unless_told_otherwise(exported, digits8):
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    path = exported["keras3-mlp-adam"].result.path
    (x0, y0), (x1, y1) = _batches(digits8, exported["keras3-mlp-adam"].case)[:2]
    trained = OnDeviceTrainer(path)
    trained.fit(digits8.x_train[:64], digits8.y_train[:64], batch_size=16, seed=0)
    weights = trained.get_weights()
    assert trained.get_optimizer_state()[-1] == 4.0  # Adam's step after 4 batches
    fresh = OnDeviceTrainer(path)
    fresh.set_weights(weights)
    kept = OnDeviceTrainer(path)
    kept.set_weights(weights)
    kept.train_step(x0, y0)
    kept.set_weights(weights, reset_optimizer=False)  # weights back, Adam moments kept
    trained.set_weights(weights)  # the default resets
    assert all(not s.any() for s in trained.get_optimizer_state())
    assert trained.train_step(x1, y1) == fresh.train_step(x1, y1)
    np.testing.assert_array_equal(trained.get_weights()[0], fresh.get_weights()[0])
    kept.train_step(x1, y1)
    assert not np.array_equal(kept.get_weights()[0], fresh.get_weights()[0])
    trained.reset_optimizer()
    assert all(not s.any() for s in trained.get_optimizer_state())


def test_bad_weights_are_refused_by_name_and_change_nothing(exported, tmp_path):
    from tflite_opt.errors import DataError, InvalidArgumentError
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    trainer = OnDeviceTrainer(exported["tf_keras-mlp-sgd"].result.path)
    weights = trainer.get_weights()
    nan = [w.copy() for w in weights]
    nan[2][1, 1] = np.nan
    cases = ((weights[:3], "has 3 arrays.*has 4"),
             ([weights[0], weights[1], weights[2].T, weights[3]],
              "'w002_classifier_kernel' has shape"),
             ([weights[0].astype(np.int32)] + weights[1:], "'w000_dense1_kernel' has dtype int32"),
             (nan, "'w002_classifier_kernel' holds 1 NaN"),
             (weights[0], "must be a list of 4 arrays"))
    for bad, pattern in cases:
        with pytest.raises(InvalidArgumentError, match=pattern):
            trainer.set_weights(bad)
    for a, b in zip(trainer.get_weights(), weights):
        np.testing.assert_array_equal(a, b)
    # Checkpoints: another model's, a pickled array, a non-npz file.
    np.savez(tmp_path / "other.npz", w000_other=np.zeros(3, np.float32))
    with pytest.raises(DataError, match="w000_other.*another model"):
        trainer.restore(tmp_path / "other.npz")
    state = dict(zip([n for n, _, _ in trainer.weight_specs + trainer.slot_specs],
                     weights + trainer.get_optimizer_state()))
    state["w001_dense1_bias"] = np.array([object()] * 16)
    np.savez(tmp_path / "pickled.npz", **state)
    with pytest.raises(DataError, match="never unpickles"):
        trainer.restore(tmp_path / "pickled.npz")
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(DataError, match="not .*npz|could not read"):
        trainer.restore(tmp_path / "text.npz")
    for a, b in zip(trainer.get_weights(), weights):
        np.testing.assert_array_equal(a, b)


def test_bad_data_and_non_training_files_are_refused(exported, digits8, tmp_path):
    from tflite_opt.errors import DataError, InvalidTFLiteError
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    trainer = OnDeviceTrainer(exported["tf_keras-mlp-sgd"].result.path)
    x, y = digits8.x_train[:8], digits8.y_train[:8]
    with pytest.raises(DataError, match=r"labels from .* to 10.*classes 0 to 9"):
        trainer.train_step(x, np.full(8, 10))
    with pytest.raises(DataError, match=r"shape \(8, 8, 8\)"):
        trainer.train_step(x[..., 0], y)
    bad = x.copy()
    bad[0, 0, 0, 0] = np.inf
    with pytest.raises(DataError, match="1 NaN or infinite"):
        trainer.train_step(bad, y)
    # An inference-only .tflite is not a training file.
    from tflite_opt._keras import tf

    plain = tf.lite.TFLiteConverter.from_keras_model(exported["tf_keras-mlp-sgd"].model).convert()
    with pytest.raises(InvalidTFLiteError, match="lacks the on-device training signatures"):
        OnDeviceTrainer(plain)
