"""What federated training is measured against: the same trainer on the pooled data.

The fairest baseline trains the *same* ``.tflite`` file (same initial weights, optimizer, loss
and batch size) through the same ``train`` signature on all clients' data pooled in one place,
for the same number of passes over each sample as the federated run (``rounds x
local_epochs``), and scores it on the same held-out images through ``infer``. The difference
is then what federation costs, not a different trainer.

Example:
    >>> base = train_centralized("train.tflite", data.x_train, data.y_train, data.x_test,
    ...                          data.y_test, epochs=40, seed=0)
    >>> base.accuracy
    0.852
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from tflite_opt.federated.fedavg import _read_tflite, load_trainer


@dataclasses.dataclass(frozen=True)
class CentralizedResult:
    """The pooled-data baseline.

    Attributes:
        accuracy: Held-out accuracy through the file's ``infer`` signature.
        correct: Per-image 0/1 correctness (for paired comparisons).
        epoch_losses: Training loss of each epoch.
        epochs: Epochs trained.
        seconds: Wall time of training (evaluations excluded).
        curve: ``(epochs so far, held-out accuracy)`` after every ``eval_every`` epochs (the
            same points as a federated run's rounds when ``eval_every = local_epochs``).
    """

    accuracy: float
    correct: np.ndarray
    epoch_losses: tuple[float, ...]
    epochs: int
    seconds: float
    curve: tuple[tuple[int, float], ...] = ()

    @property
    def best_accuracy(self) -> float:
        """The highest held-out accuracy on the curve (an optimistic baseline: it peeks)."""
        return max([a for _, a in self.curve] + [self.accuracy])

    def to_dict(self) -> dict:
        return {"accuracy": self.accuracy, "epochs": self.epochs, "seconds": self.seconds,
                "final_train_loss": self.epoch_losses[-1], "best_accuracy": self.best_accuracy,
                "curve": [list(point) for point in self.curve]}


def train_centralized(tflite: bytes | str | os.PathLike, x: np.ndarray, y: np.ndarray,
                      x_eval: np.ndarray, y_eval: np.ndarray, *, epochs: int,
                      batch_size: int = 32, seed: int = 0, eval_every: int | None = None,
                      progress: bool = False) -> CentralizedResult:
    """Trains ``tflite`` on ``(x, y)`` through its ``train`` signature; scores it through ``infer``.

    Args:
        tflite: The trainable ``.tflite`` the federated run starts from (bytes or a path).
        x: All clients' samples, pooled.
        y: Their labels.
        x_eval: Held-out images.
        y_eval: Their labels.
        epochs: Passes over the pooled data (a federated run's ``rounds * local_epochs``).
        batch_size: Batch size. Defaults to 32.
        seed: Shuffling seed. Defaults to 0.
        eval_every: Also score the model after every this many epochs (the ``curve``); the
            epochs then run in chunks, each shuffled from ``(seed, chunk)``. None trains in one
            go. Defaults to None.
        progress: Show a progress bar over the steps. Defaults to False.
    """
    trainer = load_trainer(_read_tflite(tflite))

    def correct_now() -> np.ndarray:
        return (np.argmax(trainer.infer(x_eval), axis=-1) == np.asarray(y_eval)).astype(np.int8)

    chunk = epochs if eval_every is None else max(1, min(int(eval_every), epochs))
    losses: list[float] = []
    curve = []
    seconds = 0.0
    for index, done in enumerate(range(chunk, epochs + chunk, chunk)):
        size = min(chunk, epochs - (done - chunk))
        chunk_seed = seed if eval_every is None else \
            int(np.random.SeedSequence([seed, index]).generate_state(1, np.uint32)[0])
        start = time.perf_counter()
        losses += trainer.fit(x, y, epochs=size, batch_size=batch_size, seed=chunk_seed,
                              progress=progress)
        seconds += time.perf_counter() - start
        if eval_every is not None:
            curve.append((min(done, epochs), float(correct_now().mean())))
    correct = correct_now()
    return CentralizedResult(float(correct.mean()), correct, tuple(losses), epochs, seconds,
                             tuple(curve))
