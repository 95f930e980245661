"""Schemas of the JSON files a run folder stores beside its log: what each holds, with a version, checked when read.

Each stored kind is a ``TypedDict`` (the fields its readers rely on, with their JSON types) and a version:

* :class:`MetaCurve` — :data:`~star.runs.names.META_CURVE`, written by :func:`star.evaluate.meta_curve`
  (``python -m star meta-curve``);
* :class:`Evaluation` — ``evaluate_<T>.json`` (:func:`~star.runs.names.evaluation_file`), written by
  :func:`star.sweep.evaluate_run` (a grid's post-processing);
* :class:`Baselines` — :data:`~star.runs.names.BASELINES` in a grid's folder, written by
  :func:`star.sweep.write_baselines`;
* :class:`EvaluateReport` — :data:`~star.runs.names.EVALUATE_REPORT`, written by
  :func:`star.evaluate.evaluate_stored_run` (``python -m star evaluate --out``);
* :class:`Summary` — :data:`~star.runs.names.SUMMARY`, written by ``python -m star summarize``
  (:func:`star.evaluate.summarize_run`).

:func:`schema_of` names the schema of a file of a run folder by its name.

A writer stamps its document with ``"version"`` (:func:`stamp`); a reader checks it (:func:`check`): a file
that is not a JSON object, lacks a field, holds a field of the wrong type, or carries a version this code does
not know is a :class:`~star.runs.io.RunError` whose one line names the file. Files written before versions were
recorded (everything stored under ``results/`` until then) carry none and are read as version 1 — the
fields have not changed since, so they load unchanged.

The run's own ``config.json`` is not versioned: its bytes are the run's identity (:func:`star.runs.run_identity`),
which a new field would change for every stored run; its readers check the fields they need instead
(:data:`star.runs.META_TRAIN_FIELDS`).
"""

import os
import types
import typing
from typing import Any, NotRequired, TypedDict

from star.runs.io import RunError, read_json
from star.runs.names import BASELINES, EVALUATE_REPORT, EVALUATION_PREFIX, META_CURVE, SUMMARY

__all__ = ["MetaCurvePoint", "MetaCurve", "Evaluation", "Baselines", "EvaluateSide", "EvaluateReport", "Summary",
           "SCHEMAS", "VERSION_FIELD", "stamp", "check", "read_document", "schema_of"]

VERSION_FIELD = "version"


class MetaCurvePoint(TypedDict):
    """One θ snapshot of a meta-curve: its outer step and the meta-objective on the common episodes."""

    step: int
    mean: float | None
    per_seed: NotRequired[list[float | None]]
    stderr: NotRequired[float | None]  # None with a single episode


class MetaCurve(TypedDict):
    """``meta_curve.json``: the unperturbed meta-objective of every θ snapshot on the same fresh episodes.

    Required: what every reader uses (``curve``); the rest is checked when present.
    """

    version: NotRequired[int]  # absent in files written before version 1 was recorded
    curve: list[MetaCurvePoint]
    baselines: NotRequired[dict]  # {"nominal": {"per_seed", "mean"}} (empty for the linear NQM optimizer)
    run: NotRequired[str]
    task: NotRequired[str]
    optimizer: NotRequired[str]
    inner_steps: NotRequired[int]
    num_seeds: NotRequired[int]
    eval_seed: NotRequired[int]
    description: NotRequired[str]
    provenance: NotRequired[dict]


class Evaluation(TypedDict):
    """``evaluate_<T>.json``: the learned optimizer trained for ``steps`` inner steps on each evaluation seed."""

    version: NotRequired[int]
    steps: int
    per_seed: list[dict]  # {"seed", "curve", "mean_train_loss", "test", ...} per seed (star.evaluate.train_curves)
    block: NotRequired[int]
    run: NotRequired[str]
    task: NotRequired[str]
    optimizer: NotRequired[str]
    theta: NotRequired[str]
    horizon: NotRequired[int]
    eval_seeds: NotRequired[list[int]]
    description: NotRequired[str]
    provenance: NotRequired[dict]


class Baselines(TypedDict):
    """``baselines.json`` (a grid's folder): Adam with a tuned learning rate and the nominal optimizer."""

    version: NotRequired[int]
    adam: dict  # {str(steps): train_curves report}
    nominal: dict
    settings: NotRequired[dict]
    adam_search: NotRequired[dict]
    provenance: NotRequired[dict]
    description: NotRequired[str]


class EvaluateSide(TypedDict):
    """One side (initial or learned θ) of an :class:`EvaluateReport` on a task other than the NQM."""

    final_train_loss_mean_last_50: float | None
    mean_train_loss: float | None
    test_loss: float | None
    test_accuracy: float | None
    wall_s: NotRequired[float]


class EvaluateReport(TypedDict):
    """``evaluate.json``: one training run with a stored run's final θ and one with its initial θ."""

    version: NotRequired[int]
    run: str
    task: str
    optimizer: str
    steps: int
    seed: int
    initial: NotRequired[EvaluateSide]  # tasks other than the NQM
    learned: NotRequired[EvaluateSide]
    expected_loss_initial: NotRequired[float]  # the NQM: Eq. (8) at the initial and the learned θ
    expected_loss: NotRequired[float]
    simulated_loss: NotRequired[float]
    provenance: NotRequired[dict]


