"""Benchmark: tuning a baseline as one batched, compiled program vs. a Python loop over configurations.

The out-of-distribution suite tunes Adam and NAdamW per task by training many configurations
(``star.ood_tuning``). ``batched``: all configurations in calls of ``star.batched.train_batched`` (configurations
and seeds vmapped, one compilation). ``loop``: the same configurations one after another with
``star.train.train``, which reuses its single compilation too (the factory is the same object and the
hyper-parameters are traced), so the ratio measures batching, not recompilation. Each is run twice in
this process, on the same task, steps and keys: the first ("cold") time includes its compilation, the
second ("warm") does not. Not a test: the machine may be shared, so numbers are noisy. Last line: JSON.

    python bench/ood_tuning.py [--task digits_mlp32] [--configs 25] [--steps 1000]

The curves of the two agree to float32 rounding, except in runs that are chaotic (a learning rate so large
that rounding differences between a batched and a single matrix product grow): the last line counts them.
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
    ap.add_argument("--configs", type=int, default=25, help="default: the cpu suite's 9 Adam + 16 NAdamW")
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    task = get_task(args.task)
    n = args.configs
    h = baselines.stack_hparams(baselines.adam_hparams(baselines.adam_lr_grid(1e-4, 1e-1)),
                                baselines.sample_nadamw_hparams(jax.random.key(0), max(1, n - 7)))
    h = jax.tree.map(lambda x: x[:n], h)
    keys = jnp.stack([jax.random.key(1000 + i) for i in range(n)])
    make = lambda hp: baselines.nadamw(hp, args.steps)  # noqa: E731

    def run_batched():
        return train_batched(task, make, h, keys, args.steps, chunk_size=100, progress=False).losses

    def run_loop():
        return np.stack([train(task, make, args.steps, keys[i], meta_params=jax.tree.map(lambda x: x[i], h),
                               chunk_size=100, progress=False).losses for i in range(n)])

    times = {}
    for name, fn in (("batched", run_batched), ("loop", run_loop)):
        for phase in ("cold", "warm"):
            t0 = time.perf_counter()
            out = fn()
            times[f"{name}_{phase}_s"] = time.perf_counter() - t0
        times[name] = out
    diff = np.abs(times.pop("loop") - times.pop("batched"))
    per_run = np.where(np.isnan(diff), 0.0, diff).max(axis=1)
    err = float(np.median(per_run))
    chaotic = int(np.sum(per_run > 1e-3))
    cold = times["loop_cold_s"] / times["batched_cold_s"]
    warm = times["loop_warm_s"] / times["batched_warm_s"]
    print(f"{args.task}: {n} configurations x {args.steps} steps")
    print(f"  batched (vmapped, 1 compilation): cold {times['batched_cold_s']:7.2f} s, "
          f"warm {times['batched_warm_s']:7.2f} s")
    print(f"  Python loop over configurations:  cold {times['loop_cold_s']:7.2f} s, warm {times['loop_warm_s']:7.2f} s")
    print(f"  speed-up of batching: {cold:.2f}x with compilation, {warm:.2f}x without "
          f"(median over runs of max |curve difference| {err:.1e}; {chaotic} of {n} runs differ by > 1e-3)")
    print(json.dumps({"task": args.task, "configs": n, "steps": args.steps, **times, "speedup_cold": cold,
                      "speedup_warm": warm, "median_max_abs_diff": err,
                      "runs_differing": chaotic}))

if __name__ == "__main__":
    main()
