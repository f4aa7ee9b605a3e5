"""Accuracy of a ``.tflite`` model on an evaluation set, and its agreement with Keras.

Inputs are quantized with the input tensor's scale and zero point, outputs
dequantized with the output's, so an int8 model is scored on the same real
values as the float one. Models whose batch dimension is dynamic (signature
``-1``, what the converter writes for Keras models) are run in batches by
resizing the input; fixed batch-1 models are run one sample at a time.

Example:
    >>> acc = evaluate_tflite("model.tflite", x_test, y_test,
    ...                       reference_outputs=keras_model.predict(x_test))
    >>> acc.accuracy, acc.agreement, acc.max_abs_diff
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from tflite_opt.data.calibration import load_image_folder
from tflite_opt.errors import DataError, InvalidArgumentError
from tflite_opt.runtime.interpreter import InterpreterOptions, LoadedInterpreter, make_interpreter
from tflite_opt.runtime.model_file import ModelSource, _describe, read_tflite
from tflite_opt.runtime.quantization import dequantize_output, quantize_input

DEFAULT_BATCH_SIZE = 64


@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    """What ``evaluate_tflite`` measured.

    Attributes:
        accuracy: Top-1 accuracy in [0, 1] (None without labels).
        num_samples: Samples evaluated.
        agreement: Fraction whose top-1 class equals the reference's (None without one).
        max_abs_diff: Largest |tflite - reference| over dequantized outputs (None without one).
        mean_abs_diff: Mean |tflite - reference| (None without one).
        interpreter: ``"ai_edge_litert"`` or ``"tensorflow"``.
        metric: Name and value of a user metric, if one was given.
        batch_mode: ``"batched"`` (input resized) or ``"per_sample"``.
    """

    accuracy: float | None
    num_samples: int
    agreement: float | None
    max_abs_diff: float | None
    mean_abs_diff: float | None
    interpreter: str
    model: str = ""
    num_threads: int = 1
    batch_mode: str = "batched"
    metric_name: str | None = None
    metric_value: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _top1(outputs: np.ndarray) -> np.ndarray:
    outputs = outputs.reshape(outputs.shape[0], -1)
    if outputs.shape[1] == 1:  # one sigmoid unit: class 1 above 0.5
        return (outputs[:, 0] > 0.5).astype(np.int64)
    return np.argmax(outputs, axis=1)


def _labels(y: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(y)
    if y.shape[0] != n:
        raise DataError(f"y has {y.shape[0]} labels but x has {n} samples; pass one label per "
                        "sample")
    if y.ndim == 2 and y.shape[1] > 1:  # one-hot
        return np.argmax(y, axis=1)
    return y.reshape(n).astype(np.int64)


def _iter_dataset(dataset: Any) -> Iterator[tuple[np.ndarray, np.ndarray | None]]:
    for element in dataset:
        if isinstance(element, (tuple, list)):
            x = np.asarray(element[0])
            y = np.asarray(element[1]) if len(element) > 1 else None
        else:
            x, y = np.asarray(element), None
        yield x, y


class _Runner:
    """Runs batches through one interpreter, resizing when the batch is dynamic."""

    def __init__(self, loaded: LoadedInterpreter, name: str, batch_size: int):
        self.loaded = loaded
        self.name = name
        details = loaded.input_details()
        if len(details) != 1:
            raise DataError(f"model {name} has {len(details)} inputs; evaluate_tflite takes "
                            "models with one input")
        self.input = details[0]
        self.output = loaded.output_details()[0]
        signature = self.input.get("shape_signature", self.input["shape"])
        self.dynamic = len(signature) > 0 and int(signature[0]) == -1
        self.batch_size = batch_size if self.dynamic else int(self.input["shape"][0] or 1)
        self.current_batch = int(self.input["shape"][0]) if len(self.input["shape"]) else 1

    def _check(self, x: np.ndarray) -> None:
        expected = list(self.input["shape"][1:])
        if list(x.shape[1:]) != expected:
            raise DataError(f"evaluation data has sample shape {list(x.shape[1:])} but model "
                            f"{self.name} expects {expected}; resize or reshape the data")

    def _resize(self, n: int) -> None:
        if n != self.current_batch:
            interp = self.loaded.interpreter
            interp.resize_tensor_input(self.input["index"], [n, *self.input["shape"][1:]])
            interp.allocate_tensors()
            self.output = self.loaded.output_details()[0]
            self.current_batch = n

    def _invoke(self, x: np.ndarray) -> np.ndarray:
        interp = self.loaded.interpreter
        interp.set_tensor(self.input["index"], quantize_input(x, self.input))
        interp.invoke()
        return dequantize_output(interp.get_tensor(self.output["index"]), self.output)

    def run(self, x: np.ndarray) -> np.ndarray:
        self._check(x)
        outs = []
        step = self.batch_size
        for start in range(0, x.shape[0], step):
            chunk = x[start:start + step]
            if self.dynamic:
                self._resize(chunk.shape[0])
                outs.append(self._invoke(chunk))
            else:  # fixed batch: pad the last chunk and drop the padding
                for i in range(0, chunk.shape[0], self.batch_size):
                    part = chunk[i:i + self.batch_size]
                    pad = self.batch_size - part.shape[0]
                    if pad:
                        part = np.concatenate([part, np.repeat(part[-1:], pad, axis=0)])
                    outs.append(self._invoke(part)[:self.batch_size - pad])
        return np.concatenate(outs) if outs else np.zeros((0,))


def evaluate_tflite(model: ModelSource, x: Any, y: Any = None,
                    reference_outputs: np.ndarray | None = None, num_threads: int = 1, *,
                    batch_size: int = DEFAULT_BATCH_SIZE, op_resolver: str = "auto",
                    backend: str = "auto",
                    metric: Callable[[np.ndarray, np.ndarray], float] | None = None,
                    progress: bool = False, isolate: bool = False) -> AccuracyResult:
    """Runs a ``.tflite`` model over an evaluation set and scores it.

    Args:
        model: Path or bytes of a ``.tflite`` model.
        x: Inputs as a numpy array (N, ...); a ``tf.data.Dataset`` or iterable of
            ``(x_batch, y_batch)``; or the path of an image folder
            ``FOLDER/<class>/<images>`` (labels from sorted class names).
        y: Integer or one-hot labels for a numpy ``x``. Defaults to None (no accuracy).
        reference_outputs: The reference model's outputs on ``x`` (e.g.
            ``keras_model.predict(x)``) for agreement and output differences.
        num_threads: Interpreter threads. Defaults to 1.
        batch_size: Samples per invoke for dynamic-batch models. Defaults to 64.
        op_resolver: ``"auto"``, ``"no_xnnpack"`` or ``"reference"``. Defaults to ``"auto"``.
        backend: ``"auto"``, ``"ai_edge_litert"`` or ``"tensorflow"``.
        metric: Optional ``metric(y_true, dequantized_outputs) -> float``.
        progress: tqdm bar over batches. Defaults to False.
        isolate: First run the model once in a child process so a file that
            crashes the native runtime raises ``InvalidTFLiteError`` instead.
            Defaults to False.

    Returns:
        An ``AccuracyResult``.

    Raises:
        InvalidTFLiteError: The model file is invalid.
        DataError: Shapes or counts of x, y and reference_outputs disagree.

    Example:
        >>> acc = evaluate_tflite("int8.tflite", ds.x_test, ds.y_test,
        ...                       reference_outputs=keras_model.predict(ds.x_test))
        >>> print(f"{acc.accuracy:.3f} agree={acc.agreement:.3f}")
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidArgumentError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    options = InterpreterOptions(num_threads=num_threads, op_resolver=op_resolver, backend=backend)
    data = read_tflite(model)
    name = _describe(model)
    if isolate:
        from tflite_opt.runtime.isolation import ensure_runs_safely

        ensure_runs_safely(data, name=name, num_threads=num_threads)
    loaded = make_interpreter(data, options, name=name)
    runner = _Runner(loaded, name, batch_size)

    if isinstance(x, (str, os.PathLike)):
        x, y, _ = load_image_folder(x, tuple(int(d) for d in runner.input["shape"][1:]))
    if isinstance(x, np.ndarray) or (isinstance(x, (list, tuple)) and x and
                                     np.isscalar(np.asarray(x).flat[0])):
        x = np.asarray(x)
        if x.ndim < 1 or x.shape[0] == 0:
            raise DataError("x is empty; pass at least one evaluation sample")
        outputs = _run_array(runner, x, progress)
        labels = None if y is None else _labels(y, x.shape[0])
    else:
        outputs_list, labels_list = [], []
        batches: Iterable = _iter_dataset(x)
        if progress:
            from tqdm import tqdm

            batches = tqdm(batches, desc="evaluate", unit="batch", leave=False)
        for xb, yb in batches:
            if xb.ndim == len(runner.input["shape"]) - 1:  # unbatched dataset element
                xb = xb[None]
                yb = None if yb is None else np.asarray(yb).reshape(1, *np.shape(yb))
            outputs_list.append(runner.run(xb.astype(np.float32, copy=False)
                                           if xb.dtype == np.float64 else xb))
            if yb is not None:
                labels_list.append(_labels(yb, xb.shape[0]))
        if not outputs_list:
            raise DataError("the evaluation dataset yielded no batches")
        outputs = np.concatenate(outputs_list)
        labels = np.concatenate(labels_list) if labels_list else None
        if labels is not None and labels.shape[0] != outputs.shape[0]:
            raise DataError("some dataset batches carry labels and some do not; label all")

    n = outputs.shape[0]
    accuracy = None if labels is None else float(np.mean(_top1(outputs) == labels))
    agreement = max_diff = mean_diff = None
    if reference_outputs is not None:
        ref = np.asarray(reference_outputs, dtype=np.float32)
        if ref.shape[0] != n or ref.reshape(n, -1).shape[1] != outputs.reshape(n, -1).shape[1]:
            raise DataError(f"reference_outputs has shape {list(ref.shape)} but the model gives "
                            f"{list(outputs.shape)}; pass the reference model's predictions on "
                            "the same x")
        diff = np.abs(outputs.reshape(n, -1) - ref.reshape(n, -1))
        agreement = float(np.mean(_top1(outputs) == _top1(ref)))
        max_diff, mean_diff = float(diff.max()), float(diff.mean())
    metric_name = metric_value = None
    if metric is not None:
        if labels is None:
            raise DataError("metric needs labels; pass y (or a dataset of (x, y))")
        metric_name = getattr(metric, "__name__", type(metric).__name__)
        metric_value = float(metric(labels, outputs))
    return AccuracyResult(
        accuracy=accuracy, num_samples=int(n), agreement=agreement, max_abs_diff=max_diff,
        mean_abs_diff=mean_diff, interpreter=loaded.backend, model=name.strip("'"),
        num_threads=num_threads, batch_mode="batched" if runner.dynamic else "per_sample",
        metric_name=metric_name, metric_value=metric_value)


def _run_array(runner: _Runner, x: np.ndarray, progress: bool) -> np.ndarray:
    if not progress or x.shape[0] <= runner.batch_size:
        return runner.run(x)
    from tqdm import tqdm

    step = max(runner.batch_size, 1) * 16
    return np.concatenate([runner.run(x[i:i + step])
                           for i in tqdm(range(0, x.shape[0], step), desc="evaluate",
                                         unit="chunk", leave=False)])
