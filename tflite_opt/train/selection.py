"""What a ``LayerPolicy`` means for a model, the same on both Kerases.

``policy_candidates`` applies the rules that do not depend on the Keras or the library doing the
work (names must exist, skip the first convolution and the classifier, ``skip`` / ``only``, a
nested model is an error); each Keras path then keeps the candidates it can wrap
(``train/layers.py`` for tfmot, ``train/keras3/selection.py`` for Keras 3).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from tflite_opt.errors import InvalidArgumentError, UnsupportedLayerError
from tflite_opt.train.recipe import LayerPolicy


@dataclasses.dataclass(frozen=True)
class Selection:
    """Layers a method will wrap, with their per-layer settings."""

    names: tuple[str, ...]
    overrides: dict[str, Any]

    @classmethod
    def of(cls, chosen: list[str], policy: LayerPolicy, method: str) -> "Selection":
        """The chosen names with the policy's per-layer settings for ``method``."""
        overrides = policy.sparsity if method == "prune" else policy.clusters
        return cls(names=tuple(chosen),
                   overrides={k: v for k, v in overrides.items() if k in chosen})


def policy_candidates(model: Any, policy: LayerPolicy, method: str, *,
                      inner: Callable[[Any], Any], conv_types: tuple[type, ...],
                      dense_type: type, model_type: type) -> list[Any]:
    """The top-level layers of ``model`` that ``policy`` leaves for ``method``, in order.

    Args:
        model: A built Keras model (either Keras).
        policy: The layer policy.
        method: ``"prune"`` or ``"cluster"``, for messages.
        inner: Returns the layer a wrapper holds (or the layer itself).
        conv_types, dense_type, model_type: That Keras's classes.

    Raises:
        InvalidArgumentError: the policy names a layer that is not in the model.
        UnsupportedLayerError: a nested model with weights is neither skipped nor flattened.

    Example:
        >>> [l.name for l in policy_candidates(model, LayerPolicy(), "prune", inner=lambda l: l,
        ...     conv_types=(keras.layers.Conv2D,), dense_type=keras.layers.Dense,
        ...     model_type=keras.Model)]
        ['conv2', 'conv3', 'dense1']
    """
    top = list(model.layers)
    names_in_model = {layer.name for layer in top}
    for key, names in (("skip", policy.skip), ("only", policy.only or ()),
                       ("sparsity", policy.sparsity), ("clusters", policy.clusters)):
        missing = [n for n in names if n not in names_in_model]
        if missing:
            raise InvalidArgumentError(
                f"policy.{key} names layer {missing[0]!r}, which is not in model {model.name!r}; "
                f"layers with weights: {', '.join(l.name for l in top if l.weights)}")
    convs = [l for l in top if isinstance(inner(l), conv_types)]
    denses = [l for l in top if isinstance(inner(l), dense_type)]
    skip = set(policy.skip)
    if policy.skip_first_conv and convs:
        skip.add(convs[0].name)
    if policy.skip_classifier and denses:
        skip.add(denses[-1].name)
    candidates = []
    for layer in top:
        if layer.name in skip or (policy.only is not None and layer.name not in policy.only):
            continue
        if isinstance(layer, model_type):
            if layer.weights:
                raise UnsupportedLayerError(
                    f"layer {layer.name!r} ({type(layer).__name__}) is a nested model, which "
                    f"tflite_opt cannot {method}; skip it with LayerPolicy(skip=[{layer.name!r}]) "
                    "(policy: {skip: [...]} in a recipe), or flatten it into the outer functional "
                    "model")
            continue
        candidates.append(layer)
    return candidates


def check_layer_name_lists(caller: str, model: Any, **lists: Any) -> None:
    """Raises unless each of ``lists`` (e.g. ``skip=[...]``) is a list of ``model``'s layer names.

    ``caller`` starts the message (``"decompose"``); a bare string is refused, since iterating it
    would check its characters.
    """
    names = {layer.name for layer in model.layers}
    for arg, values in lists.items():
        if isinstance(values, str):
            raise InvalidArgumentError(f"{caller}: {arg} is the string {values!r}; pass a list "
                                       f"of layer names, e.g. [{values!r}]")
        unknown = [v for v in values if v not in names]
        if unknown:
            raise InvalidArgumentError(f"{caller}: {arg} names {unknown[0]!r}, which is not a "
                                       f"layer of model {model.name!r}; its layers: "
                                       f"{', '.join(sorted(names))[:300]}")
