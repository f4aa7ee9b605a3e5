"""The augmented evaluation set: fixed, made of held-out images only, and large enough."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def eval_and_plain():
    from tflite_opt.data.digits import load_digits
    from tflite_opt.data.digits_eval import load_digits_eval

    return load_digits_eval(image_size=32), load_digits(image_size=32)


def test_load_digits_eval_default_has_at_least_3000_images_nine_per_held_out_image(eval_and_plain):
    evaluation, plain = eval_and_plain
    assert evaluation.x_test.shape == (9 * len(plain.x_test), 32, 32, 1) and len(evaluation.x_test) >= 3000
    assert evaluation.y_test.shape == (len(evaluation.x_test),)
    assert evaluation.x_test.dtype == np.float32
    assert 0.0 <= evaluation.x_test.min() and evaluation.x_test.max() <= 1.0
    # Every class keeps its share: the copies repeat the held-out labels 9 times each.
    np.testing.assert_array_equal(np.bincount(evaluation.y_test), 9 * np.bincount(plain.y_test))


def test_load_digits_eval_called_twice_is_bit_identical(eval_and_plain):
    from tflite_opt.data.digits_eval import load_digits_eval

    again = load_digits_eval(image_size=32)
    np.testing.assert_array_equal(again.x_test, eval_and_plain[0].x_test)
    np.testing.assert_array_equal(again.y_test, eval_and_plain[0].y_test)
    other_seed = load_digits_eval(image_size=32, seed=1)
    assert not np.array_equal(other_seed.x_test, again.x_test)


def test_load_digits_eval_trains_on_load_digits_split_and_tests_on_its_held_out_images(eval_and_plain):
    evaluation, plain = eval_and_plain
    np.testing.assert_array_equal(evaluation.x_train, plain.x_train)
    np.testing.assert_array_equal(evaluation.y_train, plain.y_train)
    # The first of each 9 copies is the held-out image itself, with its label.
    np.testing.assert_array_equal(evaluation.x_test[::9], plain.x_test)
    np.testing.assert_array_equal(evaluation.y_test, np.repeat(plain.y_test, 9))
    # The other 8 are changed (warped and noisy), each differently.
    copies = evaluation.x_test.reshape(len(plain.x_test), 9, -1)
    assert np.all(np.abs(copies[:, 1:] - copies[:, :1]).max(-1) > 0.05)
    assert len({c.tobytes() for c in copies[0]}) == 9


def test_load_digits_eval_no_image_is_a_training_image(eval_and_plain):
    evaluation, plain = eval_and_plain
    x = evaluation.x_test.reshape(len(evaluation.x_test), -1).astype(np.float64)
    train = plain.x_train.reshape(len(plain.x_train), -1).astype(np.float64)
    to_train = ((x ** 2).sum(1)[:, None] + (train ** 2).sum(1)[None] - 2 * x @ train.T).min(1)
    # No image is a training image: at 8x8 the held-out originals are at least 67/256 (squared
    # L2) from every training image, ~16x that at 32x32; equal images would be 0 apart.
    assert to_train.min() > 1.0


def test_augment_held_out_labels_and_sources_follow_the_image_each_copy_came_from():
    from tflite_opt.data.digits_eval import augment_held_out

    rng = np.random.default_rng(0)
    held_out = rng.random((4, 16, 16, 1), dtype=np.float32)
    result = augment_held_out(held_out, np.array([7, 3, 5, 1]), copies=3, seed=5)
    np.testing.assert_array_equal(result.source_index, np.repeat(np.arange(4), 3))
    np.testing.assert_array_equal(result.y, np.repeat([7, 3, 5, 1], 3))
    np.testing.assert_array_equal(result.x[::3], held_out)


@pytest.mark.parametrize("copies", [0, -1])
def test_augment_held_out_copies_below_one_raises_naming_argument(copies):
    from tflite_opt.data.digits_eval import augment_held_out
    from tflite_opt.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="copies"):
        augment_held_out(np.zeros((2, 8, 8, 1), np.float32), np.zeros(2), copies=copies)
