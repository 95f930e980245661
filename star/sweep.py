"""Grids of meta-training runs (Fig. 3, Figs. App.1–App.4) and a resumable driver that runs them.

A *grid* is data (:class:`Grid`): a task, the PES and outer-loop settings, the *members* (an optimizer of
the STAR family and an outer weight decay, App. B.2/C.2) and the meta-training seeds. Every run of a grid
is one stored run folder ``<grid.folder>/<optimizer>_wd<wd>_s<seed>`` made by ``python -m star meta-train``
(config, log, θ snapshots, provenance). :func:`run_sweep` walks the grid seed by seed (seed 0 of every
member first), skips finished runs (``theta_final.npz`` present and ``config.json`` equal to what the grid
asks for), resumes interrupted ones (``--resume``), leaves alone folders another process is writing, and
refuses folders that hold a different run. Then it post-processes each finished run:

* ``meta_curve.json`` — ``python -m star meta-curve``: the unperturbed meta-objective of every θ snapshot on
  common fresh episodes (the PES meta-loss of the log is the loss of the *perturbed* θ ± ε, a different
  function at σ = 0.01);
* ``evaluate_<T>.json`` for each evaluation length ``T`` (the 2000-step horizon and 10 000 steps, the
  stability-beyond-horizon test of Fig. App.2): inner training curves of the learned optimizer on fixed
  evaluation seeds, with test loss and accuracy;
* ``NOTE.md`` — written from the run's own files (settings, deviations from the paper, outcome numbers).

and once per grid ``baselines.json``: Adam with its learning rate tuned on the grid's task (a half-decade
search, as App. B.3 tunes Adam) and the nominal optimizer (STAR with a zero output layer), on the same
evaluation seeds.

The ``cpu`` grid is the one the book's in-distribution chapter reads (``fmnist8_mlp32``, the reference's
small Fashion-MNIST MLP, on which PES improves STAR on two CPU cores); ``indist_long`` runs the same task for
2000 outer steps, ``ood_controls`` the controls of the out-of-distribution chapter; the ``paper`` grids use the
paper's tasks and outer learning rate and are meant for an accelerator; ``smoke`` is a tiny grid for tests.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from star.scale import Scale, get_scale

__all__ = [
    "Member", "Grid", "RunSpec", "GRIDS", "FIGURES", "get_grid", "grid_names", "run_status", "run_sweep",
    "post_process", "evaluate_run", "write_baselines", "write_note", "write_grid_note", "SweepError",
]

#: The members each figure compares (optimizer preset, outer weight decay as a multiple of the outer lr).
FIGURES: dict[str, tuple] = {
    "fig3": (("star", 0.1), ("hyperparam", 0.0), ("blackbox", 0.0)),          # Fig. 3 / App.1
    "app2": (("star", 0.0), ("star", 0.1), ("star", 0.5), ("star", 1.0)),     # outer weight decay
    "app3": (("star", 0.1), ("star_nopre", 0.1)),                             # Adam-style preconditioner
    "app4": (("star", 0.1), ("star_nonom", 0.1)),                             # nominal term
}
#: Every member of the in-distribution grid, in the order the cpu grid runs them.
INDIST_MEMBERS = (("star", 0.1), ("hyperparam", 0.0), ("blackbox", 0.0), ("star_nonom", 0.1),
                  ("star_nopre", 0.1), ("star", 0.0), ("star", 0.5), ("star", 1.0))

BUSY_AFTER_S = 900.0  # a run folder written to within this many seconds belongs to a live process
EVAL_BLOCK = 10  # evaluation curves are stored as means over blocks of this many inner steps


class SweepError(ValueError):
    """A run folder that the sweep must not touch (it holds a different run), or a failed run."""


@dataclasses.dataclass(frozen=True)
class Member:
    """One optimizer of a grid: a STAR-family preset (or one of our variants, ``star.optim.VARIANTS``), the
    outer weight decay (× lr, App. B.2) and optionally an outer learning rate or a meta-parameter
    initialisation (``star.optim.star.INITS``) other than the grid's."""

    optimizer: str
    weight_decay: float
    lr: float | None = None
    init: str | None = None

    @property
    def label(self) -> str:
        return (f"{self.optimizer}_wd{float(self.weight_decay)}" + ("" if self.lr is None else f"_lr{_num(self.lr)}")
                + ("" if self.init is None else f"_init-{self.init}"))


