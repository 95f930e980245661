"""Meta-training into a run folder: the loop of outer steps with its log, checkpoints, resume and devices.

:func:`meta_train` repeats the outer step of :mod:`star.outer_step` (PES gradient → NaN guard → clipping →
AdamW, App. B) and keeps the complete state (:class:`star.outer_step.MetaState`) in a run folder
(:mod:`star.runs`: atomic files, checkpoints with a SHA-256 digest and the run's identity, the log, θ
snapshots, provenance, a lock against a second writer); on resume the newest checkpoint whose digest verifies
is used, a corrupted or truncated one is skipped with a warning, and one of another run is refused. Because
every outer step is a pure function of the state, a resumed run is bit-identical to an uninterrupted one.
Outer steps whose meta-gradient is exactly 0 (every inner problem diverged) are reported with a warning.
:func:`meta_train_named` is the same by names (``python -m star meta-train`` and every run of a
:mod:`star.sweep`). The unperturbed meta-objective is :mod:`star.meta_objective`'s; the reports on a stored
run (its log's trend, its θ's evaluations) are :mod:`star.evaluate`'s.

Devices. The ``N`` inner problems are sharded over all local devices (:func:`star.outer_step.make_mesh`);
``N`` must be divisible by the number of devices (otherwise one device is used, with a warning).

Several processes (hosts). Under JAX's multi-controller runtime — every process runs the same program after
``jax.distributed.initialize()`` (``python -m star meta-train --distributed``) — the mesh spans the devices of
all processes, so each process holds and advances one shard of the problems. Process 0 owns the run folder:
it reads the checkpoint on resume and broadcasts the state, so every process continues from identical θ;
for a checkpoint the sharded PES state is gathered from all processes and process 0 writes it. The other
processes write nothing. θ is replicated, hence identical on every process after every step.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from star import _checks, runs
from star import pes as pes_lib
from star.outer_step import (
    MetaState,
    MetaTrainConfig,
    canonical,
    init_meta_state,
    make_mesh,
    make_outer_step,
    state_shardings,
)

PyTree = Any


@dataclasses.dataclass
class MetaTrainResult:
    """What :func:`meta_train` returns: final θ and state, the per-step metrics, the output folder."""

    theta: PyTree
    state: MetaState
    history: list
    out_dir: Path | None
    resumed_from: int | None
    wall_s: float = 0.0


def _zero_gradient_message(rec, inner_per_step) -> str:
    return (f"outer step {rec['step']}: the meta-gradient is exactly 0, so θ gets no signal: it moves only by "
            f"AdamW's momentum from earlier steps and its weight decay ({rec['diverged_losses']} of "
            f"{inner_per_step} inner losses diverged, i.e. were non-finite or at the meta-loss ceiling; "
            f"{rec['nan_count']} non-finite gradient entries were zeroed); lower --lr/--std or check the "
            "initialisation")


def _sync(f) -> None:
    f.flush()
    os.fsync(f.fileno())


def _finite_or_none(x):
    x = float(x)
    return x if math.isfinite(x) else None


def meta_train(problem, theta0: PyTree, cfg: MetaTrainConfig, *, out_dir: str | os.PathLike | None = None,
               resume: bool = False, run_config: dict | None = None, progress: bool = True,
               devices=None, callback: Callable[[dict], None] | None = None, command: str | None = None,
               seeds: dict | None = None, data: dict | None = None) -> MetaTrainResult:
    """Meta-train ``theta0`` on a :class:`star.pes.TruncatedProblem` with PES and AdamW.

    Args:
        problem: the truncated inner problem (a pytree, e.g. :class:`star.inner.LearnedOptimizerProblem`).
        theta0: initial meta-parameters.
        cfg: :class:`MetaTrainConfig`.
        out_dir: a run folder (:mod:`star.runs`) for the configuration, the log (one JSON object per outer
            step), checkpoints, θ snapshots, the final θ and the provenance (:mod:`star.runs.names`); ``None``
            keeps everything in memory.
        resume: continue the run in ``out_dir`` from its newest good checkpoint (which must carry this run's
            identity, :func:`star.runs.run_identity`).
        run_config: the configuration recorded in (and checked against) :data:`star.runs.CONFIG`; defaults to
            ``cfg.to_dict()`` (the command line adds task, optimizer and horizon).
        progress: show a tqdm progress bar.
        devices: devices to shard the problems over (default: all local devices; under ``jax.distributed``
            with several processes, all devices of all processes).
        callback: called with each step's metrics dict (after it is logged).
        command, seeds, data: recorded in :data:`star.runs.PROVENANCE` (the command that started this session, the
            seeds, the data sources); defaults: this process's command line, ``{"seed": cfg.seed}``, none.

    Returns:
        :class:`MetaTrainResult`.
    """
    if not isinstance(cfg, MetaTrainConfig):
        raise ValueError(f"cfg must be a MetaTrainConfig; got {type(cfg).__name__}")
    pes_lib.check_problem(problem)
    pes_lib.check_settings(trunc_length=cfg.trunc_length, horizon=problem.horizon)
    run_config = cfg.to_dict() if run_config is None else dict(run_config)
    if out_dir is None:
        if resume:
            raise ValueError("resume=True needs an out_dir")
        return _meta_train(problem, theta0, cfg, run=None, resume=False, run_config=run_config, progress=progress,
                           devices=devices, callback=callback, prov=None, has_folder=False)
    if jax.process_index() != 0:  # multi-process: the run folder belongs to process 0
        return _meta_train(problem, theta0, cfg, run=None, resume=resume, run_config=run_config, progress=False,
                           devices=devices, callback=callback, prov=None, has_folder=True)
    from star.scale import get_scale

    get_scale()  # a bad $STAR_SCALE (recorded in the provenance) stops the run before it writes anything
    session = {"command": command or runs.command_line(sys.argv, prog=("python",)),
               "git_commit": runs.git_commit(), "started_utc": runs.utc_now(), "status": "running"}
    record = functools.partial(runs.write_session_provenance, seeds=seeds or {"seed": cfg.seed}, data=data)
    with runs.writing_run(out_dir, run_config, resume=resume, resumable=cfg.RESUMABLE_CHANGES,
                          total_steps=cfg.outer_steps) as run:
        return _meta_train(problem, theta0, cfg, run=run, resume=resume, run_config=run_config, progress=progress,
                           devices=devices, callback=callback, prov=(session, record), has_folder=True)


def named_run_config(*, optimizer: str, task: str, horizon: int, init: str, config: MetaTrainConfig) -> dict:
    """The configuration (:data:`star.runs.CONFIG`) of a run of :func:`meta_train_named`: ``config``'s fields
    and the problem's names."""
    return dict(config.to_dict(), optimizer=optimizer, task=task, horizon=horizon, init=init)


