"""The sidecar JSON and ``labels.txt`` an Android app needs next to the ``.tflite``.

The sidecar holds everything the app must know to feed the model and read its
output without opening the flatbuffer: input/output names, shapes, dtypes,
quantization scale and zero point, the normalization to apply to raw pixels,
labels and signature names. All files of one save are checked for existence
first and then written atomically, so a refused or failed save leaves nothing
half-written.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from tflite_opt.convert import tensors
from tflite_opt.convert.metadata import has_metadata
from tflite_opt.data.calibration import ImagePreprocessing
from tflite_opt.errors import DataError, InvalidArgumentError, OutputExistsError
from tflite_opt.files import atomic_write_bytes, atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from tflite_opt.convert.converter import ConversionResult

SIDECAR_FORMAT = "tflite_opt.sidecar/1"
LABELS_FILE = "labels.txt"


def sidecar_path(tflite_path: str | os.PathLike) -> Path:
    """``out/model.tflite`` -> ``out/model.json``."""
    return Path(tflite_path).with_suffix(".json")


def build_sidecar(result: "ConversionResult", model_file: str = "model.tflite",
                  labels: Sequence[str] | None = None,
                  normalization: ImagePreprocessing | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Returns the sidecar dict for ``result`` (see the module docstring).

    Example:
        >>> build_sidecar(result, "model_int8.tflite", labels=["cat", "dog"])["inputs"][0]
        {'name': 'serving_default_image:0', 'shape': [1, 16, 16, 1], 'dtype': 'int8', ...}
    """
    io = tensors.io_details(result.tflite_bytes)
    sigs = tensors.signatures(result.tflite_bytes)
    if isinstance(normalization, ImagePreprocessing):
        norm = normalization.to_dict()
    elif normalization is None:
        norm = None
    elif isinstance(normalization, Mapping):
        norm = ImagePreprocessing.from_dict(normalization).to_dict()
    else:
        raise InvalidArgumentError(f"normalization must be an ImagePreprocessing or a dict, got "
                                   f"{type(normalization).__name__}")
    return {
        "format": SIDECAR_FORMAT,
        "model_file": model_file,
        "precision": result.precision.value,
        "size_bytes": result.size_bytes,
        "sha256": result.sha256,
        "inputs": io["inputs"],
        "outputs": io["outputs"],
        "signatures": sigs,
        "normalization": norm,
        "labels": list(labels) if labels is not None else None,
        "labels_file": LABELS_FILE if labels is not None else None,
        "select_tf_ops": list(result.select_tf_ops),
        "requires_flex_delegate": result.requires_flex_delegate,
        "float_nodes": list(result.float_nodes),
        "target": result.target,
        "tflite_metadata": has_metadata(result.tflite_bytes),
        "conversion": result.to_dict(),
    }


def _read_labels(labels: Sequence[str] | str | os.PathLike | None) -> list[str] | None:
    if labels is None:
        return None
    if isinstance(labels, (str, os.PathLike)):
        path = Path(labels)
        if not path.exists() or path.is_dir():
            raise DataError(f"labels file {str(path)!r} does not exist; pass a text file with one "
                            "label per line, or a list of strings")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(f"labels file {str(path)!r} is not UTF-8 text (byte {exc.start}: "
                            f"{exc.reason}); save it as UTF-8, one label per line") from None
        labels = [ln.strip() for ln in text.splitlines() if ln.strip()]
    out = [str(l) for l in labels]
    if not out:
        raise DataError("labels is empty; pass one label per model output class, or None")
    if any("\n" in l for l in out):
        raise DataError("a label contains a newline; labels.txt holds one label per line")
    return out


def _check_label_count(labels: list[str] | None, result: "ConversionResult") -> None:
    """One label per class: an app would otherwise show the wrong name for a class."""
    outputs = tensors.io_details(result.tflite_bytes)["outputs"]
    if labels is None or len(outputs) != 1 or not outputs[0]["shape"]:
        return
    num_classes = int(outputs[0]["shape"][-1])
    if num_classes > 1 and len(labels) != num_classes:
        raise DataError(f"labels has {len(labels)} entries but the model's output "
                        f"{outputs[0]['name']!r} has {num_classes} classes; pass one label per "
                        "class (one per line in the labels file)")


def _model_info(result: "ConversionResult", path: Path, info: Any,
                labels: Sequence[str] | None) -> Any:
    """The caller's ``ModelInfo``, its blank name and description filled from the file."""
    from tflite_opt import __version__
    from tflite_opt.convert.metadata import ModelInfo

    info = ModelInfo() if info is None else info
    if not isinstance(info, ModelInfo):
        raise InvalidArgumentError(f"model_info must be a tflite_opt.convert.ModelInfo, got "
                                   f"{type(info).__name__}")
    what = f"Image classifier ({len(labels)} classes)" if labels else "Model"
    for_target = f" for {result.target}" if result.target else ""
    return dataclasses.replace(
        info, name=info.name or path.stem,
        description=info.description or f"{what}{for_target}: {result.precision.value} TFLite "
        f"file made by tflite_opt {__version__}.")


def save_with_sidecar(result: "ConversionResult", path: str | os.PathLike, *, overwrite: bool = False,
                      labels: Sequence[str] | str | os.PathLike | None = None,
                      normalization: ImagePreprocessing | Mapping[str, Any] | None = None,
                      metadata: bool = True, model_info: Any = None) -> Path:
    """Writes ``path`` (.tflite), ``path.json`` and ``labels.txt``; see ``ConversionResult.save``."""
    path = Path(path)
    if path.suffix.lower() != ".tflite":
        raise InvalidArgumentError(f"output path {str(path)!r} must end in .tflite")
    label_list = _read_labels(labels)
    _check_label_count(label_list, result)
    side = sidecar_path(path)
    labels_path = path.parent / LABELS_FILE
    labels_text = "".join(l + "\n" for l in label_list) if label_list else None
    if result.target is not None:
        from tflite_opt.convert.targets import check_save

        # The file takes raw pixels (its normalization is in the graph): the app applies none.
        normalization = check_save(result, label_list, metadata)
    if metadata:
        from tflite_opt.convert.metadata import embed_metadata

        result = dataclasses.replace(result, tflite_bytes=embed_metadata(
            result.tflite_bytes, _model_info(result, path, model_info, label_list),
            labels=label_list, normalization=normalization,
            raw_pixel_input=result.target is not None))
    sidecar = build_sidecar(result, path.name, label_list, normalization)
    if not overwrite:
        existing = [p for p in (path, side) if p.exists()]
        # labels.txt is shared by every model in a folder: the same labels are not a conflict.
        if labels_text is not None and labels_path.exists() and \
                labels_path.read_text(encoding="utf-8") != labels_text:
            existing.append(labels_path)
        if existing:
            raise OutputExistsError(
                f"output file(s) {', '.join(repr(str(p)) for p in existing)} already exist; pass "
                "overwrite=True (or --overwrite) to replace them, or choose another --output")
    # The model goes last so that a present .tflite always has its sidecar beside it.
    if labels_text is not None:
        atomic_write_text(labels_path, labels_text, overwrite=True)
    atomic_write_json(side, sidecar, overwrite=True)
    atomic_write_bytes(path, result.tflite_bytes, overwrite=True)
    return path
