"""Inner training: run an optax optimizer (Adam, STAR, …) on a task and record the loss curve.

One inner step (the unit that PES unrolls, appendix "PES in the code") is

.. math::  \\ell_t = L(p_t; B_t), \\quad g_t = \\nabla_p L(p_t; B_t), \\quad
           (u_t, s_{t+1}) = \\mathrm{opt.update}(g_t, s_t, p_t, \\text{value}=\\ell_t), \\quad
           p_{t+1} = p_t + u_t,

where the batch ``B_t`` is drawn from ``fold_in(data_key, t)``. The curve reports ``ℓ_t``, the
training loss on the step's batch *before* the update, as the reference's inner-training curves and
the paper's meta-objective (the mean training loss over the inner steps, App. B) do.

Training runs as jitted chunks of ``lax.scan`` so that a progress bar can advance between chunks;
results do not depend on the chunk size, and one compilation serves runs of any length.
"""

from __future__ import annotations

import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.std import tqdm

from star import _checks
from star.image_data import to_float
from star.tasks.base import Task

__all__ = ["TrainResult", "train_keys", "batch_at", "train_step", "train", "evaluate"]


class TrainResult(NamedTuple):
    """What :func:`train` returns.

    Attributes:
        losses: ``[num_steps]`` float32, the training loss of each step's batch before its update.
        params: the parameters after ``num_steps`` updates.
        opt_state: the optimizer state after ``num_steps`` updates.
        wall_time: seconds, compilation included.
    """

    losses: np.ndarray
    params: Any
    opt_state: Any
    wall_time: float


def _check_task(task, name: str = "task"):
    for attr in ("init", "loss", "sample_batch", "normalizer"):
        if not callable(getattr(task, attr, None)):
            raise ValueError(f"{name} must implement the Task protocol (star.tasks.Task); "
                             f"{type(task).__name__} has no method {attr!r}. Use "
                             f"star.tasks.get_task(name) for a registered task.")


def _check_params(task, params, name: str = "params") -> None:
    """``params`` must have the structure, shapes and dtypes that ``task.init`` gives (else flax fails deep
    inside the model with a scope error that names neither)."""
    want = jax.eval_shape(task.init, jax.random.key(0))
    w_leaves, w_def = jax.tree_util.tree_flatten_with_path(want)
    try:
        g_leaves, g_def = jax.tree_util.tree_flatten_with_path(params)
    except Exception:  # pragma: no cover - not a pytree
        g_def = None
    label = getattr(task, "name", type(task).__name__)
    if g_def != w_def:
        have = sorted(jax.tree_util.keystr(p) for p, _ in (g_leaves if g_def is not None else []))
        need = sorted(jax.tree_util.keystr(p) for p, _ in w_leaves)
        raise ValueError(f"{name} do not fit task {label!r}: its parameters are {need[:4]}"
                         f"{'...' if len(need) > 4 else ''}; got {have[:4]}{'...' if len(have) > 4 else ''}")
    for (path, w), (_, g) in zip(w_leaves, g_leaves):
        if tuple(np.shape(g)) != tuple(w.shape):
            raise ValueError(f"{name} do not fit task {label!r}: {name}{jax.tree_util.keystr(path)} has shape "
                             f"{tuple(np.shape(g))}, the task's {tuple(w.shape)}")


def _check_nonempty(split, name: str) -> int:
    n = int(split.labels.shape[0])
    if n == 0:
        raise ValueError(f"split {name!r} has no examples; evaluation needs at least one")
    return n


def _as_extra_args(optimizer):
    if not (callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))):
        raise ValueError(f"optimizer must be an optax GradientTransformation (with init and update); "
                         f"got {type(optimizer).__name__}")
    return optax.with_extra_args_support(optimizer)


def train_keys(key):
    """``(init_key, data_key)``: how :func:`train` splits its key (parameters, then batches)."""
    _checks.key("key", key)
    init_key, data_key = jax.random.split(key)
    return init_key, data_key


def batch_at(task: Task, data_key, step):
    """The batch that :func:`train` uses at ``step``: ``task.sample_batch(fold_in(data_key, step))``."""
    return task.sample_batch(jax.random.fold_in(data_key, step))


def train_step(task: Task, optimizer, params, opt_state, batch):
    """One inner step on ``batch``: returns ``(params, opt_state, loss)``.

    The loss is passed to the optimizer as ``value=`` (optax's name for it; STAR and other learned
    optimizers read it, plain optax optimizers ignore it). Pure and jit/vmap-friendly.
    """
    optimizer = optax.with_extra_args_support(optimizer)
    loss, grads = jax.value_and_grad(task.loss)(params, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params, value=loss)
    return optax.apply_updates(params, updates), opt_state, loss


class _ByIdentity:
    """Hash and compare an object by identity, so that it can be a static jit argument."""

    def __init__(self, obj):
        self.obj = obj

    def __hash__(self):
        return id(self.obj)

    def __eq__(self, other):
        return isinstance(other, _ByIdentity) and other.obj is self.obj


