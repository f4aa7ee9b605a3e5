"""Structured channel (filter) pruning: rebuilds Conv2D/Dense layers with fewer output channels.

Magnitude pruning leaves the shapes alone and fills kernels with zeros; LiteRT's XNNPACK runs
those zeros at full cost (measured in ``benchmarks/suites/latency_pruning.py``). Dropping whole
output channels instead makes every op smaller: a Conv2D keeps its ``filters`` best filters,
and what reads its output (BatchNorm, DepthwiseConv2D, pooling, activations, Flatten, the next
Conv2D/Dense) loses the matching input channels, so the converted ``.tflite`` has fewer MACs on
any runtime.

Importance of a channel: the L1 (default; Li et al., "Pruning Filters for Efficient ConvNets",
ICLR 2017) or L2 (He et al., "Soft Filter Pruning", IJCAI 2018) norm of its filter. Where a
BatchNorm directly follows, the filter is scaled by ``|gamma| / sqrt(var + eps)`` first: the
converter folds the BatchNorm into the conv, so that is the filter the file computes with
(and a channel whose BN scale is ~0 contributes ~nothing, as in Network Slimming, Liu et al.
2017). Norms are cheap, need no data, and after fine-tuning match data-driven criteria on small
nets (Li et al. 2017, Table 2); fine-tune after pruning (``model.fit``, or a recipe stage).

Channels are tied where the graph demands it: the inputs of an ``Add``/``Multiply``/... share
one channel space, so all their producers keep the same channels (chosen by the sum of their
normalized importances); a ``Concatenate`` along channels keeps each input's own choice. A
channel space that reaches a layer tflite_opt cannot slice (Reshape, LayerNormalization, a
softmax over channels, a custom or nested layer, a model output) is left whole, and the result
says which layer blocked it. Hand-written: tfmot only zeroes weights, and no maintained library
rebuilds Keras graphs (torch-pruning does this for PyTorch). The model is rebuilt from its own
config, as ``tflite_opt.train.decompose`` does, so one implementation serves both Kerases.

Example:
    >>> result = prune_channels(model, ratio=0.5)
    >>> print(result.table())
    >>> thin = result.model
    >>> thin.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
    >>> thin.fit(x, y, epochs=3)
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from tflite_opt._keras import keras, keras3, keras_flavor
from tflite_opt.errors import InvalidArgumentError
from tflite_opt.train.recipe import CHANNEL_CRITERIA
from tflite_opt.train.selection import check_layer_name_lists

CRITERIA = CHANNEL_CRITERIA  # the recipe validates the same names
# Elementwise layers: their inputs must have the same channels, so their producers are tied.
_ELEMENTWISE = ("Add", "Subtract", "Multiply", "Average", "Maximum", "Minimum")
# Layers that act on each channel alone: a channel removed at the input is removed at the output.
_CHANNELWISE = ("ReLU", "Activation", "LeakyReLU", "ELU", "Dropout", "SpatialDropout2D",
                "GaussianNoise", "GaussianDropout", "ActivityRegularization", "Identity",
                "MaxPooling2D", "AveragePooling2D", "GlobalAveragePooling2D",
                "GlobalMaxPooling2D", "ZeroPadding2D", "Cropping2D", "UpSampling2D",
                "Rescaling")
# Activations whose outputs depend on all channels together.
_ACROSS_CHANNELS = ("softmax", "log_softmax")


@dataclasses.dataclass(frozen=True)
class LayerChannels:
    """What happened to the output channels of one Conv2D/Dense layer.

    Attributes:
        name: The layer's name (the rebuilt layer keeps it).
        kind: ``conv2d`` or ``dense``.
        channels_before: Output channels (filters or units) of the original layer.
        channels_after: Output channels kept.
        tied_with: Other layers whose outputs must keep the same channels (residual adds).
        reason: Why the layer kept all its channels (empty when pruned or ratio 0).
    """

    name: str
    kind: str
    channels_before: int
    channels_after: int
    tied_with: tuple[str, ...] = ()
    reason: str = ""

    @property
    def pruned(self) -> bool:
        return self.channels_after < self.channels_before

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "pruned": self.pruned}


@dataclasses.dataclass(frozen=True)
class ChannelPruningResult:
    """The thinner model (uncompiled, same Keras as the input), per-layer rows and totals.

    Attributes:
        model: The rebuilt model.
        layers: One :class:`LayerChannels` per Conv2D/Dense layer.
        kept: Layer name -> indices of the output channels it kept (pruned layers only).
        params_before, params_after: Parameters of the whole model.
        macs_before, macs_after: Multiply-accumulates of one inference (Conv2D, DepthwiseConv2D,
            Dense), from the layers' shapes.
    """

    model: Any
    layers: tuple[LayerChannels, ...]
    kept: Mapping[str, tuple[int, ...]]
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int

    @property
    def params_ratio(self) -> float:
        return self.params_after / max(1, self.params_before)

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / max(1, self.macs_before)

    def to_dict(self) -> dict[str, Any]:
        return {"params_before": self.params_before, "params_after": self.params_after,
                "params_ratio": self.params_ratio, "macs_before": self.macs_before,
                "macs_after": self.macs_after, "macs_ratio": self.macs_ratio,
                "layers": [l.to_dict() for l in self.layers]}

    def table(self) -> str:
        """A plain-text table: one row per Conv2D/Dense layer."""
        rows = [f"{'layer':<28}{'kind':<8}{'before':>8}{'after':>8}  note"]
        for l in self.layers:
            note = l.reason or (f"tied with {', '.join(l.tied_with)}" if l.tied_with else "")
            rows.append(f"{l.name:<28}{l.kind:<8}{l.channels_before:>8}{l.channels_after:>8}  "
                        f"{note}")
        rows.append(f"model: {self.params_before} -> {self.params_after} parameters "
                    f"({self.params_ratio:.3f}x), {self.macs_before} -> {self.macs_after} MACs "
                    f"({self.macs_ratio:.3f}x)")
        return "\n".join(rows)


# --- channel spaces: which tensors share channels -----------------------------------------------

@dataclasses.dataclass(frozen=True)
class _Layout:
    """Channel layout of a tensor: segments of channel groups along the last axis, repeated
    ``positions`` times after a Flatten (feature ``p * channels + c``)."""

    segments: tuple[tuple[int, int], ...]  # (group id, width)
    positions: int = 1

    @property
    def channels(self) -> int:
        return sum(width for _, width in self.segments)


class _Groups:
    """Union-find over channel groups; a frozen group keeps all its channels."""

    def __init__(self) -> None:
        self.parent: list[int] = []
        self.width: list[int] = []
        self.reason: dict[int, str] = {}
        self.producers: dict[int, list[str]] = {}

    def new(self, width: int, producer: str | None = None, frozen: str = "") -> int:
        gid = len(self.parent)
        self.parent.append(gid)
        self.width.append(int(width))
        self.producers[gid] = [producer] if producer else []
        if frozen:
            self.reason[gid] = frozen
        return gid

    def root(self, gid: int) -> int:
        while self.parent[gid] != gid:
            self.parent[gid] = self.parent[self.parent[gid]]
            gid = self.parent[gid]
        return gid

    def union(self, a: int, b: int) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra == rb:
            return
        self.parent[rb] = ra
        self.producers[ra] += self.producers.pop(rb)
        if rb in self.reason and ra not in self.reason:
            self.reason[ra] = self.reason[rb]
        self.reason.pop(rb, None)

    def freeze(self, layout: _Layout, reason: str) -> None:
        for gid, _ in layout.segments:
            self.reason.setdefault(self.root(gid), reason)

    def frozen(self, gid: int) -> str:
        return self.reason.get(self.root(gid), "")


def _entry_name(entry: Mapping[str, Any]) -> str:
    return entry.get("name") or entry["config"]["name"]


def _keras_histories(value: Any) -> list[str]:
    """Names of the layers whose outputs a Keras 3 node reads (its ``__keras_tensor__`` args)."""
    if isinstance(value, dict):
        if value.get("class_name") == "__keras_tensor__":
            return [value["config"]["keras_history"][0]]
        return [n for v in value.values() for n in _keras_histories(v)]
    if isinstance(value, (list, tuple)):
        return [n for v in value for n in _keras_histories(v)]
    return []


def _node_sources(node: Any) -> list[str]:
    if isinstance(node, dict):  # Keras 3: {"args": [...__keras_tensor__...], "kwargs": {...}}
        return _keras_histories(node)
    return [item[0] for item in node]  # tf_keras: [[name, node_index, tensor_index, kwargs]]


def _inbound(entries: list[dict[str, Any]], sequential: bool
             ) -> tuple[dict[str, list[str]], set[str]]:
    """Layer name -> the layers it reads, and the names of layers called more than once."""
    out: dict[str, list[str]] = {}
    shared: set[str] = set()
    previous: str | None = None
    for entry in entries:
        name = _entry_name(entry)
        if sequential:
            out[name] = [previous] if previous else []
            previous = name
            continue
        nodes = entry.get("inbound_nodes") or []
        if len(nodes) > 1:
            shared.add(name)
        out[name] = [source for node in nodes for source in _node_sources(node)]
    return out, shared


def _output_names(config: Mapping[str, Any], entries: list[dict[str, Any]],
                  sequential: bool) -> list[str]:
    if sequential:
        return [_entry_name(entries[-1])]
    outputs = config["output_layers"]
    if outputs and isinstance(outputs[0], str):  # Keras 3 writes a single output flat
        outputs = [outputs]
    return [o[0] for o in outputs]


def _kind(layer: Any, L: Any) -> str:
    """``conv2d``/``dense`` for the layers that can lose output channels, ``depthwise``, or ''."""
    if isinstance(layer, L.DepthwiseConv2D):  # (subclasses Conv2D in tf_keras)
        return "depthwise"
    if type(layer) is L.Conv2D:  # exact: Conv2DTranspose's kernel means something else
        return "conv2d"
    if type(layer) is L.Dense:
        return "dense"
    return ""


def _analyze(model: Any, entries: list[dict[str, Any]], config: Mapping[str, Any],
             sequential: bool, excluded: Mapping[str, str]
             ) -> tuple[_Groups, dict[str, _Layout], dict[str, int], dict[str, list[str]],
                        dict[str, str]]:
    """Walks the graph once: the channel layout of every layer's output, the group each
    Conv2D/Dense produces, and who consumes whom."""
    L = (keras3() if keras_flavor(model) == "keras3" else keras).layers
    groups = _Groups()
    layouts: dict[str, _Layout] = {}
    produced: dict[str, int] = {}
    refused: dict[str, str] = {}
    inbound, shared = _inbound(entries, sequential)
    consumers: dict[str, list[str]] = {}
    for name, sources in inbound.items():
        for source in sources:
            consumers.setdefault(source, []).append(name)

    def width_of(layer: Any) -> int:
        try:
            shape = layer.output.shape
        except (AttributeError, ValueError):  # a shared layer has one output per call
            shape = layer.get_output_at(0).shape if hasattr(layer, "get_output_at") else [0]
        return int(shape[-1]) if shape[-1] is not None else 0

    for entry in entries:
        name = _entry_name(entry)
        sources = inbound[name]
        if entry.get("class_name") == "InputLayer":
            shape = entry["config"].get("batch_shape") or entry["config"]["batch_input_shape"]
            width = int(shape[-1] or 0)
            layouts[name] = _Layout(((groups.new(width, frozen="model input"), width),))
            continue
        layer = model.get_layer(name)
        cls = type(layer).__name__
        ins = [layouts[s] for s in sources if s in layouts]
        why = "tflite_opt cannot slice its channels (this configuration or layer type)"

        def opaque() -> None:
            for layout in ins or []:
                groups.freeze(layout, f"consumed by {name!r} ({cls}): {why}")
            refused[name] = why
            layouts[name] = _Layout(((groups.new(width_of(layer), frozen=f"produced by {name!r} "
                                                 f"({cls})"), width_of(layer)),))

        if not sources:  # the first layer of a Sequential saved without its InputLayer
            width = int(model.inputs[0].shape[-1])
            ins = [_Layout(((groups.new(width, frozen="model input"), width),))]
        if name in shared or len(ins) != len(sources):  # called more than once, or unknown input
            why = "it is called more than once (a shared layer)"
            opaque()
            continue
        cfg = layer.get_config()
        kind = _kind(layer, L)
        channels_last = cfg.get("data_format", "channels_last") in (None, "channels_last")
        if kind in ("conv2d", "dense"):
            ok = len(ins) == 1 and channels_last and cfg.get("groups", 1) == 1 and \
                (kind == "dense" or ins[0].positions == 1)
            if not ok:
                opaque()
                continue
            reason = excluded.get(name, "")
            if cfg.get("activation") in _ACROSS_CHANNELS:
                reason = f"its {cfg['activation']} activation spans all channels"
            gid = groups.new(width_of(layer), producer=name, frozen=reason)
            produced[name] = gid
            layouts[name] = _Layout(((gid, width_of(layer)),))
        elif kind == "depthwise" or cls == "BatchNormalization":
            axis = cfg.get("axis", -1)
            axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
            rank = len(layer.input.shape)
            ok = len(ins) == 1 and ins[0].positions == 1 and channels_last and (
                cfg.get("depth_multiplier", 1) == 1 if kind == "depthwise" else
                axis in (-1, rank - 1))
            if not ok:
                opaque()
                continue
            layouts[name] = ins[0]
        elif cls in _CHANNELWISE:
            scalar = not (cls == "Rescaling" and (np.ndim(cfg.get("scale", 1.0)) or
                                                  np.ndim(cfg.get("offset", 0.0))))
            if len(ins) != 1 or not channels_last or not scalar or \
                    cfg.get("activation") in _ACROSS_CHANNELS:
                opaque()
                continue
            layouts[name] = ins[0]
        elif cls == "Flatten":
            shape = layer.input.shape
            spatial = int(np.prod([int(d) for d in shape[1:-1]])) if len(shape) > 2 else 1
            if len(ins) != 1 or ins[0].positions != 1 or not channels_last or \
                    any(d is None for d in shape[1:]):
                opaque()
                continue
            layouts[name] = _Layout(ins[0].segments, spatial)
        elif cls in _ELEMENTWISE:
            first = ins[0]
            same = all(l.positions == first.positions and
                       [w for _, w in l.segments] == [w for _, w in first.segments] for l in ins)
            if not same or len(ins) < 2:
                opaque()
                continue
            for other in ins[1:]:
                for (a, _), (b, _) in zip(first.segments, other.segments):
                    groups.union(a, b)
            layouts[name] = first
        elif cls == "Concatenate":
            rank = len(layer.output.shape)
            if cfg.get("axis", -1) not in (-1, rank - 1) or any(l.positions != 1 for l in ins):
                opaque()
                continue
            layouts[name] = _Layout(tuple(s for l in ins for s in l.segments))
        else:
            opaque()
    for name in _output_names(config, entries, sequential):
        groups.freeze(layouts[name], f"reaches the model output {name!r}")
    return groups, layouts, produced, consumers, refused


def _importance(model: Any, name: str, consumers: Mapping[str, list[str]], criterion: str,
                bn_class: type) -> np.ndarray:
    """Per output channel of ``name``: the norm of its (BatchNorm-folded) filter, over its mean."""
    kernel = np.asarray(model.get_layer(name).get_weights()[0], np.float64)
    flat = kernel.reshape(-1, kernel.shape[-1])
    score = np.abs(flat).sum(0) if criterion == "l1" else np.sqrt((flat ** 2).sum(0))
    after = consumers.get(name, [])
    if len(after) == 1 and isinstance(model.get_layer(after[0]), bn_class):
        bn = model.get_layer(after[0])
        gamma = np.asarray(bn.gamma) if getattr(bn, "gamma", None) is not None else 1.0
        score = score * np.abs(gamma) / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
    mean = score.mean()
    return score / mean if mean > 0 else score


def channels_to_keep(channels: int, ratio: float, multiple_of: int = 1) -> int:
    """Channels left after removing ``ratio`` of ``channels``, rounded to ``multiple_of``.

    Never below ``multiple_of`` (or 1), never above ``channels``.

    Example:
        >>> channels_to_keep(64, 0.5), channels_to_keep(60, 0.5, multiple_of=8)
        (32, 32)
    """
    keep = channels * (1.0 - ratio)
    if multiple_of > 1:
        keep = max(multiple_of, int(round(keep / multiple_of)) * multiple_of)
    return int(min(channels, max(1, round(keep))))


def _layout_indices(layout: _Layout, kept: Mapping[int, np.ndarray], groups: _Groups) -> np.ndarray:
    parts, offset = [], 0
    for gid, width in layout.segments:
        parts.append(kept.get(groups.root(gid), np.arange(width)) + offset)
        offset += width
    channel_idx = np.concatenate(parts) if parts else np.arange(0)
    if layout.positions == 1:
        return channel_idx
    return (np.arange(layout.positions)[:, None] * offset + channel_idx[None, :]).reshape(-1)


def count_macs(model: Any) -> int:
    """Multiply-accumulates of one inference of ``model`` (Conv2D, DepthwiseConv2D, Dense).

    Example:
        >>> count_macs(digits_cnn())  # 32x32x1 input, width 16
        9847424
    """
    L = (keras3() if keras_flavor(model) == "keras3" else keras).layers
    total = 0
    for layer in model.layers:
        kind = _kind(layer, L)
        if not kind and not (isinstance(layer, L.Conv2D) and
                             not isinstance(layer, L.Conv2DTranspose)):
            continue
        try:
            out_shape = layer.output.shape
        except (AttributeError, ValueError):  # a shared layer: several outputs
            continue
        kernel = layer.get_weights()[0]
        positions = int(np.prod([int(d) for d in out_shape[1:-1]])) if len(out_shape) > 2 else 1
        # one MAC per kernel weight per output position: Dense (in, out), Conv2D (kh, kw,
        # cin / groups, cout), DepthwiseConv2D (kh, kw, c, multiplier)
        total += positions * int(kernel.size)
    return int(total)


def prune_channels(model: Any, ratio: float = 0.5, *, ratios: Mapping[str, float] | None = None,
                   criterion: str = "l1", multiple_of: int = 1, skip: Sequence[str] = (),
                   only: Sequence[str] | None = None) -> ChannelPruningResult:
    """Removes the least important output channels of Conv2D/Dense layers; rebuilds the model.

    Each prunable channel space loses ``ratio`` of its channels (rounded to ``multiple_of``);
    the layers reading it lose the matching inputs. With ``ratio=0`` the rebuilt model
    computes exactly what ``model`` computes. Fine-tune the result (``fit``) to win back the
    accuracy, then convert it as usual.

    Args:
        model: A Sequential or Functional model of either Keras; not modified.
        ratio: Fraction of each layer's output channels removed, in [0, 1). Defaults to 0.5.
        ratios: Per-layer overrides ``{layer_name: ratio}``; layers tied by an Add use the
            smallest ratio among them. Defaults to None.
        criterion: ``l1`` or ``l2`` norm of each (BatchNorm-folded) filter. Defaults to l1.
        multiple_of: Keep a multiple of this many channels (SIMD kernels process channels in
            blocks of 4-16; a multiple of 8 avoids a partly used block). Defaults to 1.
        skip: Layer names whose output channels are all kept. Defaults to ().
        only: If given, only these layers lose output channels. Defaults to None (every
            Conv2D/Dense whose channels can go: not the model's outputs).

    Returns:
        A :class:`ChannelPruningResult`: ``.model`` (uncompiled), ``.table()``, ``.kept``.

    Raises:
        InvalidArgumentError: a bad ``ratio``/``ratios``/``criterion``/``multiple_of``, or a
            name in ``skip``/``only``/``ratios`` that is not a layer of the model.

    Example:
        >>> result = prune_channels(model, ratio=0.5, skip=["conv1"], multiple_of=4)
        >>> round(result.macs_ratio, 2)  # the digits CNN (digits_cnn())
        0.38
        >>> thin = result.model
    """
    from tflite_opt.train.dispatch import check_graph_model

    check_graph_model(model, "prune_channels")
    ratios = dict(ratios or {})
    _check_arguments(model, ratio, ratios, criterion, multiple_of, skip, only)
    flavor = keras_flavor(model)
    L = (keras3() if flavor == "keras3" else keras).layers
    config = copy.deepcopy(model.get_config())
    sequential = isinstance(model, (keras3().Sequential, keras.Sequential))
    entries = config["layers"]
    excluded = {n: "skipped (skip=)" for n in skip}
    if only is not None:
        excluded.update({l.name: "not in only=" for l in model.layers
                         if l.name not in only and l.name not in excluded})
    groups, layouts, produced, consumers, refused = _analyze(model, entries, config, sequential,
                                                             excluded)

    kept: dict[int, np.ndarray] = {}
    rows: list[LayerChannels] = []
    for name, gid in produced.items():
        root = groups.root(gid)
        members = tuple(p for p in groups.producers.get(root, []) if p != name)
        width = groups.width[gid]
        kind = _kind(model.get_layer(name), L)
        reason = groups.frozen(gid)
        if not reason and root not in kept:
            group_ratio = min(ratios.get(p, ratio) for p in groups.producers[root])
            keep = channels_to_keep(width, group_ratio, multiple_of)
            if keep < width:
                score = sum(_importance(model, p, consumers, criterion, L.BatchNormalization)
                            for p in groups.producers[root])
                # a stable sort: equal scores keep the earlier channel
                kept[root] = np.sort(np.argsort(-score, kind="stable")[:keep])
        after = len(kept[root]) if root in kept else width
        rows.append(LayerChannels(name, kind, width, after, members, reason))
    for name, why in refused.items():  # Conv2D/Dense layers that could not be rebuilt thinner
        kind = _kind(model.get_layer(name), L)
        if kind in ("conv2d", "dense"):
            width = int(model.get_layer(name).get_weights()[0].shape[-1])
            rows.append(LayerChannels(name, kind, width, width, (), why))

    # The new config: pruned producers get their new width; every layer is rebuilt by calling
    # it on its (thinner) inputs, so no layer keeps its old build shapes.
    for entry in entries:
        entry.pop("build_config", None)
        name = _entry_name(entry)
        if name in produced and groups.root(produced[name]) in kept:
            key = "filters" if "filters" in entry["config"] else "units"
            entry["config"][key] = int(len(kept[groups.root(produced[name])]))
    custom = {type(l).__name__: type(l) for l in model.layers}
    new_model = type(model).from_config(config, custom_objects=custom)

    inbound, shared = _inbound(entries, sequential)
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights:
            continue
        name = layer.name
        sources = inbound.get(name) or []
        # (no single source: a first Sequential layer reads the whole model input; a shared
        # layer's inputs were all kept whole)
        source_layout = layouts.get(sources[0]) if len(sources) == 1 and \
            name not in shared else None
        kin = None if source_layout is None else _layout_indices(source_layout, kept, groups)
        kind = _kind(layer, L)
        out_root = groups.root(produced[name]) if name in produced else None
        kout = kept.get(out_root) if out_root is not None else None
        if kind == "conv2d":
            w = weights[0] if kin is None else weights[0][:, :, kin, :]
            weights = [w if kout is None else w[..., kout]] + \
                [b if kout is None else b[kout] for b in weights[1:]]
        elif kind == "dense":
            w = weights[0] if kin is None else weights[0][kin]
            weights = [w if kout is None else w[:, kout]] + \
                [b if kout is None else b[kout] for b in weights[1:]]
        elif kind == "depthwise" and kin is not None:
            weights = [weights[0][:, :, kin, :]] + [b[kin] for b in weights[1:]]
        elif type(layer).__name__ == "BatchNormalization" and kin is not None:
            weights = [w[kin] for w in weights]
        new_model.get_layer(name).set_weights(weights)

    kept_by_layer = {name: tuple(int(i) for i in kept[groups.root(gid)])
                     for name, gid in produced.items() if groups.root(gid) in kept}
    return ChannelPruningResult(model=new_model, layers=tuple(rows), kept=kept_by_layer,
                                params_before=int(model.count_params()),
                                params_after=int(new_model.count_params()),
                                macs_before=count_macs(model), macs_after=count_macs(new_model))


def _check_arguments(model: Any, ratio: Any, ratios: dict[str, Any], criterion: Any,
                     multiple_of: Any, skip: Any, only: Any) -> None:
    def check_ratio(label: str, value: Any) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or \
                not math.isfinite(value) or not 0.0 <= value < 1.0:
            raise InvalidArgumentError(f"prune_channels: {label} is {value!r}; accepted: the "
                                       "fraction of output channels to remove, in [0, 1), e.g. 0.5")

    check_ratio("ratio", ratio)
    for name, value in ratios.items():
        check_ratio(f"ratios[{name!r}]", value)
    if criterion not in CRITERIA:
        raise InvalidArgumentError(f"prune_channels: criterion is {criterion!r}; accepted: "
                                   f"{', '.join(CRITERIA)}")
    if not isinstance(multiple_of, int) or isinstance(multiple_of, bool) or multiple_of < 1:
        raise InvalidArgumentError(f"prune_channels: multiple_of is {multiple_of!r}; accepted: "
                                   "an integer >= 1, e.g. 8")
    check_layer_name_lists("prune_channels", model, skip=skip, only=only or (), ratios=list(ratios))


def prune_channels_stage(model: Any, stage: Any, policy: Any,
                         verbose: int = 0) -> ChannelPruningResult:
    """Runs a recipe's prune stage with ``objective: latency`` under ``policy``.

    ``stage.target_sparsity`` is the fraction of output channels removed; ``policy.sparsity``
    overrides it per layer; the policy's skip rules keep a layer's channels. Returns the result:
    the thinner model (the plan then fine-tunes it) and what was removed, which the plan keeps
    in its stage record; prints the table if verbose.
    """
    from tflite_opt.train.decompose import policy_skips

    result = prune_channels(model, ratio=stage.target_sparsity,
                            ratios={k: v for k, v in policy.sparsity.items()
                                    if k in {l.name for l in model.layers}},
                            criterion=stage.criterion, multiple_of=stage.channel_multiple,
                            skip=policy_skips(model, policy), only=policy.only)
    if verbose:
        print(result.table())
    return result
