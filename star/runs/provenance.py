"""Provenance of a result: the command, git commit, scale, seeds, wall time, device and data source.

:func:`provenance` is the record of a one-shot result (stored inside its JSON); a resumable run keeps every
session in its folder's provenance file (:func:`write_session_provenance`).
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
from pathlib import Path

import jax

from star.runs.folder import RunFolder
from star.runs.io import atomic_write_json, utc_now
from star.runs.names import PROVENANCE

__all__ = ["git_commit", "device_info", "command_line", "utc_now", "provenance", "write_session_provenance"]


def git_commit(path: str | os.PathLike | None = None) -> str | None:
    """``HEAD`` of the repository holding ``path`` (default: this package), ``+dirty`` with tracked changes.

    ``$STAR_GIT_COMMIT``, when set, overrides this: whoever copies the tree to another machine (a remote
    accelerator) names the commit it copied, since a ``.git`` travelling with the copy may be stale or absent.
    """
    if os.environ.get("STAR_GIT_COMMIT"):
        return os.environ["STAR_GIT_COMMIT"]
    here = Path(path) if path is not None else Path(__file__).resolve().parents[2]
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

