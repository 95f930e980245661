"""What the chapter "The noisy quadratic model" shows (``book/nqm_experiments.ipynb``): Fig. 2a–c and the
momentum extension, drawn from the results of :mod:`star.nqm`, :mod:`star.nqm_variance` and :mod:`star.nqm_meta`,
and the verdict rules of the two NQM claims (``fig2a_checks``, ``fig2bc_checks``; flipped in
``tests/test_book_nqm_experiments.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from star import nqm as _nqm
from star import nqm_meta, nqm_variance, plotting
from star import stability as _st
from star.book.stats import mean_ci, paired_ci, proportion_ci
from star.book.tables import Table, table
from star.book.verdicts import Check

__all__ = [
    "edge_columns", "fig2a_table", "plot_fig2a", "plot_fig2a_code_convention", "fig2a_seed_gradients", "fig2a_checks",
    "fig2a_summary", "best_preconditioners", "es_summary", "es_table", "plot_fig2b", "plot_fig2c", "fig2bc_checks",
    "fig2bc_summary", "nominal_only_finding",
    "plot_momentum_es", "momentum_table", "plot_variance_along_boundary", "boundary_table",
]


def _lambda_max(H) -> float:
    return float(np.linalg.eigvalsh(np.asarray(H, np.float64))[-1])


def _horizon_colours(horizons):
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    return plt.cm.viridis, LogNorm(min(horizons), max(horizons))


# ---------------------------------------------------------------------------------------------------------
# Fig. 2a


def edge_columns(alphas, edge: float) -> tuple[int, int, int]:
    """Grid indices of the middle of the stable range, the last α below the edge and the first above it."""
    alphas = np.asarray(alphas)
    inside, outside = np.flatnonzero(alphas < edge), np.flatnonzero(alphas > edge)
    if inside.size == 0 or outside.size == 0:
        raise ValueError(f"alphas must have points on both sides of the edge {edge:.4g}; got "
                         f"[{alphas.min():.4g}, {alphas.max():.4g}]")
    return int(np.argmin(np.abs(alphas - edge / 2))), int(inside[-1]), int(outside[0])


def fig2a_table(alphas, horizons: Sequence[int], var, edge: float) -> Table:
    """The variance grid read at three step sizes: mid-range, just inside and just past the edge."""
    i_mid, i_in, i_out = edge_columns(alphas, edge)
    rows = [[T, row[i_mid], row[i_in], row[i_out], row[i_out] / row[i_mid]] for T, row in zip(horizons, var)]
    return table(["T", f"α = {alphas[i_mid]:.3f} (mid-range)", f"α = {alphas[i_in]:.3f} (inside)",
                  f"α = {alphas[i_out]:.3f} (past the edge)", "past / mid"], rows, digits=3)


def plot_fig2a(alphas, horizons: Sequence[int], var, edge: float):
    """Fig. 2a in two panels: the stable range α < 2/λ_max on its own scale (where the curves differ by a few
    decades), and the full grid including past the edge (where they span a hundred and more)."""
    import matplotlib.pyplot as plt

    alphas, var = np.asarray(alphas), np.asarray(var)
    cmap, norm = _horizon_colours(horizons)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.25, 1]})
    stable = alphas < edge
    for T, row in zip(horizons, var):
        ax0.semilogy(alphas[stable], row[stable], color=cmap(norm(T)), lw=1.2)
        ax1.semilogy(alphas, row, color=cmap(norm(T)), lw=1.2)
    ax0.set(xlabel=r"nominal step $\alpha$ ($P=0$), stable range only", ylabel=r"tr $\hat\Sigma$ of the meta-gradient",
            title=r"stable range $\alpha<2/\lambda_{\max}(H)$")
    for ax in (ax0, ax1):
        ax.axvline(edge, color="crimson", ls="--", lw=1.2, label=r"$2/\lambda_{\max}(H)$")
    ax1.set(xlabel=r"nominal step $\alpha$ ($P=0$)", ylabel=r"tr $\hat\Sigma$ of the meta-gradient",
            title="full grid, past the edge included")
    ax1.legend(loc="upper left", fontsize=8)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=(ax0, ax1), label="horizon $T$", pad=0.02)
    return fig


def plot_fig2a_code_convention(alphas, horizons: Sequence[int], var, edge: float, shown=(10, 50, 100)):
    """The same statistic in the reference code's convention (no ½ in the loss, covariance 100 I): the edge
    is 1/λ_max, and ``alphas`` are that model's step sizes."""
    import matplotlib.pyplot as plt

    cmap, norm = _horizon_colours(horizons)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for k, T in enumerate(shown):  # neighbouring horizons have close colours: line styles tell them apart
        ax.semilogy(alphas, var[list(horizons).index(T)], color=cmap(norm(T)), lw=1.4, ls=("-", "-.", ":")[k % 3],
                    label=f"T={T}")
    ax.axvline(edge, color="crimson", ls="--", lw=1.2, label=r"$1/\lambda_{\max}(H)$")
    ax.set(xlabel=r"nominal step $\alpha$ ($P=0$)", ylabel=r"tr $\hat\Sigma$ of the meta-gradient",
           title="reference-code convention (no 1/2, cov $100I$)")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    return fig


