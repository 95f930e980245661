"""star.ood_suite (with star.ood_tuning, star.ood_records, star.ood_scores) and star.baselines: NAdamW parity
with optax, batched = looped training, tuning, the stored records and their reuse (the chapter's modules are
tested in test_book_ood.py, the learned rows in test_learned_optimizers.py)."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from star import baselines, learned_optimizers, ood_records, ood_scores, ood_suite, ood_tuning
from star.batched import train_batched
from star.book import ood_results
from star.optim import init_meta_params, preset, save_meta_params
from star.tasks import get_task
from star.train import train


def _params():
    k1, k2 = jax.random.split(jax.random.key(0))
    return {"w": jax.random.normal(k1, (4, 3)), "b": jax.random.normal(k2, (3,))}


def _run(opt, steps=7):
    params, grads_key = _params(), jax.random.key(1)
    state = opt.init(params)
    for t in range(steps):
        g = jax.tree.map(lambda p: jax.random.normal(jax.random.fold_in(grads_key, t), p.shape), params)
        u, state = opt.update(g, state, params)
        params = optax.apply_updates(params, u)
    return params


@pytest.mark.parametrize("nesterov", [0.0, 1.0])
def test_nadamw_matches_optax(nesterov):
    h = baselines.NAdamWHparams(*(jnp.float32(v) for v in (3e-3, 0.8, 0.95, 1e-6, 1e-2, nesterov, 0.0, 1.0, 1.0)))
    ours = _run(baselines.nadamw(h, 100))
    ref = _run(optax.adamw(3e-3, b1=0.8, b2=0.95, eps=1e-6, weight_decay=1e-2, nesterov=bool(nesterov)))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


def test_adam_hparams_are_optax_adam():
    ours = _run(baselines.nadamw(baselines.adam_hparams(1e-2), 100))
    ref = _run(optax.adam(1e-2))
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7)


def test_schedule_warmup_constant_then_cosine_to_the_floor():
    h = baselines.adam_hparams(1.0)._replace(warmup_fraction=jnp.float32(0.1), decay_start=jnp.float32(0.5),
                                             min_lr_mult=jnp.float32(0.01))
    lr = np.array([float(baselines.learning_rate_at(h, t, 100)) for t in range(100)])
    np.testing.assert_allclose(lr[:10], np.arange(1, 11) / 10, rtol=1e-5)
    np.testing.assert_allclose(lr[10:51], 1.0, rtol=1e-6)
    assert np.all(np.diff(lr[50:]) <= 1e-7)
    assert lr[-1] == pytest.approx(0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * 49 / 50)), rel=1e-4)


def test_half_decade_grid_and_search_space():
    np.testing.assert_allclose(baselines.adam_lr_grid(1e-5, 1e-1),
                               [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1])
    assert len(baselines.adam_lr_grid(1e-7, 1.0)) == 15  # the paper's / learned_optimization's grid
    with pytest.raises(ValueError, match="low and high must be"):
        baselines.adam_lr_grid(2e-5, 1e-1)
    h = baselines.sample_nadamw_hparams(jax.random.key(0), 500)
    lr = np.asarray(h.learning_rate)
    assert lr.min() >= 1e-5 * 0.999 and lr.max() <= 1e-1 * 1.001 and np.ptp(np.log10(lr)) > 3.5
    assert set(np.unique(np.asarray(h.nesterov))) == {0.0, 1.0}
    assert np.all((np.asarray(h.b1) >= 0) & (np.asarray(h.b1) < 1)) and np.all(np.asarray(h.b2) < 1)
    assert 0.3 < np.mean(np.asarray(h.weight_decay) == 0) < 0.7
    again = baselines.sample_nadamw_hparams(jax.random.key(0), 500)
    assert np.array_equal(np.asarray(h.eps), np.asarray(again.eps))  # a pure function of the key


@pytest.fixture(scope="module")
def tiny_task():
    return get_task("digits_mlp32", batch_size=16)


def test_batched_training_equals_a_loop_over_train(tiny_task):
    """Row r of the batched run is exactly star.train.train with key r and config r."""
    make = lambda h: baselines.nadamw(h, 12)  # noqa: E731
    h = baselines.stack_hparams(baselines.adam_hparams([1e-3, 1e-2]),
                                baselines.sample_nadamw_hparams(jax.random.key(3), 1))
    keys = jnp.stack([jax.random.key(s) for s in (5, 6, 7)])
    res = train_batched(tiny_task, make, h, keys, 12, chunk_size=4, progress=False)
    assert res.losses.shape == (3, 12)
    for r in range(3):
        row = jax.tree.map(lambda x: x[r], h)
        loop = train(tiny_task, make, 12, keys[r], meta_params=row, chunk_size=4, progress=False).losses
        np.testing.assert_allclose(res.losses[r], loop, rtol=2e-5, atol=1e-6)
    with pytest.raises(ValueError, match="multiple of chunk_size"):
        train_batched(tiny_task, make, h, keys, 10, chunk_size=4, progress=False)
    with pytest.raises(ValueError, match="leading run axis"):
        train_batched(tiny_task, make, h, keys[:2], 12, chunk_size=4, progress=False)


def test_final_loss_and_failures():
    c = np.array([[2.0, 1.0, 0.5, 0.5], [2.0, 3.0, 3.0, 3.0], [2.0, 1.0, np.nan, np.nan]])
    fin = ood_scores.final_loss(c, fraction=0.5)
    assert fin[0] == 0.5 and fin[1] == 3.0 and math.isinf(fin[2])
    # row 1 ends above its initial loss, row 2 diverged
    np.testing.assert_array_equal(ood_scores.failed_runs(c), [False, True, True])
    np.testing.assert_array_equal(ood_scores.failed_runs(np.array([[2.0, 1.9]])), [False])


def _save_learned(folder, name, seed):
    folder.mkdir(parents=True)
    cfg = preset(name)
    save_meta_params(folder / "meta_params.msgpack", cfg, init_meta_params(cfg, jax.random.key(seed), init="nominal"))
    return folder


def test_run_task_stores_results_and_resumes(tmp_path, tiny_task):
    runs = {n: _save_learned(tmp_path / "results" / "metatrain" / n, n, i)
            for i, n in enumerate(("star", "blackbox"))}
    learned = [learned_optimizers.load_learned(n, [str(p)]) for n, p in runs.items()]
    assert learned[0].sources[0]["path"] == "results/metatrain/star/meta_params.msgpack"
    cfg = ood_suite.SuiteConfig(num_steps=8, adam_lr_range=(1e-3, 1e-2), nadamw_samples=2, tune_seeds=(9,),
                          eval_seeds=(0, 1), width=3, chunk_size=4)
    out = tmp_path / "ood"
    rec = ood_suite.run_task("digits_mlp32", cfg, learned, out, progress=False, provenance={"command": "test"})
    assert rec["adam"]["learning_rates"] == [1e-3, 3e-3, 1e-2] and len(rec["nadamw"]["samples"]) == 2
    assert set(rec["optimizers"]) == {"adam", "nadamw", "star", "blackbox"}
    assert rec["provenance"]["command"] == "test" and rec["wall_s"]["total"] > 0
    assert json.loads((out / "digits_mlp32.json").read_text())["fingerprint"] == rec["fingerprint"]
    results = ood_records.load_results(out)
    curves = results["digits_mlp32"][1]
    assert curves["adam"].shape == (2, 8) and curves["star"].shape == (2, 8)
    # nominal-init Blackbox makes zero updates: its loss stays at the initial loss, same start as Adam's
    np.testing.assert_allclose(curves["blackbox"][:, 0], curves["adam"][:, 0], rtol=1e-6)
    # resuming: same settings -> the stored record, not recomputed
    (out / "digits_mlp32.npz").touch()
    again = ood_suite.run_task("digits_mlp32", cfg, learned, out, progress=False)
    assert again["provenance"]["finished_utc"] == rec["provenance"]["finished_utc"]
    with pytest.raises(ValueError, match="no finished meta-training run"):
        learned_optimizers.load_learned("star", [str(tmp_path / "nothing")])
    with pytest.raises(ValueError, match="disjoint"):
        ood_suite.SuiteConfig(num_steps=8, adam_lr_range=(1e-3, 1e-2), nadamw_samples=2, tune_seeds=(0,),
                        eval_seeds=(0, 1), width=3, chunk_size=4)


def _legacy(record):
    """The same record in the layout written before the baselines had their own part (format 1)."""
    old = {k: v for k, v in record.items() if k not in ("baselines", "learned_fingerprint")}
    old["provenance"] = dict(record["baselines"]["provenance"])
    old["wall_s"] = {"tuning": 1.0, "evaluation": 2.0, "total": 3.0}
    return dict(old, format_version=1)


class _Training:
    """Every compiled training call of the suite, seen through the public seam ``star.batched.train_batched`` (as
    :mod:`star.ood_suite` and :mod:`star.ood_tuning` call it), by kind: ``tune`` and ``eval`` (the baselines'
    tuning and evaluation runs) and ``learned`` (the learned optimizers), with the seeds each call trains on."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = ood_suite.train_batched

        def watched(task, make, rows, keys, num_steps, *, desc="", **kw):
            word = desc.split()[1] if len(desc.split()) > 1 else ""
            self.calls.append((word if word in ("tune", "eval") else "learned", keys))
            return real(task, make, rows, keys, num_steps, desc=desc, **kw)

        for module in (ood_suite, ood_tuning):  # the learned optimizers' calls and the baselines'
            monkeypatch.setattr(module, "train_batched", watched)

    def kinds(self) -> set:
        return {k for k, _ in self.calls}

    def seeds(self, kind: str, candidates) -> set:
        """Which of the ``candidates`` seeds the calls of ``kind`` trained on."""
        data = [np.asarray(jax.random.key_data(k)) for c, keys in self.calls if c == kind for k in keys]
        return {s for s in candidates
                if any(np.array_equal(d, np.asarray(jax.random.key_data(jax.random.key(s)))) for d in data)}

    def take(self) -> set:
        """The kinds seen since the last call, forgetting them."""
        kinds, self.calls = self.kinds(), []
        return kinds


