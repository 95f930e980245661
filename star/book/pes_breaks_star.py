"""What the chapter "Why PES breaks STAR on the paper's MLP, and what remedies it" (``book/pes_breaks_star.ipynb``)
computes and draws: the measurements of the breakdown (``results/metatrain/breakdown/``, made by
``experiments/indist_breakdown.py`` with :mod:`star.breakdown`) as figures and tables, the stored meta-training
runs of our remedies (the ``remedies``, ``remedies_long`` and ``remedies_seeds`` grids), and the two findings the
chapter records (:func:`breakdown_finding`, :func:`remedies_finding`). None of this is a claim of the paper.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from star import plotting
from star.book import labels
from star.book.grid_results import file_reader, meta_objective, nominal_objective
from star.book.tables import Table, table

__all__ = [
    "CONFIG_STYLES", "config_label", "broken_fraction", "gradient_profile_table", "plot_anatomy",
    "plot_direction_bias", "plot_sensitivity", "group_table", "interventions_table", "second_moments_table",
    "warm_start_table", "load_remedies", "plot_remedies", "remedies_table", "remedy_seed_table", "plot_remedy_seeds",
    "remedy_nominal", "breakdown_finding", "remedies_finding", "N_RUNS", "load_n_runs", "plot_n_runs",
    "n_runs_table", "n_finding",
]

#: colour, line style and marker of each preconditioner configuration (the paper's STAR and our variants)
CONFIG_STYLES = {"star": ("#de2d26", "-", "o"), "star_bc_eps1e-4": ("#3182bd", "--", "s"),
                 "star_out0.1": ("#31a354", "-.", "^"), "star_out0.1_bc_eps1e-4": ("#756bb1", ":", "D")}
_TASK_LS = {"fmnist_mlp": "-", "fmnist8_mlp32": "--"}
_LEGEND = dict(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))


def config_label(name: str) -> str:
    """``"star"`` → ``"STAR (the paper's)"``; our variants by :func:`star.book.labels.optimizer`."""
    return "STAR (the paper's)" if name == "star" else labels.optimizer(name)


def _style(name):
    return CONFIG_STYLES.get(name, ("0.4", "-", "o"))


def broken_fraction(outcomes: Sequence[str]) -> float:
    """Fraction of runs that are ``dead`` or ``diverged`` (:func:`star.breakdown.classify`)."""
    return float(np.mean([o in ("dead", "diverged") for o in outcomes])) if len(outcomes) else float("nan")


def gradient_profile_table(mech: Mapping) -> Table:
    """Per task and weight matrix at the first step: how many weights, the share with an exactly zero gradient,
    the share whose preconditioner (v + 10⁻⁶)^(-1/2) sits at its cap (|g| < 0.032), the share still capped with
    bias correction (|g| < 10⁻³), the median |g|; and the mean L1 norm of an input."""
    rows = []
    for task, prof in mech["gradient_profile"].items():
        for layer, p in prof["layers"].items():
            if not layer.endswith("kernel"):
                continue
            rows.append([f"{labels.task_short(task)}: {labels.layer(layer)}", p["size"], 100 * p["zero"],
                         100 * p["below_sqrt_eps_over_1e-3"], 100 * p["below_sqrt_eps"], p["median_abs"]])
    norms = "; ".join(f"{labels.task_short(t)} {prof['input_l1_mean']:.0f}"
                      for t, prof in mech["gradient_profile"].items())
    return table(["weights", "count", "zero gradient (%)", "preconditioner at its cap (%)",
                  "still capped with bias correction (%)", "median |gradient|"], rows,
                 caption=f"At the first step. Mean L1 norm of an input: {norms}.", digits=3)


def plot_anatomy(mech: Mapping, layer: str = "Dense_0/kernel"):
    """One run with the direction head's output bias at +2·10⁻³, per preconditioner configuration. Left: the
    blackbox step of the first layer's weights (|mean| over the weights; for the paper's STAR also their spread)
    against the nominal step. Right: the share of first-layer units dead (zero on the whole batch)."""
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2))
    runs = mech["anatomy"]["fmnist_mlp"]
    steps = {name: [abs(r["layers"][layer]["blackbox_mean"]) for r in an["steps"]] for name, an in runs.items()}
    dead = {name: [100 * r["dead_first_layer_units"] for r in an["steps"]] for name, an in runs.items()}
    # configurations whose curves coincide (the two single changes both cut the capped step tenfold) put their
    # markers on alternate steps, so that the lower curve still shows
    every0 = dict(zip(runs, plotting.coinciding_markevery(list(steps.values()), rtol=0.05)))
    every1 = dict(zip(runs, plotting.coinciding_markevery(list(dead.values()), rtol=0.0, atol=1.0)))
    for name, an in runs.items():
        rows = an["steps"]
        t = [r["step"] for r in rows]
        c, ls, mk = _style(name)
        ax0.semilogy(t, steps[name], color=c, ls=ls, marker=mk, ms=5, markevery=every0[name],
                     label=f"|mean blackbox step|, {config_label(name)}")
        if name == "star":
            ax0.semilogy(t, [r["layers"][layer]["blackbox_std"] for r in rows], color=c, ls=":", marker="x", ms=4,
                         label="its spread over the weights (std), the paper's STAR")
            ax0.semilogy(t, [r["layers"][layer]["nominal_rms"] for r in rows], color="0.2", ls="--", marker="",
                         label="the nominal step (RMS over the weights)")
        ax1.plot(t, dead[name], color=c, ls=ls, marker=mk, ms=5, markevery=every1[name], label=config_label(name))
    ax0.set(xlabel="inner step", ylabel="step per weight (parameter units)",
            title=f"{labels.layer(layer)}: blackbox step against nominal")
    ax1.set(xlabel="inner step", ylabel="first-layer units dead on the batch (%)", ylim=(-5, 105),
            title="the first ReLU layer dies")
    for ax in (ax0, ax1):  # each panel's legend under it: the two panels show different quantities
        ax.legend(fontsize=8, frameon=False, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    fig.tight_layout()
    return fig


def _merged(*axes):
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    return handles, names


def plot_direction_bias(mech: Mapping):
    """Left: training loss after the measured steps against the direction head's output bias d, per preconditioner
    configuration and task. Right: the share of PES-sized perturbations θ_nom + ε (all meta-parameters) that end
    dead or diverged, against σ."""
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.3))
    for task, by_cfg in mech["direction_bias"].items():
        for name, row in by_cfg.items():
            c, ls, mk = _style(name)
            ax0.plot(row["values"], np.minimum(row["final"], 10.0), color=c, ls=_TASK_LS.get(task, ls), marker=mk,
                     ms=4, label=f"{config_label(name)}, {labels.task_short(task)}")
        ax0.axhline(mech["nominal"][task]["final"], color="0.2", lw=1, ls=":" if task == "fmnist_mlp" else "-.",
                    label=f"nominal optimizer, {labels.task_short(task)}")
    ax0.axhline(math.log(10), color="0.6", lw=1, ls="-", label="ln 10: no training")
    ax0.set_xscale("symlog", linthresh=1e-4)
    ax0.set(xlabel="output bias of the direction head d (symmetric log scale)", yscale="log",
            ylabel=f"training loss over the last {mech['settings']['tail']} of {mech['settings']['inner_steps']} "
                   "steps (nats)", title="how large may d be?")
    series = [(task, name, sorted(rows, key=float), rows) for task, by_cfg in mech["sigma"].items()
              for name, rows in by_cfg.items()]
    broken = [[100 * broken_fraction(rows[s]["outcome"]) for s in sig] for _, _, sig, rows in series]
    sigmas = {tuple(sig) for _, _, sig, _ in series}
    every = plotting.coinciding_markevery(broken, rtol=0.0, atol=1.0) if len(sigmas) == 1 else [None] * len(series)
    for (task, name, sig, _), y, me in zip(series, broken, every):
        c, ls, mk = _style(name)
        ax1.plot([float(s) for s in sig], y, color=c, ls=_TASK_LS.get(task, ls), marker=mk, ms=5, markevery=me,
                 label=f"{config_label(name)}, {labels.task_short(task)}")
    n = len(mech["settings"]["perturbation_seeds"])
    ax1.set(xscale="log", xlabel="σ of the perturbation of all meta-parameters", ylim=(-5, 105),
            ylabel=f"perturbed optimizers that break (% of {n})", title="PES-sized perturbations of the nominal θ")
    fig.legend(*_merged(ax0, ax1), fontsize=8, frameon=False, loc="lower center", ncol=2, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.27, 1, 1))
    return fig


def plot_sensitivity(mech: Mapping):
    """Kept for the chapter's earlier cells: :func:`plot_direction_bias` draws the σ panel beside the bias panel."""
    return plot_direction_bias(mech)


