"""Running a model once in a child process, so a native crash cannot take the caller down.

``read_tflite`` rejects malformed flatbuffers before native code sees them, but a
structurally valid file can still carry values a kernel mishandles. The command
line tools therefore load and invoke every model once in a child process first
(about half a second: the child imports only LiteRT) and turn a crash there into
an ``InvalidTFLiteError`` instead of a signal.

Example:
    >>> probe_in_subprocess(read_tflite("model.tflite"), name="model.tflite")
    ProbeResult(ok=True, ...)
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from tflite_opt.errors import InvalidTFLiteError

_WORKER = Path(__file__).with_name("_probe_worker.py")


@dataclasses.dataclass(frozen=True)
class ProbeResult:
    """What the child process did with the model.

    Attributes:
        ok: It loaded and ran once.
        returncode: The child's exit code (negative: killed by that signal).
        signal_name: ``"SIGSEGV"`` etc. when the runtime crashed, else None.
        error: The runtime's error message when it refused the model.
    """

    ok: bool
    returncode: int
    signal_name: str | None = None
    error: str = ""


def probe_in_subprocess(data: bytes, *, name: str = "<model>", num_threads: int = 1,
                        timeout_s: float = 120.0) -> ProbeResult:
    """Loads, allocates and invokes ``data`` once in a child process.

    Args:
        data: Model bytes (normally already validated by ``read_tflite``).
        name: File name for messages.
        num_threads: Interpreter threads in the child.
        timeout_s: Seconds before the child is killed and the model reported as hanging.

    Returns:
        A ``ProbeResult``; never raises for a crash or a refusal.

    Example:
        >>> probe_in_subprocess(data).ok
        True
    """
    fd, tmp = tempfile.mkstemp(suffix=".tflite")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
        try:
            proc = subprocess.run([sys.executable, str(_WORKER), tmp, str(int(num_threads))],
                                  capture_output=True, text=True, timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            return ProbeResult(False, -int(signal.SIGKILL), "SIGKILL",
                               f"the model did not finish one inference in {timeout_s:.0f} s")
    finally:
        os.unlink(tmp)
    if proc.returncode == 0:
        return ProbeResult(True, 0)
    if proc.returncode < 0:
        try:
            sig = signal.Signals(-proc.returncode).name
        except ValueError:
            sig = f"signal {-proc.returncode}"
        return ProbeResult(False, proc.returncode, sig, proc.stderr.strip()[-500:])
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    return ProbeResult(False, proc.returncode, None, lines[-1] if lines else "")


def ensure_runs_safely(data: bytes, *, name: str = "<model>", num_threads: int = 1) -> None:
    """Raises ``InvalidTFLiteError`` if the model crashes or is refused in a child process.

    Example:
        >>> ensure_runs_safely(read_tflite("model.tflite"), name="model.tflite")
    """
    result = probe_in_subprocess(data, name=name, num_threads=num_threads)
    if result.ok:
        return
    if result.signal_name:
        raise InvalidTFLiteError(f"model {name} crashed the TFLite runtime ({result.signal_name}) "
                                 "in a test run in a child process; the file is corrupt or "
                                 "uses ops this runtime cannot execute")
    raise InvalidTFLiteError(f"model {name} could not be run by the TFLite runtime: "
                             f"{result.error or 'unknown error'}")
