"""star.book.stats: the intervals behind the verdicts, against textbook values."""

import math

import numpy as np
import pytest

from star.book import stats


def test_mean_ci_is_students_t():
    mean, low, high = stats.mean_ci([1.0, 2.0, 3.0])
    # t(0.975, 2) = 4.303; s = 1, n = 3
    assert mean == 2.0 and high - mean == pytest.approx(4.3027 / math.sqrt(3), rel=1e-4) and low == 2 * mean - high
    assert stats.mean_ci([5.0]) == (5.0, -math.inf, math.inf)  # one value cannot decide
    m, lo, hi = stats.mean_ci([1.0, np.nan, 2.0])  # a diverged run: undecided
    assert math.isnan(m) and (lo, hi) == (-math.inf, math.inf)
    assert stats.mean_ci([0.3, 0.3]) == (0.3, 0.3, 0.3)
    with pytest.raises(ValueError, match="at least one value"):
        stats.mean_ci([])
    with pytest.raises(ValueError, match="level must be"):
        stats.mean_ci([1.0, 2.0], level=1.5)


def test_paired_ci_pairs_by_position():
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.4, 3.6])
    assert stats.paired_ci(b, a) == stats.mean_ci(b - a)
    assert stats.paired_ci(b, a)[1] > 0  # consistently larger: the interval excludes zero
    with pytest.raises(ValueError, match="paired 1-D arrays"):
        stats.paired_ci([1.0, 2.0], [1.0, 2.0, 3.0])


def test_proportion_ci_is_clopper_pearson():
    p, low, high = stats.proportion_ci(0, 16)
    assert p == 0 and low == 0 and high == pytest.approx(1 - 0.025 ** (1 / 16), rel=1e-9)
    p, low, high = stats.proportion_ci(8, 8)
    assert p == 1 and high == 1 and low == pytest.approx(0.025 ** (1 / 8), rel=1e-9)
    p, low, high = stats.proportion_ci(5, 10)
    assert (round(low, 4), round(high, 4)) == (0.1871, 0.8129)
    with pytest.raises(ValueError, match="0 <= k <= n"):
        stats.proportion_ci(3, 2)


def test_welch_ci():
    a, b = [1.0, 1.2, 1.1, 0.9], [2.0, 2.3, 2.1]
    diff, low, high = stats.welch_ci(a, b)
    from scipy.stats import ttest_ind

    res = ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    assert diff == pytest.approx(np.mean(a) - np.mean(b)) and (low, high) == pytest.approx((ci.low, ci.high))
    assert stats.welch_ci([1.0, 1.0], [0.5, 0.5]) == (0.5, 0.5, 0.5)
    assert stats.welch_ci([1.0], [0.5, 0.6])[1] == -math.inf
    assert stats.welch_ci([1.0, np.inf], [0.5, 0.6])[1] == -math.inf


def test_bootstrap_ci_is_reproducible_and_covers_the_mean():
    x = np.random.default_rng(1).normal(3.0, 1.0, size=200)
    one = stats.bootstrap_ci(np.mean, x, seed=0, num=500)
    assert one == stats.bootstrap_ci(np.mean, x, seed=0, num=500)
    assert one[1] < 3.0 < one[2] and one[1] < one[0] < one[2]
    with pytest.raises(ValueError, match="at least two rows"):
        stats.bootstrap_ci(np.mean, [1.0], seed=0)