def test_run_task_reevaluates_learned_without_retuning(tmp_path, tiny_task, monkeypatch):
    """Same suite settings: the baselines' part is kept bit for bit and only the learned rows are computed."""
    root = tmp_path / "results" / "metatrain"
    s0, s1, bb = _save_learned(root / "s0", "star", 0), _save_learned(root / "s1", "star", 1), \
        _save_learned(root / "bb", "blackbox", 2)
    cfg = ood_suite.SuiteConfig(num_steps=8, adam_lr_range=(1e-3, 1e-2), nadamw_samples=2, tune_seeds=(9,),
                          eval_seeds=(0, 1), width=3, chunk_size=4)
    training = _Training(monkeypatch)
    out = tmp_path / "ood"
    first = ood_suite.run_task("digits_mlp32", cfg, [learned_optimizers.load_learned("star", [s0])], out,
                               progress=False, provenance={"command": "first"})
    with np.load(out / "digits_mlp32.npz") as z:
        before = {k: z[k] for k in z.files}
    assert training.take() == {"tune", "eval", "learned"} and not first["baselines"]["reused"]
    # two meta-training runs of STAR and a new row: learned part only
    learned = [learned_optimizers.load_learned("star", [s0, s1]), learned_optimizers.load_learned("blackbox", [bb])]
    rec = ood_suite.run_task("digits_mlp32", cfg, learned, out, progress=False, provenance={"command": "second"})
    assert training.take() == {"learned"}
    with np.load(out / "digits_mlp32.npz") as z:
        after = {k: z[k] for k in z.files}
    for k in ("curves/adam", "curves/nadamw", "tuning/adam_final", "tuning/nadamw_final"):
        assert after[k].dtype == before[k].dtype and after[k].tobytes() == before[k].tobytes(), k
    for k in ("adam", "nadamw"):
        assert rec[k] == first[k] and rec["optimizers"][k] == first["optimizers"][k]
    assert rec["baselines"]["reused"] and rec["baselines"]["provenance"]["command"] == "first"
    assert rec["baselines"]["wall_s"] == first["baselines"]["wall_s"]
    assert rec["provenance"]["command"] == "second" and rec["wall_s"]["tuning"] == 0.0
    assert rec["learned"]["star"]["num_meta_runs"] == 2 and after["curves/star"].shape == (4, 8)
    # meta-run 0 is the θ of the first record, on the same seeds: the same curves
    np.testing.assert_allclose(after["curves/star"][:2], before["curves/star"], rtol=1e-5)
    assert ood_results.meta_run_curves(rec, ood_records.load_results(out)["digits_mlp32"][1], "star").shape == (2, 2, 8)
    # nothing changed: the stored record, nothing computed
    assert ood_suite.run_task("digits_mlp32", cfg, learned, out, progress=False) == rec
    assert training.take() == set()
    # a changed θ file of a learned optimizer: re-evaluated, baselines still kept
    _save_learned(root / "s1b", "star", 7)
    (s1 / "meta_params.msgpack").write_bytes((root / "s1b" / "meta_params.msgpack").read_bytes())
    changed = [learned_optimizers.load_learned("star", [s0, s1]), learned_optimizers.load_learned("blackbox", [bb])]
    rec2 = ood_suite.run_task("digits_mlp32", cfg, changed, out, progress=False, provenance={"command": "third"})
    assert training.take() == {"learned"} and rec2["learned_fingerprint"] != rec["learned_fingerprint"]
    assert rec2["baselines"]["provenance"]["command"] == "first"
    # a record of the previous format (one provenance for everything) is reused the same way
    (out / "digits_mlp32.json").write_text(json.dumps(_legacy(rec2)))
    rec3 = ood_suite.run_task("digits_mlp32", cfg, [learned_optimizers.load_learned("star", [s0])], out, progress=False,
                        provenance={"command": "fourth"})
    assert training.take() == {"learned"}
    assert rec3["baselines"]["provenance"]["command"] == "first"
    assert rec3["baselines"]["wall_s"] == {"tuning": 1.0, "evaluation": 2.0,
                                           "evaluation_includes": ["blackbox", "star"]}
    # another suite configuration: the baselines are redone; the learned curves, which do not depend on the
    # NAdamW search, are kept
    other = dataclasses.replace(cfg, search_seed=1)
    rec4 = ood_suite.run_task("digits_mlp32", other, [learned_optimizers.load_learned("star", [s0])], out,
                              progress=False, provenance={"command": "fifth"})
    assert training.take() == {"tune", "eval"} and not rec4["baselines"]["reused"]
    assert rec4["baselines"]["provenance"]["command"] == "fifth" and rec4["learned_kept_from"]["command"] == "fourth"
    # another number of steps: the learned optimizers are evaluated again too
    longer = dataclasses.replace(other, num_steps=12)
    ood_suite.run_task("digits_mlp32", longer, [learned_optimizers.load_learned("star", [s0])], out, progress=False)
    assert training.take() == {"tune", "eval", "learned"}
    # so is a stored file that lacks the baselines' arrays
    np.savez(out / "digits_mlp32.npz", **{"curves/adam": after["curves/adam"]})
    ood_suite.run_task("digits_mlp32", other, [learned_optimizers.load_learned("blackbox", [bb])], out, progress=False)
    assert training.take() == {"tune", "eval", "learned"}


