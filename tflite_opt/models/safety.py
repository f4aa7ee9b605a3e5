"""Refusing model files that would run their author's code when loaded.

A Keras model file is a program as much as data: a ``Lambda`` layer carries Python
bytecode (``.h5``, SavedModel) or names a function to import, and a ``.keras`` config
names the module of every class it uses. Loading it with Keras runs that code.
``safe_mode`` does not cover it all: tf_keras 2.21 imports *any* module a ``.keras``
config names (``{"module": "pydoc", "class_name": "function", "config": "pipepager"}``
passes ``safe_mode``), and ``.h5`` / SavedModel Lambdas are unmarshalled with no check at
all. Keras 3.15 restricts imports to Keras' own packages, but tflite_opt loads both.

So the model's config is read *as data* first (``config.json`` from the ``.keras`` zip,
the ``model_config`` attribute of an ``.h5`` through h5py, ``keras_metadata.pb`` and the
object graph of a SavedModel through protobuf) and scanned by ``find_unsafe_objects``, a
pure function over the config dict that understands both Kerases' formats (the
``class_name`` / ``module`` / ``registered_name`` keys). Anything it flags is refused
before Keras deserializes a single object, unless the user says they trust the file.

Example:
    >>> check_model_file("downloaded.h5")        # raises UnsafeModelError on a Lambda
    >>> find_unsafe_objects(json.loads(config_json), allowed_names={"MyLayer"})
    []
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any, Collection, Iterator

from tflite_opt.errors import ModelLoadError, UnsafeModelError

# Packages whose classes and functions a model config may name: Keras (2 and 3),
# TensorFlow, tfmot's wrappers and quantize configs, and tflite_opt's own configs.
TRUSTED_PACKAGES = ("keras", "tf_keras", "tensorflow", "tensorflow_model_optimization",
                    "tflite_opt")
# Layers whose whole point is to run code stored in (or named by) the file.
CODE_CARRYING_CLASSES = {
    "Lambda": "a Lambda layer holds Python code that runs when the model is loaded or called",
    "__lambda__": "a Python lambda serialized as bytecode",
    "TorchModuleWrapper": "a TorchModuleWrapper layer unpickles a torch module",
}
# Even inside trusted packages, a *function* a config names is only called as an
# activation, initializer, loss, ...; these modules and names do I/O or run Python and
# have no business there (defense in depth: the package check above is the main rule).
_UNSAFE_FUNCTION_MODULE_PARTS = {"io", "io_ops", "gen_io_ops", "gfile", "file_io", "script_ops",
                                 "saving", "utils", "debugging", "summary", "data", "lite",
                                 "saved_model", "compat", "autograph", "distribute", "os",
                                 "subprocess", "builtins"}
_UNSAFE_FUNCTION_NAMES = {"py_function", "numpy_function", "py_func", "eager_py_func",
                          "write_file", "read_file", "get_file", "load_model", "load_library",
                          "load_op_library", "system", "exec", "eval"}
# A .keras config.json larger than this is not a model config (and is not read whole).
MAX_CONFIG_BYTES = 64 * 2**20
TRUST_HINT = ("if you trust this file's author, pass --trust_model (scripts/convert.py, "
              "scripts/optimize.py) or trust_model=True (tflite_opt.load_model)")


@dataclasses.dataclass(frozen=True)
class UnsafeObject:
    """One object in a model config that would run or import code outside Keras.

    Attributes:
        location: Where it sits in the config, e.g. ``layers[2]``.
        layer: Name of the layer it belongs to (``""`` if none).
        class_name: The config's ``class_name`` (``"Lambda"``, ``"function"``, ...).
        reason: Why it is refused.
    """

    location: str
    layer: str
    class_name: str
    reason: str

    def describe(self) -> str:
        layer = f"layer {_short(self.layer, 60)!r} " if self.layer else ""
        return f"{layer}({_short(self.class_name, 40)} at {self.location}): {self.reason}"


def _short(value: Any, limit: int = 80) -> str:
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _package(module: str) -> str:
    return module.split(".", 1)[0]


def _check_object(node: dict, allowed_names: Collection[str]) -> str | None:
    """Why one serialized object (a dict with ``class_name``) is unsafe, or None."""
    class_name = node.get("class_name")
    if not isinstance(class_name, str):
        return f"its class_name is a {type(class_name).__name__}, not a name"
    registered = node.get("registered_name")
    if class_name in allowed_names or (isinstance(registered, str) and registered in allowed_names):
        return None  # a custom object the user registered or passed in
    if class_name in CODE_CARRYING_CLASSES:
        return CODE_CARRYING_CLASSES[class_name]
    config = node.get("config")
    if isinstance(config, dict):
        # Lambda's function_type, and tf_keras' RNN cell wrappers' dropout_fn_type /
        # residual_fn_type: "lambda" means marshalled bytecode that loading unmarshals.
        for key, value in config.items():
            if isinstance(key, str) and key.endswith("_type") and value == "lambda":
                return f"its config holds marshalled Python bytecode ({_short(key, 40)}: lambda)"
    module = node.get("module")
    if module is not None:
        if not isinstance(module, str):
            return f"its module is a {type(module).__name__}, not a module name"
        if _package(module) not in TRUSTED_PACKAGES:
            return (f"it names module {_short(module)!r}, which Keras would import; accepted "
                    f"modules: {', '.join(TRUSTED_PACKAGES)}")
        if class_name == "function":
            name = config if isinstance(config, str) else ""
            parts = set(module.split("."))
            if parts & _UNSAFE_FUNCTION_MODULE_PARTS or name in _UNSAFE_FUNCTION_NAMES or \
                    not name.isidentifier():
                return (f"it names function {_short(module)}.{_short(name)!r}, which is not "
                        "an activation, initializer, loss or other modeling function")
    return None


def find_unsafe_objects(config: Any, allowed_names: Collection[str] = ()) -> list[UnsafeObject]:
    """Lists the objects in a Keras model config that would run code from the file.

    Works on the configs of tf_keras (``.h5`` ``model_config``, SavedModel metadata,
    ``.keras`` ``config.json``) and Keras 3 (``.keras``): any dict with a ``class_name``
    is a serialized object. Flagged: ``Lambda`` and other code-carrying layers, Python
    lambdas, marshalled bytecode, a ``module`` outside ``TRUSTED_PACKAGES``, and functions
    that are not modeling functions. Nothing is imported or deserialized.

    Args:
        config: The parsed JSON config (dicts, lists, scalars).
        allowed_names: Class or registered names the user trusts (their custom objects);
            such objects are allowed, their nested configs still scanned.

    Returns:
        The unsafe objects, in config order (empty if the config is safe).

    Example:
        >>> find_unsafe_objects({"class_name": "Lambda", "config": {"name": "f"}})[0].layer
        'f'
    """
    found: list[UnsafeObject] = []
    allowed = set(allowed_names)
    # An explicit stack instead of recursion: a hostile config may nest deeper than
    # Python's recursion limit (json itself parses up to ~100k levels).
    stack: list[tuple[Any, str, str]] = [(config, "", "")]
    while stack:
        node, location, layer = stack.pop()
        if isinstance(node, dict):
            if "class_name" in node:
                inner = node.get("config")
                name = inner.get("name") if isinstance(inner, dict) else None
                if isinstance(name, str) and name:
                    layer = name
                elif isinstance(node.get("name"), str):
                    layer = node["name"]
                reason = _check_object(node, allowed)
                if reason:
                    found.append(UnsafeObject(location or "top level", layer,
                                              str(node.get("class_name")), reason))
            for key, value in reversed(list(node.items())):
                if isinstance(value, (dict, list)):
                    # "config" levels are implied; "layers[2].function" reads better.
                    where = location if key == "config" else f"{location}.{_short(key, 40)}"
                    stack.append((value, where.lstrip("."), layer))
        elif isinstance(node, list):
            for i in reversed(range(len(node))):
                if isinstance(node[i], (dict, list)):
                    stack.append((node[i], f"{location}[{i}]", layer))
    return found


def check_model_config(config: Any, source: str, allowed_names: Collection[str] = ()) -> None:
    """Raises ``UnsafeModelError`` naming the first unsafe layers of ``config``.

    Example:
        >>> check_model_config(json.loads(text), source="model.keras")
    """
    unsafe, seen = [], set()
    for item in find_unsafe_objects(config, allowed_names):
        if item.layer not in seen or not item.layer:  # the first reason per layer is enough
            seen.add(item.layer)
            unsafe.append(item)
    if unsafe:
        listed = "; ".join(u.describe() for u in unsafe[:3])
        more = f" (and {len(unsafe) - 3} more)" if len(unsafe) > 3 else ""
        raise UnsafeModelError(f"model {source} was not loaded because loading it would run code "
                               f"from the file: {listed}{more}; {TRUST_HINT}")


def model_configs(path: str | os.PathLike, fmt: str) -> Iterator[tuple[str, Any]]:
    """Yields ``(what, parsed config)`` for each config Keras would deserialize from ``path``.

    ``fmt`` is ``"keras"``, ``"h5"`` or ``"saved_model"`` (see ``loading.model_format``).
    Reads files as data only: zip + JSON, h5py attributes, protobuf messages.

    Raises:
        ModelLoadError: The config cannot be read (not a model file, or corrupt).
    """
    path = Path(path)
    where = repr(str(path))
    if fmt == "keras":
        try:
            with zipfile.ZipFile(path) as archive:
                info = archive.getinfo("config.json")
                if info.file_size > MAX_CONFIG_BYTES:
                    raise ModelLoadError(f"{where} has a {info.file_size}-byte config.json, over "
                                         f"the {MAX_CONFIG_BYTES}-byte limit of a model config")
                text = archive.read(info)
        except KeyError:
            raise ModelLoadError(f"{where} is not a .keras model (no config.json inside)") from None
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelLoadError(f"could not load Keras model from {where} (keras): not a "
                                 f"readable zip: {_short(exc, 200)}") \
                from exc
        yield "config.json", _parse_json(text, f"{where} config.json")
    elif fmt == "h5":
        import h5py

        try:
            with h5py.File(path, "r") as f:
                attrs = {key: f.attrs[key] for key in ("model_config", "training_config")
                         if key in f.attrs}
        except OSError as exc:
            raise ModelLoadError(f"could not load Keras model from {where} (h5): "
                                 f"{_short(exc, 200)}") \
                from exc
        if "model_config" not in attrs:
            raise ModelLoadError(f"could not load Keras model from {where} (h5): it holds no "
                                 "model_config (a weights-only file?); save the whole model "
                                 "with model.save('model.h5')")
        for key, value in attrs.items():
            yield key, _parse_json(value, f"{where} {key}")
    elif fmt == "saved_model":
        yield from _saved_model_configs(path)
    else:
        raise ModelLoadError(f"unknown model format {fmt!r} for {where}")


def _parse_json(text: Any, what: str) -> Any:
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", "replace")
    try:
        return json.loads(str(text))
    except (ValueError, RecursionError) as exc:
        raise ModelLoadError(f"{what} is not valid JSON: {_short(exc, 200)}") from None


def _saved_model_configs(path: Path) -> Iterator[tuple[str, Any]]:
    """The Keras metadata of a SavedModel: ``keras_metadata.pb`` and the object graph's."""
    from tensorflow.core.protobuf import saved_model_pb2
    from tf_keras.protobuf import saved_metadata_pb2

    where = repr(str(path))
    metadata_file = path / "keras_metadata.pb"
    if metadata_file.is_file():
        metadata = saved_metadata_pb2.SavedMetadata()
        try:
            metadata.ParseFromString(metadata_file.read_bytes())
        except Exception as exc:  # noqa: BLE001 - protobuf's DecodeError and friends
            raise ModelLoadError(f"{where} keras_metadata.pb is corrupt: {_short(exc, 200)}") \
                from None
        for node in metadata.nodes:
            yield f"keras_metadata.pb node {node.node_path}", \
                _parse_json(node.metadata, f"{where} keras_metadata.pb")
    # Without keras_metadata.pb, tf_keras falls back to the metadata strings of the object
    # graph in saved_model.pb (pre-TF-2.5 files); scan those too.
    proto_file = path / "saved_model.pb"
    if proto_file.is_file():
        saved = saved_model_pb2.SavedModel()
        try:
            saved.ParseFromString(proto_file.read_bytes())
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"{where} saved_model.pb is corrupt: {_short(exc, 200)}") \
                from None
        for graph in saved.meta_graphs:
            for i, node in enumerate(graph.object_graph_def.nodes):
                if node.WhichOneof("kind") == "user_object" and node.user_object.metadata:
                    yield f"saved_model.pb object {i}", _parse_json(
                        node.user_object.metadata, f"{where} saved_model.pb object {i}")
    elif (path / "saved_model.pbtxt").is_file():
        raise UnsafeModelError(f"model {where} is a text SavedModel (saved_model.pbtxt), whose "
                               f"Keras metadata is not scanned; {TRUST_HINT}")


