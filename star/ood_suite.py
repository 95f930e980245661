"""The out-of-distribution experiment (App. B.3, C.3; Figs. App.5–App.6): tuned baselines vs. learned optimizers.

For every task of the suite (:data:`star.tasks.OOD_SUITE`) :func:`run_task`

1. tunes **Adam** and **NAdamW** on the *tuning seeds* (:func:`star.ood_tuning.tune_baselines`; a
   configuration's score is its final loss, :func:`star.ood_scores.final_loss`);
2. trains the two selected baselines and every learned optimizer (meta-trained elsewhere, applied with
   no tuning) on the *evaluation seeds*, which the tuning never saw; every optimizer sees the same
   initializations and batches for a given evaluation seed (common random numbers);
3. stores the curves and the record under ``out_dir`` (``<task>.npz`` + ``<task>.json``,
   :mod:`star.ood_records`), keeping the parts of a stored record that still hold.

The sizes of the experiment at each scale are :class:`SuiteConfig` (:func:`suite_config`).

The learned optimizers are rows of :mod:`star.learned_optimizers` (their θ's, where each came from, and the
named sets of rows). A row may stand for several meta-training runs
(:attr:`star.learned_optimizers.LearnedOptimizer.thetas` stacked over them): each θ is trained on every
evaluation seed, and its curves are stored meta-run major (:func:`star.book.ood_results.meta_run_curves` reads
them back per θ).

A run *fails* when its final loss is not finite or is above the loss at its first step, and an optimizer is
*unstable* on a task when any of its evaluation runs fails (:mod:`star.ood_scores`).
:func:`star.ood_records.load_results` reads the stored records and curves back; the chapter condenses them per
task and optimizer in :mod:`star.book.ood_results` and states its verdict rules in :mod:`star.book.ood_verdict`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from star import baselines, ood_records, ood_scores, ood_tuning
from star.batched import train_batched
from star.learned_optimizers import LearnedOptimizer
from star.scale import get_scale

__all__ = ["SuiteConfig", "suite_config", "run_task", "adam_range_near"]




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


@functools.cache
def _learned_maker(cfg, steps: int):
    """``θ -> learned optimizer`` of the (hashable) configuration ``cfg`` (one object per configuration
    and budget, as :func:`star.ood_tuning._baseline_maker`)."""
    from star.optim import star_optimizer

    return lambda th: star_optimizer(cfg, th, steps)


def run_task(name: str, cfg: SuiteConfig, learned: Sequence[LearnedOptimizer], out_dir, *,
             provenance: Mapping | None = None, progress: bool = True, force: bool = False,
             baselines_from: str | os.PathLike | None = None) -> dict:
    """Tune the baselines on task ``name``, evaluate everything, and write ``out_dir/<name>.{npz,json}``.

    Returns the record written to the JSON file. A record has two parts, each tied to what it depends on
    by a fingerprint: the baselines (tuning and evaluation of Adam and NAdamW: the suite configuration and
    the task, :func:`star.ood_records.baseline_fingerprint`) and the learned optimizers (the SHA-256 of their θ files,
    :func:`star.ood_records.learned_fingerprint`). If ``out_dir`` already holds the task and ``force`` is False:

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
    b_fp = ood_records.baseline_fingerprint(cfg.to_dict(), name, version)
    l_fp = ood_records.learned_fingerprint(ood_records.learned_shas(learned))
    provenance = dict(provenance or {}, scale=get_scale().value)
    stored = prior = old = None
    if json_path.is_file() and npz_path.is_file() and not force:
        old = json.loads(json_path.read_text())
        old_b, old_l = ood_records.stored_fingerprints(old)
        if (old_b, old_l) == (b_fp, l_fp):
            return old
        if old_b == b_fp:
            stored = ood_records.stored_baselines(old, npz_path)
    if stored is None and baselines_from is not None:
        stored = ood_records.baselines_of_folder(Path(baselines_from), name, b_fp)
    if stored is None and old is not None and ood_records.extends(old, cfg, version):
        with np.load(npz_path, allow_pickle=False) as z:
            if all(k in z.files for k in ood_records.baseline_names(old)):
                prior = (old, {k: z[k] for k in ood_records.baseline_names(old)})
    t_start = time.perf_counter()
    task = get_task(name)
    if stored is not None:
        part, arrays = stored
    else:
        part, arrays = ood_tuning.tune_baselines(name, task, cfg, progress, prior=prior, version=version)
    t_tune = 0.0 if stored is not None else part["baselines"]["wall_s"]["tuning"]
    t_base = time.perf_counter() - t_start
    curves = {k.split("/", 1)[1]: v for k, v in arrays.items() if k.startswith("curves/")}
    kept = ood_records.stored_learned(old, npz_path, l_fp, cfg, version) if old is not None else None
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
        fin = ood_scores.final_loss(c)
        per_opt[opt] = {"final_loss": [ood_records.json_float(v) for v in fin],
                        "failed": [bool(v) for v in ood_scores.failed_runs(c)],
                        "initial_loss": [ood_records.json_float(v) for v in np.asarray(c)[:, 0]]}
    record = {
        "format_version": ood_records.FORMAT_VERSION, "fingerprint": ood_records.combined_fingerprint(b_fp, l_fp),
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
    ood_records.write_record(json_path, npz_path, record, arrays)
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