@dataclasses.dataclass(frozen=True)
class Grid:
    """A grid of meta-training runs, as data. See the module docstring.

    Attributes:
        name, scale: what :func:`get_grid` looks it up by.
        folder: the grid's folder, relative to the repository root.
        task: the inner task (``star.tasks.list_tasks()``).
        members: the :class:`Member` s, in run order.
        seeds: meta-training seeds (each member runs each seed; seed-major order).
        extra_seeds, extra_members: further seeds run only by some of the members (labels), after all of
            ``seeds`` (how a grid gains seeds for some comparisons without touching its stored runs).
        outer_steps, num_tasks, trunc, horizon, std, lr, init, checkpoint_every: the ``meta-train`` flags.
        eval_steps: inner-training lengths of the evaluations (``evaluate_<T>.json``).
        eval_seeds: seeds of the evaluation runs (common to every run and baseline; none used in training).
        curve_seeds, curve_seed, curve_every: episodes per θ snapshot, their PRNG seed, and every how many
            snapshots ``meta-curve`` evaluates (the last always).
        adam_lrs: the Adam learning rates searched for the tuned baseline.
        notes: how the grid departs from the paper (written into every NOTE.md).
    """

    name: str
    scale: str
    folder: str
    task: str
    members: tuple
    seeds: tuple
    outer_steps: int
    num_tasks: int
    trunc: int = 50
    horizon: int = 2000
    std: float = 0.01
    lr: float = 1e-4
    init: str = "reference"
    checkpoint_every: int = 20
    eval_steps: tuple = (2000, 10000)
    eval_seeds: tuple = (100, 101, 102)
    curve_seeds: int = 16
    curve_seed: int = 1000
    curve_every: int = 1
    adam_lrs: tuple = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1)
    notes: str = ""
    extra_seeds: tuple = ()
    extra_members: tuple = ()

    def __post_init__(self):
        labels = {m.label for m in self.members}
        unknown = [x for x in self.extra_members if x not in labels]
        if unknown:
            raise ValueError(f"extra_members must be labels of the grid's members {sorted(labels)}; got {unknown}")
        if set(self.extra_seeds) & set(self.seeds):
            raise ValueError(f"extra_seeds must not repeat the grid's seeds {self.seeds}; got {self.extra_seeds}")
        if bool(self.extra_seeds) != bool(self.extra_members):
            raise ValueError("extra_seeds and extra_members must be given together; got "
                             f"{self.extra_seeds} and {self.extra_members}")

    @property
    def all_seeds(self) -> tuple:
        """``seeds`` then ``extra_seeds``."""
        return tuple(self.seeds) + tuple(self.extra_seeds)

    def member_seeds(self, member: Member) -> tuple:
        """The seeds ``member`` runs."""
        return self.all_seeds if member.label in self.extra_members else tuple(self.seeds)

    def runs(self, *, figure: str | None = None, seeds: Sequence[int] | None = None) -> list[RunSpec]:
        """The grid's runs in run order (every member of seed 0, then seed 1, ..., then the extra seeds of
        the extra members).

        ``figure`` keeps the members of one figure (:data:`FIGURES`); ``seeds`` a subset of the seeds.
        """
        members = self.members
        if figure is not None:
            if figure not in FIGURES:
                raise ValueError(f"figure must be one of {tuple(FIGURES)}; got {figure!r}")
            wanted = {Member(o, float(w)) for o, w in FIGURES[figure]}
            members = tuple(m for m in members if m in wanted)
        if seeds is None:
            seeds = self.all_seeds
        bad = [s for s in seeds if s not in self.all_seeds]
        if bad:
            raise ValueError(f"seeds must be a subset of the grid's seeds {self.all_seeds}; got {tuple(seeds)}")
        order = {s: i for i, s in enumerate(self.all_seeds)}
        return [RunSpec(self, m, int(s)) for s in sorted(seeds, key=order.get) for m in members
                if s in self.member_seeds(m)]

    def inner_steps_per_run(self) -> int:
        """Inner training steps of one meta-training run: ``outer_steps · 2N · K`` (both antithetic sides)."""
        return self.outer_steps * 2 * self.num_tasks * self.trunc

    def compute_estimate(self, inner_steps_per_s: float) -> dict:
        """Inner steps and hours for the whole grid's meta-training at a measured inner-step rate."""
        runs = len(self.runs())
        total = runs * self.inner_steps_per_run()
        return {"runs": runs, "inner_steps_per_run": self.inner_steps_per_run(), "inner_steps": total,
                "inner_steps_per_s": float(inner_steps_per_s), "hours": total / float(inner_steps_per_s) / 3600}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of a grid: a member and a seed."""

    grid: Grid
    member: Member
    seed: int

    @property
    def name(self) -> str:
        return f"{self.member.label}_s{self.seed}"

    def folder(self, root: str | os.PathLike = ".") -> Path:
        return Path(root) / self.grid.folder / self.name

    def meta_train_argv(self, root: str | os.PathLike = ".") -> list[str]:
        """The ``python -m star meta-train`` arguments of this run (``--out`` relative to ``root``)."""
        g = self.grid
        return ["meta-train", "--optimizer", self.member.optimizer, "--task", g.task, "--init", self.init,
                "--outer-steps", str(g.outer_steps), "--num-tasks", str(g.num_tasks), "--trunc", str(g.trunc),
                "--horizon", str(g.horizon), "--std", _num(g.std), "--lr", _num(self.lr),
                "--wd", str(float(self.member.weight_decay)), "--seed", str(self.seed),
                "--checkpoint-every", str(g.checkpoint_every), "--out", str(Path(g.folder) / self.name)]

    @property
    def lr(self) -> float:
        return self.grid.lr if self.member.lr is None else float(self.member.lr)

    @property
    def init(self) -> str:
        return self.grid.init if self.member.init is None else self.member.init

    def expected_config(self) -> dict:
        """The ``config.json`` that ``meta-train`` writes for this run (how finished runs are recognised)."""
        from star.metatrain import MetaTrainConfig

        g = self.grid
        cfg = MetaTrainConfig(outer_steps=g.outer_steps, num_tasks=g.num_tasks, trunc_length=g.trunc, std=g.std,
                              lr=self.lr, weight_decay=float(self.member.weight_decay), seed=self.seed,
                              checkpoint_every=g.checkpoint_every)
        return dict(cfg.to_dict(), optimizer=self.member.optimizer, task=g.task, horizon=g.horizon, init=self.init)


def _num(x: float) -> str:
    """A float as the command line spells it (``1e-3`` rather than ``0.001``), parsing back to ``x``."""
    s = f"{x:.0e}" if x != 0 and float(f"{x:.0e}") == x else repr(float(x))
    return s.replace("e-0", "e-").replace("e+0", "e")


_SMOKE_NOTES = "A tiny grid for tests and CI: numbers mean nothing."
_CPU_NOTES = (
    "Task: learned_optimization's `ImageMLP_FashionMnist8_Relu32` (Fashion-MNIST resized to 8×8, one hidden "
    "layer of 32, batch 128) — not the paper's 784-128-128 MLP, on which PES at σ = 0.01 breaks STAR on a CPU "
    "budget (see the in-distribution chapter). Outer learning rate 1e-3 and N = 64 inner problems are ours "
    "(the paper: lr 1e-4, N not stated), so that 200 outer steps on two CPU cores move θ with a usable signal. "
    "As in the paper: σ = 0.01, truncation 50, horizon 2000, AdamW with weight decay × lr, clipping 1.0 by "
    "value, the reference initialisation of the meta-parameters.")
_PAPER_NOTES = (
    "The paper's settings (App. B.2): σ = 0.01, truncation 50, horizon 2000, AdamW lr 1e-4 with weight decay × lr, "
    "clipping 1.0, the reference initialisation. Not stated in the paper and chosen here: N = 8 inner problems and "
    "{outer_steps} outer steps. Meant for an accelerator.")

_REMEDY_NOTES = (
    "The paper's task (784-128-128 MLP) and PES settings (σ = 0.01, lr 1e-4 unless the folder name says "
    "otherwise, weight decay 0.1 × lr, clipping 1.0, truncation 50, horizon 2000), N = 8, seed 0 and the nominal "
    "initialisation, as the stored run `results/metatrain/star_fmnist_cpu_paper_sigma` (the paper's STAR on the "
    "same seeds, the baseline). The optimizer is one of OUR variants (`star.optim.VARIANTS`), not the paper's: "
    "`star_out0.1` = the MLP's output layer enters ×0.1 (σ and outer steps act 10× more weakly on the heads); "
    "`star_bc_eps1e-4` = the blackbox preconditioner bias-corrected with eps 1e-4; `star_out0.1_bc_eps1e-4` = both.")

_CONV_NOTES = (
    "Task: `fmnist8_conv`, an OFFLINE CPU-SCALE SUBSTITUTE for the paper's CIFAR-10 ConvNet (not a paper task): "
    "the ConvNet's shape (3x3 convs, strides 2/1/1, ReLU, global average pooling) at a quarter width (8/16/16) "
    "on Fashion-MNIST resized to 8x8, batch 32 (the paper: 32/64/64 on CIFAR-10 32x32x3, batch 128). Ours, "
    "for two CPU cores: N = 16 inner problems, 150 outer steps, outer learning rate 1e-3, 8 episodes per "
    "meta-curve point and one evaluation length (2000). As in the paper: σ = 0.01, truncation 50, horizon 2000, "
    "AdamW with weight decay × lr, clipping 1.0 by value, the reference initialisation of the meta-parameters.")

_CONTROLS_NOTES = (
    _CPU_NOTES + " Controls for the out-of-distribution chapter, each member on meta-training seeds 0, 1 and 2: "
    "`star_wd0.1_init-nominal` starts from the nominal initialisation (the reference's hidden layers, a zero "
    "output layer: STAR starts as its nominal optimizer) instead of the reference's; `star_wd5.0` has an outer "
    "weight decay whose cumulative effect lr·wd·steps = 1e-3·5·200 = 1.0 (decay alone shrinks θ by e⁻¹) where "
    "the grid's wd 0.1 gives 0.02.")
_LONG_NOTES = (
    "The `indist` grid's task and settings (`fmnist8_mlp32`, σ = 0.01, truncation 50, horizon 2000, outer lr "
    "1e-3, AdamW with weight decay × lr, clipping 1.0 by value, the reference initialisation) for 2000 outer "
    "steps, ten times the `indist` grid's 200, with N = 16 inner problems instead of its 64: measured over a "
    "few outer steps on two CPU cores, a 2000-step run takes about 11 min at N = 16 and 33 min at N = 64 "
    "(8 h for the grid), so N = 16 is what fits. Cumulative outer weight decay lr·wd·steps: 0.2 at wd 0.1, "
    "2.0 at wd 1.0. Meta-curve every 200 outer steps.")
_POWER_MEMBERS = tuple(Member(o, w).label for o, w in FIGURES["fig3"])

GRIDS: dict[tuple, Grid] = {}
for _g in (
    Grid(name="indist", scale="smoke", folder="results/metatrain/fmnist8_smoke_grid", task="fmnist8_mlp32",
         members=(Member("star", 0.1), Member("hyperparam", 0.0)), seeds=(0,), outer_steps=2, num_tasks=2,
         trunc=5, horizon=10, lr=1e-3, checkpoint_every=1, eval_steps=(10, 20), eval_seeds=(100,),
         curve_seeds=2, adam_lrs=(1e-3, 1e-2), notes=_SMOKE_NOTES),
    # Seeds 3 and 4 of Fig. 3's members were added after the 24 runs of seeds 0-2 (more power for Fig. 3).
    Grid(name="indist", scale="cpu", folder="results/metatrain/fmnist8_grid", task="fmnist8_mlp32",
         members=tuple(Member(o, w) for o, w in INDIST_MEMBERS), seeds=(0, 1, 2), outer_steps=200, num_tasks=64,
         lr=1e-3, curve_every=2, notes=_CPU_NOTES, extra_seeds=(3, 4), extra_members=_POWER_MEMBERS),
    Grid(name="indist_long", scale="smoke", folder="results/metatrain/fmnist8_long_smoke_grid", task="fmnist8_mlp32",
         members=(Member("star", 0.1), Member("blackbox", 0.0)), seeds=(0,), outer_steps=4, num_tasks=2,
         trunc=5, horizon=10, lr=1e-3, checkpoint_every=2, curve_every=2, eval_steps=(10, 20), eval_seeds=(100,),
         curve_seeds=2, adam_lrs=(1e-3, 1e-2), notes=_SMOKE_NOTES),
    Grid(name="indist_long", scale="cpu", folder="results/metatrain/fmnist8_grid_long", task="fmnist8_mlp32",
         members=(Member("star", 0.1), Member("star", 1.0), Member("star_nopre", 0.1), Member("hyperparam", 0.0),
                  Member("blackbox", 0.0)), seeds=(0, 1, 2), outer_steps=2000, num_tasks=16, lr=1e-3,
         checkpoint_every=100, curve_every=2, notes=_LONG_NOTES),
    Grid(name="ood_controls", scale="smoke", folder="results/metatrain/fmnist8_controls_smoke", task="fmnist8_mlp32",
         members=(Member("star", 0.1, init="nominal"), Member("star", 5.0)), seeds=(0,), outer_steps=2, num_tasks=2,
         trunc=5, horizon=10, lr=1e-3, checkpoint_every=1, eval_steps=(10,), eval_seeds=(100,),
         curve_seeds=2, adam_lrs=(1e-3, 1e-2), notes=_SMOKE_NOTES),
    Grid(name="ood_controls", scale="cpu", folder="results/metatrain/fmnist8_controls", task="fmnist8_mlp32",
         members=(Member("star", 0.1, init="nominal"), Member("star", 5.0)), seeds=(0, 1, 2), outer_steps=200,
         num_tasks=64, lr=1e-3, curve_every=2, notes=_CONTROLS_NOTES),
    Grid(name="indist", scale="paper", folder="results/metatrain/fmnist_grid_paper", task="fmnist_mlp",
         members=tuple(Member(o, w) for o, w in INDIST_MEMBERS), seeds=(0, 1, 2), outer_steps=5000, num_tasks=8,
         lr=1e-4, init="nominal", checkpoint_every=250, curve_seeds=8,
         notes=_PAPER_NOTES.format(outer_steps=5000).replace("the reference initialisation", "the nominal "
               "initialisation (the output layer zero: on this MLP the reference initialisation diverges at once, "
               "see the STAR chapter; Blackbox then starts with a zero update)")),
    Grid(name="remedies", scale="cpu", folder="results/metatrain/fmnist_remedies", task="fmnist_mlp",
         members=(Member("star_out0.1_bc_eps1e-4", 0.1), Member("star_out0.1_bc_eps1e-4", 0.1, lr=1e-3),
                  Member("star_bc_eps1e-4", 0.1), Member("star_out0.1", 0.1)),
         seeds=(0,), outer_steps=60, num_tasks=8, lr=1e-4, init="nominal", checkpoint_every=20, eval_steps=(2000,),
         curve_seeds=4, notes=_REMEDY_NOTES),
    Grid(name="remedies_long", scale="cpu", folder="results/metatrain/fmnist_remedies_long", task="fmnist_mlp",
         members=(Member("star_out0.1_bc_eps1e-4", 0.1, lr=1e-3),), seeds=(0,), outer_steps=200, num_tasks=8,
         lr=1e-4, init="nominal", checkpoint_every=40, eval_steps=(2000,), curve_seeds=4, notes=_REMEDY_NOTES),
    Grid(name="remedies_seeds", scale="cpu", folder="results/metatrain/fmnist_remedies_seeds", task="fmnist_mlp",
         members=(Member("star", 0.1), Member("star_out0.1_bc_eps1e-4", 0.1)), seeds=(0, 1, 2), outer_steps=60,
         num_tasks=8, lr=1e-4, init="nominal", checkpoint_every=20, eval_steps=(2000,), curve_seeds=4,
         notes=_REMEDY_NOTES + " This grid repeats the paper's STAR and the combined variant at lr 1e-4 on "
                               "meta-training seeds 0, 1 and 2, 60 outer steps each."),
    Grid(name="indist_conv", scale="smoke", folder="results/metatrain/fmnist8_conv_smoke_grid", task="fmnist8_conv",
         members=(Member("star", 0.1), Member("hyperparam", 0.0)), seeds=(0,), outer_steps=2, num_tasks=2,
         trunc=5, horizon=10, lr=1e-3, checkpoint_every=1, eval_steps=(10,), eval_seeds=(100,),
         curve_seeds=2, adam_lrs=(1e-3, 1e-2), notes=_SMOKE_NOTES),
    Grid(name="indist_conv", scale="cpu", folder="results/metatrain/fmnist8_conv_grid", task="fmnist8_conv",
         members=tuple(Member(o, w) for o, w in FIGURES["fig3"]), seeds=(0, 1, 2), outer_steps=150, num_tasks=16,
         lr=1e-3, checkpoint_every=50, eval_steps=(2000,), curve_seeds=8, notes=_CONV_NOTES),
    Grid(name="indist_conv", scale="paper", folder="results/metatrain/cifar10_grid_paper", task="cifar10_conv",
         members=tuple(Member(o, w) for o, w in FIGURES["fig3"]), seeds=(0, 1, 2), outer_steps=5000, num_tasks=8,
         lr=1e-4, checkpoint_every=250, curve_seeds=8,
         notes=_PAPER_NOTES.format(outer_steps=5000) + " CIFAR-10 comes from tensorflow-datasets (online only)."),
):
    GRIDS[(_g.name, _g.scale)] = _g


def grid_names() -> tuple:
    return tuple(sorted({name for name, _ in GRIDS}))


def get_grid(name: str, scale: str | Scale | None = None) -> Grid:
    """The grid ``name`` at ``scale`` (default ``$STAR_SCALE``).

    Raises:
        ValueError: unknown name, or no such grid at that scale (the message lists what exists).
    """
    s = get_scale(scale).value
    if name not in grid_names():
        raise ValueError(f"grid must be one of {grid_names()}; got {name!r}")
    if (name, s) not in GRIDS:
        have = sorted(sc for n, sc in GRIDS if n == name)
        raise ValueError(f"grid {name!r} has no {s!r} scale; it has {have}")
    return GRIDS[(name, s)]


# ----------------------------------------------------------------------------------------------------
# run folders: what state a run is in


def run_status(spec: RunSpec, root: str | os.PathLike = ".", *, now: float | None = None,
               busy_after_s: float = BUSY_AFTER_S) -> str:
    """``"finished"``, ``"partial"`` (resumable), ``"busy"`` (another process is writing it) or ``"missing"``.

    A folder counts as this run only if its ``config.json`` equals :meth:`RunSpec.expected_config` (up to
    the fields a resume may change); ``busy`` means unfinished and written to within ``busy_after_s``.

    Raises:
        SweepError: the folder holds a different run (the differences are named) or is not a folder.
    """
    from star.metatrain import MetaTrainConfig
    from star.runs import CONFIG, RunError, RunFolder, config_diff, read_log

    out = spec.folder(root)
    if not out.exists():
        return "missing"
    if not out.is_dir():
        raise SweepError(f"run folder {str(out)!r} exists and is not a folder")
    run = RunFolder(out)
    if not run.config_path.exists():
        if not any(out.iterdir()):
            return "missing"
        if _recently_written(out, now, busy_after_s):
            return "busy"
        raise SweepError(f"run folder {str(out)!r} holds files but no {CONFIG}; move it away")
    try:
        saved = run.config()
    except RunError as err:
        raise SweepError(f"grid {spec.grid.name!r} ({spec.grid.scale}): {err}; move the folder away") from None
    diff = config_diff(saved, spec.expected_config(), ignore=MetaTrainConfig.RESUMABLE_CHANGES)
    if diff:
        raise SweepError(f"run folder {str(out)!r} holds a different run than grid {spec.grid.name!r} "
                         f"({spec.grid.scale}) asks for: " + "; ".join(diff))
    steps = read_log(run.log_path).steps()
    if run.finished() and max(steps, default=0) >= spec.grid.outer_steps:
        return "finished"
    return "busy" if _recently_written(out, now, busy_after_s) else "partial"


def _recently_written(out: Path, now: float | None, window: float) -> bool:
    now = time.time() if now is None else now
    newest = max((p.stat().st_mtime for p in [out, *out.iterdir()] if p.exists()), default=0.0)
    for sub in ("checkpoints", "thetas"):
        d = out / sub
        if d.is_dir():
            newest = max([newest] + [p.stat().st_mtime for p in d.iterdir()])
    return now - newest < window


# ----------------------------------------------------------------------------------------------------
# the driver


def _cli(argv: list[str]) -> None:
    from star.__main__ import main

    rc = main(argv)
    if rc != 0:
        raise SweepError(f"python -m star {' '.join(argv)} failed with exit status {rc}")


def run_sweep(grid: Grid, root: str | os.PathLike = ".", *, figure: str | None = None,
              seeds: Sequence[int] | None = None, train: bool = True, post: bool = True,
              progress: bool = True, dry_run: bool = False, busy_after_s: float = BUSY_AFTER_S,
              log: Callable[[str], None] = print) -> dict:
    """Run (or resume) every run of ``grid`` under ``root`` that is not finished, then post-process.

    Args:
        grid: a :class:`Grid` (:func:`get_grid`).
        root: the repository root the grid's folder is relative to.
        figure, seeds: restrict to one figure's members (:data:`FIGURES`) or to some seeds.
        train: meta-train missing and partial runs (False: only post-process finished ones).
        post: post-process finished runs (:func:`post_process`) and write the grid's ``baselines.json``.
        progress: tqdm progress bars.
        dry_run: only report what would be done.
        busy_after_s: see :func:`run_status`.
        log: where to report what is done (one line per action).

    Returns:
        ``{run name: status after the sweep}`` (``finished``, ``busy``, ``missing``/``partial`` when not
        trained).

    Raises:
        SweepError: a folder holds a different run, or a command failed.
    """
    from tqdm.auto import tqdm

    specs = grid.runs(figure=figure, seeds=seeds)
    # Check every folder first: a conflicting folder stops the sweep before anything runs.
    status = {s.name: run_status(s, root, busy_after_s=busy_after_s) for s in specs}
    counts = {k: sum(v == k for v in status.values()) for k in ("finished", "partial", "busy", "missing")}
    log(f"grid {grid.name} ({grid.scale}), {len(specs)} runs in {Path(root) / grid.folder}: "
        + ", ".join(f"{n} {k}" for k, n in counts.items()))
    if dry_run:
        for s in specs:
            todo = {"missing": "meta-train", "partial": "resume", "busy": "skip (busy)"}.get(status[s.name], "")
            log(f"  {s.name:28s} {status[s.name]:9s} {todo}")
        return status
    bar = tqdm(specs, desc=f"sweep {grid.name}", unit="run", disable=not progress)
    for spec in bar:
        bar.set_postfix_str(spec.name)
        st = run_status(spec, root, busy_after_s=busy_after_s)
        if train and st in ("missing", "partial"):
            argv = spec.meta_train_argv() + (["--resume"] if st == "partial" else [])
            log(f"{spec.name}: {'resume' if st == 'partial' else 'meta-train'}")
            with _chdir(root):
                _cli(argv + ([] if progress else ["--no-progress"]))
            st = run_status(spec, root, busy_after_s=busy_after_s)
        if post and st == "finished":
            post_process(spec, root, progress=progress, log=log)
        status[spec.name] = st
    if post:
        write_baselines(grid, root, progress=progress, log=log)
        write_grid_note(grid, root)
    return status


class _chdir:
    def __init__(self, path):
        self.path, self.old = Path(path), None

    def __enter__(self):
        self.old = os.getcwd()
        os.chdir(self.path)

    def __exit__(self, *exc):
        os.chdir(self.old)


def post_process(spec: RunSpec, root: str | os.PathLike = ".", *, progress: bool = True,
                 log: Callable[[str], None] = print) -> list[Path]:
    """Write the missing post-processing files of a finished run; returns the files written.

    ``meta_curve.json`` (``python -m star meta-curve``), ``evaluate_<T>.json`` for every evaluation length
    (:func:`evaluate_run`) and ``NOTE.md`` (:func:`write_note`, rewritten whenever another file was written
    or it is missing).

    Raises:
        SweepError: the run is not finished.
    """
    out = spec.folder(root)
    if run_status(spec, root) != "finished":
        raise SweepError(f"run {str(out)!r} is not finished (no theta_final.npz or fewer logged steps); "
                         "post-processing needs the final meta-parameters")
    g = spec.grid
    written = []
    if not (out / "meta_curve.json").exists():
        log(f"{spec.name}: meta-curve")
        with _chdir(root):
            _cli(["meta-curve", "--run", str(Path(g.folder) / spec.name), "--seeds", str(g.curve_seeds),
                  "--seed", str(g.curve_seed), "--every", str(g.curve_every)] + ([] if progress else ["--no-progress"]))
        written.append(out / "meta_curve.json")
    for steps in g.eval_steps:
        path = out / f"evaluate_{steps}.json"
        if not path.exists():
            log(f"{spec.name}: evaluate {steps} steps on seeds {g.eval_seeds}")
            evaluate_run(spec, root, steps, progress=progress)
            written.append(path)
    if write_note(spec, root):
        written.append(out / "NOTE.md")
    return written


# ----------------------------------------------------------------------------------------------------
# evaluation: inner training curves, test loss and accuracy


_FACTORIES: dict = {}


def _factory(optimizer: str, horizon: int):
    """One optimizer factory per preset, so every run of a grid reuses the compiled training chunk."""
    from star.optim import preset, star_optimizer

    key = (optimizer, horizon)
    if key not in _FACTORIES:
        cfg = preset(optimizer)
        _FACTORIES[key] = lambda theta: star_optimizer(cfg, theta, horizon)
    return _FACTORIES[key]


def _adam_factory():
    import optax

    if "adam" not in _FACTORIES:
        _FACTORIES["adam"] = lambda lr: optax.adam(lr)
    return _FACTORIES["adam"]


def _block_means(losses: np.ndarray, block: int) -> list:
    n = len(losses) // block * block
    return [float(x) for x in np.asarray(losses[:n], np.float64).reshape(-1, block).mean(axis=1)]


def train_curves(task, factory, meta_params, steps: int, seeds: Sequence[int], *, chunk: int = 500,
                 progress: bool = False, block: int = EVAL_BLOCK) -> dict:
    """Train ``task`` for ``steps`` steps from each evaluation seed; curves, final and test numbers.

    ``chunk`` is the compiled scan length (:func:`star.train.train`): keep it fixed so that every length and
    every run of a grid reuses one compilation per optimizer.

    Returns ``{"per_seed": [{"seed", "curve" (means over blocks of ``block`` steps), "mean_train_loss",
    "final_train_loss" (mean of the last 5 % of steps), "max_train_loss", "test_loss", "test_accuracy",
    "wall_s"}], "block": block, "steps": steps}``. A diverged run keeps its non-finite numbers as ``None``.
    """
    import jax

    from star.train import evaluate, train

    rows = []
    tail = max(1, steps // 20)
    for seed in seeds:
        res = train(task, factory, steps, jax.random.key(int(seed)), meta_params=meta_params,
                    chunk_size=chunk, progress=progress, desc=f"seed {seed}")
        losses = np.asarray(res.losses, np.float64)
        ev = evaluate(task, res.params)
        rows.append({"seed": int(seed), "curve": [_finite(x) for x in _block_means(losses, block)],
                     "mean_train_loss": _finite(np.mean(losses)), "final_train_loss": _finite(np.mean(losses[-tail:])),
                     "max_train_loss": _finite(np.max(losses)), "test_loss": _finite(ev["loss"]),
                     "test_accuracy": _finite(ev["accuracy"]), "wall_s": res.wall_time})
    return {"steps": int(steps), "block": int(block), "per_seed": rows}


def _chunk(grid: Grid) -> int:
    return min(500, grid.horizon, *grid.eval_steps)


def _finite(x):
    x = float(x)
    return x if math.isfinite(x) else None


def _provenance(command: str, t0: float, task, seeds) -> dict:
    from star import runs
    from star.inner import data_sources

    return runs.provenance(command, seeds={"evaluation": list(seeds)}, wall_s=time.perf_counter() - t0,
                           data=data_sources(task))


def evaluate_run(spec: RunSpec, root: str | os.PathLike, steps: int, *, progress: bool = False) -> Path:
    """Train the run's task with its learned optimizer (``theta_final.npz``) for ``steps`` steps on the
    grid's evaluation seeds; write ``evaluate_<steps>.json`` into the run folder (see :func:`train_curves`)."""
    import jax

    from star.optim import init_meta_params, preset
    from star.runs import atomic_write_json, load_theta
    from star.tasks import get_task

    t0 = time.perf_counter()
    g, out = spec.grid, spec.folder(root)
    template = init_meta_params(preset(spec.member.optimizer), jax.random.PRNGKey(0))
    theta = load_theta(out / "theta_final.npz", template)
    task = get_task(g.task)
    report = {"run": str(Path(g.folder) / spec.name), "task": g.task, "optimizer": spec.member.optimizer,
              "theta": "theta_final.npz", "horizon": g.horizon, "eval_seeds": list(g.eval_seeds),
              "description": "inner training with the learned optimizer from fresh initialisations; curve = "
                             f"mean training loss over blocks of {EVAL_BLOCK} steps; test = the 10 000 test images",
              **train_curves(task, _factory(spec.member.optimizer, g.horizon), theta, steps, g.eval_seeds,
                             chunk=_chunk(g), progress=progress)}
    report["provenance"] = _provenance(f"python -m star sweep --grid {g.name} --scale {g.scale} (post-processing)",
                                       t0, task, g.eval_seeds)
    path = out / f"evaluate_{steps}.json"
    atomic_write_json(path, report)
    return path


