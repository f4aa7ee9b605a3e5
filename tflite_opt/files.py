"""Atomic file output: nothing is left half-written when a process dies.

Each writer writes to a temporary file in the destination's folder, flushes and
fsyncs it, then renames it over the destination (``os.replace`` is atomic on
POSIX), so a reader sees either the old file or the complete new one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from tflite_opt.errors import OutputExistsError


def _check_overwrite(path: Path, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputExistsError(
            f"output file {str(path)!r} already exists; pass overwrite=True "
            "(or --overwrite) to replace it, or choose another path"
        )


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = True) -> Path:
    """Writes ``data`` to ``path`` atomically and returns the path.

    Example:
        >>> atomic_write_bytes("/tmp/model.tflite", tflite_bytes)
    """
    path = Path(path)
    _check_overwrite(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = True) -> Path:
    """Writes ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)


def atomic_write_json(path: str | os.PathLike, obj: Any, *, overwrite: bool = True) -> Path:
    """Writes ``obj`` as indented JSON to ``path`` atomically."""
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n",
                             overwrite=overwrite)


def _json_default(value: Any) -> Any:
    # numpy scalars and arrays, Paths and enums show up in results; make them JSON.
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "value"):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@contextlib.contextmanager
def staged_output_dir(output_dir: str | os.PathLike) -> Iterator[Path]:
    """Yields a fresh staging folder whose files move into ``output_dir`` on success.

    If the body raises, the staging folder is removed and ``output_dir`` is left
    as it was: a failed run writes no partial output. Files are moved one by one
    with ``os.replace``, so each output file appears complete.

    Example:
        >>> with staged_output_dir("outputs") as stage:
        ...     (stage / "report.json").write_text("{}")
    """
    output_dir = Path(output_dir)
    parent = output_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.staging.", dir=parent))
    try:
        yield stage
        output_dir.mkdir(parents=True, exist_ok=True)
        for src in sorted(stage.rglob("*")):
            dst = output_dir / src.relative_to(stage)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
