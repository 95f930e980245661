"""star.optim: presets, meta-parameters, the optax interface, nominal start, files, bad input."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from star.optim import (
    PRESETS,
    StarConfig,
    init_meta_params,
    num_meta_params,
    preset,
    star_optimizer,
)
from star.optim.convert import load_meta_params, save_meta_params

NAMES = ("star", "hyperparam", "blackbox", "star_nopre", "star_nonom")


def small_params(key):
    """A matrix and a vector (scalars and 4-D kernels are covered by the parity tests)."""
    k1, k2 = jax.random.split(key)
    return {"w": jax.random.normal(k1, (7, 5)) * 0.5, "b": jax.random.normal(k2, (5,)) * 0.1}


def grads_at(key, params, k):
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.fold_in(key, k), len(leaves))
    return jax.tree_util.tree_unflatten(tree, [jax.random.normal(kk, p.shape) * 0.1 for kk, p in zip(keys, leaves)])


# ----------------------------------------------------------------------------- configuration


def test_presets_match_the_paper_settings():
    """The paper's settings (App. B.2, C.2): beta = s = alpha_nom = 1e-3; the ablations switch single terms off."""
    assert set(PRESETS) == set(NAMES)
    star = preset("star")
    assert star.exp_mult == (1e-3, 1e-3, 1e-3) and star.step_mult == 1e-3 and star.nominal_stepsize == 1e-3
    assert star.normalize_blackbox and star.nominal_controller and star.nominal_grad_estimator == "AdamAggMo"
    assert preset("hyperparam").step_mult == 0.0
    assert not preset("star_nopre").normalize_blackbox
    assert preset("star_nonom").nominal_stepsize == 0.0
    bb = preset("blackbox")
    assert bb.num_outputs == 2 and bb.nominal_stepsize == 0.0 and not bb.normalize_blackbox
    assert preset("star", step_mult=0.01).step_mult == 0.01  # overrides
    assert hash(star) == hash(preset("star"))  # static-argument friendly


def test_meta_parameter_counts():
    """The book's appendix: 207 = 156+4+16+4+16+4 + 7 decay logits for STAR; 197 for Blackbox (2 heads)."""
    for name in NAMES:
        cfg = preset(name)
        theta = jax.eval_shape(lambda k: init_meta_params(cfg, k), jax.random.PRNGKey(0))
        n = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(theta))
        assert n == num_meta_params(cfg) == (197 if name == "blackbox" else 207)


def test_reference_initialization():
    """Truncated normal (cut at 2 std) with std 1/sqrt(fan-in), zero biases, zero decay logits."""
    cfg = preset("star", hidden_size=64)  # more weights for the statistics
    init = jax.jit(init_meta_params, static_argnums=(0, 2))
    theta = init(cfg, jax.random.PRNGKey(3), "reference")
    for i in range(3):
        w = np.asarray(theta["mlp"][f"w{i}"])
        scale = 1.0 / np.sqrt(w.shape[0])
        assert np.all(np.abs(w) <= 2 * scale + 1e-7)
        # the std of a standard normal truncated to [-2, 2] is 0.8796
        assert abs(w.std() / scale - 0.8796) < 0.1, (i, w.std() / scale)
        assert not np.any(np.asarray(theta["mlp"][f"b{i}"]))
    assert all(not np.any(np.asarray(v)) for v in theta["decay_logits"].values())
    same = init(cfg, jax.random.PRNGKey(3), "reference")
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(same)))


# ----------------------------------------------------------------------------- the nominal start


