"""star.ood_suite, star.learned_optimizers and star.baselines: NAdamW parity with optax, batched = looped training,
tuning, storage, the learned rows and their sources; star.book.ood_results and the chapter's ood_* modules: the
stored suite condensed, the verdict, figures, tables, findings and controls."""

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from star import baselines, learned_optimizers, ood_suite
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
    fin = ood_suite.final_loss(c, fraction=0.5)
    assert fin[0] == 0.5 and fin[1] == 3.0 and math.isinf(fin[2])
    # row 1 ends above its initial loss, row 2 diverged
    np.testing.assert_array_equal(ood_suite.failed_runs(c), [False, True, True])
    np.testing.assert_array_equal(ood_suite.failed_runs(np.array([[2.0, 1.9]])), [False])


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
    results = ood_suite.load_results(out)
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
    :mod:`star.ood_suite` calls it), by kind: ``tune`` and ``eval`` (the baselines' tuning and evaluation runs) and
    ``learned`` (the learned optimizers), with the seeds each call trains on."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = ood_suite.train_batched

        def watched(task, make, rows, keys, num_steps, *, desc="", **kw):
            word = desc.split()[1] if len(desc.split()) > 1 else ""
            self.calls.append((word if word in ("tune", "eval") else "learned", keys))
            return real(task, make, rows, keys, num_steps, desc=desc, **kw)

        monkeypatch.setattr(ood_suite, "train_batched", watched)

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
    assert ood_results.meta_run_curves(rec, ood_suite.load_results(out)["digits_mlp32"][1], "star").shape == (2, 2, 8)
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


def test_meta_runs_split_and_summarize():
    rec = {"learned": {"star": {"num_meta_runs": 2}}}
    adam = np.array([[2.0, 1.0], [2.0, 1.0]])
    star = np.array([[2.0, 0.5], [2.0, 0.5], [2.0, 3.0], [2.0, 0.5]])  # meta-run 1 fails on its 1st seed
    results = {"t": (rec, {"adam": adam, "star": star})}
    np.testing.assert_array_equal(ood_results.meta_run_curves(*results["t"], "star")[1], star[2:])
    pooled = ood_results.summarize(results)["t"]["star"]
    assert pooled["unstable"] and pooled["num_runs"] == 4 and pooled["final"] == pytest.approx(1.125)
    first, second = (ood_results.summarize(results, meta_run=k)["t"]["star"] for k in (0, 1))
    assert not first["unstable"] and first["ratio_to_adam"] == pytest.approx(0.5) and second["unstable"]
    assert "star" not in ood_results.summarize(results, meta_run=2)["t"]
    assert ood_results.num_meta_runs(results) == {"star": 2}
    with pytest.raises(ValueError, match="num_meta_runs=3"):
        ood_results.meta_run_curves({"learned": {"star": {"num_meta_runs": 3}}}, {"star": star}, "star")


def _summary(n=8, bb_unstable=8, star_unstable=0, star_vs_hyper=0.9, star_vs_adam=1.1):
    """What star.book.ood_results.summarize returns for ``n`` tasks (for the findings' text)."""
    out = {}
    for i in range(n):
        row = {"adam": {"final": 1.0, "ratio_to_adam": 1.0, "unstable": False},
               "hyperparam": {"final": 1.0, "ratio_to_adam": 1.0, "unstable": False},
               "star": {"final": star_vs_hyper, "ratio_to_adam": star_vs_adam, "unstable": i < star_unstable},
               "blackbox": {"final": 5.0, "ratio_to_adam": 5.0, "unstable": i < bb_unstable}}
        if i == 0:
            row["star"]["final"] = 0.5  # one large STAR gain
        out[f"t{i}"] = row
    return out


STEPS = np.linspace(2.0, 1.0, 10)[None]
GOOD, BAD = np.repeat(STEPS, 3, axis=0), np.repeat(STEPS[:, ::-1] + 1.0, 3, axis=0)  # BAD ends above its start


def _results(n=8, bb_unstable=8, star_unstable=0, star_gain=2.0):
    """A stored suite of ``n`` tasks: Blackbox unstable on the first ``bb_unstable``, STAR on the first
    ``star_unstable``; elsewhere STAR's loss is Hyperparam's divided by ``star_gain`` on task t0, equal elsewhere."""
    out = {}
    for i in range(n):
        star = BAD if i < star_unstable else (GOOD / star_gain if i == 0 else GOOD.copy())
        out[f"t{i}"] = ({}, {"adam": GOOD, "hyperparam": GOOD + 0.01 * np.arange(3)[:, None],
                             "blackbox": BAD if i < bb_unstable else GOOD, "star": star + 0.01 * np.arange(3)[:, None]})
    return out


def test_verdict_follows_the_evidence():
    from star.book import ood_verdict
    from star.book.claims import claim_status

    statuses = lambda checks: [c.status for c in checks]  # noqa: E731
    checks, status = ood_verdict.ood_verdict(_results())
    assert statuses(checks) == ["supported", "supported", "supported", "supported"] and status == "reproduced"
    # Blackbox stable almost everywhere: the first check is contradicted, not merely failed
    checks, status = ood_verdict.ood_verdict(_results(n=16, bb_unstable=1))
    assert statuses(checks) == ["contradicted", "inconclusive", "inconclusive", "supported"] and status == "partly"
    # STAR unstable where Blackbox is, and no gain: nothing supported, a significant reversal
    checks, status = ood_verdict.ood_verdict(_results(bb_unstable=0, star_unstable=8, star_gain=1.0))
    assert statuses(checks)[:3] == ["contradicted", "inconclusive", "contradicted"] and status == "contradicted"
    # ... which far from the paper's regime is "not reproduced at this budget"
    assert claim_status([(checks, ["200 outer steps of 5,000"])]) == "not reproduced at this budget"
    # too few tasks to tell: the proportion's interval includes one half
    assert statuses(ood_verdict.ood_verdict(_results(n=3, bb_unstable=3))[0])[0] == "inconclusive"
    with pytest.raises(ValueError, match="lacks the optimizers"):
        ood_verdict.ood_checks({"t": ({}, {"adam": GOOD})})
    failures = ood_verdict.first_update_failures(_results(star_unstable=2))
    assert failures == {"failed": 6, "runs": 24, "at_first": 6, "tasks": ["t0", "t1"], "of_tasks": 8}


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


def test_figures_mark_divergence(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from star.book import ood_figures, ood_tables

    rng = np.random.default_rng(0)
    base = 2.0 * np.exp(-np.arange(50) / 20.0)[None] + 0.01 * rng.random((3, 50))
    diverged = base.copy()
    diverged[:, 30:] = np.nan
    rec = {"adam": {"best_at_grid_edge": False, "best_learning_rate": 1e-3},
           "nadamw": {"best": {"learning_rate": 1e-3}},
           "data": "d", "description": "x", "reference": "r", "num_params": 10, "wall_s": {"total": 1.0}}
    results = {f"t{i}": (rec, {"adam": base, "nadamw": base * 0.9, "star": base, "hyperparam": base,
                               "blackbox": diverged if i == 0 else base * 1.5}) for i in range(3)}
    fig = ood_figures.plot_curves_grid(results, ncols=2)
    assert len([a for a in fig.axes if a.axison]) == 3
    fig = ood_figures.plot_summary(results)
    grey = [line.get_marker() for line in fig.axes[0].lines if line.get_color() == "C7"]
    assert grey == ["x", "o", "o"]  # Blackbox: diverged on t0, stable on t1 and t2
    assert "<td>t0</td>" in ood_tables.tasks_table_html(results)


def test_meta_run_table_and_verdicts():
    """Per meta-training run: counts and the verdict rule on each θ alone, then pooled (the chapter's)."""
    from star.book import ood_figures, ood_findings, ood_tables, ood_verdict

    steps = np.linspace(2.0, 1.0, 10)[None]
    good, bad = np.repeat(steps, 2, axis=0), np.repeat(steps[:, ::-1] + 1.0, 2, axis=0)  # bad: ends above its start

    def learned(name, runs):
        return {"num_meta_runs": runs, "sources": [{"path": f"results/metatrain/g/{name}_s{k}/meta_params.msgpack"}
                                                   for k in range(runs)]}

    rec = {"learned": {o: learned(o, 2) for o in ("star", "hyperparam", "blackbox")}}
    results = {f"t{i}": (rec, {"adam": good, "hyperparam": np.concatenate([good, good]),
                               "blackbox": np.concatenate([bad, bad]),
                               # STAR: its seed-0 θ fails on every task, its seed-1 θ on none
                               "star": np.concatenate([bad, 0.5 * good])}) for i in range(4)}
    assert ood_results.meta_run_labels(results, "star") == ["seed 0", "seed 1"]
    verdicts = ood_verdict.meta_run_verdicts(results)
    assert list(verdicts) == ["seed 0", "seed 1", "pooled"]
    star_stable = {k: v[0][2].status for k, v in verdicts.items()}  # "Blackbox is unstable where STAR is stable"
    assert star_stable == {"seed 0": "inconclusive", "seed 1": "supported", "pooled": "inconclusive"}
    tab = ood_tables.meta_run_table(results)
    star_rows = [r for r in tab.cells if r[0] == "STAR"]
    assert [r[1:3] for r in star_rows] == [["seed 0", "4/4"], ["seed 1", "0/4"], ["all pooled (the verdict's)", "4/4"]]
    assert star_rows[1][3] == "0.5"  # median final loss / tuned Adam's of the seed-1 θ
    text = ood_verdict.meta_run_evidence_text(results)
    assert "STAR on 4, 0 of 4" in text and "seed 1: partly" in text
    md = ood_findings.meta_run_findings_markdown(results)
    assert "**STAR**: unstable on 4, 0 of 4 tasks (seed 0, seed 1), on 4 with its θ's pooled" in md
    assert "every one of its 2 θ's on 0 of 4 tasks, with at least one of them on 4" in md
    assert "seed 0: none; seed 1: t0, t1, t2, t3; pooled: none" in md
    html = ood_tables.meta_run_verdict_table(results)._repr_html_()
    assert "star-table" in html and html.count("<tr>") == len(verdicts["pooled"][0]) + 2
    # the figures: a learned optimizer's band is over its meta-training runs, its runs drawn one by one
    import matplotlib

    matplotlib.use("Agg")
    np.testing.assert_allclose(ood_figures._band_rows(rec, results["t0"][1], "star"), [bad[0], 0.5 * good[0]])
    assert ood_figures._band_rows(rec, results["t0"][1], "adam").shape == (2, 10)
    ood_figures.plot_curves_grid(results, ncols=2)
    dots = [line for line in ood_figures.plot_summary(results).axes[0].lines if line.get_marker() == "."]
    assert len(dots) == 4 * 3 and all(len(d.get_xdata()) == 2 for d in dots)


def test_stored_cpu_suite_holds_the_default_learned_rows():
    """The chapter's regeneration command (the CLI defaults) reproduces the learned rows that are stored."""
    from pathlib import Path

    stored = ood_suite.load_results(Path(__file__).resolve().parents[1] / "results" / "ood" / "cpu")
    assert len(stored) >= 16
    for name, (rec, curves) in stored.items():
        assert {k: [s["path"].rsplit("/", 1)[0] for s in v["sources"]] for k, v in rec["learned"].items()} == \
            {k: list(v) for k, v in learned_optimizers.DEFAULT_LEARNED.items()}, name
        for opt in learned_optimizers.DEFAULT_LEARNED:
            shape = ood_results.meta_run_curves(rec, curves, opt).shape
            assert shape[:2] == (len(learned_optimizers.META_SEEDS), 3), (name, opt)


def test_optimizer_findings_follow_the_summary():
    """The chapter's per-optimizer findings are computed: they change when the evidence does."""
    from star.book import ood_findings

    md = ood_findings.optimizer_findings_markdown(_summary())
    assert "**Blackbox** — unstable on 8 of 8 tasks" in md and "**STAR** — stable on every task" in md
    assert "**STAR** — stable on every task; final loss below tuned Adam's on 0 and within 1.25× of it on 8 of 8" in md
    md = ood_findings.optimizer_findings_markdown(_summary(bb_unstable=0, star_unstable=3, star_vs_adam=3.0))
    assert "**Blackbox** — stable on every task" in md and "**STAR** — unstable on 3 of 8 tasks" in md
    assert "**STAR** — unstable on 3 of 8 tasks; final loss below tuned Adam's on 0 and within 1.25× of it on 0" in md
    assert "**Adam (tuned learning rate)**" in md
    learned = ood_findings.optimizer_findings_markdown(_summary(), learned_only=True)
    assert "Adam (tuned" not in learned and "NAdamW" not in learned and "**STAR** — stable on every task" in learned


def test_parse_source():
    assert learned_optimizers.parse_source("results/metatrain/x_s0") == ("results/metatrain/x_s0", None, ())
    assert learned_optimizers.parse_source("results/x_s0@0+zero_output") == ("results/x_s0", 0, ("zero_output",))
    assert learned_optimizers.parse_source("/abs/run@200") == ("/abs/run", 200, ())
    with pytest.raises(ValueError, match="non-negative integer"):
        learned_optimizers.parse_source("results/x@-1")
    with pytest.raises(ValueError, match="transforms of a learned source must be among"):
        learned_optimizers.parse_source("results/x@0+nope")
    with pytest.raises(ValueError, match="RUN_DIR"):
        learned_optimizers.parse_source("@3")


def test_learned_snapshots_and_zero_output(tmp_path):
    """``@0`` reads the initial θ snapshot; ``+zero_output`` makes it the nominal initialisation exactly."""
    from star import runs

    folder = tmp_path / "results" / "metatrain" / "run"
    cfg = preset("star")
    folder.mkdir(parents=True)
    final = init_meta_params(cfg, jax.random.key(5), init="reference")
    save_meta_params(folder / "meta_params.msgpack", cfg, jax.tree.map(lambda x: x + 1.0, final))
    runs.save_theta(runs.theta_snapshot_path(folder, 0), final)
    lo = learned_optimizers.load_learned("t0", [f"{folder}@0", f"{folder}@0+zero_output", str(folder)])
    th = [jax.tree.map(lambda x, i=i: x[i], lo.thetas) for i in range(3)]
    for a, b in zip(jax.tree.leaves(th[0]), jax.tree.leaves(final)):
        np.testing.assert_array_equal(a, b)
    nominal = init_meta_params(cfg, jax.random.key(5), init="nominal")
    for a, b in zip(jax.tree.leaves(th[1]), jax.tree.leaves(nominal)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(th[2]), jax.tree.leaves(final)):
        np.testing.assert_array_equal(a, b + 1.0)
    assert lo.sources[0]["path"].endswith("thetas/theta_00000000.npz") and lo.sources[0]["step"] == 0
    assert lo.sources[1]["transforms"] == ["zero_output"] and "step" not in lo.sources[2]
    # the transform is part of the learned fingerprint (same file, different optimizer)
    keys = ood_suite._learned_shas([lo])["t0"]
    assert keys[0] != keys[1] and keys[1].startswith(keys[0])
    with pytest.raises(ValueError, match="no θ snapshot after 7 outer steps"):
        learned_optimizers.load_learned("t7", [f"{folder}@7"])


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
    np.testing.assert_array_equal(ood_suite.load_results(controls)["digits_mlp32"][1]["adam"],
                                  ood_suite.load_results(suite)["digits_mlp32"][1]["adam"])
    with pytest.raises(ValueError, match="holds no stored record of task 'digits_conv'"):
        ood_suite.run_task("digits_conv", cfg, [lo], controls, progress=False, baselines_from=suite)
    other = dataclasses.replace(cfg, search_seed=1)
    with pytest.raises(ValueError, match="made with other suite settings"):
        ood_suite.run_task("digits_mlp32", other, [lo], tmp_path / "elsewhere", progress=False, baselines_from=suite)


def test_learned_sets_name_the_runs_of_the_grids():
    from star import sweep

    assert learned_optimizers.LEARNED_SETS["default"] is learned_optimizers.DEFAULT_LEARNED
    folders = {s.folder(".").as_posix().removeprefix("./") for g in ("indist", "ood_controls", "indist_long")
               for s in sweep.get_grid(g, "cpu").runs()}
    for set_name, rows in learned_optimizers.LEARNED_SETS.items():
        for row, sources in rows.items():
            for src in sources:
                assert learned_optimizers.parse_source(src)[0] in folders, (set_name, row, src)


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
    kept = ood_suite.load_results(out)["digits_mlp32"][1]
    np.testing.assert_array_equal(kept["star"], ood_suite.load_results(tmp_path / "full")["digits_mlp32"][1]["star"])
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
    res = ood_suite.load_results(out)
    assert set(res["digits_mlp32"][1]) == {"adam", "star"} and "star" in ood_results.summarize(res)["digits_mlp32"]
    # a new version of the task: nothing of the stored record is kept
    monkeypatch.setitem(tasks_lib.TASKS, "digits_mlp32",
                        dataclasses.replace(tasks_lib.TASKS["digits_mlp32"], version=2))
    training = _Training(monkeypatch)
    rec2 = ood_suite.run_task("digits_mlp32", cfg, learned, out, progress=False)
    assert training.take() == {"tune", "eval", "learned"}
    assert rec2["task_version"] == 2 and rec2["baselines"]["fingerprint"] != rec["baselines"]["fingerprint"]
    assert ood_suite.baseline_fingerprint(cfg.to_dict(), "digits_mlp32") == rec["baselines"]["fingerprint"]
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


def test_controls_rows_table_and_findings(tmp_path):
    """The controls' table reads each θ's decay and direction head from its files and counts failures."""
    from star import runs as runs_lib
    from star.book import ood_controls

    cfg = preset("star")

    def run(name, wd, steps, bias):
        folder = tmp_path / "results" / "metatrain" / "g" / name
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps({"lr": 1e-3, "weight_decay": wd, "outer_steps": steps}))
        theta = init_meta_params(cfg, jax.random.key(0), init="reference")
        runs_lib.save_theta(runs_lib.theta_snapshot_path(folder, 0), theta)
        last = max(int(k[1:]) for k in theta["mlp"] if k.startswith("w"))
        theta["mlp"][f"b{last}"] = theta["mlp"][f"b{last}"].at[0].set(bias)
        save_meta_params(folder / "meta_params.msgpack", cfg, theta)
        return f"results/metatrain/g/{name}"

    def fetch(rel):
        return tmp_path / rel

    learned = {"star_theta0": [run("a_s0", 0.1, 200, -0.5) + "@0"], "star_output0": [run("b_s0", 0.1, 200, 0.0)
                                                                                     + "@0+zero_output"],
               "star": [run("c_s0", 0.1, 200, -0.01)], "star_wd5.0": [run("d_s0", 5.0, 200, -0.001)],
               "star_init_nominal": [run("e_s0", 0.1, 200, -0.0135)]}
    los = {n: learned_optimizers.load_learned(n, v, root=tmp_path) for n, v in learned.items()}
    good = np.repeat(np.linspace(2.0, 1.0, 10)[None], 3, axis=0)
    bad = good[:, ::-1] + 1.0
    fails = {"star_theta0": 2, "star_output0": 0, "star": 2, "star_wd5.0": 1, "star_init_nominal": 2}
    results = {}
    for i in range(2):
        rec = {"learned": {n: {"sources": list(lo.sources), "num_meta_runs": 1} for n, lo in los.items()}}
        curves = {"adam": good, **{n: (bad if i < k else good) for n, k in fails.items()}}
        results[f"t{i}"] = (rec, curves)
    rows = ood_controls.controls_rows(results, fetch=fetch)
    by = {r["row"]: r for r in rows}
    assert [r["row"] for r in rows] == ["star_theta0", "star_output0", "star", "star_wd5.0", "star_init_nominal"]
    assert by["star_theta0"]["decay"] == 0.0 and math.isinf(by["star_output0"]["decay"])
    assert by["star"]["decay"] == pytest.approx(0.02) and by["star_wd5.0"]["decay"] == pytest.approx(1.0)
    assert by["star_theta0"]["d_bias"] == 0.0  # the step-0 snapshot, not the final θ's bias
    assert by["star_init_nominal"]["d_bias"] == pytest.approx(-0.0135) and by["star_output0"]["d_weight_rms"] == 0
    assert by["star_wd5.0"]["unstable"] == 1 and by["star_wd5.0"]["per_task"] == {"t0": (3, 3), "t1": (0, 3)}
    tab = ood_controls.controls_table(rows, tasks=("t0", "nope"))
    assert tab.columns[6] == "failed runs, t0" and "nope" not in " ".join(tab.columns)
    assert ood_controls.controls_table(rows, tasks=("t0",)).columns[6] == "failed runs, t0"
    assert tab.cells[1][2] == "∞" and tab.cells[3][6] == "3/3"
    md = ood_controls.controls_findings_markdown(rows)
    assert "θ₀ is unstable on 2 of 2 tasks; the same θ₀ with its output layer zero (the nominal optimizer) on 0" in md
    assert "zero-output start on 2 of 2 tasks, its direction head's bias at -1.35e-02" in md
    assert "0.02: 2" in md and "1: 1" in md


def test_suite_budget_table():
    from star.book import ood_tables

    cpu = {"suite_config": ood_suite.suite_config("cpu").to_dict(), "adam": {"learning_rates": [1e-3] * 9}}
    long = {"suite_config": dict(ood_suite.suite_config("cpu").to_dict(), num_steps=4000, nadamw_samples=0),
            "adam": {"learning_rates": [1e-3] * 3}}
    tab = ood_tables.suite_budget_table({"1000 steps": cpu, "4000 steps": long})
    assert tab.cells[0] == ["1000 steps", "1000 (10 %)", "9 (paper 15)", "16 (1.6 %)", "2 (40 %)", "3 (60 %)"]
    assert tab.cells[1][1:4] == ["4000 (40 %)", "3 (paper 15)", "0 (0 %)"]


def test_length_comparison_table():
    from star.book import ood_tables

    good = np.repeat(np.linspace(2.0, 1.0, 10)[None], 2, axis=0)
    bad = good[:, ::-1] + 1.0
    short = {t: ({}, {"adam": good, "star": good}) for t in ("a", "b", "c")}
    long = {t: ({}, {"adam": good, "star": bad if t == "a" else 0.5 * good, "blackbox": good}) for t in ("a", "b")}
    tab = ood_tables.length_comparison_table({"1000 steps": short, "4000 steps": long})
    assert tab.caption == "2 tasks: a; b" and [r[0] for r in tab.cells] == ["Adam (tuned learning rate)", "STAR"]
    assert tab.cells[1] == ["STAR", "0/2", "1", "1/2", "1.75"]  # median of 3.0 (ends at 3, Adam at 1) and 0.5
