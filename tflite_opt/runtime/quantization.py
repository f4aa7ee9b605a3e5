"""Input quantization and output dequantization with a tensor's scale and zero point.

A fully integer model takes int8/uint8 inputs: ``q = round(x / scale) + zero_point``
clipped to the dtype's range, and gives ``real = (q - zero_point) * scale`` back.
Tensors without quantization (scale 0) pass through with a dtype cast only.

Example:
    >>> q = quantize_input(x, interpreter.get_input_details()[0])
    >>> y = dequantize_output(raw, interpreter.get_output_details()[0])
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from tflite_opt.errors import DataError


def _scale_zero_point(detail: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, int]:
    """Returns (scales, zero points, axis); scales empty when not quantized."""
    qp = detail.get("quantization_parameters") or {}
    scales = np.asarray(qp.get("scales", []), dtype=np.float64)
    zps = np.asarray(qp.get("zero_points", []), dtype=np.float64)
    axis = int(qp.get("quantized_dimension", 0))
    if scales.size == 0:
        scale, zp = detail.get("quantization", (0.0, 0))
        if scale:
            scales, zps = np.asarray([scale], np.float64), np.asarray([zp], np.float64)
    if scales.size and not np.any(scales):
        scales = np.zeros(0)
    return scales, zps, axis


def _broadcast(values: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    if values.size <= 1:
        return values.reshape(()) if values.size else values
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


def is_quantized(detail: Mapping[str, Any]) -> bool:
    """True when the tensor carries a non-zero quantization scale."""
    return _scale_zero_point(detail)[0].size > 0


def quantize_input(x: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """Converts real-valued ``x`` to the dtype the input tensor expects.

    Args:
        x: Real values (float) or values already in the tensor's integer dtype.
        detail: One entry of ``interpreter.get_input_details()``.

    Returns:
        An array of ``detail["dtype"]``.

    Raises:
        DataError: ``x`` holds NaN or infinity for a quantized input.

    Example:
        >>> quantize_input(np.array([[0.5]], np.float32), {"dtype": np.int8,
        ...     "quantization": (1 / 255, -128), "quantization_parameters": {}})
        array([[0]], dtype=int8)
    """
    dtype = np.dtype(detail["dtype"])
    x = np.asarray(x)
    scales, zps, axis = _scale_zero_point(detail)
    if not scales.size or np.issubdtype(x.dtype, np.integer) and x.dtype == dtype:
        return x.astype(dtype, copy=False)
    if not np.issubdtype(dtype, np.integer):
        return x.astype(dtype, copy=False)
    xf = x.astype(np.float64)
    if not np.all(np.isfinite(xf)):
        raise DataError(f"input {detail.get('name')!r} holds NaN or infinite values, which "
                        "cannot be quantized; clean the evaluation data")
    s = _broadcast(scales, xf.ndim, axis)
    z = _broadcast(zps, xf.ndim, axis)
    info = np.iinfo(dtype)
    q = np.round(xf / s) + z
    return np.clip(q, info.min, info.max).astype(dtype)


def dequantize_output(q: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """Converts a raw output tensor to float32 real values.

    Example:
        >>> dequantize_output(np.array([-128, 127], np.int8), {"dtype": np.int8,
        ...     "quantization": (1 / 256, -128), "quantization_parameters": {}})
        array([0.       , 0.99609375], dtype=float32)
    """
    q = np.asarray(q)
    scales, zps, axis = _scale_zero_point(detail)
    if not scales.size or not np.issubdtype(q.dtype, np.integer):
        return q.astype(np.float32, copy=False) if q.dtype != np.bool_ else q
    s = _broadcast(scales, q.ndim, axis)
    z = _broadcast(zps, q.ndim, axis)
    return ((q.astype(np.float64) - z) * s).astype(np.float32)


def random_input(detail: Mapping[str, Any], rng: np.random.Generator,
                 shape: tuple[int, ...] | None = None) -> np.ndarray:
    """A random input of the right dtype and range (uniform [0, 1) for real values).

    Quantized inputs get the quantization of uniform [0, 1) values, clipped to the
    dtype; integer non-quantized inputs get small non-negative integers (valid
    indices for embeddings and gathers); booleans get coin flips.

    Example:
        >>> random_input(interpreter.get_input_details()[0], np.random.default_rng(0))
    """
    dtype = np.dtype(detail["dtype"])
    shape = tuple(int(d) for d in (shape if shape is not None else detail["shape"]))
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.floating):
        return rng.random(shape, dtype=np.float32).astype(dtype)
    if is_quantized(detail):
        return quantize_input(rng.random(shape), detail)
    if np.issubdtype(dtype, np.integer):
        return rng.integers(0, 2, size=shape).astype(dtype)
    raise DataError(f"input {detail.get('name')!r} has dtype {dtype}, for which no random "
                    "input can be made; pass inputs=... explicitly")
