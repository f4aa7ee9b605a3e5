"""Interleaved benchmarks: several models (or configurations) timed turn by turn.

Timing model A for a minute and then model B lets a background job, a clock
change or thermal throttling decide which looks faster. Here every candidate is
loaded and warmed up first, then each round times one inference of every
candidate, in an order rotated each round, so noise hits all of them alike.
Pairwise ratios of the medians say how much faster each one is, and a ratio is
only called a difference when the interquartile ranges of the two do not overlap.

``find_fastest_config`` runs the same comparison over interpreter settings
(threads x XNNPACK on/off) of one file and says which is fastest on this machine,
instead of assuming (int8 is not always faster than float on a given CPU).

Example:
    >>> result = compare(["float.tflite", "int8.tflite"], num_runs=200)
    >>> result.ratio("float.tflite", "int8.tflite")   # > 1: int8 is faster
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import time
from typing import Any, Sequence

import numpy as np

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.runtime.benchmark import _set_inputs, _validate_counts, gzip_size, prepare_inputs
from tflite_opt.runtime.interpreter import InterpreterOptions, make_interpreter
from tflite_opt.runtime.memory import PeakMemory
from tflite_opt.runtime.model_file import ModelSource, _describe, read_tflite
from tflite_opt.runtime.stats import LatencyStats, latency_stats


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One thing to time: a model file under one interpreter configuration."""

    label: str
    model: str
    num_threads: int = 1
    op_resolver: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class CandidateResult:
    """Statistics of one candidate in an interleaved run (microseconds, bytes)."""

    candidate: Candidate
    stats: LatencyStats
    q1_us: float
    q3_us: float
    init_us: float
    first_inference_us: float
    size_bytes: int
    gzip_bytes: int
    interpreter: str
    op_resolver_used: str = "auto"
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {"label": self.candidate.label, **self.candidate.to_dict(), **self.stats.to_dict(),
               "q1_us": self.q1_us, "q3_us": self.q3_us, "init_us": self.init_us,
               "first_inference_us": self.first_inference_us, "size_bytes": self.size_bytes,
               "gzip_bytes": self.gzip_bytes, "interpreter": self.interpreter,
               "op_resolver_used": self.op_resolver_used, "notes": list(self.notes)}
        return out


@dataclasses.dataclass(frozen=True)
class CompareResult:
    """Interleaved results with pairwise ratios.

    ``ratios[a][b]`` is ``median(a) / median(b)``: above 1 means ``b`` is faster.
    ``distinguishable[a][b]`` is True when the interquartile ranges of a and b do
    not overlap, i.e. the difference is larger than the run-to-run noise.
    """

    results: tuple[CandidateResult, ...]
    ratios: dict[str, dict[str, float]]
    distinguishable: dict[str, dict[str, bool]]
    num_runs: int
    warmup_runs: int
    peak_memory_bytes: int
    peak_memory_method: str
    fastest: str

    def ratio(self, a: str, b: str) -> float:
        """``median(a) / median(b)`` for two labels."""
        try:
            return self.ratios[a][b]
        except KeyError:
            raise InvalidArgumentError(f"labels must be among {list(self.ratios)}, got "
                                       f"{a!r}, {b!r}") from None

    def result(self, label: str) -> CandidateResult:
        for r in self.results:
            if r.candidate.label == label:
                return r
        raise InvalidArgumentError(f"label {label!r} not among {list(self.ratios)}")

    def to_dict(self) -> dict[str, Any]:
        return {"results": [r.to_dict() for r in self.results], "ratios": self.ratios,
                "distinguishable": self.distinguishable, "num_runs": self.num_runs,
                "warmup_runs": self.warmup_runs, "peak_memory_bytes": self.peak_memory_bytes,
                "peak_memory_method": self.peak_memory_method, "fastest": self.fastest}


