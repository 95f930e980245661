"""star.book.pes_mechanism, pes_n_runs and pes_remedies: the PES-breaks-STAR chapter's tables and figures from the
stored measurements keep the book's rules, and its findings are computed from them (they change with the evidence)."""

import copy
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from star.book import figures, pes_mechanism, pes_n_runs, pes_remedies

ROOT = Path(__file__).resolve().parents[1]
MECH = json.loads((ROOT / "results/metatrain/breakdown/mechanism.json").read_text())
IV = json.loads((ROOT / "results/metatrain/breakdown/interventions.json").read_text())
SM = json.loads((ROOT / "results/metatrain/breakdown/second_moments.json").read_text())


def test_figures_keep_the_rules():
    for fig in (pes_mechanism.plot_anatomy(MECH), pes_mechanism.plot_direction_bias(MECH),
                pes_remedies.plot_remedies(pes_remedies.load_remedies(ROOT))):
        assert figures.figure_problems(figures.figure_facts(fig)) == []
        plt.close(fig)


def test_tables_name_things_in_words():
    for t in (pes_mechanism.gradient_profile_table(MECH), pes_mechanism.group_table(MECH),
              pes_mechanism.interventions_table(IV), pes_mechanism.second_moments_table(SM),
              pes_mechanism.warm_start_table(MECH), pes_remedies.remedies_table(pes_remedies.load_remedies(ROOT))):
        text = " ".join(t.columns) + " " + " ".join(" ".join(r) for r in t.cells)
        assert figures.id_hits(text) == [], figures.id_hits(text)
    assert pes_mechanism.group_table(MECH).cells[0][0] == "all meta-parameters"


def test_the_breakdown_finding_follows_the_measurements():
    text = pes_mechanism.breakdown_finding(MECH, IV)
    assert "break 88 % of the runs on the paper's MLP" in text
    fixed = copy.deepcopy(MECH)
    fixed["sigma"]["fmnist_mlp"]["star"]["0.01"]["outcome"] = ["ok"] * 8
    assert "break 0 % of the runs on the paper's MLP" in pes_mechanism.breakdown_finding(fixed, IV)


def test_the_n_comparison_reads_every_stored_run_and_its_finding_follows_them():
    runs = pes_n_runs.load_n_runs(ROOT)
    assert sorted(runs) == [8, 64, 256]  # the CPU run and both GPU runs are stored with their meta-curves
    fig = pes_n_runs.plot_n_runs(runs)
    assert figures.figure_problems(figures.figure_facts(fig)) == []
    plt.close(fig)
    t = pes_n_runs.n_runs_table(runs)
    assert [r[0] for r in t.cells] == ["8", "64", "256"] and "GPU (NVIDIA H200)" in t.cells[1][2]
    assert "at every N the meta-objective of θ stayed above the nominal optimizer's" in pes_n_runs.n_finding(runs)
    recovered = copy.deepcopy(runs)  # one snapshot of the N = 256 run below the nominal optimizer: no longer "every N"
    recovered[256]["curve"]["curve"][2]["mean"] = 0.3
    assert "at some N the meta-objective of θ went below" in pes_n_runs.n_finding(recovered)
    assert "No stored run" in pes_n_runs.n_finding({})
