"""Refusing a ``.tflite`` whose declared tensors need more memory than this process has.

``allocate_tensors`` reserves what the file's shapes declare, so a few hundred bytes
of flatbuffer can ask for gigabytes: one huge tensor, or many tensors each of a
plausible size that are alive at once. Both are refused here, before the interpreter
is built; "never allocate what its header merely claims".

What the arena check counts, and how far it can be trusted: TFLite plans one arena per
subgraph (``ArenaPlanner``). A non-constant tensor (no data in the file) lives from the
first op that touches it to the last one that reads it; graph inputs, graph outputs and
variable tensors live for the whole run. Tensors whose lifetimes do not overlap share
arena bytes, so a subgraph needs at least its *peak of simultaneously live bytes*, each
tensor rounded up to the arena's 64-byte alignment. Graph inputs and variables are
allocated at the shapes the file declares (measured: four declared 256 MiB int8 inputs
took the benchmark to a 3.1 GiB peak), so for them this is exact. An op's outputs are
resized by the op before allocation: a converter stores the shapes the ops compute, so
for its files the declared sizes are the real ones; a file that lies about an output's
shape is judged by what it declares (refused if that is too large, even if the op would
compute less; not refused if the op would compute more, e.g. a RESHAPE/FILL whose shape
comes from a constant tensor). Not counted: constant tensors (read from the file's bytes
in place), string/resource/variant tensors (sized at run time), kernel scratch buffers
(not in the file), in-place ops sharing their input's bytes (counted twice), fragmentation.
Subgraphs keep their arenas once allocated, so the peaks of all subgraphs are summed;
that overcounts only a file with a subgraph that is never run (a control-flow branch or a
second signature), which then needs an explicit, larger limit.

The limit is the memory this process can still use (``limits.usable_memory_bytes``:
physical memory, cgroup limit, ``ulimit``), as for the per-tensor check; it is
overridden by ``max_tensor_bytes``/``max_arena_bytes`` of ``read_tflite`` or, for
the command-line scripts, the ``TFLITE_OPT_MAX_ALLOC_BYTES`` environment variable
(a machine with swap may really hold more).

Example:
    >>> estimate = arena_estimate(data)
    >>> estimate.total_bytes, estimate.per_subgraph
    (256, (256,))
    >>> check_arena_size(data, "model.tflite", None)   # or InvalidTFLiteError
"""

from __future__ import annotations

import dataclasses
import math
import os

from tflite_opt.errors import InvalidArgumentError, InvalidTFLiteError
from tflite_opt.limits import format_bytes, usable_memory_bytes
from tflite_opt.runtime.model_semantics import TENSOR_TYPES

LIMIT_ENV_VAR = "TFLITE_OPT_MAX_ALLOC_BYTES"
# TFLite's kDefaultTensorAlignment: every arena allocation starts on a 64-byte boundary.
ARENA_ALIGNMENT = 64
_NAMED_IN_ERROR = 5


def allocation_limit(explicit: int | None = None) -> int:
    """The bytes a file may make this process allocate: ``explicit``, the variable, or memory.

    Raises:
        InvalidArgumentError: ``TFLITE_OPT_MAX_ALLOC_BYTES`` is set but not a positive integer.

    Example:
        >>> allocation_limit(2**30)
        1073741824
    """
    if explicit is not None:
        return explicit
    text = os.environ.get(LIMIT_ENV_VAR, "").strip()
    if not text:
        return usable_memory_bytes()
    if not text.isdigit() or int(text) <= 0:
        raise InvalidArgumentError(f"{LIMIT_ENV_VAR}={text!r} must be a positive number of "
                                   "bytes (e.g. 17179869184 for 16 GiB), or unset to use the "
                                   "memory this process can allocate")
    return int(text)


