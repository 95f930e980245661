"""star.optim.released: name/config mapping, checkpoint reading, offline behaviour, trajectory parity."""

import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import serialization

from star.optim import released, star_optimizer
from star.optim.released import ReleasedUnavailableError

DATA = Path(__file__).parent / "data" / "released"
STAR_RUN = "may27_2022_jamesnomop__best_arch2__wd0.1_bbnormTrue_stepmult0.001_nomstep0.001_rep0"
HYPER_RUN = "may27_2022_jamesnomop__best_arch2__wd0.0_bbnormFalse_stepmult0_nomstep0.001_rep1"


def test_name_settings_map_onto_the_presets():
    s = released.parse_name(STAR_RUN)
    assert s == {"outer_weight_decay": 0.1, "normalize_blackbox": True, "step_mult": 0.001,
                 "nominal_stepsize": 0.001, "rep": 0}
    assert released.preset_name(released.config_for(STAR_RUN)) == "star"
    h = released.config_for(HYPER_RUN)
    assert (h.step_mult, h.normalize_blackbox, released.preset_name(h)) == (0.0, False, "hyperparam")
    nonom = released.config_for(released.DEFAULT_RELEASED[2])
    assert released.preset_name(nonom) == "star_nonom" and nonom.nominal_stepsize == 0.0
    assert len(released.PAPER_RELEASED) == 12 and len(set(released.PAPER_RELEASED)) == 12
    with pytest.raises(ValueError, match="name must look like"):
        released.parse_name("may27_2022_whatever")


def test_config_gin_bindings_apply_and_the_name_wins():
    gin = ("# a comment\nMLPNomLOpt.exp_mult = (0.01, 0.01, 0.01)\nMLPNomLOpt.step_mult = 0.5\n"
           "MLPNomLOpt.hidden_size = 8\nouter_trainer.x = @foo\nMLPNomLOpt.other = @bar\n")
    assert released.parse_gin(gin) == {"exp_mult": (0.01, 0.01, 0.01), "step_mult": 0.5, "hidden_size": 8}
    cfg = released.config_for(STAR_RUN, gin)
    assert cfg.exp_mult == (0.01, 0.01, 0.01) and cfg.hidden_size == 8
    assert cfg.step_mult == 0.001  # from the name, not the gin


@pytest.mark.parametrize("run", [STAR_RUN, HYPER_RUN])
def test_local_copy_reproduces_the_reference_trajectory(run):
    rel = released.load_released(run, local_dir=DATA)
    assert rel.step == {STAR_RUN: 4321, HYPER_RUN: 4322}[run]
    with np.load(DATA / "expected.npz", allow_pickle=False) as z:
        params = {k: jnp.asarray(z[f"inputs/params0/{k}"]) for k in ("b", "w")}
        grads = {k: z[f"inputs/grads/{k}"] for k in ("b", "w")}
        expected = {k: z[f"{run}/params/{k}"] for k in ("b", "w")}
        stored_w0 = z[f"{run}/theta/['nn']['~']['w0']"]
    np.testing.assert_array_equal(rel.theta["mlp"]["w0"], stored_w0)
    opt = star_optimizer(rel.cfg, rel.theta, 2000)
    state = opt.init(params)
    for k in range(5):
        updates, state = opt.update({n: jnp.asarray(g[k]) for n, g in grads.items()}, state, params, value=1.0)
        params = optax.apply_updates(params, updates)
        for n in ("b", "w"):
            err = float(np.max(np.abs(np.asarray(params[n]) - expected[n][k])))
            assert err <= 1e-6, (run, k, n, err)


def test_parity_check_fails_for_a_wrong_setting():
    """The same trajectory check with the blackbox preconditioner switched off must fail."""
    import dataclasses

    rel = released.load_released(STAR_RUN, local_dir=DATA)
    wrong = dataclasses.replace(rel.cfg, normalize_blackbox=False)
    with np.load(DATA / "expected.npz", allow_pickle=False) as z:
        params = {k: jnp.asarray(z[f"inputs/params0/{k}"]) for k in ("b", "w")}
        g0 = {k: jnp.asarray(z[f"inputs/grads/{k}"][0]) for k in ("b", "w")}
        exp0 = z[f"{STAR_RUN}/params/w"][0]
    opt = star_optimizer(wrong, rel.theta, 2000)
    updates, _ = opt.update(g0, opt.init(params), params, value=1.0)
    assert np.max(np.abs(np.asarray(optax.apply_updates(params, updates)["w"]) - exp0)) > 1e-6


def test_offline_without_a_copy_fails_fast_and_clearly(tmp_path, monkeypatch):
    monkeypatch.setattr(released, "HOST", ("127.0.0.1", 9))  # nothing listens: refused at once
    t0 = time.perf_counter()
    with pytest.raises(ReleasedUnavailableError, match="unreachable"):
        released.load_released(STAR_RUN, cache_dir=tmp_path)
    assert time.perf_counter() - t0 < 2.0
    with pytest.raises(ReleasedUnavailableError, match="download=False"):
        released.load_released(STAR_RUN, cache_dir=tmp_path, download=False)
    with pytest.raises(ReleasedUnavailableError, match="has no"):
        released.load_released(STAR_RUN, local_dir=tmp_path)
    assert not any(tmp_path.iterdir())  # nothing written


def test_cached_copy_is_used_without_network(tmp_path, monkeypatch):
    monkeypatch.setattr(released, "HOST", ("127.0.0.1", 9))  # were the network asked, it would refuse
    dest = tmp_path / STAR_RUN
    dest.mkdir()
    (dest / "params").write_bytes((DATA / STAR_RUN / "params").read_bytes())
    rel = released.load_released(STAR_RUN, cache_dir=tmp_path)
    assert rel.preset == "star" and rel.source.startswith("cached copy")


def test_a_corrupt_checkpoint_is_a_clear_error():
    with pytest.raises(ValueError, match="params, gen_id, step"):
        released.read_checkpoint(serialization.msgpack_serialize({"theta": np.zeros(3)}))
    with pytest.raises(ValueError, match="not a flax msgpack checkpoint"):
        released.read_checkpoint(b"\xc1garbage")
