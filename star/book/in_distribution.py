"""What the chapter "In-distribution meta-training" computes and draws (``book/in_distribution.ipynb``): the
runs of a sweep's grid (Fig. 3, Figs. App.1–App.4) read back, their figures and tables, the verdict rules of
the four claims it records, and the figures of the breakdown on the paper's MLP and of our remedies.

:func:`load_grid` reads the run folders of a :class:`star.grids.Grid` (log, meta-curve, evaluations and
provenance, through :class:`star.runs.RunFolder`) and the grid's baselines (:func:`star.runs.read_baselines`). The
figure functions draw

* the PES meta-loss against the outer step, each seed EMA-smoothed with 0.98 (App. B.2), mean ± one standard
  error over meta-training seeds (:func:`plot_meta_loss`; individual seeds, Fig. App.1: :func:`plot_seeds`);
* the unperturbed meta-objective of the θ snapshots (:func:`plot_meta_objective`) — at σ = 0.01 the PES
  meta-loss, the loss of the *perturbed* θ ± ε, can move differently from the optimizer's own objective;
* inner training with every learned optimizer at the horizon and far beyond it, against tuned Adam and the
  nominal optimizer (:func:`plot_inner_training`).

The verdict rules (:func:`verdict_fig3`, :func:`verdict_weight_decay`, :func:`verdict_preconditioning`,
:func:`verdict_nominal_term`) turn the evidence (:func:`evidence`) into :class:`star.book.claims.Check` s: each an
effect signed so that a positive value is the paper's direction, with a 95 % interval over paired meta-training
seeds; :func:`record_verdict` records them with the grid's budget (:meth:`star.book.claims.Budget.from_grid`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from star import runs
from star.book.claims import Check
from star.book.stats import mean_ci, paired_ci
from star.grids import FIGURES, Grid, Member
from star.plotting import ema, mean_stderr_band

__all__ = [
    "RunResult", "GridResults", "load_grid", "label", "COLORS", "plot_meta_loss", "plot_seeds",
    "plot_meta_objective", "plot_inner_training", "plot_figure", "summary_table", "adam_search_table",
    "provenance_table", "accelerator_estimate_table", "members_of", "evidence", "complete",
    "verdict_fig3", "verdict_weight_decay", "verdict_preconditioning", "verdict_nominal_term", "record_verdict",
    "verdict_or_reason", "long_reading", "stuck_seeds",
    "VERDICT_RULES", "EMA",
]

EMA = 0.98  # App. B.2: "In all plots, we apply EMA smoothing with a coefficient of 0.98."

COLORS = {"star_wd0.1": "#de2d26", "hyperparam_wd0.0": "#fd8d3c", "blackbox_wd0.0": "#756bb1",
          "star_nopre_wd0.1": "#31a354", "star_nonom_wd0.1": "#3182bd", "star_wd0.0": "#e6ab02",
          "star_wd0.5": "#1b9e77", "star_wd1.0": "#3f007d", "adam": "#08519c", "nominal": "0.2"}


def label(member: Member) -> str:
    """How a member is named in figures and tables (:func:`star.book.labels.member`): ``STAR (outer wd 0.1)``."""
    from star.book import labels

    return labels.member(member)


@dataclasses.dataclass
class RunResult:
    """What the chapter needs of one run folder."""

    name: str
    member: Member
    seed: int
    log: dict
    provenance: dict
    meta_curve: dict | None
    evals: dict  # {inner steps: star.runs.Evaluation}


@dataclasses.dataclass
class GridResults:
    """Every finished run of a grid that is stored, by member label and seed, plus the grid's baselines."""

    grid: Grid
    runs: dict  # {member label: {seed: RunResult}}
    baselines: dict | None
    missing: list

    def member(self, optimizer: str, weight_decay: float) -> Member:
        return Member(optimizer, float(weight_decay))

    def seeds(self, m: Member) -> list:
        return sorted(self.runs.get(m.label, {}))

    def total_wall_s(self) -> float:
        """Seconds of meta-training, summed over the runs (their provenance)."""
        return sum(r.provenance.get("wall_s_total") or 0.0 for by_seed in self.runs.values() for r in by_seed.values())

    def inner_steps_per_s(self) -> float:
        """Median over the runs' outer steps (the first, which compiles, left out) of the inner training steps
        per second of meta-training (the runs' logs); NaN without runs."""
        rates = [r.log["inner_steps_per_s"][1:] for by_seed in self.runs.values() for r in by_seed.values()
                 if "inner_steps_per_s" in r.log]
        return float(np.nanmedian(np.concatenate(rates))) if rates else float("nan")

    def post_wall_s(self) -> float:
        """Seconds of post-processing (meta-curves and evaluations) summed over the runs, plus the baselines."""
        total = 0.0
        for by_seed in self.runs.values():
            for r in by_seed.values():
                docs = ([r.meta_curve] if r.meta_curve else []) + list(r.evals.values())
                total += sum(d.get("provenance", {}).get("wall_s") or 0.0 for d in docs)
        if self.baselines:
            total += self.baselines.get("provenance", {}).get("wall_s") or 0.0
        return total


def _reader(root):
    """``relpath -> Path | None``: files under ``root``, else through :func:`star.book.files.repo_file` (Colab)."""
    if root is not None:
        def read(rel):
            p = Path(root) / rel
            return p if p.is_file() else None
        return read
    from star.book.files import repo_file

    def read(rel):
        try:
            return repo_file(rel)
        except (FileNotFoundError, OSError):
            return None
    return read


