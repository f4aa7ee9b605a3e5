"""One API for both Kerases: each public training function picks its implementation by the
model's Keras.

tf_keras (Keras 2) models go to the tfmot-based modules (``prune.py``, ``cluster.py``,
``qat.py``, ``stats.py``, ``callbacks``); Keras 3 models (``import keras``) go to
``tflite_opt.train.keras3``. This module is the only place that chooses, so the rest of
tflite_opt (the plan, export, the scripts) calls these functions and never asks which Keras it
holds. tfmot is imported only on the tf_keras side.
"""

from __future__ import annotations

import inspect
import os
from typing import Any

from tflite_opt._keras import import_tfmot, keras_flavor
from tflite_opt.errors import InvalidArgumentError, UnsupportedLayerError
from tflite_opt.train.recipe import ClusterStage, LayerPolicy, PruneStage

KERAS3 = "keras3"


def _flavor(model: Any) -> str:
    """``keras_flavor(model)``; for tf_keras models, imports tfmot first through
    ``import_tfmot`` (the tf_keras modules import tfmot's submodules directly, and tfmot's first
    import sets ``TF_USE_LEGACY_KERAS``, which ``import_tfmot`` restores)."""
    flavor = keras_flavor(model)
    if flavor != KERAS3:
        import_tfmot()
    return flavor


def prune(model: Any, target_sparsity: float = 0.75, *, end_step: int | None = None,
          schedule: str = "polynomial", initial_sparsity: float = 0.0, frequency: int | None = None,
          m_by_n: tuple[int, int] | None = None, policy: LayerPolicy | None = None,
          stage: PruneStage | None = None, total_steps: int | None = None) -> Any:
    """Returns a copy of ``model`` whose selected layers prune themselves while training.

    Takes a Keras 3 or a tf_keras Sequential/Functional model (the result is of the same
    Keras). Train it in your own ``fit`` with :func:`training_callbacks`, then :func:`strip`.
    The caller's model is not modified.

    Args:
        model: A built Sequential or Functional model, Keras 3 or tf_keras.
        target_sparsity: Final fraction of zeros in each pruned kernel. Defaults to 0.75.
        end_step: Training step at which a polynomial schedule reaches the target. Required
            for ``polynomial`` unless ``total_steps`` or ``stage`` gives it.
        schedule: ``"polynomial"`` or ``"constant"``. Defaults to polynomial.
        initial_sparsity: Start of the polynomial ramp. Defaults to 0.
        frequency: Steps between mask updates. Defaults to about ten updates per ramp.
        m_by_n: Structured sparsity, e.g. ``(2, 4)``: m zeros in every n consecutive input
            weights (``target_sparsity`` is then not used). Defaults to None.
        policy: Which layers, and per-layer sparsity. Defaults to ``LayerPolicy()`` (all
            prunable layers but the first conv and the classifier).
        stage: A full ``PruneStage`` config; overrides the keyword settings above.
        total_steps: Steps of the whole pruning fine-tune; with ``end_step`` None, the ramp
            ends at ``stage.end_fraction`` of it.

    Raises:
        UnsupportedLayerError: a custom layer or nested model is neither supported nor skipped.

    Example:
        >>> pruned = prune(model, 0.75, end_step=epochs * steps_per_epoch)
        >>> pruned.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        >>> pruned.fit(x, y, epochs=epochs, callbacks=training_callbacks(pruned))
        >>> plain = strip(pruned)
    """
    if _flavor(model) == KERAS3:
        from tflite_opt.train.keras3 import prune_keras3

        if stage is None:
            stage = PruneStage(target_sparsity=target_sparsity, schedule=schedule,
                               initial_sparsity=initial_sparsity, frequency=frequency,
                               m_by_n=tuple(m_by_n) if m_by_n is not None else None)
        return prune_keras3(model, stage, policy=policy, total_steps=total_steps,
                            end_step=end_step)
    from tflite_opt.train.prune import prune as prune_tf_keras

    return prune_tf_keras(model, target_sparsity, end_step=end_step, schedule=schedule,
                          initial_sparsity=initial_sparsity, frequency=frequency, m_by_n=m_by_n,
                          policy=policy, stage=stage, total_steps=total_steps)