_GROUPS = {"all": "all meta-parameters", "decay_logits": "the accumulator decay logits",
           "head_d": "the direction head d (output weights and bias)", "heads_abc": "the other heads a, b, c",
           "hidden_layers": "the hidden layers", "output_bias": "the output biases", "output_layer": "the output layer"}
_OUTCOMES = ("ok", "degraded", "dead", "diverged")


def _counts(outcomes) -> list:
    return [sum(o == k for o in outcomes) for k in _OUTCOMES]


def group_table(mech: Mapping) -> Table:
    """σ = 0.01 on one group of meta-parameters at a time: how the perturbed runs end."""
    rows = [[_GROUPS.get(g, labels.layer(g)), *_counts(r["outcome"]), 100 * broken_fraction(r["outcome"])]
            for g, r in mech["groups"].items()]
    return table(["perturbed (σ = 0.01)", *_OUTCOMES, "broken (%)"], rows, digits=3)


_INTERVENTIONS = {"none": "none (the paper's STAR)",
                  "blackbox_first_layer_only": "blackbox term on the first layer only",
                  "no_blackbox_first_layer": "no blackbox term on the first layer",
                  "no_blackbox_where_v_is_0": "no blackbox term where v = 0 (sparse gradients)"}


def interventions_table(iv: Mapping) -> Table:
    """``interventions.json``: per intervention, the training loss of the ±2·10⁻³ bias runs and how the σ = 0.01
    perturbations end."""
    runs = iv["settings"]["runs"]
    rows = []
    for name, r in iv["interventions"].items():
        bias = {lab[7:]: f for lab, f in zip(runs, r["final"]) if lab.startswith("d bias")}
        sig = [o for lab, o in zip(runs, r["outcome"]) if lab.startswith("sigma")]
        rows.append([_INTERVENTIONS.get(name, labels.layer(name)), *bias.values(), *_counts(sig)])
    bias_cols = [f"loss with d bias {k} (nats)" for k in [lab[7:] for lab in runs if lab.startswith("d bias")]]
    return table(["blackbox term switched off", *bias_cols, *(f"σ = 0.01: {k}" for k in _OUTCOMES)], rows, digits=3)


