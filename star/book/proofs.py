"""What the chapter "The appendix proofs, verified" computes and draws (``book/proofs.ipynb``).

Each function is one of the chapter's numerical checks of Appendix A (random instances, closed form against
Monte Carlo, the stability regions) or one of its figures. The verdict rules of the theorem-level claims are
here too (``theorem1_checks``, ``lemma2_checks``, ``lemma3_checks``): they turn the checks into the verdict
the status page shows, and ``tests/test_book_proofs.py`` feeds them evidence that flips it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence

import numpy as np

from star import errata as _errata
from star import nqm as _nqm
from star import stability as _st
from star.book.tables import Table, column, table
from star.book.verdicts import Check

__all__ = [
    "monte_carlo_check", "lemma4_table", "transient_growth_facts", "plot_transient_growth",
    "random_instance", "Trials", "theorem1_trials", "lemma2_trials", "lemma3_trials", "preconditioning_summary",
    "Regions", "stability_regions", "plot_stability_regions", "region_table", "e11_summary",
    "plot_cancellation", "errata_table", "MomentumRegions", "momentum_regions", "plot_momentum_regions",
    "momentum_monte_carlo", "theorem1_checks", "lemma2_checks", "lemma3_checks", "grid_worst_rho",
    "robust_grid_margin", "verdict_summary", "agreement_sentence", "DIFFERENCE",
]

#: The column of the closed-form-against-Monte-Carlo tables that :func:`agreement_sentence` reads.
DIFFERENCE = "difference in s.e."


def _eye(n):
    return np.eye(n)


# ---------------------------------------------------------------------------------------------------------
# The NQM: closed form against Monte Carlo, Lemma 4, Lemma 5


def monte_carlo_check(key, model, alphas: Sequence[float], horizon: int, num_runs: int, *,
                      optimizer: str = "sgd", momentum: float = 0.0) -> Table:
    """Eq. (8) against a Monte-Carlo simulation of the optimizer (a separate code path), one row per α, each
    row with its own random numbers (``key`` folded with the row's index), so that the rows' differences are
    independent samples of the simulation's error."""
    rows = []
    opt = dict(optimizer=optimizer, momentum=momentum)
    for i, alpha in enumerate(alphas):
        runs = np.asarray(_nqm.simulate_losses(_fold(key, i), model, alpha, None, horizon, num_runs, **opt))
        runs = runs.mean(axis=1)
        closed = float(_nqm.expected_loss(model, alpha, None, horizon, **opt))
        se = runs.std(ddof=1) / np.sqrt(num_runs)
        rows.append([alpha, closed, runs.mean(), se, (runs.mean() - closed) / se])
    return table(["α", f"closed form L(θ; {horizon})", f"Monte Carlo ({num_runs} runs)", "1 s.e.",
                  DIFFERENCE], rows)


def _fold(key, i: int):
    import jax

    return jax.random.fold_in(key, i)


def agreement_sentence(*tables: Table, level: float = 0.01) -> str:
    """One sentence on the closed form against Monte Carlo in ``tables`` (their :data:`DIFFERENCE` columns,
    independent rows): the largest difference in standard errors and how likely a difference at least that large
    is in one of the rows under sampling noise alone (two-sided, normal); below ``level`` it is called a
    discrepancy, otherwise consistent with sampling noise."""
    z = np.asarray([float(v) for t in tables for v in column(t, DIFFERENCE)], np.float64)
    if z.size == 0 or not np.isfinite(z).all():
        return "The simulation did not give a finite difference for every row: no comparison."
    worst = float(np.max(np.abs(z)))
    p_one = math.erfc(worst / math.sqrt(2.0))
    p_any = 1.0 - (1.0 - p_one) ** z.size
    diffs = ", ".join(f"{v:+.2f}" for v in z)
    rows = f"one of {z.size} independent rows" if z.size > 1 else "one row"
    verdict = ("consistent with sampling noise" if p_any >= level else
               f"larger than sampling noise explains at the {level:.0%} level: a discrepancy")
    return (f"The differences are {diffs} standard errors. Under sampling noise alone, a difference of at least "
            f"{worst:.2f} standard errors in {rows} has probability {p_any:.0%}, so they are {verdict}.")


def lemma4_table(model, alphas: Sequence[float], horizon: int) -> Table:
    """Lemma 4 in numbers: L̄ ≤ L, and L − L̄ equals the trace term, computed independently as the loss of
    the same NQM started at φ₀ = 0 (float64)."""
    rows = []
    with _nqm.float64():
        for alpha in alphas:
            L = float(_nqm.expected_loss(model, alpha, None, horizon))
            Lbar = float(_nqm.noise_free_loss(model, alpha, None, horizon))
            term = float(_nqm.expected_loss(model._replace(S0=np.zeros_like(model.S0)), alpha, None, horizon))
            rows.append([alpha, Lbar, L, Lbar <= L, f"{L - Lbar - term:+.1e}"])
    return table(["α", "L̄ (noise-free)", "L", "L̄ ≤ L", "L − (L̄ + trace term)"], rows)


def transient_growth_facts(H, alpha: float, P) -> str:
    """ρ(A), ‖A‖₂ and κ(V) of A = I − (αI + P)H: the E2 example's numbers."""
    A = _eye(len(H)) - (alpha * _eye(len(H)) + P) @ H
    return (f"ρ(A) = {_st.spectral_radius(A):.4f}, ‖A‖₂ = {np.linalg.norm(A, 2):.3f}, "
            f"κ(V) = {_st.eigenvector_condition_number(A):.3f}")


def plot_transient_growth(model, alpha: float, P, alphas: Sequence[float] = (0.3, 0.8, 1.3),
                          num_powers: int = 400, horizon: int = 2000):
    """Left: ‖A^k‖₂ against ρ(A)^k and the bounds κ(V)ρ^k, √κ(M)ρ^k (erratum E2). Right: L(θ; T) against
    T with its Lyapunov limit (Lemma 5)."""
    import matplotlib.pyplot as plt

    H = np.asarray(model.H, np.float64)
    A = _eye(len(H)) - (alpha * _eye(len(H)) + P) @ H
    k = np.arange(num_powers)
    rho = _st.spectral_radius(A)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 3.8))
    ax0.semilogy(k, [np.linalg.norm(np.linalg.matrix_power(A, int(j)), 2) for j in k], "k", lw=2,
                 label=r"$\|A^k\|_2$")
    ax0.semilogy(k, rho ** k, "C0--", label=r"$\rho(A)^k$ (what (A.14) uses)")
    ax0.semilogy(k, [_st.power_norm_bound(A, int(j)) for j in k], "C1", label=r"$\kappa(V)\rho^k$")
    ax0.semilogy(k, _st.symmetric_kappa(alpha, P) * rho ** k, "C2:", label=r"$\sqrt{\kappa(M)}\rho^k$")
    ax0.set(xlabel="power k", ylabel=r"$\|A^k\|_2$ and its bounds (log scale)",
            title=fr"E2: $\alpha={alpha:g}$, $P=\mathrm{{diag}}({P[0, 0]:g},{P[1, 1]:g})$")
    ax0.legend(fontsize=8)
    T = np.arange(1, horizon + 1)
    with _nqm.float64():
        for a, c in zip(alphas, ("C0", "C1", "C3")):
            steps = np.asarray(_nqm.expected_losses(model, a, None, horizon))
            ax1.semilogx(T, np.cumsum(steps) / T, c, label=fr"$\alpha={a:g}$")
            ax1.axhline(float(_nqm.asymptotic_loss(model, a, None)), color=c, ls=":", lw=1)
    ax1.set(xlabel="horizon T (log scale)", ylabel=r"meta-loss $L(\theta;T)$ (Eq. 8)", ylim=(0, 25),
            title="L(T) and its Lyapunov limit (dotted)")
    ax1.legend()
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------------------
# Random instances: Theorem 1, the exact criterion, Lemma 2, Lemma 3


