"""The out-of-distribution chapter (``book/ood.ipynb``): stored results, figures, table and verdict rule.

* :func:`load_stored` — the stored suite ``results/ood/<scale>/`` (fetched on Colab);
* :func:`plot_curves_grid` (Figs. App.5–App.6) and :func:`plot_summary` — both take what
  :func:`load_stored` or :func:`star.ood.load_results` return (``{task: (record, curves)}``);
* :func:`ood_checks` / :data:`VERDICT_RULES` — the rule of the verdict on the claim ``ood_generalization``,
  with :func:`verdict_counts` and :func:`evidence_text` for the numbers behind it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from star.ood import failed_runs, final_loss, summarize
from star.plotting import mean_stderr_band

__all__ = ["LABELS", "plot_curves_grid", "plot_summary", "optimizer_order", "tasks_table_html", "load_stored",
           "VERDICT_RULES", "ood_checks", "ood_verdict", "verdict_counts", "evidence_text", "optimizer_counts"]

LABELS = {
    "adam": ("Adam (tuned learning rate)", "C0", "-"),
    "nadamw": ("NAdamW (random search)", "C1", "-"),
    "star": ("STAR", "C3", "-"),
    "star_wd0.5": ("STAR (outer wd 0.5)", "C4", "--"),
    "hyperparam": ("Hyperparam", "C2", "-"),
    "blackbox": ("Blackbox", "C7", "-"),
    "released_star": ("STAR, released", "C3", ":"),
    "released_hyperparam": ("Hyperparam, released", "C2", ":"),
    "released_star_nonom": ("No Nom., released", "C5", ":"),
}


def optimizer_order(names) -> list:
    """Known optimizers in :data:`LABELS` order, then any others alphabetically."""
    known = [n for n in LABELS if n in names]
    return known + sorted(set(names) - set(known))


def _style(name):
    return LABELS.get(name, (name, None, "-"))


def plot_curves_grid(results: Mapping, tasks: Optional[Sequence[str]] = None, *, ncols: int = 4,
                     coefficient: float = 0.98):
    """One panel per task: training loss against step, mean ± one standard error over the evaluation
    runs, EMA-smoothed with ``coefficient`` as the paper's plots (App. B: 0.98). The y-range ends a
    little above the initial loss, so a diverging optimizer leaves the panel at the top."""
    import matplotlib.pyplot as plt

    tasks = list(tasks if tasks is not None else results)
    nrows = max(1, math.ceil(len(tasks) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.6 * nrows), squeeze=False)
    handles = {}
    for ax, name in zip(axes.flat, tasks):
        rec, curves = results[name]
        init = float(np.nanmedian(np.asarray(curves["adam"])[:, 0]))
        lows = []
        for opt in optimizer_order(curves):
            c = np.asarray(curves[opt], np.float64)
            c = np.where(np.isfinite(c), c, np.nan)
            mean, lo, hi = mean_stderr_band(np.minimum(c, 1e6), coefficient=coefficient)
            label, colour, ls = _style(opt)
            x = np.arange(1, c.shape[1] + 1)
            (h,) = ax.plot(x, mean, color=colour, ls=ls, lw=1.3, label=label)
            ax.fill_between(x, lo, hi, color=h.get_color(), alpha=0.2, lw=0)
            handles.setdefault(label, h)
            if np.isfinite(mean).any():
                lows.append(np.nanmin(mean))
        top = init * 1.15
        bottom = min(lows) if lows else 0.0
        ax.set_ylim(max(0.0, bottom - 0.05 * (top - bottom)), top)
        ax.set_title(name, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("step", fontsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=min(len(handles), 4),
               fontsize=8, frameon=False, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return fig


def plot_summary(results: Mapping, tasks: Optional[Sequence[str]] = None, *, cap: float = 100.0):
    """Per task, each optimizer's final loss divided by tuned Adam's (log scale; < 1 is better than Adam).

    Filled markers: every evaluation run was stable; hollow: some run ended above its initial loss;
    a cross at the right edge: some run diverged (non-finite loss); a triangle at an edge: the ratio is
    beyond ``cap`` (or below ``1/cap``), drawn at the edge.
    """
    import matplotlib.pyplot as plt

    tasks = list(tasks if tasks is not None else results)
    summ = summarize({t: results[t] for t in tasks})
    opts = optimizer_order({o for t in tasks for o in results[t][1]} - {"adam"})
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(tasks) + 1.6))
    finite = [r["ratio_to_adam"] for t in tasks for o, r in summ[t].items() if math.isfinite(r["ratio_to_adam"])]
    hi = min(max([2.0] + finite), cap) * 1.6
    lo = max(min([0.5] + finite), 1.0 / cap) / 1.6
    offsets = np.linspace(-0.3, 0.3, len(opts)) if len(opts) > 1 else [0.0]
    for k, opt in enumerate(opts):
        colour = _style(opt)[1]
        for i, t in enumerate(tasks):
            if opt not in summ[t]:
                continue
            r = summ[t][opt]
            y = i + offsets[k]
            c = np.asarray(results[t][1][opt])
            diverged = not np.all(np.isfinite(final_loss(c)))
            kw = dict(color=colour)
            x, marker = r["ratio_to_adam"], "o"
            if x > cap:
                x, marker = hi / 1.3, ">"
            elif x < 1.0 / cap:
                x, marker = lo * 1.3, "<"
            if diverged:
                ax.plot([hi / 1.1], [y], marker="x", ms=7, mew=2, ls="none", **kw)
            elif r["unstable"] or np.any(failed_runs(c)):
                ax.plot([x], [y], marker=marker, ms=6, mfc="none", mew=1.5, ls="none", **kw)
            else:
                ax.plot([x], [y], marker=marker, ms=6, ls="none", **kw)
    from matplotlib.lines import Line2D

    proxies = [Line2D([], [], color=_style(o)[1], marker="o", ls="none", label=_style(o)[0]) for o in opts]
    ax.axvline(1.0, color="C0", lw=1)
    proxies.append(Line2D([], [], color="C0", lw=1, label="tuned Adam"))
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"final training loss / tuned Adam's (×: diverged; hollow: ended above its initial loss; "
                  f"▶: beyond {cap:g}×)", fontsize=8)
    ax.legend(handles=proxies, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def tasks_table_html(results: Mapping, tasks: Optional[Sequence[str]] = None) -> str:
    """The suite as an HTML table: task, data, what it is, its ``learned_optimization`` counterpart,
    parameters, the tuned Adam learning rate (flagged at a grid edge), NAdamW's selected learning rate,
    and the wall time of the task."""
    import html

    e = html.escape
    rows = ["<div class='star-table-wrap'><table class='star-table'><thead><tr><th>task</th><th>data</th><th>model and loss</th>"
            "<th>learned_optimization counterpart</th><th>params</th><th>Adam lr</th><th>NAdamW lr</th>"
            "<th>wall (s)</th></tr></thead><tbody>"]
    for name in tasks if tasks is not None else results:
        rec, _ = results[name]
        edge = " (grid edge)" if rec["adam"]["best_at_grid_edge"] else ""
        rows.append(
            f"<tr><td><code>{e(name)}</code></td><td>{e(rec['data'])}</td><td>{e(rec['description'])}</td>"
            f"<td>{e(rec['reference'])}</td><td>{rec['num_params']:,}</td>"
            f"<td>{rec['adam']['best_learning_rate']:.0e}{edge}</td>"
            f"<td>{rec['nadamw']['best']['learning_rate']:.1e}</td><td>{rec['wall_s']['total']:.0f}</td></tr>")
    rows.append("</tbody></table></div>")
    return "\n".join(rows)


VERDICT_RULES = {
    "blackbox unstable": "Blackbox is unstable (some evaluation run diverges or ends above its initial loss) "
                         "on at least half of the tasks",
    "STAR stable": "STAR is unstable on at most 1/8 of the tasks",
    "Hyperparam stable": "Hyperparam is unstable on at most 1/8 of the tasks",
    "STAR at least as good as Hyperparam": "STAR's final loss is at most 1.05x Hyperparam's on at least half "
                                           "of the tasks",
    "large STAR gains somewhere": "STAR's final loss is at most 0.8x Hyperparam's on at least one task",
    "STAR competitive with tuned Adam": "STAR's final loss is at most 1.25x tuned Adam's on at least half "
                                        "of the tasks",
}


def ood_checks(summary: Mapping) -> dict:
    """The named yes/no checks of :data:`VERDICT_RULES` on :func:`star.ood.summarize` output."""
    return ood_verdict(summary)[0]


def ood_verdict(summary: Mapping) -> tuple:
    """``(checks, status)``: the rules of :data:`VERDICT_RULES` evaluated on :func:`summarize` output.

    ``status`` is :func:`star.book.claims.status_from_checks` of the checks: all pass → ``reproduced``,
    none → ``refuted``, otherwise ``partly``.

    Raises:
        ValueError: an empty summary, or a task without star, hyperparam and blackbox rows.
    """
    from star.book.claims import status_from_checks

    if not summary:
        raise ValueError("summary must hold at least one task")
    need = ("star", "hyperparam", "blackbox", "adam")
    for name, row in summary.items():
        missing = [o for o in need if o not in row]
        if missing:
            raise ValueError(f"summary[{name!r}] lacks the optimizers {missing}")
    c = verdict_counts(summary)
    n = c["tasks"]
    checks = {
        "blackbox unstable": c["blackbox_unstable"] >= n / 2,
        "STAR stable": c["star_unstable"] <= n / 8,
        "Hyperparam stable": c["hyperparam_unstable"] <= n / 8,
        "STAR at least as good as Hyperparam": c["star_le_1.05_hyperparam"] >= n / 2,
        "large STAR gains somewhere": c["star_le_0.8_hyperparam"] >= 1,
        "STAR competitive with tuned Adam": c["star_le_1.25_adam"] >= n / 2,
    }
    return checks, status_from_checks(checks)


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
                  "within_1.25_adam": sum(r["ratio_to_adam"] <= 1.25 for r in rows)}
    return out


def evidence_text(summary: Mapping) -> str:
    """One sentence with the counts behind :func:`ood_verdict`."""
    c = verdict_counts(summary)
    n = c["tasks"]
    return (f"On {n} tasks: unstable (a run diverged or ended above its initial loss) Blackbox on "
            f"{c['blackbox_unstable']}/{n}, STAR on {c['star_unstable']}/{n}, Hyperparam on "
            f"{c['hyperparam_unstable']}/{n}; STAR's final loss <= 1.05x Hyperparam's on "
            f"{c['star_le_1.05_hyperparam']}/{n} and <= 0.8x on {c['star_le_0.8_hyperparam']}/{n}; "
            f"<= 1.25x tuned Adam's on {c['star_le_1.25_adam']}/{n}.")


def load_stored(scale: str = "cpu", tasks: Optional[Sequence[str]] = None, fetch=None) -> tuple:
    """``(results, missing)``: the stored results ``results/ood/<scale>/<task>.{json,npz}`` of ``tasks``
    (default: the suite), found with ``fetch(relpath) -> Path`` (default :func:`star.book.repo_file`,
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
