"""star.book.star_optimizer: the STAR chapter's figures, tables and the verdict rule on its meta-training runs."""

import numpy as np
import pytest

from star.book import figures
from star.book import star_optimizer as S
from star.book.files import StoredRun


def test_metatraining_finding_follows_the_runs():
    assert S.metatraining_finding({"a": (0.4, 0.3), "b": (0.7, 0.6)}) == \
        "Meta-training improved on the nominal start on a (0.400 → 0.300); b (0.700 → 0.600) (mean training loss " \
        "over 2,000-step episodes)."
    text = S.metatraining_finding({"a": (0.4, 0.9), "b": (0.7, 0.6)})
    assert "improved on the nominal start on b" in text and "it did not on a (0.400 → 0.900)" in text
    assert S.metatraining_finding({"a": (0.4, 0.9)}).startswith("It did not on a")
    with pytest.raises(ValueError, match="at least one stored run"):
        S.metatraining_finding({})


def test_the_nominal_first_step_closed_form():
    g = np.array([1.0, -1.0, 1e-6])
    step = S.nominal_first_step(g)
    assert np.allclose(step[:2], [-1e-3 * 0.037 / np.sqrt(1e-3 + 1e-6), 1e-3 * 0.037 / np.sqrt(1e-3 + 1e-6)])
    assert np.isclose(step[2], -1e-3 * 37 * 1e-6, rtol=1e-3)  # a plain gradient step for tiny gradients


def test_data_source_without_machine_paths():
    assert S.data_source_label("idx files in /usr/share/datasets/fashion-mnist") == \
        "the Debian package dataset-fashion-mnist"
    assert "/" not in S.data_source_label("idx files in /home/me/data")
    assert S.data_source_label("tensorflow-datasets fashion_mnist") == "tensorflow-datasets fashion_mnist"


def test_training_curves_are_not_scaled_by_a_diverged_run():
    import matplotlib.pyplot as plt
    steps = np.arange(1, 201)
    curves = {"Adam lr=1e-3": np.stack([2.3 * np.exp(-steps / 50) + 0.3] * 2),
              "STAR, nominal init (= nominal)": np.stack([2.3 * np.exp(-steps / 60) + 0.3] * 2),
              "STAR, reference init": np.stack([np.r_[2.3, np.full(199, 3000.0)]] * 2)}
    fig = S.plot_training_curves(curves, ema=0.0)
    main, full = fig.axes
    assert main.get_ylim()[1] == 3.0 and main.get_ylim()[0] < 0.3  # the trained runs fill the main panel
    assert any("STAR, reference init: off the scale" in t.get_text() for t in main.texts)
    assert full.get_ylim()[1] >= 3000.0
    # the full range names the run that leaves the main panel; the others are a faint, unnamed bundle there
    assert [line.get_label() for line in full.get_lines() if not line.get_label().startswith("_")] == [
        "STAR, reference init"]
    assert figures.figure_problems(figures.figure_facts(fig)) == []
    plt.close(fig)
    table = S.training_table(curves, {k: [{"loss": 1.0, "accuracy": 0.5}] * 2 for k in curves})
    assert [r[0] for r in table.cells] == list(curves) and table.cells[2][-1] == "3000"


def _run(name, curve_means, nominal, per_seed_end):
    curve = {"num_seeds": len(per_seed_end),
             "baselines": {"nominal": {"mean": nominal, "per_seed": [nominal] * len(per_seed_end)}},
             "curve": [{"step": 20 * i, "mean": m, "stderr": 0.01, "per_seed": [m] * len(per_seed_end)}
                       for i, m in enumerate(curve_means)]}
    curve["curve"][-1]["per_seed"] = per_seed_end
    log = {"step": np.arange(1.0, 11.0), "meta_loss": np.linspace(2.0, 1.0, 10)}
    return StoredRun(name, log, {"task": "fmnist8_mlp32", "num_tasks": 64, "std": 0.01, "lr": 1e-3},
                     {"command": "python -m star meta-train", "git_commit": "abc", "wall_s_total": 5.0}, curve)


def test_stored_runs_summary_table_and_figure():
    import matplotlib.pyplot as plt
    run = _run("r", [0.72, 0.8, 0.62], 0.72, [0.6, 0.61, 0.65, 0.73])
    s = S.meta_curve_summary(run)
    assert (s["start"], s["end"], s["lower"], s["episodes"]) == (0.72, 0.62, 3, 4)
    assert np.isclose(s["diff"], np.mean([0.6, 0.61, 0.65, 0.73]) - 0.72)
    t = S.meta_training_table({"N = 64": run})
    assert t.cells[0][:3] == ["N = 64", "Fashion-MNIST 8×8 MLP 64-32", "64"] and t.cells[0][-1] == "3 of 4"
    fig = S.plot_meta_training({"N = 64": run, "N = 8": _run("q", [0.72, 2.3], 0.72, [2.3] * 4)})
    left, right = fig.axes
    assert len(right.containers) == 2  # one error-bar series per run
    assert any("ln 10" in t.get_text() for t in fig.legends[0].get_texts())  # one legend, below the panels
    from star.book import figures
    assert figures.figure_problems(figures.figure_facts(fig)) == []
    plt.close(fig)
    with pytest.raises(ValueError, match="no meta_curve.json"):
        S.meta_curve_summary(StoredRun("x", run.log, {}, {}, None))
