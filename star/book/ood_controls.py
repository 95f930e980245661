"""The controls of the out-of-distribution result (``results/ood/cpu_controls``, the rows of
:data:`star.learned_optimizers.CONTROLS_LEARNED`): what of it is the initialisation of θ, the learned direction
head and the outer weight decay. :func:`controls_rows` measures each row (its θ's cumulative decay lr·wd·steps,
its direction head, where it is unstable), :func:`controls_table` and :func:`controls_findings_markdown` show
them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from star.book import labels
from star.book.ood_results import summarize
from star.ood_scores import failed_runs

__all__ = ["CONTROL_ROWS", "CONTROL_TASKS", "cumulative_decay", "direction_head", "controls_rows", "controls_table",
           "controls_findings_markdown"]


#: The rows of ``star.learned_optimizers.CONTROLS_LEARNED`` (stored in ``results/ood/cpu_controls``), in the order
#: shown.
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
