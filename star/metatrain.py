"""The outer loop of meta-training: PES gradients → NaN guard → clipping → AdamW, with checkpoints.

Settings (App. B): AdamW with learning rate 1e-4; weight decay given as a *multiple of the
learning rate* — exactly ``optax.adamw``'s semantics, :math:`\\theta \\leftarrow \\theta - \\eta(\\hat m/(\\sqrt{\\hat v}
+\\epsilon) + \\lambda\\theta)`, so with η = 1e-4 and λ ∈ [0.1, 0.5] θ shrinks by 1e-5–5e-5 per step (STAR's
"heavy weight decay" towards its nominal optimizer); gradient clipping at 1.0.

Clipping. The paper says only "gradient clipping 1.0". The reference wraps the outer optimizer in
``GradientClipOptimizer(grad_clip=1.0)``, which clips each gradient *element* to [−1, 1]
(``clip_mode="value"``, our default and the setting that corresponds to the paper's code);
``clip_mode="global_norm"`` rescales the whole gradient to norm ≤ 1 instead (``optax.clip_by_global_norm``).

NaN guard (reference ``gradient_learner``): non-finite meta-gradient entries are set to 0 and counted
before clipping; a diverging inner problem therefore cannot poison the meta-parameters.

State and checkpoints. The complete state — step, meta-parameters θ, the AdamW state, the PES state
(inner states of all ``2N`` unrolls, iteration counters, accumulators ξ) and the PRNG key — is one pytree,
:class:`MetaState`. Every ``checkpoint_every`` steps it is written atomically (temporary file in the same
folder, ``fsync``, ``os.replace``, ``fsync`` of the folder) with a SHA-256 digest of its payload; on resume
the newest checkpoint whose digest verifies is used, and a corrupted or truncated one is skipped with a
warning. Because every outer step is a pure function of the state, a resumed run is bit-identical to an
uninterrupted one.

Devices. The ``N`` inner problems are sharded over all local devices with a 1-D mesh (axis ``"tasks"``)
and ``NamedSharding``: the PES state is split along its leading (problem) axis, θ and the optimizer state
are replicated, and the mean over problems in the estimator becomes an all-reduce. Multi-host: call
``jax.distributed.initialize()`` on every host first; ``jax.devices()`` then spans all hosts and a mesh
built from it (``make_mesh(jax.devices())``) shards the problems across hosts, with the PES state created
by the same jitted ``init`` on every process (global arrays from identical keys). ``N`` must be divisible
by the number of devices.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import os
import re
import struct as _struct
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from star import pes as pes_lib

PyTree = Any

CLIP_MODES = ("value", "global_norm", "none")
CHECKPOINT_MAGIC = b"STARCKPT"
_CKPT_RE = re.compile(r"^ckpt_(\d{8})\.ckpt$")


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
        pes_lib._check_positive_int("outer_steps", self.outer_steps)
        pes_lib._check_positive_int("checkpoint_every", self.checkpoint_every)
        pes_lib._check_positive_int("keep_checkpoints", self.keep_checkpoints, minimum=2)
        pes_lib._check_positive_int("seed", self.seed, minimum=0)
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


def _canonical(tree: PyTree) -> PyTree:
    # Strip weak types so a fresh state and one restored from disk trace (and compile) identically.
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
    return _canonical(MetaState(jnp.zeros((), jnp.int32), theta0, opt_state, pes_state, k_loop))


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
            "resets": jnp.sum(out.reset),
        }
        return MetaState(state.step + 1, theta, opt_state, pes_state, key), metrics

    if mesh is None:
        return jax.jit(outer_step)
    shardings = state_shardings(jax.tree.unflatten(treedef, [0] * treedef.num_leaves), mesh)
    rep = NamedSharding(mesh, PartitionSpec())
    return jax.jit(outer_step, in_shardings=(None, shardings), out_shardings=(shardings, rep))


# ----------------------------------------------------------------------------------------------------
# checkpoints


class CheckpointError(ValueError):
    """A checkpoint file is corrupted, truncated, or does not fit the run's state."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, rename, fsync dir."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; results are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(x):
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")


