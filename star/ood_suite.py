"""The out-of-distribution experiment (App. B.3, C.3; Figs. App.5–App.6): tuned baselines vs. learned optimizers.

For every task of the suite (:data:`star.tasks.OOD_SUITE`) :func:`run_task`

1. tunes **Adam**'s learning rate on a half-decade grid and **NAdamW** by random search over learning
   rate, β1, β2, ε, weight decay and a warm-up/cosine schedule (:mod:`star.baselines`), every
   configuration trained on the *tuning seeds*, all of them in one compiled, vmapped program
   (:func:`star.batched.train_batched`); a configuration's score is its final training loss (the mean
   of the last 10% of the steps) averaged over the tuning seeds, a diverged run scoring +∞;
2. trains the two selected baselines and every learned optimizer (meta-trained elsewhere, applied with
   no tuning) on the *evaluation seeds*, which the tuning never saw; every optimizer sees the same
   initializations and batches for a given evaluation seed (common random numbers);
3. stores the curves and the tuning record under ``out_dir`` (``<task>.npz`` + ``<task>.json``).

The learned optimizers are rows of :mod:`star.learned_optimizers` (their θ's, where each came from, and the
named sets of rows). A row may stand for several meta-training runs
(:attr:`star.learned_optimizers.LearnedOptimizer.thetas` stacked over them): each θ is trained on every
evaluation seed, and its curves are stored meta-run major (:func:`star.book.ood_results.meta_run_curves` reads
them back per θ).

A record has two parts, each tied by a fingerprint to what it depends on (:func:`baseline_fingerprint`,
:func:`learned_fingerprint`). The baselines' part (steps 1 and the baselines of 2) can be kept while the
learned optimizers are evaluated anew, or taken from another folder's records (see :func:`run_task`).

A run *fails* when its final loss is not finite or is above the loss at its first step (the optimizer
made the model worse than its initialization); an optimizer is *unstable* on a task when any of its
evaluation runs fails (for a learned optimizer: any of its meta-trained θ's on any evaluation seed).
:func:`load_results` reads the stored records and curves back; the chapter condenses them per task and
optimizer in :mod:`star.book.ood_results` and states its verdict rules in :mod:`star.book.ood_verdict`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from star import baselines
from star.batched import train_batched
from star.learned_optimizers import LearnedOptimizer, repo_relative
from star.scale import get_scale

__all__ = ["SuiteConfig", "suite_config", "run_task", "adam_range_near", "load_results", "baseline_fingerprint",
           "learned_fingerprint", "final_loss", "failed_runs", "FINAL_FRACTION"]

FINAL_FRACTION = 0.1  # the final loss is the mean training loss over the last 10% of the steps


FORMAT_VERSION = 2  # 2: the baselines' part has its own fingerprint, provenance and wall time
BASELINE_FORMAT = 1  # changes only when what the baselines' part holds or how it is computed changes
LEARNED_FORMAT = 1


@dataclasses.dataclass(frozen=True)
class SuiteConfig:
    """Sizes of the experiment at one scale.

    Attributes:
        num_steps: inner steps per run.
        adam_lr_range: ``(low, high)`` of Adam's half-decade learning-rate grid.
        nadamw_samples: random NAdamW configurations (the paper: 1000; 0: no NAdamW).
        tune_seeds: seeds of the tuning runs (disjoint from ``eval_seeds``); a configuration's score is its
            mean over them (the reference tunes on 5).
        eval_seeds: seeds of the runs that are shown and compared.
        width: runs per call of the compiled baseline program (configurations are padded to a multiple).
        chunk_size: steps per compiled ``lax.scan``.
        search_seed: PRNG seed of the NAdamW random search.
    """

    num_steps: int
    adam_lr_range: tuple
    nadamw_samples: int
    tune_seeds: tuple
    eval_seeds: tuple
    width: int
    chunk_size: int
    search_seed: int = 0

    def __post_init__(self):
        if set(self.tune_seeds) & set(self.eval_seeds):
            raise ValueError(f"tune_seeds and eval_seeds must be disjoint; got {self.tune_seeds} and "
                             f"{self.eval_seeds}")
        if not self.tune_seeds or self.nadamw_samples < 0:
            raise ValueError(f"tune_seeds must not be empty and nadamw_samples must be >= 0; got "
                             f"{self.tune_seeds} and {self.nadamw_samples}")
        if len(self.eval_seeds) < 2:
            raise ValueError(f"eval_seeds must hold at least 2 seeds (for a standard error); got {self.eval_seeds}")

    @property
    def adam_lrs(self) -> np.ndarray:
        return baselines.adam_lr_grid(*self.adam_lr_range)

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self).items()}


def suite_config(scale=None) -> SuiteConfig:
    """The sizes at ``scale`` (default ``$STAR_SCALE``): smoke (seconds per task), cpu, paper."""
    s = get_scale(scale).value
    if s == "smoke":
        return SuiteConfig(num_steps=20, adam_lr_range=(1e-3, 1e-2), nadamw_samples=3, tune_seeds=(1000,),
                           eval_seeds=(0, 1, 2), width=6, chunk_size=10)
    if s == "cpu":
        return SuiteConfig(num_steps=1000, adam_lr_range=(1e-5, 1e-1), nadamw_samples=16,
                           tune_seeds=(1000, 1001), eval_seeds=(0, 1, 2), width=9, chunk_size=100)
    return SuiteConfig(num_steps=10000, adam_lr_range=(1e-7, 1.0), nadamw_samples=1000,
                       tune_seeds=(1000, 1001, 1002, 1003, 1004), eval_seeds=(0, 1, 2, 3, 4), width=100,
                       chunk_size=500)


def adam_range_near(learning_rate: float) -> tuple:
    """``(low, high)`` of the half-decade Adam grid around ``learning_rate`` (one of that grid's points): the
    half-decades next to it, e.g. ``3e-3 -> (1e-3, 1e-2)`` (how Adam is re-tuned for longer runs).

    Raises:
        ValueError: ``learning_rate`` is not a point of the half-decade grid.
    """
    grid = baselines.adam_lr_grid(1e-9, 10.0)
    i = int(np.argmin(np.abs(np.log(grid) - np.log(float(learning_rate)))))
    if not (0 < i < len(grid) - 1) or not math.isclose(grid[i], float(learning_rate), rel_tol=1e-6):
        raise ValueError(f"learning_rate must be a point of the half-decade grid between 1e-9 and 10; "
                         f"got {learning_rate!r}")
    return float(grid[i - 1]), float(grid[i + 1])


# ------------------------------------------------------------------------------------------- one task

def final_loss(curves, fraction: float = FINAL_FRACTION) -> np.ndarray:
    """Mean training loss over the last ``fraction`` of the steps, per run (``[..., steps] -> [...]``).

    Non-finite anywhere in that window gives +inf (a diverged run).
    """
    x = np.asarray(curves, np.float64)
    k = max(1, int(round(fraction * x.shape[-1])))
    tail = x[..., -k:]
    out = tail.mean(axis=-1)
    return np.where(np.all(np.isfinite(tail), axis=-1), out, np.inf)


def failed_runs(curves) -> np.ndarray:
    """Per run: the final loss is not finite or exceeds the loss at the first step."""
    x = np.asarray(curves, np.float64)
    fin = final_loss(x)
    return ~np.isfinite(fin) | (fin > x[..., 0])


def _pad(tree, width):
    n = int(jax.tree.leaves(tree)[0].shape[0])
    total = -(-n // width) * width
    if total == n:
        return tree, n
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], total - n, axis=0)]), tree), n


def _run_baselines(task, make, hparams, seeds, cfg, progress, desc):
    """Curves ``[configs, seeds, steps]`` of every (config, seed) pair, in calls of ``cfg.width`` runs."""
    n_cfg, n_seed = int(hparams.learning_rate.shape[0]), len(seeds)
    rows = jax.tree.map(lambda x: jnp.repeat(x, n_seed, axis=0), hparams)
    keys = jnp.tile(jnp.stack([jax.random.key(s) for s in seeds]), n_cfg)
    (rows, keys), n = _pad((rows, keys), cfg.width)
    out = []
    total = int(keys.shape[0])
    for lo in range(0, total, cfg.width):
        sl = slice(lo, lo + cfg.width)
        res = train_batched(task, make, jax.tree.map(lambda x: x[sl], rows), keys[sl], cfg.num_steps,
                            chunk_size=cfg.chunk_size, progress=progress,
                            desc=f"{desc} {lo // cfg.width + 1}/{total // cfg.width}")
        out.append(res.losses)
    return np.concatenate(out)[:n].reshape(n_cfg, n_seed, cfg.num_steps)


def _select(final):
    """Scores (mean final loss over the tuning seeds, +inf if any seed diverged) and the index of the best,
    from the final losses ``[configurations, seeds]`` (:func:`final_loss`)."""
    scores = np.asarray(final, np.float64).mean(axis=1)
    scores = np.where(np.isfinite(scores), scores, np.inf)
    return scores, int(np.argmin(scores))


def _json_float(x):
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


def _learned_shas(learned: Sequence[LearnedOptimizer]) -> dict:
    return {lo.name: [_source_key(s) for s in lo.sources] for lo in learned}


def _stored_fingerprints(rec: Mapping) -> tuple:
    """``(baseline, learned)`` fingerprints of a stored record, recomputed from its own fields (so that a
    record written before the two parts were told apart is recognized too)."""
    try:
        b = baseline_fingerprint(rec["suite_config"], rec["task"], rec.get("task_version", 1))
        lfp = learned_fingerprint({k: [_source_key(s) for s in v["sources"]] for k, v in rec["learned"].items()})
    except (KeyError, TypeError):
        return None, None
    return b, lfp


def _combined_fingerprint(b: str, lfp: str) -> str:
    return hashlib.sha256(f"{b}:{lfp}".encode()).hexdigest()[:16]


@functools.cache
def _baseline_maker(steps: int):
    """``hparams -> NAdamW`` for ``steps`` steps: one function object per budget, so that the compiled
    program of :func:`star.batched.train_batched` is reused across calls (it is cached per object)."""
    return lambda h: baselines.nadamw(h, steps)


@functools.cache
def _learned_maker(cfg, steps: int):
    """``θ -> learned optimizer`` of the (hashable) configuration ``cfg`` (one object per configuration
    and budget, as :func:`_baseline_maker`)."""
    from star.optim import star_optimizer

    return lambda th: star_optimizer(cfg, th, steps)


def _tune_baselines(name, task, cfg, progress, prior=None, version=1):
    """Tune Adam and NAdamW (none when ``cfg.nadamw_samples`` is 0) on the tuning seeds and train the
    selected configurations on the evaluation seeds: the baselines' part of a record, with its arrays.

    ``prior`` = ``(record, arrays)`` of a stored record whose suite settings differ from ``cfg`` only by
    fewer tuning seeds (:func:`_extends`): its tuning runs are kept, only the new tuning seeds are run,
    every configuration is scored over all the seeds, and the stored evaluation curves are kept when the
    selection is unchanged.
    """
    t_start = time.perf_counter()
    steps = cfg.num_steps
    make = _baseline_maker(steps)
    lrs = cfg.adam_lrs
    adam_h = baselines.adam_hparams(lrs)
    with_nadamw = cfg.nadamw_samples > 0
    nadamw_h = baselines.sample_nadamw_hparams(jax.random.key(cfg.search_seed), max(cfg.nadamw_samples, 1))
    candidates = baselines.stack_hparams(adam_h, nadamw_h) if with_nadamw else adam_h
    old_seeds = list(prior[0]["suite_config"]["tune_seeds"]) if prior is not None else []
    new_seeds = [s for s in cfg.tune_seeds if s not in old_seeds]
    fin = final_loss(_run_baselines(task, make, candidates, new_seeds, cfg, progress, f"{name} tune"))
    if prior is not None:  # columns in cfg.tune_seeds order: stored seeds, then the new ones
        old = np.concatenate([prior[1]["tuning/adam_final"]]
                             + ([prior[1]["tuning/nadamw_final"]] if with_nadamw else []), axis=0)
        by_seed = dict(zip(old_seeds, old.astype(np.float64).T)) | dict(zip(new_seeds, fin.T))
        fin = np.stack([by_seed[s] for s in cfg.tune_seeds], axis=1)
    adam_scores, adam_best = _select(fin[: len(lrs)])
    nadamw_scores, nadamw_best = _select(fin[len(lrs):]) if with_nadamw else (None, None)
    t_tune = time.perf_counter() - t_start
    same = (prior is not None and prior[0]["adam"]["best_index"] == adam_best
            and (not with_nadamw or prior[0]["nadamw"]["best_index"] == nadamw_best))
    if same:
        ev = [prior[1]["curves/adam"]] + ([prior[1]["curves/nadamw"]] if with_nadamw else [])
    else:
        best = jax.tree.map(lambda x: x[adam_best: adam_best + 1], adam_h)
        if with_nadamw:
            best = baselines.stack_hparams(best, jax.tree.map(lambda x: x[nadamw_best: nadamw_best + 1], nadamw_h))
        ev = _run_baselines(task, make, best, cfg.eval_seeds, cfg, progress, f"{name} eval")
    part = {
        "adam": {"learning_rates": [float(v) for v in lrs], "scores": [_json_float(v) for v in adam_scores],
                 "best_index": adam_best, "best_learning_rate": float(lrs[adam_best]),
                 "best_at_grid_edge": adam_best in (0, len(lrs) - 1)},
        "nadamw": None if not with_nadamw else {
            "samples": [baselines.hparams_row(nadamw_h, i) for i in range(cfg.nadamw_samples)],
            "scores": [_json_float(v) for v in nadamw_scores], "best_index": nadamw_best,
            "best": baselines.hparams_row(nadamw_h, nadamw_best)},
        "baselines": {"fingerprint": baseline_fingerprint(cfg.to_dict(), name, version), "reused": False,
                      "wall_s": {"tuning": t_tune, "evaluation": time.perf_counter() - t_start - t_tune}},
    }
    if prior is not None:
        part["baselines"]["extended"] = {
            "tune_seeds_kept": old_seeds, "tune_seeds_run": new_seeds, "evaluation_kept": bool(same),
            "kept_from": prior[0].get("baselines", {}).get("provenance", prior[0].get("provenance"))}
    arrays = {"curves/adam": np.asarray(ev[0]), "tuning/adam_final": fin[: len(lrs)].astype(np.float32)}
    if with_nadamw:
        arrays |= {"curves/nadamw": np.asarray(ev[1]), "tuning/nadamw_final": fin[len(lrs):].astype(np.float32)}
    return part, arrays


def _baseline_names(rec: Mapping) -> tuple:
    """The arrays of a record's baselines' part (without NAdamW when the suite had no NAdamW samples)."""
    names = ("curves/adam", "tuning/adam_final")
    return names + (("curves/nadamw", "tuning/nadamw_final") if rec.get("nadamw") is not None else ())


def _stored_baselines(old: Mapping, npz_path: Path):
    """The baselines' part of a stored record and its arrays, unchanged (bit for bit), or ``None`` if the
    ``.npz`` lacks one of them. A record from before the parts were told apart has one provenance and one
    wall time for everything: they become the baselines' (its evaluation time then includes the learned
    optimizers evaluated with them, which ``wall_s`` says)."""
    names = _baseline_names(old)
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
            "baselines": dict(prior, fingerprint=_stored_fingerprints(old)[0], reused=True)}
    return part, arrays


#: Suite settings that the learned optimizers' curves depend on (the rest concern the baselines' tuning).
_LEARNED_SETTINGS = ("num_steps", "eval_seeds", "chunk_size")


def _extends(old: Mapping, cfg: SuiteConfig, version: int) -> bool:
    """Does ``cfg`` differ from the stored record's suite settings only by more tuning seeds (same task
    version)? Then the stored tuning runs can be kept (:func:`_tune_baselines`)."""
    new = cfg.to_dict()
    prev = dict(old.get("suite_config", {}))
    if old.get("task_version", 1) != version or set(prev) != set(new):
        return False
    if any(prev[k] != new[k] for k in new if k != "tune_seeds"):
        return False
    return set(prev["tune_seeds"]) < set(new["tune_seeds"])


def _stored_learned(old: Mapping, npz_path: Path, l_fp: str, cfg: SuiteConfig, version: int):
    """The learned optimizers' curves and info of a stored record when they are what ``run_task`` would
    compute again (same θ files and rows, same task version and evaluation settings), else ``None``."""
    prev = old.get("suite_config", {})
    if (_stored_fingerprints(old)[1] != l_fp or old.get("task_version", 1) != version
            or any(prev.get(k) != cfg.to_dict()[k] for k in _LEARNED_SETTINGS)):
        return None
    with np.load(npz_path, allow_pickle=False) as z:
        names = [f"curves/{k}" for k in old.get("learned", {})]
        if not all(k in z.files for k in names):
            return None
        curves = {k.split("/", 1)[1]: z[k] for k in names}
    return curves, old["learned"]


def _baselines_from(folder: Path, name: str, b_fp: str):
    """The baselines' part of ``folder``'s record of task ``name`` (see :func:`run_task`)."""
    jp, npz = folder / f"{name}.json", folder / f"{name}.npz"
    if not (jp.is_file() and npz.is_file()):
        raise ValueError(f"baselines_from {str(folder)!r} holds no stored record of task {name!r}")
    old = json.loads(jp.read_text())
    stored = _stored_baselines(old, npz) if _stored_fingerprints(old)[0] == b_fp else None
    if stored is None:
        raise ValueError(f"baselines_from {str(folder)!r}: the baselines of task {name!r} were made with other "
                         "suite settings (or lack their arrays); run without --baselines-from to tune them")
    part, arrays = stored
    part["baselines"]["reused_from"] = repo_relative(folder)
    return part, arrays


def run_task(name: str, cfg: SuiteConfig, learned: Sequence[LearnedOptimizer], out_dir, *,
             provenance: Mapping | None = None, progress: bool = True, force: bool = False,
             baselines_from: str | os.PathLike | None = None) -> dict:
    """Tune the baselines on task ``name``, evaluate everything, and write ``out_dir/<name>.{npz,json}``.

    Returns the record written to the JSON file. A record has two parts, each tied to what it depends on
    by a fingerprint: the baselines (tuning and evaluation of Adam and NAdamW: the suite configuration and
    the task, :func:`baseline_fingerprint`) and the learned optimizers (the SHA-256 of their θ files,
    :func:`learned_fingerprint`). If ``out_dir`` already holds the task and ``force`` is False:

    * both parts match: nothing is recomputed, the stored record is returned (the suite resumes task by
      task);
    * only the baselines match: their tuning record, selections, evaluation curves and provenance (the
      command, commit and wall time of the run that tuned them) are kept as stored, bit for bit, and only
      the learned optimizers are evaluated (on the same evaluation seeds, hence the same initializations
      and batches); the record's top-level ``provenance`` and ``wall_s`` are then this evaluation's;
    * the stored suite settings differ only by fewer tuning seeds (the same task version): the stored tuning
      runs are kept and only the new seeds run, the selection is made over all of them, and the stored
      evaluation curves of the baselines are kept if the selection did not change (``baselines.extended``
      says what was kept);
    * otherwise everything is recomputed, unless ``baselines_from`` names another folder of records: then
      the baselines' part of its record of the task is kept as stored (it must match, see Raises), with
      ``baselines.reused_from`` naming that folder, and only the learned optimizers are evaluated (how the
      controls of the chapter are compared with the suite's baselines without tuning them again).

    Whatever happens to the baselines, the stored curves of the learned optimizers are kept when the θ
    files, the rows, the task version and the settings they depend on (steps, evaluation seeds, chunk)
    are unchanged (``learned_kept_from`` then names the run that computed them).

    Raises:
        ValueError: unknown task name; ``baselines_from`` lacks the task or holds baselines of other suite
            settings.
        star.data_sources.DataUnavailableError: the task's data are not on this machine.
    """
    from star.tasks import TASKS, get_task

    if name not in TASKS:
        raise ValueError(f"name must be a registered task ({', '.join(sorted(TASKS))}); got {name!r}")
    spec = TASKS[name]
    version = int(spec.version)
    out_dir = Path(out_dir)
    json_path, npz_path = out_dir / f"{name}.json", out_dir / f"{name}.npz"
    b_fp = baseline_fingerprint(cfg.to_dict(), name, version)
    l_fp = learned_fingerprint(_learned_shas(learned))
    provenance = dict(provenance or {}, scale=get_scale().value)
    stored = prior = old = None
    if json_path.is_file() and npz_path.is_file() and not force:
        old = json.loads(json_path.read_text())
        old_b, old_l = _stored_fingerprints(old)
        if (old_b, old_l) == (b_fp, l_fp):
            return old
        if old_b == b_fp:
            stored = _stored_baselines(old, npz_path)
    if stored is None and baselines_from is not None:
        stored = _baselines_from(Path(baselines_from), name, b_fp)
    if stored is None and old is not None and _extends(old, cfg, version):
        with np.load(npz_path, allow_pickle=False) as z:
            if all(k in z.files for k in _baseline_names(old)):
                prior = (old, {k: z[k] for k in _baseline_names(old)})
    t_start = time.perf_counter()
    task = get_task(name)
    if stored is not None:
        part, arrays = stored
    else:
        part, arrays = _tune_baselines(name, task, cfg, progress, prior=prior, version=version)
    t_tune = 0.0 if stored is not None else part["baselines"]["wall_s"]["tuning"]
    t_base = time.perf_counter() - t_start
    curves = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("curves/")}
    kept = _stored_learned(old, npz_path, l_fp, cfg, version) if old is not None else None
    learned_curves, learned_info = kept if kept is not None else _evaluate_learned(name, task, cfg, learned,
                                                                                    progress)
    curves.update(learned_curves)
    wall = time.perf_counter() - t_start
    finished = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if stored is None:
        part["baselines"]["provenance"] = dict(provenance, finished_utc=finished)

    out_dir.mkdir(parents=True, exist_ok=True)
    per_opt = {}
    for opt, c in curves.items():
        fin = final_loss(c)
        per_opt[opt] = {"final_loss": [_json_float(v) for v in fin],
                        "failed": [bool(v) for v in failed_runs(c)],
                        "initial_loss": [_json_float(v) for v in np.asarray(c)[:, 0]]}
    record = {
        "format_version": FORMAT_VERSION, "fingerprint": _combined_fingerprint(b_fp, l_fp),
        "learned_fingerprint": l_fp, "task": name, "task_version": version,
        "description": spec.description, "reference": spec.reference, "data": spec.data,
        "num_params": int(sum(int(np.prod(x.shape)) for x in jax.tree.leaves(task.init(jax.random.key(0))))),
        "suite_config": cfg.to_dict(), **part,
        "learned": learned_info, "optimizers": per_opt,
        "wall_s": {"tuning": t_tune, "evaluation": wall - t_tune, "learned": wall - t_base, "total": wall},
        "provenance": dict(provenance, finished_utc=finished),
    }
    if kept is not None:
        record["learned_kept_from"] = old.get("provenance")
    arrays = dict(arrays, **{f"curves/{k}": np.asarray(v, np.float32) for k, v in learned_curves.items()})
    from star import runs

    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    runs.atomic_write_bytes(npz_path, buf.getvalue())
    runs.atomic_write_bytes(json_path, json.dumps(record, indent=1, sort_keys=True).encode())
    return record


def _evaluate_learned(name, task, cfg, learned, progress):
    """Curves ``[meta-runs x eval seeds, steps]`` (meta-run major) of every learned optimizer on the
    evaluation seeds; those sharing a configuration train in one compiled program."""
    steps = cfg.num_steps
    eval_keys = jnp.stack([jax.random.key(s) for s in cfg.eval_seeds])
    n_seed = len(cfg.eval_seeds)
    curves, info, groups = {}, {}, {}
    for lo in learned:
        groups.setdefault(json.dumps(lo.cfg.to_dict(), sort_keys=True), []).append(lo)
    for group in groups.values():
        make_lo = _learned_maker(group[0].cfg, steps)
        thetas = jax.tree.map(lambda *xs: jnp.repeat(jnp.concatenate(xs), n_seed, axis=0),
                              *[lo.thetas for lo in group])
        n_total = sum(lo.num_runs for lo in group)
        res = train_batched(task, make_lo, thetas, jnp.tile(eval_keys, n_total), steps,
                            chunk_size=cfg.chunk_size, progress=progress,
                            desc=f"{name} {'+'.join(lo.name for lo in group)}")
        lo_start = 0
        for lo in group:
            n = lo.num_runs * n_seed
            curves[lo.name] = res.losses[lo_start: lo_start + n]
            lo_start += n
            info[lo.name] = {"sources": list(lo.sources), "config": lo.cfg.to_dict(), "num_meta_runs": lo.num_runs}
    return curves, info


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
