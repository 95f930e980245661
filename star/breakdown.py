r"""Why PES at the paper's σ breaks STAR on the paper's Fashion-MNIST MLP: the mechanism, measured.

STAR's blackbox term is :math:`s\,d\,e^{\beta_1 a}\,(v+\epsilon)^{-1/2}` (App. B.2), with :math:`s = 10^{-3}`,
:math:`\epsilon = 10^{-6}` and :math:`v` the *raw* (not bias-corrected) second-moment accumulator, which
starts at zero and after one gradient is :math:`10^{-3}g^2`. Wherever :math:`v \ll \epsilon` the preconditioner
is :math:`\epsilon^{-1/2} = 1000`, so the step is :math:`s\cdot 1000\cdot d = d`: the direction head's output
itself, whatever the gradient. A PES perturbation of size σ of the output layer gives :math:`d = O(\sigma)`,
and the output *bias* of head d gives the same :math:`d` to every weight of every tensor. On an MLP whose
inputs are non-negative pixels, a drift :math:`\delta` of every first-layer weight shifts every first-layer
pre-activation by :math:`\delta\sum_i x_i` (about 220 per image on 28×28 Fashion-MNIST): within a few steps
the first ReLU layer is dead on the whole batch and training stops at :math:`\ln 10`, or, for the other sign,
the activations blow up.

This module holds the measurements (used by ``experiments/indist_breakdown.py``, which stores them under
``results/metatrain/breakdown/``, and by the in-distribution chapter):

* :func:`train_many` — many STAR-family optimizers (a stack of θ) train one task from the same
  initialisation on the same batches (common random numbers), as one vectorised scan;
* :func:`perturb` — θ + ε with ε ~ N(0, σ²) on chosen groups of meta-parameters (:data:`GROUPS`);
* :func:`with_direction_bias` — θ with the output bias of head d set to given values;
* :func:`classify` — ``ok`` / ``degraded`` / ``dead`` (stuck at ln C) / ``diverged`` from a loss curve;
* :func:`step_anatomy` — per inner step and layer: the blackbox and nominal parts of the update, the
  fraction of weights whose preconditioner is ε-dominated, the fraction of dead first-layer units;
* :func:`gradient_profile` — per layer at initialisation: how many gradient entries are exactly zero
  (pixels that are zero on the whole batch), below :math:`\sqrt{10^{-3}}` (ε-dominated at step 1 without
  bias correction) and below :math:`10^{-3}` (ε-dominated even with it), and the inputs' L1 norm.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from star.optim import StarConfig, star_optimizer
from star.optim.features import RMS_EPS
from star.optim.star import apply_star, effective_decays
from star.train import batch_at, train_keys, train_step

__all__ = ["GROUPS", "train_many", "perturb", "with_direction_bias", "classify", "step_anatomy",
           "gradient_profile", "nominal_theta", "OUTCOMES", "INTERVENTIONS", "train_many_intervened",
           "second_moment_profile"]

OUTCOMES = ("ok", "degraded", "dead", "diverged")


def _in_group(group: str, path: tuple) -> Callable:
    """Mask builder: for a meta-parameter leaf at ``path``, the elements the group perturbs (or None)."""
    name = "/".join(str(getattr(k, "key", k)) for k in path)
    out_w, out_b = name == "mlp/w2", name == "mlp/b2"
    if group == "all":
        return lambda x: jnp.ones_like(x)
    if group == "output_layer":
        return (lambda x: jnp.ones_like(x)) if (out_w or out_b) else None
    if group == "output_bias":
        return (lambda x: jnp.ones_like(x)) if out_b else None
    if group == "head_d":  # the direction head: column 0 of the output layer
        return (lambda x: jnp.zeros_like(x).at[..., 0].set(1.0)) if (out_w or out_b) else None
    if group == "heads_abc":  # the magnitude and controller heads
        return (lambda x: jnp.ones_like(x).at[..., 0].set(0.0)) if (out_w or out_b) else None
    if group == "hidden_layers":
        return (lambda x: jnp.ones_like(x)) if name.startswith("mlp/") and not (out_w or out_b) else None
    if group == "decay_logits":
        return (lambda x: jnp.ones_like(x)) if name.startswith("decay_logits/") else None
    raise ValueError(f"group must be one of {GROUPS}; got {group!r}")


#: Groups of meta-parameters :func:`perturb` can restrict a perturbation to (MLP 39-4-4-n: w2/b2 = output).
GROUPS = ("all", "output_layer", "output_bias", "head_d", "heads_abc", "hidden_layers", "decay_logits")


def perturb(theta: Mapping, sigma: float, seeds: Sequence[int], group: str = "all") -> dict:
    """A stack of ``len(seeds)`` meta-parameter sets θ + ε, ε ~ N(0, σ²) on the elements of ``group`` only.

    The noise of seed ``s`` is drawn from ``jax.random.key(s)`` leaf by leaf in tree order, so the same seed
    gives the same ε on the elements two groups share.

    Raises:
        ValueError: unknown group, ``sigma`` not finite and >= 0, or no seeds.
    """
    if group not in GROUPS:
        raise ValueError(f"group must be one of {GROUPS}; got {group!r}")
    if not isinstance(sigma, (int, float)) or not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0; got {sigma!r}")
    if len(seeds) == 0:
        raise ValueError("seeds must name at least one perturbation seed")
    flat, treedef = jax.tree_util.tree_flatten_with_path(theta)
    stacks = []
    for s in seeds:
        keys = jax.random.split(jax.random.key(int(s)), len(flat))
        leaves = []
        for (path, x), k in zip(flat, keys):
            mask = _in_group(group, path)
            eps = sigma * jax.random.normal(k, jnp.shape(x), jnp.float32)
            leaves.append(x if mask is None else x + mask(x) * eps)
        stacks.append(jax.tree_util.tree_unflatten(treedef, leaves))
    return jax.tree.map(lambda *xs: jnp.stack(xs), *stacks)


def with_direction_bias(theta: Mapping, values: Sequence[float]) -> dict:
    """A stack of θ with the output bias of the direction head d (``mlp/b2[0]``) set to each of ``values``."""
    vals = jnp.asarray(values, jnp.float32)
    stack = jax.tree.map(lambda x: jnp.broadcast_to(x, (len(vals),) + jnp.shape(x)), theta)
    stack["mlp"] = dict(stack["mlp"], b2=stack["mlp"]["b2"].at[:, 0].set(vals))
    return stack


@functools.lru_cache(maxsize=16)
def _many_program(cfg: StarConfig, num_steps: int, horizon: int):
    def run(task, thetas, params0, data_key):
        num = jax.tree.leaves(thetas)[0].shape[0]
        opt = lambda th: star_optimizer(cfg, th, horizon)  # noqa: E731
        states = jax.vmap(lambda th: opt(th).init(params0))(thetas)
        params = jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + x.shape), params0)

        def body(carry, t):
            p, s = carry
            batch = batch_at(task, data_key, t)
            p, s, loss = jax.vmap(lambda th, p, s: train_step(task, opt(th), p, s, batch))(thetas, p, s)
            return (p, s), loss

        _, losses = jax.lax.scan(body, (params, states), jnp.arange(num_steps))
        return losses.T

    return jax.jit(run)


def train_many(task, cfg: StarConfig, thetas: Mapping, key, num_steps: int, *, horizon: int = 2000) -> np.ndarray:
    """Train ``task`` with the STAR-family optimizer ``cfg`` at each θ of the stack ``thetas`` (leading axis).

    Every run starts from the same parameters and sees the same batches (drawn from ``key`` as
    :func:`star.train.train` does), so differences between runs are the optimizers' alone.

    Returns:
        ``[num_thetas, num_steps]`` training losses (each step's batch before its update).
    """
    init_key, data_key = train_keys(key)
    params0 = task.init(init_key)
    return np.asarray(_many_program(cfg, int(num_steps), int(horizon))(task, thetas, params0, data_key))


def classify(losses, num_classes: int, reference_final: float, *, tail: int = 50, tol: float = 0.05) -> str:
    """The outcome of one training curve, from the mean loss of its last ``tail`` steps:

    ``diverged`` — non-finite or above ln C + ``tol``; ``dead`` — within ``tol`` of ln C (uniform predictions:
    no training); ``degraded`` — above 1.25 × ``reference_final`` (the unperturbed optimizer's value);
    ``ok`` — otherwise.
    """
    final = float(np.mean(np.asarray(losses, np.float64)[-tail:]))
    chance = math.log(num_classes)
    if not math.isfinite(final) or final > chance + tol:
        return "diverged"
    if abs(final - chance) <= tol:
        return "dead"
    return "degraded" if final > 1.25 * reference_final else "ok"


def _first_dense(params):
    """The first layer's kernel and bias of an MLP task (flax names ``Dense_0``)."""
    return params["Dense_0"]["kernel"], params["Dense_0"]["bias"]


def step_anatomy(task, cfg: StarConfig, theta: Mapping, key, num_steps: int, *, horizon: int = 2000) -> dict:
    """Decompose the first ``num_steps`` updates of one run into the blackbox and the nominal term, per layer.

    For each step: the loss, the fraction of first-layer units that are dead (ReLU output 0 on every image of
    the batch), the mean L1 norm of the inputs, and per parameter tensor the mean and standard deviation of
    the blackbox step, the RMS of the nominal step, the fraction of exactly-zero gradient entries and the
    fraction of entries whose blackbox preconditioner is ε-dominated (``v < eps`` after the update).
    The two parts are the updates of the same state with one term switched off (``step_mult = 0`` or
    ``nominal_stepsize = 0``).
    """
    init_key, data_key = train_keys(key)
    params = task.init(init_key)
    state = star_optimizer(cfg, theta, horizon).init(params)
    decays = effective_decays(cfg, theta)
    bb_cfg = dataclasses.replace(cfg, nominal_stepsize=0.0)
    nom_cfg = dataclasses.replace(cfg, step_mult=0.0)

    @jax.jit
    def one(task, params, state, t):
        batch = batch_at(task, data_key, t)
        loss, g = jax.value_and_grad(task.loss)(params, batch)
        new_p, new_s = apply_star(cfg, theta["mlp"], decays, g, state, params)
        bb = jax.tree.map(lambda a, b: a - b, apply_star(bb_cfg, theta["mlp"], decays, g, state, params)[0], params)
        nom = jax.tree.map(lambda a, b: a - b, apply_star(nom_cfg, theta["mlp"], decays, g, state, params)[0], params)
        x = batch["image"].reshape(batch["image"].shape[0], -1)
        w0, b0 = _first_dense(params)
        dead = jnp.mean(jnp.all(x @ w0 + b0 <= 0, axis=0))
        return new_p, new_s, loss, g, bb, nom, dead, jnp.mean(jnp.sum(jnp.abs(x), axis=1)), new_s.rms

    eps = cfg.blackbox_eps
    rows = []
    for t in range(int(num_steps)):
        params, state, loss, g, bb, nom, dead, l1, v = one(task, params, state, t)
        layers = {}
        for path, gl in jax.tree_util.tree_flatten_with_path(g)[0]:
            name = "/".join(str(getattr(k, "key", k)) for k in path)
            get = lambda tree: np.asarray(functools.reduce(lambda d, k: d[getattr(k, "key", k)], path, tree))  # noqa: E731
            b = get(bb)
            layers[name] = {"blackbox_mean": float(b.mean()), "blackbox_std": float(b.std()),
                            "nominal_rms": float(np.sqrt(np.mean(get(nom) ** 2))),
                            "zero_gradient": float(np.mean(np.asarray(gl) == 0)),
                            "eps_dominated": float(np.mean(get(v) < eps))}
        rows.append({"step": t + 1, "loss": float(loss), "dead_first_layer_units": float(dead),
                     "input_l1": float(l1), "layers": layers})
    return {"steps": rows}


def gradient_profile(task, key) -> dict:
    """Per parameter tensor at initialisation, on the first batch of ``key``: size, fraction of gradient entries
    that are exactly 0, below sqrt(1e-3) ≈ 0.032 (so that v_1 = 1e-3 g² < eps = 1e-6: the raw preconditioner is
    at its cap 1000) and below 1e-3 (capped even with bias correction, v̂_1 = g²), the median |g|; the mean L1
    norm of an input and the fraction of input pixels that are 0 on the whole batch and on the whole training split.
    """
    init_key, data_key = train_keys(key)
    params = task.init(init_key)
    batch = batch_at(task, data_key, 0)
    g = jax.grad(task.loss)(params, batch)
    out = {}
    for path, gl in jax.tree_util.tree_flatten_with_path(g)[0]:
        a = np.abs(np.asarray(gl, np.float64))
        out["/".join(str(getattr(k, "key", k)) for k in path)] = {
            "size": int(a.size), "zero": float(np.mean(a == 0)),
            "below_sqrt_eps_over_1e-3": float(np.mean(1e-3 * a**2 < RMS_EPS)),
            "below_sqrt_eps": float(np.mean(a**2 < RMS_EPS)), "median_abs": float(np.median(a))}
    x = np.asarray(batch["image"]).reshape(len(batch["label"]), -1)
    train_images = np.asarray(task.data.split("train").images).reshape(task.data.split("train").num_examples, -1)
    return {"layers": out, "input_l1_mean": float(np.abs(x).sum(axis=1).mean()), "input_dim": int(x.shape[1]),
            "pixels_zero_on_batch": float(np.mean(np.all(x == 0, axis=0))),
            "pixels_zero_on_train_split": float(np.mean(np.all(train_images == 0, axis=0)))}


def nominal_theta(cfg: StarConfig, seed: int = 0) -> dict:
    """The nominal start of ``python -m star meta-train --seed seed``: hidden layers from key seed + 1, zero
    output layer (every head 0, the update is exactly the nominal term)."""
    from star.optim import init_meta_params

    return init_meta_params(cfg, jax.random.PRNGKey(seed + 1), init="nominal")



#: Where :func:`train_many_intervened` lets the blackbox term act (``none``: everywhere, the real update).
INTERVENTIONS = ("none", "no_blackbox_first_layer", "blackbox_first_layer_only", "no_blackbox_where_v_is_0")


def _blackbox_mask(index, name: str, v):
    """The multiplier of the blackbox step for intervention ``INTERVENTIONS[index]`` (``index`` may be traced,
    so that one compiled program serves every intervention)."""
    first = 1.0 if name.startswith("Dense_0") else 0.0
    options = jnp.stack([jnp.ones_like(v), jnp.full_like(v, 1.0 - first), jnp.full_like(v, first),
                         (v > 0).astype(v.dtype)])  # the last: weights that have had a non-zero gradient
    return options[index]


@functools.lru_cache(maxsize=16)
def _intervened_program(cfg: StarConfig, num_steps: int):
    bb_cfg = dataclasses.replace(cfg, nominal_stepsize=0.0)

    def run(task, thetas, params0, data_key, index):
        num = jax.tree.leaves(thetas)[0].shape[0]
        states = jax.vmap(lambda th: star_optimizer(cfg, th, 2000).init(params0))(thetas)
        params = jax.tree.map(lambda x: jnp.broadcast_to(x, (num,) + x.shape), params0)

        def one(th, p, s, batch):
            loss, g = jax.value_and_grad(task.loss)(p, batch)
            decays = effective_decays(cfg, th)
            full, new_s = apply_star(cfg, th["mlp"], decays, g, s, p)
            bb_only, _ = apply_star(bb_cfg, th["mlp"], decays, g, s, p)
            flat_full, treedef = jax.tree_util.tree_flatten_with_path(full)
            out = []
            for (path, f), b, q, v in zip(flat_full, jax.tree.leaves(bb_only), jax.tree.leaves(p),
                                          jax.tree.leaves(new_s.rms)):
                name = "/".join(str(getattr(k, "key", k)) for k in path)
                out.append(f + (_blackbox_mask(index, name, v) - 1.0) * (b - q))
            return jax.tree_util.tree_unflatten(treedef, out), new_s, loss

        def body(carry, t):
            p, s = carry
            batch = batch_at(task, data_key, t)
            p, s, loss = jax.vmap(lambda th, p, s: one(th, p, s, batch))(thetas, p, s)
            return (p, s), loss

        (p, _), losses = jax.lax.scan(body, (params, states), jnp.arange(num_steps))
        batch = batch_at(task, data_key, num_steps)
        x = batch["image"].reshape(batch["image"].shape[0], -1)
        dead = jax.vmap(lambda q: jnp.mean(jnp.all(x @ q["Dense_0"]["kernel"] + q["Dense_0"]["bias"] <= 0, axis=0)))(p)
        return losses.T, dead

    return jax.jit(run)


def train_many_intervened(task, cfg: StarConfig, thetas: Mapping, key, num_steps: int, intervention: str):
    """As :func:`train_many`, with the blackbox term switched off on some weights (:data:`INTERVENTIONS`):
    on the first layer, everywhere but the first layer, or where ``v = 0`` (no non-zero gradient seen yet —
    the sparse-input weights). The nominal term is untouched. Returns ``(losses [runs, steps], fraction of
    first-layer units dead on the next batch [runs])``; for MLP tasks (flax ``Dense_0`` first)."""
    if intervention not in INTERVENTIONS:
        raise ValueError(f"intervention must be one of {INTERVENTIONS}; got {intervention!r}")
    init_key, data_key = train_keys(key)
    params0 = task.init(init_key)
    index = jnp.int32(INTERVENTIONS.index(intervention))
    losses, dead = _intervened_program(cfg, int(num_steps))(task, thetas, params0, data_key, index)
    return np.asarray(losses), np.asarray(dead)


def second_moment_profile(task, cfg: StarConfig, theta: Mapping, key, checkpoints: Sequence[int],
                          eps_values: Sequence[float] = (1e-6, 1e-4), *, horizon: int = 2000) -> dict:
    """How often each eps dominates the blackbox preconditioner along one training run.

    Trains ``task`` with the optimizer at ``theta`` and, after each step in ``checkpoints``, reports per
    parameter tensor the fraction of weights whose second moment ``v`` (raw, and bias-corrected) is below each
    eps — where ``(v + eps)^{-1/2}`` is set by eps rather than by the gradient scale. For eps = 1e-4 this is
    the part of the update where our variant is no longer an Adam-style normalization: what it costs.
    """
    from star.train import train

    c = float(np.clip(np.asarray(effective_decays(cfg, theta)["rms"])[0], 0.0, 1.0))
    out = []
    for step in sorted(int(s) for s in checkpoints):
        res = train(task, lambda th: star_optimizer(cfg, th, horizon), step, key, meta_params=theta,
                    chunk_size=min(250, step), progress=False)
        rows = {}
        for path, v in jax.tree_util.tree_flatten_with_path(res.opt_state.rms)[0]:
            v = np.asarray(v, np.float64)
            vh = v / (1.0 - c**step)
            rows["/".join(str(getattr(k, "key", k)) for k in path)] = {
                f"{kind}_below_{e:g}": float(np.mean(x < e))
                for e in eps_values for kind, x in (("v", v), ("v_hat", vh))}
        out.append({"step": step, "layers": rows})
    return {"rms_decay": c, "checkpoints": out}
