"""Our opt-in changes of the STAR update (not the paper's): a bias-corrected blackbox preconditioner, its eps,
and an output-layer scale. The defaults are the reference's update (pinned by tests/test_optim_parity.py);
here each flag is checked against a closed form of the first two steps."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star.optim import PRESETS, VARIANTS, StarConfig, init_meta_params, preset, star_optimizer
from star.optim.convert import load_meta_params, save_meta_params

S = 1e-3  # step_mult


def constant_direction_theta(cfg, d):
    """Meta-parameters whose MLP outputs d for head 0 and 0 for the other heads at every element."""
    theta = init_meta_params(cfg, jax.random.PRNGKey(0), init="nominal")
    theta["mlp"]["b2"] = theta["mlp"]["b2"].at[0].set(d)
    return theta


def two_steps(cfg, theta, grads):
    params = {"w": jnp.zeros((3, 4), jnp.float32)}
    opt = star_optimizer(cfg, theta, 10)
    state = opt.init(params)
    out = []
    for g in grads:
        upd, state = opt.update({"w": g}, state, params, value=jnp.float32(1.0))
        out.append(np.asarray(upd["w"], np.float64))
    return out


G1 = jnp.asarray(np.linspace(-0.2, 0.2, 12).reshape(3, 4), jnp.float32)
G2 = 0.5 * G1[::-1]


def blackbox_only(**flags):
    return dataclasses.replace(preset("star_nonom"), **flags)  # the blackbox term alone, preconditioned


def expected(d, grads, bias_correction, eps, c=0.999):
    v, out = 0.0, []
    for t, g in enumerate(grads, start=1):
        g = np.asarray(g, np.float64)
        v = c * v + (1 - c) * g * g
        vh = v / (1 - c**t) if bias_correction else v
        out.append(-S * d / np.sqrt(vh + eps))
    return out


@pytest.mark.parametrize("bias_correction,eps", [(False, 1e-6), (True, 1e-6), (False, 1e-4), (True, 1e-4)])
def test_blackbox_preconditioner_matches_its_closed_form(bias_correction, eps):
    cfg = blackbox_only(blackbox_bias_correction=bias_correction, blackbox_eps=eps)
    got = two_steps(cfg, constant_direction_theta(cfg, 0.5), [G1, G2])
    for k, (u, e) in enumerate(zip(got, expected(0.5, [G1, G2], bias_correction, eps))):
        np.testing.assert_allclose(u, e, rtol=2e-4, err_msg=f"step {k + 1}")
    # The check can fail: the other preconditioner's closed form is far off (31.6x at t = 1 for large |g|).
    wrong = expected(0.5, [G1, G2], not bias_correction, eps)[0]
    assert np.max(np.abs(got[0] - wrong) / np.abs(wrong)) > 0.5


def test_defaults_are_the_reference_update():
    for name, cfg in PRESETS.items():
        assert (cfg.blackbox_bias_correction, cfg.blackbox_eps, cfg.output_scale) == (False, 1e-6, 1.0), name
    cfg = blackbox_only()
    # eps given explicitly as the default takes the reference path: identical numbers
    same = two_steps(dataclasses.replace(cfg, blackbox_eps=1e-6), constant_direction_theta(cfg, 0.5), [G1])
    ref = two_steps(cfg, constant_direction_theta(cfg, 0.5), [G1])
    np.testing.assert_array_equal(same[0], ref[0])


def test_output_scale_is_a_reparameterisation_of_the_output_layer():
    cfg = preset("star")
    theta = init_meta_params(cfg, jax.random.PRNGKey(3), init="reference")
    scaled = {"mlp": dict(theta["mlp"]), "decay_logits": theta["decay_logits"]}
    scaled["mlp"]["w2"] = theta["mlp"]["w2"] * 0.1
    scaled["mlp"]["b2"] = theta["mlp"]["b2"] * 0.1
    a = two_steps(dataclasses.replace(cfg, output_scale=0.1), theta, [G1, G2])
    b = two_steps(cfg, scaled, [G1, G2])
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-9)
    c = two_steps(cfg, theta, [G1, G2])  # unscaled: a different update
    assert np.max(np.abs(c[1] - b[1])) > 10 * np.max(np.abs(b[1] - a[1])) + 1e-6


def test_variants_are_ours_and_round_trip(tmp_path):
    assert not set(VARIANTS) & set(PRESETS)
    for name, cfg in VARIANTS.items():
        assert preset(name) == cfg
        assert StarConfig.from_dict(cfg.to_dict()) == cfg
        theta = init_meta_params(cfg, jax.random.PRNGKey(0), init="nominal")
        save_meta_params(tmp_path / f"{name}.msgpack", cfg, theta)
        assert load_meta_params(tmp_path / f"{name}.msgpack")[0] == cfg


@pytest.mark.parametrize("field,value,pattern", [
    ("blackbox_eps", 0.0, "blackbox_eps must be a finite number > 0"),
    ("blackbox_eps", float("nan"), "blackbox_eps must be a finite number > 0"),
    ("output_scale", -1.0, "output_scale must be a finite number > 0"),
    ("blackbox_bias_correction", 1, "blackbox_bias_correction must be a bool"),
])
def test_bad_flags(field, value, pattern):
    with pytest.raises(ValueError, match=pattern):
        StarConfig(**{field: value})
    with pytest.raises(ValueError, match="preset name must be one of"):
        preset("star_nonsense")
