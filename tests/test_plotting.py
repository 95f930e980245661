import numpy as np
import pytest

from star.plotting import ema, mean_stderr_band, seed_band


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


def test_mean_stderr_band_closed_form_and_smoothing():
    x = np.array([[1.0, 2.0, 4.0], [3.0, 2.0, 0.0], [2.0, 5.0, 2.0]])
    mean, lo, hi = mean_stderr_band(x)
    se = np.array([1.0, np.sqrt(3.0), 2.0]) / np.sqrt(3.0)  # sample std (ddof=1) / sqrt(3 seeds)
    np.testing.assert_allclose(mean, [2.0, 3.0, 2.0])
    np.testing.assert_allclose(hi - mean, se)
    np.testing.assert_allclose(mean - lo, se)
    # Smoothing applies the same EMA to the mean and to both band edges (App. B.1).
    m2, l2, h2 = mean_stderr_band(x, 0.95, num_stderr=2.0)
    np.testing.assert_allclose(m2, ema(mean, 0.95))
    np.testing.assert_allclose(h2, ema(mean + 2 * se, 0.95))
    np.testing.assert_allclose(l2, ema(mean - 2 * se, 0.95))
    with pytest.raises(ValueError, match=">= 2 seeds"):
        mean_stderr_band([[1.0, 2.0]])
    with pytest.raises(ValueError, match="num_stderr must be"):
        mean_stderr_band(x, num_stderr=-1.0)
    with pytest.raises(ValueError, match="coefficient must be in"):
        mean_stderr_band(x, coefficient=1.5)
