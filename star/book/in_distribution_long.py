"""The budget of a grid as a fraction of the book's paper-scale run, and the section of the chapter
"In-distribution meta-training" that sets the 2000-outer-step grid against the 200-step one: the meta-objective of
each member after either length, and whether it stays stable when trained far past its horizon.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from star.book import labels
from star.book.claims import SUBSTITUTES, task_size
from star.book.grid_results import GridResults, beyond_horizon_ratio, meta_objective_at, nominal_objective
from star.book.tables import Prose, table
from star.grids import Grid

__all__ = ["paper_counterpart", "budget_fraction", "budget_table", "long_short_rows", "long_short_table",
           "long_reading"]


def paper_counterpart(grid: Grid) -> Grid:
    """The book's paper-scale grid on the paper task that ``grid``'s task is (or stands in for,
    :data:`star.book.claims.SUBSTITUTES`): the paper does not state N or the number of outer steps, so these are the
    book's paper-scale choices.

    Raises:
        ValueError: no paper-scale grid runs that task.
    """
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
    def f(pair):
        m, se = pair
        return "—" if not math.isfinite(m) else (f"{m:.3f}" + (f" ± {se:.3f}" if math.isfinite(se) else ""))

    s, lg = short.grid, long.grid
    cells = [[labels.member(r["member"]), r["seeds"], f(r["short_end"]), f(r["long_at_short"]), f(r["long_end"]),
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
    rows = long_short_rows(short, long)
    if not rows:
        return Prose("No run of the long grid is stored yet.")
    seeds = sorted({r["seeds"] for r in rows})
    ordered = sorted(rows, key=lambda r: r["long_end"][0])
    nom = nominal_objective(long)
    order = ", then ".join(f"{labels.member(r['member'])} ({r['long_end'][0]:.3f})" for r in ordered)
    text = (f"After {long.grid.outer_steps:,} outer steps the meta-objective is lowest for {order}"
            + (f"; the nominal optimizer's is {nom:.3f}." if nom is not None else "."))
    longest = max(long.grid.eval_steps)
    stable = [labels.member(r["member"]) for r in rows if r["beyond_long"][0] <= tolerance]
    unstable = [f"{labels.member(r['member'])} ({r['beyond_long'][0]:.2f}×)" for r in rows
                if r["beyond_long"][0] > tolerance]
    text += (f" Trained for {longest:,} inner steps, {len(stable)} of {len(rows)} stay within {tolerance:g}× their "
             f"loss at the horizon" + (f" ({', '.join(stable)})" if stable else "")
             + (f"; {', '.join(unstable)} end{'s' if len(unstable) == 1 else ''} above it." if unstable else "."))
    if seeds == [1]:
        text += (" Each number is one meta-training run (seed 0): a single draw, with no interval, so none of this is "
                 "a verdict.")
    else:
        text += f" Means over {', '.join(map(str, seeds))} meta-training seeds per member."
    return Prose(text)
