"""Statistical correctness of ES / PES on the NQM with the linear learned optimizer θ = (α, P).

Targets are exact: the gradient of the closed-form meta-loss Eq. (8) (``star.nqm.expected_loss``),
Gaussian-smoothed, :math:`\\nabla_\\theta\\,\\mathbb E_\\epsilon L(\\theta+\\epsilon;T)`, computed as the mean of
exact gradients at antithetic points θ ± ε (the odd Taylor terms cancel, so its Monte-Carlo error is
O(σ²) and negligible against the tolerance). Estimates are averaged over ``M`` independent batches of ``N``
inner problems; the standard error comes from the spread of the ``M`` batch means; the tolerance is
3 standard errors per coordinate (fixed seeds, so the outcome is deterministic).

PES smooths each truncation with its own perturbation; the difference to smoothing with one shared ε is
O(σ²) (σ = 0.01), far below the tolerance.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star import nqm
from star.inner import NQMProblem
from star.pes import TruncatedPES

THETA = {"alpha": jnp.array(0.3), "P": jnp.array([[0.1, 0.05], [0.05, -0.05]])}
STD = 0.01


def _flat(g):
    return np.concatenate([np.ravel(g["alpha"]), np.ravel(g["P"])]).astype(np.float64)


def closed_form(problem, theta):
    """Eq. (8) of the problem's episode (star.nqm.expected_loss)."""
    return nqm.expected_loss(problem.nqm, T=problem.horizon, **problem.closed_form_args(theta))


def smoothed_exact_gradient(problem, theta, std, num_pairs=64, seed=99):
    grad = jax.jit(jax.grad(lambda th: closed_form(problem, th)))
    eps = np.asarray(jax.random.normal(jax.random.PRNGKey(seed), (num_pairs, 5))) * std
    gs = []
    for e in eps:
        for sign in (1.0, -1.0):
            tp = {"alpha": theta["alpha"] + sign * e[0], "P": theta["P"] + sign * e[1:].reshape(2, 2)}
            gs.append(_flat(grad(tp)))
    return np.mean(gs, axis=0)


def episode_estimates(problem, theta, *, trunc, estimator, num_tasks, num_batches):
    """Mean over N problems of the estimates of one whole episode (all its truncations averaged)."""
    est = TruncatedPES(problem, num_tasks=num_tasks, trunc_length=trunc, std=STD, estimator=estimator,
                       random_offset=False)
    per_episode = problem.horizon // trunc
    means = []
    for m in range(num_batches):
        state = est.init(theta, jax.random.PRNGKey(1000 + m))
        total = 0.0
        for j in range(per_episode):
            g, state, out = est.gradient(theta, state, jax.random.PRNGKey(100 * m + j))
            assert bool(jnp.all(out.num_valid == trunc))
            total = total + _flat(g)
        means.append(total / per_episode)
    means = np.asarray(means)
    return means.mean(0), means.std(0, ddof=1) / np.sqrt(num_batches)


def test_es_matches_smoothed_closed_form_gradient():
    """Horizon = truncation (PES reduces to antithetic ES): mean within 3 SE of ∇E_ε L(θ+ε; T)."""
    problem = NQMProblem(nqm.paper_nqm(), horizon=10)
    target = smoothed_exact_gradient(problem, THETA, STD)
    mean, se = episode_estimates(problem, THETA, trunc=10, estimator="pes", num_tasks=512, num_batches=24)
    z = (mean - target) / se
    assert np.all(np.abs(z) < 3.0), (mean, target, se, z)
    # The test has power: the standard error is small against the gradient itself.
    assert np.max(se) < 0.1 * np.max(np.abs(target))


def test_pes_unbiased_for_full_horizon_while_truncated_es_is_biased():
    """Horizon 20 = 4 truncations of 5: PES (accumulated ξ) is unbiased for the full-horizon smoothed
    gradient; truncated ES without accumulation ignores how earlier truncations move later states and is
    off by many standard errors."""
    problem = NQMProblem(nqm.paper_nqm(), horizon=20)
    target = smoothed_exact_gradient(problem, THETA, STD)
    mean_pes, se_pes = episode_estimates(problem, THETA, trunc=5, estimator="pes", num_tasks=512, num_batches=24)
    z_pes = (mean_pes - target) / se_pes
    assert np.all(np.abs(z_pes) < 3.0), (mean_pes, target, se_pes, z_pes)

    mean_tes, se_tes = episode_estimates(problem, THETA, trunc=5, estimator="tes", num_tasks=512, num_batches=24)
    z_tes = (mean_tes - target) / se_tes
    assert np.max(np.abs(z_tes)) > 10.0, (mean_tes, target, se_tes, z_tes)
    # ... and the bias is large in absolute terms: at least 30% of the gradient norm.
    assert np.linalg.norm(mean_tes - target) > 0.3 * np.linalg.norm(target)


def test_nqm_problem_requires_alpha_somewhere():
    problem = NQMProblem(nqm.paper_nqm(), horizon=4)
    with pytest.raises(ValueError, match="alpha"):
        problem.closed_form_args({"P": jnp.zeros((2, 2))})
    fixed = NQMProblem(nqm.paper_nqm(), horizon=4, alpha=0.3)
    np.testing.assert_allclose(float(closed_form(fixed, {"P": THETA["P"]})),
                               float(closed_form(problem, THETA)), rtol=1e-6)
