"""star.book.in_distribution_long: budgets and the 2000-outer-step grid against the 200-step one (issue: past the
starting transient), on fake run folders."""

import dataclasses
import json
import math

import numpy as np
import pytest

from star import sweep
from star.book.grid_results import load_grid, meta_objective_at
from star.book.in_distribution_long import (
    budget_fraction,
    budget_table,
    long_reading,
    long_short_rows,
    long_short_table,
    paper_counterpart,
)
from star.book.in_distribution_tables import accelerator_estimate_table, stuck_seeds
from star.book.in_distribution_verdicts import (
    complete,
    evidence,
    figure_members,
    record_verdict,
    verdict_or_reason,
    verdict_weight_decay,
)


def test_budget_fraction_of_the_cpu_grids():
    short, long = sweep.get_grid("indist", "cpu"), sweep.get_grid("indist_long", "cpu")
    mlp8 = 64 * 32 + 32 + 32 * 10 + 10  # fmnist8_mlp32: 64-32-10
    mlp = 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10  # fmnist_mlp: 784-128-128-10
    assert budget_fraction(short)["params"] == mlp8 and paper_counterpart(long).name == "indist"
    b = budget_fraction(short, num_params={"fmnist_mlp": mlp})
    assert b["paper_task"] == "fmnist_mlp" and b["outer_fraction"] == 200 / 5000
    assert b["inner_fraction"] == pytest.approx(200 * 64 / (5000 * 8))
    assert b["compute_fraction"] == pytest.approx(200 * 64 * mlp8 / (5000 * 8 * mlp))
    assert round(100 * b["compute_fraction"], 2) == 0.65  # the figure the issue quotes
    bl = budget_fraction(long, num_params={"fmnist_mlp": mlp, "fmnist8_mlp32": mlp8})
    assert bl["outer_fraction"] == 2000 / 5000 and bl["inner_fraction"] == pytest.approx(2000 * 16 / (5000 * 8))
    conv = budget_fraction(sweep.get_grid("indist_conv", "cpu"), num_params={"fmnist8_conv": 1, "cifar10_conv": 4})
    assert conv["paper_task"] == "cifar10_conv" and conv["compute_fraction"] == pytest.approx(150 * 16 / 4 / (5000 * 8))
    with pytest.raises(ValueError, match="no paper-scale grid runs its task"):
        paper_counterpart(dataclasses.replace(short, task="digits_mlp32"))
    tab = budget_table([short, long], num_params={"fmnist_mlp": mlp, "fmnist8_mlp32": mlp8})
    assert tab.cells[0][-1] == "0.652 %" and tab.cells[1][4] == "40 %"


