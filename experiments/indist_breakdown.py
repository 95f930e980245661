"""The breakdown of STAR under PES-sized perturbations on the paper's Fashion-MNIST MLP, measured (star.breakdown).

Writes ``results/metatrain/breakdown/mechanism.json`` (with provenance): on the paper's 784-128-128 MLP
(``fmnist_mlp``) and, for contrast, the small 8×8 MLP (``fmnist8_mlp32``) on which PES works at cpu scale —

* ``gradient_profile``: per layer at initialisation, how many gradient entries are zero or small enough that
  the blackbox preconditioner sits at its cap;
* ``anatomy``: the first updates of a run whose direction-head output bias is +2e-3, split into the blackbox
  and the nominal term, per layer, with the fraction of dead first-layer units;
* ``direction_bias``: the loss after ``STEPS`` inner steps against that bias, for the paper's preconditioner
  and our variants;
* ``groups``: σ = 0.01 perturbations restricted to one group of meta-parameters at a time;
* ``sigma``: perturbations of all meta-parameters against σ, for the paper's STAR and our variants;
* ``warm_start``: optimizers meta-trained on the small task, applied to the paper's MLP;

and with ``--part interventions`` ``interventions.json``: the same runs with the blackbox term switched off on
the first layer, everywhere else, or where no gradient has been seen (``v = 0``); with ``--part second_moments``
``second_moments.json``: how often each eps dominates the preconditioner along a whole training run.

Every run starts from the nominal meta-parameters of ``meta-train --seed 0`` and trains from the same
initialisation on the same batches (key 5). Usage::

    STAR_SCALE=cpu python experiments/indist_breakdown.py            # about 15 minutes on 2 cores
    STAR_SCALE=cpu python experiments/indist_breakdown.py --part interventions   # interventions.json
    STAR_SCALE=cpu python experiments/indist_breakdown.py --part second_moments  # second_moments.json
    STAR_SCALE=smoke python experiments/indist_breakdown.py --out /tmp/m.json   # seconds, for the tests
"""

from __future__ import annotations

import argparse
import datetime as _dt
import sys
import time
from pathlib import Path

import jax
import numpy as np

from star import breakdown as B
from star.metatrain import atomic_write_json, load_theta
from star.optim import preset
from star.scale import get_scale, pick
from star.tasks import get_task

REPO = Path(__file__).resolve().parent.parent
CONFIGS = ("star", "star_bc_eps1e-4", "star_out0.1", "star_out0.1_bc_eps1e-4")
WARM_START = ("results/metatrain/star_fmnist8_cpu_n64",) + tuple(
    f"results/metatrain/fmnist8_grid/star_wd0.1_s{s}" for s in range(3))


def _curves(losses, block):
    n = losses.shape[1] // block * block
    return np.asarray(losses[:, :n], np.float64).reshape(len(losses), -1, block).mean(axis=2).round(4).tolist()


def interventions(out: str, argv) -> int:
    """``interventions.json``: the blackbox term switched off on some weights (star.breakdown.INTERVENTIONS),
    for head d's output bias at ±2e-3 and for σ = 0.01 perturbations of all meta-parameters."""
    t0 = time.perf_counter()
    steps = pick(smoke=12, cpu=300, paper=300)
    seeds = list(range(pick(smoke=2, cpu=8, paper=16)))
    tail = min(50, steps)
    key = jax.random.key(5)
    task = get_task("fmnist_mlp")
    cfg = preset("star")
    theta = B.nominal_theta(cfg)
    stack = jax.tree.map(lambda a, b: np.concatenate([a, b]), B.with_direction_bias(theta, [2e-3, -2e-3]),
                         B.perturb(theta, 1e-2, seeds))
    labels = ["d bias +2e-3", "d bias -2e-3"] + [f"sigma 0.01, seed {s}" for s in seeds]
    nominal = float(np.mean(B.train_many(task, cfg, B.with_direction_bias(theta, [0.0]), key, steps)[0, -tail:]))
    report = {"settings": {"task": "fmnist_mlp", "optimizer": "star", "inner_steps": steps, "tail": tail,
                           "data_key": 5, "runs": labels}, "nominal_final": nominal, "interventions": {}}
    for name in B.INTERVENTIONS:
        print(f"[{time.perf_counter() - t0:6.0f}s] intervention {name}", flush=True)
        losses, dead = B.train_many_intervened(task, cfg, stack, key, steps, name)
        report["interventions"][name] = {
            "final": np.mean(losses[:, -tail:], axis=1).tolist(), "dead_first_layer_units": dead.tolist(),
            "outcome": [B.classify(row, task.num_classes, nominal, tail=tail) for row in losses]}
    _finish(report, out, argv, t0)
    return 0


def moments(out: str, argv) -> int:
    """``second_moments.json``: along one 2000-step run of the nominal optimizer on each MLP, the fraction of
    weights whose second moment lies below the blackbox preconditioner's eps (1e-6, the paper's; 1e-4, ours)."""
    t0 = time.perf_counter()
    checkpoints = pick(smoke=(1, 5), cpu=(1, 10, 100, 1000, 2000), paper=(1, 10, 100, 1000, 2000))
    cfg = preset("star")
    report = {"settings": {"optimizer": "star, nominal init (meta-train --seed 0)", "data_key": 5,
                           "checkpoints": list(checkpoints), "eps": [1e-6, 1e-4]}, "tasks": {}}
    for name in ("fmnist_mlp", "fmnist8_mlp32"):
        print(f"[{time.perf_counter() - t0:6.0f}s] {name}", flush=True)
        report["tasks"][name] = B.second_moment_profile(get_task(name), cfg, B.nominal_theta(cfg), jax.random.key(5),
                                                        checkpoints)
    _finish(report, out, argv, t0)
    return 0


