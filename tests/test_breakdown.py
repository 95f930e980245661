"""star.breakdown: perturbation groups, the direction-bias stack, outcome classes, and the mechanism itself —
at ε-dominated weights the blackbox step is the direction head's output d (s · 1000 · d with s = 1e-3)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star import breakdown as B
from star.optim import preset
from star.tasks import get_task


@pytest.fixture(scope="module")
def theta():
    return B.nominal_theta(preset("star"))


def _changed(stack, theta):
    return {"/".join(str(getattr(k, "key", k)) for k in p): np.asarray(jnp.any(x[0] != y, axis=tuple(range(x[0].ndim))))
            for (p, x), y in zip(jax.tree_util.tree_flatten_with_path(stack)[0], jax.tree.leaves(theta))}


def test_perturbation_groups(theta):
    all_ = B.perturb(theta, 0.01, [0, 1])
    assert jax.tree.leaves(all_)[0].shape[0] == 2
    assert all(bool(np.any(v)) for v in _changed(all_, theta).values())
    d = B.perturb(theta, 0.01, [0], "head_d")
    w2, b2 = np.asarray(d["mlp"]["w2"][0]), np.asarray(d["mlp"]["b2"][0])
    assert np.all(w2[:, 1:] == 0) and np.all(w2[:, 0] != 0) and b2[0] != 0 and np.all(b2[1:] == 0)
    np.testing.assert_array_equal(d["mlp"]["w0"][0], theta["mlp"]["w0"])
    # the same seed gives the same noise on the elements two groups share
    np.testing.assert_array_equal(d["mlp"]["b2"][0, 0], all_["mlp"]["b2"][0, 0])
    hid = _changed(B.perturb(theta, 0.01, [0], "hidden_layers"), theta)
    assert hid["mlp/w0"] and not hid["mlp/w2"] and not hid["decay_logits/rms"]
    logits = _changed(B.perturb(theta, 0.01, [0], "decay_logits"), theta)
    assert logits["decay_logits/momentum"] and not logits["mlp/b0"]
    with pytest.raises(ValueError, match="group must be one of"):
        B.perturb(theta, 0.01, [0], "layer9")
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0"):
        B.perturb(theta, -1.0, [0])
    with pytest.raises(ValueError, match="at least one perturbation seed"):
        B.perturb(theta, 0.01, [])


def test_direction_bias_stack(theta):
    st = B.with_direction_bias(theta, [-1e-3, 2e-3])
    np.testing.assert_allclose(st["mlp"]["b2"][:, 0], [-1e-3, 2e-3])
    np.testing.assert_array_equal(st["mlp"]["b2"][:, 1:], 0.0)
    np.testing.assert_array_equal(st["mlp"]["w1"][1], theta["mlp"]["w1"])


def test_classify():
    c = np.log(10)
    assert B.classify(np.full(60, 0.4), 10, 0.4) == "ok"
    assert B.classify(np.full(60, 0.6), 10, 0.4) == "degraded"
    assert B.classify(np.full(60, c), 10, 0.4) == "dead"
    assert B.classify(np.full(60, 5.0), 10, 0.4) == "diverged"
    assert B.classify(np.r_[np.full(59, 0.4), np.nan], 10, 0.4) == "diverged"


@pytest.mark.slow
def test_the_blackbox_step_is_the_direction_output_where_the_preconditioner_is_capped(theta):
    """Step 1 on the small MLP with d = +2e-3 everywhere: v_1 = 1e-3 g² < 1e-6 for |g| < 0.032, so the
    blackbox step is −s d / sqrt(1e-6) = −d on those weights — the same for every weight."""
    task = get_task("fmnist8_mlp32")
    th = jax.tree.map(lambda x: x[0], B.with_direction_bias(theta, [2e-3]))
    paper = B.step_anatomy(task, preset("star"), th, jax.random.key(5), 1)["steps"][0]
    k = paper["layers"]["Dense_0/kernel"]
    assert k["eps_dominated"] > 0.99
    np.testing.assert_allclose(k["blackbox_mean"], -2e-3, rtol=0.05)  # v is not exactly 0
    assert k["blackbox_std"] < 0.1 * 2e-3  # nearly the same drift on every weight
    assert abs(k["blackbox_mean"]) > 5 * k["nominal_rms"]  # larger than the nominal step itself
    # (our bias-corrected eps-1e-4 preconditioner caps the gain at 100: tests/test_optim_variants.py)
    prof = B.gradient_profile(task, jax.random.key(5))
    assert prof["input_dim"] == 64 and 10 < prof["input_l1_mean"] < 30  # 8x8 pixels in [0, 1]
    assert prof["layers"]["Dense_0/kernel"]["below_sqrt_eps_over_1e-3"] > 0.99


def test_train_many_uses_common_random_numbers(theta):
    task = get_task("fmnist8_mlp32")
    st = B.with_direction_bias(theta, [0.0, 0.0, 3e-2])
    losses = B.train_many(task, preset("star"), st, jax.random.key(5), 40)
    assert losses.shape == (3, 40)
    np.testing.assert_array_equal(losses[0], losses[1])  # same θ, same init, same batches
    assert losses[0, 0] == losses[2, 0]  # the first loss is before any update
    assert np.mean(losses[2, -10:]) > np.mean(losses[0, -10:]) + 0.3  # d = 3e-2 breaks training


@pytest.mark.slow
def test_interventions_locate_the_fatal_weights(theta):
    """With d = +3e-2 the small MLP dies; without the blackbox term on its first layer it trains, and the
    unintervened run equals train_many's."""
    task = get_task("fmnist8_mlp32")
    st = B.with_direction_bias(theta, [3e-2])
    ref = B.train_many(task, preset("star"), st, jax.random.key(5), 40)
    same, dead = B.train_many_intervened(task, preset("star"), st, jax.random.key(5), 40, "none")
    np.testing.assert_allclose(same, ref, rtol=1e-5, atol=1e-6)
    saved, dead_saved = B.train_many_intervened(task, preset("star"), st, jax.random.key(5), 40,
                                                "no_blackbox_first_layer")
    assert np.mean(saved[0, -10:]) < np.mean(same[0, -10:]) - 0.3 and dead_saved[0] < dead[0]
    with pytest.raises(ValueError, match="intervention must be one of"):
        B.train_many_intervened(task, preset("star"), st, jax.random.key(5), 4, "elsewhere")
