"""Tests for star.stability: the paper's bounds as properties (hypothesis), the errata as counterexamples,
and the momentum region against simulated divergence."""

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from star import nqm as q
from star import stability as s

PROPERTY = settings(max_examples=200, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
ROUND = 1e-9  # rounding slack for "<= 1" on the boundary of the (non-strict) sufficient conditions


def _orth(rng, n):
    Q, R = np.linalg.qr(rng.normal(size=(n, n)))
    return Q * np.sign(np.diag(R))


@st.composite
def curvature(draw, n_max=4):
    """A random SPD H: random eigenvectors, lambda_max = 10**scale, condition number up to 1e3."""
    n = draw(st.integers(2, n_max))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale, log_cond = draw(st.floats(-1.5, 1.5)), draw(st.floats(0.0, 3.0))
    lam = 10.0 ** (scale - log_cond * np.concatenate([[0.0], rng.uniform(size=n - 1)]))
    U = _orth(rng, n)
    H = (U * lam) @ U.T
    return 0.5 * (H + H.T), rng


def _sym(rng, eigs):
    W = _orth(rng, len(eigs))
    P = (W * eigs) @ W.T
    return 0.5 * (P + P.T)


def _A(H, alpha, P):
    """A = I - (alpha I + P) H in float64 (star.nqm.dynamics_matrix follows JAX's float32 default)."""
    return np.eye(H.shape[0]) - (alpha * np.eye(H.shape[0]) + P) @ H


def test_dynamics_matrix_is_eq6():
    P = np.array([[0.1, -0.3], [0.2, 0.05]])
    with q.float64():
        np.testing.assert_allclose(q.dynamics_matrix(q.PAPER_H, 0.7, P), _A(q.PAPER_H, 0.7, P), rtol=1e-15)


def _edge(H):
    return 2.0 / np.linalg.eigvalsh(H)[-1]


# ------------------------------------------------------------------------------------------ properties
@PROPERTY
@given(curvature(), st.floats(0.01, 1.0), st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4),
       st.booleans())
def test_theorem1_implies_marginal_stability(Hr, a_frac, fracs, boundary):
    H, rng = Hr
    n, edge = H.shape[0], _edge(H)
    alpha = a_frac * edge
    # Eigenvalues of P in [-alpha, edge - alpha], i.e. (9) and (10); optionally pinned to both ends.
    eigs = -alpha + np.array(fracs[:n]) * edge
    if boundary:
        eigs[0], eigs[-1] = -alpha, edge - alpha
    P = _sym(rng, eigs)
    assume(s.theorem1_holds(H, alpha, P))  # rounding can push a pinned eigenvalue just outside
    assert s.spectral_radius(_A(H, alpha, P)) <= 1 + ROUND
    # Strict conditions give strict stability (away from rounding at the boundary).
    if eigs.min() + alpha > 1e-9 * edge and edge - alpha - eigs.max() > 1e-9 * edge:
        assert s.theorem1_holds(H, alpha, P, strict=True)
        assert s.exact_stability_criterion(H, alpha, P)


@PROPERTY
@given(curvature(), st.floats(0.01, 2.0), st.lists(st.floats(-2.0, 2.0), min_size=4, max_size=4))
def test_exact_criterion_iff_spectral_radius_below_one(Hr, a_frac, fracs):
    H, rng = Hr
    n, edge = H.shape[0], _edge(H)
    alpha = a_frac * edge
    P = _sym(rng, np.array(fracs[:n]) * edge)
    A = np.eye(n) - (alpha * np.eye(n) + P) @ H
    rho = s.spectral_radius(A)
    lo, hi = s.exact_stability_margins(H, alpha, P)
    assume(abs(rho - 1) > 1e-9 and min(abs(lo), abs(hi)) > 1e-9)  # away from the boundary itself
    assert s.exact_stability_criterion(H, alpha, P) == (rho < 1)
    # Theorem 1 is sufficient only: it never claims stability where the exact criterion denies it.
    if s.theorem1_holds(H, alpha, P, strict=True):
        assert rho < 1