def second_moments_table(sm: Mapping) -> Table:
    """``second_moments.json``: per task, step and weight matrix, the share of weights with v < 10⁻⁶ (the paper's
    preconditioner at its cap) and with bias-corrected v̂ < 10⁻⁴ (our variant's ε dominates)."""
    rows = []
    for task, r in sm["tasks"].items():
        for c in r["checkpoints"]:
            for k, v in c["layers"].items():
                if k.endswith("kernel"):
                    rows.append([labels.task_short(task), c["step"], labels.layer(k), 100 * v["v_below_1e-06"],
                                 100 * v["v_hat_below_0.0001"]])
    return table(["task", "after inner steps", "weights", "v < 10⁻⁶ (%)", "bias-corrected v̂ < 10⁻⁴ (%)"], rows,
                 digits=3)


def _run_label(folder: str) -> str:
    """A stored meta-training run's folder as words."""
    from star.grids import GRIDS

    name = folder.rstrip("/").rsplit("/", 1)[-1]
    for g in GRIDS.values():
        if folder.startswith(g.folder + "/"):
            member, _, seed = name.rpartition("_s")
            return f"{labels.member(member)}, {labels.task_short(g.task)} grid, meta-training seed {seed}"
    if "fmnist8" in name:
        n = name.rsplit("_n", 1)[-1]
        return f"STAR meta-trained on the {labels.task_short('fmnist8_mlp32')}, N = {n}"
    return labels.member(name)


