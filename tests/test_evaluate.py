"""star.evaluate: the one "train per seed, then evaluate" loop, the summaries a grid stores, and the reports of
``evaluate``, ``meta-curve`` and ``summarize`` called as library functions (paths relative to a root, arguments
named)."""

import json

import jax
import numpy as np
import optax
import pytest

from star import evaluate as E
from star import runs
from star.metatrain import meta_train_named
from star.outer_step import MetaTrainConfig
from star.tasks import get_task
from star.train import evaluate, train


@pytest.fixture(scope="module")
def small_task():
    return get_task("fmnist8_mlp32")


def test_train_seeds_is_train_then_evaluate_per_seed(small_task):
    factory = E.adam_factory()
    got = E.train_seeds(small_task, factory, 30, [3, 5], meta_params=1e-2, chunk_size=10)
    assert [r.seed for r in got] == [3, 5]
    for r in got:  # recomputed here with the library's own train and evaluate, not trusted
        ref = train(small_task, factory, 30, jax.random.key(r.seed), meta_params=1e-2, chunk_size=10, progress=False)
        np.testing.assert_array_equal(r.losses, ref.losses)
        assert r.test == evaluate(small_task, ref.params)
    assert not np.array_equal(got[0].losses, got[1].losses)  # the seed matters


def test_train_curves_summarises_the_losses(small_task):
    seeds = E.train_seeds(small_task, E.adam_factory(), 40, [1], meta_params=1e-2, chunk_size=20)
    rep = E.train_curves(small_task, E.adam_factory(), 1e-2, 40, [1], chunk=20, block=10)
    (row,) = rep["per_seed"]
    losses = np.asarray(seeds[0].losses, np.float64)
    assert rep["steps"] == 40 and rep["block"] == 10 and len(row["curve"]) == 4
    np.testing.assert_allclose(row["curve"], losses.reshape(4, 10).mean(axis=1))
    assert row["final_train_loss"] == pytest.approx(losses[-2:].mean())  # the last 5 % of the steps
    assert row["test_loss"] == pytest.approx(seeds[0].test["loss"])
    # a diverged run keeps its non-finite numbers as None
    huge = E.train_curves(small_task, lambda lr: optax.sgd(lr), 1e30, 20, [1], chunk=20)["per_seed"][0]
    assert huge["test_loss"] is None or huge["max_train_loss"] is None


@pytest.fixture(scope="module")
def nqm_run(tmp_path_factory):
    """A 4-step run of the linear optimizer on the NQM, made by the library in a folder relative to a root."""
    root = tmp_path_factory.mktemp("root")
    cfg = MetaTrainConfig(outer_steps=4, num_tasks=4, trunc_length=10, lr=1e-2, checkpoint_every=2, seed=3)
    res = meta_train_named(optimizer="linear", task="nqm", config=cfg, out_dir="runs/nqm", root=root, horizon=20,
                           progress=False, command="test")
    assert res.out_dir == root / "runs/nqm"
    return root


def test_meta_curve_and_evaluate_resolve_paths_against_the_root(nqm_run):
    path, report = E.meta_curve("runs/nqm", root=nqm_run, num_seeds=2, eval_seed=7, progress=False, command="test")
    assert path == nqm_run / "runs/nqm" / runs.META_CURVE and json.loads(path.read_text()) == report
    assert report["run"] == "runs/nqm"  # as given: no machine path in the stored file
    assert [r["step"] for r in report["curve"]] == [0, 2, 4] and report["provenance"]["command"] == "test"
    assert report["version"] == 1 and runs.RunFolder(nqm_run / "runs/nqm").meta_curve() == report  # its schema
    ev = E.evaluate_stored_run("runs/nqm", root=nqm_run, seed=1, out="eval.json", command="test")
    assert json.loads((nqm_run / "eval.json").read_text()) == ev and ev["run"] == "runs/nqm"
    assert ev["expected_loss"] < ev["expected_loss_initial"]


@pytest.mark.parametrize("kwargs, match", [
    ({"num_seeds": 0}, "num_seeds must be an integer >= 1"),
    ({"every": 0}, "every must be an integer >= 1"),
    ({"eval_seed": -1}, "eval_seed must be an integer >= 0"),
    ({"steps": 0}, "steps must be an integer >= 1"),
])
def test_meta_curve_names_a_bad_argument_and_writes_nothing(nqm_run, tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        E.meta_curve("runs/nqm", root=nqm_run, out=tmp_path / "c.json", progress=False, **kwargs)
    assert not (tmp_path / "c.json").exists()


def test_meta_train_named_names_a_bad_argument_before_touching_the_folder(tmp_path):
    cfg = MetaTrainConfig(outer_steps=2, num_tasks=2, trunc_length=5)
    for kwargs, match in (({"optimizer": "adam9"}, "optimizer must be one of"),
                          ({"task": "imagenet"}, "task must be one of"),
                          ({"horizon": 0}, "horizon must be an integer >= 1"),
                          ({"horizon": 3}, "trunc_length must be in")):
        args = {"optimizer": "linear", "task": "nqm", "config": cfg, "out_dir": "run", "root": tmp_path,
                "horizon": 20, **kwargs}
        with pytest.raises(ValueError, match=match):
            meta_train_named(**args)
    assert not (tmp_path / "run").exists()


def _logged_run(folder, meta_loss, horizon=40, trunc_length=4):
    """A run folder holding only a configuration and a log whose step ``k`` (from 1) has ``meta_loss[k - 1]``."""
    folder.mkdir()
    (folder / runs.CONFIG).write_text(json.dumps({"horizon": horizon, "trunc_length": trunc_length}))
    (folder / runs.LOG).write_text("".join(
        json.dumps({"step": k, "meta_loss": float(v), "nan_count": 0, "inner_steps_per_s": 100.0}) + "\n"
        for k, v in enumerate(meta_loss, start=1)))
    return folder


def test_summarize_run_fits_the_slope_after_every_problem_has_reset(tmp_path):
    """The least-squares slope over the steps after horizon / trunc_length (here 10) recovers a known trend; the
    steps before it (inner training of fresh problems, here a steep drop) do not count."""
    steps = np.arange(1, 41)
    wiggle = 1e-3 * (-1.0) ** steps
    loss = np.where(steps <= 10, 5.0 - 0.3 * steps, 2.0 - 0.01 * steps) + wiggle
    s = E.summarize_run(_logged_run(tmp_path / "down", loss))
    assert s["stationary_after_step"] == 10 and s["stationary_steps"] == 30 and s["steps_logged"] == 40
    np.testing.assert_allclose(s["stationary_slope_per_step"], -0.01, atol=2e-4)
    assert s["stationary_slope_z"] < -10
    np.testing.assert_allclose(s["meta_loss_first_10_mean"], loss[:10].mean())
    np.testing.assert_allclose(s["meta_loss_last_10_mean"], loss[-10:].mean())
    flat = E.summarize_run(_logged_run(tmp_path / "flat", np.where(steps <= 10, 5.0 - 0.3 * steps, 2.0) + wiggle))
    assert abs(flat["stationary_slope_per_step"]) < 2e-4 and abs(flat["stationary_slope_z"]) < 3