def random_instance(rng: np.random.Generator, sqrt_curvature: bool = False):
    """Random SPD H (N ≤ 4, condition number up to 1e3), α, and symmetric P whose eigenvalues lie around
    Theorem 1's band [−α, e − α], e = 2/λ_max (2/√λ_max for Lemma 2)."""
    n = rng.integers(2, 5)
    U, W = np.linalg.qr(rng.normal(size=(n, n)))[0], np.linalg.qr(rng.normal(size=(n, n)))[0]
    H = (U * 10.0 ** rng.uniform(-3, 0, size=n)) @ U.T
    H = (H + H.T) / 2
    lmax = np.linalg.eigvalsh(H)[-1]
    e = 2 / (np.sqrt(lmax) if sqrt_curvature else lmax)
    a = rng.uniform(0.01, 1.2) * e
    P = (W * (-a + rng.uniform(-0.1, 1.1, size=n) * e)) @ W.T
    return H, a, (P + P.T) / 2


@dataclasses.dataclass(frozen=True)
class Trials:
    """Outcome of a random-instance check: ``held`` instances met the result's conditions, ``stable`` of them
    were stable; ``agree``/``total`` count instances where the exact criterion matched ρ < 1 (Theorem 1) and
    ``strict_held``/``strict_stable`` the strict version (ρ < 1)."""

    name: str
    total: int
    held: int
    stable: int
    agree: int = 0
    strict_held: int = 0
    strict_stable: int = 0
    unit: str = ""  # what ``held`` counts when it is not random instances
    worst_rho: float = float("nan")  # the largest ρ among the instances that met the strict conditions

    def __str__(self) -> str:
        if self.unit:
            out = f"{self.name}: {self.held} {self.unit} (from {self.total} random instances); stable on " \
                  f"{self.stable}/{self.held}"
        else:
            out = f"{self.name}: conditions held on {self.held} of {self.total} random instances; stable on " \
                  f"{self.stable}/{self.held}"
        if self.strict_held:
            out += f"; strict conditions held on {self.strict_held}, ρ(A) < 1 on {self.strict_stable}"
        if self.agree:
            out += f"; the exact criterion matched ρ(A) < 1 on {self.agree}/{self.total}"
        return out


