"""The breakdown's mechanism in the chapter "Why PES breaks STAR on the paper's MLP, and what remedies it"
(``book/pes_breaks_star.ipynb``): the measurements of ``results/metatrain/breakdown/`` (made by
``experiments/indist_breakdown.py`` with :mod:`star.breakdown`) as figures and tables — the gradients at the first
step, one run's anatomy, the direction head's bias and PES-sized perturbations, perturbed groups, interventions,
second moments, warm starts — and the finding the chapter records on them (:func:`breakdown_finding`). The
preconditioner configurations' names and styles (:func:`config_label`, :func:`config_style`) and
:func:`broken_fraction` serve the remedies too (:mod:`star.book.pes_remedies`). None of this is a claim of the paper.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from star import plotting
from star.book import labels
from star.book.tables import Table, table

__all__ = [
    "CONFIG_STYLES", "config_label", "config_style", "broken_fraction", "merged_legend", "gradient_profile_table",
    "plot_anatomy", "plot_direction_bias", "plot_sensitivity", "group_table", "interventions_table",
    "second_moments_table", "warm_start_table", "breakdown_finding",
]

#: colour, line style and marker of each preconditioner configuration (the paper's STAR and our variants)
CONFIG_STYLES = {"star": ("#de2d26", "-", "o"), "star_bc_eps1e-4": ("#3182bd", "--", "s"),
                 "star_out0.1": ("#31a354", "-.", "^"), "star_out0.1_bc_eps1e-4": ("#756bb1", ":", "D")}
_TASK_LS = {"fmnist_mlp": "-", "fmnist8_mlp32": "--"}


def config_label(name: str) -> str:
    """``"star"`` → ``"STAR (the paper's)"``; our variants by :func:`star.book.labels.optimizer`."""
    return "STAR (the paper's)" if name == "star" else labels.optimizer(name)


def config_style(name: str) -> tuple:
    """``(colour, line style, marker)`` of a configuration (:data:`CONFIG_STYLES`; grey for any other)."""
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
        c, ls, mk = config_style(name)
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


def merged_legend(*axes) -> tuple[list, list]:
    """``(handles, labels)`` of the legends of ``axes``, each label once, for one legend of the whole figure."""
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
            c, ls, mk = config_style(name)
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
        c, ls, mk = config_style(name)
        ax1.plot([float(s) for s in sig], y, color=c, ls=_TASK_LS.get(task, ls), marker=mk, ms=5, markevery=me,
                 label=f"{config_label(name)}, {labels.task_short(task)}")
    n = len(mech["settings"]["perturbation_seeds"])
    ax1.set(xscale="log", xlabel="σ of the perturbation of all meta-parameters", ylim=(-5, 105),
            ylabel=f"perturbed optimizers that break (% of {n})", title="PES-sized perturbations of the nominal θ")
    fig.legend(*merged_legend(ax0, ax1), fontsize=8, frameon=False, loc="lower center", ncol=2,
               bbox_to_anchor=(0.5, 0.0))
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

