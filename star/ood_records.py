"""The stored records of the out-of-distribution suite: what a record holds, its fingerprints, reuse, reading.

Each task of the suite is stored under the suite's folder as ``<task>.npz`` (the curves, and the tuning's
final losses) + ``<task>.json`` (the record: suite settings, tuning, selections, per-optimizer final losses
and failures, provenance, wall times; :func:`write_record`). A record has two parts, each tied by a
fingerprint to what it depends on: the baselines' (tuning and evaluation of Adam and NAdamW: the suite
settings and the task's name and version, :func:`baseline_fingerprint`) and the learned optimizers' (the
SHA-256 of their θ files, :func:`learned_fingerprint`). This module decides which stored part still holds
(:func:`stored_baselines`, :func:`stored_learned`, :func:`extends`, :func:`baselines_of_folder`);
:func:`star.ood_suite.run_task` says when each is used. :func:`load_results` reads records and curves back.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from star.learned_optimizers import LearnedOptimizer, repo_relative

__all__ = ["FORMAT_VERSION", "baseline_fingerprint", "learned_fingerprint", "learned_shas", "stored_fingerprints",
           "combined_fingerprint", "baseline_names", "stored_baselines", "extends", "stored_learned",
           "baselines_of_folder", "write_record", "load_results", "json_float"]

FORMAT_VERSION = 2  # 2: the baselines' part has its own fingerprint, provenance and wall time
BASELINE_FORMAT = 1  # changes only when what the baselines' part holds or how it is computed changes
LEARNED_FORMAT = 1


def json_float(x):
    x = float(x)
    return x if math.isfinite(x) else None


def baseline_fingerprint(suite: Mapping, task: str, version: int = 1) -> str:
    """Ties the baselines' part of a record (tuning and evaluation of Adam and NAdamW) to what it depends
    on: the suite configuration (``SuiteConfig.to_dict()``), the task's name and its version
    (``star.tasks.suite.SuiteSpec.version``, raised when the task itself changes)."""
    payload = {"suite": dict(suite), "task": task, "format": BASELINE_FORMAT}
    if version != 1:  # version 1 is left out, so that records made before tasks had versions still match
        payload["task_version"] = int(version)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def learned_fingerprint(sources: Mapping) -> str:
    """Ties the learned optimizers' part of a record to ``{row name: [SHA-256 of each θ file (with the
    transforms applied to it, :func:`_source_key`)]}``."""
    payload = {"learned": {k: list(v) for k, v in sources.items()}, "format": LEARNED_FORMAT}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def _source_key(source: Mapping) -> str:
    """A source's part of the learned fingerprint: its file's SHA-256, and the transforms applied to it."""
    return "+".join([source["sha256"], *source.get("transforms", ())])


def learned_shas(learned: Sequence[LearnedOptimizer]) -> dict:
    return {lo.name: [_source_key(s) for s in lo.sources] for lo in learned}


def stored_fingerprints(rec: Mapping) -> tuple:
    """``(baseline, learned)`` fingerprints of a stored record, recomputed from its own fields (so that a
    record written before the two parts were told apart is recognized too)."""
    try:
        b = baseline_fingerprint(rec["suite_config"], rec["task"], rec.get("task_version", 1))
        lfp = learned_fingerprint({k: [_source_key(s) for s in v["sources"]] for k, v in rec["learned"].items()})
    except (KeyError, TypeError):
        return None, None
    return b, lfp


def combined_fingerprint(b: str, lfp: str) -> str:
    return hashlib.sha256(f"{b}:{lfp}".encode()).hexdigest()[:16]


def baseline_names(rec: Mapping) -> tuple:
    """The arrays of a record's baselines' part (without NAdamW when the suite had no NAdamW samples)."""
    names = ("curves/adam", "tuning/adam_final")
    return names + (("curves/nadamw", "tuning/nadamw_final") if rec.get("nadamw") is not None else ())


def stored_baselines(old: Mapping, npz_path: Path):
    """The baselines' part of a stored record and its arrays, unchanged (bit for bit), or ``None`` if the
    ``.npz`` lacks one of them. A record from before the parts were told apart has one provenance and one
    wall time for everything: they become the baselines' (its evaluation time then includes the learned
    optimizers evaluated with them, which ``wall_s`` says)."""
    names = baseline_names(old)
    with np.load(npz_path, allow_pickle=False) as z:
        if not all(k in z.files for k in names):
            return None
        arrays = {k: z[k] for k in names}
    prior = old.get("baselines")
    if prior is None:  # format 1: a single provenance and wall time for the whole record
        w = old["wall_s"]
        prior = {"provenance": old["provenance"],
                 "wall_s": {"tuning": w["tuning"], "evaluation": w["evaluation"],
                            "evaluation_includes": sorted(old.get("learned", {}))}}
    part = {"adam": old["adam"], "nadamw": old["nadamw"],
            "baselines": dict(prior, fingerprint=stored_fingerprints(old)[0], reused=True)}
    return part, arrays


#: Suite settings that the learned optimizers' curves depend on (the rest concern the baselines' tuning).
_LEARNED_SETTINGS = ("num_steps", "eval_seeds", "chunk_size")


def extends(old: Mapping, cfg, version: int) -> bool:
    """Does ``cfg`` differ from the stored record's suite settings only by more tuning seeds (same task
    version)? Then the stored tuning runs can be kept (:func:`star.ood_tuning.tune_baselines`)."""
    new = cfg.to_dict()
    prev = dict(old.get("suite_config", {}))
    if old.get("task_version", 1) != version or set(prev) != set(new):
        return False
    if any(prev[k] != new[k] for k in new if k != "tune_seeds"):
        return False
    return set(prev["tune_seeds"]) < set(new["tune_seeds"])


def stored_learned(old: Mapping, npz_path: Path, l_fp: str, cfg, version: int):
    """The learned optimizers' curves and info of a stored record when they are what :func:`star.ood_suite.run_task`
    would compute again (same θ files and rows, same task version and evaluation settings), else ``None``."""
    prev = old.get("suite_config", {})
    if (stored_fingerprints(old)[1] != l_fp or old.get("task_version", 1) != version
            or any(prev.get(k) != cfg.to_dict()[k] for k in _LEARNED_SETTINGS)):
        return None
    with np.load(npz_path, allow_pickle=False) as z:
        names = [f"curves/{k}" for k in old.get("learned", {})]
        if not all(k in z.files for k in names):
            return None
        curves = {k.split("/", 1)[1]: z[k] for k in names}
    return curves, old["learned"]


def baselines_of_folder(folder: Path, name: str, b_fp: str):
    """The baselines' part of ``folder``'s record of task ``name`` (``run_task(..., baselines_from=folder)``
    of :func:`star.ood_suite.run_task`)."""
    jp, npz = folder / f"{name}.json", folder / f"{name}.npz"
    if not (jp.is_file() and npz.is_file()):
        raise ValueError(f"baselines_from {str(folder)!r} holds no stored record of task {name!r}")
    old = json.loads(jp.read_text())
    stored = stored_baselines(old, npz) if stored_fingerprints(old)[0] == b_fp else None
    if stored is None:
        raise ValueError(f"baselines_from {str(folder)!r}: the baselines of task {name!r} were made with other "
                         "suite settings (or lack their arrays); run without --baselines-from to tune them")
    part, arrays = stored
    part["baselines"]["reused_from"] = repo_relative(folder)
    return part, arrays


def write_record(json_path: Path, npz_path: Path, record: Mapping, arrays: Mapping) -> None:
    """Write a task's record and its arrays, each file atomically (the ``.npz`` first)."""
    from star import runs

    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    runs.atomic_write_bytes(npz_path, buf.getvalue())
    runs.atomic_write_bytes(json_path, json.dumps(record, indent=1, sort_keys=True).encode())


def load_results(folder, tasks: Sequence[str] | None = None) -> dict:
    """``{task: (record, curves)}`` of the stored tasks in ``folder`` (all, or those in ``tasks`` found)."""
    folder = Path(folder)
    names = tasks if tasks is not None else sorted(p.stem for p in folder.glob("*.json") if p.stem != "suite")
    out = {}
    for name in names:
        jp, npz = folder / f"{name}.json", folder / f"{name}.npz"
        if not (jp.is_file() and npz.is_file()):
            continue
        rec = json.loads(jp.read_text())
        with np.load(npz, allow_pickle=False) as z:
            curves = {k.split("/", 1)[1]: z[k] for k in z.files if k.startswith("curves/")}
        out[name] = (rec, curves)
    return out
