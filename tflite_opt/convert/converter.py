"""``convert()``: any Keras model, file or concrete function to a ``.tflite``, any precision.

A user should never write TFLiteConverter glue again: this module picks the
converter constructor for the model source, validates calibration data against
the model's inputs *before* conversion, sets the precision's options from the
:data:`~tflite_opt.convert.precision.PRECISIONS` registry, keeps the
converter's log noise off the terminal, and turns converter failures (most often
ops outside the TFLite builtins) into a :class:`~tflite_opt.errors.ConversionError`
that says what to do.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from tflite_opt.convert import tensors
from tflite_opt.convert._quiet import quiet_converter
from tflite_opt.convert.precision import PRECISIONS, Precision
from tflite_opt.data.calibration import (DEFAULT_NUM_SAMPLES, ImagePreprocessing, InputSpec,
                                         iterate_samples, load_calibration_data)
from tflite_opt.errors import ConversionError, DataError, InvalidArgumentError, ModelLoadError

if TYPE_CHECKING:
    from tflite_opt.convert.metadata import ModelInfo

# Fewer samples than this gives activation ranges that depend on which images
# happened to be picked; the TFLite docs suggest 100-500.
MIN_CALIBRATION_SAMPLES = 10
# A model whose weight matrices are at least this sparse is converted with
# EXPERIMENTAL_SPARSITY when sparsity="auto" and the precision is float.
SPARSITY_THRESHOLD = 0.5
# Sparse-encoded *quantized* weights make LiteRT 2.3's default XNNPACK delegate fail to
# prepare FULLY_CONNECTED/CONV (the builtin kernels densify them at init and run 3-4x
# slower), so "auto" leaves them dense; gzip (or the APK's compression) still removes
# the zeros. sparsity=True still forces the encoding for runtimes that use it.
_AUTO_SPARSE_PRECISIONS = ("float32", "float16")


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """A converted model: the flatbuffer plus how it was made.

    Attributes:
        tflite_bytes: The ``.tflite`` flatbuffer.
        precision: The :class:`Precision` used.
        conversion_time_s: Wall time of the converter call (with calibration).
        input_type / output_type: The dtype of the model's input and output tensors.
        num_calibration_samples: Samples used for calibration (0 if none).
        quantization_aware: Whether the model was quantization-aware trained.
        sparsity_aware: Whether sparse weights were encoded (EXPERIMENTAL_SPARSITY).
        weight_sparsity: Fraction of zeros in the model's weight matrices.
        select_tf_ops: TensorFlow ops the model needs from the Flex delegate.
        float_nodes: Nodes kept in float by accuracy-aware int8 (empty otherwise).
        source: A short description of what was converted.

    Example:
        >>> result = convert(model, "int8", representative_data=x)
        >>> result.save("out/model_int8.tflite")
    """

    tflite_bytes: bytes = dataclasses.field(repr=False)
    precision: Precision
    conversion_time_s: float
    input_type: str
    output_type: str
    num_calibration_samples: int = 0
    quantization_aware: bool = False
    sparsity_aware: bool = False
    weight_sparsity: float = 0.0
    select_tf_ops: tuple[str, ...] = ()
    float_nodes: tuple[str, ...] = ()
    source: str = ""
    target: str | None = None

    @property
    def size_bytes(self) -> int:
        return len(self.tflite_bytes)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.tflite_bytes).hexdigest()

    @property
    def requires_flex_delegate(self) -> bool:
        return bool(self.select_tf_ops)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (the bytes are summarized by size and sha256)."""
        return {"precision": self.precision.value, "size_bytes": self.size_bytes,
                "sha256": self.sha256, "conversion_time_s": round(self.conversion_time_s, 4),
                "input_type": self.input_type, "output_type": self.output_type,
                "num_calibration_samples": self.num_calibration_samples,
                "quantization_aware": self.quantization_aware,
                "sparsity_aware": self.sparsity_aware,
                "weight_sparsity": round(self.weight_sparsity, 4),
                "select_tf_ops": list(self.select_tf_ops),
                "requires_flex_delegate": self.requires_flex_delegate,
                "float_nodes": list(self.float_nodes), "source": self.source,
                "target": self.target}

    def save(self, path: str | os.PathLike, overwrite: bool = False,
             labels: Sequence[str] | str | os.PathLike | None = None,
             normalization: ImagePreprocessing | Mapping[str, Any] | None = None, *,
             metadata: bool = True, model_info: "ModelInfo | None" = None) -> Path:
        """Writes the ``.tflite``, its sidecar ``.json`` and ``labels.txt`` atomically.

        The ``.tflite`` carries TFLite metadata (name, description, version, author,
        license, image input and normalization, output scores, labels as an attached
        file) for MediaPipe Tasks and ML Model Binding, unless ``metadata=False``.

        Args:
            path: Destination ``.tflite`` file; the sidecar is the same path with ``.json``.
            overwrite: Replace existing files. Defaults to False (raises
                ``OutputExistsError`` before writing anything).
            labels: Class names (a list, or a text file with one per line); written
                to ``labels.txt`` beside the model and into the sidecar.
            normalization: The preprocessing the app must apply, e.g.
                ``ImagePreprocessing(scale=1/255)`` or a dict; goes into the sidecar
                and the metadata.
            metadata: Embed TFLite metadata. Defaults to True.
            model_info: Name, description, version, author and license for the
                metadata (``tflite_opt.convert.ModelInfo``). Defaults to the file's
                name and a description of the conversion.

        Returns:
            The path of the ``.tflite`` file.

        Example:
            >>> result.save("out/model_int8.tflite", labels=[str(d) for d in range(10)],
            ...             normalization=ImagePreprocessing(scale=1 / 255))
        """
        from tflite_opt.convert.sidecar import save_with_sidecar

        return save_with_sidecar(self, path, overwrite=overwrite, labels=labels,
                                 normalization=normalization, metadata=metadata,
                                 model_info=model_info)


