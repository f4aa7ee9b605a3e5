"""How much memory this process can still allocate: the bound for sizes a file declares.

A 344-byte ``.tflite`` can declare a 6 GiB tensor and a 500-byte ``.npz`` a 2 GiB array;
allocating first and failing later means the kernel's OOM killer, not an error line.
Files are checked against this bound before anything is allocated. It is the smallest
of the machine's physical memory, the cgroup (container) memory limit, and the address
space left under ``ulimit -v`` (``RLIMIT_AS``) / ``RLIMIT_DATA``.

Example:
    >>> usable_memory_bytes() > 2**20
    True
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

_CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"),                      # cgroup v2
                  Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))   # cgroup v1


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_limit() -> int | None:
    for path in _CGROUP_LIMITS:
        try:
            text = path.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # v1 reports "no limit" as ~2**63
            return int(text)
    return None


def _mapped_bytes() -> int:
    """Address space this process already maps (``VmSize``), which ``RLIMIT_AS`` counts."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _rlimit_left() -> int | None:
    left = []
    for which in (resource.RLIMIT_AS, getattr(resource, "RLIMIT_DATA", None)):
        if which is None:
            continue
        soft, _ = resource.getrlimit(which)
        if soft != resource.RLIM_INFINITY:
            left.append(max(0, soft - _mapped_bytes()) if which == resource.RLIMIT_AS else soft)
    return min(left) if left else None


def usable_memory_bytes() -> int:
    """The most memory this process could allocate now, in bytes (an upper bound).

    Example:
        >>> if declared_bytes > usable_memory_bytes():
        ...     raise InvalidTFLiteError("...")
    """
    bounds = [b for b in (_physical_memory(), _cgroup_limit(), _rlimit_left()) if b is not None]
    return min(bounds) if bounds else 2**63


def format_bytes(n: int | float) -> str:
    """``6442450944`` -> ``'6.0 GiB'``.

    Example:
        >>> format_bytes(3 * 2**20)
        '3.0 MiB'
    """
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
