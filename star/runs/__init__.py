"""A run folder: what a long computation leaves on disk, so that it can be resumed, checked and cited.

A *run folder* is a directory holding one run (meta-training, a sweep member, a measurement). This package is
the only code that knows its file names (:mod:`star.runs.names`); everything else reads and writes a run
through the functions below.

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
the folder), so a run killed at any moment leaves only complete files. The package knows nothing about what
is computed: states are pytrees, configurations are JSON dicts.

The modules, smallest first:

* :mod:`~star.runs.names` — the file names (:data:`CONFIG`, :data:`LOG`, ..., :func:`evaluation_file`);
* :mod:`~star.runs.io` — :func:`atomic_write_bytes`, :func:`atomic_write_json`, :func:`read_json`; θ files
  (:func:`save_theta`, :func:`load_theta`); :class:`RunError`;
* :mod:`~star.runs.log` — :func:`read_log` (the one parser), :func:`load_log`, :func:`truncate_log` (on resume:
  repaired from the checkpoint's copy of the log, or the resume refused);
* :mod:`~star.runs.checkpoints` — :func:`encode_checkpoint` / :func:`decode_checkpoint` (``MAGIC | length |
  SHA-256 | npz``), :func:`save_checkpoint`, :func:`load_latest_checkpoint` (skips corrupt files, refuses
  another run's), :func:`run_identity`;
* :mod:`~star.runs.folder` — :class:`RunFolder` (paths and readers), :func:`open_run` (read an existing run),
  :func:`writing_run` (create or resume, holding a lock), θ snapshots;
* :mod:`~star.runs.schemas` — the stored JSON outputs (:class:`MetaCurve`, :class:`Evaluation`,
  :class:`Baselines`) with a version, checked when read (:func:`read_document`; :meth:`RunFolder.meta_curve`,
  :meth:`RunFolder.evaluation`, :func:`read_baselines`); :class:`StoredRun`, a finished run read at once;
* :mod:`~star.runs.provenance` — :func:`git_commit`, :func:`device_info`, :func:`command_line`,
  :func:`provenance`, :func:`write_session_provenance`.

The index of stored results (``python -m star index``) reads the chapters too, so it is book code:
:mod:`star.book.results_index`.

Every failure a user can cause (a missing or truncated file, another run's checkpoint, a folder in use, a
damaged log or configuration, a θ file holding NaN) is a :class:`RunError` — a ``ValueError`` whose one-line
message names the file.

Example (what :func:`star.metatrain.meta_train` does)::

    with writing_run("results/metatrain/my_run", config, resume=False) as run:
        save_theta(theta_snapshot_path(run.path, 0), theta)
        ...                                # append to run.log_path, save_checkpoint(run.checkpoint_dir, ...)
        save_theta(run.final_theta_path, theta)
"""

from star.runs.checkpoints import (
    CHECKPOINT_MAGIC,
    check_checkpoint_identity,
    checkpoint_path,
    config_diff,
    decode_checkpoint,
    encode_checkpoint,
    list_checkpoints,
    load_latest_checkpoint,
    read_checkpoint_meta,
    run_identity,
    save_checkpoint,
)
from star.runs.folder import (
    META_TRAIN_FIELDS,
    RunFolder,
    StoredRun,
    folder_lock,
    list_theta_snapshots,
    open_run,
    read_baselines,
    theta_snapshot_path,
    writing_run,
)
from star.runs.io import (
    CheckpointError,
    RunError,
    atomic_write_bytes,
    atomic_write_json,
    load_theta,
    read_json,
    save_theta,
    to_json,
    utc_now,
)
from star.runs.log import LogLines, load_log, log_arrays, read_log, truncate_log
from star.runs.names import (
    BASELINES,
    CHECKPOINTS,
    CONFIG,
    DAMAGED_LOG,
    FINAL_THETA,
    LOG,
    META_CURVE,
    META_PARAMS,
    NOTE,
    PROVENANCE,
    SUMMARY,
    THETA_SNAPSHOT_DIR,
    evaluation_file,
    theta_snapshot_name,
)
from star.runs.provenance import command_line, device_info, git_commit, provenance, write_session_provenance
from star.runs.schemas import Baselines, Evaluation, MetaCurve, read_document

__all__ = [
    "CONFIG", "LOG", "CHECKPOINTS", "THETA_SNAPSHOT_DIR", "FINAL_THETA", "PROVENANCE", "NOTE", "DAMAGED_LOG",
    "META_PARAMS", "META_CURVE", "BASELINES", "SUMMARY", "evaluation_file", "theta_snapshot_name",
    "RunError", "CheckpointError", "to_json", "atomic_write_bytes", "atomic_write_json", "read_json",
    "save_theta", "load_theta", "utc_now",
    "LogLines", "read_log", "load_log", "log_arrays", "truncate_log",
    "CHECKPOINT_MAGIC", "encode_checkpoint", "decode_checkpoint", "read_checkpoint_meta", "checkpoint_path",
    "list_checkpoints", "save_checkpoint", "load_latest_checkpoint", "check_checkpoint_identity", "run_identity",
    "config_diff",
    "RunFolder", "StoredRun", "read_baselines", "META_TRAIN_FIELDS", "open_run", "folder_lock", "writing_run",
    "theta_snapshot_path", "list_theta_snapshots",
    "MetaCurve", "Evaluation", "Baselines", "read_document",
    "git_commit", "device_info", "command_line", "provenance", "write_session_provenance",
]
