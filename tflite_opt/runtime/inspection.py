"""Inspection of a ``.tflite`` file from its flatbuffer, without running it.

Reports the ops and their counts, every tensor's dtype, shape, size and
quantization, the model's inputs and outputs, the signatures, per-constant
weight sparsity and unique-value counts (so pruning and clustering can be
verified on the file itself), GPU-delegate compatibility and a size breakdown
by layer.

Sparsity is the fraction of stored values equal to zero in real terms: ``0.0``
for float tensors, the zero point for quantized ones. ``unique_values`` counts
distinct stored values over the whole tensor; for per-channel quantized tensors
``max_unique_per_channel`` is what reveals clustering, since each channel has
its own scale.

Example:
    >>> info = inspect_model("model.tflite")
    >>> info.op_counts, info.weights[0]["sparsity"], info.gpu.compatible
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import numpy as np

from tflite_opt.runtime.gpu_compat import GpuCompatibility, check_gpu_compatibility
from tflite_opt.runtime.model_file import (TENSOR_TYPES, ModelSource, _describe, operator_codes,
                                           read_tflite)

_NUMPY_TYPES = {
    "float32": np.float32, "float16": np.float16, "int32": np.int32, "uint8": np.uint8,
    "int64": np.int64, "bool": np.bool_, "int16": np.int16, "int8": np.int8,
    "float64": np.float64, "uint64": np.uint64, "uint32": np.uint32, "uint16": np.uint16,
}
# Op name -> input index of its main weight tensor (bias is the next one).
_WEIGHT_INPUT = {"CONV_2D": 1, "DEPTHWISE_CONV_2D": 1, "FULLY_CONNECTED": 1,
                 "TRANSPOSE_CONV": 1, "CONV_3D": 1, "BATCH_MATMUL": 1, "EMBEDDING_LOOKUP": 1}
_PASS_THROUGH = ("DEQUANTIZE", "DENSIFY")
_BIAS_INPUT = {"CONV_2D": 2, "DEPTHWISE_CONV_2D": 2, "FULLY_CONNECTED": 2, "TRANSPOSE_CONV": 3,
               "CONV_3D": 2}


@dataclasses.dataclass(frozen=True)
class Inspection:
    """Everything ``inspect_model`` read from the file. All sizes in bytes.

    Attributes:
        model: File name.
        size_bytes: File size.
        op_counts: Op name -> number of nodes (main subgraph and others summed).
        nodes: Per node: op, custom_code, version, inputs, outputs, subgraph.
        tensors: Per tensor: index, name, dtype, shape, shape_signature, size_bytes,
            is_constant, quantization {scale, zero_point, axis}.
        inputs, outputs: The main subgraph's inputs/outputs with quantization.
        signatures: Signature key -> {"inputs": [...], "outputs": [...]}.
        weights: Per constant tensor: name, role, dtype, shape, size_bytes,
            num_elements, zeros, sparsity, unique_values, max_unique_per_channel.
        layer_sizes: Layer name -> bytes of constant data it holds.
        graph_bytes: Bytes of the file that are not constant data.
        gpu: GPU-delegate compatibility.
        dtype_counts: Tensor dtype -> number of tensors.
    """

    model: str
    size_bytes: int
    op_counts: dict[str, int]
    nodes: list[dict]
    tensors: list[dict]
    inputs: list[dict]
    outputs: list[dict]
    signatures: dict[str, dict]
    weights: list[dict]
    layer_sizes: dict[str, int]
    graph_bytes: int
    gpu: GpuCompatibility
    dtype_counts: dict[str, int]
    num_subgraphs: int = 1
    description: str = ""
    metadata: dict | None = None  # TFLite metadata (convert.metadata.read_metadata), if any

    def weight(self, name_part: str, role: str | None = "weight") -> dict:
        """The first constant whose name contains ``name_part`` and has ``role``.

        ``role`` is ``"weight"`` (a kernel), ``"bias"``, ``"constant"`` or None for any;
        the converter names a layer's kernel and its bias alike, hence the filter.

        Example:
            >>> info.weight("dense1")["sparsity"]
        """
        for w in self.weights:
            if name_part in w["name"] and (role is None or w["role"] == role):
                return w
        raise KeyError(f"no constant tensor name contains {name_part!r}; names: "
                       f"{[w['name'] for w in self.weights]}")

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["gpu"] = self.gpu.to_dict()
        return out


def _quant(tensor: Any) -> dict[str, Any]:
    q = tensor.Quantization()
    if q is None or q.ScaleLength() == 0:
        return {"scale": [], "zero_point": [], "axis": None}
    zero_points = q.ZeroPointAsNumpy().tolist() if q.ZeroPointLength() else \
        [0] * q.ScaleLength()
    return {"scale": q.ScaleAsNumpy().astype(float).tolist(), "zero_point": zero_points,
            "axis": int(q.QuantizedDimension()) if q.ScaleLength() > 1 else None}


def layer_of(tensor_name: str) -> str:
    """Keras layer name from a converter tensor name (``model/conv1/Conv2D`` -> ``conv1``).

    Example:
        >>> layer_of("digits_cnn/relu2/Relu;digits_cnn/conv2/Conv2D")
        'conv2'
    """
    # Fused names list every op folded in; the last one is the producing layer's.
    part = tensor_name.split(";")[-1]
    pieces = [p for p in part.split("/") if p]
    if len(pieces) >= 3:
        return pieces[1]
    return pieces[0].split(":")[0] if pieces else "(unnamed)"


def _weight_stats(values: np.ndarray, quant: dict, dtype: str) -> dict[str, Any]:
    n = int(values.size)
    if quant["scale"] and np.issubdtype(values.dtype, np.integer):
        zp = np.asarray(quant["zero_point"], dtype=np.int64)
        if zp.size > 1 and quant["axis"] is not None:
            shape = [1] * values.ndim
            shape[quant["axis"]] = zp.size
            zp = zp.reshape(shape)
        zeros = int(np.count_nonzero(values.astype(np.int64) == zp))
    else:
        zeros = int(np.count_nonzero(values == 0))
    unique = int(np.unique(values).size) if n else 0
    per_channel = None
    if quant["axis"] is not None and values.ndim:
        moved = np.moveaxis(values, quant["axis"], 0).reshape(values.shape[quant["axis"]], -1)
        per_channel = int(max(np.unique(row).size for row in moved)) if moved.size else 0
    return {"num_elements": n, "zeros": zeros, "sparsity": zeros / n if n else 0.0,
            "unique_values": unique, "max_unique_per_channel": per_channel}


def _sparse_stats(raw: np.ndarray, np_type: Any, shape: list[int]) -> dict[str, Any]:
    """Sparsity of a tensor in TFLite's sparse format from its stored values.

    The buffer holds only the stored (block) values; every dense element not
    stored is zero, and stored zeros (inside blocks) count as zeros too.
    """
    stored = np.frombuffer(raw.tobytes(), np_type)
    n = int(np.prod(shape or [1]))
    zeros = n - int(stored.size) + int(np.count_nonzero(stored == 0))
    unique = int(np.unique(stored).size) + (0 if n == stored.size or np.any(stored == 0) else 1)
    return {"num_elements": n, "zeros": zeros, "sparsity": zeros / n if n else 0.0,
            "unique_values": unique, "max_unique_per_channel": None,
            "note": f"TFLite sparse format: {stored.size} of {n} values stored"}


def inspect_model(model: ModelSource) -> Inspection:
    """Reads a ``.tflite`` file's structure, weights and GPU compatibility.

    Args:
        model: Path or bytes of a ``.tflite`` model (validated first).

    Returns:
        An ``Inspection``.

    Raises:
        InvalidTFLiteError: The file is missing, empty, corrupt or not TFLite.

    Example:
        >>> info = inspect_model("pruned_int8.tflite")
        >>> info.weight("dense1").get("sparsity")
        0.5
    """
    from ai_edge_litert import schema_py_generated as schema

    data = read_tflite(model)
    name = _describe(model).strip("'")
    root = schema.Model.GetRootAs(data, 0)
    codes = operator_codes(data)

    buffers = []
    for b in range(root.BuffersLength()):
        buf = root.Buffers(b)
        if buf.Offset() > 1:  # data stored after the flatbuffer
            buffers.append(np.frombuffer(data, np.uint8, buf.Size(), buf.Offset()))
        else:
            buffers.append(buf.DataAsNumpy() if buf.DataLength() else np.zeros(0, np.uint8))

    nodes, tensors_out, weights = [], [], []
    op_counts: collections.Counter = collections.Counter()
    layer_sizes: collections.Counter = collections.Counter()
    counted_buffers: set[int] = set()
    main_tensors: list[dict] = []
    for s in range(root.SubgraphsLength()):
        sg = root.Subgraphs(s)
        tensors = []
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            dtype = TENSOR_TYPES[tensor.Type()][0]
            shape = tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else []
            signature = tensor.ShapeSignatureAsNumpy().tolist() if tensor.ShapeSignatureLength() \
                else shape
            raw = buffers[tensor.Buffer()]
            constant = raw.size > 0
            elem = TENSOR_TYPES[tensor.Type()][1]
            size = int(raw.size) if constant else int(np.prod(shape) * elem) if shape else int(elem)
            tname = tensor.Name().decode("utf-8", "replace") if tensor.Name() else f"tensor_{t}"
            tensors.append({"index": t, "subgraph": s, "name": tname, "dtype": dtype,
                            "shape": shape, "shape_signature": signature, "size_bytes": size,
                            "is_constant": constant, "buffer": tensor.Buffer(),
                            "sparse_format": tensor.Sparsity() is not None,
                            "quantization": _quant(tensor)})
        consumers: dict[int, list[tuple[str, int, int]]] = collections.defaultdict(list)
        for o in range(sg.OperatorsLength()):
            op = sg.Operators(o)
            code = codes[op.OpcodeIndex()]
            op_name, custom, version, display = code.builtin, code.custom, code.version, code.name
            inputs = op.InputsAsNumpy().tolist() if op.InputsLength() else []
            outputs = op.OutputsAsNumpy().tolist() if op.OutputsLength() else []
            nodes.append({"subgraph": s, "op": display, "builtin": op_name, "custom_code": custom,
                          "version": version, "inputs": inputs, "outputs": outputs})
            op_counts[display] += 1
            for pos, t in enumerate(inputs):
                if t >= 0:
                    consumers[t].append((op_name, pos, o))
        for t, info in enumerate(tensors):
            if not info["is_constant"]:
                continue
            uses = consumers.get(t, [])
            role = "constant"
            for op_name, pos, o in uses:
                if op_name in _PASS_THROUGH and pos == 0:
                    # float16 / sparse weights reach their layer through DEQUANTIZE or
                    # DENSIFY: the role is the one of that op's output.
                    op = sg.Operators(o)
                    out = op.Outputs(0) if op.OutputsLength() else -1
                    uses_of_out = consumers.get(out, [])
                    op_name, pos = uses_of_out[0][:2] if uses_of_out else (op_name, pos)
                if _WEIGHT_INPUT.get(op_name) == pos:
                    role = "weight"
                elif _BIAS_INPUT.get(op_name) == pos:
                    role = "bias"
            owner = info["name"] if "/" in info["name"] else None
            if owner is None and uses:  # unnamed constants belong to their consumer's layer
                consumer = sg.Operators(uses[0][2])
                out = consumer.Outputs(0) if consumer.OutputsLength() else -1
                owner = tensors[out]["name"] if out >= 0 else None
            layer = layer_of(owner) if owner else "(unattributed)"
            if info["buffer"] not in counted_buffers:
                counted_buffers.add(info["buffer"])
                layer_sizes[layer] += info["size_bytes"]
            entry = {"name": info["name"], "subgraph": s, "tensor": t, "layer": layer,
                     "role": role, "dtype": info["dtype"], "shape": info["shape"],
                     "size_bytes": info["size_bytes"], "quantization": info["quantization"],
                     "sparse_format": info["sparse_format"]}
            np_type = _NUMPY_TYPES.get(info["dtype"])
            raw = buffers[info["buffer"]]
            if np_type is not None and not info["sparse_format"] and \
                    raw.size == int(np.prod(info["shape"] or [1])) * np.dtype(np_type).itemsize:
                values = np.frombuffer(raw.tobytes(), np_type).reshape(info["shape"] or [1])
                entry.update(_weight_stats(values, info["quantization"], info["dtype"]))
            elif np_type is not None and info["sparse_format"]:
                entry.update(_sparse_stats(raw, np_type, info["shape"]))
            else:
                entry.update({"num_elements": None, "zeros": None, "sparsity": None,
                              "unique_values": None, "max_unique_per_channel": None,
                              "note": "packed format (e.g. int4) not decoded"})
            weights.append(entry)
        tensors_out.extend(tensors)
        if s == 0:
            main_tensors = tensors

    sg0 = root.Subgraphs(0)

    def io(indices: list[int]) -> list[dict]:
        return [{k: main_tensors[i][k] for k in ("index", "name", "dtype", "shape",
                                                 "shape_signature", "quantization")}
                for i in indices]

    signatures = {}
    for k in range(root.SignatureDefsLength()):
        sig = root.SignatureDefs(k)
        key = sig.SignatureKey().decode("utf-8", "replace") if sig.SignatureKey() else f"sig_{k}"
        signatures[key] = {
            "subgraph": sig.SubgraphIndex(),
            "inputs": [sig.Inputs(i).Name().decode("utf-8", "replace")
                       for i in range(sig.InputsLength())],
            "outputs": [sig.Outputs(i).Name().decode("utf-8", "replace")
                        for i in range(sig.OutputsLength())]}
    main_nodes = [n for n in nodes if n["subgraph"] == 0]
    gpu = check_gpu_compatibility(main_nodes, main_tensors)
    constant_bytes = sum(layer_sizes.values())
    return Inspection(
        model=name, size_bytes=len(data), op_counts=dict(op_counts.most_common()),
        nodes=nodes, tensors=tensors_out,
        inputs=io(sg0.InputsAsNumpy().tolist() if sg0.InputsLength() else []),
        outputs=io(sg0.OutputsAsNumpy().tolist() if sg0.OutputsLength() else []),
        signatures=signatures, weights=weights,
        layer_sizes=dict(layer_sizes.most_common()), graph_bytes=len(data) - constant_bytes,
        gpu=gpu, dtype_counts=dict(collections.Counter(t["dtype"] for t in tensors_out)),
        num_subgraphs=root.SubgraphsLength(),
        description=root.Description().decode("utf-8", "replace") if root.Description() else "",
        metadata=_metadata(data))


def _metadata(data: bytes) -> dict | None:
    """The file's TFLite metadata; a note instead when the schema package is missing."""
    from tflite_opt.convert.metadata import has_metadata, read_metadata
    from tflite_opt.errors import InvalidArgumentError

    if not has_metadata(data):
        return None
    try:
        return read_metadata(data)
    except InvalidArgumentError as exc:  # mediapipe (the schema code) not installed
        return {"unreadable": str(exc)}
