"""The file names of a run folder: the only place they are spelled out (every reader and writer uses these).

=====================  =================================================================================
``config.json``        :data:`CONFIG`: every setting of the run (written once; resumable fields may be updated)
``log.jsonl``          :data:`LOG`: one JSON object per step, appended as the run goes (``{"step": 1, ...}``)
``checkpoints/``       :data:`CHECKPOINTS`: the complete state every few steps, with the run's identity
``thetas/``            :data:`THETA_SNAPSHOT_DIR`: θ snapshots ``theta_<step>.npz`` (step 0 and every checkpoint)
``theta_final.npz``    :data:`FINAL_THETA`: θ at the end (its presence marks a finished run)
``provenance.json``    :data:`PROVENANCE`: command, git commit, scale, seeds, wall time, device, data source
``NOTE.md``            :data:`NOTE`: (stored runs) what the run shows, written by a person
``log.damaged.txt``    :data:`DAMAGED_LOG`: (only after a repair) damaged lines of the log, kept verbatim
``meta_params.msgpack`` :data:`META_PARAMS`: the STAR family's optimizer configuration with the final θ
``meta_curve.json``    :data:`META_CURVE`: the unperturbed meta-objective of every θ snapshot
``evaluate_<T>.json``  :func:`evaluation_file`: the learned optimizer trained for ``T`` inner steps per seed
``baselines.json``     :data:`BASELINES`: (a grid's folder) tuned Adam and the nominal optimizer
``summary.json``       :data:`SUMMARY`: window means and slope of the PES meta-loss
``evaluate.json``      :data:`EVALUATE_REPORT`: the learned θ against the initial θ on one episode
=====================  =================================================================================
"""

from __future__ import annotations

CONFIG = "config.json"
LOG = "log.jsonl"
CHECKPOINTS = "checkpoints"
THETA_SNAPSHOT_DIR = "thetas"
FINAL_THETA = "theta_final.npz"
PROVENANCE = "provenance.json"
NOTE = "NOTE.md"
DAMAGED_LOG = "log.damaged.txt"  # damaged lines of the log, kept verbatim when a resume repairs the log
META_PARAMS = "meta_params.msgpack"  # the STAR family's optimizer configuration with the final θ
META_CURVE = "meta_curve.json"  # the unperturbed meta-objective of every θ snapshot (star.evaluate.meta_curve)
BASELINES = "baselines.json"  # in a grid's folder: tuned Adam and the nominal optimizer (star.sweep)
SUMMARY = "summary.json"  # window means and slope of the PES meta-loss (python -m star summarize)
EVALUATE_REPORT = "evaluate.json"  # a stored run's learned θ against its initial θ (python -m star evaluate --out)
EVALUATION_PREFIX = "evaluate"  # evaluate_<T>.json, see evaluation_file


def evaluation_file(steps: int) -> str:
    """The file of a run's evaluation over ``steps`` inner steps (a grid's post-processing, :mod:`star.sweep`)."""
    return f"{EVALUATION_PREFIX}_{int(steps)}.json"


def theta_snapshot_name(step: int) -> str:
    """The file of θ after ``step`` steps inside :data:`THETA_SNAPSHOT_DIR`: ``theta_<step, 8 digits>.npz``."""
    return f"theta_{int(step):08d}.npz"
