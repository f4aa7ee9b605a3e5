"""The one place that imports TensorFlow and the two Kerases for tflite_opt.

tflite_opt takes models built with either Keras:

- Keras 2 (``tf_keras``, exported here as ``keras``): pruning, clustering and QAT run on
  tensorflow-model-optimization 0.8.1, which only works on Keras 2. tfmot is imported through
  :func:`import_tfmot`, and only for tf_keras models.
- Keras 3 (``import keras``, :func:`keras3`): tflite_opt's own implementation in
  ``tflite_opt.train.keras3``.

Importing tflite_opt does not change which Keras ``tf.keras`` is for the user's code.
TensorFlow picks it lazily, on the first attribute access, from ``TF_USE_LEGACY_KERAS``; tfmot's
``compat`` module sets that variable to ``1`` when it is imported. So this module resolves
``tf.keras`` (and its ``tf.losses``/``tf.metrics``/... aliases) right after importing TensorFlow,
under the user's own setting, and :func:`import_tfmot` restores the variable after tfmot's import
so that subprocesses do not inherit it either.
"""

from __future__ import annotations

import contextlib
import os
import sys
from types import ModuleType
from typing import Any, Iterator

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LEGACY_KERAS_VARIABLE = "TF_USE_LEGACY_KERAS"
# TensorFlow's lazily resolved Keras modules (tensorflow/__init__.py, KerasLazyLoader).
_TF_KERAS_ALIASES = ("keras", "losses", "metrics", "optimizers", "initializers")


def _import_quietly():
    """Imports TensorFlow and tf_keras with the C++ start-up lines kept off stderr.

    TensorFlow's native code logs oneDNN/CUDA/CPU-feature notices at import and at the
    first device enumeration (through absl before its logging is initialized, so
    TF_CPP_MIN_LOG_LEVEL does not stop them); ``TFLITE_OPT_SHOW_TF_IMPORT_LOGS=1`` shows
    them. File descriptor 2 is pointed at a temporary file for the import only; if
    the import fails, what was captured is printed so nothing is lost.
    """
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
            import tf_keras

            # Enumerating devices is where the CUDA probe logs on CPU-only machines; it
            # does not initialize the runtime, so logical devices can still be set later.
            tensorflow.config.list_physical_devices()
        except BaseException:
            os.dup2(saved, 2)
            captured.seek(0)
            sys.stderr.write(captured.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    return tensorflow, tf_keras


def _pin_tf_keras(tensorflow: ModuleType) -> None:
    """Resolves TensorFlow's lazy ``tf.keras`` loaders now, under the user's setting.

    Once resolved, a loader keeps its choice, so tfmot setting ``TF_USE_LEGACY_KERAS=1`` later
    cannot turn the user's ``tf.keras`` into Keras 2.
    """
    for name in _TF_KERAS_ALIASES:
        loader = getattr(tensorflow, name, None)
        if loader is None:
            continue
        try:
            dir(loader)  # KerasLazyLoader.__dir__ initializes the loader
        except ImportError:
            # The user's Keras cannot load here (e.g. KERAS_BACKEND names a backend that is not
            # installed); it would fail the same way on their first use, and tflite_opt's
            # tf_keras path does not need it.
            pass


if os.environ.get("TFLITE_OPT_SHOW_TF_IMPORT_LOGS") == "1":
    import tensorflow as tf  # noqa: E402
    import tf_keras as keras  # noqa: E402
else:
    tf, keras = _import_quietly()
_pin_tf_keras(tf)


@contextlib.contextmanager
def _legacy_keras_variable_restored() -> Iterator[None]:
    saved = os.environ.get(LEGACY_KERAS_VARIABLE)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(LEGACY_KERAS_VARIABLE, None)
        else:
            os.environ[LEGACY_KERAS_VARIABLE] = saved


def import_tfmot() -> ModuleType:
    """Imports tensorflow-model-optimization without leaving ``TF_USE_LEGACY_KERAS`` set.

    tfmot 0.8.1 picks tf_keras itself (its ``compat`` module sets the variable, then uses
    ``tf_keras`` because ``tf.keras`` is Keras 3); the variable is restored afterwards.

    Example:
        >>> tfmot = import_tfmot()
        >>> tfmot.sparsity.keras.prune_low_magnitude
    """
    if "tensorflow_model_optimization" in sys.modules:
        return sys.modules["tensorflow_model_optimization"]
    with _legacy_keras_variable_restored():
        import tensorflow_model_optimization

        # Submodules imported later by name need the package's compat module loaded now,
        # while the variable is being restored.
        from tensorflow_model_optimization.python.core.keras import compat  # noqa: F401
    return tensorflow_model_optimization


def keras3() -> ModuleType:
    """The Keras 3 module (``import keras``); TensorFlow depends on it, so it is installed."""
    import keras as keras3_module

    return keras3_module


FLAVORS = ("tf_keras", "keras3")


def keras_of_flavor(flavor: str) -> ModuleType:
    """The Keras module of a flavor name: ``tf_keras`` (Keras 2) or ``keras3`` (``import keras``).

    Raises:
        InvalidArgumentError: ``flavor`` is neither.

    Example:
        >>> keras_of_flavor("keras3").Sequential
    """
    if flavor not in FLAVORS:
        from tflite_opt.errors import InvalidArgumentError

        raise InvalidArgumentError(f"flavor is {flavor!r}; accepted: 'tf_keras' (Keras 2) or "
                                   "'keras3' (import keras)")
    return keras3() if flavor == "keras3" else keras


def is_keras3_object(obj: Any) -> bool:
    """Whether ``obj`` is a Keras 3 model or layer (checked by class, never by name)."""
    return isinstance(obj, keras3().layers.Layer)


def keras_flavor(model: Any) -> str:
    """Which Keras built ``model``: ``"keras3"`` or ``"tf_keras"``.

    Raises:
        InvalidArgumentError: ``model`` is not a Keras model or layer of either Keras.

    Example:
        >>> keras_flavor(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]))
        'keras3'
    """
    if isinstance(model, keras.layers.Layer):
        return "tf_keras"
    if is_keras3_object(model):
        return "keras3"
    from tflite_opt.errors import InvalidArgumentError

    raise InvalidArgumentError(
        f"model is a {type(model).__module__}.{type(model).__name__}, not a Keras model; pass a "
        "Keras 3 model (import keras) or a tf_keras model (import tf_keras), or a model file "
        "through tflite_opt.load_model(path)")


__all__ = ["tf", "keras", "keras3", "keras_flavor", "is_keras3_object", "import_tfmot"]
