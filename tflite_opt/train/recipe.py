"""Recipes: the data that says which optimization stages run, in which order, with what settings.

A recipe is a list of stages (``distill``, ``prune``, ``cluster``, ``qat``) plus a per-layer
policy and the target precision of the final ``.tflite``. It round-trips through JSON/YAML so
that the exact recipe is saved next to the model it produced.

Example recipe file (YAML)::

    precision: int8
    policy: {skip_first_conv: true, skip_classifier: true, sparsity: {dense1: 0.8}}
    stages:
      - {type: prune, epochs: 4, learning_rate: 0.001, target_sparsity: 0.75}
      - {type: cluster, epochs: 2, learning_rate: 0.0001, number_of_clusters: 16}
      - {type: qat, epochs: 2, learning_rate: 0.0001, scheme: pcqat,
         distill: {alpha: 0.5, temperature: 3.0}}   # the float model teaches the QAT model
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, ClassVar, Mapping, Union

from tflite_opt.errors import InvalidArgumentError, RecipeError

PRECISIONS = ("int8", "float32", "float16", "dynamic", "int16x8")
SCHEDULES = ("polynomial", "constant")
# What a prune stage optimizes: "size" zeroes weights (smaller gzip, same speed on XNNPACK);
# "latency" removes whole output channels (tflite_opt.train.channel_pruning): thinner ops.
PRUNE_OBJECTIVES = ("size", "latency")
CHANNEL_CRITERIA = ("l1", "l2")  # filter norms that rank channels (train/channel_pruning.py)
CENTROID_INITS = ("kmeans++", "linear", "density", "random")
QAT_SCHEMES = ("auto", "default", "cqat", "pqat", "pcqat")
# Sane bounds, so a typo cannot ask TensorFlow for a 52 GB tensor or train for a year:
# clustering exists to leave few distinct values (an int8 weight has only 256 anyway).
MAX_EPOCHS = 1000
MAX_CLUSTERS = 256
MAX_RECIPE_BYTES = 1 * 2**20  # a recipe is a few lines; refuse anything bigger unread


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to a short prefix: a hostile recipe must not echo megabytes."""
    try:
        text = repr(value)
    except RecursionError:
        return f"a {type(value).__name__} nested too deeply"
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _where(source: str | None) -> str:
    return f" in {source}" if source else ""