def meta_train_named(*, optimizer: str, task: str, config: MetaTrainConfig, out_dir: str | os.PathLike,
                     horizon: int = 2000, init: str = "nominal", root: str | os.PathLike = ".",
                     resume: bool = False, progress: bool = True, command: str | None = None,
                     distributed: dict | None = None) -> MetaTrainResult:
    """Meta-train a named optimizer on a named task into a run folder (``python -m star meta-train``, and every
    run of a :mod:`star.sweep`).

    Builds the problem with :func:`star.inner.build_problem`, runs :func:`meta_train` with :data:`star.runs.CONFIG` =
    :func:`named_run_config` and, for the STAR family, writes :data:`star.runs.META_PARAMS` (the optimizer
    configuration with the final θ) into the folder.

    Args:
        optimizer, task: names (``star.inner.optimizer_names()``, ``star.inner.task_names()``).
        config: the outer-loop settings.
        out_dir: the run folder, relative to ``root`` unless absolute (as given, it is recorded in
            :data:`star.runs.META_PARAMS`).
        horizon: the inner episode length ``T``.
        init: the meta-parameter initialisation of the STAR family (``star.optim.star.INITS``).
        resume: continue the run in ``out_dir`` (see :func:`meta_train`).
        progress: show a progress bar.
        command: recorded in :data:`star.runs.PROVENANCE` (default: this process's command line).
        distributed: keyword arguments of ``jax.distributed.initialize``, called after the settings are
            checked and before any computation (one process per host; process 0 writes the folder).

    Raises:
        ValueError: an unknown name or a setting out of range (before the folder is touched or data loaded);
            :class:`star.runs.RunError` for a folder that cannot take this run.
    """
    from star.inner import build_problem, data_sources, optimizer_names, task_names

    if optimizer not in optimizer_names():
        raise ValueError(f"optimizer must be one of {optimizer_names()}; got {optimizer!r}")
    if task not in task_names():
        raise ValueError(f"task must be one of {task_names()}; got {task!r}")
    if not isinstance(config, MetaTrainConfig):
        raise ValueError(f"config must be a MetaTrainConfig; got {type(config).__name__}")
    _checks.integer("horizon", horizon, maximum=_checks.MAX_STEPS)
    pes_lib.check_settings(trunc_length=config.trunc_length, horizon=horizon)
    run_config = named_run_config(optimizer=optimizer, task=task, horizon=horizon, init=init, config=config)
    out = Path(root) / out_dir
    if distributed is not None:
        jax.distributed.initialize(**distributed)
    lead = jax.process_index() == 0  # process 0 owns the folder
    if resume and lead:  # refuse a resume of nothing before loading any data
        runs.open_run(out)
    problem, theta0, opt_cfg = build_problem(optimizer, task, horizon, seed=config.seed, init=init)
    result = meta_train(problem, theta0, config, out_dir=out, resume=resume, run_config=run_config,
                        progress=progress, command=command, data=data_sources(problem),
                        seeds={"seed": config.seed, "meta_param_init_key": config.seed + 1})
    if lead and opt_cfg is not None:
        from star.optim.convert import save_meta_params

        save_meta_params(out / runs.META_PARAMS, opt_cfg, result.theta,
                         metadata={"run": str(Path(out_dir)), "outer_steps": config.outer_steps,
                                   "seed": config.seed})
    return result


