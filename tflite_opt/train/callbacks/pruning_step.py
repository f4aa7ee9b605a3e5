"""PruningStep: keeps the pruning wrappers' step and masks in order during ``fit``."""

from __future__ import annotations

from tflite_opt._keras import keras


def _base() -> type:
    from tensorflow_model_optimization.python.core.sparsity.keras import pruning_callbacks

    return pruning_callbacks.UpdatePruningStep


class PruningStep(keras.callbacks.Callback):
    """Starts the pruning schedule at step 0 (or where a reloaded model left it) and re-masks.

    Required when fitting a model returned by :func:`tflite_opt.train.prune`. It finds pruning
    wrappers in nested models too. A model saved mid-pruning (``ModelCheckpoint``) keeps its
    ``pruning_step`` variable, so after reloading, the schedule resumes at the saved step. The
    masks are re-applied at the end of each epoch and of training, so a saved model is sparse.

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
        self._impl = _base()()
        self.start_step: int | None = None

    def set_model(self, model: keras.Model) -> None:
        super().set_model(model)
        self._impl.set_model(model)

    def on_train_begin(self, logs=None) -> None:
        self._impl.on_train_begin(logs)
        layers = self._impl.prunable_layers
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
        layers = self._impl.prunable_layers
        return int(keras.backend.get_value(layers[0].pruning_step)) if layers else None
