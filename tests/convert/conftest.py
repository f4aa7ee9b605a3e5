"""Fixtures of the converter tests: small models and calibration arrays."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def calib16():
    """40 seeded random images matching the 16x16x1 tiny CNN input."""
    return np.random.default_rng(0).random((40, 16, 16, 1), dtype=np.float32)


@pytest.fixture
def tiny_mlp():
    """A two-layer MLP on 8x8x1 inputs: converts in about a second."""
    from tflite_opt._keras import keras

    inputs = keras.Input((8, 8, 1), name="pixels")
    x = keras.layers.Flatten(name="flatten")(inputs)
    x = keras.layers.Dense(16, activation="relu", name="hidden")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="tiny_mlp")


@pytest.fixture
def calib8():
    return np.random.default_rng(1).random((30, 8, 8, 1), dtype=np.float32)
