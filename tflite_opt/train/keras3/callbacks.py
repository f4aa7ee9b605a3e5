"""``PruningStepKeras3``: the Keras 3 pruning callback (masks written into saved kernels)."""

from __future__ import annotations

from typing import Any

from tflite_opt._keras import keras3
from tflite_opt.train.keras3.pruning import PruneLowMagnitude
from tflite_opt.train.keras3.registry import iter_layers

keras = keras3()


class PruningStepKeras3(keras.callbacks.Callback):
    """Reports where the pruning schedule stands and keeps saved kernels sparse.

    The Keras 3 wrappers count their own steps (each training batch), so pruning works in a
    plain ``fit`` without this callback and a reloaded checkpoint resumes at its saved step.
    The callback records that step at the start of training (``start_step``) and writes
    ``kernel * mask`` into the kernels at the end of each epoch and of training, so a
    ``ModelCheckpoint`` file holds sparse kernels.

    Args:
        verbose: Print the pruning step at the start of training. Defaults to 0.

    Example:
        >>> pruned.fit(x, y, epochs=4, callbacks=[PruningStepKeras3()])
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__()
        self.verbose = verbose
        self.start_step: int | None = None

    def _layers(self) -> list[Any]:
        return [l for l in iter_layers(self.model) if isinstance(l, PruneLowMagnitude)]

    @property
    def step(self) -> int | None:
        """The current pruning step (None when the model has no pruned layer)."""
        layers = self._layers()
        return int(keras.ops.convert_to_numpy(layers[0].pruning_step)) if layers else None

    def on_train_begin(self, logs: Any = None) -> None:
        self.start_step = self.step
        if self.verbose and self.start_step is not None:
            print(f"PruningStep: {len(self._layers())} pruned layers, schedule at step "
                  f"{self.start_step}")

    def on_epoch_end(self, epoch: int, logs: Any = None) -> None:
        for layer in self._layers():
            layer.apply_mask()

    def on_train_end(self, logs: Any = None) -> None:
        self.on_epoch_end(0, logs)
