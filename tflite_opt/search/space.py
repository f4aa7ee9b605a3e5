"""The search space: an efficient architecture and the compression recipe that ships it.

A candidate is one of the builders of ``tflite_opt.models.efficient`` (width, depth, depthwise
kernel size, input resolution) plus a recipe: the ``.tflite`` precision (int8 or float32), a
pruning level and a cluster count (0 = none). :class:`SearchSpace` lists the choices and turns
them into KerasTuner hyperparameters; :func:`weight_bytes_lower_bound` says, from the built
model alone, how small the file can possibly be, so a candidate over the size budget is
rejected before it is trained.

Example:
    >>> space = SearchSpace(widths=(0.25, 0.5), resolutions=(16, 24))
    >>> hp = space.hyperparameters()            # keras_tuner.HyperParameters
    >>> candidate = Candidate.from_values(hp.values)
    >>> model = candidate.build(num_classes=10)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

from tflite_opt.errors import InvalidArgumentError

# Builders of tflite_opt.models.efficient, by name; imported when a candidate is built, so a
# distributed search's chief (which builds nothing) never imports tf_keras.
ARCHITECTURES = ("mobilenet_v2_like", "mobilenet_v3_small_like", "shufflenet_v2_like")
SEARCH_PRECISIONS = ("int8", "float32")
BYTES_PER_WEIGHT = {"int8": 1, "float32": 4}
# SearchSpace field -> Candidate field (the hyperparameter's name).
_HP_NAMES = {"architectures": "architecture", "widths": "width", "depths": "depth",
             "kernel_sizes": "kernel_size", "resolutions": "resolution",
             "precisions": "precision", "sparsities": "sparsity", "clusters": "clusters"}
# Kernels whose weights are stored in the file (BatchNorm folds into them).
_KERNEL_LAYERS = ("Conv2D", "DepthwiseConv2D", "Dense")


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One point of the space: an architecture and its recipe.

    Attributes:
        architecture: One of :data:`ARCHITECTURES`.
        width, depth: The builder's channel and block multipliers.
        kernel_size: Depthwise kernel (3, 5 or 7).
        resolution: Input height and width (the digits are resized to it).
        precision: ``int8`` (full integer, calibrated) or ``float32``.
        sparsity: Pruning target in [0, 1); 0 = no pruning stage.
        clusters: Weights per kernel after clustering; 0 = no clustering stage.
    """

    architecture: str = "mobilenet_v2_like"
    width: float = 0.5
    depth: float = 0.5
    kernel_size: int = 3
    resolution: int = 24
    precision: str = "int8"
    sparsity: float = 0.0
    clusters: int = 0

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> "Candidate":
        """From a trial's hyperparameter values (unknown keys such as ``tuner/epochs`` ignored)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in fields})

    def build(self, num_classes: int = 10, channels: int = 1, flavor: str = "tf_keras") -> Any:
        """The untrained Keras model."""
        if self.architecture not in ARCHITECTURES:
            raise InvalidArgumentError(f"architecture is {self.architecture!r}; accepted: "
                                       f"{', '.join(ARCHITECTURES)}")
        from tflite_opt.models import efficient

        builder: Callable[..., Any] = getattr(efficient, self.architecture)
        return builder((self.resolution, self.resolution, channels), num_classes,
                       width=self.width, depth=self.depth, kernel_size=self.kernel_size,
                       flavor=flavor)

    def recipe(self, epochs: int = 1) -> Any:
        """The compression stages after float training as a ``Recipe`` (None when there are none).

        Pruning keeps the first conv and the classifier whole (the default policy); clustering
        keeps the pruned zeros. Full-int8 comes from post-training calibration, not QAT: tfmot's
        QAT has no rule for the hard-swish ``Rescaling`` and the ShuffleNet reshapes.
        """
        from tflite_opt.train.recipe import ClusterStage, LayerPolicy, PruneStage, Recipe

        stages: list[Any] = []
        if self.sparsity > 0:
            stages.append(PruneStage(epochs=epochs, target_sparsity=self.sparsity))
        if self.clusters > 0:
            stages.append(ClusterStage(epochs=epochs, number_of_clusters=self.clusters,
                                       preserve_sparsity=self.sparsity > 0))
        if not stages:
            return None
        return Recipe(stages=tuple(stages), policy=LayerPolicy(), precision=self.precision)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class SearchSpace:
    """The choices of each candidate field; one value makes the field fixed.

    Args:
        architectures: Builder names. Defaults to all three.
        widths: Channel multipliers. Defaults to (0.25, 0.5, 0.75, 1.0).
        depths: Block multipliers. Defaults to (0.5, 1.0).
        kernel_sizes: Depthwise kernels. Defaults to (3, 5).
        resolutions: Input sizes. Defaults to (16, 24, 32).
        precisions: ``int8``/``float32``. Defaults to both.
        sparsities: Pruning targets (0 = none). Defaults to (0.0, 0.5, 0.75).
        clusters: Cluster counts (0 = none). Defaults to (0, 16).
    """

    architectures: Sequence[str] = ARCHITECTURES
    widths: Sequence[float] = (0.25, 0.5, 0.75, 1.0)
    depths: Sequence[float] = (0.5, 1.0)
    kernel_sizes: Sequence[int] = (3, 5)
    resolutions: Sequence[int] = (16, 24, 32)
    precisions: Sequence[str] = SEARCH_PRECISIONS
    sparsities: Sequence[float] = (0.0, 0.5, 0.75)
    clusters: Sequence[int] = (0, 16)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            values = tuple(getattr(self, field.name))
            if not values:
                raise InvalidArgumentError(f"search space {field.name} is empty; give at least "
                                           "one value")
            object.__setattr__(self, field.name, values)
        checks = (("architectures", lambda v: v in ARCHITECTURES, ", ".join(ARCHITECTURES)),
                  ("widths", lambda v: 0 < v <= 4, "multipliers in (0, 4]"),
                  ("depths", lambda v: 0 < v <= 4, "multipliers in (0, 4]"),
                  ("kernel_sizes", lambda v: v in (3, 5, 7), "3, 5 or 7"),
                  ("resolutions", lambda v: isinstance(v, int) and v >= 8, "integers >= 8"),
                  ("precisions", lambda v: v in SEARCH_PRECISIONS, ", ".join(SEARCH_PRECISIONS)),
                  ("sparsities", lambda v: 0 <= v < 1, "fractions in [0, 1)"),
                  ("clusters", lambda v: v == 0 or 2 <= v <= 256, "0 (none) or 2-256"))
        for name, ok, accepted in checks:
            bad = [v for v in getattr(self, name) if not ok(v)]
            if bad:
                raise InvalidArgumentError(f"search space {name} has {bad!r}; accepted: "
                                           f"{accepted}")

    def hyperparameters(self) -> Any:
        """The space as ``keras_tuner.HyperParameters`` (a Choice per field, Fixed for one value)."""
        import keras_tuner

        hp = keras_tuner.HyperParameters()
        for field in dataclasses.fields(self):
            name = _HP_NAMES[field.name]
            values = list(getattr(self, field.name))
            if len(values) == 1:
                hp.Fixed(name, values[0])
            else:
                hp.Choice(name, values, ordered=field.name not in ("architectures", "precisions"))
        return hp

    def size(self) -> int:
        """Number of distinct candidates."""
        n = 1
        for field in dataclasses.fields(self):
            n *= len(getattr(self, field.name))
        return n

    def to_dict(self) -> dict[str, list]:
        return {f.name: list(getattr(self, f.name)) for f in dataclasses.fields(self)}


def weight_bytes_lower_bound(model: Any, candidate: Candidate) -> int:
    """Bytes the ``.tflite`` needs at least for its kernels, from the built model.

    Kernel weights (Conv2D, DepthwiseConv2D, Dense; BatchNorm folds into them) times the bytes
    per weight of the precision. A float32 file of a model pruned to >= 50% may be stored sparse
    (``convert(sparsity="auto")``), so then only the nonzero weights count. Biases, scales and
    the graph come on top, so the file is never smaller than this.

    Example:
        >>> weight_bytes_lower_bound(candidate.build(), candidate)
    """
    kernels = 0
    for layer in _all_layers(model):
        if type(layer).__name__ in _KERNEL_LAYERS:
            kernel = layer.weights[0]
            kernels += int(_prod(kernel.shape))
    stored = kernels
    if candidate.precision == "float32" and candidate.sparsity >= 0.5:
        stored = int(kernels * (1.0 - candidate.sparsity))
    return stored * BYTES_PER_WEIGHT[candidate.precision]


def _all_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        out.extend(_all_layers(layer) if hasattr(layer, "layers") else [layer])
    return out


def _prod(shape: Sequence[Any]) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