@PROPERTY
@given(curvature(), st.floats(0.01, 1.0), st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4))
def test_lemma2_conditions_imply_stability_of_preconditioned_dynamics(Hr, a_frac, fracs):
    H, rng = Hr
    n = H.shape[0]
    edge2 = 2.0 / np.sqrt(np.linalg.eigvalsh(H)[-1])  # Lemma 2: the curvature scale is square-rooted
    alpha = a_frac * edge2
    P = _sym(rng, -alpha + np.array(fracs[:n]) * edge2)
    assume(s.lemma2_holds(H, alpha, P))
    A2 = s.lemma2_dynamics_matrix(H, alpha, P)
    assert s.spectral_radius(A2) <= 1 + ROUND
    # Erratum E9: the proof is the similarity A' ~ I - (alpha I + P) H^{1/2}.
    w, V = np.linalg.eigh(H)
    ref = np.eye(n) - (alpha * np.eye(n) + P) @ ((V * np.sqrt(w)) @ V.T)
    np.testing.assert_allclose(np.sort_complex(np.linalg.eigvals(A2)), np.sort_complex(np.linalg.eigvals(ref)),
                               atol=1e-8 * max(1.0, np.abs(ref).max()))


@PROPERTY
@given(curvature(), st.floats(0.01, 1.0), st.lists(st.floats(1.0, 5.0), min_size=4, max_size=4),
       st.lists(st.floats(0.0, 1.0), min_size=4, max_size=4), st.integers(0, 2**32 - 1))
def test_lemma3_robust_bounds_imply_stability_for_every_delta(Hr, a_frac, dbar, fracs, seed):
    H, _ = Hr
    n, edge = H.shape[0], _edge(H)
    alpha = a_frac * edge
    d_bar = np.array(dbar[:n])
    dmax = d_bar.max()
    # Diagonal P_tilde (E11) with entries in [-alpha/dmax, (edge - alpha)/dmax]: (16)-(17) hold.
    P_tilde = np.diag((-alpha + np.array(fracs[:n]) * edge) / dmax)
    assume(s.robust_bounds_hold(H, alpha, P_tilde, d_bar))
    assert s.max_robust_gain(H, alpha, P_tilde) >= dmax * (1 - 1e-12)
    rng = np.random.default_rng(seed)
    for _ in range(5):  # random errors 0 < d_i <= d_bar_i, including the extreme d = d_bar
        d = d_bar * rng.uniform(1e-3, 1.0, size=n)
        for Delta in (np.diag(d), np.diag(d_bar)):
            assert s.spectral_radius(_A(H, alpha, Delta @ P_tilde)) <= 1 + ROUND


@PROPERTY
@given(st.integers(2, 3), st.integers(0, 2**32 - 1), st.floats(0.05, 1.5), st.sampled_from([1, 40]))
def test_lemma4_noise_free_loss_is_a_lower_bound(n, seed, a_frac, T):
    rng = np.random.default_rng(seed)
    lam = 10.0 ** rng.uniform(-1, 0.5, size=n)
    H = _sym(rng, lam)
    Sx = _sym(rng, rng.uniform(0.0, 2.0, size=n))  # PSD noise covariance (possibly near-singular)
    S0 = _sym(rng, rng.uniform(0.0, 5.0, size=n))
    nqm = q.make_nqm(H, Sx, phi0=rng.normal(size=n), S0=S0)
    alpha = a_frac * _edge(H)  # includes unstable alphas (a_frac > 1)
    P = _sym(rng, rng.uniform(-0.3, 0.3, size=n) * _edge(H))
    assert s.lemma4_holds(nqm, alpha, P, T)
    # Sharper: the gap (corrected (A.2)) is at least the noise floor tr(H Sigma_xi)/2, because Sigma_t >= 0.
    assert s.lemma4_gap(nqm, alpha, P, T) >= 0.5 * np.trace(H @ Sx) * (1 - 1e-9) - 1e-12
    # Lemma 5 (quantitative): stable dynamics have a finite bound on L for this T and uniformly in T.
    A = np.eye(n) - (alpha * np.eye(n) + P) @ H
    if s.spectral_radius(A) < 1:
        with q.float64():
            L = float(q.expected_loss(nqm, alpha, P, T))
        assert L <= s.lemma5_bound(nqm, alpha, P, T) * (1 + 1e-9)
        assert s.lemma5_bound(nqm, alpha, P, T) <= s.lemma5_bound(nqm, alpha, P) * (1 + 1e-9) < np.inf