def test_cli_rejects_bad_arguments_before_any_work(capsys):
    from star.__main__ import main

    assert main(["ood", "--tasks", "no_such_task"]) == 2
    assert "unknown: ['no_such_task']" in capsys.readouterr().err
    assert main(["ood", "--tasks", "digits_mlp32", "--learned", "star"]) == 2
    assert "NAME=RUN_DIR" in capsys.readouterr().err
    assert main(["ood", "--tasks", "digits_mlp32", "--learned", "star=/nonexistent/run"]) == 2
    assert "no finished meta-training run" in capsys.readouterr().err
    assert main(["ood", "--tasks", "digits_mlp32", "--learned-set", "nope"]) == 2
    assert "--learned-set must be one of" in capsys.readouterr().err
    assert main(["ood", "--tasks", "digits_mlp32", "--baselines-from", "/nonexistent/ood"]) == 2
    assert "--baselines-from must be a folder" in capsys.readouterr().err
    assert main(["ood", "--tasks", "digits_mlp32", "--learned", "x=results/metatrain/fmnist8_grid/s0@x"]) == 2
    assert "non-negative integer" in capsys.readouterr().err
    assert main(["ood", "--tasks", "digits_mlp32", "--steps", "5"]) == 2
    assert "--steps must be an integer >= 10" in capsys.readouterr().err
    assert main(["ood", "--tasks", "digits_mlp32", "--adam-near", "/nonexistent/ood"]) == 2
    assert "holds no stored record of ['digits_mlp32']" in capsys.readouterr().err


