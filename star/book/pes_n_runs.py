"""More inner problems in the chapter "Why PES breaks STAR on the paper's MLP, and what remedies it"
(``book/pes_breaks_star.ipynb``): PES at the paper's settings on the paper's MLP from the nominal start, by the
number N of inner problems (:data:`N_RUNS`: the CPU run of the STAR chapter and two runs on one GPU), read back
(:func:`load_n_runs`), drawn (:func:`plot_n_runs`), tabulated (:func:`n_runs_table`), and the finding the chapter
records on them (:func:`n_finding`). None of this is a claim of the paper.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from star.book.grid_results import curve_run, file_reader
from star.book.tables import Table, table

__all__ = ["N_RUNS", "load_n_runs", "plot_n_runs", "n_runs_table", "n_finding"]

#: PES at the paper's settings on the paper's MLP from the nominal start, by the number N of inner problems: the
#: CPU run of the STAR chapter (N = 8) and the two runs of ``experiments/accelerator.py`` on one GPU
N_RUNS = {8: "results/metatrain/star_fmnist_cpu_paper_sigma", 64: "results/metatrain/star_fmnist_paper_gpu_n64",
          256: "results/metatrain/star_fmnist_paper_gpu_n256"}
_N_STYLES = {8: ("#de2d26", "-", "o"), 64: ("#3182bd", "--", "s"), 256: ("#31a354", "-.", "^")}
_LEGEND = dict(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def load_n_runs(root: str | Path | None = None) -> dict:
    """The stored runs of :data:`N_RUNS` that have a meta-curve, as ``{N: {"curve", "provenance", "log"}}``."""
    read, out = file_reader(root), {}
    for n, folder in N_RUNS.items():
        rec = curve_run(read, folder)
        if rec is not None and rec["log"] is not None:
            out[n] = rec
    return out


def _device(r) -> str:
    dev = r["provenance"].get("device", {})
    return "CPU (2 cores)" if dev.get("platform") == "cpu" else f"GPU ({dev.get('kind', 'unknown')})"


def plot_n_runs(n_runs: Mapping):
    """Unperturbed meta-objective of the θ snapshots (mean over the common episodes ± one standard error) of PES
    on the paper's MLP from the nominal start, one line per N."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.2))
    for n, r in n_runs.items():
        rows = r["curve"]["curve"]
        c, ls, mk = _N_STYLES.get(n, ("0.4", ":", "D"))
        ax.errorbar([row["step"] for row in rows], [row["mean"] for row in rows],
                    yerr=[row.get("stderr") or 0.0 for row in rows], color=c, ls=ls, marker=mk, ms=5, capsize=2,
                    label=f"N = {n}, {_device(r)}")
    nominal = [r["curve"]["baselines"]["nominal"]["mean"] for r in n_runs.values() if "nominal" in
               r["curve"].get("baselines", {})]
    if nominal:
        ax.axhline(float(np.mean(nominal)), color="0.2", ls=":", lw=1.2, label="nominal optimizer (the start)")
    ax.axhline(math.log(10), color="0.6", ls="-", lw=1, label="ln 10: no training")
    ax.set(xlabel="outer step", ylabel="mean training loss over a 2,000-step episode (nats)",
           title="the paper's MLP, PES at σ = 0.01: meta-objective of θ by N")
    ax.legend(**_LEGEND)
    fig.tight_layout()
    return fig


def _after_start(rows):
    return [row["mean"] for row in rows if row["step"] > 0]


def n_runs_table(n_runs: Mapping) -> Table:
    """Per N: outer steps, where it ran and how fast, the nominal optimizer's meta-objective, the meta-objective at
    outer step 20, the lowest after the start and the last."""
    rows = []
    for n, r in n_runs.items():
        c = r["curve"]["curve"]
        at20 = next((row["mean"] for row in c if row["step"] == 20), float("nan"))
        rate = float(np.nanmedian(r["log"]["inner_steps_per_s"]))
        rows.append([n, c[-1]["step"], _device(r), rate, r["curve"]["baselines"]["nominal"]["mean"], at20,
                     min(_after_start(c)), c[-1]["mean"], r["curve"]["num_seeds"]])
    return table(["N", "outer steps", "device", "inner steps per second", "nominal optimizer (nats)",
                  "meta-objective at outer step 20 (nats)", "lowest after the start (nats)", "last (nats)",
                  "episodes per point"], rows, digits=3)


def n_finding(n_runs: Mapping) -> str:
    """One sentence: does PES still break STAR on the paper's MLP with more inner problems?"""
    if not n_runs:
        return "No stored run of PES on the paper's MLP at another N."
    parts, broken = [], []
    for n, r in n_runs.items():
        c = r["curve"]["curve"]
        nominal = r["curve"]["baselines"]["nominal"]["mean"]
        lowest = min(_after_start(c))
        broken.append(lowest > nominal)
        parts.append(f"N = {n}: lowest {lowest:.3f} after the start over {c[-1]['step']} outer steps, "
                     f"nominal {nominal:.3f}")
    verdict = ("at every N the meta-objective of θ stayed above the nominal optimizer's after the start, so the "
               "breakdown is not an effect of a small N" if all(broken) else
               "at some N the meta-objective of θ went below the nominal optimizer's")
    return f"PES at the paper's σ on the paper's MLP from the nominal start: {verdict} ({'; '.join(parts)})."
