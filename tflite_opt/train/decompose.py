"""Low-rank decomposition: Dense and Conv2D kernels replaced by two thinner layers (truncated SVD).

- Dense ``(n, m)`` -> Dense ``r`` (no bias, linear) then Dense ``m`` (the original bias and
  activation): ``n*m`` kernel weights become ``r*(n+m)``.
- Conv2D ``kh x kw x cin -> cout``, ``channel`` mode -> a ``kh x kw`` conv with ``r`` filters then
  a 1x1 conv (the kernel reshaped to ``(kh*kw*cin, cout)``).
- Conv2D, ``spatial`` mode -> a ``kh x 1`` conv with ``r`` filters then a ``1 x kw`` conv (the
  kernel reshaped to ``(kh*cin, kw*cout)``; Tai et al., 2016), strides and ``same``/``valid``
  padding split by axis, so at full rank the pair computes exactly the original conv.

The rank of each layer comes from a target parameter ratio (the largest rank whose two factors
keep at most ``params_ratio`` of the layer's parameters) or a kept-energy fraction (the smallest
rank whose singular values keep that fraction of ``sum(s**2)``). By Eckart-Young the discarded
energy is exactly ``||W - W_r||_F**2``, so an output moves by at most ``||x|| * ||W - W_r||_2``.

Hand-written: no maintained library factorizes Keras layers (tensorly works on tensors, not
Keras graphs; tfmot has no decomposition). The model is rebuilt from its own config, where the
second factor keeps the original layer's name, so every consumer of the layer, the model's
outputs and a recipe's per-layer policy still refer to it; the first factor is inserted before it
as ``<name>_lowrank``. The config form is the same for tf_keras and Keras 3 except for how a
node names its input tensor, so one implementation serves both Kerases.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

from tflite_opt._keras import keras, keras3, keras_flavor
from tflite_opt.errors import InvalidArgumentError
from tflite_opt.train.selection import check_layer_name_lists

CONV_MODES = ("channel", "spatial")
LOWRANK_SUFFIX = "_lowrank"


@dataclasses.dataclass(frozen=True)
class LayerDecomposition:
    """What happened to one Dense/Conv2D layer.

    Attributes:
        name: The layer's name (the second factor keeps it).
        kind: ``dense``, ``conv_channel`` or ``conv_spatial``.
        rank: Rank kept (0 if the layer was left whole).
        full_rank: Rank of the reshaped kernel (``min`` of its two dimensions).
        params_before: Kernel plus bias parameters of the layer.
        params_after: Parameters of the two factors plus the bias (``params_before`` if kept).
        kept_energy: ``sum(s[:rank]**2) / sum(s**2)`` (1.0 if the layer was left whole).
        decomposed: Whether the layer was replaced by two layers.
        reason: Why a layer was left whole (empty when decomposed).
    """

    name: str
    kind: str
    rank: int
    full_rank: int
    params_before: int
    params_after: int
    kept_energy: float
    decomposed: bool
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class DecompositionResult:
    """The decomposed model (uncompiled, same Keras as the input) and a per-layer report."""

    model: Any
    layers: tuple[LayerDecomposition, ...]
    params_before: int
    params_after: int

    @property
    def params_ratio(self) -> float:
        """Parameters of the whole decomposed model over those of the original."""
        return self.params_after / self.params_before

    def to_dict(self) -> dict[str, Any]:
        return {"params_before": self.params_before, "params_after": self.params_after,
                "params_ratio": self.params_ratio, "layers": [l.to_dict() for l in self.layers]}

    def table(self) -> str:
        """A plain-text table: one row per considered layer."""
        rows = [f"{'layer':<24}{'kind':<14}{'rank':>6}{'of':>6}{'params':>10}{'->':>4}"
                f"{'after':>10}{'energy':>9}  note"]
        for l in self.layers:
            rows.append(f"{l.name:<24}{l.kind:<14}{l.rank:>6}{l.full_rank:>6}{l.params_before:>10}"
                        f"{'':>4}{l.params_after:>10}{l.kept_energy:>9.4f}  {l.reason}")
        rows.append(f"model: {self.params_before} -> {self.params_after} parameters "
                    f"({self.params_ratio:.3f}x)")
        return "\n".join(rows)


# --- the math (numpy only, tested on its own) --------------------------------------------------

def kernel_matrix(kernel: np.ndarray, kind: str) -> np.ndarray:
    """The 2-D matrix whose truncated SVD gives the two factors of ``kind``."""
    if kind == "dense":
        return kernel
    kh, kw, cin, cout = kernel.shape
    if kind == "conv_channel":
        return kernel.reshape(kh * kw * cin, cout)
    # rows (i, c), columns (j, o): W[i, j, c, o] = sum_r V[i, c, r] H[j, r, o]
    return kernel.transpose(0, 2, 1, 3).reshape(kh * cin, kw * cout)


def factor_kernels(kernel: np.ndarray, kind: str, rank: int) -> tuple[np.ndarray, np.ndarray]:
    """The two factor kernels (first layer, second layer) of ``kernel`` at ``rank``.

    Each factor takes ``sqrt`` of the singular values, so both have the same scale (better for
    int8 quantization and for fine-tuning than putting ``s`` on one side).

    Example:
        >>> a, b = factor_kernels(np.random.rand(64, 32), "dense", 8)
        >>> a.shape, b.shape
        ((64, 8), (8, 32))
    """
    u, s, vt = np.linalg.svd(kernel_matrix(np.asarray(kernel, np.float64), kind),
                             full_matrices=False)
    root = np.sqrt(s[:rank])
    first, second = u[:, :rank] * root, root[:, None] * vt[:rank]
    if kind == "dense":
        return first.astype(np.float32), second.astype(np.float32)
    kh, kw, cin, cout = kernel.shape
    if kind == "conv_channel":
        return (first.reshape(kh, kw, cin, rank).astype(np.float32),
                second.reshape(1, 1, rank, cout).astype(np.float32))
    return (first.reshape(kh, cin, rank)[:, None].astype(np.float32),
            second.reshape(rank, kw, cout).transpose(1, 0, 2)[None].astype(np.float32))


def factored_params(kernel_shape: Sequence[int], kind: str, rank: int, use_bias: bool) -> int:
    """Parameters of the two factors at ``rank`` (the bias stays on the second layer).

    Example:
        >>> factored_params((1024, 512), "dense", 100, True)  # 100 * (1024 + 512) + 512
        154112
    """
    rows, cols = _matrix_shape(kernel_shape, kind)
    return rank * (rows + cols) + (int(kernel_shape[-1]) if use_bias else 0)


def _matrix_shape(kernel_shape: Sequence[int], kind: str) -> tuple[int, int]:
    if kind == "dense":
        return int(kernel_shape[0]), int(kernel_shape[1])
    kh, kw, cin, cout = (int(v) for v in kernel_shape)
    return (kh * kw * cin, cout) if kind == "conv_channel" else (kh * cin, kw * cout)


def rank_for_energy(singular_values: np.ndarray, energy: float) -> int:
    """The smallest rank whose singular values keep at least ``energy`` of ``sum(s**2)``.

    Example:
        >>> rank_for_energy(np.array([3.0, 2.0, 1.0]), 0.9)  # (9 + 4) / 14 = 0.93
        2
    """
    squares = np.asarray(singular_values, np.float64) ** 2
    total = squares.sum()
    if total == 0:
        return 1
    kept = np.cumsum(squares) / total
    # A relative slack of 1e-12 so that energy=1.0 is reached despite rounding in the cumsum.
    return int(min(np.searchsorted(kept, energy - 1e-12) + 1, len(squares)))


def rank_for_params_ratio(kernel_shape: Sequence[int], kind: str, params_ratio: float,
                          use_bias: bool) -> int:
    """The largest rank whose factors keep at most ``params_ratio`` of the layer's parameters.

    Returns 0 when even rank 1 is over the budget.

    Example:
        >>> rank_for_params_ratio((1024, 512), "dense", 0.5, True)  # 262400 // 1536
        170
    """
    rows, cols = _matrix_shape(kernel_shape, kind)
    bias = int(kernel_shape[-1]) if use_bias else 0
    budget = params_ratio * (rows * cols + bias) - bias
    return max(0, min(int(math.floor(budget / (rows + cols))), min(rows, cols)))


# --- the model rewrite --------------------------------------------------------------------------

def _layer_kind(layer: Any, layers_module: Any, conv_mode: str) -> tuple[str, str]:
    """(kind, reason-to-skip) of ``layer``; kind is empty for layers that are never factored."""
    # Exact classes: Conv2DTranspose and DepthwiseConv2D subclass Conv2D in tf_keras and
    # their kernels mean something else.
    if type(layer) is layers_module.Dense:
        return "dense", ""
    if type(layer) is not layers_module.Conv2D:
        return "", ""
    config = layer.get_config()
    if config.get("groups", 1) != 1 or tuple(config.get("dilation_rate", (1, 1))) != (1, 1) or \
            config.get("data_format", "channels_last") != "channels_last":
        return "conv_channel", ("grouped, dilated or channels_first conv (not supported; add it "
                                "to skip to silence)")
    kh, kw = layer.kernel.shape[:2]
    # A 1-wide kernel has nothing to split spatially: its channel factorization is the same thing.
    return ("conv_spatial" if conv_mode == "spatial" and kh > 1 and kw > 1 else "conv_channel"), ""


def _entry_name(entry: Mapping[str, Any]) -> str:
    return entry.get("name") or entry["config"]["name"]


def _first_factor_entry(entry: dict[str, Any], kind: str, rank: int,
                        kernel_shape: Sequence[int]) -> dict[str, Any]:
    first = copy.deepcopy(entry)
    first.pop("build_config", None)  # built for the old input; Keras builds it when called
    config = first["config"]
    config.update(name=config["name"] + LOWRANK_SUFFIX, use_bias=False, activation="linear",
                  activity_regularizer=None)
    if "name" in first:
        first["name"] = config["name"]
    if kind == "dense":
        config["units"] = rank
    else:
        config["filters"] = rank
        if kind == "conv_spatial":
            strides = tuple(config["strides"])
            config.update(kernel_size=(int(kernel_shape[0]), 1), strides=(strides[0], 1))
    return first


def _second_factor_entry(entry: dict[str, Any], kind: str, kernel_shape: Sequence[int],
                         first_name: str, flavor: str, first_output_shape: Any) -> dict[str, Any]:
    second = copy.deepcopy(entry)
    second.pop("build_config", None)
    config = second["config"]
    if kind == "conv_channel":
        config.update(kernel_size=(1, 1), strides=(1, 1), padding="valid")
    elif kind == "conv_spatial":
        strides = tuple(config["strides"])
        config.update(kernel_size=(1, int(kernel_shape[1])), strides=(1, strides[1]))
    if "inbound_nodes" in second:  # functional: the second factor reads the first one's output
        if flavor == "keras3":
            node = second["inbound_nodes"][0]
            node["args"] = [{"class_name": "__keras_tensor__",
                             "config": {"shape": first_output_shape, "dtype": "float32",
                                        "keras_history": [first_name, 0, 0]}}]
            node["kwargs"] = {}
        else:
            second["inbound_nodes"] = [[[first_name, 0, 0, {}]]]
    return second


def _first_output_shape(layer: Any, kind: str, rank: int) -> list[Any]:
    """Shape of the first factor's output (a Keras 3 node records it next to its history)."""
    out = list(layer.output.shape)
    if kind == "conv_spatial":
        out[2] = layer.input.shape[2]
    out[-1] = rank
    return out


