"""Figure helpers shared by the chapters: EMA smoothing of loss curves (App. B) and seed bands."""

from __future__ import annotations

import numpy as np

__all__ = ["ema", "seed_band"]


def ema(values, coefficient: float = 0.98) -> np.ndarray:
    """Debiased exponential moving average along the last axis, as the paper's plots use (App. B).

    ``s_t = c·s_{t-1} + (1 - c)·x_t`` with ``s_0 = 0``, reported as ``s_t / (1 - c^t)`` so that the
    first points are not pulled towards zero (the TensorBoard convention). ``c = 0`` returns the
    input. Non-finite values propagate: a diverged run stays visibly diverged.

    Raises:
        ValueError: ``coefficient`` outside ``[0, 1)``.
    """
    if not isinstance(coefficient, (int, float)) or not 0.0 <= float(coefficient) < 1.0:
        raise ValueError(f"coefficient must be in [0, 1); got {coefficient!r}")
    x = np.asarray(values, dtype=np.float64)
    c = float(coefficient)
    out = np.empty_like(x)
    s = np.zeros(x.shape[:-1])
    for t in range(x.shape[-1]):
        s = c * s + (1.0 - c) * x[..., t]
        out[..., t] = s / (1.0 - c ** (t + 1))
    return out


def seed_band(curves):
    """``(mean, low, high)`` over seeds (axis 0): the mean curve and its min/max envelope."""
    x = np.asarray(curves, dtype=np.float64)
    if x.ndim < 2:
        raise ValueError(f"curves must have a leading seed axis, shape [seeds, steps]; got shape {x.shape}")
    return x.mean(axis=0), x.min(axis=0), x.max(axis=0)