@dataclasses.dataclass
class _Source:
    """A resolved model source: how to build a converter, and what the inputs are."""

    make_converter: Callable[[], Any]
    input_specs: list[InputSpec]
    description: str
    keras_model: Any = None
    quantization_aware: bool = False
    weight_sparsity: float = 0.0
    cleanup: Callable[[], None] = lambda: None


def convert(model: Any, precision: str | Precision = "float32", representative_data: Any = None,
            num_calibration_samples: int = DEFAULT_NUM_SAMPLES, input_type: str | None = None,
            output_type: str | None = None, allow_select_tf_ops: bool = False, *,
            preprocessing: ImagePreprocessing | None = None, sparsity: bool | str = "auto",
            progress: bool = True, quiet: bool = True,
            target: str | None = None) -> ConversionResult:
    """Converts a model to TFLite at the given precision.

    Args:
        model: A ``tf_keras`` model, a Keras 3 model, a ``.keras``/``.h5`` file, a
            SavedModel folder, or a ``tf.function`` concrete function.
        precision: ``"float32"``, ``"float16"``, ``"dynamic"``, ``"int8"`` or
            ``"int16x8"``. Defaults to ``"float32"``.
        representative_data: Calibration inputs for ``int8``/``int16x8`` (ignored
            by the other precisions): a numpy array ``(N, *input_shape)``, an
            ``.npy``/``.npz`` path, a ``tf.data.Dataset``, a generator function or
            a folder of images. Not needed for quantization-aware-trained models.
        num_calibration_samples: How many samples to calibrate on (a progress bar
            shows them). Defaults to 100.
        input_type: Dtype of the input tensor: ``"int8"`` (default for int8),
            ``"uint8"`` or ``"float32"`` for int8; ``"float32"`` (default) or
            ``"int16"`` for int16x8; ``"float32"`` otherwise.
        output_type: Same choices for the output tensor. Defaults to ``input_type``'s default.
        allow_select_tf_ops: Let ops outside the TFLite builtins run as TensorFlow
            (Flex) ops; the app then needs the Flex delegate. Defaults to False.
        preprocessing: How images of an image-folder source become model input.
            Defaults to pixels scaled to [0, 1].
        sparsity: ``True`` to encode sparse weights (``EXPERIMENTAL_SPARSITY``),
            ``False`` not to, ``"auto"`` to do it for float32/float16 when at least half
            the weights are zero (a pruned model; quantized files stay dense because
            LiteRT's XNNPACK cannot run sparse-encoded int8 weights). Defaults to ``"auto"``.
        progress: Show a calibration progress bar. Defaults to True.
        quiet: Keep the converter's log output off the terminal. Defaults to True.
        target: A consuming runtime's profile (``tflite_opt.convert.targets``):
            ``"mediapipe_image_classifier"`` makes a file MediaPipe Tasks'
            ``ImageClassifier`` loads (uint8 RGB input with ``preprocessing`` applied
            inside the graph, float32 scores; ``save()`` then needs labels).
            ``representative_data`` stays in the model's own input space. Defaults
            to None (plain LiteRT Interpreter file).

    Returns:
        A :class:`ConversionResult`.

    Raises:
        InvalidArgumentError: unknown precision or input/output type.
        ModelLoadError: the model path cannot be loaded.
        DataError: calibration data missing, empty, too small, NaN, or of the
            wrong shape/dtype (checked before conversion starts).
        ConversionError: the converter failed, e.g. ops outside the builtins.

    Example:
        >>> from tflite_opt.convert import convert
        >>> result = convert(model, "int8", representative_data=data.x_train)
        >>> result.save("out/model_int8.tflite")
    """
    if target is not None:
        from tflite_opt.convert.targets import prepare_target

        request = prepare_target(
            target, model, representative_data=representative_data,
            num_calibration_samples=num_calibration_samples,
            min_samples=min(MIN_CALIBRATION_SAMPLES, int(num_calibration_samples)),
            preprocessing=preprocessing, input_type=input_type, output_type=output_type,
            needs_calibration=PRECISIONS[Precision.parse(precision)].needs_calibration)
        model, representative_data = request.model, request.representative_data
        input_type, output_type = request.input_type, request.output_type
    prepared = _prepare(model, precision, representative_data, num_calibration_samples, input_type,
                        output_type, allow_select_tf_ops, preprocessing, sparsity, progress)
    try:
        tflite_bytes, elapsed = _run_converter(prepared, prepared.converter, quiet)
    finally:
        prepared.source.cleanup()
    result = prepared.result(tflite_bytes, elapsed)
    if target is None:
        return result
    return dataclasses.replace(result, target=str(target).lower())