def load_grid(grid: Grid, root: str | Path | None = None) -> GridResults:
    """Read the stored runs of ``grid`` (from ``root``, default: the repository, fetched on Colab) through
    :class:`star.runs.RunFolder` (each stored file checked against its schema).

    Runs without a complete log (not finished) are listed in ``missing``; post-processing files that do not
    exist yet are ``None`` / absent.
    """
    read = _reader(root)
    by_member, missing = {}, []
    for spec in grid.runs():
        base = f"{grid.folder}/{spec.name}"
        log_path, prov_path = read(f"{base}/{runs.LOG}"), read(f"{base}/{runs.PROVENANCE}")
        if log_path is None or prov_path is None or read(f"{base}/{runs.FINAL_THETA}") is None:
            missing.append(spec.name)
            continue
        folder = runs.RunFolder(log_path.parent)
        log = folder.log()
        if len(log.get("step", [])) < grid.outer_steps:
            missing.append(spec.name)
            continue
        read(f"{base}/{runs.META_CURVE}")  # fetched into the folder where there is no checkout
        evals = {}
        for steps in grid.eval_steps:
            if read(f"{base}/{runs.evaluation_file(steps)}") is not None:
                evals[steps] = folder.evaluation(steps)
        by_member.setdefault(spec.member.label, {})[spec.seed] = RunResult(
            spec.name, spec.member, spec.seed, log, folder.provenance(), folder.meta_curve(), evals)
    b = read(f"{grid.folder}/{runs.BASELINES}")
    return GridResults(grid, by_member, runs.read_baselines(b.parent) if b is not None else None, missing)


# ----------------------------------------------------------------------------------------------------
# evidence arrays


def members_of(results: GridResults, figure: str) -> list:
    """The members of ``figure`` (:data:`star.grids.FIGURES`) that ``results`` holds runs of."""
    return _members(results, figure)


def _members(results: GridResults, figure: str) -> list:
    return [Member(o, float(w)) for o, w in FIGURES[figure] if Member(o, float(w)).label in results.runs]


def meta_loss_curves(results: GridResults, m: Member, coefficient: float = EMA) -> np.ndarray:
    """``[seeds, outer steps]`` PES meta-loss of every stored seed, each EMA-smoothed."""
    by_seed = results.runs[m.label]
    return np.stack([ema(by_seed[s].log["meta_loss"], coefficient) for s in sorted(by_seed)])


def meta_objective(results: GridResults, m: Member) -> tuple[np.ndarray, np.ndarray]:
    """``(steps, [seeds, snapshots])``: each seed's unperturbed meta-objective (mean over the common episodes)."""
    by_seed = {s: r for s, r in results.runs[m.label].items() if r.meta_curve is not None}
    if not by_seed:
        return np.zeros(0), np.zeros((0, 0))
    curves = {s: {row["step"]: row["mean"] for row in r.meta_curve["curve"]} for s, r in by_seed.items()}
    steps = sorted(set.intersection(*(set(c) for c in curves.values())))  # snapshots every seed evaluated
    return np.asarray(steps), np.asarray([[curves[s][t] for t in steps] for s in sorted(curves)])


def nominal_objective(results: GridResults) -> float | None:
    """The nominal optimizer's meta-objective on the common episodes, from a run of a member that has the nominal
    term (``meta-curve``'s "nominal" baseline is the run's optimizer with a zero output layer, which for Blackbox
    and No Nom. is the zero update, not the nominal optimizer)."""
    from star.optim import preset

    for by_seed in results.runs.values():
        for r in by_seed.values():
            if preset(r.member.optimizer).nominal_stepsize > 0 and r.meta_curve \
                    and "nominal" in r.meta_curve.get("baselines", {}):
                return float(r.meta_curve["baselines"]["nominal"]["mean"])
    return None


def _eval_curves(evals: Sequence[dict]) -> np.ndarray:
    return np.asarray([[np.nan if x is None else x for x in row["curve"]] for ev in evals for row in ev["per_seed"]],
                      np.float64)


def inner_curves(results: GridResults, m: Member, steps: int) -> np.ndarray:
    """``[meta seeds × eval seeds, blocks]`` training-loss curves (block means) of the learned optimizers."""
    evs = [r.evals[steps] for r in results.runs[m.label].values() if steps in r.evals]
    return _eval_curves(evs) if evs else np.zeros((0, 0))


def _per_meta_seed(results: GridResults, m: Member, steps: int, key: str) -> np.ndarray:
    """Per meta-training seed, the mean over evaluation seeds of ``key`` (NaN if any run diverged)."""
    out = []
    for s in sorted(results.runs[m.label]):
        ev = results.runs[m.label][s].evals.get(steps)
        if ev is not None:
            vals = [r[key] for r in ev["per_seed"]]
            out.append(np.nan if any(v is None for v in vals) else float(np.mean(vals)))
    return np.asarray(out)


