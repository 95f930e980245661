"""Meta-trained optimizers to evaluate without tuning, as the rows of the out-of-distribution suite
(:mod:`star.ood_suite`).

A row (:class:`LearnedOptimizer`) stands for one or several meta-training runs: its θ's are stacked over them, and
:func:`star.ood_suite.run_task` trains each θ on every evaluation seed. A θ is named by a *source*
(:func:`parse_source`): a run folder's final meta-parameters or, written ``RUN_DIR@STEP``, its snapshot after
``STEP`` outer steps (``@0``: the initialisation), optionally transformed (``+zero_output``: the MLP's output layer
set to zero, which makes STAR its nominal optimizer; :data:`TRANSFORMS`). :func:`load_learned` reads the θ's of a
row from run folders and records where each came from (path, SHA-256, the commit that meta-trained it);
:func:`released_learned` makes a row of a checkpoint the paper released.

Named sets of rows are data (:data:`LEARNED_SETS`): the suite's rows (:data:`DEFAULT_LEARNED`), the controls of the
chapter (:data:`CONTROLS_LEARNED`) and the 2000-outer-step θ's (:data:`LONG_LEARNED`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["LearnedOptimizer", "parse_source", "load_learned", "released_learned", "repo_relative", "TRANSFORMS",
           "LEARNED_SETS", "DEFAULT_LEARNED", "CONTROLS_LEARNED", "LONG_LEARNED", "META_SEEDS"]


META_SEEDS = (0, 1, 2)  # the meta-training seeds of results/metatrain/fmnist8_grid
DEFAULT_LEARNED = {  # row name: the meta-training runs whose θ's it evaluates (stacked: meta-runs x eval seeds)
    name: tuple(f"results/metatrain/fmnist8_grid/{member}_s{s}" for s in META_SEEDS)
    for name, member in (("star", "star_wd0.1"), ("star_wd0.5", "star_wd0.5"), ("hyperparam", "hyperparam_wd0.0"),
                         ("blackbox", "blackbox_wd0.0"))
}
_GRID, _CONTROLS, _LONG = ("results/metatrain/fmnist8_grid", "results/metatrain/fmnist8_controls",
                            "results/metatrain/fmnist8_grid_long")
#: Controls of the OOD result (``results/ood/<scale>_controls``): what of it is the random initialisation,
#: what the learned direction head and what the small cumulative outer weight decay (lr·wd·steps).
CONTROLS_LEARNED = {
    "star": DEFAULT_LEARNED["star"],  # θ after 200 outer steps, wd 0.1 (cumulative decay 0.02)
    "star_theta0": tuple(f"{_GRID}/star_wd0.1_s{s}@0" for s in META_SEEDS),  # the reference initialisation
    "star_output0": (f"{_GRID}/star_wd0.1_s0@0+zero_output",),  # its output layer zero: the nominal optimizer
    "star_init_nominal": tuple(f"{_CONTROLS}/star_wd0.1_init-nominal_s{s}" for s in META_SEEDS),
    "star_wd0.5": DEFAULT_LEARNED["star_wd0.5"],  # cumulative decay 0.1
    "star_wd1.0": tuple(f"{_GRID}/star_wd1.0_s{s}" for s in META_SEEDS),  # 0.2
    "star_wd5.0": tuple(f"{_CONTROLS}/star_wd5.0_s{s}" for s in META_SEEDS),  # 1.0
}
#: Seed 0 of every member of the 2000-outer-step grid (``results/ood/<scale>_long``).
LONG_LEARNED = {f"{o}_long": (f"{_LONG}/{m}_s0",) for o, m in (
    ("star", "star_wd0.1"), ("star_wd1.0", "star_wd1.0"), ("star_nopre", "star_nopre_wd0.1"),
    ("hyperparam", "hyperparam_wd0.0"), ("blackbox", "blackbox_wd0.0"))}
LEARNED_SETS = {"default": DEFAULT_LEARNED, "controls": CONTROLS_LEARNED, "long": LONG_LEARNED}


def _zero_output(theta):
    """θ with the MLP's output layer (weights and biases) set to zero: every head outputs 0."""
    mlp = dict(theta["mlp"])
    last = max(int(k[1:]) for k in mlp if k.startswith("w"))
    for k in (f"w{last}", f"b{last}"):
        mlp[k] = jnp.zeros_like(mlp[k])
    return dict(theta, mlp=mlp)


#: Transformations a source may name after ``+`` (:func:`parse_source`).
TRANSFORMS = {"zero_output": _zero_output}


@dataclasses.dataclass(frozen=True)
class LearnedOptimizer:
    """A meta-trained optimizer to apply without tuning: its config, θ (stacked over meta-training
    runs: leading axis = number of runs) and where it came from."""

    name: str
    cfg: object
    thetas: object
    sources: tuple

    @property
    def num_runs(self) -> int:
        return int(jax.tree.leaves(self.thetas)[0].shape[0])


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def repo_relative(path: Path) -> str:
    """``results/...`` part of a path (how the file is named in the repository), else the path itself."""
    parts = Path(path).resolve().parts
    if "results" in parts:
        return "/".join(parts[len(parts) - 1 - parts[::-1].index("results"):])
    return str(path)


