"""GPU-delegate compatibility written from the delegate's documented op and type support.

TensorFlow 2.21's ``tf.lite.experimental.Analyzer(gpu_compatibility=True)`` approves
every model (Flex ops, ``TOPK_V2`` and ``CUMSUM`` included), so it cannot be
trusted. This check follows the LiteRT "GPU delegates" page instead:

* Ops: the documented list (float16/float32): ADD, AVERAGE_POOL_2D, CONCATENATION,
  CONV_2D, DEPTHWISE_CONV_2D (v1-2), EXP, FULLY_CONNECTED, LOGICAL_AND, LOGISTIC,
  LSTM (basic kernel only), MAX_POOL_2D, MAXIMUM, MINIMUM, MUL, PAD, PRELU, RELU,
  RELU6, RESHAPE, RESIZE_BILINEAR (v1-3), SOFTMAX, STRIDED_SLICE, SUB,
  TRANSPOSE_CONV; plus QUANTIZE and DEQUANTIZE, which the documented quantized
  (int8) and float16-weight model support relies on; plus the delegate's
  documented custom ops (``Convolution2DTransposeBias``, ``MaxPoolingWithArgmax2D``,
  ``MaxUnpooling2D``).
* Types: activations float32/float16, or int8/uint8 *with* quantization
  parameters (quantized models run on the GPU after dequantization); int32 only
  for constant operands (shapes, paddings, quantized biases); LOGICAL_AND's bool.
* Anything else (Flex ops, other custom ops, TOPK_V2, CUMSUM, int64 or string
  tensors ...) keeps its node, and every node after it, on the CPU.

Example:
    >>> report = gpu_compatibility("model.tflite")
    >>> report.compatible, report.unsupported_ops
"""

from __future__ import annotations

import dataclasses
from typing import Any

DOCUMENTED_GPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXP",
    "FULLY_CONNECTED", "LOGICAL_AND", "LOGISTIC", "LSTM", "MAX_POOL_2D", "MAXIMUM", "MINIMUM",
    "MUL", "PAD", "PRELU", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR", "SOFTMAX",
    "STRIDED_SLICE", "SUB", "TRANSPOSE_CONV",
    # Documented through quantized-model and float16-model support.
    "QUANTIZE", "DEQUANTIZE",
})
DOCUMENTED_GPU_CUSTOM_OPS = frozenset({
    "Convolution2DTransposeBias", "MaxPoolingWithArgmax2D", "MaxUnpooling2D",
})
# Highest documented op version, where the page names one.
MAX_FLOAT_VERSION = {"DEPTHWISE_CONV_2D": 2, "RESIZE_BILINEAR": 3}
FLOAT_TYPES = frozenset({"float32", "float16"})
QUANTIZED_TYPES = frozenset({"int8", "uint8"})


@dataclasses.dataclass(frozen=True)
class GpuOpVerdict:
    """One node's verdict."""

    node: int
    op: str
    supported: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class GpuCompatibility:
    """Whole-model verdict.

    Attributes:
        compatible: Every node can run on the GPU delegate.
        supported_nodes: Nodes the delegate can take.
        unsupported_nodes: Nodes left on the CPU.
        unsupported_ops: Sorted op names that are not supported, with reasons.
        verdicts: Per-node verdicts.
        source: Where the rules come from.
    """

    compatible: bool
    supported_nodes: int
    unsupported_nodes: int
    unsupported_ops: tuple[tuple[str, str], ...]
    verdicts: tuple[GpuOpVerdict, ...]
    source: str = "LiteRT GPU delegate documentation (ops and types), not the TF analyzer"

    def to_dict(self) -> dict[str, Any]:
        return {"compatible": self.compatible, "supported_nodes": self.supported_nodes,
                "unsupported_nodes": self.unsupported_nodes,
                "unsupported_ops": [{"op": op, "reason": r} for op, r in self.unsupported_ops],
                "verdicts": [v.to_dict() for v in self.verdicts], "source": self.source}


def _op_verdict(node: int, op: dict, tensors: list[dict], quantized_model: bool) -> GpuOpVerdict:
    name = op["op"]
    if op.get("custom_code"):
        code = op["custom_code"]
        if code.startswith("Flex"):
            return GpuOpVerdict(node, name, False, f"TensorFlow (Flex) op {code} runs only on "
                                "the CPU with the Flex delegate")
        if code not in DOCUMENTED_GPU_CUSTOM_OPS:
            return GpuOpVerdict(node, name, False, f"custom op {code} is not a documented GPU "
                                "custom op")
    elif name not in DOCUMENTED_GPU_OPS:
        return GpuOpVerdict(node, name, False, f"{name} is not in the GPU delegate's "
                            "documented op list")
    limit = MAX_FLOAT_VERSION.get(name)
    if limit and not quantized_model and op.get("version", 1) > limit:
        return GpuOpVerdict(node, name, False, f"{name} version {op['version']} is above the "
                            f"documented v1-{limit}")
    for role, indices in (("input", op["inputs"]), ("output", op["outputs"])):
        for t in indices:
            if t < 0:
                continue
            tensor = tensors[t]
            dtype = tensor["dtype"]
            if dtype in FLOAT_TYPES:
                continue
            if dtype in QUANTIZED_TYPES and tensor["quantization"]["scale"]:
                continue
            if dtype == "int32" and role == "input" and tensor["is_constant"]:
                continue
            if dtype == "bool" and name == "LOGICAL_AND":
                continue
            what = "constant" if tensor["is_constant"] else "tensor"
            return GpuOpVerdict(node, name, False, f"{role} {what} {tensor['name']!r} has type "
                                f"{dtype}, which the GPU delegate does not support here")
    return GpuOpVerdict(node, name, True)


def check_gpu_compatibility(ops: list[dict], tensors: list[dict]) -> GpuCompatibility:
    """Applies the documented rules to an op list and tensor table from ``inspect_model``.

    Example:
        >>> check_gpu_compatibility(inspection.nodes, inspection.tensors).compatible
    """
    quantized_model = any(t["dtype"] in QUANTIZED_TYPES and t["quantization"]["scale"]
                          for t in tensors)
    verdicts = tuple(_op_verdict(i, op, tensors, quantized_model) for i, op in enumerate(ops))
    bad: dict[str, str] = {}
    for v in verdicts:
        if not v.supported:
            bad.setdefault(v.op, v.reason)
    n_ok = sum(v.supported for v in verdicts)
    return GpuCompatibility(compatible=not bad, supported_nodes=n_ok,
                            unsupported_nodes=len(verdicts) - n_ok,
                            unsupported_ops=tuple(sorted(bad.items())), verdicts=verdicts)
