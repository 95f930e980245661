"""The Task protocol: what an inner problem provides to inner training and to PES.

A task is a pytree (its data arrays are leaves, its description is static), so pass it as an
argument of ``jax.jit``-ed functions and ``jax.vmap`` over keys with ``in_axes=None`` for the task.
Every method is a pure function of its inputs; randomness comes only from the keys given.
"""

from __future__ import annotations

import math
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp

Params = Any
Batch = Any

__all__ = ["Task", "Params", "Batch", "meta_loss_max", "clip_normalizer", "clip_loss"]


@runtime_checkable
class Task(Protocol):
    """An inner problem.

    Attributes:
        name: registry name, e.g. ``"fmnist_mlp"``.
        num_classes: number of classes (sets the meta-loss ceiling; the book's appendix).
        batch_size: training batch size.
    """

    name: str
    num_classes: int
    batch_size: int

    def init(self, key) -> Params:
        """Initial parameters drawn from ``key``."""

    def loss(self, params: Params, batch: Batch) -> jax.Array:
        """Scalar training loss of ``params`` on ``batch`` (mean softmax cross-entropy)."""

    def sample_batch(self, key, split: str = "train") -> Batch:
        """A batch of ``split`` as a pure function of ``key`` (jit/vmap-friendly)."""

    def normalizer(self, loss: jax.Array) -> jax.Array:
        """Map a loss to the meta-loss scale used by PES (clipped, NaN/inf → the maximum)."""


def meta_loss_max(num_classes: int) -> float:
    """The meta-loss ceiling ``1.5 · ln(#classes)`` of appendix "Outer loop and task losses" (3.454 for 10 classes)."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}")
    return 1.5 * math.log(num_classes)


def clip_normalizer(loss: jax.Array, num_classes: int) -> jax.Array:
    """PES meta-loss normalizer (appendix "Outer loop and task losses"): clip to ``[0, 1.5 ln C]``, NaN, ±inf → max.

    A diverged inner run (NaN or infinite loss) therefore counts as the worst admissible loss
    instead of poisoning the meta-gradient. The reference image-MLP normalizer clips first and
    then replaces NaN, which sends ``-inf`` to 0; a cross-entropy is never negative, so the two
    agree on every loss a classifier can produce.
    """
    return clip_loss(loss, meta_loss_max(num_classes))


def clip_loss(loss: jax.Array, top: float) -> jax.Array:
    """``loss`` clipped to ``[0, top]``, with NaN and ±inf sent to ``top`` (a diverged run is the worst loss)."""
    loss = jnp.asarray(loss)
    return jnp.where(jnp.isfinite(loss), jnp.clip(loss, 0.0, top), jnp.asarray(top, loss.dtype))