def decompose(model: Any, *, params_ratio: float | None = None, energy: float | None = None,
              ranks: Mapping[str, int] | None = None, conv_mode: str = "channel",
              skip: Sequence[str] = (), only: Sequence[str] | None = None) -> DecompositionResult:
    """Replaces Dense/Conv2D kernels by two thinner layers from their truncated SVD.

    Give one of ``params_ratio`` and ``energy``, and/or per-layer ``ranks``. A layer whose rank
    from ``params_ratio``/``energy`` would not save parameters is left whole (its row in the
    report says why); a rank given in ``ranks`` is always applied. The result computes the same
    function as ``model`` up to the discarded singular values; fine-tune it with your own
    ``fit`` (a few epochs win back most of the accuracy) before pruning or quantizing.

    Args:
        model: A Sequential or Functional model of either Keras; not modified.
        params_ratio: Per layer, keep at most this fraction of the layer's parameters, in
            (0, 1). Defaults to None.
        energy: Per layer, keep the smallest rank reaching this fraction of the squared singular
            values, in (0, 1]. Defaults to None.
        ranks: Per-layer ranks ``{layer_name: rank}``, overriding the two above for those
            layers (the only layers factored when neither is given). Defaults to None.
        conv_mode: ``channel`` (kxk conv with r filters + 1x1 conv) or ``spatial`` (kx1 conv +
            1xk conv). Defaults to channel.
        skip: Layer names left whole. Defaults to ().
        only: If given, only these layer names are considered. Defaults to None (all Dense and
            Conv2D layers).

    Returns:
        A :class:`DecompositionResult` with the new (uncompiled) model and a per-layer report.

    Raises:
        InvalidArgumentError: bad ``params_ratio``/``energy``/``conv_mode``, or a name in
            ``skip``/``only`` that is not a layer of the model.

    Example:
        >>> result = decompose(model, params_ratio=0.5)
        >>> print(result.table())
        >>> small = result.model
        >>> small.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        >>> small.fit(x, y, epochs=3)
    """
    from tflite_opt.train.dispatch import check_graph_model

    check_graph_model(model, "decompose")
    ranks = dict(ranks or {})
    _check_arguments(model, params_ratio, energy, ranks, conv_mode, skip, only)
    flavor = keras_flavor(model)
    layers_module = (keras3() if flavor == "keras3" else keras).layers
    config = copy.deepcopy(model.get_config())
    entries = config["layers"]
    by_name = {_entry_name(e): i for i, e in enumerate(entries)}

    reports: list[LayerDecomposition] = []
    factors: dict[str, tuple[np.ndarray, ...]] = {}
    new_entries: dict[int, list[dict[str, Any]]] = {}
    for layer in model.layers:
        kind, reason = _layer_kind(layer, layers_module, conv_mode)
        if not kind or layer.name in skip or (only is not None and layer.name not in only) or \
                (params_ratio is None and energy is None and layer.name not in ranks):
            continue
        use_bias = bool(layer.get_config().get("use_bias", True))
        weights = layer.get_weights()  # [kernel] or [kernel, bias], in either Keras
        kernel = weights[0]
        before = int(kernel.size + (kernel.shape[-1] if use_bias else 0))
        rows, cols = _matrix_shape(kernel.shape, kind)
        full_rank = min(rows, cols)
        entry = entries[by_name[layer.name]]
        if not reason and len(entry.get("inbound_nodes", [None])) != 1:
            reason = "layer is shared by several calls (not supported)"
        if reason:
            reports.append(LayerDecomposition(layer.name, kind, 0, full_rank, before, before,
                                              1.0, False, reason))
            continue
        s = np.linalg.svd(kernel_matrix(kernel.astype(np.float64), kind), compute_uv=False)
        if layer.name in ranks:
            rank = ranks[layer.name]
            if rank > full_rank:
                raise InvalidArgumentError(
                    f"decompose: ranks[{layer.name!r}] is {rank}, over the full rank {full_rank} "
                    f"of layer {layer.name!r} ({type(layer).__name__}, {kind}); accepted: 1 to "
                    f"{full_rank}")
        elif params_ratio is not None:
            rank = rank_for_params_ratio(kernel.shape, kind, params_ratio, use_bias)
        else:
            rank = rank_for_energy(s, energy)
        after = factored_params(kernel.shape, kind, rank, use_bias)
        kept = float((s[:rank] ** 2).sum() / max((s ** 2).sum(), np.finfo(np.float64).tiny))
        if rank == 0 or (after >= before and layer.name not in ranks):
            why = ("rank 1 is over the parameter budget" if rank == 0 else
                   f"rank {rank} needs {after} parameters, not fewer than {before}")
            reports.append(LayerDecomposition(layer.name, kind, 0, full_rank, before, before,
                                              1.0, False, why))
            continue
        first_entry = _first_factor_entry(entry, kind, rank, kernel.shape)
        first_name = _entry_name(first_entry)
        if first_name in by_name:
            raise InvalidArgumentError(
                f"decompose: layer {layer.name!r} ({type(layer).__name__}) would get a first "
                f"factor named {first_name!r}, which the model already has; rename that layer "
                "or add one of them to skip")
        second_entry = _second_factor_entry(entry, kind, kernel.shape, first_name, flavor,
                                            _first_output_shape(layer, kind, rank))
        new_entries[by_name[layer.name]] = [first_entry, second_entry]
        first, second = factor_kernels(kernel, kind, rank)
        factors[layer.name] = ((first,), (second, *weights[1:2]))
        reports.append(LayerDecomposition(layer.name, kind, rank, full_rank, before, after, kept,
                                          True))

    config["layers"] = [e for i, old in enumerate(entries) for e in new_entries.get(i, [old])]
    custom = {type(l).__name__: type(l) for l in model.layers}
    new_model = type(model).from_config(config, custom_objects=custom)
    for layer in model.layers:
        if layer.name in factors:
            first_weights, second_weights = factors[layer.name]
            new_model.get_layer(layer.name + LOWRANK_SUFFIX).set_weights(list(first_weights))
            new_model.get_layer(layer.name).set_weights(list(second_weights))
        elif layer.weights:
            new_model.get_layer(layer.name).set_weights(layer.get_weights())
    return DecompositionResult(model=new_model, layers=tuple(reports),
                               params_before=int(model.count_params()),
                               params_after=int(new_model.count_params()))


