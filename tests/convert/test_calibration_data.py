"""Calibration data from every source, and the checks that run before conversion."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.convert import convert
from tflite_opt.data.calibration import (ImagePreprocessing, InputSpec, load_calibration_data,
                                         load_evaluation_data)
from tflite_opt.errors import DataError, InvalidArgumentError

SPEC = [InputSpec("image", (8, 8, 1), "float32")]


@pytest.fixture
def x():
    return np.random.default_rng(0).random((30, 8, 8, 1), dtype=np.float32)


def test_load_numpy_more_than_count_evenly_spaced_subset(x):
    (out,) = load_calibration_data(x, SPEC, num_samples=10)
    assert out.shape == (10, 8, 8, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0], x[0])
    np.testing.assert_array_equal(out[-1], x[-1])


def test_load_float64_cast_to_float32(x):
    (out,) = load_calibration_data(x.astype(np.float64), SPEC)
    assert out.dtype == np.float32 and len(out) == 30


@pytest.mark.parametrize("batched", [True, False])
def test_load_tf_data_supervised_batched_or_not_same_samples(x, batched):
    from tflite_opt._keras import tf

    ds = tf.data.Dataset.from_tensor_slices((x, np.arange(30)))
    if batched:
        ds = ds.batch(7)
    (out,) = load_calibration_data(ds, SPEC, num_samples=20)
    np.testing.assert_array_equal(out, x[:20])


def test_load_generator_converter_convention_and_iterable(x):
    def gen():
        for i in range(len(x)):
            yield [x[i:i + 1]]

    (out,) = load_calibration_data(gen, SPEC, num_samples=12)
    np.testing.assert_array_equal(out, x[:12])
    (out2,) = load_calibration_data(iter(list(x)), SPEC, num_samples=None)
    np.testing.assert_array_equal(out2, x)


def test_load_npy_and_npz_files(x, tmp_path):
    np.save(tmp_path / "c.npy", x)
    np.savez(tmp_path / "c.npz", x=x, y=np.zeros(30))
    for name in ("c.npy", "c.npz"):
        (out,) = load_calibration_data(tmp_path / name, SPEC, num_samples=None)
        np.testing.assert_array_equal(out, x)


def test_load_image_folder_resized_and_normalized(tmp_path):
    from PIL import Image

    for i, value in enumerate([0, 128, 255]):
        sub = tmp_path / f"class{i}"
        sub.mkdir()
        Image.fromarray(np.full((20, 30, 3), value, np.uint8)).save(sub / f"img{i}.png")
    pre = ImagePreprocessing(scale=1 / 127.5, mean=1.0)
    (out,) = load_calibration_data(tmp_path, [InputSpec("image", (8, 8, 1))], preprocessing=pre)
    assert out.shape == (3, 8, 8, 1)  # RGB files -> the model's one grey channel, resized
    np.testing.assert_allclose(out[:, 0, 0, 0], [-1.0, 128 / 127.5 - 1, 1.0], atol=1e-5)
    (rgb,) = load_calibration_data(tmp_path, [InputSpec("image", (4, 5, 3))])
    assert rgb.shape == (3, 4, 5, 3) and rgb.max() == pytest.approx(1.0)


def test_convert_image_folder_source_int8(tiny_mlp, tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    result = convert(tiny_mlp, "int8", tmp_path, progress=False)
    assert result.num_calibration_samples == 12


def test_wrong_shape_names_expected_and_given_before_conversion(tiny_mlp, x, monkeypatch):
    import tflite_opt.convert.converter as converter_module

    def must_not_run(*args, **kwargs):
        raise AssertionError("conversion started before the data was validated")

    monkeypatch.setattr(converter_module, "_build_converter", must_not_run)
    with pytest.raises(DataError, match=r"shape \(30, 8, 8\); expected \(N, 8, 8, 1\).*x\[\.\.\., None\]"):
        convert(tiny_mlp, "int8", x[..., 0])
    with pytest.raises(DataError, match=r"shape \(30, 16, 16, 1\); expected \(N, 8, 8, 1\)"):
        convert(tiny_mlp, "int8", np.zeros((30, 16, 16, 1), np.float32))
    with pytest.raises(DataError, match=r"expected samples of shape \(8, 8, 1\).*given \(8, 8\)"):
        convert(tiny_mlp, "int8", lambda: ([s[..., 0]] for s in x))


def test_wrong_dtype_names_expected_dtype_and_fix(tiny_mlp):
    pixels = np.random.default_rng(0).integers(0, 255, (30, 8, 8, 1), dtype=np.uint8)
    with pytest.raises(DataError, match=r"dtype uint8; expected float32.*/ 255"):
        convert(tiny_mlp, "int8", pixels)
    with pytest.raises(DataError, match="dtype <U1"):
        convert(tiny_mlp, "int8", np.full((30, 8, 8, 1), "a"))


def test_nan_values_rejected_with_count(tiny_mlp, x):
    x = x.copy()
    x[3, 0, 0, 0] = np.nan
    x[4, 1, 1, 0] = np.inf
    with pytest.raises(DataError, match="2 NaN or inf"):
        convert(tiny_mlp, "int8", x)


def test_empty_sources_rejected(tiny_mlp):
    from tflite_opt._keras import tf

    with pytest.raises(DataError, match="empty"):
        convert(tiny_mlp, "int8", np.zeros((0, 8, 8, 1), np.float32))
    with pytest.raises(DataError, match="empty"):
        convert(tiny_mlp, "int8", lambda: iter(()))
    with pytest.raises(DataError, match="empty"):
        convert(tiny_mlp, "int8", tf.data.Dataset.from_tensor_slices(np.zeros((0, 8, 8, 1), np.float32)))


def test_too_few_samples_rejected_with_minimum(tiny_mlp, x):
    with pytest.raises(DataError, match="only 3 samples; at least 10"):
        convert(tiny_mlp, "int8", x[:3])
    # Asking for fewer on purpose is the user's choice.
    assert convert(tiny_mlp, "int8", x[:3], num_calibration_samples=3,
                   progress=False).num_calibration_samples == 3


def test_bad_sources_rejected_with_accepted_list(tmp_path):
    with pytest.raises(DataError, match="accepted: numpy array"):
        load_calibration_data(3.5, SPEC)
    with pytest.raises(DataError, match="does not exist"):
        load_calibration_data(tmp_path / "missing.npy", SPEC)
    (tmp_path / "c.txt").write_text("1 2 3")
    with pytest.raises(DataError, match="suffix '.txt'"):
        load_calibration_data(tmp_path / "c.txt", SPEC)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="has no images"):
        load_calibration_data(tmp_path / "empty", SPEC)

    def failing():
        yield np.zeros((8, 8, 1), np.float32)
        raise RuntimeError("disk gone")

    with pytest.raises(DataError, match="after 1 samples: RuntimeError: disk gone"):
        load_calibration_data(failing, SPEC)


def test_image_preprocessing_validates_and_round_trips():
    with pytest.raises(InvalidArgumentError, match="std must be > 0"):
        ImagePreprocessing(std=0)
    pre = ImagePreprocessing(scale=1 / 127.5, mean=(1.0, 1.0, 1.0), std=2.0, size=(96, 96))
    assert ImagePreprocessing.from_dict(pre.to_dict()) == pre


def test_load_evaluation_data_npz_and_mismatch(tmp_path):
    np.savez(tmp_path / "e.npz", x=np.zeros((5, 2)), y=np.arange(5))
    x, y = load_evaluation_data(tmp_path / "e.npz")
    assert x.shape == (5, 2) and list(y) == [0, 1, 2, 3, 4]
    np.savez(tmp_path / "bad.npz", a=np.zeros(3))
    with pytest.raises(DataError, match=r"holds arrays \['a'\]; expected 'x' and 'y'"):
        load_evaluation_data(tmp_path / "bad.npz")
    with pytest.raises(DataError, match="5 inputs but 4 labels"):
        load_evaluation_data((np.zeros((5, 2)), np.arange(4)))
