"""Loading a user's Keras model from a ``.keras``/``.h5`` file or SavedModel folder."""

from __future__ import annotations

import contextlib
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Any, Iterator, Mapping

from tflite_opt._keras import keras
from tflite_opt.errors import ModelLoadError
from tflite_opt.models.safety import check_model_file, registered_names

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")


def model_format(path: str | os.PathLike) -> str:
    """Returns ``"keras"``, ``"h5"`` or ``"saved_model"`` for a model path, or raises.

    Raises:
        ModelLoadError: the path does not exist or is not a Keras model file/SavedModel.
    """
    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model path {str(path)!r} does not exist; pass --model=PATH to a "
                             ".keras/.h5 file or a SavedModel folder")
    if path.is_dir():
        if (path / "saved_model.pb").exists() or (path / "saved_model.pbtxt").exists():
            return "saved_model"
        raise ModelLoadError(f"folder {str(path)!r} is not a SavedModel (no saved_model.pb inside)")
    suffix = path.suffix.lower()
    if suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ModelLoadError(f"{str(path)!r} is not a .keras model (not a zip archive)")
        return "keras"
    if suffix in (".h5", ".hdf5"):
        with open(path, "rb") as f:
            if f.read(8) != b"\x89HDF\r\n\x1a\n":
                raise ModelLoadError(f"{str(path)!r} is not an HDF5 model file (bad signature)")
        return "h5"
    raise ModelLoadError(f"model file {str(path)!r} has suffix {suffix or '(none)'!r}; accepted: "
                         ".keras, .h5, .hdf5, or a SavedModel folder")


_MAX_METADATA_BYTES = 1 << 20


def saved_keras_version(path: str | os.PathLike, fmt: str) -> str:
    """The Keras version that saved a model file (``""`` when the file does not say).

    A ``.keras`` zip holds it in ``metadata.json``; an ``.h5`` file in its ``keras_version``
    attribute. Read as data: nothing in the file is run.

    Example:
        >>> saved_keras_version("k3.keras", "keras")
        '3.15.1'
    """
    try:
        if fmt == "keras":
            with zipfile.ZipFile(path) as archive:
                if "metadata.json" not in archive.namelist():
                    return ""
                # A few hundred bytes in a real file; never read what the header merely claims.
                with archive.open("metadata.json") as member:
                    text = member.read(_MAX_METADATA_BYTES + 1)
                if len(text) > _MAX_METADATA_BYTES:
                    raise ValueError(f"metadata.json is larger than {_MAX_METADATA_BYTES} bytes")
                metadata = json.loads(text)
                return str(metadata.get("keras_version", "")) if isinstance(metadata, dict) else ""
        if fmt == "h5":
            import h5py

            with h5py.File(path, "r") as f:
                version = f.attrs.get("keras_version", "")
            return version.decode() if isinstance(version, bytes) else str(version)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"could not read the Keras version of {str(path)!r} ({fmt}): "
                             f"{exc}") from exc
    return ""


def _load_keras3(path: str | os.PathLike, fmt: str, compile: bool, trust_model: bool,
                 custom_objects: Mapping[str, Any] | None) -> Any:
    """Loads a file saved by Keras 3 with Keras 3 (tf_keras cannot read its config)."""
    from tflite_opt._keras import keras3
    from tflite_opt.train.keras3 import register_saved_classes

    keras3_module = keras3()
    register_saved_classes()  # tflite_opt's Keras 3 wrappers, in checkpoints saved mid-training
    try:
        model = keras3_module.saving.load_model(os.fspath(path), custom_objects=custom_objects,
                                                compile=compile, safe_mode=not trust_model)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad model file for the user
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"could not load Keras 3 model from {str(path)!r} ({fmt}, saved by "
                             f"Keras {saved_keras_version(path, fmt)}): {first_line[:300]}") from exc
    if not isinstance(model, keras3_module.Model):
        raise ModelLoadError(f"{str(path)!r} holds a {type(model).__name__}, not a Keras model; "
                             "save it with model.save('model.keras')")
    return model


