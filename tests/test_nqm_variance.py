"""Tests for the variance of the NQM's meta-gradient (Fig. 2a, Eqs. A.31–A.33) and its momentum extension
(star.nqm_variance)."""

import jax
import numpy as np
import pytest

from star import nqm, nqm_variance

EDGE = 2.0 / np.linalg.eigvalsh(nqm.PAPER_H)[-1]  # 2/λmax(H) = 1.360
KEY = jax.random.key(0)


def test_fig2a_constants():
    lam = np.linalg.eigvalsh(nqm.PAPER_H)
    assert len(nqm_variance.PAPER_HORIZONS) == 20 and nqm_variance.PAPER_HORIZONS[-1] == 1000
    alphas = nqm_variance.fig2a_alphas()
    assert alphas.shape == (50,) and alphas[-1] == pytest.approx(1.05 * 2 / lam[-1])


def test_variance_grid_equals_reverse_mode_per_point():
    m = nqm.paper_nqm()
    # The one-pass grid (forward mode, prefix means) equals reverse mode per (T, alpha) point, in float64,
    # from a stable alpha to far beyond the edge (alpha = 5: rho(A) = 6.35, loss ~ 1e48 at T = 30).
    horizons, alphas = (7, 30), np.array([0.3, 1.45, 5.0])
    grid = nqm_variance.meta_gradient_variance_grid(KEY, m, alphas, horizons, 64)
    with nqm.float64():
        for j, a in enumerate(alphas):
            ref = float(nqm.gradient_variance_trace(nqm.meta_gradients(KEY, m, a, None, 30, 64)))
            assert grid[1, j] == pytest.approx(ref, rel=1e-9)
    assert grid[1, 2] > 1e80 and np.all(np.isfinite(grid))
    # Momentum (Nesterov) tangents as well.
    g = nqm_variance.meta_gradient_variance_grid(KEY, m, alphas, horizons, 64, optimizer="nesterov", momentum=0.5)
    with nqm.float64():
        ref = nqm.gradient_variance_trace(nqm.meta_gradients(KEY, m, 0.3, None, 30, 64, optimizer="nesterov",
                                                         momentum=0.5))
    assert g[1, 0] == pytest.approx(float(ref), rel=1e-9)



@pytest.mark.parametrize("call,match", [
    (lambda: nqm_variance.meta_gradient_variance_grid(KEY, nqm.paper_nqm(), [np.nan], (1,), 2), "alphas must be"),
    (lambda: nqm_variance.meta_gradient_variance_grid(KEY, nqm.paper_nqm(), [0.1], (0,), 2), "horizons"),
    (lambda: nqm_variance.meta_gradient_variance_grid(KEY, nqm.make_nqm(np.eye(9), np.eye(9)), [0.1], (1,), 2),
     "at most 8x8"),
    (lambda: nqm_variance.meta_gradient_variance_grid(KEY, nqm.paper_nqm(), [0.1], (1,), 2, momentum=0.5),
     "momentum must be 0"),
])
def test_variance_grid_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()




def test_variance_finite_inside_and_explodes_just_past_the_edge():
    """Fig. 2a: finite at a stable α; orders of magnitude larger just beyond 2/λmax, more so for longer T."""
    alphas = np.array([0.5 * EDGE, 0.9 * EDGE, 1.03 * EDGE])
    var = nqm_variance.meta_gradient_variance_grid(jax.random.PRNGKey(3), nqm.paper_nqm(), alphas, (50, 100), 200)
    assert np.all(np.isfinite(var)) and np.all(var > 0)
    mid, near, past = var[:, 0], var[:, 1], var[:, 2]
    assert np.all(mid < 100.0), mid  # O(1–10) in the middle of the stable range
    ratio = past / mid
    assert np.all(ratio > 1e6), ratio  # measured ~1e9 (T=50) and ~1e14 (T=100)
    assert ratio[1] > 1e3 * ratio[0]  # the explosion steepens with the horizon
    assert np.all(near > mid) and np.all(past > 1e3 * near)


# ------------------------------------------------------------------------- problem and parametrisation


def test_variance_along_boundary_bad_inputs():
    m = nqm.paper_nqm()
    with pytest.raises(ValueError, match="fractions"):
        nqm_variance.variance_along_boundary(jax.random.PRNGKey(0), m, [0.0], [0.5, -1.0])
    with pytest.raises(ValueError, match="momenta"):
        nqm_variance.variance_along_boundary(jax.random.PRNGKey(0), m, [1.5], [0.5])


def test_variance_along_boundary_places_alpha_relative_to_the_momentum_edge():
    res = nqm_variance.variance_along_boundary(jax.random.PRNGKey(2), nqm.paper_nqm(), [0.0, 0.5], [0.5, 1.02], T=50,
                                           num_seeds=50)
    np.testing.assert_allclose(res.alphas[0], [0.5 * EDGE, 1.02 * EDGE])
    np.testing.assert_allclose(res.alphas[1], [0.75 * EDGE, 1.53 * EDGE])
    assert np.all(res.variance[:, 1] > 1e3 * res.variance[:, 0])  # the edge moves with β, the explosion too
    assert np.all(res.snr > 0) and np.all(np.isfinite(res.snr))
