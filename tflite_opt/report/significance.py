"""Is one model more accurate than another on the same images? A paired 95% interval says.

Two models scored on the same test images are compared image by image (paired),
which removes the difficulty of the images from the comparison and is far more
sensitive than comparing two accuracies. Two methods:

- ``mcnemar_difference_ci``: one run per side. The closed-form (Wald) interval of the
  paired difference of proportions, built from McNemar's discordant counts
  (Agresti, *Categorical Data Analysis*, 10.1.1). Written here because scipy and
  statsmodels offer McNemar's test but not this interval.
- ``paired_bootstrap_difference_ci``: several training seeds per side. Each bootstrap
  draw resamples the images (the same draw for both sides, so the pairing is kept)
  and, independently, the seeds of each side, so the interval covers both the
  choice of images and the luck of training.

A difference is "better" or "worse" only when its interval excludes 0.

Example:
    >>> d = paired_bootstrap_difference_ci(correct_ours, correct_baseline)
    >>> d.difference, d.ci95_low, d.ci95_high, d.verdict
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from tflite_opt.errors import InvalidArgumentError

_Z95 = 1.959963984540054  # the 0.975 quantile of the standard normal


@dataclasses.dataclass(frozen=True)
class PairedDifference:
    """Accuracy of A minus accuracy of B on the same images, with its 95% interval (fractions)."""

    difference: float
    ci95_low: float
    ci95_high: float
    num_images: int
    runs_a: int
    runs_b: int
    method: str

    @property
    def verdict(self) -> str:
        """``"better"`` or ``"worse"`` (A vs B) when the interval excludes 0, else ``"not distinguishable"``."""
        if self.ci95_low > 0:
            return "better"
        if self.ci95_high < 0:
            return "worse"
        return "not distinguishable"

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "verdict": self.verdict}


def _as_runs(correct: np.ndarray, name: str) -> np.ndarray:
    runs = np.asarray(correct)
    if runs.ndim == 1:
        runs = runs[None]
    if runs.ndim != 2 or runs.shape[1] == 0 or not np.isin(runs, (0, 1)).all():
        raise InvalidArgumentError(f"{name} must be per-image correctness (0/1 or bool), shaped "
                                   f"(images,) or (runs, images); got shape {np.shape(correct)}")
    return runs.astype(np.float64)


def mcnemar_difference_ci(correct_a: np.ndarray, correct_b: np.ndarray) -> PairedDifference:
    """Paired difference of two single runs' accuracies, with McNemar's Wald 95% interval.

    With ``b`` images only A gets right and ``c`` only B gets right, out of ``n``:
    difference ``(b - c) / n``, standard error ``sqrt(b + c - (b - c)**2 / n) / n``.

    Args:
        correct_a: ``(images,)`` 0/1 correctness of model A.
        correct_b: The same for model B, on the same images in the same order.

    Example:
        >>> mcnemar_difference_ci(np.array([1, 1, 0, 1]), np.array([1, 0, 0, 1])).difference
        0.25
    """
    a, b = _as_runs(correct_a, "correct_a"), _as_runs(correct_b, "correct_b")
    if a.shape[0] != 1 or b.shape != a.shape:
        raise InvalidArgumentError(f"mcnemar_difference_ci compares one run with one run on the same "
                                   f"images; got shapes {a.shape} and {b.shape}. For several seeds "
                                   "use paired_bootstrap_difference_ci")
    n = a.shape[1]
    only_a = float(np.sum((a == 1) & (b == 0)))
    only_b = float(np.sum((a == 0) & (b == 1)))
    difference = (only_a - only_b) / n
    se = np.sqrt(max(only_a + only_b - (only_a - only_b) ** 2 / n, 0.0)) / n
    return PairedDifference(difference, difference - _Z95 * se, difference + _Z95 * se, n, 1, 1,
                            "McNemar (Wald interval of the paired difference)")


def paired_bootstrap_difference_ci(correct_a: np.ndarray, correct_b: np.ndarray,
                                   num_resamples: int = 4000, seed: int = 0) -> PairedDifference:
    """Mean accuracy of A's runs minus B's on the same images, with a paired bootstrap 95% interval.

    Args:
        correct_a: ``(runs, images)`` 0/1 correctness of A, one row per training seed
            (or ``(images,)`` for one run).
        correct_b: ``(runs, images)`` for B on the same images in the same order; the number
            of runs may differ from A's.
        num_resamples: Bootstrap draws. Defaults to 4000.
        seed: Seed of the draws, so a report is reproducible. Defaults to 0.

    Returns:
        The ``PairedDifference``; the interval is the 2.5th..97.5th percentile of the draws.

    Example:
        >>> d = paired_bootstrap_difference_ci(np.ones((3, 100)), np.zeros((3, 100)))
        >>> d.difference, d.verdict
        (1.0, 'better')
    """
    a, b = _as_runs(correct_a, "correct_a"), _as_runs(correct_b, "correct_b")
    if a.shape[1] != b.shape[1]:
        raise InvalidArgumentError(f"correct_a and correct_b must score the same images; got "
                                   f"{a.shape[1]} and {b.shape[1]} images")
    if num_resamples < 100:
        raise InvalidArgumentError(f"num_resamples must be >= 100 for a 95% interval, got {num_resamples}")
    n = a.shape[1]
    rng = np.random.default_rng(seed)
    # How often each image appears in each draw: the same draw scores both sides (paired).
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=num_resamples).astype(np.float64)
    per_run_a = counts @ a.T / n  # (draws, runs of A): each run's accuracy on the drawn images
    per_run_b = counts @ b.T / n
    pick_a = rng.integers(0, a.shape[0], size=(num_resamples, a.shape[0]))
    pick_b = rng.integers(0, b.shape[0], size=(num_resamples, b.shape[0]))
    draws = (np.take_along_axis(per_run_a, pick_a, 1).mean(1)
             - np.take_along_axis(per_run_b, pick_b, 1).mean(1))
    low, high = np.percentile(draws, [2.5, 97.5])
    return PairedDifference(float(a.mean() - b.mean()), float(low), float(high), n, a.shape[0],
                            b.shape[0], "paired bootstrap over images and seeds")
