"""Which CPU a latency figure was measured on, and whether it has int8 dot-product instructions.

int8 inference is fast where the CPU multiplies and adds 8-bit values in one
instruction: VNNI on x86 (``avx512_vnni``, ``avx_vnni``; ``amx_int8`` too), the
dot-product and int8 matrix-multiply extensions on ARM (``asimddp``, ``i8mm``), which
most phones since 2018 have. Without them (e.g. an AVX2-only desktop) int8 kernels
widen to 16 bits and can be slower than float, so a host figure says little about a
phone. The flags come from ``/proc/cpuinfo`` (Linux); elsewhere they are unknown.

Example:
    >>> cpu = host_cpu()
    >>> cpu.describe(), cpu.int8_dot_product
"""

from __future__ import annotations

import dataclasses
import platform
from pathlib import Path
from typing import Any

# cpuinfo flags that give int8 dot products (x86 "flags", ARM "Features").
INT8_DOT_PRODUCT_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm")
# Flags worth naming next to a latency figure.
REPORTED_FLAGS = ("avx2", "fma", "avx512f", *INT8_DOT_PRODUCT_FLAGS)


@dataclasses.dataclass(frozen=True)
class HostCPU:
    """The host CPU: model name, architecture, and the flags that decide int8 speed.

    Attributes:
        model: The CPU's model name (``"unknown"`` when the OS does not say).
        machine: ``platform.machine()``, e.g. ``x86_64`` or ``aarch64``.
        flags: Those of ``REPORTED_FLAGS`` the CPU has.
        flags_known: False when no flag list could be read (not Linux): then
            ``int8_dot_product`` is False because it is unknown, not because it is absent.
    """

    model: str
    machine: str
    flags: tuple[str, ...]
    flags_known: bool = True

    @property
    def int8_dot_product(self) -> bool:
        """True when the CPU has an int8 dot-product instruction (VNNI, AMX, dotprod, i8mm)."""
        return any(flag in INT8_DOT_PRODUCT_FLAGS for flag in self.flags)

    def describe(self) -> str:
        """One line naming the CPU and its relevant flags, for reports and README figures.

        Example:
            >>> HostCPU("AMD EPYC", "x86_64", ("avx2", "avx512_vnni")).describe()
            'AMD EPYC (x86_64; avx2, avx512_vnni)'
        """
        flags = ", ".join(self.flags) if self.flags_known else "flags unknown"
        return f"{self.model} ({self.machine}; {flags or 'none of ' + '/'.join(REPORTED_FLAGS)})"

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "machine": self.machine, "flags": list(self.flags),
                "flags_known": self.flags_known, "int8_dot_product": self.int8_dot_product,
                "description": self.describe()}


def parse_cpuinfo(text: str, machine: str | None = None) -> HostCPU:
    """Reads the model name and flags from the text of ``/proc/cpuinfo`` (x86 or ARM layout).

    Args:
        text: The file's content.
        machine: The architecture; defaults to ``platform.machine()``.

    Example:
        >>> parse_cpuinfo("model name : X\\nflags : fpu avx2 avx_vnni\\n", "x86_64").int8_dot_product
        True
    """
    model, flags, flags_known = "", set(), False
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("flags", "features") and not flags_known:  # x86 / ARM; every core repeats it
            flags, flags_known = set(value.split()), True
        elif key in ("model name", "hardware", "cpu model", "processor") and not model:
            # ARM kernels print "processor : 0": a number is not a name.
            if value.strip() and not value.strip().isdigit():
                model = value.strip()
    return HostCPU(model=model or platform.processor() or "unknown",
                   machine=machine or platform.machine() or "unknown",
                   flags=tuple(f for f in REPORTED_FLAGS if f in flags), flags_known=flags_known)


def host_cpu(cpuinfo: str | Path = "/proc/cpuinfo") -> HostCPU:
    """The CPU this process runs on (flags unknown where there is no ``/proc/cpuinfo``).

    Example:
        >>> print(host_cpu().describe())
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return HostCPU(model=platform.processor() or "unknown",
                       machine=platform.machine() or "unknown", flags=(), flags_known=False)
    return parse_cpuinfo(text)