@PROPERTY
@given(curvature(), st.floats(0.01, 1.5), st.lists(st.floats(0.01, 1.0), min_size=4, max_size=4))
def test_kappa_bound_on_matrix_powers(Hr, a_frac, fracs):
    H, rng = Hr
    n, edge = H.shape[0], _edge(H)
    alpha = a_frac * edge
    P = _sym(rng, -alpha + np.array(fracs[:n]) * edge)  # strict (9): alpha I + P > 0
    A = np.eye(n) - (alpha * np.eye(n) + P) @ H
    kv, ks, rho = s.eigenvector_condition_number(A), s.symmetric_kappa(alpha, P), s.spectral_radius(A)
    assume(np.isfinite(kv))
    Ak = np.eye(n)
    for k in range(31):
        norm = np.linalg.norm(Ak, 2)
        assert norm <= s.power_norm_bound(A, k) * (1 + 1e-8) + 1e-300
        assert norm <= ks * rho ** k * (1 + 1e-8) + 1e-300
        assert s.power_norm_bound(A, k) == pytest.approx(kv * rho ** k)
        Ak = A @ Ak


@PROPERTY
@given(curvature(n_max=3), st.floats(0.01, 3.0), st.floats(0.0, 0.95), st.sampled_from(["heavy_ball", "nesterov"]),
       st.lists(st.floats(-0.5, 0.5), min_size=3, max_size=3))
def test_momentum_criterion_iff_companion_spectral_radius_below_one(Hr, a_frac, beta, optimizer, fracs):
    H, rng = Hr
    n, edge = H.shape[0], _edge(H)
    alpha = a_frac * edge
    P = _sym(rng, np.array(fracs[:n]) * edge)
    rho = s.momentum_spectral_radius(H, alpha, P, momentum=beta, optimizer=optimizer)
    assume(abs(rho - 1) > 1e-6)
    assert s.momentum_stability_criterion(H, alpha, P, momentum=beta, optimizer=optimizer) == (rho < 1)
    if s.momentum_theorem1_holds(H, alpha, P, momentum=beta, optimizer=optimizer):  # sufficient only
        assert rho < 1


@PROPERTY
@given(curvature(n_max=3), st.floats(0.01, 1.2), st.floats(1.0, 4.0),
       st.lists(st.floats(-1.0, 1.0), min_size=3, max_size=3), st.integers(0, 2**32 - 1))
def test_robust_exact_criterion_is_exact_on_the_box_and_weaker_than_16_17(Hr, a_frac, dbar, fracs, seed):
    H, _ = Hr
    n, edge = H.shape[0], _edge(H)
    alpha = a_frac * edge
    P_tilde = np.diag(np.array(fracs[:n]) * edge)
    robust = s.robust_exact_criterion(H, alpha, P_tilde, dbar)
    if s.robust_bounds_hold(H, alpha, P_tilde, dbar, strict=True):
        assert robust  # (16)-(17) are sufficient, so they can only be more conservative
    rng = np.random.default_rng(seed)
    rhos = [s.spectral_radius(_A(H, alpha, np.diag(dbar * rng.uniform(1e-6, 1.0, size=n)) @ P_tilde))
            for _ in range(20)]
    if robust:
        assert max(rhos) < 1 + ROUND  # every error in the box is stable
    else:  # some vertex of the box (or its d_i -> 0 limit) is not strictly stable
        vertices = [np.where([(b >> i) & 1 for i in range(n)], dbar, 0.0) for b in range(2 ** n)]
        assert min(min(s.exact_stability_margins(H, alpha, np.diag(v) @ P_tilde)) for v in vertices) <= 0


def test_region_masks_agree_with_the_pointwise_functions_and_nest():
    H, alphas, ps = q.PAPER_H, np.linspace(0.01, 1.6, 9), np.linspace(-1.5, 2.5, 7)
    for D in (np.array([1.0, 1.0]), np.array([1.0, 0.0]), np.array([0.5, -1.0])):
        m = s.region_masks(H, alphas, ps, D, d_bars=(2.0,))
        for i, p in enumerate(ps):
            for j, a in enumerate(alphas):
                P = np.diag(p * D)
                assert m["exact"][i, j] == s.exact_stability_criterion(H, a, P)
                assert m["theorem1"][i, j] == s.theorem1_holds(H, a, P, strict=True)
                assert m[("robust_bound", 2.0)][i, j] == s.robust_bounds_hold(H, a, P, 2.0, strict=True)
                assert m[("robust_exact", 2.0)][i, j] == s.robust_exact_criterion(H, a, P, 2.0)
        # sufficient regions lie inside the exact ones
        assert not np.any(m["theorem1"] & ~m["exact"])
        assert not np.any(m[("robust_bound", 2.0)] & ~m[("robust_exact", 2.0)])
        assert not np.any(m[("robust_exact", 2.0)] & ~m["exact"])
    # For isotropic P = pI, P commutes with H and Theorem 1 is exact.
    m = s.region_masks(H, np.linspace(0.01, 1.6, 40), np.linspace(-1.5, 2.5, 40), np.ones(2))
    np.testing.assert_array_equal(m["theorem1"], m["exact"])


