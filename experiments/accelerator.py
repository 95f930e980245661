"""STAR and PES on an accelerator against the host CPU, and PES on the paper's MLP at large N.

One command, sized for a few minutes of one GPU (``--budget-s``; every part checks the clock before it starts):

1. **Timing.** One training step of the paper's MLP (784-128-128-10, batch 128; App. B.2) with STAR and with
   Adam, and one PES meta-gradient of STAR at N = 8 (truncation 50, both antithetic sides: 800 inner steps),
   on the host CPU and on every accelerator JAX sees: the same jitted code in the same process, the inputs
   placed on each device with ``jax.device_put``. Medians of ``--repeats`` timed calls after compilation.
2. **Runs.** ``python -m star meta-train`` (called in-process, so each run folder records the command a user
   would type) on the paper's MLP at the paper's settings — σ 0.01, K 50, horizon 2000, AdamW lr 1e-4 with
   weight decay 0.1 × lr, clipping 1.0 by value — from the nominal start (STAR's output layer zero): first
   ``--n`` (64) inner problems for ``--outer-steps`` (200) outer steps (or as many as fit half of the time left
   after the timing), then ``--big-n`` (256) for as many outer steps as the rest of the budget allows. Both are
   resumed in chunks of ``--chunk`` outer steps, each ending in a checkpoint, started only if it fits.
   On the CPU these runs take hours (the book's stored N = 8 run: 10 min for 200 steps).
3. **Meta-curves** of both runs (``python -m star meta-curve``) when time is left; otherwise run them later.

Writes ``--out`` (JSON: timings, GPU/CPU ratios, the runs' summaries, provenance) and the run folders under
``--runs`` (``star_<task>_<scale>_<platform>_n<N>[_s<seed>]``). ``--smoke`` shrinks everything (the 8×8 MLP, N 2, a few
steps) so that the test suite runs the whole script on a CPU.

    python experiments/accelerator.py --out results/accelerator/h200/accelerator.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import statistics
import sys
import time
from pathlib import Path

import jax
import numpy as np
import optax

from star import _checks, pes, runs
from star.inner import build_problem, data_sources
from star.scale import get_scale
from star.train import train_step

PAPER = {"task": "fmnist_mlp", "horizon": 2000, "trunc": 50, "std": 0.01, "lr": 1e-4, "wd": 0.1}
SMOKE = {"task": "fmnist8_mlp32", "horizon": 20, "trunc": 5, "std": 0.01, "lr": 1e-4, "wd": 0.1}


def _median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _train_steps_fn(task, opt, steps: int):
    """``steps`` training steps under ``lax.scan`` (one dispatch), batches drawn from a key."""

    def run(params, opt_state, key):
        def body(carry, k):
            p, s = carry
            p, s, loss = train_step(task, opt, p, s, task.sample_batch(k))
            return (p, s), loss

        return jax.lax.scan(body, (params, opt_state), jax.random.split(key, steps))

    return jax.jit(run)


def time_device(device, settings: dict, *, num_tasks: int, steps: int, repeats: int) -> dict:
    """Timings on one device: ms per STAR and Adam training step, seconds and inner steps/s of one PES gradient."""
    put = lambda x: jax.device_put(x, device)
    problem, theta, _ = build_problem("star", settings["task"], settings["horizon"], seed=0, init="nominal")
    problem, theta = put(problem), put(theta)
    params = put(problem.task.init(jax.random.key(0)))
    row = {"platform": device.platform, "kind": device.device_kind}
    for name, opt in (("star", problem.make_optimizer(theta, settings["horizon"])), ("adam", optax.adam(1e-3))):
        fn = _train_steps_fn(problem.task, opt, steps)
        state = put(opt.init(params))
        keys = iter(put(jax.random.split(jax.random.key(1), repeats + 1)))
        t0 = time.perf_counter()
        jax.block_until_ready(fn(params, state, next(keys)))
        row[f"{name}_compile_s"] = time.perf_counter() - t0
        row[f"{name}_step_ms"] = 1e3 * _median_s(lambda: fn(params, state, next(keys)), repeats) / steps
    est = pes.TruncatedPES(problem, num_tasks, settings["trunc"], std=settings["std"])
    pes_state = est.init(theta, put(jax.random.key(2)))
    keys = iter(put(jax.random.split(jax.random.key(3), repeats + 1)))
    t0 = time.perf_counter()
    jax.block_until_ready(est.gradient(theta, pes_state, next(keys)))
    row["pes_compile_s"] = time.perf_counter() - t0
    row["pes_num_tasks"] = num_tasks
    row["pes_gradient_s"] = _median_s(lambda: est.gradient(theta, pes_state, next(keys)), repeats)
    row["pes_inner_steps_per_s"] = est.inner_steps_per_gradient / row["pes_gradient_s"]
    row["star_over_adam"] = row["star_step_ms"] / row["adam_step_ms"]
    return row


def _cli(argv: list[str]) -> dict:
    """Run ``python -m star <argv>`` in this process (compilations are shared between calls); its JSON line."""
    from star.__main__ import main as star_main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = star_main(argv)
    text = buf.getvalue()
    sys.stdout.write(text)
    if code != 0:
        raise RuntimeError(f"python -m star {' '.join(argv)} exited with {code}")
    lines = [ln for ln in text.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def _meta_train_argv(settings: dict, out: Path, *, num_tasks: int, outer_steps: int, seed: int,
                     checkpoint_every: int, resume: bool) -> list[str]:
    argv = ["meta-train", "--optimizer", "star", "--task", settings["task"], "--init", "nominal",
            "--outer-steps", str(outer_steps), "--num-tasks", str(num_tasks), "--trunc", str(settings["trunc"]),
            "--horizon", str(settings["horizon"]), "--std", str(settings["std"]), "--lr", str(settings["lr"]),
            "--wd", str(settings["wd"]), "--seed", str(seed), "--checkpoint-every", str(checkpoint_every),
            "--out", str(out), "--no-progress"]
    return argv + (["--resume"] if resume else [])


def _run_summary(folder: Path) -> dict:
    """Steps, meta-losses, divergences and the steady inner-step rate of a run folder's log."""
    log = runs.load_log(folder)
    if "step" not in log:
        return {"folder": folder.name, "steps": 0}
    rate = log["inner_steps_per_s"][1:] if len(log["step"]) > 1 else log["inner_steps_per_s"]
    step_s = log["step_s"][1:] if len(log["step"]) > 1 else log["step_s"]
    loss = log["meta_loss"][np.isfinite(log["meta_loss"])]
    return {"folder": folder.name, "steps": int(log["step"][-1]),
            "first_meta_loss": float(loss[0]) if loss.size else None,
            "last_meta_loss": float(loss[-1]) if loss.size else None,
            "min_meta_loss": float(loss.min()) if loss.size else None,
            "diverged_losses_total": int(np.nansum(log.get("diverged_losses", np.zeros(1)))),
            "median_inner_steps_per_s": float(np.median(rate)), "median_step_s": float(np.median(step_s))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="results/accelerator/accelerator.json", help="the JSON file written")
    ap.add_argument("--runs", default="results/metatrain", help="folder for the run folders")
    ap.add_argument("--budget-s", type=float, default=450.0, help="wall-clock budget of the whole command")
    ap.add_argument("--n", type=int, default=64, help="inner problems N of the first run")
    ap.add_argument("--outer-steps", type=int, default=200, help="outer steps of the first run")
    ap.add_argument("--big-n", type=int, default=256, help="N of the second run (0: none)")
    ap.add_argument("--chunk", type=int, default=20, help="outer steps per chunk of the second run")
    ap.add_argument("--big-steps", type=int, default=0,
                    help="at most this many outer steps of the second run (0: as many as the budget allows)")
    ap.add_argument("--seed", type=int, default=0, help="meta-training seed of both runs")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per measurement (median)")
    ap.add_argument("--curve-seeds", type=int, default=8, help="episodes per θ snapshot of the meta-curves")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes on the 8x8 MLP (the test suite)")
    args = ap.parse_args(argv)
    t_start = time.perf_counter()
    try:
        budget = float(args.budget_s)
        if not (math.isfinite(budget) and budget > 0):
            raise ValueError(f"--budget-s must be a positive number of seconds; got {args.budget_s}")
        for name in ("n", "outer_steps", "chunk", "repeats", "curve_seeds"):
            _checks.integer("--" + name.replace("_", "-"), getattr(args, name))
        _checks.integer("--big-n", args.big_n, minimum=0)
        _checks.integer("--big-steps", args.big_steps, minimum=0)
        _checks.integer("--seed", args.seed, minimum=0)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    settings = SMOKE if args.smoke else PAPER
    out, runs_dir = Path(args.out), Path(args.runs)
    left = lambda: budget - (time.perf_counter() - t_start)
    platform = jax.default_backend()
    report: dict = {
        "description": "STAR training step and PES meta-gradient on the host CPU and the accelerator (same code, "
                       "same process), and PES meta-training of STAR on the paper's MLP from the nominal start at "
                       "large N (the paper's σ, truncation, horizon, outer learning rate and weight decay)",
        "settings": dict(settings, smoke=bool(args.smoke)), "timing": [], "runs": [], "skipped": [],
    }

    def save():
        report["provenance"] = runs.provenance(runs.command_line(sys.argv[1:] if argv is None else argv,
                                                                 prog=("python", "experiments/accelerator.py")),
                                               seeds={"seed": args.seed}, wall_s=time.perf_counter() - t_start,
                                               data=data)
        out.parent.mkdir(parents=True, exist_ok=True)
        runs.atomic_write_json(out, report)

    data = data_sources(build_problem("star", settings["task"], settings["horizon"])[0])
    # 1. timing: the host CPU, then every accelerator (the CPU first: it is the slow, predictable one)
    devices = [jax.devices("cpu")[0]] + [d for d in jax.devices() if d.platform != "cpu"]
    timing_n = 2 if args.smoke else 8
    for dev in devices:
        row = time_device(dev, settings, num_tasks=timing_n, steps=5 if args.smoke else 50,
                          repeats=args.repeats)
        report["timing"].append(row)
        print(json.dumps(row), flush=True)
        save()
    cpu_row = report["timing"][0]
    for row in report["timing"][1:]:
        row["star_step_speedup_over_cpu"] = cpu_row["star_step_ms"] / row["star_step_ms"]
        row["adam_step_speedup_over_cpu"] = cpu_row["adam_step_ms"] / row["adam_step_ms"]
        row["pes_speedup_over_cpu"] = row["pes_inner_steps_per_s"] / cpu_row["pes_inner_steps_per_s"]
    save()

    # 2. runs, named by the scheme of results/README.md with the platform (runs on different hardware differ).
    # Both are trained in chunks that end in a checkpoint, each chunk started only if it fits its deadline:
    # the first run may use half of what is left after the timing, the second the rest, less a reserve for
    # the meta-curves and the report.
    def folder(n):
        name = f"star_{settings['task'].split('_')[0]}_{get_scale().value}_{platform}_n{n}"
        return runs_dir / (name + (f"_s{args.seed}" if args.seed else ""))

    reserve = 0.15 * budget
    first_deadline = time.perf_counter() + 0.5 * max(0.0, left() - reserve)
    plan = [(args.n, args.outer_steps, lambda: first_deadline - time.perf_counter())]
    if args.big_n:
        plan.append((args.big_n, args.big_steps or None, lambda: left() - reserve))
    for num_tasks, target, time_left in plan:
        run_dir, done, chunk_s, t0 = folder(num_tasks), 0, None, time.perf_counter()
        while (target is None or done < target) and (chunk_s is None or time_left() > 1.2 * chunk_s):
            c0 = time.perf_counter()
            steps = done + args.chunk if target is None else min(done + args.chunk, target)
            _cli(_meta_train_argv(settings, run_dir, num_tasks=num_tasks, outer_steps=steps, seed=args.seed,
                                  checkpoint_every=args.chunk, resume=done > 0))
            # the next chunk's time from the steady step time (the first call's wall time includes compiling)
            step_s = runs.load_log(run_dir)["step_s"][done + (done == 0):]
            chunk_s = (1.2 * float(np.median(step_s)) * args.chunk if step_s.size else time.perf_counter() - c0) + 1.0
            done = steps
        if target is not None and done < target:
            report["skipped"].append(f"{run_dir.name}: stopped at {done} of {target} outer steps (out of time)")
        report["runs"].append(dict(_run_summary(run_dir), num_tasks=num_tasks, wall_s=time.perf_counter() - t0))
        save()

    # 3. meta-curves, when time is left (the first run's costs about as much as the second's)
    for r in report["runs"]:
        if left() < 0.08 * budget:
            report["skipped"].append(f"meta-curve of {r['folder']}: out of time")
            continue
        res = _cli(["meta-curve", "--run", str(runs_dir / r["folder"]), "--seeds", str(args.curve_seeds),
                    "--no-progress"])
        r["meta_curve"] = {"first": res.get("first"), "last": res.get("last"), "nominal": res.get("nominal")}
        save()
    report["wall_s"] = time.perf_counter() - t_start
    save()
    print(json.dumps({"out": str(out), "wall_s": report["wall_s"], "runs": [r["folder"] for r in report["runs"]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