def encode_checkpoint(state: PyTree, meta: dict) -> bytes:
    """Serialise a pytree: ``MAGIC | payload length (8 bytes) | SHA-256 (32 bytes) | npz payload``."""
    leaves = jax.tree.leaves(jax.device_get(state))
    arrays = {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays["meta_json"] = np.frombuffer(json.dumps(meta, sort_keys=True, default=_json_default).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    payload = buf.getvalue()
    return CHECKPOINT_MAGIC + _struct.pack("<Q", len(payload)) + hashlib.sha256(payload).digest() + payload


def decode_checkpoint(data: bytes, template: PyTree) -> tuple[PyTree, dict]:
    """Inverse of :func:`encode_checkpoint`; verifies the digest and that leaves match ``template``.

    Raises:
        CheckpointError: bad magic, truncated payload, digest mismatch, or leaves that do not fit.
    """
    head = len(CHECKPOINT_MAGIC) + 8 + 32
    if len(data) < head or not data.startswith(CHECKPOINT_MAGIC):
        raise CheckpointError("not a STAR checkpoint (bad magic or shorter than its header)")
    (length,) = _struct.unpack("<Q", data[len(CHECKPOINT_MAGIC):len(CHECKPOINT_MAGIC) + 8])
    digest = data[len(CHECKPOINT_MAGIC) + 8:head]
    payload = data[head:]
    if len(payload) != length:
        raise CheckpointError(f"truncated checkpoint: payload has {len(payload)} bytes, header says {length}")
    if hashlib.sha256(payload).digest() != digest:
        raise CheckpointError("checkpoint digest mismatch (corrupted file)")
    with np.load(io.BytesIO(payload)) as z:
        meta = json.loads(bytes(z["meta_json"]).decode())
        names = sorted(k for k in z.files if k.startswith("leaf_"))
        loaded = [z[k] for k in names]
    t_leaves, treedef = jax.tree.flatten(template)
    if len(loaded) != len(t_leaves):
        raise CheckpointError(f"checkpoint has {len(loaded)} arrays, the run's state has {len(t_leaves)}")
    for i, (a, t) in enumerate(zip(loaded, t_leaves)):
        if a.shape != np.shape(t) or a.dtype != np.asarray(t).dtype:
            raise CheckpointError(f"checkpoint array {i} has shape {a.shape} {a.dtype}, the run's state "
                                  f"{np.shape(t)} {np.asarray(t).dtype}")
    return jax.tree.unflatten(treedef, [jnp.asarray(a) for a in loaded]), meta


def checkpoint_path(ckpt_dir: str | os.PathLike, step: int) -> Path:
    return Path(ckpt_dir) / f"ckpt_{int(step):08d}.ckpt"


def list_checkpoints(ckpt_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """Checkpoints in ``ckpt_dir`` as ``(step, path)``, newest first."""
    d = Path(ckpt_dir)
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), d / n) for n in os.listdir(d) if (m := _CKPT_RE.match(n))]
    return sorted(found, reverse=True)


def save_checkpoint(ckpt_dir: str | os.PathLike, state: MetaState, meta: dict, keep: int = 3) -> Path:
    """Atomically write ``state`` as ``ckpt_<step>.ckpt`` and delete all but the newest ``keep``."""
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    step = int(state.step)
    path = checkpoint_path(ckpt_dir, step)
    atomic_write_bytes(path, encode_checkpoint(state, dict(meta, step=step)))
    for _, old in list_checkpoints(ckpt_dir)[keep:]:
        old.unlink(missing_ok=True)
    return path


def load_latest_checkpoint(ckpt_dir: str | os.PathLike, template: PyTree):
    """The newest checkpoint that verifies, as ``(state, meta, path)``, or ``None`` if there is none.

    Corrupted or truncated files are skipped with a ``UserWarning`` naming them; the previous good one
    is used.
    """
    for step, path in list_checkpoints(ckpt_dir):
        try:
            state, meta = decode_checkpoint(path.read_bytes(), template)
        except (CheckpointError, OSError, ValueError, KeyError) as err:
            warnings.warn(f"skipping unreadable checkpoint {path} ({err}); falling back to the previous one",
                          UserWarning, stacklevel=2)
            continue
        return state, meta, path
    return None


# ----------------------------------------------------------------------------------------------------
# run folders


def _config_diff(old: dict, new: dict, ignore=()) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [f"{k}: saved {old.get(k)!r} != requested {new.get(k)!r}" for k in keys
            if k not in ignore and old.get(k) != new.get(k)]