def _fake(root, grid, level):
    """Finished run folders of ``grid`` whose meta-objective falls from 1.0 to ``level[optimizer]``."""
    for spec in grid.runs():
        out = spec.folder(root)
        (out / "thetas").mkdir(parents=True)
        n = grid.outer_steps
        (out / "log.jsonl").write_text("".join(json.dumps({"step": i, "meta_loss": 1.0}) + "\n"
                                               for i in range(1, n + 1)))
        (out / "provenance.json").write_text(json.dumps({"wall_s_total": 1.0}))
        (out / "theta_final.npz").write_bytes(b"")
        end = level[spec.member.optimizer] + 0.01 * spec.seed
        curve = [{"step": s, "mean": 1.0 + (end - 1.0) * s / n, "per_seed": [0.0]} for s in range(0, n + 1, 2)]
        (out / "meta_curve.json").write_text(json.dumps({"curve": curve, "baselines": {"nominal": {"mean": 0.7}}}))
        t = max(grid.eval_steps)
        c = [0.5] * (grid.horizon // 10) + [0.5 * (2.0 if spec.member.optimizer == "blackbox" else 1.0)] * (
            (t - grid.horizon) // 10)
        (out / f"evaluate_{t}.json").write_text(json.dumps({"block": 10, "steps": t, "per_seed": [
            {"curve": c, "final_train_loss": c[-1], "test_loss": 0.6, "test_accuracy": 0.8}]}))


def test_long_against_short(tmp_path):
    base = sweep.get_grid("indist_long", "smoke")
    short = dataclasses.replace(base, name="s", folder="results/s", outer_steps=4, seeds=(0, 1))
    long = dataclasses.replace(base, name="l", folder="results/l", outer_steps=8, seeds=(0, 1))
    _fake(tmp_path, short, {"star": 0.8, "blackbox": 0.9})
    _fake(tmp_path, long, {"star": 0.6, "blackbox": 0.95})
    rs, rl = load_grid(short, tmp_path), load_grid(long, tmp_path)
    star = sweep.Member("star", 0.1)
    np.testing.assert_allclose(meta_objective_at(rl, star, 4), [0.8, 0.805])  # halfway from 1.0 to 0.6(+)
    assert meta_objective_at(rl, star, 5).size == 0
    rows = {r["member"].optimizer: r for r in long_short_rows(rs, rl)}
    assert rows["star"]["short_end"][0] == pytest.approx(0.805) and rows["star"]["long_end"][0] == pytest.approx(0.605)
    assert rows["star"]["short_end"][1] == pytest.approx(0.005)
    assert rows["blackbox"]["beyond_long"][0] == pytest.approx(2.0) and rows["star"]["beyond_long"][0] == 1.0
    tab = long_short_table(rs, rl)
    assert tab.caption == "nominal optimizer: 0.700 on the long grid's episodes"
    at4 = rows["star"]["long_at_short"]
    assert at4[0] == pytest.approx(0.8025) and tab.cells[0][3] == f"{at4[0]:.3f} ± {at4[1]:.3f}"
    assert tab.cells[0][:3] == ["STAR (outer wd 0.1)", "2", "0.805 ± 0.005"] and tab.cells[0][4] == "0.605 ± 0.005"
    # a member without runs in the short grid: its short columns are blank
    only_long = dataclasses.replace(short, members=(sweep.Member("star", 0.1),))
    rows2 = {r["member"].optimizer: r for r in long_short_rows(load_grid(only_long, tmp_path), rl)}
    assert math.isnan(rows2["blackbox"]["short_end"][0]) and math.isnan(rows2["blackbox"]["beyond_short"][0])


def test_verdicts_on_a_grid_with_some_of_a_figures_members(tmp_path):
    """App.2's rule on the long grid's two weight decays (0.1 and 1.0); App.3 needs both of its members."""
    base = sweep.get_grid("indist_long", "smoke")
    long = dataclasses.replace(base, name="l", folder="results/l", outer_steps=8, seeds=(0, 1, 2),
                               members=(sweep.Member("star", 0.1), sweep.Member("star", 1.0),
                                        sweep.Member("blackbox", 0.0)))
    _fake(tmp_path, long, {"star": 0.6, "blackbox": 0.95})
    res = load_grid(long, tmp_path)
    ev = evidence(res)
    assert figure_members(ev, "app2") == ["star_wd0.1", "star_wd1.0"] and complete(ev, "app2") == []
    assert complete(ev, "app3") == ["star_nopre_wd0.1: meta_loss for 0 of 3 seeds",
                                      "star_nopre_wd0.1: final_objective for 0 of 3 seeds"]
    checks, text = verdict_weight_decay(ev)
    assert len(checks) == 2 and "wd 0.1" in checks[0].question and "than wd 0.1" in checks[1].question
    v = record_verdict(res, "weight_decay_tradeoff", part="fmnist8_mlp32-8", claims_folder=tmp_path / "claims")
    assert v.record.part == "fmnist8_mlp32-8" and v.record.budget.seeds == 3
    assert record_verdict(res, "adam_preconditioning", claims_folder=tmp_path / "claims").startswith("Not recorded")
    # the full grid still needs every weight decay of the figure
    full = evidence(load_grid(sweep.get_grid("indist", "cpu"), tmp_path / "nothing"))
    assert figure_members(full, "app2") == ["star_wd0.0", "star_wd0.1", "star_wd0.5", "star_wd1.0"]


def test_verdict_or_reason_names_the_missing_seeds_in_plain_words(tmp_path):
    base = sweep.get_grid("indist_long", "smoke")
    long = dataclasses.replace(base, name="l", folder="results/l", outer_steps=8, seeds=(0,),
                               members=(sweep.Member("star", 0.1), sweep.Member("hyperparam", 0.0),
                                        sweep.Member("blackbox", 0.0)))
    _fake(tmp_path, long, {"star": 0.6, "hyperparam": 0.7, "blackbox": 0.95})
    claims = tmp_path / "claims"
    text = verdict_or_reason(load_grid(long, tmp_path), "star_faster_metatraining", claims_folder=claims)
    assert text == ("Fig. 3 at 8 outer steps: no verdict yet — it needs 3 meta-training seeds of each member, and the "
                    "stored seeds are: STAR (outer wd 0.1): 1; Hyperparam: 1; Blackbox: 1.")
    assert not claims.exists()  # nothing recorded
    three = dataclasses.replace(long, seeds=(0, 1, 2))
    _fake(tmp_path / "b", three, {"star": 0.6, "hyperparam": 0.7, "blackbox": 0.95})
    v = verdict_or_reason(load_grid(three, tmp_path / "b"), "star_faster_metatraining", claims_folder=claims)
    assert v.record.budget.seeds == 3 and claims.exists()


def test_long_reading_orders_the_members_and_names_the_unstable_ones(tmp_path):
    base = sweep.get_grid("indist_long", "smoke")
    short = dataclasses.replace(base, name="s", folder="results/s", outer_steps=4, seeds=(0,))
    long = dataclasses.replace(base, name="l", folder="results/l", outer_steps=8, seeds=(0,))
    _fake(tmp_path, short, {"star": 0.8, "blackbox": 0.9})
    _fake(tmp_path, long, {"star": 0.6, "blackbox": 0.55})
    text = long_reading(load_grid(short, tmp_path), load_grid(long, tmp_path))
    assert text.startswith("After 8 outer steps the meta-objective is lowest for Blackbox (0.550), then STAR "
                           "(outer wd 0.1) (0.600); the nominal optimizer's is 0.700.")
    assert ("1 of 2 stay within 1.1× their loss at the horizon (STAR (outer wd 0.1)); Blackbox (2.00×) ends above "
            "it.") in text
    assert "one meta-training run (seed 0)" in text and text._repr_markdown_() == str(text)
    empty = dataclasses.replace(long, folder="results/none")
    assert long_reading(load_grid(short, tmp_path), load_grid(empty, tmp_path)).startswith("No run")


def test_stuck_seeds_names_the_runs_that_end_at_ln10(tmp_path):
    base = sweep.get_grid("indist_long", "smoke")
    grid = dataclasses.replace(base, name="g", folder="results/g", outer_steps=4, seeds=(0, 1, 2),
                               members=(sweep.Member("star", 0.1), sweep.Member("hyperparam", 0.0),
                                        sweep.Member("blackbox", 0.0)))
    # _fake adds 0.01 × seed to the final level: with ln 10 − 0.01, seeds 0, 1 and 2 end 0.01, 0.0 and 0.01 away
    _fake(tmp_path, grid, {"star": 0.6, "hyperparam": 0.7, "blackbox": math.log(10.0) - 0.01})
    res = load_grid(grid, tmp_path)
    assert stuck_seeds(res) == ("Some seeds do not train at all: Blackbox's seeds 0, 1 and 2 end at ln 10 ≈ 2.30, "
                                  "the loss of a network that does not learn, after 4 outer steps.")
    one = stuck_seeds(res, tolerance=0.005)
    assert one == ("Some seeds do not train at all: Blackbox's seed 1 ends at ln 10 ≈ 2.30, the loss of a network "
                   "that does not learn, after 4 outer steps.")
    _fake(tmp_path / "ok", grid, {"star": 0.6, "hyperparam": 0.7, "blackbox": 0.9})
    assert stuck_seeds(load_grid(grid, tmp_path / "ok")).startswith("No seed ends at ln 10")


def test_accelerator_estimate_table_groups_thousands():
    tab = accelerator_estimate_table()
    per_run, total = tab.columns.index("inner steps per run"), tab.columns.index("inner steps in all")
    for row in tab.cells:
        assert "," in row[per_run] and "," in row[total]
        runs = int(row[tab.columns.index("runs")])
        assert int(row[total].replace(",", "")) == runs * int(row[per_run].replace(",", ""))
