"""Benchmark: one jitted training step (gradient + optimizer update) on the Fashion-MNIST MLP.

The MLP is 784-128-128-10 with ReLU and batch 128 (the paper's meta-training task, App. B.2), on a
fixed random batch (the data do not change the cost).  optax.adam, STAR and Blackbox are timed in the
same process, interleaved round by round so that load from other processes hits all of them alike.
STAR and Blackbox are timed with both implementations of the per-element MLP: ``fused`` (per-element
arithmetic, the default) and ``matmul`` (the materialized ``[n_params, 39]`` feature matrix).

Wall-clock medians (over rounds) are the reported numbers; the process CPU time per step is printed
as well, since on a shared machine it is less sensitive to other processes.  Prints one line per
variant, then a last line of JSON with the default (fused) wall-clock numbers first:
``{"adam_ms": .., "star_ms": .., "blackbox_ms": .., "star_over_adam": .., "blackbox_over_adam": .., ...}``.

    python bench/optim_step.py [--rounds 15] [--steps 50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import optax

from star.optim import init_meta_params, preset, star_optimizer

SIZES = (784, 128, 128, 10)
BATCH = 128


def mlp_init(key):
    params = {}
    for i, (a, b) in enumerate(zip(SIZES[:-1], SIZES[1:])):
        key, sub = jax.random.split(key)
        params[f"w{i}"] = jax.random.truncated_normal(sub, -2.0, 2.0, (a, b)) / jnp.sqrt(a)
        params[f"b{i}"] = jnp.zeros((b,))
    return params


def mlp_loss(params, x, y):
    h = x
    n = len(SIZES) - 1
    for i in range(n):
        h = h @ params[f"w{i}"] + params[f"b{i}"]
        if i != n - 1:
            h = jax.nn.relu(h)
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(h, y))


def make_step(opt):
    @jax.jit
    def step(params, state, x, y):
        loss, grads = jax.value_and_grad(mlp_loss)(params, x, y)
        updates, state = opt.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state, loss

    return step


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15, help="interleaved timing rounds (median over rounds)")
    ap.add_argument("--steps", type=int, default=50, help="steps per round and variant")
    args = ap.parse_args()

    key = jax.random.key(0)
    kp, kx, ky, kt = jax.random.split(key, 4)
    params0 = mlp_init(kp)
    x = jax.random.uniform(kx, (BATCH, SIZES[0]))
    y = jax.random.randint(ky, (BATCH,), 0, SIZES[-1])

    variants = {"adam": optax.adam(1e-3)}
    for name in ("star", "blackbox"):
        cfg = preset(name)
        theta = init_meta_params(cfg, kt, init="nominal")
        for impl in ("fused", "matmul"):
            variants[f"{name}_{impl}"] = star_optimizer(cfg, theta, num_steps=2000, implementation=impl)

    runs = {}
    for name, opt in variants.items():
        step = make_step(opt)
        p, s = params0, opt.init(params0)
        for _ in range(3):  # compile + warm up
            p, s, loss = step(p, s, x, y)
        jax.block_until_ready(p)
        runs[name] = [step, p, s]

    times = {name: [] for name in variants}
    cpu = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, run in runs.items():
            step, p, s = run
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(args.steps):
                p, s, loss = step(p, s, x, y)
            jax.block_until_ready((p, s))
            times[name].append((time.perf_counter() - t0) / args.steps * 1e3)
            cpu[name].append((time.process_time() - c0) / args.steps * 1e3)
            run[1], run[2] = p, s

    med = {name: statistics.median(t) for name, t in times.items()}
    cmed = {name: statistics.median(t) for name, t in cpu.items()}
    for name, t in times.items():
        print(f"{name:16s} wall median {med[name]:7.3f} ms/step (min {min(t):.3f}, max {max(t):.3f}); "
              f"CPU time median {cmed[name]:7.3f} ms/step; {args.rounds} rounds x {args.steps} steps")
    print(f"device: {jax.devices()[0].platform}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, jax {jax.__version__}")
    for label, m in (("wall", med), ("CPU time", cmed)):
        print(f"{label} ratios to adam: star fused {m['star_fused'] / m['adam']:.2f}, "
              f"matmul {m['star_matmul'] / m['adam']:.2f}; "
              f"blackbox fused {m['blackbox_fused'] / m['adam']:.2f}, matmul {m['blackbox_matmul'] / m['adam']:.2f}")
    out = {
        "adam_ms": round(med["adam"], 4),
        "star_ms": round(med["star_fused"], 4),
        "blackbox_ms": round(med["blackbox_fused"], 4),
        "star_over_adam": round(med["star_fused"] / med["adam"], 3),
        "blackbox_over_adam": round(med["blackbox_fused"] / med["adam"], 3),
        "star_matmul_ms": round(med["star_matmul"], 4),
        "blackbox_matmul_ms": round(med["blackbox_matmul"], 4),
        "cpu_star_over_adam": round(cmed["star_fused"] / cmed["adam"], 3),
        "cpu_blackbox_over_adam": round(cmed["blackbox_fused"] / cmed["adam"], 3),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
