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
# are kept on one worker: each path below is one unit of work; every other test is a unit of
# its own. xdist_group marks cannot say this with pytest 9.2: xdist 3.8.0 tags the group onto
# the node id through a field pytest 9.2 no longer reads (pytest-xdist issue #1386), so the
# scheduler below groups by path instead.
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


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: absent without the plugin
def pytest_xdist_make_scheduler(config, log):
    if config.getvalue("dist") != "loadgroup":
        return None  # xdist's own scheduler for the other --dist modes
    from xdist.scheduler import LoadGroupScheduling

    class PathGroupScheduling(LoadGroupScheduling):
        """loadgroup, with each of the ONE_WORKER_PATHS one group."""

        def _split_scope(self, nodeid: str) -> str:
            path = next((p for p in ONE_WORKER_PATHS if nodeid.startswith(p)), None)
            return path or super()._split_scope(nodeid)

    return PathGroupScheduling(config, log)


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
