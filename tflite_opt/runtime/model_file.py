"""Reading a ``.tflite`` file safely: structural validation before native code sees it.

The native interpreter trusts the flatbuffer it is given; a truncated or corrupt
file can make it read out of bounds and kill the process. Python's ``flatbuffers``
package has no ``Verifier`` (only the C++ one does), so this module carries a
small schema-driven verifier of its own, modelled on ``flatbuffers::Verifier``:
every table's vtable, every offset, vector and string must lie inside the
buffer and be aligned, with depth and table-count limits. After the structure,
the TFLite semantics are checked: every tensor, buffer, opcode and subgraph
index in range, constant buffers as large as their tensor's shape says.

Example:
    >>> data = read_tflite("model.tflite")   # bytes, or InvalidTFLiteError
"""

from __future__ import annotations

import dataclasses
import math
import os
import struct
from pathlib import Path
from typing import Union

import numpy as np

from tflite_opt.errors import InvalidTFLiteError
from tflite_opt.limits import format_bytes, usable_memory_bytes

ModelSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

FILE_IDENTIFIER = b"TFL3"
# Flatbuffers address 32-bit offsets, so one buffer is < 2 GiB; bigger models
# keep their weights outside the flatbuffer, which this tool does not read.
MAX_MODEL_BYTES = 2**31 - 1
_MAX_DEPTH = 64
_MAX_TABLES = 1_000_000

# TensorType enum value -> (name, bytes per element or 0 if variable/sub-byte).
TENSOR_TYPES: dict[int, tuple[str, float]] = {
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1),
    4: ("int64", 8), 5: ("string", 0), 6: ("bool", 1), 7: ("int16", 2),
    8: ("complex64", 8), 9: ("int8", 1), 10: ("float64", 8), 11: ("complex128", 16),
    12: ("uint64", 8), 13: ("resource", 0), 14: ("variant", 0), 15: ("uint32", 4),
    16: ("uint16", 2), 17: ("int4", 0.5), 18: ("bfloat16", 2), 19: ("int2", 0.25),
}

# --- schema description for the verifier --------------------------------------
# Field kinds: scalar size in bytes (int), or one of the strings below.
# "str": string; "vec:N": vector of N-byte scalars; "vec:T": vector of tables of
# spec T; "table:T": table of spec T; "union:S": table whose type is the union
# type field in slot S, verified generically (its vtable and field bounds).
_SPEC: dict[str, dict[int, object]] = {
    "Model": {0: 4, 1: "vec:OperatorCode", 2: "vec:SubGraph", 3: "str", 4: "vec:Buffer",
              5: "vec:4", 6: "vec:Metadata", 7: "vec:SignatureDef", 8: "vec:Generic",
              9: "vec:Generic"},
    "SubGraph": {0: "vec:Tensor", 1: "vec:4", 2: "vec:4", 3: "vec:Operator", 4: "str", 5: 4},
    "Tensor": {0: "vec:4", 1: 1, 2: 4, 3: "str", 4: "table:QuantizationParameters", 5: 1,
               6: "table:SparsityParameters", 7: "vec:4", 8: 1, 9: "vec:VariantSubType", 10: 4},
    "Operator": {0: 4, 1: "vec:4", 2: "vec:4", 3: 1, 4: "union", 5: "vec:1", 6: 1, 7: "vec:1",
                 8: "vec:4", 9: 8, 10: 8, 11: 1, 12: "union", 13: 4},
    "OperatorCode": {0: 1, 1: "str", 2: 4, 3: 4},
    "Buffer": {0: "vec:1", 1: 8, 2: 8},
    "QuantizationParameters": {0: "vec:4", 1: "vec:4", 2: "vec:4", 3: "vec:8", 4: 1,
                               5: "union", 6: 4},
    "SignatureDef": {0: "vec:TensorMap", 1: "vec:TensorMap", 2: "str", 4: 4},
    "TensorMap": {0: "str", 1: 4},
    "Metadata": {0: "str", 1: 4},
    "SparsityParameters": {0: "vec:4", 1: "vec:4", 2: "vec:DimensionMetadata"},
    "DimensionMetadata": {0: 1, 1: 4, 2: 1, 3: "union", 4: 1, 5: "union"},
    "VariantSubType": {0: "vec:4", 1: 1, 2: 1},
    "Generic": {},
}


class _Corrupt(Exception):
    """Internal: the buffer fails a structural check (message says which)."""


