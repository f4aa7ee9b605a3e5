"""Which Keras 3 layers tflite_opt prunes and clusters, and how a wrapper swaps their kernels.

The Keras 3 counterpart of ``tflite_opt/train/layers.py``'s registry: per layer class, the
attribute that *stores* the kernel variable (``Dense.kernel`` is a property over ``_kernel``),
and the name reported by ``weight_stats``. It mirrors tfmot's prune/cluster registries, so both
Kerases optimize the same weights: convolution and dense kernels, the depthwise kernel of
``DepthwiseConv2D``, the pointwise kernel of ``SeparableConv2D``, and embeddings.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
from typing import Any, Iterator, Mapping

from tflite_opt._keras import keras3

keras = keras3()


@dataclasses.dataclass(frozen=True)
class KernelSlot:
    """Where a layer keeps the kernel tflite_opt optimizes.

    Attributes:
        storage: Attribute holding the variable (read by the layer's ``call``, directly or
            through a property), e.g. ``"_kernel"``.
        name: The name reported in ``weight_stats`` and in error messages, e.g. ``"kernel"``.
    """

    storage: str
    name: str


# Subclasses before their bases; none of the Keras 3 depthwise/separable classes is a Conv.
KERNEL_SLOTS: dict[type, KernelSlot] = {
    keras.layers.SeparableConv1D: KernelSlot("pointwise_kernel", "pointwise_kernel"),
    keras.layers.SeparableConv2D: KernelSlot("pointwise_kernel", "pointwise_kernel"),
    keras.layers.DepthwiseConv1D: KernelSlot("kernel", "depthwise_kernel"),
    keras.layers.DepthwiseConv2D: KernelSlot("kernel", "depthwise_kernel"),
    keras.layers.Conv1D: KernelSlot("_kernel", "kernel"),
    keras.layers.Conv2D: KernelSlot("_kernel", "kernel"),
    keras.layers.Conv3D: KernelSlot("_kernel", "kernel"),
    keras.layers.Dense: KernelSlot("_kernel", "kernel"),
    keras.layers.Embedding: KernelSlot("_embeddings", "embeddings"),
}

# Layers whose output channel is the kernel's last axis: per-channel clustering applies to them
# (as tfmot's, which clusters Conv2D per channel only; Conv1D/3D follow the same layout).
PER_CHANNEL_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)

CONV_TYPES = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D,
              keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D,
              keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)


def kernel_slot(layer: Any) -> KernelSlot | None:
    """The kernel slot of ``layer`` (exact registry classes and their subclasses), or None."""
    for cls, slot in KERNEL_SLOTS.items():
        if isinstance(layer, cls):
            return slot
    return None


def kernel_variable(layer: Any) -> Any:
    """The kernel variable of a registered, built layer."""
    slot = kernel_slot(layer)
    if slot is None:
        raise TypeError(f"layer {layer.name!r} ({type(layer).__name__}) has no registered kernel")
    return getattr(layer, slot.storage)


@contextlib.contextmanager
def kernel_replaced(layer: Any, value: Any) -> Iterator[None]:
    """Makes ``layer.call`` compute with ``value`` instead of its kernel variable.

    Hand-written because Keras 3 has no hook for it: the storage attribute is swapped with
    ``object.__setattr__`` (bypassing Keras's variable tracking, so the layer's weights and
    checkpoints are untouched) and restored afterwards. Inside a traced train step this happens
    at trace time, so the graph computes with ``value`` and gradients flow through it.
    """
    slot = kernel_slot(layer)
    original = layer.__dict__[slot.storage]
    object.__setattr__(layer, slot.storage, value)
    try:
        yield
    finally:
        object.__setattr__(layer, slot.storage, original)


def call_inner(layer: Any, inputs: Any, training: Any, kwargs: Mapping[str, Any]) -> Any:
    """Calls ``layer.call`` passing ``training`` only if its signature takes it."""
    if "training" in inspect.signature(layer.call).parameters:
        return layer.call(inputs, training=training, **kwargs)
    return layer.call(inputs, **kwargs)


def iter_layers(model: Any) -> Iterator[Any]:
    """All layers of a Keras 3 ``model``, descending into nested models (not into wrappers)."""
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from iter_layers(layer)
        else:
            yield layer


def inner_layer(layer: Any) -> Any:
    """The layer inside tflite_opt's Keras 3 wrappers (or the layer itself)."""
    seen = 0
    while isinstance(layer, keras.layers.Wrapper) and seen < 4:
        layer = layer.layer
        seen += 1
    return layer
