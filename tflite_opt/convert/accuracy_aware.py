"""Accuracy-aware int8: keep the fewest layers in float until the drop is within a bound.

What NNCF's accuracy-control quantization does for OpenVINO, for TFLite:

1. Convert to float32 and to plain int8; measure both on the evaluation set.
   If the int8 drop is already within ``max_accuracy_drop``, stop.
2. Rank the quantized layers by their own quantization error (channel
   noise-to-signal ratio from the QuantizationDebugger; see ``quant_report``).
3. Forward pass: keep layers in float one by one, worst first, re-quantizing
   (calibration is reused, so each step is cheap) and re-evaluating, until the
   drop is within the bound.
4. Backward pass: try returning each kept layer to int8, least harmful first,
   and leave it int8 if the bound still holds. What remains is a minimal set
   (no single layer can be dropped from it).

An activation tensor stays int8 while any op next to it is int8, so an
outlier-range tensor usually needs both its producer and its consumer in float;
the forward pass finds such pairs because both rank high.
"""

from __future__ import annotations

import dataclasses
import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np

from tflite_opt.convert.converter import ConversionResult, _prepare, _run_converter
from tflite_opt.convert.quant_report import DEFAULT_DEBUG_SAMPLES, DebugSession, QuantizationReport
from tflite_opt.data.calibration import DEFAULT_NUM_SAMPLES, load_evaluation_data
from tflite_opt.errors import InvalidArgumentError


@dataclasses.dataclass(frozen=True)
class Trial:
    """One evaluated candidate: which nodes were float and what it scored."""

    step: str
    float_nodes: tuple[str, ...]
    accuracy: float
    size_bytes: int

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "num_float": len(self.float_nodes), "accuracy": self.accuracy,
                "size_bytes": self.size_bytes, "float_layers": list(self.float_nodes)}


