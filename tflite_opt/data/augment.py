"""Training-time augmentation of small image sets: random rotation, zoom, shift and pixel noise.

A model trained on the digits' 1,437 clean, centred images learns them by heart: the efficient
builders (``tflite_opt.models.efficient``) reached 99-100% on them and 98% on the clean
held-out images, but 37-61% on the augmented held-out set (``load_digits_eval``: the same
digits shifted, rotated, scaled and with pixel noise, what a camera or a hand adds). Showing
the model such variations while it trains is the standard cure. The transforms are Keras's own
preprocessing layers (``RandomRotation``, ``RandomZoom``, ``RandomTranslation``,
``GaussianNoise``) run in the ``tf.data`` pipeline, outside the model, so the trained model,
its ``.tflite`` and its parameters are unchanged, and the same pipeline feeds a tf_keras or a
Keras 3 model.

Usage:
    >>> train = augmented_dataset(data.x_train, data.y_train, batch_size=32, seed=0)
    >>> model.fit(train, epochs=20)
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tflite_opt.errors import DataError, InvalidArgumentError


@dataclasses.dataclass(frozen=True)
class Augmentation:
    """Ranges of the random changes made to each training image, every epoch anew.

    The defaults are the ranges of ``tflite_opt.data.digits_eval`` (the variation the
    benchmarks' evaluation set models), small enough that a person still reads the same digit.

    Attributes:
        rotation_degrees: Largest rotation either way. Defaults to 10.
        zoom: Largest relative zoom in or out. Defaults to 0.1 (0.9x to 1.1x).
        shift_fraction: Largest shift, as a fraction of the image side. Defaults to 1/16
            (2 pixels at 32x32).
        noise_std: Standard deviation of the Gaussian pixel noise, on [0, 1] pixels.
            Defaults to 0.05.

    Example:
        >>> gentle = Augmentation(rotation_degrees=5.0, noise_std=0.0)
    """

    rotation_degrees: float = 10.0
    zoom: float = 0.1
    shift_fraction: float = 1 / 16
    noise_std: float = 0.05

    def __post_init__(self) -> None:
        for name, high in (("rotation_degrees", 180.0), ("zoom", 0.9), ("shift_fraction", 0.5),
                           ("noise_std", 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not 0.0 <= value <= high:
                raise InvalidArgumentError(f"Augmentation.{name} is {value!r}; accepted: a "
                                           f"number in [0, {high:g}] (0 turns it off)")

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)

    def layers(self, seed: int = 0) -> Any:
        """The transforms as a Keras 3 ``Sequential`` of preprocessing layers (random only
        when called with ``training=True``); transforms whose range is 0 are left out."""
        import keras as keras3

        fill = {"fill_mode": "constant", "fill_value": 0.0}  # the digits' black background
        layers = []
        if self.rotation_degrees:
            layers.append(keras3.layers.RandomRotation(self.rotation_degrees / 360.0, seed=seed,
                                                       **fill))
        if self.zoom:
            layers.append(keras3.layers.RandomZoom(self.zoom, seed=seed + 1, **fill))
        if self.shift_fraction:
            layers.append(keras3.layers.RandomTranslation(self.shift_fraction,
                                                          self.shift_fraction, seed=seed + 2,
                                                          **fill))
        if self.noise_std:
            layers.append(keras3.layers.GaussianNoise(self.noise_std, seed=seed + 3))
        return keras3.Sequential(layers, name="augmentation")


def augmented_dataset(x: np.ndarray, y: np.ndarray, batch_size: int = 32,
                      augmentation: Augmentation | None = None, seed: int = 0,
                      shuffle: bool = True) -> Any:
    """A shuffled, batched ``tf.data.Dataset`` of ``(x, y)`` that changes each image randomly
    every epoch (``augmentation``), pixels kept in [0, 1].

    Args:
        x: ``(N, H, W, C)`` float images in [0, 1].
        y: Their ``(N,)`` labels.
        batch_size: Images per batch. Defaults to 32.
        augmentation: The ranges of the random changes. Defaults to ``Augmentation()``.
        seed: Seed of the shuffling and of the transforms. Defaults to 0.
        shuffle: Reshuffle the images every epoch. Defaults to True.

    Raises:
        DataError: ``x`` is not a batch of images with one label each.
        InvalidArgumentError: a bad ``batch_size``.

    Example:
        >>> train = augmented_dataset(data.x_train, data.y_train, augmentation=Augmentation())
        >>> model.fit(train, epochs=20)
    """
    import tensorflow as tf

    x = np.asarray(x, np.float32)
    y = np.asarray(y)
    if x.ndim != 4 or len(x) != len(y) or len(x) == 0:
        raise DataError(f"augmented_dataset needs x of shape (N, height, width, channels) with "
                        f"one label per image; got x of shape {x.shape} and {len(y)} labels")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size is {batch_size!r}; accepted: an integer >= 1")
    transform = (augmentation or Augmentation()).layers(seed)
    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle:
        dataset = dataset.shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.batch(batch_size)
    if transform.layers:
        # One batch at a time: the layers draw from a seeded state that each call advances, so
        # parallel calls would hand the draws to the batches in a different order each run.
        dataset = dataset.map(
            lambda images, labels: (tf.clip_by_value(transform(images, training=True), 0.0, 1.0),
                                    labels))
    return dataset.prefetch(tf.data.AUTOTUNE)
