"""The rule of the out-of-distribution chapter's verdict on the claim ``ood_generalization`` (App. C.3), from the
stored suite (``{task: (record, curves)}``, :func:`star.book.ood_results.load_stored`).

* :func:`ood_checks` — the claim as effects with 95 % intervals, and :func:`ood_verdict` the status they give;
* :func:`verdict_counts`, :func:`evidence_text` and :func:`verdict_summary` — the numbers behind it in a sentence;
* :func:`meta_run_verdicts` and :func:`meta_run_evidence_text` — the same rule for each meta-training run of the
  learned optimizers alone (how much the finding depends on the one θ);
* :func:`first_update_failures` — how the unstable runs fail; :func:`learned_budget` — the meta-training budget
  the verdict weighs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from star.book import labels
from star.book.ood_results import (
    eval_steps,
    learned_grid,
    meta_run_curves,
    meta_run_labels,
    num_meta_runs,
    optimizer_counts,
    optimizer_order,
    per_meta_run,
)
from star.ood_scores import failed_runs, final_loss

__all__ = ["STAR_ROWS", "GAIN", "ood_checks", "ood_verdict", "verdict_counts", "evidence_text", "verdict_summary",
           "meta_run_verdicts", "meta_run_evidence_text", "first_update_failures", "first_update_sentence",
           "learned_budget"]


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
    from star.book.stats import mean_ci, proportion_ci, welch_ci
    from star.book.verdicts import Check

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
    """``(checks, status)``: :func:`ood_checks` and the verdict :func:`star.book.verdicts.claim_status` gives them at
    a budget that reaches the paper's regime (what the checks alone say; the recorded verdict also weighs the
    budget)."""
    from star.book.verdicts import claim_status

    checks = ood_checks(results, meta_run)
    return checks, claim_status([(checks, ())])


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


def evidence_text(summary: Mapping) -> str:
    """One sentence with the counts behind :func:`ood_verdict`."""
    c = verdict_counts(summary)
    n = c["tasks"]
    return (f"On {n} tasks: unstable (a run diverged or ended above its initial loss) Blackbox on "
            f"{c['blackbox_unstable']}/{n}, STAR on {c['star_unstable']}/{n}, Hyperparam on "
            f"{c['hyperparam_unstable']}/{n}; STAR's final loss <= 1.05x Hyperparam's on "
            f"{c['star_le_1.05_hyperparam']}/{n} and <= 0.8x on {c['star_le_0.8_hyperparam']}/{n}; "
            f"<= 1.25x tuned Adam's on {c['star_le_1.25_adam']}/{n}.")


def verdict_summary(results: Mapping, checks: Sequence) -> str:
    """One plain sentence: on how many tasks each learned optimizer is unstable, then the checks' outcomes."""
    from star.book.verdicts import count_sentence

    n = len(results)
    counts = []
    for o in ("blackbox", "hyperparam", *STAR_ROWS):
        if all(o in c for _, c in results.values()):
            k = sum(bool(_runs(*results[t], o)[1].any()) for t in results)
            counts.append(f"{labels.optimizer(o)} on {k}")
    return f"Unstable on the {n} tasks: {', '.join(counts)}; {count_sentence(checks)}."


def meta_run_verdicts(results: Mapping) -> dict:
    """``{label: (checks, status)}``: :func:`ood_verdict` on each meta-training run alone (run ``k`` of every learned
    optimizer together, as if each had only that θ), then on all runs pooled (``"pooled"``)."""
    runs = num_meta_runs(results)
    n = min((runs.get(o, 0) for o in ("star", "hyperparam", "blackbox")), default=0)
    run_labels = meta_run_labels(results, "star")
    out = {run_labels[k] if k < len(run_labels) else f"run {k}": ood_verdict(results, meta_run=k) for k in range(n)}
    out["pooled"] = ood_verdict(results)
    return out


def meta_run_evidence_text(results: Mapping) -> str:
    """One sentence: per meta-training run, on how many tasks each learned optimizer was unstable, and
    the status :func:`ood_verdict` gives each run alone."""
    runs = num_meta_runs(results)
    per_run = [optimizer_counts(summ) for summ in per_meta_run(results)]
    parts = []
    for opt in optimizer_order(runs):
        counts = [per_run[k][opt] for k in range(runs[opt])]
        parts.append(f"{labels.optimizer(opt)} on {', '.join(str(c['unstable']) for c in counts)} of "
                     f"{counts[0]['tasks']}")
    verdicts = meta_run_verdicts(results)
    alone = ", ".join(f"{label}: {v[1]}" for label, v in verdicts.items() if label != "pooled")
    return (f"Per meta-training run ({', '.join(meta_run_labels(results, 'star'))}), unstable: {'; '.join(parts)}; "
            f"the rule applied to each run alone gives {alone}.")


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


def learned_budget(results: Mapping, opt: str = "star"):
    """The :class:`star.book.claims.Budget` of the meta-training behind the learned optimizer ``opt`` of the stored
    suite: the grid whose folder holds its θ files (``None`` if none does), with the number of θ's as seeds and
    the evaluation length as a note."""
    from star.book.claims import Budget

    g, n = learned_grid(results, opt)
    if g is None:
        return None
    steps = eval_steps(results)
    return Budget.from_grid(g, seeds=n, notes=(
        f"each learned optimizer is evaluated for {steps:,} inner steps on each of {len(results)} tasks",))
