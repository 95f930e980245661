"""A task trained with evolution-strategies gradient estimates instead of backpropagation.

:class:`ESWrappedTask` wraps any :class:`star.tasks.base.Task`. Its loss has the base task's value, but
its gradient (what ``jax.grad`` returns, hence what every optimizer sees) is the antithetic ES estimate

.. math::  \\hat g = \\frac{1}{n}\\sum_{i=1}^{n} \\frac{L(p + \\sigma\\varepsilon_i) - L(p - \\sigma\\varepsilon_i)}
           {2\\sigma}\\,\\varepsilon_i, \\qquad \\varepsilon_i \\sim N(0, I),

on the same batch as the loss, with ``n`` antithetic pairs and ``σ`` = 0.01 — the reference's
``ESWrapped_1pair_*`` tasks (``tasks/es_wrapper.py``: 1 pair, std 0.01). The trick: the loss returned is
``stop_gradient(L(p)) + ⟨stop_gradient(ĝ), p - stop_gradient(p)⟩``, whose value is ``L(p)`` and whose
gradient is exactly ``ĝ``. The perturbation key travels in the batch (``batch["es_key"]``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from star.tasks.base import Batch, Params

__all__ = ["ESWrappedTask", "es_gradient"]


def es_gradient(loss_fn, params: Params, key, num_pairs: int, std: float):
    """The antithetic ES estimate of ``∇ loss_fn(params)`` with ``num_pairs`` pairs (see the module)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)

    def one_pair(k):
        ks = jax.random.split(k, len(leaves))
        eps = [jax.random.normal(kk, p.shape, p.dtype) for kk, p in zip(ks, leaves)]
        eps = jax.tree_util.tree_unflatten(treedef, eps)
        plus = loss_fn(jax.tree.map(lambda p, e: p + std * e, params, eps))
        minus = loss_fn(jax.tree.map(lambda p, e: p - std * e, params, eps))
        return jax.tree.map(lambda e: (plus - minus) / (2.0 * std) * e, eps)

    grads = jax.lax.map(one_pair, jax.random.split(key, num_pairs))
    return jax.tree.map(lambda g: jnp.mean(g, axis=0), grads)


@struct.dataclass
class ESWrappedTask:
    """``base`` with its gradient replaced by an antithetic ES estimate (value unchanged)."""

    base: Any
    name: str = struct.field(pytree_node=False)
    num_pairs: int = struct.field(pytree_node=False, default=1)
    std: float = struct.field(pytree_node=False, default=0.01)
    description: str = struct.field(pytree_node=False, default="")
    reference: str = struct.field(pytree_node=False, default="")

    @property
    def num_classes(self) -> int:
        return self.base.num_classes

    @property
    def batch_size(self) -> int:
        return self.base.batch_size

    def init(self, key) -> Params:
        return self.base.init(key)

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        inner = batch["batch"]
        sg = jax.lax.stop_gradient
        p0 = sg(params)
        value = self.base.loss(p0, inner)
        g = es_gradient(lambda p: self.base.loss(p, inner), p0, batch["es_key"], self.num_pairs, self.std)
        surrogate = sum(jnp.vdot(sg(gi), pi - sg(pi)) for gi, pi in
                        zip(jax.tree_util.tree_leaves(g), jax.tree_util.tree_leaves(params)))
        return sg(value) + surrogate

    def sample_batch(self, key, split: str = "train") -> Batch:
        k_data, k_es = jax.random.split(key)
        return {"batch": self.base.sample_batch(k_data, split), "es_key": k_es}

    def normalizer(self, loss: jax.Array) -> jax.Array:
        return self.base.normalizer(loss)
