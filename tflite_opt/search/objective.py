"""The search objective: accuracy under hard latency and size budgets, as one number.

KerasTuner's oracles optimize one scalar, so each trial reports ``score`` (maximized):

* within every budget: ``score = accuracy`` (in [0, 1]);
* over a budget: ``score = accuracy - 1 - sum of relative overshoots`` (always < 0), so every
  candidate that fits beats every one that does not, and among those that do not, the oracle
  is steered towards the budget;
* rejected before training (the built model or the latency table already breaks a budget):
  the same with accuracy 0.

Every measured figure (accuracy, host latency, table latency, size) is kept per trial too, and
the Pareto front is computed from them (``tflite_opt.search.pareto``), not from the score.

Latency is measured on the converted ``.tflite`` with ``find_fastest_config``: interleaved
rounds over the thread counts given (default one: two shared cores make a 2-thread run noisy)
with XNNPACK on and off; the fastest configuration's median is the candidate's latency.

Example:
    >>> budgets = Budgets(latency_us=2000, size_bytes=200_000)
    >>> budgets.score(accuracy=0.95, latency_us=1500, size_bytes=150_000)
    0.95
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

from tflite_opt.errors import InvalidArgumentError


@dataclasses.dataclass(frozen=True)
class Budgets:
    """Hard limits on the shipped file; None = no limit.

    Args:
        latency_us: Median latency in microseconds. Defaults to None.
        size_bytes: ``.tflite`` file size in bytes. Defaults to None.
    """

    latency_us: float | None = None
    size_bytes: int | None = None

    def __post_init__(self) -> None:
        for name in ("latency_us", "size_bytes"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise InvalidArgumentError(f"budget {name} is {value!r}; accepted: a positive "
                                           "number or None (--budget_latency_ms, --budget_size_kb)")

    def overshoot(self, latency_us: float | None, size_bytes: float | None) -> float:
        """Sum of relative overshoots (0 when within every budget)."""
        total = 0.0
        for value, limit in ((latency_us, self.latency_us), (size_bytes, self.size_bytes)):
            if value is not None and limit is not None and value > limit:
                total += value / limit - 1.0
        return total

    def violations(self, latency_us: float | None, size_bytes: float | None) -> list[str]:
        """Which budgets a candidate breaks, in words."""
        out = []
        if latency_us is not None and self.latency_us is not None and latency_us > self.latency_us:
            out.append(f"latency {latency_us:.0f} us > {self.latency_us:.0f} us")
        if size_bytes is not None and self.size_bytes is not None and size_bytes > self.size_bytes:
            out.append(f"size {size_bytes:.0f} B > {self.size_bytes} B")
        return out

    def score(self, accuracy: float, latency_us: float | None, size_bytes: float | None) -> float:
        """The scalar objective (see the module docstring)."""
        over = self.overshoot(latency_us, size_bytes)
        return float(accuracy) if over == 0 else float(accuracy) - 1.0 - over

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Measurement:
    """Latency of one ``.tflite`` on this host: the fastest configuration's median (us)."""

    median_us: float
    num_threads: int
    op_resolver: str
    summary: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def measure_latency(model: Any, threads: Sequence[int] = (1,), num_runs: int = 50,
                    op_resolvers: Sequence[str] = ("auto", "no_xnnpack")) -> Measurement:
    """Measures a ``.tflite`` (path or bytes) with ``tflite_opt.runtime.find_fastest_config``.

    Example:
        >>> measure_latency("candidate.tflite", threads=(1, 2)).median_us
    """
    from tflite_opt.runtime import find_fastest_config

    fastest = find_fastest_config(model, threads=tuple(threads), op_resolvers=tuple(op_resolvers),
                                  num_runs=num_runs, warmup_runs=5)
    return Measurement(median_us=fastest.median_us, num_threads=fastest.num_threads,
                       op_resolver=fastest.op_resolver, summary=fastest.summary)
