"""Delegates: a registry of loaders, each tried in turn with an honest per-delegate outcome.

Every requested delegate ends in one ``DelegateResult``:

* ``"used"``: loaded and applied to the graph;
* ``"not_available"``: cannot exist on this host (NNAPI off Android, a GPU or
  Hexagon delegate library that is not installed: ``load_delegate`` raises
  ``OSError``), with the reason;
* ``"failed"``: loaded but creating or applying it raised, with the error.

Nothing here crashes the caller: a delegate that cannot be used is reported and
the model runs on the CPU without it.

XNNPACK is special: in the Python packages it is not a loadable library but the
default delegate the ``"auto"`` op resolver applies, so asking for it selects that
resolver (and ``"no_xnnpack"`` turns it off).

Example:
    >>> specs = [DelegateSpec("gpu"), DelegateSpec("external", library="/opt/libfoo.so")]
    >>> objects, results = resolve_delegates(specs)
    >>> [(r.name, r.status) for r in results]
    [('gpu', 'not_available'), ('external', 'not_available')]
"""

from __future__ import annotations

import ctypes
import dataclasses
import platform
import sys
from typing import Any, Callable, Mapping, Sequence

from tflite_opt.errors import InvalidArgumentError

USED = "used"
NOT_AVAILABLE = "not_available"
FAILED = "failed"

# Library names the GPU and Hexagon delegates ship under (TFLite's Android/Linux builds).
GPU_LIBRARIES = ("libtensorflowlite_gpu_delegate.so", "libtensorflowlite_gpu_gl.so",
                 "libLiteRtGpuAccelerator.so")
HEXAGON_LIBRARIES = ("libhexagon_delegate.so", "libhexagon_interface.so")


@dataclasses.dataclass(frozen=True)
class DelegateSpec:
    """One delegate to try.

    Args:
        name: A key of ``DELEGATES`` (``"xnnpack"``, ``"gpu"``, ``"nnapi"``,
            ``"hexagon"``, ``"external"``).
        library: Shared library path; required for ``"external"``, optional
            override for ``"gpu"`` and ``"hexagon"``.
        options: String options passed to ``load_delegate``. Defaults to none.

    Example:
        >>> DelegateSpec("external", library="/data/local/tmp/libdelegate.so",
        ...              options={"backend": "htp"})
    """

    name: str
    library: str | None = None
    options: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.name not in DELEGATES:
            raise InvalidArgumentError(f"delegate {self.name!r} is not one of "
                                       f"{sorted(DELEGATES)}; use 'external' with "
                                       "library=PATH for any other delegate library")
        if self.name == "external" and not self.library:
            raise InvalidArgumentError("delegate 'external' needs library=PATH of the "
                                       "delegate's shared library")

    @classmethod
    def parse(cls, text: str) -> "DelegateSpec":
        """``"gpu"``, ``"external:/path/lib.so"`` or ``"/path/lib.so"`` -> spec.

        Example:
            >>> DelegateSpec.parse("external:/tmp/libx.so").library
            '/tmp/libx.so'
        """
        if not isinstance(text, str) or not text:
            raise InvalidArgumentError(f"delegate must be a non-empty name, got {text!r}")
        name, _, lib = text.partition(":")
        if name.endswith(".so") or "/" in name:
            return cls("external", library=text)
        return cls(name, library=lib or None)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "library": self.library, "options": dict(self.options)}