def test_stored_cpu_suite_holds_the_default_learned_rows():
    """The chapter's regeneration command (the CLI defaults) reproduces the learned rows that are stored."""
    from pathlib import Path

    stored = ood_records.load_results(Path(__file__).resolve().parents[1] / "results" / "ood" / "cpu")
    assert len(stored) >= 16
    for name, (rec, curves) in stored.items():
        assert {k: [s["path"].rsplit("/", 1)[0] for s in v["sources"]] for k, v in rec["learned"].items()} == \
            {k: list(v) for k, v in learned_optimizers.DEFAULT_LEARNED.items()}, name
        for opt in learned_optimizers.DEFAULT_LEARNED:
            shape = ood_results.meta_run_curves(rec, curves, opt).shape
            assert shape[:2] == (len(learned_optimizers.META_SEEDS), 3), (name, opt)


def test_baselines_reused_from_another_folder(tmp_path, tiny_task, monkeypatch):
    root = tmp_path / "results" / "metatrain"
    s0 = _save_learned(root / "s0", "star", 0)
    cfg = ood_suite.SuiteConfig(num_steps=8, adam_lr_range=(1e-3, 1e-2), nadamw_samples=2, tune_seeds=(9,),
                          eval_seeds=(0, 1), width=3, chunk_size=4)
    suite, controls = tmp_path / "results" / "ood" / "cpu", tmp_path / "results" / "ood" / "cpu_controls"
    first = ood_suite.run_task("digits_mlp32", cfg, [learned_optimizers.load_learned("star", [s0])], suite,
                               progress=False, provenance={"command": "suite"})
    training = _Training(monkeypatch)
    lo = learned_optimizers.load_learned("star_theta0", [str(s0)])
    rec = ood_suite.run_task("digits_mlp32", cfg, [lo], controls, progress=False, provenance={"command": "controls"},
                       baselines_from=suite)
    assert training.take() == {"learned"}  # the baselines neither tuned nor evaluated again
    assert rec["baselines"]["reused"] and rec["baselines"]["reused_from"] == "results/ood/cpu"
    assert rec["adam"] == first["adam"] and rec["baselines"]["provenance"]["command"] == "suite"
    assert set(rec["optimizers"]) == {"adam", "nadamw", "star_theta0"}
    np.testing.assert_array_equal(ood_records.load_results(controls)["digits_mlp32"][1]["adam"],
                                  ood_records.load_results(suite)["digits_mlp32"][1]["adam"])
    with pytest.raises(ValueError, match="holds no stored record of task 'digits_conv'"):
        ood_suite.run_task("digits_conv", cfg, [lo], controls, progress=False, baselines_from=suite)
    other = dataclasses.replace(cfg, search_seed=1)
    with pytest.raises(ValueError, match="made with other suite settings"):
        ood_suite.run_task("digits_mlp32", other, [lo], tmp_path / "elsewhere", progress=False, baselines_from=suite)