@functools.partial(jax.jit, static_argnums=(0, 7))
def _run_chunk(static_optimizer, task, meta_params, params, opt_state, data_key, start, chunk_size,
               num_steps):
    """Steps ``start, …, start + chunk_size - 1`` under one ``lax.scan``; steps ``>= num_steps`` are
    skipped with ``lax.cond`` (their losses are NaN and dropped by the caller).

    Only the chunk size is baked into the program, not ``start`` or ``num_steps``, so a run of any
    length — and its last, partial chunk — reuses one compilation. The optimizer (or optimizer
    factory) is static, keyed by identity: reusing the same object on a task of the same structure
    reuses the compiled chunk. ``meta_params`` is traced, so a factory evaluated at new
    meta-parameters (another learning rate, another θ) does not recompile either.
    """
    make = static_optimizer.obj
    optimizer = make if meta_params is None else make(meta_params)

    def step(carry, t):
        params, opt_state = carry
        batch = batch_at(task, data_key, t)
        params, opt_state, loss = train_step(task, optimizer, params, opt_state, batch)
        return (params, opt_state), loss

    def skip(carry, t):
        return carry, jnp.full((), jnp.nan, jnp.float32)

    def body(carry, t):
        (params, opt_state), loss = jax.lax.cond(t < num_steps, step, skip, carry, t)
        return (params, opt_state), loss.astype(jnp.float32)

    steps = start + jnp.arange(chunk_size, dtype=jnp.int32)
    (params, opt_state), losses = jax.lax.scan(body, (params, opt_state), steps)
    return params, opt_state, losses


def train(task: Task, optimizer, num_steps: int, key, *, meta_params=None, params=None,
          chunk_size: int = 100, progress: bool = True, desc: str | None = None) -> TrainResult:
    """Train ``task`` with ``optimizer`` for ``num_steps`` steps; return the loss curve.

    Args:
        task: a :class:`star.tasks.Task`, e.g. ``get_task("fmnist_mlp")``.
        optimizer: any optax ``GradientTransformation`` or ``GradientTransformationExtraArgs``;
            or, when ``meta_params`` is given, a function ``meta_params -> GradientTransformation``
            (e.g. ``lambda lr: optax.adam(lr)`` or ``lambda th: star_optimizer(cfg, th, n)``).
        num_steps: number of inner steps (≥ 1).
        key: PRNG key; it is split into the initialization key and the data key, so the same key
            gives the same curve bit for bit.
        meta_params: arguments of the optimizer factory (a pytree of arrays). They are traced, so
            calling ``train`` again with the same factory object and new ``meta_params`` of the same
            shapes reuses the compiled program (compiling a STAR step takes seconds).
        params: start from these parameters instead of ``task.init``.
        chunk_size: steps per jitted ``lax.scan`` (the progress bar advances once per chunk). The
            compiled program depends on it, not on ``num_steps``: keep it fixed to reuse the
            compilation across runs of different lengths.
        progress: show a tqdm progress bar on stderr.
        desc: label of the progress bar.

    Raises:
        ValueError: ``num_steps`` or ``chunk_size`` not a positive integer, a bad ``key``, or a
            ``task``/``optimizer`` that does not implement the protocol.
    """
    _check_task(task)
    if meta_params is not None:
        if not callable(optimizer) or hasattr(optimizer, "update"):
            raise ValueError("optimizer must be a function meta_params -> GradientTransformation when "
                             f"meta_params is given; got {type(optimizer).__name__}")
        meta_params = jax.tree.map(jnp.asarray, meta_params)
        opt = _as_extra_args(optimizer(meta_params))
    else:
        opt = _as_extra_args(optimizer)
    _checks.integer("num_steps", num_steps)
    _checks.integer("chunk_size", chunk_size)
    _checks.key("key", key)
    start = time.perf_counter()
    init_key, data_key = train_keys(key)
    if params is None:
        params = task.init(init_key)
    else:
        _check_params(task, params)
    opt_state = opt.init(params)

    curve = []
    static = _ByIdentity(optimizer)
    with tqdm(total=num_steps, disable=not progress, desc=desc or getattr(task, "name", None),
              leave=False) as bar:
        for lo in range(0, num_steps, chunk_size):
            params, opt_state, losses = _run_chunk(static, task, meta_params, params, opt_state,
                                                   data_key, jnp.int32(lo), chunk_size,
                                                   jnp.int32(num_steps))
            curve.append(np.asarray(losses)[: min(chunk_size, num_steps - lo)])
            bar.update(int(curve[-1].size))
            bar.set_postfix(loss=f"{float(curve[-1][-1]):.4g}")
    losses = np.concatenate(curve).astype(np.float32)
    return TrainResult(losses, params, opt_state, time.perf_counter() - start)


@functools.partial(jax.jit, static_argnums=4)
def _eval_totals(task, params, images, labels, chunk_size):
    """Summed cross-entropy and number of correct predictions over all of ``images``, in chunks."""
    n = labels.shape[0]
    num_chunks = -(-n // chunk_size)
    idx = jnp.arange(num_chunks * chunk_size).reshape(num_chunks, chunk_size)
    mask = (idx < n).astype(jnp.float32)
    idx = jnp.minimum(idx, n - 1)

    def chunk(args):
        i, m = args
        ce, correct = task.loss_and_accuracy(params, {"image": to_float(images[i]), "label": labels[i]})
        return jnp.sum(jnp.where(m > 0, ce, 0.0)), jnp.sum(correct * m)

    ce, correct = jax.lax.map(chunk, (idx, mask))
    return jnp.sum(ce), jnp.sum(correct)


def evaluate(task: Task, params, split: str = "test", *, chunk_size: int = 1000) -> dict:
    """Mean cross-entropy and accuracy of ``params`` over the whole ``split`` (default ``test``).

    Returns ``{"loss": float, "accuracy": float, "num_examples": int}``. The split is processed
    in jitted chunks of ``chunk_size`` examples; a diverged model gives ``loss = nan``/``inf``.

    Raises:
        ValueError: an unknown or empty split, or ``params`` that do not fit ``task``.
    """
    _check_task(task)
    _checks.integer("chunk_size", chunk_size)
    data = task.data.split(split)  # ValueError for an unknown split
    n = _check_nonempty(data, split)
    _check_params(task, params)
    ce, correct = _eval_totals(task, params, data.images, data.labels, chunk_size)
    return {"loss": float(ce) / n, "accuracy": float(correct) / n, "num_examples": n}
