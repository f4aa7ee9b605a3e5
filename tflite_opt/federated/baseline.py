"""What federated training is measured against: the same trainer on the pooled data.

The fairest baseline trains the *same* ``.tflite`` file (same initial weights, optimizer, loss
and batch size) through the same ``train`` signature on all clients' data pooled in one place,
for the same number of passes over each sample as the federated run (``rounds x
local_epochs``), and scores it on the same held-out images through ``infer``. The difference
is then what federation costs, not a different trainer.

A federated run with ``learning_rate_decay`` trains round ``r``'s clients at ``learning_rate *
decay ** (r - 1)`` (``FedAvgConfig.round_learning_rate``); the baseline follows the same rates
per round-equivalent epochs: pooled epochs ``(r - 1) * local_epochs + 1 .. r * local_epochs``
train at round ``r``'s rate, so both runs see the same rate at the same number of passes over
each sample. With no decay it trains at the file's rate in one ``fit``, as it always did.

Example:
    >>> base = train_centralized("train.tflite", data.x_train, data.y_train, data.x_test,
    ...                          data.y_test, epochs=40, seed=0)
    >>> base.accuracy
    0.852
    >>> decayed = train_centralized("train.tflite", data.x_train, data.y_train, data.x_test,
    ...                             data.y_test, epochs=40, seed=0, learning_rate=0.1,
    ...                             learning_rate_decay=0.5, epochs_per_round=2)
    >>> decayed.learning_rates[:4]   # per epoch: rounds 1, 1, 2, 2
    (0.1, 0.1, 0.05, 0.05)
"""

from __future__ import annotations

import dataclasses
import os
import time

import numpy as np

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.federated.fedavg import FedAvgConfig, _read_tflite, load_trainer


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
        learning_rates: The rate set in the file for each epoch's steps when it decays
            (``learning_rate_decay < 1``); empty when it trained at one rate throughout.
    """

    accuracy: float
    correct: np.ndarray
    epoch_losses: tuple[float, ...]
    epochs: int
    seconds: float
    curve: tuple[tuple[int, float], ...] = ()
    learning_rates: tuple[float, ...] = ()

    @property
    def best_accuracy(self) -> float:
        """The highest held-out accuracy on the curve (an optimistic baseline: it peeks)."""
        return max([a for _, a in self.curve] + [self.accuracy])

    def to_dict(self) -> dict:
        out = {"accuracy": self.accuracy, "epochs": self.epochs, "seconds": self.seconds,
               "final_train_loss": self.epoch_losses[-1], "best_accuracy": self.best_accuracy,
               "curve": [list(point) for point in self.curve]}
        if self.learning_rates:
            out["learning_rates"] = list(self.learning_rates)
        return out


def round_equivalent_rates(epochs: int, epochs_per_round: int, learning_rate: float | None,
                           learning_rate_decay: float = 1.0) -> tuple[float | None, ...]:
    """The rate of each pooled epoch: epoch ``e`` (0-based) trains at round ``e // epochs_per_round
    + 1``'s rate, as ``FedAvgConfig.round_learning_rate`` gives it (None: the file's own rate).

    Raises:
        InvalidArgumentError: ``epochs_per_round`` is not an integer >= 1, or the rate and decay
            are not ones a federated run accepts (``FedAvgConfig``'s checks and messages).

    Example:
        >>> round_equivalent_rates(4, 2, 0.1, 0.5)
        (0.1, 0.1, 0.05, 0.05)
    """
    if isinstance(epochs_per_round, bool) or not isinstance(epochs_per_round, int) \
            or epochs_per_round < 1:
        raise InvalidArgumentError(f"epochs_per_round={epochs_per_round!r} must be an integer "
                                   ">= 1 (the federated run's local_epochs)")
    # The federated run's own rule, so the two cannot drift apart.
    rounds = FedAvgConfig(learning_rate=learning_rate, learning_rate_decay=learning_rate_decay)
    return tuple(rounds.round_learning_rate(epoch // epochs_per_round + 1)
                 for epoch in range(epochs))


def train_centralized(tflite: bytes | str | os.PathLike, x: np.ndarray, y: np.ndarray,
                      x_eval: np.ndarray, y_eval: np.ndarray, *, epochs: int,
                      batch_size: int = 32, seed: int = 0, eval_every: int | None = None,
                      progress: bool = False, learning_rate: float | None = None,
                      learning_rate_decay: float = 1.0,
                      epochs_per_round: int = 1) -> CentralizedResult:
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
        learning_rate: The federated run's round-1 rate (``FedAvgConfig.learning_rate``); None
            trains at the rate the file was exported with. Defaults to None.
        learning_rate_decay: The federated run's decay: epochs of round-equivalent ``r`` train
            at ``learning_rate * decay ** (r - 1)``, in (0, 1]. Defaults to 1.0 (constant).
        epochs_per_round: Pooled epochs per round-equivalent (the run's ``local_epochs``).
            Defaults to 1.

    Raises:
        InvalidArgumentError: A decay without ``learning_rate``, a rate or decay out of range,
            or ``epochs_per_round`` < 1.
    """
    rates = round_equivalent_rates(epochs, epochs_per_round, learning_rate, learning_rate_decay)
    trainer = load_trainer(_read_tflite(tflite))
    decaying = learning_rate_decay != 1
    if learning_rate is not None and not decaying:
        trainer.set_learning_rate(learning_rate)  # what a federated run's clients would set
    steps_per_epoch = trainer.steps_per_epoch(len(x), batch_size)

    def schedule(step: int) -> float:
        # fit calls it before every step with initial_step + the step's index in the call,
        # so the step counts pooled epochs across eval_every's chunks.
        return rates[step // steps_per_epoch]

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
                              progress=progress,
                              **(dict(learning_rate=schedule,
                                      initial_step=(done - chunk) * steps_per_epoch)
                                 if decaying else {}))
        seconds += time.perf_counter() - start
        if eval_every is not None:
            curve.append((min(done, epochs), float(correct_now().mean())))
    correct = correct_now()
    return CentralizedResult(float(correct.mean()), correct, tuple(losses), epochs, seconds,
                             tuple(curve), rates if decaying else ())
