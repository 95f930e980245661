"""What the chapter "The STAR optimizer" computes and draws (``book/star_optimizer.ipynb``): the untrained
family on the Fashion-MNIST MLP, the first step, the stored meta-training runs, and the chapter's own finding on
them (``metatraining_finding``: where PES improved STAR on its nominal start; not a test of the paper's claim
against the blackbox optimizer, which needs a blackbox run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from star import plotting
from star import runs as run_files  # the chapter's functions name their mappings of runs ``runs``
from star.book import labels
from star.book.files import StoredRun
from star.book.tables import Table, table

__all__ = [
    "data_source_label", "COLOURS", "untrained_optimizers", "first_step", "nominal_first_step", "first_step_table",
    "scaled_meta_params", "perturbed_meta_params", "first_step_deviations", "perturbation_table",
    "perturbed_training_table", "plot_shrinking", "train_all", "plot_training_curves",
    "training_table", "meta_curve_summary", "plot_meta_training", "meta_training_table", "plot_signal_fraction",
    "signal_table", "evaluation_table", "metatraining_finding",
]

# The nominal term of STAR: alpha_nom * mean_k m_k / sqrt(v + 1e-6) with decays (0.9, 0.99, 0.999) / 0.999.
NOMINAL_STEP = 1e-3
_MEAN_ONE_MINUS_BETA = (0.1 + 0.01 + 0.001) / 3  # = 0.037


def data_source_label(source: str) -> str:
    """Where the data came from, in words and without a machine path (the task's ``data.source``)."""
    if source.startswith("idx files in /usr/share/datasets"):
        return "the Debian package dataset-fashion-mnist"
    if source.startswith("idx files in "):
        return "local idx files ($STAR_DATA_DIR)"
    return source


COLOURS = {"Adam lr=1e-4": "#9ecae1", "Adam lr=1e-3": "#3182bd", "Adam lr=1e-2": "#08519c",
           "STAR, nominal init (= nominal)": "#31a354", "Hyperparam, reference init": "#fd8d3c",
           "Blackbox, reference init": "#756bb1", "STAR, reference init": "#de2d26"}


def untrained_optimizers(num_steps: int) -> dict[str, tuple[Callable, Callable]]:
    """``{label: (factory, meta_params(seed))}``: Adam at three learning rates and the STAR family at its nominal
    and reference initializations. A factory maps meta-parameters to an optax transformation, so one compiled
    program serves every learning rate or θ."""
    import jax
    import optax

    from star.optim import init_meta_params, preset, star_optimizer

    family = {c: (lambda theta, c=c: star_optimizer(preset(c), theta, num_steps))
              for c in ("star", "hyperparam", "blackbox")}

    def init(name, how):
        return lambda s: init_meta_params(preset(name), jax.random.key(s), how)

    return {
        "Adam lr=1e-4": (optax.adam, lambda s: 1e-4),
        "Adam lr=1e-3": (optax.adam, lambda s: 1e-3),
        "Adam lr=1e-2": (optax.adam, lambda s: 1e-2),
        "STAR, nominal init (= nominal)": (family["star"], init("star", "nominal")),
        "Hyperparam, reference init": (family["hyperparam"], init("hyperparam", "reference")),
        "Blackbox, reference init": (family["blackbox"], init("blackbox", "reference")),
        "STAR, reference init": (family["star"], init("star", "reference")),
    }


def _flat(tree) -> np.ndarray:
    import jax

    return np.concatenate([np.ravel(np.asarray(x, np.float64)) for x in jax.tree.leaves(tree)])


def first_step(task, factory, meta_params, params0, key, chunk_size: int) -> np.ndarray:
    """The first update ``params_1 - params_0`` as one flat float64 vector (one step of star.train.train)."""
    from star.train import train

    run = train(task, factory, 1, key, meta_params=meta_params, params=params0, chunk_size=chunk_size,
                progress=False)
    return _flat(run.params) - _flat(params0)


def nominal_first_step(g) -> np.ndarray:
    """Eq. (nominal-first-step): −α_nom · 0.037 g / √(10⁻³ g² + 10⁻⁶), STAR's first nominal step."""
    g = np.asarray(g, np.float64)
    return -NOMINAL_STEP * _MEAN_ONE_MINUS_BETA * g / np.sqrt(1e-3 * g ** 2 + 1e-6)


def first_step_table(task, optimizers: Mapping, key, chunk_size: int) -> tuple[Table, dict]:
    """One first step per optimizer: its RMS, its largest entry and its cosine with −g. Also returns
    ``{"updates": {label: update}, "grad": g, "loss": first loss, "nominal_error": max error of STAR's nominal
    step against :func:`nominal_first_step`, relative to its largest entry}``."""
    import jax

    from star.train import batch_at, train_keys

    init_key, data_key = train_keys(key)
    params0 = task.init(init_key)
    loss0, grads0 = jax.value_and_grad(task.loss)(params0, batch_at(task, data_key, 0))
    g = _flat(grads0)
    rows, updates = [], {}
    for label, (factory, meta) in optimizers.items():
        u = updates[label] = first_step(task, factory, meta(0), params0, key, chunk_size)
        cos = -u @ g / (np.linalg.norm(u) * np.linalg.norm(g))
        rows.append([label, np.sqrt(np.mean(u ** 2)), np.abs(u).max(), cos])
    closed = nominal_first_step(g)
    nominal = next(k for k in updates if k.startswith("STAR, nominal"))
    err = float(np.abs(updates[nominal] - closed).max() / np.abs(closed).max())
    info = dict(updates=updates, grad=g, loss=float(loss0), params0=params0, nominal_error=err)
    return table(["optimizer", "RMS step (parameter units)", "largest |step| (parameter units)",
                  "cos(step, −gradient)"], rows, digits=3), info


def scaled_meta_params(theta, c: float):
    """θ with the MLP weights and biases multiplied by ``c`` (what weight decay does); decay logits kept."""
    import jax

    return {"mlp": jax.tree.map(lambda w: c * w, theta["mlp"]), "decay_logits": theta["decay_logits"]}


def perturbed_meta_params(theta, sigma: float, seed: int):
    """θ + σ·N(0, I) over every meta-parameter, as a PES perturbation (key 1000 + seed)."""
    import jax

    leaves, treedef = jax.tree.flatten(theta)
    ks = jax.random.split(jax.random.key(1000 + seed), len(leaves))
    return jax.tree.unflatten(treedef, [x + sigma * jax.random.normal(k, x.shape) for x, k in zip(leaves, ks)])


def first_step_deviations(task, factory, thetas: Sequence, params0, key, chunk_size: int, nominal_update):
    """‖Δ(θ) − Δ_nominal‖ / ‖Δ_nominal‖ of the first step for each meta-parameter set in ``thetas``."""
    ref = np.linalg.norm(nominal_update)
    return np.array([np.linalg.norm(first_step(task, factory, th, params0, key, chunk_size) - nominal_update) / ref
                     for th in thetas])


def perturbation_table(task, factory, theta, sigmas: Sequence[float], num_perturbations: int, params0, key,
                       chunk_size: int, nominal_update) -> Table:
    """The first step's relative deviation from the nominal step for PES-like perturbations θ + σ·N(0, I)."""
    rows = [[sigma, *first_step_deviations(task, factory, [perturbed_meta_params(theta, sigma, s)
                                                           for s in range(num_perturbations)],
                                           params0, key, chunk_size, nominal_update)] for sigma in sigmas]
    return table(["σ", *(f"perturbation {s + 1}" for s in range(num_perturbations))], rows, digits=3)


def perturbed_training_table(task, factory, theta, sigmas: Sequence[float], num_perturbations: int,
                             num_steps: int, key, chunk_size: int) -> Table:
    """Training loss over the last fifth of ``num_steps`` (and the largest loss) with θ + σ·N(0, I), per σ
    (σ = 0: θ itself)."""
    from star.train import train

    tail = max(1, num_steps // 5)
    rows = []
    for sigma in (0.0, *sigmas):
        thetas = [theta] if sigma == 0.0 else [perturbed_meta_params(theta, sigma, s) for s in range(num_perturbations)]
        runs = [train(task, factory, num_steps, key, meta_params=th, chunk_size=chunk_size, progress=False)
                for th in thetas]
        cells = [f"{np.mean(r.losses[-tail:]):.3f} (max {np.max(r.losses):.3g})" for r in runs]
        rows.append([sigma, *cells, *([""] * (num_perturbations - len(cells)))])
    return table(["σ", *(f"perturbation {s + 1}" for s in range(num_perturbations))], rows,
                 caption=f"training loss over the last {tail} of {num_steps} steps (largest loss of the run)")


def plot_shrinking(cs, deviation):
    """The first step's deviation from the nominal step against the scale c of the MLP meta-parameters, with the
    c³ law of a degree-3 homogeneous network."""
    import matplotlib.pyplot as plt

    cs, deviation = np.asarray(cs), np.asarray(deviation)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.loglog(cs, deviation, "o-", label="STAR with c × its reference θ, first step")
    ax.loglog(cs, deviation[-1] * (cs / cs[-1]) ** 3, "k--", lw=1, label="c³ (ReLU MLP, zero biases)")
    ax.axhline(1.0, color="gray", lw=0.8)
    ax.set(xlabel="scale c of the MLP meta-parameters", ylabel="‖Δ_STAR − Δ_nominal‖ / ‖Δ_nominal‖",
           title="Shrinking θ fades STAR into its nominal optimizer")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def train_all(task, optimizers: Mapping, num_steps: int, num_seeds: int, chunk_size: int):
    """Train the task with every optimizer for every seed (the seed sets the initialization, the batches and
    the meta-parameters) and evaluate on the test set (:func:`star.evaluate.train_seeds`): ``(curves {label:
    [seeds, steps]}, tests {label: [dict]}, wall {label: seconds})``."""
    from star.evaluate import train_seeds

    curves, tests, wall = {}, {}, {}
    for label, (factory, meta) in optimizers.items():
        runs = [r for s in range(num_seeds)
                for r in train_seeds(task, factory, num_steps, [s], meta_params=meta(s), chunk_size=chunk_size)]
        curves[label] = np.stack([r.losses for r in runs])
        tests[label] = [r.test for r in runs]
        wall[label] = sum(r.wall_s for r in runs)
    return curves, tests, wall


def plot_training_curves(curves: Mapping, ema: float = 0.98, ceiling: float = 3.0):
    """Training loss (EMA, seed mean with min–max band) of every optimizer. Left: the range where the optimizers
    that train differ (log axis up to ``ceiling``, above ln 10); a run that leaves it is drawn clipped at the top
    edge and labelled with its largest value. Right: the full range, so the diverged runs are seen as they are; the
    runs that stay in the left panel's range are drawn there faint and without their bands."""
    import matplotlib.pyplot as plt

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.7, 1]})
    lows, off_scale = [], []
    for label, c in curves.items():
        mean, lo, hi = plotting.seed_band(plotting.ema(c, ema))
        steps = np.arange(1, mean.size + 1)
        colour, ls = COLOURS.get(label, None), "--" if label.startswith("Hyperparam") else "-"
        # STAR at its nominal init and Hyperparam lie on each other: markers keep the one underneath visible
        marks = dict(marker="o", ms=4, markevery=max(1, mean.size // 10)) if label.startswith("STAR, nominal") else {}
        off = bool(np.nanmax(mean) > ceiling)
        ax0.plot(steps, mean, color=colour, label=label, lw=1.5, ls=ls, **marks)
        # the full range is for the runs that leave the left panel; there the others crowd into one thin bundle,
        # drawn faint and unnamed (the left panel tells them apart)
        ax1.plot(steps, mean, color=colour, lw=1.5 if off else 0.8, ls=ls, alpha=1.0 if off else 0.6,
                 label=label if off else f"_{label}")
        for ax in (ax0, ax1) if off else (ax0,):
            if c.shape[0] > 1:
                ax.fill_between(steps, lo, hi, color=colour, alpha=0.2, lw=0)
        lows.append(np.nanmin(lo))
        if off:
            off_scale.append((label, colour, float(np.nanmax(mean))))
    bottom = 0.8 * min(lows)
    ax0.set_ylim(bottom, ceiling)
    for k, (label, colour, top) in enumerate(off_scale):
        ax0.annotate(f"{label}: off the scale (its mean reaches {top:.3g})", xy=(0.98, 0.97 - 0.07 * k),
                     xycoords="axes fraction",
                     ha="right", va="top", fontsize=8, color=colour)
    ax0.axhline(np.log(10), color="0.5", ls=":", lw=1)
    ax0.set(yscale="log", xlabel="inner step", ylabel=f"training loss (EMA {ema:g})",
            title="where the optimizers that train differ")
    from matplotlib.ticker import FormatStrFormatter

    for axis in (ax0.yaxis,):
        axis.set_major_formatter(FormatStrFormatter("%.1f"))
        axis.set_minor_formatter(FormatStrFormatter("%.1f"))
    ax1.set(yscale="log", xlabel="inner step", ylabel=f"training loss (nats, EMA {ema:g}, log scale)",
            title="full range" + (": the runs off the left panel's scale" if off_scale else ""))
    if off_scale:
        ax1.annotate("faint: the others (told apart on the left)", xy=(0.98, 0.3), xycoords="axes fraction",
                     ha="right", va="bottom", fontsize=8, color="0.35")
    ax0.set_ylabel(f"training loss (nats, EMA {ema:g}, log scale)")
    fig.legend(*ax0.get_legend_handles_labels(), loc="lower center", ncol=3, fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def training_table(curves: Mapping, tests: Mapping) -> Table:
    """Training loss over the last 10 % of the steps, test loss and accuracy, and the largest loss of each run."""
    rows = []
    for label, c in curves.items():
        tail = max(1, c.shape[1] // 10)
        rows.append([label, float(np.mean(c[:, -tail:])), float(np.mean([t["loss"] for t in tests[label]])),
                     float(np.mean([t["accuracy"] for t in tests[label]])), float(np.nanmax(c))])
    return table(["optimizer", "training loss, last 10 % of the steps (nats)", "test loss (nats)",
                  "test accuracy (fraction)", "largest training loss (nats)"], rows)


# ---------------------------------------------------------------------------------------------------------
# Stored meta-training runs


def meta_curve_summary(run: StoredRun) -> dict:
    """From a run's meta-curve (:class:`star.runs.MetaCurve`): the meta-objective at the start and the end, the
    learned-minus-nominal difference on the common episodes (mean, s.e.) and on how many episodes the learned θ
    was lower."""
    if run.curve is None:
        raise ValueError(f"run {run.name!r} has no {run_files.META_CURVE}; make it with python -m star meta-curve")
    first, last = run.curve["curve"][0], run.curve["curve"][-1]
    nominal = np.asarray(run.curve["baselines"]["nominal"]["per_seed"], np.float64)
    paired = np.asarray(last["per_seed"], np.float64) - nominal
    return dict(start=first["mean"], end=last["mean"], end_step=last["step"], nominal=float(nominal.mean()),
                best=min(r["mean"] for r in run.curve["curve"]), diff=float(paired.mean()),
                diff_se=float(paired.std(ddof=1) / np.sqrt(paired.size)) if paired.size > 1 else float("nan"),
                lower=int(np.sum(paired < 0)), episodes=int(paired.size))


def plot_meta_training(runs: Mapping[str, StoredRun], colours: Sequence[str] | None = None, ema: float = 0.9,
                       reset_step: int | None = None):
    """Left: the PES meta-loss of each run (perturbed θ ± ε; EMA). Right: the meta-objective of the unperturbed
    θ snapshots on common episodes (± 1 s.e.), the nominal optimizer (the start) and ln 10 (no training)."""
    import matplotlib.pyplot as plt

    colours = list(colours or ["#de2d26", "#fc9272", "#a50f15", "#fb6a4a"])
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3.8))
    nominal = None
    smoothed = [plotting.ema(run.log["meta_loss"], ema) for run in runs.values()]
    # runs whose smoothed meta-losses coincide show markers on alternate steps, so that none is hidden
    every = (plotting.coinciding_markevery(smoothed) if len({c.shape for c in smoothed}) == 1
             else [None] * len(smoothed))
    for k, ((label, run), colour) in enumerate(zip(runs.items(), colours)):
        log, ls = run.log, ("-", "--", "-.", ":")[k % 4]
        if len(runs) == 1:
            ax0.plot(log["step"], log["meta_loss"], color="0.75", lw=0.8, label="per outer step")
        marks = {} if every[k] is None else dict(marker="os^D"[k % 4], ms=4, markevery=every[k])
        ax0.plot(log["step"], smoothed[k], color=colour, ls=ls, label=f"{label} (EMA {ema:g})", **marks)
        if run.curve is not None:
            steps = [r["step"] for r in run.curve["curve"]]
            ax1.errorbar(steps, [r["mean"] for r in run.curve["curve"]], yerr=[r["stderr"] for r in run.curve["curve"]],
                         color=colour, ls=ls, marker="os^D"[k % 4], ms=4, capsize=2, label=label)
            nominal = run.curve["baselines"]["nominal"]["mean"] if nominal is None else nominal
    if reset_step is not None:
        ax0.axvline(reset_step, color="k", ls=":", lw=0.8, label="every problem has reset once")
    ax0.set(xlabel="outer step", ylabel="PES meta-loss (normalized training loss)",
            title="PES meta-loss (perturbed θ ± ε)")
    if nominal is not None:
        ax1.axhline(nominal, color="k", ls="--", lw=1, label="nominal optimizer (start)")
    top = max((r["mean"] for run in runs.values() if run.curve for r in run.curve["curve"]), default=0.0)
    if top > 0.8 * np.log(10):
        ax1.axhline(np.log(10), color="0.5", ls=":", lw=1, label="ln 10: no training")
    episodes = {run.curve["num_seeds"] for run in runs.values() if run.curve}
    ax1.set(xlabel="outer step", ylabel="mean training loss over an episode (nats)",
            title=f"meta-objective of θ ({', '.join(map(str, sorted(episodes)))} common episodes)")
    handles, names = [], []
    for ax in (ax0, ax1):
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="lower center", ncol=3, fontsize=9, frameon=False, bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.12 * math.ceil(len(names) / 3) ** 0.5 + 0.04, 1, 1))
    return fig