def write_baselines(grid: Grid, root: str | os.PathLike = ".", *, progress: bool = True,
                    log: Callable[[str], None] = print) -> Path:
    """``<grid folder>/baselines.json``: tuned Adam and the nominal optimizer on the grid's task.

    Adam's learning rate is chosen from ``grid.adam_lrs`` by the lowest mean training loss over the horizon
    (the meta-objective's analogue), averaged over the evaluation seeds; the chosen rate and the nominal
    optimizer (STAR at its nominal initialisation: the hand-designed AdamAggMo step, App. B.2) are then run
    for every evaluation length. Skipped when the file exists with the same settings.
    """
    import jax

    from star.optim import init_meta_params, preset
    from star.runs import atomic_write_json
    from star.tasks import get_task

    path = Path(root) / grid.folder / "baselines.json"
    settings = {"task": grid.task, "adam_lrs": list(grid.adam_lrs), "eval_seeds": list(grid.eval_seeds),
                "eval_steps": list(grid.eval_steps), "horizon": grid.horizon}
    if path.exists() and json.loads(path.read_text()).get("settings") == settings:
        return path
    t0 = time.perf_counter()
    log(f"grid {grid.name}: baselines (Adam learning-rate search over {grid.adam_lrs}, nominal optimizer)")
    task = get_task(grid.task)
    search = {}
    for lr in grid.adam_lrs:
        res = train_curves(task, _adam_factory(), float(lr), grid.horizon, grid.eval_seeds, chunk=_chunk(grid),
                           progress=progress)
        vals = [r["mean_train_loss"] for r in res["per_seed"]]
        search[_num(lr)] = float(np.mean([np.inf if v is None else v for v in vals]))
    best = min(search, key=search.get)
    nominal = init_meta_params(preset("star"), jax.random.PRNGKey(1), init="nominal")
    search_doc = {"criterion": f"mean training loss over {grid.horizon} steps, mean over the evaluation seeds",
                  "mean_train_loss": search, "best_lr": float(best)}
    report = {"description": f"baselines on {grid.task}: Adam with its learning rate tuned over a half-decade grid, "
                             "and the nominal optimizer (STAR with a zero output layer), on the grid's evaluation "
                             "seeds", "settings": settings, "adam_search": search_doc, "adam": {}, "nominal": {}}
    for steps in grid.eval_steps:
        report["adam"][str(steps)] = train_curves(task, _adam_factory(), float(best), steps, grid.eval_seeds,
                                                  chunk=_chunk(grid), progress=progress)
        report["nominal"][str(steps)] = train_curves(task, _factory("star", grid.horizon), nominal, steps,
                                                     grid.eval_seeds, chunk=_chunk(grid), progress=progress)
    report["provenance"] = _provenance(f"python -m star sweep --grid {grid.name} --scale {grid.scale} (baselines)",
                                       t0, task, grid.eval_seeds)
    atomic_write_json(path, report)
    return path


