"""Accumulators and per-parameter input features of the STAR optimizer family.

Everything here follows appendix "STAR in the code" and the parity README of ``learned_optimization``'s
``MLPNomLOpt`` / ``AdafacMLPLOpt`` (the only source of the exact equations; the paper itself describes
the features in words, App. B.2):

* three momentum accumulators ``m_i <- b_i m_i + (1 - b_i) g`` (no clipping, no bias correction);
* one second-moment accumulator ``v <- c v + (1 - c) g^2`` with ``c`` clipped to [0, 1];
* three Adafactor-style accumulators: row/column means of ``g^2 + 1e-30`` over the two largest axes of
  tensors with ``ndim >= 2``, a full diagonal otherwise, each with a factored-normalized gradient;
* 28 per-element feature channels, each divided by its root mean square over the tensor,
  plus 11 time features ``tanh(t / tau - 1)``: 39 inputs of the per-parameter MLP.

Layout: the decay index is the **leading** axis of every accumulator (``m`` has shape ``(3, *p.shape)``),
so that each decay's slice is contiguous in memory; the reference keeps it trailing.  The converters in
the tests move the axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

#: Timescales tau of the 11 time features tanh(t / tau - 1).
TIME_SCALES = (1, 3, 10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000)
NUM_TIME_FEATURES = len(TIME_SCALES)
#: Per-element feature channels before the time features (the 28 channels of the book's appendix).
NUM_ELEMENT_FEATURES = 28
NUM_FEATURES = NUM_ELEMENT_FEATURES + NUM_TIME_FEATURES  # 39

FEATURE_NAMES = (
    ["g", "p"]
    + [f"m{i}" for i in range(3)]
    + ["rms"]
    + [f"adam{i}" for i in range(3)]
    + ["rsqrt_rms"]
    + [f"fac_g{i}" for i in range(3)]
    + [f"v_row{i}" for i in range(3)]
    + [f"v_col{i}" for i in range(3)]
    + [f"rsqrt_v_row{i}" for i in range(3)]
    + [f"rsqrt_v_col{i}" for i in range(3)]
    + [f"fac_mom{i}" for i in range(3)]
    + [f"time{j}" for j in range(NUM_TIME_FEATURES)]
)

RMS_EPS = 1e-6  # in rsqrt(v + 1e-6): Adam features and the blackbox preconditioner
FACTORED_EPS = 1e-30  # added to g^2 in the factored accumulators
NORMALIZER_EPS = 1e-5  # second-moment normalization of the feature channels


def factored_dims(shape: Sequence[int]) -> tuple[int, int] | None:
    """The two axes ``(d1, d0)`` that Adafactor factors over, or ``None`` for tensors with ``ndim < 2``.

    ``d0`` is the largest axis and ``d1`` the second largest; ties keep index order (a stable sort).
    """
    if len(shape) < 2:
        return None
    order = np.argsort(np.asarray(shape), kind="stable")
    return int(order[-2]), int(order[-1])


def decays_from_logits(initial_decays: Sequence[float], logits: jax.Array) -> jax.Array:
    """Accumulator decays from meta-learned logits: ``1 - exp(10 (log(1 - d_init) / 10 + logit))``.

    The book's appendix: every decay is a meta-parameter through beta = 1 - (1 - beta_init) e^{10 theta},
    computed with the same float32 operations as the reference so that the values agree to the ulp.
    """
    d_init = jnp.asarray(initial_decays, dtype=jnp.float32)
    return 1 - jnp.exp((jnp.log(1 - d_init) / 10.0 + logits) * 10.0)


def time_features(iteration: jax.Array) -> jax.Array:
    """The 11 time features ``tanh(t / tau_j - 1)`` with ``t`` = number of updates already applied."""
    t = jnp.asarray(iteration).astype(jnp.float32)
    return jnp.tanh(t / jnp.asarray(TIME_SCALES, dtype=jnp.float32) - 1.0)


class LeafAccumulators(NamedTuple):
    """Accumulators of one parameter tensor ``p`` (decay index first).

    Attributes:
        m: ``(3, *p.shape)`` momentum for the three momentum decays.
        rms: ``p.shape`` second-moment accumulator ``v``.
        v_row: ``(3, *p.shape without d0)`` for factored tensors, else ``(3, 0)``.
        v_col: ``(3, *p.shape without d1)`` for factored tensors, else ``(3, 0)``.
        v_diag: ``(3, *p.shape)`` for non-factored tensors, else ``(3, 0)``.
    """

    m: jax.Array
    rms: jax.Array
    v_row: jax.Array
    v_col: jax.Array
    v_diag: jax.Array


def init_leaf_accumulators(p: jax.Array, num_momentum: int = 3, num_adafactor: int = 3) -> LeafAccumulators:
    """Zero accumulators for one tensor (the reference's ``opt.init``)."""
    shape = tuple(p.shape)
    f32 = jnp.float32
    empty = jnp.zeros((num_adafactor, 0), f32)
    dims = factored_dims(shape)
    if dims is None:
        v_row, v_col, v_diag = empty, empty, jnp.zeros((num_adafactor,) + shape, f32)
    else:
        d1, d0 = dims
        v_row = jnp.zeros((num_adafactor,) + tuple(np.delete(shape, d0)), f32)
        v_col = jnp.zeros((num_adafactor,) + tuple(np.delete(shape, d1)), f32)
        v_diag = empty
    return LeafAccumulators(jnp.zeros((num_momentum,) + shape, f32), jnp.zeros(shape, f32), v_row, v_col, v_diag)


def _bcast(decays: jax.Array, ndim: int) -> jax.Array:
    """Decays ``(k,)`` reshaped to ``(k, 1, ..., 1)`` to broadcast against ``(k, *shape)``."""
    return jnp.reshape(decays, (-1,) + (1,) * ndim)


class LeafStatistics(NamedTuple):
    """What the features need from the accumulator update of one tensor."""

    acc: LeafAccumulators  # the updated accumulators
    fac_g: jax.Array  # (3, *shape) factored-normalized gradients y_i
    row_factor: jax.Array | None  # (3, *shape without d0), factored tensors only
    col_factor: jax.Array | None  # (3, *shape without d1), factored tensors only


def _safe_rsqrt(x):
    return lax.rsqrt(jnp.maximum(x, 1e-9))


def update_leaf_accumulators(
    acc: LeafAccumulators,
    g: jax.Array,
    momentum_decays: jax.Array,
    rms_decay: jax.Array,
    adafactor_decays: jax.Array,
) -> LeafStatistics:
    """One step of every accumulator of one tensor, done before the MLP is applied (appendix "STAR in the code").

    Args:
        acc: the accumulators before this step.
        g: the gradient, same shape as the parameter.
        momentum_decays: ``(3,)`` momentum decays b_i (not clipped, as in the reference).
        rms_decay: scalar decay of the second-moment accumulator (clipped to [0, 1]).
        adafactor_decays: ``(3,)`` decays of the factored accumulators (clipped to [0, 1]).
    """
    nd = g.ndim
    b = _bcast(momentum_decays, nd)
    m = b * acc.m + (1 - b) * g[None]
    c = jnp.clip(rms_decay, 0.0, 1.0)
    rms = c * acc.rms + (1 - c) * (g * g)

    a = jnp.clip(adafactor_decays, 0.0, 1.0)
    mix = 1.0 - a
    gsq = g * g + FACTORED_EPS
    dims = factored_dims(g.shape)
    if dims is None:
        v_diag = _bcast(a, nd) * acc.v_diag + _bcast(mix, nd) * gsq[None]
        fac_g = g[None] * _safe_rsqrt(v_diag + 1e-9)
        new = LeafAccumulators(m, rms, acc.v_row, acc.v_col, v_diag)
        return LeafStatistics(new, fac_g, None, None)
    d1, d0 = dims
    nr = nd - 1
    v_row = _bcast(a, nr) * acc.v_row + _bcast(mix, nr) * jnp.mean(gsq, axis=d0)[None]
    v_col = _bcast(a, nr) * acc.v_col + _bcast(mix, nr) * jnp.mean(gsq, axis=d1)[None]
    reduced_d1 = d1 - 1 if d1 > d0 else d1
    row_col_mean = jnp.mean(v_row, axis=1 + reduced_d1, keepdims=True)
    row_factor = _safe_rsqrt(v_row / (row_col_mean + 1e-9))
    col_factor = _safe_rsqrt(v_col)
    fac_g = g[None] * jnp.expand_dims(row_factor, 1 + d0) * jnp.expand_dims(col_factor, 1 + d1)
    new = LeafAccumulators(m, rms, v_row, v_col, acc.v_diag)
    return LeafStatistics(new, fac_g, row_factor, col_factor)


#: Channels that vary per element for every tensor: g, p, m_i, v, adam_i, rsqrt(v), y_i, fac_mom_i.
ELEMENTWISE_CHANNELS = tuple(range(13)) + (25, 26, 27)
#: Second-moment channels: for factored tensors, functions of the row (resp. column) accumulators only.
ROW_CHANNELS = (13, 14, 15, 19, 20, 21)  # v_row_i, rsqrt(v_row_i + 1e-8)
COL_CHANNELS = (16, 17, 18, 22, 23, 24)  # v_col_i, rsqrt(v_col_i + 1e-8)


class FeatureChannels(NamedTuple):
    """The 28 feature channels of one tensor, without broadcasting the factored ones.

    Attributes:
        elementwise: 16 arrays of shape ``p.shape``: channels ``ELEMENTWISE_CHANNELS``.
        row, col: factored tensors: ``(6, *v_row.shape[1:])`` / ``(6, *v_col.shape[1:])`` holding the
            channels ``ROW_CHANNELS`` / ``COL_CHANNELS`` before broadcasting (``None`` otherwise).
        diag: non-factored tensors: 6 arrays ``v_diag_i, rsqrt(v_diag_i + 1e-8)`` of shape ``p.shape``;
            they fill channels 13-15 and 16-18 (twice the same), 19-21 and 22-24 (``None`` otherwise).
        dims: ``factored_dims(p.shape)``.
    """

    elementwise: list
    row: jax.Array | None
    col: jax.Array | None
    diag: list | None
    dims: tuple[int, int] | None


def feature_channels(p: jax.Array, g: jax.Array, stats: LeafStatistics) -> FeatureChannels:
    """Raw (un-normalized) feature channels of one tensor (the book's appendix; tests/data/parity/README.md).

    Order: g, p, m_0..2, v, m_i/sqrt(v + 1e-6), 1/sqrt(v + 1e-6), y_0..2, row accumulators, column
    accumulators (for ``ndim < 2``: the diagonal accumulator twice), their inverse square roots
    (+1e-8), and momentum times the Adafactor row and column factors.
    """
    acc = stats.acc
    rsqrt_rms = lax.rsqrt(acc.rms + RMS_EPS)
    k = acc.m.shape[0]
    el = [g, p] + [acc.m[i] for i in range(k)] + [acc.rms]
    el += [acc.m[i] * rsqrt_rms for i in range(k)] + [rsqrt_rms]
    el += [stats.fac_g[i] for i in range(stats.fac_g.shape[0])]
    dims = factored_dims(p.shape)
    if dims is None:
        vd = [acc.v_diag[i] for i in range(acc.v_diag.shape[0])]
        el += [acc.m[i] * (vd[i] + 1e-6) ** -0.5 for i in range(len(vd))]
        return FeatureChannels(el, None, None, vd + [lax.rsqrt(v + 1e-8) for v in vd], None)
    d1, d0 = dims
    n = acc.v_row.shape[0]
    el += [
        acc.m[i] * jnp.expand_dims(stats.row_factor[i], d0) * jnp.expand_dims(stats.col_factor[i], d1)
        for i in range(n)
    ]
    row = jnp.concatenate([acc.v_row, lax.rsqrt(acc.v_row + 1e-8)], axis=0)
    col = jnp.concatenate([acc.v_col, lax.rsqrt(acc.v_col + 1e-8)], axis=0)
    return FeatureChannels(el, row, col, None, dims)


def element_features(p: jax.Array, g: jax.Array, stats: LeafStatistics) -> list:
    """The 28 raw channels of one tensor in the reference's order, each broadcast to ``p.shape``."""
    fc = feature_channels(p, g, stats)
    out = [None] * NUM_ELEMENT_FEATURES
    for c, x in zip(ELEMENTWISE_CHANNELS, fc.elementwise):
        out[c] = x
    if fc.dims is None:
        for q, x in enumerate(fc.diag):
            out[ROW_CHANNELS[q]] = x
            out[COL_CHANNELS[q]] = x
    else:
        d1, d0 = fc.dims
        for q in range(len(ROW_CHANNELS)):
            out[ROW_CHANNELS[q]] = jnp.broadcast_to(jnp.expand_dims(fc.row[q], d0), p.shape)
            out[COL_CHANNELS[q]] = jnp.broadcast_to(jnp.expand_dims(fc.col[q], d1), p.shape)
    return out


def mean_squares(xs: Sequence[jax.Array]) -> jax.Array:
    """``[mean(x^2) for x in xs]`` for equally shaped ``xs`` in one pass over memory.

    A single variadic reduction over the last axis lets XLA compute every square inside the loop
    instead of materializing each channel; the partial sums (one per row) are then added by
    ``jnp.sum``.  The two levels keep the float32 summation error small.
    """
    x0 = xs[0]
    sq = tuple(jnp.square(x) for x in xs)
    if x0.ndim <= 1:
        return jnp.stack([jnp.mean(s) for s in sq])
    zero = tuple(jnp.zeros((), x.dtype) for x in xs)
    partial = lax.reduce(sq, zero, lambda a, b: tuple(u + v for u, v in zip(a, b)), (x0.ndim - 1,))
    return jnp.stack([jnp.sum(s) for s in partial]) / np.float32(x0.size)


def feature_normalizers(p: jax.Array, fc: FeatureChannels) -> jax.Array:
    """``rsqrt(1e-5 + mean(x^2))`` of each of the 28 channels over all elements of the tensor, ``(28,)``.

    The mean of a broadcast row (column) channel over the tensor equals the mean over the row (column)
    accumulator, so factored channels are reduced over their small arrays (float32 summation order
    differs from the reference by a few ulps).
    """
    ms = [None] * NUM_ELEMENT_FEATURES
    if fc.dims is None:
        vals = mean_squares(fc.elementwise + fc.diag)
        n_el = len(fc.elementwise)
        for c, i in zip(ELEMENTWISE_CHANNELS, range(n_el)):
            ms[c] = vals[i]
        for q in range(len(fc.diag)):
            ms[ROW_CHANNELS[q]] = ms[COL_CHANNELS[q]] = vals[n_el + q]
    else:
        vals = mean_squares(fc.elementwise)
        for c, i in zip(ELEMENTWISE_CHANNELS, range(len(fc.elementwise))):
            ms[c] = vals[i]
        rows = jnp.mean(jnp.square(jnp.reshape(fc.row, (fc.row.shape[0], -1))), axis=1)
        cols = jnp.mean(jnp.square(jnp.reshape(fc.col, (fc.col.shape[0], -1))), axis=1)
        for q in range(len(ROW_CHANNELS)):
            ms[ROW_CHANNELS[q]] = rows[q]
            ms[COL_CHANNELS[q]] = cols[q]
    return lax.rsqrt(NORMALIZER_EPS + jnp.stack(ms))


def feature_matrix(p: jax.Array, g: jax.Array, stats: LeafStatistics, iteration: jax.Array):
    """The MLP input ``(*shape', 39)`` of one tensor, exactly as the reference builds it.

    Returns ``(raw, features)``: the 28 raw channels ``(*shape', 28)`` and the 39 MLP inputs (28
    normalized channels and 11 time features).  ``shape'`` is ``p.shape``, except ``(1,)`` for scalars.
    """
    raw = jnp.stack(element_features(p, g, stats), axis=-1)
    if p.ndim == 0:
        raw = raw[None]
    axes = tuple(range(raw.ndim - 1))
    normed = raw * lax.rsqrt(NORMALIZER_EPS + jnp.mean(jnp.square(raw), axis=axes, keepdims=True))
    tf = jnp.broadcast_to(time_features(iteration), raw.shape[:-1] + (NUM_TIME_FEATURES,))
    return raw, jnp.concatenate([normed, tf], axis=-1)