def nominal_adamaggmo_updates(grads_seq, params, lr=1e-3):
    """Independent float64 NumPy AdamAggMo without bias correction (the book's appendix, `AdamAggMo`)."""
    b = np.array([0.9, 0.99, 0.999])
    c = 0.999
    out = []
    m = {k: np.zeros((3,) + np.shape(v)) for k, v in params.items()}
    v = {k: np.zeros(np.shape(p)) for k, p in params.items()}
    for g in grads_seq:
        upd = {}
        for k in params:
            gk = np.asarray(g[k], np.float64)
            m[k] = b.reshape((3,) + (1,) * gk.ndim) * m[k] + (1 - b.reshape((3,) + (1,) * gk.ndim)) * gk
            v[k] = c * v[k] + (1 - c) * gk * gk
            upd[k] = -lr * np.mean(m[k] / np.sqrt(v[k] + 1e-6), axis=0)
        out.append(upd)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_nominal_init_starts_as_the_nominal_optimizer(name):
    """init="nominal" zeroes the output layer: heads d = a = b = 0, so the update is exactly
    alpha_nom * AdamAggMo (zero for the configurations without a nominal term)."""
    cfg = preset(name)
    theta = init_meta_params(cfg, jax.random.PRNGKey(1), init="nominal")
    params = small_params(jax.random.PRNGKey(2))
    if name != "star":  # one tensor kind suffices for the other configurations (compile time)
        params = {"w": params["w"]}
    opt = star_optimizer(cfg, theta, num_steps=50)
    state = opt.init(params)
    grads_seq = [grads_at(jax.random.PRNGKey(4), params, k) for k in range(4)]
    expected = nominal_adamaggmo_updates(grads_seq, {k: np.asarray(v) for k, v in params.items()}, cfg.nominal_stepsize)

    step = jax.jit(lambda th, g, s, p: star_optimizer(cfg, th, 50).update(g, s, p, value=jnp.float32(1.0)))
    for k, g in enumerate(grads_seq):
        updates, state = step(theta, g, state, params)
        for t in params:
            # the update is recovered as (p - step) - p, so allow a few ulps of |p| (|p| < 2 here)
            np.testing.assert_allclose(np.asarray(updates[t]), expected[k][t], rtol=1e-5, atol=5e-7,
                                       err_msg=f"{name} {t} step {k}")
        params = optax.apply_updates(params, updates)


_BATCH = {}


def batched_first_update():
    """One compiled ``vmap`` over meta-parameters of the first STAR update (shared by two tests)."""
    if not _BATCH:
        cfg = preset("star")
        params = small_params(jax.random.PRNGKey(2))
        g = grads_at(jax.random.PRNGKey(4), params, 0)
        state = star_optimizer(cfg, init_meta_params(cfg, jax.random.PRNGKey(0)), 10).init(params)

        def one(theta, g, state, params):  # the loss may be passed as loss= as well as value=
            return star_optimizer(cfg, theta, 10).update(g, state, params, loss=jnp.float32(2.0))

        keys = jax.random.split(jax.random.PRNGKey(7), 8)
        thetas = {init: jax.vmap(lambda k: init_meta_params(cfg, k, init=init))(keys)
                  for init in ("reference", "nominal")}
        both = jax.tree_util.tree_map(lambda a, b: jnp.concatenate([a, b]), thetas["reference"], thetas["nominal"])
        ub, sb = jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))(both, g, state, params)
        _BATCH.update(cfg=cfg, one=one, thetas=both, updates=ub, states=sb, g=g, state=state, params=params)
    return _BATCH


def test_reference_init_first_step_is_huge_and_nominal_is_small():
    """The divergence hazard's mechanism (the STAR chapter): at t = 1, v = 1e-3 g^2 (no bias correction), so
    the Adam-normalized blackbox step s d e^{beta a} / sqrt(v + 1e-6) ~ |d| for small gradients,
    O(0.1-1) per element with a random MLP, while the nominal step is at most alpha_nom * 0.1 * 31.6.
    (Fashion-MNIST consequences: ``experiments/optim_hazard.py``, ``results/optim_hazard/``.)"""
    b = batched_first_update()
    largest = np.max(np.stack([np.abs(np.asarray(x)).reshape(16, -1).max(axis=1)
                               for x in jax.tree_util.tree_leaves(b["updates"])]), axis=0)
    reference, nominal = largest[:8], largest[8:]
    # nominal: |m_i / sqrt(v + 1e-6)| <= (1 - b_i) / sqrt(1e-3) at t = 1 (and b_i >= 0.9)
    nominal_bound = 1e-3 * 0.1 / np.sqrt(1e-3)
    assert nominal.max() <= nominal_bound * 1.001
    assert reference.min() > 10 * nominal_bound, reference


