"""The tables of the chapter "In-distribution meta-training" (``book/in_distribution.ipynb``), computed from a
grid's stored runs (:mod:`star.book.grid_results`): per member the final meta-objective and the inner training at
each evaluation length (:func:`summary_table`), the tuned Adam's search (:func:`adam_search_table`), where and at
what cost the runs were made (:func:`provenance_table`), what a paper-scale grid would take
(:func:`accelerator_estimate_table`), and the seeds that do not train at all (:func:`stuck_seeds`).
"""

from __future__ import annotations

import math

import numpy as np

from star.book import labels
from star.book.grid_results import GridResults, members_of, meta_objective, meta_objective_at, only_run, per_meta_seed
from star.book.tables import Prose, table

__all__ = ["summary_table", "adam_search_table", "accelerator_estimate_table", "provenance_table", "stuck_seeds"]


def summary_table(results: GridResults, figure: str | None = None):
    """Per member and baseline: meta-training seeds, the final unperturbed meta-objective, and per evaluation length
    the final training loss, test loss (nats) and test accuracy (%), means over meta-training seeds of means over
    evaluation seeds (a :class:`star.book.tables.Table`)."""
    members = members_of(results, figure) if figure else [next(iter(v.values())).member for v in results.runs.values()]
    lengths = sorted(results.grid.eval_steps)
    rows = []
    for m in members:
        _, obj = meta_objective(results, m)
        row = [labels.member(m), len(results.runs[m.label]), float(np.mean(obj[:, -1])) if obj.size else float("nan")]
        for steps in lengths:
            for key, f in (("final_train_loss", 1), ("test_loss", 1), ("test_accuracy", 100)):
                row.append(f * float(np.mean(per_meta_seed(results, m, steps, key))))
        rows.append(row)
    b = results.baselines
    if b is not None:
        for key, name in (("adam", f"Adam, tuned learning rate {b['adam_search']['best_lr']:g}"),
                          ("nominal", "nominal optimizer")):
            row = [name, "—", float("nan")]
            for steps in lengths:
                per = b[key].get(str(steps), {"per_seed": []})["per_seed"]
                for k, f in (("final_train_loss", 1), ("test_loss", 1), ("test_accuracy", 100)):
                    vals = [r[k] for r in per]
                    row.append(float("nan") if not vals or None in vals else f * float(np.mean(vals)))
            rows.append(row)
    cols = ["optimizer", "meta-training seeds", "final meta-objective (nats)"]
    for steps in lengths:
        cols += [f"training loss after {steps:,} steps (nats)", f"test loss after {steps:,} (nats)",
                 f"test accuracy after {steps:,} (%)"]
    rows = [[("—" if isinstance(x, float) and math.isnan(x) else x) for x in r] for r in rows]
    return table(cols, rows, digits=3)


def adam_search_table(results: GridResults):
    """The tuned Adam's learning-rate search: mean training loss over 2000 steps per learning rate."""
    search = results.baselines["adam_search"]
    rows = [[float(lr), v] for lr, v in sorted(search["mean_train_loss"].items(), key=lambda kv: float(kv[0]))]
    return table(["Adam learning rate", "mean training loss over 2,000 steps (nats)"], rows, digits=3)


def accelerator_estimate_table():
    """Per paper-scale grid: runs, inner steps per run and in all, and the hours they take at the inner-step rate of
    STAR on the paper's MLP with N = 8 on two CPU cores (the median over a stored run's outer steps; no accelerator's
    rate has been measured for this book); and whether the grid's data are available here."""
    from star.book.files import stored_run
    from star.data_sources import DataUnavailableError
    from star.grids import get_grid
    from star.tasks import get_task

    rate = float(np.median(stored_run("star_fmnist_cpu_paper_sigma").log["inner_steps_per_s"]))
    rows = []
    for name in ("indist", "indist_conv"):
        g = get_grid(name, "paper")
        est = g.compute_estimate(inner_steps_per_s=rate)
        try:
            get_task(g.task)
            data = "yes"
        except DataUnavailableError:
            data = "no (tensorflow-datasets, online)"
        rows.append([labels.grid(name), labels.task_short(g.task), est["runs"], f"{est['inner_steps_per_run']:,}",
                     f"{est['inner_steps']:,}", est["hours"] if g.task == "fmnist_mlp" else "not measured", data])
    return table(["paper-scale grid", "task", "runs", "inner steps per run", "inner steps in all",
                  f"hours at {rate:,.0f} inner steps per second (2 CPU cores)", "data available here"], rows, digits=3)


def provenance_table(*grids: GridResults):
    """Per grid: finished and missing runs, meta-training and post-processing minutes summed over the runs, inner
    steps per second of meta-training, the devices and the commits that made the runs."""
    rows = []
    for res in grids:
        prov = [r.provenance for by_seed in res.runs.values() for r in by_seed.values()]
        dev = sorted({f"{p.get('device', {}).get('count')} × {p.get('device', {}).get('platform')} "
                      f"({p.get('device', {}).get('cpu_count')} cores)" for p in prov})
        commits = sorted({str(p.get("git_commit", "?"))[:7] for p in prov})
        rows.append([labels.grid(res.grid.name), sum(len(v) for v in res.runs.values()), len(res.missing),
                     res.total_wall_s() / 60, res.post_wall_s() / 60, res.inner_steps_per_s(), ", ".join(dev),
                     ", ".join(commits)])
    return table(["grid", "finished runs", "runs not stored yet", "meta-training (min, summed)",
                  "post-processing (min)", "inner steps per second", "devices", "commits"], rows, digits=3)


def stuck_seeds(results: GridResults, figure: str = "fig3", tolerance: float = 0.05) -> str:
    """A sentence naming the meta-training seeds of ``figure``'s members whose final unperturbed meta-objective is
    within ``tolerance`` of ln 10 — the loss of a 10-class network that does not learn — computed from the stored
    meta-curves. A :class:`star.book.tables.Prose` (Markdown)."""
    level = math.log(10.0)
    parts = []
    for m in members_of(results, figure):
        seeds = [s for s in sorted(results.runs.get(m.label, {}))
                 if abs(v := meta_objective_at(only_run(results, m.label, s), m, results.grid.outer_steps)).size
                 and abs(float(v[0]) - level) <= tolerance]
        if seeds:
            which = f"seed {seeds[0]}" if len(seeds) == 1 else \
                f"seeds {', '.join(map(str, seeds[:-1]))} and {seeds[-1]}"
            parts.append(f"{labels.member(m)}'s {which}")
    end = f"after {results.grid.outer_steps:,} outer steps"
    if not parts:
        return Prose(f"No seed ends at ln 10 ≈ {level:.2f}, the loss of a network that does not learn, {end}.")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    verb = "ends" if len(parts) == 1 and "seeds" not in listed else "end"
    return Prose(f"Some seeds do not train at all: {listed} {verb} "
                 f"at ln 10 ≈ {level:.2f}, the loss of a network that does not learn, {end}.")
