"""Truncated Persistent Evolution Strategies (PES) and antithetic ES meta-gradient estimators.

The estimator follows appendix "PES in the code" (``learned_optimization/outer_trainers/truncated_pes.py``, after
Vicol et al. 2021) and works on any *truncated inner problem* (:class:`TruncatedProblem`):

* ``N`` parallel inner problems ``i``, each with a positive and a negative inner state.
* Per truncation of ``K`` inner steps: antithetic perturbations
  :math:`\\epsilon_i \\sim \\mathcal N(0, \\sigma^2 I)` of the meta-parameters; the + state is unrolled with
  :math:`\\theta + \\epsilon_i`, the − state with :math:`\\theta - \\epsilon_i`, both with the same data and
  PRNG keys (common random numbers). All ``2N`` unrolls run as one vectorised computation
  (``vmap`` over problems and sides, ``lax.scan`` over the ``K`` steps).
* Per step the problem returns a normalised meta-loss :math:`\\ell^\\pm_{i,s}` and a validity mask;
  :math:`\\Delta_{i,s} = \\ell^+_{i,s} - \\ell^-_{i,s}`.
* The accumulator is updated first, :math:`\\xi_i \\leftarrow \\xi_i + \\epsilon_i`; the truncation is split
  at the first episode reset: :math:`D^{\\rm old}_i` is the masked sum of :math:`\\Delta` over the steps
  before the reset, :math:`D^{\\rm new}_i` over the steps from the reset on, both divided by the number of
  valid steps in the whole truncation, and

  .. math::

     \\hat g = \\frac1N \\sum_i \\frac{1}{2\\sigma^2}\\big(D^{\\rm old}_i\\,\\xi_i + D^{\\rm new}_i\\,\\epsilon_i\\big).

  If problem ``i`` reset in this truncation, :math:`\\xi_i \\leftarrow \\epsilon_i` for the next one.

Because perturbations accumulate over an episode, PES is an unbiased estimate of the gradient of the
Gaussian-smoothed loss averaged over the *whole* episode (the horizon), not just over one truncation.
``estimator="tes"`` is truncated ES without accumulation (:math:`\\xi_i \\equiv \\epsilon_i`), which
ignores the influence of earlier truncations and is biased when the horizon exceeds the truncation.
With truncation = horizon and no initial offset, both reduce to antithetic ES on full episodes.

Episodes and resets. Each problem keeps an iteration counter; an episode lasts ``horizon`` steps. When a
step finds the counter at ``horizon``, the state is re-initialised (fresh inner parameters, same key on
both antithetic sides) and that same step already trains the new episode, so every episode contributes
exactly ``horizon`` losses. (The reference instead spends one masked step on each reset, so its episodes
occupy ``horizon + 1`` steps; we fold the reset into the first step so that truncation = horizon is exact
full-episode ES.) At initialisation the counters start at a random offset in ``[0, horizon)`` (the
reference's ``random_initial_iteration_offset = horizon``) so the ``N`` problems are desynchronised; as in
the reference, the first episode of each problem is then shorter. A truncation that does not divide the
horizon is handled the same way (the reset simply falls inside a truncation); a truncation longer than
the horizon is rejected.

Sharding: every leaf of :class:`PESState` has the problem index as its leading axis, so placing the state
on a 1-D device mesh with ``NamedSharding(mesh, PartitionSpec("tasks"))`` (see
:func:`star.outer_step.shard_pes_state`) distributes the ``N`` problems over devices; the mean over
problems becomes an all-reduce inside the compiled estimator.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
from jax import lax

from star import _checks

PyTree = Any

ESTIMATORS = ("pes", "tes")


@runtime_checkable
class TruncatedProblem(Protocol):
    """A truncated inner problem: what PES needs to know about inner training.

    Attributes:
        horizon: episode length ``T`` (number of inner steps per episode).

    Methods (pure, jit- and vmap-able; ``theta`` is the meta-parameter pytree):
        init(theta, key) -> inner_state: a fresh episode (e.g. new optimizee parameters and a fresh
            inner-optimizer state).
        step(theta, inner_state, key) -> (inner_state, loss, valid): one inner training step; ``loss``
            is the normalised meta-loss of this step (a float32 scalar), ``valid`` a bool scalar saying
            whether the step counts in the meta-objective. ``key`` determines the data batch and all
            other randomness of the step; it is shared between the two antithetic sides.

    Optional attribute:
        loss_ceiling: the largest meta-loss a step can report (a normaliser's clip, e.g. ``1.5 ln C``); a
            loss at the ceiling counts as diverged in :attr:`PESOutput.diverged`. Without it only
            non-finite losses count.
    """

    horizon: int

    def init(self, theta: PyTree, key: jax.Array) -> PyTree: ...

    def step(self, theta: PyTree, inner_state: PyTree, key: jax.Array) -> tuple[PyTree, jax.Array, jax.Array]: ...


class PESState(NamedTuple):
    """State of the estimator; every leaf has the problem index ``i`` (size ``N``) as leading axis.

    Attributes:
        inner: inner states, leaves shaped ``[N, 2, ...]``; side 0 is the ``θ+ε`` unroll, side 1 ``θ−ε``.
        iteration: ``[N]`` int32, steps taken in the current episode (``horizon`` means the episode ended).
        accumulator: the PES accumulator ξ, pytree like ``theta`` with leaves ``[N, ...]``.
    """

    inner: PyTree
    iteration: jax.Array
    accumulator: PyTree


class PESOutput(NamedTuple):
    """Diagnostics of one gradient estimate.

    Attributes:
        loss: mean over problems of the average of the + and − masked-mean losses (the reported meta-loss).
        delta_loss: ``[N]`` masked mean of Δ over the truncation (``D_old + D_new``).
        num_valid: ``[N]`` number of valid steps per problem.
        reset: ``[N]`` whether problem ``i`` started a new episode in this truncation.
        nonfinite_problems: number of problems whose Δ was NaN or ±inf.
        diverged: number of the ``2 N K`` inner losses of this truncation (valid steps only) that diverged:
            non-finite, or at the problem's ``loss_ceiling`` (where the normaliser clips a diverging loss).
            When all of them did, both antithetic sides report the same loss and the estimate is exactly 0.
    """

    loss: jax.Array
    delta_loss: jax.Array
    num_valid: jax.Array
    reset: jax.Array
    nonfinite_problems: jax.Array
    diverged: jax.Array


def check_settings(*, num_tasks=None, trunc_length=None, horizon=None, std=None, estimator=None) -> None:
    """Validate estimator settings at the public boundary (raises ``ValueError`` naming the argument)."""
    if num_tasks is not None:
        _checks.integer("num_tasks", num_tasks)
    if horizon is not None:
        _checks.integer("horizon", horizon, maximum=_checks.MAX_STEPS)
    if trunc_length is not None:
        trunc_length = _checks.integer("trunc_length", trunc_length)
        if horizon is not None and trunc_length > int(horizon):
            raise ValueError(
                f"trunc_length must be in [1, horizon={int(horizon)}] (at most one episode reset per "
                f"truncation); got {trunc_length}"
            )
    if std is not None:
        try:
            s = float(std)
        except (TypeError, ValueError):
            raise ValueError(f"std must be a finite float > 0; got {std!r}") from None
        if not math.isfinite(s) or s <= 0.0:
            raise ValueError(f"std must be a finite float > 0; got {std!r}")
    if estimator is not None and estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}")


def check_problem(problem) -> None:
    """Raise ``ValueError`` unless ``problem`` implements :class:`TruncatedProblem` with an integer horizon >= 1."""
    for attr in ("init", "step", "horizon"):
        if not hasattr(problem, attr):
            raise ValueError(f"problem must implement the TruncatedProblem protocol (missing {attr!r}); "
                             f"got {problem!r}")
    _checks.integer("problem.horizon", problem.horizon)


def sample_perturbations(theta: PyTree, key: jax.Array, std: float, num: int) -> PyTree:
    """ε_i ~ N(0, σ² I) over every leaf of ``theta``, stacked along a new leading axis of size ``num``."""
    if _checks.is_concrete(std):
        check_settings(std=std)
    leaves, treedef = jax.tree.flatten(theta)
    keys = jax.random.split(key, max(len(leaves), 1))
    eps = [
        std * jax.random.normal(k, (num,) + jnp.shape(leaf), dtype=jnp.result_type(leaf))
        for k, leaf in zip(keys, leaves)
    ]
    return jax.tree.unflatten(treedef, eps)


def antithetic_thetas(theta: PyTree, eps: PyTree) -> PyTree:
    """Stack ``θ+ε_i`` and ``θ−ε_i`` into leaves shaped ``[N, 2, ...]`` (side 0 is +)."""
    return jax.tree.map(lambda t, e: jnp.stack([t + e, t - e], axis=1), theta, eps)


def _bcast(mask: jax.Array, leaf: jax.Array) -> jax.Array:
    return jnp.reshape(mask, mask.shape + (1,) * (leaf.ndim - mask.ndim))


def init_state(problem: TruncatedProblem, theta: PyTree, key: jax.Array, num_tasks: int,
               random_offset: bool = True) -> PESState:
    """Initial PES state: ``N`` fresh inner problems (both sides identical), ξ = 0.

    As in the reference, the first episode is initialised with the unperturbed θ, and with
    ``random_offset`` the iteration counters start uniformly in ``[0, horizon)`` to desynchronise the
    problems (``random_initial_iteration_offset = horizon``).
    """
    num_tasks = _checks.integer("num_tasks", num_tasks)
    k_init, k_off = jax.random.split(key)
    keys = jax.random.split(k_init, num_tasks)
    inner = jax.vmap(problem.init, in_axes=(None, 0))(theta, keys)
    inner = jax.tree.map(lambda x: jnp.stack([x, x], axis=1), inner)
    if random_offset:
        iteration = jax.random.randint(k_off, (num_tasks,), 0, problem.horizon, dtype=jnp.int32)
    else:
        iteration = jnp.zeros((num_tasks,), jnp.int32)
    accumulator = jax.tree.map(lambda t: jnp.zeros((num_tasks,) + jnp.shape(t), jnp.result_type(t)), theta)
    return PESState(inner=inner, iteration=iteration, accumulator=accumulator)


def unroll(problem: TruncatedProblem, thetas: PyTree, inner: PyTree, iteration: jax.Array,
           key: jax.Array, trunc_length: int):
    """Unroll ``K`` inner steps of all ``N × 2`` states as one vectorised ``lax.scan``.

    Args:
        thetas: meta-parameters with leaves ``[N, 2, ...]``.
        inner: inner states with leaves ``[N, 2, ...]``.
        iteration: ``[N]`` episode step counters.
        key: the truncation's key; step ``s`` of problem ``i`` uses one key for both sides (CRN).

    Returns:
        ``(inner, iteration), (loss [K, N, 2], valid [K, N, 2], reset [K, N])``.
    """
    horizon = problem.horizon
    num = iteration.shape[0]
    k_steps, k_reset = jax.random.split(key)
    step_keys = jax.random.split(k_steps, trunc_length * num).reshape((trunc_length, num) + k_steps.shape[-1:])
    reset_keys = jax.random.split(k_reset, num)
    # CRN: vmap over the antithetic side with the key broadcast, then over problems.
    step2 = jax.vmap(jax.vmap(problem.step, in_axes=(0, 0, None)), in_axes=(0, 0, 0))
    init2 = jax.vmap(jax.vmap(problem.init, in_axes=(0, None)), in_axes=(0, 0))

    def maybe_reset(inner, reset):
        fresh = init2(thetas, reset_keys)
        return jax.tree.map(lambda f, x: jnp.where(_bcast(reset, x), f.astype(x.dtype), x), fresh, inner)

    def body(carry, step_key):
        inner, it = carry
        reset = it >= horizon
        # Resets are rare (once per episode per problem): only pay for a fresh init when one happens.
        inner = lax.cond(jnp.any(reset), maybe_reset, lambda s, r: s, inner, reset)
        it = jnp.where(reset, 0, it)
        inner, loss, valid = step2(thetas, inner, step_key)
        return (inner, it + 1), (loss.astype(jnp.float32), valid.astype(bool), reset)

    return lax.scan(body, (inner, iteration), step_keys)


def estimate_gradient(problem: TruncatedProblem, theta: PyTree, state: PESState, key: jax.Array, *,
                      std: float, trunc_length: int, estimator: str = "pes") -> tuple[PyTree, PESState, PESOutput]:
    """One truncated PES (or truncated ES) meta-gradient estimate; pure and jit-able.

    Implements steps 1–5 of appendix "PES in the code" (see the module docstring for the formula). ``estimator``
    is ``"pes"`` (accumulated perturbations ξ) or ``"tes"`` (truncated ES, ξ ≡ ε).

    Returns:
        ``(grad, new_state, output)`` with ``grad`` shaped like ``theta``.

    Raises:
        ValueError: (on concrete arguments) ``std`` not a finite float > 0, or non-finite ``theta``.
    """
    if _checks.is_concrete(std):
        check_settings(std=std)
    _checks.finite_tree("theta", theta)
    num = state.iteration.shape[0]
    k_eps, k_unroll = jax.random.split(key)
    eps = sample_perturbations(theta, k_eps, std, num)
    thetas = antithetic_thetas(theta, eps)
    (inner, iteration), (loss, valid, reset) = unroll(problem, thetas, state.inner, state.iteration,
                                                      k_unroll, trunc_length)
    mask = jnp.logical_and(valid[..., 0], valid[..., 1])  # [K, N]
    maskf = mask.astype(jnp.float32)
    num_valid = jnp.sum(maskf, axis=0)  # [N]
    denom = jnp.maximum(num_valid, 1.0)
    delta = jnp.where(mask, loss[..., 0] - loss[..., 1], 0.0)  # [K, N]
    after = jnp.cumsum(reset.astype(jnp.int32), axis=0) > 0  # steps from the first reset on
    d_new = jnp.sum(jnp.where(after, delta, 0.0), axis=0) / denom
    d_old = jnp.sum(jnp.where(after, 0.0, delta), axis=0) / denom
    did_reset = after[-1]
    scale = 1.0 / (2.0 * std**2)

    if estimator == "pes":
        xi = jax.tree.map(lambda a, e: a + e, state.accumulator, eps)
        per_problem = jax.tree.map(
            lambda x, e: scale * (_bcast(d_old, x) * x + _bcast(d_new, e) * e), xi, eps)
        new_acc = jax.tree.map(lambda x, e: jnp.where(_bcast(did_reset, x), e, x), xi, eps)
    elif estimator == "tes":
        per_problem = jax.tree.map(lambda e: scale * _bcast(d_old + d_new, e) * e, eps)
        new_acc = state.accumulator
    else:
        raise ValueError(f"estimator must be one of {ESTIMATORS}; got {estimator!r}")
    grad = jax.tree.map(lambda g: jnp.mean(g, axis=0), per_problem)

    side_loss = jnp.sum(jnp.where(mask[..., None], loss, 0.0), axis=0) / denom[:, None]  # [N, 2]
    out = PESOutput(
        loss=jnp.mean(side_loss),
        delta_loss=d_old + d_new,
        num_valid=num_valid,
        reset=did_reset,
        nonfinite_problems=jnp.sum(~jnp.isfinite(d_old + d_new)),
        diverged=diverged_count(loss, valid, getattr(problem, "loss_ceiling", None)),
    )
    return grad, PESState(inner=inner, iteration=iteration, accumulator=new_acc), out


def diverged_count(loss: jax.Array, valid: jax.Array, ceiling: float | None = None) -> jax.Array:
    """How many valid entries of ``loss`` diverged: non-finite, or ``>= ceiling`` (a clipped loss), int32."""
    bad = ~jnp.isfinite(loss)
    if ceiling is not None:
        bad = bad | (loss >= jnp.asarray(ceiling, loss.dtype))
    return jnp.sum(bad & valid).astype(jnp.int32)


@functools.lru_cache(maxsize=64)
def _jitted_init(num_tasks: int, random_offset: bool):
    return jax.jit(lambda problem, theta, key: init_state(problem, theta, key, num_tasks, random_offset))


@functools.lru_cache(maxsize=64)
def _jitted_gradient(std: float, trunc_length: int, estimator: str):
    return jax.jit(lambda problem, theta, state, key: estimate_gradient(
        problem, theta, state, key, std=std, trunc_length=trunc_length, estimator=estimator))


@dataclasses.dataclass(frozen=True)
class TruncatedPES:
    """Truncated PES / ES on a :class:`TruncatedProblem`, with jitted ``init`` and ``gradient``.

    Args:
        problem: the inner problem (its ``horizon`` is the episode length ``T``); a pytree (e.g. a
            ``flax.struct.dataclass``), passed to the compiled functions as an argument.
        num_tasks: number ``N`` of parallel inner problems (each unrolled on both antithetic sides).
        trunc_length: truncation length ``K``, ``1 <= K <= T`` (paper: 50).
        std: perturbation standard deviation σ > 0 (paper: 0.01).
        estimator: ``"pes"`` (paper) or ``"tes"`` (truncated ES without accumulation).
        random_offset: desynchronise the problems with a random initial iteration in ``[0, T)``.

    Raises:
        ValueError: for a problem without the protocol, ``num_tasks < 1``, ``trunc_length`` outside
            ``[1, horizon]``, ``std`` not a finite positive float, or an unknown estimator.
    """

    problem: Any
    num_tasks: int
    trunc_length: int
    std: float = 0.01
    estimator: str = "pes"
    random_offset: bool = True

    def __post_init__(self):
        check_problem(self.problem)
        check_settings(num_tasks=self.num_tasks, trunc_length=self.trunc_length,
                       horizon=self.problem.horizon, std=self.std, estimator=self.estimator)

    @property
    def init_fn(self) -> Callable:
        """The pure (un-jitted) ``(theta, key) -> PESState``."""
        return lambda theta, key: init_state(self.problem, theta, key, self.num_tasks, self.random_offset)

    @property
    def gradient_fn(self) -> Callable:
        """The pure (un-jitted) ``(theta, state, key) -> (grad, state, PESOutput)``."""
        return lambda theta, state, key: estimate_gradient(
            self.problem, theta, state, key, std=float(self.std), trunc_length=int(self.trunc_length),
            estimator=self.estimator)

    def init(self, theta: PyTree, key: jax.Array) -> PESState:
        """Jitted :func:`init_state` (the problem is a jit argument, so its data are not baked in)."""
        return _jitted_init(int(self.num_tasks), bool(self.random_offset))(self.problem, theta, key)

    def gradient(self, theta: PyTree, state: PESState, key: jax.Array):
        """Jitted :func:`estimate_gradient`; estimators with equal settings share the compiled program."""
        gradient = _jitted_gradient(float(self.std), int(self.trunc_length), self.estimator)
        return gradient(self.problem, theta, state, key)

    @property
    def inner_steps_per_gradient(self) -> int:
        """Inner steps per outer gradient: ``2 N K`` (both antithetic sides)."""
        return 2 * int(self.num_tasks) * int(self.trunc_length)


# ----------------------------------------------------------------------------------------------------
# diagnostics


def es_ideal_signal_fraction(num_tasks: int, dim: int) -> float:
    """Signal fraction of one antithetic ES estimate when the loss is exactly linear in θ.

    With :math:`\\Delta_i = 2\\epsilon_i\\cdot\\nabla` the estimate is
    :math:`\\hat g = \\frac1N\\sum_i (u_i\\cdot\\nabla)u_i` with :math:`u_i \\sim \\mathcal N(0, I_D)`, so
    :math:`\\mathbb E\\hat g = \\nabla` and :math:`\\mathbb E|\\hat g|^2 = |\\nabla|^2 (1 + (D+1)/N)`: the
    fraction of the squared norm that is signal is :math:`N/(N+D+1)`, the best any ES estimate with ``N``
    antithetic pairs in ``D`` dimensions can do (curvature, chaos and data noise only lower it).
    """
    num_tasks = _checks.integer("num_tasks", num_tasks)
    dim = _checks.integer("dim", dim)
    return num_tasks / (num_tasks + dim + 1)


def signal_fraction(estimates) -> tuple[float, float]:
    """How much of independent gradient estimates is signal: ``(fraction, jackknife standard error)``.

    For ``M`` independent, identically distributed estimates :math:`g_1..g_M` of one gradient
    (rows of ``estimates``, shape ``[M, D]``), :math:`\\mathbb E\\langle g_i, g_j\\rangle = |\\mathbb E g|^2`
    for :math:`i \\ne j`, so

    .. math:: f = \\frac{\\operatorname{mean}_{i\\ne j}\\langle g_i, g_j\\rangle}{\\operatorname{mean}_i |g_i|^2}

    estimates :math:`|\\mathbb E g|^2/\\mathbb E|g|^2`: 1 for noiseless estimates, 0 for pure noise
    (negative values are sampling error). The standard error is the leave-one-estimate-out jackknife.
    Compare with :func:`es_ideal_signal_fraction`.

    Raises:
        ValueError: if ``estimates`` is not a finite ``[M, D]`` array with ``M >= 3``.
    """
    import numpy as np

    G = np.asarray(estimates, dtype=np.float64)
    if G.ndim != 2 or G.shape[0] < 3 or G.shape[1] < 1:
        raise ValueError(f"estimates must have shape [M, D] with M >= 3 estimates; got shape {G.shape}")
    if not np.all(np.isfinite(G)):
        raise ValueError("estimates must be finite (zero non-finite entries first, as the outer loop does)")
    gram = G @ G.T
    m = len(G)

    def frac(idx):
        sub = gram[np.ix_(idx, idx)]
        denom = np.mean(np.diag(sub))
        if denom == 0.0:
            return 0.0
        return ((sub.sum() - np.trace(sub)) / (len(idx) * (len(idx) - 1))) / denom

    full = frac(np.arange(m))
    loo = np.array([frac(np.delete(np.arange(m), i)) for i in range(m)])
    se = np.sqrt((m - 1) / m * np.sum((loo - loo.mean()) ** 2))
    return float(full), float(se)