@dataclasses.dataclass
class _Prepared:
    """A validated conversion request with its configured converter."""

    source: _Source
    converter: Any
    precision: Precision
    calibration: list[np.ndarray] | None
    input_type: str
    output_type: str
    allow_select_tf_ops: bool
    sparsity_aware: bool

    def result(self, tflite_bytes: bytes, elapsed: float,
               float_nodes: Sequence[str] = ()) -> ConversionResult:
        flex = tuple(tensors.flex_ops(tflite_bytes)) if self.allow_select_tf_ops else ()
        try:
            io = tensors.io_details(tflite_bytes)
        except Exception:  # noqa: BLE001 - a runtime without some op can still save the file
            io = None
        return ConversionResult(
            tflite_bytes=bytes(tflite_bytes), precision=self.precision, conversion_time_s=elapsed,
            input_type=io["inputs"][0]["dtype"] if io else self.input_type,
            output_type=io["outputs"][0]["dtype"] if io else self.output_type,
            num_calibration_samples=0 if self.calibration is None else len(self.calibration[0]),
            quantization_aware=self.source.quantization_aware, sparsity_aware=self.sparsity_aware,
            weight_sparsity=self.source.weight_sparsity, select_tf_ops=flex,
            float_nodes=tuple(float_nodes), source=self.source.description)