def _from_process_0(state: MetaState, resumed_from: int | None):
    """Every process continues from process 0's state (the one that read the checkpoint): identical θ."""
    from jax.experimental import multihost_utils

    flag = np.asarray(-1 if resumed_from is None else resumed_from, np.int32)
    host, flag = multihost_utils.broadcast_one_to_all((jax.device_get(state), flag))
    return canonical(host), (None if int(flag) < 0 else int(flag))


def _global_arrays(tree, shardings):
    """Global arrays with ``shardings`` from a pytree that holds the same values on every process."""
    host = jax.device_get(tree)
    return jax.tree.map(lambda x, sh: jax.make_array_from_callback(np.shape(x), sh, lambda idx: np.asarray(x)[idx]),
                        host, shardings)


def _host_state(state: MetaState, gather: bool) -> MetaState:
    """The state with every leaf on this host: the PES state is gathered from all processes when sharded."""
    if not gather:
        return state
    from jax.experimental import multihost_utils

    return state._replace(pes_state=multihost_utils.process_allgather(state.pes_state, tiled=True))


def _meta_train(problem, theta0, cfg, *, run, resume, run_config, progress, devices, callback, prov, has_folder):
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    multi = jax.process_count() > 1
    identity = runs.run_identity(run_config, cfg.RESUMABLE_CHANGES)
    state = init_meta_state(problem, theta0, cfg)
    history: list[dict] = []
    resumed_from = None
    if run is not None and resume:
        found = runs.load_latest_checkpoint(run.checkpoint_dir, state, identity=identity, config=run_config,
                                            resumable=cfg.RESUMABLE_CHANGES)
        if found is not None:
            state, meta, _ = found
            state = canonical(state)
            resumed_from = int(state.step)
            history = runs.truncate_log(run.log_path, resumed_from, meta.get("log"))
        else:
            history = runs.truncate_log(run.log_path, 0)
    if multi:
        state, resumed_from = _from_process_0(state, resumed_from)

    devs = (jax.devices() if multi else jax.local_devices()) if devices is None else list(devices)
    mesh = None
    if cfg.shard and len(devs) > 1:
        if cfg.num_tasks % len(devs) == 0:
            mesh = make_mesh(devs)
            if multi:  # global arrays from the same host values on every process
                rep = NamedSharding(mesh, PartitionSpec())
                problem = _global_arrays(problem, jax.tree.map(lambda _: rep, problem))
                state = _global_arrays(state, state_shardings(state, mesh))
            else:
                state = jax.device_put(state, state_shardings(state, mesh))
        else:
            warnings.warn(f"num_tasks={cfg.num_tasks} is not divisible by the {len(devs)} devices; "
                          "running on one device" + (" in each process" if multi else ""), UserWarning, stacklevel=2)
    gather = multi and mesh is not None
    step_fn = make_outer_step(cfg, mesh, state)
    inner_per_step = 2 * cfg.num_tasks * cfg.trunc_length

    def write_provenance(**fields):
        if prov is not None:
            session, record = prov
            session.update(fields)
            record(run.path, session, identity=identity,
                   first_meta_loss=history[0]["meta_loss"] if history else None,
                   last_meta_loss=history[-1]["meta_loss"] if history else None,
                   diverged_losses_total=sum(h.get("diverged_losses", 0) for h in history),
                   zero_gradient_steps=sum(h.get("grad_norm") == 0.0 for h in history))

    zero_steps: list[int] = []
    log_file = open(run.log_path, "a") if run is not None else None
    start = int(state.step)
    if run is not None and start == 0:
        runs.save_theta(runs.theta_snapshot_path(run.path, 0), state.theta)
    bar = tqdm(total=cfg.outer_steps, initial=min(start, cfg.outer_steps), disable=not progress,
               desc="meta-train", unit="step")
    t_run = time.perf_counter()
    try:
        while int(state.step) < cfg.outer_steps:
            t0 = time.perf_counter()
            state, metrics = step_fn(problem, state)
            metrics = jax.device_get(metrics)
            dt = time.perf_counter() - t0
            rec = {"step": int(state.step)}
            for k, v in metrics.items():
                rec[k] = int(v) if np.issubdtype(np.asarray(v).dtype, np.integer) else _finite_or_none(v)
            rec["inner_steps_per_s"] = inner_per_step / dt
            rec["step_s"] = dt
            history.append(rec)
            if log_file is not None:
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
                if rec["step"] == start + 1:  # a killed session still leaves its record
                    write_provenance(first_step=rec["step"])
            if callback is not None:
                callback(rec)
            bar.update(1)
            bar.set_postfix(meta_loss=rec["meta_loss"], nan=rec["nan_count"],
                            diverged=f'{rec["diverged_losses"]}/{inner_per_step}')
            if rec["grad_norm"] == 0.0:
                zero_steps.append(rec["step"])
                if len(zero_steps) == 1:
                    warnings.warn(_zero_gradient_message(rec, inner_per_step), UserWarning, stacklevel=3)
            if has_folder and (rec["step"] % cfg.checkpoint_every == 0 or rec["step"] == cfg.outer_steps):
                host = _host_state(state, gather)  # every process takes part in the gather
                if run is not None:
                    _sync(log_file)  # the log on disk before the checkpoint that a resume trusts it up to
                    runs.save_theta(runs.theta_snapshot_path(run.path, rec["step"]), host.theta)
                    # the checkpoint carries the log, from which a resume repairs a damaged one
                    runs.save_checkpoint(run.checkpoint_dir, host,
                                         {"config": run_config, "identity": identity, "log": history},
                                         keep=cfg.keep_checkpoints)
    finally:
        bar.close()
        if log_file is not None:
            _sync(log_file)
            log_file.close()
    wall = time.perf_counter() - t_run
    if len(zero_steps) > 1:
        warnings.warn(f"the meta-gradient was exactly 0 in {len(zero_steps)} of {int(state.step) - start} outer "
                      f"steps (first at step {zero_steps[0]}): in them θ moved only by AdamW's momentum and weight "
                      "decay", UserWarning, stacklevel=3)
    if run is not None:
        runs.save_theta(run.final_theta_path, state.theta)
        write_provenance(status="finished", wall_s=time.perf_counter() - t_start, resumed_from_step=resumed_from,
                         final_step=int(state.step))
    return MetaTrainResult(theta=state.theta, state=state, history=history,
                           out_dir=None if run is None else run.path, resumed_from=resumed_from, wall_s=wall)

