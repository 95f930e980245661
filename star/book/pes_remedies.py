"""The remedies in the chapter "Why PES breaks STAR on the paper's MLP, and what remedies it"
(``book/pes_breaks_star.ipynb``): the stored meta-training runs of the paper's STAR and our variants on the paper's
MLP (the ``remedies`` and ``remedies_long`` grids, :func:`load_remedies`; drawn by :func:`plot_remedies`, tabulated
by :func:`remedies_table`), the same on three meta-training seeds (the ``remedies_seeds`` grid,
:func:`plot_remedy_seeds`, :func:`remedy_seed_table`), and the finding the chapter records on them
(:func:`remedies_finding`). None of this is a claim of the paper.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from star.book import labels
from star.book.grid_results import curve_run, file_reader, meta_objective, nominal_objective
from star.book.pes_mechanism import broken_fraction, config_label, config_style, merged_legend
from star.book.tables import Table, table

__all__ = ["load_remedies", "plot_remedies", "remedies_table", "remedy_nominal", "remedy_seed_table",
           "plot_remedy_seeds", "remedies_finding"]

_LEGEND = dict(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def load_remedies(root: str | Path | None = None) -> dict:
    """The paper's STAR on the paper's MLP (the stored run of the STAR chapter) and our variants (the ``remedies``
    and ``remedies_long`` grids), as ``{label: {"folder", "curve", "provenance", "log"}}`` for those stored."""
    from star.grids import get_grid

    read = file_reader(root)
    runs = {"STAR (the paper's), outer lr 0.0001": "results/metatrain/star_fmnist_cpu_paper_sigma"}  # + its length
    for name in ("remedies", "remedies_long"):
        g = get_grid(name, "cpu")
        for spec in g.runs():
            lr = g.lr if spec.member.lr is None else spec.member.lr
            runs[f"{labels.optimizer(spec.member.optimizer)}, outer lr {lr:g}, {g.outer_steps} steps"] = \
                f"{g.folder}/{spec.name}"
    out = {}
    for lab, folder in runs.items():
        rec = curve_run(read, folder)
        if rec is None:
            continue
        rec = {"folder": folder, **rec}
        if not lab.endswith(" steps"):  # the stored run of the STAR chapter: its length from its own files
            n = int(rec["log"]["step"][-1]) if rec["log"] is not None else int(rec["curve"]["curve"][-1]["step"])
            lab = f"{lab}, {n} steps"
        out[lab] = rec
    return out


_REMEDY_STYLES = [("#de2d26", "-", "o"), ("#3182bd", "--", "s"), ("#31a354", "-.", "^"), ("#756bb1", ":", "D"),
                  ("#fd8d3c", "-", "v"), ("0.35", "--", "P")]


def plot_remedies(remedies: Mapping, zoom=(0.36, 0.56)):
    """Unperturbed meta-objective of the θ snapshots on the paper's MLP (mean over the common episodes ± one standard
    error): the paper's STAR and our variants; right, the same zoomed in on the nominal optimizer's level."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    nominal = remedy_nominal(remedies)
    for ax, ylim in zip(axes, (None, zoom)):
        for (lab, r), (c, ls, mk) in zip(remedies.items(), _REMEDY_STYLES):
            rows = r["curve"]["curve"]
            ax.errorbar([row["step"] for row in rows], [row["mean"] for row in rows],
                        yerr=[row.get("stderr") or 0.0 for row in rows], marker=mk, ms=4, ls=ls, capsize=2, color=c,
                        label=lab)
        if nominal is not None:
            ax.axhline(nominal, color="0.2", ls="--", lw=1, label="nominal optimizer (the start)")
        ax.axhline(math.log(10), color="0.6", ls="-", lw=1, label="ln 10: no training")
        ax.set(xlabel="outer step", ylabel="mean training loss over a 2,000-step episode (nats)",
               title="the paper's MLP: meta-objective of θ" + (" (zoom)" if ylim else ""))
        if ylim is not None:
            ax.set_ylim(*ylim)
    fig.legend(*merged_legend(axes[0]), fontsize=8, frameon=False, loc="lower center", ncol=2,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.25, 1, 1))
    return fig


def remedies_table(remedies: Mapping) -> Table:
    """Per run: the meta-objective at its first and last snapshot, the nominal optimizer's, and seconds per outer
    step of meta-training."""
    nominal = remedy_nominal(remedies)
    rows = []
    for lab, r in remedies.items():
        c = r["curve"]["curve"]
        steps = int(r["log"]["step"][-1]) if r["log"] is not None else c[-1]["step"]
        rows.append([lab, c[0]["mean"], c[-1]["step"], c[-1]["mean"], nominal,
                     r["provenance"].get("wall_s_total", float("nan")) / max(steps, 1)])
    return table(["run", "meta-objective at the start (nats)", "last outer step", "meta-objective there (nats)",
                  "nominal optimizer (nats)", "seconds per outer step"], rows, digits=3)