def _prepare(model: Any, precision: str | Precision, representative_data: Any,
             num_calibration_samples: int, input_type: str | None, output_type: str | None,
             allow_select_tf_ops: bool, preprocessing: ImagePreprocessing | None,
             sparsity: bool | str, progress: bool) -> _Prepared:
    """Validates every argument and the calibration data, then configures a converter.

    The caller owns ``prepared.source.cleanup()``.
    """
    prec = Precision.parse(precision)
    spec = PRECISIONS[prec]
    in_type, out_type = _io_types(prec, input_type, output_type)
    if not isinstance(allow_select_tf_ops, bool):
        raise InvalidArgumentError(f"allow_select_tf_ops must be True or False, got {allow_select_tf_ops!r}")
    if sparsity not in (True, False, "auto"):
        raise InvalidArgumentError(f"sparsity must be True, False or 'auto', got {sparsity!r}")
    if isinstance(num_calibration_samples, bool) or not isinstance(num_calibration_samples, (int, np.integer)) \
            or num_calibration_samples < 1:
        raise InvalidArgumentError(f"num_calibration_samples must be a positive integer, got "
                                   f"{num_calibration_samples!r}")
    source = _resolve(model)
    try:
        calibration: list[np.ndarray] | None = None
        if source.quantization_aware and prec == Precision.INT16X8:
            # Without calibration the converter silently emits int8 weights with float
            # activations here, not 16x8; QAT's fake-quant ranges are int8 ranges anyway.
            raise InvalidArgumentError(
                f"{source.description} is quantization-aware trained (int8 fake-quant ranges); "
                "convert it with precision='int8', or convert the float model before QAT to "
                "int16x8")
        if spec.needs_calibration and not source.quantization_aware:
            if representative_data is None:
                raise DataError(
                    f"precision={prec.value!r} needs representative_data (about 100-500 typical "
                    f"inputs of shape {[tuple(s.shape) for s in source.input_specs]}) to calibrate "
                    "activation ranges; pass representative_data= / --representative_data=, or use "
                    "precision='dynamic' which needs none")
            calibration = load_calibration_data(
                representative_data, source.input_specs, num_samples=int(num_calibration_samples),
                min_samples=min(MIN_CALIBRATION_SAMPLES, int(num_calibration_samples)),
                preprocessing=preprocessing)
        use_sparsity = (sparsity is True) or (
            sparsity == "auto" and prec.value in _AUTO_SPARSE_PRECISIONS
            and source.weight_sparsity >= SPARSITY_THRESHOLD)
        converter = _build_converter(source, prec, calibration, in_type, out_type,
                                     allow_select_tf_ops, use_sparsity, progress)
    except BaseException:
        source.cleanup()
        raise
    return _Prepared(source, converter, prec, calibration, in_type, out_type,
                     allow_select_tf_ops, use_sparsity)


def _run_converter(prepared: _Prepared, converter: Any, quiet: bool) -> tuple[bytes, float]:
    """Runs ``converter.convert()`` quietly; returns (bytes, seconds) or raises ConversionError."""
    start = time.perf_counter()
    with quiet_converter(quiet) as captured:
        converter._progress_stream = captured.terminal  # read by the calibration bar
        try:
            tflite_bytes = converter.convert()
        except Exception as exc:  # noqa: BLE001 - translated below
            failure: Exception | None = exc
        else:
            failure = None
    if failure is not None:
        raise _conversion_error(failure, captured.text, prepared.precision,
                                prepared.allow_select_tf_ops) from failure
    return bytes(tflite_bytes), time.perf_counter() - start


# ----------------------------------------------------------------------------- converter