# ----------------------------------------------------------------------------- transformations


def test_jit_vmap_over_meta_parameters():
    """PES evaluates perturbed theta in a vmap: the batched update equals the per-theta updates."""
    b = batched_first_update()
    single = jax.jit(b["one"])
    for i in (0, 5, 11):
        th = jax.tree_util.tree_map(lambda x: x[i], b["thetas"])
        u, s = single(th, b["g"], b["state"], b["params"])
        for x, y in zip(jax.tree_util.tree_leaves((u, s)), jax.tree_util.tree_leaves((b["updates"], b["states"]))):
            np.testing.assert_allclose(np.asarray(y[i]), np.asarray(x), rtol=2e-5, atol=1e-6)
        assert not np.allclose(np.asarray(u["w"]), 0.0)


def test_state_layout():
    cfg = preset("star")
    params = small_params(jax.random.PRNGKey(2))
    s = star_optimizer(cfg, init_meta_params(cfg, jax.random.PRNGKey(0)), 10).init(params)
    assert s.momentum["w"].shape == (3, 7, 5) and s.rms["w"].shape == (7, 5)
    # factored dims of (7, 5): d0 = 0 (largest), d1 = 1; of (3, 3, 2, 4): d0 = 3, d1 = 1 (stable tie)
    assert s.fac_v_row["w"].shape == (3, 5) and s.fac_v_col["w"].shape == (3, 7)
    k = star_optimizer(cfg, init_meta_params(cfg, jax.random.PRNGKey(0)), 10).init({"k": jnp.ones((3, 3, 2, 4))})
    assert k.fac_v_row["k"].shape == (3, 3, 3, 2) and k.fac_v_col["k"].shape == (3, 3, 2, 4)
    assert s.fac_v_diag["b"].shape == (3, 5) and s.fac_v_row["b"].shape == (3, 0) and s.fac_v_diag["w"].shape == (3, 0)
    sc = star_optimizer(cfg, init_meta_params(cfg, jax.random.PRNGKey(0)), 10).init({"s": jnp.float32(1.0)})
    assert sc.fac_v_diag["s"].shape == (3,) and sc.momentum["s"].shape == (3,) and sc.rms["s"].shape == ()
    assert int(s.iteration) == 0 and int(s.num_steps) == 10


# ----------------------------------------------------------------------------- files


