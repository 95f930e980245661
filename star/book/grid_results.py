"""The stored runs of a grid of meta-training runs (:class:`star.grids.Grid`) read back, and the arrays the chapters
compute from them.

:func:`load_grid` reads the run folders of a grid (log, meta-curve, evaluations and provenance, through
:class:`star.runs.RunFolder`) and the grid's baselines (:func:`star.runs.read_baselines`) into a
:class:`GridResults`. From it: each seed's PES meta-loss, EMA-smoothed with 0.98 as in App. B.2
(:func:`meta_loss_curves`); the unperturbed meta-objective of the θ snapshots (:func:`meta_objective`,
:func:`meta_objective_at`) and the nominal optimizer's (:func:`nominal_objective`); inner training curves of the
evaluations (:func:`inner_curves`) and the loss far beyond the horizon over the loss at it
(:func:`beyond_horizon_ratio`). One stored run outside a grid, its meta-curve, provenance and log, is read by
:func:`curve_run`. The chapter "In-distribution meta-training" draws them
(:mod:`star.book.in_distribution_figures`) and turns them into verdicts (:mod:`star.book.in_distribution_verdicts`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from star import runs
from star.grids import FIGURES, Grid, Member
from star.plotting import ema

__all__ = ["EMA", "RunResult", "GridResults", "file_reader", "curve_run", "load_grid", "members_of", "only_run",
           "meta_loss_curves", "meta_objective", "meta_objective_at", "nominal_objective", "eval_curves",
           "inner_curves", "per_meta_seed", "beyond_horizon_ratio"]

EMA = 0.98  # App. B.2: "In all plots, we apply EMA smoothing with a coefficient of 0.98."


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


def file_reader(root):
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


def curve_run(read, folder: str) -> dict | None:
    """``{"curve", "provenance", "log"}`` of a stored run with a meta-curve and provenance (``log`` ``None`` if it
    has none), read through :class:`star.runs.RunFolder` with ``read`` (:func:`file_reader`); ``None`` if the
    meta-curve or provenance is missing."""
    c, p, lg = (read(f"{folder}/{f}") for f in (runs.META_CURVE, runs.PROVENANCE, runs.LOG))
    if c is None or p is None:
        return None
    run = runs.RunFolder(c.parent)
    return {"curve": run.meta_curve(), "provenance": run.provenance(), "log": run.log() if lg is not None else None}


def load_grid(grid: Grid, root: str | Path | None = None) -> GridResults:
    """Read the stored runs of ``grid`` (from ``root``, default: the repository, fetched on Colab) through
    :class:`star.runs.RunFolder` (each stored file checked against its schema).

    Runs without a complete log (not finished) are listed in ``missing``; post-processing files that do not
    exist yet are ``None`` / absent.
    """
    read = file_reader(root)
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


def members_of(results: GridResults, figure: str) -> list:
    """The members of ``figure`` (:data:`star.grids.FIGURES`) that ``results`` holds runs of."""
    return [Member(o, float(w)) for o, w in FIGURES[figure] if Member(o, float(w)).label in results.runs]


def only_run(results: GridResults, lab: str, seed: int) -> GridResults:
    """``results`` with only the run of member ``lab`` and ``seed``."""
    return dataclasses.replace(results, runs={lab: {seed: results.runs[lab][seed]}})


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


def eval_curves(evals: Sequence[dict]) -> np.ndarray:
    return np.asarray([[np.nan if x is None else x for x in row["curve"]] for ev in evals for row in ev["per_seed"]],
                      np.float64)


def inner_curves(results: GridResults, m: Member, steps: int) -> np.ndarray:
    """``[meta seeds × eval seeds, blocks]`` training-loss curves (block means) of the learned optimizers."""
    evs = [r.evals[steps] for r in results.runs[m.label].values() if steps in r.evals]
    return eval_curves(evs) if evs else np.zeros((0, 0))


def per_meta_seed(results: GridResults, m: Member, steps: int, key: str) -> np.ndarray:
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
