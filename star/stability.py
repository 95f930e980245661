r"""Stability of the NQM dynamics: the paper's bounds (§4, App. A.1–A.3) as checkable functions.

Notation as in :mod:`star.nqm`: :math:`M=\alpha I+P`, :math:`A=I-MH` (Eq. 6), :math:`H\succ0`.
All functions work in float64 numpy and return Python ``bool``/``float``; they validate their inputs
(``ValueError`` naming the argument). ``P`` must be symmetric wherever the paper speaks of its eigenvalues.

Paper results
-------------
* :func:`spectral_radius` — :math:`\rho(A)`; the system is stable iff :math:`\rho(A)<1`.
* :func:`exact_stability_criterion` — for symmetric P: :math:`\rho(A)<1\iff 0\prec\alpha I+P\prec2H^{-1}`
  (Proposition A of the proofs chapter: :math:`MH` is similar to :math:`H^{1/2}MH^{1/2}`).
* :func:`theorem1_conditions` / :func:`theorem1_holds` — Theorem 1, conditions (9)
  :math:`-\alpha\le\lambda_{\min}(P)` and (10) :math:`\alpha+\lambda_{\max}(P)\le2/\lambda_{\max}(H)`, which
  give :math:`\rho(A)\le1` (strict inequalities give :math:`\rho(A)<1`; erratum E7).
* :func:`lemma2_dynamics_matrix` / :func:`lemma2_holds` — Lemma 2: with the Hessian preconditioner
  :math:`H^{-1/2}`, the dynamics :math:`I-H^{-1/2}MH` are stable under (9) and
  :math:`\alpha+\lambda_{\max}(P)\le2/\sqrt{\lambda_{\max}(H)}`.
* :func:`robust_bounds_hold` (= Lemma 3, bounds (16)–(17)) and :func:`max_robust_gain` — robustness to a
  diagonal multiplicative error :math:`P=\Delta\tilde P`, :math:`0<d_i\le\bar d_i`, for diagonal
  :math:`\tilde P` (erratum E11), with the :math:`\lambda_{\max}(\tilde P)\le0` case repaired (E10).
* :func:`robust_exact_criterion` — the exact robust region for the same error model (vertex check of a
  convex LMI set), against which (16)–(17) are conservative; :func:`region_masks` tabulates all regions.
* :func:`cancellation_dynamics_matrix` — the "cancellation" example (§A.3; the proofs chapter):
  :math:`\tilde P=-\alpha I+Q`, :math:`\Delta=(1+\varepsilon)I` gives :math:`A=I+\varepsilon\alpha H-(1+\varepsilon)QH`.
* :func:`lemma4_gap` / :func:`lemma4_holds` — Lemma 4, :math:`\bar L\le L`, with the corrected identity
  :math:`L-\bar L=\frac1T\sum_t\tfrac12\operatorname{tr}(H(\Sigma_t+\Sigma_\xi))\ge0` (erratum E1).
* :func:`lemma5_bound` — Lemma 5 made quantitative: a finite bound on :math:`L(\theta;T)` for every T when
  :math:`\rho(A)<1`, via :func:`eigenvector_condition_number` and
  :math:`\|A^k\|_2\le\kappa(V)\rho(A)^k` (:func:`power_norm_bound`), which repairs (A.14) (errata E2, E3);
  :func:`symmetric_kappa` gives :math:`\kappa(V)=\sqrt{\kappa(\alpha I+P)}` under strict (9).

Beyond the paper: momentum (§A.4 leaves it as future work)
----------------------------------------------------------
Heavy ball and Nesterov on the NQM are linear systems in :math:`(\phi_t,\phi_{t-1})` with the 2N×2N
companion matrix of :func:`star.nqm.augmented_system`. For symmetric P the eigenvalues :math:`a_i` of
:math:`MH` are real, the companion matrix decouples into N 2×2 blocks with characteristic polynomials
:math:`z^2-(1+\beta-a)z+\beta` (heavy ball) and :math:`z^2-(1+\beta)(1-a)z+\beta(1-a)` (Nesterov), and the
Schur–Cohn–Jury test (:math:`|c_0|<1`, :math:`|c_1|<1+c_0` for :math:`z^2+c_1z+c_0`) gives the scalar regions
(:func:`scalar_momentum_stable`), for :math:`0\le\beta<1`:

* heavy ball: :math:`0<a<2(1+\beta)`;
* Nesterov: :math:`0<a<2(1+\beta)/(1+2\beta)` (:func:`momentum_step_interval`).

:func:`momentum_stability_criterion` applies this to every :math:`a_i=\lambda_i(MH)`, and
:func:`momentum_theorem1_holds` is the resulting analogue of Theorem 1 (budget :math:`c_\beta/\lambda_{\max}(H)`);
:func:`momentum_spectral_radius` (and :func:`momentum_spectral_radius_grid`) is the direct eigenvalue
computation it is tested against.
"""

