"""The distill suite's seed-paired size change and its interval."""

import math

import numpy as np
import pytest
from scipy import stats

from benchmarks.suites.distill import paired_percent_ci


def test_paired_percent_ci_is_the_student_t_interval_of_per_seed_changes():
    mean, low, high = paired_percent_ci([105, 99, 102], [100, 100, 100])
    diffs = np.array([5.0, -1.0, 2.0])
    half = stats.t.ppf(0.975, 2) * diffs.std(ddof=1) / math.sqrt(3)
    assert mean == pytest.approx(2.0)
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half))
    assert low < 0 < high  # three noisy seeds: no claim either way


def test_paired_percent_ci_pairs_by_seed_not_by_pooled_means():
    # Seed-to-seed spread is large but every pair changes by +1%: the interval is tight.
    mean, low, high = paired_percent_ci([101, 202, 303], [100, 200, 300])
    assert (mean, low, high) == pytest.approx((1.0, 1.0, 1.0))


def test_one_seed_has_no_interval():
    mean, low, high = paired_percent_ci([99], [100])
    assert mean == pytest.approx(-1.0) and math.isnan(low) and math.isnan(high)
