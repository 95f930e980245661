"""The verdict rules of the chapter "In-distribution meta-training" (``book/in_distribution.ipynb``): Fig. 3 (STAR
meta-trains faster than the blackbox optimizer), Fig. App.2 (outer weight decay), Fig. App.3 (Adam-style
preconditioning) and Fig. App.4 (the nominal term).

:func:`evidence` reads what the rules need from a grid's stored runs (:mod:`star.book.grid_results`); each rule
(:data:`VERDICT_RULES`) turns it into :class:`star.book.verdicts.Check` s — an effect signed so that a positive value is
the paper's direction, with a 95 % interval over paired meta-training seeds — and :func:`record_verdict` records
them with the grid's budget (:meth:`star.book.claims.Budget.from_grid`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from star.book import claims, labels, records
from star.book.grid_results import GridResults, beyond_horizon_ratio, meta_loss_curves, only_run
from star.book.stats import mean_ci, paired_ci
from star.book.tables import Prose
from star.book.verdicts import Check, count_sentence
from star.grids import FIGURES, Member

__all__ = ["evidence", "OPTIONAL_MEMBERS", "figure_members", "complete", "verdict_fig3", "verdict_weight_decay",
           "verdict_preconditioning", "verdict_nominal_term", "VERDICT_RULES", "regime_notes", "verdict_summary",
           "record_verdict", "verdict_or_reason"]


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
            r = beyond_horizon_ratio(only_run(results, lab, s), m)
            if r.size:
                beyond[s] = float(r[0])
        out["members"][lab] = {"meta_loss": dict(zip(seeds, curves)), "final_objective": final,
                               "beyond_horizon": beyond}
    return out


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
    return (f"On the {labels.task_short(results.grid.task)} after {results.grid.outer_steps:,} outer steps, "
            f"{count_sentence(checks)}.")


def record_verdict(results: GridResults, claim_id: str, *, chapter: str = "in_distribution", min_seeds: int = 3,
                   claims_folder=None, anchor: str | None = None, part: str | None = None):
    """Compute the checks of ``claim_id`` (:data:`VERDICT_RULES`) from ``results`` and record them with the grid's
    budget (:func:`star.book.records.record_claim`, one record per grid, ``part`` = the grid's name, so that a longer
    grid on the same task is a record of its own beside the shorter one), which derives the
    verdict; returns its ``Verdict``. Nothing is recorded — a line saying why is returned — while the evidence has
    fewer than ``min_seeds`` seeds of a member (:func:`complete`). ``part``: the record's part (default the grid's
    name)."""
    figure, rule = VERDICT_RULES[claim_id]
    ev = evidence(results)
    lacking = complete(ev, figure, min_seeds)
    if lacking:
        return f"Not recorded: the evidence is incomplete ({'; '.join(lacking)})."
    checks, text = rule(ev)
    members = figure_members(ev, figure)
    seeds = min(len(set(ev["members"][m]["final_objective"])) for m in members)
    return records.record_claim(claim_id, checks, verdict_summary(results, checks),
                                budget=claims.Budget.from_grid(results.grid, seeds=seeds),
                                regime=regime_notes(results, claim_id), evidence=text, scale=results.grid.scale,
                                chapter=chapter, part=part or results.grid.name, anchor=anchor or f"indist-{figure}",
                                claims_folder=claims_folder)


def verdict_or_reason(results: GridResults, claim_id: str, *, min_seeds: int = 3, **kwargs):
    """:func:`record_verdict` for a reader's page: the recorded verdict, or — while the evidence is incomplete — one
    plain sentence naming, in the reader's terms, how many meta-training seeds of each member the verdict needs
    and how many are stored (nothing is recorded then)."""
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
    return Prose(f"{paper_name} at {results.grid.outer_steps:,} outer steps: no verdict yet — it needs {min_seeds} "
                 f"meta-training seeds of each member, and the stored seeds are: {'; '.join(stored)}.")
