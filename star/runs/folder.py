"""The run folder: its paths, typed readers for its files, and the one way to create or resume a run.

* :class:`RunFolder` — paths and readers (config, provenance, log, θ, meta-curve, evaluations, baselines);
* :func:`open_run` — an existing meta-training run with its configuration checked;
* :func:`writing_run` — create or resume a run, holding the folder's lock (:func:`folder_lock`);
* θ snapshots: :func:`theta_snapshot_path`, :func:`list_theta_snapshots`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from star.runs.checkpoints import (
    CheckpointError,
    check_checkpoint_identity,
    config_diff,
    list_checkpoints,
    read_checkpoint_meta,
    run_identity,
)
from star.runs.io import RunError, atomic_write_json, load_theta, read_json, to_json
from star.runs.log import LogLines, _log_for_resume, load_log, read_log
from star.runs.names import (
    BASELINES,
    CHECKPOINTS,
    CONFIG,
    FINAL_THETA,
    LOG,
    META_CURVE,
    NOTE,
    PROVENANCE,
    THETA_SNAPSHOT_DIR,
    evaluation_file,
    theta_snapshot_name,
)
from star.runs.schemas import Baselines, Evaluation, MetaCurve, read_document

try:  # POSIX advisory locks; elsewhere the lock is a no-op
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

__all__ = ["RunFolder", "StoredRun", "read_baselines", "META_TRAIN_FIELDS", "open_run", "folder_lock", "writing_run",
           "theta_snapshot_path", "list_theta_snapshots"]

PyTree = Any

_SNAP_RE = re.compile(r"^theta_(\d{8})\.npz$")
_PROBE_PREFIX = ".write-test-"


def theta_snapshot_path(run_dir: str | os.PathLike, step: int) -> Path:
    """Where θ after ``step`` steps is kept: ``<run>/thetas/theta_<step>.npz``."""
    return Path(run_dir) / THETA_SNAPSHOT_DIR / theta_snapshot_name(step)


def list_theta_snapshots(run_dir: str | os.PathLike) -> list[tuple[int, Path]]:
    """``[(step, path), ...]`` of a run folder's θ snapshots, sorted by step."""
    d = Path(run_dir) / THETA_SNAPSHOT_DIR
    if not d.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in d.iterdir() if (m := _SNAP_RE.match(p.name))]
    return sorted(found)



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
    meta_curve_path = property(lambda self: self.path / META_CURVE)

    def evaluation_path(self, steps: int) -> Path:
        return self.path / evaluation_file(steps)

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
        """The per-step metrics (:func:`~star.runs.log.load_log`); a run without a log is a :class:`RunError`."""
        return load_log(self.path)

    def log_lines(self) -> LogLines:
        """The log's records and damaged lines (:func:`~star.runs.log.read_log`; none if there is no log)."""
        return read_log(self.log_path)

    def meta_curve(self) -> MetaCurve | None:
        """The run's meta-curve (:class:`~star.runs.schemas.MetaCurve`), ``None`` if it has none yet.

        Raises:
            RunError: the file is unreadable or not a meta-curve (names the file).
        """
        return read_document(self.meta_curve_path, MetaCurve, missing_ok=True)

    def evaluation(self, steps: int) -> Evaluation | None:
        """The evaluation over ``steps`` inner steps (:class:`~star.runs.schemas.Evaluation`), ``None`` if absent.

        Raises:
            RunError: the file is unreadable or not an evaluation (names the file).
        """
        return read_document(self.evaluation_path(steps), Evaluation, missing_ok=True)

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


def read_baselines(grid_folder: str | os.PathLike) -> Baselines | None:
    """A grid folder's tuned Adam and nominal optimizer (:class:`~star.runs.schemas.Baselines`), ``None`` if absent.

    Raises:
        RunError: the file is unreadable or not a baselines file (names the file).
    """
    return read_document(Path(grid_folder) / BASELINES, Baselines, missing_ok=True)


@dataclasses.dataclass(frozen=True)
class StoredRun:
    """A finished run folder, read: its configuration, per-step log, provenance and meta-curve.

    Attributes:
        name: the folder's name, e.g. ``"star_fmnist_cpu"``.
        log: the per-step metrics, ``{name: array}`` (:func:`~star.runs.log.load_log`).
        config: the run's settings (:data:`~star.runs.names.CONFIG`).
        provenance: command, commit, scale, seeds, wall time, device (:meth:`RunFolder.provenance`).
        curve: the meta-curve (:class:`~star.runs.schemas.MetaCurve`), ``None`` when the run has none.
        cited: how a page cites it, e.g. ``"results/metatrain/star_fmnist_cpu"`` (no machine path; default the
            name).
        fetch: a file name inside the folder → its local path, for files read later (:meth:`json`,
            :meth:`theta`); ``None``: the folder on this machine. The book passes one that downloads the file
            where there is no checkout (:func:`star.book.files.stored_run`).
    """

    name: str
    log: dict
    config: dict
    provenance: dict
    curve: MetaCurve | None
    cited: str | None = None  # None: the name
    fetch: Callable[[str], Path] | None = None
    path: Path | None = None

    @classmethod
    def read(cls, path: str | os.PathLike | None = None, *, cited: str | None = None,
             fetch: Callable[[str], Path] | None = None) -> StoredRun:
        """Read the run folder at ``path``, or the one whose files ``fetch`` brings (see the attributes).

        Raises:
            RunError: a file is missing, unreadable or of another kind (names it); ``fetch``'s own errors
                (e.g. ``FileNotFoundError``) pass through, except for an absent meta-curve.
        """
        if fetch is not None:
            where = fetch(CONFIG).parent
            fetch(LOG)
            fetch(PROVENANCE)
            try:
                fetch(META_CURVE)
            except OSError:  # none stored (a download answers with an HTTP error, also an OSError)
                pass
        elif path is not None:
            where = Path(path)
        else:
            raise ValueError("StoredRun.read needs the run folder's path or a fetch function; got neither")
        run = RunFolder(where)
        return cls(run.name, run.log(), run.config(), run.provenance(), run.meta_curve(), cited, fetch, run.path)

    def file(self, filename: str) -> Path:
        """The local path of a file of the run folder (fetched if needed)."""
        if self.fetch is not None:
            return self.fetch(filename)
        if self.path is None:
            raise RunError(f"stored run {self.name!r} was not read from a folder: it has no {filename}")
        return self.path / filename

    def json(self, filename: str):
        """Another JSON file of the run folder, e.g. ``"evaluate.json"``."""
        return read_json(self.file(filename), f"file of run {self.cited or self.name}")

    def theta(self, step: int) -> dict:
        """The θ snapshot stored after ``step`` outer steps, as ``{flattened key: array}``."""
        import numpy as np

        with np.load(self.file(f"{THETA_SNAPSHOT_DIR}/{theta_snapshot_name(step)}")) as z:
            return {k: z[k] for k in z.files}

    def describe(self) -> str:
        """One line: the command, the commit, the wall time and the device (no machine paths)."""
        p = self.provenance
        dev = p.get("device", {})
        return (f"{self.cited or self.name}: {p.get('command', '?')} (commit {str(p.get('git_commit', '?'))[:7]}, "
                f"{p.get('wall_s_total', float('nan')):.0f} s on {dev.get('count', '?')} "
                f"{dev.get('platform', '?')} device(s))")


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

