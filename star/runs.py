"""A run folder: what a long computation leaves on disk, so that it can be resumed, checked and cited.

A *run folder* is a directory holding one run (meta-training, a sweep member, a measurement):

=====================  =================================================================================
``config.json``        every setting of the run (written once; resumable fields may be updated)
``log.jsonl``          one JSON object per step, appended as the run goes (``{"step": 1, ...}``)
``checkpoints/``       the complete state every few steps (:func:`save_checkpoint`), with the run's identity
``thetas/``            θ snapshots ``theta_<step>.npz`` (step 0 and every checkpoint)
``theta_final.npz``    θ at the end (its presence marks a finished run)
``provenance.json``    command, git commit, scale, seeds, wall time, device, data source (:func:`provenance`)
``NOTE.md``            (stored runs) what the run shows, written by a person
``log.damaged.txt``    (only after a repair) damaged lines of the log, kept verbatim
=====================  =================================================================================

Everything is written atomically (temporary file in the same folder, ``fsync``, ``os.replace``, ``fsync`` of
the folder), so a run killed at any moment leaves only complete files. The module knows nothing about what
is computed: states are pytrees, configurations are JSON dicts.

The API, smallest first:

* files: :func:`atomic_write_bytes`, :func:`atomic_write_json`, :func:`read_json`;
* θ files: :func:`save_theta`, :func:`load_theta`, :func:`theta_snapshot_path`, :func:`list_theta_snapshots`;
* the log: :func:`read_log` (the one parser), :func:`truncate_log` (on resume: repaired from the checkpoint's
  copy of the log, or the resume refused), :func:`load_log`;
* checkpoints: :func:`encode_checkpoint` / :func:`decode_checkpoint` (``MAGIC | length | SHA-256 | npz``),
  :func:`save_checkpoint`, :func:`load_latest_checkpoint` (skips corrupt files, refuses another run's);
* the folder: :func:`run_identity`, :func:`open_run` (read an existing run), :func:`writing_run` (create or
  resume, holding a lock), :class:`RunFolder` (paths and readers);
* provenance: :func:`git_commit`, :func:`device_info`, :func:`command_line`, :func:`provenance`;
* the index of stored runs: :func:`list_runs`.

Every failure a user can cause (a missing or truncated file, another run's checkpoint, a folder in use, a
damaged log or configuration, a θ file holding NaN) is a :class:`RunError` — a ``ValueError`` whose one-line
message names the file.

Example (what :func:`star.metatrain.meta_train` does)::

    with writing_run("results/metatrain/my_run", config, resume=False) as run:
        save_theta(theta_snapshot_path(run.path, 0), theta)
        ...                                # append to run.log_path, save_checkpoint(run.checkpoint_dir, ...)
        save_theta(run.final_theta_path, theta)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import hashlib
import io
import json
import os
import platform
import re
import shlex
import struct as _struct
import subprocess
import tempfile
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from star._io import atomic_write_bytes

try:  # POSIX advisory locks; elsewhere the lock is a no-op
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

PyTree = Any

CONFIG = "config.json"
LOG = "log.jsonl"
CHECKPOINTS = "checkpoints"
THETA_SNAPSHOT_DIR = "thetas"
FINAL_THETA = "theta_final.npz"
PROVENANCE = "provenance.json"
NOTE = "NOTE.md"
DAMAGED_LOG = "log.damaged.txt"  # damaged lines of log.jsonl, kept verbatim when a resume repairs the log
META_PARAMS = "meta_params.msgpack"  # the STAR family's optimizer configuration with the final θ
META_CURVE = "meta_curve.json"  # the unperturbed meta-objective of every θ snapshot (star.evaluate.meta_curve)
BASELINES = "baselines.json"  # in a grid's folder: tuned Adam and the nominal optimizer (star.sweep)
SUMMARY = "summary.json"  # window means and slope of the PES meta-loss (python -m star summarize)


def evaluation_file(steps: int) -> str:
    """The file of a run's evaluation over ``steps`` inner steps (a grid's post-processing, :mod:`star.sweep`)."""
    return f"evaluate_{int(steps)}.json"

CHECKPOINT_MAGIC = b"STARCKPT"
_CKPT_RE = re.compile(r"^ckpt_(\d{8})\.ckpt$")
_SNAP_RE = re.compile(r"^theta_(\d{8})\.npz$")
_PROBE_PREFIX = ".write-test-"


class RunError(ValueError):
    """A run folder or one of its files cannot be used; the message names the file and what to do."""


class CheckpointError(RunError):
    """A checkpoint file is corrupted, truncated, or does not fit the run's state."""


# ----------------------------------------------------------------------------------------------------
# files


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