def test_momentum_spectral_radius_grid_matches_closed_form_region():
    alphas, betas = np.linspace(0.02, 3.0, 40), np.array([0.0, 0.3, 0.6, 0.9])
    lmax = np.linalg.eigvalsh(q.PAPER_H)[-1]
    for optimizer in ("heavy_ball", "nesterov"):
        rho = s.momentum_spectral_radius_grid(q.PAPER_H, alphas, betas, optimizer=optimizer)
        for i, b in enumerate(betas):
            upper = s.momentum_step_interval(b, optimizer)[1] / lmax  # alpha edge for P = 0
            far = np.abs(alphas - upper) > 1e-3
            np.testing.assert_array_equal((rho[i] < 1)[far], (alphas < upper)[far])
            assert rho[i, 0] == pytest.approx(s.momentum_spectral_radius(q.PAPER_H, alphas[0], momentum=b,
                                                                         optimizer=optimizer), rel=1e-12)


# ------------------------------------------------------------------------------------ scalar momentum
def test_scalar_momentum_region_closed_form_matches_roots():
    for optimizer in ("heavy_ball", "nesterov"):
        for beta in (0.0, 0.3, 0.9):
            a = np.linspace(-1.0, 5.0, 601)
            lo, hi = s.momentum_step_interval(beta, optimizer)
            closed = s.scalar_momentum_stable(a, beta, optimizer)
            np.testing.assert_array_equal(closed, (a > lo) & (a < hi))
            for ai, ok in zip(a, closed):  # against the roots of the characteristic polynomial
                c1, c0 = ((-(1 + beta - ai), beta) if optimizer == "heavy_ball"
                          else (-(1 + beta) * (1 - ai), beta * (1 - ai)))
                rho = np.max(np.abs(np.roots([1.0, c1, c0])))
                if abs(rho - 1) > 1e-9:
                    assert ok == (rho < 1), (optimizer, beta, ai, rho)
            # ... and the polynomial is that of the 1x1 NQM's companion matrix (spot checks).
            for ai in (0.5, hi - 0.1, hi + 0.1):
                A2 = s.momentum_matrix(np.eye(1), ai, momentum=beta, optimizer=optimizer)
                assert (s.spectral_radius(A2) < 1) == bool(s.scalar_momentum_stable(ai, beta, optimizer))
    # Momentum widens the heavy-ball edge (2 -> 2(1 + beta)); Nesterov's shrinks (2 -> 2(1+b)/(1+2b)).
    assert s.momentum_step_interval(0.9)[1] == pytest.approx(3.8)
    assert s.momentum_step_interval(0.9, "nesterov")[1] == pytest.approx(3.8 / 2.8)


def test_momentum_region_matches_simulated_divergence():
    # Deterministic runs of the optimizer itself (not the companion matrix) on the paper's H, from phi0=(1,1).
    nqm = q.make_nqm(q.PAPER_H, np.zeros((2, 2)), phi0=np.ones(2))
    lmax = np.linalg.eigvalsh(q.PAPER_H)[-1]
    checked = 0
    for optimizer in ("heavy_ball", "nesterov"):
        for beta in (0.0, 0.5, 0.9):
            for a in np.linspace(0.1, 4.5, 12):
                alpha = a / lmax
                rho = s.momentum_spectral_radius(q.PAPER_H, alpha, momentum=beta, optimizer=optimizer)
                if abs(rho - 1) < 0.02:
                    continue  # too close to the edge to classify in 1000 steps
                predicted = s.momentum_stability_criterion(q.PAPER_H, alpha, momentum=beta, optimizer=optimizer)
                with q.float64():
                    losses = np.asarray(q.simulate_losses(jax.random.key(0), nqm, alpha, None, 1000, 1,
                                                          optimizer=optimizer, momentum=beta))[0]
                l0 = 0.5 * np.ones(2) @ q.PAPER_H @ np.ones(2)
                if predicted:
                    assert losses[-1] < 1e-6 * l0, (optimizer, beta, alpha)
                else:
                    assert not np.isfinite(losses[-1]) or losses[-1] > 1e6 * l0, (optimizer, beta, alpha)
                checked += 1
    assert checked >= 50


