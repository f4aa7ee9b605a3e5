"""What a host latency ratio means for the phone, in words: said when int8 loses to float.

A full-int8 file is meant for phones, whose CPUs have int8 dot-product
instructions. A desktop or cloud CPU without them (AVX2 only) runs int8 kernels
through 16-bit arithmetic and can be slower than float32, which looks like a failed
optimization but is a property of the host. The guidance says so, names the CPU,
and gives the two ways to find out what matters: the official ``benchmark_model``
on the phone (``adb``), and ``--find_fastest`` on this host.

Example:
    >>> g = latency_guidance(1.15, False, host_cpu(), "outputs/model_int8.tflite", "int8")
    >>> print(g.summary); print("\\n".join(g.advice))
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tflite_opt.runtime.android import android_benchmark_commands
from tflite_opt.runtime.host_cpu import HostCPU


@dataclasses.dataclass(frozen=True)
class LatencyGuidance:
    """The host latency verdict for an optimized file against float32.

    Attributes:
        ratio: Median latency of the optimized file / float32's (> 1: slower).
        slower: True when the optimized file is slower beyond run-to-run noise.
        summary: One line for the job's summary: the ratio, the CPU, and "slower" when it is.
        advice: When slower: why (the CPU's int8 dot-product support) and what to do
            (the ``adb`` command, ``--find_fastest``); else empty.
    """

    ratio: float
    slower: bool
    summary: str
    advice: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "advice": list(self.advice)}


def _why(cpu: HostCPU) -> str:
    if not cpu.flags_known:
        return ("Why: this host's CPU flags could not be read, so whether it has int8 dot-product "
                "instructions (AVX-VNNI/AVX512-VNNI on x86, dotprod/i8mm on ARM) is unknown; "
                "without them int8 kernels are often slower than float.")
    if not cpu.int8_dot_product:
        return ("Why: this CPU has no int8 dot-product instructions (no AVX-VNNI/AVX512-VNNI; on "
                "ARM: dotprod/i8mm), so int8 kernels widen to 16-bit arithmetic and lose to float. "
                "Phone CPUs since ARMv8.2 have dotprod and usually run int8 faster than float.")
    dot = ", ".join(f for f in cpu.flags if f in ("avx512_vnni", "avx_vnni", "amx_int8",
                                                   "asimddp", "i8mm"))
    return (f"Why: this CPU does have int8 dot-product instructions ({dot}), so the arithmetic is "
            "not the cause: for a model this small, fixed per-operator costs (quantizing the "
            "input, requantizing between layers, dequantizing the output) outweigh the saving.")


def latency_guidance(ratio: float, within_noise: bool, cpu: HostCPU, model_path: str,
                     precision: str, num_threads: int = 1, num_runs: int = 50) -> LatencyGuidance:
    """Words for ``ratio`` = median latency of the optimized file / the float32 file's, on ``cpu``.

    Args:
        ratio: Optimized over float32 median latency, measured interleaved (> 1: slower).
        within_noise: True when the interleaved runs could not tell the two apart.
        cpu: The host that measured it (``tflite_opt.runtime.host_cpu.host_cpu()``).
        model_path: The optimized ``.tflite``, for the ``adb`` and ``--find_fastest`` commands.
        precision: Its precision (``"int8"``, ...), named in the words.
        num_threads: Threads of the measurement, repeated in the phone command. Defaults to 1.
        num_runs: Runs of the phone benchmark. Defaults to 50.

    Example:
        >>> latency_guidance(0.33, False, cpu, "model_int8.tflite", "int8").slower
        False
    """
    slower = ratio > 1.0 and not within_noise
    where = f"on this host, {cpu.describe()}"
    if slower:
        summary = (f"median latency vs float32 {ratio:.2f}x: {precision} is SLOWER than float32 "
                   f"{where}; this does not predict a phone, see below")
        phone = android_benchmark_commands(model_path, num_threads=num_threads, num_runs=num_runs)
        advice = (
            _why(cpu),
            "What to do: measure on the phone the model is for, with TFLite's benchmark_model over "
            "adb (the binary and the model are pushed first: `python scripts/benchmark.py "
            f"--model={model_path}` prints every command):",
            f"  {phone[-1]}",
            "and try this host's other interpreter settings (threads x XNNPACK on/off): "
            f"`python scripts/benchmark.py --model={model_path} --find_fastest`.",
        )
    else:
        noise = " (within run-to-run noise)" if within_noise else ""
        summary = f"median latency vs float32 {ratio:.2f}x{noise} {where}"
        advice = ()
    return LatencyGuidance(ratio=float(ratio), slower=slower, summary=summary, advice=advice)
