"""A structural verifier for flatbuffers, driven by a description of the TFLite schema.

Python's ``flatbuffers`` package has no ``Verifier`` (only the C++ one does), so this
module carries a small one of its own, modelled on ``flatbuffers::Verifier``: every
table's vtable, every offset, vector and string must lie inside the buffer and be
aligned, with depth and table-count limits. It checks structure only; what the
fields mean is checked in ``model_semantics.py``.

Example:
    >>> verifier = FlatbufferVerifier(data)
    >>> verifier.table(verifier.offset(0, "root table offset"), "Model", 0)  # or FlatbufferCorrupt
"""

from __future__ import annotations

import struct

_MAX_DEPTH = 64
_MAX_TABLES = 1_000_000

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


class FlatbufferCorrupt(Exception):
    """The buffer fails a structural or semantic check (the message says which)."""


class FlatbufferVerifier:
    """Bounds- and alignment-checks a flatbuffer against ``_SPEC``."""

    def __init__(self, buf: bytes):
        self.buf = buf
        self.n = len(buf)
        self.tables = 0

    def _need(self, pos: int, size: int, align: int, what: str) -> None:
        if pos < 0 or size < 0 or pos + size > self.n:
            raise FlatbufferCorrupt(f"{what} at byte {pos} (+{size}) runs past the end of the "
                                    f"{self.n}-byte file")
        if align > 1 and pos % align:
            raise FlatbufferCorrupt(f"{what} at byte {pos} is not {align}-byte aligned")

    def _u32(self, pos: int, what: str) -> int:
        self._need(pos, 4, 4, what)
        return struct.unpack_from("<I", self.buf, pos)[0]

    def offset(self, pos: int, what: str) -> int:
        rel = self._u32(pos, what)
        if rel == 0:
            raise FlatbufferCorrupt(f"{what} at byte {pos} is a zero offset")
        return pos + rel

    def table(self, pos: int, spec_name: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            raise FlatbufferCorrupt(f"tables nested deeper than {_MAX_DEPTH}")
        self.tables += 1
        if self.tables > _MAX_TABLES:
            raise FlatbufferCorrupt(f"more than {_MAX_TABLES} tables")
        what = f"{spec_name} table"
        self._need(pos, 4, 4, what)
        vt = pos - struct.unpack_from("<i", self.buf, pos)[0]
        self._need(vt, 4, 2, f"{what} vtable")
        vt_size, t_size = struct.unpack_from("<HH", self.buf, vt)
        if vt_size < 4 or vt_size % 2:
            raise FlatbufferCorrupt(f"{what} vtable at byte {vt} has invalid size {vt_size}")
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
                    raise FlatbufferCorrupt(f"{what} field {slot} lies outside its table")
                continue
            field_pos = pos + field_off
            size = kind if isinstance(kind, int) else 4
            if field_off + size > t_size:
                raise FlatbufferCorrupt(f"{what} field {slot} lies outside its table")
            if isinstance(kind, int):
                self._need(field_pos, kind, 1, f"{what} field {slot}")
                continue
            target = self.offset(field_pos, f"{what} field {slot} offset")
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
            raise FlatbufferCorrupt(f"{what} string at byte {pos} is not zero-terminated")

    def vector(self, pos: int, elem: str, depth: int, what: str) -> int:
        length = self._u32(pos, f"{what} vector length")
        if elem.isdigit():
            self._need(pos + 4, length * int(elem), 1, f"{what} vector")
            return length
        self._need(pos + 4, length * 4, 4, f"{what} vector")
        for i in range(length):
            self.table(self.offset(pos + 4 + 4 * i, f"{what}[{i}]"), elem, depth + 1)
        return length
