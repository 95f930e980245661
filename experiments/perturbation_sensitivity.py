"""How sensitive is STAR's inner training to PES-sized perturbations of its meta-parameters?

Trains the Fashion-MNIST MLP for 300 steps with STAR at θ = θ_nominal + ε, ε ~ N(0, σ² I) over all
meta-parameters (exactly the perturbations PES applies, star.pes.sample_perturbations), for several σ and
perturbation seeds; θ_nominal is ``init_meta_params(preset("star"), key(1), init="nominal")`` — the
starting point of ``python -m star meta-train --optimizer star`` (seed 0). Writes ``--out`` (default
``results/metatrain/perturbation_sensitivity.json``) with provenance.

    STAR_SCALE=cpu .venv/bin/python experiments/perturbation_sensitivity.py
"""

import argparse
import json
import sys
import time

import jax
import numpy as np

from star import pes, runs
from star.inner import build_problem, data_sources
from star.optim import star_optimizer
from star.train import train

SIGMAS = (0.0, 1e-4, 1e-3, 1e-2)
SEEDS = (0, 1, 2, 3)
CHECKPOINTS = (0, 1, 2, 5, 10, 30, 100, 299)
DATA_KEY = 5


def measure(task_name, steps, sigmas, seeds):
    """One row per (σ, perturbation seed) — σ = 0 once — and the data sources used."""
    problem, theta, cfg = build_problem("star", task_name, 2000, seed=0, init="nominal")

    def factory(th):
        return star_optimizer(cfg, th, 2000)

    rows = []
    for sigma in sigmas:
        for seed in seeds if sigma else (0,):
            eps = pes.sample_perturbations(theta, jax.random.key(seed), max(sigma, 1e-30), 1)
            eps = jax.tree.map(lambda e: e[0], eps)
            th = jax.tree.map(lambda a, e: a + e, theta, eps) if sigma else theta
            losses = np.asarray(train(problem.task, factory, steps, jax.random.key(DATA_KEY), meta_params=th,
                                      progress=False).losses)
            row = {"sigma": sigma, "perturbation_seed": seed, "max_loss": float(np.max(losses)),
                   "mean_loss_last_50": float(np.mean(losses[-50:])),
                   "loss_at_step": {str(s): float(losses[s]) for s in CHECKPOINTS if s < steps}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows, data_sources(problem)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="fmnist_mlp")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--sigmas", type=float, nargs="+", default=SIGMAS)
    ap.add_argument("--seeds", type=int, nargs="+", default=SEEDS)
    ap.add_argument("--out", default="results/metatrain/perturbation_sensitivity.json")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    rows, data = measure(args.task, args.steps, args.sigmas, args.seeds)
    runs.atomic_write_json(args.out, {
        "description": __doc__.strip().split("\n\n")[0],
        "task": args.task, "optimizer": "star (preset), init=nominal", "inner_steps": args.steps,
        "data_key": DATA_KEY, "rows": rows,
        "provenance": runs.provenance(
            runs.command_line(sys.argv if argv is None else ["experiments/perturbation_sensitivity.py", *argv],
                              prog=("python",)),
            seeds={"perturbation": list(args.seeds), "meta_init": 1, "data": DATA_KEY},
            wall_s=time.perf_counter() - t0, data=data),
    })


if __name__ == "__main__":
    main()
