"""The unperturbed meta-objective: the quantity PES estimates the gradient of, evaluated at θ itself.

It belongs to the outer loop's definition (App. B: the mean training loss over all inner steps, each loss
passed through the task's normaliser); ``python -m star meta-curve`` evaluates it on the θ snapshots of a run
(:func:`star.evaluate.meta_curve`).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from star import _checks
from star import pes as pes_lib

PyTree = Any


@functools.lru_cache(maxsize=16)
def _jitted_objective(num_seeds: int, num_steps: int):
    def run(problem, theta, key):
        def one(k):
            k_init, k_steps = jax.random.split(k)
            inner = problem.init(theta, k_init)

            def body(inner, t):
                inner, loss, valid = problem.step(theta, inner, jax.random.fold_in(k_steps, t))
                return inner, (loss, valid)

            _, (loss, valid) = jax.lax.scan(body, inner, jnp.arange(num_steps))
            validf = valid.astype(jnp.float32)
            return jnp.sum(jnp.where(valid, loss, 0.0)) / jnp.maximum(jnp.sum(validf), 1.0)

        return jax.vmap(one)(jax.random.split(key, num_seeds))

    return jax.jit(run)


def meta_objective(problem, theta: PyTree, key: jax.Array, *, num_seeds: int = 4,
                   num_steps: int | None = None) -> np.ndarray:
    """The meta-objective at θ itself, without perturbations: the mean per-step meta-loss of fresh episodes.

    This is the quantity PES estimates the gradient of (App. B: the mean training loss over all inner
    steps, each loss passed through the task's normaliser), evaluated at θ rather than smoothed over
    θ + ε. ``num_seeds`` fresh inner problems are unrolled for ``num_steps`` steps (default: the problem's
    horizon, the full episode) with keys derived only from ``key``, so evaluating several θ with the same
    key uses common random numbers (the same initialisations and batches): differences between θ are
    then not sampling noise of the data. One compilation serves every θ of the same structure.

    Returns:
        ``[num_seeds]`` float array: each episode's mean meta-loss.
    """
    pes_lib.check_problem(problem)
    num_seeds = _checks.integer("num_seeds", num_seeds)
    num_steps = problem.horizon if num_steps is None else _checks.integer("num_steps", num_steps)
    return np.asarray(_jitted_objective(num_seeds, num_steps)(problem, theta, key))

