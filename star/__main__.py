"""Command line: ``python -m star meta-train …``, ``meta-curve …``, ``evaluate …``, ``sweep …`` (a figure's grid of
runs, see :mod:`star.sweep`) and ``ood …`` (the out-of-distribution suite, see :mod:`star.ood_suite`).

Examples::

    # the paper's STAR setting on the Fashion-MNIST MLP (App. B)
    python -m star meta-train --optimizer star --task fmnist_mlp --outer-steps 200 --num-tasks 8 \\
        --trunc 50 --horizon 2000 --std 0.01 --lr 1e-4 --wd 0.1 --seed 0 --out results/metatrain/star_cpu
    python -m star meta-train ... --out results/metatrain/star_cpu --resume      # continue after a crash
    python -m star evaluate --run results/metatrain/star_cpu --steps 2000 --seed 1
    python -m star meta-curve --run results/metatrain/star_cpu --seeds 4   # unperturbed meta-loss of each θ snapshot

    # a whole figure's grid of runs, resumable, with meta-curve / evaluation / NOTE.md per run (star.sweep)
    python -m star sweep --grid indist --scale cpu            # Fig. 3 and Figs. App.1-App.4 at cpu scale
    python -m star sweep --grid indist --scale paper --figure fig3 --dry-run

    # the NQM with the linear learned optimizer θ = (α, P) (Fig. 2b/2c setting: T = 50 = truncation)
    python -m star meta-train --optimizer linear --task nqm --horizon 50 --trunc 50 --num-tasks 64 \\
        --outer-steps 300 --lr 1e-2 --out results/metatrain/nqm

An output folder (a run folder, :mod:`star.runs`, which names its files) holds the configuration (every
setting), the log (one JSON object per outer step: meta-loss, gradient norm, NaN count, inner steps/s, …),
checkpoints (complete state, atomic), θ snapshots (step 0 and every checkpoint, for ``meta-curve``), the final θ
(and the optimizer configuration with it for the STAR family) and the provenance (command, git commit, scale,
seeds, wall time, device). A folder that already holds a
run is never overwritten: continue it with ``--resume`` (same configuration) or choose another folder.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from pathlib import Path

from star.inner import optimizer_names, task_names


def _meta_train(args) -> int:
    from star import _checks, runs
    from star.metatrain import meta_train_named
    from star.outer_step import MetaTrainConfig

    # The flags are named in the errors; the library checks the same values again under its own names.
    if args.optimizer not in optimizer_names():
        raise ValueError(f"--optimizer must be one of {optimizer_names()}; got {args.optimizer!r}")
    if args.task not in task_names():
        raise ValueError(f"--task must be one of {task_names()}; got {args.task!r}")
    _checks.integer("--horizon", args.horizon, maximum=_checks.MAX_STEPS)
    _checks.seed("--seed", args.seed)
    cfg = MetaTrainConfig(outer_steps=args.outer_steps, num_tasks=args.num_tasks, trunc_length=args.trunc,
                          std=args.std, lr=args.lr, weight_decay=args.wd, clip=args.clip,
                          clip_mode=args.clip_mode, estimator=args.estimator, seed=args.seed,
                          checkpoint_every=args.checkpoint_every, random_offset=not args.no_offset)
    result = meta_train_named(optimizer=args.optimizer, task=args.task, config=cfg, out_dir=args.out,
                              horizon=args.horizon, init=args.init, resume=args.resume,
                              progress=not args.no_progress, command=runs.command_line(args.argv),
                              distributed=_distributed(args))
    if result.out_dir is None:  # not process 0 of a distributed run: it writes nothing
        return 0
    hist = result.history
    print(json.dumps({"out": str(Path(args.out)), "steps": int(result.state.step), "wall_s": result.wall_s,
                      "last_meta_loss": hist[-1]["meta_loss"] if hist else None}))
    return 0


def _distributed(args) -> dict | None:
    """The ``jax.distributed.initialize`` arguments of ``--distributed`` (None without it)."""
    if not args.distributed:
        for flag in ("coordinator", "num_processes", "process_id"):
            if getattr(args, flag) is not None:
                raise ValueError(f"--{flag.replace('_', '-')} needs --distributed")
        return None
    return {"coordinator_address": args.coordinator, "num_processes": args.num_processes,
            "process_id": args.process_id}


def _evaluate(args) -> int:
    from star import _checks, runs
    from star.evaluate import evaluate_stored_run

    steps = None if args.steps is None else _checks.integer("--steps", args.steps, maximum=_checks.MAX_STEPS)
    report = evaluate_stored_run(args.run, task=args.task, steps=steps, seed=_checks.seed("--seed", args.seed),
                                 out=args.out, progress=not args.no_progress, command=runs.command_line(args.argv))
    print(json.dumps(report, indent=2))
    return 0


def _meta_curve(args) -> int:
    from star import _checks, runs
    from star.evaluate import meta_curve

    path, report = meta_curve(args.run, num_seeds=_checks.integer("--seeds", args.seeds),
                              every=_checks.integer("--every", args.every),
                              eval_seed=_checks.seed("--seed", args.seed),
                              steps=None if args.steps is None else _checks.integer(
                                  "--steps", args.steps, maximum=_checks.MAX_STEPS),
                              out=args.out, progress=not args.no_progress, command=runs.command_line(args.argv))
    rows = report["curve"]
    print(json.dumps({"out": str(path), "first": rows[0]["mean"], "last": rows[-1]["mean"],
                      "nominal": report["baselines"].get("nominal", {}).get("mean")}))
    return 0


def _ood(args) -> int:
    """``python -m star ood``: tune the baselines and evaluate the learned optimizers on the OOD suite."""
    import dataclasses

    from tqdm.auto import tqdm

    from star import _checks, learned_optimizers, ood_records, ood_suite, runs
    from star.data_sources import DataUnavailableError
    from star.scale import get_scale
    from star.tasks import OOD_SUITE, TASKS, get_task

    named = args.tasks not in (None, "all")
    tasks = [t for t in args.tasks.split(",") if t.strip()] if named else list(OOD_SUITE)
    if not tasks:
        raise ValueError(f"--tasks must be 'all' or a comma list of registered task names; got {args.tasks!r}")
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise ValueError(f"--tasks must be 'all' or registered task names; unknown: {unknown}")
    if args.learned_set not in learned_optimizers.LEARNED_SETS:
        raise ValueError(f"--learned-set must be one of {sorted(learned_optimizers.LEARNED_SETS)}; "
                         f"got {args.learned_set!r}")
    sources = dict(learned_optimizers.LEARNED_SETS[args.learned_set])
    for item in args.learned or []:
        name, sep, paths = item.partition("=")
        if not sep or not name or not paths:
            raise ValueError(f"--learned must look like NAME=RUN_DIR[,RUN_DIR...]; got {item!r}")
        sources[name] = [p for p in paths.split(",") if p]
    for name in args.no_learned or []:
        sources.pop(name, None)
    if args.baselines_from is not None and not Path(args.baselines_from).is_dir():
        raise ValueError(f"--baselines-from must be a folder of stored records; got {args.baselines_from!r}")
    if named:  # a task asked for by name must have its data: stop before any work (loaders cache the data)
        for name in tasks:
            try:
                get_task(name)
            except DataUnavailableError as err:
                raise DataUnavailableError(f"task {name}: {err}") from None
    learned = [learned_optimizers.load_learned(n, list(v), root=args.metatrain_root) for n, v in sources.items()]
    if args.released:
        from star.optim import released

        names = released.DEFAULT_RELEASED if args.released in ([], ["default"]) else args.released
        for rname in names:
            try:
                learned.append(learned_optimizers.released_learned(rname))
            except released.ReleasedUnavailableError as err:
                print(f"note: released optimizer {rname} skipped: {err}", file=sys.stderr)
    cfg = ood_suite.suite_config()
    if args.steps is not None:
        cfg = dataclasses.replace(cfg, num_steps=_checks.integer("--steps", args.steps, minimum=10))
    if args.no_nadamw:
        cfg = dataclasses.replace(cfg, nadamw_samples=0)
    near = {}
    if args.adam_near is not None:  # Adam's grid per task: the half-decades next to the choice stored there
        stored = ood_records.load_results(args.adam_near, tasks)
        lacking = [t for t in tasks if t not in stored]
        if lacking:
            raise ValueError(f"--adam-near {args.adam_near!r} holds no stored record of {lacking}")
        near = {t: ood_suite.adam_range_near(rec["adam"]["best_learning_rate"]) for t, (rec, _) in stored.items()}
    out = Path(args.out or f"results/ood/{get_scale().value}")
    prov = {"command": runs.command_line(args.argv), "git_commit": runs.git_commit(),
            "device": runs.device_info()}
    done, skipped = [], {}
    for name in tqdm(tasks, desc="OOD suite", unit="task", disable=args.no_progress):
        try:
            task_cfg = dataclasses.replace(cfg, adam_lr_range=near[name]) if name in near else cfg
            rec = ood_suite.run_task(name, task_cfg, learned, out, provenance=prov, progress=not args.no_progress,
                                     force=args.force, baselines_from=args.baselines_from)
        except DataUnavailableError as err:
            skipped[name] = str(err)
            print(f"note: task {name} skipped: {err}", file=sys.stderr)
            continue
        done.append(name)
        print(json.dumps({"task": name, "wall_s": round(rec["wall_s"]["total"], 1),
                          "adam_lr": rec["adam"]["best_learning_rate"],
                          "final": {k: v["final_loss"] for k, v in rec["optimizers"].items()}}), flush=True)
    print(json.dumps({"out": str(out), "tasks": done, "skipped": skipped}))
    return 0


def _summarize(args) -> int:
    from star import runs
    from star.evaluate import summarize_run

    run, _ = runs.open_run(args.run, require={"horizon": int, "trunc_length": int})
    summary = summarize_run(args.run)
    runs.atomic_write_json(Path(args.out) if args.out else run.path / runs.SUMMARY,
                           runs.schemas.stamp(runs.Summary, summary))
    print(json.dumps(summary, indent=2))
    return 0


def _index(args) -> int:
    from star import runs
    from star.book import results_index

    root = Path(args.root)
    readme = root / "README.md"
    text = readme.read_text() if readme.exists() else ""
    new = results_index.update_index(text, root, Path(args.book))
    if args.check:
        if new != text:
            raise runs.RunError(f"{readme} is out of date: run 'python -m star index' and commit it")
        print(f"{readme} is up to date ({len(results_index.list_runs(root))} stored results)")
        return 0
    runs.atomic_write_bytes(readme, new.encode())
    print(f"wrote {readme}")
    return 0


def _sweep(args) -> int:
    """``python -m star sweep``: run a grid of meta-training runs with post-processing (:mod:`star.sweep`)."""
    import math

    from star import sweep

    grid = sweep.get_grid(args.grid, args.scale)
    seeds = None
    if args.seeds is not None:
        try:
            seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
        except ValueError:
            seeds = []
        if not seeds:
            raise ValueError(f"--seeds must be a comma list of integers (a subset of the grid's seeds "
                             f"{grid.all_seeds}); got {args.seeds!r}")
    if args.estimate is not None:
        if not (math.isfinite(args.estimate) and args.estimate > 0):
            raise ValueError(f"--estimate must be a finite number of inner steps per second > 0; got {args.estimate}")
        print(json.dumps(grid.compute_estimate(args.estimate)))
        return 0
    if not (math.isfinite(args.busy_after) and args.busy_after >= 0):
        raise ValueError(f"--busy-after must be a finite number of seconds >= 0; got {args.busy_after}")
    if not Path(args.root).is_dir():
        raise ValueError(f"--root must be an existing folder (the repository root); got {args.root!r}")
    status = sweep.run_sweep(grid, args.root, figure=args.figure, seeds=seeds, train=not args.no_train,
                             post=not args.no_post, progress=not args.no_progress, dry_run=args.dry_run,
                             busy_after_s=args.busy_after)
    print(json.dumps({"grid": grid.name, "scale": grid.scale, "status": status}))
    return 0


def _add_sweep_parser(sub) -> None:
    from star.sweep import BUSY_AFTER_S

    sw = sub.add_parser("sweep", help="run a figure's grid of meta-training runs (resumable) and post-process them")
    sw.add_argument("--grid", required=True,
                    help="indist (Fig. 3, App.1-4), indist_long (the same for 2000 outer steps), indist_conv (Fig. 3 "
                         "on the ConvNet: CIFAR-10 at paper scale, the 8x8 Fashion-MNIST substitute at cpu), "
                         "ood_controls (controls of the OOD chapter), remedies, remedies_long, remedies_seeds")
    sw.add_argument("--scale", default=None, help="smoke, cpu or paper (default: $STAR_SCALE, else cpu)")
    sw.add_argument("--figure", default=None, choices=("fig3", "app2", "app3", "app4"),
                    help="only the members of one figure")
    sw.add_argument("--seeds", default=None, help="comma-separated subset of the grid's seeds")
    sw.add_argument("--root", default=".", help="repository root the grid's folder is relative to")
    sw.add_argument("--no-train", action="store_true", help="only post-process runs that are finished")
    sw.add_argument("--no-post", action="store_true", help="no meta-curve, evaluation, NOTE.md or baselines")
    sw.add_argument("--dry-run", action="store_true", help="list the runs and what would be done")
    sw.add_argument("--estimate", type=float, default=None, metavar="INNER_STEPS_PER_S",
                    help="print the grid's meta-training compute at this inner-step rate and exit")
    sw.add_argument("--busy-after", type=float, default=BUSY_AFTER_S, metavar="SECONDS",
                    help="an unfinished run folder written to within this many seconds belongs to another "
                         f"process and is skipped (default {BUSY_AFTER_S:g}); lower it to resume a run you "
                         "stopped yourself")
    sw.add_argument("--no-progress", action="store_true")
    sw.set_defaults(func=_sweep)


def build_parser() -> argparse.ArgumentParser:
    from star.optim.star import INITS
    from star.runs import names as run_files

    parser = argparse.ArgumentParser(prog="python -m star", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    mt = sub.add_parser("meta-train", help="meta-train a learned optimizer with PES (App. B)")
    mt.add_argument("--optimizer", required=True, help="star, hyperparam, blackbox, star_nopre, star_nonom, linear")
    mt.add_argument("--task", required=True, help="a registered task (fmnist_mlp, ...) or nqm")
    mt.add_argument("--outer-steps", type=int, required=True)
    mt.add_argument("--num-tasks", type=int, default=8, help="parallel inner problems N")
    mt.add_argument("--trunc", type=int, default=50, help="PES truncation length K (paper: 50)")
    mt.add_argument("--horizon", type=int, default=2000, help="inner episode length T (paper: 2000)")
    mt.add_argument("--std", type=float, default=0.01, help="perturbation std σ (paper: 0.01)")
    mt.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (paper: 1e-4)")
    mt.add_argument("--wd", type=float, default=0.0, help="AdamW weight decay as a multiple of lr (STAR: 0.1-0.5)")
    mt.add_argument("--clip", type=float, default=1.0, help="gradient clipping threshold (paper: 1.0)")
    mt.add_argument("--clip-mode", default="value", choices=("value", "global_norm", "none"),
                    help="value = element-wise, as the reference's GradientClipOptimizer (default)")
    mt.add_argument("--estimator", default="pes", choices=("pes", "tes"))
    mt.add_argument("--no-offset", action="store_true", help="no random initial iteration offset")
    mt.add_argument("--init", default="nominal", choices=INITS, help="STAR-family meta-parameter init")
    mt.add_argument("--seed", type=int, default=0)
    mt.add_argument("--checkpoint-every", type=int, default=10)
    mt.add_argument("--out", required=True, help="output folder (new, empty, or with --resume)")
    mt.add_argument("--resume", action="store_true", help="continue the run in --out from its last good checkpoint")
    mt.add_argument("--no-progress", action="store_true")
    mt.add_argument("--distributed", action="store_true",
                    help="one process per host under jax.distributed (the problems are sharded over all their "
                         "devices; process 0 writes the run folder); without the three flags below JAX reads them "
                         "from the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU)")
    mt.add_argument("--coordinator", default=None, help="HOST:PORT of process 0 (with --distributed)")
    mt.add_argument("--num-processes", type=int, default=None, help="number of processes (with --distributed)")
    mt.add_argument("--process-id", type=int, default=None, help="this process's index (with --distributed)")
    mt.set_defaults(func=_meta_train)

    ev = sub.add_parser("evaluate", help="train a task with a saved optimizer and report losses")
    ev.add_argument("--run", required=True, help="a meta-train output folder")
    ev.add_argument("--task", default=None, help="task to evaluate on (default: the run's task)")
    ev.add_argument("--steps", type=int, default=None, help="inner steps (default: the run's horizon)")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", default=None, help="write the JSON report here too")
    ev.add_argument("--no-progress", action="store_true")
    ev.set_defaults(func=_evaluate)
    mc = sub.add_parser("meta-curve", help="the unperturbed meta-objective of every θ snapshot of a run")
    mc.add_argument("--run", required=True, help="a meta-train output folder")
    mc.add_argument("--seeds", type=int, default=4, help="fresh episodes per θ (same for every θ)")
    mc.add_argument("--steps", type=int, default=None, help="inner steps per episode (default: the run's horizon)")
    mc.add_argument("--every", type=int, default=1, help="use every k-th snapshot (the last is always used)")
    mc.add_argument("--seed", type=int, default=1000, help="PRNG seed of the evaluation episodes")
    mc.add_argument("--out", default=None, help=f"JSON report (default: RUN/{run_files.META_CURVE})")
    mc.add_argument("--no-progress", action="store_true")
    mc.set_defaults(func=_meta_curve)

    oo = sub.add_parser("ood", help="out-of-distribution suite: tuned Adam/NAdamW vs. learned optimizers "
                                    "(App. B.3); sizes from STAR_SCALE; resumes task by task")
    oo.add_argument("--tasks", default="all",
                    help="'all' (the 16 of star.tasks.OOD_SUITE; a task without its data is skipped) or a "
                         "comma list of registered tasks (e.g. lm1b_lstm; missing data stop it before any work)")
    oo.add_argument("--learned", action="append", metavar="NAME=RUN_DIR[@STEP][+zero_output][,...]",
                    help="a learned optimizer from meta-train folders, all of them evaluated (default: the rows of "
                         "--learned-set); @STEP takes the θ snapshot after STEP outer steps, +zero_output zeroes its "
                         "output layer; repeat for several; a name of the set replaces its row")
    oo.add_argument("--learned-set", default="default", metavar="SET",
                    help="the learned rows to start from (star.learned_optimizers.LEARNED_SETS): default (star, "
                         "star_wd0.5, hyperparam, blackbox, each the meta-training seeds 0, 1, 2 of "
                         "results/metatrain/fmnist8_grid), controls (the OOD chapter's controls), long (seed 0 of "
                         "each member of results/metatrain/fmnist8_grid_long)")
    oo.add_argument("--baselines-from", default=None, metavar="DIR",
                    help="reuse the tuned baselines stored in DIR (e.g. results/ood/cpu) instead of tuning them; "
                         "they must have been made with the same suite settings")
    oo.add_argument("--no-learned", action="append", metavar="NAME", help="drop a default learned optimizer")
    oo.add_argument("--metatrain-root", default=".", help="folder the run folders are relative to")
    oo.add_argument("--released", nargs="*", default=None,
                    help="also evaluate the paper's released optimizers ('default' = the STAR and "
                         "Hyperparam checkpoints; needs internet or a cached copy)")
    oo.add_argument("--steps", type=int, default=None,
                    help="inner steps per run instead of the scale's (e.g. 4000, twice the meta-training horizon)")
    oo.add_argument("--adam-near", default=None, metavar="DIR",
                    help="tune Adam per task over the half-decades next to the learning rate chosen in DIR's "
                         "stored record of the task (e.g. results/ood/cpu), instead of the scale's whole grid")
    oo.add_argument("--no-nadamw", action="store_true", help="no NAdamW baseline (Adam only)")
    oo.add_argument("--out", default=None, help="output folder (default results/ood/<scale>)")
    oo.add_argument("--force", action="store_true", help="recompute tasks that are already stored")
    oo.add_argument("--no-progress", action="store_true")
    oo.set_defaults(func=_ood)

    sm = sub.add_parser("summarize", help="window means and stationary slope of a run's PES meta-loss")
    sm.add_argument("--run", required=True, help="a meta-train output folder")
    sm.add_argument("--out", default=None, help=f"JSON report (default: RUN/{run_files.SUMMARY})")
    sm.set_defaults(func=_summarize)
    ix = sub.add_parser("index", help="write (or --check) the index of stored results, results/README.md")
    ix.add_argument("--root", default="results", help="the results folder")
    ix.add_argument("--book", default="book", help="the chapters, searched for the results they use")
    ix.add_argument("--check", action="store_true", help="only check that the index is up to date (exit 2 if not)")
    ix.set_defaults(func=_index)
    _add_sweep_parser(sub)
    return parser


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr if file is None else file)


def main(argv=None) -> int:
    """Run the command line; a failure the user can cause prints one ``error: ...`` line and returns 2."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv
    show = warnings.showwarning
    warnings.showwarning = _one_line_warning
    try:
        from star.scale import get_scale

        get_scale()  # a bad $STAR_SCALE stops every command before it compiles or writes anything
        return args.func(args)
    except (ValueError, OSError) as err:  # bad input, unusable files, data not on this machine
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        warnings.showwarning = show


if __name__ == "__main__":
    sys.exit(main())
