"""The figures of the chapter "In-distribution meta-training" (``book/in_distribution.ipynb``): Fig. 3 and Figs.
App.1–App.4 at the book's budget, drawn from a grid's stored runs (:mod:`star.book.grid_results`):

* the PES meta-loss against the outer step, each seed EMA-smoothed with 0.98 (App. B.2), mean ± one standard
  error over meta-training seeds (:func:`plot_meta_loss`; individual seeds, Fig. App.1: :func:`plot_seeds`);
* the unperturbed meta-objective of the θ snapshots (:func:`plot_meta_objective`) — at σ = 0.01 the PES
  meta-loss, the loss of the *perturbed* θ ± ε, can move differently from the optimizer's own objective;
* inner training with every learned optimizer at the horizon and far beyond it, against tuned Adam and the
  nominal optimizer (:func:`plot_inner_training`);

all four panels of one of the paper's figures: :func:`plot_figure`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from star.book import labels
from star.book.grid_results import (
    EMA,
    GridResults,
    eval_curves,
    inner_curves,
    members_of,
    meta_loss_curves,
    meta_objective,
    nominal_objective,
)
from star.grids import Member
from star.plotting import ema, mean_stderr_band

__all__ = ["COLORS", "LINESTYLES", "MARKERS", "plot_meta_loss", "plot_seeds", "plot_meta_objective",
           "plot_inner_training", "plot_figure"]

COLORS = {"star_wd0.1": "#de2d26", "hyperparam_wd0.0": "#fd8d3c", "blackbox_wd0.0": "#756bb1",
          "star_nopre_wd0.1": "#31a354", "star_nonom_wd0.1": "#3182bd", "star_wd0.0": "#e6ab02",
          "star_wd0.5": "#1b9e77", "star_wd1.0": "#3f007d", "adam": "#08519c", "nominal": "0.2"}
_LEGEND = dict(fontsize=8, frameon=False)
#: line style of each member, so that members stay apart in print and where curves cross
LINESTYLES = {"star_wd0.1": "-", "hyperparam_wd0.0": "--", "blackbox_wd0.0": "-.", "star_nopre_wd0.1": ":",
              "star_nonom_wd0.1": "--", "star_wd0.0": ":", "star_wd0.5": "--", "star_wd1.0": "-.", "adam": "--",
              "nominal": ":"}
MARKERS = {"star_wd0.1": "o", "hyperparam_wd0.0": "s", "blackbox_wd0.0": "^", "star_nopre_wd0.1": "D",
           "star_nonom_wd0.1": "v", "star_wd0.0": "P", "star_wd0.5": "X", "star_wd1.0": "*"}


def _ls(lab: str) -> str:
    return LINESTYLES.get(lab, "-")


def _marks(lab: str, n: int) -> dict:
    """A member's marker every eighth of a curve of ``n`` points, so that curves lying on each other stay apart."""
    return dict(marker=MARKERS.get(lab, "o"), markevery=max(1, n // 8), ms=4) if n > 1 else {}


def plot_meta_loss(ax, results: GridResults, members: Sequence[Member], coefficient: float = EMA):
    """PES meta-loss against the outer step: mean ± one standard error over seeds of the EMA-smoothed curves."""
    for m in members:
        curves = meta_loss_curves(results, m, coefficient)
        steps = np.arange(1, curves.shape[1] + 1)
        color = COLORS.get(m.label)
        if len(curves) >= 2:
            mean, lo, hi = mean_stderr_band(curves)
            ax.fill_between(steps, lo, hi, color=color, alpha=0.25, lw=0)
        else:
            mean = curves[0]
        n = len(curves)
        ax.plot(steps, mean, color=color, ls=_ls(m.label), label=f"{labels.member(m)}, {n} seed{'s' if n != 1 else ''}",
                **_marks(m.label, len(steps)))
    ax.set(xlabel="outer step", ylabel="PES meta-loss (nats, EMA 0.98)", title="PES meta-loss (loss of θ ± ε)")


def plot_seeds(ax, results: GridResults, members: Sequence[Member], coefficient: float = EMA):
    """Fig. App.1: every seed's EMA-smoothed PES meta-loss (legend beside the panel)."""
    for m in members:
        curves = meta_loss_curves(results, m, coefficient)
        for i, c in enumerate(curves):
            ax.plot(np.arange(1, len(c) + 1), c, color=COLORS.get(m.label), ls=_ls(m.label), lw=0.9, alpha=0.8,
                    label=labels.member(m) if i == 0 else None)
    ax.set(xlabel="outer step", ylabel=f"PES meta-loss (nats, EMA {coefficient})",
           title="every meta-training seed (Fig. App.1)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), **_LEGEND)


def plot_meta_objective(ax, results: GridResults, members: Sequence[Member]):
    """Unperturbed meta-objective of the θ snapshots, mean ± s.e. over meta-training seeds; nominal dotted."""
    for j, m in enumerate(members):
        steps, obj = meta_objective(results, m)
        if obj.size == 0:
            continue
        se = obj.std(axis=0, ddof=1) / np.sqrt(len(obj)) if len(obj) > 1 else np.zeros(obj.shape[1])
        dodge = (j - (len(members) - 1) / 2) * 0.012 * float(np.ptp(steps))  # error bars side by side, not stacked
        ax.errorbar(np.asarray(steps) + dodge, obj.mean(axis=0), yerr=se, color=COLORS.get(m.label), ls=_ls(m.label),
                    marker=MARKERS.get(m.label, "o"), ms=4, capsize=2, label=labels.member(m))
    nom = nominal_objective(results)
    if nom is not None:
        ax.axhline(nom, color=COLORS["nominal"], ls=":", lw=1.2, label="nominal optimizer")
    ax.set(xlabel="outer step", ylabel="mean training loss over an episode (nats)",
           title="meta-objective of θ itself (no perturbation)")


def plot_inner_training(ax, results: GridResults, members: Sequence[Member], steps: int):
    """Inner training for ``steps`` steps with each learned optimizer (mean over meta × evaluation seeds, EMA
    over the stored block means), tuned Adam and the nominal optimizer; the horizon dotted."""
    for m in members:
        c = inner_curves(results, m, steps)
        if c.size:
            block = steps // c.shape[1]
            ax.plot(np.arange(1, c.shape[1] + 1) * block, ema(np.nanmean(c, axis=0), 0.9), color=COLORS.get(m.label),
                    ls=_ls(m.label), label=labels.member(m), **_marks(m.label, c.shape[1]))
    b = results.baselines
    if b is not None:
        adam = f"Adam, tuned learning rate {b['adam_search']['best_lr']:g}"
        for key, name in (("adam", adam), ("nominal", "nominal optimizer")):
            if str(steps) in b[key]:
                c = eval_curves([b[key][str(steps)]])
                block = steps // c.shape[1]
                ax.plot(np.arange(1, c.shape[1] + 1) * block, ema(np.nanmean(c, axis=0), 0.9), color=COLORS[key],
                        ls=LINESTYLES[key], lw=1.4, label=name)
    if steps > results.grid.horizon:
        ax.axvline(results.grid.horizon, color="0.6", ls="-", lw=0.8, label="the meta-training horizon")
    ax.set(xlabel="inner step", ylabel="training loss (nats, log scale)", yscale="log",
           title=f"inner training, {steps:,} steps")


def plot_figure(results: GridResults, figure: str):
    """One of the paper's figures at our budget: PES meta-loss, meta-objective of θ, inner training at the horizon
    and at the longest evaluation; one legend for all panels, below them."""
    import matplotlib.pyplot as plt


    members = members_of(results, figure)
    steps = sorted(results.grid.eval_steps)
    lengths = [steps[0], steps[-1]] if len(steps) > 1 else steps  # the horizon and the longest evaluation
    # four panels in a 2x2 grid, or three in a row with one evaluation length
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.2)) if len(lengths) == 2 else plt.subplots(1, 3, figsize=(13, 4.8))
    axes = axes.ravel()
    plot_meta_loss(axes[0], results, members)
    plot_meta_objective(axes[1], results, members)
    for ax, n in zip(axes[2:], lengths):
        plot_inner_training(ax, results, members, n)
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            key = n.split(",")[0] if n.endswith(("seed", "seeds")) else n
            if key not in [x.split(",")[0] if x.endswith(("seed", "seeds")) else x for x in names]:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.0), **_LEGEND)
    paper_name = {"fig3": "Fig. 3"}.get(figure, figure.replace("app", "Fig. App."))
    fig.suptitle(f"{paper_name} at our budget: {labels.task_short(results.grid.task)}, "
                 f"{results.grid.outer_steps:,} outer steps", fontsize=11)
    rows = math.ceil(len(names) / 3)
    fig.tight_layout(rect=(0, 0.035 * rows * (8.2 / fig.get_figheight()), 1, 1))
    return fig