def _finish(report, out, argv, t0):
    from star.__main__ import _device_info, _git_commit

    report["provenance"] = {"command": "python experiments/indist_breakdown.py " + " ".join(argv or sys.argv[1:]),
                            "git_commit": _git_commit(), "scale": get_scale().value, "device": _device_info(),
                            "wall_s": time.perf_counter() - t0,
                            "finished_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out, report)
    print(f"wrote {out} in {time.perf_counter() - t0:.0f} s")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--part", default="mechanism", choices=("mechanism", "interventions", "second_moments"))
    ap.add_argument("--out", default=None, help="default: results/metatrain/breakdown/<part>.json")
    args = ap.parse_args(argv)
    out = args.out or str(REPO / f"results/metatrain/breakdown/{args.part}.json")
    if args.part == "interventions":
        return interventions(out, argv)
    if args.part == "second_moments":
        return moments(out, argv)
    args.out = out
    t0 = time.perf_counter()
    steps = pick(smoke=12, cpu=300, paper=300)
    seeds = list(range(pick(smoke=2, cpu=8, paper=16)))
    sigmas = pick(smoke=(1e-2,), cpu=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2), paper=(1e-4, 3e-4, 1e-3, 3e-3, 1e-2))
    biases = pick(smoke=(-1e-3, 1e-3), cpu=(-1e-2, -3e-3, -1e-3, -3e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2),
                  paper=(-1e-2, -3e-3, -1e-3, -3e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2))
    configs = pick(smoke=("star", "star_out0.1_bc_eps1e-4"), cpu=CONFIGS, paper=CONFIGS)
    block = pick(smoke=4, cpu=10, paper=10)
    key = jax.random.key(5)
    tasks = {name: get_task(name) for name in ("fmnist_mlp", "fmnist8_mlp32")}
    report = {"settings": {"inner_steps": steps, "perturbation_seeds": seeds, "data_key": 5, "meta_train_seed": 0,
                           "curve_block": block, "tail": min(50, steps), "configs": list(configs)},
              "gradient_profile": {}, "anatomy": {}, "nominal": {}, "direction_bias": {}, "sigma": {}}
    tail = min(50, steps)

    def outcome(losses, task, ref):
        return [B.classify(row, task.num_classes, ref, tail=tail) for row in losses]

    for tname, task in tasks.items():
        print(f"[{time.perf_counter() - t0:6.0f}s] {tname}: profile, nominal, anatomy", flush=True)
        report["gradient_profile"][tname] = B.gradient_profile(task, key)
        theta = B.nominal_theta(preset("star"))
        nominal = B.train_many(task, preset("star"), B.with_direction_bias(theta, [0.0]), key, steps)
        ref = float(np.mean(nominal[0, -tail:]))
        report["nominal"][tname] = {"final": ref, "curve": _curves(nominal, block)[0]}
        report["anatomy"][tname] = {
            name: B.step_anatomy(task, preset(name), _one(B.with_direction_bias(theta, [2e-3])), key,
                                 pick(smoke=3, cpu=12, paper=12))
            for name in (configs if tname == "fmnist_mlp" else ("star",))}
        report["direction_bias"][tname] = {}
        for name in (configs if tname == "fmnist_mlp" else ("star",)):
            print(f"[{time.perf_counter() - t0:6.0f}s] {tname}: direction bias, {name}", flush=True)
            losses = B.train_many(task, preset(name), B.with_direction_bias(theta, biases), key, steps)
            report["direction_bias"][tname][name] = {
                "values": list(biases), "final": np.mean(losses[:, -tail:], axis=1).tolist(),
                "outcome": outcome(losses, task, ref), "curves": _curves(losses, block)}
        report["sigma"][tname] = {}
        for name in (configs if tname == "fmnist_mlp" else ("star",)):
            rows = {}
            for sigma in sigmas:
                print(f"[{time.perf_counter() - t0:6.0f}s] {tname}: sigma {sigma}, {name}", flush=True)
                losses = B.train_many(task, preset(name), B.perturb(theta, sigma, seeds), key, steps)
                rows[repr(sigma)] = {"final": np.mean(losses[:, -tail:], axis=1).tolist(),
                                     "outcome": outcome(losses, task, ref)}
            report["sigma"][tname][name] = rows
    task = tasks["fmnist_mlp"]
    theta = B.nominal_theta(preset("star"))
    ref = report["nominal"]["fmnist_mlp"]["final"]
    report["groups"] = {}
    for group in B.GROUPS:
        print(f"[{time.perf_counter() - t0:6.0f}s] groups: {group}", flush=True)
        losses = B.train_many(task, preset("star"), B.perturb(theta, 1e-2, seeds, group), key, steps)
        report["groups"][group] = {"sigma": 1e-2, "final": np.mean(losses[:, -tail:], axis=1).tolist(),
                                   "outcome": outcome(losses, task, ref)}
    report["warm_start"] = {}
    for run in WARM_START:
        path = REPO / run / "theta_final.npz"
        if not path.exists():
            continue
        th = load_theta(path, theta)
        losses = B.train_many(task, preset("star"), _stack(th), key, steps)
        report["warm_start"][run] = {"final": float(np.mean(losses[0, -tail:])),
                                     "outcome": outcome(losses, task, ref)[0], "curve": _curves(losses, block)[0]}
    _finish(report, args.out, argv, t0)
    return 0


def _one(stack):
    return jax.tree.map(lambda x: x[0], stack)


def _stack(theta):
    return jax.tree.map(lambda x: x[None], theta)


if __name__ == "__main__":
    sys.exit(main())
