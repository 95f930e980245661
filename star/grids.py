"""Grids of meta-training runs as data (Fig. 3, Figs. App.1–App.4 and our controls and remedies).

A *grid* (:class:`Grid`) names a task, the PES and outer-loop settings, the *members* (an optimizer of the
STAR family and an outer weight decay, App. B.2/C.2, :class:`Member`), the meta-training seeds, what the grid
is for and how it departs from the paper. Each run of a grid (:class:`RunSpec`, a member and a seed) is one
run folder ``<grid.folder>/<optimizer>_wd<wd>_s<seed>``; :meth:`RunSpec.expected_config` is the
configuration (:data:`star.runs.CONFIG`) its meta-training writes. :mod:`star.sweep` runs grids; the chapters read them.

The ``cpu`` grid is the one the book's in-distribution chapter reads (``fmnist8_mlp32``, the reference's
small Fashion-MNIST MLP, on which PES improves STAR on two CPU cores); ``indist_long`` runs the same task for
2000 outer steps, ``ood_controls`` the controls of the out-of-distribution chapter; the ``paper`` grids use the
paper's tasks and outer learning rate and are meant for an accelerator; ``smoke`` is a tiny grid for tests.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

from star.scale import Scale, get_scale

__all__ = ["Member", "Grid", "RunSpec", "GRIDS", "FIGURES", "INDIST_MEMBERS", "get_grid", "grid_names"]

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
        purpose: what the grid is for (the heading of the grid folder's NOTE.md).
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
    purpose: str = ""
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

    @property
    def out(self) -> Path:
        """The run folder relative to the repository root (what ``meta-train --out`` names)."""
        return Path(self.grid.folder) / self.name

    def command_line(self, *, resume: bool = False) -> str:
        """The ``python -m star meta-train`` command that makes this run (from the repository root).

        A record for the run's provenance (:data:`star.runs.PROVENANCE`): :func:`star.sweep.run_sweep` calls
        :func:`star.metatrain.meta_train_named` with the same settings, never this command.
        """
        from star.runs import command_line

        g = self.grid
        argv = ["meta-train", "--optimizer", self.member.optimizer, "--task", g.task, "--init", self.init,
                "--outer-steps", str(g.outer_steps), "--num-tasks", str(g.num_tasks), "--trunc", str(g.trunc),
                "--horizon", str(g.horizon), "--std", _num(g.std), "--lr", _num(self.lr),
                "--wd", str(float(self.member.weight_decay)), "--seed", str(self.seed),
                "--checkpoint-every", str(g.checkpoint_every), "--out", str(self.out)]
        return command_line(argv + (["--resume"] if resume else []))

    @property
    def lr(self) -> float:
        return self.grid.lr if self.member.lr is None else float(self.member.lr)

    @property
    def init(self) -> str:
        return self.grid.init if self.member.init is None else self.member.init

    def meta_train_config(self):
        """The outer-loop settings of this run (:class:`star.outer_step.MetaTrainConfig`)."""
        from star.outer_step import MetaTrainConfig

        g = self.grid
        return MetaTrainConfig(outer_steps=g.outer_steps, num_tasks=g.num_tasks, trunc_length=g.trunc, std=g.std,
                               lr=self.lr, weight_decay=float(self.member.weight_decay), seed=self.seed,
                               checkpoint_every=g.checkpoint_every)

    def expected_config(self) -> dict:
        """The :data:`star.runs.CONFIG` that meta-training writes for this run (how finished runs are recognised)."""
        from star.metatrain import named_run_config

        return named_run_config(optimizer=self.member.optimizer, task=self.grid.task, horizon=self.grid.horizon,
                                init=self.init, config=self.meta_train_config())


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

_INDIST_PURPOSE = ("Fig. 3 and Figs. App.1–App.4 (STAR, Hyperparam, Blackbox, outer weight decay, No Pre., "
                   "No Nom.)")
_LONG_PURPOSE = "Fig. 3 and Figs. App.2–App.3 past the starting transient (2000 outer steps)"
_CONTROLS_PURPOSE = "controls of the out-of-distribution result (initialisation, outer weight decay)"
_CONV_PURPOSE = "Fig. 3 on the ConvNet"
_REMEDIES_PURPOSE = "our variants of STAR that survive PES at the paper's σ on the paper's MLP"
_REMEDIES_LONG_PURPOSE = "our combined variant for 200 outer steps on the paper's MLP"
_REMEDIES_SEEDS_PURPOSE = ("the paper's STAR and our combined variant on meta-training seeds 0, 1 and 2 (the "
                           "remedy against seed-to-seed variation)")

GRIDS: dict[tuple, Grid] = {}
for _g in (
    Grid(name="indist", scale="smoke", purpose=_INDIST_PURPOSE,
         folder="results/metatrain/fmnist8_smoke_grid", task="fmnist8_mlp32",
         members=(Member("star", 0.1), Member("hyperparam", 0.0)), seeds=(0,), outer_steps=2, num_tasks=2,
         trunc=5, horizon=10, lr=1e-3, checkpoint_every=1, eval_steps=(10, 20), eval_seeds=(100,),
         curve_seeds=2, adam_lrs=(1e-3, 1e-2), notes=_SMOKE_NOTES),
    # Seeds 3 and 4 of Fig. 3's members were added after the 24 runs of seeds 0-2 (more power for Fig. 3).
    Grid(name="indist", scale="cpu", purpose=_INDIST_PURPOSE,
         folder="results/metatrain/fmnist8_grid", task="fmnist8_mlp32",
         members=tuple(Member(o, w) for o, w in INDIST_MEMBERS), seeds=(0, 1, 2), outer_steps=200, num_tasks=64,
         lr=1e-3, curve_every=2, notes=_CPU_NOTES, extra_seeds=(3, 4), extra_members=_POWER_MEMBERS),
    Grid(name="indist_long", scale="smoke", purpose=_LONG_PURPOSE,
         folder="results/metatrain/fmnist8_long_smoke_grid", task="fmnist8_mlp32",
         members=(Member("star", 0.1), Member("blackbox", 0.0)), seeds=(0,), outer_steps=4, num_tasks=2,
         trunc=5, horizon=10, lr=1e-3, checkpoint_every=2, curve_every=2, eval_steps=(10, 20), eval_seeds=(100,),
         curve_seeds=2, adam_lrs=(1e-3, 1e-2), notes=_SMOKE_NOTES),
    Grid(name="indist_long", scale="cpu", purpose=_LONG_PURPOSE,
         folder="results/metatrain/fmnist8_grid_long", task="fmnist8_mlp32",
         members=(Member("star", 0.1), Member("star", 1.0), Member("star_nopre", 0.1), Member("hyperparam", 0.0),
                  Member("blackbox", 0.0)), seeds=(0, 1, 2), outer_steps=2000, num_tasks=16, lr=1e-3,
         checkpoint_every=100, curve_every=2, notes=_LONG_NOTES),
    Grid(name="ood_controls", scale="smoke", purpose=_CONTROLS_PURPOSE,
         folder="results/metatrain/fmnist8_controls_smoke", task="fmnist8_mlp32",
         members=(Member("star", 0.1, init="nominal"), Member("star", 5.0)), seeds=(0,), outer_steps=2, num_tasks=2,
         trunc=5, horizon=10, lr=1e-3, checkpoint_every=1, eval_steps=(10,), eval_seeds=(100,),
         curve_seeds=2, adam_lrs=(1e-3, 1e-2), notes=_SMOKE_NOTES),
    Grid(name="ood_controls", scale="cpu", purpose=_CONTROLS_PURPOSE,
         folder="results/metatrain/fmnist8_controls", task="fmnist8_mlp32",
         members=(Member("star", 0.1, init="nominal"), Member("star", 5.0)), seeds=(0, 1, 2), outer_steps=200,
         num_tasks=64, lr=1e-3, curve_every=2, notes=_CONTROLS_NOTES),
    Grid(name="indist", scale="paper", purpose=_INDIST_PURPOSE,
         folder="results/metatrain/fmnist_grid_paper", task="fmnist_mlp",
         members=tuple(Member(o, w) for o, w in INDIST_MEMBERS), seeds=(0, 1, 2), outer_steps=5000, num_tasks=8,
         lr=1e-4, init="nominal", checkpoint_every=250, curve_seeds=8,
         notes=_PAPER_NOTES.format(outer_steps=5000).replace("the reference initialisation", "the nominal "
               "initialisation (the output layer zero: on this MLP the reference initialisation diverges at once, "
               "see the STAR chapter; Blackbox then starts with a zero update)")),
    Grid(name="remedies", scale="cpu", purpose=_REMEDIES_PURPOSE,
         folder="results/metatrain/fmnist_remedies", task="fmnist_mlp",
         members=(Member("star_out0.1_bc_eps1e-4", 0.1), Member("star_out0.1_bc_eps1e-4", 0.1, lr=1e-3),
                  Member("star_bc_eps1e-4", 0.1), Member("star_out0.1", 0.1)),
         seeds=(0,), outer_steps=60, num_tasks=8, lr=1e-4, init="nominal", checkpoint_every=20, eval_steps=(2000,),
         curve_seeds=4, notes=_REMEDY_NOTES),
    Grid(name="remedies_long", scale="cpu", purpose=_REMEDIES_LONG_PURPOSE,
         folder="results/metatrain/fmnist_remedies_long", task="fmnist_mlp",
         members=(Member("star_out0.1_bc_eps1e-4", 0.1, lr=1e-3),), seeds=(0,), outer_steps=200, num_tasks=8,
         lr=1e-4, init="nominal", checkpoint_every=40, eval_steps=(2000,), curve_seeds=4, notes=_REMEDY_NOTES),
    Grid(name="remedies_seeds", scale="cpu", purpose=_REMEDIES_SEEDS_PURPOSE,
         folder="results/metatrain/fmnist_remedies_seeds", task="fmnist_mlp",
         members=(Member("star", 0.1), Member("star_out0.1_bc_eps1e-4", 0.1)), seeds=(0, 1, 2), outer_steps=60,
         num_tasks=8, lr=1e-4, init="nominal", checkpoint_every=20, eval_steps=(2000,), curve_seeds=4,
         notes=_REMEDY_NOTES + " This grid repeats the paper's STAR and the combined variant at lr 1e-4 on "
                               "meta-training seeds 0, 1 and 2, 60 outer steps each."),
    Grid(name="indist_conv", scale="smoke", purpose=_CONV_PURPOSE,
         folder="results/metatrain/fmnist8_conv_smoke_grid", task="fmnist8_conv",
         members=(Member("star", 0.1), Member("hyperparam", 0.0)), seeds=(0,), outer_steps=2, num_tasks=2,
         trunc=5, horizon=10, lr=1e-3, checkpoint_every=1, eval_steps=(10,), eval_seeds=(100,),
         curve_seeds=2, adam_lrs=(1e-3, 1e-2), notes=_SMOKE_NOTES),
    Grid(name="indist_conv", scale="cpu", purpose=_CONV_PURPOSE,
         folder="results/metatrain/fmnist8_conv_grid", task="fmnist8_conv",
         members=tuple(Member(o, w) for o, w in FIGURES["fig3"]), seeds=(0, 1, 2), outer_steps=150, num_tasks=16,
         lr=1e-3, checkpoint_every=50, eval_steps=(2000,), curve_seeds=8, notes=_CONV_NOTES),
    Grid(name="indist_conv", scale="paper", purpose=_CONV_PURPOSE,
         folder="results/metatrain/cifar10_grid_paper", task="cifar10_conv",
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

