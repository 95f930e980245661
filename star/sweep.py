"""Run grids of meta-training runs (:mod:`star.grids`): a resumable driver and the post-processing of each run.

Every run of a grid is one stored run folder ``<grid.folder>/<optimizer>_wd<wd>_s<seed>`` made by
:func:`star.metatrain.meta_train_named` — the function behind ``python -m star meta-train``, so a run of a sweep
and the same settings on the command line write the same run folder (configuration, log, θ snapshots,
provenance: :mod:`star.runs`). :func:`run_sweep` walks the grid seed by seed (seed 0 of every member first), skips
finished runs (final θ present and the configuration equal to what the grid asks for), resumes interrupted ones,
leaves alone folders another process is writing, and refuses folders that hold a different run. Then it
post-processes each finished run:

* the meta-curve (:data:`star.runs.META_CURVE`) — :func:`star.evaluate.meta_curve`: the unperturbed
  meta-objective of every θ snapshot on common fresh episodes (the PES meta-loss of the log is the loss of the
  *perturbed* θ ± ε, a different function at σ = 0.01);
* an evaluation (:func:`star.runs.evaluation_file`) for each evaluation length ``T`` (the 2000-step horizon and
  10 000 steps, the stability-beyond-horizon test of Fig. App.2): inner training curves of the learned optimizer
  on fixed evaluation seeds, with test loss and accuracy (:func:`star.evaluate.train_curves`);
* ``NOTE.md`` — written from the run's own files (settings, deviations from the paper, outcome numbers).

and once per grid the baselines (:data:`star.runs.BASELINES`): Adam with its learning rate tuned on the grid's
task (a half-decade search, as App. B.3 tunes Adam) and the nominal optimizer (STAR with a zero output layer), on
the same evaluation seeds. Paths are relative to a repository root given to each function; nothing changes the
working directory.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from star import runs
from star.grids import FIGURES, GRIDS, Grid, Member, RunSpec, _num, get_grid, grid_names

__all__ = [
    "Member", "Grid", "RunSpec", "GRIDS", "FIGURES", "get_grid", "grid_names", "run_status", "run_sweep",
    "post_process", "evaluate_run", "write_baselines", "write_note", "write_grid_note", "SweepError", "BUSY_AFTER_S",
]

BUSY_AFTER_S = 900.0  # a run folder written to within this many seconds belongs to a live process


class SweepError(ValueError):
    """A run folder that the sweep must not touch (it holds a different run), or a failed run."""


# ----------------------------------------------------------------------------------------------------
# run folders: what state a run is in


def run_status(spec: RunSpec, root: str | os.PathLike = ".", *, now: float | None = None,
               busy_after_s: float = BUSY_AFTER_S) -> str:
    """``"finished"``, ``"partial"`` (resumable), ``"busy"`` (another process is writing it) or ``"missing"``.

    A folder counts as this run only if its configuration equals :meth:`RunSpec.expected_config` (up to
    the fields a resume may change); ``busy`` means unfinished and written to within ``busy_after_s``.

    Raises:
        SweepError: the folder holds a different run (the differences are named) or is not a folder.
    """
    from star.outer_step import MetaTrainConfig

    out = spec.folder(root)
    if not out.exists():
        return "missing"
    if not out.is_dir():
        raise SweepError(f"run folder {str(out)!r} exists and is not a folder")
    run = runs.RunFolder(out)
    if not run.config_path.exists():
        if not any(out.iterdir()):
            return "missing"
        if _recently_written(out, now, busy_after_s):
            return "busy"
        raise SweepError(f"run folder {str(out)!r} holds files but no {runs.CONFIG}; move it away")
    try:
        saved = run.config()
    except runs.RunError as err:
        raise SweepError(f"grid {spec.grid.name!r} ({spec.grid.scale}): {err}; move the folder away") from None
    diff = runs.config_diff(saved, spec.expected_config(), ignore=MetaTrainConfig.RESUMABLE_CHANGES)
    if diff:
        raise SweepError(f"run folder {str(out)!r} holds a different run than grid {spec.grid.name!r} "
                         f"({spec.grid.scale}) asks for: " + "; ".join(diff))
    steps = runs.read_log(run.log_path).steps()
    if run.finished() and max(steps, default=0) >= spec.grid.outer_steps:
        return "finished"
    return "busy" if _recently_written(out, now, busy_after_s) else "partial"


def _recently_written(out: Path, now: float | None, window: float) -> bool:
    now = time.time() if now is None else now
    newest = max((p.stat().st_mtime for p in [out, *out.iterdir()] if p.exists()), default=0.0)
    for sub in (runs.CHECKPOINTS, runs.THETA_SNAPSHOT_DIR):
        d = out / sub
        if d.is_dir():
            newest = max([newest] + [p.stat().st_mtime for p in d.iterdir()])
    return now - newest < window


# ----------------------------------------------------------------------------------------------------
# the driver


def run_sweep(grid: Grid, root: str | os.PathLike = ".", *, figure: str | None = None,
              seeds: Sequence[int] | None = None, train: bool = True, post: bool = True,
              progress: bool = True, dry_run: bool = False, busy_after_s: float = BUSY_AFTER_S,
              log: Callable[[str], None] = print) -> dict:
    """Run (or resume) every run of ``grid`` under ``root`` that is not finished, then post-process.

    Args:
        grid: a :class:`Grid` (:func:`get_grid`).
        root: the repository root the grid's folder is relative to.
        figure, seeds: restrict to one figure's members (:data:`FIGURES`) or to some seeds.
        train: meta-train missing and partial runs (False: only post-process finished ones).
        post: post-process finished runs (:func:`post_process`) and write the grid's baselines.
        progress: tqdm progress bars.
        dry_run: only report what would be done.
        busy_after_s: see :func:`run_status`.
        log: where to report what is done (one line per action).

    Returns:
        ``{run name: status after the sweep}`` (``finished``, ``busy``, ``missing``/``partial`` when not
        trained).

    Raises:
        SweepError: a folder holds a different run (checked for every run before any is started).
        ValueError: what :func:`star.metatrain.meta_train_named` or the post-processing raise for a run.
    """
    from tqdm.auto import tqdm

    from star.metatrain import meta_train_named

    specs = grid.runs(figure=figure, seeds=seeds)
    # Check every folder first: a conflicting folder stops the sweep before anything runs.
    status = {s.name: run_status(s, root, busy_after_s=busy_after_s) for s in specs}
    counts = {k: sum(v == k for v in status.values()) for k in ("finished", "partial", "busy", "missing")}
    log(f"grid {grid.name} ({grid.scale}), {len(specs)} runs in {Path(root) / grid.folder}: "
        + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if dry_run:
        for s in specs:
            todo = {"missing": "meta-train", "partial": "resume", "busy": "skip (busy)"}.get(status[s.name], "")
            log(f"  {s.name:28s} {status[s.name]:9s} {todo}")
        return status
    bar = tqdm(specs, desc=f"sweep {grid.name}", unit="run", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        st = run_status(spec, root, busy_after_s=busy_after_s)
        if train and st in ("missing", "partial"):
            resume = st == "partial"
            log(f"{spec.name}: {'resume' if resume else 'meta-train'}")
            meta_train_named(optimizer=spec.member.optimizer, task=grid.task, config=spec.meta_train_config(),
                             out_dir=spec.out, root=root, horizon=grid.horizon, init=spec.init, resume=resume,
                             progress=progress, command=spec.command_line(resume=resume))
            st = run_status(spec, root, busy_after_s=busy_after_s)
        if post and st == "finished":
            post_process(spec, root, progress=progress, log=log)
        status[spec.name] = st
    if post:
        write_baselines(grid, root, progress=progress, log=log)
        write_grid_note(grid, root)
    return status


def post_process(spec: RunSpec, root: str | os.PathLike = ".", *, progress: bool = True,
                 log: Callable[[str], None] = print) -> list[Path]:
    """Write the missing post-processing files of a finished run; returns the files written.

    The meta-curve (:func:`star.evaluate.meta_curve`), the evaluation for every evaluation length
    (:func:`evaluate_run`) and ``NOTE.md`` (:func:`write_note`, rewritten whenever another file was written
    or it is missing).

    Raises:
        SweepError: the run is not finished.
    """
    from star.evaluate import meta_curve

    out = spec.folder(root)
    if run_status(spec, root) != "finished":
        raise SweepError(f"run {str(out)!r} is not finished (no {runs.FINAL_THETA} or fewer logged steps); "
                         "post-processing needs the final meta-parameters")
    g = spec.grid
    written = []
    if not (out / runs.META_CURVE).exists():
        log(f"{spec.name}: meta-curve")
        command = runs.command_line(["meta-curve", "--run", str(spec.out), "--seeds", str(g.curve_seeds),
                                     "--seed", str(g.curve_seed), "--every", str(g.curve_every)])
        path, _ = meta_curve(spec.out, root=root, num_seeds=g.curve_seeds, eval_seed=g.curve_seed,
                             every=g.curve_every, progress=progress, command=command)
        written.append(path)
    for steps in g.eval_steps:
        path = out / runs.evaluation_file(steps)
        if not path.exists():
            log(f"{spec.name}: evaluate {steps} steps on seeds {g.eval_seeds}")
            evaluate_run(spec, root, steps, progress=progress)
            written.append(path)
    if write_note(spec, root):
        written.append(out / runs.NOTE)
    return written


# ----------------------------------------------------------------------------------------------------
# evaluation: inner training curves, test loss and accuracy


def _chunk(grid: Grid) -> int:
    return min(500, grid.horizon, *grid.eval_steps)


def _provenance(command: str, t0: float, task, seeds) -> dict:
    from star.inner import data_sources

    return runs.provenance(command, seeds={"evaluation": list(seeds)}, wall_s=time.perf_counter() - t0,
                           data=data_sources(task))


def evaluate_run(spec: RunSpec, root: str | os.PathLike, steps: int, *, progress: bool = False) -> Path:
    """Train the run's task with its learned optimizer (the final θ) for ``steps`` steps on the grid's evaluation
    seeds; write the evaluation (:func:`star.runs.evaluation_file`, :class:`star.runs.Evaluation`) into the run
    folder (see
    :func:`star.evaluate.train_curves`)."""
    import jax

    from star.evaluate import EVAL_BLOCK, optimizer_factory, train_curves
    from star.optim import init_meta_params, preset
    from star.tasks import get_task

    t0 = time.perf_counter()
    g, out = spec.grid, spec.folder(root)
    template = init_meta_params(preset(spec.member.optimizer), jax.random.PRNGKey(0))
    theta = runs.load_theta(out / runs.FINAL_THETA, template)
    task = get_task(g.task)
    report = {"run": str(spec.out), "task": g.task, "optimizer": spec.member.optimizer,
              "theta": runs.FINAL_THETA, "horizon": g.horizon, "eval_seeds": list(g.eval_seeds),
              "description": "inner training with the learned optimizer from fresh initialisations; curve = "
                             f"mean training loss over blocks of {EVAL_BLOCK} steps; test = the 10 000 test images",
              **train_curves(task, optimizer_factory(spec.member.optimizer, g.horizon), theta, steps, g.eval_seeds,
                             chunk=_chunk(g), progress=progress)}
    report["provenance"] = _provenance(f"python -m star sweep --grid {g.name} --scale {g.scale} (post-processing)",
                                       t0, task, g.eval_seeds)
    path = out / runs.evaluation_file(steps)
    runs.atomic_write_json(path, runs.schemas.stamp(runs.Evaluation, report))
    return path


def write_baselines(grid: Grid, root: str | os.PathLike = ".", *, progress: bool = True,
                    log: Callable[[str], None] = print) -> Path:
    """The grid folder's baselines (:data:`star.runs.BASELINES`, :class:`star.runs.Baselines`): tuned Adam and the
    nominal optimizer on the grid's task.

    Adam's learning rate is chosen from ``grid.adam_lrs`` by the lowest mean training loss over the horizon
    (the meta-objective's analogue), averaged over the evaluation seeds; the chosen rate and the nominal
    optimizer (STAR at its nominal initialisation: the hand-designed AdamAggMo step, App. B.2) are then run
    for every evaluation length. Skipped when the file exists with the same settings.
    """
    import jax

    from star.evaluate import adam_factory, optimizer_factory, train_curves
    from star.optim import init_meta_params, preset
    from star.tasks import get_task

    path = Path(root) / grid.folder / runs.BASELINES
    settings = {"task": grid.task, "adam_lrs": list(grid.adam_lrs), "eval_seeds": list(grid.eval_seeds),
                "eval_steps": list(grid.eval_steps), "horizon": grid.horizon}
    stored = runs.read_baselines(path.parent)
    if stored is not None and stored.get("settings") == settings:
        return path
    t0 = time.perf_counter()
    log(f"grid {grid.name}: baselines (Adam learning-rate search over {grid.adam_lrs}, nominal optimizer)")
    task = get_task(grid.task)
    search = {}
    for lr in grid.adam_lrs:
        res = train_curves(task, adam_factory(), float(lr), grid.horizon, grid.eval_seeds, chunk=_chunk(grid),
                           progress=progress)
        vals = [r["mean_train_loss"] for r in res["per_seed"]]
        search[_num(lr)] = float(np.mean([np.inf if v is None else v for v in vals]))
    best = min(search, key=search.get)
    nominal = init_meta_params(preset("star"), jax.random.PRNGKey(1), init="nominal")
    search_doc = {"criterion": f"mean training loss over {grid.horizon} steps, mean over the evaluation seeds",
                  "mean_train_loss": search, "best_lr": float(best)}
    report = {"description": f"baselines on {grid.task}: Adam with its learning rate tuned over a half-decade grid, "
                             "and the nominal optimizer (STAR with a zero output layer), on the grid's evaluation "
                             "seeds", "settings": settings, "adam_search": search_doc, "adam": {}, "nominal": {}}
    for steps in grid.eval_steps:
        report["adam"][str(steps)] = train_curves(task, adam_factory(), float(best), steps, grid.eval_seeds,
                                                  chunk=_chunk(grid), progress=progress)
        report["nominal"][str(steps)] = train_curves(task, optimizer_factory("star", grid.horizon), nominal, steps,
                                                     grid.eval_seeds, chunk=_chunk(grid), progress=progress)
    report["provenance"] = _provenance(f"python -m star sweep --grid {grid.name} --scale {grid.scale} (baselines)",
                                       t0, task, grid.eval_seeds)
    runs.atomic_write_json(path, runs.schemas.stamp(runs.Baselines, report))
    return path


# ----------------------------------------------------------------------------------------------------
# NOTE.md, computed from the run's files


def write_grid_note(grid: Grid, root: str | os.PathLike = ".") -> bool:
    """Write the grid folder's ``NOTE.md`` (what the grid is, its settings, which runs are finished, their
    summed wall time and the command that regenerates it), computed from the folder; returns whether it changed."""
    folder = Path(root) / grid.folder
    if not folder.is_dir():
        return False
    specs = grid.runs()
    done = [s for s in specs if run_status(s, root) == "finished"]
    wall = sum(runs.RunFolder(s.folder(root)).provenance().get("wall_s_total") or 0.0 for s in done)
    members = ", ".join(f"`{m.label}`" for m in grid.members)
    lines = [f"# Grid `{grid.name}` ({grid.scale} scale) on `{grid.task}`: {grid.purpose or grid.name}", "",
             "Written by `python -m star sweep` from this folder.", "",
             f"Members: {members}; seeds {list(grid.seeds)}"
             + (f", and seeds {list(grid.extra_seeds)} for " + ", ".join(f"`{x}`" for x in grid.extra_members)
                if grid.extra_seeds else "")
             + f"; {len(done)} of {len(specs)} runs finished, "
             f"{wall / 60:.0f} min of meta-training summed over them.", "",
             f"Settings: {grid.outer_steps} outer steps, N = {grid.num_tasks}, truncation {grid.trunc}, horizon "
             f"{grid.horizon}, σ = {grid.std}, outer lr {grid.lr} and init "
             f"`{grid.init}` (unless a member's name says otherwise). {grid.notes}", "",
             f"Each run folder has its own {runs.NOTE}, `{runs.META_CURVE}` and "
             + ", ".join(f"`{runs.evaluation_file(t)}`" for t in grid.eval_steps)
             + f"; `{runs.BASELINES}` holds tuned Adam and the nominal optimizer on the same evaluation seeds.", "",
             "Regenerate (resumable; finished runs are skipped):", "",
             f"    STAR_SCALE={grid.scale} python -m star sweep --grid {grid.name} --scale {grid.scale}", ""]
    path, text = folder / runs.NOTE, "\n".join(lines).encode()
    if path.exists() and path.read_bytes() == text:
        return False
    runs.atomic_write_bytes(path, text)
    return True


def _mean_last(values, n):
    v = [x for x in values[-n:] if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def write_note(spec: RunSpec, root: str | os.PathLike = ".") -> bool:
    """Write ``NOTE.md`` for a finished run from its provenance, log and post-processing
    files (numbers computed here, nothing typed in). Returns whether the file changed (an unchanged note is
    not rewritten)."""
    g, out = spec.grid, spec.folder(root)
    run = runs.RunFolder(out)
    prov = run.provenance()
    log = run.log()
    ml = [None if not math.isfinite(x) else float(x) for x in log["meta_loss"]]
    init = "" if spec.member.init is None else f", meta-parameters initialised `{spec.member.init}`"
    lines = [f"# {spec.member.optimizer}, outer weight decay {spec.member.weight_decay} × lr{init}, seed {spec.seed} — "
             f"grid `{g.name}` ({g.scale} scale), task `{g.task}`", "",
             "Written by `python -m star sweep` from this folder's files.", "",
             f"Command ({runs.PROVENANCE}):", "", "    " + (prov["command"] if isinstance(prov["command"], str)
                                                       else "\n    ".join(prov["command"])), "",
             f"Commit {str(prov.get('git_commit'))[:12]}, {prov.get('wall_s_total', 0):.0f} s of meta-training on "
             f"{prov['device']['count']} {prov['device']['platform']} device(s) "
             f"({prov['device'].get('cpu_count')} CPU cores).", "", "Settings: " + g.notes, "", "## Outcome", "",
             f"- PES meta-loss (the loss of the perturbed θ ± ε, `{runs.LOG}`): {_mean_last(ml[:10], 10):.3f} over the "
             f"first 10 outer steps, {_mean_last(ml, 10):.3f} over the last 10 of {len(ml)}; "
             f"{int(np.nansum(log.get('nan_count', [0])))} non-finite gradient entries zeroed in all."]
    c = run.meta_curve()
    if c is not None:
        first, last = c["curve"][0], c["curve"][-1]
        nom = c.get("baselines", {}).get("nominal")
        text = (f"- Unperturbed meta-objective (`{runs.META_CURVE}`, {c['num_seeds']} common episodes from seed "
                f"{c['eval_seed']}): {first['mean']:.3f} at step {first['step']}, {last['mean']:.3f} at step "
                f"{last['step']}")
        from star.optim import preset

        if nom and preset(spec.member.optimizer).nominal_stepsize == 0:
            text += (f"; the same optimizer with a zero output layer (no nominal term: the zero update) "
                     f"{nom['mean']:.3f}")
        elif nom:
            d = np.asarray(last["per_seed"]) - np.asarray(nom["per_seed"])
            se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else float("nan")
            text += (f"; the nominal optimizer {nom['mean']:.3f}, learned minus nominal {d.mean():+.3f} ± {se:.3f} "
                     f"(lower on {int(np.sum(d < 0))} of {d.size} episodes)")
        lines.append(text + ".")
    for steps in g.eval_steps:
        ev = run.evaluation(steps)
        if ev is not None:
            rows = ev["per_seed"]

            def m(k):
                v = [r[k] for r in rows]
                return "diverged" if any(x is None for x in v) else f"{np.mean(v):.3f}"

            lines.append(f"- {steps} inner steps with the learned optimizer (`{runs.evaluation_file(steps)}`, seeds "
                         f"{ev['eval_seeds']}): final training loss {m('final_train_loss')}, "
                         f"test loss {m('test_loss')}, test accuracy {m('test_accuracy')}.")
    lines += ["", f"Files: `{runs.CONFIG}`, `{runs.LOG}`, `{runs.THETA_SNAPSHOT_DIR}/` (θ at step 0 and every "
              f"checkpoint), `{runs.FINAL_THETA}`, `{runs.META_PARAMS}`, `{runs.PROVENANCE}`, `{runs.META_CURVE}`, "
              + ", ".join(f"`{runs.evaluation_file(s)}`" for s in g.eval_steps)
              + f"; `{runs.CHECKPOINTS}/` is not committed.", ""]
    path, text = out / runs.NOTE, "\n".join(lines).encode()
    if path.exists() and path.read_bytes() == text:
        return False
    runs.atomic_write_bytes(path, text)
    return True
