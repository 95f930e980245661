"""Measurement (not a timing): STAR's divergence hazard at the reference initialization.

Issue 3 §1: with the reference's random MLP initialization, STAR can diverge within a few steps on
the Fashion-MNIST MLP, because the Adam-normalized blackbox step s d e^{beta a} / sqrt(v + 1e-6) is
O(|d|) per element while v (no bias correction) is still tiny.  ``init="nominal"`` (zero output layer)
starts STAR exactly as its nominal AdamAggMo optimizer instead.

For each configuration and initialization this trains the paper's task (784-128-128-10 ReLU, batch
128, real Fashion-MNIST) for ``--steps`` steps from the same network initialization and the same
batches, for ``--seeds`` meta-parameter seeds (vmapped), and writes
``results/optim_hazard/hazard.json`` with the loss curves and provenance.

    python experiments/optim_hazard.py [--steps 20] [--seeds 16]
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from star import runs
from star.inner import data_sources
from star.optim import init_meta_params, preset, star_optimizer
from star.optim.star import INITS
from star.tasks import get_task

CONFIGS = ("star", "star_nonom", "star_nopre", "blackbox", "hyperparam")


def losses_for_thetas(task, cfg, thetas, params0, data_key, steps):
    """Training losses ``[n_theta, steps]`` (loss of each step's batch before its update)."""

    def run(theta):
        opt = star_optimizer(cfg, theta, num_steps=2000)

        def body(carry, t):
            params, state = carry
            batch = task.sample_batch(jax.random.fold_in(data_key, t))
            loss, grads = jax.value_and_grad(task.loss)(params, batch)
            updates, state = opt.update(grads, state, params, value=loss)
            return (optax.apply_updates(params, updates), state), loss

        _, losses = jax.lax.scan(body, (params0, opt.init(params0)), jnp.arange(steps))
        return losses

    return np.asarray(jax.jit(jax.vmap(run))(thetas))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--task", default="fmnist_mlp")
    ap.add_argument("--configs", nargs="+", default=CONFIGS, choices=CONFIGS)
    ap.add_argument("--out", default="results/optim_hazard/hazard.json")
    args = ap.parse_args(argv)

    start = time.perf_counter()
    task = get_task(args.task)
    key = jax.random.key(0)
    init_key, data_key, theta_key = jax.random.split(key, 3)
    params0 = task.init(init_key)
    theta_keys = jax.random.split(theta_key, args.seeds)
    out = {"description": __doc__.splitlines()[0], "task": args.task, "steps": args.steps, "seeds": args.seeds,
           "runs": {}}
    for name in args.configs:
        cfg = preset(name)
        for init in INITS:
            thetas = jax.vmap(lambda k: init_meta_params(cfg, k, init=init))(theta_keys)
            losses = losses_for_thetas(task, cfg, thetas, params0, data_key, args.steps)
            first5 = losses[:, : min(6, args.steps)].max(axis=1)  # losses at steps 0..5 (after <= 5 updates)
            summary = {
                "losses": np.round(losses, 5).tolist(),
                "initial_loss": float(losses[0, 0]),
                "max_loss_within_5_updates": np.round(first5, 3).tolist(),
                "fraction_above_10x_initial_within_5_updates": float(np.mean(first5 > 10 * losses[:, :1].ravel())),
                "final_loss_median": float(np.median(losses[:, -1])),
            }
            out["runs"][f"{name}/{init}"] = summary
            print(f"{name:11s} {init:9s} initial {summary['initial_loss']:.3f}  "
                  f"max(loss, <=5 updates) median {np.median(first5):9.2f} max {first5.max():9.2f}  "
                  f">10x initial: {summary['fraction_above_10x_initial_within_5_updates']:.2f}  "
                  f"final median {summary['final_loss_median']:.3f}", flush=True)
    out["provenance"] = runs.provenance(
        runs.command_line(sys.argv if argv is None else ["experiments/optim_hazard.py", *argv], prog=("python",)),
        seeds="network init, data and meta-parameter keys from jax.random.key(0) split 3 ways",
        wall_s=round(time.perf_counter() - start, 1), data=data_sources(task))
    runs.atomic_write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
