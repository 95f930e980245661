"""Benchmark: tuning a baseline as one batched, compiled program vs. a Python loop over configurations.

The out-of-distribution suite tunes Adam and NAdamW per task by training many configurations
(``star.ood``). ``batched``: all configurations in calls of ``star.batched.train_batched`` (configurations
and seeds vmapped, one compilation). ``loop``: the same configurations one after another with
``star.train.train``, which reuses its single compilation too (the factory is the same object and the
hyper-parameters are traced), so the ratio measures batching, not recompilation. Both include their
compilation and run in this process, on the same task, steps and keys. Not a test: the machine may be
shared, so numbers are noisy. Last line: JSON.

    python bench/ood_tuning.py [--task digits_mlp32] [--configs 16] [--steps 300]
"""

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from star import baselines
from star.batched import train_batched
from star.tasks import get_task
from star.train import train


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="digits_mlp32")
    ap.add_argument("--configs", type=int, default=16)
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    task = get_task(args.task)
    n = args.configs
    h = baselines.stack_hparams(baselines.adam_hparams(baselines.adam_lr_grid(1e-4, 1e-1)),
                                baselines.sample_nadamw_hparams(jax.random.key(0), max(1, n - 7)))
    h = jax.tree.map(lambda x: x[:n], h)
    keys = jnp.stack([jax.random.key(1000 + i) for i in range(n)])
    make = lambda hp: baselines.nadamw(hp, args.steps)  # noqa: E731

    t0 = time.perf_counter()
    batched = train_batched(task, make, h, keys, args.steps, chunk_size=100, progress=False).losses
    t_batched = time.perf_counter() - t0

    t0 = time.perf_counter()
    looped = [train(task, make, args.steps, keys[i], meta_params=jax.tree.map(lambda x: x[i], h),
                    chunk_size=100, progress=False).losses for i in range(n)]
    t_loop = time.perf_counter() - t0
    err = float(np.nanmax(np.abs(np.stack(looped) - batched)))
    print(f"{args.task}: {n} configurations x {args.steps} steps")
    print(f"  batched (vmapped, 1 compilation): {t_batched:7.2f} s")
    print(f"  Python loop over configurations:  {t_loop:7.2f} s")
    print(f"  speed-up of batching: {t_loop / t_batched:.2f}x   (max |curve difference| {err:.2e})")
    print(json.dumps({"task": args.task, "configs": n, "steps": args.steps, "batched_s": t_batched,
                      "loop_s": t_loop, "speedup": t_loop / t_batched, "max_abs_diff": err}))


if __name__ == "__main__":
    main()