def _check_arguments(model: Any, params_ratio: Any, energy: Any, ranks: dict[str, Any],
                     conv_mode: Any, skip: Any, only: Any) -> None:
    if (params_ratio is None) == (energy is None) and (params_ratio is not None or not ranks):
        raise InvalidArgumentError("decompose: pass exactly one of params_ratio (e.g. 0.5: keep "
                                   "half of each layer's parameters) and energy (e.g. 0.95: keep "
                                   "95% of each kernel's squared singular values), or ranks "
                                   "({layer_name: rank})")
    for name, rank in ranks.items():
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 1:
            raise InvalidArgumentError(f"decompose: ranks[{name!r}] is {rank!r}; accepted: an "
                                       "integer >= 1")
    for name, value, high_open in (("params_ratio", params_ratio, True), ("energy", energy, False)):
        if value is None:
            continue
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not \
                (0.0 < value < 1.0 if high_open else 0.0 < value <= 1.0):
            raise InvalidArgumentError(f"decompose: {name} is {value!r}; accepted: a number in "
                                       f"(0, 1{')' if high_open else ']'}")
    if conv_mode not in CONV_MODES:
        raise InvalidArgumentError(f"decompose: conv_mode is {conv_mode!r}; accepted: "
                                   f"{', '.join(CONV_MODES)}")
    check_layer_name_lists("decompose", model, skip=skip, only=only or (), ranks=list(ranks))