def fig2a_seed_gradients(key, model, alphas, horizons: Sequence[int], edge: float, num_seeds: int,
                         min_T: int = 10) -> tuple[list, np.ndarray]:
    """Per-seed meta-gradients at the two step sizes Fig. 2a's verdict compares — mid-range and the first α past
    the edge — for every horizon ``T >= min_T``: ``(horizons used, [T, 2, seeds, 5])`` (float64, on the draws of
    :func:`star.nqm_variance.meta_gradient_variance_grid` with the same ``key``)."""
    i_mid, _, i_out = edge_columns(alphas, edge)
    used = tuple(int(T) for T in horizons if T >= min_T)
    g = nqm_variance.meta_gradient_variance_grid(key, model, np.asarray(alphas)[[i_mid, i_out]], used, num_seeds,
                                       per_seed=True)  # [T, params, 2, seeds]
    return list(used), np.transpose(np.asarray(g, np.float64), (0, 2, 3, 1))


def _log10_traces(grads) -> np.ndarray:
    """``[T, 2]`` log10 of tr Σ̂ (A.32) of ``[T, 2, seeds, 5]`` per-seed gradients."""
    dev = grads - grads.mean(axis=2, keepdims=True)
    return np.log10(np.mean(np.sum(dev ** 2, axis=-1), axis=-1))


def fig2a_checks(horizons: Sequence[int], grads, seed: int = 0, num_boot: int = 1000) -> list[Check]:
    """The Fig. 2a claim as three effects, each with a bootstrap interval over the seeds (resampled jointly across
    horizons and step sizes, ``numpy.random.default_rng(seed)``), from :func:`fig2a_seed_gradients`:

    1. the variance grows by orders of magnitude: the smallest log10 growth from mid-range to past the edge over
       T ≥ 50, minus 2 (decades beyond 100×);
    2. more steeply for longer horizons: the least-squares slope of that log10 growth against log10 T (T ≥ 10);
    3. past the edge the variance itself increases with the horizon: the slope of its log10 against log10 T.
    """
    horizons = np.asarray(horizons)
    grads = np.asarray(grads, np.float64)
    if grads.ndim != 4 or grads.shape[:2] != (len(horizons), 2) or grads.shape[2] < 2:
        raise ValueError(f"grads must have shape [len(horizons), 2, seeds >= 2, params]; got {grads.shape}")
    long = horizons >= 50
    logT = np.log10(horizons)

    def stats(g):  # g: [seeds, T, 2, 5] (seeds first, for resampling)
        lv = _log10_traces(np.moveaxis(g, 0, 2))
        growth = lv[:, 1] - lv[:, 0]
        return (growth[long].min() - 2 if long.any() else np.nan, np.polyfit(logT, growth, 1)[0],
                np.polyfit(logT, lv[:, 1], 1)[0])

    rows = np.moveaxis(grads, 2, 0)
    point = stats(rows)
    rng = np.random.default_rng(seed)
    boot = np.asarray([stats(rows[rng.integers(0, len(rows), len(rows))]) for _ in range(num_boot)])
    lo, hi = np.nanpercentile(boot, [2.5, 97.5], axis=0)
    how = f"bootstrap over {rows.shape[0]} seeds ({num_boot} resamples), horizons {horizons[0]}–{horizons[-1]}"
    questions = ("The variance grows at least 100× from mid-range to just past 2/λ_max (every T ≥ 50)",
                 "The growth is steeper for longer horizons",
                 "Past the edge the variance grows with the horizon")
    units = ("decades beyond 100×", "decades of growth per decade of T", "decades of variance per decade of T")
    out = []
    for q, u, x, a, b in zip(questions, units, point, lo, hi):
        if np.isnan(x):
            out.append(Check(q, float("nan"), -np.inf, np.inf, u, "no horizon T >= 50 in the grid"))
        else:
            out.append(Check(q, float(x), float(min(a, x)), float(max(b, x)), u, how))
    return out


