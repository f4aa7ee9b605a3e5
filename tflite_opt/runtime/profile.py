"""Per-op latency profile, measured by timing growing prefixes of the graph.

Neither LiteRT 2.3's Python ``Interpreter`` nor ``CompiledModel`` exposes the
runtime's op profiler (``benchmark_model --enable_op_profiling=true`` does, on a
device). So the profile is measured from Python another way: model ``k`` is the
main graph cut after node ``k`` (its outputs made the graph outputs); all prefix
models are timed interleaved, and node ``k``'s time is
``median(prefix k) - median(prefix k-1)``. The result says so in ``method``;
differences smaller than the timing noise can come out slightly negative and
are reported as measured, with the noise level alongside. With XNNPACK on, a
prefix is delegated as a whole, so the per-node figure is what adding the node
costs to the delegated graph, which is what matters for choosing what to cut.

Example:
    >>> prof = profile_ops("model.tflite", num_runs=50)
    >>> prof.by_op_type        # {"CONV_2D": {"us": 12.1, "share": 0.71}, ...}
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any

import numpy as np

from tflite_opt.errors import InvalidArgumentError, InvalidTFLiteError
from tflite_opt.runtime.benchmark import _validate_counts
from tflite_opt.runtime.compare import Candidate, run_interleaved
from tflite_opt.runtime.model_file import ModelSource, _describe, read_tflite

MAX_PROFILED_NODES = 400
METHOD = ("prefix differencing: the graph cut after each node, all prefixes timed interleaved; "
          "node time = median(prefix k) - median(prefix k-1). The LiteRT Python API exposes no "
          "op profiler (use benchmark_model --enable_op_profiling=true on a device)")


@dataclasses.dataclass(frozen=True)
class OpProfile:
    """Time by node and by op type, in microseconds.

    Attributes:
        available: False when the profile could not be measured (``reason`` says why).
        method: How the times were obtained.
        by_node: Per node: node, op, output (tensor name), us, cumulative_us.
        by_op_type: Op type -> {"us": total, "count": nodes, "share": of the sum}.
        total_us: Median latency of the whole graph.
        noise_us: Median interquartile range of the prefix timings.
        reason: Why the profile is missing (when ``available`` is False).
    """

    available: bool
    method: str
    by_node: tuple[dict, ...] = ()
    by_op_type: dict[str, dict] = dataclasses.field(default_factory=dict)
    total_us: float | None = None
    noise_us: float | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["by_node"] = list(self.by_node)
        return out


def _prefix_models(data: bytes) -> tuple[list[bytes], list[dict]]:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    from tflite_opt.runtime.model_file import operator_codes

    code_names = [code.name for code in operator_codes(data)]
    model = schema.ModelT.InitFromPackedBuf(data, 0)
    graph = model.subgraphs[0]
    operators = list(graph.operators or [])
    if len(operators) > MAX_PROFILED_NODES:
        raise InvalidArgumentError(f"the model has {len(operators)} nodes; profile_ops "
                                   f"handles up to {MAX_PROFILED_NODES}")
    model.signatureDefs = None  # signatures name the full graph's outputs
    prefixes, nodes = [], []
    for k, op in enumerate(operators):
        op_name = code_names[op.opcodeIndex]
        outputs = [int(t) for t in op.outputs if int(t) >= 0]
        tensor = graph.tensors[outputs[0]] if outputs else None
        out_name = tensor.name.decode() if tensor is not None and isinstance(tensor.name, bytes) \
            else str(getattr(tensor, "name", ""))
        nodes.append({"node": k, "op": op_name, "output": out_name})
        graph.operators = operators[:k + 1]
        graph.outputs = outputs
        builder = flatbuffers.Builder(len(data) + 1024)
        builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
        prefixes.append(bytes(builder.Output()))
    return prefixes, nodes


def profile_ops(model: ModelSource, num_runs: int = 30, warmup_runs: int = 3,
                num_threads: int = 1, op_resolver: str = "auto",
                progress: bool = False) -> OpProfile:
    """Measures time per node and per op type of a ``.tflite`` model.

    Args:
        model: Path or bytes of the model.
        num_runs: Interleaved rounds over all prefixes. Defaults to 30.
        warmup_runs: Warm-up runs per prefix. Defaults to 3.
        num_threads: Interpreter threads. Defaults to 1.
        op_resolver: ``"auto"`` (XNNPACK), ``"no_xnnpack"`` or ``"reference"``.
        progress: tqdm bar over the rounds.

    Returns:
        An ``OpProfile``; ``available`` is False (with the reason) when the graph
        cannot be cut into runnable prefixes, e.g. control flow or dynamic shapes.

    Raises:
        InvalidTFLiteError: The file is not a valid model.

    Example:
        >>> prof = profile_ops("int8.tflite")
        >>> max(prof.by_op_type, key=lambda op: prof.by_op_type[op]["us"])
        'CONV_2D'
    """
    _validate_counts(num_runs, warmup_runs)
    data = read_tflite(model)
    name = _describe(model).strip("'")
    try:
        prefixes, nodes = _prefix_models(data)
    except (AttributeError, TypeError, ValueError, IndexError) as exc:
        return OpProfile(False, METHOD, reason=f"the graph of {name} could not be cut into "
                         f"prefixes: {type(exc).__name__}: {exc}")
    if not prefixes:
        return OpProfile(False, METHOD, reason=f"{name} has no operators")
    blobs = {f"prefix{k}": blob for k, blob in enumerate(prefixes)}
    candidates = [Candidate(key, key, num_threads, op_resolver) for key in blobs]
    try:
        result = run_interleaved(candidates, num_runs, warmup_runs, progress=progress,
                                 data=blobs)
    except (InvalidTFLiteError, ValueError, RuntimeError) as exc:
        return OpProfile(False, METHOD, reason=f"a prefix of {name} does not run on its own "
                         f"(control flow or shape-dependent ops): {' '.join(str(exc).split())[:200]}")
    medians = [r.stats.median_us for r in result.results]
    noise = float(np.median([r.q3_us - r.q1_us for r in result.results]))
    by_node, previous = [], 0.0
    totals: dict[str, float] = collections.defaultdict(float)
    counts: collections.Counter = collections.Counter()
    for node, median in zip(nodes, medians):
        us = median - previous
        previous = median
        by_node.append({**node, "us": us, "cumulative_us": median})
        totals[node["op"]] += us
        counts[node["op"]] += 1
    positive = sum(max(v, 0.0) for v in totals.values()) or 1.0
    by_type = {op: {"us": us, "count": counts[op], "share": max(us, 0.0) / positive}
               for op, us in sorted(totals.items(), key=lambda kv: -kv[1])}
    return OpProfile(True, METHOD, tuple(by_node), by_type, total_us=medians[-1],
                     noise_us=noise)
