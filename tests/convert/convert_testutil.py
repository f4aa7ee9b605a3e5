"""Helpers shared by the converter tests (a unique module name: no __init__.py here)."""

from __future__ import annotations

import numpy as np


def run_tflite(tflite_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Runs a model one sample at a time, quantizing/dequantizing int input/output."""
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=tflite_bytes)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    results = []
    for sample in x:
        s = sample[None]
        if np.issubdtype(inp["dtype"], np.integer):
            scale, zp = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            s = np.clip(np.round(s / scale + zp), info.min, info.max).astype(inp["dtype"])
        it.set_tensor(inp["index"], s.astype(inp["dtype"]))
        it.invoke()
        y = it.get_tensor(out["index"])
        if np.issubdtype(out["dtype"], np.integer):
            scale, zp = out["quantization"]
            y = (y.astype(np.float32) - zp) * scale
        results.append(y[0])
    return np.stack(results)
