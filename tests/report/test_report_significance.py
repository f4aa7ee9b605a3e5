"""Paired accuracy differences: McNemar's interval by hand, and the bootstrap against it."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tflite_opt.errors import InvalidArgumentError
from tflite_opt.report.significance import (PairedDifference, mcnemar_difference_ci,
                                            paired_bootstrap_difference_ci)


def _pairs(both: int, only_a: int, only_b: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    a = np.array([1] * both + [1] * only_a + [0] * only_b + [0] * neither)
    b = np.array([1] * both + [0] * only_a + [1] * only_b + [0] * neither)
    return a, b


def test_mcnemar_difference_ci_matches_hand_computed_interval():
    # n = 100; A alone right on 10, B alone on 5: difference 0.05,
    # se = sqrt(10 + 5 - 5**2 / 100) / 100 = sqrt(14.75) / 100.
    a, b = _pairs(both=80, only_a=10, only_b=5, neither=5)
    d = mcnemar_difference_ci(a, b)
    se = math.sqrt(14.75) / 100
    assert d.difference == pytest.approx(0.05)
    assert d.ci95_low == pytest.approx(0.05 - 1.959964 * se, abs=1e-6)
    assert d.ci95_high == pytest.approx(0.05 + 1.959964 * se, abs=1e-6)
    assert d.verdict == "not distinguishable"  # -0.025 .. 0.125 contains 0


def test_mcnemar_difference_ci_one_sided_discordance_is_better_or_worse():
    a, b = _pairs(both=60, only_a=30, only_b=0, neither=10)
    assert mcnemar_difference_ci(a, b).verdict == "better"
    assert mcnemar_difference_ci(b, a).verdict == "worse"
    assert mcnemar_difference_ci(b, a).difference == pytest.approx(-0.3)


def test_paired_bootstrap_single_runs_agrees_with_mcnemar_interval():
    # The bootstrap of a paired difference converges to the same normal interval.
    a, b = _pairs(both=2400, only_a=150, only_b=90, neither=360)
    exact = mcnemar_difference_ci(a, b)
    boot = paired_bootstrap_difference_ci(a, b, num_resamples=4000, seed=0)
    width = exact.ci95_high - exact.ci95_low
    assert boot.difference == pytest.approx(exact.difference)
    assert abs(boot.ci95_low - exact.ci95_low) < 0.1 * width
    assert abs(boot.ci95_high - exact.ci95_high) < 0.1 * width
    assert boot.verdict == exact.verdict == "better"


def test_paired_bootstrap_identical_runs_gives_zero_interval():
    correct = np.random.default_rng(0).random((3, 500)) < 0.9
    d = paired_bootstrap_difference_ci(correct, correct.copy())
    # Same seeds, same images: every draw differs only by which seeds each side picks.
    assert d.difference == 0.0 and d.verdict == "not distinguishable"
    assert d.ci95_low <= 0.0 <= d.ci95_high


def test_paired_bootstrap_seed_spread_widens_interval_over_single_seed():
    rng = np.random.default_rng(1)
    n = 2000
    base = rng.random(n) < 0.9
    # Three runs of A that disagree on many images vs three identical runs.
    noisy = np.stack([np.where(rng.random(n) < 0.15, ~base, base) for _ in range(3)])
    steady = np.stack([base] * 3)
    reference = np.stack([base] * 3)
    wide = paired_bootstrap_difference_ci(noisy, reference)
    narrow = paired_bootstrap_difference_ci(steady, reference)
    assert (wide.ci95_high - wide.ci95_low) > (narrow.ci95_high - narrow.ci95_low)


def test_paired_bootstrap_is_reproducible_and_reports_runs():
    a = np.random.default_rng(2).random((3, 300)) < 0.8
    b = np.random.default_rng(3).random((2, 300)) < 0.8
    first, second = paired_bootstrap_difference_ci(a, b), paired_bootstrap_difference_ci(a, b)
    assert first == second
    assert (first.runs_a, first.runs_b, first.num_images) == (3, 2, 300)
    assert first.to_dict()["verdict"] == first.verdict


def test_verdict_follows_interval_sign():
    assert PairedDifference(0.02, 0.001, 0.04, 10, 1, 1, "m").verdict == "better"
    assert PairedDifference(-0.02, -0.04, -0.001, 10, 1, 1, "m").verdict == "worse"
    assert PairedDifference(0.0, -0.01, 0.01, 10, 1, 1, "m").verdict == "not distinguishable"


@pytest.mark.parametrize("a, b, match", [
    (np.ones(10), np.ones(9), "same images"),
    (np.full(10, 2), np.ones(10), "correct_a"),
    (np.ones((2, 2, 2)), np.ones(8), "correct_a"),
])
def test_paired_bootstrap_bad_input_raises_naming_argument(a, b, match):
    with pytest.raises(InvalidArgumentError, match=match):
        paired_bootstrap_difference_ci(a, b)


def test_mcnemar_several_runs_raises_pointing_to_bootstrap():
    with pytest.raises(InvalidArgumentError, match="paired_bootstrap_difference_ci"):
        mcnemar_difference_ci(np.ones((2, 5)), np.ones((2, 5)))
