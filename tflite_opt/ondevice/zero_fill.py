"""Variables that start at zero, initialized by a FILL op instead of a stored buffer of zeros.

The TFLite converter gives each resource variable its initial value as a constant that the
file's initializer subgraph (run once, through ``CALL_ONCE``) assigns. Adam's moments and SGD's
momentum start at zero, so those constants are zeros as large as the trainable weights: an
Adam head was stored twice over (the converter merges the identical zeros of ``m`` and ``v``,
not the zeros and the weights). No graph-side spelling avoids it: the initial values come from
the SavedModel's checkpoint, not from ops (``tf.zeros``/``tf.fill`` initializers are folded the
same way), and a variable created small and resized by its first ``assign`` corrupted memory
under the XNNPACK delegate (LiteRT 2.3, measured), so the variables keep their full shapes.

So the converted file is rewritten: every all-zero float32 constant that an initializer
subgraph assigns to a variable becomes the output of a ``FILL`` op (a TFLite builtin) from its
shape and a scalar zero, and its buffer is dropped. The rewrite uses TensorFlow's own
flatbuffer object API (``tensorflow.lite.tools.flatbuffer_utils``); buffers keep the 16-byte
alignment the converter gives them.

Example:
    >>> data, dropped = fill_zero_initializers(converter.convert())
    >>> dropped  # bytes of zeros no longer stored: an Adam head's size, once
    4840
"""

from __future__ import annotations

from typing import Any

import numpy as np

BUFFER_ALIGNMENT = 16  # as the TFLite converter aligns constant buffers


def fill_zero_initializers(data: bytes, min_elements: int = 2) -> tuple[bytes, int]:
    """Replaces stored all-zero variable initial values by FILL ops.

    Args:
        data: A ``.tflite`` with resource variables (``experimental_enable_resource_variables``).
        min_elements: Constants with fewer elements are left stored (a FILL and its shape
            vector cost more than a scalar's 4 bytes). Defaults to 2.

    Returns:
        ``(new file, bytes of zero buffers dropped)``; the file unchanged and 0 if there was
        nothing to rewrite.
    """
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(data))
    initializers = _initializer_subgraphs(model, schema)
    users = _buffer_users(model)
    dropped = 0
    for index in sorted(initializers):
        dropped += _rewrite_subgraph(model, model.subgraphs[index], users, min_elements, schema)
    if not dropped:
        return data, 0
    builder_cls = _aligned_builder()
    builder = builder_cls(len(data))
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), dropped


def _builtin(model: Any, op: Any) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)


def _initializer_subgraphs(model: Any, schema: Any) -> set[int]:
    """Subgraphs that a ``CALL_ONCE`` op runs: the converter's variable initializers."""
    found = set()
    for subgraph in model.subgraphs:
        for op in subgraph.operators or []:
            if _builtin(model, op) == schema.BuiltinOperator.CALL_ONCE:
                found.add(int(op.builtinOptions.initSubgraphIndex))
    return found


def _buffer_users(model: Any) -> dict[int, int]:
    """Buffer index -> how many tensors (in any subgraph) read it."""
    users: dict[int, int] = {}
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors or []:
            users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
    return users


def _is_zero_constant(model: Any, tensor: Any, min_elements: int, schema: Any) -> bool:
    if tensor.type != schema.TensorType.FLOAT32 or tensor.buffer == 0:
        return False
    data = model.buffers[tensor.buffer].data
    shape = [] if tensor.shape is None else [int(d) for d in tensor.shape]
    if data is None or len(data) != 4 * int(np.prod(shape)) or np.prod(shape) < min_elements:
        return False
    return not np.frombuffer(bytes(data), np.uint8).any()  # +0.0 only: -0.0 is not all zero bytes


def _rewrite_subgraph(model: Any, subgraph: Any, users: dict[int, int], min_elements: int,
                      schema: Any) -> int:
    """Turns the subgraph's zero constants assigned to variables into FILL outputs."""
    targets: list[int] = []
    for op in subgraph.operators or []:
        if _builtin(model, op) != schema.BuiltinOperator.ASSIGN_VARIABLE:
            continue
        value = int(op.inputs[1])
        if value not in targets and _is_zero_constant(model, subgraph.tensors[value],
                                                      min_elements, schema):
            targets.append(value)
    if not targets:
        return 0
    fill = _operator_code_index(model, schema.BuiltinOperator.FILL, schema)
    zero = _add_constant(model, subgraph, "zero_fill_value", np.zeros((), np.float32), schema)
    fills, dropped = [], 0
    for index in targets:
        tensor = subgraph.tensors[index]
        buffer = tensor.buffer
        shape = np.asarray(tensor.shape, np.int32)
        name = tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name)
        dims = _add_constant(model, subgraph, f"{name}_shape", shape, schema)
        tensor.buffer = 0  # buffer 0 is the schema's empty sentinel: computed at run time
        users[buffer] -= 1
        if users[buffer] == 0:  # no other tensor reads the zeros: drop them from the file
            dropped += len(model.buffers[buffer].data)
            model.buffers[buffer].data = None
        op = schema.OperatorT()
        op.opcodeIndex = fill
        op.inputs = np.array([dims, zero], np.int32)
        op.outputs = np.array([index], np.int32)
        op.builtinOptionsType = schema.BuiltinOptions.FillOptions
        op.builtinOptions = schema.FillOptionsT()
        fills.append(op)
    subgraph.operators = fills + list(subgraph.operators)  # before every op that reads them
    return dropped


def _operator_code_index(model: Any, builtin: int, schema: Any) -> int:
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin,
                                     schema.BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _add_constant(model: Any, subgraph: Any, name: str, value: np.ndarray, schema: Any) -> int:
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(value.tobytes(), np.uint8)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name = name
    tensor.shape = np.asarray(value.shape, np.int32)
    tensor.type = {np.dtype(np.float32): schema.TensorType.FLOAT32,
                   np.dtype(np.int32): schema.TensorType.INT32}[value.dtype]
    tensor.buffer = len(model.buffers) - 1
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _aligned_builder() -> type:
    """A flatbuffers Builder whose uint8 numpy vectors (the buffers) are 16-byte aligned.

    ``BufferT.Pack`` writes numpy data with ``CreateNumpyVector``, which aligns to the item
    size (1 byte); the converter aligns constant data to 16 bytes, which kernels may assume.
    """
    import flatbuffers

    class AlignedBuilder(flatbuffers.Builder):
        def CreateNumpyVector(self, x: np.ndarray) -> int:  # noqa: N802 - flatbuffers' name
            if x.dtype != np.uint8 or x.ndim != 1:
                return super().CreateNumpyVector(x)
            self.StartVector(1, len(x), BUFFER_ALIGNMENT)
            self.head = self.head - len(x)
            self.Bytes[self.head:self.head + len(x)] = x.tobytes()
            self.vectorNumElems = len(x)
            return self.EndVector()

    return AlignedBuilder
