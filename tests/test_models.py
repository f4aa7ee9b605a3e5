"""Loading users' model files, and the example builders."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.errors import ModelLoadError
from tflite_opt.models.loading import load_model, model_format


@pytest.mark.parametrize("suffix, save_kwargs, expected_format", [
    (".keras", {}, "keras"), (".h5", {}, "h5"), ("_savedmodel", {"save_format": "tf"}, "saved_model")])
def test_load_model_each_format_round_trips_predictions(tmp_path, tiny_cnn, suffix, save_kwargs,
                                                        expected_format):
    path = tmp_path / f"model{suffix}"
    tiny_cnn.save(path, **save_kwargs)
    assert model_format(path) == expected_format
    loaded = load_model(path)
    x = np.random.default_rng(0).random((2, 16, 16, 1), dtype=np.float32)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), tiny_cnn.predict(x, verbose=0), atol=1e-6)


@pytest.mark.parametrize("name, content, message", [
    ("missing.keras", None, "does not exist"),
    ("model.keras", b"PK-not-really", "not a .keras model"),
    ("model.h5", b"\x89HDF\r\n\x1a\n" + b"\x00" * 32, "could not load Keras model"),
    ("model.onnx", b"\x00", "accepted: .keras, .h5"),
    ("folder", "dir", "not a SavedModel"),
])
def test_load_model_bad_file_raises_model_load_error_naming_it(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelLoadError, match=message) as info:
        load_model(path)
    assert name in str(info.value)


def test_digits_cnn_default_input_and_head():
    from tflite_opt.models.builders import digits_cnn

    model = digits_cnn()
    assert model.input_shape == (None, 32, 32, 1)
    assert model.output_shape == (None, 10)
    assert [l.name for l in model.layers if l.weights][0] == "conv1"


def test_load_digits_split_is_fixed_by_seed_and_stratified():
    from tflite_opt.data.digits import load_digits

    a, b = load_digits(image_size=16, seed=3), load_digits(image_size=16, seed=3)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert a.x_train.shape == (1437, 16, 16, 1) and a.x_test.shape == (360, 16, 16, 1)
    assert 0.0 <= a.x_train.min() and a.x_train.max() <= 1.0
    assert np.bincount(a.y_test).min() >= 35  # every class present in test


def test_example_model_in_saved_models_loads_and_reaches_95_percent():
    """The committed model the README and benchmarks use is a real, trained digits CNN."""
    from tests.conftest import REPO_ROOT
    from tflite_opt.data.digits import load_digits

    model = load_model(REPO_ROOT / "saved_models" / "digits_cnn.keras")
    data = load_digits(image_size=32)
    accuracy = np.mean(np.argmax(model.predict(data.x_test, verbose=0), -1) == data.y_test)
    assert accuracy >= 0.95