def beyond_horizon_ratio(results: GridResults, m: Member) -> np.ndarray:
    """Per meta-training seed: training loss over the last 5 % of the longest evaluation divided by the loss
    over the last 5 % of the horizon, in the same runs (the first horizon steps of the long run are the
    horizon-length run). Above 1: the learned optimizer makes things worse once it trains past its horizon."""
    g = results.grid
    long = max(g.eval_steps)
    out = []
    for s in sorted(results.runs[m.label]):
        ev = results.runs[m.label][s].evals.get(long)
        if ev is None:
            continue
        block = ev["block"]
        h = g.horizon // block
        tail_h, tail_l = max(1, h // 20), max(1, (long // block) // 20)
        ratios = []
        for row in ev["per_seed"]:
            c = np.asarray([np.nan if x is None else x for x in row["curve"]], np.float64)
            ratios.append(np.mean(c[-tail_l:]) / np.mean(c[h - tail_h:h]))
        out.append(float(np.mean(ratios)))
    return np.asarray(out)


def evidence(results: GridResults) -> dict:
    """What the verdict rules read, per member label and meta-training seed: ``meta_loss`` (the EMA-smoothed
    PES meta-loss curve), ``final_objective`` (the unperturbed meta-objective at the last snapshot) and
    ``beyond_horizon`` (:func:`beyond_horizon_ratio`), each a ``{seed: value}`` dict holding the seeds whose
    files exist; the grid's ``outer_steps``, ``task`` and the labels of its ``grid_members``."""
    out = {"outer_steps": results.grid.outer_steps, "task": results.grid.task, "members": {},
           "grid_members": [m.label for m in results.grid.members],
           "long": max(results.grid.eval_steps) if max(results.grid.eval_steps) > results.grid.horizon else None}
    for lab, by_seed in results.runs.items():
        seeds = sorted(by_seed)
        m = by_seed[seeds[0]].member
        curves = meta_loss_curves(results, m)
        final = {s: float(np.mean(by_seed[s].meta_curve["curve"][-1]["mean"]))
                 for s in seeds if by_seed[s].meta_curve is not None}
        beyond = {}
        for s in seeds:
            r = beyond_horizon_ratio(_only(results, lab, s), m)
            if r.size:
                beyond[s] = float(r[0])
        out["members"][lab] = {"meta_loss": dict(zip(seeds, curves)), "final_objective": final,
                               "beyond_horizon": beyond}
    return out


def _only(results: GridResults, lab: str, seed: int) -> GridResults:
    return dataclasses.replace(results, runs={lab: {seed: results.runs[lab][seed]}})


#: Members of a figure that its verdict rule can do without, when a grid does not run them (the long grid runs
#: STAR with outer wd 0.1 and 1.0 only: App.2's rule then tests those two).
OPTIONAL_MEMBERS = {"app2": ("star_wd0.0", "star_wd0.5")}


def figure_members(ev: Mapping, figure: str) -> list[str]:
    """The labels of ``figure``'s members that the verdict uses: all of them, except the optional ones
    (:data:`OPTIONAL_MEMBERS`) that the evidence's grid does not run."""
    grid = ev.get("grid_members")
    return [Member(o, float(w)).label for o, w in FIGURES[figure]
            if grid is None or Member(o, float(w)).label in grid
            or Member(o, float(w)).label not in OPTIONAL_MEMBERS.get(figure, ())]


def complete(ev: Mapping, figure: str, min_seeds: int = 3) -> list[str]:
    """What the evidence for ``figure`` lacks: members (:func:`figure_members`) with fewer than ``min_seeds`` seeds
    of every kind."""
    lacking = []
    for lab in figure_members(ev, figure):
        m = ev["members"].get(lab)
        for key in ("meta_loss", "final_objective") + (("beyond_horizon",) if figure == "app2" else ()):
            n = 0 if m is None else len(m[key])
            if n < min_seeds:
                lacking.append(f"{lab}: {key} for {n} of {min_seeds} seeds")
    return lacking


# ----------------------------------------------------------------------------------------------------
# verdict rules


def _common(ev: Mapping, a: str, b: str, key: str):
    """The two members' values on the seeds both have (paired by seed)."""
    x, y = ev["members"][a][key], ev["members"][b][key]
    seeds = sorted(set(x) & set(y))
    return np.asarray([x[s] for s in seeds], np.float64), np.asarray([y[s] for s in seeds], np.float64)


def _area(curves):
    return np.asarray(curves, np.float64).mean(axis=-1)


def _final_ema(curves):
    return np.asarray(curves, np.float64)[..., -1]


def _lower_check(ev, ours: str, other: str, key: str, question: str, reduce=None, unit: str = "") -> Check:
    """``other − ours`` of ``key`` paired by meta-training seed (positive: ``ours`` is lower, the paper's direction),
    with a 95 % t interval; ``reduce`` turns a stored curve into one number per seed."""
    x, y = _common(ev, ours, other, key)
    if reduce is not None:
        x, y = reduce(x), reduce(y)
    if len(x) == 0:
        return Check(question, float("nan"), -math.inf, math.inf, unit, "no seed has both runs")
    return Check(question, *paired_ci(y, x), unit=unit, how=f"paired over {len(x)} meta-training seeds, 95 % t "
                 "interval" + ("; a run without a value (diverged) leaves it undecided" if not np.all(
                     np.isfinite(np.concatenate([x, y]))) else ""))


def verdict_fig3(ev: Mapping) -> tuple[list, str]:
    """Fig. 3 (and the abstract): STAR meta-trains faster than the blackbox optimizer and reaches a better
    meta-loss. Three effects, each Blackbox − STAR paired by meta-training seed (positive: STAR better):

    1. the EMA PES meta-loss averaged over all outer steps (the area under the curve: faster);
    2. Blackbox's final EMA PES meta-loss minus STAR's at half of the outer steps (STAR gets there in half the time);
    3. the unperturbed meta-objective after the last outer step (better).
    """
    s, bb = "star_wd0.1", "blackbox_wd0.0"
    half = max(1, ev["outer_steps"] // 2)
    x, y = _common(ev, s, bb, "meta_loss")
    checks = [
        _lower_check(ev, s, bb, "meta_loss", "STAR's PES meta-loss over meta-training is lower than Blackbox's", _area,
                     "PES meta-loss (mean over outer steps)"),
        Check("Halfway through meta-training STAR is already below Blackbox's final PES meta-loss",
              *paired_ci(_final_ema(y), np.asarray(x, np.float64)[:, half - 1]), unit="PES meta-loss",
              how=f"paired over {len(x)} meta-training seeds, 95 % t interval"),
        _lower_check(ev, s, bb, "final_objective", "STAR's final meta-objective is lower than Blackbox's",
                     unit="mean training loss over an episode"),
    ]
    return checks, _numbers(checks)


def _numbers(checks: Sequence[Check]) -> str:
    return "; ".join(f"{c.question}: {c.interval_text()}" for c in checks)


def verdict_weight_decay(ev: Mapping, tolerance: float = 1.1) -> tuple[list, str]:
    """Fig. App.2: outer weight decay 0.1–0.5 × lr keeps STAR stable beyond the horizon; 1.0 over-damps.

    Effects (positive: the paper's direction): for wd 0.1 and for wd 0.5, log(``tolerance``) − log(the training loss
    at the end of the long evaluation / its loss at the horizon), mean over meta-training seeds
    (:func:`beyond_horizon_ratio`; positive: within ``tolerance`` × its horizon loss); the final unperturbed
    meta-objective of wd 1.0 minus that of wd 0.1, and of wd 1.0 minus wd 0.5, paired by seed (positive: wd 1.0
    worse, over-damped).
    """
    m = ev["members"]
    checks = []
    for wd in [w for w in ("0.1", "0.5") if f"star_wd{w}" in m]:
        r = np.asarray(list(m[f"star_wd{wd}"]["beyond_horizon"].values()), np.float64)
        q = f"With outer wd {wd} STAR stays within {tolerance:g}× its horizon loss when trained {_long(ev)}"
        if r.size == 0:
            checks.append(Check(q, float("nan"), -math.inf, math.inf, how="no long evaluation stored"))
            continue
        checks.append(Check(q, *mean_ci(math.log(tolerance) - np.log(r)), unit=f"log({tolerance:g}) − log(loss ratio)",
                            how=f"mean over {r.size} meta-training seeds, 95 % t interval"))
    for wd in [w for w in ("0.1", "0.5") if f"star_wd{w}" in m]:
        x, y = _common(ev, "star_wd1.0", f"star_wd{wd}", "final_objective")
        checks.append(Check(f"Outer wd 1.0 ends with a worse meta-objective than wd {wd} (over-damped)",
                            *paired_ci(x, y), unit="mean training loss over an episode",
                            how=f"paired over {len(x)} meta-training seeds, 95 % t interval"))
    ratios = ", ".join(f"wd {w}: " + " / ".join(f"{v:.2f}" for v in m[f"star_wd{w}"]["beyond_horizon"].values())
                       for w in ("0.0", "0.1", "0.5", "1.0") if f"star_wd{w}" in m)
    return checks, f"loss at the end of the long evaluation / loss at the horizon, per seed — {ratios}. " + \
        _numbers(checks)


def _long(ev) -> str:
    return f"to {ev['long']:,} steps" if ev.get("long") else "past its horizon"


def verdict_preconditioning(ev: Mapping) -> tuple[list, str]:
    """Fig. App.3: "better meta-losses are achieved with the preconditioning compared to without". Effects, STAR
    without preconditioner − STAR, paired by seed: (1) the EMA PES meta-loss at the end of meta-training (not its
    average, which the start transient of the two initialisations dominates); (2) the final unperturbed
    meta-objective."""
    s, nopre = "star_wd0.1", "star_nopre_wd0.1"
    checks = [
        _lower_check(ev, s, nopre, "meta_loss", "STAR's PES meta-loss at the end of meta-training is lower than "
                     "without the preconditioner", _final_ema, "PES meta-loss (EMA, last outer step)"),
        _lower_check(ev, s, nopre, "final_objective", "STAR's final meta-objective is lower than without the "
                     "preconditioner", unit="mean training loss over an episode"),
    ]
    return checks, _numbers(checks)


def verdict_nominal_term(ev: Mapping) -> tuple[list, str]:
    """Fig. App.4: "without the nominal term, meta-training is slower and converges to worse solutions". Effects,
    STAR without nominal term − STAR, paired by seed: (1) the EMA PES meta-loss averaged over meta-training
    (slower); (2) the final unperturbed meta-objective (worse)."""
    s, nonom = "star_wd0.1", "star_nonom_wd0.1"
    checks = [
        _lower_check(ev, s, nonom, "meta_loss", "Without the nominal term meta-training is slower (higher PES "
                     "meta-loss over meta-training)", _area, "PES meta-loss (mean over outer steps)"),
        _lower_check(ev, s, nonom, "final_objective", "Without the nominal term the final meta-objective is worse",
                     unit="mean training loss over an episode"),
    ]
    return checks, _numbers(checks)


#: claim id of star.book.claims -> (figure, verdict rule)
VERDICT_RULES = {
    "star_faster_metatraining": ("fig3", verdict_fig3),
    "weight_decay_tradeoff": ("app2", verdict_weight_decay),
    "adam_preconditioning": ("app3", verdict_preconditioning),
    "nominal_term": ("app4", verdict_nominal_term),
}


# ----------------------------------------------------------------------------------------------------
# figures


_LEGEND = dict(fontsize=8, frameon=False)
#: line style of each member, so that members stay apart in print and where curves cross
LINESTYLES = {"star_wd0.1": "-", "hyperparam_wd0.0": "--", "blackbox_wd0.0": "-.", "star_nopre_wd0.1": ":",
              "star_nonom_wd0.1": "--", "star_wd0.0": ":", "star_wd0.5": "--", "star_wd1.0": "-.", "adam": "--",
              "nominal": ":"}
MARKERS = {"star_wd0.1": "o", "hyperparam_wd0.0": "s", "blackbox_wd0.0": "^", "star_nopre_wd0.1": "D",
           "star_nonom_wd0.1": "v", "star_wd0.0": "P", "star_wd0.5": "X", "star_wd1.0": "*"}


def _ls(lab: str) -> str:
    return LINESTYLES.get(lab, "-")


def _marks(lab: str, n: int) -> dict:
    """A member's marker every eighth of a curve of ``n`` points, so that curves lying on each other stay apart."""
    return dict(marker=MARKERS.get(lab, "o"), markevery=max(1, n // 8), ms=4) if n > 1 else {}


def plot_meta_loss(ax, results: GridResults, members: Sequence[Member], coefficient: float = EMA):
    """PES meta-loss against the outer step: mean ± one standard error over seeds of the EMA-smoothed curves."""
    for m in members:
        curves = meta_loss_curves(results, m, coefficient)
        steps = np.arange(1, curves.shape[1] + 1)
        color = COLORS.get(m.label)
        if len(curves) >= 2:
            mean, lo, hi = mean_stderr_band(curves)
            ax.fill_between(steps, lo, hi, color=color, alpha=0.25, lw=0)
        else:
            mean = curves[0]
        n = len(curves)
        ax.plot(steps, mean, color=color, ls=_ls(m.label), label=f"{label(m)}, {n} seed{'s' if n != 1 else ''}",
                **_marks(m.label, len(steps)))
    ax.set(xlabel="outer step", ylabel="PES meta-loss (nats, EMA 0.98)", title="PES meta-loss (loss of θ ± ε)")


def plot_seeds(ax, results: GridResults, members: Sequence[Member], coefficient: float = EMA):
    """Fig. App.1: every seed's EMA-smoothed PES meta-loss (legend beside the panel)."""
    for m in members:
        curves = meta_loss_curves(results, m, coefficient)
        for i, c in enumerate(curves):
            ax.plot(np.arange(1, len(c) + 1), c, color=COLORS.get(m.label), ls=_ls(m.label), lw=0.9, alpha=0.8,
                    label=label(m) if i == 0 else None)
    ax.set(xlabel="outer step", ylabel=f"PES meta-loss (nats, EMA {coefficient})",
           title="every meta-training seed (Fig. App.1)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), **_LEGEND)


def plot_meta_objective(ax, results: GridResults, members: Sequence[Member]):
    """Unperturbed meta-objective of the θ snapshots, mean ± s.e. over meta-training seeds; nominal dotted."""
    for j, m in enumerate(members):
        steps, obj = meta_objective(results, m)
        if obj.size == 0:
            continue
        se = obj.std(axis=0, ddof=1) / np.sqrt(len(obj)) if len(obj) > 1 else np.zeros(obj.shape[1])
        dodge = (j - (len(members) - 1) / 2) * 0.012 * float(np.ptp(steps))  # error bars side by side, not stacked
        ax.errorbar(np.asarray(steps) + dodge, obj.mean(axis=0), yerr=se, color=COLORS.get(m.label), ls=_ls(m.label),
                    marker=MARKERS.get(m.label, "o"), ms=4, capsize=2, label=label(m))
    nom = nominal_objective(results)
    if nom is not None:
        ax.axhline(nom, color=COLORS["nominal"], ls=":", lw=1.2, label="nominal optimizer")
    ax.set(xlabel="outer step", ylabel="mean training loss over an episode (nats)",
           title="meta-objective of θ itself (no perturbation)")


def plot_inner_training(ax, results: GridResults, members: Sequence[Member], steps: int):
    """Inner training for ``steps`` steps with each learned optimizer (mean over meta × evaluation seeds, EMA
    over the stored block means), tuned Adam and the nominal optimizer; the horizon dotted."""
    for m in members:
        c = inner_curves(results, m, steps)
        if c.size:
            block = steps // c.shape[1]
            ax.plot(np.arange(1, c.shape[1] + 1) * block, ema(np.nanmean(c, axis=0), 0.9), color=COLORS.get(m.label),
                    ls=_ls(m.label), label=label(m), **_marks(m.label, c.shape[1]))
    b = results.baselines
    if b is not None:
        adam = f"Adam, tuned learning rate {b['adam_search']['best_lr']:g}"
        for key, name in (("adam", adam), ("nominal", "nominal optimizer")):
            if str(steps) in b[key]:
                c = _eval_curves([b[key][str(steps)]])
                block = steps // c.shape[1]
                ax.plot(np.arange(1, c.shape[1] + 1) * block, ema(np.nanmean(c, axis=0), 0.9), color=COLORS[key],
                        ls=LINESTYLES[key], lw=1.4, label=name)
    if steps > results.grid.horizon:
        ax.axvline(results.grid.horizon, color="0.6", ls="-", lw=0.8, label="the meta-training horizon")
    ax.set(xlabel="inner step", ylabel="training loss (nats, log scale)", yscale="log",
           title=f"inner training, {steps:,} steps")


def plot_figure(results: GridResults, figure: str):
    """One of the paper's figures at our budget: PES meta-loss, meta-objective of θ, inner training at the horizon
    and at the longest evaluation; one legend for all panels, below them."""
    import matplotlib.pyplot as plt

    from star.book import labels

    members = _members(results, figure)
    steps = sorted(results.grid.eval_steps)
    lengths = [steps[0], steps[-1]] if len(steps) > 1 else steps  # the horizon and the longest evaluation
    # four panels in a 2x2 grid, or three in a row with one evaluation length
    fig, axes = plt.subplots(2, 2, figsize=(11, 8.2)) if len(lengths) == 2 else plt.subplots(1, 3, figsize=(13, 4.8))
    axes = axes.ravel()
    plot_meta_loss(axes[0], results, members)
    plot_meta_objective(axes[1], results, members)
    for ax, n in zip(axes[2:], lengths):
        plot_inner_training(ax, results, members, n)
    handles, names = [], []
    for ax in axes:
        for h, n in zip(*ax.get_legend_handles_labels()):
            key = n.split(",")[0] if n.endswith(("seed", "seeds")) else n
            if key not in [x.split(",")[0] if x.endswith(("seed", "seeds")) else x for x in names]:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="lower center", ncol=3, bbox_to_anchor=(0.5, 0.0), **_LEGEND)
    paper_name = {"fig3": "Fig. 3"}.get(figure, figure.replace("app", "Fig. App."))
    fig.suptitle(f"{paper_name} at our budget: {labels.task_short(results.grid.task)}, "
                 f"{results.grid.outer_steps:,} outer steps", fontsize=11)
    rows = math.ceil(len(names) / 3)
    fig.tight_layout(rect=(0, 0.035 * rows * (8.2 / fig.get_figheight()), 1, 1))
    return fig


def summary_table(results: GridResults, figure: str | None = None):
    """Per member and baseline: meta-training seeds, the final unperturbed meta-objective, and per evaluation length
    the final training loss, test loss (nats) and test accuracy (%), means over meta-training seeds of means over
    evaluation seeds (a :class:`star.book.tables.Table`)."""
    from star.book.tables import table

    members = _members(results, figure) if figure else [next(iter(v.values())).member for v in results.runs.values()]
    lengths = sorted(results.grid.eval_steps)
    rows = []
    for m in members:
        _, obj = meta_objective(results, m)
        row = [label(m), len(results.runs[m.label]), float(np.mean(obj[:, -1])) if obj.size else float("nan")]
        for steps in lengths:
            for key, f in (("final_train_loss", 1), ("test_loss", 1), ("test_accuracy", 100)):
                row.append(f * float(np.mean(_per_meta_seed(results, m, steps, key))))
        rows.append(row)
    b = results.baselines
    if b is not None:
        for key, name in (("adam", f"Adam, tuned learning rate {b['adam_search']['best_lr']:g}"),
                          ("nominal", "nominal optimizer")):
            row = [name, "—", float("nan")]
            for steps in lengths:
                per = b[key].get(str(steps), {"per_seed": []})["per_seed"]
                for k, f in (("final_train_loss", 1), ("test_loss", 1), ("test_accuracy", 100)):
                    vals = [r[k] for r in per]
                    row.append(float("nan") if not vals or None in vals else f * float(np.mean(vals)))
            rows.append(row)
    cols = ["optimizer", "meta-training seeds", "final meta-objective (nats)"]
    for steps in lengths:
        cols += [f"training loss after {steps:,} steps (nats)", f"test loss after {steps:,} (nats)",
                 f"test accuracy after {steps:,} (%)"]
    rows = [[("—" if isinstance(x, float) and math.isnan(x) else x) for x in r] for r in rows]
    return table(cols, rows, digits=3)


def adam_search_table(results: GridResults):
    """The tuned Adam's learning-rate search: mean training loss over 2000 steps per learning rate."""
    from star.book.tables import table

    search = results.baselines["adam_search"]
    rows = [[float(lr), v] for lr, v in sorted(search["mean_train_loss"].items(), key=lambda kv: float(kv[0]))]
    return table(["Adam learning rate", "mean training loss over 2,000 steps (nats)"], rows, digits=3)


def accelerator_estimate_table():
    """Per paper-scale grid: runs, inner steps per run and in all, and the hours they take at the inner-step rate of
    STAR on the paper's MLP with N = 8 on two CPU cores (the median over a stored run's outer steps; no accelerator's
    rate has been measured for this book); and whether the grid's data are available here."""
    from star.book import labels
    from star.book.files import stored_run
    from star.book.tables import table
    from star.data_sources import DataUnavailableError
    from star.grids import get_grid
    from star.tasks import get_task

    rate = float(np.median(stored_run("star_fmnist_cpu_paper_sigma").log["inner_steps_per_s"]))
    rows = []
    for name in ("indist", "indist_conv"):
        g = get_grid(name, "paper")
        est = g.compute_estimate(inner_steps_per_s=rate)
        try:
            get_task(g.task)
            data = "yes"
        except DataUnavailableError:
            data = "no (tensorflow-datasets, online)"
        rows.append([labels.grid(name), labels.task_short(g.task), est["runs"], f"{est['inner_steps_per_run']:,}",
                     f"{est['inner_steps']:,}", est["hours"] if g.task == "fmnist_mlp" else "not measured", data])
    return table(["paper-scale grid", "task", "runs", "inner steps per run", "inner steps in all",
                  f"hours at {rate:,.0f} inner steps per second (2 CPU cores)", "data available here"], rows, digits=3)


def provenance_table(*grids: GridResults):
    """Per grid: finished and missing runs, meta-training and post-processing minutes summed over the runs, inner
    steps per second of meta-training, the devices and the commits that made the runs."""
    from star.book import labels
    from star.book.tables import table

    rows = []
    for res in grids:
        prov = [r.provenance for by_seed in res.runs.values() for r in by_seed.values()]
        dev = sorted({f"{p.get('device', {}).get('count')} × {p.get('device', {}).get('platform')} "
                      f"({p.get('device', {}).get('cpu_count')} cores)" for p in prov})
        commits = sorted({str(p.get("git_commit", "?"))[:7] for p in prov})
        rows.append([labels.grid(res.grid.name), sum(len(v) for v in res.runs.values()), len(res.missing),
                     res.total_wall_s() / 60, res.post_wall_s() / 60, res.inner_steps_per_s(), ", ".join(dev),
                     ", ".join(commits)])
    return table(["grid", "finished runs", "runs not stored yet", "meta-training (min, summed)",
                  "post-processing (min)", "inner steps per second", "devices", "commits"], rows, digits=3)


# ----------------------------------------------------------------------------------------------------
# recording the verdicts

def regime_notes(results: GridResults, claim_id: str) -> list[str]:
    """Reasons, computed from the grid, why its budget cannot reach the regime a claim is about (beyond the
    outer steps and the task, which :func:`star.book.claims.shortfalls` checks): for the weight-decay claim, a
    cumulative outer decay lr·wd·steps at wd 1.0 below half the paper's at the book's paper-scale length."""
    from star.grids import get_grid

    if claim_id != "weight_decay_tradeoff":
        return []
    g = results.grid
    ours = g.lr * 1.0 * g.outer_steps
    try:
        ref = get_grid("indist", "paper")
        theirs = 1e-4 * 1.0 * ref.outer_steps
    except ValueError:
        return []
    if ours < 0.5 * theirs:
        return [f"the cumulative outer weight decay lr·wd·steps at wd 1.0 is {ours:.2g} (θ shrinks to "
                f"{math.exp(-ours):.2f} of itself), the paper's at 5,000 outer steps {theirs:.2g}"]
    return []


def verdict_summary(results: GridResults, checks: Sequence[Check]) -> str:
    """One plain sentence: where, at what length, how many checks came out how."""
    from star.book import claims, labels

    return (f"On the {labels.task_short(results.grid.task)} after {results.grid.outer_steps:,} outer steps, "
            f"{claims.count_sentence(checks)}.")


def record_verdict(results: GridResults, claim_id: str, *, chapter: str = "in_distribution", min_seeds: int = 3,
                   claims_folder=None, anchor: str | None = None, part: str | None = None):
    """Compute the checks of ``claim_id`` (:data:`VERDICT_RULES`) from ``results`` and record them with the grid's
    budget (:func:`star.book.claims.record_claim`, one record per grid, ``part`` = the grid's name, so that a longer
    grid on the same task is a record of its own beside the shorter one), which derives the
    verdict; returns its ``Verdict``. Nothing is recorded — a line saying why is returned — while the evidence has
    fewer than ``min_seeds`` seeds of a member (:func:`complete`). ``part``: the record's part (default the grid's
    name)."""
    from star.book import claims

    figure, rule = VERDICT_RULES[claim_id]
    ev = evidence(results)
    lacking = complete(ev, figure, min_seeds)
    if lacking:
        return f"Not recorded: the evidence is incomplete ({'; '.join(lacking)})."
    checks, text = rule(ev)
    members = figure_members(ev, figure)
    seeds = min(len(set(ev["members"][m]["final_objective"])) for m in members)
    return claims.record_claim(claim_id, checks, verdict_summary(results, checks),
                               budget=claims.Budget.from_grid(results.grid, seeds=seeds),
                               regime=regime_notes(results, claim_id), evidence=text, scale=results.grid.scale,
                               chapter=chapter, part=part or results.grid.name, anchor=anchor or f"indist-{figure}",
                               claims_folder=claims_folder)


def verdict_or_reason(results: GridResults, claim_id: str, *, min_seeds: int = 3, **kwargs):
    """:func:`record_verdict` for a reader's page: the recorded verdict, or — while the evidence is incomplete — one
    plain sentence naming, in the reader's terms, how many meta-training seeds of each member the verdict needs
    and how many are stored (nothing is recorded then)."""
    from star.book import labels

    figure, _ = VERDICT_RULES[claim_id]
    ev = evidence(results)
    if not complete(ev, figure, min_seeds):
        return record_verdict(results, claim_id, min_seeds=min_seeds, **kwargs)
    stored = []
    for lab in figure_members(ev, figure):
        m = ev["members"].get(lab)
        n = 0 if m is None else min(len(m["meta_loss"]), len(m["final_objective"]))
        stored.append(f"{labels.member(lab)}: {n}")
    paper_name = {"fig3": "Fig. 3"}.get(figure, figure.replace("app", "Fig. App."))
    from star.book.tables import Prose

    return Prose(f"{paper_name} at {results.grid.outer_steps:,} outer steps: no verdict yet — it needs {min_seeds} "
                 f"meta-training seeds of each member, and the stored seeds are: {'; '.join(stored)}.")


# ----------------------------------------------------------------------------------------------------
# budgets, and the 2000-outer-step grid against the 200-step one

def paper_counterpart(grid: Grid) -> Grid:
    """The book's paper-scale grid on the paper task that ``grid``'s task is (or stands in for,
    :data:`star.book.claims.SUBSTITUTES`): the paper does not state N or the number of outer steps, so these are the
    book's paper-scale choices.

    Raises:
        ValueError: no paper-scale grid runs that task.
    """
    from star.book.claims import SUBSTITUTES
    from star.grids import GRIDS

    task = SUBSTITUTES.get(grid.task, grid.task)
    for g in GRIDS.values():
        if g.scale == "paper" and g.task == task:
            return g
    raise ValueError(f"grid {grid.name!r}: no paper-scale grid runs its task {task!r}")


def budget_fraction(grid: Grid, paper: Grid | None = None, num_params: Mapping | None = None) -> dict:
    """One meta-training run of ``grid`` as a fraction of one run of its paper-scale counterpart
    (:func:`paper_counterpart`): outer steps, inner steps (outer steps × 2N × truncation, both antithetic sides)
    and inner compute (inner steps × parameters of the task, what a step of a small MLP costs relative to a large
    one). ``num_params``: ``{task: parameters}`` instead of :func:`star.book.claims.task_size`."""
    from star.book.claims import task_size

    paper = paper if paper is not None else paper_counterpart(grid)
    sizes = dict(num_params or {})
    for t in (grid.task, paper.task):
        if t not in sizes:
            sizes[t] = task_size(t)
    inner, inner_p = grid.inner_steps_per_run(), paper.inner_steps_per_run()
    return {"grid": grid.name, "task": grid.task, "paper_task": paper.task, "outer_steps": grid.outer_steps,
            "paper_outer_steps": paper.outer_steps, "num_tasks": grid.num_tasks, "paper_num_tasks": paper.num_tasks,
            "outer_fraction": grid.outer_steps / paper.outer_steps, "inner_fraction": inner / inner_p,
            "compute_fraction": inner * sizes[grid.task] / (inner_p * sizes[paper.task]),
            "params": sizes[grid.task], "paper_params": sizes[paper.task]}


def budget_table(grids: Sequence[Grid], num_params: Mapping | None = None):
    """:func:`budget_fraction` of each grid as a table (fractions of one paper-scale run)."""
    from star.book import labels
    from star.book.tables import table

    rows = []
    for g in grids:
        b = budget_fraction(g, num_params=num_params)
        rows.append([labels.grid(g.name), f"{labels.task_short(g.task)} ({b['params']:,} parameters)",
                     f"{g.outer_steps} × N {g.num_tasks}",
                     f"{labels.task_short(b['paper_task'])}: {b['paper_outer_steps']} × N {b['paper_num_tasks']}",
                     f"{100 * b['outer_fraction']:.3g} %", f"{100 * b['inner_fraction']:.3g} %",
                     f"{100 * b['compute_fraction']:.3g} %"])
    return table(["grid", "task", "outer steps × inner problems", "paper-scale run", "outer steps",
                  "inner steps", "inner compute (steps × params)"], rows)


def meta_objective_at(results: GridResults, m: Member, step: int) -> np.ndarray:
    """Each stored seed's unperturbed meta-objective at outer step ``step`` (seeds without that snapshot left
    out)."""
    out = []
    for s in sorted(results.runs.get(m.label, {})):
        c = results.runs[m.label][s].meta_curve
        row = next((r for r in (c or {}).get("curve", []) if r["step"] == step), None)
        if row is not None:
            out.append(float(row["mean"]))
    return np.asarray(out)


def long_short_rows(short: GridResults, long: GridResults) -> list:
    """Per member of the long grid: the unperturbed meta-objective (mean ± s.e. over seeds) after the short
    grid's outer steps in each grid, and after the long grid's, with the nominal optimizer's; and the loss at
    the end of the longest evaluation over the loss at the horizon (:func:`beyond_horizon_ratio`, mean over
    seeds) in each grid."""
    def ms(x):
        x = np.asarray(x, np.float64)
        if not x.size:
            return math.nan, math.nan
        return float(x.mean()), float(x.std(ddof=1) / math.sqrt(x.size)) if x.size > 1 else math.nan

    rows = []
    for m in long.grid.members:
        if m.label not in long.runs:
            continue
        row = {"member": m, "seeds": len(long.runs[m.label]),
               "short_end": ms(meta_objective_at(short, m, short.grid.outer_steps)),
               "long_at_short": ms(meta_objective_at(long, m, short.grid.outer_steps)),
               "long_end": ms(meta_objective_at(long, m, long.grid.outer_steps)),
               "beyond_short": ms(beyond_horizon_ratio(short, m)) if m.label in short.runs else (math.nan,) * 2,
               "beyond_long": ms(beyond_horizon_ratio(long, m))}
        rows.append(row)
    return rows


def long_short_table(short: GridResults, long: GridResults):
    """:func:`long_short_rows` as a table, with the nominal optimizer's meta-objective in the caption."""
    from star.book.tables import table

    def f(pair):
        m, se = pair
        return "—" if not math.isfinite(m) else (f"{m:.3f}" + (f" ± {se:.3f}" if math.isfinite(se) else ""))

    s, lg = short.grid, long.grid
    cells = [[label(r["member"]), r["seeds"], f(r["short_end"]), f(r["long_at_short"]), f(r["long_end"]),
              f(r["beyond_short"]), f(r["beyond_long"])] for r in long_short_rows(short, long)]
    nom = nominal_objective(long)
    cap = None if nom is None else f"nominal optimizer: {nom:.3f} on the long grid's episodes"
    t = max(lg.eval_steps)
    return table(["optimizer", "seeds (long)", f"meta-objective at {s.outer_steps}, N {s.num_tasks}",
                  f"at {s.outer_steps}, N {lg.num_tasks}", f"at {lg.outer_steps}, N {lg.num_tasks}",
                  f"loss at {t} / at horizon, {s.outer_steps}-step θ", f"the same, {lg.outer_steps}-step θ"],
                 cells, caption=cap)


def long_reading(short: GridResults, long: GridResults, tolerance: float = 1.1) -> str:
    """What :func:`long_short_rows` says, in words, computed: the members ordered by their meta-objective after the
    long grid's outer steps (against the nominal optimizer's), which of them stay within ``tolerance`` × their
    horizon loss at the end of the longest evaluation, and how many seeds that rests on (one seed: single runs,
    no interval). A :class:`star.book.tables.Prose` (Markdown)."""
    from star.book.tables import Prose

    rows = long_short_rows(short, long)
    if not rows:
        return Prose("No run of the long grid is stored yet.")
    seeds = sorted({r["seeds"] for r in rows})
    ordered = sorted(rows, key=lambda r: r["long_end"][0])
    nom = nominal_objective(long)
    order = ", then ".join(f"{label(r['member'])} ({r['long_end'][0]:.3f})" for r in ordered)
    text = (f"After {long.grid.outer_steps:,} outer steps the meta-objective is lowest for {order}"
            + (f"; the nominal optimizer's is {nom:.3f}." if nom is not None else "."))
    longest = max(long.grid.eval_steps)
    stable = [label(r["member"]) for r in rows if r["beyond_long"][0] <= tolerance]
    unstable = [f"{label(r['member'])} ({r['beyond_long'][0]:.2f}×)" for r in rows if r["beyond_long"][0] > tolerance]
    text += (f" Trained for {longest:,} inner steps, {len(stable)} of {len(rows)} stay within {tolerance:g}× their "
             f"loss at the horizon" + (f" ({', '.join(stable)})" if stable else "")
             + (f"; {', '.join(unstable)} end{'s' if len(unstable) == 1 else ''} above it." if unstable else "."))
    if seeds == [1]:
        text += (" Each number is one meta-training run (seed 0): a single draw, with no interval, so none of this is "
                 "a verdict.")
    else:
        text += f" Means over {', '.join(map(str, seeds))} meta-training seeds per member."
    return Prose(text)


def stuck_seeds(results: GridResults, figure: str = "fig3", tolerance: float = 0.05) -> str:
    """A sentence naming the meta-training seeds of ``figure``'s members whose final unperturbed meta-objective is
    within ``tolerance`` of ln 10 — the loss of a 10-class network that does not learn — computed from the stored
    meta-curves. A :class:`star.book.tables.Prose` (Markdown)."""
    from star.book.tables import Prose

    level = math.log(10.0)
    parts = []
    for m in _members(results, figure):
        seeds = [s for s in sorted(results.runs.get(m.label, {}))
                 if abs(v := meta_objective_at(_only(results, m.label, s), m, results.grid.outer_steps)).size
                 and abs(float(v[0]) - level) <= tolerance]
        if seeds:
            which = f"seed {seeds[0]}" if len(seeds) == 1 else \
                f"seeds {', '.join(map(str, seeds[:-1]))} and {seeds[-1]}"
            parts.append(f"{label(m)}'s {which}")
    end = f"after {results.grid.outer_steps:,} outer steps"
    if not parts:
        return Prose(f"No seed ends at ln 10 ≈ {level:.2f}, the loss of a network that does not learn, {end}.")
    listed = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    verb = "ends" if len(parts) == 1 and "seeds" not in listed else "end"
    return Prose(f"Some seeds do not train at all: {listed} {verb} "
                 f"at ln 10 ≈ {level:.2f}, the loss of a network that does not learn, {end}.")
