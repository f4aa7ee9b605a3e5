"""convert(): the five precisions, their tensor types, I/O types and determinism."""

from __future__ import annotations

import numpy as np
import pytest

from tflite_opt.convert import (PRECISIONS, ConversionResult, Precision, convert, io_details,
                                tensor_dtypes)
from tflite_opt.errors import DataError, InvalidArgumentError

from convert_testutil import run_tflite

# The weight dtypes each precision must produce (conv/dense kernels), and the
# default input dtype.
EXPECTED = {
    Precision.FLOAT32: ({"float32"}, "float32", {"int8", "float16", "int16"}),
    Precision.FLOAT16: ({"float16"}, "float32", {"int8", "int16"}),
    Precision.DYNAMIC: ({"int8"}, "float32", {"float16", "int16"}),
    Precision.INT8: ({"int8"}, "int8", {"float32", "float16", "int16"}),
    Precision.INT16X8: ({"int8", "int16"}, "float32", {"float16"}),
}


def _kernel_dtypes(tflite_bytes: bytes) -> set[str]:
    return {dtype for name, dtype in tensor_dtypes(tflite_bytes).items()
            if ("Conv2D" in name or "MatMul" in name) and ";" not in name}


def test_convert_all_five_precisions_tiny_cnn_expected_tensor_types(tiny_cnn, calib16):
    assert set(EXPECTED) == set(PRECISIONS)  # a new precision needs a row here
    reference = tiny_cnn.predict(calib16[:8], verbose=0)
    sizes = {}
    for precision, (weights, input_dtype, absent) in EXPECTED.items():
        result = convert(tiny_cnn, precision, representative_data=calib16,
                         num_calibration_samples=20, progress=False)
        assert isinstance(result, ConversionResult)
        assert result.precision is precision
        all_dtypes = set(tensor_dtypes(result.tflite_bytes).values())
        assert weights <= _kernel_dtypes(result.tflite_bytes) | all_dtypes, precision
        assert not (absent & all_dtypes), (precision, all_dtypes)
        io = io_details(result.tflite_bytes)
        assert io["inputs"][0]["dtype"] == input_dtype == result.input_type
        sizes[precision] = result.size_bytes
        outputs = run_tflite(result.tflite_bytes, calib16[:8])
        # Every precision still computes the same function, within its resolution.
        assert np.max(np.abs(outputs - reference)) < 0.05, precision
    assert sizes[Precision.FLOAT16] < 0.6 * sizes[Precision.FLOAT32]
    assert sizes[Precision.INT8] < 0.35 * sizes[Precision.FLOAT32]
    assert sizes[Precision.DYNAMIC] < 0.35 * sizes[Precision.FLOAT32]


def test_convert_int8_activations_are_int8_and_int16x8_activations_int16(tiny_mlp, calib8):
    int8 = convert(tiny_mlp, "int8", calib8, progress=False)
    dtypes = tensor_dtypes(int8.tflite_bytes)
    hidden = [d for n, d in dtypes.items() if "hidden" in n and "Relu" in n]
    assert hidden and set(hidden) == {"int8"}
    int16 = convert(tiny_mlp, "int16x8", calib8, input_type="int16", output_type="int16",
                    progress=False)
    dtypes = tensor_dtypes(int16.tflite_bytes)
    hidden = [d for n, d in dtypes.items() if "hidden" in n and "Relu" in n]
    assert hidden and set(hidden) == {"int16"}
    assert int16.input_type == "int16" and int16.output_type == "int16"


@pytest.mark.parametrize("io_type", ["uint8", "float32"])
def test_convert_int8_user_io_type_io_tensors_have_it(tiny_mlp, calib8, io_type):
    result = convert(tiny_mlp, "int8", calib8, input_type=io_type, output_type=io_type,
                     progress=False)
    io = io_details(result.tflite_bytes)
    assert io["inputs"][0]["dtype"] == io_type and io["outputs"][0]["dtype"] == io_type
    if io_type == "uint8":
        assert io["inputs"][0]["quantization"]["zero_point"] == 0  # [0, 1] input range