def theorem1_trials(rng: np.random.Generator, num: int) -> Trials:
    """Theorem 1 (non-strict: ρ ≤ 1; strict: ρ < 1) and the exact criterion on ``num`` random instances."""
    held = stable = agree = s_held = s_stable = 0
    worst = float("nan")
    for _ in range(num):
        H, a, P = random_instance(rng)
        rho = _st.spectral_radius(_eye(len(H)) - (a * _eye(len(H)) + P) @ H)
        agree += _st.exact_stability_criterion(H, a, P) == (rho < 1)
        if _st.theorem1_holds(H, a, P):
            held += 1
            stable += rho <= 1 + 1e-9
        if _st.theorem1_holds(H, a, P, strict=True):
            s_held += 1
            s_stable += rho < 1
            worst = float(np.fmax(worst, rho))
    return Trials("Theorem 1", num, held, stable, agree, s_held, s_stable, worst_rho=worst)


def lemma2_trials(rng: np.random.Generator, num: int) -> Trials:
    """Lemma 2's conditions against ρ(A′) of the preconditioned dynamics on ``num`` random instances."""
    held = stable = s_held = s_stable = 0
    worst = float("nan")
    for _ in range(num):
        H, a, P = random_instance(rng, sqrt_curvature=True)
        if _st.lemma2_holds(H, a, P):
            rho = _st.spectral_radius(_st.lemma2_dynamics_matrix(H, a, P))
            held += 1
            stable += rho <= 1 + 1e-9
            if _st.lemma2_holds(H, a, P, strict=True):
                s_held += 1
                s_stable += rho < 1
                worst = float(np.fmax(worst, rho))
    return Trials("Lemma 2", num, held, stable, 0, s_held, s_stable, worst_rho=worst)


def lemma3_trials(rng: np.random.Generator, num: int, errors_per_instance: int = 5) -> Trials:
    """Lemma 3: a diagonal P̃ within (16)–(17), then random errors Δ in the box 0 < d_i ≤ d̄_i and its corner
    Δ = diag(d̄). ``held`` counts the errors tried, ``stable`` those with ρ ≤ 1."""
    checked = stable = s_held = s_stable = 0
    worst = float("nan")
    for _ in range(num):
        H, a, _ = random_instance(rng)
        n, e = len(H), 2 / np.linalg.eigvalsh(H)[-1]
        d_bar = rng.uniform(1, 5, size=n)
        P_tilde = np.diag((-a + rng.uniform(size=n) * e) / d_bar.max())
        if not _st.robust_bounds_hold(H, a, P_tilde, d_bar):
            continue
        errors = [np.diag(d_bar * rng.uniform(1e-3, 1, size=n)) for _ in range(errors_per_instance)]
        strict = _st.robust_bounds_hold(H, a, P_tilde, d_bar, strict=True)
        for Delta in errors + [np.diag(d_bar)]:
            rho = _st.spectral_radius(_eye(n) - (a * _eye(n) + Delta @ P_tilde) @ H)
            checked += 1
            stable += rho <= 1 + 1e-9
            if strict:
                s_held += 1
                s_stable += rho < 1
                worst = float(np.fmax(worst, rho))
    return Trials("Lemma 3", num, checked, stable, 0, s_held, s_stable,
                  unit="sampled diagonal errors within (16)-(17)", worst_rho=worst)


def preconditioning_summary(H) -> str:
    """The largest stable nominal step for P = 0 and the condition number, without and with H^(-1/2)."""
    lam = np.linalg.eigvalsh(H)
    return (f"largest stable α for P = 0: 2/λmax = {2 / lam[-1]:.3f} without, 2/√λmax = "
            f"{2 / np.sqrt(lam[-1]):.3f} with preconditioning; condition number {lam[-1] / lam[0]:.1f} → "
            f"{np.sqrt(lam[-1] / lam[0]):.2f}")


