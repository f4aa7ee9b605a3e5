"""inspect_model figures checked against a model with known sparsity and cluster count."""

from __future__ import annotations

import json

import pytest

from tflite_opt.errors import InvalidTFLiteError
from tflite_opt.runtime import inspect_model
from tflite_opt.runtime.inspection import layer_of


def test_inspect_float_model_measures_known_sparsity_and_clusters(known_weights_model):
    info = inspect_model(known_weights_model["float"])
    dense = info.weight("dense_a")
    assert dense["role"] == "weight" and dense["layer"] == "dense_a"
    assert dense["num_elements"] == 512
    assert dense["zeros"] == 256
    assert dense["sparsity"] == pytest.approx(0.5)
    assert dense["unique_values"] == 5  # 4 centroids + 0
    conv = info.weight("conv_a")
    assert conv["sparsity"] == pytest.approx(0.75)
    assert conv["unique_values"] == 2
    assert conv["size_bytes"] == 72 * 4


def test_inspect_int8_model_keeps_sparsity_and_per_channel_clusters(known_weights_model):
    info = inspect_model(known_weights_model["int8"])
    dense = info.weight("dense_a")
    assert dense["dtype"] == "int8"
    assert dense["size_bytes"] == 512
    # Symmetric int8 weights keep zero exactly zero.
    assert dense["sparsity"] == pytest.approx(0.5)
    per_channel = dense["max_unique_per_channel"]
    assert (per_channel if per_channel is not None else dense["unique_values"]) <= 5
    assert info.weight("conv_a")["sparsity"] == pytest.approx(0.75)


def test_inspect_reports_ops_io_quantization_and_signatures(tflite_files):
    info = inspect_model(tflite_files["int8"])
    assert info.op_counts["CONV_2D"] == 3
    assert info.op_counts["FULLY_CONNECTED"] == 2
    assert info.size_bytes == tflite_files["int8"].stat().st_size
    (inp,) = info.inputs
    assert inp["dtype"] == "int8" and inp["shape_signature"][1:] == [16, 16, 1]
    assert len(inp["quantization"]["scale"]) == 1 and inp["quantization"]["scale"][0] > 0
    (out,) = info.outputs
    assert out["quantization"]["scale"][0] == pytest.approx(1 / 256)
    assert list(info.signatures) == ["serving_default"]
    assert info.dtype_counts["int8"] > 0
    # Layer breakdown plus graph bytes add up to the file.
    assert sum(info.layer_sizes.values()) + info.graph_bytes == info.size_bytes
    assert max(info.layer_sizes, key=info.layer_sizes.get) == "dense1"
    json.dumps(info.to_dict(), default=str)


def test_inspect_float_model_is_gpu_compatible(tflite_files):
    for kind in ("float", "int8"):
        gpu = inspect_model(tflite_files[kind]).gpu
        assert gpu.compatible, gpu.unsupported_ops
        assert gpu.unsupported_nodes == 0


def test_gpu_check_rejects_cumsum_topk_and_flex_models(unsupported_gpu_models):
    gpu = inspect_model(unsupported_gpu_models["cumsum_topk"]).gpu
    assert not gpu.compatible
    assert {op for op, _ in gpu.unsupported_ops} == {"CUMSUM", "TOPK_V2"}
    flex = inspect_model(unsupported_gpu_models["flex"])
    assert any(op.startswith("Flex") for op in flex.op_counts)
    assert not flex.gpu.compatible
    assert "Flex" in flex.gpu.unsupported_ops[0][1]


def test_gpu_check_rejects_int64_tensors():
    from tflite_opt.runtime.gpu_compat import check_gpu_compatibility

    tensor = {"name": "ids", "dtype": "int64", "is_constant": False,
              "quantization": {"scale": [], "zero_point": [], "axis": None}}
    ops = [{"op": "ADD", "custom_code": "", "version": 1, "inputs": [0], "outputs": [0]}]
    result = check_gpu_compatibility(ops, [tensor])
    assert not result.compatible and "int64" in result.unsupported_ops[0][1]


@pytest.mark.parametrize("name, layer", [
    ("digits_cnn/conv1/Conv2D", "conv1"),
    ("digits_cnn/relu2/Relu;digits_cnn/conv2/Conv2D", "conv2"),
    ("serving_default_image:0", "serving_default_image"),
])
def test_layer_of_converter_names_gives_keras_layer(name, layer):
    assert layer_of(name) == layer


def test_inspect_text_file_raises_invalid_tflite(tmp_path):
    path = tmp_path / "notes.tflite"
    path.write_text("not a model at all, just some text\n" * 10)
    with pytest.raises(InvalidTFLiteError, match="looks like text"):
        inspect_model(path)


@pytest.mark.parametrize("variant", ["float16", "sparse"])
def test_inspect_float16_and_sparse_encodings_keep_known_sparsity(known_weights_model, variant):
    from tflite_opt._keras import tf

    converter = tf.lite.TFLiteConverter.from_keras_model(known_weights_model["model"])
    if variant == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    else:
        converter.optimizations = [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    info = inspect_model(converter.convert())
    dense = info.weight("dense_a")  # reaches FULLY_CONNECTED through DEQUANTIZE / DENSIFY
    assert dense["num_elements"] == 512
    assert dense["sparsity"] == pytest.approx(0.5)
    if variant == "float16":
        assert dense["dtype"] == "float16" and dense["unique_values"] == 5
    else:
        assert dense["sparse_format"] and "DENSIFY" in info.op_counts
        assert "256 of 512 values stored" in dense["note"]