def _io_types(prec: Precision, input_type: str | None, output_type: str | None) -> tuple[str, str]:
    allowed = PRECISIONS[prec].io_types
    chosen = []
    for arg, value in (("input_type", input_type), ("output_type", output_type)):
        value = allowed[0] if value is None else str(getattr(value, "name", value)).lower()
        if value not in allowed:
            raise InvalidArgumentError(f"{arg}={value!r} is not available for precision="
                                       f"{prec.value!r}; accepted: {', '.join(allowed)}")
        chosen.append(value)
    return chosen[0], chosen[1]


def _build_converter(source: _Source, prec: Precision, calibration: list[np.ndarray] | None,
                     in_type: str, out_type: str, allow_select_tf_ops: bool, use_sparsity: bool,
                     progress: bool) -> Any:
    from tflite_opt._keras import tf

    converter = source.make_converter()
    PRECISIONS[prec].configure(converter, source.quantization_aware)
    if calibration is not None:
        converter.representative_dataset = iterate_samples(
            calibration, progress=_progress_bar(converter, len(calibration[0]), progress))
    converter.inference_input_type = tf.as_dtype(in_type)
    converter.inference_output_type = tf.as_dtype(out_type)
    if allow_select_tf_ops:
        ops = list(converter.target_spec.supported_ops)
        if tf.lite.OpsSet.TFLITE_BUILTINS_INT8 in ops:
            # Flex ops run in float, so int8 + Flex needs the float builtins as glue.
            ops.append(tf.lite.OpsSet.TFLITE_BUILTINS)
        converter.target_spec.supported_ops = set(ops) | {tf.lite.OpsSet.SELECT_TF_OPS}
    if use_sparsity:
        converter.optimizations = list(converter.optimizations) + [tf.lite.Optimize.EXPERIMENTAL_SPARSITY]
    return converter


def _progress_bar(converter: Any, total: int, enabled: bool) -> Callable:
    from tqdm.auto import tqdm

    def wrap(indices):
        stream = getattr(converter, "_progress_stream", None)
        yield from tqdm(indices, total=total, desc="calibrating", unit="sample",
                        disable=not enabled, file=stream, leave=False)

    return wrap


_FLEX_RE = re.compile(r"TF Select ops:\s*([^\n]+)")
_CUSTOM_RE = re.compile(r"Custom ops:\s*([^\n]+)")


def _conversion_error(exc: Exception, log: str, prec: Precision, allowed: bool) -> ConversionError:
    text = f"{exc}\n{log}"
    flex = sorted({o.strip() for m in _FLEX_RE.findall(text) for o in m.split(",") if o.strip()})
    custom = sorted({o.strip() for m in _CUSTOM_RE.findall(text) for o in m.split(",") if o.strip()})
    if flex and not allowed:
        extra = f" (and custom ops with no TFLite kernel: {', '.join(custom)})" if custom else ""
        return ConversionError(
            f"the model needs TensorFlow ops outside the TFLite builtins: {', '.join(flex)}{extra}; "
            "pass allow_select_tf_ops=True (or --allow_select_tf_ops) to keep them as Flex ops, "
            "and the app must then link the Flex delegate (tensorflow-lite-select-tf-ops)")
    if custom:
        return ConversionError(
            f"the model uses ops that neither TFLite nor the Flex delegate can run: "
            f"{', '.join(custom)}; replace these layers (or implement them as TFLite custom ops)")
    if "quantiz" in text.lower() and prec in (Precision.INT8, Precision.INT16X8):
        hint = ("; an op may lack an integer kernel: try precision='dynamic', or "
                "allow_select_tf_ops=True, or accuracy-aware int8 which keeps layers in float")
    else:
        hint = ""
    first = _first_error_line(str(exc)) or _first_error_line(log) or type(exc).__name__
    return ConversionError(f"TFLite conversion to {prec.value} failed: {first}{hint}")


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line and ("error" in line.lower() or "not supported" in line.lower()):
            return line[:400]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[0][:400] if lines else ""


# ----------------------------------------------------------------------------- sources


