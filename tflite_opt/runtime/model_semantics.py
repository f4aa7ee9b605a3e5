"""What a structurally sound ``.tflite`` must also mean: indices in range, sizes consistent.

The native interpreter indexes tensors, buffers, opcodes and subgraphs by the numbers
in the file without checking them; a wrong one reads out of bounds. ``check_semantics``
checks them all on a file that ``flatbuffer_verifier`` already found sound.

Example:
    >>> check_semantics(data)          # or FlatbufferCorrupt naming the subgraph and tensor
    >>> TENSOR_TYPES[9]
    ('int8', 1)
"""

from __future__ import annotations

import numpy as np

from tflite_opt.runtime.flatbuffer_verifier import FlatbufferCorrupt

# TensorType enum value -> (name, bytes per element or 0 if variable/sub-byte).
TENSOR_TYPES: dict[int, tuple[str, float]] = {
    0: ("float32", 4), 1: ("float16", 2), 2: ("int32", 4), 3: ("uint8", 1),
    4: ("int64", 8), 5: ("string", 0), 6: ("bool", 1), 7: ("int16", 2),
    8: ("complex64", 8), 9: ("int8", 1), 10: ("float64", 8), 11: ("complex128", 16),
    12: ("uint64", 8), 13: ("resource", 0), 14: ("variant", 0), 15: ("uint32", 4),
    16: ("uint16", 2), 17: ("int4", 0.5), 18: ("bfloat16", 2), 19: ("int2", 0.25),
}


def check_semantics(data: bytes) -> None:
    """Raises ``FlatbufferCorrupt`` unless every index in a structurally verified model is in range.

    Tensor, buffer, opcode and subgraph indices; constant buffers as large as their
    tensor's shape says; per-channel quantization that matches the shape.
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    n_codes = model.OperatorCodesLength()
    n_buffers = model.BuffersLength()
    n_subgraphs = model.SubgraphsLength()
    if n_subgraphs == 0:
        raise FlatbufferCorrupt("the model has no subgraphs")
    if n_buffers == 0:
        raise FlatbufferCorrupt(
            "the model has no buffers (a valid model has at least the empty buffer 0)")
    for c in range(n_codes):
        code = model.OperatorCodes(c)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        if builtin < 0 or builtin > 1000:
            raise FlatbufferCorrupt(f"operator code {c} has invalid builtin code {builtin}")
    buffer_sizes = []
    for b in range(n_buffers):
        buf = model.Buffers(b)
        offset, size = buf.Offset(), buf.Size()
        if offset > 1 and (offset + size > len(data)):
            raise FlatbufferCorrupt(
                f"buffer {b} points at bytes {offset}..{offset + size} outside the file")
        buffer_sizes.append(buf.DataLength() if offset <= 1 else size)
    for s in range(n_subgraphs):
        sg = model.Subgraphs(s)
        n_tensors = sg.TensorsLength()
        where = f"subgraph {s}"
        for t in range(n_tensors):
            tensor = sg.Tensors(t)
            ttype = tensor.Type()
            if ttype not in TENSOR_TYPES:
                raise FlatbufferCorrupt(f"{where} tensor {t} has unknown type {ttype}")
            shape = tensor.ShapeAsNumpy() if tensor.ShapeLength() else np.zeros(0, np.int32)
            if np.any(shape < 0):
                raise FlatbufferCorrupt(f"{where} tensor {t} has a negative dimension in shape "
                                        f"{shape.tolist()}")
            b = tensor.Buffer()
            if b >= n_buffers:
                raise FlatbufferCorrupt(f"{where} tensor {t} uses buffer {b} but the model has "
                                        f"{n_buffers} buffers")
            elem = TENSOR_TYPES[ttype][1]
            if b and buffer_sizes[b] and elem and tensor.Sparsity() is None:
                expected = int(np.prod(shape.astype(np.int64))) * elem
                if buffer_sizes[b] < int(expected):
                    raise FlatbufferCorrupt(
                        f"{where} tensor {t} needs {int(expected)} bytes of constant "
                        f"data but buffer {b} holds {buffer_sizes[b]}")
            q = tensor.Quantization()
            if q is not None and q.ZeroPointLength() and q.ScaleLength() != q.ZeroPointLength():
                raise FlatbufferCorrupt(
                    f"{where} tensor {t} has {q.ScaleLength()} scales but "
                    f"{q.ZeroPointLength()} zero points (one per scale expected)")
            if q is not None and q.ScaleLength() > 1:  # per-channel: one scale per channel
                axis, n_scales = q.QuantizedDimension(), q.ScaleLength()
                if not 0 <= axis < len(shape):
                    raise FlatbufferCorrupt(f"{where} tensor {t} is quantized per channel along "
                                            f"dimension {axis}, but its shape {shape.tolist()} has "
                                            f"{len(shape)} dimensions")
                if int(shape[axis]) != n_scales:
                    raise FlatbufferCorrupt(
                        f"{where} tensor {t} has {n_scales} scales for dimension "
                        f"{axis} of size {int(shape[axis])} (shape {shape.tolist()})")
        for label, length, get in (("input", sg.InputsLength(), sg.Inputs),
                                   ("output", sg.OutputsLength(), sg.Outputs)):
            for i in range(length):
                if not 0 <= get(i) < n_tensors:
                    raise FlatbufferCorrupt(f"{where} {label} {i} is tensor {get(i)}, out of range "
                                            f"0..{n_tensors - 1}")
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            if op.OpcodeIndex() >= n_codes:
                raise FlatbufferCorrupt(
                    f"{where} operator {o} uses opcode {op.OpcodeIndex()} but the "
                    f"model has {n_codes} operator codes")
            for label, length, get in (("input", op.InputsLength(), op.Inputs),
                                       ("output", op.OutputsLength(), op.Outputs),
                                       ("intermediate", op.IntermediatesLength(),
                                        op.Intermediates)):
                for i in range(length):
                    idx = get(i)
                    # -1 marks an omitted optional input.
                    if idx >= n_tensors or idx < (-1 if label == "input" else 0):
                        raise FlatbufferCorrupt(
                            f"{where} operator {o} {label} {i} is tensor {idx}, out "
                            f"of range 0..{n_tensors - 1}")
            big_off, big_size = op.LargeCustomOptionsOffset(), op.LargeCustomOptionsSize()
            if big_off > 1 and big_off + big_size > len(data):
                raise FlatbufferCorrupt(f"{where} operator {o} custom options lie outside the file")
    for k in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(k)
        if sig.SubgraphIndex() >= n_subgraphs:
            raise FlatbufferCorrupt(f"signature {k} names subgraph {sig.SubgraphIndex()} of "
                                    f"{n_subgraphs}")
        n_tensors = model.Subgraphs(sig.SubgraphIndex()).TensorsLength()
        for length, get in ((sig.InputsLength(), sig.Inputs), (sig.OutputsLength(), sig.Outputs)):
            for i in range(length):
                if get(i).TensorIndex() >= n_tensors:
                    raise FlatbufferCorrupt(
                        f"signature {k} maps to tensor {get(i).TensorIndex()}, out "
                        f"of range")
    for m in range(model.MetadataLength()):
        if model.Metadata(m).Buffer() >= n_buffers:
            raise FlatbufferCorrupt(f"metadata {m} uses buffer {model.Metadata(m).Buffer()} of "
                                    f"{n_buffers}")
