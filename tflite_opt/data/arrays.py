"""Reading ``.npy`` / ``.npz`` files safely: headers are checked before any data is read.

An ``.npz`` is a zip: 500 bytes of it can decompress to a 2 GiB array, and numpy reads
an array whole before anyone looks at its shape. Each array's ``.npy`` header (shape,
dtype, order) is small and read first, through numpy's own ``numpy.lib.format``
readers; an array is read only if its dtype is numeric (never pickled objects), its
declared size fits in the memory this process can use, its size matches the bytes
stored, and its per-sample shape is the one the caller expects.

Example:
    >>> arrays = load_npz("data.npz", "--data", keys=("x_train", "y_train"),
    ...                   sample_shapes={"x_train": (32, 32, 1)})
    >>> x = load_npy("calib.npy", "--representative_data", sample_shape=(32, 32, 1))
"""

from __future__ import annotations

import dataclasses
import math
import os
import zipfile
from pathlib import Path
from typing import IO, Mapping, Sequence

import numpy as np

from tflite_opt.errors import DataError
from tflite_opt.limits import format_bytes, usable_memory_bytes


@dataclasses.dataclass(frozen=True)
class ArrayHeader:
    """What an ``.npy`` header declares.

    Attributes:
        shape: The array's shape.
        dtype: Its dtype.
        nbytes: Bytes of data the header promises (shape x item size).
        header_bytes: Bytes of the magic string and header before the data.
        stored_bytes: Bytes the file (or zip member) holds, header included; None if unknown.
    """

    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int
    header_bytes: int
    stored_bytes: int | None = None


def read_npy_header(stream: IO[bytes], what: str) -> ArrayHeader:
    """Reads an ``.npy`` header (numpy's format module) and leaves ``stream`` at the data.

    Raises:
        DataError: Not an ``.npy`` stream, or a header numpy refuses.

    Example:
        >>> with open("calib.npy", "rb") as f:
        ...     read_npy_header(f, "calib.npy").shape
        (200, 32, 32, 1)
    """
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        if version == (1, 0):
            shape, _, dtype = fmt.read_array_header_1_0(stream)
        elif version == (2, 0):
            shape, _, dtype = fmt.read_array_header_2_0(stream)
        else:  # (3, 0): utf-8 field names; numpy has no public reader for it
            shape, _, dtype = fmt._read_array_header(stream, version)  # noqa: SLF001
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise DataError(f"{what} is not a readable .npy array: {str(exc)[:200]}") from None
    header_bytes = stream.tell()
    return ArrayHeader(tuple(int(d) for d in shape), dtype,
                       math.prod(shape) * dtype.itemsize, header_bytes)


def _check_header(header: ArrayHeader, what: str, argument: str,
                  sample_shape: Sequence[int | None] | None, max_bytes: int) -> None:
    if header.dtype.hasobject:
        raise DataError(f"{what} holds Python objects (dtype {header.dtype}), which would need "
                        f"unpickling; tflite_opt never unpickles data files: pass {argument} as "
                        "numeric arrays (np.save / np.savez of float or integer arrays)")
    if sample_shape is not None:
        expected = tuple(sample_shape)
        given = header.shape[1:]
        if len(given) != len(expected) or any(e is not None and e != g
                                              for e, g in zip(expected, given)):
            shown = tuple("?" if e is None else e for e in expected)
            raise DataError(f"{what} has samples of shape {given} (array shape {header.shape}), "
                            f"the model expects {shown}; pass {argument} with arrays of shape "
                            f"(N, {', '.join(map(str, shown))})")
    if header.nbytes > max_bytes:
        raise DataError(f"{what} declares an array of shape {header.shape[:8]} {header.dtype}: "
                        f"{format_bytes(header.nbytes)}, more than the {format_bytes(max_bytes)} "
                        f"this process can allocate; pass a smaller {argument}")
    stored = header.stored_bytes
    if stored is not None and stored != header.header_bytes + header.nbytes:
        raise DataError(f"{what} is truncated or corrupt: its header declares {header.nbytes} "
                        f"bytes of data but {max(0, stored - header.header_bytes)} are stored; "
                        f"save {argument} again")