def _resolve(model: Any) -> _Source:
    from tflite_opt._keras import keras, tf

    if isinstance(model, (str, os.PathLike)):
        from tflite_opt.models.loading import load_model, model_format

        fmt = model_format(model)
        if fmt == "saved_model":
            return _saved_model_source(Path(model))
        # keep_zeros=False: a converter never trains, so a tfmot PQAT file need not be re-wrapped
        return _keras_source(load_model(model, keep_zeros=False),
                             f"{fmt} file {os.fspath(model)!r}")
    if isinstance(model, keras.Model):
        return _keras_source(model, f"tf_keras model {model.name!r}")
    if _is_keras3_model(model):
        return _keras3_source(model)
    if hasattr(model, "structured_input_signature") and hasattr(model, "graph"):
        return _concrete_function_source(model)
    if hasattr(model, "get_concrete_function"):
        raise InvalidArgumentError(
            "model is a tf.function without a signature; pass "
            "fn.get_concrete_function(tf.TensorSpec(shape, dtype)) instead")
    raise InvalidArgumentError(
        f"model has type {type(model).__name__}; accepted: a tf_keras or Keras 3 model, a "
        ".keras/.h5 file or SavedModel folder path, or a concrete function")


def _specs_from_tensors(tensors_: Sequence[Any], names: Sequence[str] | None = None) -> list[InputSpec]:
    specs = []
    for i, t in enumerate(tensors_):
        shape = tuple(t.shape.as_list()[1:]) if t.shape.rank else ()
        name = (names[i] if names else getattr(t, "name", f"input_{i}")).split(":")[0]
        specs.append(InputSpec(name, shape, t.dtype.name))
    return specs


def _weight_sparsity(weights: Sequence[np.ndarray]) -> float:
    # Only matrices/kernels: biases and BN vectors are never pruned.
    mats = [w for w in weights if w.ndim >= 2]
    total = sum(w.size for w in mats)
    return float(sum(int(np.sum(w == 0)) for w in mats) / total) if total else 0.0


def _is_qat(model: Any) -> bool:
    for layer in _all_layers(model):
        cls = type(layer)
        if cls.__name__ in ("QuantizeWrapper", "QuantizeWrapperV2", "QuantizeLayer") or \
                "quantization.keras" in cls.__module__:
            return True
        if getattr(layer, "fake_quantizes", False):  # Keras 3 QAT (tflite_opt.train.keras3)
            return True
    return False


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in getattr(model, "layers", []):
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out


def _keras_source(model: Any, description: str) -> _Source:
    from tflite_opt._keras import tf

    if any(type(l).__name__ == "PruneLowMagnitude" for l in _all_layers(model)):
        raise InvalidArgumentError(
            f"model {model.name!r} still has pruning wrappers (PruneLowMagnitude); call "
            "tflite_opt's strip (tfmot.sparsity.keras.strip_pruning) before converting")
    if any(type(l).__name__ == "ClusterWeights" for l in _all_layers(model)):
        raise InvalidArgumentError(
            f"model {model.name!r} still has clustering wrappers (ClusterWeights); call "
            "tfmot.clustering.keras.strip_clustering before converting")
    if not model.inputs:
        raise InvalidArgumentError(f"model {model.name!r} has no defined inputs (a subclassed model "
                                   "that was never built); call it on data or build it first")
    specs = _specs_from_tensors(model.inputs, [t.name for t in model.inputs])
    return _Source(lambda: tf.lite.TFLiteConverter.from_keras_model(model), specs, description,
                   keras_model=model, quantization_aware=_is_qat(model),
                   weight_sparsity=_weight_sparsity(model.get_weights()))


def _is_keras3_model(model: Any) -> bool:
    mod = type(model).__module__
    if not mod.startswith("keras"):
        return False
    try:
        import keras as keras3
    except ImportError:
        return False
    return isinstance(model, keras3.Model)