def fig2a_summary(alphas, horizons: Sequence[int], var, edge: float, num_seeds: int) -> str:
    """One plain sentence with the numbers behind the Fig. 2a verdict."""
    i_mid, _, i_out = edge_columns(alphas, edge)
    horizons = list(horizons)
    k = horizons.index(50) if 50 in horizons else len(horizons) - 1
    return (f"With {num_seeds} seeds per point, the variance grows {var[k][i_out] / var[k][i_mid]:.2g}-fold from "
            f"α = {alphas[i_mid]:.2f} to α = {alphas[i_out]:.2f}, just past the edge {edge:.2f}, at T = "
            f"{horizons[k]}, and past the edge it reaches {var[-1][i_out]:.2g} at T = {horizons[-1]}.")


# ---------------------------------------------------------------------------------------------------------
# Figs. 2b–c: ES meta-training of P


def best_preconditioners(model, variants, horizon: int) -> tuple[dict, dict]:
    """``(P_star, L_star)`` by variant name: the best symmetric P for the variant's α (and momentum), from the
    closed form; variants that differ only in the meta-optimizer's weight decay share it."""
    P_star, L_star, cache = {}, {}, {}
    for v in variants:
        key = (float(v.alpha), float(v.momentum))
        if key not in cache:
            opt = dict(optimizer="heavy_ball", momentum=v.momentum) if v.momentum else {}
            P = nqm_meta.optimal_preconditioner(model, v.alpha, horizon, **opt)
            with _nqm.float64():  # Eq. (8) in float64
                cache[key] = (P, float(_nqm.expected_loss(model, v.alpha, P, horizon, **opt)))
        P_star[v.name], L_star[v.name] = cache[key]
    return P_star, L_star


def _spectral_radius(H, v, p) -> float:
    P = np.asarray(nqm_meta.symmetric_from_vector(p), np.float64)
    if v.momentum > 0:
        return _st.momentum_spectral_radius(H, v.alpha, P, momentum=v.momentum)
    return _st.spectral_radius(np.eye(len(H)) - (v.alpha * np.eye(len(H)) + P) @ H)


def es_summary(run, H) -> dict:
    """Per variant (by name): Theorem 1's band, where the unsmoothed eigenvalues left it (``below``: (9)
    violated, unstable; ``above``: (10) violated) as [seeds, steps] masks, the spectral radius of the learned
    dynamics at the start and the end (worst seed), the final eigenvalues (seed mean) and the exact meta-loss at
    the start and the end (seed mean)."""
    out = {}
    for i, v in enumerate(run.variants):
        low, high = nqm_meta.theorem1_band(H, v.alpha, v.momentum)
        eig = run.eigenvalues[i]  # [seeds, steps + 1, 2], ascending
        seeds = range(eig.shape[0])
        out[v.name] = dict(
            variant=v, band=(low, high), below=eig[..., 0] < low, above=eig[..., 1] > high,
            rho_start=max(_spectral_radius(H, v, run.p[i, s, 0]) for s in seeds),
            rho_end=max(_spectral_radius(H, v, run.p[i, s, -1]) for s in seeds),
            final=eig[:, -1].mean(0), max_eig=float(eig[..., 1].max()),
            L0=float(run.exact_loss[i, :, 0].mean()), L1=float(run.exact_loss[i, :, -1].mean()),
            depth_seeds=np.asarray(low - eig[..., 0].min(axis=1), np.float64),
            L0_seeds=np.asarray(run.exact_loss[i, :, 0], np.float64),
            L1_seeds=np.asarray(run.exact_loss[i, :, -1], np.float64), nan=int(run.nan_count[i].sum()))
    return out


def es_table(summary: Mapping, names: Sequence[str] | None = None) -> Table:
    """One row per variant: band, final eigenvalues, steps outside the band, spectral radius, meta-loss."""
    rows = []
    for name in names or list(summary):
        s = summary[name]
        rows.append([name, f"[{s['band'][0] + 0.0:.3f}, {s['band'][1]:.3f}]",
                     f"{s['final'][0]:.3f}, {s['final'][1]:.3f}", s["max_eig"],
                     int(s["below"].any(axis=0).sum()), int(s["above"].any(axis=0).sum()),
                     s["rho_end"], s["L0"], s["L1"]])
    return table(["variant", "Theorem 1 band", "final eigenvalues of P", "largest eigenvalue ever",
                  "steps below the band", "steps above the band", "ρ at the end", "L at the start",
                  "L at the end"], rows)


