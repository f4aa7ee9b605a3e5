"""Shared fixtures: tiny models and data, seeded, so the suite stays fast."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

# No TF_USE_LEGACY_KERAS: the suite runs as a user's process does, with tf.keras = Keras 3
# (tflite_opt uses tf_keras directly for Keras 2 models and never sets the variable).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


@pytest.fixture(autouse=True)
def _seed_everything():
    from tflite_opt._keras import keras

    random.seed(0)
    np.random.seed(0)
    keras.utils.set_random_seed(0)
    yield
    keras.backend.clear_session()


@pytest.fixture(scope="session")
def digits16():
    """The digits at 16x16: small enough for fast tests, real enough to learn."""
    from tflite_opt.data.digits import load_digits

    return load_digits(image_size=16, seed=0)


@pytest.fixture
def tiny_cnn():
    """An untrained 16x16 CNN with conv, BN, pooling and dense layers (about 12k weights)."""
    from tflite_opt.models.builders import digits_cnn

    return digits_cnn(input_shape=(16, 16, 1), width=8, dense_units=32)


@pytest.fixture(scope="session")
def trained_tiny_cnn(digits16, tmp_path_factory):
    """A 16x16 CNN trained for a few epochs, saved to ``.keras``; returns (model, path)."""
    from tflite_opt._keras import keras
    from tflite_opt.models.builders import digits_cnn

    keras.utils.set_random_seed(0)
    model = digits_cnn(input_shape=(16, 16, 1), width=8, dense_units=32)
    model.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    model.fit(digits16.x_train, digits16.y_train, epochs=6, batch_size=32, verbose=0)
    path = tmp_path_factory.mktemp("models") / "tiny_cnn.keras"
    model.save(path)
    return model, path
