"""A run stopped and restored resumes where it stopped: weights, optimizer state, step and rate."""

from __future__ import annotations

import numpy as np
import pytest

# tf_keras SGD with momentum (no step before this change), Keras 3 Adam (its step is its own).
CASE_IDS = ("tf_keras-mlp-sgd", "keras3-mlp-adam")
SAMPLES, BATCH = 64, 16  # 4 steps an epoch
HALF = SAMPLES // BATCH  # N = 2 * HALF steps in all, HALF before the stop


def _schedule():
    from tflite_opt.ondevice.schedules import warmup_cosine

    # Warm-up over the first 3 steps, so a second warm-up after the restart would show.
    return warmup_cosine(0.05, total_steps=2 * HALF, warmup_steps=3)


def _second_epoch_data(x, y, seed):
    """``(x, y)`` reordered so that ``fit(seed=seed)``'s first epoch visits them as the second
    epoch of ``fit(x, y, epochs=2, seed=seed)`` does (``fit`` shuffles each call afresh)."""
    rng = np.random.default_rng(seed)
    first, second = rng.permutation(len(x)), rng.permutation(len(x))
    # fit visits x2[first]; x2 = x[second][argsort(first)] makes x2[first[i]] = x[second[i]].
    order = second[np.argsort(first)]
    return x[order], y[order]


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_schedule_resumed_from_a_checkpoint_equals_one_uninterrupted_run(
        exported, digits8, tmp_path, case_id):
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    path = exported[case_id].result.path
    x, y = digits8.x_train[:SAMPLES], digits8.y_train[:SAMPLES].astype(np.int32)
    schedule = _schedule()
    whole = OnDeviceTrainer(path)
    whole.fit(x, y, epochs=2, batch_size=BATCH, seed=7, learning_rate=schedule)
    assert whole.global_step == 2 * HALF

    first = OnDeviceTrainer(path)
    first.fit(x, y, epochs=1, batch_size=BATCH, seed=7, learning_rate=schedule)
    first.save(tmp_path / "ckpt.npz")
    resumed = OnDeviceTrainer(path)  # the app restarts: a new interpreter on the same file
    resumed.restore(tmp_path / "ckpt.npz")
    assert resumed.global_step == HALF
    # The rate the first run stopped at, read back from the file: float32 of schedule(HALF-1).
    assert resumed.learning_rate == first.learning_rate == np.float32(schedule(HALF - 1))
    x2, y2 = _second_epoch_data(x, y, seed=7)
    resumed.fit(x2, y2, epochs=1, batch_size=BATCH, seed=7, learning_rate=schedule)
    assert resumed.global_step == 2 * HALF
    assert resumed.learning_rate == whole.learning_rate == np.float32(schedule(2 * HALF - 1))
    # Same batches, same rates (each float32(schedule(step))), weights and optimizer state
    # restored bit for bit from the npz, same kernels in one process: the same float32 ops
    # on the same operands, so equal exactly, not just to rounding.
    for a, b in zip(resumed.get_weights() + resumed.get_optimizer_state(),
                    whole.get_weights() + whole.get_optimizer_state()):
        np.testing.assert_array_equal(a, b)

    # What the runner did before: the schedule restarted at step 0 (a second warm-up).
    restarted = OnDeviceTrainer(path)
    restarted.restore(tmp_path / "ckpt.npz")
    restarted.fit(x2, y2, epochs=1, batch_size=BATCH, seed=7, learning_rate=schedule,
                  initial_step=0)
    assert restarted.global_step == 2 * HALF  # the count goes on; only the schedule restarted
    assert restarted.learning_rate == np.float32(schedule(HALF - 1))
    assert not np.array_equal(restarted.get_weights()[0], whole.get_weights()[0])


def test_file_signatures_alone_carry_the_rate_and_step(exported, digits8):
    """What an Android app does: save's outputs into a new interpreter's restore."""
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    path = exported["tf_keras-mlp-sgd"].result.path
    trainer = OnDeviceTrainer(path)
    x, y = digits8.x_train[:BATCH], digits8.y_train[:BATCH].astype(np.int32)
    for _ in range(3):
        trainer.train_step(x, y, learning_rate=0.0125)
    saved = trainer.loaded.interpreter.get_signature_runner("save")()
    assert saved["learning_rate"] == np.float32(0.0125) and saved["s004_step"] == 3.0
    app = OnDeviceTrainer(path)
    app.loaded.interpreter.get_signature_runner("restore")(**saved)
    assert app.learning_rate == np.float32(0.0125) and app.global_step == 3
    # A rate that is not > 0 (a signature cannot raise) keeps the one in effect.
    app.set_learning_rate(0.5)
    app.loaded.interpreter.get_signature_runner("restore")(
        **{**saved, "learning_rate": np.float32(np.nan)})
    assert app.learning_rate == 0.5
    np.testing.assert_array_equal(app.get_weights()[0], trainer.get_weights()[0])