def test_more_tuning_seeds_keep_the_stored_tuning_runs(tmp_path, tiny_task, monkeypatch):
    """Adding a tuning seed runs only that seed; the scores are the means over all seeds, as a full rerun's."""
    root = tmp_path / "results" / "metatrain"
    s0 = _save_learned(root / "s0", "star", 0)
    one = ood_suite.SuiteConfig(num_steps=8, adam_lr_range=(1e-3, 1e-1), nadamw_samples=2, tune_seeds=(9,),
                          eval_seeds=(0, 1), width=3, chunk_size=4)
    two = dataclasses.replace(one, tune_seeds=(9, 11))
    learned = [learned_optimizers.load_learned("star", [s0])]
    full = ood_suite.run_task("digits_mlp32", two, learned, tmp_path / "full", progress=False)
    out = tmp_path / "ood"
    first = ood_suite.run_task("digits_mlp32", one, learned, out, progress=False, provenance={"command": "one seed"})
    training = _Training(monkeypatch)
    rec = ood_suite.run_task("digits_mlp32", two, learned, out, progress=False, provenance={"command": "two seeds"})
    assert training.seeds("tune", (9, 11)) == {11} and "learned" not in training.kinds()
    ext = rec["baselines"]["extended"]
    assert ext["tune_seeds_kept"] == [9] and ext["tune_seeds_run"] == [11] and ext["kept_from"]["command"] == "one seed"
    np.testing.assert_allclose(rec["adam"]["scores"], full["adam"]["scores"], rtol=1e-5)
    np.testing.assert_allclose(rec["nadamw"]["scores"], full["nadamw"]["scores"], rtol=1e-5)
    assert rec["adam"]["best_index"] == full["adam"]["best_index"]
    assert rec["baselines"]["fingerprint"] == full["baselines"]["fingerprint"]
    kept = ood_records.load_results(out)["digits_mlp32"][1]
    np.testing.assert_array_equal(kept["star"], ood_records.load_results(tmp_path / "full")["digits_mlp32"][1]["star"])
    with np.load(out / "digits_mlp32.npz") as z:
        assert z["tuning/adam_final"].shape == (5, 2)
        np.testing.assert_array_equal(z["tuning/adam_final"][:, 0], np.asarray(first["adam"]["scores"], np.float32))
    assert ext["evaluation_kept"] == (first["adam"]["best_index"] == rec["adam"]["best_index"]
                                      and first["nadamw"]["best_index"] == rec["nadamw"]["best_index"])
    # the same record again: nothing runs
    training.take()
    assert ood_suite.run_task("digits_mlp32", two, learned, out, progress=False) == rec and training.take() == set()


