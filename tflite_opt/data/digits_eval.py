"""A larger, fixed evaluation set made only from the digits' held-out test images.

The digits' test split has 360 images, so one image is 0.28 accuracy points and
differences between optimization recipes drown in sampling noise. Each held-out
image is therefore kept once as it is and copied ``copies - 1`` times with a small,
seeded random affine change (shift, rotation, scaling) plus Gaussian pixel noise —
the variation a camera or a hand would add. No training image is ever read: the
augmentation takes the test split alone, so the set stays disjoint from what the
models were trained on. The default 9 copies give 3,240 images.

The affine warp is scipy's ``ndimage.affine_transform`` (bilinear); it is seeded
per image from one ``numpy`` generator, so the set is identical on every machine.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from tflite_opt.data.digits import Dataset, load_digits
from tflite_opt.errors import InvalidArgumentError

# Ranges of the augmentation, small enough that a person still reads the same digit.
MAX_ROTATION_DEGREES = 10.0
SCALE_RANGE = (0.9, 1.1)
MAX_SHIFT_FRACTION = 1 / 16  # of the image side: 2 pixels at 32x32, half a pixel of the 8x8 original
NOISE_STD = 0.05  # on [0, 1] pixels


@dataclasses.dataclass(frozen=True)
class AugmentedEvalSet:
    """Augmented copies of a held-out split.

    Attributes:
        x: ``(len(source) * copies, H, W, C)`` float32 images in [0, 1].
        y: Their labels (the label of the image each was made from).
        source_index: For each image, the index in the held-out split it was made from.
        copies: Images per held-out image; the first of each is the image unchanged.
        seed: Seed of the augmentation.
    """

    x: np.ndarray
    y: np.ndarray
    source_index: np.ndarray
    copies: int
    seed: int


def augment_held_out(x_held_out: np.ndarray, y_held_out: np.ndarray, copies: int = 9,
                     seed: int = 0) -> AugmentedEvalSet:
    """Makes ``copies`` versions of each held-out image: itself, then seeded random warps + noise.

    Args:
        x_held_out: ``(N, H, W, C)`` images in [0, 1] that no model was trained on.
        y_held_out: Their ``(N,)`` integer labels.
        copies: Versions per image, the first unchanged; at least 1. Defaults to 9.
        seed: Seed of the random shifts, rotations, scales and noise. Defaults to 0.

    Returns:
        The ``AugmentedEvalSet``, ordered image by image (all copies of image 0 first).

    Example:
        >>> data = load_digits(32)
        >>> evalset = augment_held_out(data.x_test, data.y_test, copies=9)
        >>> evalset.x.shape
        (3240, 32, 32, 1)
    """
    from scipy import ndimage
    from tqdm import tqdm

    x_held_out = np.asarray(x_held_out, dtype=np.float32)
    y_held_out = np.asarray(y_held_out)
    if copies < 1:
        raise InvalidArgumentError(f"copies must be >= 1 (the first copy is the image itself), got {copies}")
    if x_held_out.ndim != 4 or len(x_held_out) != len(y_held_out):
        raise InvalidArgumentError(f"x_held_out must be (N, H, W, C) with one label per image; got "
                                   f"x of shape {x_held_out.shape} and {len(y_held_out)} labels")
    rng = np.random.default_rng(seed)
    n, height, width, channels = x_held_out.shape
    center = np.array([(height - 1) / 2, (width - 1) / 2])
    out = np.empty((n * copies, height, width, channels), np.float32)
    for i in tqdm(range(n), desc="augmenting held-out images", disable=n * copies < 5000,
                  leave=False):
        out[i * copies] = x_held_out[i]
        for c in range(1, copies):
            angle = np.deg2rad(rng.uniform(-MAX_ROTATION_DEGREES, MAX_ROTATION_DEGREES))
            scale = rng.uniform(*SCALE_RANGE)
            shift = rng.uniform(-MAX_SHIFT_FRACTION, MAX_SHIFT_FRACTION, size=2) * (height, width)
            noise = rng.normal(0.0, NOISE_STD, size=(height, width, channels))
            # affine_transform maps output coordinates to input ones: the inverse warp.
            cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
            inverse = np.array([[cos, -sin], [sin, cos]])
            offset = center - inverse @ (center + shift)
            for ch in range(channels):
                out[i * copies + c, ..., ch] = ndimage.affine_transform(
                    x_held_out[i, ..., ch], inverse, offset=offset, order=1, mode="constant")
            out[i * copies + c] += noise
    np.clip(out, 0.0, 1.0, out=out)
    source = np.repeat(np.arange(n), copies)
    return AugmentedEvalSet(out, y_held_out[source], source, copies, seed)


def load_digits_eval(image_size: int = 32, copies: int = 9, seed: int = 0,
                     split_seed: int = 0) -> Dataset:
    """The digits with the same training split as ``load_digits``, tested on augmented held-out images.

    ``x_train``/``y_train`` are exactly ``load_digits(image_size, seed=split_seed)``'s; ``x_test``/
    ``y_test`` are ``augment_held_out`` of its test split (3,240 images by default).

    Args:
        image_size: Side of the square images. Defaults to 32.
        copies: Versions per held-out image (the first unchanged). Defaults to 9.
        seed: Seed of the augmentation. Defaults to 0.
        split_seed: Seed of the train/test split, as ``load_digits(seed=...)``. Defaults to 0.

    Example:
        >>> data = load_digits_eval()
        >>> data.x_train.shape, data.x_test.shape
        ((1437, 32, 32, 1), (3240, 32, 32, 1))
    """
    data = load_digits(image_size=image_size, seed=split_seed)
    evalset = augment_held_out(data.x_test, data.y_test, copies=copies, seed=seed)
    return dataclasses.replace(data, x_test=evalset.x, y_test=evalset.y,
                               name=f"digits (test: {copies} augmented copies of each held-out image)")


def augmented_validation_split(data: Dataset, fraction: float = 0.2, copies: int = 9,
                               seed: int = 1, split_seed: int = 0) -> Dataset:
    """``data``'s training images split in two, stratified: ``x_train`` the rest, ``x_test``
    ``copies`` augmented versions of each of the ``fraction`` held out, made as the eval set is
    made from the test split (``augment_held_out``). ``data``'s test split is not read, so a
    choice made on this split (a hyperparameter, a searched architecture) never sees the eval set.

    Args:
        data: A train/test split, e.g. ``load_digits(16)``.
        fraction: Share of the training images held out for validation. Defaults to 0.2.
        copies: Versions per held-out image (the first unchanged). Defaults to 9.
        seed: Seed of the augmentation. Defaults to 1 (the eval set uses 0).
        split_seed: Seed of the stratified split. Defaults to 0.

    Example:
        >>> split = augmented_validation_split(load_digits(16))
        >>> split.x_train.shape, split.x_test.shape
        ((1149, 16, 16, 1), (2592, 16, 16, 1))
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < fraction < 1.0:
        raise InvalidArgumentError(f"validation fraction is {fraction!r}; accepted: a number in "
                                   "(0, 1)")
    x_fit, x_val, y_fit, y_val = train_test_split(
        data.x_train, data.y_train, test_size=fraction, random_state=split_seed,
        stratify=data.y_train)
    held_out = augment_held_out(x_val, y_val, copies=copies, seed=seed)
    return dataclasses.replace(data, x_train=x_fit, y_train=y_fit, x_test=held_out.x,
                               y_test=held_out.y, name=f"{data.name} training split: "
                               f"{copies} augmented copies of {fraction:g} held out")