# ----------------------------------------------------------------------------------------------------
# NOTE.md, computed from the run's files


#: What each grid is for (the first line of its folder's NOTE.md).
PURPOSE = {"indist": "Fig. 3 and Figs. App.1–App.4 (STAR, Hyperparam, Blackbox, outer weight decay, No Pre., No Nom.)",
           "indist_long": "Fig. 3 and Figs. App.2–App.3 past the starting transient (2000 outer steps)",
           "ood_controls": "controls of the out-of-distribution result (initialisation, outer weight decay)",
           "indist_conv": "Fig. 3 on the ConvNet",
           "remedies": "our variants of STAR that survive PES at the paper's σ on the paper's MLP",
           "remedies_long": "our combined variant for 200 outer steps on the paper's MLP"}


def write_grid_note(grid: Grid, root: str | os.PathLike = ".") -> bool:
    """Write the grid folder's ``NOTE.md`` (what the grid is, its settings, which runs are finished, their
    summed wall time and the command that regenerates it), computed from the folder; returns whether it changed."""
    from star.runs import atomic_write_bytes

    folder = Path(root) / grid.folder
    if not folder.is_dir():
        return False
    specs = grid.runs()
    done = [s for s in specs if run_status(s, root) == "finished"]
    wall = sum(json.loads((s.folder(root) / "provenance.json").read_text()).get("wall_s_total") or 0.0 for s in done)
    members = ", ".join(f"`{m.label}`" for m in grid.members)
    lines = [f"# Grid `{grid.name}` ({grid.scale} scale) on `{grid.task}`: {PURPOSE.get(grid.name, grid.name)}", "",
             "Written by `python -m star sweep` from this folder.", "",
             f"Members: {members}; seeds {list(grid.seeds)}"
             + (f", and seeds {list(grid.extra_seeds)} for " + ", ".join(f"`{x}`" for x in grid.extra_members)
                if grid.extra_seeds else "")
             + f"; {len(done)} of {len(specs)} runs finished, "
             f"{wall / 60:.0f} min of meta-training summed over them.", "",
             f"Settings: {grid.outer_steps} outer steps, N = {grid.num_tasks}, truncation {grid.trunc}, horizon "
             f"{grid.horizon}, σ = {grid.std}, outer lr {grid.lr} and init "
             f"`{grid.init}` (unless a member's name says otherwise). {grid.notes}", "",
             "Each run folder has its own NOTE.md, `meta_curve.json` and "
             + ", ".join(f"`evaluate_{t}.json`" for t in grid.eval_steps)
             + "; `baselines.json` holds tuned Adam and the nominal optimizer on the same evaluation seeds.", "",
             "Regenerate (resumable; finished runs are skipped):", "",
             f"    STAR_SCALE={grid.scale} python -m star sweep --grid {grid.name} --scale {grid.scale}", ""]
    path, text = folder / "NOTE.md", "\n".join(lines).encode()
    if path.exists() and path.read_bytes() == text:
        return False
    atomic_write_bytes(path, text)
    return True