def meta_training_table(runs: Mapping[str, StoredRun]) -> Table:
    """Per run: its task and PES settings, the meta-objective at the start and at the end, and the learned θ
    against the nominal start on the same episodes."""
    rows = []
    for label, run in runs.items():
        cfg, s = run.config, meta_curve_summary(run)
        rows.append([label, labels.task_short(cfg.get("task", "?")), cfg.get("num_tasks", "?"), cfg.get("std", "?"),
                     cfg.get("lr", "?"), s["start"], s["end"], f"{s['diff']:+.3f} ± {s['diff_se']:.3f}",
                     f"{s['lower']} of {s['episodes']}"])
    return table(["run", "task", "N", "σ", "outer lr", "meta-objective at the start (nats)",
                  "after meta-training (nats)", "learned − nominal, same episodes (nats)", "learned lower on"], rows,
                 digits=3)


def plot_signal_fraction(sig: Mapping):
    """Signal fraction of one PES estimate against σ, before and after clipping, with the ES limit N/(N+D+1)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for init, colour in (("nominal", "#31a354"), ("reference", "#3182bd")):
        rows = [r for r in sig["rows"] if r["init"] == init]
        s = np.array([r["sigma"] for r in rows])
        ax.errorbar(s, [r["signal_fraction"] for r in rows], yerr=[2 * r["signal_fraction_se"] for r in rows],
                    color=colour, marker="o", capsize=3, label=f"{init} init")
        ax.errorbar(s * 1.12, [r["signal_fraction_clipped"] for r in rows],
                    yerr=[2 * r["signal_fraction_clipped_se"] for r in rows], color=colour, marker="o", mfc="white",
                    ls=":", capsize=3, label=f"{init} init, after clipping at 1.0")
    ideal = sig["rows"][0]["es_ideal_signal_fraction"]
    ax.axhline(ideal, color="k", ls="--", lw=1, label=f"ES ideal N/(N+D+1) = {ideal:.3f}")
    ax.axhline(0, color="0.6", lw=0.8)
    ax.set(xscale="log", xlabel="perturbation std σ", ylabel="signal fraction f (± 2 SE)",
           title=f"one PES estimate, N = {sig['num_tasks']}, Fashion-MNIST MLP")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def signal_table(sig: Mapping) -> Table:
    rows = [[r["init"], r["sigma"], f"{r['signal_fraction']:+.3f} ± {r['signal_fraction_se']:.3f}",
             f"{100 * r['fraction_of_entries_clipped']:.0f} %", r["mean_grad_norm"]] for r in sig["rows"]]
    return table(["initialization", "σ", "signal fraction f", "entries clipped", "mean |g|"], rows, digits=3)


def evaluation_table(runs: Mapping[str, StoredRun]) -> Table:
    """The evaluation report of each run (:class:`star.runs.EvaluateReport`): θ at the start and after
    meta-training, one 2000-step episode each."""
    rows = []
    for label, run in runs.items():
        ev = run.json(run_files.EVALUATE_REPORT)
        for which in ("initial", "learned"):
            r = ev[which]
            rows.append([label, f"θ {which}", ev["seed"], r["mean_train_loss"], r["test_loss"], r["test_accuracy"]])
    return table(["run", "θ", "episode seed", "mean training loss (nats)", "test loss (nats)",
                  "test accuracy (fraction)"], rows, digits=3)


def metatraining_finding(improvements: Mapping[str, tuple[float, float]]) -> str:
    """The chapter's finding on its stored PES runs of STAR alone (not a test of the paper's claim against the
    blackbox optimizer): on which runs meta-training improved on the nominal start. ``improvements`` maps a run's
    description to ``(objective of the nominal start, objective of θ after meta-training)`` (lower is better)."""
    if not improvements:
        raise ValueError("improvements must name at least one stored run")
    better = [f"{name} ({start:.3f} → {end:.3f})" for name, (start, end) in improvements.items() if end < start]
    worse = [f"{name} ({start:.3f} → {end:.3f})" for name, (start, end) in improvements.items() if end >= start]
    out = []
    if better:
        out.append("meta-training improved on the nominal start on " + "; ".join(better))
    if worse:
        out.append("it did not on " + "; ".join(worse))
    text = ", and ".join(out)
    return text[0].upper() + text[1:] + " (mean training loss over 2,000-step episodes)."
