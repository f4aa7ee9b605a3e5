"""TFLite metadata: written into every saved .tflite (unless opted out), read back, shown."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from convert_testutil import run_tflite
from tflite_opt.convert import ModelInfo, convert, embed_metadata, read_metadata
from tflite_opt.convert.metadata import has_metadata, minimum_parser_version
from tflite_opt.data.calibration import ImagePreprocessing

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_cnn():
    """An RGB conv classifier on 8x8 images: converts in about a second."""
    from tflite_opt._keras import keras

    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 3), name="pixels")
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="tiny_cnn")


@pytest.fixture(scope="module")
def calib_rgb():
    return np.random.default_rng(2).random((30, 8, 8, 3), dtype=np.float32)


def _metadata_fb():
    from tflite_opt.convert.metadata import _schema_module

    return _schema_module()


def _metadata_buffer(build) -> bytes:
    """A metadata flatbuffer with one subgraph, after ``build(subgraph, fb)`` adds members."""
    import flatbuffers

    fb = _metadata_fb()
    root = fb.ModelMetadataT()
    subgraph = fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [fb.TensorMetadataT()]
    subgraph.outputTensorMetadata = [fb.TensorMetadataT()]
    build(subgraph, fb)
    root.subgraphMetadata = [subgraph]
    builder = flatbuffers.Builder(0)
    builder.Finish(root.Pack(builder), b"M001")
    return bytes(builder.Output())


def test_embed_metadata_round_trip_gives_fields_normalization_and_labels(tiny_cnn, calib_rgb):
    result = convert(tiny_cnn, "float32")
    pre = ImagePreprocessing(scale=1 / 255, mean=(0.5, 0.25, 0.0), std=0.25)
    data = embed_metadata(result.tflite_bytes, ModelInfo(name="tiny", description="test model",
                                                         version="7", author="ACME",
                                                         license="Apache-2.0"),
                          labels=["cat", "dog", "bird"], normalization=pre)
    md = read_metadata(data)
    assert (md["name"], md["description"], md["version"], md["author"], md["license"]) == \
        ("tiny", "test model", "7", "ACME", "Apache-2.0")
    assert md["min_parser_version"] == "1.0.0"  # no member newer than the 1.0.0 schema
    image = md["inputs"][0]
    assert image["content"] == "ImageProperties" and image["color_space"] == "RGB"
    # (pixel / 255 - mean) / std == (pixel - 255 * mean) / (255 * std)
    assert image["normalization"]["mean"] == pytest.approx([127.5, 63.75, 0.0])
    assert image["normalization"]["std"] == pytest.approx([63.75, 63.75, 63.75])
    # the value range of a float input is that of pixels 0 and 255 after normalization
    assert image["range"][0] == pytest.approx([-2.0, -1.0, 0.0])
    assert image["range"][1] == pytest.approx([2.0, 3.0, 4.0])
    scores = md["outputs"][0]
    assert scores["labels"] == ["cat", "dog", "bird"] and scores["range"] == [[0.0], [1.0]]
    assert scores["associated_files"] == [{"name": "labels.txt", "type": "TENSOR_AXIS_LABELS"}]
    assert md["associated_files"] == {"labels.txt": len("cat\ndog\nbird\n")}


@pytest.mark.parametrize("precision", ["float32", "int8"])
def test_embed_metadata_leaves_outputs_bit_identical(tiny_cnn, calib_rgb, precision):
    result = convert(tiny_cnn, precision, calib_rgb, progress=False)
    data = embed_metadata(result.tflite_bytes, labels=["a", "b", "c"],
                          normalization=ImagePreprocessing())
    assert has_metadata(data) and not has_metadata(result.tflite_bytes)
    np.testing.assert_array_equal(run_tflite(data, calib_rgb[:8]),
                                  run_tflite(result.tflite_bytes, calib_rgb[:8]))


def test_embed_metadata_without_normalization_or_matching_labels_writes_plain_tensors(tiny_mlp):
    data = convert(tiny_mlp, "float32").tflite_bytes
    with pytest.warns(UserWarning, match="2 labels do not match output"):
        md = read_metadata(embed_metadata(data, labels=["a", "b"]))
    # A float 8x8x1 input with unknown preprocessing is not claimed to be an image.
    assert md["inputs"][0]["content"] == "FeatureProperties"
    assert "normalization" not in md["inputs"][0]
    assert md["outputs"][0]["content"] == "FeatureProperties"
    assert "labels" not in md["outputs"][0] and md["associated_files"] == {}
    # Without a version the content hash identifies the model.
    assert md["version"] == "sha256:" + hashlib.sha256(data).hexdigest()[:16]


@pytest.mark.parametrize("member, expected", [
    ("nothing", "1.0.0"),
    ("vocabulary", "1.0.1"),
    ("input_process_units", "1.1.0"),
    ("output_tensor_groups", "1.2.0"),
    ("file_version", "1.4.1"),
    ("custom_metadata", "1.5.0"),
])
def test_minimum_parser_version_follows_schema_table(member, expected):
    def build(subgraph, fb):
        if member == "vocabulary":
            vocab = fb.AssociatedFileT()
            vocab.name, vocab.type = "vocab.txt", fb.AssociatedFileType.VOCABULARY
            subgraph.inputTensorMetadata[0].associatedFiles = [vocab]
        elif member == "input_process_units":
            subgraph.inputProcessUnits = [fb.ProcessUnitT()]
        elif member == "output_tensor_groups":
            subgraph.outputTensorGroups = [fb.TensorGroupT()]
        elif member == "file_version":
            labels = fb.AssociatedFileT()
            labels.name, labels.version = "labels.txt", "2"
            subgraph.outputTensorMetadata[0].associatedFiles = [labels]
        elif member == "custom_metadata":
            custom = fb.CustomMetadataT()
            custom.name = "x"
            subgraph.customMetadata = [custom]

    assert minimum_parser_version(_metadata_buffer(build)) == expected


def test_minimum_parser_version_rejects_other_buffers():
    from tflite_opt.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError, match="M001"):
        minimum_parser_version(b"not metadata at all")


def test_mediapipe_writers_get_the_parser_version_helper():
    from tflite_opt.convert.metadata import _MISSING_HELPER, _mediapipe_writers

    _mediapipe_writers()
    helper = sys.modules[_MISSING_HELPER]
    buffer = _metadata_buffer(lambda subgraph, fb: setattr(subgraph, "inputProcessUnits",
                                                           [fb.ProcessUnitT()]))
    assert helper.GetMinimumMetadataParserVersion(buffer) == "1.1.0"


def test_save_embeds_metadata_by_default_and_sidecar_hashes_the_file(tiny_cnn, tmp_path):
    result = convert(tiny_cnn, "float32")
    path = result.save(tmp_path / "m.tflite", labels=["a", "b", "c"],
                       normalization=ImagePreprocessing(scale=1 / 255),
                       model_info=ModelInfo(author="ACME", license="MIT"))
    md = read_metadata(path)
    assert md["name"] == "m" and md["author"] == "ACME" and md["license"] == "MIT"
    assert "float32" in md["description"] and md["outputs"][0]["labels"] == ["a", "b", "c"]
    side = json.loads((tmp_path / "m.json").read_text())
    assert side["tflite_metadata"] is True and side["size_bytes"] == path.stat().st_size
    assert side["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_save_metadata_false_writes_the_converter_bytes(tiny_cnn, tmp_path):
    result = convert(tiny_cnn, "float32")
    path = result.save(tmp_path / "m.tflite", labels=["a", "b", "c"], metadata=False)
    assert path.read_bytes() == result.tflite_bytes and read_metadata(path) is None
    assert json.loads((tmp_path / "m.json").read_text())["tflite_metadata"] is False


def test_inspect_shows_metadata(tiny_cnn, tmp_path):
    from tflite_opt.runtime import inspect_model

    path = convert(tiny_cnn, "float32").save(tmp_path / "m.tflite", labels=["a", "b", "c"],
                                             normalization=ImagePreprocessing(scale=1 / 255))
    assert inspect_model(path).metadata["outputs"][0]["labels"] == ["a", "b", "c"]
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "inspect.py"),
                           f"--model={path}"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "TFLite metadata (min parser 1.0.0):" in proc.stdout
    assert "input 'image': ImageProperties; RGB; normalization (pixel - [0.0, 0.0, 0.0]) / " \
           "[255.0, 255.0, 255.0]" in proc.stdout
    assert "3 labels [a, b, c]" in proc.stdout


def test_read_metadata_rejects_corrupt_metadata_buffer(tiny_cnn):
    from tflite_opt.errors import InvalidTFLiteError

    data = bytearray(embed_metadata(convert(tiny_cnn, "float32").tflite_bytes))
    identifier = bytes(data).find(b"M001")  # the metadata buffer's file identifier
    data[identifier:identifier + 4] = b"XXXX"
    with pytest.raises(InvalidTFLiteError, match="not a metadata flatbuffer"):
        read_metadata(bytes(data))


def test_embed_metadata_keeps_sparse_encoded_weights(tiny_mlp):
    """The writer repacks the flatbuffer: sparse weights must stay sparse and give the same outputs."""
    from tflite_opt.runtime import inspect_model

    rng = np.random.default_rng(3)
    weights = tiny_mlp.get_weights()
    weights[0] = weights[0] * (rng.random(weights[0].shape) > 0.8)  # 80% zeros: sparse-encoded
    tiny_mlp.set_weights(weights)
    result = convert(tiny_mlp, "float32")
    assert result.sparsity_aware
    data = embed_metadata(result.tflite_bytes)
    x = rng.random((4, 8, 8, 1), dtype=np.float32)
    np.testing.assert_array_equal(run_tflite(data, x), run_tflite(result.tflite_bytes, x))
    assert [w["sparse_format"] for w in inspect_model(data).weights] == \
        [w["sparse_format"] for w in inspect_model(result.tflite_bytes).weights]
    assert any(w["sparse_format"] for w in inspect_model(data).weights)
