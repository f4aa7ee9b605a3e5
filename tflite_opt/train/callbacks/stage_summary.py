"""StageSummary: what one ``fit`` of an optimization stage did, as a record."""

from __future__ import annotations

import time
from typing import Any

from tflite_opt._keras import keras


class StageSummary(keras.callbacks.Callback):
    """Collects epochs run, final metrics, wall time, sparsity and unique weights of a ``fit``.

    After training, ``summary`` holds ``{"name", "epochs", "metrics", "sparsity",
    "max_unique_weights", "seconds"}``; with ``verbose`` it is printed as one line.

    Args:
        name: Stage name shown in the summary. Defaults to "train".
        verbose: Print the summary at the end of training. Defaults to 0.

    Example:
        >>> summary = StageSummary("prune", verbose=1)
        >>> pruned.fit(x, y, epochs=2, callbacks=[PruningStep(), summary])
        >>> summary.summary["sparsity"]
    """

    def __init__(self, name: str = "train", verbose: int = 0) -> None:
        super().__init__()
        self.name = name
        self.verbose = verbose
        self.summary: dict[str, Any] = {}
        self._start = 0.0
        self._epochs = 0
        self._logs: dict[str, float] = {}

    def on_train_begin(self, logs=None) -> None:
        self._start = time.perf_counter()
        self._epochs = 0
        self._logs = {}
        self.summary = {}

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self._epochs += 1
        self._logs = {k: float(v) for k, v in (logs or {}).items()
                      if k not in ("sparsity", "max_unique_weights")}

    def on_train_end(self, logs=None) -> None:
        from tflite_opt.train.dispatch import optimized_layers, weight_stats
        from tflite_opt.train.stats import summarize

        sparsity, unique = summarize(weight_stats(self.model), optimized_layers(self.model) or None)
        self.summary = {"name": self.name, "epochs": self._epochs, "metrics": dict(self._logs),
                        "sparsity": sparsity, "max_unique_weights": unique,
                        "seconds": time.perf_counter() - self._start}
        if self.verbose:
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in self._logs.items())
            print(f"[{self.name}] {self._epochs} epochs in {self.summary['seconds']:.1f}s: {metrics}; "
                  f"sparsity {sparsity:.3f}, max unique weights {unique}")