class _Verifier:
    """Bounds- and alignment-checks a flatbuffer against ``_SPEC``."""

    def __init__(self, buf: bytes):
        self.buf = buf
        self.n = len(buf)
        self.tables = 0

    def _need(self, pos: int, size: int, align: int, what: str) -> None:
        if pos < 0 or size < 0 or pos + size > self.n:
            raise _Corrupt(f"{what} at byte {pos} (+{size}) runs past the end of the "
                           f"{self.n}-byte file")
        if align > 1 and pos % align:
            raise _Corrupt(f"{what} at byte {pos} is not {align}-byte aligned")

    def _u32(self, pos: int, what: str) -> int:
        self._need(pos, 4, 4, what)
        return struct.unpack_from("<I", self.buf, pos)[0]

    def _offset(self, pos: int, what: str) -> int:
        rel = self._u32(pos, what)
        if rel == 0:
            raise _Corrupt(f"{what} at byte {pos} is a zero offset")
        return pos + rel

    def table(self, pos: int, spec_name: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise _Corrupt(f"tables nested deeper than {_MAX_DEPTH}")
        self.tables += 1
        if self.tables > _MAX_TABLES:
            raise _Corrupt(f"more than {_MAX_TABLES} tables")
        what = f"{spec_name} table"
        self._need(pos, 4, 4, what)
        vt = pos - struct.unpack_from("<i", self.buf, pos)[0]
        self._need(vt, 4, 2, f"{what} vtable")
        vt_size, t_size = struct.unpack_from("<HH", self.buf, vt)
        if vt_size < 4 or vt_size % 2:
            raise _Corrupt(f"{what} vtable at byte {vt} has invalid size {vt_size}")
        self._need(vt, vt_size, 2, f"{what} vtable")
        self._need(pos, t_size, 1, what)
        n_fields = (vt_size - 4) // 2
        slots = struct.unpack_from(f"<{n_fields}H", self.buf, vt + 4)
        spec = _SPEC[spec_name]
        for slot, field_off in enumerate(slots):
            if field_off == 0:
                continue
            kind = spec.get(slot)
            if kind is None:  # unknown or untyped field: at least inside the table
                if field_off + 1 > t_size:
                    raise _Corrupt(f"{what} field {slot} lies outside its table")
                continue
            field_pos = pos + field_off
            size = kind if isinstance(kind, int) else 4
            if field_off + size > t_size:
                raise _Corrupt(f"{what} field {slot} lies outside its table")
            if isinstance(kind, int):
                self._need(field_pos, kind, 1, f"{what} field {slot}")
                continue
            target = self._offset(field_pos, f"{what} field {slot} offset")
            if kind == "str":
                self.string(target, f"{what} field {slot}")
            elif kind.startswith("vec:"):
                self.vector(target, kind[4:], depth, f"{what} field {slot}")
            elif kind.startswith("table:"):
                self.table(target, kind[6:], depth + 1)
            else:  # union member: typed by a sibling field, checked generically
                self.table(target, "Generic", depth + 1)

    def string(self, pos: int, what: str) -> None:
        length = self._u32(pos, f"{what} string length")
        self._need(pos + 4, length + 1, 1, f"{what} string")
        if self.buf[pos + 4 + length] != 0:
            raise _Corrupt(f"{what} string at byte {pos} is not zero-terminated")

    def vector(self, pos: int, elem: str, depth: int, what: str) -> int:
        length = self._u32(pos, f"{what} vector length")
        if elem.isdigit():
            self._need(pos + 4, length * int(elem), 1, f"{what} vector")
            return length
        self._need(pos + 4, length * 4, 4, f"{what} vector")
        for i in range(length):
            self.table(self._offset(pos + 4 + 4 * i, f"{what}[{i}]"), elem, depth + 1)
        return length


def _describe(source: ModelSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes in memory>"
    return repr(os.fspath(source))


def _structure_error(name: str, reason: str) -> InvalidTFLiteError:
    return InvalidTFLiteError(
        f"model {name} is not a valid TFLite flatbuffer: {reason}; pass a .tflite file "
        "written by the TFLite converter (e.g. tflite_opt.convert or tf.lite.TFLiteConverter)")


def read_tflite(model: ModelSource, *, max_bytes: int = MAX_MODEL_BYTES,
                max_tensor_bytes: int | None = None) -> bytes:
    """Reads and validates a ``.tflite`` model, returning its bytes.

    Checks that the file exists, is not empty or oversized, carries the ``TFL3``
    identifier, is a structurally sound flatbuffer (every offset, vector and
    string in bounds) and is semantically consistent (tensor, buffer, opcode and
    subgraph indices in range; constant buffers match their tensor's size;
    per-channel quantization matches the shape; no tensor declares more bytes than
    this process can allocate), so that the native interpreter never sees a file
    that could crash it or exhaust the machine's memory.

    Args:
        model: Path to a ``.tflite`` file, or its bytes.
        max_bytes: Largest accepted size. Defaults to 2 GiB - 1, the flatbuffer limit.
        max_tensor_bytes: Largest size one tensor may declare (shape x dtype size).
            Defaults to None: the memory this process can use (``limits.usable_memory_bytes``).

    Returns:
        The model's bytes.

    Raises:
        InvalidTFLiteError: Missing, unreadable, empty, oversized, not a TFLite
            flatbuffer, truncated or corrupt; the message names the file and why.

    Example:
        >>> data = read_tflite("/tmp/model.tflite")
        >>> interpreter = Interpreter(model_content=data)
    """
    name = _describe(model) if isinstance(model, (str, os.PathLike, bytes, bytearray,
                                                    memoryview)) else repr(model)
    if isinstance(model, (bytes, bytearray, memoryview)):
        data = bytes(model)
    elif isinstance(model, (str, os.PathLike)):
        path = Path(model)
        if not path.exists():
            raise InvalidTFLiteError(f"model file {name} does not exist; pass the path of an "
                                     "existing .tflite file")
        if not path.is_file():
            raise InvalidTFLiteError(f"model path {name} is not a regular file; pass the path "
                                     "of a .tflite file")
        size = path.stat().st_size
        if size > max_bytes:
            raise InvalidTFLiteError(f"model file {name} is {size} bytes, larger than the "
                                     f"{max_bytes}-byte limit of a TFLite flatbuffer")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InvalidTFLiteError(f"model file {name} cannot be read: {exc}") from exc
    else:
        raise InvalidTFLiteError(f"model must be a path or bytes of a .tflite file, got "
                                 f"{type(model).__name__}")
    verify_tflite(data, name=name, max_bytes=max_bytes, max_tensor_bytes=max_tensor_bytes)
    return data


def verify_tflite(data: bytes, *, name: str = "<bytes>", max_bytes: int = MAX_MODEL_BYTES,
                  max_tensor_bytes: int | None = None) -> None:
    """Raises ``InvalidTFLiteError`` unless ``data`` is a sound TFLite flatbuffer.

    Example:
        >>> verify_tflite(open("model.tflite", "rb").read(), name="model.tflite")
    """
    if len(data) == 0:
        raise InvalidTFLiteError(f"model {name} is empty (0 bytes); pass a .tflite file "
                                 "written by the TFLite converter")
    if len(data) > max_bytes:
        raise InvalidTFLiteError(f"model {name} is {len(data)} bytes, larger than the "
                                 f"{max_bytes}-byte limit of a TFLite flatbuffer")
    if len(data) < 16:
        raise _structure_error(name, f"only {len(data)} bytes long (truncated)")
    if data[4:8] != FILE_IDENTIFIER:
        found = data[4:8]
        hint = " (it looks like text)" if _looks_like_text(data) else ""
        raise _structure_error(name, f"file identifier is {found!r}, expected {FILE_IDENTIFIER!r}"
                               f"{hint}")
    try:
        verifier = _Verifier(data)
        root = verifier._offset(0, "root table offset")
        verifier.table(root, "Model", 0)
        _check_semantics(data, verifier)
        _check_tensor_sizes(data, name, max_tensor_bytes)
    except _Corrupt as exc:
        raise _structure_error(name, f"{exc} (the file is truncated or corrupt)") from None
    except (struct.error, IndexError, ValueError, OverflowError, MemoryError) as exc:
        raise _structure_error(name, f"unreadable structure ({type(exc).__name__}: {exc})") from None


def _looks_like_text(data: bytes) -> bool:
    head = data[:512]
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(32 <= b < 127 or b in (9, 10, 13) for b in head)


def _check_semantics(data: bytes, verifier: _Verifier) -> None:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    n_codes = model.OperatorCodesLength()
    n_buffers = model.BuffersLength()
    n_subgraphs = model.SubgraphsLength()
    if n_subgraphs == 0:
        raise _Corrupt("the model has no subgraphs")
    if n_buffers == 0:
        raise _Corrupt("the model has no buffers (a valid model has at least the empty buffer 0)")
    for c in range(n_codes):
        code = model.OperatorCodes(c)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin < 0 or builtin > 1000:
            raise _Corrupt(f"operator code {c} has invalid builtin code {builtin}")
    buffer_sizes = []
    for b in range(n_buffers):
        buf = model.Buffers(b)
        offset, size = buf.Offset(), buf.Size()
        if offset > 1 and (offset + size > len(data)):
            raise _Corrupt(f"buffer {b} points at bytes {offset}..{offset + size} outside the file")
        buffer_sizes.append(buf.DataLength() if offset <= 1 else size)
    for s in range(n_subgraphs):
        sg = model.Subgraphs(s)
        n_tensors = sg.TensorsLength()
        where = f"subgraph {s}"
        for t in range(n_tensors):
            tensor = sg.Tensors(t)
            ttype = tensor.Type()
            if ttype not in TENSOR_TYPES:
                raise _Corrupt(f"{where} tensor {t} has unknown type {ttype}")
            shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else np.zeros(0, np.int32)
            if np.any(shape < 0):
                raise _Corrupt(f"{where} tensor {t} has a negative dimension in shape "
                               f"{shape.tolist()}")
            b = tensor.Buffer()
            if b >= n_buffers:
                raise _Corrupt(f"{where} tensor {t} uses buffer {b} but the model has "
                               f"{n_buffers} buffers")
            elem = TENSOR_TYPES[ttype][1]
            if b and buffer_sizes[b] and elem and tensor.Sparsity() is None:
                expected = int(np.prod(shape.astype(np.int64))) * elem
                if buffer_sizes[b] < int(expected):
                    raise _Corrupt(f"{where} tensor {t} needs {int(expected)} bytes of constant "
                                   f"data but buffer {b} holds {buffer_sizes[b]}")
            q = tensor.Quantization()
            if q is not None and q.ZeroPointLength() and q.ScaleLength() != q.ZeroPointLength():
                raise _Corrupt(f"{where} tensor {t} has {q.ScaleLength()} scales but "
                               f"{q.ZeroPointLength()} zero points (one per scale expected)")
            if q is not None and q.ScaleLength() > 1:  # per-channel: one scale per channel
                axis, n_scales = q.QuantizedDimension(), q.ScaleLength()
                if not 0 <= axis < len(shape):
                    raise _Corrupt(f"{where} tensor {t} is quantized per channel along "
                                   f"dimension {axis}, but its shape {shape.tolist()} has "
                                   f"{len(shape)} dimensions")
                if int(shape[axis]) != n_scales:
                    raise _Corrupt(f"{where} tensor {t} has {n_scales} scales for dimension "
                                   f"{axis} of size {int(shape[axis])} (shape {shape.tolist()})")
        for label, length, get in (("input", sg.InputsLength(), sg.Inputs),
                                   ("output", sg.OutputsLength(), sg.Outputs)):
            for i in range(length):
                if not 0 <= get(i) < n_tensors:
                    raise _Corrupt(f"{where} {label} {i} is tensor {get(i)}, out of range "
                                   f"0..{n_tensors - 1}")
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            if op.OpcodeIndex() >= n_codes:
                raise _Corrupt(f"{where} operator {o} uses opcode {op.OpcodeIndex()} but the "
                               f"model has {n_codes} operator codes")
            for label, length, get in (("input", op.InputsLength(), op.Inputs),
                                       ("output", op.OutputsLength(), op.Outputs),
                                       ("intermediate", op.IntermediatesLength(),
                                        op.Intermediates)):
                for i in range(length):
                    idx = get(i)
                    # -1 marks an omitted optional input.
                    if idx >= n_tensors or idx < (-1 if label == "input" else 0):
                        raise _Corrupt(f"{where} operator {o} {label} {i} is tensor {idx}, out "
                                       f"of range 0..{n_tensors - 1}")
            big_off, big_size = op.LargeCustomOptionsOffset(), op.LargeCustomOptionsSize()
            if big_off > 1 and big_off + big_size > len(data):
                raise _Corrupt(f"{where} operator {o} custom options lie outside the file")
    for k in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(k)
        if sig.SubgraphIndex() >= n_subgraphs:
            raise _Corrupt(f"signature {k} names subgraph {sig.SubgraphIndex()} of "
                           f"{n_subgraphs}")
        n_tensors = model.Subgraphs(sig.SubgraphIndex()).TensorsLength()
        for length, get in ((sig.InputsLength(), sig.Inputs), (sig.OutputsLength(), sig.Outputs)):
            for i in range(length):
                if get(i).TensorIndex() >= n_tensors:
                    raise _Corrupt(f"signature {k} maps to tensor {get(i).TensorIndex()}, out "
                                   f"of range")
    for m in range(model.MetadataLength()):
        if model.Metadata(m).Buffer() >= n_buffers:
            raise _Corrupt(f"metadata {m} uses buffer {model.Metadata(m).Buffer()} of "
                           f"{n_buffers}")


def _check_tensor_sizes(data: bytes, name: str, max_tensor_bytes: int | None) -> None:
    """Raises InvalidTFLiteError if a tensor declares more bytes than can be allocated.

    The interpreter allocates every tensor its shape declares (a 344-byte file can ask
    for 6 GiB), so a hostile or corrupt shape must be refused before it is built.
    """
    from ai_edge_litert import schema_py_generated as schema

    limit = usable_memory_bytes() if max_tensor_bytes is None else max_tensor_bytes
    model = schema.Model.GetRootAs(data, 0)
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            elem = TENSOR_TYPES[tensor.Type()][1]
            if not elem or not tensor.ShapeLength():
                continue
            dims = [int(d) for d in tensor.ShapeAsNumpy()]
            declared = math.prod(dims) * elem  # Python ints: no int32/int64 overflow
            if declared > limit:
                tname = tensor.Name().decode("utf-8", "replace")[:80] if tensor.Name() else ""
                raise InvalidTFLiteError(
                    f"model {name} is not a valid TFLite model for this process: tensor {t} "
                    f"{tname!r} of subgraph {s} declares shape "
                    f"{dims[:8]}{'...' if len(dims) > 8 else ''} "
                    f"{TENSOR_TYPES[tensor.Type()][0]}: {format_bytes(declared)}, more than the "
                    f"{format_bytes(limit)} this process can allocate (machine memory, cgroup and "
                    "ulimit); the file is corrupt or hostile, or needs a bigger machine")


@dataclasses.dataclass(frozen=True)
class OperatorCode:
    """One entry of a model's operator-code table.

    Attributes:
        builtin: The builtin op name (``"CONV_2D"``; ``"CUSTOM"`` for custom and Flex ops;
            ``"BUILTIN_<n>"`` for a code this schema does not know).
        custom: The custom code (``"FlexCumprod"``), or ``""`` for builtin ops.
        version: The op version.
    """

    builtin: str
    custom: str
    version: int

    @property
    def name(self) -> str:
        """What the op is called: the custom code of a custom/Flex op, else the builtin name."""
        return self.custom if self.builtin == "CUSTOM" and self.custom else self.builtin


def operator_codes(data: bytes) -> list[OperatorCode]:
    """The operator-code table of a model already checked by ``read_tflite``.

    Example:
        >>> [c.name for c in operator_codes(read_tflite("m.tflite"))]
        ['CONV_2D', 'FULLY_CONNECTED', 'SOFTMAX']
    """
    from ai_edge_litert import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    model = schema.Model.GetRootAs(data, 0)
    codes = []
    for c in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(c)
        # Codes below 127 may sit only in the deprecated field (older converters); the
        # schema's rule is to take the larger of the two.
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode().decode("utf-8", "replace") if code.CustomCode() else ""
        codes.append(OperatorCode(names.get(builtin, f"BUILTIN_{builtin}"), custom, code.Version()))
    return codes


def node_op_names(data: bytes) -> list[str]:
    """The op name of every node, subgraph by subgraph, of a model checked by ``read_tflite``.

    Example:
        >>> node_op_names(read_tflite("m.tflite"))
        ['CONV_2D', 'CONV_2D', 'MAX_POOL_2D', ...]
    """
    from ai_edge_litert import schema_py_generated as schema

    names = [code.name for code in operator_codes(data)]
    model = schema.Model.GetRootAs(data, 0)
    return [names[model.Subgraphs(s).Operators(o).OpcodeIndex()]
            for s in range(model.SubgraphsLength())
            for o in range(model.Subgraphs(s).OperatorsLength())]
