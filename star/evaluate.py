"""Evaluate optimizers by training with them: seed by seed from fresh initialisations, then on the test set.

:func:`train_seeds` is the one loop: for each seed, :func:`star.train.train` a task with an optimizer (a
hand-designed one, or the STAR family with meta-parameters θ), then :func:`star.train.evaluate` the trained
parameters on the test set. Built on it:

* :func:`train_curves` — the curves, final training loss and test numbers a grid of runs stores
  (:func:`star.runs.evaluation_file` and :data:`star.runs.BASELINES`, :mod:`star.sweep`);
* :func:`evaluate_stored_run` — ``python -m star evaluate``: a stored run's learned θ against its initial θ
  (for the NQM, the closed-form expected loss, Eq. (8), and a Monte Carlo estimate);
* :func:`meta_curve` — ``python -m star meta-curve``: the unperturbed meta-objective
  (:func:`star.meta_objective.meta_objective`) of every θ snapshot of a run on common fresh episodes, with the
  nominal optimizer as a yardstick (:data:`star.runs.META_CURVE`, :class:`star.runs.MetaCurve`);
* :func:`summarize_run` — ``python -m star summarize``: whether a run's logged PES meta-loss trends down
  (:data:`star.runs.SUMMARY`, :class:`star.runs.Summary`); it reads the log only, no training.

The chapters call the same functions (``star.book.star_optimizer.train_all``).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from star import _checks, runs

__all__ = ["EVAL_BLOCK", "SeedRun", "train_seeds", "train_curves", "optimizer_factory", "adam_factory",
           "evaluate_stored_run", "meta_curve", "summarize_run"]

EVAL_BLOCK = 10  # evaluation curves are stored as means over blocks of this many inner steps


class SeedRun(NamedTuple):
    """One seed of :func:`train_seeds`: the per-step training losses (as :func:`star.train.train` returns
    them), the test numbers (:func:`star.train.evaluate`: ``loss``, ``accuracy``) and the wall time."""

    seed: int
    losses: np.ndarray
    test: dict
    wall_s: float


def train_seeds(task, factory, steps: int, seeds: Sequence[int], *, meta_params: Any = None,
                chunk_size: int = 100, progress: bool = False) -> list[SeedRun]:
    """Train ``task`` for ``steps`` steps from each seed (the seed sets the initialisation and the batches),
    then evaluate the trained parameters on the test set.

    Args:
        task: a :class:`star.tasks.Task`.
        factory: an optax transformation, or with ``meta_params`` a function ``meta_params -> transformation``
            (see :func:`star.train.train`).
        steps: inner steps per seed.
        seeds: the PRNG seeds, one run each.
        meta_params: the factory's argument (θ of the STAR family, a learning rate), traced: one
            compilation serves every value of the same structure.
        chunk_size: the compiled scan length of :func:`star.train.train`; keep it fixed to reuse one
            compilation across lengths and runs.
        progress: a progress bar per seed.
    """
    import jax

    from star.train import evaluate, train

    out = []
    for seed in seeds:
        res = train(task, factory, steps, jax.random.key(int(seed)), meta_params=meta_params, chunk_size=chunk_size,
                    progress=progress, desc=f"seed {seed}")
        out.append(SeedRun(int(seed), np.asarray(res.losses), evaluate(task, res.params), res.wall_time))
    return out


_FACTORIES: dict = {}


def optimizer_factory(optimizer: str, horizon: int):
    """``θ -> STAR-family transformation`` for a preset, one per (preset, horizon), so that every run of a grid
    reuses the compiled training chunk."""
    from star.optim import preset, star_optimizer

    key = (optimizer, horizon)
    if key not in _FACTORIES:
        cfg = preset(optimizer)
        _FACTORIES[key] = lambda theta: star_optimizer(cfg, theta, horizon)
    return _FACTORIES[key]


def adam_factory():
    """``lr -> optax.adam(lr)`` (one object, so every learning rate reuses one compilation)."""
    import optax

    if "adam" not in _FACTORIES:
        _FACTORIES["adam"] = lambda lr: optax.adam(lr)
    return _FACTORIES["adam"]


def _block_means(losses: np.ndarray, block: int) -> list:
    n = len(losses) // block * block
    return [float(x) for x in np.asarray(losses[:n], np.float64).reshape(-1, block).mean(axis=1)]


def _finite(x):
    x = float(x)
    return x if math.isfinite(x) else None


def train_curves(task, factory, meta_params, steps: int, seeds: Sequence[int], *, chunk: int = 500,
                 progress: bool = False, block: int = EVAL_BLOCK) -> dict:
    """:func:`train_seeds`, summarised as a grid stores it.

    ``chunk`` is the compiled scan length (:func:`star.train.train`): keep it fixed so that every length and
    every run of a grid reuses one compilation per optimizer.

    Returns ``{"per_seed": [{"seed", "curve" (means over blocks of ``block`` steps), "mean_train_loss",
    "final_train_loss" (mean of the last 5 % of steps), "max_train_loss", "test_loss", "test_accuracy",
    "wall_s"}], "block": block, "steps": steps}``. A diverged run keeps its non-finite numbers as ``None``.
    """
    rows = []
    tail = max(1, steps // 20)
    for r in train_seeds(task, factory, steps, seeds, meta_params=meta_params, chunk_size=chunk, progress=progress):
        losses = np.asarray(r.losses, np.float64)
        rows.append({"seed": r.seed, "curve": [_finite(x) for x in _block_means(losses, block)],
                     "mean_train_loss": _finite(np.mean(losses)), "final_train_loss": _finite(np.mean(losses[-tail:])),
                     "max_train_loss": _finite(np.max(losses)), "test_loss": _finite(r.test["loss"]),
                     "test_accuracy": _finite(r.test["accuracy"]), "wall_s": r.wall_s})
    return {"steps": int(steps), "block": int(block), "per_seed": rows}


def _command(command: str | None) -> str:
    return command or runs.command_line(sys.argv, prog=("python",))


def evaluate_stored_run(run: str | os.PathLike, *, task: str | None = None, steps: int | None = None, seed: int = 0,
                        root: str | os.PathLike = ".", out: str | os.PathLike | None = None,
                        progress: bool = True, command: str | None = None) -> dict:
    """Train a task with a stored run's final θ and with its initial θ; report losses (``python -m star
    evaluate``).

    Args:
        run: a meta-training run folder, relative to ``root`` unless absolute.
        task: the task to train (default: the run's).
        steps: inner steps (default: the run's horizon).
        seed: the PRNG seed of the training run (for the NQM, of the Monte Carlo estimate).
        out: also write the report, with its provenance, to this JSON file (relative to ``root`` unless
            absolute).
        command: recorded in the provenance (default: this process's command line).

    Returns:
        ``{"run", "task", "optimizer", "steps", "seed", "initial": {...}, "learned": {...}}`` with each side's
        mean training loss over the last 50 steps and over all, test loss and accuracy and wall time; for the
        NQM ``expected_loss_initial``, ``expected_loss`` (Eq. (8)) and ``simulated_loss``.

    Raises:
        star.runs.RunError: the folder holds no finished run (names the missing or damaged file).
        ValueError: ``steps`` or ``seed`` out of range.
    """
    import jax

    from star.inner import NQM_TASK, build_problem, data_sources

    folder, rc = runs.open_run(Path(root) / run)
    task = task or rc["task"]
    horizon = rc["horizon"] if steps is None else _checks.integer("steps", steps, maximum=_checks.MAX_STEPS)
    seed = _checks.seed("seed", seed)
    problem, template, opt_cfg = build_problem(rc["optimizer"], task, horizon, seed=rc["seed"],
                                               init=rc.get("init", "nominal"))
    theta = folder.final_theta(template)
    t0 = time.perf_counter()
    report = {"run": str(Path(run)), "task": task, "optimizer": rc["optimizer"], "steps": horizon, "seed": seed}
    if task == NQM_TASK:
        from star import nqm

        def closed_form(th):
            return float(nqm.expected_loss(problem.nqm, th["alpha"], th["P"], horizon))

        report["expected_loss_initial"] = closed_form(template)
        report["expected_loss"] = closed_form(theta)
        report["simulated_loss"] = float(nqm.simulated_loss(jax.random.key(seed), problem.nqm, theta["alpha"],
                                                            theta["P"], horizon))
    else:
        from star.optim import star_optimizer

        def factory(th):  # one compilation for both meta-parameter sets (θ is traced)
            return star_optimizer(opt_cfg, th, horizon)

        for name, th in (("initial", template), ("learned", theta)):
            (r,) = train_seeds(problem.task, factory, horizon, [seed], meta_params=th, progress=progress)
            report[name] = {"final_train_loss_mean_last_50": float(np.mean(r.losses[-50:])),
                            "mean_train_loss": float(np.mean(r.losses)), "test_loss": r.test["loss"],
                            "test_accuracy": r.test["accuracy"], "wall_s": r.wall_s}
    if out:
        report["provenance"] = runs.provenance(_command(command), seeds={"eval_seed": seed},
                                               wall_s=time.perf_counter() - t0, data=data_sources(problem))
        report = runs.schemas.stamp(runs.EvaluateReport, report)
        runs.atomic_write_json(Path(root) / out, report)
    return report


def meta_curve(run: str | os.PathLike, *, num_seeds: int = 4, every: int = 1, eval_seed: int = 1000,
               steps: int | None = None, root: str | os.PathLike = ".", out: str | os.PathLike | None = None,
               progress: bool = True, command: str | None = None) -> tuple[Path, dict]:
    """The unperturbed meta-objective of every θ snapshot of a run, on the same fresh episodes (``python -m star
    meta-curve``); written to ``out`` (default: the run's :data:`star.runs.META_CURVE`), stamped with the version of
    :class:`star.runs.MetaCurve`.

    Args:
        run: a meta-training run folder, relative to ``root`` unless absolute.
        num_seeds: fresh episodes per θ (the same for every θ: common random numbers).
        every: use every ``every``-th snapshot (the last always).
        eval_seed: the PRNG seed of the episodes.
        steps: inner steps per episode (default: the run's horizon).
        command: recorded in the provenance (default: this process's command line).

    Returns:
        ``(path written, report)``; the report's ``curve`` holds per snapshot its ``step``, ``per_seed``
        losses, ``mean`` and ``stderr``; ``baselines.nominal`` the nominal optimizer (zero output layer) on the
        same episodes (not for the linear NQM optimizer).

    Raises:
        star.runs.RunError: the folder holds no run or no θ snapshots, or a snapshot is damaged (every file is
            read before any evaluation).
        ValueError: an argument out of range.
    """
    import jax
    from tqdm.auto import tqdm

    from star.inner import LINEAR_OPTIMIZER, build_problem, data_sources
    from star.meta_objective import meta_objective

    folder, rc = runs.open_run(Path(root) / run)
    num_seeds = _checks.integer("num_seeds", num_seeds)
    every = _checks.integer("every", every)
    eval_seed = _checks.seed("eval_seed", eval_seed)
    snaps = folder.theta_snapshots()
    if not snaps:
        raise runs.RunError(f"run {str(folder.path)!r} has no θ snapshots ({runs.THETA_SNAPSHOT_DIR}/): it was made "
                            "before snapshots were kept; rerun meta-train")
    snaps = [sp for i, sp in enumerate(snaps) if i % every == 0 or i == len(snaps) - 1]
    horizon = rc["horizon"] if steps is None else _checks.integer("steps", steps, maximum=_checks.MAX_STEPS)
    init = rc.get("init", "nominal")
    problem, template, _ = build_problem(rc["optimizer"], rc["task"], horizon, seed=rc["seed"], init=init)
    thetas = [(step, runs.load_theta(path, template)) for step, path in snaps]  # every file is read first
    key = jax.random.key(eval_seed)
    t0 = time.perf_counter()
    rows = []
    for step, theta in tqdm(thetas, desc="meta-objective", unit="θ", disable=not progress):
        losses = meta_objective(problem, theta, key, num_seeds=num_seeds)
        rows.append({"step": step, "per_seed": [float(x) for x in losses], "mean": float(np.mean(losses)),
                     "stderr": float(np.std(losses, ddof=1) / np.sqrt(num_seeds)) if num_seeds > 1 else None})
    baselines = {}
    if rc["optimizer"] != LINEAR_OPTIMIZER:
        # The nominal optimizer (zero output layer: STAR's hand-designed AdamAggMo term alone) as a yardstick.
        nominal = template if init == "nominal" else build_problem(
            rc["optimizer"], rc["task"], horizon, seed=rc["seed"], init="nominal")[1]
        losses = meta_objective(problem, nominal, key, num_seeds=num_seeds)
        baselines["nominal"] = {"per_seed": [float(x) for x in losses], "mean": float(np.mean(losses))}
    report = {
        "run": str(Path(run)), "task": rc["task"], "optimizer": rc["optimizer"], "inner_steps": horizon,
        "num_seeds": num_seeds, "eval_seed": eval_seed,
        "description": "meta-objective (mean normalised training loss over the episode) of each θ snapshot, "
                       "unperturbed, on the same fresh episodes (common random numbers)",
        "curve": rows, "baselines": baselines,
        "provenance": runs.provenance(_command(command), seeds={"eval_seed": eval_seed},
                                      wall_s=time.perf_counter() - t0, data=data_sources(problem)),
    }
    report = runs.schemas.stamp(runs.MetaCurve, report)
    path = Path(root) / out if out else folder.path / runs.META_CURVE
    runs.atomic_write_json(path, report)
    return path, report


def summarize_run(run_dir: str | os.PathLike) -> dict:
    """Is a run's PES meta-loss trending down? Window means and the slope over the stationary part of its log.

    The per-step meta-loss mixes inner problems at different points of their episodes. At the start all ``N``
    problems are fresh networks (the random initial offset only shortens their first episode), so the early
    decline is inner training, not meta-learning; only after every problem has reset once (after
    ``horizon / trunc_length`` outer steps) is the mixture stationary. We therefore report the least-squares
    slope of the meta-loss over the stationary part, with its standard error, besides window means
    (``python -m star summarize`` writes this as :data:`star.runs.SUMMARY`, :class:`star.runs.Summary`).

    Raises:
        star.runs.RunError: the folder holds no run, its configuration lacks the horizon or truncation, or its
            log holds no records (names the file).
    """
    run = runs.RunFolder(run_dir)
    cfg = run.config(require={"horizon": int, "trunc_length": int})
    log = run.log()
    lacking = [k for k in ("step", "meta_loss", "nan_count", "inner_steps_per_s") if k not in log]
    if lacking:
        raise runs.RunError(f"log {str(run.log_path)!r} holds no meta-training records (no {', '.join(lacking)})")
    step, loss = log["step"], log["meta_loss"]
    warm = cfg["horizon"] // cfg["trunc_length"]
    sel = step > warm
    out = {"run": str(run_dir), "steps_logged": int(step.size), "stationary_after_step": warm,
           "meta_loss_first_10_mean": float(np.nanmean(loss[:10])),
           "meta_loss_last_10_mean": float(np.nanmean(loss[-10:])),
           "nan_count_total": int(np.nansum(log["nan_count"])),
           "inner_steps_per_s_median": float(np.nanmedian(log["inner_steps_per_s"][1:]))}
    if "diverged_losses" in log:
        out["diverged_losses_total"] = int(np.nansum(log["diverged_losses"]))
    if sel.sum() >= 5:
        x, y = step[sel], loss[sel]
        A = np.stack([np.ones_like(x), x - x.mean()], 1)
        coef, *_ = np.linalg.lstsq(A, y, rcond=None)
        resid = y - A @ coef
        se = np.sqrt(resid @ resid / (len(y) - 2) / np.sum((x - x.mean()) ** 2))
        out.update(stationary_steps=int(sel.sum()), stationary_meta_loss_mean=float(y.mean()),
                   stationary_slope_per_step=float(coef[1]), stationary_slope_se=float(se),
                   stationary_slope_z=float(coef[1] / se))
    return out