@dataclasses.dataclass(frozen=True)
class DelegateResult:
    """Outcome of trying one delegate.

    Attributes:
        name: The delegate's registry name.
        status: ``"used"``, ``"not_available"`` or ``"failed"``.
        reason: Why it is not available or what failed ("" when used).
        library: The library tried, if any.
        delegated_nodes: Nodes the delegate took over, when the runtime says (else None).
        cpu_nodes: Nodes left on the CPU kernels, when the runtime says (else None).
        cpu_ops: Op names of those CPU nodes (else None).
    """

    name: str
    status: str
    reason: str = ""
    library: str | None = None
    delegated_nodes: int | None = None
    cpu_nodes: int | None = None
    cpu_ops: tuple[str, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["cpu_ops"] = None if self.cpu_ops is None else list(self.cpu_ops)
        return out


# --- loaders: spec, backend module -> (delegate object or None, DelegateResult) ---

def _library_problem(path: str) -> str | None:
    """Why ``path`` cannot be a TFLite delegate plug-in, or None if it looks like one."""
    try:
        lib = ctypes.CDLL(path)
    except OSError as exc:
        return f"library not loadable on this host: {exc}"
    for symbol in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate"):
        if not hasattr(lib, symbol):
            return f"{path} is not a TFLite delegate plug-in (no {symbol} symbol)"
    return None


def _load_library(spec: DelegateSpec, module: Any, libraries: Sequence[str]
                  ) -> tuple[Any, DelegateResult]:
    reasons = []
    for library in ([spec.library] if spec.library else list(libraries)):
        problem = _library_problem(library)
        if problem:
            reasons.append(problem)
            continue
        try:
            delegate = module.load_delegate(library, dict(spec.options) or None)
        except (ValueError, RuntimeError, OSError, AttributeError) as exc:
            return None, DelegateResult(spec.name, FAILED, f"load_delegate raised "
                                        f"{type(exc).__name__}: {exc}", library)
        return delegate, DelegateResult(spec.name, USED, "", library)
    tried = [spec.library] if spec.library else list(libraries)
    if len(tried) > 1:
        reason = (f"none of the {spec.name} delegate libraries {tried} is installed on this "
                  f"host (first error: {reasons[0]})")
    else:
        reason = reasons[0]
    return None, DelegateResult(spec.name, NOT_AVAILABLE, reason, ", ".join(tried))


def _load_xnnpack(spec: DelegateSpec, module: Any) -> tuple[Any, DelegateResult]:
    # Applied by the "auto" op resolver; the caller records whether that resolver ran.
    return None, DelegateResult(spec.name, USED, "applied as the default delegate of the "
                                "'auto' op resolver")


def _load_gpu(spec: DelegateSpec, module: Any) -> tuple[Any, DelegateResult]:
    return _load_library(spec, module, GPU_LIBRARIES)


def _load_nnapi(spec: DelegateSpec, module: Any) -> tuple[Any, DelegateResult]:
    if not hasattr(sys, "getandroidapilevel") and "android" not in platform.platform().lower():
        return None, DelegateResult(spec.name, NOT_AVAILABLE,
                                    f"NNAPI exists only on Android; this host is "
                                    f"{platform.system()} {platform.machine()}. Run "
                                    "benchmark_model --use_nnapi=true on the phone instead")
    return None, DelegateResult(spec.name, NOT_AVAILABLE, "the Python interpreter exposes no "
                                "NNAPI delegate; use benchmark_model --use_nnapi=true")


def _load_hexagon(spec: DelegateSpec, module: Any) -> tuple[Any, DelegateResult]:
    return _load_library(spec, module, HEXAGON_LIBRARIES)


def _load_external(spec: DelegateSpec, module: Any) -> tuple[Any, DelegateResult]:
    return _load_library(spec, module, ())


DELEGATES: dict[str, Callable[[DelegateSpec, Any], tuple[Any, DelegateResult]]] = {
    "xnnpack": _load_xnnpack,
    "gpu": _load_gpu,
    "nnapi": _load_nnapi,
    "hexagon": _load_hexagon,
    "external": _load_external,
}


def as_specs(delegates: Sequence[Any]) -> list[DelegateSpec]:
    """Normalizes names, ``"external:/lib.so"`` strings and specs to ``DelegateSpec``s."""
    if isinstance(delegates, (str, DelegateSpec)):
        delegates = [delegates]
    specs = []
    for d in delegates or ():
        specs.append(d if isinstance(d, DelegateSpec) else DelegateSpec.parse(d))
    return specs


def resolve_delegates(delegates: Sequence[Any], backend: str = "auto"
                      ) -> tuple[list[Any], list[DelegateResult]]:
    """Loads each requested delegate; returns (objects to apply, one result per request).

    Example:
        >>> objects, results = resolve_delegates(["gpu", "nnapi"])
    """
    specs = as_specs(delegates)
    if not specs:
        return [], []
    from tflite_opt.runtime.interpreter import load_backend

    _, module = load_backend(backend)
    objects, results = [], []
    for spec in specs:
        obj, result = DELEGATES[spec.name](spec, module)
        if obj is not None:
            objects.append(obj)
        results.append(result)
    return objects, results


def _taken_nodes(ops: list[dict], regular: list[dict]) -> set[int]:
    """Indices into ``regular`` of the nodes some DELEGATE partition replaced."""
    producer = {}
    for i, o in enumerate(regular):
        for t in o.get("outputs", []):
            producer[int(t)] = i
    taken: set[int] = set()
    for d in (o for o in ops if o.get("op_name") == "DELEGATE"):
        boundary = {int(t) for t in d.get("inputs", [])}
        stack = [int(t) for t in d.get("outputs", [])]
        seen: set[int] = set()
        while stack:
            t = stack.pop()
            if t in seen or t in boundary or t not in producer:
                continue
            seen.add(t)
            node = producer[t]
            taken.add(node)
            stack.extend(int(x) for x in regular[node].get("inputs", []) if int(x) >= 0)
    return taken


def delegate_node_split(interpreter: Any) -> tuple[int | None, int | None]:
    """(nodes taken by delegates, nodes left on CPU kernels), or (None, None) if not exposed.

    The interpreter lists every original node plus one ``DELEGATE`` node per
    partition, whose inputs and outputs are the partition's boundary. The nodes a
    partition took are exactly the producers reached walking back from its
    outputs without crossing its inputs, so they can be counted without the
    (unexposed) execution plan.

    Example:
        >>> delegate_node_split(loaded.interpreter)
        (9, 0)
    """
    try:
        ops = interpreter._get_ops_details()  # the only per-node view LiteRT gives Python
    except Exception:  # noqa: BLE001 - private API: absent or changed means "not exposed"
        return None, None
    regular = [o for o in ops if o.get("op_name") != "DELEGATE"]
    taken = _taken_nodes(ops, regular)
    return len(taken), len(regular) - len(taken)


def cpu_node_ops(interpreter: Any) -> list[str] | None:
    """Op names of the nodes no delegate took (run by CPU kernels), or None if not exposed.

    Example:
        >>> cpu_node_ops(loaded.interpreter)
        ['SOFTMAX']
    """
    try:
        ops = interpreter._get_ops_details()
    except Exception:  # noqa: BLE001 - private API: absent or changed means "not exposed"
        return None
    regular = [o for o in ops if o.get("op_name") != "DELEGATE"]
    taken = _taken_nodes(ops, regular)
    return [o.get("op_name", "?") for i, o in enumerate(regular) if i not in taken]


def build_interpreter(data: bytes, options: Any, delegates: Sequence[Any] = (),
                      name: str = "<bytes>") -> tuple[Any, list[DelegateResult]]:
    """Builds an interpreter with every delegate that loads; never fails because of one.

    A delegate that loads but cannot be applied to this graph is marked
    ``"failed"`` with the runtime's error and the interpreter is rebuilt without it.
    ``"used"`` results carry the delegated/CPU node split where the runtime shows it.

    Returns:
        ``(LoadedInterpreter, [DelegateResult, ...])``, one result per requested delegate.

    Example:
        >>> loaded, results = build_interpreter(read_tflite("m.tflite"), InterpreterOptions(),
        ...                                     ["xnnpack", "gpu"])
    """
    from tflite_opt.errors import InvalidTFLiteError
    from tflite_opt.runtime.interpreter import make_interpreter

    specs = as_specs(delegates)
    objects, results = resolve_delegates(specs, options.backend)
    results = list(results)
    for i, (spec, result) in enumerate(zip(specs, results)):
        if spec.name == "xnnpack" and options.op_resolver != "auto":
            results[i] = DelegateResult(spec.name, NOT_AVAILABLE,
                                        f"op_resolver={options.op_resolver!r} runs without the "
                                        "default XNNPACK delegate; use op_resolver='auto'")
    try:
        loaded = make_interpreter(data, options, objects, name)
    except InvalidTFLiteError as exc:
        if not objects:
            raise
        # One of the loaded delegates rejected the graph: report it, run on CPU.
        loaded = make_interpreter(data, options, (), name)
        results = [DelegateResult(r.name, FAILED, f"applying the delegate failed: {exc}",
                                  r.library) if r.status == USED and r.library else r
                   for r in results]
    if loaded.fallback_reason:  # make_interpreter dropped the default XNNPACK delegate
        results = [DelegateResult(r.name, FAILED, "the default XNNPACK delegate failed to "
                                  f"prepare: {loaded.fallback_reason}; ran on builtin kernels")
                   if r.name == "xnnpack" and r.status == USED else r for r in results]
    delegated, cpu = delegate_node_split(loaded.interpreter)
    cpu_ops = cpu_node_ops(loaded.interpreter)
    return loaded, [dataclasses.replace(r, delegated_nodes=delegated, cpu_nodes=cpu,
                                        cpu_ops=None if cpu_ops is None else tuple(cpu_ops))
                    if r.status == USED else r for r in results]
