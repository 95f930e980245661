"""Effects with 95 % confidence intervals, for the checks behind the book's verdicts.

Each function returns ``(effect, low, high)``; a check of :mod:`star.book.claims` turns it into *supported*
(the interval lies above zero), *contradicted* (below zero) or *inconclusive* (it contains zero).

* :func:`mean_ci` — a mean with Student's t interval (the seeds of a meta-training grid, the tasks of a suite);
* :func:`paired_ci` — the mean of paired differences (the same seeds for both members of a comparison);
* :func:`proportion_ci` — a proportion with the Clopper–Pearson interval (seeds or tasks where something
  happened);
* :func:`bootstrap_ci` — any statistic of resampled rows, percentile interval, with an explicit seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = ["LEVEL", "mean_ci", "paired_ci", "welch_ci", "proportion_ci", "bootstrap_ci"]

LEVEL = 0.95  # every interval of the book's verdicts


def _level(level: float) -> float:
    if not 0.5 <= float(level) < 1.0:
        raise ValueError(f"level must be in [0.5, 1); got {level!r}")
    return float(level)


def mean_ci(x, level: float = LEVEL) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the finite-or-not values ``x`` with Student's t interval.

    Fewer than two values, or any non-finite value (e.g. a diverged run), give an interval of (−inf, inf): the
    data cannot decide. Identical values give a zero-width interval.
    """
    level = _level(level)
    x = np.asarray(x, np.float64).ravel()
    if x.size == 0:
        raise ValueError("x must hold at least one value")
    mean = float(np.mean(x)) if np.all(np.isfinite(x)) else float("nan")
    if x.size < 2 or not np.all(np.isfinite(x)):
        return mean, -math.inf, math.inf
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, x.size - 1) * np.std(x, ddof=1) / math.sqrt(x.size))
    return mean, mean - half, mean + half


def paired_ci(a, b, level: float = LEVEL) -> tuple[float, float, float]:
    """``(mean of a − b, low, high)`` over pairs (the same seed or task in both), Student's t interval.

    Raises:
        ValueError: ``a`` and ``b`` are not 1-D arrays of the same length.
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"a and b must be paired 1-D arrays of equal length; got shapes {a.shape} and {b.shape}")
    return mean_ci(a - b, level)


def proportion_ci(k: int, n: int, level: float = LEVEL) -> tuple[float, float, float]:
    """``(k / n, low, high)`` with the exact (Clopper–Pearson) interval.

    Raises:
        ValueError: ``n < 1`` or ``k`` outside ``[0, n]``.
    """
    level = _level(level)
    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"k and n must satisfy 0 <= k <= n, n >= 1; got k={k}, n={n}")
    from scipy.stats import beta

    alpha = 1.0 - level
    low = 0.0 if k == 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k == n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return k / n, low, high


def bootstrap_ci(statistic: Callable[[np.ndarray], float], rows, seed: int, num: int = 2000,
                 level: float = LEVEL) -> tuple[float, float, float]:
    """``(statistic(rows), low, high)``: the percentile interval of ``statistic`` over ``num`` resamples of the
    first axis of ``rows`` (with replacement; the resampling draws from ``numpy.random.default_rng(seed)``)."""
    level = _level(level)
    rows = np.asarray(rows)
    if rows.ndim == 0 or rows.shape[0] < 2:
        raise ValueError(f"rows must have at least two rows to resample; got shape {rows.shape}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, rows.shape[0], size=(int(num), rows.shape[0]))
    values = np.asarray([statistic(rows[i]) for i in idx], np.float64)
    low, high = np.nanpercentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(statistic(rows)), float(low), float(high)


def welch_ci(a, b, level: float = LEVEL) -> tuple[float, float, float]:
    """``(mean a − mean b, low, high)`` for two independent samples, Welch's t interval (unequal variances).

    Fewer than two values in either sample, or non-finite values, give (−inf, inf).
    """
    level = _level(level)
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.size == 0 or b.size == 0:
        raise ValueError("a and b must each hold at least one value")
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return float("nan"), -math.inf, math.inf
    diff = float(a.mean() - b.mean())
    if a.size < 2 or b.size < 2:
        return diff, -math.inf, math.inf
    va, vb = a.var(ddof=1) / a.size, b.var(ddof=1) / b.size
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff
    df = (va + vb) ** 2 / (va ** 2 / (a.size - 1) + vb ** 2 / (b.size - 1))
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, df) * se)
    return diff, diff - half, diff + half
