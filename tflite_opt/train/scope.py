"""optimize_scope: the loading scope for models saved while wrapped (prune/cluster/QAT)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from tflite_opt.train.layers import tfmot


@contextlib.contextmanager
def optimize_scope() -> Iterator[None]:
    """Makes tfmot's wrapper classes known to ``keras.models.load_model``.

    Example:
        >>> with optimize_scope():
        ...     pruned = keras.models.load_model("checkpoint.keras")
    """
    t = tfmot()
    with t.quantization.keras.quantize_scope(), t.sparsity.keras.prune_scope(), \
            t.clustering.keras.cluster_scope():
        yield
