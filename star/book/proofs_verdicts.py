"""The verdict rules of the chapter "The appendix proofs, verified" (``book/proofs.ipynb``): Theorem 1, Lemma 2 and
Lemma 3 (``theorem1_checks``, ``lemma2_checks``, ``lemma3_checks``) turn the random-instance counts
(:class:`star.book.proofs_trials.Trials`) and the stability regions (:class:`star.book.proofs_regions.Regions`) into
:class:`star.book.verdicts.Check` s, whose effect is exact (1 − the largest spectral radius found, or a margin of the
exact criterion on the grids); :func:`verdict_summary` says it in one sentence for the status page.
``tests/test_book_proofs.py`` feeds the rules evidence that flips them. :mod:`star.book.claims` records the claims;
the status page shows them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from star.book.proofs_regions import Regions
from star.book.proofs_trials import Trials
from star.book.verdicts import Check, count_sentence

__all__ = ["grid_worst_rho", "robust_grid_margin", "theorem1_checks", "lemma2_checks", "lemma3_checks",
           "verdict_summary"]


def _margin_check(question: str, worst: float, what: str) -> Check:
    """A mathematical statement checked on instances: the effect is 1 − the largest spectral radius among them,
    exact (no sampling interval), so a single unstable instance makes it negative."""
    if not np.isfinite(worst):
        return Check(question, float("nan"), -np.inf, np.inf, unit="1 − largest ρ",
                     how=f"no {what} met the strict conditions: nothing to check")
    m = 1.0 - float(worst)
    return Check(question, m, m, m, unit="1 − largest ρ",
                 how=f"exact: the worst of the {what}; one unstable instance would make it negative")


def grid_worst_rho(regions: Regions, region: str = "theorem1") -> tuple[float, int]:
    """``(largest ρ(A), number of grid points)`` over the grid points of ``regions`` inside ``region`` (Theorem 1's
    strict region), for every direction P = p D: how close to instability the region comes on the plotted grids."""
    if regions.H is None or regions.directions is None:
        raise ValueError("regions must come from stability_regions (it records H and the directions)")
    H, n = regions.H, len(regions.H)
    worst, count = float("nan"), 0
    a, p = np.meshgrid(regions.alphas, regions.ps)
    for name, m in regions.masks.items():
        inside = m[region]
        if not inside.any():
            continue
        D = np.asarray(regions.directions[name], np.float64)
        M = a[inside][:, None, None] * np.eye(n) + (p[inside][:, None] * D)[:, None, :] * np.eye(n)
        rho = np.abs(np.linalg.eigvals(np.eye(n) - M @ H)).max(axis=-1)
        worst, count = float(np.fmax(worst, rho.max())), count + int(inside.sum())
    return worst, count


def robust_grid_margin(regions: Regions) -> tuple[float, int]:
    """``(margin, points)``: over the grid points inside bounds (16)–(17), for every d̄, the smallest margin of the
    exact criterion 0 ≺ H^½MH^½ ≺ 2I (Proposition A) at the vertices d_i ∈ {0, d̄} of the box of errors, which by
    Proposition B bounds it over the whole box. Positive: every admissible error keeps ρ(A) < 1."""
    if regions.H is None or regions.directions is None:
        raise ValueError("regions must come from stability_regions (it records H and the directions)")
    H, n = regions.H, len(regions.H)
    w, V = np.linalg.eigh(H)
    R = (V * np.sqrt(w)) @ V.T
    a, p = np.meshgrid(regions.alphas, regions.ps)
    margin, count = float("nan"), 0
    for name, m in regions.masks.items():
        D = np.asarray(regions.directions[name], np.float64)
        for d in regions.d_bars:
            inside = m[("robust_bound", d)]
            if not inside.any():
                continue
            for bits in range(2 ** n):
                scale = np.array([d if (bits >> i) & 1 else 0.0 for i in range(n)])
                M = a[inside][:, None, None] * np.eye(n) + (p[inside][:, None] * scale * D)[:, None, :] * np.eye(n)
                lam = np.linalg.eigvalsh(R @ M @ R)
                margin = float(np.fmin(margin, np.minimum(lam[:, 0], 2 - lam[:, -1]).min()))
            count += int(inside.sum())
    return margin, count


def theorem1_checks(trials: Trials, regions: Regions) -> list[Check]:
    """Theorem 1 is a sufficient condition: every random instance that meets (9)–(10) strictly is stable, and so
    is every point of the (α, p) grids inside its region. Each check's effect is 1 − the largest ρ(A) found."""
    worst, points = grid_worst_rho(regions)
    return [
        _margin_check("Every random instance that meets (9)–(10) strictly has ρ(A) < 1", trials.worst_rho,
                      f"{trials.strict_held:,} random instances that met them"),
        _margin_check("Every grid point inside Theorem 1's region has ρ(A) < 1", worst,
                      f"{points:,} grid points of the three directions of P"),
    ]


def lemma2_checks(trials: Trials, H) -> list[Check]:
    """Lemma 2: its strict conditions give ρ(A′) < 1 on random instances (effect 1 − the largest ρ), and they
    relax Theorem 1's on the paper's H: the largest nominal step 2/√λ_max exceeds 2/λ_max (effect: the
    difference)."""
    lmax = float(np.linalg.eigvalsh(np.asarray(H, np.float64))[-1])
    gain = 2 / np.sqrt(lmax) - 2 / lmax
    return [
        _margin_check("Every random instance that meets Lemma 2's conditions strictly has ρ(A′) < 1",
                      trials.worst_rho, f"{trials.strict_held:,} random instances that met them"),
        Check("On the paper's H the preconditioned conditions allow a larger nominal step", gain, gain, gain,
              unit="(2/√λ_max − 2/λ_max)", how="exact, from the eigenvalues of H (A.30)"),
    ]


def lemma3_checks(trials: Trials, regions: Regions) -> list[Check]:
    """Lemma 3: every sampled diagonal error within strict (16)–(17) keeps ρ(A) < 1 (effect 1 − the largest ρ),
    and on the grids every point within (16)–(17) is stable for every error in the box (effect: the smallest margin
    of the exact criterion at the box's vertices, :func:`robust_grid_margin`)."""
    margin, points = robust_grid_margin(regions)
    grid = (Check("Every grid point within (16)–(17) is stable for every error in the box", margin, margin, margin,
                  unit="margin of 0 ≺ H^½MH^½ ≺ 2I",
                  how=f"exact: the smallest over {points:,} grid points and the box's vertices (Proposition B)")
            if np.isfinite(margin) else
            Check("Every grid point within (16)–(17) is stable for every error in the box", float("nan"), -np.inf,
                  np.inf, how="no grid point lies within (16)–(17)"))
    return [
        _margin_check("Every sampled diagonal error within strict (16)–(17) keeps ρ(A) < 1", trials.worst_rho,
                      f"{trials.strict_held:,} sampled errors"),
        grid,
    ]


def verdict_summary(trials: Trials, checks: Sequence[Check]) -> str:
    """One plain sentence for the status page: what was checked, how close to unstable the worst instance came,
    and how the checks came out."""
    what = trials.unit or "random instances"
    worst = (f" (the largest spectral radius among them {trials.worst_rho:.6f})" if np.isfinite(trials.worst_rho)
             else "")
    return f"{trials.strict_held:,} {what} met the strict conditions{worst}, and {count_sentence(checks)}."