from __future__ import annotations

import numpy as np

from star import _checks
from star import nqm as _nqm

__all__ = [
    "spectral_radius", "curvature_step_eigenvalues", "exact_stability_margins", "exact_stability_criterion",
    "theorem1_conditions",
    "theorem1_holds", "lemma2_dynamics_matrix", "lemma2_holds", "robust_bounds_hold", "max_robust_gain",
    "cancellation_dynamics_matrix", "lemma4_gap", "lemma4_holds", "eigenvector_condition_number",
    "power_norm_bound", "symmetric_kappa", "lemma5_bound", "momentum_matrix", "momentum_spectral_radius",
    "scalar_momentum_stable", "momentum_step_interval", "momentum_stability_criterion",
    "robust_exact_criterion", "region_masks", "momentum_spectral_radius_grid", "momentum_theorem1_holds",
]


def _f(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def _H(H) -> np.ndarray:
    _checks.spd_matrix("H", H)
    return _f(H)


def _alpha(alpha, positive=True) -> float:
    _checks.finite_scalar("alpha", alpha, low=0.0 if positive else None, low_open=positive)
    return float(alpha)


def _sym_P(P, n, name="P") -> np.ndarray:
    if P is None:
        return np.zeros((n, n))
    _checks.symmetric_matrix(name, P, n)
    P = _f(P)
    return 0.5 * (P + P.T)


def _sqrt_spd(H):
    w, V = np.linalg.eigh(H)
    return (V * np.sqrt(w)) @ V.T, (V / np.sqrt(w)) @ V.T


def spectral_radius(A) -> float:
    r""":math:`\rho(A)=\max_i|\lambda_i(A)|` of a real square matrix."""
    _checks.square_matrix("A", A)
    return float(np.max(np.abs(np.linalg.eigvals(_f(A)))))


def curvature_step_eigenvalues(H, alpha, P=None) -> np.ndarray:
    r"""The eigenvalues of :math:`MH=(\alpha I+P)H` for symmetric P, sorted: they are real, being those of
    the symmetric :math:`H^{1/2}MH^{1/2}` (similar to :math:`MH`). :math:`\lambda_i(A)=1-` these."""
    H = _H(H)
    n = H.shape[0]
    alpha = _alpha(alpha, positive=False)
    P = _sym_P(P, n)
    R, _ = _sqrt_spd(H)
    return np.linalg.eigvalsh(R @ (alpha * np.eye(n) + P) @ R)


def exact_stability_margins(H, alpha, P=None):
    r"""The two margins of the exact criterion for symmetric P: with
    :math:`S=H^{1/2}(\alpha I+P)H^{1/2}`, returns :math:`(\lambda_{\min}(S),\,2-\lambda_{\max}(S))`.

    Both positive :math:`\iff\rho(A)<1` (the eigenvalues of :math:`MH` are those of :math:`S`, real).
    """
    lam = curvature_step_eigenvalues(H, alpha, P)
    return float(lam[0]), float(2.0 - lam[-1])


def exact_stability_criterion(H, alpha, P=None) -> bool:
    r"""Exact stability for symmetric P: :math:`0\prec\alpha I+P\prec2H^{-1}\iff\rho(A)<1`
    (proofs chapter, Proposition A)."""
    lo, hi = exact_stability_margins(H, alpha, P)
    return lo > 0 and hi > 0


def theorem1_conditions(H, alpha, P=None, *, strict: bool = False):
    r"""Theorem 1's conditions as a pair of bools:
    (9) :math:`-\alpha\le\lambda_{\min}(P)` and (10) :math:`\alpha+\lambda_{\max}(P)\le2/\lambda_{\max}(H)`.

    ``strict=True`` uses strict inequalities, which give :math:`\rho(A)<1` (the paper's non-strict
    version gives only marginal stability, :math:`\rho(A)\le1`; erratum E7). Requires α > 0 and symmetric P.
    """
    H = _H(H)
    n = H.shape[0]
    alpha = _alpha(alpha)
    lam_P = np.linalg.eigvalsh(_sym_P(P, n))
    edge = 2.0 / np.linalg.eigvalsh(H)[-1]
    if strict:
        return bool(-alpha < lam_P[0]), bool(alpha + lam_P[-1] < edge)
    return bool(-alpha <= lam_P[0]), bool(alpha + lam_P[-1] <= edge)


def theorem1_holds(H, alpha, P=None, *, strict: bool = False) -> bool:
    """True when both Theorem 1 conditions (9) and (10) hold (see :func:`theorem1_conditions`)."""
    c9, c10 = theorem1_conditions(H, alpha, P, strict=strict)
    return c9 and c10


def lemma2_dynamics_matrix(H, alpha, P=None) -> np.ndarray:
    r"""Lemma 2's dynamics with the Hessian preconditioner, Eq. (A.19): :math:`A'=I-H^{-1/2}(\alpha I+P)H`.

    :math:`A'` is similar to :math:`I-(\alpha I+P)H^{1/2}` (conjugate by :math:`H^{1/2}`), i.e. the NQM with
    curvature :math:`H^{1/2}` (erratum E9: that similarity, not (A.16) on a non-symmetric factor, is the proof).
    """
    H = _H(H)
    n = H.shape[0]
    alpha = _alpha(alpha, positive=False)
    _checks.square_matrix("P", np.zeros((n, n)) if P is None else P, n)
    P = np.zeros((n, n)) if P is None else _f(P)
    _, Rinv = _sqrt_spd(H)
    return np.eye(n) - Rinv @ (alpha * np.eye(n) + P) @ H


def lemma2_holds(H, alpha, P=None, *, strict: bool = False) -> bool:
    r"""Lemma 2's conditions: :math:`-\alpha\le\lambda_{\min}(P)` and
    :math:`\alpha+\lambda_{\max}(P)\le2/\sqrt{\lambda_{\max}(H)}` (they imply :math:`\rho(A')\le1`)."""
    H = _H(H)
    w, V = np.linalg.eigh(H)
    return theorem1_holds((V * np.sqrt(w)) @ V.T, alpha, P, strict=strict)


def _d_bar(d_bar, n) -> np.ndarray:
    d = _f(d_bar)
    if d.ndim == 0:
        d = np.full(n, float(d))
    _checks.vector("d_bar", d, n)
    if np.any(d <= 0):
        raise ValueError(f"d_bar must be > 0 (upper bounds of the multiplicative error); got {d}")
    return d


def _diag_P_tilde(P_tilde, n) -> np.ndarray:
    P = _sym_P(P_tilde, n, "P_tilde")
    off = P - np.diag(np.diag(P))
    if np.max(np.abs(off)) > 1e-12 * max(1.0, np.max(np.abs(P))):
        raise ValueError("P_tilde must be diagonal: Lemma 3 assumes Delta and P_tilde simultaneously "
                         "diagonalizable, which for a diagonal Delta with distinct entries forces a diagonal "
                         f"P_tilde (erratum E11); got off-diagonal entries up to {np.max(np.abs(off)):.3g}")
    return P


def robust_bounds_hold(H, alpha, P_tilde, d_bar, *, strict: bool = False) -> bool:
    r"""Lemma 3, bounds (16)–(17): every :math:`\Delta=\operatorname{diag}(d)`, :math:`0<d_i\le\bar d_i`, keeps
    :math:`\alpha I+\Delta\tilde P` within Theorem 1 when

    (16) :math:`-\alpha\le\bar d\,\min(\lambda_{\min}(\tilde P),0)` and
    (17) :math:`\alpha+\bar d\,\max(\lambda_{\max}(\tilde P),0)\le2/\lambda_{\max}(H)`, with
    :math:`\bar d=\max_i\bar d_i`.

    The ``min(·, 0)``/``max(·, 0)`` encode the "only binding if" cases, and keep (17) as
    :math:`\alpha\le2/\lambda_{\max}(H)` when :math:`\lambda_{\max}(\tilde P)\le0` (erratum E10).
    ``P_tilde`` must be diagonal (E11); ``d_bar`` is a positive scalar or an (N,) vector.
    """
    H = _H(H)
    n = H.shape[0]
    alpha = _alpha(alpha)
    lam = np.diag(_diag_P_tilde(P_tilde, n))
    dmax = float(np.max(_d_bar(d_bar, n)))
    edge = 2.0 / np.linalg.eigvalsh(H)[-1]
    lo = dmax * min(float(lam.min()), 0.0)
    hi = dmax * max(float(lam.max()), 0.0)
    if strict:
        return bool(-alpha < lo and alpha + hi < edge)
    return bool(-alpha <= lo and alpha + hi <= edge)


def max_robust_gain(H, alpha, P_tilde) -> float:
    r"""The largest :math:`\bar d` for which (16)–(17) hold: :math:`\min(\alpha/|\lambda_{\min}(\tilde P)|,\,
    (2/\lambda_{\max}(H)-\alpha)/\lambda_{\max}(\tilde P))` over the binding cases (``inf`` if none binds,
    0 if α already violates :math:`\alpha\le2/\lambda_{\max}(H)`)."""
    H = _H(H)
    n = H.shape[0]
    alpha = _alpha(alpha)
    lam = np.diag(_diag_P_tilde(P_tilde, n))
    edge = 2.0 / np.linalg.eigvalsh(H)[-1]
    if alpha > edge:
        return 0.0
    gain = np.inf
    if lam.min() < 0:
        gain = min(gain, alpha / -lam.min())
    if lam.max() > 0:
        gain = min(gain, (edge - alpha) / lam.max())
    return float(gain)


def robust_exact_criterion(H, alpha, P_tilde, d_bar) -> bool:
    r"""Exact robust stability for the error model of Lemma 3: :math:`\rho(I-(\alpha I+\Delta\tilde P)H)<1` for
    every :math:`\Delta=\operatorname{diag}(d)` with :math:`d` in the box :math:`\prod_i[0,\bar d_i]`.

    For diagonal :math:`\tilde P`, :math:`M(d)=\alpha I+\Delta\tilde P` is affine in :math:`d` and the exact
    criterion :math:`0\prec M\prec2H^{-1}` is a pair of LMIs, whose solution set is convex; so the whole box is
    stable iff its :math:`2^N` vertices are (:math:`d_i\in\{0,\bar d_i\}`, the closure of :math:`0<d_i`).
    Compare with the sufficient bounds (16)-(17) of :func:`robust_bounds_hold`.
    """
    H = _H(H)
    n = H.shape[0]
    alpha = _alpha(alpha)
    lam = np.diag(_diag_P_tilde(P_tilde, n))
    d_bar = _d_bar(d_bar, n)
    if n > 16:
        raise ValueError(f"H must be at most 16x16 for the 2^N vertex enumeration; got N = {n}")
    for bits in range(2 ** n):
        d = np.where([(bits >> i) & 1 for i in range(n)], d_bar, 0.0)
        if not exact_stability_criterion(H, alpha, np.diag(d * lam)):
            return False
    return True


def region_masks(H, alphas, p_values, direction, d_bars=()):
    r"""Stability regions in the (α, p) plane for :math:`P=p\,D` with a fixed diagonal ``direction`` D.

    Returns a dict of boolean arrays of shape ``(len(p_values), len(alphas))``: ``"theorem1"`` (strict (9)-(10)),
    ``"exact"`` (:func:`exact_stability_criterion`), and for each d̄ in ``d_bars``: ``("robust_bound", d̄)``
    (bounds (16)-(17) with :math:`\tilde P=pD`) and ``("robust_exact", d̄)`` (:func:`robust_exact_criterion`).
    """
    H = _H(H)
    n = H.shape[0]
    D = _f(direction)
    _checks.vector("direction", D, n)
    alphas, p_values = _f(alphas), _f(p_values)
    if alphas.ndim != 1 or p_values.ndim != 1 or not (np.all(np.isfinite(alphas)) and np.all(np.isfinite(p_values))):
        raise ValueError("alphas and p_values must be 1-D arrays of finite values")
    if np.any(alphas <= 0):
        raise ValueError(f"alphas must be > 0; got min {alphas.min()}")
    R, _ = _sqrt_spd(H)
    edge = 2.0 / np.linalg.eigvalsh(H)[-1]
    a, p = alphas[None, :], p_values[:, None]

    def exact(scale):  # batched exact criterion for M = alpha I + diag(scale * p * D), vectorized over the grid
        M = a[..., None, None] * np.eye(n) + (p[..., None] * scale * D)[..., None, :] * np.eye(n)
        lam = np.linalg.eigvalsh(R @ M @ R)
        return (lam[..., 0] > 0) & (lam[..., -1] < 2)

    lo, hi = np.minimum(p * D.min(), p * D.max()), np.maximum(p * D.min(), p * D.max())
    out = {"theorem1": (-a < lo) & (a + hi < edge), "exact": exact(np.ones(n))}
    for d in d_bars:
        if not (np.isfinite(d) and d > 0):
            raise ValueError(f"d_bars must be finite and > 0; got {d}")
        out[("robust_bound", d)] = (-a < d * np.minimum(lo, 0)) & (a + d * np.maximum(hi, 0) < edge)
        ok = np.ones(np.broadcast_shapes(a.shape, p.shape), bool)
        for bits in range(2 ** n):  # vertices of the box of errors (see robust_exact_criterion)
            ok &= exact(np.array([d if (bits >> i) & 1 else 0.0 for i in range(n)]))
        out[("robust_exact", d)] = ok
    return out


def cancellation_dynamics_matrix(H, alpha, Q, eps) -> np.ndarray:
    r"""The cancellation example (the proofs chapter, the :math:`\varepsilon\alpha H` term of §A.3): the learned
    term cancels the nominal step, :math:`\tilde P=-\alpha I+Q`, and suffers :math:`\Delta=(1+\varepsilon)I`:

    .. math:: A=I+\varepsilon\alpha H-(1+\varepsilon)QH .

    Equal to ``star.nqm.dynamics_matrix(H, alpha, (1 + eps) * (Q - alpha * I))``.
    """
    H = _H(H)
    n = H.shape[0]
    alpha = _alpha(alpha, positive=False)
    _checks.square_matrix("Q", Q, n)
    _checks.finite_scalar("eps", eps, low=-1.0, low_open=True)
    eps = float(eps)
    return np.eye(n) + eps * alpha * H - (1.0 + eps) * _f(Q) @ H


def lemma4_gap(nqm, alpha, P, T: int) -> float:
    r"""Lemma 4: :math:`L(\theta;T)-\bar L(\theta;T)=\frac1T\sum_{t=1}^T\tfrac12\operatorname{tr}(H(\Sigma_t+
    \Sigma_\xi))` (the corrected (A.2), erratum E1), computed from the two closed forms in float64."""
    with _nqm.float64():
        return float(_nqm.expected_loss(nqm, alpha, P, T) - _nqm.noise_free_loss(nqm, alpha, P, T))


def lemma4_holds(nqm, alpha, P, T: int) -> bool:
    r"""Lemma 4, (A.1): :math:`\bar L(\theta;T)\le L(\theta;T)` (up to 1e-12 relative rounding)."""
    with _nqm.float64():
        L = float(_nqm.expected_loss(nqm, alpha, P, T))
        Lbar = float(_nqm.noise_free_loss(nqm, alpha, P, T))
    return Lbar <= L * (1 + 1e-12) + 1e-300


def eigenvector_condition_number(A) -> float:
    r""":math:`\kappa(V)=\|V\|_2\|V^{-1}\|_2` for the eigenvector matrix of A (unit-norm columns), so that
    :math:`A^k=V\Lambda^kV^{-1}` and :math:`\|A^k\|_2\le\kappa(V)\rho(A)^k`. ``inf`` if A is (numerically)
    not diagonalizable."""
    _checks.square_matrix("A", A)
    _, V = np.linalg.eig(_f(A))
    s = np.linalg.svd(V, compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 1e-14 * s[0] else float("inf")


def power_norm_bound(A, k: int) -> float:
    r"""The bound :math:`\kappa(V)\rho(A)^k\ge\|A^k\|_2` that repairs (A.14) (errata E2, E3)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be an integer >= 0; got {k!r}")
    return eigenvector_condition_number(A) * spectral_radius(A) ** int(k)


def symmetric_kappa(alpha, P=None) -> float:
    r"""Under strict (9) (:math:`M=\alpha I+P\succ0`), :math:`A=I-MH` is diagonalized by
    :math:`V=M^{1/2}U` (U orthogonal eigenvectors of :math:`M^{1/2}HM^{1/2}`), so one may take
    :math:`\kappa(V)=\sqrt{\kappa(M)}` in :math:`\|A^k\|_2\le\kappa(V)\rho(A)^k`, whatever H is.

    Raises:
        ValueError: :math:`M` is not positive definite (``alpha <= 0`` without ``P``), the premise of the bound.
    """
    alpha = _alpha(alpha, positive=P is None)  # M = alpha I must be positive definite
    if P is None:
        return 1.0
    _checks.symmetric_matrix("P", P)
    lam = np.linalg.eigvalsh(alpha * np.eye(np.shape(P)[0]) + _f(P))
    if lam[0] <= 0:
        raise ValueError(f"alpha*I + P must be positive definite (strict (9)); got smallest eigenvalue {lam[0]:.4g}")
    return float(np.sqrt(lam[-1] / lam[0]))


def lemma5_bound(nqm, alpha, P=None, T: int | None = None) -> float:
    r"""Lemma 5 made quantitative: with :math:`\kappa=\kappa(V)`, :math:`\rho=\rho(A)<1`,
    :math:`C_0=m_0m_0^\top+S_0` and :math:`Q=(I-A)\Sigma_\xi(I-A)^\top`,

    .. math:: L(\theta;T)\le\frac{\lambda_{\max}(H)\kappa^2}{2}\Big(\frac{\operatorname{tr}C_0}{T}
              \sum_{t=1}^{T}\rho^{2t}+\frac{\operatorname{tr}Q}{1-\rho^2}\Big)+\tfrac12\operatorname{tr}(H\Sigma_\xi),

    finite uniformly in T (``T=None`` gives the T-independent bound, using
    :math:`\frac1T\sum_{t\le T}\rho^{2t}\le\rho^2`).
    Uses :math:`\|A^k\|_2\le\kappa\rho^k` instead of the false equality (A.14). ``inf`` when
    :math:`\rho\ge1` or A is not diagonalizable.
    """
    n = _nqm.check_nqm(nqm)
    alpha = _alpha(alpha, positive=False)
    _checks.square_matrix("P", np.zeros((n, n)) if P is None else P, n)
    if T is not None:
        T = _checks.horizon("T", T)
    H, Sx, m0, S0 = (_f(x) for x in nqm)
    A = np.eye(n) - (alpha * np.eye(n) + (0.0 if P is None else _f(P))) @ H
    rho, kappa = spectral_radius(A), eigenvector_condition_number(A)
    if rho >= 1 or not np.isfinite(kappa):
        return float("inf")
    r2 = rho ** 2
    # (1/T) Σ_{t≤T} ρ^{2t} is largest at T = 1, where it equals ρ².
    init_mean = r2 if T is None else float(np.mean(r2 ** np.arange(1, T + 1)))
    C0 = np.trace(S0) + m0 @ m0
    Q = (np.eye(n) - A) @ Sx @ (np.eye(n) - A).T
    lmax = np.linalg.eigvalsh(H)[-1]
    init_term = C0 * init_mean
    return float(0.5 * lmax * kappa ** 2 * (init_term + np.trace(Q) / (1 - r2)) + 0.5 * np.trace(H @ Sx))


# ----------------------------------------------------------------------------------------------- momentum


def _momentum_args(momentum, optimizer):
    _checks.choice("optimizer", optimizer, ("heavy_ball", "nesterov"))
    _checks.finite_scalar("momentum", momentum, low=0.0, high=1.0, high_open=True)
    return float(momentum)


def momentum_matrix(H, alpha, P=None, *, momentum, optimizer: str = "heavy_ball") -> np.ndarray:
    """The 2N×2N companion matrix of heavy-ball / Nesterov on the NQM (:func:`star.nqm.augmented_system`)."""
    _momentum_args(momentum, optimizer)
    with _nqm.float64():
        A, _ = _nqm.augmented_system(_f(H), alpha, None if P is None else _f(P), optimizer=optimizer,
                                     momentum=momentum)
        return np.asarray(A)


def momentum_spectral_radius(H, alpha, P=None, *, momentum, optimizer: str = "heavy_ball") -> float:
    """ρ of the 2N×2N companion matrix, computed directly from its eigenvalues."""
    return spectral_radius(momentum_matrix(H, alpha, P, momentum=momentum, optimizer=optimizer))


def scalar_momentum_stable(a, momentum, optimizer: str = "heavy_ball"):
    r"""Closed-form stability of the scalar mode with curvature-step product ``a`` (Schur–Cohn–Jury).

    Heavy ball: :math:`z^2-(1+\beta-a)z+\beta`; Nesterov: :math:`z^2-(1+\beta)(1-a)z+\beta(1-a)`. Both roots lie
    strictly inside the unit circle iff :math:`|c_0|<1` and :math:`|c_1|<1+c_0`. ``a`` may be an array.
    """
    beta = _momentum_args(momentum, optimizer)
    a = _f(a)
    if not np.all(np.isfinite(a)):
        raise ValueError("a must be finite")
    if optimizer == "heavy_ball":
        c1, c0 = -(1.0 + beta - a), np.full_like(a, beta)
    else:
        c1, c0 = -(1.0 + beta) * (1.0 - a), beta * (1.0 - a)
    out = (np.abs(c0) < 1.0) & (np.abs(c1) < 1.0 + c0)
    return bool(out) if out.ndim == 0 else out


def momentum_step_interval(momentum, optimizer: str = "heavy_ball"):
    r"""The stable interval of :math:`a=\lambda(MH)` for :math:`0\le\beta<1`: :math:`(0,2(1+\beta))` for heavy
    ball and :math:`(0,2(1+\beta)/(1+2\beta))` for Nesterov (β = 0 gives plain GD's (0, 2))."""
    beta = _momentum_args(momentum, optimizer)
    upper = 2.0 * (1.0 + beta) if optimizer == "heavy_ball" else 2.0 * (1.0 + beta) / (1.0 + 2.0 * beta)
    return 0.0, upper


def momentum_theorem1_holds(H, alpha, P=None, *, momentum, optimizer: str = "heavy_ball") -> bool:
    r"""Theorem 1 with momentum (a corollary of the momentum region): strict (9)
    :math:`-\alpha<\lambda_{\min}(P)` and :math:`\alpha+\lambda_{\max}(P)<c_\beta/\lambda_{\max}(H)` with
    :math:`c_\beta` the upper end of :func:`momentum_step_interval` (2(1+β) for heavy ball, 2(1+β)/(1+2β) for
    Nesterov) imply :math:`\rho(\mathcal A)<1`. Requires α > 0 and symmetric P."""
    H = _H(H)
    n = H.shape[0]
    alpha = _alpha(alpha)
    lam_P = np.linalg.eigvalsh(_sym_P(P, n))
    upper = momentum_step_interval(momentum, optimizer)[1]
    return bool(-alpha < lam_P[0] and alpha + lam_P[-1] < upper / np.linalg.eigvalsh(H)[-1])


def momentum_stability_criterion(H, alpha, P=None, *, momentum, optimizer: str = "heavy_ball") -> bool:
    r"""Exact momentum criterion for symmetric P: every eigenvalue :math:`a_i` of :math:`MH` (real, those of
    :math:`H^{1/2}MH^{1/2}`) lies in :func:`momentum_step_interval`. Equivalent to ρ(companion) < 1."""
    a = curvature_step_eigenvalues(H, alpha, P)
    return bool(np.all(scalar_momentum_stable(a, momentum, optimizer)))


def momentum_spectral_radius_grid(H, alphas, betas, *, optimizer: str = "heavy_ball", P=None) -> np.ndarray:
    """ρ of the 2N×2N companion matrix on an (β, α) grid, shape ``(len(betas), len(alphas))``, from its
    eigenvalues (vmapped, float64) — the direct computation the closed-form region is checked against."""
    import jax
    import jax.numpy as jnp

    H = _H(H)
    n = H.shape[0]
    _checks.choice("optimizer", optimizer, ("heavy_ball", "nesterov"))
    alphas, betas = _f(alphas), _f(betas)
    if alphas.ndim != 1 or not np.all(np.isfinite(alphas)):
        raise ValueError("alphas must be a 1-D array of finite values")
    if betas.ndim != 1 or not np.all((betas >= 0) & (betas < 1)):
        raise ValueError(f"betas must be a 1-D array of momenta in [0, 1); got {betas}")
    P = np.zeros((n, n)) if P is None else _f(_checks.square_matrix("P", P, n))
    with _nqm.float64():
        Hj, Pj = jnp.asarray(H), jnp.asarray(P)

        def rho(a, b):
            A = _nqm.augmented_system(Hj, a, Pj, optimizer=optimizer, momentum=b)[0]
            return jnp.max(jnp.abs(jnp.linalg.eigvals(A)))

        grid = jax.vmap(lambda b: jax.vmap(lambda a: rho(a, b))(jnp.asarray(alphas)))(jnp.asarray(betas))
        return np.asarray(grid)
