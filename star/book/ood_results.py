"""The stored out-of-distribution suite, condensed for the chapter (``book/ood.ipynb``).

What :func:`star.ood_records.load_results` returns (``{task: (record, curves)}``) seen per meta-training run
(:func:`meta_run_curves`), summarized per task and optimizer (:func:`summarize`, pooled or one meta-training
run at a time) and counted per optimizer over the tasks (:func:`optimizer_counts`), with the number of
meta-training runs behind each learned optimizer (:func:`num_meta_runs`, :func:`meta_run_labels`), the grid they
were meta-trained in (:func:`learned_grid`), the suite's elapsed time (:func:`elapsed_minutes`) and each run cut
after its first steps (:func:`truncated`, to ask what had failed by then); :func:`load_stored` reads the stored
suite the chapter shows. A run *fails* and an optimizer is *unstable* as :mod:`star.ood_scores` defines it
(:func:`star.ood_scores.failed_runs`).

What the chapter makes of this summary: its figures (:mod:`star.book.ood_figures`), tables
(:mod:`star.book.ood_tables`), findings in prose (:mod:`star.book.ood_findings`), the rule of its verdict
(:mod:`star.book.ood_verdict`) and the controls (:mod:`star.book.ood_controls`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from star.ood_scores import failed_runs, final_loss

__all__ = ["load_stored", "ROW_ORDER", "optimizer_order", "meta_run_curves", "summarize", "per_meta_run",
           "optimizer_counts", "num_meta_runs", "meta_run_labels", "learned_grid", "eval_steps", "elapsed_minutes",
           "truncated"]


#: The order of the suite's optimizer rows in the chapter's figures, tables and lists.
ROW_ORDER = ("adam", "nadamw", "star", "star_wd0.5", "hyperparam", "blackbox", "released_star",
             "released_hyperparam", "released_star_nonom")


def optimizer_order(names) -> list:
    """Known optimizers in :data:`ROW_ORDER`, then any others alphabetically."""
    known = [n for n in ROW_ORDER if n in names]
    return known + sorted(set(names) - set(known))


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


def meta_run_curves(record: Mapping, curves: Mapping, opt: str) -> np.ndarray:
    """``[meta-training runs, evaluation seeds, steps]`` view of optimizer ``opt``'s stored curves.

    A learned optimizer's curves are stored meta-run major (``record["learned"][opt]["num_meta_runs"]``
    θ's, each on every evaluation seed); a baseline is one "run" on the evaluation seeds.

    Raises:
        ValueError: the number of curves is not a multiple of the number of meta-training runs.
    """
    c = np.asarray(curves[opt])
    n = int(record.get("learned", {}).get(opt, {}).get("num_meta_runs", 1))
    if n < 1 or c.shape[0] % n:
        raise ValueError(f"{opt}: {c.shape[0]} curves cannot be split into num_meta_runs={n} equal groups")
    return c.reshape(n, c.shape[0] // n, c.shape[-1])


def summarize(results: Mapping, meta_run: int | None = None) -> dict:
    """Per task and optimizer: mean final loss, its ratio to tuned Adam's, and whether it was unstable.

    With ``meta_run=None`` a learned optimizer's row pools all its evaluation runs (every meta-trained θ on
    every evaluation seed): ``final`` is their mean, and it is ``unstable`` when *any* of them failed.
    With ``meta_run=k`` a learned optimizer's row holds only its ``k``-th meta-trained θ (on every
    evaluation seed), as if that were its only one; optimizers with fewer runs are left out. The baselines'
    rows are always all their evaluation runs. ``num_runs`` counts the runs behind a row.
    """
    out = {}
    for name, (rec, curves) in results.items():
        adam = float(np.mean(final_loss(curves["adam"])))
        row = {}
        for opt in curves:
            c = meta_run_curves(rec, curves, opt)
            if meta_run is not None and opt in rec.get("learned", {}):
                if meta_run >= c.shape[0]:
                    continue
                c = c[meta_run: meta_run + 1]
            c = c.reshape(-1, c.shape[-1])
            mean = float(np.mean(final_loss(c)))
            row[opt] = {"final": mean, "ratio_to_adam": mean / adam if math.isfinite(mean) and adam > 0 else math.inf,
                        "unstable": bool(np.any(failed_runs(c))), "num_runs": int(c.shape[0])}
        out[name] = row
    return out


def truncated(results: Mapping, steps: int) -> dict:
    """``results`` as if every run had stopped after its first ``steps`` inner steps (the records unchanged), so
    that :func:`summarize` judges each run on that prefix: whether it had failed by then and its final loss there.
    ``steps`` must be between 1 and the shortest stored run's length."""
    shortest = min((c.shape[-1] for _, curves in results.values() for c in curves.values()), default=0)
    if not 1 <= int(steps) <= shortest:
        raise ValueError(f"steps must be between 1 and {shortest} (the shortest stored run), got {steps}")
    return {name: (rec, {opt: np.asarray(c)[..., : int(steps)] for opt, c in curves.items()})
            for name, (rec, curves) in results.items()}


def num_meta_runs(results: Mapping) -> dict:
    """``{learned optimizer: number of meta-training runs}`` (the smallest over the tasks holding it)."""
    out = {}
    for rec, _ in results.values():
        for opt, info in rec.get("learned", {}).items():
            out[opt] = min(out.get(opt, math.inf), int(info.get("num_meta_runs", 1)))
    return out


def elapsed_minutes(results: Mapping) -> float:
    """Minutes from the first task's start (finish time minus its wall time) to the last task's finish."""
    spans = []
    for rec, _ in results.values():
        end = _dt.datetime.fromisoformat(rec["provenance"]["finished_utc"])
        spans.append((end - _dt.timedelta(seconds=rec["wall_s"]["total"]), end))
    if not spans:
        return 0.0
    return (max(e for _, e in spans) - min(s for s, _ in spans)).total_seconds() / 60.0


def per_meta_run(results: Mapping) -> list:
    """:func:`summarize` of ``results`` for each meta-training run ``k``
    (``meta_run=k``), as many as the learned optimizer with the most runs has."""
    return [summarize(results, meta_run=k) for k in range(max(num_meta_runs(results).values(), default=0))]


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


def meta_run_labels(results: Mapping, opt: str) -> list:
    """``seed k`` for each meta-training run of learned optimizer ``opt`` (from its run folder's name,
    ``..._s<k>``; ``run k`` where the name does not tell), in the order of the stored curves."""
    for rec, _ in results.values():
        if opt in rec.get("learned", {}):
            out = []
            for k, src in enumerate(rec["learned"][opt]["sources"]):
                m = re.search(r"_s(\d+)/[^/]*$", src.get("path", ""))
                out.append(f"seed {m.group(1)}" if m else f"run {k}")
            return out
    return []


def learned_grid(results: Mapping, opt: str = "star"):
    """The grid (``star.sweep.Grid``) whose folder holds every θ file of the learned optimizer ``opt`` of the stored
    suite, and the number of those files; ``(None, 0)`` if no grid does."""
    from star.grids import GRIDS

    for rec, _ in results.values():
        srcs = rec.get("learned", {}).get(opt, {}).get("sources", [])
        for g in GRIDS.values():
            if srcs and all(str(src.get("path", "")).startswith(g.folder + "/") for src in srcs):
                return g, len(srcs)
    return None, 0


def eval_steps(results: Mapping) -> int:
    """The number of inner steps of each evaluation run of the suite."""
    return int(np.asarray(next(iter(results.values()))[1]["adam"]).shape[-1])