def load_npy(path: str | os.PathLike, argument: str, *,
             sample_shape: Sequence[int | None] | None = None,
             max_bytes: int | None = None) -> np.ndarray:
    """Reads an ``.npy`` array after checking its header.

    Args:
        path: The ``.npy`` file.
        argument: The flag or argument it came from, for messages.
        sample_shape: Expected shape of one sample (``None`` entries match any size);
            None skips the check.
        max_bytes: Largest array accepted. Defaults to the memory this process can use.

    Raises:
        DataError: Pickled objects, too large, truncated, or the wrong sample shape.

    Example:
        >>> x = load_npy("calib.npy", "--representative_data", sample_shape=(32, 32, 1))
    """
    path = Path(path)
    what = f"{argument} file {str(path)!r}"
    limit = usable_memory_bytes() if max_bytes is None else max_bytes
    try:
        with open(path, "rb") as f:
            header = dataclasses.replace(read_npy_header(f, what),
                                         stored_bytes=path.stat().st_size)
            _check_header(header, what, argument, sample_shape, limit)
            f.seek(0)
            return np.load(f, allow_pickle=False)
    except OSError as exc:
        raise DataError(f"could not read {what}: {exc}") from exc


def npz_headers(path: str | os.PathLike, argument: str) -> dict[str, ArrayHeader]:
    """The header of every array in an ``.npz``, read without decompressing the data.

    Example:
        >>> {k: h.shape for k, h in npz_headers("data.npz", "--data").items()}
        {'x_train': (1437, 32, 32, 1), ...}
    """
    path = Path(path)
    what = f"{argument} file {str(path)!r}"
    headers = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with archive.open(info) as member:
                    header = read_npy_header(member, f"array {info.filename[:-4]!r} in {what}")
                headers[info.filename[:-4]] = dataclasses.replace(header,
                                                                  stored_bytes=info.file_size)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DataError(f"could not read {what} as .npz (a zip of .npy arrays): "
                        f"{str(exc)[:200]}") from None
    return headers


def load_npz(path: str | os.PathLike, argument: str, *, keys: Sequence[str] | None = None,
             sample_shapes: Mapping[str, Sequence[int | None]] | None = None,
             max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Reads arrays of an ``.npz`` after checking every header they declare.

    Args:
        path: The ``.npz`` file.
        argument: The flag or argument it came from, for messages.
        keys: The arrays to read; None reads all. A missing key raises DataError.
        sample_shapes: Expected per-sample shape of some arrays, by name.
        max_bytes: Most bytes all read arrays may declare together. Defaults to the memory
            this process can use.

    Raises:
        DataError: Missing arrays, pickled objects, too large, truncated, wrong shape.

    Example:
        >>> data = load_npz("eval.npz", "--eval_data", keys=("x", "y"))
    """
    path = Path(path)
    what = f"{argument} file {str(path)!r}"
    headers = npz_headers(path, argument)
    keys = list(headers) if keys is None else list(keys)
    missing = [k for k in keys if k not in headers]
    if missing:
        raise DataError(f"{what} lacks array {missing[0]!r}; it holds {sorted(headers)[:20]}, "
                        f"and needs {', '.join(keys)}")
    limit = usable_memory_bytes() if max_bytes is None else max_bytes
    total = sum(headers[k].nbytes for k in keys)
    if total > limit:
        raise DataError(f"{what} declares {format_bytes(total)} of arrays "
                        f"({', '.join(f'{k} {headers[k].shape}' for k in keys)}), more than the "
                        f"{format_bytes(limit)} this process can allocate; pass a smaller {argument}")
    for key in keys:
        header = headers[key]
        _check_header(header, f"array {key!r} in {what}", argument,
                      (sample_shapes or {}).get(key), limit)
    try:
        with np.load(path, allow_pickle=False) as f:
            return {key: f[key] for key in keys}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"could not read {what}: {str(exc)[:200]}") from None
