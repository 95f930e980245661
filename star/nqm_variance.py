r"""The variance of the NQM's meta-gradient (§4, Fig. 2a; Eqs. A.31–A.33) and its momentum extension.

* :func:`meta_gradient_variance_grid` — Fig. 2a: the trace of the meta-gradient covariance (A.32–A.33) over
  the α grid :func:`fig2a_alphas` and the horizons ``PAPER_HORIZONS`` (A.31), in one forward-mode pass; it
  equals ``star.nqm.gradient_variance_trace(star.nqm.meta_gradients(...))`` point by point, on the same draws.
* :func:`variance_along_boundary` — the Fig. 2a statistic for heavy ball at step sizes placed relative to
  the momentum stability edge :math:`2(1+\beta)/\lambda_{\max}(H)`, with the exact mean gradient of the closed
  form :func:`star.nqm.expected_loss` (Eq. 8), for the signal-to-noise ratio of one meta-gradient sample.

The model is :mod:`star.nqm`'s; the meta-training of Figs. 2b–c is :mod:`star.nqm_meta`'s.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from star import _checks, stability
from star import nqm as nqm_lib

__all__ = ["PAPER_HORIZONS", "fig2a_alphas", "meta_gradient_variance_grid", "BoundaryVariance",
           "variance_along_boundary"]

#: The horizons of Fig. 2a, Eq. (A.31).
PAPER_HORIZONS = (1, 2, 3, 4, 5, 10, 25, 50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 800, 900, 1000)


def fig2a_alphas(H=nqm_lib.PAPER_H, num: int = 50) -> np.ndarray:
    """The α grid we use for Fig. 2a: ``num`` points from 0.02 to 1.05 · 2/λmax(H) (≈1.428 for A.30).

    The paper states only "50 values of α"; this range puts the last points just past the edge 2/λmax.
    """
    _checks.spd_matrix("H", H)
    num = _checks.horizon("num", num)
    return np.linspace(0.02, 1.05 * 2.0 / np.linalg.eigvalsh(np.asarray(H, np.float64))[-1], num)


@functools.partial(jax.jit, static_argnames=("horizons", "optimizer", "per_seed"))
def _variance_grid(H, phi0s, xis, alphas, P, beta, horizons, optimizer, per_seed=False):
    n = H.shape[0]
    p = 1 + n * n  # θ = (α, vec P)
    T = max(horizons)
    num_alphas = alphas.shape[0]
    num_seeds = phi0s.shape[0]  # phi0s (S, n), xis (S, T+1, n): the draws of star.nqm.simulate_losses
    # The small axes (n, p) are unrolled in Python and every array is an (alpha, seed) grid, so each step is
    # a handful of fused elementwise loops (reductions over tiny axes are slow on XLA:CPU). Cost ~ N⁴.
    xis = jnp.transpose(xis, (1, 2, 0))  # (T+1, n, S)
    Ms = alphas[:, None, None] * jnp.eye(n, dtype=H.dtype) + P  # (a, n, n)
    MHs = Ms @ H
    M = [[Ms[:, i, j, None] for j in range(n)] for i in range(n)]  # (a, 1) columns
    MH = [[MHs[:, i, j, None] for j in range(n)] for i in range(n)]
    Hs = [[H[i, j] for j in range(n)] for i in range(n)]
    rows = range(n)

    def body(carry, xs):
        # phi: (n, a, S); dphi: (n, p, a, S) with θ = (α, P_00, P_01, ..., P_{n-1,n-1}); cum: (p, a, S)
        phi, phi_prev, dphi, dphi_prev, cum, buf = carry
        xi, xi_next, t, k = xs  # (n, S), (n, S), step, horizon slot
        if optimizer == "sgd":
            base, dbase, u, du = phi, dphi, phi, dphi
        else:
            base, dbase = phi + beta * (phi - phi_prev), dphi + beta * (dphi - dphi_prev)
            u, du = (phi, dphi) if optimizer == "heavy_ball" else (base, dbase)
        r = [u[j] - xi[j] for j in rows]
        g = [sum(Hs[i][j] * r[j] for j in rows) for i in rows]  # H (u − ξ)
        new = [base[i] - sum(M[i][j] * g[j] for j in rows) for i in rows]
        dnew = []
        for i in rows:
            # ∂(M g)/∂θ: component i of column α is g_i; of column P_ij it is g_j (zero for other rows).
            dmg = [g[i]] + [g[j] if a == i else jnp.zeros_like(g[j]) for a in rows for j in rows]
            mhdu = sum(MH[i][j] * du[j] for j in rows)  # (p, a, S)
            dnew.append(dbase[i] - jnp.stack(dmg) - mhdu)
        d = [new[i] - xi_next[i] for i in rows]
        Hd = [sum(Hs[i][j] * d[j] for j in rows) for i in rows]
        cum = cum + sum(Hd[i] * dnew[i] for i in rows)  # Σ_t ∂ℓ_t/∂θ with ℓ_t = ½ dᵀHd
        buf = lax.dynamic_update_slice(buf, (cum / (t + 1).astype(H.dtype))[None], (k, zero, zero, zero))
        return (jnp.stack(new), phi, jnp.stack(dnew), dphi, cum, buf), None

    phi = jnp.broadcast_to(phi0s.T[:, None, :], (n, num_alphas, num_seeds))
    dphi = jnp.zeros((n, p, num_alphas, num_seeds), H.dtype)
    cum = jnp.zeros((p, num_alphas, num_seeds), H.dtype)
    # slot[t] = index of the first sorted horizon >= t + 1, so slot k is last written at t + 1 = horizon k.
    hs = sorted(set(horizons))
    slot = jnp.searchsorted(jnp.asarray(hs), jnp.arange(1, T + 1), side="left").astype(jnp.int32)
    zero = jnp.zeros((), jnp.int32)
    buf = jnp.zeros((len(hs), p, num_alphas, num_seeds), H.dtype)
    xs = (xis[:-1], xis[1:], jnp.arange(T), slot)
    buf = lax.scan(body, (phi, phi, dphi, dphi, cum, buf), xs)[0][-1]
    g = buf[jnp.asarray([hs.index(h) for h in horizons])]  # (K, p, a, S): per-seed meta-gradients
    if per_seed:
        return g
    # (A.32)-(A.33): trace of the 1/N empirical covariance over seeds.
    return jnp.sum(jnp.mean(jnp.square(g - jnp.mean(g, axis=-1, keepdims=True)), axis=-1), axis=1)


def meta_gradient_variance_grid(key, nqm: nqm_lib.NQM, alphas, horizons=PAPER_HORIZONS, num_seeds: int = 500, *,
                                P=None, optimizer: str = "sgd", momentum=0.0, use_float64: bool = True,
                                per_seed: bool = False):
    r"""Fig. 2a: :math:`\operatorname{tr}\hat\Sigma` (A.32) of the meta-gradient w.r.t. (α, P) for every
    horizon in ``horizons`` and every α in ``alphas`` (P fixed, default 0), over ``num_seeds`` seeds.

    Exactly equal (up to rounding) to ``star.nqm.gradient_variance_trace(star.nqm.meta_gradients(key, nqm, α,
    P, T, num_seeds))`` for each (T, α), on the same draws (:func:`star.nqm.seed_draws`), but computed in one
    pass: the longest trajectory contains all shorter
    horizons, so one scan over T = max(horizons) steps carries the forward-mode tangents of the state
    with respect to the 1 + N² parameters (written out by hand, vectorized over α and seeds) and the running
    sum of ∂ℓ_t/∂θ, recorded at every horizon. The N×N structure is unrolled (cost ~N⁴), so N ≤ 8.
    ``use_float64`` (default) runs in a local float64 context, because past the stability edge the values
    exceed float32's range (~1e171 at T = 1000, α = 1.43).

    Returns:
      numpy array of shape (len(horizons), len(alphas)); with ``per_seed=True`` the per-seed meta-gradients
      themselves, shape (len(horizons), 1 + N², len(alphas), num_seeds) (θ = (α, vec P)), e.g. to bootstrap
      the variance over seeds.
    """
    n = nqm_lib.check_nqm(nqm)
    if n > 8:
        raise ValueError(f"nqm.H must be at most 8x8 for the unrolled one-pass grid; got N = {n} "
                         "(use gradient_variance_trace(meta_gradients(...)) per point instead)")
    alphas = np.asarray(alphas, dtype=np.float64)
    if alphas.ndim != 1 or alphas.size == 0 or not np.all(np.isfinite(alphas)):
        raise ValueError(f"alphas must be a non-empty 1-D array of finite values; got {np.shape(alphas)}")
    horizons = tuple(_checks.horizon("horizons[i]", h) for h in np.atleast_1d(horizons).tolist())
    num_seeds = _checks.horizon("num_seeds", num_seeds)
    nqm_lib.check_optimizer(optimizer, momentum)
    P = np.zeros((n, n)) if P is None else np.asarray(_checks.square_matrix("P", P, n), dtype=np.float64)
    ctx = nqm_lib.float64() if use_float64 else jax.enable_x64(jax.config.jax_enable_x64)
    with ctx:
        dt = jnp.asarray(nqm.H).dtype
        phi0s, xis = nqm_lib.seed_draws(key, nqm, max(horizons), num_seeds)
        out = _variance_grid(jnp.asarray(nqm.H), phi0s, xis, jnp.asarray(alphas, dt), jnp.asarray(P, dt),
                             jnp.asarray(momentum, dt), horizons, optimizer, bool(per_seed))
        return np.asarray(out)


class BoundaryVariance(NamedTuple):
    """Results of :func:`variance_along_boundary`, arrays indexed ``[momentum, fraction]``.

    Attributes:
        momenta: the β values. fractions: α as a fraction of the heavy-ball edge 2(1+β)/λmax(H).
        alphas: the step sizes. variance: trace of the empirical meta-gradient covariance (A.32)–(A.33)
        w.r.t. (α, P) at P = 0. mean_sq_norm: squared norm of the exact mean meta-gradient ∇L (Eq. 8).
        snr: ``mean_sq_norm / variance``, the signal-to-noise ratio of one meta-gradient sample.
    """

    momenta: np.ndarray
    fractions: np.ndarray
    alphas: np.ndarray
    variance: np.ndarray
    mean_sq_norm: np.ndarray
    snr: np.ndarray


def variance_along_boundary(key, nqm: nqm_lib.NQM, momenta, fractions, T: int = 50,
                            num_seeds: int = 500) -> BoundaryVariance:
    r"""Fig. 2a's statistic for heavy ball, at :math:`\alpha=f\cdot2(1+\beta)/\lambda_{\max}(H)` (P = 0).

    For every β in ``momenta`` and f in ``fractions``: the trace of the meta-gradient covariance over
    ``num_seeds`` seeds (:func:`meta_gradient_variance_grid`, float64) and the exact mean gradient
    :math:`\nabla_{(\alpha,P)}L` of the closed form (float64). f = 1 is the stability edge
    (:func:`star.stability.momentum_step_interval`); β = 0 is plain SGD.
    """
    n = nqm_lib.check_nqm(nqm)
    momenta = np.atleast_1d(np.asarray(momenta, np.float64))
    fractions = np.atleast_1d(np.asarray(fractions, np.float64))
    for b in momenta:
        _checks.finite_scalar("momenta[i]", b, low=0.0, high=1.0, high_open=True)
    if fractions.ndim != 1 or not np.all(np.isfinite(fractions)) or np.any(fractions <= 0):
        raise ValueError(f"fractions must be a 1-D array of finite values > 0; got {fractions!r}")
    T = _checks.horizon("T", T)
    num_seeds = _checks.horizon("num_seeds", num_seeds)
    lmax = float(np.linalg.eigvalsh(np.asarray(nqm.H, np.float64))[-1])
    alphas = np.stack([fractions * stability.momentum_step_interval(b, "heavy_ball")[1] / lmax for b in momenta])
    variance = np.stack([
        meta_gradient_variance_grid(key, nqm, a, (T,), num_seeds, optimizer="heavy_ball", momentum=float(b))[0]
        for a, b in zip(alphas, momenta)])
    with nqm_lib.float64():
        grad = jax.grad(lambda a, P, b: nqm_lib.expected_loss(nqm, a, P, T, optimizer="heavy_ball", momentum=b),
                        argnums=(0, 1))
        sq = jax.jit(jax.vmap(jax.vmap(lambda a, b: sum(jnp.sum(g ** 2) for g in grad(a, jnp.zeros((n, n)), b)),
                                       in_axes=(0, None)), in_axes=(0, 0)))
        mean_sq = np.asarray(sq(jnp.asarray(alphas), jnp.asarray(momenta)))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        snr = mean_sq / variance
    return BoundaryVariance(momenta, fractions, alphas, variance, mean_sq, snr)
