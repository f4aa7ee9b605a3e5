"""Per-layer quantization error of an int8 model against float: table and plot.

Built on ``tf.lite.experimental.QuantizationDebugger``: it inserts a NumericVerify
op after every quantized op, which runs the float op on the *same* (dequantized)
input and compares. So each layer's error is its own, not the accumulation of
earlier layers. For each layer this module reports:

* ``rmse_over_scale``: RMSE in units of the output's quantization step. Pure
  rounding gives about 0.29 (1/sqrt(12)); much more means clipping or a bad range.
* ``snr_db``: signal-to-quantization-noise ratio of the whole output tensor.
* ``channel_nsr``: noise-to-signal ratio averaged over output channels. A few
  outlier channels that set a huge range make the *other* channels round to zero:
  the tensor SNR still looks fine (the outliers dominate the signal), rmse/scale
  looks fine (errors stay within one step), but channel NSR approaches 1. This is
  the ranking used by accuracy-aware int8 (``LayerError.sensitivity``; for
  softmax outputs, whose near-zero classes do not matter, the tensor NSR).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tflite_opt.files import atomic_write_bytes, atomic_write_json, atomic_write_text

DEFAULT_DEBUG_SAMPLES = 50
_PROBABILITY_OPS = ("SOFTMAX", "LOGISTIC", "LOG_SOFTMAX")


@dataclasses.dataclass(frozen=True)
class LayerError:
    """Quantization error of one quantized op's output.

    Attributes:
        node: The op's output tensor name (what ``denylisted_nodes`` takes).
        layer: Readable Keras layer name(s) fused into the op, e.g. ``conv2+bn2+relu2``.
        op: TFLite op type, e.g. ``CONV_2D``.
        scale / zero_point: Quantization parameters of the output.
        rmse: Root-mean-square error in real units.
        rmse_over_scale: RMSE in quantization steps.
        snr_db: Signal-to-noise ratio of the tensor, in dB.
        channel_nsr: Mean per-channel noise-to-signal ratio (0 = exact, 1 = all signal lost).
        num_elements: Elements per sample.
    """

    node: str
    layer: str
    op: str
    scale: float
    zero_point: int
    rmse: float
    rmse_over_scale: float
    snr_db: float
    channel_nsr: float
    num_elements: int

    @property
    def sensitivity(self) -> float:
        """How much this layer's quantization likely hurts: channel NSR, except for
        probability outputs (softmax/logistic), whose near-zero classes carry no
        decision information, so the tensor-level noise-to-signal ratio is used."""
        if self.op in _PROBABILITY_OPS:
            return 10 ** (-self.snr_db / 10) if math.isfinite(self.snr_db) else 0.0
        return self.channel_nsr if math.isfinite(self.channel_nsr) else -1.0

    def to_dict(self) -> dict[str, Any]:
        out = {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
               for k, v in dataclasses.asdict(self).items()}
        out["sensitivity"] = self.sensitivity
        return out


@dataclasses.dataclass(frozen=True)
class QuantizationReport:
    """Per-layer errors of an int8 model, in graph order.

    Example:
        >>> report = quantization_report(model, representative_data=x)
        >>> print(report.to_markdown())
        >>> report.save("out/quant_report")   # .json, .md and .png
    """

    layers: tuple[LayerError, ...]
    num_samples: int

    def worst(self, k: int = 5) -> list[LayerError]:
        """The ``k`` layers with the highest :attr:`LayerError.sensitivity`."""
        return sorted(self.layers, key=lambda l: -l.sensitivity)[:k]

    def table(self) -> dict[str, Any]:
        """The benchmark/report table form: ``{"title", "columns", "rows"}``."""
        columns = ["layer", "op", "scale", "zero_point", "rmse/scale", "snr_db", "channel_nsr",
                   "sensitivity"]
        rows = [[l.layer, l.op, _r(l.scale, 6), l.zero_point, _r(l.rmse_over_scale, 3),
                 _r(l.snr_db, 1), _r(l.channel_nsr, 4), _r(l.sensitivity, 4)] for l in self.layers]
        return {"title": "Per-layer int8 quantization error", "columns": columns, "rows": rows}

    def to_markdown(self) -> str:
        t = self.table()
        lines = ["| " + " | ".join(t["columns"]) + " |", "|" + "---|" * len(t["columns"])]
        lines += ["| " + " | ".join("" if v is None else str(v) for v in row) + " |" for row in t["rows"]]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"num_samples": self.num_samples, "layers": [l.to_dict() for l in self.layers]}

    def plot(self, path: str | os.PathLike, title: str = "int8 quantization error per layer") -> Path:
        """Saves a PNG with rmse/scale, SNR and channel NSR per layer (atomically)."""
        import io

        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        names = [l.layer for l in self.layers]
        x = np.arange(len(names))
        fig, axes = plt.subplots(3, 1, figsize=(max(6.0, 0.6 * len(names) + 2), 8), sharex=True)
        axes[0].bar(x, [_nan0(l.rmse_over_scale) for l in self.layers], color="tab:blue")
        axes[0].axhline(1 / math.sqrt(12), color="grey", ls="--", lw=1, label="pure rounding (0.29)")
        axes[0].set_ylabel("RMSE / scale")
        axes[0].legend(fontsize=8)
        axes[1].bar(x, [_nan0(l.snr_db) for l in self.layers], color="tab:green")
        axes[1].set_ylabel("SNR (dB)")
        axes[2].bar(x, [_nan0(l.channel_nsr) for l in self.layers], color="tab:red")
        axes[2].set_ylabel("channel NSR")
        axes[2].set_xticks(x)
        axes[2].set_xticklabels(names, rotation=45, ha="right", fontsize=8)
        axes[0].set_title(title)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        return atomic_write_bytes(path, buf.getvalue(), overwrite=True)

    def save(self, stem: str | os.PathLike) -> list[Path]:
        """Writes ``stem.json``, ``stem.md`` and ``stem.png``; returns the paths."""
        stem = str(stem)  # not with_suffix: "m.quant_report" would lose ".quant_report"
        return [atomic_write_json(stem + ".json", self.to_dict()),
                atomic_write_text(stem + ".md", self.to_markdown()),
                self.plot(stem + ".png")]


def quantization_report(model: Any, representative_data: Any, *,
                        num_calibration_samples: int = 100,
                        num_debug_samples: int = DEFAULT_DEBUG_SAMPLES,
                        debug_data: Any = None) -> QuantizationReport:
    """Measures each layer's int8 quantization error against float.

    Args:
        model: Anything :func:`~tflite_opt.convert.convert` accepts.
        representative_data: Calibration data (any source ``convert`` accepts).
        num_calibration_samples: Samples for calibration. Defaults to 100.
        num_debug_samples: Samples run through the debug model. Defaults to 50.
        debug_data: Inputs to measure on; defaults to the calibration samples.

    Returns:
        A :class:`QuantizationReport`.

    Example:
        >>> report = quantization_report(model, data.x_train)
        >>> report.save("out/quant_report")
    """
    from tflite_opt.convert.converter import _prepare

    prepared = _prepare(model, "int8", representative_data, num_calibration_samples, None, None,
                        False, None, False, True)
    try:
        session = DebugSession(prepared, debug_data, num_debug_samples)
    finally:
        prepared.source.cleanup()
    return session.report


class DebugSession:
    """A calibrated model plus per-layer errors; requantizes with nodes kept in float.

    Calibration runs once; :meth:`quantize` then re-runs only the quantizer pass
    (``mlir_quantize``) with a denylist, which takes well under a second on small
    models. Used by accuracy-aware int8.
    """

    def __init__(self, prepared: Any, debug_data: Any = None,
                 num_debug_samples: int = DEFAULT_DEBUG_SAMPLES) -> None:
        from tflite_opt._keras import tf
        from tflite_opt.convert._quiet import quiet_converter
        from tflite_opt.data.calibration import load_calibration_data

        self.prepared = prepared
        if debug_data is None:
            samples = prepared.calibration
        else:
            samples = load_calibration_data(debug_data, prepared.source.input_specs,
                                            num_samples=num_debug_samples, argument="debug_data")
        n = min(num_debug_samples, len(samples[0]))
        samples = [a[:n] for a in samples]

        def dataset():
            for i in range(n):
                yield [a[i:i + 1] for a in samples]

        options = tf.lite.experimental.QuantizationDebugOptions(
            layer_direct_compare_metrics={"_sum_sq_err": _sum_sq_err, "_sum_sq_sig": _sum_sq_sig,
                                          "_channel_nsr": _channel_nsr})
        with quiet_converter():
            self.debugger = tf.lite.experimental.QuantizationDebugger(
                converter=prepared.converter, debug_dataset=dataset, debug_options=options)
            # Built from a converter, the debugger's interpreter does not preserve
            # intermediate tensors, so the float operands that the direct-compare
            # metrics read can be overwritten by later ops (we saw 1e74 garbage).
            # Rebuild it the way the debugger does for model files.
            from tensorflow.lite.python import interpreter as tf_interpreter

            self.debugger._quant_interpreter = tf_interpreter.Interpreter(  # noqa: SLF001
                model_content=self.debugger.quant_model, experimental_preserve_all_tensors=True)
            self.debugger._initialize_stats()  # noqa: SLF001 - re-reads ops of the new interpreter
            self.debugger.run()
        self.calibrated_model = self.debugger.calibrated_model
        self.report = QuantizationReport(self._layers(), n)

    def _layers(self) -> tuple[LayerError, ...]:
        dbg = self.debugger
        interp = dbg._quant_interpreter  # noqa: SLF001 - the debugger exposes no public accessor
        out = []
        for name, metrics in dbg.layer_statistics.items():
            node, _ = dbg._get_operand_name_and_index(name)  # noqa: SLF001
            op_info = dbg._numeric_verify_op_details[name]  # noqa: SLF001
            q_idx = op_info["inputs"][0]
            details = interp._get_tensor_details(q_idx, subgraph_index=0)  # noqa: SLF001
            params = details["quantization_parameters"]
            scale = float(params["scales"][0]) if len(params["scales"]) else float("nan")
            zp = int(params["zero_points"][0]) if len(params["zero_points"]) else 0
            op_name = interp._get_op_details(dbg._defining_op[q_idx])["op_name"]  # noqa: SLF001
            mse = float(metrics["mean_squared_error"])
            err, sig = float(metrics["_sum_sq_err"]), float(metrics["_sum_sq_sig"])
            snr = 10 * math.log10(sig / err) if err > 0 and sig > 0 else (math.inf if sig > 0 else math.nan)
            out.append(LayerError(
                node=node, layer=_layer_label(node, op_name), op=op_name, scale=scale, zero_point=zp,
                rmse=math.sqrt(mse), rmse_over_scale=math.sqrt(mse) / scale if scale > 0 else math.nan,
                snr_db=snr, channel_nsr=float(metrics["_channel_nsr"]),
                num_elements=int(metrics["num_elements"])))
        return tuple(out)

    def quantize(self, float_nodes: Sequence[str] = ()) -> bytes:
        """Returns the int8 model with ``float_nodes`` kept in float."""
        from tflite_opt._keras import tf
        from tflite_opt.convert._quiet import quiet_converter
        from tensorflow.lite.python import convert as tfl_convert  # the quantizer pass the debugger uses

        in_type, out_type = self.prepared.input_type, self.prepared.output_type
        fully = in_type != "float32" or out_type != "float32"
        with quiet_converter():
            return bytes(tfl_convert.mlir_quantize(
                self.calibrated_model,
                disable_per_channel=self.prepared.converter._experimental_disable_per_channel,  # noqa: SLF001
                fully_quantize=fully,
                input_data_type=tf.as_dtype(in_type), output_data_type=tf.as_dtype(out_type),
                denylisted_nodes=list(float_nodes) or None))


# Direct-compare metrics: the debugger averages each over samples (nanmean).
def _deq(q: np.ndarray, scale: float, zp: int) -> np.ndarray:
    return (q.astype(np.float64) - zp) * scale


def _sum_sq_err(f: np.ndarray, q: np.ndarray, scale: float, zp: int) -> float:
    return float(np.sum((f.astype(np.float64) - _deq(q, scale, zp)) ** 2))


def _sum_sq_sig(f: np.ndarray, q: np.ndarray, scale: float, zp: int) -> float:
    return float(np.sum(f.astype(np.float64) ** 2))


def _channel_nsr(f: np.ndarray, q: np.ndarray, scale: float, zp: int) -> float:
    f = f.astype(np.float64)
    channels = f.shape[-1] if f.ndim else 1
    f2 = f.reshape(-1, channels)
    e2 = (f - _deq(q, scale, zp)).reshape(-1, channels)
    sig = np.sum(f2 ** 2, axis=0)
    err = np.sum(e2 ** 2, axis=0)
    live = sig > 0  # dead channels (all-zero after ReLU) carry no signal to lose
    if not np.any(live):
        return float("nan")
    return float(np.mean(np.minimum(err[live] / sig[live], 1.0)))


def readable_layer_name(node: str) -> str:
    """``'m/relu2/Relu;m/bn2/FusedBatchNormV3;m/conv2/Conv2D1'`` -> ``'conv2+bn2+relu2'``."""
    names: list[str] = []
    for part in reversed(node.split(";")):
        pieces = [p for p in part.split("/") if p]
        name = pieces[1] if len(pieces) >= 3 else pieces[0] if pieces else part
        name = re.sub(r"\d*:\d+$", "", name) if ":" in name else name
        if name not in names:
            names.append(name)
    return "+".join(names)[:60]


def _layer_label(node: str, op: str) -> str:
    name = readable_layer_name(node)
    # The model's output tensor is named after the serving call, not a layer.
    return f"output ({op.lower()})" if "PartitionedCall" in name else name


def _r(v: float, digits: int) -> float | None:
    return None if not math.isfinite(v) else round(v, digits)


def _nan0(v: float) -> float:
    return v if math.isfinite(v) else 0.0

