"""Magnitude pruning: ``prune(model, ...)`` wraps the selected layers, ``strip(model)`` unwraps.

Built on ``tfmot.sparsity.keras``; what this module adds is the per-layer policy (skip the first
conv and the classifier by default, per-layer sparsity), schedules that really reach their
target, masks re-applied on strip (so the stripped kernels have exactly the target sparsity),
and copies instead of mutation.
"""

from __future__ import annotations

from typing import Any

from tflite_opt._keras import keras
from tflite_opt.train.layers import clone_with, deep_copy, select_layers, tfmot
from tflite_opt.train.recipe import LayerPolicy, PruneStage


def pruning_schedule(stage: PruneStage, total_steps: int | None = None, *,
                     target_sparsity: float | None = None, begin_step: int = 0,
                     end_step: int | None = None) -> Any:
    """Builds the tfmot schedule of a prune stage.

    The polynomial ramp ends at ``end_step`` (default: ``end_fraction`` of ``total_steps``),
    snapped to a multiple of the update frequency: tfmot only updates masks on
    ``(step - begin) % frequency == 0``, so an end step off that grid would stop short of the
    target sparsity.

    Args:
        stage: The prune stage config.
        total_steps: Training steps of the stage (epochs x steps per epoch).
        target_sparsity: Overrides ``stage.target_sparsity`` (per-layer policy).
        begin_step: First step that prunes. Defaults to 0.
        end_step: Last step of the ramp; computed from ``total_steps`` when None.

    Example:
        >>> schedule = pruning_schedule(PruneStage(target_sparsity=0.5), total_steps=100)
    """
    sp = tfmot().sparsity.keras
    kind, arguments = stage.schedule_arguments(total_steps, target_sparsity=target_sparsity,
                                               begin_step=begin_step, end_step=end_step)
    return (sp.ConstantSparsity if kind == "constant" else sp.PolynomialDecay)(**arguments)


def prune(model: keras.Model, target_sparsity: float = 0.75, *, end_step: int | None = None,
          schedule: str = "polynomial", initial_sparsity: float = 0.0, frequency: int | None = None,
          m_by_n: tuple[int, int] | None = None, policy: LayerPolicy | None = None,
          stage: PruneStage | None = None, total_steps: int | None = None) -> keras.Model:
    """Returns a copy of ``model`` whose selected layers prune themselves while training.

    Train the result with :func:`training_callbacks` (it holds the pruning step update), then
    call :func:`strip`. The caller's model is not modified.

    Args:
        model: A built Sequential or Functional tf_keras model.
        target_sparsity: Final fraction of zeros in each pruned kernel. Defaults to 0.75.
        end_step: Training step at which a polynomial schedule reaches the target (e.g.
            ``epochs * steps_per_epoch * 0.7``). Required for ``polynomial`` unless
            ``total_steps`` or ``stage`` gives it.
        schedule: ``"polynomial"`` or ``"constant"``. Defaults to polynomial.
        initial_sparsity: Start of the polynomial ramp. Defaults to 0.
        frequency: Steps between mask updates. Defaults to about ten updates per ramp.
        m_by_n: Structured sparsity, e.g. ``(2, 4)`` (then ``target_sparsity`` is ignored by
            tfmot: every n consecutive weights keep n - m). Defaults to None.
        policy: Which layers, and per-layer sparsity. Defaults to ``LayerPolicy()`` (all
            prunable layers but the first conv and the classifier).
        stage: A full ``PruneStage`` config; overrides the keyword settings above.
        total_steps: Steps of the whole pruning fine-tune; with ``end_step`` None, the ramp
            ends at ``stage.end_fraction`` of it.

    Raises:
        UnsupportedLayerError: a custom layer or nested model is neither supported nor skipped.

    Example:
        >>> pruned = prune(model, 0.75, end_step=epochs * steps_per_epoch)
        >>> pruned.compile("adam", "sparse_categorical_crossentropy", ["accuracy"])
        >>> pruned.fit(x, y, epochs=epochs, callbacks=training_callbacks(pruned))
        >>> plain = strip(pruned)
    """
    policy = policy or LayerPolicy()
    if stage is None:
        stage = PruneStage(target_sparsity=target_sparsity, schedule=schedule,
                           initial_sparsity=initial_sparsity, frequency=frequency,
                           m_by_n=tuple(m_by_n) if m_by_n is not None else None)
    stage.validate(source=None, prefix="prune")
    policy.validate()
    selection = select_layers(model, policy, "prune")
    sp = tfmot().sparsity.keras

    def wrap(layer: keras.layers.Layer) -> keras.layers.Layer | None:
        if layer.name not in selection.names:
            return None
        target = selection.overrides.get(layer.name, stage.target_sparsity)
        kwargs: dict[str, Any] = {}
        if stage.m_by_n is not None:
            kwargs["sparsity_m_by_n"] = tuple(stage.m_by_n)
        return sp.prune_low_magnitude(
            layer, pruning_schedule=pruning_schedule(stage, total_steps, target_sparsity=target,
                                                     end_step=end_step), **kwargs)

    return clone_with(model, wrap)


def _apply_masks(model: keras.Model) -> None:
    # The optimizer step after the last mask update can move pruned weights off zero again;
    # re-applying the masks makes the stripped kernels exactly as sparse as the masks say.
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            _apply_masks(layer)
        elif isinstance(layer, pruning_wrapper.PruneLowMagnitude):
            for weight, mask, _threshold in layer.pruning_vars:
                weight.assign(weight * mask)


def strip(model: keras.Model) -> keras.Model:
    """Returns a plain copy of ``model`` without pruning and clustering wrappers.

    Pruned kernels come out with their masks applied; clustered kernels with their shared
    centroid values. A QAT model (from :func:`quantize_aware`, which strips its input) has
    nothing to strip and is returned as it is, not copied: a (P)CQAT/PQAT weight quantizer
    builds its variables and sparsity mask from the kernel values it wraps, so a clone (fresh
    kernels) would not match the trained model. It goes to the converter as it is.

    Example:
        >>> plain = strip(pruned)
        >>> weight_stats(plain)["dense1"]["sparsity"]
        0.75
    """
    from tflite_opt.train.cluster import is_clustered
    from tflite_opt.train.qat import is_quantize_aware

    if is_quantize_aware(model) and not (is_pruned(model) or is_clustered(model)):
        return model
    t = tfmot()
    work = deep_copy(model)
    _apply_masks(work)
    work = t.sparsity.keras.strip_pruning(work)
    work = t.clustering.keras.strip_clustering(work)
    # tfmot's strip functions return models that share unwrapped layers with their input;
    # copy once more so the result owns its variables.
    return deep_copy(work)


def is_pruned(model: keras.Model) -> bool:
    """Whether any layer of ``model`` is wrapped for pruning."""
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_wrapper

    from tflite_opt.train.layers import iter_layers

    return any(isinstance(l, pruning_wrapper.PruneLowMagnitude) for l in iter_layers(model))

