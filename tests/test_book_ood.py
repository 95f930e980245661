"""The out-of-distribution chapter's modules (star.book.ood_results, ood_verdict, ood_figures, ood_tables,
ood_findings, ood_controls) on small made-up suites: the stored suite condensed per meta-training run, the verdict
following the evidence, the figures marking divergence, the tables, findings and controls computed from it."""

import json
import math

import jax
import numpy as np
import pytest

from star import learned_optimizers, ood_suite
from star.book import ood_results
from star.optim import init_meta_params, preset, save_meta_params


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
    from star.book.verdicts import claim_status

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


def test_past_the_horizon_table_findings_and_figure():
    import matplotlib

    matplotlib.use("Agg")
    from star.book import ood_figures, ood_findings, ood_tables

    down = np.linspace(2.0, 1.0, 20)
    late = np.concatenate([down[:10], np.linspace(1.5, 3.0, 10)])  # fine for 10 steps, then ends above its start
    early = np.concatenate([np.linspace(2.0, 4.0, 10), np.full(10, 4.0)])  # above its start from the first steps
    runs = {"adam": np.tile(down, (2, 1)), "star": np.tile(late, (2, 1)), "blackbox": np.tile(early, (2, 1))}
    results = {"a": ({}, runs), "b": ({}, {**runs, "star": np.tile(down, (2, 1))})}
    cut = ood_results.truncated(results, 10)
    assert cut["a"][1]["star"].shape == (2, 10) and results["a"][1]["star"].shape == (2, 20)
    for bad in (0, 21):
        with pytest.raises(ValueError, match=r"steps must be between 1 and 20 .* got " + str(bad)):
            ood_results.truncated(results, bad)
    tab = ood_tables.horizon_table(results, (10, 20), horizon=10)
    assert "unstable at step 10 (horizon)" in tab.columns and tab.caption == "2 tasks: a; b"
    rows = {r[0]: r[1:3] for r in tab.cells}
    assert rows["STAR"] == ["0/2", "1/2"] and rows["Blackbox"] == ["2/2", "2/2"] and rows[
        "Adam (tuned learning rate)"] == ["0/2", "0/2"]
    text = ood_findings.past_horizon_markdown(results, 10)
    assert "**STAR** — unstable past the horizon only on 1 of 2 tasks (a); stable at step 10 on all 2." in text
    assert "**Blackbox** — no task on which it becomes unstable past the horizon (of 2); unstable already at " \
           "step 10 on 2 (a, b)." in text
    with pytest.raises(ValueError, match="horizon must be below the runs' length 20, got 20"):
        ood_findings.past_horizon_markdown(results, 20)
    fig = ood_figures.plot_curves_grid(results, ncols=2, horizon=10)
    assert [line.get_xdata()[0] for line in fig.axes[0].lines if line.get_label() == "_horizon"] == [10]
    assert "meta-training horizon" in [t.get_text() for t in fig.legends[0].get_texts()]
    fig = ood_figures.plot_curves_grid(results, ncols=2, horizon=40)  # runs no longer than the horizon: no line
    assert not [line for line in fig.axes[0].lines if line.get_label() == "_horizon"]