def to_json(obj) -> Any:
    """``obj`` as plain JSON values (numpy scalars and arrays, paths converted), as it reads back from disk."""
    return json.loads(json.dumps(obj, default=_json_default))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically (:func:`atomic_write_bytes`)."""
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def read_json(path: str | os.PathLike, what: str = "file"):
    """Read a JSON file; a missing, unreadable or malformed file is a :class:`RunError` naming it."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise RunError(f"{what} {str(path)!r} does not exist") from None
    except OSError as err:
        raise RunError(f"{what} {str(path)!r} cannot be read ({err.strerror or err})") from None
    except UnicodeDecodeError as err:
        raise RunError(f"{what} {str(path)!r} is not JSON text (not UTF-8: {err.reason} at byte {err.start})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RunError(f"{what} {str(path)!r} is not valid JSON (truncated or corrupt: {err})") from None


# ----------------------------------------------------------------------------------------------------
# θ files and snapshots


def save_theta(path: str | os.PathLike, theta: PyTree) -> None:
    """Save meta-parameters as an ``.npz`` keyed by pytree path (atomic)."""
    flat, _ = jax.tree_util.tree_flatten_with_path(jax.device_get(theta))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **{jax.tree_util.keystr(k): np.asarray(v) for k, v in flat})
    atomic_write_bytes(path, buf.getvalue())


def load_theta(path: str | os.PathLike, template: PyTree) -> PyTree:
    """Load meta-parameters saved by :func:`save_theta` into the structure of ``template``.

    Raises:
        RunError: the file is missing, truncated or corrupt, does not fit ``template``, or holds NaN or inf
            (names the file).
    """
    path = Path(path)
    flat, treedef = jax.tree_util.tree_flatten_with_path(template)
    names = [jax.tree_util.keystr(k) for k, _ in flat]
    if not path.is_file():
        raise RunError(f"θ file {str(path)!r} does not exist")
    try:
        with np.load(path) as z:
            missing = [n for n in names if n not in z.files]
            if missing:
                raise RunError(f"θ file {str(path)!r} does not fit the run's meta-parameters "
                               f"(missing {missing[:3]})")
            arrays = [z[n] for n in names]
    except RunError:
        raise
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError) as err:
        raise RunError(f"θ file {str(path)!r} is truncated or corrupt ({type(err).__name__}: {err})") from None
    for n, a, (_, t) in zip(names, arrays, flat):
        if a.shape != np.shape(t):
            raise RunError(f"θ file {str(path)!r} does not fit the run's meta-parameters ({n} has shape "
                           f"{a.shape}, expected {np.shape(t)})")
        if np.issubdtype(a.dtype, np.number) and not np.all(np.isfinite(a)):
            raise RunError(f"θ file {str(path)!r} holds non-finite values ({n}: {int(np.sum(~np.isfinite(a)))} of "
                           f"{a.size} entries NaN or inf); a meta-training run never writes them, so the file is "
                           "damaged")
    return jax.tree.unflatten(treedef, [jnp.asarray(a) for a in arrays])


def theta_snapshot_path(run_dir: str | os.PathLike, step: int) -> Path:
    """Where θ after ``step`` steps is kept: ``<run>/thetas/theta_<step>.npz``."""
    return Path(run_dir) / THETA_SNAPSHOT_DIR / f"theta_{int(step):08d}.npz"


def list_theta_snapshots(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path), ...]`` of a run folder's θ snapshots, sorted by step."""
    d = Path(run_dir) / THETA_SNAPSHOT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _SNAP_RE.match(p.name))]
    return sorted(found)


# ----------------------------------------------------------------------------------------------------
# the log


@dataclasses.dataclass(frozen=True)
class LogLines:
    """What :func:`read_log` found in a ``log.jsonl``.

    Attributes:
        path: the file.
        records: every line that is a JSON object with an integer ``"step"``, in file order.
        damaged: ``(line number, text)`` of every other non-empty line, except a cut last one.
        cut: ``(line number, text)`` of a last line that lacks its newline and does not parse (a write in
            progress, or cut by a kill), else ``None``.
    """

    path: Path
    records: list
    damaged: list
    cut: tuple | None = None

    def steps(self) -> list[int]:
        return [int(r["step"]) for r in self.records]


