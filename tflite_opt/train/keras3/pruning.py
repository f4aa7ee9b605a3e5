"""Magnitude pruning for Keras 3: the ``PruneLowMagnitude`` wrapper and ``prune_keras3``.

Hand-written because no library prunes Keras 3 models: tfmot 0.8.1 only wraps tf_keras layers
and Keras 3 itself has no pruning. The math follows tfmot's ``pruning_impl.py``: at each update
step of the schedule, the kernel's smallest-magnitude weights are masked so that the kernel
reaches the schedule's sparsity (or, with ``m_by_n``, m zeros in every n consecutive input
weights). Differences, all deliberate:

- The layer computes with ``kernel * mask`` substituted for its kernel (see
  ``registry.kernel_replaced``) instead of assigning the product to the kernel variable, so no
  trainable variable is written inside ``call`` (which JAX's stateless train step would drop).
  Pruned weights get no gradient, so they stay pruned; ``strip`` writes the product back.
- The step counter is a variable of the wrapper incremented by each training call, so the
  schedule runs in the user's own ``fit`` without a callback, and a model reloaded from a
  ``ModelCheckpoint`` ``.keras`` file resumes at its saved step.

Everything in the train step is ``keras.ops``, so it runs on any Keras backend.
"""

from __future__ import annotations

import math
from typing import Any

from tflite_opt._keras import keras3
from tflite_opt.errors import InvalidArgumentError
from tflite_opt.train.keras3.cloning import clone_with
from tflite_opt.train.keras3.registry import call_inner, kernel_replaced, kernel_slot, kernel_variable
from tflite_opt.train.keras3.schedules import PruningSchedule, schedule_for_stage
from tflite_opt.train.keras3.selection import select_layers
from tflite_opt.train.recipe import LayerPolicy, PruneStage

keras = keras3()
ops = keras.ops


def magnitude_mask(weights: Any, sparsity: Any) -> Any:
    """A 0/1 mask keeping the ``round(size * (1 - sparsity))`` largest ``|weights|``.

    Weights that are exactly zero (pruned earlier) are never kept, so masks only grow sparser.
    """
    magnitude = ops.abs(weights)
    flat = ops.reshape(magnitude, (-1,))
    size = int(flat.shape[0])
    keep = ops.cast(ops.round(size * (1.0 - ops.cast(sparsity, "float32"))), "int32")
    descending = ops.flip(ops.sort(flat), axis=0)
    threshold = ops.take(descending, ops.maximum(keep - 1, 0))
    kept = ops.logical_and(ops.greater_equal(magnitude, threshold), ops.greater(magnitude, 0.0))
    kept = ops.logical_and(kept, ops.greater(keep, 0))
    return ops.cast(kept, weights.dtype)


def _to_rows(weights: Any) -> tuple[Any, tuple[int, ...]]:
    """Kernel -> rows of input weights in TFLite order (``[out * h * w, in]``), and that shape."""
    rank = len(weights.shape)
    if rank == 2:  # Dense [in, out] -> [out, in]
        arranged = ops.transpose(weights)
    elif rank in (3, 4, 5):  # Conv [*spatial, in, out] -> [out, *spatial, in]
        arranged = ops.transpose(weights, (rank - 1, *range(rank - 1)))
    else:
        raise InvalidArgumentError(f"m_by_n pruning needs a kernel of rank 2 to 5, got shape "
                                   f"{tuple(weights.shape)}")
    shape = tuple(int(d) for d in arranged.shape)
    return ops.reshape(arranged, (math.prod(shape[:-1]), shape[-1])), shape


def _from_rows(rows: Any, arranged_shape: tuple[int, ...]) -> Any:
    arranged = ops.reshape(rows, arranged_shape)
    rank = len(arranged_shape)
    if rank == 2:
        return ops.transpose(arranged)
    return ops.transpose(arranged, (*range(1, rank), 0))


def m_by_n_mask(weights: Any, m_by_n: tuple[int, int]) -> Any:
    """A 0/1 mask with at least ``m`` zeros in every ``n`` consecutive input weights.

    The blocks run along the input-channel axis of the kernel in TFLite's layout (as tfmot's
    ``generate_m_by_n_mask``), which is what sparse int8 kernels accelerate (2:4).
    """
    m, n = m_by_n
    rows, arranged_shape = _to_rows(ops.abs(weights))
    columns = arranged_shape[-1]
    pad = (-columns) % n
    padded = ops.pad(rows, ((0, 0), (0, pad)))
    blocks = ops.reshape(padded, (-1, n))
    # Rank of each weight inside its block by magnitude (0 = largest): argsort of argsort.
    order = ops.argsort(-blocks, axis=-1)
    rank_in_block = ops.argsort(order, axis=-1)
    keep = ops.cast(ops.less(rank_in_block, n - m), weights.dtype)
    keep = ops.reshape(keep, (rows.shape[0], columns + pad))[:, :columns]
    return _from_rows(keep, arranged_shape)


