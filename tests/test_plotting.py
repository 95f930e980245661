import numpy as np
import pytest

from star.plotting import ema, seed_band


def test_ema_closed_forms():
    # a constant is a fixed point of the debiased EMA
    np.testing.assert_allclose(ema(np.full(50, 3.0), 0.98), 3.0, rtol=1e-12)
    # first point is the first value; a unit step at t=k gives (1 - c^(t-k+1)) / (1 - c^(t+1))
    c, k = 0.9, 5
    x = np.r_[np.zeros(k), np.ones(20)]
    t = np.arange(25)
    expected = np.where(t >= k, (1 - c ** (t - k + 1)) / (1 - c ** (t + 1)), 0.0)
    np.testing.assert_allclose(ema(x, c), expected, rtol=1e-12)
    np.testing.assert_array_equal(ema(x, 0.0), x)
    # works along the last axis of a batch, and NaN propagates
    y = ema(np.stack([x, 2 * x]), c)
    np.testing.assert_allclose(y[1], 2 * y[0])
    z = ema(np.r_[1.0, np.nan, 1.0], 0.5)
    assert np.isnan(z[1:]).all() and z[0] == 1.0


def test_seed_band_and_bad_input():
    mean, lo, hi = seed_band([[1.0, 2.0], [3.0, 0.0]])
    np.testing.assert_array_equal(mean, [2.0, 1.0])
    np.testing.assert_array_equal(lo, [1.0, 0.0])
    np.testing.assert_array_equal(hi, [3.0, 2.0])
    with pytest.raises(ValueError, match="coefficient must be in \\[0, 1\\); got 1.0"):
        ema([1.0], 1.0)
    with pytest.raises(ValueError, match="leading seed axis"):
        seed_band([1.0, 2.0])