def _mean_last(values, n):
    v = [x for x in values[-n:] if x is not None and math.isfinite(x)]
    return float(np.mean(v)) if v else float("nan")


def write_note(spec: RunSpec, root: str | os.PathLike = ".") -> bool:
    """Write ``NOTE.md`` for a finished run from its ``provenance.json``, ``log.jsonl`` and post-processing
    files (numbers computed here, nothing typed in). Returns whether the file changed (an unchanged note is
    not rewritten)."""
    from star.runs import atomic_write_bytes, load_log

    g, out = spec.grid, spec.folder(root)
    prov = json.loads((out / "provenance.json").read_text())
    log = load_log(out)
    ml = [None if not math.isfinite(x) else float(x) for x in log["meta_loss"]]
    init = "" if spec.member.init is None else f", meta-parameters initialised `{spec.member.init}`"
    lines = [f"# {spec.member.optimizer}, outer weight decay {spec.member.weight_decay} × lr{init}, seed {spec.seed} — "
             f"grid `{g.name}` ({g.scale} scale), task `{g.task}`", "",
             "Written by `python -m star sweep` from this folder's files.", "",
             "Command (provenance.json):", "", "    " + (prov["command"] if isinstance(prov["command"], str)
                                                       else "\n    ".join(prov["command"])), "",
             f"Commit {str(prov.get('git_commit'))[:12]}, {prov.get('wall_s_total', 0):.0f} s of meta-training on "
             f"{prov['device']['count']} {prov['device']['platform']} device(s) "
             f"({prov['device'].get('cpu_count')} CPU cores).", "", "Settings: " + g.notes, "", "## Outcome", "",
             f"- PES meta-loss (the loss of the perturbed θ ± ε, `log.jsonl`): {_mean_last(ml[:10], 10):.3f} over the "
             f"first 10 outer steps, {_mean_last(ml, 10):.3f} over the last 10 of {len(ml)}; "
             f"{int(np.nansum(log.get('nan_count', [0])))} non-finite gradient entries zeroed in all."]
    curve_path = out / "meta_curve.json"
    if curve_path.exists():
        c = json.loads(curve_path.read_text())
        first, last = c["curve"][0], c["curve"][-1]
        nom = c.get("baselines", {}).get("nominal")
        text = (f"- Unperturbed meta-objective (`meta_curve.json`, {c['num_seeds']} common episodes from seed "
                f"{c['eval_seed']}): {first['mean']:.3f} at step {first['step']}, {last['mean']:.3f} at step "
                f"{last['step']}")
        from star.optim import preset

        if nom and preset(spec.member.optimizer).nominal_stepsize == 0:
            text += (f"; the same optimizer with a zero output layer (no nominal term: the zero update) "
                     f"{nom['mean']:.3f}")
        elif nom:
            d = np.asarray(last["per_seed"]) - np.asarray(nom["per_seed"])
            se = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else float("nan")
            text += (f"; the nominal optimizer {nom['mean']:.3f}, learned minus nominal {d.mean():+.3f} ± {se:.3f} "
                     f"(lower on {int(np.sum(d < 0))} of {d.size} episodes)")
        lines.append(text + ".")
    for steps in g.eval_steps:
        p = out / f"evaluate_{steps}.json"
        if p.exists():
            ev = json.loads(p.read_text())
            rows = ev["per_seed"]

            def m(k):
                v = [r[k] for r in rows]
                return "diverged" if any(x is None for x in v) else f"{np.mean(v):.3f}"

            lines.append(f"- {steps} inner steps with the learned optimizer (`evaluate_{steps}.json`, seeds "
                         f"{ev['eval_seeds']}): final training loss {m('final_train_loss')}, "
                         f"test loss {m('test_loss')}, test accuracy {m('test_accuracy')}.")
    lines += ["", "Files: `config.json`, `log.jsonl`, `thetas/` (θ at step 0 and every checkpoint), `theta_final.npz`, "
              "`meta_params.msgpack`, `provenance.json`, `meta_curve.json`, "
              + ", ".join(f"`evaluate_{s}.json`" for s in g.eval_steps) + "; `checkpoints/` is not committed.", ""]
    path, text = out / "NOTE.md", "\n".join(lines).encode()
    if path.exists() and path.read_bytes() == text:
        return False
    atomic_write_bytes(path, text)
    return True
