"""TFLite metadata inside the ``.tflite``: what Android's high-level APIs read from the file.

MediaPipe Tasks (``ImageClassifier`` and friends, the successor of the TFLite Task
Library) and Android Studio's ML Model Binding take the model's name, the input's
image properties and normalization, the output's meaning and the labels from the
metadata flatbuffer (``TFLITE_METADATA``) and the zip of associated files appended
to the model. The sidecar JSON carries the same facts for apps on the low-level
Interpreter API.

Writing uses MediaPipe's maintained metadata writers (``mediapipe`` >= 1.2 ships
the schema's generated Python and ``metadata_info`` / ``MetadataPopulator``).
MediaPipe 1.2.x wheels lack one native helper those writers import,
``_pywrap_metadata_version`` (the minimum metadata-parser version a buffer needs);
:func:`minimum_parser_version` supplies that value, in Python, from the schema's
documented version table, and is installed under the helper's name only when the
wheel does not have it (see BUILD_NOTES.md).

Reading (:func:`read_metadata`, used by ``scripts/inspect.py``) needs only the
generated schema code, loaded from the installed package without importing
``mediapipe`` itself, whose ``__init__`` pulls in TensorFlow and OpenCV: inspecting
a file stays fast and TensorFlow-free.

Example:
    >>> data = embed_metadata(result.tflite_bytes, ModelInfo(name="digits"),
    ...                       labels=[str(d) for d in range(10)],
    ...                       normalization=ImagePreprocessing(scale=1 / 255))
    >>> read_metadata(data)["outputs"][0]["labels"][:3]
    ['0', '1', '2']
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import sys
import types
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from tflite_opt.data.calibration import ImagePreprocessing
from tflite_opt.errors import InvalidArgumentError, InvalidTFLiteError

METADATA_NAME = "TFLITE_METADATA"  # the Model.metadata entry MediaPipe and Model Binding look up
LABELS_FILE = "labels.txt"
MEDIAPIPE_REQUIREMENT = "mediapipe==1.2.3"
_MISSING_HELPER = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
# Schema members added after metadata 1.0.0 and the parser version that reads them
# (metadata_schema.fbs's changelog; the same table MediaPipe's C++ helper encodes).
_MEMBER_VERSIONS = {
    "associated_file_vocabulary": (1, 0, 1),
    "subgraph_input_process_units": (1, 1, 0),
    "subgraph_output_process_units": (1, 1, 0),
    "bert_tokenizer": (1, 1, 0),
    "sentence_piece_tokenizer": (1, 1, 0),
    "subgraph_input_tensor_groups": (1, 2, 0),
    "subgraph_output_tensor_groups": (1, 2, 0),
    "regex_tokenizer": (1, 2, 1),
    "audio_properties": (1, 3, 0),
    "associated_file_scann_index": (1, 4, 0),
    "associated_file_version": (1, 4, 1),
    "custom_metadata": (1, 5, 0),
}


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """The general fields of the metadata: who made what, under which license.

    Args:
        name: Model name shown by apps and Android Studio. Defaults to "" (``save()``
            uses the file name).
        description: What the model does. Defaults to "" (``save()`` describes the
            conversion).
        version: Model version string. Defaults to "" (the writer then uses the
            model's content hash, so two different files never share a version).
        author: Author or organisation. Defaults to "" (not written).
        license: License text or SPDX id. Defaults to "" (not written).

    Example:
        >>> ModelInfo(name="digits", author="ACME", license="Apache-2.0")
    """

    name: str = ""
    description: str = ""
    version: str = ""
    author: str = ""
    license: str = ""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, str):
                raise InvalidArgumentError(f"ModelInfo.{field.name} must be a string, got "
                                           f"{type(value).__name__}")

    def to_dict(self) -> dict[str, str]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- schema code


def _schema_module() -> types.ModuleType:
    """MediaPipe's generated metadata schema, loaded without importing ``mediapipe``.

    The generated file imports only ``flatbuffers``; going through the package would
    import TensorFlow and OpenCV (its ``__init__`` loads every task) for a read.
    """
    cached = sys.modules.get("tflite_opt._metadata_schema")
    if cached is not None:
        return cached
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise InvalidArgumentError(
            f"TFLite metadata needs the {MEDIAPIPE_REQUIREMENT} package, which is not installed; "
            f"install it with `pip install --no-deps {MEDIAPIPE_REQUIREMENT} "
            "opencv-python-headless==5.0.0.93` (make does), or pass metadata=False "
            "(--nometadata) to write the file without metadata")
    path = Path(list(spec.submodule_search_locations)[0]) / "tasks" / "metadata" / \
        "metadata_schema_py_generated.py"
    module_spec = importlib.util.spec_from_file_location("tflite_opt._metadata_schema", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    sys.modules["tflite_opt._metadata_schema"] = module
    return module


def minimum_parser_version(metadata_buffer: bytes) -> str:
    """The oldest metadata-parser version that can read ``metadata_buffer``, e.g. ``"1.1.0"``.

    The largest version among the schema members the buffer uses (``_MEMBER_VERSIONS``),
    at least 1.0.0. Written into ``ModelMetadata.min_parser_version`` so that an
    older runtime refuses a file it would misread.

    Example:
        >>> minimum_parser_version(metadata_buffer)   # input/output process units -> 1.1.0
        '1.1.0'
    """
    fb = _schema_module()
    buf = bytes(metadata_buffer)
    if len(buf) < 8 or not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(buf, 0):
        raise InvalidArgumentError("not a TFLite metadata buffer (identifier 'M001' missing)")
    root = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(buf, 0))
    used: set[str] = set()

    def files(entries: Sequence[Any] | None) -> None:
        for entry in entries or []:
            if entry.type == fb.AssociatedFileType.VOCABULARY:
                used.add("associated_file_vocabulary")
            if entry.type == fb.AssociatedFileType.SCANN_INDEX_FILE:
                used.add("associated_file_scann_index")
            if entry.version is not None:
                used.add("associated_file_version")

    def units(entries: Sequence[Any] | None) -> None:
        kinds = {fb.ProcessUnitOptions.BertTokenizerOptions: "bert_tokenizer",
                 fb.ProcessUnitOptions.SentencePieceTokenizerOptions: "sentence_piece_tokenizer",
                 fb.ProcessUnitOptions.RegexTokenizerOptions: "regex_tokenizer"}
        for entry in entries or []:
            if entry.optionsType in kinds:
                used.add(kinds[entry.optionsType])

    for subgraph in root.subgraphMetadata or []:
        for tensor in (subgraph.inputTensorMetadata or []) + (subgraph.outputTensorMetadata or []):
            files(tensor.associatedFiles)
            units(tensor.processUnits)
            content = tensor.content
            if content is not None and \
                    content.contentPropertiesType == fb.ContentProperties.AudioProperties:
                used.add("audio_properties")
        files(subgraph.associatedFiles)
        for field, member in (("inputProcessUnits", "subgraph_input_process_units"),
                              ("outputProcessUnits", "subgraph_output_process_units")):
            if getattr(subgraph, field) is not None:
                used.add(member)
                units(getattr(subgraph, field))
        if subgraph.inputTensorGroups is not None:
            used.add("subgraph_input_tensor_groups")
        if subgraph.outputTensorGroups is not None:
            used.add("subgraph_output_tensor_groups")
        if subgraph.customMetadata is not None:
            used.add("custom_metadata")
    files(root.associatedFiles)
    version = max([(1, 0, 0)] + [_MEMBER_VERSIONS[m] for m in used])
    return ".".join(str(v) for v in version)


def _mediapipe_writers() -> tuple[Any, Any, Any]:
    """``(metadata, metadata_info, metadata_schema)`` modules of MediaPipe's writers."""
    _schema_module()  # a missing package fails here, with the install line
    try:
        importlib.import_module(_MISSING_HELPER)
    except ImportError:
        # mediapipe 1.2.x wheels ship the writers but not this native helper; supply
        # the one function they call from it (see the module docstring).
        helper = types.ModuleType(_MISSING_HELPER)
        helper.GetMinimumMetadataParserVersion = minimum_parser_version
        parents = _MISSING_HELPER.split(".")
        for depth in range(3, len(parents)):
            name = ".".join(parents[:depth])
            if name not in sys.modules:
                package = types.ModuleType(name)
                package.__path__ = []  # an empty namespace: nothing else resolves in it
                sys.modules[name] = package
        sys.modules[_MISSING_HELPER] = helper
    from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_fb
    from mediapipe.tasks.python.metadata import metadata
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_info

    return metadata, metadata_info, metadata_fb


# ----------------------------------------------------------------------------- writing


def _io_tensors(tflite_bytes: bytes) -> tuple[list[dict], list[dict]]:
    """Name, shape, dtype and quantization of the main subgraph's inputs and outputs."""
    from ai_edge_litert import schema_py_generated as schema

    from tflite_opt.runtime.model_file import TENSOR_TYPES

    model = schema.Model.GetRootAs(tflite_bytes, 0)
    subgraph = model.Subgraphs(0)

    def describe(index: int) -> dict:
        tensor = subgraph.Tensors(index)
        quant = tensor.Quantization()
        scales = quant.ScaleAsNumpy() if quant is not None and quant.ScaleLength() else None
        return {"name": tensor.Name().decode("utf-8", "replace"),
                "shape": tensor.ShapeAsNumpy().tolist() if tensor.ShapeLength() else [],
                "dtype": TENSOR_TYPES[tensor.Type()][0], "quantized": scales is not None}

    return ([describe(subgraph.Inputs(i)) for i in range(subgraph.InputsLength())],
            [describe(subgraph.Outputs(i)) for i in range(subgraph.OutputsLength())])


def _pixel_normalization(normalization: ImagePreprocessing, channels: int) -> tuple[list, list]:
    """``(pixel * scale - mean) / std`` as the metadata's ``(pixel - mean') / std'``."""
    mean = np.broadcast_to(np.asarray(normalization.mean, np.float64), (channels,))
    std = np.broadcast_to(np.asarray(normalization.std, np.float64), (channels,))
    return ([float(m / normalization.scale) for m in mean],
            [float(s / normalization.scale) for s in std])


def embed_metadata(tflite_bytes: bytes, info: ModelInfo | None = None, *,
                   labels: Sequence[str] | None = None,
                   normalization: ImagePreprocessing | Mapping[str, Any] | None = None,
                   raw_pixel_input: bool = False) -> bytes:
    """Returns ``tflite_bytes`` with TFLite metadata and its associated files embedded.

    What is written:

    * general: name, description, version, author, license (``info``);
    * each input: an image (color space, the normalization mean/std in 0..255 pixel
      terms, value range) when it is ``(1, H, W, 1|3)`` and either ``normalization``
      is known or ``raw_pixel_input``; otherwise a plain feature tensor;
    * each output: classification scores with ``labels.txt`` attached when ``labels``
      match its last dimension; otherwise a plain feature tensor;
    * ``labels.txt`` as an associated file (the zip appended to the flatbuffer).

    The model's graph and weights are unchanged (its outputs stay bit-identical).

    Args:
        tflite_bytes: A ``.tflite`` flatbuffer without metadata (a converter output).
        info: General fields. Defaults to ``ModelInfo()`` with the content hash as version.
        labels: Class names, one per output score. Defaults to None.
        normalization: How 0..255 pixels become the model's input. Defaults to None
            (unknown: no image claims are made for float inputs).
        raw_pixel_input: The input takes unnormalized uint8 pixels (normalization is
            inside the graph, as the MediaPipe target builds it). Defaults to False.

    Returns:
        The ``.tflite`` bytes with metadata.

    Raises:
        InvalidArgumentError: ``mediapipe`` is not installed (the message gives the
            install command and the ``metadata=False`` way out).

    Example:
        >>> with_md = embed_metadata(result.tflite_bytes, ModelInfo(name="digits"),
        ...                          labels=[str(d) for d in range(10)])
    """
    import flatbuffers

    metadata, metadata_info, metadata_fb = _mediapipe_writers()
    from mediapipe.tasks.metadata import schema_py_generated as schema_fb

    data = bytes(tflite_bytes)
    info = info or ModelInfo()
    if isinstance(normalization, Mapping):
        normalization = ImagePreprocessing.from_dict(normalization)
    inputs, outputs = _io_tensors(data)
    tensor_types = {"uint8": schema_fb.TensorType.UINT8, "float32": schema_fb.TensorType.FLOAT32}

    input_mds = []
    for tensor in inputs:
        shape = tensor["shape"]
        image_like = len(shape) == 4 and shape[-1] in (1, 3)
        raw = raw_pixel_input and tensor["dtype"] == "uint8" and not tensor["quantized"]
        if image_like and (raw or normalization is not None):
            mean, std = ([0.0], [1.0]) if raw else _pixel_normalization(normalization, shape[-1])
            color = metadata_fb.ColorSpaceType.RGB if shape[-1] == 3 else \
                metadata_fb.ColorSpaceType.GRAYSCALE
            described = "uint8 RGB pixels, 0..255, normalized inside the model" if raw else \
                "image pixels, normalized as (pixel - mean) / std"
            input_mds.append(metadata_info.InputImageTensorMd(
                name="image", description=f"Input image {shape[1]}x{shape[2]}: {described}.",
                norm_mean=mean, norm_std=std, color_space_type=color,
                tensor_type=tensor_types.get(tensor["dtype"])))
        else:
            input_mds.append(metadata_info.TensorMd(
                name=tensor["name"], description=f"{tensor['dtype']} tensor of shape {shape}."))

    label_list = None if labels is None else [str(label) for label in labels]
    output_mds, associated = [], {}
    for tensor in outputs:
        classes = tensor["shape"][-1] if len(tensor["shape"]) == 2 else None
        if label_list is not None and len(outputs) == 1 and classes == len(label_list):
            output_mds.append(metadata_info.ClassificationTensorMd(
                name="score", description=f"Scores of the {classes} classes in {LABELS_FILE} "
                "(one per class, higher is more likely).",
                label_files=[metadata_info.LabelFileMd(LABELS_FILE)],
                tensor_type=tensor_types.get(tensor["dtype"])))
            associated[LABELS_FILE] = "".join(label + "\n" for label in label_list).encode()
        else:
            if label_list is not None:
                warnings.warn(f"{len(label_list)} labels do not match output {tensor['name']!r} "
                              f"of shape {tensor['shape']}; the metadata describes it as a plain "
                              "tensor without labels", stacklevel=3)
            output_mds.append(metadata_info.TensorMd(
                name=tensor["name"], description=f"{tensor['dtype']} tensor of shape "
                f"{tensor['shape']}."))

    general = metadata_info.GeneralMd(
        name=info.name or "model", description=info.description or None,
        version=info.version or "sha256:" + hashlib.sha256(data).hexdigest()[:16],
        author=info.author or None, licenses=info.license or None)
    model_md = general.create_metadata()
    subgraph = metadata_fb.SubGraphMetadataT()
    subgraph.inputTensorMetadata = [md.create_metadata() for md in input_mds]
    subgraph.outputTensorMetadata = [md.create_metadata() for md in output_mds]
    model_md.subgraphMetadata = [subgraph]

    builder = flatbuffers.Builder(0)
    builder.Finish(model_md.Pack(builder), metadata.MetadataPopulator.METADATA_FILE_IDENTIFIER)
    populator = metadata.MetadataPopulator.with_model_buffer(bytearray(data))
    populator.load_metadata_buffer(builder.Output())  # sets min_parser_version
    if associated:
        populator.load_associated_file_buffers(associated)
    populator.populate()
    with_metadata = bytes(populator.get_model_buffer())
    del populator  # its __del__ removes a temp file: run it now, not at interpreter exit
    return with_metadata


# ----------------------------------------------------------------------------- reading


def _metadata_buffer(data: bytes) -> bytes | None:
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(data, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() == METADATA_NAME.encode():
            buffer = model.Buffers(entry.Buffer())
            return buffer.DataAsNumpy().tobytes() if buffer.DataLength() else None
    return None


def has_metadata(tflite_bytes: bytes) -> bool:
    """Whether the flatbuffer carries a ``TFLITE_METADATA`` entry (cheap: no schema import)."""
    return _metadata_buffer(bytes(tflite_bytes)) is not None


def _text(value: Any) -> str | None:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _enum_name(enum_class: Any, value: int) -> str:
    names = {v: k for k, v in vars(enum_class).items() if not k.startswith("_")}
    return names.get(value, str(value))


def _tensor_dict(fb: Any, tensor: Any, files: Mapping[str, bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": _text(tensor.name), "description": _text(tensor.description)}
    content = tensor.content
    if content is not None:
        out["content"] = _enum_name(fb.ContentProperties, content.contentPropertiesType)
        if content.contentPropertiesType == fb.ContentProperties.ImageProperties:
            out["color_space"] = _enum_name(fb.ColorSpaceType, content.contentProperties.colorSpace)
    for unit in tensor.processUnits or []:
        if unit.optionsType == fb.ProcessUnitOptions.NormalizationOptions:
            out["normalization"] = {"mean": [float(v) for v in unit.options.mean],
                                    "std": [float(v) for v in unit.options.std],
                                    "formula": "(pixel - mean) / std"}
    if tensor.stats is not None and tensor.stats.min is not None:
        out["range"] = [[float(v) for v in tensor.stats.min], [float(v) for v in tensor.stats.max]]
    attached = []
    for entry in tensor.associatedFiles or []:
        name = _text(entry.name)
        attached.append({"name": name, "type": _enum_name(fb.AssociatedFileType, entry.type)})
        if entry.type == fb.AssociatedFileType.TENSOR_AXIS_LABELS and name in files:
            out["labels"] = files[name].decode("utf-8", "replace").splitlines()
    if attached:
        out["associated_files"] = attached
    return out


def read_metadata(model: Any) -> dict[str, Any] | None:
    """The TFLite metadata of a ``.tflite`` (path or bytes) as a dict; None if it has none.

    Keys: ``name``, ``description``, ``version``, ``author``, ``license``,
    ``min_parser_version``, ``inputs`` and ``outputs`` (per tensor: name, description,
    content, color space, normalization, range, labels), ``associated_files``
    (name -> size in bytes).

    Raises:
        InvalidTFLiteError: the file is not a valid ``.tflite`` or its metadata is corrupt.

    Example:
        >>> read_metadata("out/model_int8.tflite")["outputs"][0]["labels"]
    """
    from tflite_opt.runtime.model_file import read_tflite

    data = read_tflite(model)
    raw = _metadata_buffer(data)
    if raw is None:
        return None
    fb = _schema_module()
    if len(raw) < 8 or not fb.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0):
        raise InvalidTFLiteError("the file's TFLITE_METADATA buffer is not a metadata flatbuffer "
                                 "(identifier 'M001' missing); re-save the model")
    files: dict[str, bytes] = {}
    if zipfile.is_zipfile(io.BytesIO(data)):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                files = {name: archive.read(name) for name in archive.namelist()}
        except (zipfile.BadZipFile, OSError) as exc:
            raise InvalidTFLiteError(f"the files attached to the model are unreadable: {exc}") from exc
    try:
        root = fb.ModelMetadataT.InitFromObj(fb.ModelMetadata.GetRootAs(raw, 0))
        subgraph = (root.subgraphMetadata or [None])[0]
        return {
            "name": _text(root.name), "description": _text(root.description),
            "version": _text(root.version), "author": _text(root.author),
            "license": _text(root.license), "min_parser_version": _text(root.minParserVersion),
            "inputs": [_tensor_dict(fb, t, files) for t in
                       (subgraph.inputTensorMetadata or [])] if subgraph else [],
            "outputs": [_tensor_dict(fb, t, files) for t in
                        (subgraph.outputTensorMetadata or [])] if subgraph else [],
            "associated_files": {name: len(content) for name, content in files.items()},
        }
    except (IndexError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidTFLiteError(f"the file's TFLite metadata is corrupt: {exc}") from exc


__all__ = ["LABELS_FILE", "METADATA_NAME", "ModelInfo", "embed_metadata", "has_metadata",
           "minimum_parser_version", "read_metadata"]
