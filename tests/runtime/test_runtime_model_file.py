"""read_tflite's semantic checks on well-formed flatbuffers with inconsistent contents."""

from __future__ import annotations

import flatbuffers
import pytest
from ai_edge_litert import schema_py_generated as schema

from tflite_opt.errors import InvalidTFLiteError
from tflite_opt.runtime import read_tflite


def _edit(data: bytes, change) -> bytes:
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    change(model)
    builder = flatbuffers.Builder(len(data) + 1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _first_constant(model):
    graph = model.subgraphs[0]
    return next(t for t in graph.tensors if model.buffers[t.buffer].data is not None)


def _set(owner, field: str, index: int, value) -> None:
    # Vectors unpack as read-only numpy views of the buffer: replace, don't mutate.
    values = list(getattr(owner, field))
    values[index] = value
    setattr(owner, field, values)


def _set_op_input(model, value):
    _set(model.subgraphs[0].operators[0], "inputs", 0, value)


def _grow_constant(model):
    tensor = _first_constant(model)
    _set(tensor, "shape", 0, int(tensor.shape[0]) * 4)


CASES = [
    ("operator input out of range", lambda m: _set_op_input(m, 10_000), "out of range"),
    ("negative operator input", lambda m: _set_op_input(m, -7), "out of range"),
    ("opcode index out of range",
     lambda m: setattr(m.subgraphs[0].operators[0], "opcodeIndex", 99), "operator codes"),
    ("buffer index out of range",
     lambda m: setattr(m.subgraphs[0].tensors[0], "buffer", 10_000), "buffers"),
    ("constant smaller than its shape", _grow_constant, "bytes of constant data"),
    ("unknown tensor type", lambda m: setattr(m.subgraphs[0].tensors[0], "type", 99),
     "unknown type"),
    ("negative dimension", lambda m: _set(m.subgraphs[0].tensors[0], "shape", 1, -5),
     "negative dimension"),
    ("graph output out of range", lambda m: _set(m.subgraphs[0], "outputs", 0, 5000),
     "out of range"),
    ("no subgraphs", lambda m: setattr(m, "subgraphs", []), "no subgraphs"),
]


@pytest.mark.parametrize("case, change, message", CASES, ids=[c[0] for c in CASES])
def test_read_tflite_inconsistent_model_raises(tflite_files, case, change, message):
    data = tflite_files["float"].read_bytes()
    assert read_tflite(_edit(data, lambda m: None))  # the round trip itself is valid
    with pytest.raises(InvalidTFLiteError, match=message):
        read_tflite(_edit(data, change))


def test_read_tflite_wrong_identifier_and_bad_root_offset(tflite_files):
    data = bytearray(tflite_files["float"].read_bytes())
    bad_id = bytes(data[:4]) + b"XXXX" + bytes(data[8:])
    with pytest.raises(InvalidTFLiteError, match="identifier"):
        read_tflite(bad_id)
    data[0:4] = (len(data) + 100).to_bytes(4, "little")
    with pytest.raises(InvalidTFLiteError, match="past the end"):
        read_tflite(bytes(data))


def test_read_tflite_rejects_non_model_argument_types():
    with pytest.raises(InvalidTFLiteError, match="path or bytes"):
        read_tflite(12345)
