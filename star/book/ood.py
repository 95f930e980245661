"""The out-of-distribution chapter (``book/ood.ipynb``): stored results, figures, table and verdict rule.

* :func:`load_stored` — the stored suite ``results/ood/<scale>/`` (fetched on Colab);
* :func:`plot_curves_grid` (Figs. App.5–App.6) and :func:`plot_summary` — both take what
  :func:`load_stored` or :func:`star.ood_suite.load_results` return (``{task: (record, curves)}``);
* :func:`ood_checks` / :data:`VERDICT_RULES` — the rule of the verdict on the claim ``ood_generalization``,
  with :func:`verdict_counts` and :func:`evidence_text` for the numbers behind it;
* :func:`meta_run_table` / :func:`meta_run_verdict_table` — the same counts and rule for each
  meta-training run of the learned optimizers alone (how much the finding depends on the one θ).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from star.book.ood_results import meta_run_curves, num_meta_runs, summarize
from star.ood_suite import failed_runs, final_loss
from star.plotting import mean_stderr_band

__all__ = [
    "LABELS", "plot_curves_grid", "plot_summary", "optimizer_order", "tasks_table_html", "load_stored", "STAR_ROWS",
    "ood_checks", "ood_verdict", "first_update_failures", "first_update_sentence", "learned_budget",
    "verdict_summary", "verdict_counts", "evidence_text", "optimizer_counts", "meta_run_labels", "meta_run_table",
    "meta_run_verdicts", "meta_run_verdict_table", "meta_run_evidence_text", "meta_run_findings_markdown",
    "optimizer_findings_markdown", "cost_table", "suite_budget_markdown", "budget_caveat_markdown",
]

#: Colour and line style per optimizer row of the suite (names come from :mod:`star.book.labels`).
STYLES = {
    "adam": ("C0", "-"), "nadamw": ("C1", "-"), "star": ("C3", "-"), "star_wd0.5": ("C4", "--"),
    "hyperparam": ("C2", "-"), "blackbox": ("C7", "-."), "released_star": ("C3", ":"),
    "released_hyperparam": ("C2", ":"), "released_star_nonom": ("C5", ":"),
}
LABELS = STYLES  # the order of the rows


def optimizer_order(names) -> list:
    """Known optimizers in :data:`LABELS` order, then any others alphabetically."""
    known = [n for n in LABELS if n in names]
    return known + sorted(set(names) - set(known))


def _style(name):
    """``(label, colour, line style)`` of an optimizer row."""
    from star.book import labels

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
                     coefficient: float = 0.98):
    """One panel per task: training loss (in the task's own unit) against the inner step, mean ± one standard
    error, EMA-smoothed with ``coefficient`` as the paper's plots (App. B: 0.98). For a baseline the standard
    error is over its evaluation seeds; for a learned optimizer with several meta-training runs it is over the
    runs, each averaged over the evaluation seeds first (:func:`_band_rows`). Where a run diverged the mean is
    undefined: line and band stop, and a cross at the top edge marks the step. The y-range ends a little above the
    initial loss, so an optimizer that makes the model worse leaves the panel at the top; a triangle at the top
    right marks a line that ends above the panel."""
    import matplotlib.pyplot as plt

    from star.book import labels

    tasks = list(tasks if tasks is not None else results)
    ncols = max(1, min(ncols, len(tasks)))
    nrows = max(1, math.ceil(len(tasks) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols + (1.5 if ncols == 1 else 0), 2.9 * nrows),
                             squeeze=False)
    handles, any_diverged, any_above = {}, False, False
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

    from star.book import labels

    tasks = list(tasks if tasks is not None else results)
    sub = {t: results[t] for t in tasks}
    summ = summarize(sub)
    per_run = _per_meta_run(sub)
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


def _walls(rec) -> str:
    """``tuning / learned`` seconds of a record: the baselines' tuning (in the run that tuned them) and
    this record's evaluation of the learned optimizers (``?`` where a record does not tell them apart)."""
    tuning = rec.get("baselines", {}).get("wall_s", rec["wall_s"]).get("tuning")
    learned = rec["wall_s"].get("learned")
    return " / ".join("?" if v is None else f"{v:.0f}" for v in (tuning, learned))


def tasks_table_html(results: Mapping, tasks: Sequence[str] | None = None) -> str:
    """The suite as an HTML table: task, what it is (data, model, loss), its ``learned_optimization`` counterpart,
    parameters, the tuned Adam learning rate (flagged at a grid edge) and NAdamW's selected learning rate (the
    wall times are in :func:`cost_table`)."""
    import html

    from star.book import labels

    e = html.escape
    rows = ["<div class='star-table-wrap'><table class='star-table'><thead><tr><th>task</th>"
            "<th>data, model and loss</th><th>learned_optimization counterpart</th><th>parameters</th>"
            "<th>Adam learning rate</th><th>NAdamW learning rate</th></tr></thead><tbody>"]
    for name in tasks if tasks is not None else results:
        rec, _ = results[name]
        edge = " (grid edge)" if rec["adam"]["best_at_grid_edge"] else ""
        rows.append(
            f"<tr><td>{e(labels.task(name))}</td><td>{e(rec['description'])}</td>"
            f"<td>{e(rec['reference'])}</td><td>{rec['num_params']:,}</td>"
            f"<td>{rec['adam']['best_learning_rate']:.0e}{edge}</td>"
            f"<td>{rec['nadamw']['best']['learning_rate']:.1e}</td></tr>")
    rows.append("</tbody></table></div>")
    return "\n".join(rows)


#: The learned optimizers the claim names: Blackbox, Hyperparam and "either of the STAR optimizers" (outer weight
#: decay 0.1 and 0.5).
STAR_ROWS = ("star", "star_wd0.5")
GAIN = 1.25  # "substantially outperform": a final loss at least this many times lower


def _runs(rec, curves, opt: str, meta_run: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(final losses, failed)`` of every evaluation run of ``opt`` on one task (a learned optimizer's
    ``meta_run``-th θ only, if given)."""
    c = meta_run_curves(rec, curves, opt).astype(np.float64)
    if meta_run is not None and opt in rec.get("learned", {}):
        c = c[meta_run: meta_run + 1]
    c = c.reshape(-1, c.shape[-1])
    return final_loss(c), failed_runs(c)


def ood_checks(results: Mapping, meta_run: int | None = None) -> list:
    """The App. C.3 claim as effects with 95 % intervals, from the stored suite (``{task: (record, curves)}``).

    1. "the blackbox optimizer is unstable in almost all cases": the fraction of tasks on which Blackbox is
       unstable (some evaluation run diverged or ended above its first loss) minus one half, Clopper–Pearson;
    2. "... as compared to Hyperparam, or either of the STAR optimizers": per task, Blackbox unstable (1/0) minus
       the other unstable, mean over tasks, t interval — one check per optimizer;
    3. "there are cases in which the STAR models substantially outperform the hyperparameter controller": per task
       and STAR optimizer, the mean log final loss of Hyperparam minus STAR's minus log(:data:`GAIN`) with Welch
       intervals at the Bonferroni level 1 − 0.05/(tasks × STAR optimizers); the effect and both ends are the
       maxima over the tasks (supported if one task's interval lies above zero). A diverged run's final loss is
       the largest finite one of any optimizer on that task.

    "More mixed" (STAR against Hyperparam) is not a direction and is not checked. ``meta_run``: one θ per learned
    optimizer instead of all of them pooled.

    Raises:
        ValueError: no tasks, or a task without Blackbox and Hyperparam rows.
    """
    from star.book import labels
    from star.book.claims import Check
    from star.book.stats import mean_ci, proportion_ci, welch_ci

    if not results:
        raise ValueError("results must hold at least one task")
    for name, (_, curves) in results.items():
        missing = [o for o in ("blackbox", "hyperparam") if o not in curves]
        if missing:
            raise ValueError(f"results[{name!r}] lacks the optimizers {missing}")
    tasks = list(results)
    n = len(tasks)
    runs = {t: {o: _runs(*results[t], o, meta_run) for o in results[t][1]} for t in tasks}
    unstable = {o: np.asarray([bool(runs[t][o][1].any()) for t in tasks])
                for o in ("blackbox", "hyperparam", *STAR_ROWS) if all(o in runs[t] for t in tasks)}
    k = int(unstable["blackbox"].sum())
    p, lo, hi = proportion_ci(k, n)
    checks = [Check("Blackbox is unstable on almost all tasks (more than half)", p - 0.5, lo - 0.5, hi - 0.5,
                    unit="fraction of tasks beyond one half", how=f"{k} of {n} tasks, Clopper–Pearson interval")]
    for o in ("hyperparam", *STAR_ROWS):
        if o not in unstable:
            continue
        d = unstable["blackbox"].astype(float) - unstable[o].astype(float)
        checks.append(Check(f"Blackbox is unstable where {labels.optimizer(o)} is stable", *mean_ci(d),
                            unit="fraction of tasks", how=f"Blackbox unstable minus {labels.optimizer(o)} unstable, "
                                                          f"mean over {n} tasks, 95 % t interval"))
    stars = [o for o in STAR_ROWS if o in unstable]
    level = 1 - 0.05 / max(1, n * len(stars))
    best = []
    for t in tasks:
        finite = np.concatenate([f[np.isfinite(f)] for f, _ in runs[t].values()])
        cap = float(finite.max()) if finite.size else 1.0
        hyper = np.log(np.where(np.isfinite(runs[t]["hyperparam"][0]), runs[t]["hyperparam"][0], cap))
        for o in stars:
            star = np.log(np.where(np.isfinite(runs[t][o][0]), runs[t][o][0], cap))
            e, a, b = welch_ci(hyper, star, level)
            best.append((e - math.log(GAIN), a - math.log(GAIN), b - math.log(GAIN), t, o))
    if best:
        e, a, b = (max(x[i] for x in best) for i in range(3))
        top = max(best, key=lambda x: x[1])
        checks.append(Check(f"On some task a STAR optimizer beats Hyperparam by at least {GAIN:g}×", e, min(a, e),
                            max(b, e), unit=f"log(Hyperparam / STAR final loss) − log {GAIN:g}, best task",
                            how=f"Welch intervals at level {level:.4f} (Bonferroni over {len(best)} comparisons); "
                                f"the best is {labels.optimizer(top[4])} on {labels.task(top[3])}"))
    return checks


def ood_verdict(results: Mapping, meta_run: int | None = None) -> tuple:
    """``(checks, status)``: :func:`ood_checks` and the verdict :func:`star.book.claims.claim_status` gives them at
    a budget that reaches the paper's regime (what the checks alone say; the recorded verdict also weighs the
    budget)."""
    from star.book.claims import claim_status

    checks = ood_checks(results, meta_run)
    return checks, claim_status([(checks, ())])


def first_update_failures(results: Mapping, opt: str = "star") -> dict:
    """How the runs of ``opt`` that end unstable fail: ``{"failed": runs that end unstable, "runs": all runs,
    "at_first": those whose loss after the first update is already above the first loss (or not finite),
    "tasks": tasks with a failed run, "of_tasks": tasks}``."""
    failed = at_first = total = 0
    tasks = []
    for t, (rec, curves) in results.items():
        if opt not in curves:
            continue
        c = meta_run_curves(rec, curves, opt).astype(np.float64).reshape(-1, np.asarray(curves[opt]).shape[-1])
        f = failed_runs(c)
        total += len(c)
        failed += int(f.sum())
        at_first += int(np.sum(f & (~np.isfinite(c[:, 1]) | (c[:, 1] > c[:, 0]))))
        if f.any():
            tasks.append(t)
    return {"failed": failed, "runs": total, "at_first": at_first, "tasks": tasks, "of_tasks": len(results)}


def first_update_sentence(failures: Mapping, opt: str = "STAR") -> str:
    """:func:`first_update_failures` in one sentence."""
    f = failures
    return (f"Of the {f['runs']} evaluation runs of {opt} on the {f['of_tasks']} tasks, {f['failed']} end unstable "
            f"(on {len(f['tasks'])} tasks); in {f['at_first']} of those {f['failed']} the training loss is above its "
            f"first value already after the first update.")


def _learned_grid(results: Mapping, opt: str = "star"):
    """The grid (``star.sweep.Grid``) whose folder holds every θ file of the learned optimizer ``opt`` of the stored
    suite, and the number of those files; ``(None, 0)`` if no grid does."""
    from star.grids import GRIDS

    for rec, _ in results.values():
        srcs = rec.get("learned", {}).get(opt, {}).get("sources", [])
        for g in GRIDS.values():
            if srcs and all(str(src.get("path", "")).startswith(g.folder + "/") for src in srcs):
                return g, len(srcs)
    return None, 0


def _eval_steps(results: Mapping) -> int:
    return int(np.asarray(next(iter(results.values()))[1]["adam"]).shape[-1])


def learned_budget(results: Mapping, opt: str = "star"):
    """The :class:`star.book.claims.Budget` of the meta-training behind the learned optimizer ``opt`` of the stored
    suite: the grid whose folder holds its θ files (``None`` if none does), with the number of θ's as seeds and
    the evaluation length as a note."""
    from star.book.claims import Budget

    g, n = _learned_grid(results, opt)
    if g is None:
        return None
    steps = _eval_steps(results)
    return Budget.from_grid(g, seeds=n, notes=(
        f"each learned optimizer is evaluated for {steps:,} inner steps on each of {len(results)} tasks",))


def suite_budget_markdown(stored, paper, scale: str = "cpu") -> str:
    """The stored suite's budgets (``star.ood_suite.SuiteConfig`` at ``scale``) beside the paper scale's, in one
    sentence."""
    def seeds(s):
        return ", ".join(str(x) for x in s)

    return (f"**Budgets** of the stored `{scale}`-scale suite: {stored.num_steps:,} inner steps per run "
            f"({paper.num_steps:,} at `paper` scale; the paper's meta-training horizon is 2,000); Adam's learning "
            f"rate chosen from {len(stored.adam_lrs)} values ({len(paper.adam_lrs)} at `paper` scale) and NAdamW's "
            f"configuration from {stored.nadamw_samples:,} random samples ({paper.nadamw_samples:,}); tuning on seeds "
            f"{seeds(stored.tune_seeds)}, evaluation on seeds {seeds(stored.eval_seeds)}.")


def budget_caveat_markdown(results: Mapping, opt: str = "star") -> str:
    """What the suite's result does and does not say: the meta-training budget of its learned optimizers, computed
    from the grid their θ files come from (empty if none does), against the paper's."""
    from star.book import labels

    g, n = _learned_grid(results, opt)
    if g is None:
        return ""
    from star.book.claims import task_size

    size = task_size(g.task)
    return (f"What this does and does not say: each learned optimizer was meta-trained {n} times for "
            f"{g.outer_steps:,} PES steps on the {labels.task_short(g.task)}"
            + (f" ({size:,} parameters)" if size else "")
            + f" from the {getattr(g, 'init', 'reference')} initialization of θ, and evaluated for "
            f"{_eval_steps(results):,} inner steps; the paper meta-trained on the 28×28 MLP with far more compute.")


def verdict_summary(results: Mapping, checks: Sequence) -> str:
    """One plain sentence: on how many tasks each learned optimizer is unstable, then the checks' outcomes."""
    from star.book import labels
    from star.book.claims import count_sentence

    n = len(results)
    counts = []
    for o in ("blackbox", "hyperparam", *STAR_ROWS):
        if all(o in c for _, c in results.values()):
            k = sum(bool(_runs(*results[t], o)[1].any()) for t in results)
            counts.append(f"{labels.optimizer(o)} on {k}")
    return f"Unstable on the {n} tasks: {', '.join(counts)}; {count_sentence(checks)}."


def verdict_counts(summary: Mapping) -> dict:
    """The counts the verdict rules look at: tasks, unstable tasks per learned optimizer, and the number
    of tasks where STAR's final loss is within the stated factors of Hyperparam's and tuned Adam's."""
    rows = list(summary.values())
    count = lambda f: sum(bool(f(r)) for r in rows)  # noqa: E731

    def ratio(a, b):
        return a["final"] / b["final"] if b["final"] > 0 and math.isfinite(a["final"]) else math.inf

    return {
        "tasks": len(rows),
        "blackbox_unstable": count(lambda r: r["blackbox"]["unstable"]),
        "star_unstable": count(lambda r: r["star"]["unstable"]),
        "hyperparam_unstable": count(lambda r: r["hyperparam"]["unstable"]),
        "star_le_1.05_hyperparam": count(lambda r: ratio(r["star"], r["hyperparam"]) <= 1.05),
        "star_le_0.8_hyperparam": count(lambda r: ratio(r["star"], r["hyperparam"]) <= 0.8),
        "star_le_1.25_adam": count(lambda r: r["star"]["ratio_to_adam"] <= 1.25),
    }


def optimizer_counts(summary: Mapping) -> dict:
    """Per optimizer: on how many tasks it was unstable, below tuned Adam, and within 1.25x of it."""
    opts = sorted({o for row in summary.values() for o in row})
    out = {}
    for o in opts:
        rows = [row[o] for row in summary.values() if o in row]
        out[o] = {"tasks": len(rows), "unstable": sum(r["unstable"] for r in rows),
                  "below_adam": sum(r["ratio_to_adam"] < 1.0 for r in rows),
                  "within_1.25_adam": sum(r["ratio_to_adam"] <= 1.25 for r in rows),
                  "median_ratio_to_adam": float(np.median([r["ratio_to_adam"] for r in rows]))}
    return out


def _per_meta_run(results: Mapping) -> list:
    """:func:`star.book.ood_results.summarize` of ``results`` for each meta-training run ``k``
    (``meta_run=k``), as many as the learned optimizer with the most runs has."""
    return [summarize(results, meta_run=k) for k in range(max(num_meta_runs(results).values(), default=0))]


def meta_run_labels(results: Mapping, opt: str) -> list:
    """``seed k`` for each meta-training run of learned optimizer ``opt`` (from its run folder's name,
    ``..._s<k>``; ``run k`` where the name does not tell), in the order of the stored curves."""
    import re

    for rec, _ in results.values():
        if opt in rec.get("learned", {}):
            out = []
            for k, src in enumerate(rec["learned"][opt]["sources"]):
                m = re.search(r"_s(\d+)/[^/]*$", src.get("path", ""))
                out.append(f"seed {m.group(1)}" if m else f"run {k}")
            return out
    return []


def meta_run_table(results: Mapping):
    """Per learned optimizer and meta-training run (and all runs pooled, as the verdict counts them): on
    how many tasks it is unstable, the median over the tasks of its final loss / tuned Adam's, and on how
    many tasks that ratio is at most 1.25 (a :class:`star.book.tables.Table`)."""
    from star.book.tables import table

    runs = num_meta_runs(results)
    per_run = [optimizer_counts(summ) for summ in _per_meta_run(results)]
    pooled = optimizer_counts(summarize(results))
    rows = []
    for opt in optimizer_order(runs):
        labels = meta_run_labels(results, opt)
        entries = [(labels[k], per_run[k][opt]) for k in range(runs[opt])]
        if runs[opt] > 1:
            entries.append(("all pooled (the verdict's)", pooled[opt]))
        for label, c in entries:
            rows.append([_style(opt)[0], label, f"{c['unstable']}/{c['tasks']}", c["median_ratio_to_adam"],
                         f"{c['within_1.25_adam']}/{c['tasks']}"])
    return table(["learned optimizer", "meta-training run", "unstable on", "median final loss / tuned Adam's",
                  "≤ 1.25× tuned Adam on"], rows, digits=3)


def meta_run_verdicts(results: Mapping) -> dict:
    """``{label: (checks, status)}``: :func:`ood_verdict` on each meta-training run alone (run ``k`` of every learned
    optimizer together, as if each had only that θ), then on all runs pooled (``"pooled"``)."""
    runs = num_meta_runs(results)
    n = min((runs.get(o, 0) for o in ("star", "hyperparam", "blackbox")), default=0)
    labels = meta_run_labels(results, "star")
    out = {labels[k] if k < len(labels) else f"run {k}": ood_verdict(results, meta_run=k) for k in range(n)}
    out["pooled"] = ood_verdict(results)
    return out


def meta_run_verdict_table(results: Mapping):
    """The checks of :func:`ood_checks` (rows) for each meta-training run alone and pooled (columns): the outcome with
    the effect, and the verdict the checks alone give in the last row."""
    from star.book.tables import table

    verdicts = meta_run_verdicts(results)
    first = next(iter(verdicts.values()))[0]
    rows = [[c.question] + [f"{v[0][i].status} ({v[0][i].effect:+.2g})" for v in verdicts.values()]
            for i, c in enumerate(first)]
    rows.append(["verdict of the checks alone"] + [v[1] for v in verdicts.values()])
    return table(["check"] + [("all θ's pooled" if k == "pooled" else f"meta-training {k}") for k in verdicts], rows)


def evidence_text(summary: Mapping) -> str:
    """One sentence with the counts behind :func:`ood_verdict`."""
    c = verdict_counts(summary)
    n = c["tasks"]
    return (f"On {n} tasks: unstable (a run diverged or ended above its initial loss) Blackbox on "
            f"{c['blackbox_unstable']}/{n}, STAR on {c['star_unstable']}/{n}, Hyperparam on "
            f"{c['hyperparam_unstable']}/{n}; STAR's final loss <= 1.05x Hyperparam's on "
            f"{c['star_le_1.05_hyperparam']}/{n} and <= 0.8x on {c['star_le_0.8_hyperparam']}/{n}; "
            f"<= 1.25x tuned Adam's on {c['star_le_1.25_adam']}/{n}.")


def cost_table(results: Mapping):
    """Wall time of the stored suite by part, summed over the tasks, with the commit(s) and devices that
    ran it: the baselines' tuning and evaluation (as recorded by the run that tuned them, which may be
    older than the record) and the learned optimizers' evaluation (the record's own run); the last row is
    the elapsed time of the latter (:func:`star.book.ood_results.elapsed_minutes`). A
    :class:`star.book.tables.Table`."""
    from star.book.ood_results import elapsed_minutes
    from star.book.tables import table

    def describe(provs):
        provs = sorted(provs, key=lambda p: str(p.get("finished_utc", "")))
        commits = list(dict.fromkeys(str(p.get("git_commit"))[:10] for p in provs))  # in order of finish
        if len(commits) > 3:  # one commit per task when each task's result was committed as it finished
            commits = [f"{len(commits)} commits, {commits[0]} (first) … {commits[-1]} (last)"]
        devices = sorted({f"{p.get('device', {}).get('kind')} x{p.get('device', {}).get('cpu_count')}" for p in provs})
        return ", ".join(commits), ", ".join(devices)

    base = [rec.get("baselines") or {"wall_s": rec["wall_s"], "provenance": rec["provenance"]}
            for rec, _ in results.values()]
    learned = [rec for rec, _ in results.values()]
    included = sorted({o for b in base for o in b["wall_s"].get("evaluation_includes", [])})
    ev_label = "baselines: evaluation" + (f" (that run also evaluated the learned {', '.join(included)}, one θ each)"
                                          if included else "")
    runs = num_meta_runs(results)
    rows = [["baselines: tuning", sum(b["wall_s"]["tuning"] for b in base) / 60,
             *describe(b["provenance"] for b in base)],
            [ev_label, sum(b["wall_s"]["evaluation"] for b in base) / 60, *describe(b["provenance"] for b in base)],
            [f"learned optimizers: evaluation ({', '.join(f'{o} x{n}' for o, n in runs.items())} θ's)",
             sum(r["wall_s"].get("learned", r["wall_s"]["evaluation"]) for r in learned) / 60,
             *describe(r["provenance"] for r in learned)],
            ["learned optimizers: elapsed, first task's start to last task's finish", elapsed_minutes(results),
             "", ""]]
    return table(["part", "minutes", "commit", "device"], rows, digits=3)


def meta_run_evidence_text(results: Mapping) -> str:
    """One sentence: per meta-training run, on how many tasks each learned optimizer was unstable, and
    the status :func:`ood_verdict` gives each run alone."""
    runs = num_meta_runs(results)
    per_run = [optimizer_counts(summ) for summ in _per_meta_run(results)]
    parts = []
    for opt in optimizer_order(runs):
        counts = [per_run[k][opt] for k in range(runs[opt])]
        parts.append(f"{_style(opt)[0]} on {', '.join(str(c['unstable']) for c in counts)} of {counts[0]['tasks']}")
    verdicts = meta_run_verdicts(results)
    alone = ", ".join(f"{label}: {v[1]}" for label, v in verdicts.items() if label != "pooled")
    return (f"Per meta-training run ({', '.join(meta_run_labels(results, 'star'))}), unstable: {'; '.join(parts)}; "
            f"the rule applied to each run alone gives {alone}.")


def _task_words(task: str) -> str:
    from star.book import labels

    return labels.task(task)


def optimizer_findings_markdown(summary: Mapping, learned_only: bool = False) -> str:
    """A Markdown list, one item per optimizer (in :data:`LABELS` order), of what :func:`optimizer_counts`
    finds over the tasks of ``summary`` (what :func:`star.book.ood_results.summarize` returns): on how many tasks it is
    unstable, below tuned Adam's final loss and within 1.25x of it, its median final loss / tuned Adam's,
    and its lowest final loss with the task. ``learned_only``: no items for the baselines (Adam, NAdamW), e.g. for
    a suite that reuses baselines shown elsewhere."""
    counts = optimizer_counts(summary)
    lines = []
    for opt in optimizer_order(counts):
        if learned_only and opt in ("adam", "nadamw"):
            continue
        c, n = counts[opt], counts[opt]["tasks"]
        finals = {t: row[opt]["final"] for t, row in summary.items() if opt in row}
        low = min(finals, key=lambda t: finals[t] if math.isfinite(finals[t]) else math.inf)
        stable = "stable on every task" if c["unstable"] == 0 else f"unstable on {c['unstable']} of {n} tasks"
        if opt == "adam":
            lines.append(f"* **{_style(opt)[0]}** — the yardstick; {stable}; lowest final loss "
                         f"{finals[low]:.3g} ({_task_words(low)}).")
            continue
        lines.append(f"* **{_style(opt)[0]}** — {stable}; final loss below tuned Adam's on {c['below_adam']} "
                     f"and within 1.25× of it on {c['within_1.25_adam']} of {n}; median final loss / tuned "
                     f"Adam's {c['median_ratio_to_adam']:.3g}; lowest final loss {finals[low]:.3g} "
                     f"({_task_words(low)}).")
    return "\n".join(lines)


def meta_run_findings_markdown(results: Mapping) -> str:
    """A Markdown list of what the per-meta-training-run summaries show: per learned optimizer its unstable
    tasks and median final loss / tuned Adam's for each θ and pooled; on how many tasks STAR is unstable
    with every θ and with at least one; and where STAR's final loss is at most 0.8x Hyperparam's (the
    verdict's "large gain") for each θ and pooled."""
    runs = num_meta_runs(results)
    per_run = _per_meta_run(results)
    pooled = summarize(results)
    n = len(results)
    lines = []
    for opt in optimizer_order(runs):
        labels = meta_run_labels(results, opt)
        counts = [optimizer_counts(per_run[k])[opt] for k in range(runs[opt])]
        pc = optimizer_counts(pooled)[opt]
        unstable = ", ".join(str(c["unstable"]) for c in counts)
        medians = ", ".join(f"{c['median_ratio_to_adam']:.3g}" for c in counts)
        lines.append(f"* **{_style(opt)[0]}**: unstable on {unstable} of {n} tasks ({', '.join(labels)}), on "
                     f"{pc['unstable']} with its θ's pooled; median final loss / tuned Adam's {medians}.")
    if "star" in runs:
        every = [t for t in results if all(per_run[k][t]["star"]["unstable"] for k in range(runs["star"]))]
        some = [t for t in results if any(per_run[k][t]["star"]["unstable"] for k in range(runs["star"]))]
        lines.append(f"* STAR is unstable with every one of its {runs['star']} θ's on {len(every)} of {n} tasks, "
                     f"with at least one of them on {len(some)}.")
    if "star" in runs and "hyperparam" in runs:
        def gains(summ):
            return [t for t, row in summ.items() if "star" in row and "hyperparam" in row
                    and row["hyperparam"]["final"] > 0 and row["star"]["final"] <= 0.8 * row["hyperparam"]["final"]]

        labels = meta_run_labels(results, "star")
        per = [f"{labels[k]}: {', '.join(_task_words(t) for t in gains(per_run[k])) or 'none'}"
               for k in range(min(runs["star"], runs["hyperparam"]))]
        lines.append(f"* Tasks where STAR's final loss is at most 0.8× Hyperparam's — {'; '.join(per)}; pooled: "
                     f"{', '.join(_task_words(t) for t in gains(pooled)) or 'none'}.")
    return "\n".join(lines)


def load_stored(scale: str = "cpu", tasks: Sequence[str] | None = None, fetch=None) -> tuple:
    """``(results, missing)``: the stored results ``results/ood/<scale>/<task>.{json,npz}`` of ``tasks``
    (default: the suite), found with ``fetch(relpath) -> Path`` (default :func:`star.book.files.repo_file`,
    which downloads them on Colab); ``missing`` lists the tasks not stored yet."""
    from star.tasks import OOD_SUITE

    if fetch is None:
        from star.book.files import repo_file as fetch
    results, missing = {}, []
    for name in tasks if tasks is not None else OOD_SUITE:
        try:
            jp = fetch(f"results/ood/{scale}/{name}.json")
            npz = fetch(f"results/ood/{scale}/{name}.npz")
        except (FileNotFoundError, OSError):
            missing.append(name)
            continue
        rec = json.loads(Path(jp).read_text())
        with np.load(npz, allow_pickle=False) as z:
            curves = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("curves/")}
        results[name] = (rec, curves)
    return results, missing


# ----------------------------------------------------------------------------------------------------
# controls: what of the OOD result is the initialisation, the learned direction head, the outer weight decay

#: The rows of ``star.ood_suite.CONTROLS_LEARNED`` (stored in ``results/ood/cpu_controls``), in the order shown.
CONTROL_ROWS = {
    "star_theta0": "θ₀: the reference initialisation, not meta-trained",
    "star_output0": "θ₀ with its output layer zero: the nominal optimizer (infinite weight decay)",
    "star": "meta-trained from θ₀, outer wd 0.1",
    "star_wd0.5": "meta-trained from θ₀, outer wd 0.5",
    "star_wd1.0": "meta-trained from θ₀, outer wd 1.0",
    "star_wd5.0": "meta-trained from θ₀, outer wd 5.0",
    "star_init_nominal": "meta-trained from the zero-output start, outer wd 0.1",
}
#: Tasks the controls' table shows one by one (the rest are counted).
CONTROL_TASKS = ("fmnist_mlp", "fmnist_ae", "fmnist16_mlp256x256", "digits_mlp128x128x128", "fmnist8_mlp32")


def _source_folder(source: Mapping) -> str:
    """The run folder of a stored learned source (its ``path`` is a θ file inside it)."""
    path = source["path"]
    from star import runs

    snapshots = f"/{runs.THETA_SNAPSHOT_DIR}/"
    return path.rsplit(snapshots, 1)[0] if snapshots in path else path.rsplit("/", 1)[0]


def cumulative_decay(source: Mapping, fetch=None) -> float:
    """lr · wd · outer steps of the θ a stored source names (its run's configuration; a snapshot counts its
    own step): how much AdamW's decoupled decay alone shrank θ, as ``exp(-that)``. ``inf`` for a θ whose
    output layer was zeroed (the limit of infinite decay)."""
    if "zero_output" in source.get("transforms", ()):
        return math.inf
    if fetch is None:
        from star.book.files import repo_file as fetch
    from star import runs

    cfg = runs.RunFolder(Path(fetch(f"{_source_folder(source)}/{runs.CONFIG}")).parent).config()
    steps = source.get("step", cfg["outer_steps"])
    return float(cfg["lr"]) * float(cfg["weight_decay"]) * int(steps)


def direction_head(source: Mapping, fetch=None) -> dict:
    """The direction head d of a stored θ: its output bias and the RMS of its output weights (the MLP's last
    layer, column 0), which PES moves away from the initialisation."""
    from star import runs
    from star.optim.convert import load_meta_params
    from star.runs import load_theta

    if fetch is None:
        from star.book.files import repo_file as fetch
    folder = _source_folder(source)
    cfg, theta = load_meta_params(fetch(f"{folder}/{runs.META_PARAMS}"))
    if "step" in source:
        theta = load_theta(fetch(source["path"]), theta)
    mlp = theta["mlp"]
    last = max(int(k[1:]) for k in mlp if k.startswith("w"))
    w, b = np.asarray(mlp[f"w{last}"])[:, 0], float(np.asarray(mlp[f"b{last}"])[0])
    if "zero_output" in source.get("transforms", ()):
        w, b = np.zeros_like(w), 0.0
    return {"bias": b, "weight_rms": float(np.sqrt(np.mean(np.square(w))))}


def controls_rows(results: Mapping, fetch=None) -> list:
    """Per control row stored in ``results`` (:data:`CONTROL_ROWS`, then any other learned row): how many θ's
    it has, their cumulative decay and direction head (means over the θ's), on how many tasks it is unstable,
    its failed runs per task (``{task: (failed, runs)}``) and the median over the tasks of its final loss /
    tuned Adam's."""
    rows = []
    names = [r for r in CONTROL_ROWS if any(r in rec.get("learned", {}) for rec, _ in results.values())]
    names += sorted({o for rec, _ in results.values() for o in rec.get("learned", {})} - set(names))
    summ = summarize(results)
    for opt in names:
        rec = next(rec for rec, _ in results.values() if opt in rec.get("learned", {}))
        sources = rec["learned"][opt]["sources"]
        heads = [direction_head(s, fetch) for s in sources]
        per_task = {}
        for t, (_, curves) in results.items():
            if opt in curves:
                c = np.asarray(curves[opt])
                per_task[t] = (int(np.sum(failed_runs(c))), int(c.shape[0]))
        ratios = [summ[t][opt]["ratio_to_adam"] for t in per_task]
        rows.append({"row": opt, "label": CONTROL_ROWS.get(opt, opt), "thetas": len(sources),
                     "decay": float(np.mean([cumulative_decay(s, fetch) for s in sources])),
                     "d_bias": float(np.mean([h["bias"] for h in heads])),
                     "d_weight_rms": float(np.mean([h["weight_rms"] for h in heads])),
                     "unstable": sum(summ[t][opt]["unstable"] for t in per_task), "tasks": len(per_task),
                     "per_task": per_task, "median_ratio_to_adam": float(np.median(ratios)) if ratios else math.nan})
    return rows


def controls_table(rows: Sequence[Mapping], tasks: Sequence[str] = CONTROL_TASKS):
    """:func:`controls_rows` as a table: what the θ is, lr·wd·steps, the direction head, unstable tasks,
    failed runs on ``tasks`` and the median final loss / tuned Adam's."""
    from star.book.tables import table

    shown = [t for t in tasks if any(t in r["per_task"] for r in rows)]
    cells = []
    for r in rows:
        decay = "∞" if math.isinf(r["decay"]) else f"{r['decay']:.3g}"
        fails = ["/".join(map(str, r["per_task"][t])) if t in r["per_task"] else "—" for t in shown]
        cells.append([r["label"], r["thetas"], decay, f"{r['d_bias']:+.2e}", f"{r['d_weight_rms']:.3f}",
                      f"{r['unstable']}/{r['tasks']}", *fails, r["median_ratio_to_adam"]])
    from star.book import labels

    return table(["θ", "θ's", "lr·wd·steps", "bias of head d", "RMS of head d's weights", "unstable on",
                  *[f"failed runs, {labels.task_short(t)}" for t in shown], "median final loss / tuned Adam's"],
                 cells, digits=3)


def controls_findings_markdown(rows: Sequence[Mapping]) -> str:
    """What the controls say, computed from :func:`controls_rows`: one bullet per factor (initialisation,
    meta-training and its start, outer weight decay), each naming the unstable-task counts it compares."""
    by = {r["row"]: r for r in rows}

    def n(row):
        r = by[row]
        return f"{r['unstable']} of {r['tasks']} tasks"

    lines = []
    if {"star_theta0", "star_output0"} <= set(by):
        lines.append(f"* **Initialisation.** The untrained reference initialisation θ₀ is unstable on "
                     f"{n('star_theta0')}; the same θ₀ with its output layer zero (the nominal optimizer) on "
                     f"{n('star_output0')}.")
    if {"star", "star_init_nominal"} <= set(by):
        lines.append(f"* **Meta-training and the learned direction head.** Meta-trained from θ₀ (outer wd 0.1) "
                     f"STAR is unstable on {n('star')}; meta-trained the same way from the zero-output start on "
                     f"{n('star_init_nominal')}, its direction head's bias at {by['star_init_nominal']['d_bias']:+.2e} "
                     f"(from 0) and its weights' RMS at {by['star_init_nominal']['d_weight_rms']:.3f}.")
    decays = sorted((r["decay"], r["row"]) for r in rows if r["row"].startswith("star")
                    and r["row"] not in ("star_theta0", "star_output0", "star_init_nominal"))
    if len(decays) > 1:
        steps = "; ".join(f"{d:.3g}: {by[row]['unstable']} (head d's weights' RMS {by[row]['d_weight_rms']:.3f})"
                          for d, row in decays)
        lines.append(f"* **Outer weight decay.** Unstable tasks (of {by[decays[0][1]]['tasks']}) against the "
                     f"cumulative decay lr·wd·steps of STAR meta-trained from θ₀ — {steps}.")
    return "\n".join(lines)


def suite_budget_table(records: Mapping, paper=None):
    """The budget of each stored suite (``{label: a record of it}``, its ``suite_config``) against the paper
    scale's (:func:`star.ood_suite.suite_config` ``"paper"``, from the paper's description and the reference's
    10 000-step NAdamW curves): inner steps per run, Adam learning rates, NAdamW samples, tuning and evaluation
    seeds, each with its fraction of the paper scale's."""
    from star.book.tables import table
    from star.ood_suite import suite_config

    p = (paper or suite_config("paper")).to_dict()

    def frac(x, y):
        return f"{x} ({100 * x / y:.3g} %)"

    rows = []
    for lab, rec in records.items():
        c = rec["suite_config"]
        n_adam = len(rec["adam"]["learning_rates"])
        rows.append([lab, frac(c["num_steps"], p["num_steps"]), f"{n_adam} (paper {len(_adam_grid(p))})",
                     frac(c["nadamw_samples"], p["nadamw_samples"]), frac(len(c["tune_seeds"]), len(p["tune_seeds"])),
                     frac(len(c["eval_seeds"]), len(p["eval_seeds"]))])
    return table(["stored suite", "inner steps per run", "Adam learning rates", "NAdamW samples", "tuning seeds",
                  "evaluation seeds"], rows)


def _adam_grid(cfg: Mapping):
    from star import baselines

    return baselines.adam_lr_grid(*cfg["adam_lr_range"])


def length_comparison_table(by_length: Mapping):
    """The same tasks at several run lengths (``{label: results}``, e.g. 1000 and 4000 steps): per optimizer
    present in every one, on how many of the common tasks it is unstable and the median over them of its final
    loss / tuned Adam's (each length against the Adam tuned at that length)."""
    from star.book.tables import table

    tasks = sorted(set.intersection(*(set(r) for r in by_length.values()))) if by_length else []
    counts = {lab: optimizer_counts(summarize({t: res[t] for t in tasks})) for lab, res in by_length.items()}
    opts = optimizer_order(set.intersection(*(set(c) for c in counts.values()))) if counts else []
    rows = []
    for opt in opts:
        row = [_style(opt)[0]]
        for lab in by_length:
            c = counts[lab][opt]
            row += [f"{c['unstable']}/{c['tasks']}", c["median_ratio_to_adam"]]
        rows.append(row)
    cols = ["optimizer"] + [x for lab in by_length for x in (f"unstable, {lab}", f"median final / Adam, {lab}")]
    from star.book import labels

    return table(cols, rows, caption=f"{len(tasks)} tasks: {'; '.join(labels.task_short(t) for t in tasks)}",
                 digits=3)