@dataclasses.dataclass(frozen=True)
class LiveTensor:
    """One non-constant tensor alive at its subgraph's peak.

    Attributes:
        subgraph: Subgraph index.
        index: Tensor index in the subgraph.
        name: The tensor's name in the file (at most 80 characters).
        shape: Its declared shape.
        dtype: Its element type (``"int8"``).
        nbytes: Arena bytes it takes, rounded up to ``ARENA_ALIGNMENT``.
    """

    subgraph: int
    index: int
    name: str
    shape: tuple[int, ...]
    dtype: str
    nbytes: int

    def describe(self) -> str:
        """``"tensor 3 'x' of subgraph 0 [1, 4096, 4096] int8 (16.0 MiB)"``."""
        dims = list(self.shape[:8])
        more = "..." if len(self.shape) > 8 else ""
        return (f"tensor {self.index} {self.name!r} of subgraph {self.subgraph} {dims}{more} "
                f"{self.dtype} ({format_bytes(self.nbytes)})")


@dataclasses.dataclass(frozen=True)
class ArenaEstimate:
    """What the interpreter's arenas need at least, from the declared shapes.

    Attributes:
        per_subgraph: Each subgraph's peak of simultaneously live non-constant bytes.
        peak_tensors: The tensors alive at each subgraph's peak, largest first.
    """

    per_subgraph: tuple[int, ...]
    peak_tensors: tuple[LiveTensor, ...]

    @property
    def total_bytes(self) -> int:
        """The subgraphs' peaks summed: each allocated subgraph keeps its arena."""
        return sum(self.per_subgraph)


