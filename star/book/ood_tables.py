"""The out-of-distribution chapter's tables (``book/ood.ipynb``): the tasks (:func:`tasks_table_html`), each
meta-training run's counts and verdict (:func:`meta_run_table`, :func:`meta_run_verdict_table`), the suite's wall
time (:func:`cost_table`) and budgets (:func:`suite_budget_table`), and the same tasks at several run lengths
(:func:`length_comparison_table`) or cut at several steps of one run (:func:`horizon_table`). Each takes the
stored suite (``{task: (record, curves)}``, :func:`star.book.ood_results.load_stored`) or what is made of it, and
returns a :class:`star.book.tables.Table` (or HTML).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from star.book import labels
from star.book.ood_results import (
    meta_run_labels,
    num_meta_runs,
    optimizer_counts,
    optimizer_order,
    per_meta_run,
    summarize,
    truncated,
)
from star.book.ood_verdict import meta_run_verdicts

__all__ = ["tasks_table_html", "meta_run_table", "meta_run_verdict_table", "cost_table", "suite_budget_table",
           "length_comparison_table", "horizon_table"]


def tasks_table_html(results: Mapping, tasks: Sequence[str] | None = None) -> str:
    """The suite as an HTML table: task, what it is (data, model, loss), its ``learned_optimization`` counterpart,
    parameters, the tuned Adam learning rate (flagged at a grid edge) and NAdamW's selected learning rate (the
    wall times are in :func:`cost_table`)."""
    import html

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


def meta_run_table(results: Mapping):
    """Per learned optimizer and meta-training run (and all runs pooled, as the verdict counts them): on
    how many tasks it is unstable, the median over the tasks of its final loss / tuned Adam's, and on how
    many tasks that ratio is at most 1.25 (a :class:`star.book.tables.Table`)."""
    from star.book.tables import table

    runs = num_meta_runs(results)
    per_run = [optimizer_counts(summ) for summ in per_meta_run(results)]
    pooled = optimizer_counts(summarize(results))
    rows = []
    for opt in optimizer_order(runs):
        run_labels = meta_run_labels(results, opt)
        entries = [(run_labels[k], per_run[k][opt]) for k in range(runs[opt])]
        if runs[opt] > 1:
            entries.append(("all pooled (the verdict's)", pooled[opt]))
        for label, c in entries:
            rows.append([labels.optimizer(opt), label, f"{c['unstable']}/{c['tasks']}", c["median_ratio_to_adam"],
                         f"{c['within_1.25_adam']}/{c['tasks']}"])
    return table(["learned optimizer", "meta-training run", "unstable on", "median final loss / tuned Adam's",
                  "≤ 1.25× tuned Adam on"], rows, digits=3)


def meta_run_verdict_table(results: Mapping):
    """The checks of :func:`~star.book.ood_verdict.ood_checks` (rows) for each meta-training run alone and pooled
    (columns): the outcome with the effect, and the verdict the checks alone give in the last row."""
    from star.book.tables import table

    verdicts = meta_run_verdicts(results)
    first = next(iter(verdicts.values()))[0]
    rows = [[c.question] + [f"{v[0][i].status} ({v[0][i].effect:+.2g})" for v in verdicts.values()]
            for i, c in enumerate(first)]
    rows.append(["verdict of the checks alone"] + [v[1] for v in verdicts.values()])
    return table(["check"] + [("all θ's pooled" if k == "pooled" else f"meta-training {k}") for k in verdicts], rows)


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
        row = [labels.optimizer(opt)]
        for lab in by_length:
            c = counts[lab][opt]
            row += [f"{c['unstable']}/{c['tasks']}", c["median_ratio_to_adam"]]
        rows.append(row)
    cols = ["optimizer"] + [x for lab in by_length for x in (f"unstable, {lab}", f"median final / Adam, {lab}")]
    return table(cols, rows, caption=f"{len(tasks)} tasks: {'; '.join(labels.task_short(t) for t in tasks)}",
                 digits=3)


def horizon_table(results: Mapping, checkpoints, horizon: int | None = None):
    """Each optimizer's runs judged on their first ``checkpoints`` steps (:func:`~star.book.ood_results.truncated`):
    on how many tasks it is unstable at each checkpoint (judged as if its runs had stopped there, so a run that
    recovers later counts at the earlier checkpoint only), and the median over the tasks of its final loss / tuned
    Adam's there (both from the same runs, Adam included). ``horizon``: the meta-training horizon, named in the
    column of the checkpoint equal to it."""
    from star.book.tables import table

    steps = [int(s) for s in checkpoints]
    counts = [optimizer_counts(summarize(truncated(results, s))) for s in steps]
    opts = optimizer_order(set.intersection(*(set(c) for c in counts))) if counts else []

    def head(s):
        return f"{s:,} (horizon)" if horizon is not None and s == int(horizon) else f"{s:,}"

    rows = []
    for opt in opts:
        rows.append([labels.optimizer(opt)] + [f"{c[opt]['unstable']}/{c[opt]['tasks']}" for c in counts]
                    + [c[opt]["median_ratio_to_adam"] for c in counts])
    cols = (["optimizer"] + [f"unstable at step {head(s)}" for s in steps]
            + [f"median final / Adam at step {head(s)}" for s in steps])
    tasks = sorted(results)
    return table(cols, rows, caption=f"{len(tasks)} tasks: {'; '.join(labels.task_short(t) for t in tasks)}",
                 digits=3)
