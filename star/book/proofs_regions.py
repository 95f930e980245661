"""Stability regions in the chapter "The appendix proofs, verified" (``book/proofs.ipynb``): in the (α, p) plane of
P = p·D, the exact region (ρ(A) < 1), Theorem 1's, bounds (16)–(17) and the exact robust region of Lemma 3
(:func:`stability_regions`, drawn by :func:`plot_stability_regions`, measured by :func:`region_table`); ρ(A) under a
relative error of a learned term that cancels the nominal step (§A.3, :func:`plot_cancellation`); and, beyond the
paper, the (α, β) regions of heavy ball and Nesterov momentum checked against simulated runs (§A.4,
:func:`momentum_regions`, :func:`plot_momentum_regions`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from star import nqm as _nqm
from star import stability as _st
from star.book.tables import Table, table

__all__ = ["Regions", "DIRECTIONS", "stability_regions", "plot_stability_regions", "region_table",
           "plot_cancellation", "MomentumRegions", "momentum_regions", "plot_momentum_regions"]


@dataclasses.dataclass(frozen=True)
class Regions:
    """Boolean masks [p, α] per direction of P = p·D: exact, Theorem 1, (16)–(17) and exact robust per d̄."""

    alphas: np.ndarray
    ps: np.ndarray
    d_bars: tuple
    edge: float
    masks: dict  # {direction label: {"exact"|"theorem1"|("robust_bound", d)|("robust_exact", d): mask}}
    H: np.ndarray | None = None
    directions: Mapping | None = None  # {direction label: the diagonal D of P = p D}

    def nested(self) -> dict:
        """Per direction: is Theorem 1's region inside the exact one, and (16)–(17) inside the exact robust?"""
        out = {}
        for name, m in self.masks.items():
            ok = not (m["theorem1"] & ~m["exact"]).any()
            for d in self.d_bars:
                ok &= not (m[("robust_bound", d)] & ~m[("robust_exact", d)]).any()
            out[name] = bool(ok)
        return out


DIRECTIONS = {"$P=pI$": (1.0, 1.0), r"$P=p\,e_1e_1^\top$": (1.0, 0.0), r"$P=p\,e_2e_2^\top$": (0.0, 1.0)}


def stability_regions(H, alphas, ps, d_bars=(2.0, 4.0), directions: Mapping = DIRECTIONS) -> Regions:
    """The regions of :func:`star.stability.region_masks` for each direction (2-D H)."""
    masks = {name: _st.region_masks(H, alphas, ps, np.array(D), d_bars=d_bars) for name, D in directions.items()}
    return Regions(np.asarray(alphas), np.asarray(ps), tuple(d_bars), 2 / np.linalg.eigvalsh(H)[-1], masks,
                   np.asarray(H, np.float64), dict(directions))


def plot_stability_regions(regions: Regions):
    """Exact region (shaded), Theorem 1 (black), (16)–(17) (dashed) and the exact robust region (dotted); a panel
    where the two robust regions are equal on the grid says so in its title (the dotted contour is hidden)."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    fig, axes = plt.subplots(1, len(regions.masks), figsize=(4.6 * len(regions.masks), 4.2), sharey=True)
    colours = ("C1", "C3", "C4", "C5")
    a, p = regions.alphas, regions.ps
    for ax, (name, m) in zip(np.atleast_1d(axes), regions.masks.items()):
        ax.contourf(a, p, m["exact"].astype(float), levels=[0.5, 1.5], colors=["#cfe3f5"])
        ax.contour(a, p, m["theorem1"].astype(float), levels=[0.5], colors="k", linewidths=1.5)
        for d, c in zip(regions.d_bars, colours):
            ax.contour(a, p, m[("robust_bound", d)].astype(float), levels=[0.5], colors=c, linestyles="--")
            ax.contour(a, p, m[("robust_exact", d)].astype(float), levels=[0.5], colors=c, linestyles=":")
        ax.axvline(regions.edge, color="grey", lw=0.8)
        # where the robust bounds are exact on the grid, their dotted contours lie under the dashed ones: say so
        same = all(np.array_equal(m[("robust_bound", d)], m[("robust_exact", d)]) for d in regions.d_bars)
        ax.set(title=name + ("\n(16)–(17) coincide with the exact robust region" if same else ""),
               xlabel=r"nominal step $\alpha$")
    np.atleast_1d(axes)[0].set_ylabel(r"eigenvalue scale $p$ of the learned $P$")
    handles = [plt.Rectangle((0, 0), 1, 1, color="#cfe3f5"), Line2D([], [], color="k")]
    labels = ["exact region (ρ < 1)", "Theorem 1 (9)–(10)"]
    for d, c in zip(regions.d_bars, colours):
        handles += [Line2D([], [], color=c, ls="--"), Line2D([], [], color=c, ls=":")]
        labels += [f"(16)–(17), d̄ = {d:g}", f"exact robust, d̄ = {d:g}"]
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    return fig


def region_table(regions: Regions) -> Table:
    """Area fractions of the regions on the grid (first d̄) and whether they are nested."""
    d = regions.d_bars[0]
    nested = regions.nested()
    rows = [[name.strip("$").replace("\\,", " ").replace("^\\top", "ᵀ"), m["exact"].mean(), m["theorem1"].mean(),
             m[("robust_bound", d)].mean(), m[("robust_exact", d)].mean(), nested[name]]
            for name, m in regions.masks.items()]
    return table(["direction", "exact", "Theorem 1", f"(16)–(17), d̄ = {d:g}", f"exact robust, d̄ = {d:g}",
                  "nested"], rows, caption="Area fraction of each region on the plotted grid", digits=3)


def plot_cancellation(H, alpha: float, Q, eps=np.linspace(-0.5, 0.5, 201)):
    """ρ(A) under a relative error ε for a learned term that cancels the nominal step (Q = 0 and Q) and for
    one that adds to it (§A.3)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for Qc, label in ((np.zeros_like(Q), "cancelling, Q = 0"), (Q, "cancelling, Q = diag(0, 0.6)")):
        ax.plot(eps, [_st.spectral_radius(_st.cancellation_dynamics_matrix(H, alpha, Qc, e)) for e in eps],
                label=label)
    ax.plot(eps, [_st.spectral_radius(np.eye(len(H)) - (alpha * np.eye(len(H)) + (1 + e) * Q) @ H) for e in eps],
            label="additive, P = (1+ε) Q")
    ax.axhline(1, color="k", lw=0.8)
    ax.set(xlabel=r"relative error $\varepsilon$", ylabel=r"$\rho(A)$", title=fr"$\alpha={alpha:g}$, paper's $H$")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@dataclasses.dataclass(frozen=True)
