"""The chapter "In-distribution meta-training": the verdict rules of Fig. 3 and Figs. App.2-App.4
(star.book.in_distribution_verdicts) flip when their evidence does; loading a grid's run folders
(star.book.grid_results); the figures and tables draw from them."""

import dataclasses
import json

import matplotlib

matplotlib.use("Agg")

import numpy as np
import pytest

from star import sweep
from star.book import records, verdicts
from star.book.grid_results import load_grid, meta_objective, nominal_objective
from star.book.in_distribution_figures import plot_figure
from star.book.in_distribution_tables import summary_table
from star.book.in_distribution_verdicts import (
    complete,
    evidence,
    record_verdict,
    verdict_fig3,
    verdict_nominal_term,
    verdict_preconditioning,
    verdict_weight_decay,
)

RNG = np.random.default_rng(0)
STEPS = 200


def curve(level, seeds=3, noise=0.01):
    """EMA-like meta-loss curves falling towards ``level`` (one row per seed)."""
    t = np.arange(STEPS)
    return np.stack([level + 0.5 * np.exp(-t / 40) + noise * RNG.standard_normal(STEPS) for _ in range(seeds)])


def member(level, final, ratio=1.0):
    """Evidence of one member for seeds 0, 1, 2 (as star.book.in_distribution_verdicts.evidence returns it)."""
    return {"meta_loss": dict(enumerate(curve(level))), "final_objective": dict(enumerate(map(float, final))),
            "beyond_horizon": {s: float(ratio) for s in range(3)}}


def fig3_ev(star, blackbox):
    return {"outer_steps": STEPS, "task": "t",
            "members": {"star_wd0.1": member(*star), "blackbox_wd0.0": member(*blackbox)}}


def status(checks):
    """The verdict the checks give at a budget in the paper's regime."""
    return verdicts.claim_status([(checks, ())])


def test_fig3_verdict_flips_with_the_evidence():
    good = fig3_ev((0.6, [0.60, 0.61, 0.62]), (1.0, [0.95, 1.0, 0.98]))
    checks, text = verdict_fig3(good)
    assert [c.status for c in checks] == ["supported"] * 3 and status(checks) == "reproduced", checks
    assert "STAR's final meta-objective is lower than Blackbox's: +0.3" in text and "_wd" not in text
    bad = fig3_ev((1.0, [0.95, 1.0, 0.98]), (0.6, [0.60, 0.61, 0.62]))  # the same numbers, swapped
    assert [c.status for c in verdict_fig3(bad)[0]] == ["contradicted"] * 3
    assert status(verdict_fig3(bad)[0]) == "contradicted"
    # lower on average but within the noise at the end: partly, never contradicted
    mixed = fig3_ev((0.6, [0.60, 1.2, 0.62]), (1.0, [0.95, 1.0, 0.98]))
    assert [c.status for c in verdict_fig3(mixed)[0]] == ["supported", "supported", "inconclusive"]
    assert status(verdict_fig3(mixed)[0]) == "partly"


def test_weight_decay_verdict():
    def ev(r01, obj10, r05=1.0):
        return {"outer_steps": STEPS, "task": "t", "long": 10000, "members": {
            "star_wd0.1": member(0.6, [0.60, 0.61, 0.62], r01), "star_wd0.5": member(0.6, [0.61, 0.63, 0.62], r05),
            "star_wd1.0": member(0.7, obj10, 1.0), "star_wd0.0": member(0.6, [0.6, 0.6, 0.6], 2.0)}}

    assert status(verdict_weight_decay(ev(1.05, [0.70, 0.715, 0.72]))[0]) == "reproduced"
    # unstable beyond the horizon (1.5×) with wd 0.1: that check is contradicted, the rest supported
    checks, text = verdict_weight_decay(ev(1.5, [0.70, 0.715, 0.72]))
    assert [c.status for c in checks] == ["contradicted", "supported", "supported", "supported"]
    assert status(checks) == "partly" and "wd 0.1: 1.50 / 1.50 / 1.50" in text
    # wd 1.0 as good as the others (within the noise) and unstable beyond the horizon: nothing supported
    checks = verdict_weight_decay(ev(1.5, [0.62, 0.60, 0.62], r05=1.3))[0]
    assert [c.status for c in checks][2:] == ["inconclusive", "inconclusive"] and status(checks) == "contradicted"


@pytest.mark.parametrize("rule,other", [(verdict_preconditioning, "star_nopre_wd0.1"),
                                        (verdict_nominal_term, "star_nonom_wd0.1")])
