"""The noisy quadratic model's meta-loss in the chapter "The appendix proofs, verified" (``book/proofs.ipynb``):
the closed form (Eq. 8) against a Monte-Carlo simulation of the optimizer, without and with momentum
(:func:`monte_carlo_check`, :func:`momentum_monte_carlo`, read in one sentence by :func:`agreement_sentence`),
Lemma 4 in numbers (:func:`lemma4_table`), and Lemma 5 with erratum E2: the transient growth of ‖A^k‖ and the
loss's Lyapunov limit (:func:`plot_transient_growth`, :func:`transient_growth_facts`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from star import nqm as _nqm
from star import stability as _st
from star.book.tables import Table, column, table

__all__ = ["DIFFERENCE", "monte_carlo_check", "agreement_sentence", "momentum_monte_carlo", "lemma4_table",
           "transient_growth_facts", "plot_transient_growth"]

#: The column of the closed-form-against-Monte-Carlo tables that :func:`agreement_sentence` reads.
DIFFERENCE = "difference in s.e."


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


def transient_growth_facts(H, alpha: float, P) -> str:
    """ρ(A), ‖A‖₂ and κ(V) of A = I − (αI + P)H: the E2 example's numbers."""
    A = np.eye(len(H)) - (alpha * np.eye(len(H)) + P) @ H
    return (f"ρ(A) = {_st.spectral_radius(A):.4f}, ‖A‖₂ = {np.linalg.norm(A, 2):.3f}, "
            f"κ(V) = {_st.eigenvector_condition_number(A):.3f}")


def plot_transient_growth(model, alpha: float, P, alphas: Sequence[float] = (0.3, 0.8, 1.3),
                          num_powers: int = 400, horizon: int = 2000):
    """Left: ‖A^k‖₂ against ρ(A)^k and the bounds κ(V)ρ^k, √κ(M)ρ^k (erratum E2). Right: L(θ; T) against
    T with its Lyapunov limit (Lemma 5)."""
    import matplotlib.pyplot as plt

    H = np.asarray(model.H, np.float64)
    A = np.eye(len(H)) - (alpha * np.eye(len(H)) + P) @ H
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
