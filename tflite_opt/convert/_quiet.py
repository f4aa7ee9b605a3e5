"""Keeps the converter's C++ and Python log noise off the user's terminal.

The MLIR converter prints to file descriptors 1 and 2 directly (not through
Python), so ``contextlib.redirect_stderr`` cannot catch it: the descriptors are
pointed at a temporary file for the duration of the call, and the text is kept
so that a failed conversion can show it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
import warnings
from typing import Iterator, TextIO


class CapturedOutput:
    """What the converter printed; ``text`` is filled in when the block exits."""

    def __init__(self, terminal: TextIO) -> None:
        self.text = ""
        self.terminal = terminal  # the real stderr, for progress bars


@contextlib.contextmanager
def quiet_converter(enabled: bool = True) -> Iterator[CapturedOutput]:
    """Redirects fds 1/2, Python warnings and TF's absl logging while converting.

    Yields a :class:`CapturedOutput` whose ``terminal`` stream still reaches the
    user's terminal (used for the calibration progress bar).

    Example:
        >>> with quiet_converter() as captured:
        ...     tflite_bytes = converter.convert()
    """
    if not enabled:
        yield CapturedOutput(sys.stderr)
        return
    tf_logger = logging.getLogger("tensorflow")
    absl_logger = logging.getLogger("absl")
    levels = (tf_logger.level, absl_logger.level)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved: list[tuple[int, int]] = []
    sink = tempfile.TemporaryFile(mode="w+b")
    terminal_fd = None
    terminal: TextIO = sys.stderr
    try:
        try:
            terminal_fd = os.dup(2)
            terminal = io.TextIOWrapper(os.fdopen(os.dup(terminal_fd), "wb", buffering=0),
                                        write_through=True)
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        except OSError:
            pass  # no real descriptors (embedded interpreter): stay noisy rather than fail
        captured = CapturedOutput(terminal)
        tf_logger.setLevel(logging.ERROR)
        absl_logger.setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield captured
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        if terminal is not sys.stderr:
            with contextlib.suppress(Exception):
                terminal.close()
        if terminal_fd is not None:
            os.close(terminal_fd)
        tf_logger.setLevel(levels[0])
        absl_logger.setLevel(levels[1])
        sink.seek(0)
        with contextlib.suppress(NameError):
            captured.text = sink.read().decode("utf-8", "replace")
        sink.close()
