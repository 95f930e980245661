"""The log of a run folder (:data:`~star.runs.names.LOG`): one JSON object per step, and its one parser.

* :func:`read_log` — the parser every reader goes through: records, damaged lines and a cut last line;
* :func:`load_log` — the per-step metrics as arrays, for plots;
* :func:`truncate_log` — on resume: repaired from the checkpoint's copy of the log, or the resume refused.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path

import numpy as np

from star.runs.io import RunError, atomic_write_bytes, utc_now
from star.runs.names import DAMAGED_LOG, LOG

__all__ = ["LogLines", "read_log", "load_log", "log_arrays", "truncate_log"]


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
    return log_arrays(log.records)


def log_arrays(records: list[dict]) -> dict:
    """Log records as ``{name: np.ndarray}`` over the steps, a metric missing or ``None`` in a record → NaN."""
    keys = sorted({k for r in records for k in r})
    return {k: np.asarray([np.nan if r.get(k) is None else r[k] for r in records], dtype=np.float64) for k in keys}

