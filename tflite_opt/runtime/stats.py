"""Latency statistics over timed runs, as the TFLite ``benchmark_model`` tool reports them.

Definitions (fixed so tests can check them against known timings):

* ``mean``: arithmetic mean.
* ``std``: population standard deviation (divide by n), as ``benchmark_model``'s
  ``Stat`` computes it.
* ``min``, ``max``: extremes.
* ``median``: the middle value, or the mean of the two middle values.
* ``p90``, ``p99``: nearest-rank percentiles: the ``ceil(p / 100 * n)``-th smallest
  value, so every reported percentile is a time that was actually measured.

Example:
    >>> latency_stats([100, 200, 300, 400]).median_us
    250.0
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from tflite_opt.errors import InvalidArgumentError


def nearest_rank_percentile(values: Sequence[float], percent: float) -> float:
    """The ``ceil(percent / 100 * n)``-th smallest value (1-based), ``percent`` in (0, 100].

    Example:
        >>> nearest_rank_percentile(range(1, 101), 90)
        90.0
    """
    ordered = sorted(float(v) for v in values)
    if not ordered:
        raise InvalidArgumentError("percentile of no values; time at least one run")
    if not 0 < percent <= 100:
        raise InvalidArgumentError(f"percent must be in (0, 100], got {percent}")
    rank = max(1, math.ceil(percent / 100.0 * len(ordered)))
    return ordered[rank - 1]


@dataclasses.dataclass(frozen=True)
class LatencyStats:
    """Summary of timed runs, all in microseconds."""

    count: int
    mean_us: float
    std_us: float
    min_us: float
    median_us: float
    p90_us: float
    p99_us: float
    max_us: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def latency_stats(timings_us: Sequence[float]) -> LatencyStats:
    """Computes ``LatencyStats`` from per-run times in microseconds.

    Args:
        timings_us: One wall time per timed run (at least one, all finite and >= 0).

    Raises:
        InvalidArgumentError: Empty, negative or non-finite timings.

    Example:
        >>> s = latency_stats([10.0, 20.0, 30.0])
        >>> (s.mean_us, s.min_us, s.max_us)
        (20.0, 10.0, 30.0)
    """
    values = np.asarray(list(timings_us), dtype=np.float64)
    if values.size == 0:
        raise InvalidArgumentError("no timings to summarize; num_runs must be >= 1")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise InvalidArgumentError("timings must be finite and >= 0 microseconds")
    return LatencyStats(
        count=int(values.size),
        mean_us=float(values.mean()),
        std_us=float(values.std()),  # ddof=0: population std, as benchmark_model
        min_us=float(values.min()),
        median_us=float(np.median(values)),
        p90_us=nearest_rank_percentile(values, 90),
        p99_us=nearest_rank_percentile(values, 99),
        max_us=float(values.max()),
    )