def test_ablation_verdicts(rule, other):
    def ev(star, abl):
        return {"outer_steps": STEPS, "task": "t", "members": {"star_wd0.1": member(*star), other: member(*abl)}}

    a, b = (0.6, [0.60, 0.61, 0.62]), (0.9, [0.9, 0.92, 0.91])
    assert status(rule(ev(a, b))[0]) == "reproduced"
    assert status(rule(ev(b, a))[0]) == "contradicted"
    noisy = (0.6, [0.60, 0.95, 0.62])
    assert [c.status for c in rule(ev(noisy, b))[0]][1] == "inconclusive"


def test_pairing_is_by_seed():
    ev = fig3_ev((0.6, [0.60, 0.61, 0.62]), (1.0, [0.95, 1.0, 0.98]))
    del ev["members"]["star_wd0.1"]["final_objective"][0]  # STAR's seed 0 not evaluated: pairs (1, 2) only
    checks, _ = verdict_fig3(ev)
    assert "paired over 2 meta-training seeds" in checks[-1].how
    ev["members"]["star_wd0.1"]["final_objective"] = {1: 0.6}  # one pair: no interval, undecided
    assert verdict_fig3(ev)[0][-1].status == "inconclusive"


# ------------------------------------------------------------------------------------------ run folders


def fake_grid(tmp_path):
    grid = dataclasses.replace(sweep.get_grid("indist", "smoke"), outer_steps=6, seeds=(0, 1))
    for spec in grid.runs():
        out = spec.folder(tmp_path)
        (out / "thetas").mkdir(parents=True)
        level = 0.5 if spec.member.optimizer == "star" else 0.8
        (out / "log.jsonl").write_text("".join(json.dumps({"step": i, "meta_loss": level + 1.0 / i}) + "\n"
                                               for i in range(1, 7)))
        (out / "provenance.json").write_text(json.dumps({"wall_s_total": 10.0, "command": "x"}))
        (out / "theta_final.npz").write_bytes(b"")
        (out / "meta_curve.json").write_text(json.dumps({
            "curve": [{"step": s, "mean": level + 0.1 / (s + 1) + 0.01 * spec.seed, "per_seed": [level] * 2}
                      for s in (0, 3, 6)], "baselines": {"nominal": {"mean": 0.7, "per_seed": [0.7, 0.7]}}}))
        for steps in grid.eval_steps:
            (out / f"evaluate_{steps}.json").write_text(json.dumps({"block": 10, "steps": steps, "per_seed": [
                {"curve": [level] * (steps // 10), "final_train_loss": level, "test_loss": level + 0.1,
                 "test_accuracy": 0.8}]}))
    # an unfinished run is reported missing
    spec = grid.runs()[-1]
    lines = (spec.folder(tmp_path) / "log.jsonl").read_text().splitlines()[:3]
    (spec.folder(tmp_path) / "log.jsonl").write_text("\n".join(lines) + "\n")
    return grid


def test_load_grid_and_figures(tmp_path):
    grid = fake_grid(tmp_path)
    res = load_grid(grid, tmp_path)
    assert res.missing == [grid.runs()[-1].name]
    assert sorted(res.runs) == ["hyperparam_wd0.0", "star_wd0.1"] and res.seeds(sweep.Member("star", 0.1)) == [0, 1]
    steps, obj = meta_objective(res, sweep.Member("star", 0.1))
    assert steps.tolist() == [0, 3, 6] and obj.shape == (2, 3)
    assert nominal_objective(res) == 0.7
    ev = evidence(res)
    assert sorted(ev["members"]["star_wd0.1"]["meta_loss"]) == [0, 1]
    assert ev["members"]["star_wd0.1"]["meta_loss"][1].shape == (6,)
    assert ev["members"]["star_wd0.1"]["beyond_horizon"] == {0: 1.0, 1: 1.0}
    assert ev["members"]["hyperparam_wd0.0"]["final_objective"] == {0: pytest.approx(0.8 + 0.1 / 7)}
    assert complete(ev, "app3", min_seeds=2) == ["star_nopre_wd0.1: meta_loss for 0 of 2 seeds",
                                                    "star_nopre_wd0.1: final_objective for 0 of 2 seeds"]
    fig = plot_figure(res, "fig3")
    assert len(fig.axes) == 4 and fig.axes[0].lines
    from star.book import figures
    assert figures.figure_problems(figures.figure_facts(fig)) == []  # labels, legend, no ids
    tab = summary_table(res, "fig3")
    assert tab.cells[0][:2] == ["STAR (outer wd 0.1)", "2"] and tab.cells[0][3] == "0.5"
    assert "training loss after 20 steps (nats)" in tab.columns and "test accuracy after 20 (%)" in tab.columns


def test_record_verdict_needs_three_seeds_and_records_what_the_rule_says(tmp_path):
    grid = fake_grid(tmp_path)
    res = load_grid(grid, tmp_path)
    assert "Not recorded" in record_verdict(res, "adam_preconditioning", claims_folder=tmp_path / "c")
    assert not (tmp_path / "c").exists()
    # three complete seeds of STAR and No Pre.: the rule decides, and the record says on which task
    grid3 = dataclasses.replace(grid, members=(sweep.Member("star", 0.1), sweep.Member("star_nopre", 0.1)),
                                seeds=(0, 1, 2))
    root = tmp_path / "three"
    for spec in grid3.runs():
        src = grid.runs()[0].folder(tmp_path)  # a STAR run of the fake grid (level 0.5)
        dst = spec.folder(root)
        dst.parent.mkdir(parents=True, exist_ok=True)
        import shutil
        shutil.copytree(src, dst)
        if spec.member.optimizer == "star_nopre":  # No Pre. worse by 0.3 everywhere
            for name in ("log.jsonl",):
                rows = [json.loads(x) for x in (dst / name).read_text().splitlines()]
                (dst / name).write_text("".join(json.dumps(dict(r, meta_loss=r["meta_loss"] + 0.3 + 0.01 * spec.seed))
                                                + "\n" for r in rows))
            c = json.loads((dst / "meta_curve.json").read_text())
            for row in c["curve"]:
                row["mean"] += 0.3 + 0.01 * spec.seed
            (dst / "meta_curve.json").write_text(json.dumps(c))
    res3 = load_grid(grid3, root)
    assert record_verdict(res3, "adam_preconditioning", claims_folder=tmp_path / "c").status == "reproduced"
    rec = records.load_records(tmp_path / "c")["adam_preconditioning"][0]
    assert rec.status == "reproduced" and rec.budget.task == "fmnist8_mlp32" and rec.part == grid3.name
    assert rec.budget.seeds == 3 and rec.budget.outer_steps == grid3.outer_steps
    assert rec.anchor == "indist-app3" and rec.chapter == "book/in_distribution"
    assert [c.status for c in rec.checks] == ["supported", "supported"]
    assert any("not Fashion-MNIST MLP 784-128-128" in x for x in rec.shortfalls)


def test_wall_times_are_summed_from_the_files(tmp_path):
    res = load_grid(fake_grid(tmp_path), tmp_path)
    assert res.total_wall_s() == 10.0 * 3  # three finished runs of 10 s each
    assert res.post_wall_s() == 0.0  # the fake files carry no provenance


def test_the_nominal_yardstick_comes_from_a_member_with_a_nominal_term(tmp_path):
    grid = dataclasses.replace(sweep.get_grid("indist", "smoke"),
                               members=(sweep.Member("blackbox", 0.0), sweep.Member("star", 0.1)))
    root = tmp_path / "g"
    src = fake_grid(tmp_path)
    import shutil
    for spec in grid.runs():
        shutil.copytree(src.runs()[0].folder(tmp_path), spec.folder(root))
    bb = grid.runs()[0].folder(root) / "meta_curve.json"
    c = json.loads(bb.read_text())
    c["baselines"]["nominal"]["mean"] = 2.32  # Blackbox's zero-output start does not train
    bb.write_text(json.dumps(c))
    assert nominal_objective(load_grid(grid, root)) == 0.7


def fig3_grid(root, name, task, levels, eval_steps=(20,)):
    """A complete 3-seed Fig. 3 grid (STAR, Hyperparam, Blackbox) under ``root``: ``levels`` = {optimizer: level}, the
    PES meta-loss and meta-objective of every seed sit at that level (plus a little per-seed spread)."""
    grid = dataclasses.replace(sweep.get_grid("indist", "smoke"), name=name, task=task, folder=f"results/{name}",
                               members=tuple(sweep.Member(o, w) for o, w in sweep.FIGURES["fig3"]), seeds=(0, 1, 2),
                               outer_steps=6, eval_steps=eval_steps)
    for spec in grid.runs():
        out = spec.folder(root)
        out.mkdir(parents=True)
        level = levels.get(spec.member.optimizer, 0.7) + 0.01 * spec.seed
        (out / "log.jsonl").write_text("".join(json.dumps({"step": i, "meta_loss": level + 1.0 / i}) + "\n"
                                               for i in range(1, 7)))
        (out / "provenance.json").write_text(json.dumps({"wall_s_total": 10.0, "command": "x"}))
        (out / "theta_final.npz").write_bytes(b"")
        (out / "meta_curve.json").write_text(json.dumps({"curve": [{"step": s, "mean": level, "per_seed": [level]}
                                                                   for s in (0, 3, 6)]}))
        for steps in eval_steps:
            (out / f"evaluate_{steps}.json").write_text(json.dumps({"block": 10, "steps": steps, "per_seed": [
                {"curve": [level] * (steps // 10), "final_train_loss": level, "test_loss": level,
                 "test_accuracy": 0.8}]}))
    return load_grid(grid, root)


def test_fig3_verdict_on_two_tasks(tmp_path):
    """Fig. 3 is claimed on the MLP and the ConvNet: each task is one record with its own budget, and the claim's
    verdict pools their checks."""
    mlp = fig3_grid(tmp_path, "mlp", "fmnist8_mlp32", {"star": 0.5, "blackbox": 0.9})
    conv_good = fig3_grid(tmp_path, "conv_good", "fmnist8_conv", {"star": 0.6, "blackbox": 1.0})
    conv_bad = fig3_grid(tmp_path, "conv_bad", "fmnist8_conv", {"star": 1.0, "blackbox": 0.6})
    folder = tmp_path / "claims"
    alone = record_verdict(mlp, "star_faster_metatraining", claims_folder=folder)
    assert alone.status == "reproduced"
    record_verdict(conv_good, "star_faster_metatraining", claims_folder=folder)
    row = {r.claim.id: r for r in records.status_rows(folder)}["star_faster_metatraining"]
    assert row.status == "reproduced" and [r.part for r in row.records] == ["conv_good", "mlp"]
    bad = record_verdict(conv_bad, "star_faster_metatraining", claims_folder=folder)
    assert bad.status == "not reproduced at this budget"  # reversed, but far from the paper's regime
    assert {c.status for c in bad.record.checks} == {"contradicted"}
    row = {r.claim.id: r for r in records.status_rows(folder)}["star_faster_metatraining"]
    assert row.status == "partly"
    assert bad.record.budget.task == "fmnist8_conv" and any("CIFAR-10 ConvNet" in x for x in bad.record.shortfalls)
    assert np.isnan(mlp.inner_steps_per_s())  # the fake logs record no rate
    rates = {s: r for s, r in enumerate(([np.nan, 10.0, 12.0], [np.nan, 30.0, 40.0]))}
    for s, rate in rates.items():
        mlp.runs["star_wd0.1"][s].log["inner_steps_per_s"] = np.asarray(rate)
    assert mlp.inner_steps_per_s() == pytest.approx(21.0)  # median of 10, 12, 30, 40 (first steps dropped)
    # one evaluation length: the figure has three panels in a row
    fig = plot_figure(mlp, "fig3")
    assert len(fig.axes) == 3 and all(ax.lines for ax in fig.axes)


def test_remedy_seed_table_and_figure(tmp_path):
    """The remedies on three seeds: one row per member and seed, from the stored meta-curves; the figure draws each
    seed and obeys the figure rules."""
    from star.book import figures, pes_remedies

    grid = dataclasses.replace(sweep.get_grid("remedies_seeds", "cpu"), outer_steps=6)
    for spec in grid.runs():
        out = spec.folder(tmp_path)
        out.mkdir(parents=True)
        broken = spec.member.optimizer == "star"  # the paper's STAR ends at ln 10, the variant near its start
        (out / "log.jsonl").write_text("".join(json.dumps({"step": i, "meta_loss": 1.0}) + "\n" for i in range(1, 7)))
        (out / "provenance.json").write_text(json.dumps({"wall_s_total": 1.0}))
        (out / "theta_final.npz").write_bytes(b"")
        (out / "meta_curve.json").write_text(json.dumps({"curve": [
            {"step": t, "mean": (2.303 if broken and t else 0.39) + 0.001 * spec.seed} for t in (0, 20)],
            "baselines": {"nominal": {"mean": 0.39}}}))
    res = load_grid(grid, tmp_path)
    tab = pes_remedies.remedy_seed_table(res)
    assert [r[:2] for r in tab.cells] == [["STAR (the paper's)", "0"], ["STAR (the paper's)", "1"],
                                          ["STAR (the paper's)", "2"], ["STAR, both changes (ours)", "0"],
                                          ["STAR, both changes (ours)", "1"], ["STAR, both changes (ours)", "2"]]
    assert tab.cells[1][2:] == ["0.391", "2.3"] and tab.columns[-1] == "outer step 20 (nats)"
    fig = pes_remedies.plot_remedy_seeds(res)
    ax = fig.axes[0]
    assert len([ln for ln in ax.lines if ln.get_marker() in ("o", "s", "^")]) == 6
    names = [t.get_text() for t in ax.get_legend().get_texts()]
    assert names[:2] == ["STAR (the paper's)", "STAR, both changes (ours)"]
    assert figures.figure_problems(figures.figure_facts(fig)) == []
    assert "ends within 1 % of the nominal optimizer" in pes_remedies.remedies_finding(
        {"sigma": {"fmnist_mlp": {"star_out0.1_bc_eps1e-4": {"0.01": {"outcome": ["ok"] * 8}}}}}, res)