@keras.saving.register_keras_serializable(package="tflite_opt")
class PruneLowMagnitude(keras.layers.Wrapper):
    """Wraps a Keras 3 layer so that its kernel is magnitude-pruned while it trains.

    Variables: ``<kernel>_mask`` (0/1, same shape as the kernel) and ``pruning_step`` (training
    batches seen). Both are saved in ``.keras`` checkpoints; ``tflite_opt.load_model`` reloads
    them (so does ``keras.saving.load_model`` once ``tflite_opt.train.keras3`` is imported).

    Args:
        layer: A built layer with a registered kernel (Conv, DepthwiseConv, SeparableConv,
            Dense, Embedding).
        pruning_schedule: A :class:`PolynomialDecay` or :class:`ConstantSparsity`.
        m_by_n: ``(m, n)`` structured sparsity instead of the schedule's sparsity, e.g. (2, 4).
            Defaults to None.

    Example:
        >>> wrapped = PruneLowMagnitude(dense, ConstantSparsity(0.5, frequency=1))
    """

    def __init__(self, layer: Any, pruning_schedule: PruningSchedule,
                 m_by_n: tuple[int, int] | None = None, **kwargs: Any) -> None:
        if kernel_slot(layer) is None:
            raise InvalidArgumentError(
                f"layer {layer.name!r} ({type(layer).__name__}) has no kernel tflite_opt can "
                "prune on Keras 3; skip it with LayerPolicy(skip=[...])")
        if not isinstance(pruning_schedule, PruningSchedule):
            raise InvalidArgumentError(
                f"pruning_schedule is a {type(pruning_schedule).__name__}; pass a "
                "tflite_opt.train.keras3 PolynomialDecay or ConstantSparsity")
        kwargs.setdefault("name", f"prune_low_magnitude_{layer.name}")
        super().__init__(layer, **kwargs)
        self.pruning_schedule = pruning_schedule
        self.m_by_n = None if m_by_n is None else (int(m_by_n[0]), int(m_by_n[1]))
        self.mask = None
        self.pruning_step = None

    def build(self, input_shape: Any = None) -> None:
        super().build(input_shape)
        kernel = kernel_variable(self.layer)
        self.mask = self.add_weight(name=f"{kernel_slot(self.layer).name}_mask",
                                    shape=tuple(kernel.shape), initializer="ones",
                                    dtype=kernel.dtype, trainable=False)
        self.pruning_step = self.add_weight(name="pruning_step", shape=(), initializer="zeros",
                                            dtype="int32", trainable=False)
        self.built = True

    def new_mask(self, sparsity: Any) -> Any:
        """The mask the next update would set, from the currently masked kernel."""
        masked = ops.multiply(kernel_variable(self.layer), self.mask)
        if self.m_by_n is not None:
            return ops.multiply(m_by_n_mask(masked, self.m_by_n), self.mask)
        return magnitude_mask(masked, sparsity)

    def call(self, inputs: Any, training: Any = None, **kwargs: Any) -> Any:
        if training:
            step = self.pruning_step + 1
            self.pruning_step.assign(step)
            should_prune, sparsity = self.pruning_schedule(step)
            # ops.cond, not a Python if: the step is a tensor inside a compiled train step.
            self.mask.assign(ops.cond(should_prune, lambda: self.new_mask(sparsity),
                                      lambda: ops.convert_to_tensor(self.mask)))
        masked = ops.cast(ops.multiply(kernel_variable(self.layer), self.mask),
                          self.layer.compute_dtype)
        with kernel_replaced(self.layer, masked):
            return call_inner(self.layer, inputs, training, kwargs)

    def compute_output_shape(self, input_shape: Any) -> Any:
        return self.layer.compute_output_shape(input_shape)

    def apply_mask(self) -> None:
        """Writes ``kernel * mask`` into the kernel variable (done by ``strip``)."""
        kernel = kernel_variable(self.layer)
        kernel.assign(ops.multiply(kernel, self.mask))

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["pruning_schedule"] = keras.saving.serialize_keras_object(self.pruning_schedule)
        config["m_by_n"] = None if self.m_by_n is None else list(self.m_by_n)
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> "PruneLowMagnitude":
        config = dict(config)
        config["pruning_schedule"] = keras.saving.deserialize_keras_object(
            config["pruning_schedule"], custom_objects=custom_objects)
        return super().from_config(config, custom_objects=custom_objects)


def prune_keras3(model: Any, stage: PruneStage, *, policy: LayerPolicy | None = None,
                 total_steps: int | None = None, end_step: int | None = None) -> Any:
    """Returns a copy of a Keras 3 ``model`` whose selected layers prune themselves in ``fit``.

    The Keras 3 implementation behind ``tflite_opt.prune`` (same arguments, as a stage).

    Example:
        >>> pruned = prune_keras3(model, PruneStage(target_sparsity=0.75), total_steps=1000)
        >>> pruned.compile("adam", "sparse_categorical_crossentropy")
        >>> pruned.fit(x, y, epochs=4)
    """
    policy = policy or LayerPolicy()
    stage.validate(source=None, prefix="prune")
    policy.validate()
    selection = select_layers(model, policy, "prune")
    m_by_n = tuple(stage.m_by_n) if stage.m_by_n is not None else None

    def wrap(layer: Any) -> Any | None:
        if layer.name not in selection.names:
            return None
        target = selection.overrides.get(layer.name, stage.target_sparsity)
        schedule = schedule_for_stage(stage, total_steps, target_sparsity=target,
                                      end_step=end_step)
        return PruneLowMagnitude(layer, schedule, m_by_n=m_by_n)

    return clone_with(model, wrap)
