"""Checkpoints of a run folder: the complete state every few steps, with the identity of the run that wrote it.

A checkpoint file is ``MAGIC | payload length (8 bytes) | SHA-256 (32 bytes) | npz payload``
(:func:`encode_checkpoint`); :func:`load_latest_checkpoint` skips corrupt files and refuses another run's
(:func:`run_identity`, :func:`check_checkpoint_identity`).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import struct as _struct
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from star.runs.io import CheckpointError, RunError, _json_default, atomic_write_bytes, to_json

__all__ = ["CHECKPOINT_MAGIC", "encode_checkpoint", "decode_checkpoint", "read_checkpoint_meta", "checkpoint_path",
           "list_checkpoints", "save_checkpoint", "load_latest_checkpoint", "check_checkpoint_identity",
           "run_identity", "config_diff"]

PyTree = Any

CHECKPOINT_MAGIC = b"STARCKPT"
_CKPT_RE = re.compile(r"^ckpt_(\d{8})\.ckpt$")


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

