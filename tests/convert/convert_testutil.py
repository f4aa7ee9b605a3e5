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


def with_activation_outliers(model, layer: str, next_layer: str, x, num_units: int = 2,
                             factor: float = 300.0):
    """A copy of ``model`` computing the same function, with a few huge activation units.

    ReLU is positively homogeneous, so scaling some units of ``layer`` by
    ``factor`` and the matching input rows of ``next_layer`` by ``1/factor``
    leaves the float outputs unchanged. Per-tensor int8 activation quantization
    then spends its range on those units and rounds the others to zero: the
    channel-range imbalance that cross-layer equalization exists to fix. The
    scaled units are the most active ones on ``x`` (a dead unit stays zero).
    """
    from tflite_opt._keras import keras

    probe = keras.Model(model.input, model.get_layer(layer).output)
    units = list(np.argsort(probe.predict(x, verbose=0).reshape(len(x), -1).mean(0))[-num_units:])
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    w, b = clone.get_layer(layer).get_weights()
    w[..., units] *= factor
    b[units] *= factor
    clone.get_layer(layer).set_weights([w, b])
    wn, bn = clone.get_layer(next_layer).get_weights()
    wn[units, :] /= factor
    clone.get_layer(next_layer).set_weights([wn, bn])
    return clone