def run_interleaved(candidates: Sequence[Candidate], num_runs: int = 50, warmup_runs: int = 5,
                    inputs: Any = None, seed: int = 0, progress: bool = False,
                    data: dict[str, bytes] | None = None) -> CompareResult:
    """Times ``candidates`` turn by turn; the engine under ``compare`` and ``find_fastest_config``.

    Example:
        >>> run_interleaved([Candidate("a", "a.tflite"), Candidate("b", "b.tflite")])
    """
    _validate_counts(num_runs, warmup_runs)
    if len(candidates) < 1:
        raise InvalidArgumentError("compare needs at least one model")
    labels = [c.label for c in candidates]
    if len(set(labels)) != len(labels):
        raise InvalidArgumentError(f"candidate labels must be unique, got {labels}")
    data = dict(data or {})
    for c in candidates:
        if c.model not in data:
            data[c.model] = read_tflite(c.model)
    with PeakMemory() as memory:
        loaded, first = [], []
        for c in candidates:
            options = InterpreterOptions(num_threads=c.num_threads, op_resolver=c.op_resolver)
            interp = make_interpreter(data[c.model], options, name=repr(c.model))
            arrays = prepare_inputs(interp, inputs, seed=seed, name=repr(c.model))
            _set_inputs(interp, arrays)
            start = time.perf_counter_ns()
            interp.interpreter.invoke()
            first.append((time.perf_counter_ns() - start) / 1e3)
            for _ in range(int(warmup_runs)):
                interp.interpreter.invoke()
            loaded.append((interp, arrays))
        timings: list[list[float]] = [[] for _ in candidates]
        rounds: Any = range(int(num_runs))
        if progress:
            from tqdm import tqdm

            rounds = tqdm(rounds, desc=f"compare x{len(candidates)}", unit="round", leave=False)
        n = len(candidates)
        for r in rounds:
            for k in range(n):
                i = (k + r) % n  # rotate the order so no candidate always runs first
                interp, arrays = loaded[i]
                _set_inputs(interp, arrays)
                start = time.perf_counter_ns()
                interp.interpreter.invoke()
                timings[i].append((time.perf_counter_ns() - start) / 1e3)
    results = []
    for c, (interp, _), t, f in zip(candidates, loaded, timings, first):
        results.append(CandidateResult(
            candidate=c, stats=latency_stats(t), q1_us=float(np.percentile(t, 25)),
            q3_us=float(np.percentile(t, 75)), init_us=interp.init_us, first_inference_us=f,
            size_bytes=len(data[c.model]), gzip_bytes=gzip_size(data[c.model]),
            interpreter=interp.backend, op_resolver_used=interp.options.op_resolver,
            notes=(f"the default XNNPACK delegate failed to prepare "
                   f"({interp.fallback_reason}); ran on builtin kernels",)
            if interp.fallback_reason else ()))
    ratios: dict[str, dict[str, float]] = {a.candidate.label: {} for a in results}
    distinct: dict[str, dict[str, bool]] = {a.candidate.label: {} for a in results}
    for a, b in itertools.product(results, repeat=2):
        la, lb = a.candidate.label, b.candidate.label
        ratios[la][lb] = a.stats.median_us / b.stats.median_us if b.stats.median_us else \
            float("inf")
        distinct[la][lb] = a.q3_us < b.q1_us or b.q3_us < a.q1_us
    fastest = min(results, key=lambda r: r.stats.median_us).candidate.label
    return CompareResult(results=tuple(results), ratios=ratios, distinguishable=distinct,
                         num_runs=int(num_runs), warmup_runs=int(warmup_runs),
                         peak_memory_bytes=memory.peak_bytes,
                         peak_memory_method=memory.method, fastest=fastest)


def _unique_labels(paths: Sequence[ModelSource]) -> list[str]:
    """File names; full paths if names collide; ``#2``, ``#3`` for a file given twice."""
    names = [os.path.basename(_describe(p).strip("'")) for p in paths]
    if len(set(names)) != len(names):
        names = [_describe(p).strip("'") if not isinstance(p, (bytes, bytearray, memoryview))
                 else f"model{i}" for i, p in enumerate(paths)]
    seen: dict[str, int] = {}
    labels = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        labels.append(name if seen[name] == 1 else f"{name}#{seen[name]}")
    return labels


