"""Many inner trainings as one compiled program: configurations and seeds ``jax.vmap``-ed.

Tuning a baseline means training a task once per (configuration, seed) pair. :func:`train_batched`
runs ``R`` such runs side by side: the optimizer is built from a per-run pytree of hyper-parameters
(NAdamW's learning rate, β's, ...; or a learned optimizer's meta-parameters θ), every run has its own
PRNG key, and one ``lax.scan`` over a chunk of steps advances all of them at once. Run ``r`` follows
exactly the steps of :func:`star.train.train` with key ``keys[r]`` and the optimizer built from row
``r`` of the hyper-parameters (same initialization, same batches, same updates), so a batched tuning
and a loop over :func:`star.train.train` calls give the same curves — only the batched one compiles
once and keeps both cores busy.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.std import tqdm

from star import _checks
from star.train import _ByIdentity, _check_task, batch_at, train_keys, train_step

__all__ = ["BatchedResult", "train_batched"]


class BatchedResult(NamedTuple):
    """``losses``: ``[R, num_steps]`` float32 training losses (each step's batch, before its update);
    ``wall_time``: seconds, compilation included."""

    losses: np.ndarray
    wall_time: float


@functools.partial(jax.jit, static_argnums=(0, 6))
def _chunk(static_make, task, hparams, params, opt_state, data_keys, chunk_size, start):
    make = static_make.obj

    def one_run(h, p, s, data_key):
        opt = optax.with_extra_args_support(make(h))

        def body(carry, t):
            p, s = carry
            p, s, loss = train_step(task, opt, p, s, batch_at(task, data_key, t))
            return (p, s), loss.astype(jnp.float32)

        steps = start + jnp.arange(chunk_size, dtype=jnp.int32)
        (p, s), losses = jax.lax.scan(body, (p, s), steps)
        return p, s, losses

    return jax.vmap(one_run)(hparams, params, opt_state, data_keys)


@functools.partial(jax.jit, static_argnums=(0,))
def _init(static_make, task, hparams, keys):
    make = static_make.obj

    def one(h, key):
        init_key, data_key = train_keys(key)
        p = task.init(init_key)
        return p, optax.with_extra_args_support(make(h)).init(p), data_key

    return jax.vmap(one)(hparams, keys)


def train_batched(task, make_optimizer: Callable[[Any], Any], hparams, keys, num_steps: int, *,
                  chunk_size: int = 100, progress: bool = True, desc: str | None = None) -> BatchedResult:
    """Train ``R`` runs of ``task`` at once; run ``r`` uses ``make_optimizer(row r of hparams)`` and ``keys[r]``.

    Args:
        task: a :class:`star.tasks.Task` (passed to the compiled program as an argument).
        make_optimizer: ``hparams_row -> optax.GradientTransformation`` (traceable in its argument),
            e.g. ``lambda h: star.baselines.nadamw(h, num_steps)``. The compiled program is cached per
            function object: reuse the same object to reuse the compilation.
        hparams: a pytree whose leaves all have the leading run axis ``R``.
        keys: ``[R]`` PRNG keys (``jax.random.split(key, R)``); each is split as :func:`star.train.train`
            splits its key (initialization, then batches).
        num_steps: steps per run; must be a multiple of ``chunk_size`` when larger than it.
        chunk_size: steps per compiled ``lax.scan`` call (the progress bar advances between calls).

    Raises:
        ValueError: non-positive ``num_steps``/``chunk_size``, ``num_steps`` not a multiple of the
            chunk, or ``hparams`` leaves and ``keys`` of different leading sizes.
    """
    _check_task(task)
    _checks.integer("num_steps", num_steps)
    _checks.integer("chunk_size", chunk_size)
    chunk = min(chunk_size, num_steps)
    if num_steps % chunk:
        raise ValueError(f"num_steps must be a multiple of chunk_size={chunk}; got {num_steps}")
    keys = jnp.asarray(keys)
    if keys.ndim != 1 or not jnp.issubdtype(keys.dtype, jax.dtypes.prng_key):
        raise ValueError(f"keys must be a 1-D array of PRNG keys (jax.random.split(key, R)); got "
                         f"dtype {keys.dtype}, shape {tuple(keys.shape)}")
    sizes = {int(np.shape(x)[0]) for x in jax.tree.leaves(hparams)} | {int(keys.shape[0])}
    if len(sizes) != 1:
        raise ValueError(f"hparams leaves and keys must share the leading run axis; got sizes {sorted(sizes)}")
    start_time = time.perf_counter()
    static = _ByIdentity(make_optimizer)
    params, opt_state, data_keys = _init(static, task, hparams, keys)
    curves = []
    with tqdm(total=num_steps, disable=not progress, desc=desc or getattr(task, "name", None),
              leave=False) as bar:
        for lo in range(0, num_steps, chunk):
            params, opt_state, losses = _chunk(static, task, hparams, params, opt_state, data_keys, chunk,
                                               jnp.int32(lo))
            curves.append(np.asarray(losses))
            bar.update(chunk)
    return BatchedResult(np.concatenate(curves, axis=1).astype(np.float32), time.perf_counter() - start_time)
