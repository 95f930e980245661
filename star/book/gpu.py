"""The page "Running the book on a GPU": measured chapter times, and the stored accelerator measurement.

Two stored measurements feed it:

* ``results/timing/<scale>/chapter_times.json`` (``experiments/chapter_times.py``): each chapter's execution time
  in one build of the book, with the machine's core count and load during the build;
* ``results/accelerator/<device>/accelerator.json`` (``experiments/accelerator.py``): STAR and PES timed on an
  accelerator against the host CPU, and PES meta-training runs of STAR on the paper's MLP at large N.

Where the second is absent the page says so (:func:`accelerator_reports` returns nothing).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from star.book.files import repo_json
from star.book.pages import find_book_root, page_title, toc_pages

__all__ = ["chapter_times", "chapter_time_rows", "chapter_time_table", "times_summary", "accelerator_reports",
           "accelerator_rows", "accelerator_tables", "grid_hours", "grid_estimates", "grid_description", "paper_plan"]

TIMES = "results/timing/{scale}/chapter_times.json"
ACCELERATOR_GLOB = "results/accelerator/*/accelerator.json"


def chapter_times(scale: str = "cpu") -> dict | None:
    """The stored chapter times at ``scale`` (see ``experiments/chapter_times.py``); None if none are stored."""
    try:
        return repo_json(TIMES.format(scale=scale))
    except FileNotFoundError:
        return None


def chapter_time_rows(times: dict, root: str | Path | None = None) -> list[tuple[str, str]]:
    """(chapter title, minutes and seconds) for each timed chapter, in the order of ``_toc.yml`` (outside a
    checkout: alphabetical, titled by file name)."""
    root = root if root is not None else find_book_root()
    order = (toc_pages(root) or []) if root is not None else []
    pages = sorted(times["chapters"], key=lambda p: (order.index(p) if p in order else len(order), p))
    rows = []
    for page in pages:
        seconds = times["chapters"][page]
        title = (page_title(root, page) if root is not None else None) or page.split("/")[-1]
        rows.append((title, f"{int(seconds // 60)} min {seconds % 60:02.0f} s"))
    return rows


def chapter_time_table(times: dict, root: str | Path | None = None):
    """The chapter times as a table (:func:`chapter_time_rows`)."""
    from star.book.tables import table

    return table(["chapter", f"execution at STAR_SCALE={times['scale']}"], chapter_time_rows(times, root))


def accelerator_reports(root: str | Path | None = None) -> list[tuple[str, dict]]:
    """(path relative to the repository, report) of every stored accelerator measurement; empty when there is
    none, or outside a checkout (the files cannot be listed over HTTP)."""
    import json

    root = Path(root) if root is not None else find_book_root()
    if root is None:
        return []
    return [(p.relative_to(root).as_posix(), json.loads(p.read_text(encoding="utf-8")))
            for p in sorted(root.glob(ACCELERATOR_GLOB))]


def accelerator_rows(report: dict) -> list[dict]:
    """The timing rows of a report that are not the host CPU's, each with the CPU row's numbers beside it."""
    timing = report.get("timing", [])
    cpu = next((r for r in timing if r.get("platform") == "cpu"), None)
    return [dict(r, cpu=cpu) for r in timing if r.get("platform") != "cpu"]


def grid_hours(grid, root: str | Path | None = None) -> dict[str, float]:
    """{where: hours} for the meta-training of ``grid`` at each stored accelerator's measured PES rate, where
    that rate was measured on the grid's task with the grid's N; empty if there is none."""
    out = {}
    for _, report in accelerator_reports(root):
        if report.get("settings", {}).get("task") != grid.task or report.get("settings", {}).get("smoke"):
            continue
        for row in accelerator_rows(report):
            if row.get("pes_num_tasks") == grid.num_tasks and row.get("pes_inner_steps_per_s"):
                out[f"one {row.get('kind', row['platform'])} (measured rate)"] = \
                    grid.compute_estimate(inner_steps_per_s=row["pes_inner_steps_per_s"])["hours"]
    return out


# Stored runs whose logged inner-step rate is the book's CPU rate for a (task, N): PES on the paper's MLP with N = 8
# on the 2-core machine that ran the book's cpu-scale results.
CPU_RATE_RUNS = {("fmnist_mlp", 8): "star_fmnist_cpu_paper_sigma"}


def grid_estimates(grid, root: str | Path | None = None) -> dict[str, float]:
    """{where: hours} of meta-training ``grid`` at every measured rate for its task and N: the CPU rate of a
    stored run (:data:`CPU_RATE_RUNS`) and each stored accelerator's (:func:`grid_hours`); empty if none."""
    import numpy as np

    from star.book.files import stored_run

    out = {}
    name = CPU_RATE_RUNS.get((grid.task, grid.num_tasks))
    if name is not None:
        run = stored_run(name)
        rate = float(np.median(run.log["inner_steps_per_s"]))
        cores = run.provenance.get("device", {}).get("cpu_count", "?")
        out[f"{cores} CPU cores (measured rate)"] = grid.compute_estimate(inner_steps_per_s=rate)["hours"]
    return {**out, **grid_hours(grid, root)}


