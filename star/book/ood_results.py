"""The stored out-of-distribution suite, condensed for the chapter (``book/ood.ipynb``).

What :func:`star.ood_suite.load_results` returns (``{task: (record, curves)}``) seen per meta-training run
(:func:`meta_run_curves`), summarized per task and optimizer (:func:`summarize`, pooled or one meta-training
run at a time), with the number of meta-training runs behind each learned optimizer (:func:`num_meta_runs`)
and the suite's elapsed time (:func:`elapsed_minutes`). A run *fails* and an optimizer is *unstable* as
:mod:`star.ood_suite` defines it (:func:`star.ood_suite.failed_runs`); the chapter's verdict rules on this
summary live in :mod:`star.book.ood`.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping

import numpy as np

from star.ood_suite import failed_runs, final_loss

__all__ = ["meta_run_curves", "summarize", "num_meta_runs", "elapsed_minutes"]

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