def read_log(log_path: str | os.PathLike) -> LogLines:
    """Parse a ``log.jsonl`` line by line: the one parser of run logs (a missing file has no records).

    A damaged line does not hide the records after it (see :class:`LogLines`).
    """
    path = Path(log_path)
    if not path.exists():
        return LogLines(path, [], [])
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as err:
        raise RunError(f"log {str(path)!r} cannot be read ({err.strerror or err})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()  # the newline that ends the last line
    records, damaged = [], []
    for i, line in enumerate(lines, 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            rec = None
        if isinstance(rec, dict) and isinstance(rec.get("step"), int) and not isinstance(rec["step"], bool):
            records.append(rec)
        else:
            damaged.append((i, line))
    cut = None
    if damaged and text and not text.endswith("\n") and damaged[-1][0] == len(lines):
        cut = damaged.pop()
    return LogLines(path, records, damaged, cut)


def _describe_damage(damaged) -> str:
    shown = ", ".join(f"line {i}" for i, _ in damaged[:5]) + (" ..." if len(damaged) > 5 else "")
    return f"{len(damaged)} damaged line{'s' if len(damaged) > 1 else ''} ({shown})"


def _log_for_resume(log_path, last_step: int, saved: list | None) -> tuple[LogLines, list, list]:
    """``(log, kept records, restored steps)`` of :func:`truncate_log`, without writing anything."""
    log = read_log(log_path)
    kept = [r for r in log.records if r["step"] <= last_step]
    missing = sorted(set(range(1, int(last_step) + 1)) - {r["step"] for r in kept})
    by_step = {int(r["step"]): r for r in (saved or []) if isinstance(r, dict) and isinstance(r.get("step"), int)}
    lacking = [s for s in missing if s not in by_step]
    if lacking:
        bad = log.damaged + ([log.cut] if log.cut else [])
        where = f"; {_describe_damage(bad)}" if bad else ""
        raise RunError(f"cannot resume: log {str(log.path)!r} lacks the records of steps {_ranges(lacking)} of the "
                       f"{int(last_step)} the checkpoint holds{where}, and the checkpoint carries no copy of the log "
                       "(written before checkpoints did); nothing was changed: restore the log from a copy, or "
                       "start the run again in another folder")
    kept = sorted(kept + [by_step[s] for s in missing], key=lambda r: r["step"])
    return log, kept, missing


def truncate_log(log_path: str | os.PathLike, last_step: int, saved: list | None = None) -> list[dict]:
    """Prepare a run's log for a resume from the checkpoint of step ``last_step``; returns its records.

    Records of steps after ``last_step`` are dropped (they are redone). Every step ``1..last_step`` must keep
    its record: one that is missing or on a damaged line is restored from ``saved`` (the log records that
    the checkpoint carries, see :func:`star.metatrain.meta_train`), with a warning naming the file and the
    lines; damaged lines are kept verbatim in ``log.damaged.txt`` beside the log. A line cut by a kill after
    the checkpoint is dropped (its step is redone).

    Raises:
        RunError: records of steps up to ``last_step`` are missing and ``saved`` lacks them (checkpoints written
            before they carried the log): the log is left as it was and the resume refused.
    """
    log, kept, missing = _log_for_resume(log_path, last_step, saved)
    path, damage = log.path, log.damaged
    if missing:
        bad = log.damaged + ([log.cut] if log.cut else [])
        warnings.warn(f"log {str(path)!r}: the records of steps {_ranges(missing)} were missing"
                      + (f" ({_describe_damage(bad)})" if bad else "") + " and are restored from the checkpoint",
                      UserWarning, stacklevel=2)
    elif damage:
        warnings.warn(f"log {str(path)!r}: {_describe_damage(damage)} moved to {DAMAGED_LOG} (every step up to the "
                      f"checkpoint's {int(last_step)} has its record)", UserWarning, stacklevel=2)
    if damage:
        with open(path.parent / DAMAGED_LOG, "a") as f:
            f.write(f"# {utc_now()}: damaged lines of {path.name}, kept on resume from step {int(last_step)}\n")
            f.writelines(f"line {i}: {text}\n" for i, text in damage)
            f.flush()
            os.fsync(f.fileno())
    if path.exists() or kept:
        atomic_write_bytes(path, "".join(json.dumps(r) + "\n" for r in kept).encode())
    return kept


def _ranges(steps) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3, 7"``."""
    out, steps = [], sorted(steps)
    i = 0
    while i < len(steps):
        j = i
        while j + 1 < len(steps) and steps[j + 1] == steps[j] + 1:
            j += 1
        out.append(str(steps[i]) if i == j else f"{steps[i]}-{steps[j]}")
        i = j + 1
    return ", ".join(out)


def load_log(run_dir: str | os.PathLike) -> dict:
    """The per-step metrics of a run folder's ``log.jsonl`` as ``{name: np.ndarray}`` (``None`` → NaN).

    For the book: ``log = load_log("results/metatrain/star_fmnist_cpu"); plt.plot(log["step"], log["meta_loss"])``.
    A last line without its newline (being written, or cut by a kill) is ignored; any other damaged line is
    skipped with a warning naming the file and the line, and the records after it are kept.
    """
    path = Path(run_dir) / LOG
    if not path.exists():
        raise RunError(f"run_dir {str(run_dir)!r} has no {LOG}")
    log = read_log(path)
    if log.damaged:
        warnings.warn(f"log {str(path)!r}: {_describe_damage(log.damaged)} skipped", UserWarning, stacklevel=2)
    recs = log.records
    keys = sorted({k for r in recs for k in r})
    return {k: np.asarray([np.nan if r.get(k) is None else r[k] for r in recs], dtype=np.float64) for k in keys}


# ----------------------------------------------------------------------------------------------------
# checkpoints


def encode_checkpoint(state: PyTree, meta: dict) -> bytes:
    """Serialise a pytree: ``MAGIC | payload length (8 bytes) | SHA-256 (32 bytes) | npz payload``."""
    leaves = jax.tree.leaves(jax.device_get(state))
    arrays = {f"leaf_{i:05d}": np.asarray(x) for i, x in enumerate(leaves)}
    arrays["meta_json"] = np.frombuffer(json.dumps(meta, sort_keys=True, default=_json_default).encode(), np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    payload = buf.getvalue()
    return CHECKPOINT_MAGIC + _struct.pack("<Q", len(payload)) + hashlib.sha256(payload).digest() + payload


def _verified_payload(data: bytes) -> bytes:
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
    return payload


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """The metadata of a checkpoint file (its digest verified), without decoding the state.

    Raises:
        CheckpointError: the file is corrupted or truncated.
    """
    try:
        with np.load(io.BytesIO(_verified_payload(Path(path).read_bytes()))) as z:
            return json.loads(bytes(z["meta_json"]).decode())
    except CheckpointError:
        raise
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"unreadable checkpoint ({type(err).__name__}: {err})") from None


def decode_checkpoint(data: bytes, template: PyTree) -> tuple[PyTree, dict]:
    """Inverse of :func:`encode_checkpoint`; verifies the digest and that leaves match ``template``.

    Raises:
        CheckpointError: bad magic, truncated payload, digest mismatch, or leaves that do not fit.
    """
    with np.load(io.BytesIO(_verified_payload(data))) as z:
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


def save_checkpoint(ckpt_dir: str | os.PathLike, state: PyTree, meta: dict, keep: int = 3,
                    step: int | None = None) -> Path:
    """Atomically write ``state`` as ``ckpt_<step>.ckpt`` and delete all but the newest ``keep``.

    ``step`` defaults to ``int(state.step)``. ``meta`` should carry the run's ``"identity"``
    (:func:`run_identity`) and ``"config"``, which :func:`load_latest_checkpoint` checks.
    """
    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    step = int(state.step) if step is None else int(step)
    path = checkpoint_path(ckpt_dir, step)
    atomic_write_bytes(path, encode_checkpoint(state, dict(meta, step=step)))
    for _, old in list_checkpoints(ckpt_dir)[keep:]:
        old.unlink(missing_ok=True)
    return path


def load_latest_checkpoint(ckpt_dir: str | os.PathLike, template: PyTree, *, identity: str | None = None,
                           config: dict | None = None, resumable=()):
    """The newest checkpoint that verifies, as ``(state, meta, path)``, or ``None`` if there is none.

    Corrupted or truncated files are skipped with a ``UserWarning`` naming them; the previous good one
    is used. With ``identity`` (the folder's :func:`run_identity`), a checkpoint that verifies but belongs to
    another run (other settings or seed) is refused: :class:`RunError` naming the file and, where the
    checkpoint records its configuration, the differing settings. Checkpoints written before identities were
    recorded carry their configuration, from which the identity is recomputed; one with neither is refused.
    """
    for _, path in list_checkpoints(ckpt_dir):
        try:
            state, meta = decode_checkpoint(path.read_bytes(), template)
        except (CheckpointError, OSError, ValueError, KeyError) as err:
            warnings.warn(f"skipping unreadable checkpoint {path} ({err}); falling back to the previous one",
                          UserWarning, stacklevel=2)
            continue
        if identity is not None:
            check_checkpoint_identity(path, meta, identity, config, resumable)
        return state, meta, path
    return None


def check_checkpoint_identity(path, meta: dict, identity: str, config: dict | None = None, resumable=()) -> None:
    """Refuse (:class:`RunError`) a checkpoint whose metadata show another run than ``identity``."""
    saved_cfg = meta.get("config")
    found = meta.get("identity") or (run_identity(saved_cfg, resumable) if isinstance(saved_cfg, dict) else None)
    if found is None:
        raise RunError(f"checkpoint {str(path)!r} records no run identity or configuration; it cannot be "
                       "shown to belong to this run: remove it (or the checkpoints/ folder) to start over")
    if found != identity:
        diff = config_diff(saved_cfg, config, resumable) if isinstance(saved_cfg, dict) and config else []
        detail = f" ({'; '.join(diff)})" if diff else ""
        raise RunError(f"checkpoint {str(path)!r} belongs to another run: identity {found} != this "
                       f"run's {identity}{detail}; refusing to resume from it")


# ----------------------------------------------------------------------------------------------------
# the run folder


def run_identity(config: dict, resumable=()) -> str:
    """A short hash of a run's configuration (seed included), without the fields that may change on resume.

    Two runs compute the same thing exactly when their identities agree; a checkpoint records the identity
    of the run that wrote it.
    """
    cfg = {k: v for k, v in to_json(dict(config)).items() if k not in set(resumable)}
    return hashlib.sha256(json.dumps(cfg, sort_keys=True).encode()).hexdigest()[:16]


def config_diff(old: dict, new: dict, ignore=()) -> list[str]:
    """``["key: saved a != requested b", ...]`` for every differing key not in ``ignore``."""
    keys = sorted(set(old) | set(new))
    return [f"{k}: saved {old.get(k)!r} != requested {new.get(k)!r}" for k in keys
            if k not in ignore and old.get(k) != new.get(k)]


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """The paths of a run folder and readers for its files (it need not exist yet)."""

    path: Path

    def __post_init__(self):
        object.__setattr__(self, "path", Path(self.path))

    @property
    def name(self) -> str:
        return self.path.name

    config_path = property(lambda self: self.path / CONFIG)
    log_path = property(lambda self: self.path / LOG)
    checkpoint_dir = property(lambda self: self.path / CHECKPOINTS)
    final_theta_path = property(lambda self: self.path / FINAL_THETA)
    provenance_path = property(lambda self: self.path / PROVENANCE)
    note_path = property(lambda self: self.path / NOTE)

    def config(self, require: dict | None = None) -> dict:
        """The run's ``config.json``, a JSON object; with ``require`` (``{field: type}``, e.g.
        :data:`META_TRAIN_FIELDS`) those fields must be present with those types.

        Raises:
            RunError: the folder holds no run, or the file is unreadable, not an object, or lacks a field
                (names the file).
        """
        if not self.config_path.exists():
            raise RunError(f"run folder {str(self.path)!r} holds no run (no {CONFIG})")
        cfg = read_json(self.config_path, "run configuration")
        if not isinstance(cfg, dict):
            raise RunError(f"run configuration {str(self.config_path)!r} is not a JSON object (got a "
                           f"{type(cfg).__name__}); it was not written by meta-train")
        bad = [f"{k} ({t.__name__})" for k, t in (require or {}).items()
               if not isinstance(cfg.get(k), t) or isinstance(cfg.get(k), bool)]
        if bad:
            raise RunError(f"run configuration {str(self.config_path)!r} lacks {', '.join(bad)}: it was not "
                           "written by meta-train, or is damaged")
        return cfg

    def provenance(self) -> dict:
        """The run's ``provenance.json`` (``{}`` if it has none yet).

        Raises:
            RunError: the file is unreadable, not a JSON object, or its ``sessions`` is not a list.
        """
        if not self.provenance_path.exists():
            return {}
        prov = read_json(self.provenance_path, "provenance")
        if not isinstance(prov, dict) or not isinstance(prov.get("sessions", []), list):
            raise RunError(f"provenance {str(self.provenance_path)!r} is not a provenance record (a JSON object "
                           "with a list of sessions); restore it or move it away")
        return prov

    def log(self) -> dict:
        return load_log(self.path)

    def theta_snapshots(self) -> list[tuple[int, Path]]:
        return list_theta_snapshots(self.path)

    def finished(self) -> bool:
        return self.final_theta_path.exists()

    def final_theta(self, template: PyTree) -> PyTree:
        """θ at the end of the run; a run without ``theta_final.npz`` did not finish (:class:`RunError`)."""
        if not self.final_theta_path.exists():
            raise RunError(f"run {str(self.path)!r} has no {FINAL_THETA}: it did not finish (killed or still "
                           "running); continue it with 'meta-train ... --resume', or use its θ snapshots "
                           "with 'meta-curve'")
        return load_theta(self.final_theta_path, template)

    def newest_checkpoint(self) -> tuple[int, Path, dict] | None:
        """``(step, path, meta)`` of the newest checkpoint whose digest verifies, or ``None``."""
        for step, path in list_checkpoints(self.checkpoint_dir):
            try:
                return step, path, read_checkpoint_meta(path)
            except CheckpointError:
                continue
        return None

    def steps_done(self) -> int:
        """Steps a resume would keep: the newest good checkpoint's, or the last logged step of a finished run."""
        newest = self.newest_checkpoint()
        done = newest[0] if newest else 0
        if self.finished():
            done = max([done, *read_log(self.log_path).steps()])
        return done


#: The fields of a meta-training run's ``config.json`` that its readers need, with their types.
META_TRAIN_FIELDS = {"optimizer": str, "task": str, "horizon": int, "seed": int, "trunc_length": int}


def open_run(path: str | os.PathLike, require: dict | None = META_TRAIN_FIELDS) -> tuple[RunFolder, dict]:
    """``(RunFolder, config)`` of an existing meta-training run (for evaluation; see :meth:`RunFolder.config`).

    Raises:
        RunError: the folder holds no run, or its configuration is damaged or lacks a field of ``require``.
    """
    run = RunFolder(Path(path))
    return run, run.config(require)


@contextlib.contextmanager
def folder_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive advisory lock on the folder itself (``flock`` on its descriptor) while inside.

    Nothing is written; the lock disappears with the process, so a killed run never leaves a stale lock.

    Raises:
        RunError: another process holds it.
    """
    if fcntl is None:  # pragma: no cover
        yield
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunError(f"run folder {str(path)!r} is in use by another process (it holds the folder's "
                           "lock); wait for it to finish or stop it first") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def writing_run(out_dir: str | os.PathLike, config: dict, *, resume: bool, resumable=(),
                total_steps: int | None = None) -> Iterator[RunFolder]:
    """Create a new run folder or open one to resume, and hold its lock while inside the ``with``.

    A new run needs a new or empty folder and writes ``config.json``. A resume needs the folder's saved
    configuration to equal ``config`` except in ``resumable`` fields (recorded anew only once everything is
    checked) and, with ``total_steps``, at least as many steps as the run has done (:meth:`RunFolder.steps_done`);
    its newest good checkpoint must carry the run's identity (:func:`check_checkpoint_identity`).
    Never overwrites a run; a refusal leaves no folder behind that was not there before.

    Raises:
        RunError: the folder is not writable, is a file, holds a different run or other files (without
            ``resume``), has nothing to resume, is locked by another process, its configuration differs,
            or ``total_steps`` is fewer than the steps done.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise RunError(f"out_dir {str(out)!r} exists and is not a folder")
    if resume and not (out / CONFIG).exists():
        raise RunError(f"cannot resume: out_dir {str(out)!r} holds no run (no {CONFIG})")
    missing = [p for p in [out, *out.parents] if not p.exists()]  # innermost first
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=out, prefix=_PROBE_PREFIX, delete=True)
        probe.close()
    except OSError as err:
        _remove_empty(missing)
        raise RunError(f"out_dir {str(out)!r} is not writable ({err.strerror or err})") from None
    created = missing
    run = RunFolder(out)
    json_config = to_json(config)
    new = False
    try:
        with folder_lock(out):
            if run.config_path.exists():
                if not resume:
                    raise RunError(f"out_dir {str(out)!r} already holds a run ({CONFIG}); pass resume=True "
                                   "(--resume) to continue it or choose another folder; nothing was overwritten")
                saved = run.config()
                run.provenance()  # a damaged provenance.json stops the resume now, not after the first step
                diff = config_diff(saved, json_config, resumable)
                if diff:
                    raise RunError("cannot resume: the configuration differs from the saved run in "
                                   + "; ".join(diff))
                newest = run.newest_checkpoint()
                if newest is not None:
                    check_checkpoint_identity(newest[1], newest[2], run_identity(json_config, resumable),
                                              json_config, resumable)
                    _log_for_resume(run.log_path, newest[0], newest[2].get("log"))  # refuse before any change
                done = run.steps_done()
                if total_steps is not None and int(total_steps) < done:
                    raise RunError(f"cannot resume: run {str(out)!r} has already done {done} steps; asking for "
                                   f"{int(total_steps)} would discard some (give at least {done}); "
                                   "nothing was changed")
                if saved != json_config:  # only resumable fields changed: record the new values
                    atomic_write_json(run.config_path, json_config)
            else:
                others = [n for n in os.listdir(out) if not n.startswith(_PROBE_PREFIX)]
                if others:
                    raise RunError(f"out_dir {str(out)!r} is not empty and holds no run "
                                   f"({', '.join(sorted(others)[:5])}); choose an empty or new folder; "
                                   "nothing was overwritten")
                atomic_write_json(run.config_path, json_config)
                new = True
            created = []  # the folder now holds a run: keep it
            try:
                yield run
            except BaseException:
                if new and _discard_if_nothing_done(run):
                    created = missing  # a new run that failed before its first step leaves nothing behind
                raise
    finally:
        _remove_empty(created)


def _discard_if_nothing_done(run: RunFolder) -> bool:
    """Remove what a new run wrote before its first step (config, empty log, θ snapshot 0), so that a retry
    with other settings is not refused; ``False`` (nothing removed) once it has logged a step or more."""
    if (read_log(run.log_path).records or list_checkpoints(run.checkpoint_dir) or run.final_theta_path.exists()
            or run.provenance_path.exists()):
        return False
    for p in (theta_snapshot_path(run.path, 0), run.log_path, run.config_path):
        p.unlink(missing_ok=True)
    for d in (run.path / THETA_SNAPSHOT_DIR, run.checkpoint_dir):
        with contextlib.suppress(OSError):
            d.rmdir()
    return True


def _remove_empty(dirs) -> None:
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            break


# ----------------------------------------------------------------------------------------------------
# provenance


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """``HEAD`` of the repository holding ``path`` (default: this package), ``+dirty`` with tracked changes.

    ``$STAR_GIT_COMMIT``, when set, overrides this: whoever copies the tree to another machine (a remote
    accelerator) names the commit it copied, since a ``.git`` travelling with the copy may be stale or absent.
    """
    if os.environ.get("STAR_GIT_COMMIT"):
        return os.environ["STAR_GIT_COMMIT"]
    here = Path(path) if path is not None else Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("+dirty" if dirty else "")) or None


