"""The paper's released optimizers: ``learned_optimization``'s pretrained STAR-family checkpoints.

``learned_optimization/research/general_lopt/pretrained_optimizers.py`` (commit 32186aa) lists the
checkpoints of this paper's runs under names such as
``may27_2022_jamesnomop__best_arch2__wd0.1_bbnormTrue_stepmult0.001_nomstep0.001_rep0``, stored in a
public bucket as ``<name>/params`` next to the run's ``config.gin``. The name carries the settings:

* ``wd`` — the outer (meta-training) weight decay as a multiple of the outer learning rate (App. C.2);
  it shaped θ but is not an optimizer setting;
* ``bbnorm`` → ``normalize_blackbox`` (the Adam-style preconditioner of the blackbox term, App. C.2);
* ``stepmult`` → ``step_mult`` (0 removes the blackbox term: the *Hyperparam* optimizer);
* ``nomstep`` → ``nominal_stepsize`` (0 removes the nominal term: *No Nom.*);
* ``rep`` — the replicate (meta-training seed).

``config.gin``, when present, may bind further ``MLPNomLOpt`` arguments (``exp_mult``, sizes, decays,
controllers); those bindings are applied too, the name's settings win. ``params`` is
``flax.serialization.to_bytes`` of a record ``{params: θ (haiku layout), gen_id, step}``; θ is
converted to our layout with :func:`star.optim.convert.from_reference`.

:func:`load_released` reads ``<local_dir>/<name>/params`` when a local copy is given, else a cached copy
(``~/.cache/star/released/``), else fetches the files over HTTPS. Offline it raises
:class:`ReleasedUnavailableError` within about a second.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from flax import serialization

from star.data_sources import DataUnavailableError, host_reachable
from star.optim.convert import from_reference
from star.optim.star import StarConfig

__all__ = ["BUCKET_URL", "PAPER_RELEASED", "DEFAULT_RELEASED", "ReleasedUnavailableError", "ReleasedOptimizer",
           "parse_name", "parse_gin", "config_for", "read_checkpoint", "load_released", "preset_name"]

BUCKET_URL = "https://storage.googleapis.com/gresearch/learned_optimization/pretrained_lopts"
HOST = ("storage.googleapis.com", 443)  # where the released checkpoints are downloaded from
_PREFIX = "may27_2022_jamesnomop__best_arch2__"
PAPER_RELEASED = tuple(
    f"{_PREFIX}wd{wd}_bbnorm{bb}_stepmult{sm}_nomstep{ns}_rep{r}"
    for wd, bb, sm, ns in (("0.0", "False", "0", "0.001"), ("0.0", "False", "0.001", "0.0"),
                           ("0.0", "True", "0.001", "0.001"), ("1.0", "True", "0.001", "0.001"),
                           ("0.1", "True", "0.001", "0.001"), ("0.5", "True", "0.001", "0.001"))
    for r in (0, 1))
# The STAR (wd 0.1), Hyperparam and No-Nom runs, replicate 0: the rows the chapter adds when online.
DEFAULT_RELEASED = (
    f"{_PREFIX}wd0.1_bbnormTrue_stepmult0.001_nomstep0.001_rep0",
    f"{_PREFIX}wd0.0_bbnormFalse_stepmult0_nomstep0.001_rep0",
    f"{_PREFIX}wd0.0_bbnormFalse_stepmult0.001_nomstep0.0_rep0",
)
_NAME_RE = re.compile(r"^.*__wd(?P<wd>[0-9.]+)_bbnorm(?P<bbnorm>True|False)_stepmult(?P<stepmult>[0-9.e-]+)"
                      r"_nomstep(?P<nomstep>[0-9.e-]+)_rep(?P<rep>\d+)$")
# config.gin arguments of MLPNomLOpt that map one-to-one onto StarConfig fields
_GIN_FIELDS = {f.name for f in dataclasses.fields(StarConfig)} - {"num_outputs"}


class ReleasedUnavailableError(DataUnavailableError):
    """A released checkpoint is neither given locally nor cached, and cannot be downloaded here."""


@dataclasses.dataclass(frozen=True)
class ReleasedOptimizer:
    """A released checkpoint converted: its config, θ (our layout), the stored step, the name's settings."""

    name: str
    cfg: StarConfig
    theta: dict
    step: int
    settings: dict
    preset: str
    source: str


def parse_name(name: str) -> dict:
    """The settings encoded in a released run's name (see the module docstring).

    Raises:
        ValueError: the name does not have the ``…__wd<x>_bbnorm<b>_stepmult<s>_nomstep<n>_rep<r>`` form.
    """
    m = _NAME_RE.match(name) if isinstance(name, str) else None
    if m is None:
        raise ValueError(f"name must look like '{_PREFIX}wd0.1_bbnormTrue_stepmult0.001_nomstep0.001_rep0'; "
                         f"got {name!r}")
    return {"outer_weight_decay": float(m["wd"]), "normalize_blackbox": m["bbnorm"] == "True",
            "step_mult": float(m["stepmult"]), "nominal_stepsize": float(m["nomstep"]), "rep": int(m["rep"])}


