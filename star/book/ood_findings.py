"""What the out-of-distribution chapter finds, in Markdown computed from the stored suite (``book/ood.ipynb``): per
optimizer over the tasks (:func:`optimizer_findings_markdown`), per meta-training run
(:func:`meta_run_findings_markdown`), and the budgets behind it (:func:`suite_budget_markdown`,
:func:`budget_caveat_markdown`), and what fails only past the meta-training horizon (:func:`past_horizon_markdown`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from star.book import labels
from star.book.ood_results import (
    eval_steps,
    learned_grid,
    meta_run_labels,
    num_meta_runs,
    optimizer_counts,
    optimizer_order,
    per_meta_run,
    summarize,
    truncated,
)

__all__ = ["optimizer_findings_markdown", "meta_run_findings_markdown", "suite_budget_markdown",
           "budget_caveat_markdown", "past_horizon_markdown"]


def optimizer_findings_markdown(summary: Mapping, learned_only: bool = False) -> str:
    """A Markdown list, one item per optimizer (in :data:`~star.book.ood_results.ROW_ORDER`), of what
    :func:`~star.book.ood_results.optimizer_counts` finds over the tasks of ``summary`` (what
    :func:`star.book.ood_results.summarize` returns): on how many tasks it is unstable, below tuned Adam's final
    loss and within 1.25x of it, its median final loss / tuned Adam's, and its lowest final loss with the task.
    ``learned_only``: no items for the baselines (Adam, NAdamW), e.g. for a suite that reuses baselines shown
    elsewhere."""
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
            lines.append(f"* **{labels.optimizer(opt)}** — the yardstick; {stable}; lowest final loss "
                         f"{finals[low]:.3g} ({labels.task(low)}).")
            continue
        lines.append(f"* **{labels.optimizer(opt)}** — {stable}; final loss below tuned Adam's on {c['below_adam']} "
                     f"and within 1.25× of it on {c['within_1.25_adam']} of {n}; median final loss / tuned "
                     f"Adam's {c['median_ratio_to_adam']:.3g}; lowest final loss {finals[low]:.3g} "
                     f"({labels.task(low)}).")
    return "\n".join(lines)


def meta_run_findings_markdown(results: Mapping) -> str:
    """A Markdown list of what the per-meta-training-run summaries show: per learned optimizer its unstable
    tasks and median final loss / tuned Adam's for each θ and pooled; on how many tasks STAR is unstable
    with every θ and with at least one; and where STAR's final loss is at most 0.8x Hyperparam's (the
    verdict's "large gain") for each θ and pooled."""
    runs = num_meta_runs(results)
    per_run = per_meta_run(results)
    pooled = summarize(results)
    n = len(results)
    lines = []
    for opt in optimizer_order(runs):
        run_labels = meta_run_labels(results, opt)
        counts = [optimizer_counts(per_run[k])[opt] for k in range(runs[opt])]
        pc = optimizer_counts(pooled)[opt]
        unstable = ", ".join(str(c["unstable"]) for c in counts)
        medians = ", ".join(f"{c['median_ratio_to_adam']:.3g}" for c in counts)
        lines.append(f"* **{labels.optimizer(opt)}**: unstable on {unstable} of {n} tasks ({', '.join(run_labels)}), "
                     f"on {pc['unstable']} with its θ's pooled; median final loss / tuned Adam's {medians}.")
    if "star" in runs:
        every = [t for t in results if all(per_run[k][t]["star"]["unstable"] for k in range(runs["star"]))]
        some = [t for t in results if any(per_run[k][t]["star"]["unstable"] for k in range(runs["star"]))]
        lines.append(f"* STAR is unstable with every one of its {runs['star']} θ's on {len(every)} of {n} tasks, "
                     f"with at least one of them on {len(some)}.")
    if "star" in runs and "hyperparam" in runs:
        def gains(summ):
            return [t for t, row in summ.items() if "star" in row and "hyperparam" in row
                    and row["hyperparam"]["final"] > 0 and row["star"]["final"] <= 0.8 * row["hyperparam"]["final"]]

        run_labels = meta_run_labels(results, "star")
        per = [f"{run_labels[k]}: {', '.join(labels.task(t) for t in gains(per_run[k])) or 'none'}"
               for k in range(min(runs["star"], runs["hyperparam"]))]
        lines.append(f"* Tasks where STAR's final loss is at most 0.8× Hyperparam's — {'; '.join(per)}; pooled: "
                     f"{', '.join(labels.task(t) for t in gains(pooled)) or 'none'}.")
    return "\n".join(lines)


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
    g, n = learned_grid(results, opt)
    if g is None:
        return ""
    from star.book.claims import task_size

    size = task_size(g.task)
    return (f"What this does and does not say: each learned optimizer was meta-trained {n} times for "
            f"{g.outer_steps:,} PES steps on the {labels.task_short(g.task)}"
            + (f" ({size:,} parameters)" if size else "")
            + f" from the {getattr(g, 'init', 'reference')} initialization of θ, and evaluated for "
            f"{eval_steps(results):,} inner steps; the paper meta-trained on the 28×28 MLP with far more compute.")


def past_horizon_markdown(results: Mapping, horizon: int) -> str:
    """A Markdown list, one item per optimizer of ``results`` (runs longer than ``horizon``): the tasks on which it
    is stable over the first ``horizon`` steps and unstable by the end of the runs (it fails only past the
    horizon), and those on which it is unstable already by the horizon; each run judged on its own prefix
    (:func:`~star.book.ood_results.truncated`)."""
    steps = min(c.shape[-1] for _, curves in results.values() for c in curves.values())
    if steps <= int(horizon):
        raise ValueError(f"horizon must be below the runs' length {steps}, got {horizon}")
    early, late = summarize(truncated(results, int(horizon))), summarize(results)
    lines = []
    for opt in optimizer_order({o for row in late.values() for o in row}):
        tasks = [t for t in late if opt in late[t] and opt in early[t]]
        by_horizon = [t for t in tasks if early[t][opt]["unstable"]]
        after = [t for t in tasks if late[t][opt]["unstable"] and not early[t][opt]["unstable"]]

        def names(ts):
            return ", ".join(labels.task_short(t) for t in ts)

        text = (f"unstable past the horizon only on {len(after)} of {len(tasks)} tasks ({names(after)})" if after
                else f"no task on which it becomes unstable past the horizon (of {len(tasks)})")
        text += (f"; unstable already at step {int(horizon):,} on {len(by_horizon)} ({names(by_horizon)})"
                 if by_horizon else f"; stable at step {int(horizon):,} on all {len(tasks)}")
        lines.append(f"* **{labels.optimizer(opt)}** — {text}.")
    return "\n".join(lines)
