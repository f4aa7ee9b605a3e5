"""Reading a ``.tflite`` file safely: validation before native code sees it.

The native interpreter trusts the flatbuffer it is given; a truncated or corrupt
file can make it read out of bounds and kill the process, and a hostile one can
declare more memory than the machine has. ``read_tflite`` runs, in order:
the structure (``flatbuffer_verifier``: every offset, vector and string in bounds),
the TFLite semantics (``model_semantics``: indices in range, sizes consistent) and
the allocation guard (``allocation_guard``: no tensor, and no set of tensors alive
at once, needs more memory than this process can allocate). The operator-code
helpers live in ``operator_codes`` and are re-exported here.

Example:
    >>> data = read_tflite("model.tflite")   # bytes, or InvalidTFLiteError
"""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Union

from tflite_opt.errors import InvalidTFLiteError
from tflite_opt.runtime.allocation_guard import (allocation_limit, check_arena_size,
                                                 check_tensor_sizes)
from tflite_opt.runtime.flatbuffer_verifier import FlatbufferCorrupt, FlatbufferVerifier
from tflite_opt.runtime.model_semantics import TENSOR_TYPES, check_semantics
from tflite_opt.runtime.operator_codes import OperatorCode, node_op_names, operator_codes

__all__ = ["FILE_IDENTIFIER", "MAX_MODEL_BYTES", "ModelSource", "OperatorCode", "TENSOR_TYPES",
           "node_op_names", "operator_codes", "read_tflite", "verify_tflite"]

ModelSource = Union[str, os.PathLike, bytes, bytearray, memoryview]

FILE_IDENTIFIER = b"TFL3"
# Flatbuffers address 32-bit offsets, so one buffer is < 2 GiB; bigger models
# keep their weights outside the flatbuffer, which this tool does not read.
MAX_MODEL_BYTES = 2**31 - 1


def _describe(source: ModelSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes in memory>"
    return repr(os.fspath(source))


def _structure_error(name: str, reason: str) -> InvalidTFLiteError:
    return InvalidTFLiteError(
        f"model {name} is not a valid TFLite flatbuffer: {reason}; pass a .tflite file "
        "written by the TFLite converter (e.g. tflite_opt.convert or tf.lite.TFLiteConverter)")


def read_tflite(model: ModelSource, *, max_bytes: int = MAX_MODEL_BYTES,
                max_tensor_bytes: int | None = None, max_arena_bytes: int | None = None) -> bytes:
    """Reads and validates a ``.tflite`` model, returning its bytes.

    Checks that the file exists, is not empty or oversized, carries the ``TFL3``
    identifier, is a structurally sound flatbuffer (every offset, vector and
    string in bounds) and is semantically consistent (tensor, buffer, opcode and
    subgraph indices in range; constant buffers match their tensor's size;
    per-channel quantization matches the shape; no tensor declares more bytes than
    this process can allocate, nor do the non-constant tensors alive at once, as the
    interpreter's arenas would hold them: ``allocation_guard``), so that the native
    interpreter never sees a file that could crash it or exhaust the machine's memory.

    Args:
        model: Path to a ``.tflite`` file, or its bytes.
        max_bytes: Largest accepted size. Defaults to 2 GiB - 1, the flatbuffer limit.
        max_tensor_bytes: Largest size one tensor may declare (shape x dtype size).
            Defaults to None: ``TFLITE_OPT_MAX_ALLOC_BYTES`` if set, else the memory this
            process can use (``limits.usable_memory_bytes``).
        max_arena_bytes: Largest total the interpreter's arenas may need (the peak of
            non-constant tensors alive at once, summed over subgraphs). Defaults to None:
            the same limit as ``max_tensor_bytes``'s default.

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
    verify_tflite(data, name=name, max_bytes=max_bytes, max_tensor_bytes=max_tensor_bytes,
                  max_arena_bytes=max_arena_bytes)
    return data


def verify_tflite(data: bytes, *, name: str = "<bytes>", max_bytes: int = MAX_MODEL_BYTES,
                  max_tensor_bytes: int | None = None,
                  max_arena_bytes: int | None = None) -> None:
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
    # Before the try: a bad TFLITE_OPT_MAX_ALLOC_BYTES is the user's error, not the file's.
    tensor_limit = allocation_limit(max_tensor_bytes)
    arena_limit = allocation_limit(max_arena_bytes)
    try:
        verifier = FlatbufferVerifier(data)
        root = verifier.offset(0, "root table offset")
        verifier.table(root, "Model", 0)
        check_semantics(data)
        check_tensor_sizes(data, name, tensor_limit)
        check_arena_size(data, name, arena_limit)
    except FlatbufferCorrupt as exc:
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
