"""Tests for star.nqm: closed forms (Eq. 8, Lyapunov limit) against Monte Carlo and against each other."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from star import nqm as q

KEY = jax.random.key(0)
NUM_MC = 10_000  # trajectories for every Monte-Carlo comparison
Z = 4.0  # tolerance in standard errors: a false failure has probability ~6e-5 (and seeds are fixed)


def _mc_check(nqm, alpha, P, T, **opt):
    losses = np.asarray(q.simulate_losses(KEY, nqm, alpha, P, T, NUM_MC, **opt), dtype=np.float64)
    per_run = losses.mean(axis=1)  # one sample of the meta-loss per trajectory
    mc, se = per_run.mean(), per_run.std(ddof=1) / np.sqrt(NUM_MC)
    closed = float(q.expected_loss(nqm, alpha, P, T, **opt))
    assert abs(mc - closed) < Z * se, (mc, closed, se)
    # Per step too (first, middle, last step), each within Z standard errors.
    steps = np.asarray(q.expected_losses(nqm, alpha, P, T, **opt))
    for t in (0, T // 2, T - 1):
        col = losses[:, t]
        assert abs(col.mean() - steps[t]) < Z * col.std(ddof=1) / np.sqrt(NUM_MC), t
    return mc, closed, se


@pytest.mark.parametrize("alpha", [0.8, 1.3])  # stable (rho = 0.18) and near the edge 2/lmax = 1.360
def test_closed_form_matches_monte_carlo(alpha):
    _mc_check(q.paper_nqm(), alpha, None, 50)


def test_closed_form_matches_monte_carlo_fixed_phi0_and_P():
    nqm = q.make_nqm(q.PAPER_H, np.array([[1.0, 0.3], [0.3, 0.5]]), phi0=np.array([2.0, -1.0]))
    P = np.array([[0.3, -0.1], [0.2, -0.2]])  # non-symmetric P is allowed in the dynamics
    _mc_check(nqm, 0.5, P, 50)


@pytest.mark.parametrize("optimizer", ["heavy_ball", "nesterov"])
def test_momentum_closed_form_matches_monte_carlo(optimizer):
    # The closed form runs the 2N-dimensional augmented recursion; the simulation runs the optimizer itself.
    _mc_check(q.paper_nqm(), 0.6, None, 50, optimizer=optimizer, momentum=0.6)


def test_momentum_zero_reduces_to_sgd():
    nqm = q.paper_nqm()
    sgd = q.expected_losses(nqm, 0.7, None, 25)
    for opt in ("heavy_ball", "nesterov"):
        np.testing.assert_allclose(q.expected_losses(nqm, 0.7, None, 25, optimizer=opt, momentum=0.0), sgd,
                                   rtol=2e-5)


def test_expected_loss_matches_explicit_sum():
    # Eq. (8) written out with matrix powers and the Sigma_t sum of (A.10), in float64 numpy.
    H, S0, Sx = q.PAPER_H, 10 * np.eye(2), np.eye(2)
    alpha, P, T = 0.9, np.array([[0.1, 0.05], [0.05, -0.2]]), 12
    A = np.eye(2) - (alpha * np.eye(2) + P) @ H
    B = np.eye(2) - A
    total = 0.0
    for t in range(1, T + 1):
        At = np.linalg.matrix_power(A, t)
        Sig = sum(np.linalg.matrix_power(A, j) @ B @ Sx @ B.T @ np.linalg.matrix_power(A, j).T for j in range(t))
        total += 0.5 * (np.trace(H @ At @ S0 @ At.T) + np.trace(H @ (Sig + Sx)))
    with q.float64():
        got = float(q.expected_loss(q.paper_nqm(), alpha, P, T))
    assert got == pytest.approx(total / T, rel=1e-12)


def test_lyapunov_matches_scipy_and_long_horizon():
    nqm = q.paper_nqm()
    with q.float64():
        A, B = q.augmented_system(q.PAPER_H, 1.1, None)
        Q = B @ jnp.eye(2) @ B.T
        X = q.lyapunov_covariance(A, Q)
        np.testing.assert_allclose(X, scipy.linalg.solve_discrete_lyapunov(np.asarray(A), np.asarray(Q)),
                                   rtol=1e-10, atol=1e-12)
        limit = float(q.asymptotic_loss(nqm, 1.1, None))
        steps = np.asarray(q.expected_losses(nqm, 1.1, None, 4000))
    # rho(A) = 0.618, so the per-step loss reaches the limit to machine precision long before t = 4000 ...
    assert steps[-1] == pytest.approx(limit, rel=1e-12)
    # ... and the time average L(T) converges at rate 1/T: T |L(T) - L_inf| is the summed transient.
    transient = np.sum(steps - limit)
    for T in (1000, 4000):
        assert T * (steps[:T].mean() - limit) == pytest.approx(transient, rel=1e-6)
    # Momentum: the 2N-dimensional Lyapunov limit against a long horizon.
    with q.float64():
        lim_m = float(q.asymptotic_loss(nqm, 1.1, None, optimizer="heavy_ball", momentum=0.5))
        last = float(q.expected_losses(nqm, 1.1, None, 3000, optimizer="heavy_ball", momentum=0.5)[-1])
    assert last == pytest.approx(lim_m, rel=1e-10)


def test_asymptotic_loss_is_infinite_beyond_the_edge():
    assert np.isinf(q.asymptotic_loss(q.paper_nqm(), 1.4, None))  # 1.4 > 2/lmax = 1.360
    assert np.isfinite(q.asymptotic_loss(q.paper_nqm(), 1.35, None))


def test_paper_constants_and_code_convention():
    lam = np.linalg.eigvalsh(q.PAPER_H)
    np.testing.assert_allclose(lam, [0.12529, 1.47071], atol=1e-4)
    # The reference code's loss has no 1/2: its model equals the 1/2-convention one with curvature 2H,
    # so its stability edge is 1/lmax(H) instead of 2/lmax(H).
    code = q.paper_nqm("code")
    assert np.all(np.abs(np.linalg.eigvals(np.asarray(q.dynamics_matrix(code.H, 0.99 / lam[-1], None)))) < 1)
    assert np.any(np.abs(np.linalg.eigvals(np.asarray(q.dynamics_matrix(code.H, 1.01 / lam[-1], None)))) > 1)
    np.testing.assert_allclose(code.S0, 100 * np.eye(2))


def test_unroll_truncations_compose():
    nqm, key = q.paper_nqm(), jax.random.key(3)
    init_key, noise_key = jax.random.split(key)
    s0 = q.init_state(init_key, nqm)
    s2, l2 = q.unroll(nqm, 0.5, None, s0, noise_key, 50, optimizer="heavy_ball", momentum=0.5)
    s1, la = q.unroll(nqm, 0.5, None, s0, noise_key, 25, optimizer="heavy_ball", momentum=0.5)
    s1, lb = q.unroll(nqm, 0.5, None, s1, noise_key, 25, optimizer="heavy_ball", momentum=0.5)
    np.testing.assert_allclose(jnp.concatenate([la, lb]), l2, rtol=1e-5)
    np.testing.assert_allclose(s1.phi, s2.phi, rtol=1e-5)
    assert int(s1.t) == 50
    # The Monte-Carlo runs are the same trajectories (seed i uses split(key, num_seeds)[i]).
    sims = q.simulate_losses(KEY, nqm, 0.5, None, 50, NUM_MC, optimizer="heavy_ball", momentum=0.5)
    k0, n0 = jax.random.split(jax.random.split(KEY, NUM_MC)[0])
    ref = q.unroll(nqm, 0.5, None, q.init_state(k0, nqm), n0, 50, optimizer="heavy_ball", momentum=0.5)[1]
    np.testing.assert_allclose(sims[0], ref, rtol=1e-5)


def test_meta_gradient_matches_finite_differences_and_closed_form():
    nqm = q.paper_nqm()
    with q.float64():
        da, dP = q.meta_gradients(KEY, nqm, 0.7, None, 30, 64)
        seed = jax.random.split(KEY, 64)[1]
        f = lambda a, p: q.simulated_loss(seed, nqm, a, p, 30)  # noqa: E731
        h = 1e-6
        fd = (f(0.7 + h, jnp.zeros((2, 2))) - f(0.7 - h, jnp.zeros((2, 2)))) / (2 * h)
        assert float(da[1]) == pytest.approx(float(fd), rel=1e-6)
        E = jnp.zeros((2, 2)).at[0, 1].set(h)
        fdP = (f(0.7, E) - f(0.7, -E)) / (2 * h)
        assert float(dP[1, 0, 1]) == pytest.approx(float(fdP), rel=1e-6)
    # The mean meta-gradient estimates the gradient of the closed form (unbiased), within Z standard errors.
    num = 2000
    da, dP = q.meta_gradients(KEY, nqm, 0.7, None, 50, num)
    exact = jax.grad(lambda a: q.expected_loss(nqm, a, None, 50))(0.7)
    se = float(np.std(da) / np.sqrt(num))
    assert abs(float(np.mean(da)) - float(exact)) < Z * se


def test_seed_draws_are_the_simulations_inputs():
    """Unrolling from the drawn φ0 with the drawn ξ reproduces simulate_losses exactly (seed by seed)."""
    nqm = q.paper_nqm()
    phi0, xi = q.seed_draws(KEY, nqm, 6, 3)
    assert phi0.shape == (3, 2) and xi.shape == (3, 7, 2)
    losses = np.asarray(q.simulate_losses(KEY, nqm, 0.4, None, 6, 3))
    H = np.asarray(nqm.H, np.float32)
    for i in range(3):
        phi = np.asarray(phi0[i])
        for t in range(6):
            phi = phi - 0.4 * H @ (phi - np.asarray(xi[i, t]))
            d = phi - np.asarray(xi[i, t + 1])
            assert 0.5 * d @ H @ d == pytest.approx(losses[i, t], rel=1e-4)


def test_float32_overflows_beyond_the_edge_where_float64_does_not():
    # alpha = 5: rho(A) = 6.35, so the loss is ~1e48 by T = 30, beyond float32's 3.4e38 (JAX's default).
    nqm = q.paper_nqm()
    assert not np.isfinite(float(q.expected_loss(nqm, 5.0, None, 50)))
    with q.float64():
        big = float(q.expected_loss(nqm, 5.0, None, 50))
    assert np.isfinite(big) and big > 1e70
    assert np.isfinite(float(q.expected_loss(nqm, 1.2, None, 50)))


def test_gradient_variance_trace_is_a_trace_of_the_covariance():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(50,)), rng.normal(size=(50, 2, 2))
    flat = np.concatenate([a[:, None], b.reshape(50, 4)], axis=1)
    expected = np.trace(np.cov(flat.T, bias=True))  # (A.32) with 1/N
    assert float(q.gradient_variance_trace((a, b))) == pytest.approx(expected, rel=1e-5)


def test_jit_vmap_grad_compose():
    nqm = q.paper_nqm()
    f = jax.jit(lambda a, p: q.expected_loss(nqm, a, p, 50))
    vals = jax.vmap(lambda a: f(a, jnp.zeros((2, 2))))(jnp.array([0.2, 0.5]))
    assert vals.shape == (2,)
    ga, gp = jax.grad(f, argnums=(0, 1))(0.5, jnp.zeros((2, 2)))
    # dL/dalpha equals the trace of dL/dP (M = alpha I + P).
    assert float(ga) == pytest.approx(float(jnp.trace(gp)), rel=1e-4)


# ---------------------------------------------------------------------------------------------- bad input
BAD = [
    (lambda: q.make_nqm(np.array([[1.0, 0.5], [0.0, 1.0]]), np.eye(2)), "H must be symmetric"),
    (lambda: q.make_nqm(np.array([[1.0, 0.0], [0.0, -1.0]]), np.eye(2)), "H must be positive definite"),
    (lambda: q.make_nqm(np.ones(3), np.eye(3)), "H must be a square"),
    (lambda: q.make_nqm(np.eye(2), -np.eye(2)), "sigma_xi must be positive semidefinite"),
    (lambda: q.make_nqm(np.eye(2), np.eye(2), S0=np.array([[1.0, 2.0], [2.0, 1.0]])), "S0 must be positive semi"),
    (lambda: q.make_nqm(np.eye(2), np.eye(3)), r"sigma_xi must have shape \(2, 2\)"),
    (lambda: q.make_nqm(np.eye(2), np.eye(2), phi0=np.ones(3)), r"phi0 must have shape \(2,\)"),
    (lambda: q.make_nqm(np.eye(2) * np.nan, np.eye(2)), "H must have finite"),
    (lambda: q.expected_loss(q.paper_nqm(), np.nan, None, 5), "alpha must be finite"),
    (lambda: q.expected_loss(q.paper_nqm(), np.inf, None, 5), "alpha must be finite"),
    (lambda: q.expected_loss(q.paper_nqm(), 0.5, np.eye(3), 5), r"P must have shape \(2, 2\)"),
    (lambda: q.expected_loss(q.paper_nqm(), 0.5, None, 0), "T must be an integer >= 1"),
    (lambda: q.expected_loss(q.paper_nqm(), 0.5, None, 2.5), "T must be an integer >= 1"),
    (lambda: q.expected_loss(q.paper_nqm(), 0.5, None, True), "T must be an integer >= 1"),
    (lambda: q.expected_loss(q.paper_nqm(), 0.5, None, 5, optimizer="adam"), "optimizer must be one of"),
    (lambda: q.expected_loss(q.paper_nqm(), 0.5, None, 5, optimizer="heavy_ball", momentum=1.0), "momentum must be <"),
    (lambda: q.expected_loss(q.paper_nqm(), 0.5, None, 5, momentum=0.5), "momentum must be 0"),
    (lambda: q.expected_loss("nqm", 0.5, None, 5), "nqm must be a star.nqm.NQM"),
    (lambda: q.simulate_losses(KEY, q.paper_nqm(), 0.5, None, 5, 0), "num_seeds must be an integer"),
    (lambda: q.dynamics_matrix(np.array([[1.0, 2.0], [2.0, 1.0]]), 0.5), "H must be positive definite"),
    (lambda: q.lyapunov_covariance(np.eye(2), -np.eye(2)), "Q must be positive semidefinite"),
    (lambda: q.seed_draws(KEY, q.paper_nqm(), 0, 2), "T must be an integer >= 1"),
    (lambda: q.gradient_variance_trace(()), "grads must contain"),
    (lambda: q.paper_nqm("other"), "convention must be one of"),
]


@pytest.mark.parametrize("call,match", BAD, ids=[m for _, m in BAD])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()