def cluster(model: Any, number_of_clusters: int = 16, *, init: str = "kmeans++",
            preserve_sparsity: bool = True, per_channel: bool = False,
            policy: LayerPolicy | None = None, stage: ClusterStage | None = None) -> Any:
    """Returns a copy of ``model`` whose selected kernels share ``number_of_clusters`` values.

    Takes a Keras 3 or a tf_keras model (plain or stripped, not wrapped). Fine-tune the result
    with ``fit`` (no callback needed), then call :func:`strip`: each clustered kernel then
    holds at most ``number_of_clusters`` distinct values (per output channel with
    ``per_channel``), the zero of a pruned model being one of them.

    Args:
        model: A built Sequential or Functional model, Keras 3 or tf_keras.
        number_of_clusters: Clusters per kernel; >= 2. Defaults to 16.
        init: ``kmeans++``, ``linear``, ``density`` or ``random``. Defaults to kmeans++.
        preserve_sparsity: Keep the zeros of a pruned model zero. Defaults to True.
        per_channel: Cluster each output channel of convolution kernels separately.
            Defaults to False.
        policy: Which layers, and per-layer cluster counts. Defaults to ``LayerPolicy()``.
        stage: A full ``ClusterStage`` config; overrides the keyword settings above.

    Raises:
        UnsupportedLayerError: a custom layer or nested model is neither supported nor skipped.

    Example:
        >>> clustered = cluster(strip(pruned), 16, preserve_sparsity=True)
        >>> clustered.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
        >>> clustered.fit(x, y, epochs=2)
        >>> plain = strip(clustered)
    """
    if _flavor(model) == KERAS3:
        from tflite_opt.train.keras3 import cluster_keras3

        if stage is None:
            stage = ClusterStage(number_of_clusters=number_of_clusters, init=init,
                                 preserve_sparsity=preserve_sparsity, per_channel=per_channel)
        return cluster_keras3(model, stage, policy=policy)
    from tflite_opt.train.cluster import cluster as cluster_tf_keras

    return cluster_tf_keras(model, number_of_clusters, init=init,
                            preserve_sparsity=preserve_sparsity, per_channel=per_channel,
                            policy=policy, stage=stage)


def strip(model: Any) -> Any:
    """Returns a plain copy of ``model`` without pruning and clustering wrappers.

    Pruned kernels come out with their masks applied; clustered kernels with their shared
    centroid values. QAT layers are left in place (a QAT model goes to the converter as is).
    The result has the same Keras as ``model``.

    Example:
        >>> plain = strip(pruned)
        >>> weight_stats(plain)["dense1"]["sparsity"]
        0.75
    """
    if _flavor(model) == KERAS3:
        from tflite_opt.train.keras3 import strip_keras3

        return strip_keras3(model)
    from tflite_opt.train.prune import strip as strip_tf_keras

    return strip_tf_keras(model)


def quantize_aware(model: Any, scheme: str = "default", *, skip: tuple[str, ...] | list[str] = (),
                   per_channel_clusters: bool = False) -> Any:
    """Returns a copy of ``model`` set up for quantization-aware training.

    Pruning and clustering wrappers are stripped first. tf_keras models use tfmot's 8-bit QAT;
    Keras 3 models (TensorFlow backend) use ``tflite_opt.train.keras3.qat``.

    Args:
        model: A built Sequential or Functional model, Keras 3 or tf_keras.
        scheme: ``default``, ``cqat``, ``pqat``, ``pcqat`` (or ``auto``: picks from the model's
            sparsity and cluster wrappers). Defaults to ``default``.
        skip: Layer names left in float (the way out for custom layers with weights).
        per_channel_clusters: The model was clustered per channel; (P)CQAT then keeps clusters
            per channel (tf_keras path). Defaults to False.

    Raises:
        UnsupportedLayerError: a layer with weights is not supported by 8-bit QAT and not
            skipped; the message names it and the fix.

    Example:
        >>> qat_model = quantize_aware(strip(clustered), scheme="pcqat")
        >>> qat_model.compile(keras.optimizers.Adam(1e-4), "sparse_categorical_crossentropy")
        >>> qat_model.fit(x, y, epochs=2)
    """
    if _flavor(model) != KERAS3:
        from tflite_opt.train.qat import quantize_aware as quantize_aware_tf_keras

        return quantize_aware_tf_keras(model, scheme, skip=skip,
                                       per_channel_clusters=per_channel_clusters)
    from tflite_opt.train.keras3 import is_clustered_keras3, is_pruned_keras3, strip_keras3
    from tflite_opt.train.qat import resolve_scheme

    pruned, clustered = is_pruned_keras3(model), is_clustered_keras3(model)
    scheme = resolve_scheme(scheme, pruned, clustered)
    plain = strip_keras3(model) if (pruned or clustered) else model
    try:
        from tflite_opt.train.keras3.qat import quantize_aware_keras3
    except ModuleNotFoundError as exc:  # pragma: no cover - only while Keras 3 QAT is absent
        if exc.name != "tflite_opt.train.keras3.qat":
            raise
        raise UnsupportedLayerError(
            f"quantization-aware training of Keras 3 model {model.name!r} is not available in "
            "this version; convert the pruned/clustered model with post-training int8 "
            "(tflite_opt.export(model, path, representative_data=x)) instead") from exc
    policy = LayerPolicy(skip=tuple(skip), skip_first_conv=False, skip_classifier=False)
    kwargs: dict[str, Any] = {}
    if "per_channel_clusters" in inspect.signature(quantize_aware_keras3).parameters:
        kwargs["per_channel_clusters"] = per_channel_clusters
    return quantize_aware_keras3(plain, scheme=scheme, policy=policy, **kwargs)