def parse_gin(text: str) -> dict:
    """``MLPNomLOpt.<arg> = <python literal>`` bindings of a ``config.gin`` (other lines are ignored)."""
    out = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        m = re.match(r"^(?:[\w./]+/)?MLPNomLOpt\.(\w+)\s*=\s*(.+)$", line)
        if not m:
            continue
        try:
            out[m[1]] = ast.literal_eval(m[2])
        except (ValueError, SyntaxError):
            continue  # a gin reference (@fn) or macro: not a plain setting
    return out


def preset_name(cfg: StarConfig) -> str:
    """Which member of the family a config is: star, hyperparam, star_nonom or star_nopre."""
    if cfg.step_mult == 0.0:
        return "hyperparam"
    if cfg.nominal_stepsize == 0.0:
        return "star_nonom"
    return "star" if cfg.normalize_blackbox else "star_nopre"


def config_for(name: str, gin_text: str | None = None) -> StarConfig:
    """The :class:`StarConfig` of a released run: its ``config.gin`` bindings, then the name's settings."""
    settings = parse_name(name)
    fields = {}
    for k, v in parse_gin(gin_text or "").items():
        if k in _GIN_FIELDS:
            fields[k] = tuple(v) if isinstance(v, list) else v
    fields.update(normalize_blackbox=settings["normalize_blackbox"], step_mult=settings["step_mult"],
                  nominal_stepsize=settings["nominal_stepsize"])
    return StarConfig(**fields)


def read_checkpoint(data: bytes) -> tuple:
    """``(theta_ref, gen_id, step)`` from the bytes of a ``params`` file (flax msgpack).

    Raises:
        ValueError: the bytes are not such a record.
    """
    try:
        rec = serialization.msgpack_restore(data)
    except Exception as exc:  # msgpack raises several types for garbage
        raise ValueError(f"data is not a flax msgpack checkpoint: {exc}") from None
    if not isinstance(rec, Mapping) or not {"params", "step"} <= set(rec):
        raise ValueError(f"data must hold a record with fields params, gen_id, step; got "
                         f"{sorted(rec) if isinstance(rec, Mapping) else type(rec).__name__}")
    return rec["params"], rec.get("gen_id", ""), int(rec["step"])


def _default_cache() -> Path:
    return Path(os.environ.get("STAR_CACHE_DIR", Path.home() / ".cache" / "star")) / "released"


def _fetch(url: str, dest: Path, timeout: float) -> bool:
    """Download ``url`` to ``dest`` (atomically); False on HTTP 404."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return False
        raise
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return True


def load_released(name: str, *, local_dir: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None, download: bool = True,
                  timeout: float = 60.0) -> ReleasedOptimizer:
    """Load the released checkpoint ``name`` as our config and θ.

    Args:
        name: a released run (e.g. one of :data:`PAPER_RELEASED`).
        local_dir: a folder holding ``<name>/params`` (and optionally ``<name>/config.gin``); if given,
            nothing is downloaded.
        cache_dir: where downloads are kept (default ``$STAR_CACHE_DIR/released`` or
            ``~/.cache/star/released``); a cached copy is used without network access.
        download: allow fetching over HTTPS when there is no local or cached copy.

    Raises:
        ValueError: a malformed name or checkpoint, or a θ that does not fit the config.
        ReleasedUnavailableError: no local or cached copy and no download possible (offline: ~1 s).
    """
    parse_name(name)  # ValueError before any I/O
    if local_dir is not None:
        folder = Path(local_dir) / name
        if not (folder / "params").is_file():
            raise ReleasedUnavailableError(f"local_dir={str(local_dir)!r} has no {name}/params")
        source = f"local copy {folder}"
    else:
        folder = Path(cache_dir) if cache_dir is not None else _default_cache()
        folder = folder / name
        source = f"cached copy of {BUCKET_URL}/{name}"
        if not (folder / "params").is_file():
            if not download:
                raise ReleasedUnavailableError(f"{name} is not cached in {folder.parent} and download=False")
            if not host_reachable(HOST):
                raise ReleasedUnavailableError(
                    f"{name}: no local or cached copy, and {HOST[0]} is unreachable (offline?). Fetch "
                    f"{BUCKET_URL}/{name}/params (and config.gin) on a machine with internet access and "
                    f"pass local_dir=")
            try:
                if not _fetch(f"{BUCKET_URL}/{name}/params", folder / "params", timeout):
                    raise ReleasedUnavailableError(f"{BUCKET_URL}/{name}/params does not exist (HTTP 404)")
                _fetch(f"{BUCKET_URL}/{name}/config.gin", folder / "config.gin", timeout)
            except (OSError, urllib.error.URLError) as err:
                raise ReleasedUnavailableError(f"{name}: download failed: {err}") from None
            source = f"downloaded from {BUCKET_URL}/{name}"
    gin = folder / "config.gin"
    cfg = config_for(name, gin.read_text() if gin.is_file() else None)
    theta_ref, _, step = read_checkpoint((folder / "params").read_bytes())
    theta = from_reference(theta_ref, cfg)
    return ReleasedOptimizer(name=name, cfg=cfg, theta=theta, step=step, settings=parse_name(name),
                             preset=preset_name(cfg), source=source)
