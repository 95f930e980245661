"""Figure helpers shared by the chapters: EMA smoothing of loss curves (App. B), seed bands, and staggered markers
for curves that lie on top of each other."""

from __future__ import annotations

import numpy as np

__all__ = ["ema", "seed_band", "mean_stderr_band", "staggered_markevery", "coinciding_markevery"]


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


def staggered_markevery(index: int, count: int, num_points: int, num_markers: int | None = None) -> tuple[int, int]:
    """``markevery`` for series ``index`` of ``count`` series drawn on the same ``num_points`` x values, so that
    no two of them put a marker on the same point: every ``step`` points, series ``k`` starting at its own offset
    ``k·step // count``. ``step`` is ``count`` (each point marked by one series in turn), or with
    ``num_markers`` about ``num_points / num_markers`` (at least ``count``). Where curves coincide, the lower one
    then still shows its markers between the upper one's.

    Raises:
        ValueError: ``count`` or ``num_points`` below 1, ``index`` outside ``[0, count)``, ``num_markers`` below 1.
    """
    for name, value in (("count", count), ("num_points", num_points)):
        if not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {value!r}")
    if not isinstance(index, (int, np.integer)) or not 0 <= index < count:
        raise ValueError(f"index must be an integer in [0, {count}); got {index!r}")
    if num_markers is not None and (not isinstance(num_markers, (int, np.integer)) or num_markers < 1):
        raise ValueError(f"num_markers must be an integer >= 1 or None; got {num_markers!r}")
    step = count if num_markers is None else max(count, num_points // num_markers)
    return int(index * step // count), int(step)


def coinciding_markevery(curves, rtol: float = 0.05, atol: float = 0.0) -> list:
    """For curves drawn on the same x values, the ``markevery`` of each: ``None`` (every point) for a curve that
    coincides with no other, and for curves that coincide — equal within ``rtol``/``atol`` (``numpy.isclose``) at
    every point, non-finite at the same points — :func:`staggered_markevery` within their group, so that each of
    them shows markers where the others show none.

    Raises:
        ValueError: curves of different lengths.
    """
    ys = [np.asarray(c, dtype=np.float64) for c in curves]
    if len({y.shape for y in ys}) > 1:
        raise ValueError(f"curves must have one shape; got {sorted({y.shape for y in ys})}")

    def same(a, b):
        fa, fb = np.isfinite(a), np.isfinite(b)
        return bool(np.array_equal(fa, fb) and fa.any() and np.allclose(a[fa], b[fb], rtol=rtol, atol=atol))

    group = list(range(len(ys)))  # union-find over "coincides with"
    def root(i):
        while group[i] != i:
            i = group[i]
        return i
    for i in range(len(ys)):
        for j in range(i + 1, len(ys)):
            if same(ys[i], ys[j]):
                group[root(j)] = root(i)
    members = {}
    for i in range(len(ys)):
        members.setdefault(root(i), []).append(i)
    out = []
    for i, y in enumerate(ys):
        m = members[root(i)]
        out.append(None if len(m) == 1 else staggered_markevery(m.index(i), len(m), y.size))
    return out