def _keras3_source(model: Any) -> _Source:
    from tflite_opt._keras import keras3, tf

    backend = keras3().backend.backend()
    if backend != "tensorflow":
        # The TFLite converter reads TensorFlow graphs; Keras 3 exports them only on TF.
        raise ConversionError(
            f"Keras 3 model {getattr(model, 'name', '?')!r} runs on the {backend!r} backend; "
            "conversion to TFLite needs KERAS_BACKEND=tensorflow: set it before Python starts "
            "(KERAS_BACKEND=tensorflow python ...), save the model with model.save('m.keras') "
            "and convert the file")
    tmp = tempfile.TemporaryDirectory(prefix="tflite_opt_keras3_")
    export_dir = os.path.join(tmp.name, "saved_model")
    try:
        with quiet_converter():
            model.export(export_dir, format="tf_saved_model", verbose=False)
    except Exception as exc:  # noqa: BLE001
        tmp.cleanup()
        raise ConversionError(
            f"could not export Keras 3 model {getattr(model, 'name', '?')!r} for the TFLite "
            f"converter ({type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}); "
            "Keras 3 conversion needs the TensorFlow backend (KERAS_BACKEND=tensorflow); or save it "
            "and rebuild it with tf_keras") from exc
    specs = [InputSpec(getattr(t, "name", f"input_{i}") or f"input_{i}", tuple(t.shape[1:]),
                       str(getattr(t, "dtype", "float32")).replace("tf.", ""))
             for i, t in enumerate(model.inputs)]
    source = _Source(lambda: tf.lite.TFLiteConverter.from_saved_model(export_dir), specs,
                     f"Keras 3 model {model.name!r}", quantization_aware=_is_qat(model),
                     weight_sparsity=_weight_sparsity([np.asarray(w) for w in model.get_weights()]),
                     cleanup=tmp.cleanup)
    return source


def _saved_model_source(path: Path) -> _Source:
    from tflite_opt._keras import tf

    try:
        with quiet_converter():
            loaded = tf.saved_model.load(os.fspath(path))
    except Exception as exc:  # noqa: BLE001
        raise ModelLoadError(f"could not load SavedModel {str(path)!r}: {str(exc)[:300]}") from exc
    sigs = dict(loaded.signatures)
    if not sigs:
        raise ModelLoadError(f"SavedModel {str(path)!r} has no signatures; export it with a "
                             "serving signature (model.export(path) or tf.saved_model.save(..., "
                             "signatures=...))")
    key = "serving_default" if "serving_default" in sigs else sorted(sigs)[0]
    fn = sigs[key]
    _, kwargs = fn.structured_input_signature
    specs = [InputSpec(name, tuple(spec.shape.as_list()[1:]), spec.dtype.name)
             for name, spec in sorted(kwargs.items())]
    qat = any(op.type.startswith("FakeQuant") for op in fn.graph.get_operations())
    weights = [v.numpy() for v in getattr(loaded, "variables", [])]
    return _Source(lambda: tf.lite.TFLiteConverter.from_saved_model(os.fspath(path), [key]), specs,
                   f"SavedModel {str(path)!r}", quantization_aware=qat,
                   weight_sparsity=_weight_sparsity(weights))


def _concrete_function_source(fn: Any) -> _Source:
    from tflite_opt._keras import tf

    # structured_input_signature, not fn.inputs: the latter also lists captured weights.
    flat = [t for t in tf.nest.flatten(fn.structured_input_signature) if isinstance(t, tf.TensorSpec)]
    specs = [InputSpec(t.name or f"input_{i}", tuple(t.shape.as_list()[1:]) if t.shape.rank else (),
                       t.dtype.name) for i, t in enumerate(flat)]
    qat = any(op.type.startswith("FakeQuant") for op in fn.graph.get_operations())
    return _Source(lambda: tf.lite.TFLiteConverter.from_concrete_functions([fn]), specs,
                   f"concrete function {fn.name!r}", quantization_aware=qat)
