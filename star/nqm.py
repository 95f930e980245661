r"""The noisy quadratic model (NQM) of §4 and App. A/B.1 of Harrison, Metz & Sohl-Dickstein (2022).

Model (App. A–B.1, ½ convention)
----------------------------------------
Parameters :math:`\phi\in\mathbb R^N`, curvature :math:`H=H^\top\succ0`, per-step minibatch loss
:math:`\ell_t(\phi)=\tfrac12(\phi-\xi_t)^\top H(\phi-\xi_t)` with :math:`\xi_t\sim\mathcal N(0,\Sigma_\xi)` i.i.d.,
stochastic gradient :math:`\nabla_t=H(\phi_t-\xi_t)`, and the optimizer "nominal step plus linear learned
optimizer" :math:`\phi_{t+1}=\phi_t-(\alpha I+P)\nabla_t`. With :math:`A=I-(\alpha I+P)H` this is Eq. (6),

.. math:: \phi_{t+1}=A\phi_t+(I-A)\xi_t .

The meta-loss is the mean training loss over the horizon, Eq. (8),
:math:`L(\theta;T)=\frac1T\sum_{t=1}^T\mathbb E\,\ell_t(\phi_t)`, :math:`\theta=(\alpha,P)`.
The initial state is :math:`\phi_0\sim\mathcal N(m_0,S_0)`; a fixed :math:`\phi_0` is ``S0 = 0`` and the
paper's experiments (B.1) use :math:`m_0=0`, :math:`S_0=10I`, :math:`\Sigma_\xi=I` and ``PAPER_H`` (A.30).

Simulation convention. A horizon-``T`` run draws :math:`\xi_0,\dots,\xi_T`; step ``t`` uses
:math:`\xi_t` for the gradient at :math:`\phi_t`, and the loss recorded for :math:`\phi_{t}` (``t = 1..T``)
is the minibatch loss :math:`\ell_t(\phi_t)` on the batch :math:`\xi_t` that also drives the next step.
Since :math:`\xi_t` is independent of :math:`\phi_t`, its expectation is Eq. (8). The noise of step ``t`` is
drawn from ``jax.random.fold_in(noise_key, t)``, so truncated unrolls (PES) continue seamlessly and every
horizon's trajectory is a prefix of the longest one.

Differences from the reference code (``learned_optimization`` ``NoisyMeanQuadraticTask``)
-----------------------------------------------------------------------------------------
* The code's loss is :math:`(\phi-\xi)^\top H(\phi-\xi)` **without** the ½, so its gradient is
  :math:`2H(\phi-\xi)` and for ``P = 0`` its stability edge is :math:`\alpha<1/\lambda_{\max}(H)\approx0.68`
  instead of :math:`2/\lambda_{\max}(H)\approx1.36`. This is exactly the ½-convention model with curvature
  :math:`2H` (and a loss twice as large), which is what ``paper_nqm("code")`` returns.
* The code initialises with ``normal * 10`` (std 10, covariance :math:`100I`); the paper writes
  :math:`\mathcal N(0,10I)` (covariance :math:`10I`). ``paper_nqm("paper")`` uses :math:`10I`,
  ``paper_nqm("code")`` uses :math:`100I`.

Momentum extension (beyond the paper; §A.4 leaves it as future work)
--------------------------------------------------------------------
``optimizer="heavy_ball"``: :math:`\phi_{t+1}=\phi_t-M\nabla(\phi_t)+\beta(\phi_t-\phi_{t-1})`;
``optimizer="nesterov"``: :math:`y_t=\phi_t+\beta(\phi_t-\phi_{t-1})`, :math:`\phi_{t+1}=y_t-M\nabla(y_t)`,
with :math:`M=\alpha I+P`, :math:`\beta` = ``momentum`` and :math:`\phi_{-1}=\phi_0` (zero initial velocity).
Both are linear systems in :math:`z_t=(\phi_t,\phi_{t-1})\in\mathbb R^{2N}`,
:math:`z_{t+1}=\mathcal A z_t+\mathcal B\xi_t` (:func:`augmented_system`), so the closed forms below cover them.

Precision
---------
All functions follow JAX's default dtype (float32). Beyond the stability edge the loss grows like
:math:`\rho(A)^{2T}`; in float32 anything above ~3e38 becomes ``inf`` and the meta-gradient variance becomes
``inf``/``nan`` (e.g. Fig. 2a at T=1000, α=1.43 is ~1e171). For float64 without touching the global
configuration, run the call inside ``with star.nqm.float64():`` (a local ``jax.enable_x64(True)``): the
``NQM`` stores float64 numpy arrays, which then stay float64. The Fig. 2a grid
(:func:`star.nqm_variance.meta_gradient_variance_grid`) does this by default.

API (all differentiable in ``alpha`` and ``P``; ``T`` and ``optimizer`` are static)
-------------------------------------------------------------------------------------
* constants: ``PAPER_H`` (A.30), :func:`paper_nqm`
* model: :class:`NQM`, :func:`make_nqm`, :func:`check_nqm`, :func:`check_optimizer`, :func:`dynamics_matrix` (Eq. 6),
  :func:`augmented_system`
* closed forms: :func:`expected_losses`, :func:`expected_loss` (Eq. 8), :func:`noise_free_loss`
  (Lemma 4's :math:`\bar L`), :func:`lyapunov_covariance`, :func:`asymptotic_loss` (T → ∞)
* simulation: :class:`NQMState`, :func:`init_state`, :func:`sample_noise`, :func:`unroll`,
  :func:`simulate_losses`, :func:`simulated_loss`, :func:`seed_draws`
* meta-gradients: :func:`meta_gradients`, :func:`gradient_variance_trace` (A.32–A.33)

:func:`expected_loss` is *the* closed form of Eq. (8): the NQM problems of :mod:`star.inner` and the
experiments of Fig. 2 call it rather than carry their own. The experiments themselves live in
:mod:`star.nqm_variance` (the Fig. 2a grid of meta-gradient variances) and :mod:`star.nqm_meta` (the ES
meta-training of Figs. 2b–c).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from star import _checks

__all__ = [
    "PAPER_H", "OPTIMIZERS", "NQM", "NQMState", "make_nqm", "paper_nqm", "check_nqm", "check_optimizer",
    "float64", "dynamics_matrix", "augmented_system", "expected_losses",
    "expected_loss", "noise_free_loss", "lyapunov_covariance", "asymptotic_loss", "init_state",
    "sample_noise", "unroll", "simulate_losses", "simulated_loss", "seed_draws", "meta_gradients",
    "gradient_variance_trace",
]

#: The paper's 2-D curvature, Eq. (A.30). Eigenvalues 0.1253 and 1.4707; 2/λmax = 1.360.
PAPER_H = np.array([[1.11, 0.596], [0.596, 0.486]], dtype=np.float64)
PAPER_H.setflags(write=False)

#: Inner optimizers understood by every function (``"sgd"`` is the paper's Eq. (6)).
OPTIMIZERS = ("sgd", "heavy_ball", "nesterov")


def float64():
    """A context manager computing in float64 locally (``jax.enable_x64(True)``); nothing global changes."""
    return jax.enable_x64(True)


class NQM(NamedTuple):
    """A noisy quadratic model: ``H`` (N, N) SPD, ``sigma_xi`` (N, N) PSD noise covariance, and the
    initial state ``phi0 ~ N(phi0_mean, S0)`` (``S0 = 0`` for a fixed initial state). A pytree."""

    H: np.ndarray
    sigma_xi: np.ndarray
    phi0_mean: np.ndarray
    S0: np.ndarray

    @property
    def dim(self) -> int:
        return int(np.shape(self.H)[0])


class NQMState(NamedTuple):
    """Inner-optimization state: the iterate ``phi`` = φ_t, the previous iterate ``phi_prev`` = φ_{t-1}
    (used by momentum; equal to ``phi`` at t = 0), and the step counter ``t`` (indexes the noise)."""

    phi: jax.Array
    phi_prev: jax.Array
    t: jax.Array


def _f64(x):
    return x if isinstance(x, jax.core.Tracer) else np.asarray(x, dtype=np.float64)


def make_nqm(H, sigma_xi, *, phi0=None, S0=None) -> NQM:
    """Build a validated :class:`NQM` (float64 numpy leaves).

    Args:
      H: (N, N) symmetric positive-definite curvature.
      sigma_xi: (N, N) symmetric PSD covariance of the noisy minimum ξ_t.
      phi0: (N,) mean of the initial state (default 0).
      S0: (N, N) PSD covariance of the initial state (default 0, i.e. a fixed ``phi0``).

    Raises:
      ValueError: non-symmetric / non-PD ``H``, wrong shapes, non-finite entries, non-PSD covariances.
    """
    _checks.spd_matrix("H", H)
    n = int(np.shape(H)[0])
    _checks.psd_matrix("sigma_xi", sigma_xi, n)
    phi0 = np.zeros(n) if phi0 is None else _checks.vector("phi0", phi0, n)
    S0 = np.zeros((n, n)) if S0 is None else _checks.psd_matrix("S0", S0, n)
    return NQM(_f64(H), _f64(sigma_xi), _f64(phi0), _f64(S0))


def paper_nqm(convention: str = "paper") -> NQM:
    """The NQM of App. B.1: H from (A.30), Σ_ξ = I, φ0 ~ N(0, 10 I).

    ``convention="code"`` gives the reference code's model in the ½ convention: curvature ``2 H``
    (its loss has no ½, so its gradient is 2H(φ−ξ)) and initial covariance ``100 I`` (std 10).
    """
    _checks.choice("convention", convention, ("paper", "code"))
    if convention == "paper":
        return make_nqm(PAPER_H, np.eye(2), S0=10.0 * np.eye(2))
    return make_nqm(2.0 * PAPER_H, np.eye(2), S0=100.0 * np.eye(2))


# ----------------------------------------------------------------------------------------------------
# validation of the common arguments


def check_nqm(nqm) -> int:
    """Validate an :class:`NQM` (``ValueError`` naming the bad field) and return its dimension N."""
    if not isinstance(nqm, NQM):
        raise ValueError(f"nqm must be a star.nqm.NQM (see make_nqm); got {type(nqm).__name__}")
    _checks.spd_matrix("nqm.H", nqm.H)
    n = int(np.shape(nqm.H)[0])
    _checks.psd_matrix("nqm.sigma_xi", nqm.sigma_xi, n)
    _checks.vector("nqm.phi0_mean", nqm.phi0_mean, n)
    _checks.psd_matrix("nqm.S0", nqm.S0, n)
    return n


def check_optimizer(optimizer, momentum) -> None:
    """Validate the inner optimizer (one of :data:`OPTIMIZERS`) and its momentum β ∈ [0, 1), 0 for SGD."""
    _checks.choice("optimizer", optimizer, OPTIMIZERS)
    _checks.finite_scalar("momentum", momentum, low=0.0, high=1.0, high_open=True)
    if optimizer == "sgd" and _checks.is_concrete(momentum) and float(momentum) != 0.0:
        raise ValueError(f"momentum must be 0 for optimizer='sgd'; got {float(momentum)} "
                         "(use optimizer='heavy_ball' or 'nesterov')")


def _check_theta(alpha, P, n, optimizer, momentum):
    _checks.finite_scalar("alpha", alpha)
    if P is not None:
        _checks.square_matrix("P", P, n)
    check_optimizer(optimizer, momentum)


class _Model(NamedTuple):
    """An NQM with the square roots of its covariances (computed once, outside the jitted cores)."""

    H: jax.Array
    sigma_xi: jax.Array
    phi0_mean: jax.Array
    S0: jax.Array
    noise_root: jax.Array  # R with R Rᵀ = Σξ
    init_root: jax.Array  # R0 with R0 R0ᵀ = S0


def _sqrtm_psd(S):
    if _checks.is_concrete(S):  # numpy: keeps eigh out of every compiled function
        w, V = np.linalg.eigh(np.asarray(S, np.float64))
        return V * np.sqrt(np.clip(w, 0.0, None))
    w, V = jnp.linalg.eigh(S)
    return V * jnp.sqrt(jnp.clip(w, 0.0, None))


def _model(nqm: NQM) -> _Model:
    H = jnp.asarray(nqm.H)
    dt = H.dtype
    return _Model(H, jnp.asarray(nqm.sigma_xi, dt), jnp.asarray(nqm.phi0_mean, dt), jnp.asarray(nqm.S0, dt),
                  jnp.asarray(_sqrtm_psd(nqm.sigma_xi), dt), jnp.asarray(_sqrtm_psd(nqm.S0), dt))


def _P(P, n):
    """P = None means the zero matrix (one compiled path for both)."""
    return np.zeros((n, n)) if P is None else P


def _preconditioner(alpha, P, n, dtype):
    M = jnp.asarray(alpha, dtype) * jnp.eye(n, dtype=dtype)
    return M if P is None else M + jnp.asarray(P, dtype)


# ----------------------------------------------------------------------------------------------------
# dynamics


def _augmented(H, M, beta, optimizer):
    n = H.shape[0]
    eye = jnp.eye(n, dtype=H.dtype)
    MH = M @ H
    A = eye - MH
    if optimizer == "sgd":
        return A, MH
    zero = jnp.zeros_like(eye)
    if optimizer == "heavy_ball":
        top = jnp.concatenate([(1.0 + beta) * eye - MH, -beta * eye], axis=1)
    else:  # nesterov: φ_{t+1} = (I − MH)((1+β)φ_t − βφ_{t−1}) + MH ξ_t
        top = jnp.concatenate([(1.0 + beta) * A, -beta * A], axis=1)
    bottom = jnp.concatenate([eye, zero], axis=1)
    return jnp.concatenate([top, bottom], axis=0), jnp.concatenate([MH, zero], axis=0)


def dynamics_matrix(H, alpha, P=None):
    """The NQM dynamics matrix A = I − (αI + P) H of Eq. (6).

    Args:
      H: (N, N) SPD curvature. alpha: finite scalar step size. P: (N, N) learned preconditioner or None (0).
    """
    _checks.spd_matrix("H", H)
    n = int(np.shape(H)[0])
    _check_theta(alpha, P, n, "sgd", 0.0)
    H = jnp.asarray(H)
    return jnp.eye(n, dtype=H.dtype) - _preconditioner(alpha, P, n, H.dtype) @ H


def augmented_system(H, alpha, P=None, *, optimizer: str = "sgd", momentum=0.0):
    r"""The linear system :math:`z_{t+1}=\mathcal A z_t+\mathcal B\xi_t` of the inner optimizer.

    ``sgd``: :math:`z=\phi`, :math:`\mathcal A=A=I-MH`, :math:`\mathcal B=MH=I-A` (Eq. 6).
    ``heavy_ball``: :math:`z=(\phi_t,\phi_{t-1})`,
    :math:`\mathcal A=\begin{bmatrix}(1+\beta)I-MH&-\beta I\\ I&0\end{bmatrix}`,
    :math:`\mathcal B=\begin{bmatrix}MH\\0\end{bmatrix}`.
    ``nesterov``: :math:`\mathcal A=\begin{bmatrix}(1+\beta)(I-MH)&-\beta(I-MH)\\ I&0\end{bmatrix}`, same
    :math:`\mathcal B`. Here :math:`M=\alpha I+P` and :math:`\beta` = ``momentum``.

    Returns:
      ``(A_aug, B_aug)`` of shapes (d, d) and (d, N), d = N (sgd) or 2N (momentum).
    """
    _checks.spd_matrix("H", H)
    n = int(np.shape(H)[0])
    _check_theta(alpha, P, n, optimizer, momentum)
    H = jnp.asarray(H)
    return _augmented(H, _preconditioner(alpha, P, n, H.dtype), jnp.asarray(momentum, H.dtype), optimizer)


# ----------------------------------------------------------------------------------------------------
# closed forms


@functools.partial(jax.jit, static_argnames=("T", "optimizer"))
def _expected_losses(model, alpha, P, beta, T, optimizer):
    H, sigma_xi, m0, S0 = model[:4]
    n = H.shape[0]
    A, B = _augmented(H, _preconditioner(alpha, P, n, H.dtype), jnp.asarray(beta, H.dtype), optimizer)
    C0 = S0 + jnp.outer(m0, m0)  # second moment E φ0 φ0ᵀ
    if optimizer != "sgd":  # z0 = (φ0, φ0): zero initial velocity
        C0 = jnp.kron(jnp.ones((2, 2), H.dtype), C0)
    Q = B @ sigma_xi @ B.T
    noise_floor = jnp.sum(H * sigma_xi)

    def body(C, _):
        C = A @ C @ A.T + Q  # E z_t z_tᵀ = A E z_{t-1} z_{t-1}ᵀ Aᵀ + B Σξ Bᵀ
        return C, 0.5 * (jnp.sum(H * C[:n, :n]) + noise_floor)

    _, losses = lax.scan(body, C0, None, length=T)
    return losses


def expected_losses(nqm: NQM, alpha, P, T: int, *, optimizer: str = "sgd", momentum=0.0):
    r"""Per-step expected losses :math:`\mathbb E\,\ell_t(\phi_t)`, t = 1..T (closed form), shape (T,).

    :math:`\mathbb E\,\ell_t=\tfrac12\operatorname{tr}\big(H(C_t+\Sigma_\xi)\big)` with the second moment
    :math:`C_t=\mathbb E\phi_t\phi_t^\top=A^t C_0 (A^t)^\top+\Sigma_t`, :math:`C_0=m_0m_0^\top+S_0`, where
    :math:`\Sigma_t=A\Sigma_{t-1}A^\top+(I-A)\Sigma_\xi(I-A)^\top` ((A.10)). For momentum
    the same recursion runs on the 2N-dimensional :func:`augmented_system`. Prefix means of this vector
    give Eq. (8) for every shorter horizon.
    """
    n = check_nqm(nqm)
    T = _checks.horizon("T", T)
    _check_theta(alpha, P, n, optimizer, momentum)
    return _expected_losses(_model(nqm), alpha, _P(P, n), momentum, T, optimizer)


def expected_loss(nqm: NQM, alpha, P, T: int, *, optimizer: str = "sgd", momentum=0.0):
    r"""The expected meta-loss :math:`L(\theta;T)=\frac1T\sum_{t=1}^T\mathbb E\,\ell_t(\phi_t)`, Eq. (8).

    Covers both initial-state variants of §2.3: a fixed φ0 (``nqm.S0 = 0``) and φ0 ~ N(0, S0)
    (the first bracket term becomes tr(H A^t S0 (A^t)ᵀ)). Uses the ½ convention.
    """
    return jnp.mean(expected_losses(nqm, alpha, P, T, optimizer=optimizer, momentum=momentum))


def noise_free_loss(nqm: NQM, alpha, P, T: int, *, optimizer: str = "sgd", momentum=0.0):
    r"""Lemma 4's deterministic loss :math:`\bar L(\theta;T)`: Eq. (8) with :math:`\Sigma_\xi\to0`,
    i.e. :math:`\frac1T\sum_t\tfrac12\operatorname{tr}(HA^tC_0(A^t)^\top)`."""
    check_nqm(nqm)
    quiet = nqm._replace(sigma_xi=jnp.zeros_like(jnp.asarray(nqm.sigma_xi)) if isinstance(
        nqm.sigma_xi, jax.core.Tracer) else np.zeros_like(nqm.sigma_xi))
    return expected_loss(quiet, alpha, P, T, optimizer=optimizer, momentum=momentum)


def _lyapunov(A, Q):
    d = A.shape[0]
    # Row-major vec: vec(A X Aᵀ) = (A ⊗ A) vec(X).
    x = jnp.linalg.solve(jnp.eye(d * d, dtype=A.dtype) - jnp.kron(A, A), Q.reshape(-1))
    X = x.reshape(d, d)
    return 0.5 * (X + X.T)


def lyapunov_covariance(A, Q):
    r"""The solution :math:`X` of the discrete Lyapunov equation :math:`X=AXA^\top+Q`.

    For :math:`\rho(A)<1` and :math:`Q\succeq0` it is the unique PSD solution and the limit of
    :math:`\Sigma_t` (Lemma 5, App. A.1). Solved as a dense (d², d²) linear system (d is small here).

    Raises:
        ValueError: :math:`\rho(A)\ge1` (checked on concrete ``A``): the recursion has no stationary covariance.
    """
    _checks.square_matrix("A", A)
    _checks.psd_matrix("Q", Q, int(np.shape(A)[0]))
    if _checks.is_concrete(A):
        rho = float(np.max(np.abs(np.linalg.eigvals(np.asarray(A, np.float64)))))
        if not rho < 1.0:  # no PSD solution: the linear system's answer would not be a covariance
            raise ValueError(f"A must have spectral radius < 1 (a stable recursion); got {rho:.4g}")
    A = jnp.asarray(A)
    return _lyapunov(A, jnp.asarray(Q, A.dtype))


@functools.partial(jax.jit, static_argnames=("optimizer",))
def _asymptotic_loss(model, alpha, P, beta, optimizer):
    H, sigma_xi = model[:2]
    n = H.shape[0]
    A, B = _augmented(H, _preconditioner(alpha, P, n, H.dtype), jnp.asarray(beta, H.dtype), optimizer)
    Sigma = _lyapunov(A, B @ sigma_xi @ B.T)
    value = 0.5 * (jnp.sum(H * Sigma[:n, :n]) + jnp.sum(H * sigma_xi))
    rho = lax.stop_gradient(jnp.max(jnp.abs(jnp.linalg.eigvals(A))))
    return jnp.where(rho < 1.0, value, jnp.inf)


def asymptotic_loss(nqm: NQM, alpha, P, *, optimizer: str = "sgd", momentum=0.0):
    r""":math:`\lim_{T\to\infty}L(\theta;T)=\tfrac12\operatorname{tr}\big(H(\Sigma_\infty+\Sigma_\xi)\big)`,
    with :math:`\Sigma_\infty` from the discrete Lyapunov equation (Lemma 5, App. A.1); the
    initial-state term vanishes in the time average. ``inf`` when :math:`\rho(\mathcal A)\ge1`
    (checked with the eigenvalues, which are evaluated on CPU)."""
    n = check_nqm(nqm)
    _check_theta(alpha, P, n, optimizer, momentum)
    return _asymptotic_loss(_model(nqm), alpha, _P(P, n), momentum, optimizer)


# ----------------------------------------------------------------------------------------------------
# simulation


def _noise(noise_key, model, t0, num):
    H, root = model.H, model.noise_root
    ts = t0 + jnp.arange(num)
    z = jax.vmap(lambda t: jax.random.normal(jax.random.fold_in(noise_key, t), (H.shape[0],), H.dtype))(ts)
    return z @ root.T


def sample_noise(noise_key, nqm: NQM, t0, num: int):
    """The noisy minima ξ_{t0}, …, ξ_{t0+num−1} ~ N(0, Σξ), shape (num, N); ξ_t uses ``fold_in(noise_key, t)``."""
    _checks.key("noise_key", noise_key)
    check_nqm(nqm)
    num = _checks.horizon("num", num)
    return _noise(noise_key, _model(nqm), t0, num)


def init_state(key, nqm: NQM) -> NQMState:
    """Sample φ0 ~ N(phi0_mean, S0) and return the state at t = 0 (``phi_prev = phi``)."""
    _checks.key("key", key)
    check_nqm(nqm)
    phi0 = _initial_phi(key, _model(nqm))
    return NQMState(phi0, phi0, jnp.zeros((), jnp.int32))


def _initial_phi(key, model):
    return model.phi0_mean + model.init_root @ jax.random.normal(key, model.phi0_mean.shape, model.H.dtype)


def _rollout(H, M, beta, optimizer, phi, phi_prev, xis):
    """Run len(xis) − 1 optimizer steps; step k uses ξ_k, the loss of the new iterate uses ξ_{k+1}."""

    def body(carry, xs):
        phi, phi_prev = carry
        xi, xi_next = xs
        if optimizer == "nesterov":
            y = phi + beta * (phi - phi_prev)
            new = y - M @ (H @ (y - xi))
        elif optimizer == "heavy_ball":
            new = phi - M @ (H @ (phi - xi)) + beta * (phi - phi_prev)
        else:
            new = phi - M @ (H @ (phi - xi))
        d = new - xi_next
        return (new, phi), 0.5 * d @ (H @ d)

    (phi, phi_prev), losses = lax.scan(body, (phi, phi_prev), (xis[:-1], xis[1:]))
    return phi, phi_prev, losses


@functools.partial(jax.jit, static_argnames=("num_steps", "optimizer"))
def _unroll(model, alpha, P, beta, state, noise_key, num_steps, optimizer):
    H = model.H
    M = _preconditioner(alpha, P, H.shape[0], H.dtype)
    xis = _noise(noise_key, model, state.t, num_steps + 1)
    phi, phi_prev, losses = _rollout(H, M, jnp.asarray(beta, H.dtype), optimizer,
                                     state.phi, state.phi_prev, xis)
    return NQMState(phi, phi_prev, state.t + num_steps), losses


def unroll(nqm: NQM, alpha, P, state: NQMState, noise_key, num_steps: int, *, optimizer: str = "sgd",
           momentum=0.0):
    """Advance ``state`` by ``num_steps`` inner steps (a truncation, for ES/PES).

    Returns ``(new_state, losses)`` where ``losses[k] = ℓ_{t+k+1}(φ_{t+k+1})`` (t = ``state.t``). Calling it
    twice with ``num_steps`` K gives exactly the trajectory of one call with 2K (same ``noise_key``).
    """
    n = check_nqm(nqm)
    num_steps = _checks.horizon("num_steps", num_steps)
    _check_theta(alpha, P, n, optimizer, momentum)
    if not isinstance(state, NQMState):
        raise ValueError(f"state must be a star.nqm.NQMState (see init_state); got {type(state).__name__}")
    _checks.vector("state.phi", state.phi, n)
    _checks.vector("state.phi_prev", state.phi_prev, n)
    return _unroll(_model(nqm), alpha, _P(P, n), momentum, state, noise_key, num_steps, optimizer)


def _split_seed(key):
    init_key, noise_key = jax.random.split(key)
    return init_key, noise_key


@functools.partial(jax.jit, static_argnames=("T", "optimizer"))
def _simulate_one(key, model, alpha, P, beta, T, optimizer):
    init_key, noise_key = _split_seed(key)
    phi0 = _initial_phi(init_key, model)
    state = NQMState(phi0, phi0, jnp.zeros((), jnp.int32))
    return _unroll(model, alpha, P, beta, state, noise_key, T, optimizer)[1]


def simulated_loss(key, nqm: NQM, alpha, P, T: int, *, optimizer: str = "sgd", momentum=0.0):
    r"""One Monte-Carlo sample of the meta-loss: :math:`\frac1T\sum_{t=1}^T\ell_t(\phi_t)` for the noise
    and initial state drawn from ``key`` (split into an init key and a noise key). Differentiable in
    ``alpha``, ``P`` (and ``momentum``); its expectation over ``key`` is :func:`expected_loss`."""
    _checks.key("key", key)
    n = check_nqm(nqm)
    T = _checks.horizon("T", T)
    _check_theta(alpha, P, n, optimizer, momentum)
    return jnp.mean(_simulate_one(key, _model(nqm), alpha, _P(P, n), momentum, T, optimizer))


def _seed_keys(key, num_seeds):
    return jax.random.split(key, num_seeds)


@functools.partial(jax.jit, static_argnames=("T", "num_seeds"))
def _seed_draws(key, model, T, num_seeds):
    def one(k):
        init_key, noise_key = _split_seed(k)
        return _initial_phi(init_key, model), _noise(noise_key, model, 0, T + 1)

    return jax.vmap(one)(_seed_keys(key, num_seeds))


def seed_draws(key, nqm: NQM, T: int, num_seeds: int):
    """The random inputs of :func:`simulate_losses`'s ``num_seeds`` runs of horizon ``T``: the initial states
    φ0, shape (num_seeds, N), and the noisy minima ξ_0..ξ_T, shape (num_seeds, T + 1, N) (seed ``i`` from
    ``jax.random.split(key, num_seeds)[i]``, exactly as the simulations draw them)."""
    _checks.key("key", key)
    check_nqm(nqm)
    T = _checks.horizon("T", T)
    num_seeds = _checks.horizon("num_seeds", num_seeds)
    return _seed_draws(key, _model(nqm), T, num_seeds)


@functools.partial(jax.jit, static_argnames=("T", "num_seeds", "optimizer"))
def _simulate_many(key, model, alpha, P, beta, T, num_seeds, optimizer):
    return jax.vmap(lambda k: _simulate_one(k, model, alpha, P, beta, T, optimizer))(_seed_keys(key, num_seeds))


def simulate_losses(key, nqm: NQM, alpha, P, T: int, num_seeds: int, *, optimizer: str = "sgd",
                    momentum=0.0):
    """Monte Carlo: per-step losses of ``num_seeds`` independent runs, shape (num_seeds, T) (vmapped).

    Seed ``i`` uses ``jax.random.split(key, num_seeds)[i]``, as :func:`meta_gradients` does.
    """
    _checks.key("key", key)
    n = check_nqm(nqm)
    T = _checks.horizon("T", T)
    num_seeds = _checks.horizon("num_seeds", num_seeds)
    _check_theta(alpha, P, n, optimizer, momentum)
    return _simulate_many(key, _model(nqm), alpha, _P(P, n), momentum, T, num_seeds, optimizer)


@functools.partial(jax.jit, static_argnames=("T", "num_seeds", "optimizer"))
def _meta_gradients(key, model, alpha, P, beta, T, num_seeds, optimizer):
    def loss(a, p, k):
        return jnp.mean(_simulate_one(k, model, a, p, beta, T, optimizer))

    return jax.vmap(jax.grad(loss, argnums=(0, 1)), in_axes=(None, None, 0))(alpha, P, _seed_keys(key, num_seeds))


def meta_gradients(key, nqm: NQM, alpha, P, T: int, num_seeds: int, *, optimizer: str = "sgd",
                   momentum=0.0):
    r"""Per-seed meta-gradients :math:`\nabla_i=\partial_{(\alpha,P)}\frac1T\sum_t\ell_t(\phi_t)` by
    reverse-mode differentiation through the simulated ``lax.scan``.

    Returns ``(d_alpha, d_P)`` with shapes (num_seeds,) and (num_seeds, N, N); ``P`` is treated as a full
    (not necessarily symmetric) matrix, as in Fig. 2a (``P=None`` means P = 0).
    """
    n = check_nqm(nqm)
    T = _checks.horizon("T", T)
    num_seeds = _checks.horizon("num_seeds", num_seeds)
    _check_theta(alpha, P, n, optimizer, momentum)
    dt = jnp.asarray(nqm.H).dtype
    P = jnp.zeros((n, n), dt) if P is None else jnp.asarray(P, dt)
    return _meta_gradients(key, _model(nqm), jnp.asarray(alpha, dt), P, momentum, T, num_seeds, optimizer)


def gradient_variance_trace(grads):
    r"""Trace of the empirical covariance of per-seed gradients, Eqs. (A.32)–(A.33):
    :math:`\operatorname{tr}\hat\Sigma=\frac1N\sum_i\|\nabla_i-\bar\nabla\|^2` (1/N, as in the paper).

    ``grads`` is a pytree whose leaves have the seed axis first (e.g. the output of :func:`meta_gradients`).
    """
    leaves = jax.tree_util.tree_leaves(grads)
    if not leaves:
        raise ValueError("grads must contain at least one array; got an empty pytree")
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in leaves}
    if None in sizes or len(sizes) != 1:
        raise ValueError(f"grads leaves must share a leading seed axis; got shapes {[np.shape(x) for x in leaves]}")
    total = 0.0
    for g in leaves:
        g = jnp.reshape(g, (g.shape[0], -1))
        total = total + jnp.sum(jnp.mean(jnp.square(g - jnp.mean(g, axis=0)), axis=0))
    return total
