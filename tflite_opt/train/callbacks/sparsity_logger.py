"""SparsityLogger: per-epoch kernel sparsity and unique-value counts, to logs and TensorBoard."""

from __future__ import annotations

import os
from typing import Any, Sequence

from tflite_opt._keras import keras, tf


class SparsityLogger(keras.callbacks.Callback):
    """Adds ``sparsity`` and ``max_unique_weights`` to each epoch's logs, and per-layer scalars.

    The two summary numbers cover the layers that are wrapped for pruning or clustering (all
    kernels when none is). Put it before ``TensorBoard``/``CSVLogger`` in the callback list so
    that they see the new keys. With ``log_dir``, it also writes per-layer
    ``sparsity/<layer>`` and ``unique_values/<layer>`` scalars for TensorBoard.

    Args:
        log_dir: TensorBoard folder for per-layer scalars. Defaults to None (no files).
        verbose: Print one line per epoch. Defaults to 0.
        layers: Names of the layers the two summary numbers cover. Defaults to None: the
            layers wrapped for pruning or clustering (QAT wraps every layer, so a plan's QAT
            stage passes the layers its earlier stages optimized).

    Example:
        >>> logger = SparsityLogger(log_dir="logs/prune")
        >>> pruned.fit(x, y, epochs=3, callbacks=[PruningStep(), logger])
        >>> logger.history[-1]["sparsity"]
    """

    def __init__(self, log_dir: str | os.PathLike | None = None, verbose: int = 0,
                 layers: Sequence[str] | None = None) -> None:
        super().__init__()
        self.layers = None if layers is None else tuple(layers)
        self.log_dir = None if log_dir is None else os.fspath(log_dir)
        self.verbose = verbose
        self.history: list[dict[str, Any]] = []
        self._writer = None

    def on_train_begin(self, logs=None) -> None:
        self.history = []
        if self.log_dir is not None and self._writer is None:
            self._writer = tf.summary.create_file_writer(os.path.join(self.log_dir, "sparsity"))

    def measure(self) -> dict[str, Any]:
        """Current stats: ``{"sparsity", "max_unique_weights", "layers": weight_stats(...)}``."""
        from tflite_opt.train.dispatch import optimized_layers, weight_stats
        from tflite_opt.train.stats import summarize

        stats = weight_stats(self.model)
        sparsity, unique = summarize(stats, self.layers or optimized_layers(self.model) or None)
        return {"sparsity": sparsity, "max_unique_weights": unique, "layers": stats}

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        entry = self.measure()
        entry["epoch"] = epoch
        self.history.append(entry)
        if logs is not None:
            logs["sparsity"] = entry["sparsity"]
            logs["max_unique_weights"] = float(entry["max_unique_weights"])
        if self._writer is not None:
            with self._writer.as_default():
                _scalar("sparsity/model", entry["sparsity"], epoch)
                _scalar("unique_values/max", entry["max_unique_weights"], epoch)
                for name, layer_stats in entry["layers"].items():
                    _scalar(f"sparsity/{name}", layer_stats["sparsity"], epoch)
                    _scalar(f"unique_values/{name}", layer_stats["unique_values"], epoch)
            self._writer.flush()
        if self.verbose:
            print(f"epoch {epoch + 1}: sparsity {entry['sparsity']:.3f}, "
                  f"max unique weights {entry['max_unique_weights']}")

    def on_train_end(self, logs=None) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _scalar(tag: str, value: float, step: int) -> None:
    # tf.summary.scalar lives in the tensorboard package, which is not a dependency; this
    # writes the same event (a float tensor tagged for TensorBoard's scalars plugin).
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR)
    tf.summary.write(tag, tf.constant(float(value), tf.float32), step=step, metadata=metadata)