def compare(models: Sequence[ModelSource], num_runs: int = 50, warmup_runs: int = 5,
            num_threads: int = 1, *, op_resolver: str = "auto", inputs: Any = None,
            progress: bool = False) -> CompareResult:
    """Benchmarks several ``.tflite`` files interleaved in one process.

    Args:
        models: Paths or bytes of the models (all validated first).
        num_runs: Rounds; each round times every model once. Defaults to 50.
        warmup_runs: Untimed runs per model before the rounds. Defaults to 5.
        num_threads: Threads for every model. Defaults to 1.
        op_resolver: ``"auto"``, ``"no_xnnpack"`` or ``"reference"``.
        inputs: None (random inputs per model) or data valid for every model.
        progress: tqdm bar over the rounds.

    Returns:
        A ``CompareResult`` labelled by file name.

    Example:
        >>> r = compare(["float.tflite", "int8.tflite"], num_runs=100)
        >>> r.ratios["float.tflite"]["int8.tflite"]
    """
    if isinstance(models, (str, bytes, os.PathLike)):
        models = [models]
    labels = _unique_labels(models)
    data = {}
    candidates = []
    for label, model in zip(labels, models):
        key = label
        data[key] = read_tflite(model)
        candidates.append(Candidate(label, key, num_threads, op_resolver))
    return run_interleaved(candidates, num_runs, warmup_runs, inputs=inputs, progress=progress,
                           data=data)


@dataclasses.dataclass(frozen=True)
class FastestConfig:
    """The fastest interpreter configuration of one file on this machine.

    Attributes:
        model: File name.
        num_threads, op_resolver: The fastest configuration.
        median_us: Its median latency.
        speedup_vs_default: median(default: 1 thread, XNNPACK) / median(fastest).
        distinguishable_from_default: The gap exceeds the interquartile noise.
        comparison: The full interleaved comparison.
        summary: One sentence saying which configuration won and by how much.
    """

    model: str
    num_threads: int
    op_resolver: str
    median_us: float
    speedup_vs_default: float
    distinguishable_from_default: bool
    comparison: CompareResult
    summary: str

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["comparison"] = self.comparison.to_dict()
        return out


def find_fastest_config(model: ModelSource, threads: Sequence[int] = (1, 2),
                        op_resolvers: Sequence[str] = ("auto", "no_xnnpack"),
                        num_runs: int = 50, warmup_runs: int = 5, inputs: Any = None,
                        progress: bool = False) -> FastestConfig:
    """Times every (threads x op resolver) configuration of one file, interleaved.

    Args:
        model: Path or bytes of the ``.tflite`` model.
        threads: Thread counts to try. Defaults to (1, 2).
        op_resolvers: Op resolvers to try. Defaults to ("auto", "no_xnnpack"):
            XNNPACK on and off.
        num_runs: Rounds. Defaults to 50.
        warmup_runs: Warm-up runs per configuration. Defaults to 5.
        inputs: Optional input data. Defaults to random.
        progress: tqdm bar.

    Returns:
        A ``FastestConfig``.

    Example:
        >>> best = find_fastest_config("int8.tflite", threads=(1, 2, 4))
        >>> print(best.summary)
    """
    data = read_tflite(model)
    name = _describe(model).strip("'")
    key = os.path.basename(name) or "model"
    candidates = [Candidate(f"{r}/t{t}", key, int(t), r)
                  for t, r in itertools.product(threads, op_resolvers)]
    result = run_interleaved(candidates, num_runs, warmup_runs, inputs=inputs,
                             progress=progress, data={key: data})
    best = result.result(result.fastest)
    default_label = f"auto/t{min(threads)}" if "auto" in op_resolvers else candidates[0].label
    speedup = result.ratio(default_label, best.candidate.label)
    distinct = result.distinguishable[default_label][best.candidate.label]
    verdict = "a real difference" if distinct else "within run-to-run noise"
    kernels = "XNNPACK" if best.candidate.op_resolver == "auto" else best.candidate.op_resolver
    head = (f"{key}: fastest is {best.candidate.num_threads} thread(s) with {kernels} at "
            f"{best.stats.median_us:.1f} us median")
    if best.candidate.label == default_label:
        others = sorted((r for r in result.results if r.candidate.label != default_label),
                        key=lambda r: r.stats.median_us)
        runner_up = (f"; next best {others[0].candidate.label} is "
                     f"{result.ratio(others[0].candidate.label, default_label):.2f}x slower"
                     if others else "")
        summary = f"{head}, which is the default configuration{runner_up}"
    else:
        summary = f"{head}, {speedup:.2f}x faster than {default_label} ({verdict})"
    return FastestConfig(model=name, num_threads=best.candidate.num_threads,
                         op_resolver=best.candidate.op_resolver,
                         median_us=best.stats.median_us, speedup_vs_default=speedup,
                         distinguishable_from_default=distinct, comparison=result,
                         summary=summary)