def warm_start_table(mech: Mapping) -> Table:
    """Optimizers meta-trained on the small MLP, applied to the paper's MLP: their training loss and outcome."""
    rows = [[_run_label(run), r["final"], r["outcome"]] for run, r in mech["warm_start"].items()]
    rows.append(["the nominal optimizer (for comparison)", mech["nominal"]["fmnist_mlp"]["final"], "ok"])
    return table(["optimizer", f"training loss after {mech['settings']['inner_steps']} steps (nats)", "outcome"],
                 rows, digits=3)


# ------------------------------------------------------------------------------------- more inner problems

#: PES at the paper's settings on the paper's MLP from the nominal start, by the number N of inner problems: the
#: CPU run of the STAR chapter (N = 8) and the two runs of ``experiments/accelerator.py`` on one GPU
N_RUNS = {8: "results/metatrain/star_fmnist_cpu_paper_sigma", 64: "results/metatrain/star_fmnist_paper_gpu_n64",
          256: "results/metatrain/star_fmnist_paper_gpu_n256"}
_N_STYLES = {8: ("#de2d26", "-", "o"), 64: ("#3182bd", "--", "s"), 256: ("#31a354", "-.", "^")}


def load_n_runs(root: str | Path | None = None) -> dict:
    """The stored runs of :data:`N_RUNS` that have a meta-curve, as ``{N: {"curve", "provenance", "log"}}``."""
    read, out = file_reader(root), {}
    for n, folder in N_RUNS.items():
        rec = _curve_run(read, folder)
        if rec is not None and rec["log"] is not None:
            out[n] = rec
    return out


def _curve_run(read, folder: str) -> dict | None:
    """``{"curve", "provenance", "log"}`` of a stored run with a meta-curve and provenance (``log`` ``None`` if it
    has none), read through :class:`star.runs.RunFolder`; ``None`` if the meta-curve or provenance is missing."""
    from star import runs

    c, p, lg = (read(f"{folder}/{f}") for f in (runs.META_CURVE, runs.PROVENANCE, runs.LOG))
    if c is None or p is None:
        return None
    run = runs.RunFolder(c.parent)
    return {"curve": run.meta_curve(), "provenance": run.provenance(), "log": run.log() if lg is not None else None}


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


# ------------------------------------------------------------------------------------------------ the remedies


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
        rec = _curve_run(read, folder)
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
    fig.legend(*_merged(axes[0]), fontsize=8, frameon=False, loc="lower center", ncol=2, bbox_to_anchor=(0.5, 0.0))
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
        c, ls, _ = _style(m.optimizer)
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


# ------------------------------------------------------------------------------------------------ findings


def breakdown_finding(mech: Mapping, iv: Mapping) -> str:
    """The breakdown in one sentence, with its numbers."""
    star = mech["sigma"]["fmnist_mlp"]["star"]
    small = mech["sigma"].get("fmnist8_mlp32", {}).get("star", {})
    prof = mech["gradient_profile"]["fmnist_mlp"]["layers"]["Dense_0/kernel"]
    first = [o for lab, o in zip(iv["settings"]["runs"], iv["interventions"]["no_blackbox_first_layer"]["outcome"])
             if lab.startswith("sigma")]
    capped = 100 * prof["below_sqrt_eps_over_1e-3"]
    return (f"At the first step the paper's preconditioner is at its cap for {capped:.0f} % "
            f"of the first-layer weights of the paper's MLP, so the direction head's output becomes a common step of "
            f"every weight and kills the first ReLU layer; PES-sized perturbations (σ = 0.01) break "
            f"{100 * broken_fraction(star['0.01']['outcome']):.0f} % of the runs on the paper's MLP"
            + (f" and {100 * broken_fraction(small['0.01']['outcome']):.0f} % on the small MLP" if small else "")
            + f"; without the blackbox term on the first layer {100 * broken_fraction(first):.0f} % break.")


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