def device_info() -> dict:
    """The accelerator platform, device count and kind, host, CPU count, JAX version and process count."""
    devs = jax.devices()
    info = {"platform": devs[0].platform, "count": len(devs), "kind": devs[0].device_kind,
            "host": platform.node(), "cpu_count": os.cpu_count(), "jax": jax.__version__}
    if jax.process_count() > 1:
        info["processes"] = jax.process_count()
    return info


def command_line(argv, prog=("python", "-m", "star")) -> str:
    """The shell-quoted command ``prog argv...`` (as a user would type it)."""
    return " ".join(shlex.quote(str(a)) for a in [*prog, *argv])


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def provenance(command: str, *, seeds, wall_s: float | None = None, data=None, **extra) -> dict:
    """The provenance record of a result: command, git commit, scale, seeds, wall time, device, data source.

    Args:
        command: the command that produced it (:func:`command_line`).
        seeds: the PRNG seeds (a dict naming what each seeds, or a list).
        wall_s: wall time in seconds.
        data: where the data came from, e.g. ``{"fashion_mnist": "idx files in /usr/share/datasets/..."}``
            (:func:`star.inner.data_sources`); omitted when ``None``.
        extra: further fields (``started_utc``, ...).
    """
    from star.scale import get_scale

    rec = {"command": command, "git_commit": git_commit(), "scale": get_scale().value, "seeds": seeds,
           "wall_s": wall_s, "device": device_info(), "finished_utc": utc_now()}
    if data is not None:
        rec["data"] = data
    rec.update(extra)
    return rec


