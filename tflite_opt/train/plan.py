"""OptimizationPlan: runs a recipe's stages (prune -> cluster -> QAT) as successive ``fit`` calls.

Each stage wraps the previous stage's stripped model, compiles it with a fresh optimizer at the
stage's learning rate, fits it on the user's data with the user's callbacks (plus the pruning
step and sparsity callbacks), and strips it again (QAT, always last, is kept wrapped: that is
what the TFLite converter wants). With ``checkpoint_dir``, every epoch is checkpointed and a
killed run resumes where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tflite_opt._keras import keras, keras_of_flavor, tf
from tflite_opt.errors import DataError, InvalidArgumentError, RecipeError
from tflite_opt.files import atomic_save_model, atomic_write_json
from tflite_opt.train.callbacks import SparsityLogger, StageSummary
from tflite_opt.train.channel_pruning import prune_channels_stage
# Every model operation goes through dispatch, so the plan runs Keras 3 and tf_keras models.
from tflite_opt.train.dispatch import (check_graph_model, cluster, deep_copy,
                                       fresh_optimizer_for, load_training_weights, prune,
                                       pruning_step_callback, quantize_aware,
                                       save_training_weights, selected_layer_names, strip,
                                       weight_stats)
from tflite_opt.train.distill import (STUDENT_BUILDERS, build_student, distill,
                                      freeze_batch_norm, student_of)
from tflite_opt.train.qat import resolve_scheme
from tflite_opt.train.recipe import (ClusterStage, DecomposeStage, DistillStage, PruneStage,
                                     QATStage, Recipe)
from tflite_opt.train.stats import summarize

OptimizerSpec = Any  # str | keras optimizer instance | Callable[[], optimizer]
STATE_FILE = "plan_state.json"
FINAL_MODEL = "final.keras"


@dataclasses.dataclass(frozen=True)
class StageRecord:
    """What one stage did: epochs run, final epoch metrics, kernel sparsity and unique values.

    ``sparsity`` and ``max_unique_weights`` cover the layers the recipe's policy optimizes
    (all kernels when no prune/cluster stage selected any), measured on the stage's output.
    A prune stage with ``objective: latency`` removes channels instead of zeroing weights, so
    its sparsity stays near 0; ``channel_pruning`` says what it did:
    ``ChannelPruningResult.to_dict()`` (channels kept per Conv2D/Dense layer, parameters and
    MACs before/after and their ratios). None for every other stage.
    """

    name: str
    epochs: int
    metrics: dict[str, float]
    sparsity: float
    max_unique_weights: int
    seconds: float
    channel_pruning: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StageRecord":
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class PlanResult:
    """The final model (QAT-wrapped if the last stage is QAT, else stripped) and stage records."""

    model: keras.Model
    stages: tuple[StageRecord, ...]
    recipe: Recipe
    layer_stats: dict[str, dict[str, float | int]]
    optimized_layers: tuple[str, ...]

    @property
    def sparsity(self) -> float:
        """Sparsity of the optimized layers of the final model."""
        return summarize(self.layer_stats, self.optimized_layers or None)[0]

    @property
    def max_unique_weights(self) -> int:
        """Largest count of distinct kernel values among the optimized layers."""
        return summarize(self.layer_stats, self.optimized_layers or None)[1]

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe.to_dict(), "stages": [s.to_dict() for s in self.stages],
                "sparsity": self.sparsity, "max_unique_weights": self.max_unique_weights,
                "optimized_layers": list(self.optimized_layers), "layers": self.layer_stats}


def fresh_optimizer(spec: OptimizerSpec, learning_rate: float | None,
                    flavor: str = "tf_keras") -> Any:
    """A new optimizer from a name, an instance (its config is copied) or a factory.

    Args:
        spec: An optimizer name, instance, or a callable returning one.
        learning_rate: Replaces the optimizer's learning rate; None keeps it.
        flavor: ``tf_keras`` or ``keras3``: the Keras of the model it will train.
            Defaults to tf_keras.

    Example:
        >>> opt = fresh_optimizer("adam", 1e-4)
    """
    k = keras_of_flavor(flavor)
    kind = "Keras 3 (keras.optimizers)" if flavor == "keras3" else "tf_keras"
    bases = (k.optimizers.Optimizer,)
    if hasattr(k.optimizers, "legacy"):
        bases = bases + (k.optimizers.legacy.Optimizer,)
    if isinstance(spec, str):
        try:
            opt = k.optimizers.get(spec)
        except ValueError as exc:
            raise InvalidArgumentError(f"optimizer is {spec!r}, not a Keras optimizer name; accepted: "
                                       "'adam', 'sgd', 'rmsprop', ... or an optimizer instance") from exc
    elif isinstance(spec, bases):
        opt = spec.__class__.from_config(spec.get_config())
    elif callable(spec):
        opt = spec()
        if not isinstance(opt, bases):
            raise InvalidArgumentError(f"optimizer factory returned {type(opt).__name__}; it must "
                                       f"return a {kind} optimizer")
    else:
        raise InvalidArgumentError(f"optimizer is a {type(spec).__name__}; accepted: a name, a "
                                   f"{kind} optimizer instance, or a callable returning one")
    if learning_rate is not None:
        config = opt.get_config()
        config["learning_rate"] = float(learning_rate)
        opt = opt.__class__.from_config(config)
    return opt


def _steps_per_epoch(train_data: Any, batch_size: int) -> int:
    if isinstance(train_data, tf.data.Dataset):
        n = int(train_data.cardinality().numpy())
        if n < 1:
            raise DataError("train_data is a tf.data.Dataset of unknown or infinite length; "
                            "pass a finite, batched dataset (e.g. ds.take(n)) or (x, y) arrays")
        return n
    x = train_data[0]
    n = len(x) if not isinstance(x, dict) else len(next(iter(x.values())))
    return max(1, math.ceil(n / batch_size))


def _check_data(name: str, data: Any) -> None:
    if data is None or isinstance(data, tf.data.Dataset):
        return
    if not isinstance(data, (tuple, list)) or len(data) not in (2, 3):
        raise DataError(f"{name} is a {type(data).__name__}; accepted: (x, y), (x, y, sample_weight) "
                        "or a batched tf.data.Dataset")
    x, y = data[0], data[1]
    if len(x) == 0:
        raise DataError(f"{name} is empty; pass at least one sample")
    if len(x) != len(y):
        raise DataError(f"{name} has {len(x)} inputs but {len(y)} labels; they must match")


def outputs_are_logits(outputs: Any) -> bool:
    """Whether classifier outputs are logits: probabilities are >= 0 and sum to 1 per sample.

    Asked of the values, not the last layer's name, so any ending (a Dense with
    softmax, a Softmax or Activation layer) counts as probabilities.

    Example:
        >>> outputs_are_logits(model.predict(x[:64]))
        False
    """
    outputs = np.asarray(outputs, np.float64).reshape(len(outputs), -1)
    return not (np.all(outputs >= 0) and np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3))


# Loss names that expect probabilities -> the loss class that can take logits instead.
_PROBABILITY_LOSSES = {"sparse_categorical_crossentropy": "SparseCategoricalCrossentropy",
                       "categorical_crossentropy": "CategoricalCrossentropy"}


def _loss_for_outputs(model: keras.Model, loss: Any, train_data: Any) -> Any:
    """A probabilities loss named on a model without a final softmax -> ``from_logits=True``.

    Cross-entropy for probabilities clips logits to [0, 1], so training learns little:
    a logits digits CNN (96.4% float) ended the default recipe at 93.1% int8 with it and
    98.9% with ``from_logits=True``. Warn and use the latter.
    """
    if not isinstance(loss, str) or loss not in _PROBABILITY_LOSSES or len(model.outputs) != 1:
        return loss  # a loss object says from_logits itself
    if isinstance(train_data, tf.data.Dataset):
        x = next(iter(train_data.take(1)))[0]
    else:  # a few samples of every input (a list or dict of arrays for several inputs)
        x = tf.nest.map_structure(lambda a: a[:64], train_data[0])
    if not outputs_are_logits(model(x, training=False)):
        return loss
    name = _PROBABILITY_LOSSES[loss]
    warnings.warn(f"model {model.name!r} outputs logits (its last layer "
                  f"{model.layers[-1].name!r} has no softmax: the outputs do not sum to 1), "
                  f"but loss={loss!r} expects probabilities; training with "
                  f"keras.losses.{name}(from_logits=True) instead", stacklevel=4)
    return getattr(keras.losses, name)(from_logits=True)


def _built(trainer: Any) -> Any:
    """``trainer``, called once on zeros if it is an unbuilt distiller: Keras 3 loads weights
    only into a built model, and a distiller is built on its first call."""
    if getattr(trainer, "built", True) or not hasattr(trainer, "student"):
        return trainer
    zeros = [np.zeros((1,) + tuple(v.shape[1:]), np.float32) for v in trainer.student.inputs]
    trainer(zeros if len(zeros) > 1 else zeros[0], training=False)
    return trainer


def _zeroes_weights(stage: Any) -> bool:
    """A magnitude prune stage (its zeros are what PQAT keeps); channel pruning leaves none."""
    return isinstance(stage, PruneStage) and stage.objective == "size"


def _first_compression_stage(recipe: Recipe) -> int:
    """Index of the first stage after a distill stage: its input is the float model that
    teaches the compressed one (self-distillation)."""
    return next((i for i, s in enumerate(recipe.stages) if not isinstance(s, DistillStage)),
                len(recipe.stages))


def _load_own_model(path: Path) -> Any:
    # A file this plan wrote (Keras 3 or tf_keras, as the user's model): trusted, no scan.
    # Its QAT quantizers are recorded in it: a default-QAT model of a pruned one (which
    # keeps the zeros of inputs that are always zero) must not be guessed to be PQAT.
    from tflite_opt.models.loading import load_model

    return load_model(path, compile=False, trust_model=True, keep_zeros=False)


class _EpochCheckpoint(keras.callbacks.Callback):
    """Saves weights (with optimizer state) each epoch and points the plan state at them."""

    def __init__(self, plan_dir: Path, state: dict[str, Any], stage_index: int,
                 base_seconds: float, start: float) -> None:
        super().__init__()
        self.plan_dir = plan_dir
        self.state = state
        self.stage_index = stage_index
        self.base_seconds = base_seconds
        self.start = start

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        name = f"stage{self.stage_index}_epoch{epoch + 1:03d}"
        folder = self.plan_dir / name
        shutil.rmtree(folder, ignore_errors=True)
        save_training_weights(self.model, folder)
        old = self.state.get("checkpoint")
        epoch_metrics = {k: float(v) for k, v in (logs or {}).items()
                         if k not in ("sparsity", "max_unique_weights")}
        self.state.update(epoch=epoch + 1, checkpoint=name, metrics=epoch_metrics,
                          seconds=self.base_seconds + time.perf_counter() - self.start)
        atomic_write_json(self.plan_dir / STATE_FILE, self.state)
        if old and old != name:
            shutil.rmtree(self.plan_dir / old, ignore_errors=True)


class _OnStudent(keras.callbacks.Callback):
    """Runs one of the plan's own callbacks (pruning step, sparsity, summary) on a distiller's
    student: the distiller also holds the teacher, whose layers must not count."""

    def __init__(self, inner: Any) -> None:
        super().__init__()
        self.inner = inner

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        self.inner.set_model(student_of(model))

    def set_params(self, params: Any) -> None:
        super().set_params(params)
        self.inner.set_params(params)


def _forward(hook: str) -> Any:
    def forward(self: _OnStudent, *args: Any, **kwargs: Any) -> Any:
        return getattr(self.inner, hook)(*args, **kwargs)

    forward.__name__ = hook
    return forward


for _hook in ("on_train_begin", "on_train_end", "on_epoch_begin", "on_epoch_end",
              "on_train_batch_begin", "on_train_batch_end", "on_test_begin", "on_test_end",
              "on_test_batch_begin", "on_test_batch_end"):
    setattr(_OnStudent, _hook, _forward(_hook))


class _KnownNoise(logging.Filter):
    """Drops two tfmot warnings that are expected in a plan and say nothing actionable."""

    MESSAGES = (
        # (P)CQAT trains a copy of each kernel; the kernel variable itself gets no gradient.
        "Gradients do not exist for variables",
        # PCQAT on a layer the policy did not prune (the first conv, the classifier).
        "Input layer does not contain zero weights",
    )

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.MESSAGES)


@contextlib.contextmanager
def _quiet_known_noise() -> Any:
    loggers = [logging.getLogger(name) for name in ("tensorflow", "absl", "")]
    noise = _KnownNoise()
    for logger in loggers:
        logger.addFilter(noise)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(noise)


class OptimizationPlan:
    """Runs a :class:`Recipe` on a model with the user's data, optimizer and callbacks.

    With ``checkpoint_dir``, the plan writes ``plan_state.json``, each stage's input model and
    a weights checkpoint (with optimizer state) after every epoch; rerunning the same recipe
    after the process died resumes from the last completed epoch (the pruning schedule
    continues at its saved step), and a finished plan is restored without training.

    Args:
        recipe: The stages to run. Defaults to ``Recipe.default()`` (prune 75% -> 16 clusters
            -> PCQAT).

    Example:
        >>> plan = OptimizationPlan(Recipe.default())
        >>> result = plan.run(model, train_data=(x, y), validation_data=(xv, yv),
        ...                   optimizer="adam", batch_size=32)
        >>> result.model  # QAT-wrapped, ready for the TFLite converter
        >>> [s.to_dict() for s in result.stages]
    """

    def __init__(self, recipe: Recipe | None = None) -> None:
        if recipe is not None and not isinstance(recipe, Recipe):
            raise InvalidArgumentError(f"recipe is a {type(recipe).__name__}; pass a "
                                       "tflite_opt.train.Recipe (Recipe.from_file(path))")
        self.recipe = recipe or Recipe.default()
        self._teachers: dict[int, Any] = {}

    def run(self, model: keras.Model, train_data: Any, validation_data: Any = None, *,
            loss: Any = "sparse_categorical_crossentropy", metrics: Sequence[Any] | None = ("accuracy",),
            optimizer: OptimizerSpec = "adam", batch_size: int = 32,
            callbacks: Sequence[keras.callbacks.Callback] | None = None,
            strategy: tf.distribute.Strategy | None = None,
            checkpoint_dir: str | os.PathLike | None = None, verbose: int = 1,
            run_eagerly: bool = False) -> PlanResult:
        """Runs every stage and returns the final model and a record per stage.

        Args:
            model: A built Sequential/Functional tf_keras model, compiled or not; not modified.
            train_data: ``(x, y)`` arrays or a batched, finite ``tf.data.Dataset``.
            validation_data: Same forms, optional.
            loss: Loss for ``compile``. Defaults to sparse categorical cross-entropy.
            metrics: Metrics for ``compile``. Defaults to ``("accuracy",)``.
            optimizer: A name, an optimizer instance (its config is copied) or a callable
                returning one; each stage gets a fresh one at its own learning rate.
            batch_size: Batch size for array data. Defaults to 32.
            callbacks: Your callbacks, passed to every stage's ``fit``.
            strategy: A ``tf.distribute`` strategy; every stage builds and fits in its scope.
            checkpoint_dir: Folder for per-epoch checkpoints; a rerun with the same recipe
                resumes from the last completed epoch. Defaults to None (no checkpoints).
            verbose: 0 silent, 1 progress bars and stage summaries, 2 one line per epoch.
            run_eagerly: Fit without tracing a graph: far faster for smoke runs of a few steps
                on big models (tracing MobileNetV2's QAT graph takes ~20 s), slower for real
                training. Defaults to False.

        Raises:
            DataError: bad training or validation data.
            UnsupportedLayerError: a layer cannot be optimized (message names it and the fix).
            RecipeError: ``checkpoint_dir`` holds a run of a different recipe.
        """
        with _quiet_known_noise():
            return self._run(model, train_data, validation_data, loss, metrics, optimizer,
                             batch_size, callbacks, strategy, checkpoint_dir, verbose, run_eagerly)

    def _run(self, model, train_data, validation_data, loss, metrics, optimizer, batch_size,
             callbacks, strategy, checkpoint_dir, verbose, run_eagerly) -> PlanResult:
        check_graph_model(model, "OptimizationPlan.run")
        if not model.trainable_weights:
            raise InvalidArgumentError(
                f"model {model.name!r} has no trainable weights, so no stage would train it "
                "(tflite_opt.distill sets its teacher non-trainable, as Keras's Distiller "
                "does); set model.trainable = True first, or give distill a copy")
        _check_data("train_data", train_data)
        _check_data("validation_data", validation_data)
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InvalidArgumentError(f"batch_size is {batch_size!r}; accepted: an integer >= 1")
        if loss is None:
            loss = getattr(model, "loss", None)
            if loss is None:
                raise InvalidArgumentError("loss is None and the model is not compiled; pass loss=...")
        loss = _loss_for_outputs(model, loss, train_data)
        steps = _steps_per_epoch(train_data, batch_size)

        def scope() -> contextlib.AbstractContextManager:
            # A strategy scope object cannot be re-entered; make a new one each time.
            return strategy.scope() if strategy is not None else contextlib.nullcontext()

        plan_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        state = self._load_state(plan_dir)
        records = [StageRecord.from_dict(r) for r in state["completed"]]
        policy = self.recipe.policy

        n_stages = len(self.recipe.stages)

        def layers_optimized_in(source: Any) -> tuple[str, ...]:
            optimized = set()
            for stage in self.recipe.stages:
                if isinstance(stage, (PruneStage, ClusterStage)):
                    optimized.update(selected_layer_names(source, policy, stage.type))
            return tuple(l.name for l in source.layers if l.name in optimized)

        optimized_layers = layers_optimized_in(model)
        if plan_dir is not None and state["stage"] >= n_stages:
            # A finished run (e.g. the process died after the plan, during conversion).
            if verbose:
                print(f"[tflite_opt] all {n_stages} stages already done in {plan_dir}; restoring "
                      "the final model")
            with scope():
                final = self._restore_final(plan_dir, state, steps)
                final.compile(optimizer=fresh_optimizer_for(final, optimizer, None), loss=loss,
                              metrics=list(metrics) if metrics else None, run_eagerly=run_eagerly)
            return PlanResult(model=final, stages=tuple(records), recipe=self.recipe,
                              layer_stats=weight_stats(final), optimized_layers=optimized_layers)

        with scope():
            if state["stage"] > 0 or state["epoch"] > 0:
                current = _load_own_model(plan_dir / f"stage{state['stage']}_input.keras")
            else:
                current = deep_copy(model)
        if state["stage"] > 0 and isinstance(self.recipe.stages[0], DistillStage):
            optimized_layers = layers_optimized_in(current)  # the student's layers
        # Self-distillation's teacher: the float model as it enters the first compression stage.
        first_compression = _first_compression_stage(self.recipe)
        self_distills = any(getattr(s, "distill", None) is not None for s in self.recipe.stages)
        float_teacher = None
        pruned_before = any(_zeroes_weights(s) for s in self.recipe.stages[:state["stage"]])
        clustered_before = any(isinstance(s, ClusterStage) for s in self.recipe.stages[:state["stage"]])

        for index in range(state["stage"], len(self.recipe.stages)):
            stage = self.recipe.stages[index]
            resume_epoch = state["epoch"] if index == state["stage"] else 0
            if plan_dir is not None and resume_epoch == 0:
                atomic_save_model(current, plan_dir / f"stage{index}_input.keras")
                state.update(stage=index, epoch=0, checkpoint=None, seconds=0.0, metrics={})
                atomic_write_json(plan_dir / STATE_FILE, state)
            if verbose:
                print(f"[tflite_opt] stage {index + 1}/{len(self.recipe.stages)}: {stage.type} "
                      f"({stage.epochs} epochs, lr {stage.learning_rate})"
                      + (f", resuming after epoch {resume_epoch}" if resume_epoch else ""))
            start = time.perf_counter()
            base_seconds = float(state.get("seconds") or 0.0) if resume_epoch else 0.0
            if self_distills and float_teacher is None and index >= first_compression:
                # (index > first_compression only when resuming, so plan_dir holds the file)
                float_teacher = current if index == first_compression else \
                    _load_own_model(plan_dir / f"stage{first_compression}_input.keras")
            with scope():
                wrapped, channel_pruning = self._wrap(stage, current, steps, pruned_before,
                                                      clustered_before)
                trainer = self._trainer(stage, wrapped, current, float_teacher)
                # Self-distillation: the student's BatchNorm normalizes as its frozen teacher's.
                frozen = freeze_batch_norm(wrapped) if trainer is not wrapped and \
                    getattr(stage, "distill", None) is not None else []
                trainer.compile(optimizer=fresh_optimizer_for(wrapped, optimizer,
                                                              stage.learning_rate),
                                loss=loss, metrics=list(metrics) if metrics else None,
                                run_eagerly=run_eagerly)
                if resume_epoch:
                    load_training_weights(_built(trainer), plan_dir / state["checkpoint"])
            summary = StageSummary(stage.type, verbose=0)
            stage_callbacks: list[keras.callbacks.Callback] = []
            step_callback = pruning_step_callback(wrapped)
            if step_callback is not None:
                stage_callbacks.append(step_callback)
            stage_callbacks += [SparsityLogger(layers=optimized_layers), summary]
            if trainer is not wrapped:
                stage_callbacks = [_OnStudent(c) for c in stage_callbacks]
            if plan_dir is not None:
                stage_callbacks.append(_EpochCheckpoint(plan_dir, state, index, base_seconds, start))
            stage_callbacks += list(callbacks or [])
            if resume_epoch < stage.epochs:
                fit_kwargs: dict[str, Any] = {} if isinstance(train_data, tf.data.Dataset) else \
                    {"batch_size": batch_size}
                x, y = (train_data, None) if isinstance(train_data, tf.data.Dataset) else train_data[:2]
                trainer.fit(x, y, epochs=stage.epochs, initial_epoch=resume_epoch,
                            validation_data=validation_data, callbacks=stage_callbacks,
                            verbose=verbose, **fit_kwargs)
            for layer in frozen:
                layer.trainable = True
            with scope():
                current = wrapped if isinstance(stage, (QATStage, DistillStage)) else strip(wrapped)
            if isinstance(stage, (DistillStage, DecomposeStage)):
                # the later stages compress the student / see the factor layers
                optimized_layers = layers_optimized_in(current)
            pruned_before |= _zeroes_weights(stage)
            clustered_before |= isinstance(stage, ClusterStage)
            stats = weight_stats(current)
            sparsity, unique = summarize(stats, optimized_layers or None)
            seconds = base_seconds + time.perf_counter() - start
            # A run killed after its last epoch's checkpoint has no fit left to run: the
            # metrics of that epoch come from the checkpoint state.
            stage_metrics = summary.summary.get("metrics") or dict(state.get("metrics") or {})
            # Epochs actually run (a user's EarlyStopping may end a stage early).
            epochs_run = resume_epoch + int(summary.summary.get("epochs", 0))
            record = StageRecord(name=stage.type, epochs=epochs_run, metrics=stage_metrics,
                                 sparsity=sparsity,
                                 max_unique_weights=unique, seconds=round(seconds, 3),
                                 channel_pruning=channel_pruning)
            records.append(record)
            if verbose:
                done = (f"parameters {channel_pruning['params_ratio']:.3f}x, MACs "
                        f"{channel_pruning['macs_ratio']:.3f}x (channels removed)"
                        if channel_pruning else
                        f"sparsity {sparsity:.3f}, max unique weights {unique}")
                print(f"[tflite_opt] {stage.type} done in {seconds:.1f}s: "
                      + ", ".join(f"{k} {v:.4f}" for k, v in record.metrics.items())
                      + f"; {done}")
            if plan_dir is not None:
                state["completed"].append(record.to_dict())
                last = index + 1 == len(self.recipe.stages)  # QAT too: its .keras loads back
                atomic_save_model(current, plan_dir / (FINAL_MODEL if last else
                                                       f"stage{index + 1}_input.keras"))
                old = state.get("checkpoint")
                # The stage's output is saved (final.keras for the last): its epoch checkpoint
                # is not needed any more, and goes once the state no longer points at it.
                state.update(stage=index + 1, epoch=0, checkpoint=None, seconds=0.0)
                atomic_write_json(plan_dir / STATE_FILE, state)
                if old:
                    shutil.rmtree(plan_dir / old, ignore_errors=True)
        return PlanResult(model=current, stages=tuple(records), recipe=self.recipe,
                          layer_stats=weight_stats(current), optimized_layers=optimized_layers)

    def _wrap(self, stage: Any, current: keras.Model, steps: int, pruned_before: bool,
              clustered_before: bool) -> tuple[keras.Model, dict[str, Any] | None]:
        """The model the stage trains, and what a channel-pruning stage removed
        (``StageRecord.channel_pruning``; None for every other stage)."""
        policy = self.recipe.policy
        if isinstance(stage, DistillStage):
            if stage.student in STUDENT_BUILDERS:
                return build_student(stage.student, self._distill_teacher(stage, current),
                                     dict(stage.student_options)), None
            from tflite_opt.models.loading import load_model

            return load_model(stage.student), None  # a user's file: scanned, never trusted
        if isinstance(stage, DecomposeStage):
            from tflite_opt.train.decompose import decompose_stage

            return decompose_stage(current, stage, policy), None
        if isinstance(stage, PruneStage) and stage.objective == "latency":
            pruned = prune_channels_stage(current, stage, policy)
            return pruned.model, pruned.to_dict()
        if isinstance(stage, PruneStage):
            return prune(current, stage=stage, policy=policy,
                         total_steps=stage.epochs * steps), None
        if isinstance(stage, ClusterStage):
            return cluster(current, stage=stage, policy=policy), None
        scheme = resolve_scheme(stage.scheme, pruned_before, clustered_before)
        cluster_stage = self.recipe.stage("cluster")
        per_channel = bool(cluster_stage is not None and cluster_stage.per_channel)
        return quantize_aware(current, scheme=scheme, skip=policy.skip,
                              per_channel_clusters=per_channel), None

    def _restore_final(self, plan_dir: Path, state: dict[str, Any], steps: int) -> keras.Model:
        if (plan_dir / FINAL_MODEL).exists():  # every final stage, QAT included, saves it
            return _load_own_model(plan_dir / FINAL_MODEL)
        # A folder of a plan run before QAT .keras files loaded (qat_keras_format.py): its QAT
        # last stage wrote no final.keras; the model is rebuilt from the stage's input and
        # its last epoch checkpoint, which that run kept.
        last = self.recipe.stages[-1]
        index = len(self.recipe.stages) - 1
        before = self.recipe.stages[:index]
        stage_input = _load_own_model(plan_dir / f"stage{index}_input.keras")
        wrapped, _ = self._wrap(last, stage_input, steps,
                                any(_zeroes_weights(s) for s in before),
                                any(s.type == "cluster" for s in before))
        float_teacher = None
        if last.distill is not None:
            float_teacher = _load_own_model(
                plan_dir / f"stage{_first_compression_stage(self.recipe)}_input.keras")
        trainer = self._trainer(last, wrapped, stage_input, float_teacher)
        load_training_weights(_built(trainer), plan_dir / state["checkpoint"])
        return wrapped

    def _distill_teacher(self, stage: DistillStage, current: keras.Model) -> keras.Model:
        """A distill stage's teacher: its file, else the model given to the plan."""
        if stage.teacher is None:
            return current
        if id(stage) not in self._teachers:  # loaded once, for _wrap and _trainer
            from tflite_opt.models.loading import load_model

            self._teachers[id(stage)] = load_model(stage.teacher)  # scanned, never trusted
        return self._teachers[id(stage)]

    def _trainer(self, stage: Any, wrapped: keras.Model, current: keras.Model,
                 float_teacher: keras.Model | None) -> keras.Model:
        """What ``fit`` trains: ``wrapped`` itself, or a distiller whose student it is."""
        if isinstance(stage, DistillStage):
            return distill(self._distill_teacher(stage, current), wrapped, alpha=stage.alpha,
                           temperature=stage.temperature)
        settings = getattr(stage, "distill", None)
        if settings is None:
            return wrapped
        return distill(float_teacher, wrapped, alpha=settings.alpha,
                       temperature=settings.temperature)

    def _load_state(self, plan_dir: Path | None) -> dict[str, Any]:
        fresh = {"recipe": self.recipe.to_dict(), "stage": 0, "epoch": 0, "checkpoint": None,
                 "seconds": 0.0, "completed": []}
        if plan_dir is None:
            return fresh
        plan_dir.mkdir(parents=True, exist_ok=True)
        path = plan_dir / STATE_FILE
        if not path.exists():
            return fresh
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise RecipeError(f"checkpoint state {str(path)!r} is not valid JSON; delete "
                              "checkpoint_dir to start over") from exc
        if state.get("recipe") != self.recipe.to_dict():
            raise RecipeError(f"checkpoint_dir {str(plan_dir)!r} holds a run of a different recipe; "
                              "pass the same recipe to resume, or another/empty checkpoint_dir")
        return state
