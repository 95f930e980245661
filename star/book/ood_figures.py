"""The out-of-distribution chapter's figures (``book/ood.ipynb``, Figs. App.5–App.6): training curves per task
(:func:`plot_curves_grid`) and every optimizer's final loss against tuned Adam's (:func:`plot_summary`).

Both take the stored suite as :func:`star.book.ood_results.load_stored` or :func:`star.ood_records.load_results`
return it (``{task: (record, curves)}``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from star.book import labels
from star.book.ood_results import meta_run_curves, optimizer_order, per_meta_run, summarize
from star.ood_scores import failed_runs, final_loss
from star.plotting import mean_stderr_band

__all__ = ["STYLES", "plot_curves_grid", "plot_summary"]


#: Colour and line style per optimizer row of the suite (names come from :mod:`star.book.labels`; rows
#: not here are drawn in the next default colour).
STYLES = {
    "adam": ("C0", "-"), "nadamw": ("C1", "-"), "star": ("C3", "-"), "star_wd0.5": ("C4", "--"),
    "hyperparam": ("C2", "-"), "blackbox": ("C7", "-."), "released_star": ("C3", ":"),
    "released_hyperparam": ("C2", ":"), "released_star_nonom": ("C5", ":"),
    # seed 0 of each member of the 2000-outer-step grid (star.learned_optimizers.LONG_LEARNED)
    "star_long": ("C3", "-"), "star_wd1.0_long": ("C4", "--"), "star_nopre_long": ("C9", "-."),
    "hyperparam_long": ("C2", "-"), "blackbox_long": ("C7", "-."),
}


def _style(name):
    """``(label, colour, line style)`` of an optimizer row."""
    colour, ls = STYLES.get(name, (None, "-"))
    return labels.optimizer(name), colour, ls


def _band_rows(rec, curves, opt) -> np.ndarray:
    """The rows whose mean ± standard error a panel shows: a baseline's evaluation seeds; a learned
    optimizer with several meta-training runs: each run's mean over the evaluation seeds (so the band is
    the spread due to meta-training, the seeds being shared by every θ), else its evaluation seeds."""
    c = meta_run_curves(rec, curves, opt).astype(np.float64)
    c = np.where(np.isfinite(c), c, np.nan)
    return c.mean(axis=1) if c.shape[0] > 1 else c[0]


def plot_curves_grid(results: Mapping, tasks: Sequence[str] | None = None, *, ncols: int = 4,
                     coefficient: float = 0.98, horizon: int | None = None):
    """One panel per task: training loss (in the task's own unit) against the inner step, mean ± one standard
    error, EMA-smoothed with ``coefficient`` as the paper's plots (App. B: 0.98). For a baseline the standard
    error is over its evaluation seeds; for a learned optimizer with several meta-training runs it is over the
    runs, each averaged over the evaluation seeds first (:func:`_band_rows`). Where a run diverged the mean is
    undefined: line and band stop, and a cross at the top edge marks the step. The y-range ends a little above the
    initial loss, so an optimizer that makes the model worse leaves the panel at the top; a triangle at the top
    right marks a line that ends above the panel. ``horizon``: the learned optimizers' meta-training horizon, drawn
    as a dotted vertical line where the runs are longer."""
    import matplotlib.pyplot as plt

    tasks = list(tasks if tasks is not None else results)
    ncols = max(1, min(ncols, len(tasks)))
    nrows = max(1, math.ceil(len(tasks) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols + (1.5 if ncols == 1 else 0), 2.9 * nrows),
                             squeeze=False)
    handles, any_diverged, any_above, any_horizon = {}, False, False, False
    for ax, name in zip(axes.flat, tasks):
        rec, curves = results[name]
        init = float(np.nanmedian(np.asarray(curves["adam"])[:, 0]))
        top = init * 1.15
        lows, above = [], 0
        for opt in optimizer_order(curves):
            c = _band_rows(rec, curves, opt)
            mean, lo, hi = mean_stderr_band(np.minimum(c, 1e6), coefficient=coefficient)
            ok = np.isfinite(mean)
            shown = ok & (mean <= top)  # no band where the line itself has left the panel
            lo, hi = np.where(shown, lo, np.nan), np.where(shown, hi, np.nan)
            label, colour, ls = _style(opt)
            x = np.arange(1, c.shape[1] + 1)
            (h,) = ax.plot(x, mean, color=colour, ls=ls, lw=1.4, label=label)
            ax.fill_between(x, lo, hi, color=h.get_color(), alpha=0.2, lw=0)
            handles.setdefault(label, h)
            if not ok.all():
                any_diverged = True
                stop = int(np.argmin(ok)) + 1
                ax.plot([stop], [top], marker="x", ms=7, mew=2, color=h.get_color(), clip_on=False, ls="none",
                        label="_diverged")
            if ok.any():
                lows.append(np.nanmin(mean))
                if ok[-1] and mean[-1] > top:  # the line ends above the panel: a triangle at the top right
                    any_above, above = True, above + 1
                    ax.plot([x[-1] * (1.0 - 0.06 * (above - 1))], [top], marker="^", ms=7, color=h.get_color(),
                            clip_on=False, ls="none",
                            label="_above")
        if horizon is not None and any(np.shape(c)[-1] > horizon for c in curves.values()):
            any_horizon = True
            ax.axvline(horizon, color="0.45", ls=":", lw=1.2, label="_horizon")
        bottom = min(lows) if lows else 0.0
        ax.set_ylim(max(0.0, bottom - 0.05 * (top - bottom)), top)
        ax.set_title(labels.task_short(name), fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("inner step", fontsize=8)
        ax.set_ylabel(labels.task_loss(name), fontsize=8)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    from matplotlib.lines import Line2D

    if any_diverged:
        handles["diverged (the line stops)"] = Line2D([], [], color="0.3", marker="x", ms=7, mew=2, ls="none")
    if any_horizon:
        handles["meta-training horizon"] = Line2D([], [], color="0.45", ls=":", lw=1.2)
    if any_above:
        handles["ends above the panel"] = Line2D([], [], color="0.3", marker="^", ms=7, ls="none")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 4),
               fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.0))
    rows_of_legend = math.ceil(len(handles) / min(len(handles), 4))
    fig.tight_layout(rect=(0, 0.035 * rows_of_legend * (4 / max(nrows, 1)) ** 0.5, 1, 1))
    return fig


def plot_summary(results: Mapping, tasks: Sequence[str] | None = None, *, cap: float = 10.0):
    """Per task, how much worse than tuned Adam each optimizer ends: (its final training loss − tuned Adam's) /
    the loss at the first step, on a symmetric-log axis (0: as good as tuned Adam; negative: better; 1: the whole
    initial loss worse). Measured against the initial loss, a task where Adam reaches almost zero does not inflate
    the gap. Large markers pool all evaluation runs (a learned optimizer's every meta-trained θ on every evaluation
    seed); small dots are a learned optimizer's θ's one by one. Hollow: some run ended above its first loss; a cross
    at the right edge: some run diverged; a right-pointing triangle at the edge: beyond ``cap``."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    tasks = list(tasks if tasks is not None else results)
    sub = {t: results[t] for t in tasks}
    summ = summarize(sub)
    per_run = per_meta_run(sub)
    opts = optimizer_order({o for t in tasks for o in results[t][1]} - {"adam"})
    fig, ax = plt.subplots(figsize=(9.5, 0.36 * len(tasks) + 1.8))
    edge = cap * 2.5

    def gap(t, final):
        first = float(np.nanmedian(np.asarray(results[t][1]["adam"])[:, 0]))
        return (final - summ[t]["adam"]["final"]) / first

    def place(x):
        return (edge / 1.4, ">") if not math.isfinite(x) or x > cap else (x, "o")

    offsets = np.linspace(-0.3, 0.3, len(opts)) if len(opts) > 1 else [0.0]
    beyond = diverged_any = hollow_any = False
    for k, opt in enumerate(opts):
        colour = _style(opt)[1]
        for i, t in enumerate(tasks):
            if opt not in summ[t]:
                continue
            r = summ[t][opt]
            y = i + offsets[k]
            c = np.asarray(results[t][1][opt])
            diverged = not np.all(np.isfinite(final_loss(c)))
            if opt in results[t][0].get("learned", {}):
                xs = [place(gap(t, pr[t][opt]["final"]))[0] for pr in per_run if opt in pr[t]]
                if len(xs) > 1:
                    ax.plot(xs, [y] * len(xs), marker=".", ms=4, ls="none", alpha=0.7, color=colour)
            x, marker = place(gap(t, r["final"]))
            if diverged:
                diverged_any = True
                ax.plot([edge / 1.15], [y], marker="x", ms=7, mew=2, ls="none", color=colour)
            elif r["unstable"] or np.any(failed_runs(c)):
                hollow_any, beyond = True, beyond or marker == ">"
                ax.plot([x], [y], marker=marker, ms=6.5, mfc="none", mew=1.5, ls="none", color=colour)
            else:
                beyond |= marker == ">"
                ax.plot([x], [y], marker=marker, ms=6.5, ls="none", color=colour)
    ax.axvline(0.0, color="k", lw=1.2)
    ax.set_xscale("symlog", linthresh=1e-2)
    ax.set_xlim(-0.5, edge)
    ax.set_yticks(range(len(tasks)), [labels.task(t) for t in tasks], fontsize=8)
    ax.set_ylim(len(tasks) - 0.5, -0.5)
    ax.set_xlabel("(final training loss − tuned Adam's) / loss at the first step (symmetric log scale)", fontsize=9)
    ax.set_ylabel("task", fontsize=9)
    proxies = [Line2D([], [], color=_style(o)[1], marker="o", ls="none", label=_style(o)[0]) for o in opts]
    proxies.append(Line2D([], [], color="k", lw=1.2, label="tuned Adam"))
    if hollow_any:
        proxies.append(Line2D([], [], color="0.3", marker="o", mfc="none", ls="none", label="a run ended above "
                              "its start"))
    if diverged_any:
        proxies.append(Line2D([], [], color="0.3", marker="x", mew=2, ls="none", label="a run diverged"))
    if beyond:
        proxies.append(Line2D([], [], color="0.3", marker=">", ls="none", label=f"beyond {cap:g}, at the edge"))
    if len(per_run) > 1:
        proxies.append(Line2D([], [], color="0.4", marker=".", ms=4, ls="none", label="one meta-trained θ"))
    ax.legend(handles=proxies, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig
