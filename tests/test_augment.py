"""Training-time augmentation (tflite_opt.data.augment) and train_from_scratch with either Keras."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.data.augment import Augmentation, augmented_dataset
from tflite_opt.errors import DataError, InvalidArgumentError


def _epoch(dataset) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = zip(*[(x.numpy(), y.numpy()) for x, y in dataset])
    return np.concatenate(xs), np.concatenate(ys)


def test_augmented_dataset_changes_each_image_every_epoch_and_keeps_pixels_and_labels(digits16):
    x, y = digits16.x_train[:12], digits16.y_train[:12]
    dataset = augmented_dataset(x, y, batch_size=5, seed=3, shuffle=False)
    (first, labels), (second, _) = _epoch(dataset), _epoch(dataset)
    assert first.shape == x.shape and np.array_equal(labels, y)
    assert first.min() >= 0.0 and first.max() <= 1.0
    # Every image differs from itself and from its previous epoch's version.
    assert np.all(np.abs(first - x).mean(axis=(1, 2, 3)) > 0.005)
    assert np.all(np.abs(first - second).mean(axis=(1, 2, 3)) > 0.005)
    # The same seed gives the same stream; no change at all gives the images back.
    again, _ = _epoch(augmented_dataset(x, y, batch_size=5, seed=3, shuffle=False))
    np.testing.assert_array_equal(again, first)
    off, _ = _epoch(augmented_dataset(x, y, batch_size=5, shuffle=False,
                                      augmentation=Augmentation(0.0, 0.0, 0.0, 0.0)))
    np.testing.assert_array_equal(off, x)


def test_augmented_dataset_noise_alone_has_the_set_std(digits16):
    x = np.full((64, 16, 16, 1), 0.5, np.float32)  # mid-grey: no clipping of the noise
    noisy, _ = _epoch(augmented_dataset(x, np.zeros(64), batch_size=64, shuffle=False,
                                        augmentation=Augmentation(0.0, 0.0, 0.0, 0.1)))
    assert np.std(noisy - x) == pytest.approx(0.1, rel=0.05)  # 16k samples: ~0.6% std error


@pytest.mark.parametrize("kwargs,match", [({"rotation_degrees": -1.0}, "rotation_degrees"),
                                          ({"zoom": 1.5}, "zoom"),
                                          ({"noise_std": True}, "noise_std")])
def test_augmentation_bad_range_names_it(kwargs, match):
    with pytest.raises(InvalidArgumentError, match=match):
        Augmentation(**kwargs)


def test_augmented_dataset_bad_data_says_what_it_needs(digits16):
    with pytest.raises(DataError, match="one label per image"):
        augmented_dataset(digits16.x_train[:4, :, :, 0], digits16.y_train[:4])
    with pytest.raises(InvalidArgumentError, match="batch_size"):
        augmented_dataset(digits16.x_train[:4], digits16.y_train[:4], batch_size=0)


@pytest.mark.parametrize("flavor", ["tf_keras", "keras3"])
def test_train_from_scratch_learns_with_either_keras(digits16, flavor):
    from tflite_opt._keras import keras_of_flavor
    from tflite_opt.data.digits_eval import augment_held_out
    from tflite_opt.models.builders import dense_mlp
    from tflite_opt.models.training import train_from_scratch

    keras_of_flavor(flavor).utils.set_random_seed(0)
    model = dense_mlp(digits16.input_shape, hidden=(32,), flavor=flavor)
    trained = train_from_scratch(model, digits16, epochs=2)
    held_out = augment_held_out(digits16.x_test, digits16.y_test, copies=2)
    # Keras 3 takes compile's third positional argument as loss_weights: the metric must
    # still be there. Ten classes: chance is 0.1; a model that learned reads most digits.
    loss, accuracy = trained.evaluate(held_out.x, held_out.y, verbose=0)
    assert trained is model and accuracy > 0.5 and np.isfinite(loss)
