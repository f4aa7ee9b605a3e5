"""The digits in color: scikit-learn's digits upscaled and painted as RGB images.

MediaPipe Tasks' image classifier feeds RGB images, and the bundled digits are
grayscale. Each image here gets its own ink and background colors (seeded), so a
model trained on them has to use all three channels and cannot rely on one color:
a small, offline stand-in for a real RGB data set.
"""

from __future__ import annotations

import numpy as np

from tflite_opt.data.digits import Dataset, load_digits


def paint(gray: np.ndarray, seed: int = 0) -> np.ndarray:
    """Paints ``(N, H, W, 1)`` gray images in [0, 1] as ``(N, H, W, 3)`` RGB in [0, 1].

    ``rgb = gray * ink + (1 - gray) * background`` with a bright ink color
    (channels in [0.55, 1]) and a dark background (channels in [0, 0.3]) per image,
    so the digit stays the brightest shape whatever its hue.

    Example:
        >>> paint(np.ones((2, 8, 8, 1), np.float32)).shape
        (2, 8, 8, 3)
    """
    rng = np.random.default_rng(seed)
    n = len(gray)
    ink = rng.uniform(0.55, 1.0, (n, 1, 1, 3)).astype(np.float32)
    background = rng.uniform(0.0, 0.3, (n, 1, 1, 3)).astype(np.float32)
    return (gray * ink + (1.0 - gray) * background).astype(np.float32)


def load_digits_rgb(image_size: int = 32, test_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The digits split of :func:`load_digits`, painted as ``(N, size, size, 3)`` RGB in [0, 1].

    Train and test images get colors from different streams of the same seed, so
    the same split and seed always give the same images.

    Example:
        >>> data = load_digits_rgb()
        >>> data.x_train.shape, data.x_test.shape
        ((1437, 32, 32, 3), (360, 32, 32, 3))
    """
    gray = load_digits(image_size=image_size, test_fraction=test_fraction, seed=seed)
    return Dataset(paint(gray.x_train, seed), gray.y_train, paint(gray.x_test, seed + 1),
                   gray.y_test, num_classes=gray.num_classes, name="digits_rgb")
