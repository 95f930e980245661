"""star.book.figures and star.book.labels: the figure rules fail on figures that break them, pass on figures
that keep them; the facts travel in the PNG; labels never show an id."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pytest

from star import plotting, sweep
from star.book import figures, labels

X = np.linspace(0.0, 1.0, 50)


def _problems(fig):
    out = figures.figure_problems(figures.figure_facts(fig))
    plt.close(fig)
    return out


def _good():
    fig, (a, b) = plt.subplots(1, 2, sharey=True)
    a.plot(X, X, label="STAR")
    a.plot(X, X ** 2, "--", label="Hyperparam")
    a.axhline(0.5, color="0.3", ls=":", label="nominal optimizer")
    a.set(xlabel="outer step", ylabel="meta-loss (nats)")
    b.plot(X, 1 - X, label="Blackbox")
    b.set_xlabel("outer step")
    fig.legend(*a.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=9)
    fig.tight_layout(rect=(0, 0.15, 1, 1))
    return fig


def test_a_figure_that_keeps_the_rules_passes():
    assert _problems(_good()) == []


@pytest.mark.parametrize("breakage, message", [
    (lambda ax: ax.set_ylabel(""), "panel 1 has no y-axis label"),
    (lambda ax: ax.legend(fontsize=6, loc="upper right", bbox_to_anchor=(1.6, 1.0)), "text at 6 pt"),
    (lambda ax: ax.legend(fontsize=9, loc="center"), "covers"),
    (lambda ax: ax.plot(X, X, color="C5", label="under STAR"), "lies exactly under"),
    (lambda ax: ax.plot(X, X ** 3, color="C0", label="same as STAR"), "share one colour, line style and marker"),
    (lambda ax: ax.plot(X, X + 1e-4, "C4:", label="on STAR"), "shows no marker of its own"),
    (lambda ax: (ax.plot([], [], "k-.", label="proxy"), ax.legend(fontsize=9, loc="upper left",
                                                                 bbox_to_anchor=(1.4, 1.0))),
     "looks like nothing drawn"),
    (lambda ax: ax.set_title("task fmnist8_mlp32"), "'fmnist8_mlp32' is an internal id"),
    (lambda ax: ax.set_title("star_wd0.1, Dense_0/kernel"), "internal id"),
])
def test_each_rule_fails_on_a_figure_that_breaks_it(breakage, message):
    fig = _good()
    breakage(fig.axes[0])
    problems = "\n".join(_problems(fig))
    assert message in problems, problems


def test_a_curve_under_another_shows_through_staggered_markers_or_a_legend_that_says_so():
    """Two series in different styles on the same values: the one drawn first is hidden unless it shows markers
    where the other shows none (star.plotting.staggered_markevery) or a legend label says that they coincide."""
    def fig_with(lower: dict, upper: dict, lower_label="bias-corrected", upper_label="output layer ×0.1"):
        fig, ax = plt.subplots()
        ax.plot(X, X, color="C0", ls="--", label=lower_label, **lower)
        ax.plot(X, X, color="C1", ls="-.", label=upper_label, **upper)
        ax.plot(X, 1 - X, color="C2", label="apart")  # crosses them: not a coincidence
        ax.set(xlabel="inner step", ylabel="dead units (%)")
        ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        fig.tight_layout()
        return fig
    hidden = _problems(fig_with({}, {}))
    assert len(hidden) == 1 and "'bias-corrected' lies under 'output layer ×0.1'" in hidden[0], hidden
    # markers on the same points as the upper curve's are hidden too
    assert len(_problems(fig_with(dict(marker="s"), dict(marker="^")))) == 1
    staggered = [dict(marker=m, markevery=plotting.staggered_markevery(k, 2, len(X))) for k, m in enumerate("s^")]
    assert _problems(fig_with(*staggered)) == []
    assert _problems(fig_with(dict(marker="s"), {})) == []  # the upper curve has no markers: the lower one's show
    assert _problems(fig_with({}, {}, upper_label="output layer ×0.1 (coincides with bias-corrected)")) == []


def test_a_shared_axis_may_be_labelled_once_but_not_across_rows():
    fig, axes = plt.subplots(2, 2, sharex=True, sharey=True)
    for ax in axes.flat:
        ax.plot(X, X)
    axes[1, 0].set(xlabel="step", ylabel="loss (nats)")
    axes[1, 1].set_xlabel("step")
    axes[0, 0].set_ylabel("loss (nats)")
    assert _problems(fig) == []
    fig, axes = plt.subplots(1, 2)  # not shared: each panel needs its own label
    for ax in axes:
        ax.plot(X, X)
        ax.set_xlabel("step")
    axes[0].set_ylabel("loss (nats)")
    assert _problems(fig) == ["panel 2 has no y-axis label"]


def test_the_facts_travel_in_the_png(tmp_path):
    fig = _good()
    path = tmp_path / "f.png"
    path.write_bytes(figures.png_with_facts(fig))
    facts = figures.read_facts(path)
    assert facts["legends"][0]["min_fontsize"] == 9 and facts["panels"][0]["ylabel"] == "meta-loss (nats)"
    assert figures.figure_problems(facts) == []
    plt.imsave(tmp_path / "plain.png", np.zeros((4, 4)))
    assert figures.read_facts(tmp_path / "plain.png") is None
    assert figures.install() is False  # not in a notebook kernel: nothing to install
    plt.close("all")


def test_labels_are_words_and_ids_are_known():
    ids = labels.internal_ids()
    for g in sweep.GRIDS.values():
        assert {m.label for m in g.members} <= ids and g.task in ids
    assert {"fmnist8_mlp32", "star_out0.1_bc_eps1e-4", "Dense_0/kernel", "remedies_seeds"} <= ids
    assert "adam" not in ids and "nqm" not in ids  # words are not ids
    every = [*labels.OPTIMIZERS.values(), *labels.TASKS.values(), *labels.TASKS_SHORT.values(), *labels.GRIDS.values(),
             *labels.LAYERS.values(), *labels.TASK_LOSS.values()]
    every += [labels.member(m) for g in sweep.GRIDS.values() for m in g.members]
    assert [t for t in every if figures.id_hits(t)] == []
    assert labels.member("star_wd0.1") == "STAR (outer wd 0.1)" == labels.member(sweep.Member("star", 0.1))
    assert labels.member("hyperparam_wd0.0") == "Hyperparam"
    assert labels.member("star_out0.1_bc_eps1e-4_wd0.1_lr0.001") == "STAR, both changes (ours) (outer lr 0.001)"
    assert labels.member("star_wd0.1_init-nominal") == "STAR (outer wd 0.1, nominal start)"
    assert labels.task("some_new_task") == "some new task" and labels.layer("Dense_7/kernel") == "Dense 7 kernel"


@pytest.mark.parametrize("text, hit", [
    ("see VERDICT_RULES", "VERDICT_RULES (constant name)"), ("ReleasedUnavailableError", "exception class"),
    ("{'a': 1}", "Python repr"), ("at ca2aa69", "commit hash"), ("tests/test_ood.py::test_x", "test name"),
    ("the star_wd0.5_s2 run", "grid member or run id"), ("strict version: False", "Python bool or None"),
    ("(16)–(17) hold (True), yet", "Python bool or None"), ("robust → None", "Python bool or None"),
])
def test_id_patterns_catch_each_kind(text, hit):
    assert any(hit in h for h in figures.id_hits(text, ids=set())), figures.id_hits(text, ids=set())
    assert figures.id_hits("STAR with outer weight decay 0.5 after 200 steps, 2.3e-4 [95 %]", ids=set()) == []
    prose = "True to the paper: None of the runs (None of them; nominal=True in the code)"
    assert figures.id_hits(prose, ids=set()) == []


def test_every_learned_row_of_the_ood_suite_has_a_readers_name():
    """A row of any learned set of the OOD suite shows in tables and legends by labels.optimizer: no id leaks."""
    from star.learned_optimizers import LEARNED_SETS

    rows = {name for rows in LEARNED_SETS.values() for name in rows}
    assert rows - set(labels.OPTIMIZERS) == set()
    assert labels.optimizer("star_wd1.0_long") == "STAR (outer wd 1), 2000 outer steps"
