"""scikit-learn's handwritten digits, upscaled for CNNs: the bundled default data.

The digits ship inside scikit-learn (no download), 1,797 8x8 grey images of 0-9.
They are upscaled (bilinear) so that convolution and pooling stacks have room,
and split train/test with a fixed seed, stratified by class.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/test split of images in [0, 1] with integer labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str = "digits"

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def load_digits(image_size: int = 32, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """Loads scikit-learn's digits as ``(N, image_size, image_size, 1)`` float32 images.

    Args:
        image_size: Side of the upscaled square images; at least 8. Defaults to 32.
        test_fraction: Share of samples held out for test. Defaults to 0.2 (360 images).
        seed: Seed of the stratified split. Defaults to 0.

    Example:
        >>> data = load_digits()
        >>> data.x_train.shape, data.x_test.shape
        ((1437, 32, 32, 1), (360, 32, 32, 1))
    """
    from sklearn.datasets import load_digits as sk_load_digits
    from sklearn.model_selection import train_test_split

    from tflite_opt.errors import InvalidArgumentError

    if image_size < 8:
        raise InvalidArgumentError(f"image_size must be >= 8 (the digits are 8x8), got {image_size}")
    if not 0.0 < test_fraction < 1.0:
        raise InvalidArgumentError(f"test_fraction must be in (0, 1), got {test_fraction}")
    digits = sk_load_digits()
    images = (digits.images.astype(np.float32) / 16.0)[..., None]  # pixel values are 0..16
    images = _resize(images, image_size)
    labels = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels)
    return Dataset(x_train, y_train, x_test, y_test, num_classes=10)


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    if images.shape[1] == size:
        return images
    from tflite_opt._keras import tf

    return tf.image.resize(images, (size, size), method="bilinear").numpy().clip(0.0, 1.0).astype(np.float32)
