"""PruningStep: keeps the pruning wrappers' step and masks in order during ``fit``."""

from __future__ import annotations

from typing import Any

from tflite_opt._keras import keras


def _base() -> type:
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_callbacks

    return pruning_callbacks.UpdatePruningStep


def _implementation(model: Any, verbose: int) -> Any:
    """tfmot's ``UpdatePruningStep`` for tf_keras models, ``PruningStepKeras3`` for Keras 3."""
    from tflite_opt._keras import import_tfmot, keras_flavor

    if keras_flavor(model) == "keras3":
        from tflite_opt.train.keras3 import PruningStepKeras3

        return PruningStepKeras3(verbose=verbose)
    import_tfmot()
    return _base()()


class PruningStep(keras.callbacks.Callback):
    """Starts the pruning schedule at step 0 (or where a reloaded model left it) and re-masks.

    Required when fitting a tf_keras model returned by :func:`tflite_opt.train.prune`; for a
    Keras 3 model (whose wrappers count their own steps) it does what ``PruningStepKeras3``
    does. It finds pruning wrappers in nested models too. A model saved mid-pruning
    (``ModelCheckpoint``) keeps its ``pruning_step`` variable, so after reloading, the schedule
    resumes at the saved step. The masks are re-applied at the end of each epoch and of
    training, so a saved model is sparse.

    Args:
        verbose: Print the pruning step at the start and end of training. Defaults to 0.

    Example:
        >>> pruned = prune(model, 0.75, end_step=1000)
        >>> pruned.compile("adam", "sparse_categorical_crossentropy")
        >>> pruned.fit(x, y, epochs=10, callbacks=[PruningStep()])
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__()
        self.verbose = verbose
        self._impl: Any = None  # chosen by the model's Keras in set_model
        self.start_step: int | None = None

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        self._impl = _implementation(model, self.verbose)
        self._impl.set_model(model)

    @property
    def _tfmot_layers(self) -> list[Any] | None:
        """tfmot's pruned layers, or None when the model is a Keras 3 model."""
        return getattr(self._impl, "prunable_layers", None)

    def on_train_begin(self, logs=None) -> None:
        self._impl.on_train_begin(logs)
        layers = self._tfmot_layers
        if layers is None:  # Keras 3
            self.start_step = self._impl.start_step
            return
        self.start_step = int(keras.backend.get_value(layers[0].pruning_step)) if layers else None
        if self.verbose and layers:
            print(f"PruningStep: {len(layers)} pruned layers, schedule at step {self.start_step}")

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self._impl.on_epoch_end(epoch, logs)

    def on_train_end(self, logs=None) -> None:
        self._impl.on_epoch_end(0, logs)

    @property
    def step(self) -> int | None:
        """The current pruning step (None when the model has no pruned layer)."""
        if self._impl is None:
            return None
        layers = self._tfmot_layers
        if layers is None:
            return self._impl.step
        return int(keras.backend.get_value(layers[0].pruning_step)) if layers else None
