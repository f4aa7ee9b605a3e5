"""Fixtures of the train tests: a small training subset and recipes of one or two epochs."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def small_train(digits16):
    """256 training images of the 16x16 digits, for fits that only need to run."""
    return digits16.x_train[:256], digits16.y_train[:256]


@pytest.fixture(scope="session")
def tiny_train(digits16):
    """64 training images: two batches, for fits that only need to run."""
    return digits16.x_train[:64], digits16.y_train[:64]
