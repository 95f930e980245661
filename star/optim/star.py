"""STAR, Hyperparam, Blackbox and the ablations as optax gradient transformations.

One configuration (:class:`StarConfig`) and one update cover the family (appendix "STAR in the code"; App. B.2).  Per
element of every parameter tensor, a small MLP maps 39 features (see :mod:`star.optim.features`) to
the heads ``(d, a, b, c)`` = (direction, magnitude, nominal magnitude, regularization magnitude), and

.. math::

    p_{t+1} = \\underbrace{(1 - \\lambda e^{\\beta_3 c})}_{r_t} p_t
      - s\\, d\\, e^{\\beta_1 a}\\,[(v_t + 10^{-6})^{-1/2}]
      - \\alpha_{\\rm nom} e^{\\beta_2 b}\\, \\hat g_t ,

with the bracket only when ``normalize_blackbox`` (the Adam-style preconditioner), ``s`` = ``step_mult``,
``alpha_nom`` = ``nominal_stepsize``, ``beta`` = ``exp_mult`` and ``\\hat g`` the nominal direction
(default AdamAggMo, the mean of ``m_i / sqrt(v + 1e-6)`` over the three momentum timescales).  With a
zero MLP output the update is exactly the nominal optimizer (appendix "STAR in the code"), which is what
``init_meta_params(..., init="nominal")`` starts from.

``Blackbox`` is ``learned_optimization``'s ``AdafacMLPLOpt`` (``small_fc_lopt``): the same features, an
MLP with two outputs (d, a) and ``p <- p - s d e^{beta_1 a}``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from star import _checks
from star.optim import features as F

NOMINAL_GRAD_ESTIMATORS = ("SGD", "SGDM", "AggMo", "Adam", "AdamAggMo")
#: "fused" is the implementation; "matmul" is the reference's formulation, kept as a parity oracle
IMPLEMENTATIONS = ("fused", "matmul")
#: meta-parameter initialisations of :func:`init_meta_params` (the command line starts from "nominal")
INITS = ("nominal", "reference")


def _as_tuple(name: str, value, length: int | None = None) -> tuple:
    try:
        out = tuple(float(v) for v in value)
    except TypeError:
        raise ValueError(f"{name} must be a sequence of floats; got {value!r}") from None
    if length is not None and len(out) != length:
        raise ValueError(f"{name} must have {length} entries; got {len(out)} ({value!r})")
    return out


@dataclasses.dataclass(frozen=True)
class StarConfig:
    """Hyper-parameters of one member of the STAR family (``MLPNomLOpt`` / ``AdafacMLPLOpt``).

    Attributes:
        nominal_stepsize: alpha_nom, step size of the nominal (hand-designed) term; 0 removes it.
        step_mult: s, scale of the blackbox term; 0 removes it.
        exp_mult: (beta_1, beta_2, beta_3), exponent scales of the magnitude, nominal-magnitude and
            regularization-magnitude heads (paper: 1e-3 each, App. B.2).
        normalize_blackbox: multiply the blackbox step by (v + 1e-6)^{-1/2} (Adam-style preconditioning).
        selfnormalize_blackbox: multiply the blackbox step by mean(g) (experimental in the reference).
        nominal_grad_estimator: the nominal direction g_hat: SGD, SGDM, AggMo, Adam or AdamAggMo.
        nominal_controller: if True the head b scales the nominal step, else b = 1.
        regularization_controller: if True the head c scales the inner weight decay, else c = 0.
        weight_decay: lambda, inner weight decay of the optimizee (not the outer AdamW decay).
        aggregate_magnitude, aggregate_nom_magnitude, aggregate_reg_magnitude: average a, b, c over
            each tensor (a per-tensor gain instead of a per-element one).
        hidden_size, hidden_layers: MLP width and depth (4 x 2 in the paper).
        num_outputs: 4 for the STAR heads (d, a, b, c), 2 for the blackbox heads (d, a).
        initial_momentum_decays, initial_rms_decays, initial_adafactor_decays: accumulator decays at
            zero decay logits (3, 1 and 3 values in (0, 1)).

    Opt-in changes of ours (not the paper's; the defaults are the reference's update, which the parity tests
    pin), studied in the in-distribution chapter where PES at the paper's σ breaks STAR on the paper's MLP:

    Attributes:
        blackbox_bias_correction: precondition the blackbox term with the bias-corrected second moment
            ``v_t / (1 - c^t)`` (``c`` the RMS decay, ``t`` the number of gradients seen), as Adam does, instead
            of the raw ``v_t`` that starts near zero. The nominal term and the features are unchanged.
        blackbox_eps: the ``eps`` of the blackbox preconditioner ``(v + eps)^{-1/2}`` (reference: 1e-6, which
            caps the gain at 1000); the nominal term and the features keep 1e-6.
        output_scale: the MLP's output layer enters the update multiplied by this factor (a reparameterisation:
            perturbations and outer-optimizer steps of the output-layer meta-parameters act ``output_scale``
            times more weakly on the heads; 1.0 is the reference).
    """

    nominal_stepsize: float = 1e-3
    step_mult: float = 1e-3
    exp_mult: tuple = (1e-3, 1e-3, 1e-3)
    normalize_blackbox: bool = True
    selfnormalize_blackbox: bool = False
    nominal_grad_estimator: str = "AdamAggMo"
    nominal_controller: bool = True
    regularization_controller: bool = False
    weight_decay: float = 0.0
    aggregate_magnitude: bool = False
    aggregate_nom_magnitude: bool = False
    aggregate_reg_magnitude: bool = False
    hidden_size: int = 4
    hidden_layers: int = 2
    num_outputs: int = 4
    initial_momentum_decays: tuple = (0.9, 0.99, 0.999)
    initial_rms_decays: tuple = (0.999,)
    initial_adafactor_decays: tuple = (0.9, 0.99, 0.999)
    blackbox_bias_correction: bool = False
    blackbox_eps: float = 1e-6
    output_scale: float = 1.0

    def __post_init__(self):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731  (frozen dataclass)
        set_("exp_mult", _as_tuple("exp_mult", self.exp_mult, 3))
        for name, n in (("initial_momentum_decays", 3), ("initial_rms_decays", 1), ("initial_adafactor_decays", 3)):
            vals = _as_tuple(name, getattr(self, name), n)
            for v in vals:
                if not 0.0 < v < 1.0:
                    raise ValueError(f"{name} must lie in the open interval (0, 1); got {vals}")
            set_(name, vals)
        for name in ("nominal_stepsize", "step_mult", "weight_decay"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"{name} must be a finite number >= 0; got {v!r}")
            set_(name, float(v))
        for name in ("blackbox_eps", "output_scale"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a finite number > 0; got {v!r}")
            set_(name, float(v))
        if not isinstance(self.blackbox_bias_correction, bool):
            raise ValueError(f"blackbox_bias_correction must be a bool; got {self.blackbox_bias_correction!r}")
        if not all(math.isfinite(e) for e in self.exp_mult):
            raise ValueError(f"exp_mult must be finite; got {self.exp_mult}")
        if self.nominal_grad_estimator not in NOMINAL_GRAD_ESTIMATORS:
            raise ValueError(
                f"nominal_grad_estimator must be one of {NOMINAL_GRAD_ESTIMATORS}; got {self.nominal_grad_estimator!r}"
            )
        for name, lo in (("hidden_size", 1), ("hidden_layers", 0)):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < lo:
                raise ValueError(f"{name} must be an integer >= {lo}; got {v!r}")
            set_(name, int(v))
        if self.num_outputs not in (2, 4):
            raise ValueError("num_outputs must be 4 (STAR heads d, a, b, c) or 2 (blackbox d, a); "
                             f"got {self.num_outputs!r}")
        if self.num_outputs == 2:
            bad = {
                k: getattr(self, k)
                for k in ("nominal_stepsize", "weight_decay", "nominal_controller", "regularization_controller")
                if getattr(self, k)
            }
            if bad:
                raise ValueError(
                    f"num_outputs=2 (blackbox heads d, a) has no nominal or regularization head; "
                    f"these must be 0/False: {bad}"
                )

    @property
    def is_blackbox(self) -> bool:
        return self.num_outputs == 2

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StarConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config has unknown fields {unknown}; allowed: {sorted(names)}")
        return cls(**dict(d))


PRESETS: dict[str, StarConfig] = {
    # The paper's settings (App. B.2, C.2): beta_i = s = alpha_nom = 1e-3, Adam-normalized blackbox, nominal controller.
    "star": StarConfig(),
    # Blackbox head removed: nominal AdamAggMo term with its magnitude controller only.
    "hyperparam": StarConfig(step_mult=0.0, normalize_blackbox=False),
    # small_fc_lopt = AdafacMLPLOpt: two heads, no nominal term, no preconditioner.
    "blackbox": StarConfig(nominal_stepsize=0.0, normalize_blackbox=False, nominal_controller=False, num_outputs=2),
    # Fig. App.3 "No Pre.": STAR without the Adam-style preconditioner.
    "star_nopre": StarConfig(normalize_blackbox=False),
    # Fig. App.4 "No Nom.": STAR without the nominal term.
    "star_nonom": StarConfig(nominal_stepsize=0.0),
}


#: Variants of ours (not the paper's), for the remedies of the in-distribution chapter: STAR whose blackbox
#: term tolerates PES-sized perturbations on the paper's 784-128-128 MLP.
VARIANTS: dict[str, StarConfig] = {
    # the blackbox preconditioner bias-corrected, with eps 1e-4 (gain at most 100 instead of 1000)
    "star_bc_eps1e-4": StarConfig(blackbox_bias_correction=True, blackbox_eps=1e-4),
    # the output layer enters as 0.1 x theta: sigma and outer steps on the heads act 10x more weakly
    "star_out0.1": StarConfig(output_scale=0.1),
    # both
    "star_out0.1_bc_eps1e-4": StarConfig(output_scale=0.1, blackbox_bias_correction=True, blackbox_eps=1e-4),
}


def preset(name: str, **overrides) -> StarConfig:
    """The named configuration of the paper's settings (App. B.2, C.2; :data:`PRESETS`) or one of our
    :data:`VARIANTS`, optionally with fields replaced."""
    known = {**PRESETS, **VARIANTS}
    if name not in known:
        raise ValueError(f"preset name must be one of {sorted(known)}; got {name!r}")
    return dataclasses.replace(known[name], **overrides) if overrides else known[name]


# ----------------------------------------------------------------------------- meta-parameters

def meta_param_shapes(cfg: StarConfig) -> dict:
    """Shapes of the meta-parameter pytree for ``cfg`` (our layout)."""
    sizes = [F.NUM_FEATURES] + [cfg.hidden_size] * cfg.hidden_layers + [cfg.num_outputs]
    mlp = {}
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        mlp[f"w{i}"] = (a, b)
        mlp[f"b{i}"] = (b,)
    return {
        "mlp": mlp,
        "decay_logits": {
            "momentum": (len(cfg.initial_momentum_decays),),
            "rms": (len(cfg.initial_rms_decays),),
            "adafactor": (len(cfg.initial_adafactor_decays),),
        },
    }


def num_meta_params(cfg: StarConfig) -> int:
    """Number of meta-parameters (207 for STAR, 197 for Blackbox; appendix "STAR in the code")."""
    shapes = jax.tree_util.tree_leaves(meta_param_shapes(cfg), is_leaf=lambda x: isinstance(x, tuple))
    return int(sum(math.prod(s) for s in shapes))


def init_meta_params(cfg: StarConfig, key: jax.Array, init: str = "reference") -> dict:
    """Initial meta-parameters theta.

    Args:
        cfg: the configuration.
        key: a ``jax.random`` key.
        init: ``"reference"`` = the reference initialization (weights truncated normal, cut at two
            standard deviations, std 1/sqrt(fan-in); zero biases; zero decay logits).  With it STAR's
            first blackbox steps are huge (see the hazard in the chapter).  ``"nominal"`` = the same
            hidden layers but a zero output layer, so every head is 0 and STAR starts exactly as its
            nominal optimizer (the book's appendix); Blackbox then starts with a zero update.
    """
    if not isinstance(cfg, StarConfig):
        raise ValueError(f"cfg must be a StarConfig; got {type(cfg).__name__}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}; got {init!r}")
    _checks.key("key", key)
    shapes = meta_param_shapes(cfg)
    n_layers = len(shapes["mlp"]) // 2
    keys = jax.random.split(key, n_layers)
    mlp = {}
    for i in range(n_layers):
        fan_in, fan_out = shapes["mlp"][f"w{i}"]
        w = jax.random.truncated_normal(keys[i], -2.0, 2.0, (fan_in, fan_out), jnp.float32)
        w = w / np.float32(np.sqrt(fan_in))
        if init == "nominal" and i == n_layers - 1:
            w = jnp.zeros_like(w)
        mlp[f"w{i}"] = w
        mlp[f"b{i}"] = jnp.zeros((fan_out,), jnp.float32)
    logits = {k: jnp.zeros(s, jnp.float32) for k, s in shapes["decay_logits"].items()}
    return {"mlp": mlp, "decay_logits": logits}


def validate_meta_params(cfg: StarConfig, theta: Any, name: str = "theta") -> None:
    """Raise ``ValueError`` unless ``theta`` has exactly the structure and shapes ``cfg`` needs."""
    expected = meta_param_shapes(cfg)
    if not isinstance(theta, Mapping):
        raise ValueError(f"{name} must be a dict with keys 'mlp' and 'decay_logits'; got {type(theta).__name__}")
    problems = []
    for group, exp in expected.items():
        got = theta.get(group) if isinstance(theta, Mapping) else None
        if not isinstance(got, Mapping):
            problems.append(f"missing group {group!r}")
            continue
        extra = sorted(set(got) - set(exp))
        if extra:
            problems.append(f"unexpected {group}/{extra}")
        for k, s in exp.items():
            if k not in got:
                problems.append(f"missing {group}/{k} of shape {s}")
            elif tuple(np.shape(got[k])) != s:
                problems.append(f"{group}/{k} has shape {tuple(np.shape(got[k]))}, expected {s}")
    extra = sorted(set(theta) - set(expected))
    if extra:
        problems.append(f"unexpected groups {extra}")
    if problems:
        raise ValueError(
            f"{name} does not match the architecture of the config (hidden_size={cfg.hidden_size}, "
            f"hidden_layers={cfg.hidden_layers}, num_outputs={cfg.num_outputs}): " + "; ".join(problems)
        )
    _checks.finite_tree(name, theta)  # NaN/inf meta-parameters would give NaN updates


def effective_decays(cfg: StarConfig, theta: Mapping) -> dict:
    """The float32 accumulator decays ``1 - (1 - d_init) exp(10 logit)`` (appendix "STAR in the code")."""
    lg = theta["decay_logits"]
    return {
        "momentum": F.decays_from_logits(cfg.initial_momentum_decays, lg["momentum"]),
        "rms": F.decays_from_logits(cfg.initial_rms_decays, lg["rms"]),
        "adafactor": F.decays_from_logits(cfg.initial_adafactor_decays, lg["adafactor"]),
    }


# ----------------------------------------------------------------------------- state and update

class StarState(NamedTuple):
    """Optimizer state: accumulators (pytrees shaped like the parameters, decay index leading).

    ``momentum``: ``(3, *p.shape)``; ``rms``: ``p.shape``; ``fac_v_row`` / ``fac_v_col``: factored
    second moments (``(3, 0)`` for tensors with ``ndim < 2``); ``fac_v_diag``: diagonal second moments
    (``(3, 0)`` for factored tensors); ``iteration``: number of updates applied; ``num_steps``: the
    inner-training length the optimizer was built for.
    """

    momentum: Any
    rms: Any
    fac_v_row: Any
    fac_v_col: Any
    fac_v_diag: Any
    iteration: jax.Array
    num_steps: jax.Array


def _check_float_leaves(tree, name: str) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        dt = getattr(leaf, "dtype", None)
        if dt is None or not jnp.issubdtype(dt, jnp.floating):
            raise ValueError(
                f"{name} must have floating-point leaves; leaf {jax.tree_util.keystr(path) or '<root>'} "
                f"has dtype {dt} (type {type(leaf).__name__})"
            )


def _mlp_layers(mlp: Mapping, output_scale: float = 1.0) -> list:
    n = len(mlp) // 2
    layers = [(mlp[f"w{i}"], mlp[f"b{i}"]) for i in range(n)]
    if output_scale != 1.0:
        w, b = layers[-1]
        layers[-1] = (w * output_scale, b * output_scale)
    return layers


def _heads_matmul(layers, p, g, stats, iteration):
    """Parity oracle: the MLP on the materialized ``(*shape', 39)`` feature matrix, the reference's operation order."""
    _, net = F.feature_matrix(p, g, stats, iteration)
    for i, (w, b) in enumerate(layers):
        net = net @ w + b
        if i != len(layers) - 1:
            net = jax.nn.relu(net)
    return [jnp.reshape(net[..., j], p.shape) for j in range(net.shape[-1])]


def _heads_fused(layers, p, g, stats, iteration):
    """The same MLP evaluated channel by channel, as per-element arithmetic that XLA fuses.

    No ``[n, 39]`` matrix is formed.  For factored tensors the 12 row/column channels depend on one
    index only, so their contribution to each first-layer unit is summed on the small accumulators and
    broadcast; the 11 time features are the same for every element and are folded into the first bias.
    """
    fc = F.feature_channels(p, g, stats)
    nrm = F.feature_normalizers(p, fc)
    w0, b0 = layers[0]
    bias0 = F.time_features(iteration) @ w0[F.NUM_ELEMENT_FEATURES:] + b0
    terms = list(zip(F.ELEMENTWISE_CHANNELS, fc.elementwise))
    if fc.dims is None:
        terms += list(zip(F.ROW_CHANNELS, fc.diag)) + list(zip(F.COL_CHANNELS, fc.diag))
    xs = [(c, x * nrm[c]) for c, x in terms]
    if fc.dims is not None:
        d1, d0 = fc.dims
        rows = [fc.row[q] * nrm[c] for q, c in enumerate(F.ROW_CHANNELS)]
        cols = [fc.col[q] * nrm[c] for q, c in enumerate(F.COL_CHANNELS)]
    net = []
    for j in range(w0.shape[1]):
        acc = None
        for c, x in xs:
            acc = x * w0[c, j] if acc is None else acc + x * w0[c, j]
        if fc.dims is not None:
            r = sum(x * w0[c, j] for c, x in zip(F.ROW_CHANNELS[1:], rows[1:])) + rows[0] * w0[F.ROW_CHANNELS[0], j]
            k = sum(x * w0[c, j] for c, x in zip(F.COL_CHANNELS[1:], cols[1:])) + cols[0] * w0[F.COL_CHANNELS[0], j]
            acc = acc + jnp.expand_dims(r, d0) + jnp.expand_dims(k, d1)
        net.append(acc + bias0[j])
    for w, b in layers[1:]:
        net = [jax.nn.relu(h) for h in net]
        out = []
        for j in range(w.shape[1]):
            acc = net[0] * w[0, j]
            for k in range(1, len(net)):
                acc = acc + net[k] * w[k, j]
            out.append(acc + b[j])
        net = out
    return net


def leaf_step(cfg: StarConfig, layers, decays, p, g, acc: F.LeafAccumulators, iteration, implementation="fused"):
    """Update one parameter tensor: accumulators, features, MLP heads (appendix "STAR in the code").

    Returns ``(new_p, new_acc)``.
    """
    stats = F.update_leaf_accumulators(acc, g, decays["momentum"], decays["rms"][0], decays["adafactor"])
    heads = (_heads_fused if implementation == "fused" else _heads_matmul)(layers, p, g, stats, iteration)
    direction, magnitude = heads[0], heads[1]
    e1, e2, e3 = cfg.exp_mult
    if cfg.aggregate_magnitude:
        magnitude = jnp.mean(magnitude)
    new_acc = stats.acc
    rsqrt_rms = jax.lax.rsqrt(new_acc.rms + F.RMS_EPS)
    new_p = p
    if cfg.weight_decay != 0.0:
        reg_mag = heads[3] if cfg.regularization_controller else jnp.zeros_like(p)
        if cfg.aggregate_reg_magnitude:
            reg_mag = jnp.mean(reg_mag)
        new_p = (1.0 - cfg.weight_decay * jnp.exp(reg_mag * e3)) * p
    if cfg.step_mult != 0.0:
        # Blackbox term s d e^{beta_1 a} [(v + 1e-6)^{-1/2}]
        step = direction * jnp.exp(magnitude * e1) * cfg.step_mult
        if cfg.normalize_blackbox:
            if cfg.blackbox_bias_correction or cfg.blackbox_eps != F.RMS_EPS:
                v = new_acc.rms
                if cfg.blackbox_bias_correction:  # Adam's v / (1 - c^t), t = gradients seen so far
                    c = jnp.clip(decays["rms"][0], 0.0, 1.0)
                    t = (iteration + 1).astype(v.dtype)
                    v = v / jnp.maximum(-jnp.expm1(t * jnp.log(c)), 1e-30)  # 1 - c^t, accurate near t = 1
                step = step * jax.lax.rsqrt(v + cfg.blackbox_eps)
            else:
                step = step * rsqrt_rms
        if cfg.selfnormalize_blackbox:
            step = step * jnp.mean(g)
        new_p = new_p - step
    if cfg.nominal_stepsize != 0.0:
        m = new_acc.m
        k = m.shape[0]
        est = cfg.nominal_grad_estimator
        if est == "SGD":
            g_est = g
        elif est == "SGDM":
            g_est = m[-1]
        elif est == "AggMo":
            g_est = m[0]
            for i in range(1, k):
                g_est = g_est + m[i]
            g_est = g_est / k
        elif est == "Adam":
            g_est = m[-1] * rsqrt_rms
        else:  # AdamAggMo: mean over the timescales of m_i / sqrt(v + 1e-6)
            g_est = m[0] * rsqrt_rms
            for i in range(1, k):
                g_est = g_est + m[i] * rsqrt_rms
            g_est = g_est / k
        nom_mag = heads[2] if cfg.nominal_controller else jnp.ones_like(p)
        if cfg.aggregate_nom_magnitude:
            nom_mag = jnp.mean(nom_mag)
        new_p = new_p - cfg.nominal_stepsize * jnp.exp(nom_mag * e2) * g_est
    return new_p, new_acc


def _split_state(state: StarState, treedef):
    fields = [treedef.flatten_up_to(x)
              for x in (state.momentum, state.rms, state.fac_v_row, state.fac_v_col, state.fac_v_diag)]
    return [F.LeafAccumulators(*vals) for vals in zip(*fields)]


def _join_state(accs, treedef, iteration, num_steps) -> StarState:
    cols = list(zip(*accs)) if accs else [()] * 5
    trees = [jax.tree_util.tree_unflatten(treedef, list(c)) for c in cols]
    return StarState(*trees, iteration=iteration, num_steps=num_steps)


def init_state(params, num_steps: int) -> StarState:
    """Zero accumulators for every parameter tensor (the reference's ``opt.init``)."""
    _check_float_leaves(params, "params")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    accs = [F.init_leaf_accumulators(jnp.asarray(p)) for p in leaves]
    return _join_state(accs, treedef, jnp.zeros((), jnp.int32), jnp.asarray(num_steps, jnp.int32))


def apply_star(cfg: StarConfig, mlp: Mapping, decays: Mapping, grads, state: StarState, params, implementation="fused"):
    """One STAR update of every tensor; returns ``(new_params, new_state)``.

    Lower-level than :func:`star_optimizer`: the accumulator decays are given explicitly (the parity
    test injects the reference's float32 values).
    """
    layers = _mlp_layers(mlp, cfg.output_scale)
    p_leaves, treedef = jax.tree_util.tree_flatten(params)
    g_leaves = treedef.flatten_up_to(grads)
    accs = _split_state(state, treedef)
    outs = [
        leaf_step(cfg, layers, decays, p, g, a, state.iteration, implementation)
        for p, g, a in zip(p_leaves, g_leaves, accs)
    ]
    new_params = jax.tree_util.tree_unflatten(treedef, [o[0] for o in outs])
    return new_params, _join_state([o[1] for o in outs], treedef, state.iteration + 1, state.num_steps)


def debug_features(cfg: StarConfig, mlp: Mapping, decays: Mapping, grads, state: StarState, params):
    """Parity oracle, not for training: per tensor ``(raw (…,28), features (…,39), mlp_out (…,n_out))`` of the
    update from ``state``, computed the reference's way (materialised feature matrix, then the MLP).

    Shapes follow the parity file's ``debug`` arrays (scalars as ``(1,)``); ``tests/test_optim_parity.py``
    compares them with the reference's intermediate values to localise a mismatch. :func:`star_optimizer`
    never calls it.
    """
    layers = _mlp_layers(mlp, cfg.output_scale)
    p_leaves, treedef = jax.tree_util.tree_flatten(params)
    g_leaves = treedef.flatten_up_to(grads)
    out = []
    for p, g, a in zip(p_leaves, g_leaves, _split_state(state, treedef)):
        stats = F.update_leaf_accumulators(a, g, decays["momentum"], decays["rms"][0], decays["adafactor"])
        raw, feats = F.feature_matrix(p, g, stats, state.iteration)
        net = feats
        for i, (w, b) in enumerate(layers):
            net = net @ w + b
            if i != len(layers) - 1:
                net = jax.nn.relu(net)
        out.append((raw, feats, net))
    return jax.tree_util.tree_unflatten(treedef, out)


def star_optimizer(cfg: StarConfig, theta: Mapping, num_steps: int, *, implementation: str = "fused"):
    """The STAR-family optimizer with meta-parameters ``theta`` as an optax transformation.

    Usage::

        opt = star_optimizer(preset("star"), theta, num_steps=2000)
        state = opt.init(params)
        updates, state = opt.update(grads, state, params, value=loss)
        params = optax.apply_updates(params, updates)

    ``update`` needs the parameters (they are an MLP input) and the loss (``value=`` as in optax, or
    ``loss=``; unused by the update, required like the reference's ``update(state, grad, loss)``).
    Pure and traceable: it jits, and vmaps over parameters and over ``theta`` (PES).

    Args:
        cfg: a :class:`StarConfig` (e.g. ``preset("star")``).
        theta: meta-parameters from :func:`init_meta_params` (or converted from the reference).
        num_steps: the inner-training length, > 0 (stored in the state, as in the reference).
        implementation: ``"fused"`` (per-element arithmetic, the default and the one to train with) or
            ``"matmul"``, a *parity oracle*: the reference's materialized ``[n, 39]`` feature matrix times the
            MLP, kept so the parity tests and ``bench/optim_step.py`` can check the fused path against the
            reference's formulation; the two agree to float32 rounding.
    """
    if not isinstance(cfg, StarConfig):
        raise ValueError(f"cfg must be a StarConfig; got {type(cfg).__name__}")
    validate_meta_params(cfg, theta)
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps <= 0:
        raise ValueError(f"num_steps must be an integer > 0; got {num_steps!r}")
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}; got {implementation!r}")
    num_steps = int(num_steps)

    def init_fn(params):
        return init_state(params, num_steps)

    def update_fn(updates, state, params=None, *, value=None, loss=None, **extra_args):
        del extra_args
        if params is None:
            raise ValueError("params is required: STAR uses the parameter values as MLP features")
        if value is None and loss is None:
            raise ValueError("value (the training loss; also accepted as loss=) is required by the STAR update")
        _check_float_leaves(updates, "updates")
        _check_float_leaves(params, "params")
        decays = effective_decays(cfg, theta)
        new_params, new_state = apply_star(cfg, theta["mlp"], decays, updates, state, params, implementation)
        deltas = jax.tree_util.tree_map(lambda n, p: n - p, new_params, params)
        return deltas, new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
