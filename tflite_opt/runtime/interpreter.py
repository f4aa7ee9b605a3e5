"""Creating a TFLite interpreter: LiteRT first, TensorFlow's as the fallback.

``ai_edge_litert`` (LiteRT 2.3) is the maintained interpreter; ``tf.lite.Interpreter``
is deprecated but ships with TensorFlow, so it is the fallback when LiteRT cannot be
imported. Every result names the backend that ran (``"ai_edge_litert"`` or
``"tensorflow"``). The op resolver picks the kernels: ``"auto"`` (optimized
builtin kernels plus the default XNNPACK delegate), ``"no_xnnpack"`` (optimized
builtin kernels only) or ``"reference"`` (slow reference kernels, for debugging).

Example:
    >>> interp = make_interpreter(read_tflite("m.tflite"), InterpreterOptions(num_threads=2))
    >>> interp.backend
    'ai_edge_litert'
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import time
import warnings
from typing import Any, Callable, Sequence

from tflite_opt.errors import InvalidArgumentError, InvalidTFLiteError

# More threads than this is a typo, not a setting: LiteRT aborts the process when asked
# for ~100000 threads, and a crash would be reported as a corrupt model.
MAX_NUM_THREADS = max(256, 4 * (os.cpu_count() or 1))

# Set to an op resolver name (e.g. ``no_xnnpack``) to replace the default ``auto`` everywhere.
FORCE_OP_RESOLVER_ENV = "TFLITE_OPT_OP_RESOLVER"

# op resolver name -> OpResolverType member name (same in LiteRT and tf.lite).
OP_RESOLVERS: dict[str, str] = {
    "auto": "AUTO",
    "no_xnnpack": "BUILTIN_WITHOUT_DEFAULT_DELEGATES",
    "reference": "BUILTIN_REF",
}


def _load_litert() -> Any:
    return importlib.import_module("ai_edge_litert.interpreter")


def _load_tensorflow() -> Any:
    from tflite_opt._keras import tf  # the package's one TensorFlow import point

    return _TfLiteModule(tf)


class _TfLiteModule:
    """Presents ``tf.lite`` with the same names as ``ai_edge_litert.interpreter``."""

    def __init__(self, tf: Any):
        self.Interpreter = tf.lite.Interpreter
        self.OpResolverType = tf.lite.experimental.OpResolverType
        self.load_delegate = tf.lite.experimental.load_delegate


# Backend name -> loader of a module with Interpreter, OpResolverType, load_delegate.
BACKENDS: dict[str, Callable[[], Any]] = {
    "ai_edge_litert": _load_litert,
    "tensorflow": _load_tensorflow,
}


@dataclasses.dataclass(frozen=True)
class InterpreterOptions:
    """How to build the interpreter.

    Args:
        num_threads: CPU threads for the kernels and XNNPACK (1 to
            ``MAX_NUM_THREADS``). Defaults to 1.
        op_resolver: One of ``OP_RESOLVERS``. Defaults to ``"auto"`` (XNNPACK on).
        backend: ``"auto"`` (LiteRT, else TensorFlow) or a name in ``BACKENDS``.
            Defaults to ``"auto"``.
        preserve_all_tensors: Keep intermediate tensors readable. Defaults to False.

    Example:
        >>> InterpreterOptions(num_threads=2, op_resolver="no_xnnpack")
    """

    num_threads: int = 1
    op_resolver: str = "auto"
    backend: str = "auto"
    preserve_all_tensors: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.num_threads, bool) or not isinstance(self.num_threads, int) \
                or not 1 <= self.num_threads <= MAX_NUM_THREADS:
            raise InvalidArgumentError(f"num_threads must be an integer from 1 to "
                                       f"{MAX_NUM_THREADS}, got {self.num_threads!r}")
        if self.op_resolver not in OP_RESOLVERS:
            raise InvalidArgumentError(f"op_resolver {self.op_resolver!r} is not one of "
                                       f"{sorted(OP_RESOLVERS)}")
        if self.backend != "auto" and self.backend not in BACKENDS:
            raise InvalidArgumentError(f"backend {self.backend!r} is not 'auto' or one of "
                                       f"{sorted(BACKENDS)}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_backend(name: str = "auto") -> tuple[str, Any]:
    """Returns ``(backend_name, module)`` for ``name``, falling back from LiteRT to TF.

    Example:
        >>> name, module = load_backend()
    """
    names = list(BACKENDS) if name == "auto" else [name]
    errors = []
    for candidate in names:
        try:
            return candidate, BACKENDS[candidate]()
        except ImportError as exc:  # try the next backend, and say why if none loads
            errors.append(f"{candidate}: {exc}")
    raise InvalidArgumentError(f"no TFLite interpreter could be loaded ({'; '.join(errors)}); "
                               "install ai-edge-litert==2.3.0")


_FLEX_MARKER = "Select TensorFlow op"
_XNNPACK_MARKER = "XNNPack"


class LoadedInterpreter:
    """An allocated interpreter plus what it took to build it.

    Attributes:
        interpreter: The ``Interpreter`` object.
        backend: ``"ai_edge_litert"`` or ``"tensorflow"``.
        options: The ``InterpreterOptions`` used.
        init_us: Microseconds to construct and allocate tensors.
        fallback_reason: Why the default XNNPACK delegate was dropped (``options`` then
            says ``op_resolver="no_xnnpack"``), or None.
    """

    def __init__(self, interpreter: Any, backend: str, module: Any, options: InterpreterOptions,
                 init_us: float, fallback_reason: str | None = None):
        self.interpreter = interpreter
        self.backend = backend
        self.module = module
        self.options = options
        self.init_us = init_us
        self.fallback_reason = fallback_reason

    def input_details(self) -> list[dict]:
        return self.interpreter.get_input_details()

    def output_details(self) -> list[dict]:
        return self.interpreter.get_output_details()


def make_interpreter(model: bytes, options: InterpreterOptions | None = None,
                     delegates: Sequence[Any] = (), name: str = "<bytes>") -> LoadedInterpreter:
    """Builds and allocates an interpreter for already validated model bytes.

    Args:
        model: Bytes returned by ``read_tflite`` (validated).
        options: Threads, op resolver and backend. Defaults to ``InterpreterOptions()``.
        delegates: Delegate objects from the backend's ``load_delegate``.
        name: File name for error messages.

    Returns:
        A ``LoadedInterpreter`` with the allocated interpreter and its init time.

    Raises:
        InvalidTFLiteError: The runtime refused the model (unsupported op, bad graph).

    Example:
        >>> loaded = make_interpreter(read_tflite("m.tflite"))
        >>> loaded.interpreter.invoke()
    """
    options = options or InterpreterOptions()
    forced = os.environ.get(FORCE_OP_RESOLVER_ENV)
    if forced and options.op_resolver == "auto" and not delegates:
        # A host-wide switch (how the suite is run with XNNPACK off); recorded in options,
        # so results say which kernels ran.
        if forced not in OP_RESOLVERS:
            raise InvalidArgumentError(f"{FORCE_OP_RESOLVER_ENV}={forced!r} is not one of "
                                       f"{sorted(OP_RESOLVERS)}")
        options = dataclasses.replace(options, op_resolver=forced)
    backend, module = load_backend(options.backend)
    start = time.perf_counter_ns()
    fallback_reason = None
    try:
        try:
            interpreter = _build(module, model, options, delegates)
        except RuntimeError as exc:
            # LiteRT's default XNNPACK delegate refuses some QAT int8 graphs at prepare time
            # (tensorflow#58376, LiteRT#9215) although the builtin kernels run them. Only
            # the implicit default delegate falls back; an explicitly requested one fails.
            if options.op_resolver != "auto" or delegates or _XNNPACK_MARKER not in str(exc):
                raise
            fallback_reason = " ".join(str(exc).split())[:300]
            options = dataclasses.replace(options, op_resolver="no_xnnpack")
            interpreter = _build(module, model, options, delegates)
            warnings.warn(f"model {name}: the default XNNPACK delegate failed to prepare "
                          f"({fallback_reason}); running it with the builtin kernels instead "
                          "(op_resolver='no_xnnpack')", RuntimeWarning, stacklevel=2)
    except (ValueError, RuntimeError) as exc:
        text = " ".join(str(exc).split())
        hint = ("the model has TensorFlow (Flex) ops, which need an interpreter linked with "
                "the Flex delegate (neither LiteRT 2.3 nor TensorFlow 2.21's Python "
                "interpreter has it); convert without SELECT_TF_OPS"
                if _FLEX_MARKER in text else "check that every op is a TFLite builtin op")
        raise InvalidTFLiteError(f"model {name} could not be loaded by the {backend} "
                                 f"interpreter: {text[:300]}; {hint}") from None
    init_us = (time.perf_counter_ns() - start) / 1e3
    return LoadedInterpreter(interpreter, backend, module, options, init_us,
                             fallback_reason=fallback_reason)


def _build(module: Any, model: bytes, options: InterpreterOptions, delegates: Sequence[Any]) -> Any:
    interpreter = module.Interpreter(
        model_content=model, num_threads=options.num_threads,
        experimental_op_resolver_type=getattr(module.OpResolverType,
                                              OP_RESOLVERS[options.op_resolver]),
        experimental_delegates=list(delegates) or None,
        experimental_preserve_all_tensors=options.preserve_all_tensors)
    interpreter.allocate_tensors()
    return interpreter
