"""Files of a run folder: atomic JSON, θ files (``.npz`` keyed by pytree path), and the one error type.

Everything is written atomically (:func:`star._io.atomic_write_bytes`: temporary file in the same folder,
``fsync``, ``os.replace``, ``fsync`` of the folder), so a process killed at any moment leaves only complete
files. Every failure a user can cause (a missing, truncated or damaged file) is a :class:`RunError` — a
``ValueError`` whose one-line message names the file.
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from star._io import atomic_write_bytes

__all__ = ["RunError", "CheckpointError", "to_json", "atomic_write_bytes", "atomic_write_json", "read_json",
           "save_theta", "load_theta", "utc_now"]

PyTree = Any


class RunError(ValueError):
    """A run folder or one of its files cannot be used; the message names the file and what to do."""


class CheckpointError(RunError):
    """A checkpoint file is corrupted, truncated, or does not fit the run's state."""



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



def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