def policy_skips(model: Any, policy: Any) -> tuple[str, ...]:
    """Layer names a recipe's :class:`~tflite_opt.train.recipe.LayerPolicy` keeps whole.

    ``policy.skip``, plus the first convolution and the last Dense layer when the policy skips
    them, as the prune and cluster stages do.
    """
    layers_module = (keras3() if keras_flavor(model) == "keras3" else keras).layers
    conv_types = (layers_module.Conv2D, layers_module.DepthwiseConv2D)
    convs = [l.name for l in model.layers if isinstance(l, conv_types)]
    denses = [l.name for l in model.layers if isinstance(l, layers_module.Dense)]
    skip = list(policy.skip)
    if policy.skip_first_conv and convs:
        skip.append(convs[0])
    if policy.skip_classifier and denses:
        skip.append(denses[-1])
    return tuple(dict.fromkeys(skip))


def decompose_stage(model: Any, stage: Any, policy: Any, verbose: int = 0) -> Any:
    """Runs a recipe's :class:`~tflite_opt.train.recipe.DecomposeStage` under ``policy``.

    Returns the decomposed model (the plan then fine-tunes it); prints the table if verbose.
    """
    result = decompose(model, params_ratio=stage.params_ratio, energy=stage.energy,
                       conv_mode=stage.conv_mode, skip=policy_skips(model, policy),
                       only=policy.only)
    if verbose:
        print(result.table())
    return result.model