def write_session_provenance(run_dir: str | os.PathLike, session: dict, *, seeds, data=None, **summary) -> None:
    """Record one session (start → kill or finish) of a resumable run in its ``provenance.json``.

    ``session`` holds at least ``command``, ``git_commit`` and ``started_utc`` (its key among the sessions),
    and ``wall_s`` once it ends. The file keeps every session of the run, the total wall time, and the
    fields of :func:`provenance` for the latest one; ``summary`` adds fields (e.g. ``last_meta_loss``).
    """
    from star.scale import get_scale

    old = RunFolder(run_dir).provenance().get("sessions", [])
    sessions = [s for s in old if s.get("started_utc") != session["started_utc"]] + [dict(session)]
    rec = {
        "command": sessions[0]["command"] if len(sessions) == 1 else [s["command"] for s in sessions],
        "git_commit": session.get("git_commit"),
        "scale": get_scale().value,
        "seeds": seeds,
        "wall_s_total": sum(s.get("wall_s") or 0.0 for s in sessions),
        "device": device_info(),
        "sessions": sessions,
    }
    if data is not None:
        rec["data"] = data
    rec.update(summary)
    atomic_write_json(Path(run_dir) / PROVENANCE, rec)


# ----------------------------------------------------------------------------------------------------
# the index of stored runs