def test_save_and_load_meta_params(tmp_path):
    cfg = preset("star_nopre")
    theta = init_meta_params(cfg, jax.random.PRNGKey(5))
    path = tmp_path / "theta.msgpack"
    save_meta_params(path, cfg, theta, metadata={"note": "test"})
    cfg2, theta2 = load_meta_params(path)
    assert cfg2 == cfg
    for a, b in zip(jax.tree_util.tree_leaves(theta), jax.tree_util.tree_leaves(theta2)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # the same architecture under another configuration (different step sizes) loads
    cfg3, _ = load_meta_params(path, preset("star"))
    assert cfg3 == preset("star")
    with pytest.raises(ValueError, match="cfg: the meta-parameters .* hidden_size=4"):
        load_meta_params(path, preset("star", hidden_size=8))
    with pytest.raises(ValueError, match="cfg: .*num_outputs=4"):
        load_meta_params(path, preset("blackbox"))
    other = tmp_path / "other.msgpack"
    from flax import serialization

    other.write_bytes(serialization.msgpack_serialize({"a": np.zeros(3)}))
    with pytest.raises(ValueError, match="not a STAR meta-parameter file"):
        load_meta_params(other)


# ----------------------------------------------------------------------------- bad input


def test_unknown_preset():
    with pytest.raises(ValueError, match="preset name must be one of .*'adam'"):
        preset("adam")


@pytest.mark.parametrize(
    "field, value, pattern",
    [
        ("nominal_stepsize", -1e-3, "nominal_stepsize must be a finite number >= 0; got -0.001"),
        ("step_mult", -0.1, "step_mult must be a finite number >= 0"),
        ("weight_decay", float("nan"), "weight_decay must be a finite number >= 0"),
        ("initial_momentum_decays", (0.9, 1.0, 0.999),
         r"initial_momentum_decays must lie in the open interval \(0, 1\)"),
        ("initial_rms_decays", (0.0,), r"initial_rms_decays must lie in the open interval \(0, 1\)"),
        ("initial_adafactor_decays", (0.9, 0.99), "initial_adafactor_decays must have 3 entries"),
        ("exp_mult", (1e-3, 1e-3), "exp_mult must have 3 entries"),
        ("nominal_grad_estimator", "Lion", "nominal_grad_estimator must be one of"),
        ("hidden_size", 0, "hidden_size must be an integer >= 1"),
        ("num_outputs", 3, "num_outputs must be 4 .* or 2"),
    ],
)
def test_inconsistent_config(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        StarConfig(**{field: value})


def test_blackbox_heads_cannot_have_a_nominal_term():
    with pytest.raises(ValueError, match="num_outputs=2 .*nominal_stepsize"):
        dataclasses.replace(preset("blackbox"), nominal_stepsize=1e-3)


def test_meta_parameters_of_the_wrong_architecture():
    theta_bb = init_meta_params(preset("blackbox"), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"theta does not match .*mlp/w2 has shape \(4, 2\), expected \(4, 4\)"):
        star_optimizer(preset("star"), theta_bb, num_steps=10)
    theta = init_meta_params(preset("star"), jax.random.PRNGKey(0))
    del theta["decay_logits"]["rms"]
    with pytest.raises(ValueError, match="missing decay_logits/rms"):
        star_optimizer(preset("star"), theta, num_steps=10)
    with pytest.raises(ValueError, match="theta must be a dict"):
        star_optimizer(preset("star"), [1, 2], num_steps=10)


@pytest.mark.parametrize("num_steps", [0, -5, 2.5, True])
def test_num_steps_must_be_positive(num_steps):
    theta = init_meta_params(preset("star"), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="num_steps must be an integer > 0"):
        star_optimizer(preset("star"), theta, num_steps=num_steps)


def test_non_float_parameter_leaves():
    cfg = preset("star")
    opt = star_optimizer(cfg, init_meta_params(cfg, jax.random.PRNGKey(0)), num_steps=10)
    with pytest.raises(ValueError, match=r"params must have floating-point leaves; leaf \['n'\] has dtype int32"):
        opt.init({"w": jnp.ones((2, 2)), "n": jnp.arange(3)})
    params = {"w": jnp.ones((2, 2))}
    state = opt.init(params)
    with pytest.raises(ValueError, match="updates must have floating-point leaves"):
        opt.update({"w": jnp.ones((2, 2), jnp.int32)}, state, params, value=1.0)


def test_missing_loss_and_params():
    cfg = preset("star")
    opt = star_optimizer(cfg, init_meta_params(cfg, jax.random.PRNGKey(0)), num_steps=10)
    params = {"w": jnp.ones((2, 2))}
    state = opt.init(params)
    with pytest.raises(ValueError, match=r"value \(the training loss; also accepted as loss=\) is required"):
        opt.update(params, state, params)
    with pytest.raises(ValueError, match="params is required"):
        opt.update(params, state, value=1.0)


def test_bad_init_and_implementation_names():
    cfg = preset("star")
    with pytest.raises(ValueError, match="init must be one of .*'zeros'"):
        init_meta_params(cfg, jax.random.PRNGKey(0), init="zeros")
    theta = init_meta_params(cfg, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="implementation must be one of"):
        star_optimizer(cfg, theta, 10, implementation="cuda")
    with pytest.raises(ValueError, match="cfg must be a StarConfig"):
        star_optimizer({"step_mult": 1e-3}, theta, 10)
