"""Latency benchmark of a ``.tflite`` file, measured like the TFLite ``benchmark_model`` tool.

The sequence is the tool's: build the interpreter (init time), one first
inference, warm-up runs, then ``num_runs`` timed runs whose wall times give
mean, std, min, median, p90, p99 and max (see ``stats``). Only ``invoke()`` is
timed; inputs are written before the clock starts. The process's peak memory
over the whole sequence, the file size and its gzip size are reported too.

Example:
    >>> result = benchmark("model.tflite", num_runs=50, num_threads=2)
    >>> print(result.median_us, result.interpreter)
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import time
from typing import Any, Sequence

import numpy as np

from tflite_opt.errors import DataError, InvalidArgumentError
from tflite_opt.runtime.android import android_benchmark_commands
from tflite_opt.runtime.delegates import build_interpreter
from tflite_opt.runtime.interpreter import InterpreterOptions, LoadedInterpreter
from tflite_opt.runtime.memory import PeakMemory
from tflite_opt.runtime.model_file import ModelSource, _describe, read_tflite
from tflite_opt.runtime.quantization import quantize_input, random_input
from tflite_opt.runtime.stats import LatencyStats, latency_stats


@dataclasses.dataclass(frozen=True)
class BenchmarkResult:
    """What one benchmark measured. Times in microseconds, sizes in bytes.

    ``timings_us`` holds every timed run so plots and other statistics can be
    derived; ``peak_memory_method`` says whether ``peak_memory_bytes`` is the
    peak during this benchmark (``"vmhwm_reset"``) or the process's lifetime
    peak (``"lifetime_maxrss"``).
    """

    model: str
    interpreter: str
    num_threads: int
    op_resolver: str
    num_runs: int
    warmup_runs: int
    init_us: float
    first_inference_us: float
    mean_us: float
    std_us: float
    min_us: float
    median_us: float
    p90_us: float
    p99_us: float
    max_us: float
    peak_memory_bytes: int
    peak_memory_method: str
    size_bytes: int
    gzip_bytes: int
    input_source: str
    timings_us: tuple[float, ...] = ()
    delegates: tuple[dict, ...] = ()
    notes: tuple[str, ...] = ()
    android_commands: tuple[str, ...] = ()

    @property
    def stats(self) -> LatencyStats:
        """The statistics fields as a ``LatencyStats`` (kept even without ``timings_us``)."""
        return LatencyStats(count=self.num_runs, mean_us=self.mean_us, std_us=self.std_us,
                            min_us=self.min_us, median_us=self.median_us, p90_us=self.p90_us,
                            p99_us=self.p99_us, max_us=self.max_us)

    def to_dict(self, include_timings: bool = True) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["timings_us"] = list(self.timings_us) if include_timings else None
        out["delegates"] = [dict(d) for d in self.delegates]
        out["notes"] = list(self.notes)
        out["android_commands"] = list(self.android_commands)
        return out


def gzip_size(data: bytes) -> int:
    """Bytes of ``data`` after gzip at level 9 (a proxy for download size)."""
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def _validate_counts(num_runs: int, warmup_runs: int) -> None:
    for name, value, low in (("num_runs", num_runs, 1), ("warmup_runs", warmup_runs, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise InvalidArgumentError(f"{name} must be an integer >= {low}, got {value!r}")


def _as_input_list(inputs: Any, n_inputs: int) -> list[np.ndarray]:
    if isinstance(inputs, dict):
        return list(inputs.values())
    if isinstance(inputs, (list, tuple)):
        arrays = [np.asarray(a) for a in inputs]
    else:
        arrays = [np.asarray(inputs)]
    if len(arrays) != n_inputs:
        raise DataError(f"inputs has {len(arrays)} arrays but the model has {n_inputs} inputs; "
                        "pass one array per model input, in the model's input order")
    return arrays


def prepare_inputs(loaded: LoadedInterpreter, inputs: Any = None, seed: int = 0,
                   name: str = "<model>") -> list[np.ndarray]:
    """Returns one array per model input, in its dtype, resizing the interpreter if needed.

    ``None`` gives random inputs of the right dtype and range; otherwise pass an
    array (single input), a list (one per input) or a dict keyed in input order.
    Float data for a quantized input is quantized with the input's scale and zero
    point.

    Example:
        >>> arrays = prepare_inputs(make_interpreter(data), None)
    """
    details = loaded.input_details()
    if inputs is None:
        rng = np.random.default_rng(seed)
        return [random_input(d, rng) for d in details]
    arrays = _as_input_list(inputs, len(details))
    out = []
    resized = False
    for detail, array in zip(details, arrays):
        array = quantize_input(array, detail)
        if tuple(array.shape) != tuple(detail["shape"]):
            signature = detail.get("shape_signature", detail["shape"])
            fits = len(signature) == array.ndim and all(
                s == -1 or s == a for s, a in zip(signature, array.shape))
            if not fits:
                raise DataError(f"input {detail['name']!r} of {name} has shape "
                                f"{list(detail['shape'])} (signature {list(signature)}), got "
                                f"data of shape {list(array.shape)}; pass data of that shape")
            loaded.interpreter.resize_tensor_input(detail["index"], list(array.shape))
            resized = True
        out.append(array)
    if resized:
        loaded.interpreter.allocate_tensors()
    return out


def _set_inputs(loaded: LoadedInterpreter, arrays: Sequence[np.ndarray]) -> None:
    for detail, array in zip(loaded.input_details(), arrays):
        loaded.interpreter.set_tensor(detail["index"], array)


def _timed_invoke(interpreter: Any) -> float:
    start = time.perf_counter_ns()
    interpreter.invoke()
    return (time.perf_counter_ns() - start) / 1e3


def benchmark(model: ModelSource, num_runs: int = 50, warmup_runs: int = 5,
              num_threads: int = 1, inputs: Any = None, *, op_resolver: str = "auto",
              backend: str = "auto", delegates: Sequence[Any] = (), seed: int = 0,
              progress: bool = False, keep_timings: bool = True,
              isolate: bool = False) -> BenchmarkResult:
    """Benchmarks one ``.tflite`` file in this process.

    Args:
        model: Path or bytes of a ``.tflite`` model (validated first).
        num_runs: Timed runs (>= 1). Defaults to 50.
        warmup_runs: Untimed runs after the first inference (>= 0). Defaults to 5.
        num_threads: Interpreter threads (>= 1). Defaults to 1.
        inputs: None for random inputs of the right dtype/range, else an array,
            list or dict of arrays (floats are quantized for integer inputs).
        op_resolver: ``"auto"`` (XNNPACK), ``"no_xnnpack"`` or ``"reference"``.
        backend: ``"auto"``, ``"ai_edge_litert"`` or ``"tensorflow"``.
        delegates: Delegate names or ``DelegateSpec``s to try (see ``delegates``);
            each one's outcome is in ``result.delegates``.
        seed: Seed of the random inputs. Defaults to 0.
        progress: Show a tqdm bar over the timed runs. Defaults to False.
        keep_timings: Keep every run's time in the result. Defaults to True.
        isolate: First run the model once in a child process, so a file that
            crashes the native runtime raises ``InvalidTFLiteError`` here instead
            of killing this process (about 0.2 s). Defaults to False.

    Returns:
        A ``BenchmarkResult``.

    Raises:
        InvalidTFLiteError: The file is missing, empty, corrupt or not loadable.
        InvalidArgumentError: A count, thread number or option is out of range.

    Example:
        >>> r = benchmark("model.tflite", num_runs=100, num_threads=2)
        >>> f"{r.median_us:.0f} us (min {r.min_us:.0f}, max {r.max_us:.0f})"
    """
    _validate_counts(num_runs, warmup_runs)
    options = InterpreterOptions(num_threads=num_threads, op_resolver=op_resolver,
                                 backend=backend)
    data = read_tflite(model)
    name = _describe(model)
    if isolate:
        from tflite_opt.runtime.isolation import ensure_runs_safely

        ensure_runs_safely(data, name=name, num_threads=num_threads)
    with PeakMemory() as memory:
        loaded, delegate_results = build_interpreter(data, options, delegates, name)
        arrays = prepare_inputs(loaded, inputs, seed=seed, name=name)
        _set_inputs(loaded, arrays)
        first_us = _timed_invoke(loaded.interpreter)
        for _ in range(int(warmup_runs)):
            _set_inputs(loaded, arrays)
            loaded.interpreter.invoke()
        timings = []
        runs = range(int(num_runs))
        if progress:
            from tqdm import tqdm

            runs = tqdm(runs, desc=f"benchmark {os.path.basename(name.strip(chr(39)))}",
                        unit="run", leave=False)
        for _ in runs:
            _set_inputs(loaded, arrays)
            timings.append(_timed_invoke(loaded.interpreter))
    stats = latency_stats(timings)
    android_delegate = "xnnpack" if loaded.options.op_resolver == "auto" else "none"
    external = None
    for result in delegate_results:
        if result.name in ("gpu", "nnapi", "hexagon", "external"):
            android_delegate, external = result.name, result.library
            break
    commands = android_benchmark_commands(
        name.strip("'") if not isinstance(model, (bytes, bytearray, memoryview)) else "model.tflite",
        num_threads=num_threads, delegate=android_delegate, num_runs=int(num_runs),
        warmup_runs=int(warmup_runs),
        external_library=external or "libdelegate.so")
    notes = []
    if loaded.fallback_reason:
        notes.append(f"the default XNNPACK delegate failed to prepare ({loaded.fallback_reason}); "
                     "timed with the builtin kernels")
    if memory.method != "vmhwm_reset":
        notes.append("peak_memory_bytes is the process's lifetime peak: this system does not "
                     "allow resetting the peak RSS counter")
    cpus = os.cpu_count() or 1
    if num_threads > cpus:
        notes.append(f"num_threads={num_threads} exceeds the {cpus} CPUs of this machine")
    return BenchmarkResult(
        model=name.strip("'"), interpreter=loaded.backend, num_threads=num_threads,
        op_resolver=loaded.options.op_resolver, num_runs=int(num_runs),
        warmup_runs=int(warmup_runs), init_us=loaded.init_us, first_inference_us=first_us,
        mean_us=stats.mean_us, std_us=stats.std_us, min_us=stats.min_us,
        median_us=stats.median_us, p90_us=stats.p90_us, p99_us=stats.p99_us,
        max_us=stats.max_us, peak_memory_bytes=memory.peak_bytes,
        peak_memory_method=memory.method, size_bytes=len(data), gzip_bytes=gzip_size(data),
        input_source="random" if inputs is None else "user",
        timings_us=tuple(timings) if keep_timings else (),
        delegates=tuple(r.to_dict() for r in delegate_results),
        notes=tuple(notes),
        android_commands=tuple(commands))
