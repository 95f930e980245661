"""Figure helpers shared by the chapters: EMA smoothing of loss curves (App. B) and seed bands."""

from __future__ import annotations

import numpy as np

__all__ = ["ema", "seed_band", "mean_stderr_band"]


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


def mean_stderr_band(curves, coefficient: float | None = None, num_stderr: float = 1.0):
    """``(mean, low, high)`` over seeds (axis 0): the mean and mean ± ``num_stderr`` standard errors
    (sample std with ddof=1, divided by sqrt(#seeds)), as in Figs. 2b,c (App. B.1: "one standard error").

    With ``coefficient``, all three curves are EMA-smoothed with it (:func:`ema`), "including the confidence
    intervals" as App. B.1 does (0.95 there, 0.98 in App. B.2). Needs at least two seeds.
    """
    x = np.asarray(curves, dtype=np.float64)
    if x.ndim < 2 or x.shape[0] < 2:
        raise ValueError(f"curves must have a leading seed axis with >= 2 seeds; got shape {x.shape}")
    if not isinstance(num_stderr, (int, float)) or not np.isfinite(num_stderr) or num_stderr < 0:
        raise ValueError(f"num_stderr must be a finite number >= 0; got {num_stderr!r}")
    mean = x.mean(axis=0)
    se = x.std(axis=0, ddof=1) / np.sqrt(x.shape[0])
    low, high = mean - num_stderr * se, mean + num_stderr * se
    if coefficient is None:
        return mean, low, high
    return ema(mean, coefficient), ema(low, coefficient), ema(high, coefficient)