@dataclasses.dataclass(frozen=True)
class AccuracyAwareResult:
    """The accuracy-aware int8 model and what it cost.

    Attributes:
        conversion: The final model (``conversion.float_nodes`` lists kept layers).
        max_accuracy_drop: The bound asked for (absolute, e.g. 0.01 = one point).
        float_accuracy: Accuracy of the float32 ``.tflite``.
        ptq_accuracy: Accuracy of plain int8 PTQ (``convert(..., "int8")``).
        accuracy: Accuracy of the final model.
        met_bound: Whether ``float_accuracy - accuracy <= max_accuracy_drop``.
        float_layers: Readable names of the layers kept in float.
        num_layers: Quantized layers the search could choose from.
        ptq_size_bytes / ptq_latency_us: Plain int8 size and mean latency.
        size_bytes / latency_us: The final model's.
        report: Per-layer quantization errors used for the ranking.
        trials: Every candidate evaluated, in order.

    Example:
        >>> r = convert_accuracy_aware(model, data.x_train, (data.x_test, data.y_test),
        ...                            max_accuracy_drop=0.01)
        >>> r.float_layers, r.accuracy_drop, r.size_cost_bytes
    """

    conversion: ConversionResult
    max_accuracy_drop: float
    float_accuracy: float
    ptq_accuracy: float
    accuracy: float
    met_bound: bool
    float_layers: tuple[str, ...]
    num_layers: int
    ptq_size_bytes: int
    ptq_latency_us: float | None
    size_bytes: int
    latency_us: float | None
    report: QuantizationReport
    trials: tuple[Trial, ...]
    search_time_s: float

    @property
    def ptq_drop(self) -> float:
        return self.float_accuracy - self.ptq_accuracy

    @property
    def accuracy_drop(self) -> float:
        return self.float_accuracy - self.accuracy

    @property
    def float_layer_fraction(self) -> float:
        return len(self.float_layers) / self.num_layers if self.num_layers else 0.0

    @property
    def size_cost_bytes(self) -> int:
        return self.size_bytes - self.ptq_size_bytes

    @property
    def latency_cost_us(self) -> float | None:
        if self.latency_us is None or self.ptq_latency_us is None:
            return None
        return self.latency_us - self.ptq_latency_us

    def save(self, path: str, overwrite: bool = False, **kwargs: Any):
        """Saves the final model with its sidecar; see ``ConversionResult.save``."""
        return self.conversion.save(path, overwrite=overwrite, **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {"max_accuracy_drop": self.max_accuracy_drop, "float_accuracy": self.float_accuracy,
                "ptq_accuracy": self.ptq_accuracy, "ptq_drop": self.ptq_drop,
                "accuracy": self.accuracy, "accuracy_drop": self.accuracy_drop,
                "met_bound": self.met_bound, "float_layers": list(self.float_layers),
                "float_nodes": list(self.conversion.float_nodes), "num_layers": self.num_layers,
                "float_layer_fraction": self.float_layer_fraction,
                "ptq_size_bytes": self.ptq_size_bytes, "size_bytes": self.size_bytes,
                "size_cost_bytes": self.size_cost_bytes, "ptq_latency_us": self.ptq_latency_us,
                "latency_us": self.latency_us, "latency_cost_us": self.latency_cost_us,
                "search_time_s": round(self.search_time_s, 3),
                "trials": [t.to_dict() for t in self.trials], "report": self.report.to_dict(),
                "conversion": self.conversion.to_dict()}


def convert_accuracy_aware(model: Any, representative_data: Any, eval_data: Any,
                           max_accuracy_drop: float = 0.01, *,
                           num_calibration_samples: int = DEFAULT_NUM_SAMPLES,
                           input_type: str | None = None, output_type: str | None = None,
                           num_debug_samples: int = DEFAULT_DEBUG_SAMPLES,
                           evaluate: Callable[[bytes, np.ndarray, np.ndarray], float] | None = None,
                           measure_latency: bool = True, progress: bool = True
                           ) -> AccuracyAwareResult:
    """Full int8 with the fewest layers kept in float so the accuracy drop stays in bound.

    Args:
        model: Anything :func:`~tflite_opt.convert.convert` accepts.
        representative_data: Calibration data (any source ``convert`` accepts).
        eval_data: ``(x, y)`` arrays or an ``.npz`` with ``x`` and ``y``: the set
            the drop is measured on. Use held-out data, not the calibration set.
        max_accuracy_drop: Largest acceptable ``float - int8`` top-1 accuracy,
            as a fraction (0.01 = one percentage point). Defaults to 0.01.
        num_calibration_samples: Calibration samples. Defaults to 100.
        input_type / output_type: As in ``convert`` for int8. Default int8.
        num_debug_samples: Samples for the per-layer error ranking. Defaults to 50.
        evaluate: ``evaluate(tflite_bytes, x, y) -> accuracy``; defaults to top-1
            accuracy via ``tflite_opt.runtime.evaluate_tflite``.
        measure_latency: Benchmark plain int8 and the final model. Defaults to True.
        progress: Show the calibration bar and one line per search step. Defaults to True.

    Returns:
        An :class:`AccuracyAwareResult`. If even keeping every layer in float
        does not meet the bound, ``met_bound`` is False (with a warning) and the
        best model found is returned.

    Example:
        >>> r = convert_accuracy_aware(model, data.x_train, (data.x_test, data.y_test),
        ...                            max_accuracy_drop=0.01)
        >>> r.save("out/model_int8_aa.tflite")
    """
    if isinstance(max_accuracy_drop, bool) or not isinstance(max_accuracy_drop, (int, float)) or \
            not 0.0 <= float(max_accuracy_drop) < 1.0:
        raise InvalidArgumentError(f"max_accuracy_drop must be a fraction in [0, 1) (0.01 = one "
                                   f"accuracy point), got {max_accuracy_drop!r}")
    bound = float(max_accuracy_drop)
    x_eval, y_eval = load_evaluation_data(eval_data)
    score = evaluate or _default_evaluate
    say = print if progress else (lambda *a, **k: None)
    start = time.perf_counter()

    prepared = _prepare(model, "int8", representative_data, num_calibration_samples, input_type,
                        output_type, False, None, False, progress)
    try:
        # Float reference, same source and inputs as the quantized candidates.
        float_prepared = _prepare(model, "float32", None, num_calibration_samples, None, None,
                                  False, None, False, False)
        try:
            float_bytes, _ = _run_converter(float_prepared, float_prepared.converter, True)
        finally:
            float_prepared.source.cleanup()
        ptq_bytes, ptq_time = _run_converter(prepared, prepared.converter, True)
        float_acc = score(float_bytes, x_eval, y_eval)
        ptq_acc = score(ptq_bytes, x_eval, y_eval)
        say(f"accuracy-aware int8: float {100 * float_acc:.2f}%, plain int8 {100 * ptq_acc:.2f}% "
            f"(drop {100 * (float_acc - ptq_acc):.2f} points, bound {100 * bound:.2f})")
        # A fresh converter for the debugger: it switches the converter to calibrate-only.
        prepared_dbg = _prepare(model, "int8", prepared.calibration, len(prepared.calibration[0]),
                                input_type, output_type, False, None, False, False)
        try:
            session = DebugSession(prepared_dbg, None, num_debug_samples)
        finally:
            prepared_dbg.source.cleanup()
    finally:
        prepared.source.cleanup()

    report = session.report
    layer_of = {l.node: l.layer for l in report.layers}
    trials: list[Trial] = []
    cache: dict[frozenset, tuple[bytes, float]] = {}

    def evaluate_set(nodes: Sequence[str], step: str) -> tuple[bytes, float]:
        key = frozenset(nodes)
        if key not in cache:
            data = session.quantize(nodes)
            cache[key] = (data, score(data, x_eval, y_eval))
            trials.append(Trial(step, tuple(layer_of[n] for n in nodes), cache[key][1], len(data)))
            say(f"  {step}: {len(nodes)} float layer(s) {[layer_of[n] for n in nodes]} -> "
                f"{100 * cache[key][1]:.2f}%")
        return cache[key]

    def within(acc: float) -> bool:
        return float_acc - acc <= bound + 1e-12

    if within(ptq_acc):
        final_nodes: list[str] = []
        final_bytes, final_acc = ptq_bytes, ptq_acc
    else:
        ranked = [l.node for l in report.worst(len(report.layers))]
        chosen: list[str] = []
        best: tuple[list[str], bytes, float] | None = None
        for node in ranked:
            chosen.append(node)
            data, acc = evaluate_set(chosen, "forward")
            if best is None or acc > best[2]:
                best = (list(chosen), data, acc)
            if within(acc):
                break
        if within(best[2]):
            # Backward elimination: least harmful (lowest-ranked) kept layer first.
            kept = list(best[0])
            for node in reversed(list(best[0])):
                trial = [n for n in kept if n != node]
                if not trial:
                    continue
                data, acc = evaluate_set(trial, "backward")
                if within(acc):
                    kept = trial
            final_nodes = kept
            final_bytes, final_acc = evaluate_set(kept, "final")
        else:
            final_nodes, final_bytes, final_acc = best
            warnings.warn(
                f"accuracy-aware int8 could not meet max_accuracy_drop={bound}: the best model "
                f"keeps {len(final_nodes)} layers in float and drops "
                f"{100 * (float_acc - final_acc):.2f} points; use precision='int16x8' or "
                "'dynamic', quantization-aware training, or a looser bound", stacklevel=2)

    latency_ptq = latency_final = None
    if measure_latency:
        latency_ptq = _latency_us(ptq_bytes)
        latency_final = latency_ptq if final_bytes == ptq_bytes else _latency_us(final_bytes)
    conversion = prepared.result(final_bytes, time.perf_counter() - start, float_nodes=final_nodes)
    result = AccuracyAwareResult(
        conversion=conversion, max_accuracy_drop=bound, float_accuracy=float_acc,
        ptq_accuracy=ptq_acc, accuracy=final_acc, met_bound=within(final_acc),
        float_layers=tuple(layer_of.get(n, n) for n in final_nodes),
        num_layers=len(report.layers), ptq_size_bytes=len(ptq_bytes), ptq_latency_us=latency_ptq,
        size_bytes=len(final_bytes), latency_us=latency_final, report=report,
        trials=tuple(trials), search_time_s=time.perf_counter() - start)
    say(f"accuracy-aware int8: {100 * final_acc:.2f}% (drop {100 * result.accuracy_drop:.2f} "
        f"points) with {len(final_nodes)}/{result.num_layers} layers in float "
        f"{list(result.float_layers)}; size {result.ptq_size_bytes} -> {result.size_bytes} bytes")
    return result


def _default_evaluate(tflite_bytes: bytes, x: np.ndarray, y: np.ndarray) -> float:
    from tflite_opt.runtime import evaluate_tflite

    acc = evaluate_tflite(tflite_bytes, x, y).accuracy
    if acc is None:
        raise InvalidArgumentError("eval_data gave no accuracy; pass integer or one-hot labels as y")
    return float(acc)


def _latency_us(tflite_bytes: bytes) -> float | None:
    from tflite_opt.runtime import benchmark

    try:
        return float(benchmark(tflite_bytes, num_runs=30, warmup_runs=3).mean_us)
    except Exception:  # noqa: BLE001 - latency is informative; never fail the conversion on it
        return None
