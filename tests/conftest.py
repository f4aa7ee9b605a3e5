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

# `make test` runs the suite on two pytest-xdist workers (`-n 2 --dist loadgroup`). Each worker
# builds its own copy of a module or session fixture, so the tests sharing an expensive one
# (child processes importing TensorFlow, a trained model, a whole pipeline run, conversions)
# are kept on one worker: each path below is one xdist group. Without xdist the marks do nothing.
ONE_WORKER_PATHS = (
    "tests/test_bad_cli_inputs.py",  # outcomes: four child processes
    "tests/test_hostile_inputs.py",  # script_runs: child processes
    "tests/test_pipeline.py",  # pipeline_run: the whole pipeline
    "tests/test_digits_eval.py",  # eval_and_plain: the augmented eval set
    "tests/convert/test_accuracy_aware.py",  # outlier_case: a trained model
    "tests/convert/test_mediapipe_target.py",  # example_model, digits_rgb
    "tests/runtime/test_runtime_fuzz.py",  # mutants
    "tests/train/test_keras3_qat.py",  # float_model: trained for 6 epochs
    "tests/train/test_train_own_fit_paths.py",  # stages: a plan run
    "tests/ondevice/",  # exported: four models exported once
    "tests/federated/",  # tiny_run: a model exported once
)


def pytest_configure(config):
    # pytest-xdist registers the mark itself; this keeps `-p no:xdist` free of warnings.
    config.addinivalue_line("markers", "xdist_group(name): run these tests on one xdist worker")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks
def pytest_collection_modifyitems(config, items):
    for item in items:
        path = item.path.relative_to(REPO_ROOT).as_posix()
        group = next((p for p in ONE_WORKER_PATHS if path.startswith(p)), None)
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))


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
