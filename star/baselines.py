"""Hand-designed baselines of the out-of-distribution experiments (App. B.3): Adam and NAdamW.

The paper compares its learned optimizers with two tuned baselines on every task: Adam with its
learning rate chosen on a grid of half-decade steps, and NAdamW (AdamW with Nesterov momentum) tuned by
random search over 1000 hyper-parameter samples (App. B.3; ``learned_optimization``'s
``AdamLR_*`` and ``OptList1k_*`` sets). Both are one optimizer here, :func:`nadamw`, whose
hyper-parameters are *arrays*, not Python numbers, so that hundreds of configurations train as one
``jax.vmap``-ed, compiled program (:mod:`star.batched`) instead of a Python loop over configurations.

The update of :func:`nadamw` for a parameter :math:`p` with gradient :math:`g_t` at step
:math:`t = 1, 2, \\dots` is (Loshchilov & Hutter, 2019; Dozat, 2016, as in ``optax.nadamw``)

.. math::
    m_t = \\beta_1 m_{t-1} + (1-\\beta_1) g_t, \\quad v_t = \\beta_2 v_{t-1} + (1-\\beta_2) g_t^2,

    \\hat m_t = \\begin{cases} \\beta_1 \\frac{m_t}{1-\\beta_1^{t+1}} + (1-\\beta_1)\\frac{g_t}{1-\\beta_1^t}
      & \\text{Nesterov} \\\\ \\frac{m_t}{1-\\beta_1^t} & \\text{otherwise}\\end{cases}, \\quad
    \\hat v_t = \\frac{v_t}{1-\\beta_2^t},

    p_t = p_{t-1} - \\eta_t \\Big(\\frac{\\hat m_t}{\\sqrt{\\hat v_t} + \\epsilon} + \\lambda p_{t-1}\\Big),

with the schedule :math:`\\eta_t = \\eta\\, w(t)\\, c(t)`: a linear warm-up ``w`` over the first
``warmup_fraction`` of the run, then constant until ``decay_start`` (a fraction of the run), then a
cosine decay ``c`` to ``min_lr_mult · η`` at the last step. Adam is the special case
``nesterov = 0, λ = 0, β = (0.9, 0.999), ε = 1e-8`` with a constant schedule (:func:`adam_hparams`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = ["NAdamWHparams", "NAdamWState", "nadamw", "adam_hparams", "adam_lr_grid",
           "sample_nadamw_hparams", "stack_hparams", "hparams_row", "SEARCH_SPACE", "learning_rate_at"]

FIELDS = ("learning_rate", "b1", "b2", "eps", "weight_decay", "nesterov", "warmup_fraction",
          "decay_start", "min_lr_mult")


class NAdamWHparams(NamedTuple):
    """Hyper-parameters of :func:`nadamw` (scalars, or arrays with a leading configuration axis).

    Attributes:
        learning_rate: peak step size η.
        b1, b2: decay rates of the first and second moments.
        eps: added to √v̂ in the denominator.
        weight_decay: decoupled weight decay λ (multiplied by the scheduled learning rate, as optax).
        nesterov: 1.0 for Nesterov momentum (NAdamW), 0.0 for plain Adam momentum.
        warmup_fraction: fraction of the run spent in the linear warm-up, in [0, 1).
        decay_start: fraction of the run after which the cosine decay starts, in [0, 1].
        min_lr_mult: learning-rate multiplier at the end of the decay, in (0, 1].
    """

    learning_rate: jax.Array
    b1: jax.Array
    b2: jax.Array
    eps: jax.Array
    weight_decay: jax.Array
    nesterov: jax.Array
    warmup_fraction: jax.Array
    decay_start: jax.Array
    min_lr_mult: jax.Array


class NAdamWState(NamedTuple):
    """``count``: updates applied; ``mu``, ``nu``: first and second moments (shaped like the params)."""

    count: jax.Array
    mu: object
    nu: object


def learning_rate_at(h: NAdamWHparams, step, num_steps: int) -> jax.Array:
    """The scheduled learning rate η_t at 0-based ``step`` of a run of ``num_steps`` steps."""
    s = jnp.asarray(step, jnp.float32) / float(max(num_steps, 1))
    wf = jnp.asarray(h.warmup_fraction, jnp.float32)
    warm = jnp.where(wf > 0, jnp.minimum(1.0, (s + 1.0 / max(num_steps, 1)) / jnp.maximum(wf, 1e-12)), 1.0)
    d0 = jnp.maximum(jnp.asarray(h.decay_start, jnp.float32), wf)
    u = jnp.clip((s - d0) / jnp.maximum(1.0 - d0, 1e-12), 0.0, 1.0)
    cos = 0.5 * (1.0 + jnp.cos(jnp.pi * u))
    mult = h.min_lr_mult + (1.0 - h.min_lr_mult) * cos
    return h.learning_rate * warm * mult


def nadamw(h: NAdamWHparams, num_steps: int) -> optax.GradientTransformation:
    """NAdamW / Adam with array-valued hyper-parameters ``h`` and a warm-up/cosine schedule (module doc).

    Traceable in ``h``: ``jax.vmap`` over a stacked :class:`NAdamWHparams` trains many configurations
    in one program. ``num_steps`` (a Python int > 0) is the run length the schedule refers to.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps <= 0:
        raise ValueError(f"num_steps must be an integer > 0; got {num_steps!r}")
    num_steps = int(num_steps)

    def init_fn(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return NAdamWState(count=jnp.zeros((), jnp.int32), mu=zeros, nu=jax.tree.map(jnp.zeros_like, params))

    def update_fn(updates, state, params=None):
        if params is None:
            raise ValueError("params is required by nadamw (decoupled weight decay)")
        b1, b2 = h.b1, h.b2
        t = state.count + 1
        tf = t.astype(jnp.float32)
        mu = jax.tree.map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
        nu = jax.tree.map(lambda v, g: b2 * v + (1 - b2) * jnp.square(g), state.nu, updates)
        c1, c1_next, c2 = 1 - b1 ** tf, 1 - b1 ** (tf + 1), 1 - b2 ** tf
        lr = learning_rate_at(h, state.count, num_steps)

        def step(m, v, g, p):
            m_hat = jnp.where(h.nesterov > 0.5, b1 * m / c1_next + (1 - b1) * g / c1, m / c1)
            direction = m_hat / (jnp.sqrt(v / c2) + h.eps) + h.weight_decay * p
            return -lr * direction

        out = jax.tree.map(step, mu, nu, updates, params)
        return out, NAdamWState(count=t, mu=mu, nu=nu)

    return optax.GradientTransformation(init_fn, update_fn)


def _f32(x):
    return jnp.asarray(x, jnp.float32)


def adam_hparams(learning_rate) -> NAdamWHparams:
    """Adam (β = 0.9, 0.999, ε = 1e-8, no weight decay, constant learning rate) as :class:`NAdamWHparams`.

    ``learning_rate`` may be an array of rates: every field then has the same leading axis.
    """
    lr = _f32(learning_rate)
    full = lambda v: jnp.full(lr.shape, v, jnp.float32)  # noqa: E731
    return NAdamWHparams(learning_rate=lr, b1=full(0.9), b2=full(0.999), eps=full(1e-8),
                         weight_decay=full(0.0), nesterov=full(0.0), warmup_fraction=full(0.0),
                         decay_start=full(1.0), min_lr_mult=full(1.0))


def adam_lr_grid(low: float = 1e-5, high: float = 1e-1) -> np.ndarray:
    """Learning rates in half-decade steps ``1e-5, 3e-5, 1e-4, …`` from ``low`` to ``high`` (App. B.3).

    Half a decade is a factor √10 ≈ 3.16; like ``learned_optimization`` (``hparam_sets._LRS``) we use
    the rounded values ``1·10^k`` and ``3·10^k``. Both ends must be of that form.
    """
    vals = []
    for k in range(-12, 3):
        for m in (1.0, 3.0):
            v = m * 10.0 ** k
            if low * (1 - 1e-9) <= v <= high * (1 + 1e-9):
                vals.append(float(f"{v:.0e}"))
    if not vals or not math.isclose(vals[0], low, rel_tol=1e-6) or not math.isclose(vals[-1], high, rel_tol=1e-6):
        raise ValueError(f"low and high must be of the form 1e-k or 3e-k with low <= high; got low={low!r}, "
                         f"high={high!r}")
    return np.asarray(vals, np.float64)


# The random-search space for NAdamW. learned_optimization samples its 1000 configurations
# (optimizers/data/opt_list.json) from a search space over the same quantities; these ranges are ours.
SEARCH_SPACE = {
    "learning_rate": ("log-uniform", 1e-5, 1e-1),
    "one_minus_b1": ("log-uniform", 1e-3, 1.0),
    "one_minus_b2": ("log-uniform", 1e-4, 1.0),
    "eps": ("log-uniform", 1e-10, 1e-3),
    "weight_decay": ("log-uniform-or-zero", 1e-6, 1e-1),
    "nesterov": ("choice", 0.0, 1.0),
    "warmup_fraction": ("uniform-or-zero", 0.0, 0.1),
    "decay_start": ("uniform", 0.0, 1.0),
    "min_lr_mult": ("log-uniform", 1e-3, 1.0),
}


def sample_nadamw_hparams(key, num: int) -> NAdamWHparams:
    """``num`` random NAdamW configurations from :data:`SEARCH_SPACE` (a stacked :class:`NAdamWHparams`).

    Log-uniform draws for the scales; ``1 - β1`` and ``1 - β2`` log-uniform so that β near 1 is
    explored as finely as β near 0; weight decay and warm-up are zero with probability 1/2 (many
    tuned runs want none); Nesterov with probability 1/2. A pure function of ``key``.
    """
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num <= 0:
        raise ValueError(f"num must be an integer > 0; got {num!r}")
    ks = iter(jax.random.split(key, 16))

    def logu(lo, hi):
        return jnp.exp(jax.random.uniform(next(ks), (num,), minval=math.log(lo), maxval=math.log(hi)))

    def unif(lo, hi):
        return jax.random.uniform(next(ks), (num,), minval=lo, maxval=hi)

    def coin():
        return jax.random.bernoulli(next(ks), 0.5, (num,)).astype(jnp.float32)

    sp = SEARCH_SPACE
    b1 = 1.0 - logu(*sp["one_minus_b1"][1:])
    b2 = 1.0 - logu(*sp["one_minus_b2"][1:])
    return NAdamWHparams(
        learning_rate=logu(*sp["learning_rate"][1:]), b1=jnp.clip(b1, 0.0, 0.999), b2=jnp.clip(b2, 0.0, 0.9999),
        eps=logu(*sp["eps"][1:]), weight_decay=coin() * logu(*sp["weight_decay"][1:]), nesterov=coin(),
        warmup_fraction=coin() * unif(*sp["warmup_fraction"][1:]), decay_start=unif(*sp["decay_start"][1:]),
        min_lr_mult=logu(*sp["min_lr_mult"][1:]))


def stack_hparams(*hs: NAdamWHparams) -> NAdamWHparams:
    """Concatenate stacked configurations along their leading axis."""
    return NAdamWHparams(*[jnp.concatenate([jnp.atleast_1d(getattr(h, f)) for h in hs]) for f in FIELDS])


def hparams_row(h: NAdamWHparams, i: int) -> dict:
    """Configuration ``i`` of a stacked :class:`NAdamWHparams` as a dict of Python floats (for JSON)."""
    return {f: float(np.asarray(getattr(h, f))[i]) for f in FIELDS}
