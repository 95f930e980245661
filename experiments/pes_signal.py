"""How much signal does one PES meta-gradient estimate carry for STAR on the Fashion-MNIST MLP?

For each initialisation (nominal, reference) and perturbation scale σ, the same PES state (8 inner
problems at random episode offsets, advanced ``--advance`` truncations at θ so the networks are partly
trained; then both antithetic sides set to the same inner state and the accumulators ξ to 0) is given ``M``
independent gradient estimates ``g_1..g_M`` (independent perturbations and batches). Their pairwise inner
products estimate the squared norm of the expected gradient, ``E<g_i, g_j> = |E g|^2`` for i ≠ j, so

    signal_fraction = mean_{i≠j} <g_i, g_j> / mean_i |g_i|^2

is the fraction of an estimate's squared norm that is signal (1: noiseless, 0: pure noise; negative
values are sampling error; ``star.pes.signal_fraction``, jackknife standard error). For a loss linear in θ
antithetic ES reaches N/(N+D+1) (``star.pes.es_ideal_signal_fraction``), 8/216 = 0.037 here.
The same is reported after the outer loop's element-wise clipping at 1.0, which is what AdamW sees.
Writes ``--out`` (default ``results/metatrain/pes_signal.json``) with provenance.

    STAR_SCALE=cpu .venv/bin/python experiments/pes_signal.py
"""

import argparse
import json
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from star import pes, runs
from star.inner import build_problem, data_sources
from star.optim.star import INITS
from star.scale import pick

SIGMAS = (1e-5, 1e-4, 1e-3, 1e-2)


def _flat(tree):
    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def measure(task, num_tasks, trunc, horizon, sigmas, num_estimates, advance):
    """The rows of the measurement (one per initialisation and σ) and the data sources used."""
    rows, data = [], None
    for init in INITS:
        problem, theta, _ = build_problem("star", task, horizon, seed=0, init=init)
        data = data_sources(problem)
        base = pes.TruncatedPES(problem, num_tasks, trunc, std=1e-5)
        state = base.init(theta, jax.random.key(0))
        for k in range(advance):  # partly train the inner problems (σ = 1e-5 barely perturbs them)
            _, state, _ = base.gradient(theta, state, jax.random.key(100 + k))
        # One truncation's signal: both antithetic sides restart from the same (+) inner state and ξ = 0,
        # so the estimate sees only this truncation's perturbation, not divergence left by earlier ones.
        state = state._replace(inner=jax.tree.map(lambda x: jnp.stack([x[:, 0], x[:, 0]], axis=1), state.inner),
                               accumulator=jax.tree.map(jnp.zeros_like, state.accumulator))
        for sigma in sigmas:
            est = pes.TruncatedPES(problem, num_tasks, trunc, std=sigma)
            grads, losses = [], []
            for i in range(num_estimates):
                g, _, out = est.gradient(theta, state, jax.random.key(10_000 + i))
                grads.append(_flat(g))
                losses.append(float(out.loss))
            G = np.stack(grads)
            G = np.where(np.isfinite(G), G, 0.0)
            frac, se = pes.signal_fraction(G)
            frac_c, se_c = pes.signal_fraction(np.clip(G, -1.0, 1.0))
            row = {"init": init, "sigma": sigma, "num_estimates": num_estimates,
                   "mean_grad_norm": float(np.mean(np.linalg.norm(G, axis=1))),
                   "es_ideal_signal_fraction": pes.es_ideal_signal_fraction(num_tasks, G.shape[1]),
                   "signal_fraction": frac, "signal_fraction_se": se,
                   "signal_fraction_clipped": frac_c, "signal_fraction_clipped_se": se_c,
                   "fraction_of_entries_clipped": float(np.mean(np.abs(G) > 1.0)),
                   "mean_meta_loss": float(np.mean(losses))}
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows, data


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="fmnist_mlp")
    ap.add_argument("--num-tasks", type=int, default=8)
    ap.add_argument("--trunc", type=int, default=50)
    ap.add_argument("--horizon", type=int, default=2000)
    ap.add_argument("--sigmas", type=float, nargs="+", default=SIGMAS)
    ap.add_argument("--estimates", type=int, default=None, help="estimates per σ (default by scale: 3/16/32)")
    ap.add_argument("--advance", type=int, default=None, help="truncations before measuring (default 1/10/10)")
    ap.add_argument("--out", default="results/metatrain/pes_signal.json")
    args = ap.parse_args(argv)
    m = pick(3, 16, 32) if args.estimates is None else args.estimates
    advance = pick(1, 10, 10) if args.advance is None else args.advance
    t0 = time.perf_counter()
    rows, data = measure(args.task, args.num_tasks, args.trunc, args.horizon, args.sigmas, m, advance)
    runs.atomic_write_json(args.out, {
        "description": __doc__.strip().split("\n\n")[0],
        "task": args.task, "optimizer": "star (preset)", "num_tasks": args.num_tasks, "trunc_length": args.trunc,
        "horizon": args.horizon, "advance_truncations": advance, "rows": rows,
        "provenance": runs.provenance(
            runs.command_line(sys.argv if argv is None else ["experiments/pes_signal.py", *argv], prog=("python",)),
            seeds={"meta_init": 1, "pes_state": 0, "advance": "100..", "estimates": "10000.."},
            wall_s=time.perf_counter() - t0, data=data),
    })


if __name__ == "__main__":
    main()