def plot_fig2b(run, H, P_star: Mapping, names: Sequence[str], ema: float = 0.95, colour: str = "C0",
               extra_bound: float | None = None):
    """Eigenvalues of the learned P (solid: smaller, dotted: larger; seed mean ± 1 s.e., EMA-smoothed), Theorem
    1's band (red dashed) and the eigenvalues of the best P* (grey dotted), one panel per variant."""
    import matplotlib.pyplot as plt

    index = {v.name: i for i, v in enumerate(run.variants)}
    fig, axes = plt.subplots(1, len(names), figsize=(4.3 * len(names), 3.8), sharey=True)
    axes = np.atleast_1d(axes)
    steps = np.arange(run.eigenvalues.shape[2])
    for ax, name in zip(axes, names):
        i = index[name]
        v = run.variants[i]
        for k, style in ((0, "-"), (1, ":")):
            mean, lo, hi = plotting.mean_stderr_band(run.eigenvalues[i][:, :, k], coefficient=ema)
            ax.plot(steps, mean, style, color=colour, lw=1.8)
            ax.fill_between(steps, lo, hi, color=colour, alpha=0.25)
        for y in nqm_meta.theorem1_band(H, v.alpha, v.momentum):
            ax.axhline(y, color="crimson", ls="--", lw=1.2)
        if extra_bound is not None:
            ax.axhline(extra_bound - v.alpha, color="crimson", ls="-.", lw=0.8, alpha=0.6)
        for y in np.linalg.eigvalsh(P_star[name]):
            ax.axhline(y, color="grey", ls=":", lw=1.0)
        ax.set(title=name, xlabel="outer step")
    axes[0].set_ylabel("eigenvalues of the learned $P$")
    axes[0].plot([], [], "k-", label=r"$\lambda_{\min}(P)$")
    axes[0].plot([], [], "k:", label=r"$\lambda_{\max}(P)$")
    axes[0].plot([], [], "--", color="crimson", label="Theorem 1 band" if extra_bound is None else
                 r"momentum band, $2(1+\beta)/\lambda_{\max}-\alpha$")
    if extra_bound is not None:
        axes[0].plot([], [], "-.", color="crimson", alpha=0.6, label=r"SGD bound $2/\lambda_{\max}-\alpha$")
    axes[0].plot([], [], ":", color="grey", label=r"best $P^*$ (closed form)")
    axes[0].legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    return fig