@dataclasses.dataclass(frozen=True)
class StoredRun:
    """One entry of the index of stored results: a run folder or a single JSON measurement."""

    name: str  # path relative to the results root, e.g. "metatrain/star_fmnist8_cpu_n64"
    path: Path
    kind: str  # "run" (a folder with config.json) or "measurement" (a JSON file with provenance)
    command: str | list | None
    scale: str | None
    description: str | None


def _note_heading(path: Path) -> str | None:
    """The first Markdown heading of a NOTE.md, or ``None``."""
    if not path.exists():
        return None
    return next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), None)


def list_runs(root: str | os.PathLike) -> list[StoredRun]:
    """Every stored result under ``root``: run folders (with ``config.json``) and JSON measurements (top-level
    ``provenance`` with a ``command``), sorted by name. A run's description is the first heading of its
    ``NOTE.md``; a measurement's is its ``"description"`` field, else the heading of the ``NOTE.md`` beside it.

    Raises:
        RunError: a ``.json`` file under ``root`` cannot be read as JSON, or a run's provenance is damaged
            (names the file).
    """
    root = Path(root)
    out = []
    for cfg in sorted(root.rglob(CONFIG)):
        run = RunFolder(cfg.parent)
        prov = run.provenance()
        out.append(StoredRun(run.path.relative_to(root).as_posix(), run.path, "run", prov.get("command"),
                             prov.get("scale"), _note_heading(run.note_path)))
    run_dirs = {r.path for r in out}
    for f in sorted(root.rglob("*.json")):
        if any(p in run_dirs for p in f.parents):
            continue
        d = read_json(f, "stored result")  # an unreadable .json among the results stops the index, naming it
        prov = d.get("provenance") if isinstance(d, dict) else None
        if isinstance(prov, dict) and prov.get("command"):
            out.append(StoredRun(f.relative_to(root).as_posix(), f, "measurement", prov["command"],
                                 prov.get("scale"), d.get("description") or _note_heading(f.parent / NOTE)))
    return sorted(out, key=lambda r: r.name)


