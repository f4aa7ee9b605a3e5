"""The compute a ``.tflite`` file asks for: weights and multiply-accumulates, read from the file.

Latency depends on the kernels, the CPU and the threads; MACs and weight counts do not, so
they say whether an optimization made the model *smaller in work* (channel pruning) or only
smaller on disk (zeros a kernel still multiplies). Counted from the graph: CONV_2D,
DEPTHWISE_CONV_2D, FULLY_CONNECTED, TRANSPOSE_CONV and BATCH_MATMUL; a sparse-encoded weight
(DENSIFY) counts at its dense shape, as XNNPACK and the builtin kernels run it dense.

Example:
    >>> cost = model_cost("model_int8.tflite")
    >>> cost.macs, cost.parameters
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tflite_opt.runtime.inspection import inspect_model
from tflite_opt.runtime.model_file import ModelSource


@dataclasses.dataclass(frozen=True)
class ModelCost:
    """Work of one inference of the main subgraph (batch 1 as stored in the file).

    Attributes:
        macs: Multiply-accumulates of the conv, depthwise, fully connected and matmul ops.
        parameters: Elements of the constant tensors (weights, biases, other constants).
        macs_by_op: Op name -> its MACs.
    """

    macs: int
    parameters: int
    macs_by_op: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _elements(shape: list[int]) -> int:
    return int(np.prod([max(1, int(d)) for d in shape])) if shape else 1


def model_cost(model: ModelSource) -> ModelCost:
    """MACs and parameter count of a ``.tflite`` file (path or bytes).

    Example:
        >>> model_cost("thin_int8.tflite").macs < model_cost("dense_int8.tflite").macs
        True
    """
    info = inspect_model(model)
    tensors = {(t["subgraph"], t["index"]): t for t in info.tensors}
    by_op: dict[str, int] = {}
    for node in info.nodes:
        if node["subgraph"] != 0 or len(node["inputs"]) < 2 or not node["outputs"]:
            continue
        op = node["op"]
        out = tensors[(0, node["outputs"][0])]["shape"]
        if node["inputs"][1] < 0:
            continue
        weight = tensors[(0, node["inputs"][1])]["shape"]  # the weights are input 1 of each
        if op == "CONV_2D":  # weight (out, kh, kw, in / groups)
            macs = _elements(out) * _elements(weight[1:])
        elif op == "DEPTHWISE_CONV_2D":  # weight (1, kh, kw, channels)
            macs = _elements(out) * _elements(weight[1:3])
        elif op == "FULLY_CONNECTED":  # weight (out, in)
            macs = _elements(out) * int(weight[-1])
        elif op == "TRANSPOSE_CONV":  # inputs: output shape, weight (out, kh, kw, in), input
            source = tensors[(0, node["inputs"][2])]["shape"]
            macs = _elements(source) * _elements(weight[:3])
        elif op == "BATCH_MATMUL":
            macs = _elements(out) * int(weight[-2] if len(weight) >= 2 else 1)
        else:
            continue
        by_op[op] = by_op.get(op, 0) + int(macs)
    parameters = sum(int(w["num_elements"] or 0) for w in info.weights if w["subgraph"] == 0)
    return ModelCost(macs=sum(by_op.values()), parameters=parameters, macs_by_op=by_op)