# ------------------------------------------------------------------------------ errata counterexamples
def _sigma_trace_gap(nqm, alpha, P, T):
    """(1/T) sum_t 1/2 tr(H (Sigma_t + Sigma_xi)) by the explicit recursion (A.10), numpy float64."""
    H, Sx = np.asarray(nqm.H), np.asarray(nqm.sigma_xi)
    A = np.eye(2) - (alpha * np.eye(2) + (0 if P is None else P)) @ H
    B = np.eye(2) - A
    Sig, total = np.zeros((2, 2)), 0.0
    for _ in range(T):
        Sig = A @ Sig @ A.T + B @ Sx @ B.T
        total += 0.5 * np.trace(H @ (Sig + Sx))
    return total / T


def test_erratum_E1_direction_of_A2():
    nqm = q.paper_nqm()
    for alpha in (0.2, 0.8, 1.3):
        with q.float64():
            L, Lbar = float(q.expected_loss(nqm, alpha, None, 50)), float(q.noise_free_loss(nqm, alpha, None, 50))
        gap = _sigma_trace_gap(nqm, alpha, None, 50)
        assert gap > 0
        assert L == pytest.approx(Lbar + gap, rel=1e-10)  # corrected identity: L = Lbar + gap
        assert Lbar != pytest.approx(L + gap, rel=1e-3)  # (A.2) as printed is false ...
        assert Lbar < L  # ... and would give the opposite inequality of (A.1)


def test_erratum_E2_transient_growth_while_stable():
    H, alpha, P = q.PAPER_H, 0.05, np.diag([1.2, 0.0])
    assert s.theorem1_holds(H, alpha, P)
    A = np.eye(2) - (alpha * np.eye(2) + P) @ H
    rho, norm = s.spectral_radius(A), np.linalg.norm(A, 2)
    assert rho == pytest.approx(0.9918, abs=1e-4) and rho < 1
    assert norm == pytest.approx(1.247, abs=1e-3) and norm > 1  # ||A||_2 > 1 > rho(A): A is non-normal
    powers = [np.linalg.matrix_power(A, k) for k in range(400)]
    lhs = sum(np.linalg.norm(Ak, 2) ** 2 for Ak in powers)
    rhs = sum(rho ** (2 * k) for k in range(400))
    assert lhs == pytest.approx(77.2, abs=0.1) and rhs == pytest.approx(61.1, abs=0.1)  # (A.14) fails
    # The repair: ||A^k|| <= kappa(V) rho^k, so the sum is at most kappa^2 / (1 - rho^2).
    kappa = s.eigenvector_condition_number(A)
    assert lhs <= kappa ** 2 / (1 - rho ** 2)


def test_erratum_E4_time_average_loss_is_not_monotone():
    with q.float64():
        steps = np.asarray(q.expected_losses(q.paper_nqm(), 0.8, None, 100))
    L = np.cumsum(steps) / np.arange(1, 101)
    Ts = np.array([1, 2, 3, 5, 10, 20, 50, 100])
    assert np.all(np.diff(L[Ts - 1]) < 0)  # L(T) decreases: "L(T) <= L(T+1)" is false
    assert np.all(np.diff(np.cumsum(steps)) > 0)  # the unnormalized sum T * L(T) does increase


def test_erratum_E7_nonstrict_theorem1_is_only_marginal():
    H = q.PAPER_H
    edge = _edge(H)
    assert s.theorem1_holds(H, edge, None)  # (10) with equality
    assert s.spectral_radius(q.dynamics_matrix(H, edge, None)) == pytest.approx(1.0, abs=1e-6)
    assert not s.exact_stability_criterion(H, edge, None)
    assert not s.theorem1_holds(H, edge, None, strict=True)


def test_erratum_E10_nonpositive_P_tilde_still_needs_alpha_below_edge():
    H = q.PAPER_H
    alpha, P_tilde = 1.5, np.diag([-0.05, -0.05])  # lambda_max(P_tilde) <= 0, "immediately satisfied"?
    assert not s.robust_bounds_hold(H, alpha, P_tilde, 2.0)
    # Indeed a small error d makes the system unstable: alpha I + d P_tilde -> alpha I, beyond 2/lambda_max.
    assert s.spectral_radius(q.dynamics_matrix(H, alpha, 0.1 * P_tilde)) > 1