def test_old_checkpoint_without_rate_or_step_still_restores(exported, digits8, tmp_path):
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    x, y = digits8.x_train[:BATCH], digits8.y_train[:BATCH].astype(np.int32)
    for case_id, step_kept in (("tf_keras-mlp-sgd", False), ("keras3-mlp-adam", True)):
        path = exported[case_id].result.path
        trainer = OnDeviceTrainer(path)
        for _ in range(2):
            trainer.train_step(x, y, learning_rate=0.02)
        trainer.save(tmp_path / "new.npz")
        with np.load(tmp_path / "new.npz") as new:
            # Before this change: no rate in any checkpoint; a step only in Adam's.
            old = {k: new[k] for k in new.files
                   if k != "learning_rate" and (step_kept or not k.endswith("_step"))}
        assert len(old) == len(trainer.weight_specs) + len(trainer.slot_specs) - (not step_kept)
        np.savez(tmp_path / "old.npz", **old)
        restored = OnDeviceTrainer(path)
        restored.set_learning_rate(0.3)
        restored.restore(tmp_path / "old.npz")
        assert restored.learning_rate == pytest.approx(0.3, rel=1e-7)  # kept: none saved
        assert restored.global_step == (2 if step_kept else 0)  # 0: a schedule starts over
        for a, b in zip(restored.get_weights(), trainer.get_weights()):
            np.testing.assert_array_equal(a, b)


def test_bad_rate_or_step_in_a_checkpoint_is_refused_naming_the_file(exported, digits8,
                                                                      tmp_path):
    from tflite_opt.errors import InvalidArgumentError
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    path = exported["keras3-mlp-adam"].result.path
    trainer = OnDeviceTrainer(path)
    trainer.train_step(digits8.x_train[:BATCH], digits8.y_train[:BATCH].astype(np.int32))
    trainer.save(tmp_path / "good.npz")
    with np.load(tmp_path / "good.npz") as good:
        state = {k: good[k] for k in good.files}
    step = trainer.slot_specs[-1][0]
    bad_cases = (
        ("learning_rate", np.float32([0.01, 0.02]), r"'learning_rate' has shape \(2,\)"),
        ("learning_rate", np.int32(1), "'learning_rate' has shape .* dtype int32"),
        ("learning_rate", np.float32(np.nan), "'learning_rate' is nan; it must be a finite"),
        ("learning_rate", np.float64(np.inf), "'learning_rate' is inf"),
        ("learning_rate", np.float32(0.0), "'learning_rate' is 0.0"),
        ("learning_rate", np.float64(1e300), "'learning_rate' is 1e.300"),  # inf in float32
        (step, np.float32(2.5), f"step counter '{step}' is 2.5; it must be a whole number"),
        (step, np.float32(-1.0), "is -1.0; it must be a whole number of steps in 0..16777216"),
    )
    fresh = OnDeviceTrainer(path)
    before = fresh.get_weights() + fresh.get_optimizer_state()
    for name, value, pattern in bad_cases:
        file = tmp_path / "bad.npz"
        np.savez(file, **{**state, name: value})
        with pytest.raises(InvalidArgumentError, match=f"checkpoint '{file}'.*{pattern}"):
            fresh.restore(file)
    # Refused before anything was assigned: the fresh trainer is as it was.
    for a, b in zip(fresh.get_weights() + fresh.get_optimizer_state(), before):
        np.testing.assert_array_equal(a, b)
    assert fresh.global_step == 0


def test_reset_zeroes_the_step_as_a_new_keras_optimizer_and_keeps_the_rate(exported, digits8):
    from tflite_opt.ondevice.runner import OnDeviceTrainer

    trainer = OnDeviceTrainer(exported["keras3-mlp-adam"].result.path)
    x, y = digits8.x_train[:2 * BATCH], digits8.y_train[:2 * BATCH].astype(np.int32)
    trainer.fit(x, y, batch_size=BATCH, learning_rate=0.004)
    assert trainer.global_step == 2
    trainer.set_weights(trainer.get_weights(), reset_optimizer=False)
    assert trainer.global_step == 2
    # Keras's iterations is optimizer state: a newly compiled optimizer starts at 0.
    trainer.reset_optimizer()
    assert trainer.global_step == 0 and trainer.learning_rate == np.float32(0.004)
    trainer.fit(x, y, batch_size=BATCH)
    trainer.set_weights(trainer.get_weights())
    assert trainer.global_step == 0 and trainer.learning_rate == np.float32(0.004)
    from tflite_opt.errors import InvalidArgumentError

    for bad in (-1, 1.5, True):
        with pytest.raises(InvalidArgumentError, match="initial_step"):
            trainer.fit(x, y, batch_size=BATCH, learning_rate=lambda s: 0.01, initial_step=bad)