def training_callbacks(model: Any, *, log_dir: str | os.PathLike | None = None,
                       verbose: int = 0) -> list[Any]:
    """The callbacks an optimized model needs in ``fit``: add them to your own list.

    Returns a pruning-step callback when ``model`` has pruned layers (``PruningStep`` for
    tf_keras, ``PruningStepKeras3`` for Keras 3), then a ``SparsityLogger`` (epoch logs get
    ``sparsity`` and ``max_unique_weights``; TensorBoard scalars with ``log_dir``).

    Example:
        >>> model.fit(x, y, epochs=4, callbacks=[*my_callbacks, *training_callbacks(model)])
    """
    from tflite_opt.train.callbacks import SparsityLogger

    out: list[Any] = []
    step = pruning_step_callback(model, verbose=verbose)
    if step is not None:
        out.append(step)
    out.append(SparsityLogger(log_dir=log_dir, verbose=verbose))
    return out


def pruning_step_callback(model: Any, verbose: int = 0) -> Any | None:
    """The pruning-step callback of ``model``'s Keras, or None when nothing is pruned."""
    if _flavor(model) == KERAS3:
        from tflite_opt.train.keras3 import PruningStepKeras3, is_pruned_keras3

        return PruningStepKeras3(verbose=verbose) if is_pruned_keras3(model) else None
    from tflite_opt.train.callbacks import PruningStep
    from tflite_opt.train.prune import is_pruned

    return PruningStep(verbose=verbose) if is_pruned(model) else None


def weight_stats(model: Any) -> dict[str, dict[str, float | int]]:
    """Sparsity and unique-value count of each layer's kernels (Keras 3 or tf_keras model).

    Works on plain models and on models wrapped for pruning, clustering or QAT; keys are the
    names of the layers inside the wrappers, so they stay the same across stages. Only kernel
    weights count (not biases, not BatchNormalization).

    Returns:
        ``{layer_name: {"sparsity": float, "unique_values": int, "size": int}}``.

    Example:
        >>> stats = weight_stats(strip(pruned))
        >>> stats["dense1"]["sparsity"]
        0.75
    """
    if _flavor(model) == KERAS3:
        from tflite_opt.train.keras3 import weight_stats_keras3

        return weight_stats_keras3(model)
    from tflite_opt.train.stats import weight_stats as weight_stats_tf_keras

    return weight_stats_tf_keras(model)


def optimized_layers(model: Any) -> list[str]:
    """Names (inner) of the layers wrapped for pruning or clustering in ``model``."""
    if _flavor(model) == KERAS3:
        from tflite_opt.train.keras3 import optimized_layers_keras3

        return optimized_layers_keras3(model)
    from tflite_opt.train.stats import optimized_layers as optimized_layers_tf_keras

    return optimized_layers_tf_keras(model)


def deep_copy(model: Any) -> Any:
    """A structurally identical model with its own variables, of the same Keras."""
    if _flavor(model) == KERAS3:
        from tflite_opt.train import keras3

        return keras3.deep_copy(model)
    from tflite_opt.train import layers

    return layers.deep_copy(model)


def check_graph_model(model: Any, what: str) -> None:
    """Raises unless ``model`` is a built Sequential or Functional model of either Keras."""
    try:
        flavor = _flavor(model)
    except InvalidArgumentError as exc:
        raise InvalidArgumentError(f"{what} needs a Keras model: {exc}") from exc
    if flavor == KERAS3:
        from tflite_opt.train import keras3

        keras3.check_graph_model(model, what)
    else:
        from tflite_opt.train import layers

        layers.check_graph_model(model, what)


def selected_layer_names(model: Any, policy: LayerPolicy, method: str) -> tuple[str, ...]:
    """Names of the layers ``policy`` selects in ``model`` for ``method`` (prune/cluster)."""
    if _flavor(model) == KERAS3:
        from tflite_opt.train import keras3

        return keras3.select_layers(model, policy, method).names
    from tflite_opt.train import layers

    return layers.select_layers(model, policy, method).names


def fresh_optimizer_for(model: Any, spec: Any, learning_rate: float | None) -> Any:
    """A new optimizer of ``model``'s Keras (see ``plan.fresh_optimizer``)."""
    from tflite_opt.train.plan import fresh_optimizer

    return fresh_optimizer(spec, learning_rate, flavor=_flavor(model))


def save_training_weights(model: Any, folder: str | os.PathLike) -> None:
    """Saves ``model``'s weights into ``folder`` in its Keras's checkpoint format.

    tf_keras writes a TensorFlow checkpoint (with the optimizer's slots); Keras 3 writes
    ``ckpt.weights.h5`` (model variables only: Keras 3's ``save_weights`` has no optimizer
    state, so a resumed Keras 3 stage restarts its optimizer's moments).
    """
    from pathlib import Path

    folder = Path(folder)
    if _flavor(model) == KERAS3:
        folder.mkdir(parents=True, exist_ok=True)
        model.save_weights(str(folder / "ckpt.weights.h5"))
    else:
        model.save_weights(str(folder / "ckpt"))


def load_training_weights(model: Any, folder: str | os.PathLike) -> None:
    """Loads what :func:`save_training_weights` wrote into ``model``."""
    from pathlib import Path

    folder = Path(folder)
    if _flavor(model) == KERAS3:
        model.load_weights(str(folder / "ckpt.weights.h5"))
    else:
        model.load_weights(str(folder / "ckpt")).expect_partial()
