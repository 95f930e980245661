"""How much signal does one PES meta-gradient estimate carry for STAR on the Fashion-MNIST MLP?

For each initialisation (nominal, reference) and perturbation scale σ, the same PES state (8 inner
problems at random episode offsets, advanced ``ADVANCE`` truncations at θ so the networks are partly
trained; then both antithetic sides set to the same inner state and the accumulators ξ to 0) is given ``M`` independent gradient estimates
``g_1..g_M`` (independent perturbations and batches). Their pairwise inner products estimate the squared
norm of the expected gradient, ``E<g_i, g_j> = |E g|^2`` for i ≠ j, so

    signal_fraction = mean_{i≠j} <g_i, g_j> / mean_i |g_i|^2

is the fraction of an estimate's squared norm that is signal (1: noiseless, 0: pure noise; negative
values are sampling error; ``star.pes.signal_fraction``, jackknife standard error). For a loss linear in θ
antithetic ES reaches N/(N+D+1) (``star.pes.es_ideal_signal_fraction``), 8/216 = 0.037 here.
The same is reported after the outer loop's element-wise clipping at 1.0, which is what AdamW sees.
Writes pes_signal.json next to this file, with provenance.

    STAR_SCALE=cpu .venv/bin/python results/metatrain/pes_signal.py
"""

import datetime
import json
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from star import pes
from star.inner import build_problem
from star.runs import device_info as _device_info, git_commit as _git_commit
from star.runs import atomic_write_json
from star.scale import get_scale, pick

SIGMAS = (1e-5, 1e-4, 1e-3, 1e-2)
INITS = ("nominal", "reference")
NUM_TASKS, TRUNC, HORIZON = 8, 50, 2000
M = pick(3, 16, 32)
ADVANCE = pick(1, 10, 10)


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def main():
    t0 = time.perf_counter()
    rows = []
    for init in INITS:
        problem, theta, _ = build_problem("star", "fmnist_mlp", HORIZON, seed=0, init=init)
        base = pes.TruncatedPES(problem, NUM_TASKS, TRUNC, std=1e-5)
        state = base.init(theta, jax.random.PRNGKey(0))
        for k in range(ADVANCE):  # partly train the inner problems (σ = 1e-5 barely perturbs them)
            _, state, _ = base.gradient(theta, state, jax.random.PRNGKey(100 + k))
        # One truncation's signal: both antithetic sides restart from the same (+) inner state and ξ = 0,
        # so the estimate sees only this truncation's perturbation, not divergence left by earlier ones.
        state = state._replace(inner=jax.tree.map(lambda x: jnp.stack([x[:, 0], x[:, 0]], axis=1), state.inner),
                               accumulator=jax.tree.map(jnp.zeros_like, state.accumulator))
        for sigma in SIGMAS:
            est = pes.TruncatedPES(problem, NUM_TASKS, TRUNC, std=sigma)
            grads, losses = [], []
            for i in range(M):
                g, _, out = est.gradient(theta, state, jax.random.PRNGKey(10_000 + i))
                grads.append(_flat(g))
                losses.append(float(out.loss))
            G = np.stack(grads)
            G = np.where(np.isfinite(G), G, 0.0)
            frac, se = pes.signal_fraction(G)
            frac_c, se_c = pes.signal_fraction(np.clip(G, -1.0, 1.0))
            row = {"init": init, "sigma": sigma, "num_estimates": M, "mean_grad_norm": float(np.mean(np.linalg.norm(G, axis=1))),
                   "es_ideal_signal_fraction": pes.es_ideal_signal_fraction(NUM_TASKS, G.shape[1]),
                   "signal_fraction": frac, "signal_fraction_se": se,
                   "signal_fraction_clipped": frac_c, "signal_fraction_clipped_se": se_c,
                   "fraction_of_entries_clipped": float(np.mean(np.abs(G) > 1.0)),
                   "mean_meta_loss": float(np.mean(losses))}
            rows.append(row)
            print(json.dumps(row), flush=True)
    atomic_write_json(Path(__file__).with_suffix(".json"), {
        "description": __doc__.strip().split("\n\n")[0],
        "task": "fmnist_mlp", "optimizer": "star (preset)", "num_tasks": NUM_TASKS, "trunc_length": TRUNC,
        "horizon": HORIZON, "advance_truncations": ADVANCE, "rows": rows,
        "provenance": {"command": "python " + " ".join(sys.argv), "git_commit": _git_commit(),
                       "scale": get_scale().value,
                       "seeds": {"meta_init": 1, "pes_state": 0, "advance": "100..", "estimates": "10000.."},
                       "wall_s": time.perf_counter() - t0, "device": _device_info(),
                       "finished_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")},
    })


if __name__ == "__main__":
    main()