def grid_description(grid) -> str:
    """What meta-training ``grid`` means, in words: its name, scale, task, runs, outer steps and N."""
    from star.book import labels

    return (f"{labels.grid(grid.name)} at {grid.scale} scale ({labels.task_short(grid.task)}): "
            f"{len(grid.runs())} meta-training runs of {grid.outer_steps} outer steps, N = {grid.num_tasks}")


def paper_plan(report: dict, budgets_h=(1, 4, 12)) -> list[dict]:
    """For each stored run of the report (PES on the paper's MLP from the nominal start): N, the measured seconds
    per outer step, and how many outer steps fit in each budget of hours."""
    rows = []
    for run in report.get("runs", []):
        step_s = run.get("median_step_s")
        if not step_s or not math.isfinite(step_s) or run.get("steps", 0) < 2:
            continue
        rows.append({"folder": run["folder"], "num_tasks": run.get("num_tasks"), "steps": run["steps"],
                     "step_s": step_s, "fits": {h: int(h * 3600 // step_s) for h in budgets_h},
                     "first_meta_loss": run.get("first_meta_loss"), "last_meta_loss": run.get("last_meta_loss"),
                     "meta_curve": run.get("meta_curve")})
    return rows


def times_summary(times: dict) -> str:
    """One sentence: where and under what load the chapter times were measured."""
    load, dev, prov = times["load_1min"], times["provenance"].get("device", {}), times["provenance"]
    return (f"Measured on {times['cpu_count']} CPU cores ({dev.get('count', '?')} {dev.get('platform', '?')} "
            f"device(s) seen by JAX) on {str(prov.get('finished_utc', '?'))[:10]}: one build of the book at "
            f"STAR_SCALE={times['scale']} from an empty execution cache, {times['build_wall_s'] / 60:.1f} min in all. "
            f"The machine's 1-minute load average during the build: median {load['median']:.1f}, range "
            f"{load['min']:.1f}–{load['max']:.1f} ({load['samples']} samples); a load above the core count means "
            f"other work shared the cores and the times are longer than on an idle machine.")


def accelerator_tables(reports: list[tuple[str, dict]], grid=None, root: str | Path | None = None):
    """Tables of the stored accelerator measurements: timings against the host CPU, and how many outer steps of
    PES on the paper's MLP fit in a few hours at each measured N. ``grid``: a grid to estimate at the measured
    PES rate (the paper-scale in-distribution grid)."""
    from star.book import labels
    from star.book.longrun import format_hours
    from star.book.tables import table

    out = []
    for path, report in reports:
        rows = []
        for r in accelerator_rows(report):
            cpu = r["cpu"] or {}
            rows.append([r.get("kind", r["platform"]), r.get("star_step_ms"), cpu.get("star_step_ms"),
                         r.get("adam_step_ms"), cpu.get("adam_step_ms"), r.get("pes_inner_steps_per_s"),
                         cpu.get("pes_inner_steps_per_s"), r.get("pes_num_tasks")])
        out.append(table(["device", "STAR step (ms)", "on the CPU", "Adam step (ms)", "on the CPU",
                          "PES inner steps/s", "on the CPU", "N"], rows, digits=3,
                         caption=f"{path}: one training step of the task (batch 128) and one PES meta-gradient "
                                 f"(truncation {report.get('settings', {}).get('trunc', '?')}), medians, on the "
                                 f"accelerator and on the host CPU of the same machine"))
        plan = paper_plan(report)
        if plan:
            hours = list(plan[0]["fits"])
            out.append(table(["meta-training seed", "N", "outer steps run", "s per outer step",
                              *[f"outer steps in {h} h" for h in hours], "PES meta-loss, first → last step",
                              "meta-objective, θ₀ → last θ"],
                             [[_seed_of(p["folder"]), p["num_tasks"], p["steps"], p["step_s"], *p["fits"].values(),
                               _arrow(p["first_meta_loss"], p["last_meta_loss"]),
                               _arrow((p["meta_curve"] or {}).get("first"), (p["meta_curve"] or {}).get("last"))]
                              for p in plan], digits=3,
                             caption="PES meta-training of STAR on the paper's MLP from the nominal start at the "
                                     "paper's settings, on the accelerator; the meta-objective is the mean training "
                                     "loss of unperturbed 2000-step episodes (lower is better; not computed: –)"))
    if grid is not None:
        est = grid_hours(grid, root)
        if est:
            out.append(table(["where", f"{labels.grid(grid.name)} at paper scale"],
                             [[k, format_hours(v)] for k, v in est.items()],
                             caption=f"{len(grid.members) * len(grid.seeds)} runs × {grid.outer_steps} outer steps, "
                                     f"N = {grid.num_tasks}, at the measured PES rate"))
    return out


def _seed_of(folder: str) -> str:
    """The meta-training seed of a run folder (``..._s0`` → ``"0"``), or ``"–"``: a table names runs by it, not by
    the folder's id."""
    m = re.search(r"_s(\d+)$", str(folder).rstrip("/"))
    return m.group(1) if m else "–"


def _arrow(first, last) -> str:
    return "–" if first is None or last is None else f"{first:.3f} → {last:.3f}"