SCALES = ("smoke", "cpu", "paper")


def run_name_problems(name: str, config: dict, provenance: dict | None = None) -> list[str]:
    """How a stored run's name breaks the naming scheme (empty if it follows it).

    The scheme (``results/README.md``): a single run is ``<category>/<optimizer>_<task>_<scale>[_<what
    differs>]``, e.g. ``metatrain/star_fmnist8_cpu_n64``; a sweep member is ``<category>/<task>_<sweep>/
    <optimizer>[_<what differs>]``, e.g. ``metatrain/fmnist8_grid/star_wd0.1_s0``. ``<task>`` is the registered
    task's name up to its first underscore (``fmnist_mlp`` → ``fmnist``, ``fmnist8_mlp32`` → ``fmnist8``),
    ``<scale>`` the ``STAR_SCALE`` the run was made at (checked against its provenance where recorded).
    """
    parts = name.split("/")
    opt, task = str(config.get("optimizer", "")), str(config.get("task", ""))
    short = task.split("_")[0]
    problems = []
    if len(parts) == 2:
        base = parts[1]
        prefix = f"{opt}_{short}_"
        if not base.startswith(prefix):
            return [f"{name}: should start with '<optimizer>_<task>_' = {prefix!r} (config: optimizer {opt!r}, "
                    f"task {task!r})"]
        scale = base[len(prefix):].split("_")[0]
        if scale not in SCALES:
            problems.append(f"{name}: the part after {prefix!r} should be a scale {SCALES}; got {scale!r}")
        recorded = (provenance or {}).get("scale")
        if recorded is not None and recorded != scale:
            problems.append(f"{name}: named for scale {scale!r} but made at scale {recorded!r}")
    elif len(parts) == 3:
        group, member = parts[1], parts[2]
        if not group.startswith(f"{short}_"):
            problems.append(f"{name}: the sweep folder should start with the task {short + '_'!r}")
        if member != opt and not member.startswith(f"{opt}_"):
            problems.append(f"{name}: a sweep member should start with its optimizer {opt!r}")
    else:
        problems.append(f"{name}: should be <category>/<run> or <category>/<sweep>/<run>")
    return problems