def _aligned(nbytes: int) -> int:
    return -(-nbytes // ARENA_ALIGNMENT) * ARENA_ALIGNMENT


def _constant_buffers(model) -> list[bool]:
    """Per buffer: does it hold data in the file (then its tensors are constants)?"""
    flags = []
    for b in range(model.BuffersLength()):
        buf = model.Buffers(b)
        flags.append((buf.DataLength() if buf.Offset() <= 1 else buf.Size()) > 0)
    return flags


def _declared_bytes(tensor) -> tuple[list[int], int]:
    elem = TENSOR_TYPES[tensor.Type()][1]
    dims = [int(d) for d in tensor.ShapeAsNumpy()] if tensor.ShapeLength() else []
    return dims, math.ceil(math.prod(dims) * elem)  # Python ints: no int32/int64 overflow


def _subgraph_peak(sg, s: int, constant: list[bool]) -> tuple[int, list[LiveTensor]]:
    """Peak live bytes of one subgraph, by the arena planner's lifetime rule."""
    n_ops = sg.OperatorsLength()
    whole_run = {sg.Inputs(i) for i in range(sg.InputsLength())}
    whole_run |= {sg.Outputs(i) for i in range(sg.OutputsLength())}
    whole_run |= {t for t in range(sg.TensorsLength()) if sg.Tensors(t).IsVariable()}
    first: dict[int, int] = {t: -1 for t in whole_run}   # step -1: before the first op
    last: dict[int, int] = {t: n_ops for t in whole_run}
    for o in range(n_ops):
        op = sg.Operators(o)
        for length, get in ((op.InputsLength(), op.Inputs), (op.OutputsLength(), op.Outputs),
                            (op.IntermediatesLength(), op.Intermediates)):
            for i in range(length):
                t = get(i)
                if t < 0:  # an omitted optional input
                    continue
                first.setdefault(t, o)
                if t not in whole_run:
                    last[t] = o
    sizes: dict[int, int] = {}
    for t in first:
        tensor = sg.Tensors(t)
        if tensor.Buffer() < len(constant) and constant[tensor.Buffer()]:
            continue
        sizes[t] = _aligned(_declared_bytes(tensor)[1])
    # Live bytes per step by a difference array over steps -1 .. n_ops (shifted by one).
    delta = [0] * (n_ops + 3)
    for t, nbytes in sizes.items():
        delta[first[t] + 1] += nbytes
        delta[last[t] + 2] -= nbytes
    live, peak, peak_step = 0, 0, -1
    for step in range(n_ops + 2):
        live += delta[step]
        if live > peak:
            peak, peak_step = live, step - 1
    alive = []
    for t, nbytes in sizes.items():
        if nbytes and first[t] <= peak_step <= last[t]:
            tensor = sg.Tensors(t)
            dims, _ = _declared_bytes(tensor)
            name = tensor.Name().decode("utf-8", "replace")[:80] if tensor.Name() else ""
            alive.append(LiveTensor(s, t, name, tuple(dims), TENSOR_TYPES[tensor.Type()][0],
                                    nbytes))
    return peak, sorted(alive, key=lambda x: -x.nbytes)


def arena_estimate(data: bytes) -> ArenaEstimate:
    """The arenas' least size for a model already checked by ``verify_tflite``'s semantics.

    Example:
        >>> arena_estimate(data).total_bytes
        256
    """
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    constant = _constant_buffers(model)
    peaks, tensors = [], []
    for s in range(model.SubgraphsLength()):
        peak, alive = _subgraph_peak(model.Subgraphs(s), s, constant)
        peaks.append(peak)
        tensors.extend(alive)
    return ArenaEstimate(tuple(peaks), tuple(sorted(tensors, key=lambda x: -x.nbytes)))


def check_tensor_sizes(data: bytes, name: str, max_tensor_bytes: int | None) -> None:
    """Raises InvalidTFLiteError if one tensor declares more bytes than can be allocated.

    The interpreter allocates every tensor its shape declares (a 344-byte file can ask
    for 6 GiB), so a hostile or corrupt shape must be refused before it is built.

    Example:
        >>> check_tensor_sizes(data, "model.tflite", None)
    """
    from ai_edge_litert import schema_py_generated as schema

    limit = allocation_limit(max_tensor_bytes)
    model = schema.Model.GetRootAs(data, 0)
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        for t in range(sg.TensorsLength()):
            tensor = sg.Tensors(t)
            if not TENSOR_TYPES[tensor.Type()][1] or not tensor.ShapeLength():
                continue
            dims, declared = _declared_bytes(tensor)
            if declared > limit:
                tname = tensor.Name().decode("utf-8", "replace")[:80] if tensor.Name() else ""
                raise InvalidTFLiteError(
                    f"model {name} is not a valid TFLite model for this process: tensor {t} "
                    f"{tname!r} of subgraph {s} declares shape "
                    f"{dims[:8]}{'...' if len(dims) > 8 else ''} "
                    f"{TENSOR_TYPES[tensor.Type()][0]}: {format_bytes(declared)}, more than the "
                    f"{format_bytes(limit)} this process can allocate (machine memory, cgroup and "
                    "ulimit); the file is corrupt or hostile, or needs a bigger machine "
                    f"(override: read_tflite(max_tensor_bytes=N) or {LIMIT_ENV_VAR}=N)")


def check_arena_size(data: bytes, name: str, max_arena_bytes: int | None) -> ArenaEstimate:
    """Raises InvalidTFLiteError if the tensors alive together need more than can be allocated.

    Returns:
        The estimate, when it fits.

    Example:
        >>> check_arena_size(data, "model.tflite", None).total_bytes
        256
    """
    limit = allocation_limit(max_arena_bytes)
    estimate = arena_estimate(data)
    if estimate.total_bytes <= limit:
        return estimate
    named = estimate.peak_tensors[:_NAMED_IN_ERROR]
    more = len(estimate.peak_tensors) - len(named)
    listing = "; ".join(t.describe() for t in named) + (f"; and {more} more" if more else "")
    subgraphs = ", ".join(f"{format_bytes(p)}" for p in estimate.per_subgraph[:8])
    raise InvalidTFLiteError(
        f"model {name} is not a valid TFLite model for this process: its "
        f"{len(estimate.peak_tensors)} non-constant tensors alive at once need "
        f"{format_bytes(estimate.total_bytes)} of arena (per subgraph: {subgraphs}), more than "
        f"the {format_bytes(limit)} this process can allocate (machine memory, cgroup and "
        f"ulimit): {listing}. The file is corrupt or hostile, or needs a bigger machine "
        f"(override: read_tflite(max_arena_bytes=N) or {LIMIT_ENV_VAR}=N)")