def _seed_curves(results):
    for m in results.grid.members:
        if m.label not in results.runs:
            continue
        steps, obj = meta_objective(results, m)
        for seed, values in zip(results.seeds(m), obj):
            yield m, seed, dict(zip(steps.tolist(), values.tolist()))


def remedy_seed_table(results) -> Table:
    """Per member and meta-training seed of the ``remedies_seeds`` grid: the meta-objective at each snapshot."""
    rows, steps = [], None
    for m, seed, curve in _seed_curves(results):
        steps = steps or list(curve)
        rows.append([config_label(m.optimizer), seed, *[curve.get(t, float("nan")) for t in steps]])
    return table(["optimizer", "seed", *(f"outer step {t} (nats)" for t in steps or [])], rows, digits=3)


def _label_seed_ends(ax, ends):
    """Label each curve's last point with its seed; seeds of one colour whose ends (nearly) coincide share one
    label ("seeds 0, 1"), and labels of different colours that would overlap are moved apart vertically."""
    lo, hi = ax.get_ylim()
    tol = 0.04 * (hi - lo)
    groups = []
    for x, y, seed, c in sorted(ends, key=lambda e: e[1]):
        if groups and groups[-1]["c"] == c and abs(y - groups[-1]["y"]) < tol:
            groups[-1]["seeds"].append(seed)
        else:
            groups.append({"x": x, "y": y, "c": c, "seeds": [seed]})
    last_y, shift = None, 0
    for g in groups:
        shift = shift + 9 if last_y is not None and abs(g["y"] - last_y) < tol else 0
        last_y = g["y"]
        seeds = sorted(g["seeds"])
        text = f"seed {seeds[0]}" if len(seeds) == 1 else "seeds " + ", ".join(str(k) for k in seeds)
        ax.annotate(text, (g["x"], g["y"]), fontsize=8, xytext=(4, shift), textcoords="offset points", color=g["c"],
                    va="center")


def plot_remedy_seeds(results):
    """Every seed's unperturbed meta-objective for each member of the ``remedies_seeds`` grid, with the nominal
    optimizer and ln 10 (no training); each seed is labelled at its last point."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.2))
    labelled, ends = set(), []
    seed_marks = ["o", "s", "^", "D", "v"]
    for m, seed, curve in _seed_curves(results):
        c, ls, _ = config_style(m.optimizer)
        ax.plot(list(curve), list(curve.values()), marker=seed_marks[seed % 5], ms=4, ls=ls, color=c,
                label=None if m in labelled else config_label(m.optimizer))
        labelled.add(m)
        ends.append((list(curve)[-1], list(curve.values())[-1], seed, c))
    nom = nominal_objective(results)
    if nom is not None:
        ax.axhline(nom, color="0.2", ls="--", lw=1, label="nominal optimizer (the start)")
    ax.axhline(math.log(10), color="0.6", ls="-", lw=1, label="ln 10: no training")
    _label_seed_ends(ax, ends)
    ax.set(xlabel="outer step", ylabel="mean training loss over a 2,000-step episode (nats)",
           title=f"the paper's MLP, σ = {results.grid.std:g}, outer lr {results.grid.lr:g}: every seed")
    ax.margins(x=0.12)
    ax.legend(**_LEGEND)
    fig.tight_layout()
    return fig


def remedy_nominal(remedies: Mapping) -> float | None:
    """The nominal optimizer's meta-objective on the remedies' common episodes (the same in every run)."""
    for r in remedies.values():
        nom = r["curve"].get("baselines", {}).get("nominal")
        if nom:
            return float(nom["mean"])
    return None


def remedies_finding(mech: Mapping, seeds_results) -> str:
    """What the remedies do, in one sentence, with their numbers."""
    both = mech["sigma"]["fmnist_mlp"]["star_out0.1_bc_eps1e-4"]["0.01"]["outcome"]
    text = (f"With the output layer scaled by 0.1 and a bias-corrected preconditioner (ε = 10⁻⁴), "
            f"{100 * broken_fraction(both):.0f} % of the σ = 0.01 perturbations break")
    nom = nominal_objective(seeds_results) if seeds_results.runs else None
    if nom is not None:
        ends = {}
        for m, _, curve in _seed_curves(seeds_results):
            ends.setdefault(m.optimizer, []).append(list(curve.values())[-1])
        if "star_out0.1_bc_eps1e-4" in ends and "star" in ends:
            ours = np.asarray(ends["star_out0.1_bc_eps1e-4"]) / nom - 1
            paper = np.asarray(ends["star"]) / nom - 1
            text += (f"; meta-trained with the paper's settings on {len(ours)} seeds, it ends within "
                     f"{100 * np.max(np.abs(ours)):.0f} % of the nominal optimizer, where the paper's STAR ends "
                     f"{100 * np.min(paper):.0f}–{100 * np.max(paper):.0f} % above it")
    return text + "."