def plot_fig2c(run, L_star: Mapping, names: Sequence[str], ema: float = 0.95):
    """Left: the meta-loss ES reports (mean of the ± episodes; seed mean ± 1 s.e., EMA), on a linear axis
    limited to the range after the first 5 % of the steps (a start above it is marked at the top edge).
    Right: the excess exact meta-loss L(αI + P; T) − L(P*; T) over each variant's best symmetric P, on a log axis:
    how far each learned optimizer still is from the best one it could reach. Markers are staggered between the
    variants (:func:`star.plotting.staggered_markevery`), so that curves lying on top of each other stay visible."""
    import matplotlib.pyplot as plt

    index = {v.name: i for i, v in enumerate(run.variants)}
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(12, 3.9))
    n = run.meta_loss.shape[2]
    x = np.arange(1, n + 1)
    settled = []
    styles = ("-", "--", "-.", ":")
    k = len(names)
    for c, name in enumerate(names):
        i = index[name]
        # staggered markers: where two variants' curves coincide, the lower one still shows its own;
        mk = dict(marker="os^D"[c % 4], markeredgewidth=0)
        mean, lo, hi = plotting.mean_stderr_band(run.meta_loss[i], coefficient=ema)
        # and each curve narrower than the ones drawn before it, so that these show as a rim around it
        ax0.plot(x, mean, color=f"C{c}", ls=styles[c % 4], lw=max(2.8 - 0.7 * c, 1.0), ms=7, label=name,
                 markevery=plotting.staggered_markevery(c, k, n, 10), **mk)
        ax0.fill_between(x, lo, hi, color=f"C{c}", alpha=0.12)
        settled.append(np.concatenate([lo[n // 20:], hi[n // 20:]]))
        excess = run.exact_loss[i] - L_star[name]
        m, lo, hi = plotting.mean_stderr_band(excess)
        ax1.plot(run.exact_steps, m, color=f"C{c}", ls=styles[c % 4], ms=6, label=name,
                 markevery=plotting.staggered_markevery(c, k, len(run.exact_steps), 12), **mk)
        ax1.fill_between(run.exact_steps, np.maximum(lo, m * 1e-3), hi, color=f"C{c}", alpha=0.25)
    low, high = np.nanpercentile(np.concatenate(settled), [0.5, 99.5])
    pad = 0.1 * (high - low)
    ax0.set_ylim(low - pad, high + pad)
    for c, name in enumerate(names):
        start = plotting.mean_stderr_band(run.meta_loss[index[name]], coefficient=ema)[0][0]
        exact = float(np.mean(run.exact_loss[index[name]][:, 0]))
        if start > high + pad:
            ax0.annotate(f"{name}: the ES estimate starts at {start:.3g} (sampled episodes; exact L {exact:.3g})",
                         xy=(1, high + pad),
                         xytext=(n * 0.05, high + 0.25 * pad),
                         color=f"C{c}", fontsize=8, arrowprops=dict(arrowstyle="->", color=f"C{c}"))
    ax0.set(xlabel="outer step", ylabel="ES meta-loss estimate (mean of the ± episodes)",
            title=f"meta-loss reported by ES (EMA {ema:g})")
    ax1.set(yscale="log", xlabel="outer step", ylabel=r"$L(\alpha I+P;50)-L(P^*;50)$",
            title="exact meta-loss above the best symmetric $P^*$")
    fig.legend(*ax0.get_legend_handles_labels(), loc="lower center", ncol=len(names), fontsize=9, frameon=False,
               bbox_to_anchor=(0.5, 0.0))
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def _steps_outside(s) -> np.ndarray:
    """Per seed: outer steps at which the unsmoothed eigenvalues of P were outside Theorem 1's band."""
    return (s["below"] | s["above"]).sum(axis=1).astype(np.float64)


def fig2bc_checks(summary: Mapping, alone: str, decayed: str) -> list[Check]:
    """The Figs. 2b–c claim as three effects over the ES seeds (Student's t intervals), from :func:`es_summary`:

    1. a learned P alone reaches the stability boundary: the fraction of seeds on which the smallest eigenvalue of P
       goes below −α = 0 at some outer step, where the inner dynamics are unstable (condition (9) is necessary),
       with its Clopper–Pearson interval (no effect: it never does);
    2. nominal term + weight decay keeps P inside Theorem 1's region, where P alone does not: per seed, the steps
       outside the band of P alone minus those of nominal + P + weight decay (paired by seed);
    3. nominal term + weight decay meta-trains smoothly: per seed, the relative fall of the exact meta-loss from
       the start to the end (and no non-finite meta-gradient; one would make the interval unbounded).

    Whether a nominal term *without* weight decay keeps P inside is not part of the claim; the chapter reports it
    as a finding.
    """
    a, d = summary[alone], summary[decayed]
    n = len(a["depth_seeds"])
    fall = (d["L0_seeds"] - d["L1_seeds"]) / d["L0_seeds"]
    if d["nan"]:
        fall = np.full_like(fall, np.nan)
    how = f"mean over {n} seeds, 95 % t interval"
    return [
        Check("A learned P alone reaches the stability boundary and crosses it (λ_min(P) below −α: unstable)",
              *proportion_ci(int(np.sum(a["depth_seeds"] > 0)), n), unit="fraction of seeds",
              how=f"{int(np.sum(a['depth_seeds'] > 0))} of {n} seeds, Clopper–Pearson interval"),
        Check("Nominal term + weight decay keeps P inside Theorem 1's region, P alone does not",
              *paired_ci(_steps_outside(a), _steps_outside(d)), unit="outer steps outside the band (P alone − "
              "nominal + wd)", how=f"paired over {n} seeds, 95 % t interval"),
        Check("Nominal term + weight decay meta-trains smoothly (the exact meta-loss falls)", *mean_ci(fall),
              unit="relative fall of L(50)", how=how + ("" if not d["nan"] else "; non-finite meta-gradients")),
    ]


def fig2bc_summary(summary: Mapping, alone: str, decayed: str) -> str:
    """One plain sentence with the numbers behind the Figs. 2b–c verdict."""
    a, d = summary[alone], summary[decayed]
    n = a["below"].shape[0]
    seeds_below = int(a["below"].any(axis=1).sum())
    return (f"P alone starts on the boundary and its eigenvalues go below the band on {seeds_below} of {n} seeds "
            f"({int(a['below'].any(axis=0).sum())} outer steps in all); with a nominal term and weight decay P never "
            f"leaves the band on {int((~(d['below'] | d['above']).any(axis=1)).sum())} of {n} seeds and the exact "
            f"meta-loss falls from {d['L0']:.3g} to {d['L1']:.3g}.")


def nominal_only_finding(summary: Mapping, nominal: str) -> str:
    """The finding about nominal + P without weight decay: where its eigenvalues go and how stable it stays."""
    s = summary[nominal]
    n = s["above"].shape[0]
    return (f"Without weight decay the learned P of the nominal variant leaves Theorem 1's band at the top on "
            f"{int(s['above'].any(axis=1).sum())} of {n} seeds (largest eigenvalue {s['max_eig']:.2f} against the "
            f"bound {s['band'][1]:.2f}), towards the best P*, which lies outside the band itself; its dynamics stay "
            f"stable (largest spectral radius at the end {s['rho_end']:.2f}).")


# ---------------------------------------------------------------------------------------------------------
# Momentum (beyond the paper)


def plot_momentum_es(run, H, P_star: Mapping, names: Sequence[str], ema: float = 0.95):
    """As Fig. 2b for the heavy-ball variants, with the SGD bound (10) for comparison."""
    return plot_fig2b(run, H, P_star, names, ema=ema, colour="C2", extra_bound=2.0 / _lambda_max(H))


def momentum_table(summary: Mapping, P_star: Mapping, H, names: Sequence[str]) -> Table:
    """Where the best heavy-ball P* lies relative to the momentum band and the SGD bound, per variant."""
    rows = []
    for name in names:
        s = summary[name]
        lam = np.linalg.eigvalsh(P_star[name])
        sgd_bound = 2.0 / _lambda_max(H) - s["variant"].alpha
        rows.append([name, f"{lam[0]:.3f}, {lam[1]:.3f}", bool(s["band"][0] < lam[0] and lam[1] < s["band"][1]),
                     bool(lam[1] < sgd_bound), int((s["below"] | s["above"]).any(axis=0).sum()), s["rho_end"],
                     s["L0"], s["L1"]])
    return table(["variant", "eigenvalues of P*", "P* inside the momentum band", "P* inside the SGD bound",
                  "steps outside the band", "ρ at the end", "L at the start", "L at the end"], rows)


def plot_variance_along_boundary(boundary, num_episodes: int = 8):
    """Meta-gradient variance (left) and per-sample SNR (right) against α as a fraction of each momentum's edge."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
    for k, b in enumerate(boundary.momenta):
        colour = plt.cm.plasma(k / max(len(boundary.momenta), 1))
        axes[0].semilogy(boundary.fractions, boundary.variance[k], color=colour, label=fr"$\beta={b:g}$")
        axes[1].semilogy(boundary.fractions, boundary.snr[k], color=colour, label=fr"$\beta={b:g}$")
    for ax in axes:
        ax.axvline(1.0, color="crimson", ls="--", lw=1.2)
        ax.set_xlabel(r"$\alpha$ as a fraction of the edge $2(1+\beta)/\lambda_{\max}(H)$")
    axes[1].axhline(1 / num_episodes, color="grey", ls=":", label=f"1/N, N = {num_episodes} episodes")
    axes[0].set(ylabel=r"tr $\hat\Sigma$ of the meta-gradient ($T=50$)")
    axes[1].set(ylabel=r"SNR $\|\nabla L\|^2/\mathrm{tr}\,\hat\Sigma$")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def boundary_table(boundary) -> Table:
    """Per momentum: the edge, the variance at the smallest and the largest fraction, and the SNR."""
    f0, f1 = boundary.fractions[0], boundary.fractions[-1]
    rows = [[b, boundary.alphas[k, 0] / f0, boundary.variance[k, 0], boundary.variance[k, -1],
             np.nanmin(boundary.snr[k]), boundary.snr[k, 0]] for k, b in enumerate(boundary.momenta)]
    return table(["β", "edge α", f"variance at f = {f0:g}", f"variance at f = {f1:g}", "smallest SNR",
                  f"SNR at f = {f0:g}"], rows, digits=3)
