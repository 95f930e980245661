r"""Meta-learning on the NQM: the experiments of §4 / App. B.1 (Fig. 2) and their momentum extension, as functions.

The experiments of Fig. 2 side by side, on top of the model (:mod:`star.nqm`, whose
:func:`star.nqm.expected_loss` is the one closed form of Eq. (8) used throughout), :mod:`star.stability`,
:mod:`star.inner`, :mod:`star.pes` and :mod:`star.metatrain`:

* :func:`meta_gradient_variance_grid` — Fig. 2a: the trace of the meta-gradient covariance (A.32–A.33) over
  the α grid :func:`fig2a_alphas` and the horizons ``PAPER_HORIZONS`` (A.31), in one forward-mode pass.

* :class:`SymmetricNQMProblem` — the NQM with the linear learned optimizer
  :math:`\phi_{t+1}=\phi_t-(\alpha I+P)\nabla_t` (Eq. 6), whose meta-parameters are the
  :math:`N(N+1)/2` upper-triangular entries of a **symmetric** P (Theorem 1 speaks of the eigenvalues of a
  symmetric P; a general P can have complex eigenvalues). The nominal step α and the momentum β are data,
  so variants that differ only in them run in one compiled program.
* :func:`theorem1_band` — the interval Theorem 1 allows for the eigenvalues of P, conditions (9)–(10):
  :math:`[-\alpha,\;2/\lambda_{\max}(H)-\alpha]`; for heavy-ball momentum β the same argument with the
  heavy-ball interval :math:`a\in(0,2(1+\beta))` of :func:`star.stability.momentum_step_interval` gives
  :math:`[-\alpha,\;2(1+\beta)/\lambda_{\max}(H)-\alpha]`.
* :func:`tuned_step_size` and :func:`optimal_preconditioner` — closed-form (Eq. 8) references: the best
  scalar step (our nominal α) and the best symmetric P for a given horizon.
* :func:`es_meta_train` — ES meta-training (PES with truncation = horizon, which is plain antithetic ES, App.
  B.1) of several variants over several seeds with AdamW (:func:`star.metatrain.make_outer_step`),
  vmapped: one compiled program per distinct weight decay.
* :func:`variance_along_boundary` — the Fig. 2a statistic for heavy ball at step sizes placed relative to
  the momentum stability edge :math:`2(1+\beta)/\lambda_{\max}(H)`, with the exact mean gradient, for the
  signal-to-noise ratio of one meta-gradient sample.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax
from scipy import optimize

from star import _checks, metatrain, stability
from star import nqm as nqm_lib
from star.inner import NQMProblem

__all__ = [
    "num_free_entries", "symmetric_from_vector", "vector_from_symmetric", "SymmetricNQMProblem",
    "PAPER_HORIZONS", "fig2a_alphas", "meta_gradient_variance_grid",
    "theorem1_band", "tuned_step_size", "optimal_preconditioner", "ESVariant", "ESMetaTraining",
    "es_meta_train", "BoundaryVariance", "variance_along_boundary",
]


def num_free_entries(n: int) -> int:
    """Number of free entries of a symmetric n×n matrix, n(n+1)/2."""
    return n * (n + 1) // 2


def _dim_from_free(k: int) -> int:
    n = int(round((np.sqrt(8 * k + 1) - 1) / 2))
    if num_free_entries(n) != k:
        raise ValueError(f"p must have n(n+1)/2 entries for some n; got {k}")
    return n


def symmetric_from_vector(p):
    """The symmetric matrix whose upper triangle (row by row, diagonal included) is ``p``; traceable."""
    p = jnp.asarray(p)
    if p.ndim != 1:
        raise ValueError(f"p must be a 1-D vector of n(n+1)/2 entries; got shape {p.shape}")
    n = _dim_from_free(p.shape[0])
    rows, cols = np.triu_indices(n)
    U = jnp.zeros((n, n), p.dtype).at[rows, cols].set(p)
    return U + U.T - jnp.diag(jnp.diag(U))


def vector_from_symmetric(P) -> np.ndarray:
    """Inverse of :func:`symmetric_from_vector` (upper triangle of a symmetric ``P``)."""
    _checks.symmetric_matrix("P", P)
    P = np.asarray(P, dtype=np.float64)
    return P[np.triu_indices(P.shape[0])]


@struct.dataclass
class SymmetricNQMProblem:
    """A :class:`star.pes.TruncatedProblem`: the NQM with nominal step α and a learned symmetric P.

    Meta-parameters ``theta = {"p": p}`` with ``p`` the upper triangle of P (:func:`symmetric_from_vector`).
    Everything else is delegated to :class:`star.inner.NQMProblem`; ``alpha`` (the fixed nominal step, 0 for
    "learned P alone") is a pytree leaf here, like ``problem.momentum``, so problems differing only in α
    and β stack and ``vmap``.
    """

    problem: NQMProblem
    alpha: Any

    @property
    def horizon(self) -> int:
        return self.problem.horizon

    def linear_optimizer(self, theta):
        """θ ↦ the NQMProblem meta-parameters ``{"alpha": α, "P": P}``."""
        return {"alpha": self.alpha, "P": symmetric_from_vector(theta["p"])}

    def init(self, theta, key):
        return self.problem.init(self.linear_optimizer(theta), key)

    def step(self, theta, inner_state, key):
        return self.problem.step(self.linear_optimizer(theta), inner_state, key)

    def closed_form_args(self, theta) -> dict:
        """The arguments of the closed form :func:`star.nqm.expected_loss` (Eq. 8) for ``theta``."""
        return self.problem.closed_form_args(self.linear_optimizer(theta))


def _lambda_max(H) -> float:
    _checks.spd_matrix("H", H)
    return float(np.linalg.eigvalsh(np.asarray(H, np.float64))[-1])


def theorem1_band(H, alpha, momentum=0.0) -> tuple[float, float]:
    r"""The interval Theorem 1 allows for the eigenvalues of a symmetric P, ``(low, high)``.

    SGD (β = 0), conditions (9)–(10): :math:`-\alpha\le\lambda_{\min}(P)`,
    :math:`\lambda_{\max}(P)\le2/\lambda_{\max}(H)-\alpha`. Heavy ball with momentum β: Theorem 1's proof
    (:math:`0\le\lambda_i(MH)\le\lambda_{\max}(M)\lambda_{\max}(H)` for :math:`M=\alpha I+P\succeq0`) combined
    with the heavy-ball interval :math:`(0,2(1+\beta))` (:func:`star.stability.momentum_step_interval`) gives
    :math:`\lambda_{\max}(P)\le2(1+\beta)/\lambda_{\max}(H)-\alpha`. With strict inequalities the dynamics
    are stable (:func:`star.stability.momentum_stability_criterion`); like Theorem 1, the band is only
    sufficient (the exact region is :math:`0\prec M\prec 2(1+\beta)H^{-1}`).
    """
    _checks.finite_scalar("alpha", alpha, low=0.0)
    _, upper = stability.momentum_step_interval(momentum, "heavy_ball")
    alpha = float(alpha)
    return -alpha, upper / _lambda_max(H) - alpha


def _check_opt(optimizer, momentum):
    _checks.choice("optimizer", optimizer, nqm_lib.OPTIMIZERS)
    _checks.finite_scalar("momentum", momentum, low=0.0, high=1.0, high_open=True)
    if optimizer == "sgd" and float(momentum) != 0.0:
        raise ValueError(f"momentum must be 0 for optimizer='sgd'; got {float(momentum)}")


# ----------------------------------------------------------------------------------------------------
# Fig. 2a: the variance of the meta-gradient over α and the horizon T

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
    _check_opt(optimizer, momentum)
    P = np.zeros((n, n)) if P is None else np.asarray(_checks.square_matrix("P", P, n), dtype=np.float64)
    ctx = nqm_lib.float64() if use_float64 else jax.enable_x64(jax.config.jax_enable_x64)
    with ctx:
        dt = jnp.asarray(nqm.H).dtype
        phi0s, xis = nqm_lib.seed_draws(key, nqm, max(horizons), num_seeds)
        out = _variance_grid(jnp.asarray(nqm.H), phi0s, xis, jnp.asarray(alphas, dt), jnp.asarray(P, dt),
                             jnp.asarray(momentum, dt), horizons, optimizer, bool(per_seed))
        return np.asarray(out)


def _closed_form(nqm, alpha, p, momentum, T, optimizer):
    return nqm_lib.expected_loss(nqm, alpha, symmetric_from_vector(p), T, optimizer=optimizer, momentum=momentum)


# One compiled closed form per (T, optimizer), shared by every α, P, β and NQM of the same size. SGD runs as
# heavy ball with β = 0 (the identical recursion), so SGD and heavy-ball calls share it too.
_closed_form_jit = jax.jit(_closed_form, static_argnames=("T", "optimizer"))
_closed_form_value_and_grad = jax.jit(jax.value_and_grad(_closed_form, argnums=2), static_argnames=("T", "optimizer"))


def _as_compiled_optimizer(optimizer):
    return "heavy_ball" if optimizer == "sgd" else optimizer




def tuned_step_size(nqm: nqm_lib.NQM, T: int, *, optimizer: str = "sgd", momentum=0.0) -> float:
    r"""The scalar step α (P = 0) minimizing the closed-form meta-loss Eq. (8), :math:`L(\alpha I;T)`,
    searched in the stable interval :math:`(0,\,\text{edge})` (edge :math:`2(1+\beta)/\lambda_{\max}(H)` for
    heavy ball, :math:`2/\lambda_{\max}(H)` for SGD): a "tuned hand-designed" nominal step. float64."""
    T = _checks.horizon("T", T)
    _check_opt(optimizer, momentum)
    if optimizer == "nesterov":
        _, upper = stability.momentum_step_interval(momentum, "nesterov")
    else:
        _, upper = stability.momentum_step_interval(momentum, "heavy_ball")
    edge = upper / _lambda_max(nqm.H)
    p0 = np.zeros(num_free_entries(nqm_lib.check_nqm(nqm)))
    compiled = _as_compiled_optimizer(optimizer)

    def loss(a):  # Eq. (8) at α I, in float64
        with nqm_lib.float64():
            return float(_closed_form_jit(nqm, float(a), jnp.asarray(p0), float(momentum), T=T, optimizer=compiled))

    res = optimize.minimize_scalar(loss,
                                   bounds=(1e-6 * edge, edge * (1 - 1e-6)), method="bounded",
                                   options={"xatol": 1e-8 * edge})
    return float(res.x)


def optimal_preconditioner(nqm: nqm_lib.NQM, alpha, T: int, *, optimizer: str = "sgd", momentum=0.0,
                           P0=None) -> np.ndarray:
    r"""The symmetric P minimizing the closed-form meta-loss :math:`L(\alpha I+P;T)` (Eq. 8), by BFGS on
    its N(N+1)/2 free entries with exact gradients in float64, started at ``P0`` (default 0).

    The optimum need not satisfy Theorem 1: on the paper's NQM at T = 50 the best
    :math:`M=\alpha I+P` has eigenvalues ≈ 0.24 and 2.85, while (10) allows at most 1.36.
    """
    n = nqm_lib.check_nqm(nqm)
    T = _checks.horizon("T", T)
    _checks.finite_scalar("alpha", alpha)
    _check_opt(optimizer, momentum)
    x0 = np.zeros(num_free_entries(n)) if P0 is None else vector_from_symmetric(P0)
    compiled = _as_compiled_optimizer(optimizer)
    with nqm_lib.float64():
        def fun(x):
            v, g = _closed_form_value_and_grad(nqm, float(alpha), jnp.asarray(x), float(momentum), T=T,
                                               optimizer=compiled)
            v = float(v)
            return (v, np.asarray(g)) if np.isfinite(v) else (1e300, np.zeros_like(x))

        res = optimize.minimize(fun, x0, jac=True, method="BFGS", options={"gtol": 1e-9, "maxiter": 2000})
        return np.asarray(symmetric_from_vector(jnp.asarray(res.x)))


@dataclasses.dataclass(frozen=True)
class ESVariant:
    """One meta-training configuration of Figs. 2b–c.

    Attributes:
        name: label for the figures.
        alpha: the fixed nominal step (0: "learned P alone", no nominal term).
        weight_decay: AdamW weight decay on the meta-parameters, as a multiple of the learning rate.
        momentum: heavy-ball β of the inner optimizer (0: SGD, Eq. 6).
    """

    name: str
    alpha: float
    weight_decay: float = 0.0
    momentum: float = 0.0

    def __post_init__(self):
        _checks.finite_scalar("alpha", self.alpha, low=0.0)
        _checks.finite_scalar("weight_decay", self.weight_decay, low=0.0)
        _checks.finite_scalar("momentum", self.momentum, low=0.0, high=1.0, high_open=True)


class ESMetaTraining(NamedTuple):
    """Results of :func:`es_meta_train`; arrays indexed ``[variant, seed, ...]``.

    Attributes:
        variants: the :class:`ESVariant` s, in order.
        p: ``[V, S, K+1, N(N+1)/2]`` meta-parameters before step 1 and after every outer step.
        eigenvalues: ``[V, S, K+1, N]`` ascending eigenvalues of the learned P.
        meta_loss: ``[V, S, K]`` the ES-reported meta-loss of each outer step (mean of the ± unrolls).
        exact_steps: ``[E]`` outer steps at which the closed form was evaluated (0 = initial θ).
        exact_loss: ``[V, S, E]`` closed-form Eq. (8) of the learned optimizer at those steps.
        nan_count: ``[V, S, K]`` non-finite meta-gradient entries zeroed per step.
        wall_s: wall time of the whole call (compilation included).
    """

    variants: tuple
    p: np.ndarray
    eigenvalues: np.ndarray
    meta_loss: np.ndarray
    exact_steps: np.ndarray
    exact_loss: np.ndarray
    nan_count: np.ndarray
    wall_s: float


def es_meta_train(nqm: nqm_lib.NQM, variants: Sequence[ESVariant], seeds: Sequence[int], *, outer_steps: int,
                  horizon: int = 50, num_tasks: int = 8, lr: float = 1e-2, std: float = 0.01,
                  clip: float = 1.0, exact_every: int = 25) -> ESMetaTraining:
    r"""ES meta-training of the symmetric linear learned optimizer on the NQM (Figs. 2b–c).

    For every variant and seed: θ = P starts at 0; each outer step is :func:`star.metatrain.make_outer_step`
    — PES with truncation = ``horizon`` and no random offset, i.e. antithetic ES on whole episodes
    (App. B.1), ``num_tasks`` episodes per step (common random numbers on the ± sides), σ = ``std``; NaN
    guard; clipping by value at ``clip``; AdamW with learning rate ``lr`` and the variant's weight decay.
    Seed ``s`` is ``MetaTrainConfig(seed=s)`` for every variant (common random numbers across variants).
    All variants and seeds run in one compiled, vmapped ``lax.scan`` over outer steps; the weight decay is
    applied per variant after the Adam step exactly as ``optax.adamw`` does (decoupled, × lr).
    """
    n = nqm_lib.check_nqm(nqm)
    variants = tuple(variants)
    if not variants or not all(isinstance(v, ESVariant) for v in variants):
        raise ValueError(f"variants must be a non-empty sequence of ESVariant; got {variants!r}")
    seeds = [int(s) for s in seeds]
    if not seeds or any(s < 0 for s in seeds):
        raise ValueError(f"seeds must be a non-empty sequence of integers >= 0; got {seeds!r}")
    outer_steps = _checks.horizon("outer_steps", outer_steps)
    horizon = _checks.horizon("horizon", horizon)
    exact_every = _checks.horizon("exact_every", exact_every)
    t0 = time.perf_counter()
    k = num_free_entries(n)
    theta0 = {"p": jnp.zeros((k,), jnp.float32)}
    exact_steps = np.arange(0, outer_steps + 1, exact_every)
    V, S, K = len(variants), len(seeds), outer_steps
    # Every lane runs metatrain's outer step with weight decay 0 and then the decoupled decay of AdamW,
    # θ ← θ − lr·λ·θ_old (optax.adamw: θ ← θ − lr(adam + λθ)), with λ per lane: one compiled program for all.
    cfgs = [metatrain.MetaTrainConfig(outer_steps=K, num_tasks=num_tasks, trunc_length=horizon, std=std, lr=lr,
                                      weight_decay=0.0, clip=clip, clip_mode="value", estimator="pes",
                                      random_offset=False, seed=s, shard=False) for s in seeds]
    lanes, states, decays = [], [], []
    for v in variants:
        prob = SymmetricNQMProblem(NQMProblem(nqm, horizon=horizon, optimizer="heavy_ball",
                                              momentum=jnp.float32(v.momentum)), alpha=jnp.float32(v.alpha))
        for cfg in cfgs:
            lanes.append(prob)
            states.append(metatrain.init_meta_state(prob, theta0, cfg))
            decays.append(v.weight_decay)
    problems = jax.tree.map(lambda *x: jnp.stack([jnp.asarray(a) for a in x]), *lanes)
    state0 = jax.tree.map(lambda *x: jnp.stack(x), *states)
    decay_steps = jnp.asarray(np.asarray(decays) * lr, jnp.float32)
    ps, losses, nans = _run_lanes(metatrain.make_outer_step(cfgs[0]), problems, state0, decay_steps, K)
    exact = _exact_losses(problems, ps[:, exact_steps])
    p_all, loss_all, nan_all, exact_all = (x.reshape((V, S) + x.shape[1:]) for x in (ps, losses, nans, exact))

    rows, cols = np.triu_indices(n)
    P = np.zeros(p_all.shape[:-1] + (n, n))
    P[..., rows, cols] = p_all
    P[..., cols, rows] = p_all
    eig = np.linalg.eigvalsh(P)
    return ESMetaTraining(variants, p_all, eig, loss_all, exact_steps, exact_all, nan_all,
                          time.perf_counter() - t0)


def _run_lanes(step, problems, state0, decay_steps, num_steps):
    @jax.jit
    def run(problems, state0, decay_steps):
        def one(problem, state, decay):
            def body(s, _):
                theta_old = s.theta
                s, m = step(problem, s)
                s = s._replace(theta=jax.tree.map(lambda t, t0: t - decay * t0, s.theta, theta_old))
                return s, (s.theta["p"], m["meta_loss"], m["nan_count"])

            _, (p, loss, nan) = lax.scan(body, state, None, length=num_steps)
            return jnp.concatenate([state.theta["p"][None], p]), loss, nan

        return jax.vmap(one)(problems, state0, decay_steps)

    p, loss, nan = run(problems, state0, decay_steps)
    return np.asarray(p, np.float64), np.asarray(loss, np.float64), np.asarray(nan)


def _exact_losses(problems, ps):
    """Closed-form Eq. (8) of every lane at every saved θ, in float64: ``[lanes, E]``."""
    with nqm_lib.float64():
        probs64 = jax.tree.map(lambda x: jnp.asarray(np.asarray(x), jnp.float64), problems)

        @jax.jit
        def f(problem, p):
            return jax.vmap(lambda q: nqm_lib.expected_loss(problem.problem.nqm, T=problem.horizon,
                                                            **problem.closed_form_args({"p": q})))(p)

        return np.asarray(jax.vmap(f)(probs64, jnp.asarray(ps, jnp.float64)))


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
    lmax = _lambda_max(nqm.H)
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