class MomentumRegions:
    """ρ of the companion matrix on an (α, β) grid per optimizer, and simulated runs on a sub-grid."""

    H: np.ndarray
    alphas: np.ndarray
    betas: np.ndarray
    rho: dict  # {optimizer: [beta, alpha] array}
    points: dict  # {optimizer: list of (alpha, beta, converged, diverged, rho)}
    checked: int
    mismatch: int


def momentum_regions(key, H, alphas, betas, sub=(8, 5), steps: int = 400) -> MomentumRegions:
    """ρ(𝒜) of heavy ball and Nesterov (P = 0) on the grid, and noise-free runs of the optimizers themselves
    from φ₀ = (1, 1) on every ``sub``-th point: converged (loss below 1e-3 of its start) or diverged (above
    1e3 times), compared with ρ < 1. Points within 0.02 of ρ = 1 are too close to the edge to classify."""
    import jax

    quiet = _nqm.make_nqm(H, np.zeros_like(H), phi0=np.ones(len(H)))
    l0 = 0.5 * np.ones(len(H)) @ H @ np.ones(len(H))
    sa, sb = sub
    A_pts, B_pts = np.meshgrid(alphas[sa // 2::sa], betas[::sb])
    rho_all, points, checked, mismatch = {}, {}, 0, 0
    for opt in ("heavy_ball", "nesterov"):
        rho = _st.momentum_spectral_radius_grid(H, alphas, betas, optimizer=opt)
        sim = jax.vmap(lambda a, b, opt=opt: _nqm.simulate_losses(key, quiet, a, None, steps, 1, optimizer=opt,
                                                                  momentum=b)[0, -1])
        final = np.asarray(sim(A_pts.ravel(), B_pts.ravel()))
        pts = []
        for a, b, f, r in zip(A_pts.ravel(), B_pts.ravel(), final, rho[::sb, sa // 2::sa].ravel()):
            if abs(r - 1) < 0.02:
                continue
            converged, diverged = bool(f < 1e-3 * l0), bool((not np.isfinite(f)) or f > 1e3 * l0)
            pts.append((a, b, converged, diverged, r))
            checked += 1
            mismatch += not ((converged and r < 1) or (diverged and r > 1))
        rho_all[opt], points[opt] = rho, pts
    return MomentumRegions(np.asarray(H), np.asarray(alphas), np.asarray(betas), rho_all, points, checked, mismatch)


def plot_momentum_regions(m: MomentumRegions):
    """log10 ρ(𝒜) per optimizer, the ρ = 1 contour (black), the closed-form boundary (white dashed) and
    the simulated runs (circle: converged, cross: diverged)."""
    import matplotlib.pyplot as plt

    lam_max = np.linalg.eigvalsh(m.H)[-1]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, (opt, rho) in zip(axes, m.rho.items()):
        im = ax.pcolormesh(m.alphas, m.betas, np.log10(rho), cmap="RdBu_r", vmin=-1, vmax=1, shading="auto")
        ax.contour(m.alphas, m.betas, rho, levels=[1.0], colors="k", linewidths=1)
        ax.plot([_st.momentum_step_interval(b, opt)[1] / lam_max for b in m.betas], m.betas, "w--", lw=2)
        for a, b, converged, _, _ in m.points[opt]:
            ax.plot(a, b, "o" if converged else "x", color="k", ms=4, mfc="none")
        ax.set(title={"heavy_ball": "heavy ball", "nesterov": "Nesterov"}.get(opt, opt),
               xlabel=r"nominal step $\alpha$ ($P=0$)")
    axes[0].set_ylabel(r"momentum $\beta$")
    fig.colorbar(im, ax=axes, label=r"$\log_{10}\rho(\mathcal{A})$")
    return fig