# ---------------------------------------------------------------------------------------------------------
# Stability regions in the (α, p) plane


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


def e11_summary(H) -> str:
    """The E11 counterexample: a non-diagonal P̃ within (16)–(17) and an admissible Δ that destabilizes."""
    c = _errata.E11_COUNTEREXAMPLE
    A = _eye(2) - (c["alpha"] * _eye(2) + np.diag(c["d"]) @ c["P_tilde"]) @ H
    (p11, p12), (p21, p22) = np.asarray(c["P_tilde"], np.float64)
    lam = np.linalg.eigvalsh(c["P_tilde"])
    return (f"E11: P̃ with rows ({p11:.3f}, {p12:.3f}) and ({p21:.3f}, {p22:.3f}), eigenvalues {lam[0]:.3f} and "
            f"{lam[1]:.3f}; α = {c['alpha']:g}, d̄ = {c['d_bar']:g}, Δ = diag({c['d'][0]:g}, {c['d'][1]:g}): "
            f"ρ(A) = {_st.spectral_radius(A):.3f}").replace("-", "−")


def plot_cancellation(H, alpha: float, Q, eps=np.linspace(-0.5, 0.5, 201)):
    """ρ(A) under a relative error ε for a learned term that cancels the nominal step (Q = 0 and Q) and for
    one that adds to it (§A.3)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for Qc, label in ((np.zeros_like(Q), "cancelling, Q = 0"), (Q, "cancelling, Q = diag(0, 0.6)")):
        ax.plot(eps, [_st.spectral_radius(_st.cancellation_dynamics_matrix(H, alpha, Qc, e)) for e in eps],
                label=label)
    ax.plot(eps, [_st.spectral_radius(_eye(len(H)) - (alpha * _eye(len(H)) + (1 + e) * Q) @ H) for e in eps],
            label="additive, P = (1+ε) Q")
    ax.axhline(1, color="k", lw=0.8)
    ax.set(xlabel=r"relative error $\varepsilon$", ylabel=r"$\rho(A)$", title=fr"$\alpha={alpha:g}$, paper's $H$")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def errata_table() -> Table:
    """The errata E1–E12 with their computed evidence (:func:`star.errata.errata`)."""
    rows = [[r.id, r.location, r.problem, r.fix, r.evidence,
             "—" if r.confirmed is None else ("yes" if r.confirmed else "NO")] for r in _errata.errata()]
    return table(["#", "where", "problem", "fix", "computed evidence", "confirmed"], rows)


# ---------------------------------------------------------------------------------------------------------
# Momentum (§A.4, beyond the paper)


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


def momentum_monte_carlo(key, model, alpha: float, momentum: float, horizon: int, num_runs: int) -> Table:
    """Closed form with momentum against Monte Carlo, and the per-step loss at T against the Lyapunov limit."""
    rows = []
    for i, opt in enumerate(("heavy_ball", "nesterov")):
        kw = dict(optimizer=opt, momentum=momentum)
        runs = np.asarray(_nqm.simulate_losses(_fold(key, i), model, alpha, None, horizon, num_runs, **kw))
        runs = runs.mean(axis=1)
        closed = float(_nqm.expected_loss(model, alpha, None, horizon, **kw))
        limit = float(_nqm.asymptotic_loss(model, alpha, None, **kw))
        last = float(_nqm.expected_losses(model, alpha, None, horizon, **kw)[-1])
        rho = _st.momentum_spectral_radius(np.asarray(model.H), alpha, momentum=momentum, optimizer=opt)
        se = runs.std(ddof=1) / np.sqrt(num_runs)
        rows.append([{"heavy_ball": "heavy ball", "nesterov": "Nesterov"}[opt], closed, runs.mean(), se,
                     (runs.mean() - closed) / se, last, limit, rho])
    return table(["optimizer", f"L({horizon}) closed form", "Monte Carlo", "1 s.e.", DIFFERENCE, f"loss at t={horizon}",
                  "Lyapunov limit", "ρ"], rows, caption=f"α = {alpha:g}, β = {momentum:g}")


# ---------------------------------------------------------------------------------------------------------
# Verdict rules (star.book.claims records them; the status page shows them)


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
    from star.book.verdicts import count_sentence

    what = trials.unit or "random instances"
    worst = (f" (the largest spectral radius among them {trials.worst_rho:.6f})" if np.isfinite(trials.worst_rho)
             else "")
    return f"{trials.strict_held:,} {what} met the strict conditions{worst}, and {count_sentence(checks)}."
