"""Tests for meta-learning on the NQM (Figs. 2b–c, App. B.1) and its momentum extension (star.nqm_meta); Fig. 2a's
variance is tested in test_nqm_variance.py."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from star import nqm, nqm_meta, stability
from star.inner import NQMProblem

EDGE = 2.0 / np.linalg.eigvalsh(nqm.PAPER_H)[-1]  # 2/λmax(H) = 1.360


def test_symmetric_vector_roundtrip_and_bad_sizes():
    p = jnp.array([1.0, 2.0, 3.0])
    P = np.asarray(nqm_meta.symmetric_from_vector(p))
    np.testing.assert_array_equal(P, [[1.0, 2.0], [2.0, 3.0]])
    np.testing.assert_array_equal(nqm_meta.vector_from_symmetric(P), p)
    assert nqm_meta.num_free_entries(3) == 6 and nqm_meta.symmetric_from_vector(jnp.arange(6.0)).shape == (3, 3)
    with pytest.raises(ValueError, match="n\\(n\\+1\\)/2"):
        nqm_meta.symmetric_from_vector(jnp.zeros(4))
    with pytest.raises(ValueError, match="1-D"):
        nqm_meta.symmetric_from_vector(jnp.zeros((2, 2)))
    with pytest.raises(ValueError, match="P"):
        nqm_meta.vector_from_symmetric(np.array([[0.0, 1.0], [0.0, 0.0]]))


def _episode(problem, theta, key, T):
    state = problem.init(theta, key)
    out = []
    for _ in range(T):
        state, loss, valid = problem.step(theta, state, None)
        assert bool(valid)
        out.append(float(loss))
    return np.array(out)


def test_problem_delegates_to_nqm_and_heavy_ball_with_zero_momentum_is_sgd():
    m = nqm.paper_nqm()
    theta = {"p": jnp.array([0.1, -0.05, 0.2])}
    P = np.array([[0.1, -0.05], [-0.05, 0.2]])
    sgd = nqm_meta.SymmetricNQMProblem(NQMProblem(m, horizon=20), alpha=0.3)
    hb0 = nqm_meta.SymmetricNQMProblem(NQMProblem(m, horizon=20, optimizer="heavy_ball", momentum=0.0), alpha=0.3)
    ref = NQMProblem(m, horizon=20)
    key = jax.random.PRNGKey(5)
    a = _episode(sgd, theta, key, 20)
    np.testing.assert_array_equal(a, _episode(hb0, theta, key, 20))
    np.testing.assert_array_equal(a, _episode(ref, {"alpha": 0.3, "P": jnp.asarray(P, jnp.float32)}, key, 20))
    # The closed form of the wrapped problem is Eq. (8) at M = αI + P (and the heavy-ball one for β > 0).
    def closed_form(problem):
        return float(nqm.expected_loss(m, T=20, **problem.closed_form_args(theta)))

    assert closed_form(sgd) == pytest.approx(float(nqm.expected_loss(m, 0.3, P, 20)), rel=1e-5)
    hb = nqm_meta.SymmetricNQMProblem(NQMProblem(m, horizon=20, optimizer="heavy_ball", momentum=0.5), alpha=0.3)
    want = float(nqm.expected_loss(m, 0.3, P, 20, optimizer="heavy_ball", momentum=0.5))
    assert closed_form(hb) == pytest.approx(want, rel=1e-5)
    assert closed_form(hb) != pytest.approx(closed_form(sgd), rel=1e-3)


def test_nqm_problem_rejects_momentum_with_sgd():
    problem = NQMProblem(nqm.paper_nqm(), horizon=5, optimizer="sgd", momentum=0.5)
    state = problem.init({}, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="momentum"):
        problem.step({"alpha": 0.3, "P": jnp.zeros((2, 2))}, state, None)


# ---------------------------------------------------------------------------------- Theorem 1 band


@settings(max_examples=60, deadline=None)
@given(frac=st.floats(0.02, 0.98), beta=st.floats(0.0, 0.95), u=st.floats(0.01, 0.99), v=st.floats(0.01, 0.99),
       angle=st.floats(0.0, np.pi))
def test_eigenvalues_inside_band_are_stable(frac, beta, u, v, angle):
    """Any symmetric P with eigenvalues strictly inside theorem1_band gives ρ < 1 (β = 0: Theorem 1)."""
    alpha = frac * 2 * (1 + beta) / np.linalg.eigvalsh(nqm.PAPER_H)[-1]
    lo, hi = nqm_meta.theorem1_band(nqm.PAPER_H, alpha, beta)
    assert lo == -alpha
    lam = lo + (hi - lo) * np.array([u, v])
    c, s = np.cos(angle), np.sin(angle)
    R = np.array([[c, -s], [s, c]])
    P = R @ np.diag(lam) @ R.T
    assert stability.momentum_spectral_radius(nqm.PAPER_H, alpha, P, momentum=beta) < 1.0
    assert stability.momentum_theorem1_holds(nqm.PAPER_H, alpha, P, momentum=beta)  # the same budget
    if beta == 0.0:
        assert stability.theorem1_holds(nqm.PAPER_H, alpha, P, strict=True)


def test_band_lower_edge_is_necessary_and_upper_edge_is_tight_along_the_top_eigenvector():
    H = nqm.PAPER_H
    w, V = np.linalg.eigh(H)
    alpha, beta = 0.4, 0.5
    lo, hi = nqm_meta.theorem1_band(H, alpha, beta)
    below = (lo - 0.01) * np.eye(2)  # λmin(P) < −α: M has a negative eigenvalue, unstable
    assert stability.momentum_spectral_radius(H, alpha, below, momentum=beta) > 1.0
    v = V[:, -1:]  # along H's top eigenvector the band's upper edge is exactly the stability edge
    assert stability.momentum_spectral_radius(H, alpha, (hi - 1e-3) * v @ v.T, momentum=beta) < 1.0
    assert stability.momentum_spectral_radius(H, alpha, (hi + 1e-3) * v @ v.T, momentum=beta) > 1.0
    assert nqm_meta.theorem1_band(H, alpha) == pytest.approx((-alpha, EDGE - alpha))


def test_tuned_step_and_optimal_preconditioner_are_minimisers():
    m = nqm.paper_nqm()

    def closed_form(a, P):  # Eq. (8) in float64
        with nqm.float64():
            return float(nqm.expected_loss(m, a, P, 10))

    a = nqm_meta.tuned_step_size(m, 10)
    grid = np.linspace(0.05, 1.3, 126)
    best = grid[np.argmin([closed_form(x, None) for x in grid])]
    assert abs(a - best) <= 0.01
    P = nqm_meta.optimal_preconditioner(m, a, 10)
    L_opt = closed_form(a, P)
    assert L_opt < closed_form(a, None) - 1e-3
    for d in (np.array([[1e-2, 0], [0, 0]]), np.array([[0, 1e-2], [1e-2, 0]]), np.array([[0, 0], [0, 1e-2]])):
        for sign in (1, -1):
            assert closed_form(a, P + sign * d) >= L_opt - 1e-12


# ------------------------------------------------------------------------------ ES meta-training


@pytest.fixture(scope="module")
def short_run():
    """Two variants × two seeds, 150 outer steps of ES (T = 50 = truncation), AdamW lr 1e-2, wd 0.5 × lr."""
    m = nqm.paper_nqm()
    variants = [nqm_meta.ESVariant("nominal + P + wd", 0.3, weight_decay=0.5),
                nqm_meta.ESVariant("P alone + wd", 0.0, weight_decay=0.5)]
    return nqm_meta.es_meta_train(m, variants, seeds=[0, 1], outer_steps=150, num_tasks=8, exact_every=50)


def test_nominal_with_weight_decay_stays_inside_theorem1_band(short_run):
    eig = short_run.eigenvalues[0]  # [seeds, steps, 2]
    lo, hi = nqm_meta.theorem1_band(nqm.PAPER_H, 0.3)
    assert np.all(eig[..., 0] > lo) and np.all(eig[..., 1] < hi), (eig.min(), eig.max(), lo, hi)
    # ... and it did learn something: the larger eigenvalue moved well away from 0 (towards P*).
    assert np.all(eig[:, -1, 1] > 0.1), eig[:, -1]
    assert short_run.nan_count.sum() == 0


def test_es_meta_loss_decreases(short_run):
    exact = short_run.exact_loss  # [variants, seeds, E], closed form Eq. (8) of the learned optimizer
    assert np.all(exact[:, :, -1] < exact[:, :, 0])
    assert np.all(exact[1, :, -1] < 0.2 * exact[1, :, 0])  # P alone starts at M = 0 (no learning at all)
    assert np.all(exact[0, :, -1] < exact[0, :, 0] - 0.02)  # nominal: 1.23 -> ~1.15
    es = short_run.meta_loss  # the noisy ES-reported loss decreases too
    assert np.all(es[:, :, -25:].mean(-1) < es[:, :, :25].mean(-1))


# ------------------------------------------------------------------------------ bad input


def test_bad_inputs():
    m = nqm.paper_nqm()
    with pytest.raises(ValueError, match="alpha"):
        nqm_meta.theorem1_band(nqm.PAPER_H, -0.1)
    with pytest.raises(ValueError, match="momentum"):
        nqm_meta.theorem1_band(nqm.PAPER_H, 0.1, 1.0)
    with pytest.raises(ValueError, match="H"):
        nqm_meta.theorem1_band(-np.eye(2), 0.1)
    with pytest.raises(ValueError, match="momentum"):
        nqm_meta.ESVariant("x", 0.1, momentum=1.2)
    with pytest.raises(ValueError, match="weight_decay"):
        nqm_meta.ESVariant("x", 0.1, weight_decay=-1.0)
    with pytest.raises(ValueError, match="alpha"):
        nqm_meta.ESVariant("x", float("nan"))
    with pytest.raises(ValueError, match="variants"):
        nqm_meta.es_meta_train(m, [], seeds=[0], outer_steps=2)
    with pytest.raises(ValueError, match="seeds"):
        nqm_meta.es_meta_train(m, [nqm_meta.ESVariant("x", 0.1)], seeds=[-1], outer_steps=2)
    with pytest.raises(ValueError, match="outer_steps"):
        nqm_meta.es_meta_train(m, [nqm_meta.ESVariant("x", 0.1)], seeds=[0], outer_steps=0)
    with pytest.raises(ValueError, match="momentum"):
        nqm_meta.tuned_step_size(m, 10, optimizer="sgd", momentum=0.5)
    with pytest.raises(ValueError, match="optimizer"):
        nqm_meta.tuned_step_size(m, 10, optimizer="adam")
    with pytest.raises(ValueError, match="T"):
        nqm_meta.optimal_preconditioner(m, 0.3, 0)


def test_per_lane_weight_decay_equals_metatrain_adamw(short_run):
    """es_meta_train's per-lane decoupled decay reproduces metatrain's AdamW(weight_decay=0.5) step by step."""
    from star import outer_step

    v = short_run.variants[0]
    prob = nqm_meta.SymmetricNQMProblem(NQMProblem(nqm.paper_nqm(), horizon=50, optimizer="heavy_ball",
                                            momentum=jnp.float32(v.momentum)), alpha=jnp.float32(v.alpha))
    cfg = outer_step.MetaTrainConfig(outer_steps=150, num_tasks=8, trunc_length=50, std=0.01, lr=1e-2,
                                    weight_decay=v.weight_decay, random_offset=False, seed=0, shard=False)
    state = outer_step.init_meta_state(prob, {"p": jnp.zeros(3, jnp.float32)}, cfg)
    step = outer_step.make_outer_step(cfg)
    ps = [np.asarray(state.theta["p"])]
    for _ in range(40):
        state, _ = step(prob, state)
        ps.append(np.asarray(state.theta["p"]))
    np.testing.assert_allclose(np.array(ps), short_run.p[0, 0, :41], rtol=1e-4, atol=1e-6)
