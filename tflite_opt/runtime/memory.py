"""Peak resident memory of this process over a stretch of work.

Linux keeps the peak resident set size in ``/proc/self/status`` (``VmHWM``) and
resets it when ``5`` is written to ``/proc/self/clear_refs``, so the peak *during*
a benchmark can be measured. Where the reset is not allowed, the lifetime peak
(``getrusage``) is the honest upper bound, and the method says so.

Example:
    >>> with PeakMemory() as mem:
    ...     run_model()
    >>> mem.peak_bytes, mem.method
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_bytes() -> int | None:
    """Resident set size now, in bytes (None where /proc is missing)."""
    kib = _status_kib("VmRSS")
    return None if kib is None else kib * 1024


def _lifetime_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


class PeakMemory:
    """Context manager measuring the process's peak RSS inside the block.

    Attributes:
        peak_bytes: Peak resident bytes during the block (or lifetime peak).
        start_bytes: Resident bytes when the block began (None if unknown).
        method: ``"vmhwm_reset"`` (peak within the block) or ``"lifetime_maxrss"``.
    """

    def __init__(self) -> None:
        self.peak_bytes = 0
        self.start_bytes: int | None = None
        self.method = "lifetime_maxrss"

    def __enter__(self) -> "PeakMemory":
        self.start_bytes = current_rss_bytes()
        try:
            _CLEAR_REFS.write_text("5")
            self.method = "vmhwm_reset"
        except OSError:
            self.method = "lifetime_maxrss"
        return self

    def __exit__(self, *exc: object) -> None:
        hwm = _status_kib("VmHWM") if self.method == "vmhwm_reset" else None
        if hwm is None:
            self.method = "lifetime_maxrss"
            self.peak_bytes = _lifetime_peak_bytes()
        else:
            self.peak_bytes = hwm * 1024