def prepare_run_dir(out_dir: str | os.PathLike, run_config: dict, resume: bool,
                    ignore=MetaTrainConfig.RESUMABLE_CHANGES) -> Path:
    """Create or validate an output folder; write ``config.json`` for a new run. Never overwrites a run.

    Raises:
        ValueError: the folder is not writable, is a file, holds a different run or other files (without
            ``resume``), has nothing to resume, or its saved configuration differs from ``run_config``.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {str(out)!r} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-", delete=True)
        probe.close()
    except OSError as err:
        raise ValueError(f"out_dir {str(out)!r} is not writable ({err.strerror or err})") from None
    cfg_path = out / "config.json"
    json_config = json.loads(json.dumps(run_config, default=_json_default))
    if cfg_path.exists():
        saved = json.loads(cfg_path.read_text())
        if not resume:
            raise ValueError(f"out_dir {str(out)!r} already holds a run (config.json); pass resume=True "
                             "(--resume) to continue it or choose another folder; nothing was overwritten")
        diff = _config_diff(saved, json_config, ignore)
        if diff:
            raise ValueError("cannot resume: the configuration differs from the saved run in "
                             + "; ".join(diff))
        if saved != json_config:  # only resumable fields changed: record the new values
            atomic_write_json(cfg_path, json_config)
        return out
    if resume:
        raise ValueError(f"cannot resume: out_dir {str(out)!r} holds no run (no config.json)")
    others = [n for n in os.listdir(out) if not n.startswith(".write-test-")]
    if others:
        raise ValueError(f"out_dir {str(out)!r} is not empty and holds no run ({', '.join(sorted(others)[:5])}); "
                         "choose an empty or new folder; nothing was overwritten")
    atomic_write_json(cfg_path, json_config)
    return out


def _truncate_log(log_path: Path, last_step: int) -> list[dict]:
    """Keep the log lines of steps <= ``last_step`` (lines written after the checkpoint are redone)."""
    if not log_path.exists():
        return []
    kept = []
    for line in log_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            break  # a line cut by a kill
        if rec.get("step", 0) <= last_step:
            kept.append(rec)
    atomic_write_bytes(log_path, "".join(json.dumps(r) + "\n" for r in kept).encode())
    return kept


def save_theta(path: str | os.PathLike, theta: PyTree) -> None:
    """Save meta-parameters as an ``.npz`` keyed by pytree path (atomic)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(theta))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **{jax.tree_util.keystr(k): np.asarray(v) for k, v in flat})
    atomic_write_bytes(path, buf.getvalue())


def load_theta(path: str | os.PathLike, template: PyTree) -> PyTree:
    """Load meta-parameters saved by :func:`save_theta` into the structure of ``template``."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    with np.load(path) as z:
        missing = [jax.tree_util.keystr(k) for k, _ in flat if jax.tree_util.keystr(k) not in z.files]
        if missing:
            raise ValueError(f"meta-parameters in {str(path)!r} do not fit the template (missing {missing[:3]})")
        return jax.tree.unflatten(treedef, [jnp.asarray(z[jax.tree_util.keystr(k)]) for k, _ in flat])


THETA_SNAPSHOT_DIR = "thetas"
_SNAP_RE = re.compile(r"^theta_(\d{8})\.npz$")


def theta_snapshot_path(run_dir: str | os.PathLike, step: int) -> Path:
    """Where :func:`meta_train` keeps θ after ``step`` outer steps (step 0 and every checkpoint)."""
    return Path(run_dir) / THETA_SNAPSHOT_DIR / f"theta_{int(step):08d}.npz"


def list_theta_snapshots(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path), ...]`` of a run folder's θ snapshots, sorted by step."""
    d = Path(run_dir) / THETA_SNAPSHOT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _SNAP_RE.match(p.name))]
    return sorted(found)


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
    pes_lib._check_problem(problem)
    num_seeds = pes_lib._check_positive_int("num_seeds", num_seeds)
    num_steps = problem.horizon if num_steps is None else pes_lib._check_positive_int("num_steps", num_steps)
    return np.asarray(_jitted_objective(num_seeds, num_steps)(problem, theta, key))


def load_log(run_dir: str | os.PathLike) -> dict:
    """The per-step metrics of a run folder's ``log.jsonl`` as ``{name: np.ndarray}`` (``None`` → NaN).

    For the book: ``log = load_log("results/metatrain/star_fmnist_cpu"); plt.plot(log["step"], log["meta_loss"])``.
    """
    path = Path(run_dir) / "log.jsonl"
    if not path.exists():
        raise ValueError(f"run_dir {str(run_dir)!r} has no log.jsonl")
    recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keys = sorted({k for r in recs for k in r})
    return {k: np.asarray([np.nan if r.get(k) is None else r[k] for r in recs], dtype=np.float64) for k in keys}


# ----------------------------------------------------------------------------------------------------
# the loop


@dataclasses.dataclass
class MetaTrainResult:
    """What :func:`meta_train` returns: final θ and state, the per-step metrics, the output folder."""

    theta: PyTree
    state: MetaState
    history: list
    out_dir: Path | None
    resumed_from: int | None
    wall_s: float = 0.0


def _finite_or_none(x):
    x = float(x)
    return x if math.isfinite(x) else None