@contextlib.contextmanager
def optimize_scope() -> Iterator[None]:
    """Makes tfmot's wrapper classes known to ``keras.models.load_model``.

    Needed for models saved while wrapped for pruning, clustering or QAT (for example
    by ``ModelCheckpoint`` mid-training); ``load_model`` below uses it. It also registers
    tflite_opt's savable CQAT/PCQAT/PQAT quantizers (``train/qat_saving.py``), without
    which a model from ``quantize_aware(..., "pcqat")`` cannot be rebuilt from its file,
    and puts tfmot's QAT layers that rebuild the variables a ``.keras`` file holds in place
    of tfmot's own (``train/qat_keras_format.py``), without which no QAT ``.keras`` loads.
    A PQAT file made by tfmot's own scheme loads here as its config says, plain QAT (Keras
    calls no layer code after an ``.h5``/SavedModel's weights are read, where its zeros could
    be counted): ``load_model`` below loads it as PQAT, or pass the model to
    ``train.tfmot_pqat.preserve_zeros_in_place``.

    Example:
        >>> with optimize_scope():
        ...     pruned = keras.models.load_model("checkpoint.keras")
        ...     pcqat = keras.models.load_model("pcqat.keras")
    """
    from tflite_opt._keras import import_tfmot

    tfmot = import_tfmot()
    import tflite_opt.train.qat_saving  # noqa: F401 - registers the quantizers by name
    from tflite_opt.train import qat_keras_format

    # The last scope entered wins: its QAT layers replace quantize_scope's of the same names.
    with tfmot.quantization.keras.quantize_scope(), tfmot.sparsity.keras.prune_scope(), \
            tfmot.clustering.keras.cluster_scope(), \
            keras.utils.custom_object_scope(qat_keras_format.custom_objects()):
        yield


