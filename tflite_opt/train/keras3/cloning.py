"""Copies of Keras 3 models: a deep copy that owns its variables, and a copy with layers wrapped.

``keras.models.clone_model`` builds new layers with fresh weights; a ``clone_function`` that
returns the layer it is given reuses that layer (and its variables). Wrapping therefore first
deep-copies the model, then re-clones the copy with the selected layers wrapped, so the caller's
model is never modified.
"""

from __future__ import annotations

from typing import Any, Callable

from tflite_opt._keras import keras3
from tflite_opt.errors import InvalidArgumentError, UnsupportedLayerError

keras = keras3()


def is_graph_model(model: Any) -> bool:
    """Whether ``model`` is a Keras 3 Sequential or Functional model (not subclassed)."""
    from keras.src.models.functional import Functional  # no public alias in Keras 3.15

    return isinstance(model, (keras.Sequential, Functional))


def check_graph_model(model: Any, what: str) -> None:
    """Raises unless ``model`` is a built Keras 3 Sequential or Functional model."""
    if not isinstance(model, keras.Model):
        raise InvalidArgumentError(f"{what} needs a Keras model, got a {type(model).__name__}; "
                                   "put the layer in a model first, e.g. "
                                   "keras.Sequential([keras.Input(shape), layer])")
    if not is_graph_model(model):
        raise UnsupportedLayerError(
            f"model {model.name!r} ({type(model).__name__}) is a subclassed Keras 3 model; {what} "
            "needs a Sequential or Functional model (its layers are cloned into wrappers). Rebuild "
            "it with keras.Input(...) and the functional API")
    if not model.built or not getattr(model, "inputs", None):
        raise InvalidArgumentError(f"model {model.name!r} is not built; give it a keras.Input(...) "
                                   f"or call model.build(input_shape) before {what}")


def deep_copy(model: Any) -> Any:
    """A structurally identical Keras 3 model with its own variables (the caller's untouched).

    Example:
        >>> copy = deep_copy(model)
    """
    from tflite_opt.train.keras3 import custom_objects

    # Not clone_model: it also recompiles a compiled Sequential from its compile config, which
    # fails on losses/metrics Keras cannot deserialize (a copy needs no training state). Not
    # Sequential.from_config either: it rebuilds the graph after each added layer, leaving the
    # first layer called once per layer (a "shared" layer to Keras 3 QAT). The constructor
    # builds once.
    with keras.saving.custom_object_scope(custom_objects()):
        if isinstance(model, keras.Sequential):
            spec = model.inputs[0]
            layers = [type(layer).from_config(layer.get_config()) for layer in model.layers]
            copy = keras.Sequential([keras.Input(shape=tuple(spec.shape[1:]), dtype=spec.dtype),
                                     *layers], name=model.name)
        else:
            copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def clone_with(model: Any, replace: Callable[[Any], Any | None]) -> Any:
    """Deep-copies ``model`` and swaps each layer for which ``replace`` returns a new layer."""
    copy = deep_copy(model)

    def clone_function(layer: Any) -> Any:
        new = replace(layer)
        return layer if new is None else new

    return keras.models.clone_model(copy, clone_function=clone_function)
