"""Benchmark: the full Fig. 2a grid (App. B.1) — trace of the meta-gradient variance (A.32) for the 20 horizons
of (A.31) x 50 values of alpha x 500 seeds on the paper's H (A.30), P = 0, float64.

Fast path: ``star.nqm_variance.meta_gradient_variance_grid`` (one pass over the T = 1000 trajectory, forward-mode
per-step loss Jacobians, prefix means for every horizon). Baseline, measured in the same process: the naive
loop, one reverse-mode ``meta_gradients`` call per (T, alpha) point (compiled once per horizon), on a subset of
points; its full-grid time is extrapolated per horizon (compile + 50 runs, interpolated in T) and the two
methods are checked to agree on the subset. The last line printed is a JSON summary.

Run: ``.venv/bin/python bench/nqm.py`` (add ``--quick`` for a reduced smoke run).
"""

from __future__ import annotations

import json
import os
import sys
import time

import jax
import numpy as np

from star import nqm as q
from star import nqm_variance


def _timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main(quick: bool = False) -> dict:
    key = jax.random.key(0)
    nqm = q.paper_nqm()
    alphas = nqm_variance.fig2a_alphas(q.PAPER_H, 50)
    horizons = nqm_variance.PAPER_HORIZONS
    num_seeds = 100 if quick else 500

    def grid():
        return nqm_variance.meta_gradient_variance_grid(key, nqm, alphas, horizons, num_seeds)

    cold, cold_s, cold_cpu = _timed(grid)
    warm, warm_s, warm_cpu = _timed(grid)
    assert np.array_equal(cold, warm, equal_nan=True)

    # Naive baseline on a subset: per horizon, the first call compiles, the second reuses the compilation.
    sub_h = (1, 100, 1000) if quick else (1, 10, 100, 500, 1000)
    sub_a = (7, 40)  # alpha indices: a stable alpha and one beyond the edge 2/lmax
    first, run, max_rel = [], [], 0.0
    with q.float64():
        for T in sub_h:
            times = []
            for j in sub_a:
                g, dt, _ = _timed(lambda: jax.block_until_ready(
                    q.gradient_variance_trace(q.meta_gradients(key, nqm, alphas[j], None, T, num_seeds))))
                times.append(dt)
                ref = cold[horizons.index(T), j]
                max_rel = max(max_rel, abs(float(g) - ref) / abs(ref))
            first.append(times[0])
            run.append(times[1])
    compile_est = np.maximum(np.array(first) - np.array(run), 0.0)
    hs = np.array(horizons, dtype=float)
    baseline_full = float(np.sum(np.interp(hs, sub_h, compile_est) + len(alphas) * np.interp(hs, sub_h, run)))
    baseline_subset = float(np.sum(first) + np.sum(run))

    finite = np.isfinite(cold)
    result = {
        "fig2a_grid_seconds": round(cold_s, 3),  # cold: includes tracing and XLA compilation
        "fig2a_grid_seconds_warm": round(warm_s, 3),
        "fig2a_grid_cpu_seconds": round(cold_cpu, 3),
        "grid_shape": [len(horizons), len(alphas), num_seeds],
        "baseline": "naive loop: reverse-mode meta_gradients per (T, alpha), compiled once per T",
        "baseline_subset_points": len(sub_h) * len(sub_a),
        "baseline_subset_seconds": round(baseline_subset, 3),
        "baseline_full_grid_seconds_extrapolated": round(baseline_full, 1),
        "speedup_vs_baseline_cold": round(baseline_full / cold_s, 1),
        "speedup_vs_baseline_warm": round(baseline_full / warm_s, 1),
        "max_rel_diff_vs_baseline": float(f"{max_rel:.2e}"),
        "all_finite_float64": bool(finite.all()),
        "trace_T1000_alpha_max": float(f"{cold[-1, -1]:.3e}"),
        "trace_min": float(f"{np.nanmin(cold):.3e}"),
        "cpu_count": os.cpu_count(),
        "load_avg_1min": round(os.getloadavg()[0], 2),
        "jax": jax.__version__,
        "device": str(jax.devices()[0]),
        "quick": quick,
    }
    return result


if __name__ == "__main__":
    print(json.dumps(main(quick="--quick" in sys.argv[1:])))