def _check_range(source: str | None, key: str, value: Any, low: float, high: float,
                 high_open: bool = True, low_open: bool = False) -> None:
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = ok_type and (value > low if low_open else value >= low) and \
        (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
        raise RecipeError(f"recipe key {key!r}{_where(source)} is {_short(value)}; accepted: a number in "
                          f"{interval}; fix the value in the recipe")


def _check_int(source: str | None, key: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise RecipeError(f"recipe key {key!r}{_where(source)} is {_short(value)}; accepted: an "
                          f"integer from {low} to {high}")


def _check_epochs(source: str | None, prefix: str, epochs: Any) -> None:
    _check_int(source, f"{prefix}.epochs", epochs, 1, MAX_EPOCHS)


def _check_lr(source: str | None, prefix: str, lr: Any) -> None:
    if lr is not None:
        _check_range(source, f"{prefix}.learning_rate", lr, 0.0, 10.0, low_open=True)


def _check_choice(source: str | None, key: str, value: Any, choices: tuple[str, ...]) -> None:
    if not isinstance(value, str) or value not in choices:
        raise RecipeError(f"recipe key {key!r}{_where(source)} is {_short(value)}; accepted: "
                          f"{', '.join(choices)}")


@dataclasses.dataclass(frozen=True)
class SelfDistill:
    """The ``distill:`` key of a prune/cluster/qat stage: the float model, frozen, teaches its
    compressed version during the stage (see ``tflite_opt.train.distill``).

    Args:
        alpha: Weight of the hard-label loss in [0, 1]; ``1 - alpha`` weighs the teacher's soft
            targets. Defaults to 0.5.
        temperature: Softmax temperature of the soft targets, in (0, 100]. Defaults to 3.0.
    """

    alpha: float = 0.5
    temperature: float = 3.0

    def validate(self, source: str | None = None, prefix: str = "distill") -> None:
        _check_range(source, f"{prefix}.alpha", self.alpha, 0.0, 1.0, high_open=False)
        _check_range(source, f"{prefix}.temperature", self.temperature, 0.0, 100.0,
                     high_open=False, low_open=True)


def _check_self_distill(source: str | None, prefix: str, value: Any) -> None:
    if value is not None and not isinstance(value, SelfDistill):
        raise RecipeError(f"recipe key '{prefix}.distill'{_where(source)} is {_short(value)}; "
                          "accepted: a mapping like {alpha: 0.5, temperature: 3.0}, or null")
    if value is not None:
        value.validate(source, f"{prefix}.distill")


@dataclasses.dataclass(frozen=True)
class PruneStage:
    """Magnitude pruning to ``target_sparsity`` (or M-by-N structured sparsity).

    Args:
        epochs: Fine-tuning epochs of the stage. Defaults to 4.
        learning_rate: Learning rate of the stage's fresh optimizer; None keeps the optimizer's.
            Defaults to 1e-3.
        target_sparsity: Fraction of zeros in each pruned kernel, in [0, 1). Defaults to 0.75.
        initial_sparsity: Sparsity at the start of a polynomial schedule. Defaults to 0.0.
        schedule: ``"polynomial"`` (ramp up, then hold) or ``"constant"``. Defaults to polynomial.
        end_fraction: Share of the stage's steps over which the polynomial ramp runs; the rest
            fine-tunes at the final sparsity. Defaults to 0.7.
        frequency: Steps between mask updates; None picks about ten updates per ramp.
        power: Exponent of the polynomial decay. Defaults to 3.
        m_by_n: ``(m, n)`` structured sparsity, e.g. ``(2, 4)``: m zeros in every n consecutive
            input weights. Defaults to None (unstructured).
        distill: :class:`SelfDistill` settings: the float model teaches the pruned one. Defaults
            to None (labels only).
        objective: ``size`` (magnitude pruning: zeros in the kernels) or ``latency`` (channel
            pruning: ``target_sparsity`` of each layer's output channels are removed at the
            stage's start, one shot, and the stage's epochs fine-tune the thinner model; the
            schedule keys do not apply). Defaults to size.
        criterion: Channel importance with ``objective: latency``: ``l1`` or ``l2`` filter
            norm. Defaults to l1.
        channel_multiple: With ``objective: latency``, keep a multiple of this many channels.
            Defaults to 1.
    """

    type: ClassVar[str] = "prune"
    epochs: int = 4
    learning_rate: float | None = 1e-3
    target_sparsity: float = 0.75
    initial_sparsity: float = 0.0
    schedule: str = "polynomial"
    end_fraction: float = 0.7
    frequency: int | None = None
    power: float = 3.0
    m_by_n: tuple[int, int] | None = None
    distill: SelfDistill | None = None
    objective: str = "size"
    criterion: str = "l1"
    channel_multiple: int = 1

    def validate(self, source: str | None = None, prefix: str = "prune") -> None:
        _check_epochs(source, prefix, self.epochs)
        _check_choice(source, f"{prefix}.objective", self.objective, PRUNE_OBJECTIVES)
        _check_choice(source, f"{prefix}.criterion", self.criterion, CHANNEL_CRITERIA)
        _check_int(source, f"{prefix}.channel_multiple", self.channel_multiple, 1, 64)
        if self.objective == "latency" and self.m_by_n is not None:
            raise RecipeError(f"recipe key '{prefix}.m_by_n'{_where(source)} is set with "
                              "objective latency; M-by-N zeros do not make XNNPACK faster, "
                              "channel pruning does: remove m_by_n, or use objective: size")
        _check_self_distill(source, prefix, self.distill)
        _check_lr(source, prefix, self.learning_rate)
        _check_range(source, f"{prefix}.target_sparsity", self.target_sparsity, 0.0, 1.0)
        _check_range(source, f"{prefix}.initial_sparsity", self.initial_sparsity, 0.0,
                     self.target_sparsity, high_open=False)
        _check_choice(source, f"{prefix}.schedule", self.schedule, SCHEDULES)
        _check_range(source, f"{prefix}.end_fraction", self.end_fraction, 0.0, 1.0,
                     high_open=False, low_open=True)
        if self.frequency is not None:
            _check_int(source, f"{prefix}.frequency", self.frequency, 1, 10**9)
        _check_range(source, f"{prefix}.power", self.power, 0.0, 100.0, low_open=True)
        if self.m_by_n is not None:
            m_n = tuple(self.m_by_n)
            if len(m_n) != 2 or not all(isinstance(v, int) and not isinstance(v, bool)
                                        for v in m_n) or not 0 < m_n[0] < m_n[1] <= 64:
                raise RecipeError(f"recipe key '{prefix}.m_by_n'{_where(source)} is "
                                  f"{_short(self.m_by_n)}; accepted: [m, n] integers with "
                                  "0 < m < n <= 64, e.g. [2, 4]")

    def schedule_arguments(self, total_steps: int | None = None, *,
                           target_sparsity: float | None = None, begin_step: int = 0,
                           end_step: int | None = None) -> tuple[str, dict[str, Any]]:
        """The schedule's kind and constructor arguments; the same for tfmot and Keras 3.

        The polynomial ramp ends at ``end_step`` (default: ``end_fraction`` of ``total_steps``),
        snapped to a multiple of the update frequency: masks only update on
        ``(step - begin) % frequency == 0``, so an end step off that grid would stop short of the
        target sparsity.

        Args:
            total_steps: Training steps of the stage (epochs x steps per epoch).
            target_sparsity: Overrides ``target_sparsity`` (per-layer policy).
            begin_step: First step that prunes. Defaults to 0.
            end_step: Last step of the ramp; computed from ``total_steps`` when None.

        Returns:
            ``("constant", {target_sparsity, begin_step, frequency})`` or ``("polynomial",
            {initial_sparsity, final_sparsity, begin_step, end_step, power, frequency})``, the
            keyword arguments of both Kerases' ``ConstantSparsity`` / ``PolynomialDecay``.

        Raises:
            InvalidArgumentError: a polynomial schedule without ``end_step`` or ``total_steps``.

        Example:
            >>> PruneStage(target_sparsity=0.5).schedule_arguments(total_steps=100)[0]
            'polynomial'
        """
        target = self.target_sparsity if target_sparsity is None else target_sparsity
        if self.schedule == "constant":
            frequency = self.frequency
            if frequency is None:
                frequency = 100 if total_steps is None else max(1, min(100, total_steps // 10))
            return "constant", {"target_sparsity": target, "begin_step": begin_step,
                                "frequency": frequency}
        if end_step is None:
            if total_steps is None:
                raise InvalidArgumentError(
                    "a polynomial pruning schedule needs the number of training steps; pass "
                    "end_step=epochs * steps_per_epoch (or schedule='constant')")
            end_step = begin_step + max(1, int(total_steps * self.end_fraction))
        ramp = max(1, end_step - begin_step)
        frequency = min(self.frequency or max(1, ramp // 10), ramp)
        end_step = begin_step + max(frequency, (ramp // frequency) * frequency)
        if total_steps is not None and end_step > begin_step + total_steps:
            end_step = begin_step + (total_steps // frequency) * frequency
        return "polynomial", {"initial_sparsity": min(self.initial_sparsity, target),
                              "final_sparsity": target, "begin_step": begin_step,
                              "end_step": max(end_step, begin_step + 1), "power": self.power,
                              "frequency": frequency}


@dataclasses.dataclass(frozen=True)
class ClusterStage:
    """Weight clustering: each kernel (or each output channel) shares ``number_of_clusters`` values.

    Args:
        epochs: Fine-tuning epochs. Defaults to 2.
        learning_rate: Learning rate; None keeps the optimizer's. Defaults to 1e-4.
        number_of_clusters: Clusters per kernel (per channel with ``per_channel``); >= 2.
            Defaults to 16.
        init: Centroid initialization: ``kmeans++``, ``linear``, ``density``, ``random``.
            Defaults to kmeans++.
        preserve_sparsity: Keep the zeros of an already pruned model. Defaults to True.
        per_channel: Cluster each output channel of Conv2D separately. Defaults to False.
        distill: :class:`SelfDistill` settings: the float model teaches the clustered one.
            Defaults to None (labels only).
    """

    type: ClassVar[str] = "cluster"
    epochs: int = 2
    learning_rate: float | None = 1e-4
    number_of_clusters: int = 16
    init: str = "kmeans++"
    preserve_sparsity: bool = True
    per_channel: bool = False
    distill: SelfDistill | None = None

    def validate(self, source: str | None = None, prefix: str = "cluster") -> None:
        _check_epochs(source, prefix, self.epochs)
        _check_self_distill(source, prefix, self.distill)
        _check_lr(source, prefix, self.learning_rate)
        _check_int(source, f"{prefix}.number_of_clusters", self.number_of_clusters, 2,
                   MAX_CLUSTERS)
        _check_choice(source, f"{prefix}.init", self.init, CENTROID_INITS)
        for key in ("preserve_sparsity", "per_channel"):
            if not isinstance(getattr(self, key), bool):
                raise RecipeError(f"recipe key '{prefix}.{key}'{_where(source)} is "
                                  f"{_short(getattr(self, key))}; accepted: true or false")


@dataclasses.dataclass(frozen=True)
class QATStage:
    """Quantization-aware training.

    Args:
        epochs: Fine-tuning epochs. Defaults to 2.
        learning_rate: Learning rate; None keeps the optimizer's. Defaults to 1e-4.
        scheme: ``default`` (8-bit QAT), ``cqat`` (keeps clusters), ``pqat`` (keeps sparsity),
            ``pcqat`` (keeps both) or ``auto`` (picks from the earlier stages). Defaults to auto.
        distill: :class:`SelfDistill` settings: the float model teaches the quantization-aware
            one. Defaults to None (labels only).
    """

    type: ClassVar[str] = "qat"
    epochs: int = 2
    learning_rate: float | None = 1e-4
    scheme: str = "auto"
    distill: SelfDistill | None = None

    def validate(self, source: str | None = None, prefix: str = "qat") -> None:
        _check_epochs(source, prefix, self.epochs)
        _check_self_distill(source, prefix, self.distill)
        _check_lr(source, prefix, self.learning_rate)
        _check_choice(source, f"{prefix}.scheme", self.scheme, QAT_SCHEMES)


# Builders a distill stage can name as its student; tflite_opt.train.distill.STUDENT_BUILDERS
# holds the functions (a test pins that the two agree; this module imports no TensorFlow).
STUDENT_BUILDER_NAMES = ("digits_cnn", "dense_mlp")
MODEL_FILE_SUFFIXES = (".keras", ".h5")


@dataclasses.dataclass(frozen=True)
class DistillStage:
    """Knowledge distillation: a new, smaller student learns from a teacher; the later stages
    then compress the student.

    Args:
        student: A builder name (``digits_cnn``, ``dense_mlp``), built with the teacher's input
            shape, class count and Keras, or a ``.keras``/``.h5`` file (loaded safely).
        teacher: A ``.keras``/``.h5`` file, or None for the model given to the plan. Defaults
            to None.
        student_options: Keyword arguments of the builder, e.g. ``{width: 4}``. Defaults to {}.
        epochs: Training epochs of the student. Defaults to 10.
        learning_rate: Learning rate; None keeps the optimizer's. Defaults to 1e-3.
        alpha: Weight of the hard-label loss in [0, 1]. Defaults to 0.5.
        temperature: Softmax temperature of the soft targets. Defaults to 3.0.
    """

    type: ClassVar[str] = "distill"
    student: str = "digits_cnn"
    teacher: str | None = None
    student_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    epochs: int = 10
    learning_rate: float | None = 1e-3
    alpha: float = 0.5
    temperature: float = 3.0

    def validate(self, source: str | None = None, prefix: str = "distill") -> None:
        if not isinstance(self.student, str) or not (
                self.student in STUDENT_BUILDER_NAMES or
                self.student.lower().endswith(MODEL_FILE_SUFFIXES)):
            raise RecipeError(f"recipe key '{prefix}.student'{_where(source)} is "
                              f"{_short(self.student)}; accepted: a builder name "
                              f"({', '.join(STUDENT_BUILDER_NAMES)}) or a .keras/.h5 file")
        if self.teacher is not None and (not isinstance(self.teacher, str) or
                                         not self.teacher.lower().endswith(MODEL_FILE_SUFFIXES)):
            raise RecipeError(f"recipe key '{prefix}.teacher'{_where(source)} is "
                              f"{_short(self.teacher)}; accepted: a .keras/.h5 file, or null "
                              "for the model given to the plan")
        options = self.student_options
        if not isinstance(options, Mapping) or not all(isinstance(k, str) for k in options) or \
                not all(isinstance(v, (int, float, list, tuple)) and not isinstance(v, bool)
                        for v in options.values()):
            raise RecipeError(f"recipe key '{prefix}.student_options'{_where(source)} is "
                              f"{_short(options)}; accepted: a mapping of builder argument to a "
                              "number or list of numbers, e.g. {width: 4}")
        if options and self.student not in STUDENT_BUILDER_NAMES:
            raise RecipeError(f"recipe key '{prefix}.student_options'{_where(source)} is set but "
                              f"the student is the file {_short(self.student)}; options apply "
                              "to a builder name only: remove them")
        _check_epochs(source, prefix, self.epochs)
        _check_lr(source, prefix, self.learning_rate)
        SelfDistill(self.alpha, self.temperature).validate(source, prefix)


DECOMPOSE_CONV_MODES = ("channel", "spatial")  # tflite_opt.train.decompose.CONV_MODES


@dataclasses.dataclass(frozen=True)
class DecomposeStage:
    """Low-rank decomposition (truncated SVD) of Dense/Conv2D kernels, then fine-tuning; runs
    before prune/cluster/qat, on the layers the policy selects (see ``tflite_opt.decompose``).

    Args:
        epochs: Fine-tuning epochs after the factorization. Defaults to 2.
        learning_rate: Learning rate; None keeps the optimizer's. Defaults to 1e-3.
        params_ratio: Per layer, keep at most this fraction of its parameters, in (0, 1).
            Defaults to 0.5.
        energy: Instead of ``params_ratio``: keep this fraction of each kernel's squared
            singular values, in (0, 1]. Defaults to None.
        conv_mode: ``channel`` (kxk conv + 1x1 conv) or ``spatial`` (kx1 + 1xk). Defaults to
            channel.
    """

    type: ClassVar[str] = "decompose"
    epochs: int = 2
    learning_rate: float | None = 1e-3
    params_ratio: float | None = 0.5
    energy: float | None = None
    conv_mode: str = "channel"

    def validate(self, source: str | None = None, prefix: str = "decompose") -> None:
        _check_epochs(source, prefix, self.epochs)
        _check_lr(source, prefix, self.learning_rate)
        if (self.params_ratio is None) == (self.energy is None):
            raise RecipeError(f"recipe keys '{prefix}.params_ratio' and '{prefix}.energy'"
                              f"{_where(source)} are {_short(self.params_ratio)} and "
                              f"{_short(self.energy)}; accepted: exactly one of them (set the "
                              "other to null)")
        if self.params_ratio is not None:
            _check_range(source, f"{prefix}.params_ratio", self.params_ratio, 0.0, 1.0,
                         low_open=True)
        if self.energy is not None:
            _check_range(source, f"{prefix}.energy", self.energy, 0.0, 1.0, low_open=True,
                         high_open=False)
        _check_choice(source, f"{prefix}.conv_mode", self.conv_mode, DECOMPOSE_CONV_MODES)


Stage = Union[DistillStage, DecomposeStage, PruneStage, ClusterStage, QATStage]
STAGE_TYPES: dict[str, type] = {cls.type: cls for cls in (DistillStage, DecomposeStage,
                                                          PruneStage, ClusterStage, QATStage)}
# Stages whose ``distill:`` key turns on self-distillation.
SELF_DISTILL_STAGES = ("prune", "cluster", "qat")


@dataclasses.dataclass(frozen=True)
class LayerPolicy:
    """Which layers are optimized, and per-layer overrides.

    Only layers with kernels that tfmot can wrap (Conv, Dense, ...) are ever selected; layers
    without weights (pooling, BN, activations, Add, ...) are left alone.

    Args:
        skip_first_conv: Leave the first convolution in float kernels (it is small and sensitive).
            Defaults to True.
        skip_classifier: Leave the last Dense layer alone. Defaults to True.
        skip: Layer names never optimized (also the way out for custom layers). Defaults to ().
        only: If given, only these layer names are optimized. Defaults to None (all eligible).
        sparsity: Per-layer target sparsity overrides, ``{layer_name: sparsity}``.
        clusters: Per-layer number-of-clusters overrides, ``{layer_name: clusters}``.
    """

    skip_first_conv: bool = True
    skip_classifier: bool = True
    skip: tuple[str, ...] = ()
    only: tuple[str, ...] | None = None
    sparsity: Mapping[str, float] = dataclasses.field(default_factory=dict)
    clusters: Mapping[str, int] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        # Types first: tuple("dense1") would silently become ('d', 'e', 'n', 's', 'e', '1').
        _check_policy_types(self.skip, self.only, self.sparsity, self.clusters, None)
        object.__setattr__(self, "skip", tuple(self.skip))
        if self.only is not None:
            object.__setattr__(self, "only", tuple(self.only))
        object.__setattr__(self, "sparsity", dict(self.sparsity))
        object.__setattr__(self, "clusters", dict(self.clusters))

    def validate(self, source: str | None = None) -> None:
        _check_policy_types(self.skip, self.only, self.sparsity, self.clusters, source)
        for key in ("skip_first_conv", "skip_classifier"):
            if not isinstance(getattr(self, key), bool):
                raise RecipeError(f"recipe key 'policy.{key}'{_where(source)} is "
                                  f"{_short(getattr(self, key))}; accepted: true or false")
        for name, value in self.sparsity.items():
            _check_range(source, f"policy.sparsity.{name}", value, 0.0, 1.0)
        for name, value in self.clusters.items():
            _check_int(source, f"policy.clusters.{name}", value, 2, MAX_CLUSTERS)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["skip"] = list(self.skip)
        out["only"] = None if self.only is None else list(self.only)
        return out


def _check_policy_types(skip: Any, only: Any, sparsity: Any, clusters: Any,
                        source: str | None) -> None:
    """Raises RecipeError unless the policy's layer lists and per-layer maps have their types."""
    for key, names in (("skip", skip), ("only", only)):
        if names is None and key == "only":
            continue
        if isinstance(names, (str, bytes)) or not isinstance(names, (list, tuple)) or \
                not all(isinstance(n, str) for n in names):
            example = f"[{names}]" if isinstance(names, str) else "[dense1, conv2]"
            raise RecipeError(f"recipe key 'policy.{key}'{_where(source)} is {_short(names)}; "
                              f"accepted: a list of layer names, e.g. {_short(example, 40)[1:-1]}"
                              f"{'' if key == 'skip' else ' or null'}")
    for key, mapping in (("sparsity", sparsity), ("clusters", clusters)):
        if not isinstance(mapping, Mapping) or not all(isinstance(k, str) for k in mapping):
            raise RecipeError(f"recipe key 'policy.{key}'{_where(source)} is {_short(mapping)}; "
                              "accepted: a mapping of layer name to value, e.g. {dense1: "
                              f"{'0.9' if key == 'sparsity' else '8'}}}")


@dataclasses.dataclass(frozen=True)
class Recipe:
    """An ordered list of optimization stages, a layer policy and the final precision.

    Example:
        >>> recipe = Recipe.default()
        >>> [s.type for s in recipe.stages]
        ['prune', 'cluster', 'qat']
        >>> Recipe.from_dict(recipe.to_dict()) == recipe
        True
    """

    stages: tuple[Stage, ...]
    policy: LayerPolicy = dataclasses.field(default_factory=LayerPolicy)
    precision: str = "int8"

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        self.validate()

    def validate(self, source: str | None = None) -> None:
        """Raises RecipeError naming the key (and file) of the first bad value."""
        if not self.stages:
            raise RecipeError(f"recipe key 'stages'{_where(source)} is empty; accepted: a list of "
                              f"stages of types {', '.join(STAGE_TYPES)}")
        counts: dict[str, int] = {}
        for i, stage in enumerate(self.stages):
            if not isinstance(stage, tuple(STAGE_TYPES.values())):
                raise RecipeError(f"recipe stage {i}{_where(source)} is a {type(stage).__name__}; "
                                  f"accepted: {', '.join(STAGE_TYPES)} stages")
            counts[stage.type] = counts.get(stage.type, 0) + 1
            stage.validate(source, prefix=f"stages[{i}]({stage.type})")
        for stage_type, n in counts.items():
            if n > 1:
                raise RecipeError(f"recipe key 'stages'{_where(source)} has {n} {stage_type!r} "
                                  "stages; accepted: each stage type at most once")
        if "distill" in counts and self.stages[0].type != "distill":
            raise RecipeError(f"recipe key 'stages'{_where(source)} has a distill stage that is "
                              "not first; distill must be the first stage (it makes the model "
                              "the later stages compress)")
        types = [stage.type for stage in self.stages]
        if "decompose" in counts and any(t in ("prune", "cluster", "qat")
                                         for t in types[:types.index("decompose")]):
            raise RecipeError(f"recipe key 'stages'{_where(source)} has a decompose stage after "
                              "a prune/cluster/qat stage; decompose must come before them (it "
                              "replaces the kernels they compress)")
        if "qat" in counts and self.stages[-1].type != "qat":
            raise RecipeError(f"recipe key 'stages'{_where(source)} has a qat stage that is not "
                              "last; QAT must be the last stage (nothing can train after it)")
        _check_choice(source, "precision", self.precision, PRECISIONS)
        self.policy.validate(source)

    @classmethod
    def default(cls) -> "Recipe":
        """Prune to 75% (polynomial), cluster to 16 (sparsity-preserving), PCQAT, full int8."""
        return cls(stages=(PruneStage(), ClusterStage(), QATStage(scheme="pcqat")),
                   policy=LayerPolicy(), precision="int8")

    def stage(self, stage_type: str) -> Stage | None:
        """The stage of ``stage_type`` (``prune``/``cluster``/``qat``), or None."""
        return next((s for s in self.stages if s.type == stage_type), None)

    def to_dict(self) -> dict[str, Any]:
        stages = []
        for stage in self.stages:
            d = {"type": stage.type, **dataclasses.asdict(stage)}
            if d.get("m_by_n") is not None:
                d["m_by_n"] = list(d["m_by_n"])
            if "distill" in d and d["distill"] is None:
                del d["distill"]  # a recipe without self-distillation keeps its old dict (hash)
            if stage.type == "prune" and stage.objective == "size":
                for key in ("objective", "criterion", "channel_multiple"):  # same: old dict
                    del d[key]
            if "student_options" in d:
                d["student_options"] = dict(d["student_options"])
            stages.append(d)
        return {"precision": self.precision, "policy": self.policy.to_dict(), "stages": stages}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> "Recipe":
        """Builds a recipe from plain data; unknown keys raise RecipeError naming them."""
        if not isinstance(data, Mapping):
            raise RecipeError(f"recipe{_where(source)} is a {type(data).__name__}; accepted: a "
                              "mapping with keys stages, policy, precision")
        _reject_unknown(data, {"stages", "policy", "precision"}, "", source)
        if "stages" not in data:
            raise RecipeError(f"recipe{_where(source)} has no 'stages' key; accepted: a list like "
                              "[{type: prune, ...}, {type: cluster, ...}, {type: qat, ...}]")
        raw_stages = data["stages"]
        if not isinstance(raw_stages, (list, tuple)):
            raise RecipeError(f"recipe key 'stages'{_where(source)} is {_short(raw_stages)}; "
                              "accepted: a list")
        stages = []
        for i, raw in enumerate(raw_stages):
            if not isinstance(raw, Mapping) or not isinstance(raw.get("type"), str) or \
                    raw["type"] not in STAGE_TYPES:
                got = raw.get("type") if isinstance(raw, Mapping) else raw
                raise RecipeError(f"recipe key 'stages[{i}].type'{_where(source)} is {_short(got)}; "
                                  f"accepted: {', '.join(STAGE_TYPES)}")
            stage_cls = STAGE_TYPES[raw["type"]]
            fields = {f.name for f in dataclasses.fields(stage_cls)}
            kwargs = {k: v for k, v in raw.items() if k != "type"}
            _reject_unknown(kwargs, fields, f"stages[{i}]({raw['type']}).", source)
            if kwargs.get("m_by_n") is not None and isinstance(kwargs["m_by_n"], list):
                kwargs["m_by_n"] = tuple(kwargs["m_by_n"])
            if raw["type"] in SELF_DISTILL_STAGES and kwargs.get("distill") is not None:
                settings = kwargs["distill"]
                prefix = f"stages[{i}]({raw['type']}).distill"
                if not isinstance(settings, Mapping):
                    raise RecipeError(f"recipe key {prefix!r}{_where(source)} is "
                                      f"{_short(settings)}; accepted: a mapping like "
                                      "{alpha: 0.5, temperature: 3.0}, or null")
                _reject_unknown(settings, {f.name for f in dataclasses.fields(SelfDistill)},
                                prefix + ".", source)
                kwargs["distill"] = SelfDistill(**settings)
            stages.append(stage_cls(**kwargs))
        raw_policy = data.get("policy") or {}
        if not isinstance(raw_policy, Mapping):
            raise RecipeError(f"recipe key 'policy'{_where(source)} is {_short(raw_policy)}; "
                              "accepted: a mapping")
        _reject_unknown(raw_policy, {f.name for f in dataclasses.fields(LayerPolicy)}, "policy.",
                        source)
        _check_policy_types(raw_policy.get("skip", ()), raw_policy.get("only"),
                            raw_policy.get("sparsity", {}), raw_policy.get("clusters", {}), source)
        policy = LayerPolicy(**raw_policy)
        try:
            recipe = cls.__new__(cls)
            object.__setattr__(recipe, "stages", tuple(stages))
            object.__setattr__(recipe, "policy", policy)
            object.__setattr__(recipe, "precision", data.get("precision", "int8"))
            recipe.validate(source)
        except TypeError as exc:  # e.g. a list where a number is expected
            raise RecipeError(f"recipe{_where(source)} has a value of the wrong type: "
                              f"{str(exc)[:200]}") from exc
        return recipe

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Recipe":
        """Reads a ``.json``, ``.yaml`` or ``.yml`` recipe file.

        Raises:
            RecipeError: the file is missing, unparsable, has unknown keys or bad values; the
                message names the file and the key.

        Example:
            >>> recipe = Recipe.from_file("recipes/default.yaml")
        """
        path = Path(path)
        source = str(path)
        if not path.is_file():
            raise RecipeError(f"recipe file {source!r} does not exist; pass --recipe=PATH to a "
                              ".json or .yaml recipe (see recipes/)")
        suffix = path.suffix.lower()
        if suffix not in (".json", ".yaml", ".yml"):
            raise RecipeError(f"recipe file {source!r} has suffix {_short(path.suffix, 20)}; "
                              "accepted: .json, .yaml, .yml")
        size = path.stat().st_size
        if size > MAX_RECIPE_BYTES:
            raise RecipeError(f"recipe file {source!r} is {size} bytes, over the "
                              f"{MAX_RECIPE_BYTES}-byte limit of a recipe; pass a recipe file "
                              "(see recipes/)")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecipeError(f"recipe file {source!r} is not UTF-8 text (byte {exc.start} is "
                              f"0x{exc.object[exc.start]:02x}); save it as UTF-8") from None
        try:
            data = json.loads(text) if suffix == ".json" else _load_yaml(text, source)
        except RecipeError:
            raise
        except Exception as exc:  # noqa: BLE001 - yaml.YAMLError is no ValueError; RecursionError
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise RecipeError(f"recipe file {source!r} could not be parsed: "
                              f"{first[:200]}") from None
        return cls.from_dict(data, source=source)

    def save(self, path: str | os.PathLike, overwrite: bool = False) -> Path:
        """Writes the recipe as JSON (atomically)."""
        from tflite_opt.files import atomic_write_json

        return atomic_write_json(path, self.to_dict(), overwrite=overwrite)


def _load_yaml(text: str, source: str) -> Any:
    """``yaml.safe_load`` without aliases: nested ``*refs`` ("billion laughs") expand
    exponentially, so a 450-byte file could build gigabytes. A recipe never needs them."""
    import yaml

    class NoAliasLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise RecipeError(f"recipe file {source!r} uses a YAML alias (*name) at line "
                                  f"{mark.line + 1}; aliases are not accepted in recipes (they "
                                  "can expand exponentially): write the values out")
            return super().compose_node(parent, index)

    return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 - a SafeLoader subclass


def _reject_unknown(data: Mapping[str, Any], allowed: set[str], prefix: str,
                    source: str | None) -> None:
    not_text = [k for k in data if not isinstance(k, str)]
    if not_text:
        raise RecipeError(f"recipe key {_short(not_text[0], 30)}"
                          f"{' under ' + prefix.rstrip('.') if prefix else ''}{_where(source)} "
                          f"is {'null' if not_text[0] is None else 'a ' + type(not_text[0]).__name__}"
                          f", not a name; accepted keys: "
                          f"{', '.join(sorted(allowed))}")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise RecipeError(f"recipe key {_short(prefix + unknown[0])}{_where(source)} is unknown; "
                          f"accepted keys{' under ' + prefix.rstrip('.') if prefix else ''}: "
                          f"{', '.join(sorted(allowed))}")