def meta_train(problem, theta0: PyTree, cfg: MetaTrainConfig, *, out_dir: str | os.PathLike | None = None,
               resume: bool = False, run_config: dict | None = None, progress: bool = True,
               devices=None, callback: Callable[[dict], None] | None = None) -> MetaTrainResult:
    """Meta-train ``theta0`` on a :class:`star.pes.TruncatedProblem` with PES and AdamW.

    Args:
        problem: the truncated inner problem (a pytree, e.g. :class:`star.inner.LearnedOptimizerProblem`).
        theta0: initial meta-parameters.
        cfg: :class:`MetaTrainConfig`.
        out_dir: folder for ``config.json``, ``log.jsonl`` (one JSON object per outer step),
            ``checkpoints/`` and ``theta_final.npz``; ``None`` keeps everything in memory.
        resume: continue the run in ``out_dir`` from its newest good checkpoint.
        run_config: the configuration recorded in (and checked against) ``config.json``; defaults to
            ``cfg.to_dict()`` (the command line adds task, optimizer and horizon).
        progress: show a tqdm progress bar.
        devices: devices to shard the problems over (default: all local devices).
        callback: called with each step's metrics dict (after it is logged).

    Returns:
        :class:`MetaTrainResult`.
    """
    from tqdm.auto import tqdm

    if not isinstance(cfg, MetaTrainConfig):
        raise ValueError(f"cfg must be a MetaTrainConfig; got {type(cfg).__name__}")
    pes_lib._check_problem(problem)
    pes_lib.check_settings(trunc_length=cfg.trunc_length, horizon=problem.horizon)
    run_config = cfg.to_dict() if run_config is None else dict(run_config)
    if out_dir is not None:
        out = prepare_run_dir(out_dir, run_config, resume)
    elif resume:
        raise ValueError("resume=True needs an out_dir")
    else:
        out = None

    state = init_meta_state(problem, theta0, cfg)
    history: list[dict] = []
    resumed_from = None
    if out is not None and resume:
        found = load_latest_checkpoint(out / "checkpoints", state)
        if found is not None:
            state, meta, _ = found
            state = _canonical(state)
            resumed_from = int(state.step)
            history = _truncate_log(out / "log.jsonl", resumed_from)
        else:
            history = _truncate_log(out / "log.jsonl", 0)

    devs = jax.local_devices() if devices is None else list(devices)
    mesh = None
    if cfg.shard and len(devs) > 1:
        if cfg.num_tasks % len(devs) == 0:
            mesh = make_mesh(devs)
            state = jax.device_put(state, state_shardings(state, mesh))
        else:
            warnings.warn(f"num_tasks={cfg.num_tasks} is not divisible by the {len(devs)} local devices; "
                          "running on one device", UserWarning, stacklevel=2)
    step_fn = make_outer_step(cfg, mesh, state)
    inner_per_step = 2 * cfg.num_tasks * cfg.trunc_length

    log_file = open(out / "log.jsonl", "a") if out is not None else None
    start = int(state.step)
    if out is not None and start == 0:
        save_theta(theta_snapshot_path(out, 0), state.theta)
    bar = tqdm(total=cfg.outer_steps, initial=min(start, cfg.outer_steps), disable=not progress,
               desc="meta-train", unit="step")
    t_run = time.perf_counter()
    try:
        while int(state.step) < cfg.outer_steps:
            t0 = time.perf_counter()
            state, metrics = step_fn(problem, state)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t0
            rec = {"step": int(state.step)}
            for k, v in metrics.items():
                rec[k] = int(v) if np.issubdtype(np.asarray(v).dtype, np.integer) else _finite_or_none(v)
            rec["inner_steps_per_s"] = inner_per_step / dt
            rec["step_s"] = dt
            history.append(rec)
            if log_file is not None:
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
            if callback is not None:
                callback(rec)
            bar.update(1)
            bar.set_postfix(meta_loss=rec["meta_loss"], nan=rec["nan_count"])
            if out is not None and (rec["step"] % cfg.checkpoint_every == 0 or rec["step"] == cfg.outer_steps):
                save_theta(theta_snapshot_path(out, rec["step"]), state.theta)
                save_checkpoint(out / "checkpoints", state, {"config": run_config}, keep=cfg.keep_checkpoints)
    finally:
        bar.close()
        if log_file is not None:
            log_file.close()
    wall = time.perf_counter() - t_run
    if out is not None:
        save_theta(out / "theta_final.npz", state.theta)
    return MetaTrainResult(theta=state.theta, state=state, history=history, out_dir=out,
                           resumed_from=resumed_from, wall_s=wall)
