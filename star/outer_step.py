"""One outer step of meta-training: PES gradient → NaN guard → clipping → AdamW, and its settings and state.

Settings (App. B): AdamW with learning rate 1e-4; weight decay given as a *multiple of the
learning rate* — exactly ``optax.adamw``'s semantics,
:math:`\\theta \\leftarrow \\theta - \\eta(\\hat m/(\\sqrt{\\hat v}
+\\epsilon) + \\lambda\\theta)`, so with η = 1e-4 and λ ∈ [0.1, 0.5] θ shrinks by 1e-5–5e-5 per step (STAR's
"heavy weight decay" towards its nominal optimizer); gradient clipping at 1.0 (:class:`MetaTrainConfig`).

Clipping. The paper says only "gradient clipping 1.0". The reference wraps the outer optimizer in
``GradientClipOptimizer(grad_clip=1.0)``, which clips each gradient *element* to [−1, 1]
(``clip_mode="value"``, our default and the setting that corresponds to the paper's code);
``clip_mode="global_norm"`` rescales the whole gradient to norm ≤ 1 instead (``optax.clip_by_global_norm``).

NaN guard (reference ``gradient_learner``): non-finite meta-gradient entries are set to 0 and counted
before clipping; a diverging inner problem therefore cannot poison the meta-parameters.

State. The complete state — step, meta-parameters θ, the AdamW state, the PES state (inner states of all
``2N`` unrolls, iteration counters, accumulators ξ) and the PRNG key — is one pytree, :class:`MetaState`;
every outer step is a pure function of it (:func:`make_outer_step`), which is what makes a resumed run of
:func:`star.metatrain.meta_train` bit-identical to an uninterrupted one. The state's key stays a raw
``uint32[2]`` key (``jax.random.PRNGKey``) rather than a typed ``jax.random.key``: checkpoints store every
leaf as a numpy array, and the checkpoints of existing runs hold raw keys (both kinds give the same random
numbers).

Devices. The ``N`` inner problems are sharded over the devices of a 1-D mesh (axis ``"tasks"``,
:func:`make_mesh`) with ``NamedSharding``: the PES state is split along its leading (problem) axis, θ and
the optimizer state are replicated (:func:`state_shardings`), and the mean over problems in the estimator
becomes an all-reduce.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from star import _checks
from star import pes as pes_lib

PyTree = Any

PyTree = Any

CLIP_MODES = ("value", "global_norm", "none")


# ----------------------------------------------------------------------------------------------------
# configuration


@dataclasses.dataclass(frozen=True)
class MetaTrainConfig:
    """Settings of the outer loop and the estimator (defaults: the paper's, App. B).

    Attributes:
        outer_steps: number of outer (meta-gradient) steps, >= 1.
        num_tasks: ``N`` parallel inner problems, >= 1 (the paper's value is unknown; the reference's
            examples use 4–16).
        trunc_length: PES truncation ``K`` (paper 50), ``1 <= K <= horizon``.
        std: perturbation std σ (paper 0.01), > 0.
        lr: AdamW learning rate (paper 1e-4), > 0.
        weight_decay: AdamW weight decay as a multiple of ``lr`` (STAR: 0.1–0.5), >= 0.
        clip: clipping threshold (paper 1.0), > 0.
        clip_mode: ``"value"`` (element-wise, the reference), ``"global_norm"`` or ``"none"``.
        estimator: ``"pes"`` (paper) or ``"tes"`` (truncated ES, no accumulation).
        random_offset: desynchronise the problems with a random initial iteration (reference: on).
        seed: the PRNG seed of the whole run.
        checkpoint_every: write a checkpoint every this many outer steps, >= 1.
        keep_checkpoints: how many checkpoints to keep, >= 2 (so a corrupt newest one has a fallback).
        shard: shard the problems over all local devices when ``N`` is divisible by their number.
    """

    outer_steps: int = 200
    num_tasks: int = 8
    trunc_length: int = 50
    std: float = 0.01
    lr: float = 1e-4
    weight_decay: float = 0.0
    clip: float = 1.0
    clip_mode: str = "value"
    estimator: str = "pes"
    random_offset: bool = True
    seed: int = 0
    checkpoint_every: int = 10
    keep_checkpoints: int = 3
    shard: bool = True

    #: fields that may change when a run is resumed (they do not change the computation)
    RESUMABLE_CHANGES = ("outer_steps", "checkpoint_every", "keep_checkpoints", "shard")

    def __post_init__(self):
        pes_lib.check_settings(num_tasks=self.num_tasks, trunc_length=self.trunc_length, std=self.std,
                               estimator=self.estimator)
        _checks.integer("outer_steps", self.outer_steps)
        _checks.integer("checkpoint_every", self.checkpoint_every)
        _checks.integer("keep_checkpoints", self.keep_checkpoints, minimum=2)
        _checks.seed("seed", self.seed)
        _positive_float("lr", self.lr)
        _positive_float("clip", self.clip)
        _positive_float("weight_decay", self.weight_decay, allow_zero=True)
        if self.clip_mode not in CLIP_MODES:
            raise ValueError(f"clip_mode must be one of {CLIP_MODES}; got {self.clip_mode!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _positive_float(name, value, allow_zero=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if isinstance(value, bool) or not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite float {bound}; got {value!r}")


def gradient_clipping(clip_mode: str, clip: float) -> optax.GradientTransformation:
    """``"value"``: clip each element to [−clip, clip] (the reference's ``GradientClipOptimizer``, i.e. the
    paper's "gradient clipping 1.0"); ``"global_norm"``: rescale to global norm <= clip; ``"none"``."""
    if clip_mode == "value":
        return optax.clip(clip)
    if clip_mode == "global_norm":
        return optax.clip_by_global_norm(clip)
    if clip_mode == "none":
        return optax.identity()
    raise ValueError(f"clip_mode must be one of {CLIP_MODES}; got {clip_mode!r}")


def outer_optimizer(cfg: MetaTrainConfig) -> optax.GradientTransformation:
    """Clipping (:func:`gradient_clipping`) then AdamW with weight decay as a multiple of the learning rate."""
    return optax.chain(gradient_clipping(cfg.clip_mode, cfg.clip),
                       optax.adamw(cfg.lr, weight_decay=cfg.weight_decay))


def zero_nonfinite(grad: PyTree) -> tuple[PyTree, jax.Array]:
    """Set NaN/±inf entries of the meta-gradient to 0; return it and the number of such entries."""
    count = sum(jnp.sum(~jnp.isfinite(g)) for g in jax.tree.leaves(grad))
    return jax.tree.map(lambda g: jnp.where(jnp.isfinite(g), g, 0.0), grad), jnp.asarray(count, jnp.int32)


# ----------------------------------------------------------------------------------------------------
# state, sharding and the outer step


class MetaState(NamedTuple):
    """The complete meta-training state (everything a bit-identical resume needs)."""

    step: jax.Array
    theta: PyTree
    opt_state: PyTree
    pes_state: pes_lib.PESState
    key: jax.Array


def canonical(tree: PyTree) -> PyTree:
    """``tree`` with weak types stripped, so a fresh state and one restored from disk trace (and compile)
    identically."""
    return jax.tree.map(lambda x: jnp.asarray(np.asarray(x)), tree)


def make_mesh(devices=None) -> Mesh:
    """A 1-D device mesh with axis ``"tasks"`` (default: all local devices)."""
    devices = jax.local_devices() if devices is None else list(devices)
    return Mesh(np.asarray(devices), ("tasks",))


def state_shardings(state: MetaState, mesh: Mesh) -> MetaState:
    """``NamedSharding`` s for a :class:`MetaState`: PES state split along the problem axis, rest replicated."""
    rep = NamedSharding(mesh, PartitionSpec())
    split = NamedSharding(mesh, PartitionSpec("tasks"))
    return MetaState(
        step=rep,
        theta=jax.tree.map(lambda _: rep, state.theta),
        opt_state=jax.tree.map(lambda _: rep, state.opt_state),
        pes_state=jax.tree.map(lambda _: split, state.pes_state),
        key=rep,
    )


def shard_pes_state(pes_state: pes_lib.PESState, mesh: Mesh) -> pes_lib.PESState:
    """Place a PES state on ``mesh``, split along the leading (problem) axis."""
    split = NamedSharding(mesh, PartitionSpec("tasks"))
    return jax.device_put(pes_state, jax.tree.map(lambda _: split, pes_state))


def _estimator(problem, cfg: MetaTrainConfig) -> pes_lib.TruncatedPES:
    return pes_lib.TruncatedPES(problem, num_tasks=cfg.num_tasks, trunc_length=cfg.trunc_length, std=cfg.std,
                                estimator=cfg.estimator, random_offset=cfg.random_offset)


def init_meta_state(problem, theta0: PyTree, cfg: MetaTrainConfig) -> MetaState:
    """The initial :class:`MetaState` for ``seed`` (deterministic)."""
    est = _estimator(problem, cfg)
    key = jax.random.PRNGKey(cfg.seed)
    k_pes, k_loop = jax.random.split(key)
    theta0 = jax.tree.map(lambda x: jnp.asarray(x, jnp.result_type(x)), theta0)
    pes_state = est.init(theta0, k_pes)
    opt_state = outer_optimizer(cfg).init(theta0)
    return canonical(MetaState(jnp.zeros((), jnp.int32), theta0, opt_state, pes_state, k_loop))


_STEP_FIELDS = ("num_tasks", "trunc_length", "std", "lr", "weight_decay", "clip", "clip_mode", "estimator")


def make_outer_step(cfg: MetaTrainConfig, mesh: Mesh | None = None, state_example: MetaState | None = None) -> Callable:
    """A jitted ``(problem, state) -> (state, metrics)``: one PES estimate, NaN guard, clipping, AdamW.

    With a ``mesh`` (and an example state for the pytree structure) the state keeps the shardings of
    :func:`state_shardings` on input and output. Compiled functions are cached per setting, so repeated
    runs with the same settings (tests, sweeps over seeds) compile once.
    """
    key = tuple(getattr(cfg, f) for f in _STEP_FIELDS)
    if mesh is None:
        return _cached_outer_step(key, None, None)
    if state_example is None:
        raise ValueError("state_example is required with a mesh (it gives the pytree structure)")
    return _cached_outer_step(key, mesh, jax.tree.structure(state_example))


@functools.lru_cache(maxsize=32)
def _cached_outer_step(key, mesh, treedef):
    cfg = MetaTrainConfig(**dict(zip(_STEP_FIELDS, key)))
    opt = outer_optimizer(cfg)

    def outer_step(problem, state: MetaState):
        key, k_grad = jax.random.split(state.key)
        grad, pes_state, out = pes_lib.estimate_gradient(problem, state.theta, state.pes_state, k_grad,
                                                         std=cfg.std, trunc_length=cfg.trunc_length,
                                                         estimator=cfg.estimator)
        grad, nan_count = zero_nonfinite(grad)
        updates, opt_state = opt.update(grad, state.opt_state, state.theta)
        theta = optax.apply_updates(state.theta, updates)
        metrics = {
            "meta_loss": out.loss,
            "grad_norm": optax.tree.norm(grad),
            "update_norm": optax.tree.norm(updates),
            "theta_norm": optax.tree.norm(theta),
            "nan_count": nan_count,
            "nonfinite_problems": out.nonfinite_problems,
            "diverged_losses": out.diverged,
            "resets": jnp.sum(out.reset),
        }
        return MetaState(state.step + 1, theta, opt_state, pes_state, key), metrics

    if mesh is None:
        return jax.jit(outer_step)
    shardings = state_shardings(jax.tree.unflatten(treedef, [0] * treedef.num_leaves), mesh)
    rep = NamedSharding(mesh, PartitionSpec())
    return jax.jit(outer_step, in_shardings=(None, shardings), out_shardings=(shardings, rep))

