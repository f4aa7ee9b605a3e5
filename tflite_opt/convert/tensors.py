"""Reading a ``.tflite`` back: input/output tensors, quantization, ops, signatures.

Used for the sidecar JSON, for tests that check each precision's tensor types,
and to detect the Flex (select TF) ops a converted model needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tflite_opt.errors import InvalidTFLiteError


def _interpreter(tflite_bytes: bytes) -> Any:
    from ai_edge_litert.interpreter import Interpreter

    try:
        return Interpreter(model_content=bytes(tflite_bytes))
    except Exception as exc:  # noqa: BLE001
        raise InvalidTFLiteError(f"not a readable TFLite model: {exc}") from exc


def _tensor_dict(d: dict[str, Any]) -> dict[str, Any]:
    params = d.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64)
    zps = np.asarray(params.get("zero_points", []), dtype=np.int64)
    quant = None
    if scales.size:
        quant = {"scale": float(scales[0]) if scales.size == 1 else scales.tolist(),
                 "zero_point": int(zps[0]) if zps.size == 1 else zps.tolist(),
                 "formula": "real = scale * (quantized - zero_point)"}
    return {"name": d["name"], "index": int(d["index"]),
            "shape": [int(s) for s in d["shape"]],
            "shape_signature": [int(s) for s in d.get("shape_signature", d["shape"])],
            "dtype": np.dtype(d["dtype"]).name, "quantization": quant}


def io_details(tflite_bytes: bytes) -> dict[str, list[dict[str, Any]]]:
    """Returns ``{"inputs": [...], "outputs": [...]}`` with name, shape, dtype, scale/zero point.

    Example:
        >>> io_details(result.tflite_bytes)["inputs"][0]["dtype"]
        'int8'
    """
    it = _interpreter(tflite_bytes)
    return {"inputs": [_tensor_dict(d) for d in it.get_input_details()],
            "outputs": [_tensor_dict(d) for d in it.get_output_details()]}


def signatures(tflite_bytes: bytes) -> dict[str, dict[str, list[str]]]:
    """Returns ``{signature_key: {"inputs": [names], "outputs": [names]}}``."""
    it = _interpreter(tflite_bytes)
    return {k: {"inputs": sorted(v.get("inputs", {})), "outputs": sorted(v.get("outputs", {}))}
            for k, v in it.get_signature_list().items()}


def tensor_dtypes(tflite_bytes: bytes) -> dict[str, str]:
    """Maps every tensor name to its dtype name (weights, activations, inputs, outputs)."""
    it = _interpreter(tflite_bytes)
    return {d["name"]: np.dtype(d["dtype"]).name for d in it.get_tensor_details()}


def operator_names(tflite_bytes: bytes) -> list[str]:
    """Returns the model's operator codes, e.g. ``["CONV_2D", "FlexMatrixDeterminant"]``.

    Read from the flatbuffer (not the interpreter), so models with Flex ops that
    this Python runtime cannot run can still be inspected.
    """
    from tflite_opt.runtime.model_file import node_op_names, read_tflite

    return node_op_names(read_tflite(bytes(tflite_bytes)))


def flex_ops(tflite_bytes: bytes) -> list[str]:
    """Names of the TensorFlow (Flex) ops the model needs, without the ``Flex`` prefix."""
    return sorted({n[len("Flex"):] for n in operator_names(tflite_bytes) if n.startswith("Flex")})
