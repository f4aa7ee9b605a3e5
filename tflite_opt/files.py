"""Atomic file output: nothing is left half-written when a process dies.

One staging rule for every output: data is written next to where it ends up
(a temporary file in the destination's folder, or a staging folder *inside* the
output folder), flushed and fsynced, then renamed into place. ``os.replace`` is
atomic on POSIX and, because source and destination share a folder, never
crosses a filesystem (an output folder that is a symlink to another mount or a
Docker volume works). A reader sees either the old file or the complete new one.

``check_output_dir`` / ``check_output_file`` probe an output location before a
long job starts, and ``lock_output_dir`` keeps two runs out of one folder.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator

from tflite_opt.errors import InvalidArgumentError, OutputExistsError


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


def atomic_save_model(model: Any, path: str | os.PathLike) -> Path:
    """Saves a Keras model (either Keras) with ``model.save`` atomically; returns the path.

    The temporary file keeps the suffix, since Keras picks the format from it.

    Example:
        >>> atomic_save_model(model, "saved_models/digits_cnn.keras")
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
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


def check_output_dir(output_dir: str | os.PathLike, argument: str = "output_dir") -> Path:
    """Fails now, not after a long job, if ``output_dir`` cannot become a writable folder.

    The folder need not exist: its nearest existing ancestor must be a folder in
    which a file can be created (checked by creating and removing a probe file,
    which also catches read-only mounts that permission bits do not show).

    Args:
        output_dir: The folder that outputs will be written to.
        argument: The argument or flag named in the error message.

    Returns:
        ``output_dir`` as a ``Path``.

    Raises:
        InvalidArgumentError: it is a file, lies under a file, or is not writable.

    Example:
        >>> check_output_dir("outputs/run1", "--output_dir")
        PosixPath('outputs/run1')
    """
    output_dir = Path(output_dir)
    problem = _folder_problem(output_dir)
    if problem:
        raise InvalidArgumentError(f"{argument} {str(output_dir)!r} cannot be used: {problem}; "
                                   f"pass {argument} naming a folder you can write to")
    return output_dir


def check_output_file(path: str | os.PathLike, argument: str = "output", *,
                      inputs: Iterable[str | os.PathLike | tuple[str | os.PathLike, str]] = (),
                      overwrite: bool = True) -> Path:
    """Fails now, before any work, if ``path`` cannot be written as an output file.

    Args:
        path: The file that will be written.
        argument: The argument or flag named in the error message.
        inputs: Files this run reads (a model and its sidecar): writing over one of
            them would destroy the input, so naming one is refused. An item may be a
            ``(path, description)`` pair, the description naming the file in the error
            (e.g. ``"the sidecar of the input model 'm.tflite'"``).
        overwrite: Whether an existing file may be replaced.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        InvalidArgumentError: ``path`` is a folder, an input file, under a file, or
            in a folder that is not writable.
        OutputExistsError: ``path`` exists and ``overwrite`` is False.

    Example:
        >>> check_output_file("report.json", "--output", inputs=["model.tflite"])
        PosixPath('report.json')
    """
    path = Path(path)
    if path.is_dir():
        raise InvalidArgumentError(f"{argument} {str(path)!r} is a folder; name a file inside it, "
                                   f"e.g. {str(path / ('out' + (path.suffix or '.json')))!r}")
    for source in inputs:
        source, what = source if isinstance(source, tuple) else (
            source, f"the input file {str(source)!r}")
        if _same_file(path, Path(source)):
            raise InvalidArgumentError(f"{argument} {str(path)!r} is {what}; writing there "
                                       "would destroy it, so choose another file")
    problem = _folder_problem(path.parent)
    if problem:
        raise InvalidArgumentError(f"{argument} {str(path)!r} cannot be written: {problem}; "
                                   "choose a file in a folder you can write to")
    if not overwrite:
        _check_overwrite(path, overwrite)
    return path


def _same_file(a: Path, b: Path) -> bool:
    if a.exists() and b.exists():
        return os.path.samefile(a, b)
    return a.resolve() == b.resolve()


def _folder_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be created or written to, or None if it can."""
    existing = folder
    while not os.path.lexists(existing):  # lexists: a dangling symlink is not "missing"
        existing = existing.parent
    if not existing.is_dir():
        return f"{str(existing)!r} is a file, not a folder"
    try:  # a real probe: permission bits say nothing about read-only mounts or root
        fd, probe = tempfile.mkstemp(prefix=".write_probe.", dir=existing)
    except OSError as exc:
        return f"folder {str(existing)!r} is not writable ({exc.strerror or exc})"
    os.close(fd)
    os.unlink(probe)
    return None


STAGING_PREFIX = ".staging."  # hidden: listings of the output folder skip it


@contextlib.contextmanager
def staged_output_dir(output_dir: str | os.PathLike, argument: str = "output_dir") -> Iterator[Path]:
    """Yields a fresh staging folder whose files move into ``output_dir`` on success.

    The staging folder is a hidden folder *inside* ``output_dir``, so the final
    renames never cross a filesystem. If the body raises, the staging folder (and
    any folder this call created) is removed and ``output_dir`` is left as it was:
    a failed run writes no partial output. Files are moved one by one with
    ``os.replace``, so each output file appears complete.

    Example:
        >>> with staged_output_dir("outputs") as stage:
        ...     (stage / "report.json").write_text("{}")
    """
    output_dir = check_output_dir(output_dir, argument)
    created = []  # deepest first, so a failed run can remove exactly what it made
    folder = output_dir
    while not folder.exists():
        created.append(folder)
        folder = folder.parent
    output_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=output_dir))
    succeeded = False
    try:
        yield stage
        for src in sorted(stage.rglob("*")):
            dst = output_dir / src.relative_to(stage)
            if src.is_dir():
                dst.mkdir(parents=True, exist_ok=True)
            else:
                dst.parent.mkdir(parents=True, exist_ok=True)
                os.replace(src, dst)
        succeeded = True
    finally:
        shutil.rmtree(stage, ignore_errors=True)
        if not succeeded:
            for folder in created:
                with contextlib.suppress(OSError):  # not empty: someone else wrote there
                    folder.rmdir()



@contextlib.contextmanager
def lock_output_dir(output_dir: str | os.PathLike, lock_file: str = ".work/lock",
                    argument: str = "output_dir") -> Iterator[Path]:
    """Holds an exclusive lock on ``output_dir`` so two runs never share it.

    The lock is ``fcntl.flock`` on ``output_dir/lock_file`` (released by the kernel
    when the process dies, so a killed run leaves no stale lock); the file holds the
    owner's PID for the error message. The lock file may be deleted while held (a
    finished run removes its work folder); a run that locked a deleted file retries.

    Raises:
        InvalidArgumentError: another process holds the lock (the message names its PID).

    Example:
        >>> with lock_output_dir("outputs"):
        ...     run_the_job()
    """
    path = Path(output_dir) / lock_file
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            owner = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise InvalidArgumentError(
                f"{argument} {str(output_dir)!r} is in use by another run (PID {owner}); wait "
                f"for it to finish or pass another {argument}") from None
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)  # the holder deleted the file between our open and flock: try again
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        yield path
    finally:
        os.close(fd)