def registered_names(custom_objects: Collection[str] = ()) -> set[str]:
    """Names the user vouches for: ``custom_objects`` plus both Kerases' global registries
    (``register_keras_serializable``); Keras 3's only if the user's code imported it.

    Example:
        >>> check_model_file("m.keras", "keras", registered_names({"MyLayer": MyLayer}))
    """
    import sys

    names = set(custom_objects)
    for module_name in ("tf_keras", "keras"):
        module = sys.modules.get(module_name)
        saving = getattr(module, "saving", None)
        if saving is not None and hasattr(saving, "get_custom_objects"):
            names.update(saving.get_custom_objects())
    return names


def check_model_file(path: str | os.PathLike, fmt: str,
                     allowed_names: Collection[str] = ()) -> None:
    """Raises ``UnsafeModelError`` if loading ``path`` with Keras would run code from it.

    Args:
        path: A ``.keras`` / ``.h5`` file or a SavedModel folder.
        fmt: Its format, ``"keras"``, ``"h5"`` or ``"saved_model"``.
        allowed_names: Names of custom objects the user passes in or registered.

    Example:
        >>> check_model_file("model.h5", "h5")
    """
    for what, config in model_configs(path, fmt):
        check_model_config(config, f"{str(path)!r} ({what})", allowed_names)
