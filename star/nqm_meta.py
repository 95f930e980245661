r"""Meta-learning the linear learned optimizer on the NQM: Figs. 2b–c of §4 / App. B.1 and their momentum extension.

On top of the model (:mod:`star.nqm`, whose :func:`star.nqm.expected_loss` is the one closed form of Eq. (8)
used throughout), :mod:`star.stability`, :mod:`star.inner`, :mod:`star.pes` and :mod:`star.outer_step`:

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
  B.1) of several variants over several seeds with AdamW (:func:`star.outer_step.make_outer_step`),
  vmapped: one compiled program per distinct weight decay.

The variance of the meta-gradient (Fig. 2a) is :mod:`star.nqm_variance`'s.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax import lax
from scipy import optimize

from star import _checks, outer_step, stability
from star import nqm as nqm_lib
from star.inner import NQMProblem

__all__ = [
    "num_free_entries", "symmetric_from_vector", "vector_from_symmetric", "SymmetricNQMProblem",
    "theorem1_band", "tuned_step_size", "optimal_preconditioner", "ESVariant", "ESMetaTraining", "es_meta_train",
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
    nqm_lib.check_optimizer(optimizer, momentum)
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
    nqm_lib.check_optimizer(optimizer, momentum)
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

    For every variant and seed: θ = P starts at 0; each outer step is :func:`star.outer_step.make_outer_step`
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
    # Every lane runs the outer step with weight decay 0 and then the decoupled decay of AdamW,
    # θ ← θ − lr·λ·θ_old (optax.adamw: θ ← θ − lr(adam + λθ)), with λ per lane: one compiled program for all.
    cfgs = [outer_step.MetaTrainConfig(outer_steps=K, num_tasks=num_tasks, trunc_length=horizon, std=std, lr=lr,
                                      weight_decay=0.0, clip=clip, clip_mode="value", estimator="pes",
                                      random_offset=False, seed=s, shard=False) for s in seeds]
    lanes, states, decays = [], [], []
    for v in variants:
        prob = SymmetricNQMProblem(NQMProblem(nqm, horizon=horizon, optimizer="heavy_ball",
                                              momentum=jnp.float32(v.momentum)), alpha=jnp.float32(v.alpha))
        for cfg in cfgs:
            lanes.append(prob)
            states.append(outer_step.init_meta_state(prob, theta0, cfg))
            decays.append(v.weight_decay)
    problems = jax.tree.map(lambda *x: jnp.stack([jnp.asarray(a) for a in x]), *lanes)
    state0 = jax.tree.map(lambda *x: jnp.stack(x), *states)
    decay_steps = jnp.asarray(np.asarray(decays) * lr, jnp.float32)
    ps, losses, nans = _run_lanes(outer_step.make_outer_step(cfgs[0]), problems, state0, decay_steps, K)
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
