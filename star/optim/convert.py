"""Meta-parameter layouts and files.

* :func:`from_reference` / :func:`to_reference` convert between ``learned_optimization``'s haiku layout
  (``theta['nn']['~']['w0']``, ``theta['momentum_decays']``, ...; also the flat ``nn/~/w0`` or
  ``nn/w0`` keys of an npz) and ours (``theta['mlp']['w0']``, ``theta['decay_logits']['momentum']``).
* :func:`save_meta_params` / :func:`load_meta_params` store meta-parameters together with their
  :class:`~star.optim.star.StarConfig` (flax msgpack); loading checks the architecture.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from star._io import atomic_write_bytes
from star.optim.star import StarConfig, validate_meta_params

_DECAYS = (("momentum", "momentum_decays"), ("rms", "rms_decays"), ("adafactor", "adafactor_decays"))
FORMAT = "star-meta-params"
FORMAT_VERSION = 1


def _reference_mlp(theta_ref: Mapping) -> Mapping:
    nn = theta_ref.get("nn")
    if not isinstance(nn, Mapping):
        raise ValueError("theta_ref must have an 'nn' entry (the haiku MLP parameters)")
    if "~" in nn and isinstance(nn["~"], Mapping):
        return nn["~"]
    return nn


def from_reference(theta_ref: Mapping, cfg: StarConfig | None = None) -> dict:
    """Reference (``MLPNomLOpt`` / ``AdafacMLPLOpt``) meta-parameters -> our layout.

    Accepts ``{'nn': {'~': {'w0', 'b0', ...}}, 'momentum_decays', 'rms_decays', 'adafactor_decays'}``
    (haiku) or the same with ``'nn': {'w0', ...}``.  If ``cfg`` is given, the result is checked against it.
    """
    if not isinstance(theta_ref, Mapping):
        raise ValueError(f"theta_ref must be a dict; got {type(theta_ref).__name__}")
    missing = [r for _, r in _DECAYS if r not in theta_ref]
    if missing:
        raise ValueError(f"theta_ref is missing the decay logits {missing}")
    nn = _reference_mlp(theta_ref)
    mlp = {k: jnp.asarray(v, jnp.float32) for k, v in nn.items()}
    out = {"mlp": mlp, "decay_logits": {o: jnp.asarray(theta_ref[r], jnp.float32) for o, r in _DECAYS}}
    if cfg is not None:
        validate_meta_params(cfg, out, name="theta_ref")
    return out


def to_reference(theta: Mapping) -> dict:
    """Our meta-parameters -> the reference's haiku layout ``{'nn': {'~': {...}}, '*_decays': ...}``."""
    out = {"nn": {"~": {k: v for k, v in theta["mlp"].items()}}}
    for o, r in _DECAYS:
        out[r] = theta["decay_logits"][o]
    return out


def save_meta_params(path: str | os.PathLike, cfg: StarConfig, theta: Mapping, metadata: Mapping | None = None) -> None:
    """Write ``theta`` and its configuration to ``path`` (flax msgpack), atomically."""
    validate_meta_params(cfg, theta)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": json.dumps(cfg.to_dict(), sort_keys=True),
        "metadata": json.dumps(dict(metadata or {}), sort_keys=True),
        "theta": jax.tree_util.tree_map(lambda x: np.asarray(x, np.float32), dict(theta)),
    }
    atomic_write_bytes(path, serialization.msgpack_serialize(payload))


def load_meta_params(path: str | os.PathLike, cfg: StarConfig | None = None):
    """Read ``(cfg, theta)`` written by :func:`save_meta_params`.

    If ``cfg`` is given, the stored meta-parameters must fit its architecture (MLP sizes, number of
    heads, number of decays): otherwise ``ValueError``.  The returned config is then ``cfg``. Non-finite
    meta-parameters are refused (``ValueError`` naming the file).
    """
    try:
        with open(path, "rb") as f:
            payload: Any = serialization.msgpack_restore(f.read())
    except FileNotFoundError:
        raise ValueError(f"path {os.fspath(path)!r} does not exist") from None
    except Exception as err:  # msgpack raises several types on a truncated or garbled file
        raise ValueError(f"path {os.fspath(path)!r} is not a readable STAR meta-parameter file (truncated or "
                         f"corrupt: {type(err).__name__}: {err})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"path {os.fspath(path)!r} is not a STAR meta-parameter file (format {FORMAT!r})")
    try:
        stored = StarConfig.from_dict(json.loads(payload["config"]))
        theta = jax.tree_util.tree_map(lambda x: jnp.asarray(x, jnp.float32), payload["theta"])
        validate_meta_params(stored, theta)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"path {os.fspath(path)!r}: its meta-parameters or configuration are damaged "
                         f"({err})") from None
    if cfg is None:
        return stored, theta
    try:
        validate_meta_params(cfg, theta)
    except ValueError as e:
        raise ValueError(
            f"cfg: the meta-parameters in {os.fspath(path)!r} were saved for hidden_size={stored.hidden_size}, "
            f"hidden_layers={stored.hidden_layers}, num_outputs={stored.num_outputs}; they do not fit the "
            f"requested config ({e})"
        ) from None
    return cfg, theta
