"""Tuning of the out-of-distribution baselines (App. B.3): Adam's learning rate and NAdamW by random search.

:func:`tune_baselines` tunes **Adam**'s learning rate on a half-decade grid and **NAdamW** by random search
over learning rate, β1, β2, ε, weight decay and a warm-up/cosine schedule (:mod:`star.baselines`), every
configuration trained on the suite's *tuning seeds*, all of them in one compiled, vmapped program
(:func:`star.batched.train_batched`); a configuration's score is its final training loss
(:func:`star.ood_scores.final_loss`, the mean of the last 10% of the steps) averaged over the tuning seeds, a
diverged run scoring +∞. The two selected configurations are then trained on the *evaluation seeds*, which the
tuning never saw. The result is the baselines' part of a record of :mod:`star.ood_records`; when and how a
stored part is reused instead is :func:`star.ood_suite.run_task`'s.
"""

from __future__ import annotations

import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from star import baselines
from star.batched import train_batched
from star.ood_records import baseline_fingerprint, json_float
from star.ood_scores import final_loss

__all__ = ["tune_baselines"]


def _pad(tree, width):
    n = int(jax.tree.leaves(tree)[0].shape[0])
    total = -(-n // width) * width
    if total == n:
        return tree, n
    return jax.tree.map(lambda x: jnp.concatenate([x, jnp.repeat(x[-1:], total - n, axis=0)]), tree), n


def _run_baselines(task, make, hparams, seeds, cfg, progress, desc):
    """Curves ``[configs, seeds, steps]`` of every (config, seed) pair, in calls of ``cfg.width`` runs."""
    n_cfg, n_seed = int(hparams.learning_rate.shape[0]), len(seeds)
    rows = jax.tree.map(lambda x: jnp.repeat(x, n_seed, axis=0), hparams)
    keys = jnp.tile(jnp.stack([jax.random.key(s) for s in seeds]), n_cfg)
    (rows, keys), n = _pad((rows, keys), cfg.width)
    out = []
    total = int(keys.shape[0])
    for lo in range(0, total, cfg.width):
        sl = slice(lo, lo + cfg.width)
        res = train_batched(task, make, jax.tree.map(lambda x: x[sl], rows), keys[sl], cfg.num_steps,
                            chunk_size=cfg.chunk_size, progress=progress,
                            desc=f"{desc} {lo // cfg.width + 1}/{total // cfg.width}")
        out.append(res.losses)
    return np.concatenate(out)[:n].reshape(n_cfg, n_seed, cfg.num_steps)


def _select(final):
    """Scores (mean final loss over the tuning seeds, +inf if any seed diverged) and the index of the best,
    from the final losses ``[configurations, seeds]`` (:func:`star.ood_scores.final_loss`)."""
    scores = np.asarray(final, np.float64).mean(axis=1)
    scores = np.where(np.isfinite(scores), scores, np.inf)
    return scores, int(np.argmin(scores))


@functools.cache
def _baseline_maker(steps: int):
    """``hparams -> NAdamW`` for ``steps`` steps: one function object per budget, so that the compiled
    program of :func:`star.batched.train_batched` is reused across calls (it is cached per object)."""
    return lambda h: baselines.nadamw(h, steps)


def tune_baselines(name, task, cfg, progress, prior=None, version=1):
    """Tune Adam and NAdamW (none when ``cfg.nadamw_samples`` is 0) on the tuning seeds and train the
    selected configurations on the evaluation seeds: the baselines' part of a record, with its arrays.

    ``prior`` = ``(record, arrays)`` of a stored record whose suite settings differ from ``cfg`` only by
    fewer tuning seeds (:func:`star.ood_records.extends`): its tuning runs are kept, only the new tuning seeds are run,
    every configuration is scored over all the seeds, and the stored evaluation curves are kept when the
    selection is unchanged.
    """
    t_start = time.perf_counter()
    steps = cfg.num_steps
    make = _baseline_maker(steps)
    lrs = cfg.adam_lrs
    adam_h = baselines.adam_hparams(lrs)
    with_nadamw = cfg.nadamw_samples > 0
    nadamw_h = baselines.sample_nadamw_hparams(jax.random.key(cfg.search_seed), max(cfg.nadamw_samples, 1))
    candidates = baselines.stack_hparams(adam_h, nadamw_h) if with_nadamw else adam_h
    old_seeds = list(prior[0]["suite_config"]["tune_seeds"]) if prior is not None else []
    new_seeds = [s for s in cfg.tune_seeds if s not in old_seeds]
    fin = final_loss(_run_baselines(task, make, candidates, new_seeds, cfg, progress, f"{name} tune"))
    if prior is not None:  # columns in cfg.tune_seeds order: stored seeds, then the new ones
        old = np.concatenate([prior[1]["tuning/adam_final"]]
                             + ([prior[1]["tuning/nadamw_final"]] if with_nadamw else []), axis=0)
        by_seed = dict(zip(old_seeds, old.astype(np.float64).T)) | dict(zip(new_seeds, fin.T))
        fin = np.stack([by_seed[s] for s in cfg.tune_seeds], axis=1)
    adam_scores, adam_best = _select(fin[: len(lrs)])
    nadamw_scores, nadamw_best = _select(fin[len(lrs):]) if with_nadamw else (None, None)
    t_tune = time.perf_counter() - t_start
    same = (prior is not None and prior[0]["adam"]["best_index"] == adam_best
            and (not with_nadamw or prior[0]["nadamw"]["best_index"] == nadamw_best))
    if same:
        ev = [prior[1]["curves/adam"]] + ([prior[1]["curves/nadamw"]] if with_nadamw else [])
    else:
        best = jax.tree.map(lambda x: x[adam_best: adam_best + 1], adam_h)
        if with_nadamw:
            best = baselines.stack_hparams(best, jax.tree.map(lambda x: x[nadamw_best: nadamw_best + 1], nadamw_h))
        ev = _run_baselines(task, make, best, cfg.eval_seeds, cfg, progress, f"{name} eval")
    part = {
        "adam": {"learning_rates": [float(v) for v in lrs], "scores": [json_float(v) for v in adam_scores],
                 "best_index": adam_best, "best_learning_rate": float(lrs[adam_best]),
                 "best_at_grid_edge": adam_best in (0, len(lrs) - 1)},
        "nadamw": None if not with_nadamw else {
            "samples": [baselines.hparams_row(nadamw_h, i) for i in range(cfg.nadamw_samples)],
            "scores": [json_float(v) for v in nadamw_scores], "best_index": nadamw_best,
            "best": baselines.hparams_row(nadamw_h, nadamw_best)},
        "baselines": {"fingerprint": baseline_fingerprint(cfg.to_dict(), name, version), "reused": False,
                      "wall_s": {"tuning": t_tune, "evaluation": time.perf_counter() - t_start - t_tune}},
    }
    if prior is not None:
        part["baselines"]["extended"] = {
            "tune_seeds_kept": old_seeds, "tune_seeds_run": new_seeds, "evaluation_kept": bool(same),
            "kept_from": prior[0].get("baselines", {}).get("provenance", prior[0].get("provenance"))}
    arrays = {"curves/adam": np.asarray(ev[0]), "tuning/adam_final": fin[: len(lrs)].astype(np.float32)}
    if with_nadamw:
        arrays |= {"curves/nadamw": np.asarray(ev[1]), "tuning/nadamw_final": fin[len(lrs):].astype(np.float32)}
    return part, arrays
