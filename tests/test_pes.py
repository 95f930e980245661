"""Tests of the PES / ES estimator bookkeeping (star.pes) on small problems with known answers.

The statistical correctness tests on the NQM (ES vs the exact smoothed gradient; PES unbiased vs truncated
ES biased) are in tests/test_pes_nqm.py.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from star import pes


@struct.dataclass
class LinearProblem:
    """Deterministic problem whose step loss is ``w·θ`` plus the episode step counter.

    The antithetic difference of every step is exactly ``2 w·ε`` of the current perturbation, and the
    loss reveals where each episode starts, so the estimator's split and accumulator can be checked
    exactly.
    """

    w: jax.Array
    horizon: int = struct.field(pytree_node=False)

    def init(self, theta, key):
        return jnp.zeros((), jnp.int32)

    def step(self, theta, t, key):
        t = t + 1
        return t, jnp.dot(self.w, theta["v"]) + 100.0 * t, jnp.asarray(True)


def _expected_eps(theta, key, std, n):
    k_eps, _ = jax.random.split(key)
    return pes.sample_perturbations(theta, k_eps, std, n)


def test_unroll_episode_boundaries_when_truncation_does_not_divide_horizon():
    # T = 7, K = 3: resets fall inside truncations; every episode contributes exactly T valid steps.
    prob = LinearProblem(w=jnp.ones(2), horizon=7)
    theta = {"v": jnp.zeros(2)}
    state = pes.init_state(prob, theta, jax.random.PRNGKey(0), num_tasks=2, random_offset=False)
    thetas = pes.antithetic_thetas(theta, {"v": jnp.zeros((2, 2))})
    inner, it = state.inner, state.iteration
    counters, resets = [], []
    unroll = jax.jit(lambda *a: pes.unroll(prob, *a, trunc_length=3))
    for i in range(7):  # 21 steps = 3 episodes of 7
        (inner, it), (loss, valid, reset) = unroll(thetas, inner, it, jax.random.PRNGKey(i))
        counters.append(np.asarray(loss[:, 0, 0]) / 100.0)
        resets.append(np.asarray(reset[:, 0]))
        assert bool(jnp.all(valid))
    counters = np.concatenate(counters)
    resets = np.concatenate(resets)
    np.testing.assert_allclose(counters, np.tile(np.arange(1, 8), 3))
    np.testing.assert_array_equal(np.flatnonzero(resets), [7, 14])


def test_random_initial_offset_desynchronises_problems():
    prob = LinearProblem(w=jnp.ones(2), horizon=50)
    state = pes.init_state(prob, {"v": jnp.zeros(2)}, jax.random.PRNGKey(3), num_tasks=64)
    it = np.asarray(state.iteration)
    assert it.min() >= 0 and it.max() < 50
    assert len(np.unique(it)) > 20


@pytest.mark.parametrize("estimator", ["pes", "tes"])
def test_split_and_accumulator_exact(estimator):
    """Δ_s = 2 w·ε exactly, so ĝ_i = [D_old ξ_i + D_new ε_i] / (2σ²) can be recomputed by hand."""
    std, n, T, K = 0.1, 3, 6, 4
    w = jnp.array([1.0, -2.0])
    prob = LinearProblem(w=w, horizon=T)
    theta = {"v": jnp.array([0.3, 0.7])}
    est = pes.TruncatedPES(prob, num_tasks=n, trunc_length=K, std=std, estimator=estimator, random_offset=False)
    state = est.init(theta, jax.random.PRNGKey(0))
    xi = np.zeros((n, 2))
    t = 0
    for call in range(5):
        key = jax.random.PRNGKey(10 + call)
        grad, state, out = est.gradient(theta, state, key)
        eps = np.asarray(_expected_eps(theta, key, std, n)["v"], np.float64)
        # simulate the episode counter: a step that finds it at T starts a new episode
        first_reset = None
        for s in range(K):
            if t == T:
                t = 0
                first_reset = s if first_reset is None else first_reset
            t += 1
        n_old = K if first_reset is None else first_reset
        d = 2.0 * eps @ np.asarray(w)  # [n]
        d_old, d_new = d * n_old / K, d * (K - n_old) / K
        if estimator == "pes":
            xi = xi + eps
            expected = (d_old[:, None] * xi + d_new[:, None] * eps) / (2 * std**2)
            if first_reset is not None:
                xi = eps
        else:
            expected = ((d_old + d_new)[:, None] * eps) / (2 * std**2)
        np.testing.assert_allclose(np.asarray(grad["v"]), expected.mean(0), rtol=2e-4, atol=1e-4)
        np.testing.assert_allclose(np.asarray(out.num_valid), K)
        assert bool(jnp.all(out.reset)) == (first_reset is not None)
        if estimator == "pes":
            np.testing.assert_allclose(np.asarray(state.accumulator["v"]), xi, rtol=1e-5, atol=1e-7)


def test_common_random_numbers_make_unperturbed_sides_identical():
    """With σ → tiny, both sides see the same keys: Δ is O(σ), not O(noise)."""

    @struct.dataclass
    class Noisy:
        horizon: int = struct.field(pytree_node=False)

        def init(self, theta, key):
            return jnp.zeros(())

        def step(self, theta, x, key):
            x = x * (1 - theta["a"]) + jax.random.normal(key)
            return x, x**2, jnp.asarray(True)

    est = pes.TruncatedPES(Noisy(horizon=8), num_tasks=16, trunc_length=8, std=1e-6)
    theta = {"a": jnp.array(0.5)}
    _, _, out = est.gradient(theta, est.init(theta, jax.random.PRNGKey(0)), jax.random.PRNGKey(1))
    assert float(jnp.max(jnp.abs(out.delta_loss))) < 1e-3
    assert float(out.loss) > 0.1


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_tasks": 0}, "num_tasks"),
        ({"num_tasks": 2.0}, "num_tasks"),
        ({"trunc_length": 0}, "trunc_length"),
        ({"trunc_length": 9}, "trunc_length must be in \\[1, horizon=8\\]"),
        ({"std": 0.0}, "std"),
        ({"std": -0.01}, "std"),
        ({"std": float("nan")}, "std"),
        ({"estimator": "reinforce"}, "estimator"),
    ],
)
def test_bad_settings_are_rejected(kwargs, match):
    args = dict(problem=LinearProblem(w=jnp.ones(2), horizon=8), num_tasks=2, trunc_length=4, std=0.01)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        pes.TruncatedPES(**args)


def test_problem_without_protocol_is_rejected():
    with pytest.raises(ValueError, match="TruncatedProblem"):
        pes.TruncatedPES(object(), num_tasks=2, trunc_length=4)


def test_signal_fraction_of_antithetic_es_on_a_linear_loss_is_the_ideal():
    """On a loss linear in θ, ES estimates from the real estimator have signal fraction N/(N+D+1)."""

    @struct.dataclass
    class Linear:
        """ℓ = w·θ on every step: Δ = 2 ε·w exactly."""

        w: jax.Array
        horizon: int = struct.field(pytree_node=False, default=1)

        def init(self, theta, key):
            return jnp.zeros(())

        def step(self, theta, inner, key):
            return inner, jnp.dot(self.w, theta), jnp.asarray(True)

    dim, num = 24, 4
    w = jax.random.normal(jax.random.PRNGKey(0), (dim,))
    est = pes.TruncatedPES(Linear(w), num_tasks=num, trunc_length=1, std=0.1, estimator="tes", random_offset=False)
    theta = jnp.zeros(dim)
    state = est.init(theta, jax.random.PRNGKey(1))
    G = np.stack([np.asarray(est.gradient(theta, state, jax.random.PRNGKey(10 + i))[0]) for i in range(300)])
    np.testing.assert_allclose(G.mean(0), w, atol=4 * G.std(0).max() / np.sqrt(len(G)))  # unbiased
    frac, se = pes.signal_fraction(G)
    ideal = pes.es_ideal_signal_fraction(num, dim)
    assert ideal == pytest.approx(4 / 29)
    assert abs(frac - ideal) < 3 * se, (frac, ideal, se)
    # pure noise: zero within 3 SE; noiseless: exactly 1
    noise = np.asarray(jax.random.normal(jax.random.PRNGKey(2), (300, dim)))
    frac0, se0 = pes.signal_fraction(noise)
    assert abs(frac0) < 3 * se0
    assert pes.signal_fraction(np.tile(np.asarray(w), (5, 1)))[0] == pytest.approx(1.0)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 3)), "M >= 3"),
    (np.zeros(5), "shape"),
    (np.full((4, 3), np.nan), "finite"),
])
def test_signal_fraction_bad_input(bad, match):
    with pytest.raises(ValueError, match=match):
        pes.signal_fraction(bad)
    with pytest.raises(ValueError, match="dim must be an integer >= 1"):
        pes.es_ideal_signal_fraction(8, 0)
