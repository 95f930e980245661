import numpy as np
import pytest

from star.plotting import coinciding_markevery, ema, mean_stderr_band, seed_band, staggered_markevery


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


def test_staggered_markers_never_share_a_point():
    for count, n, markers in ((2, 12, None), (3, 2000, 10), (4, 81, 12), (2, 5, None), (3, 7, 20)):
        marked = [set(range(n)[start::step]) for start, step in
                  (staggered_markevery(k, count, n, markers) for k in range(count))]
        assert all(marked), (count, n, markers)  # every series shows a marker
        for a in range(count):
            for b in range(a + 1, count):
                assert not marked[a] & marked[b], (count, n, markers, a, b)
    assert staggered_markevery(1, 2, 12) == (1, 2)
    assert staggered_markevery(2, 3, 2000, 10) == (133, 200)
    with pytest.raises(ValueError, match=r"index must be an integer in \[0, 2\); got 2"):
        staggered_markevery(2, 2, 10)
    with pytest.raises(ValueError, match="num_points must be an integer >= 1"):
        staggered_markevery(0, 2, 0)
    with pytest.raises(ValueError, match="num_markers must be"):
        staggered_markevery(0, 2, 10, 0)


def test_coinciding_curves_get_disjoint_markers_and_the_others_keep_theirs():
    x = np.linspace(0.0, 1.0, 12)
    curves = [x, 1.01 * x, x ** 2, x + 0.5, x]  # 0, 1 and 4 coincide within 5 %; 2 and 3 stand alone
    every = coinciding_markevery(curves)
    assert every[2] is None and every[3] is None
    assert [every[i] for i in (0, 1, 4)] == [(0, 3), (1, 3), (2, 3)]
    assert coinciding_markevery(curves, rtol=1e-3) == [(0, 2), None, None, None, (1, 2)]  # 1.01·x now apart
    # a percentage that differs by under a point coincides with atol = 1, not with rtol alone
    dead = [[0.0, 10.0, 15.6], [0.0, 10.0, 14.8]]
    assert coinciding_markevery(dead, rtol=0.0, atol=1.0) == [(0, 2), (1, 2)]
    assert coinciding_markevery(dead, rtol=0.01) == [None, None]
    # a curve that stops (NaN) where the other goes on does not coincide with it
    assert coinciding_markevery([[1.0, 2.0, np.nan], [1.0, 2.0, 3.0]]) == [None, None]
    with pytest.raises(ValueError, match="curves must have one shape"):
        coinciding_markevery([[1.0, 2.0], [1.0]])
