"""How sensitive is STAR's inner training to PES-sized perturbations of its meta-parameters?

Trains the Fashion-MNIST MLP for 300 steps with STAR at θ = θ_nominal + ε, ε ~ N(0, σ² I) over all
meta-parameters (exactly the perturbations PES applies, star.pes.sample_perturbations), for several σ and
perturbation seeds; θ_nominal is ``init_meta_params(preset("star"), PRNGKey(1), init="nominal")`` — the
starting point of ``python -m star meta-train --optimizer star`` (seed 0). Writes
perturbation_sensitivity.json next to this file, with provenance.

    STAR_SCALE=cpu .venv/bin/python results/metatrain/perturbation_sensitivity.py
"""

import datetime
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

from star import pes
from star.runs import device_info as _device_info, git_commit as _git_commit
from star.runs import atomic_write_json
from star.optim import init_meta_params, preset, star_optimizer
from star.scale import get_scale
from star.tasks import get_task
from star.train import train

STEPS = 300
SIGMAS = (0.0, 1e-4, 1e-3, 1e-2)
SEEDS = (0, 1, 2, 3)
CHECKPOINTS = (0, 1, 2, 5, 10, 30, 100, 299)


def main():
    t0 = time.perf_counter()
    cfg = preset("star")
    task = get_task("fmnist_mlp")
    theta = init_meta_params(cfg, jax.random.PRNGKey(1), init="nominal")

    def factory(th):
        return star_optimizer(cfg, th, 2000)

    rows = []
    for sigma in SIGMAS:
        for seed in SEEDS if sigma else (0,):
            eps = jax.tree.map(lambda e: e[0], pes.sample_perturbations(theta, jax.random.PRNGKey(seed), max(sigma, 1e-30), 1))
            th = jax.tree.map(lambda a, e: a + e, theta, eps) if sigma else theta
            losses = np.asarray(train(task, factory, STEPS, jax.random.PRNGKey(5), meta_params=th, progress=False).losses)
            row = {"sigma": sigma, "perturbation_seed": seed, "max_loss": float(np.max(losses)),
                   "mean_loss_last_50": float(np.mean(losses[-50:])),
                   "loss_at_step": {str(s): float(losses[s]) for s in CHECKPOINTS}}
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = Path(__file__).with_suffix(".json")
    atomic_write_json(out, {
        "description": __doc__.strip().split("\n\n")[0],
        "task": "fmnist_mlp", "optimizer": "star (preset), init=nominal", "inner_steps": STEPS,
        "data_key": 5, "rows": rows,
        "provenance": {"command": "python " + " ".join(sys.argv), "git_commit": _git_commit(),
                       "scale": get_scale().value, "seeds": {"perturbation": list(SEEDS), "meta_init": 1, "data": 5},
                       "wall_s": time.perf_counter() - t0, "device": _device_info(),
                       "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
    })


if __name__ == "__main__":
    main()