def load_model(path: str | os.PathLike, compile: bool = False, *, trust_model: bool = False,
               custom_objects: Mapping[str, Any] | None = None,
               keep_zeros: bool | None = None) -> keras.Model:
    """Loads a Keras model, including ones saved while wrapped for pruning/clustering/QAT.

    A file saved by Keras 3 (``import keras``; its ``keras_version`` says 3.x) loads as a
    Keras 3 model, one saved by tf_keras as a tf_keras model.

    The model's config is scanned first (``models/safety.py``): a file that would run its
    author's code when loaded (a ``Lambda`` layer, a class or function from a module
    outside Keras/TensorFlow/tfmot/tflite_opt) is refused unless ``trust_model=True``.

    Args:
        path: A ``.keras``/``.h5`` file or a Keras SavedModel folder.
        compile: Whether to restore the training config. Defaults to False.
        trust_model: Load even if the file carries code (Lambda layers, Python lambdas,
            other modules); only for files whose author you trust. Defaults to False.
        custom_objects: Your custom layers/functions by name; these are allowed.
            Defaults to None.
        keep_zeros: For a tf_keras QAT file whose config names plain 8-bit quantizers (as
            every PQAT file made by tfmot's own scheme does): None loads it as tflite_opt's
            PQAT when a Conv2D/Dense kernel looks pruned (>= 1% exact zeros; the next
            ``fit`` keeps them) and warns naming the layers; True does so without a warning
            (you know it is PQAT); False loads what the file says (plain QAT: ``fit`` trains
            the zeros away). Files that record their quantizers (``quantize_aware``'s) load
            as they were either way. Defaults to None. (``train/tfmot_pqat.py`` says why.)

    Raises:
        UnsafeModelError: the file would run code and ``trust_model`` is False.
        ModelLoadError: with the path and the reason, instead of TensorFlow's traceback.

    Example:
        >>> model = load_model("saved_models/digits_cnn.keras")
    """
    fmt = model_format(path)
    try:
        saved_by_keras3, version_error = saved_keras_version(path, fmt).startswith("3."), None
    except ModelLoadError as exc:  # raised after the scan, which may say more about the file
        saved_by_keras3, version_error = False, exc
    if not saved_by_keras3:  # tflite_opt's QAT quantizers, registered before the scan names them
        import tflite_opt.train.qat_saving  # noqa: F401
    if not trust_model:  # before Keras deserializes anything: loading may run the file's code
        check_model_file(path, fmt, allowed_names=registered_names(custom_objects or {}))
    if version_error is not None:
        raise version_error
    if saved_by_keras3:
        return _load_keras3(path, fmt, compile, trust_model, custom_objects)
    try:
        with optimize_scope():  # wrapped models need tfmot's custom objects to deserialize
            # safe_mode=False only lets a trusted .keras file load its Python lambdas.
            model = keras.models.load_model(os.fspath(path), custom_objects=custom_objects,
                                            compile=compile, safe_mode=not trust_model)
    except Exception as exc:  # noqa: BLE001 - any loader failure is a bad model file for the user
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if "quant_" in first_line and ("Weight count mismatch" in first_line  # .h5
                                       or "variables, but received" in first_line):  # .keras
            # A (P)CQAT model quantized by tfmot itself, or by tflite_opt before its quantizers
            # were savable: the file names the plain 8-bit quantizer (qat_saving.py says why).
            # The way out is tested for both schemes and formats (test_tfmot_qat_weights.py).
            hint = ("; this looks like a cluster-preserving (CQAT/PCQAT) QAT model whose file "
                    "does not record its quantizers (tfmot 0.8.1 saves them as plain 8-bit "
                    "QAT), so it cannot be rebuilt. Load its weights instead, for CQAT and "
                    "PCQAT alike: qat = tflite_opt.train.quantize_aware(pre_qat_model, "
                    "'cqat' or 'pcqat', per_channel_clusters=True) (pre_qat_model: the "
                    "clustered model tfmot quantized; the flag makes tfmot's per-channel "
                    "guess), then tflite_opt.load_tfmot_qat_weights("
                    f"qat, {os.fspath(path)!r}) (plain qat.load_weights works for CQAT only: "
                    "PCQAT's sparsity masks are variables the file lacks); models from "
                    "tflite_opt's quantize_aware save and load back")
        raise ModelLoadError(f"could not load Keras model from {str(path)!r} ({fmt}): "
                             f"{first_line[:300]}{hint}") from exc
    if not isinstance(model, keras.Model):
        raise ModelLoadError(f"{str(path)!r} holds a {type(model).__name__}, not a Keras model; "
                             "save it with model.save('model.keras')")
    if keep_zeros is not False:
        _keep_tfmot_pqat_zeros(model, path, warn=keep_zeros is None)
    return model


def _keep_tfmot_pqat_zeros(model: keras.Model, path: str | os.PathLike, warn: bool) -> None:
    """Loads a pruned plain-QAT file (tfmot's PQAT, which saves as plain QAT) as PQAT."""
    from tflite_opt.train.tfmot_pqat import preserve_zeros_in_place, pruned_kernels

    pruned = pruned_kernels(model)
    if not pruned and warn:  # plain QAT of an unpruned model, or not tfmot's QAT at all
        return
    preserve_zeros_in_place(model)
    if warn:
        layers = ", ".join(f"{name} ({zeros:.1%} zeros)" for name, zeros in pruned.items())
        warnings.warn(f"{os.fspath(path)!r} names plain 8-bit QAT quantizers, but kernels of "
                      f"{layers} are pruned: it is prune-preserving QAT made by tfmot (whose "
                      "PQAT files cannot say so), loaded as tflite_opt's PQAT so that fit "
                      "keeps those zeros (saved again, the file records it). If it is plain "
                      "QAT on purpose: tflite_opt.load_model("
                      f"{os.fspath(path)!r}, keep_zeros=False)", stacklevel=3)