def test_adam_only_suite_and_task_versions(tmp_path, tiny_task, monkeypatch):
    from star import tasks as tasks_lib

    root = tmp_path / "results" / "metatrain"
    learned = [learned_optimizers.load_learned("star", [_save_learned(root / "s0", "star", 0)])]
    cfg = ood_suite.SuiteConfig(num_steps=8, adam_lr_range=(1e-3, 1e-2), nadamw_samples=0, tune_seeds=(9,),
                          eval_seeds=(0, 1), width=3, chunk_size=4)
    out = tmp_path / "ood"
    rec = ood_suite.run_task("digits_mlp32", cfg, learned, out, progress=False)
    assert rec["nadamw"] is None and set(rec["optimizers"]) == {"adam", "star"} and rec["task_version"] == 1
    res = ood_records.load_results(out)
    assert set(res["digits_mlp32"][1]) == {"adam", "star"} and "star" in ood_results.summarize(res)["digits_mlp32"]
    # a new version of the task: nothing of the stored record is kept
    monkeypatch.setitem(tasks_lib.TASKS, "digits_mlp32",
                        dataclasses.replace(tasks_lib.TASKS["digits_mlp32"], version=2))
    training = _Training(monkeypatch)
    rec2 = ood_suite.run_task("digits_mlp32", cfg, learned, out, progress=False)
    assert training.take() == {"tune", "eval", "learned"}
    assert rec2["task_version"] == 2 and rec2["baselines"]["fingerprint"] != rec["baselines"]["fingerprint"]
    assert ood_records.baseline_fingerprint(cfg.to_dict(), "digits_mlp32") == rec["baselines"]["fingerprint"]
    with pytest.raises(ValueError, match="nadamw_samples must be >= 0"):
        dataclasses.replace(cfg, nadamw_samples=-1)


def test_adam_range_near():
    assert ood_suite.adam_range_near(3e-3) == pytest.approx((1e-3, 1e-2))
    assert ood_suite.adam_range_near(1e-2) == pytest.approx((3e-3, 3e-2))
    assert ood_suite.adam_range_near(0.001) == pytest.approx((3e-4, 3e-3))
    with pytest.raises(ValueError, match="half-decade grid"):
        ood_suite.adam_range_near(2e-3)


def test_mse_task_averages_over_the_classes():
    """fmnist_mlp_mse: the reference's ``jnp.mean(jnp.square(logits - labels))`` (batch and classes)."""
    from star.tasks import TASKS
    from star.tasks.image import MLP, ImageClassificationTask

    task = get_task("digits_mlp32", batch_size=8)
    mse = ImageClassificationTask(data=task.data, model=task.model, name="x", batch_size=8, description="",
                                  reference="", loss_type="mse")
    params = mse.init(jax.random.key(0))
    batch = mse.sample_batch(jax.random.key(1))
    logits = mse.logits(params, batch["image"])
    onehot = np.eye(logits.shape[-1])[np.asarray(batch["label"])]
    np.testing.assert_allclose(mse.loss(params, batch), np.mean((np.asarray(logits) - onehot) ** 2), rtol=1e-5)
    assert TASKS["fmnist_mlp_mse"].version == 2 and isinstance(task.model, MLP)


