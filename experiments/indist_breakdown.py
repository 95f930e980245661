"""The breakdown of STAR under PES-sized perturbations on the paper's Fashion-MNIST MLP, measured (star.breakdown).

Three parts, each one JSON file under ``results/metatrain/breakdown/`` (``--out`` to write elsewhere):

``mechanism`` (``mechanism.json``), on the paper's 784-128-128 MLP (``fmnist_mlp``) and, for contrast, the small
8×8 MLP (``fmnist8_mlp32``) on which PES works at cpu scale:

* ``gradient_profile``: per layer at initialisation, how many gradient entries are zero or small enough that
  the blackbox preconditioner sits at its cap;
* ``anatomy``: the first updates of a run whose direction-head output bias is +2e-3, split into the blackbox
  and the nominal term, per layer, with the fraction of dead first-layer units;
* ``direction_bias``: the loss after the run against that bias, for the paper's preconditioner and our variants;
* ``sigma``: perturbations of all meta-parameters against σ, for the paper's STAR and our variants;
* ``groups``: σ = 0.01 perturbations restricted to one group of meta-parameters at a time;
* ``warm_start``: optimizers meta-trained on the small task, applied to the paper's MLP.

``interventions`` (``interventions.json``): the same kind of runs with the blackbox term switched off on the
first layer, everywhere else, or where no gradient has been seen (``v = 0``).

``second_moments`` (``second_moments.json``): along one training run of the nominal optimizer, how often each
eps dominates the blackbox preconditioner.

Every run starts from the nominal meta-parameters of ``meta-train --seed 0`` and trains from the same
initialisation on the same batches (key 5). Usage::

    STAR_SCALE=cpu python experiments/indist_breakdown.py                          # ~17 min on 2 cores
    STAR_SCALE=cpu python experiments/indist_breakdown.py --part interventions     # ~6 min
    STAR_SCALE=cpu python experiments/indist_breakdown.py --part second_moments    # ~3 min
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

from star import breakdown as B
from star import runs
from star.inner import data_sources
from star.optim import preset
from star.scale import pick
from star.tasks import get_task

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ("star", "star_bc_eps1e-4", "star_out0.1", "star_out0.1_bc_eps1e-4")
BIASES = (-1e-2, -3e-3, -1e-3, -3e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
SIGMAS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
WARM_START = ("results/metatrain/star_fmnist8_cpu_n64",) + tuple(
    f"results/metatrain/fmnist8_grid/star_wd0.1_s{s}" for s in range(3))
DATA_KEY = 5
PARTS = ("mechanism", "interventions", "second_moments")


def _curves(losses, block):
    n = losses.shape[1] // block * block
    return np.asarray(losses[:, :n], np.float64).reshape(len(losses), -1, block).mean(axis=2).round(4).tolist()


def _log(t0, text):
    print(f"[{time.perf_counter() - t0:6.0f}s] {text}", flush=True)


def mechanism(a, t0) -> dict:
    key = jax.random.key(DATA_KEY)
    tasks = {name: get_task(name) for name in a.tasks}
    tail, block = min(50, a.steps), max(1, min(10, a.steps // 4))
    report = {"settings": {"inner_steps": a.steps, "perturbation_seeds": list(range(a.seeds)), "data_key": DATA_KEY,
                           "meta_train_seed": 0, "curve_block": block, "tail": tail, "configs": list(a.configs),
                           "paper_task": a.paper_task},
              "gradient_profile": {}, "anatomy": {}, "nominal": {}, "direction_bias": {}, "sigma": {}}
    theta = B.nominal_theta(preset("star"))
    for tname, task in tasks.items():
        configs = a.configs if tname == a.paper_task else ("star",)
        _log(t0, f"{tname}: profile, nominal, anatomy")
        report["gradient_profile"][tname] = B.gradient_profile(task, key)
        nominal = B.train_many(task, preset("star"), B.with_direction_bias(theta, [0.0]), key, a.steps)
        ref = float(np.mean(nominal[0, -tail:]))
        report["nominal"][tname] = {"final": ref, "curve": _curves(nominal, block)[0]}
        d2 = jax.tree.map(lambda x: x[0], B.with_direction_bias(theta, [2e-3]))
        report["anatomy"][tname] = {c: B.step_anatomy(task, preset(c), d2, key, a.anatomy_steps) for c in configs}
        report["direction_bias"][tname], report["sigma"][tname] = {}, {}
        for c in configs:
            _log(t0, f"{tname}: direction bias and sigma, {c}")
            losses = B.train_many(task, preset(c), B.with_direction_bias(theta, a.biases), key, a.steps)
            report["direction_bias"][tname][c] = {
                "values": list(a.biases), "final": np.mean(losses[:, -tail:], axis=1).tolist(),
                "outcome": [B.classify(r, task.num_classes, ref, tail=tail) for r in losses],
                "curves": _curves(losses, block)}
            rows = {}
            for sigma in a.sigmas:
                losses = B.train_many(task, preset(c), B.perturb(theta, sigma, range(a.seeds)), key, a.steps)
                rows[repr(sigma)] = {"final": np.mean(losses[:, -tail:], axis=1).tolist(),
                                     "outcome": [B.classify(r, task.num_classes, ref, tail=tail) for r in losses]}
            report["sigma"][tname][c] = rows
    task = tasks[a.paper_task]
    ref = report["nominal"][a.paper_task]["final"]
    report["groups"] = {}
    for group in B.GROUPS:
        _log(t0, f"groups: {group}")
        losses = B.train_many(task, preset("star"), B.perturb(theta, 1e-2, range(a.seeds), group), key, a.steps)
        report["groups"][group] = {"sigma": 1e-2, "final": np.mean(losses[:, -tail:], axis=1).tolist(),
                                   "outcome": [B.classify(r, task.num_classes, ref, tail=tail) for r in losses]}
    report["warm_start"] = {}
    for run in WARM_START:
        path = REPO / run / runs.FINAL_THETA
        if path.exists():
            losses = B.train_many(task, preset("star"), jax.tree.map(lambda x: x[None], runs.load_theta(path, theta)),
                                  key, a.steps)
            report["warm_start"][run] = {"final": float(np.mean(losses[0, -tail:])),
                                         "outcome": B.classify(losses[0], task.num_classes, ref, tail=tail),
                                         "curve": _curves(losses, block)[0]}
    report["description"] = ("why PES at sigma 0.01 breaks STAR on the paper's MLP: gradient profile, update "
                             "anatomy, tolerated direction-head bias, sensitivity to sigma by group and by "
                             "preconditioner, warm starts")
    return report, tasks


def interventions(a, t0) -> dict:
    key = jax.random.key(DATA_KEY)
    tail = min(50, a.steps)
    task = get_task(a.paper_task)
    cfg = preset("star")
    theta = B.nominal_theta(cfg)
    stack = jax.tree.map(lambda x, y: np.concatenate([x, y]), B.with_direction_bias(theta, [2e-3, -2e-3]),
                         B.perturb(theta, 1e-2, range(a.seeds)))
    labels = ["d bias +2e-3", "d bias -2e-3"] + [f"sigma 0.01, seed {s}" for s in range(a.seeds)]
    nominal = float(np.mean(B.train_many(task, cfg, B.with_direction_bias(theta, [0.0]), key, a.steps)[0, -tail:]))
    report = {"description": "the blackbox term switched off on some weights of the paper's MLP (star.breakdown."
                             "INTERVENTIONS), for head d's output bias at +-2e-3 and sigma = 0.01 perturbations",
              "settings": {"task": a.paper_task, "optimizer": "star", "inner_steps": a.steps, "tail": tail,
                           "data_key": DATA_KEY, "runs": labels}, "nominal_final": nominal, "interventions": {}}
    for name in B.INTERVENTIONS:
        _log(t0, f"intervention {name}")
        losses, dead = B.train_many_intervened(task, cfg, stack, key, a.steps, name)
        report["interventions"][name] = {
            "final": np.mean(losses[:, -tail:], axis=1).tolist(), "dead_first_layer_units": dead.tolist(),
            "outcome": [B.classify(r, task.num_classes, nominal, tail=tail) for r in losses]}
    return report, {a.paper_task: task}


def second_moments(a, t0) -> dict:
    cfg = preset("star")
    report = {"description": "fraction of weights whose second moment lies below the blackbox preconditioner's "
                             "eps (1e-6, the paper's; 1e-4, ours) along one run of the nominal optimizer",
              "settings": {"optimizer": "star, nominal init (meta-train --seed 0)", "data_key": DATA_KEY,
                           "checkpoints": list(a.checkpoints), "eps": [1e-6, 1e-4]}, "tasks": {}}
    tasks = {}
    for name in a.tasks:
        _log(t0, name)
        tasks[name] = get_task(name)
        report["tasks"][name] = B.second_moment_profile(tasks[name], cfg, B.nominal_theta(cfg),
                                                        jax.random.key(DATA_KEY), a.checkpoints)
    return report, tasks


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", default="mechanism", choices=PARTS)
    ap.add_argument("--out", default=None, help="default: results/metatrain/breakdown/<part>.json")
    ap.add_argument("--tasks", nargs="+", default=["fmnist_mlp", "fmnist8_mlp32"])
    ap.add_argument("--paper-task", default="fmnist_mlp", help="the task of the groups, warm starts, interventions")
    ap.add_argument("--configs", nargs="+", default=list(pick(smoke=CONFIGS[::3], cpu=CONFIGS, paper=CONFIGS)))
    ap.add_argument("--steps", type=int, default=pick(smoke=12, cpu=300, paper=300), help="inner steps per run")
    ap.add_argument("--anatomy-steps", type=int, default=pick(smoke=3, cpu=12, paper=12))
    ap.add_argument("--seeds", type=int, default=pick(smoke=2, cpu=8, paper=16), help="perturbations per setting")
    ap.add_argument("--sigmas", type=float, nargs="+", default=list(pick(smoke=(1e-2,), cpu=SIGMAS, paper=SIGMAS)))
    ap.add_argument("--biases", type=float, nargs="+",
                    default=list(pick(smoke=(-1e-3, 1e-3), cpu=BIASES, paper=BIASES)))
    ap.add_argument("--checkpoints", type=int, nargs="+",
                    default=list(pick(smoke=(1, 5), cpu=(1, 10, 100, 1000, 2000), paper=(1, 10, 100, 1000, 2000))))
    args = ap.parse_args(argv)
    if args.paper_task not in args.tasks:
        ap.error(f"--paper-task {args.paper_task!r} must be one of --tasks {args.tasks}")
    out = Path(args.out or REPO / f"results/metatrain/breakdown/{args.part}.json")
    t0 = time.perf_counter()
    report, tasks = {"mechanism": mechanism, "interventions": interventions,
                     "second_moments": second_moments}[args.part](args, t0)
    data = {}
    for task in tasks.values():
        data.update(data_sources(task) or {})
    report["provenance"] = runs.provenance(
        runs.command_line(argv if argv is not None else sys.argv[1:],
                          prog=("python", "experiments/indist_breakdown.py")),
        seeds={"data": DATA_KEY, "meta_init": 1, "perturbations": list(range(args.seeds))},
        wall_s=time.perf_counter() - t0, data=data)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_json(out, report)
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
