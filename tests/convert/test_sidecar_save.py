"""ConversionResult.save: .tflite + sidecar JSON + labels.txt, atomic, overwrite only when asked."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from tflite_opt.convert import convert
from tflite_opt.convert.metadata import has_metadata
from tflite_opt.data.calibration import ImagePreprocessing
from tflite_opt.errors import DataError, InvalidArgumentError, OutputExistsError


@pytest.fixture
def int8_result(tiny_mlp, calib8):
    return convert(tiny_mlp, "int8", calib8, progress=False)


def test_save_writes_model_sidecar_and_labels(int8_result, tmp_path):
    path = int8_result.save(tmp_path / "out" / "m_int8.tflite", labels=["a", "b", "c"],
                            normalization=ImagePreprocessing(scale=1 / 255))
    data = path.read_bytes()  # the converter's model plus TFLite metadata
    assert has_metadata(data) and not has_metadata(int8_result.tflite_bytes)
    assert (tmp_path / "out" / "labels.txt").read_text() == "a\nb\nc\n"
    side = json.loads((tmp_path / "out" / "m_int8.json").read_text())
    assert side["model_file"] == "m_int8.tflite" and side["precision"] == "int8"
    inp, out = side["inputs"][0], side["outputs"][0]
    assert inp["dtype"] == "int8" and inp["shape_signature"] == [-1, 8, 8, 1]
    assert out["dtype"] == "int8" and out["shape"] == [1, 3]
    assert isinstance(inp["quantization"]["scale"], float)
    assert isinstance(inp["quantization"]["zero_point"], int)
    assert side["signatures"] == {"serving_default": {"inputs": ["pixels"], "outputs": ["probs"]}}
    assert side["normalization"]["scale"] == pytest.approx(1 / 255)
    assert side["labels"] == ["a", "b", "c"] and side["labels_file"] == "labels.txt"
    assert side["sha256"] == hashlib.sha256(data).hexdigest() and side["tflite_metadata"] is True
    assert side["requires_flex_delegate"] is False
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]  # no temp files


def test_save_sidecar_quantization_matches_interpreter(int8_result, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    int8_result.save(tmp_path / "m.tflite")
    side = json.loads((tmp_path / "m.json").read_text())
    it = Interpreter(model_path=str(tmp_path / "m.tflite"))
    scale, zp = it.get_input_details()[0]["quantization"]
    assert side["inputs"][0]["quantization"]["scale"] == pytest.approx(scale)
    assert side["inputs"][0]["quantization"]["zero_point"] == zp


def test_save_existing_file_raises_and_leaves_it(int8_result, tmp_path):
    target = tmp_path / "m.tflite"
    target.write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="m.tflite.*overwrite=True.*--overwrite"):
        int8_result.save(target)
    assert target.read_bytes() == b"old"
    assert not (tmp_path / "m.json").exists()  # nothing half-written
    int8_result.save(target, overwrite=True, metadata=False)
    assert target.read_bytes() == int8_result.tflite_bytes


def test_save_existing_sidecar_alone_also_blocks(int8_result, tmp_path):
    (tmp_path / "m.json").write_text("{}")
    with pytest.raises(OutputExistsError, match="m.json"):
        int8_result.save(tmp_path / "m.tflite")
    assert not (tmp_path / "m.tflite").exists()


def test_save_shared_labels_same_content_ok_different_blocks(int8_result, tmp_path):
    int8_result.save(tmp_path / "a.tflite", labels=["x", "y", "z"])
    int8_result.save(tmp_path / "b.tflite", labels=["x", "y", "z"])  # same labels.txt: fine
    with pytest.raises(OutputExistsError, match="labels.txt"):
        int8_result.save(tmp_path / "c.tflite", labels=["p", "q", "r"])


def test_save_labels_from_file_and_bad_inputs(int8_result, tmp_path):
    (tmp_path / "names.txt").write_text("cat\ndog\n\nbird\n")
    int8_result.save(tmp_path / "m.tflite", labels=tmp_path / "names.txt")
    assert json.loads((tmp_path / "m.json").read_text())["labels"] == ["cat", "dog", "bird"]
    with pytest.raises(DataError, match="labels is empty"):
        int8_result.save(tmp_path / "n.tflite", labels=[])
    with pytest.raises(InvalidArgumentError, match="must end in .tflite"):
        int8_result.save(tmp_path / "n.bin")
    with pytest.raises(InvalidArgumentError, match="unknown normalization keys"):
        int8_result.save(tmp_path / "n.tflite", normalization={"scal": 1})


def test_to_dict_is_json_and_omits_bytes(int8_result):
    d = int8_result.to_dict()
    json.dumps(d)
    assert d["size_bytes"] == len(int8_result.tflite_bytes) and "tflite_bytes" not in d
    assert d["input_type"] == "int8" and d["num_calibration_samples"] == 30
