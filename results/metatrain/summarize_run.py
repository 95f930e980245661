"""Summarise a meta-training run folder's log.jsonl: is the meta-loss trending down?

The per-step meta-loss mixes inner problems at different points of their episodes. At the start all N
problems are fresh networks (the random initial offset only shortens their first episode), so the early
decline is inner training, not meta-learning; only after every problem has reset once (after
``horizon / trunc`` outer steps) is the mixture stationary. We therefore report the least-squares slope of
the meta-loss over the stationary part, with its standard error, besides window means.

    .venv/bin/python results/metatrain/summarize_run.py results/metatrain/star_fmnist_cpu
"""

import json
import sys
from pathlib import Path

import numpy as np

from star.runs import atomic_write_json, load_log


def summarize(run_dir):
    run = Path(run_dir)
    cfg = json.loads((run / "config.json").read_text())
    log = load_log(run)
    step, loss = log["step"], log["meta_loss"]
    warm = cfg["horizon"] // cfg["trunc_length"]
    sel = step > warm
    out = {"run": str(run), "steps_logged": int(step.size), "stationary_after_step": warm,
           "meta_loss_first_10_mean": float(np.nanmean(loss[:10])),
           "meta_loss_last_10_mean": float(np.nanmean(loss[-10:])),
           "nan_count_total": int(np.nansum(log["nan_count"])),
           "inner_steps_per_s_median": float(np.nanmedian(log["inner_steps_per_s"][1:]))}
    if sel.sum() >= 5:
        x, y = step[sel], loss[sel]
        A = np.stack([np.ones_like(x), x - x.mean()], 1)
        coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
        resid = y - A @ coef
        se = np.sqrt(resid @ resid / (len(y) - 2) / np.sum((x - x.mean()) ** 2))
        out.update(stationary_steps=int(sel.sum()), stationary_meta_loss_mean=float(y.mean()),
                   stationary_slope_per_step=float(coef[1]), stationary_slope_se=float(se),
                   stationary_slope_z=float(coef[1] / se))
    return out


if __name__ == "__main__":
    res = summarize(sys.argv[1])
    atomic_write_json(Path(sys.argv[1]) / "summary.json", res)
    print(json.dumps(res, indent=2))
