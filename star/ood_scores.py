"""How the out-of-distribution experiment scores a training curve (App. B.3, C.3): its final loss and failure.

The *final loss* of a run is its mean training loss over the last 10% of the steps (:data:`FINAL_FRACTION`);
it ranks the baselines' configurations in the tuning (:mod:`star.ood_tuning`) and compares optimizers in the
chapter. A run *fails* when its final loss is not finite or is above the loss at its first step (the optimizer
made the model worse than its initialization); an optimizer is *unstable* on a task when any of its
evaluation runs fails (for a learned optimizer: any of its meta-trained θ's on any evaluation seed).
"""

from __future__ import annotations

import numpy as np

__all__ = ["FINAL_FRACTION", "final_loss", "failed_runs"]

FINAL_FRACTION = 0.1  # the final loss is the mean training loss over the last 10% of the steps


def final_loss(curves, fraction: float = FINAL_FRACTION) -> np.ndarray:
    """Mean training loss over the last ``fraction`` of the steps, per run (``[..., steps] -> [...]``).

    Non-finite anywhere in that window gives +inf (a diverged run).
    """
    x = np.asarray(curves, np.float64)
    k = max(1, int(round(fraction * x.shape[-1])))
    tail = x[..., -k:]
    out = tail.mean(axis=-1)
    return np.where(np.all(np.isfinite(tail), axis=-1), out, np.inf)


def failed_runs(curves) -> np.ndarray:
    """Per run: the final loss is not finite or exceeds the loss at the first step."""
    x = np.asarray(curves, np.float64)
    fin = final_loss(x)
    return ~np.isfinite(fin) | (fin > x[..., 0])
