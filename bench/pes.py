"""Benchmark: one PES outer gradient for STAR on the Fashion-MNIST MLP vs the same inner steps as plain
vectorised STAR training. Not a test; the machine may be shared, so numbers are noisy.

Setting: 8 inner problems, truncation 50, antithetic (2 × 8 × 50 = 800 inner steps per outer gradient),
horizon 2000, σ = 0.01. The baseline runs the same 16 × 50 inner steps with ``vmap`` over 16 problems and
``lax.scan`` over 50 steps, no perturbations, no resets, no loss bookkeeping; a second baseline gives every
problem its own θ, as PES must (``pes_overhead_vs_per_problem_theta``). All are timed after
compilation (median of ``--repeats`` calls), in the same process. Last line: JSON.

    python bench/pes.py [--repeats 3] [--num-tasks 8] [--trunc 50] [--task fmnist_mlp]
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from star import pes
from star.inner import build_problem
from star.train import train_step


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--num-tasks", type=int, default=8)
    ap.add_argument("--trunc", type=int, default=50)
    ap.add_argument("--horizon", type=int, default=2000)
    ap.add_argument("--task", default="fmnist_mlp")
    ap.add_argument("--optimizer", default="star")
    args = ap.parse_args()

    problem, theta, _ = build_problem(args.optimizer, args.task, args.horizon, seed=0, init="nominal")
    est = pes.TruncatedPES(problem, num_tasks=args.num_tasks, trunc_length=args.trunc, std=0.01)
    grad_fn = jax.jit(lambda prob, th, st, k: pes.estimate_gradient(prob, th, st, k, std=0.01,
                                                                  trunc_length=args.trunc))
    init_fn = jax.jit(lambda prob, th, k: pes.init_state(prob, th, k, args.num_tasks))
    state = init_fn(problem, theta, jax.random.key(0))
    t0 = time.perf_counter()
    jax.block_until_ready(grad_fn(problem, theta, state, jax.random.key(1)))
    compile_pes = time.perf_counter() - t0
    keys = iter(jax.random.split(jax.random.key(2), 1000))
    outer_grad_s = _median_time(lambda: grad_fn(problem, theta, state, next(keys)), args.repeats)

    # Plain vectorised STAR training of the same 2N problems for K steps.
    n2 = 2 * args.num_tasks

    def plain(prob, th, inner, key):
        opt = prob.make_optimizer(th, prob.horizon)

        def one(inner, k):
            def body(carry, kk):
                params, opt_state = carry
                params, opt_state, loss = train_step(prob.task, opt, params, opt_state, prob.task.sample_batch(kk))
                return (params, opt_state), loss
            return jax.lax.scan(body, inner, jax.random.split(k, args.trunc))
        return jax.vmap(one)(inner, jax.random.split(key, n2))

    plain = jax.jit(plain)
    inner = jax.vmap(problem.init, in_axes=(None, 0))(theta, jax.random.split(jax.random.key(3), n2))
    t0 = time.perf_counter()
    jax.block_until_ready(plain(problem, theta, inner, jax.random.key(4)))
    compile_plain = time.perf_counter() - t0
    plain_s = _median_time(lambda: plain(problem, theta, inner, next(keys)), args.repeats)

    # The same, but every problem with its own θ (as PES must): separates the cost of per-problem
    # meta-parameters from the cost of the estimator's bookkeeping.
    def plain_batched(prob, ths, inner, key):
        def one(th, inner, k):
            opt = prob.make_optimizer(th, prob.horizon)

            def body(carry, kk):
                params, opt_state = carry
                params, opt_state, loss = train_step(prob.task, opt, params, opt_state, prob.task.sample_batch(kk))
                return (params, opt_state), loss
            return jax.lax.scan(body, inner, jax.random.split(k, args.trunc))
        return jax.vmap(one)(ths, inner, jax.random.split(key, n2))

    plain_batched = jax.jit(plain_batched)
    ths = jax.tree.map(lambda t: t + 0.001 * jnp.ones((n2,) + t.shape, t.dtype), theta)
    jax.block_until_ready(plain_batched(problem, ths, inner, jax.random.key(5)))
    plain_batched_s = _median_time(lambda: plain_batched(problem, ths, inner, next(keys)), args.repeats)

    steps = est.inner_steps_per_gradient
    result = {
        "task": args.task, "optimizer": args.optimizer, "num_tasks": args.num_tasks, "trunc": args.trunc,
        "inner_steps_per_gradient": steps, "devices": len(jax.devices()), "platform": jax.devices()[0].platform,
        "compile_pes_s": compile_pes, "compile_plain_s": compile_plain, "plain_s": plain_s,
        "plain_per_problem_theta_s": plain_batched_s,
        "outer_grad_s": outer_grad_s,
        "inner_steps_per_s": steps / outer_grad_s,
        "plain_inner_steps_per_s": steps / plain_s,
        "pes_overhead": outer_grad_s / plain_s,
        "pes_overhead_vs_per_problem_theta": outer_grad_s / plain_batched_s,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