def parse_source(text: str) -> tuple:
    """``RUN_DIR[@STEP][+TRANSFORM...]`` -> ``(run dir, step or None, (transform, ...))``.

    ``@STEP``: the run's θ snapshot after ``STEP`` outer steps (:func:`star.runs.theta_snapshot_path`) instead of
    its final θ;
    ``+TRANSFORM``: one of :data:`TRANSFORMS` applied to that θ.

    Raises:
        ValueError: an empty folder, a step that is not a non-negative integer, an unknown transform.
    """
    head, *transforms = str(text).split("+")
    folder, sep, step = head.rpartition("@") if "@" in head else (head, "", "")
    if not folder:
        raise ValueError(f"a learned source must look like RUN_DIR[@STEP][+TRANSFORM]; got {text!r}")
    if sep and not step.isdigit():
        raise ValueError(f"the step of a learned source must be a non-negative integer; got {step!r} in {text!r}")
    bad = [t for t in transforms if t not in TRANSFORMS]
    if bad:
        raise ValueError(f"the transforms of a learned source must be among {sorted(TRANSFORMS)}; got {bad} "
                         f"in {text!r}")
    return folder, (int(step) if sep else None), tuple(transforms)


def load_learned(name: str, run_dirs: Sequence, *, root: str | os.PathLike = ".") -> LearnedOptimizer:
    """Load :data:`star.runs.META_PARAMS` of meta-training run folders (``star.optim.save_meta_params`` format).

    Args:
        name: the row label (``star``, ``hyperparam``, ``blackbox``, ...).
        run_dirs: one or more run folders (relative to ``root`` unless absolute), each optionally with a
            θ snapshot step and transforms (:func:`parse_source`); all must hold the same optimizer
            configuration.

    Raises:
        ValueError: a folder without a finished run or without the snapshot asked for, a malformed
            source, or runs of different configurations.
    """
    from star import runs
    from star.optim import init_meta_params
    from star.optim.convert import load_meta_params

    if not run_dirs:
        raise ValueError(f"run_dirs must name at least one run folder for {name!r}")
    cfg0, thetas, sources = None, [], []
    for d in run_dirs:
        d, step, transforms = parse_source(d)
        folder = Path(d) if Path(d).is_absolute() else Path(root) / d
        path = folder / runs.META_PARAMS
        if not path.is_file():
            raise ValueError(f"{name}: {str(folder)!r} holds no finished meta-training run (no {runs.META_PARAMS})")
        cfg, theta = load_meta_params(path)
        if cfg0 is not None and cfg != cfg0:
            raise ValueError(f"{name}: {str(folder)!r} has another optimizer configuration than {run_dirs[0]!r}")
        cfg0 = cfg
        source = {}
        if step is not None:
            path = runs.theta_snapshot_path(folder, step)
            if not path.is_file():
                raise ValueError(f"{name}: {str(folder)!r} holds no θ snapshot after {step} outer steps")
            theta = runs.load_theta(path, init_meta_params(cfg, jax.random.key(0)))
            source["step"] = step
        for t in transforms:
            theta = TRANSFORMS[t](theta)
        if transforms:
            source["transforms"] = list(transforms)
        thetas.append(theta)
        commit = runs.RunFolder(folder).provenance().get("git_commit")
        sources.append({"path": repo_relative(path), "sha256": _sha256(path), "metatrain_commit": commit, **source})
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *thetas)
    return LearnedOptimizer(name=name, cfg=cfg0, thetas=stacked, sources=tuple(sources))


def released_learned(name: str, **kwargs) -> LearnedOptimizer:
    """A released checkpoint of the paper (:func:`star.optim.released.load_released`) as a row
    ``released_<preset>`` (e.g. ``released_star``); ``kwargs`` go to ``load_released``.

    Raises:
        star.optim.released.ReleasedUnavailableError: offline without a local or cached copy.
    """
    from star.optim import released

    rel = released.load_released(name, **kwargs)
    digest = hashlib.sha256(json.dumps(jax.tree.map(lambda x: np.asarray(x).tolist(), rel.theta),
                                       sort_keys=True).encode()).hexdigest()
    source = {"path": f"{released.BUCKET_URL}/{name}/params", "sha256": digest, "metatrain_commit": None,
              "loaded_from": rel.source, "step": rel.step, "settings": rel.settings}
    return LearnedOptimizer(name=f"released_{rel.preset}", cfg=rel.cfg,
                            thetas=jax.tree.map(lambda x: jnp.asarray(x)[None], rel.theta), sources=(source,))