def test_cancellation_example_epsilon_alpha_H_term():
    H, alpha, eps = q.PAPER_H, 0.5, 0.2
    Q = np.diag([0.0, 0.3])
    A = s.cancellation_dynamics_matrix(H, alpha, Q, eps)
    np.testing.assert_allclose(A, q.dynamics_matrix(H, alpha, (1 + eps) * (Q - alpha * np.eye(2))), atol=1e-6)
    # With Q small in some direction, the +eps*alpha*H term pushes an eigenvalue above 1 ...
    assert s.spectral_radius(A) > 1
    # ... while the nominal alpha alone (no cancellation) is stable, and eps < 0 is stable here too.
    assert s.spectral_radius(q.dynamics_matrix(H, alpha, None)) < 1
    assert s.spectral_radius(s.cancellation_dynamics_matrix(H, alpha, Q + 0.5 * np.eye(2), -0.2)) < 1


# -------------------------------------------------------------------------------------------- bad input
H2 = q.PAPER_H
BAD = [
    (lambda: s.theorem1_holds(np.array([[1.0, 0.2], [0.0, 1.0]]), 0.1), "H must be symmetric"),
    (lambda: s.theorem1_holds(-np.eye(2), 0.1), "H must be positive definite"),
    (lambda: s.theorem1_holds(H2, 0.1, np.array([[0.0, 1.0], [0.0, 0.0]])), "P must be symmetric"),
    (lambda: s.theorem1_holds(H2, 0.1, np.eye(3)), r"P must have shape \(2, 2\)"),
    (lambda: s.theorem1_holds(H2, 0.0), "alpha must be > 0"),
    (lambda: s.theorem1_holds(H2, np.nan), "alpha must be finite"),
    (lambda: s.exact_stability_criterion(H2, np.inf), "alpha must be finite"),
    (lambda: s.spectral_radius(np.ones(3)), "A must be a square"),
    (lambda: s.robust_bounds_hold(H2, 0.1, np.diag([0.1, 0.2]), 0.0), "d_bar must be > 0"),
    (lambda: s.robust_bounds_hold(H2, 0.1, np.diag([0.1, 0.2]), np.ones(3)), r"d_bar must have shape \(2,\)"),
    (lambda: s.robust_bounds_hold(H2, 0.1, np.array([[0.1, 0.1], [0.1, 0.2]]), 2.0), "P_tilde must be diagonal"),
    (lambda: s.lemma5_bound(q.paper_nqm(), 0.5, None, 0), "T must be an integer >= 1"),
    (lambda: s.lemma4_holds(q.paper_nqm(), 0.5, None, 1.5), "T must be an integer >= 1"),
    (lambda: s.power_norm_bound(np.eye(2), -1), "k must be an integer >= 0"),
    (lambda: s.symmetric_kappa(0.1, -np.eye(2)), "positive definite"),
    (lambda: s.cancellation_dynamics_matrix(H2, 0.5, np.zeros((2, 2)), -1.0), "eps must be >"),
    (lambda: s.momentum_stability_criterion(H2, 0.5, momentum=1.0), "momentum must be <"),
    (lambda: s.momentum_stability_criterion(H2, 0.5, momentum=0.5, optimizer="sgd"), "optimizer must be one of"),
    (lambda: s.scalar_momentum_stable(np.nan, 0.5), "a must be finite"),
    (lambda: s.robust_exact_criterion(H2, 0.1, np.diag([0.1, 0.2]), -1.0), "d_bar must be > 0"),
    (lambda: s.region_masks(H2, [0.0, 0.1], [0.1], np.ones(2)), "alphas must be > 0"),
    (lambda: s.region_masks(H2, [0.1], [0.1], np.ones(3)), r"direction must have shape \(2,\)"),
    (lambda: s.region_masks(H2, [0.1], [0.1], np.ones(2), d_bars=(0.0,)), "d_bars must be finite and > 0"),
    (lambda: s.momentum_spectral_radius_grid(H2, [0.1], [1.0]), "betas must be"),
]


@pytest.mark.parametrize("call,match", BAD, ids=[m for _, m in BAD])
def test_bad_input_raises_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_errata_table_every_computable_item_is_confirmed():
    from star.errata import errata

    rows = errata()
    assert [r.id for r in rows] == [f"E{i}" for i in range(1, 13)]
    for r in rows:
        if r.id in ("E6", "E12"):
            assert r.confirmed is None  # notation only
        else:
            assert r.confirmed is True, (r.id, r.evidence)