INDEX_START = "<!-- index:start (generated by 'python -m star index'; do not edit by hand) -->"
INDEX_END = "<!-- index:end -->"
_TOKEN_RE = re.compile(r"[A-Za-z0-9_.{}\-/]+")


def _chapter_patterns(book_dir: Path) -> dict[str, list[re.Pattern]]:
    """For every chapter, the names it refers to: literal tokens, and f-string templates as patterns."""
    out = {}
    for f in sorted(book_dir.glob("*.ipynb")) + sorted(book_dir.glob("*.md")):
        text = f.read_text()
        if f.suffix == ".ipynb":  # search the cells' sources only
            text = "\n".join("".join(c.get("source", [])) for c in json.loads(text).get("cells", []))
        pats = set()
        for tok in _TOKEN_RE.findall(text):
            tok = tok.strip("./-")
            literal = tok.split("{", 1)[0]
            # too unspecific to name a result: a short last component ("cpu"), or a template whose fixed
            # part is short ("{x}.json"); a template of a path ("results/ood/cpu/{task}.json") names its files
            if len(literal if "{" in tok else literal.rsplit("/", 1)[-1]) < 6:
                continue
            pats.add(_template_regex(tok))
        out[f.stem] = [re.compile(p) for p in pats]
    return out


def _template_regex(tok: str) -> str:
    parts = re.split(r"\{[^{}]*\}", tok)
    return "[^/]*".join(re.escape(p) for p in parts)


def chapters_using(name: str, patterns: dict[str, list[re.Pattern]]) -> list[str]:
    """The chapters that name a stored result (its path under ``results/``, or its last component)."""
    keys = {name, f"results/{name}", name.rsplit("/", 1)[-1]}
    return [ch for ch, pats in patterns.items() if any(p.fullmatch(k) for p in pats for k in keys)]


def index_rows(root: str | os.PathLike, book_dir: str | os.PathLike) -> list[dict]:
    """The rows of the results index: one per stored run or measurement, one per sweep folder."""
    root, book_dir = Path(root), Path(book_dir)
    patterns = _chapter_patterns(book_dir) if book_dir.is_dir() else {}
    rows, groups = [], {}
    for r in list_runs(root):
        parts = r.name.split("/")
        if r.kind == "run" and len(parts) > 2:  # a member of a sweep: one row per sweep folder
            groups.setdefault("/".join(parts[:-1]), []).append(r)
            continue
        rows.append({"name": r.name, "kind": r.kind, "description": r.description, "command": r.command,
                     "scale": r.scale, "chapters": chapters_using(r.name, patterns)})
    for g, members in groups.items():
        desc = _note_heading(root / g / NOTE)
        scales = sorted({m.scale for m in members if m.scale})
        used = sorted({c for m in members for c in chapters_using(m.name, patterns)} |
                      set(chapters_using(g, patterns)))
        rows.append({"name": g, "kind": "sweep: one row for all its runs", "description": desc,
                     "command": members[0].command, "scale": ", ".join(scales) or None, "chapters": used})
    return sorted(rows, key=lambda row: row["name"])


def _cell(x) -> str:
    if x is None or x == []:
        return "—"
    if isinstance(x, list):
        x = x[-1] if all(isinstance(c, str) and " " in c for c in x) else ", ".join(map(str, x))
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_index(rows: list[dict]) -> str:
    """The generated Markdown table of :func:`index_rows` (between the index markers)."""
    lines = [INDEX_START, "",
             "| result | what it shows | command (as recorded; the latest session of a resumed run) | scale | "
             "used by |", "|---|---|---|---|---|"]
    for row in rows:
        kind = "" if row["kind"] in ("run", "measurement") else f" ({row['kind']})"
        cmd = _cell(row["command"])
        lines.append(f"| `{row['name']}`{kind} | {_cell(row['description'])} | "
                     f"{'`' + cmd + '`' if cmd != '—' else cmd} | {_cell(row['scale'])} | "
                     f"{', '.join(f'`book/{c}`' for c in row['chapters']) or '—'} |")
    lines += ["", INDEX_END]
    return "\n".join(lines)


def update_index(text: str, root: str | os.PathLike, book_dir: str | os.PathLike) -> str:
    """``text`` (a README) with its generated index replaced by the current one (appended if absent)."""
    table = render_index(index_rows(root, book_dir))
    if INDEX_START in text and INDEX_END in text:
        head, rest = text.split(INDEX_START, 1)
        return head + table + rest.split(INDEX_END, 1)[1]
    return (text.rstrip("\n") + "\n\n" if text else "") + table + "\n"
