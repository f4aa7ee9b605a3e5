"""LiteRT's ``CompiledModel`` accelerator API as a second benchmark path (CPU, GPU).

``CompiledModel`` picks hardware by accelerator flags instead of delegates; its GPU
path runs through WebGPU (Vulkan/Metal/D3D), which needs a GPU adapter on the host.
Each request ends in an ``AcceleratorResult``: ``"used"`` with a benchmark,
``"not_available"`` (no GPU adapter, module missing) with the runtime's reason, or
``"failed"``. Nothing here raises for an accelerator that cannot run.

Example:
    >>> for r in benchmark_compiled_model("m.tflite", accelerators=("cpu", "gpu")):
    ...     print(r.accelerator, r.status, r.reason or r.benchmark.median_us)
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Sequence

import numpy as np

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.runtime.benchmark import BenchmarkResult, _validate_counts, gzip_size
from tflite_opt.runtime.delegates import FAILED, NOT_AVAILABLE, USED
from tflite_opt.runtime.memory import PeakMemory
from tflite_opt.runtime.model_file import ModelSource, _describe, read_tflite
from tflite_opt.runtime.quantization import random_input
from tflite_opt.runtime.stats import latency_stats

ACCELERATORS = ("cpu", "gpu", "gpu_only")
_NUMPY = {"float32": np.float32, "float16": np.float16, "int32": np.int32, "int8": np.int8,
          "uint8": np.uint8, "int64": np.int64, "bool": np.bool_, "int16": np.int16}


@dataclasses.dataclass(frozen=True)
class AcceleratorResult:
    """Outcome of one ``CompiledModel`` accelerator."""

    accelerator: str
    status: str
    reason: str = ""
    fully_accelerated: bool | None = None
    benchmark: BenchmarkResult | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"accelerator": self.accelerator, "status": self.status, "reason": self.reason,
                "fully_accelerated": self.fully_accelerated,
                "benchmark": None if self.benchmark is None else
                self.benchmark.to_dict(include_timings=False)}


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:400] or type(exc).__name__


def _gpu_host_hint() -> str:
    """Why WebGPU likely has no adapter here: the Vulkan loader is missing."""
    import ctypes

    try:
        ctypes.CDLL("libvulkan.so.1")
    except OSError:
        return "; the Vulkan loader libvulkan.so.1 is not installed, so WebGPU finds no adapter"
    return ""


def _accel_flags(module: Any, accelerator: str) -> Any:
    ha = module.HardwareAccelerator
    return {"cpu": ha.CPU, "gpu": ha.GPU | ha.CPU, "gpu_only": ha.GPU}[accelerator]


def _run_one(data: bytes, name: str, accelerator: str, num_threads: int, num_runs: int,
             warmup_runs: int, seed: int) -> AcceleratorResult:
    try:
        from ai_edge_litert import compiled_model, hardware_accelerator, options
    except ImportError as exc:
        return AcceleratorResult(accelerator, NOT_AVAILABLE, f"CompiledModel API missing: {exc}")

    class _Mods:
        HardwareAccelerator = hardware_accelerator.HardwareAccelerator

    with PeakMemory() as memory:
        start = time.perf_counter_ns()
        try:
            model = compiled_model.CompiledModel.from_buffer(
                data, options=options.Options(
                    hardware_accelerators=_accel_flags(_Mods, accelerator),
                    cpu_options=options.CpuOptions(num_threads=num_threads)))
        except (RuntimeError, ValueError) as exc:
            text = _short(exc)
            if accelerator != "cpu":
                text += _gpu_host_hint()
            return AcceleratorResult(accelerator, NOT_AVAILABLE if accelerator != "cpu" else FAILED,
                                     f"CompiledModel creation failed: {text} (on a host without "
                                     "a WebGPU adapter the GPU path cannot start)"
                                     if accelerator != "cpu" else text)
        init_us = (time.perf_counter_ns() - start) / 1e3
        try:
            signature = list(model.get_signature_list())[0]
            in_details = model.get_input_tensor_details(signature)
            out_details = model.get_output_tensor_details(signature)
            rng = np.random.default_rng(seed)
            inputs = {n: model.create_input_buffer_by_name(signature, n) for n in in_details}
            outputs = {n: model.create_output_buffer_by_name(signature, n) for n in out_details}
            for n, buf in inputs.items():
                detail = {"dtype": _NUMPY.get(in_details[n]["dtype"], np.float32),
                          "shape": in_details[n]["shape"], "name": n}
                buf.write(random_input(detail, rng))
            t0 = time.perf_counter_ns()
            model.run_by_name(signature, inputs, outputs)
            first_us = (time.perf_counter_ns() - t0) / 1e3
            for _ in range(warmup_runs):
                model.run_by_name(signature, inputs, outputs)
            timings = []
            for _ in range(num_runs):
                t0 = time.perf_counter_ns()
                model.run_by_name(signature, inputs, outputs)
                timings.append((time.perf_counter_ns() - t0) / 1e3)
            fully = bool(model.is_fully_accelerated())
        except (RuntimeError, ValueError, KeyError, IndexError) as exc:
            return AcceleratorResult(accelerator, FAILED, f"running failed: {_short(exc)}")
    stats = latency_stats(timings)
    bench = BenchmarkResult(
        model=name, interpreter=f"ai_edge_litert.CompiledModel[{accelerator}]",
        num_threads=num_threads, op_resolver="compiled_model", num_runs=num_runs,
        warmup_runs=warmup_runs, init_us=init_us, first_inference_us=first_us,
        mean_us=stats.mean_us, std_us=stats.std_us, min_us=stats.min_us,
        median_us=stats.median_us, p90_us=stats.p90_us, p99_us=stats.p99_us,
        max_us=stats.max_us, peak_memory_bytes=memory.peak_bytes,
        peak_memory_method=memory.method, size_bytes=len(data), gzip_bytes=gzip_size(data),
        input_source="random", timings_us=tuple(timings))
    return AcceleratorResult(accelerator, USED, "", fully, bench)


def benchmark_compiled_model(model: ModelSource, accelerators: Sequence[str] = ("cpu", "gpu"),
                             num_threads: int = 1, num_runs: int = 50, warmup_runs: int = 5,
                             seed: int = 0) -> list[AcceleratorResult]:
    """Benchmarks ``model`` through ``CompiledModel`` on each accelerator, reporting each honestly.

    Args:
        model: Path or bytes of the ``.tflite`` model.
        accelerators: Any of ``"cpu"``, ``"gpu"`` (GPU with CPU fallback) and
            ``"gpu_only"``. Defaults to ("cpu", "gpu").
        num_threads: CPU threads. Defaults to 1.
        num_runs, warmup_runs: As in ``benchmark``.
        seed: Seed of the random inputs.

    Returns:
        One ``AcceleratorResult`` per accelerator.

    Example:
        >>> [r.status for r in benchmark_compiled_model("m.tflite")]
        ['used', 'not_available']
    """
    _validate_counts(num_runs, warmup_runs)
    bad = [a for a in accelerators if a not in ACCELERATORS]
    if bad:
        raise InvalidArgumentError(f"accelerators {bad} are not among {list(ACCELERATORS)}")
    data = read_tflite(model)
    name = _describe(model).strip("'")
    return [_run_one(data, name, a, int(num_threads), int(num_runs), int(warmup_runs), seed)
            for a in accelerators]