class Summary(TypedDict):
    """``summary.json``: window means and the stationary slope of a run's PES meta-loss."""

    version: NotRequired[int]
    run: str
    steps_logged: int
    stationary_after_step: int
    meta_loss_first_10_mean: float | None
    meta_loss_last_10_mean: float | None
    stationary_slope_per_step: NotRequired[float | None]
    stationary_slope_se: NotRequired[float | None]
    stationary_slope_z: NotRequired[float | None]
    stationary_meta_loss_mean: NotRequired[float | None]
    stationary_steps: NotRequired[int]
    nan_count_total: NotRequired[int]
    inner_steps_per_s_median: NotRequired[float | None]


#: ``{schema: (what it is called in messages, current version)}``.
SCHEMAS: dict[type, tuple[str, int]] = {
    MetaCurve: ("meta-curve", 1),
    Evaluation: ("evaluation", 1),
    Baselines: ("baselines", 1),
    EvaluateReport: ("evaluation report", 1),
    Summary: ("summary", 1),
}

_BY_NAME = {META_CURVE: MetaCurve, BASELINES: Baselines, EVALUATE_REPORT: EvaluateReport, SUMMARY: Summary}


def schema_of(filename: str) -> type | None:
    """The schema of a run folder's file by its name (``evaluate_<T>.json``: :class:`Evaluation`), else ``None``."""
    if filename in _BY_NAME:
        return _BY_NAME[filename]
    stem, _, steps = filename.removesuffix(".json").partition("_")
    if filename.endswith(".json") and stem == EVALUATION_PREFIX and steps.isdigit():
        return Evaluation
    return None


def stamp(schema: type, doc: dict) -> dict:
    """``doc`` with the current version of ``schema`` recorded (what a writer stores)."""
    return {**doc, VERSION_FIELD: SCHEMAS[schema][1]}


def check(schema: type, doc: Any, path: str | os.PathLike) -> dict:
    """``doc`` (read from ``path``) if it is a document of ``schema``; else a one-line :class:`RunError`.

    A missing version is version 1; a later version than this code knows is refused (written by a newer STAR).
    """
    what, version = SCHEMAS[schema]
    head = f"{what} file {str(path)!r}"
    if not isinstance(doc, dict):
        raise RunError(f"{head} is not a {what} (a JSON object; got a {type(doc).__name__}): it was not written "
                       "by STAR, or is damaged")
    found = doc.get(VERSION_FIELD, 1)
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise RunError(f"{head} has version {found!r}; versions are integers from 1: it was not written by STAR")
    if found > version:
        raise RunError(f"{head} has version {found}, this code reads {what} files up to version {version}: it was "
                       "written by a newer STAR; update the package")
    problem = _problem(doc, schema, "")
    if problem:
        raise RunError(f"{head} is not a {what} of version {found} ({problem}): it was not written by STAR, or "
                       "is damaged")
    return doc


def read_document(path: str | os.PathLike, schema: type, *, missing_ok: bool = False) -> dict | None:
    """The document of ``schema`` stored at ``path``, checked (:func:`check`); ``None`` if absent and ``missing_ok``.

    Raises:
        RunError: the file is missing (unless ``missing_ok``), unreadable, not JSON, or not of ``schema``.
    """
    if missing_ok and not os.path.exists(path):
        return None
    return check(schema, read_json(path, f"{SCHEMAS[schema][0]} file"), path)


def _problem(doc: dict, schema: type, where: str) -> str | None:
    hints = typing.get_type_hints(schema)
    for key, t in hints.items():
        if key not in doc:
            if key in schema.__required_keys__:
                return f"no field {where + key!r}"
            continue
        bad = _type_problem(doc[key], t, f"{where}{key}")
        if bad:
            return bad
    return None


def _type_problem(value, t, where: str) -> str | None:
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin in (typing.Union, types.UnionType):
        if any(_type_problem(value, a, where) is None for a in args):
            return None
        return f"field {where!r} is {_json_type(value)}, not {_type_name(t)}"
    if typing.is_typeddict(t):
        if not isinstance(value, dict):
            return f"field {where!r} is {_json_type(value)}, not an object"
        return _problem(value, t, where + ".")
    if origin is list:
        if not isinstance(value, list):
            return f"field {where!r} is {_json_type(value)}, not a list"
        for i, x in enumerate(value):
            bad = _type_problem(x, args[0], f"{where}[{i}]") if args else None
            if bad:
                return bad
        return None
    ok = {int: lambda v: isinstance(v, int) and not isinstance(v, bool),
          float: lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
          str: lambda v: isinstance(v, str), bool: lambda v: isinstance(v, bool), dict: lambda v: isinstance(v, dict),
          type(None): lambda v: v is None}[t](value)
    return None if ok else f"field {where!r} is {_json_type(value)}, not {_type_name(t)}"


def _json_type(v) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(v), type(v).__name__)


def _type_name(t) -> str:
    args = typing.get_args(t)
    if typing.get_origin(t) in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in args)
    return {int: "an integer", float: "a number", str: "a string", bool: "a boolean", dict: "an object",
            type(None): "null"}.get(t, getattr(t, "__name__", str(t)))