def test_convert_int8_sidecar_scale_matches_calibrated_range(tiny_mlp, calib8):
    result = convert(tiny_mlp, "int8", calib8, progress=False)
    q = io_details(result.tflite_bytes)["inputs"][0]["quantization"]
    # Inputs span [0, 1): int8 maps it onto 256 steps with zero point -128.
    assert q["zero_point"] == -128
    assert q["scale"] == pytest.approx(calib8.max() / 255, rel=0.02)


def test_convert_same_model_twice_identical_bytes(tiny_mlp, calib8):
    for precision in ("float32", "int8"):
        a = convert(tiny_mlp, precision, calib8, progress=False)
        b = convert(tiny_mlp, precision, calib8, progress=False)
        assert a.tflite_bytes == b.tflite_bytes and a.sha256 == b.sha256


def test_convert_unknown_precision_raises_listing_accepted(tiny_mlp):
    with pytest.raises(InvalidArgumentError, match="int4.*accepted: float32, float16, dynamic, int8, int16x8"):
        convert(tiny_mlp, "int4")


def test_convert_io_type_not_available_for_precision_raises(tiny_mlp, calib8):
    with pytest.raises(InvalidArgumentError, match="input_type='int8'.*float16.*accepted: float32"):
        convert(tiny_mlp, "float16", input_type="int8")
    with pytest.raises(InvalidArgumentError, match="output_type='int16'"):
        convert(tiny_mlp, "int8", calib8, output_type="int16")


def test_convert_int8_without_data_raises_data_error_naming_fix(tiny_mlp):
    with pytest.raises(DataError, match="needs representative_data.*dynamic"):
        convert(tiny_mlp, "int8")


def test_convert_dynamic_ignores_missing_data_and_keeps_float_io(tiny_mlp):
    result = convert(tiny_mlp, "dynamic")
    assert result.num_calibration_samples == 0
    assert result.input_type == "float32"
    assert result.to_dict()["precision"] == "dynamic"


def test_convert_num_calibration_samples_user_count_used(tiny_mlp, calib8):
    result = convert(tiny_mlp, "int8", calib8, num_calibration_samples=12, progress=False)
    assert result.num_calibration_samples == 12
    with pytest.raises(InvalidArgumentError, match="num_calibration_samples"):
        convert(tiny_mlp, "int8", calib8, num_calibration_samples=0)


def test_convert_progress_bar_shows_calibration_count(tiny_mlp, calib8, capfd):
    convert(tiny_mlp, "int8", calib8, num_calibration_samples=15, progress=True)
    err = capfd.readouterr().err
    assert "calibrating" in err and "/15" in err
    # The converter's own chatter stays off the terminal.
    assert "fully_quantize" not in err and "Statistics for quantized inputs" not in err


def test_convert_two_input_model_each_input_calibrated_on_its_own_array():
    from tflite_opt._keras import keras

    a, b = keras.Input((5,), name="zeta"), keras.Input((3,), name="alpha")
    merged = keras.layers.Concatenate()([keras.layers.Dense(4)(a), keras.layers.Dense(4)(b)])
    model = keras.Model([a, b], keras.layers.Dense(2)(merged))
    rng = np.random.default_rng(0)
    xa, xb = rng.random((20, 5), dtype=np.float32), 10 * rng.random((20, 3), dtype=np.float32)
    result = convert(model, "int8", [xa, xb], progress=False)
    scales = {d["name"]: d["quantization"]["scale"] for d in io_details(result.tflite_bytes)["inputs"]}
    # Model input order, not alphabetical: zeta spans [0, 1), alpha [0, 10).
    assert scales["serving_default_zeta:0"] == pytest.approx(xa.max() / 255, rel=0.02)
    assert scales["serving_default_alpha:0"] == pytest.approx(xb.max() / 255, rel=0.02)
    with pytest.raises(DataError, match="1 arrays but the model has 2 inputs"):
        convert(model, "int8", xa)
