"""Float training of the example models (the starting point every recipe optimizes).

Usage:
    >>> model = train_digits_cnn(load_digits(), epochs=20)
    >>> small = train_from_scratch(mobilenet_v2_like(width=0.5, flavor="keras3"), load_digits())
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tflite_opt._keras import keras, keras_flavor, keras_of_flavor
from tflite_opt.data.augment import Augmentation, augmented_dataset
from tflite_opt.data.digits import Dataset
from tflite_opt.errors import InvalidArgumentError
from tflite_opt.models.builders import digits_cnn


def train_digits_cnn(data: Dataset, epochs: int = 20, batch_size: int = 32,
                     learning_rate: float = 2e-3, seed: int = 0, verbose: int = 2) -> keras.Model:
    """Trains ``digits_cnn`` on ``data`` with Adam and a cosine-decayed learning rate.

    With the defaults it reaches about 98% test accuracy on the 32x32 digits in
    about half a minute on 2 cores.

    Example:
        >>> model = train_digits_cnn(load_digits(), epochs=20)
    """
    keras.utils.set_random_seed(seed)
    model = digits_cnn(input_shape=data.input_shape, num_classes=data.num_classes)
    steps = epochs * int(np.ceil(len(data.x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps)
    model.compile(keras.optimizers.Adam(schedule), "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size,
              validation_data=(data.x_test, data.y_test), verbose=verbose)
    return model


# Epochs of train_from_scratch: with 12, the efficient builders at their default sizes reach
# 98-99% on the augmented held-out digits (benchmarks/results/decompose.md).
FROM_SCRATCH_EPOCHS = 12


def train_from_scratch(model: Any, data: Dataset, epochs: int = FROM_SCRATCH_EPOCHS,
                       batch_size: int = 32, learning_rate: float = 2e-3,
                       augmentation: Augmentation | None = Augmentation(), seed: int = 0,
                       verbose: int = 0) -> Any:
    """Trains a freshly built classifier of either Keras on ``data``'s training split, its
    images randomly rotated, zoomed, shifted and noised each epoch (``augmentation``).

    Adam with a cosine-decayed learning rate, as :func:`train_digits_cnn`. Without the
    augmentation, the efficient builders learn the 1,437 clean digits by heart (99-100%) and
    score 37-61% on the augmented held-out set; with it, 98-99% (``benchmarks/results/
    decompose.md``). ``model`` is compiled and trained in place, as ``fit`` does, and returned.

    Args:
        model: A built tf_keras or Keras 3 classifier ending in softmax, e.g.
            ``tflite_opt.models.efficient.mobilenet_v2_like(...)``.
        data: The training images and labels (``x_train``, ``y_train``); the test split is
            not read.
        epochs: Passes over the training images. Defaults to ``FROM_SCRATCH_EPOCHS`` (12).
        batch_size: Defaults to 32.
        learning_rate: Start of the cosine decay. Defaults to 2e-3, set for the efficient
            builders; ``digits_cnn`` (a Flatten + 262k-weight Dense head) stalled at 48% with
            it under augmentation and needs 1e-3.
        augmentation: Ranges of the random changes; None trains on the images as they are.
            Defaults to ``Augmentation()``.
        seed: Seed of the shuffling and the random changes. The initial weights are the
            model's as built (seed them with ``keras.utils.set_random_seed`` before
            building). Defaults to 0.
        verbose: ``fit``'s verbosity (1 shows Keras's progress bar). Defaults to 0.

    Raises:
        InvalidArgumentError: ``epochs`` is not a positive integer.

    Example:
        >>> model = train_from_scratch(shufflenet_v2_like(flavor="keras3"), load_digits())
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise InvalidArgumentError(f"epochs is {epochs!r}; accepted: an integer >= 1")
    K = keras_of_flavor(keras_flavor(model))
    no_change = Augmentation(0.0, 0.0, 0.0, 0.0)  # None: the images as they are
    train = augmented_dataset(data.x_train, data.y_train, batch_size, augmentation or no_change,
                              seed=seed)
    steps = epochs * int(np.ceil(len(data.x_train) / batch_size))
    schedule = K.optimizers.schedules.CosineDecay(learning_rate, steps)
    # Keywords: Keras 3's third positional argument of compile is loss_weights, not metrics.
    model.compile(optimizer=K.optimizers.Adam(schedule), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(train, epochs=epochs, verbose=verbose, shuffle=False)  # the dataset shuffles
    return model
