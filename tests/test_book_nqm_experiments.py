"""star.book.nqm_experiments: the NQM chapter's figures and the verdict rules of Figs. 2a and 2b–c."""

from types import SimpleNamespace

import numpy as np
import pytest

from star import nqm, nqm_meta
from star.book import figures, nqm_experiments
from star.book.verdicts import claim_status

EDGE = 2.0 / np.linalg.eigvalsh(nqm.PAPER_H)[-1]
ALPHAS = np.linspace(0.05, 1.05 * EDGE, 12)
HORIZONS = (1, 10, 50, 100)


def _grid(inside_growth=1.0, past_grows_with_T=True):
    """A variance grid shaped like Fig. 2a: U-shaped inside, exploding past the edge (more for longer T)."""
    var = np.empty((len(HORIZONS), ALPHAS.size))
    for k, T in enumerate(HORIZONS):
        inside = 1.0 + (ALPHAS - EDGE / 2) ** 2
        power = T if past_grows_with_T else 1
        var[k] = np.where(ALPHAS < EDGE, inside * inside_growth, 10.0 ** (3 + power / 10))
    return var


def _grads(growth_per_T, past_T_slope, seeds=60, seed=0):
    """Per-seed gradients [T, 2, seeds, 5] whose variance is 1 at mid-range and, past the edge,
    10**(growth(T)) with growth(T) = growth_per_T · log10 T + 2.5 (so its slope in log10 T is growth_per_T)."""
    rng = np.random.default_rng(seed)
    T = np.asarray(HORIZONS_LONG, float)
    g = rng.standard_normal((len(T), 2, seeds, 5)) / np.sqrt(5)
    scale = 10.0 ** ((growth_per_T * np.log10(T) + 2.5) / 2)
    g[:, 1] *= scale[:, None, None]
    if past_T_slope is not None:  # shift mid-range so that the past-edge slope differs from the growth's
        g[:, 0] *= (10.0 ** (((growth_per_T - past_T_slope) * np.log10(T)) / 2))[:, None, None]
    return g


HORIZONS_LONG = (10, 50, 100, 300)


def test_fig2a_verdict_follows_the_variance():
    """Growth past the edge by orders of magnitude, steeper for longer T: every check supported. Flat in T: the
    'steeper' checks are not; no growth at all: the first is contradicted."""
    status = lambda checks: claim_status([(checks, ())])  # noqa: E731
    checks = nqm_experiments.fig2a_checks(HORIZONS_LONG, _grads(2.0, None))
    assert [c.status for c in checks] == ["supported"] * 3 and status(checks) == "reproduced"
    flat = nqm_experiments.fig2a_checks(HORIZONS_LONG, _grads(0.0, None))
    assert [c.status for c in flat] == ["supported", "inconclusive", "inconclusive"] and status(flat) == "partly"
    shrinking = nqm_experiments.fig2a_checks(HORIZONS_LONG, _grads(-1.0, -1.0))
    assert shrinking[1].status == shrinking[2].status == "contradicted"
    none = _grads(0.0, None)
    none[:, 1] = none[:, 0]  # the same variance past the edge as mid-range
    checks = nqm_experiments.fig2a_checks(HORIZONS_LONG, none)
    assert checks[0].status == "contradicted" and status(checks) == "contradicted"
    with pytest.raises(ValueError, match="grads must have shape"):
        nqm_experiments.fig2a_checks(HORIZONS_LONG, none[:2])


def test_fig2a_seed_gradients_match_the_grid():
    import jax

    from star import nqm_variance
    model, alphas = nqm.paper_nqm(), ALPHAS
    var = nqm_variance.meta_gradient_variance_grid(jax.random.key(0), model, alphas, (10, 50), 30)
    used, g = nqm_experiments.fig2a_seed_gradients(jax.random.key(0), model, alphas, (1, 10, 50), EDGE, 30)
    i_mid, _, i_out = nqm_experiments.edge_columns(alphas, EDGE)
    assert used == [10, 50] and g.shape == (2, 2, 30, 5)
    np.testing.assert_allclose(10 ** nqm_experiments._log10_traces(g), var[:, [i_mid, i_out]], rtol=1e-9)


def test_edge_columns_needs_points_on_both_sides():
    i_mid, i_in, i_out = nqm_experiments.edge_columns(ALPHAS, EDGE)
    assert ALPHAS[i_in] < EDGE < ALPHAS[i_out] and i_in + 1 == i_out
    with pytest.raises(ValueError, match="both sides of the edge"):
        nqm_experiments.edge_columns(ALPHAS[ALPHAS < EDGE], EDGE)


def test_fig2a_has_a_stable_range_panel_on_its_own_scale():
    import matplotlib.pyplot as plt
    var = _grid()
    fig = nqm_experiments.plot_fig2a(ALPHAS, HORIZONS, var, EDGE)
    stable, full = fig.axes[:2]
    assert all(np.max(l.get_xdata()) < EDGE for l in stable.get_lines() if len(l.get_xdata()) > 2)
    assert stable.get_ylim()[1] < var.max() / 1e3  # the explosion does not set the stable panel's scale
    assert full.get_ylim()[1] >= var.max()
    plt.close(fig)


def _fake_run(eig_alone, eig_nom, eig_wd, rho_alone_up=False, seed_noise=False):
    """An ES run of the three SGD variants, three outer steps, with the given eigenvalue paths: two identical seeds,
    or with ``seed_noise`` four seeds whose paths are 1, 1.2, 1.4, 1.6 times the given ones."""
    variants = (nqm_meta.ESVariant("learned P alone", 0.0), nqm_meta.ESVariant("nominal + P", 0.3),
                nqm_meta.ESVariant("nominal + P + wd", 0.3, weight_decay=0.5))
    seeds = 4 if seed_noise else 2
    eig = np.stack([np.broadcast_to(np.asarray(e, float), (seeds, 3, 2)).copy()
                    for e in (eig_alone, eig_nom, eig_wd)])
    if seed_noise:
        eig *= (1 + 0.2 * np.arange(seeds))[None, :, None, None]
    p = np.zeros((3, seeds, 3, 3))
    for i in range(3):  # diagonal P with the final eigenvalues, so the spectral radius can be computed
        p[i, :, -1] = [eig[i, 0, -1, 0], 0.0, eig[i, 0, -1, 1]]
    if rho_alone_up:
        p[0, :, 0] = [0.5, 0.0, 0.5]  # start from a stable P: the end (diag(-0.1, ...)) is then less stable
    loss = np.array([[[2.0, 1.0 + 0.05 * k * seed_noise] for k in range(seeds)]] * 3)
    return SimpleNamespace(variants=variants, eigenvalues=eig, p=p, exact_loss=loss,
                           nan_count=np.zeros((3, seeds, 3)), meta_loss=np.ones((3, seeds, 3)),
                           exact_steps=np.array([0, 2]))


def test_fig2bc_verdict_follows_where_the_eigenvalues_go():
    H = nqm.PAPER_H
    status = lambda checks: claim_status([(checks, ())])  # noqa: E731
    inside, above = [[0.0, 0.2]] * 3, [[0.0, 0.2], [0.0, 1.2], [0.0, 1.8]]
    below = [[0.0, 0.2], [-0.05, 0.5], [-0.1, 0.9]]
    # the paper's picture: P alone goes below the band (unstable) on every seed, weight decay keeps P inside
    found = nqm_experiments.es_summary(_fake_run(below, above, inside, seed_noise=True), H)
    checks = nqm_experiments.fig2bc_checks(found, "learned P alone", "nominal + P + wd")
    assert [c.status for c in checks] == ["supported"] * 3 and status(checks) == "reproduced"
    # P alone never leaves the band: the first two checks are undecided (zero effect), not supported
    calm = nqm_experiments.es_summary(_fake_run(inside, inside, inside, seed_noise=True), H)
    assert [c.status for c in nqm_experiments.fig2bc_checks(calm, "learned P alone", "nominal + P + wd")][:2] == \
        ["inconclusive", "inconclusive"]
    # the decayed optimizer leaves the band where P alone does not, and gets worse: contradicted
    run = _fake_run(inside, inside, above, seed_noise=True)
    run.exact_loss[2] = [[1.0, 2.0], [1.0, 2.1], [1.0, 2.3], [1.0, 2.2]]
    worst = nqm_experiments.fig2bc_checks(nqm_experiments.es_summary(run, H), "learned P alone", "nominal + P + wd")
    assert [c.status for c in worst][1:] == ["contradicted", "contradicted"] and status(worst) == "contradicted"
    # the nominal variant without decay is a finding, not a check
    assert "leaves Theorem 1's band at the top on 2 of 2 seeds" in nqm_experiments.nominal_only_finding(
        nqm_experiments.es_summary(_fake_run(below, above, inside), H), "nominal + P")


def test_fig2c_shows_the_excess_over_the_best_p_on_a_log_axis():
    import matplotlib.pyplot as plt
    run = _fake_run([[0.0, 0.2]] * 3, [[0.0, 0.2]] * 3, [[0.0, 0.2]] * 3)
    run.meta_loss = np.full((3, 2, 60), 1.2) + np.linspace(0.1, 0.0, 60)
    run.meta_loss[0, :, :2] = 9.0  # P alone starts far above the others
    names = [v.name for v in run.variants]
    L_star = {n: 0.5 for n in names}
    fig = nqm_experiments.plot_fig2c(run, L_star, names, ema=0.0)
    left, right = fig.axes
    assert right.get_yscale() == "log"
    assert np.allclose(right.get_lines()[0].get_ydata(), [1.5, 0.5])  # L - L*, not L
    assert left.get_ylim()[1] < 9.0 and any("starts at" in t.get_text() for t in left.texts)
    # nominal + P and nominal + P + wd lie on the same values here: each still shows markers the other does not
    for ax in (left, right):
        marks = [set(range(len(line.get_xdata()))[line.get_markevery()[0]::line.get_markevery()[1]])
                 for line in ax.get_lines()[:3]]
        assert not marks[1] & marks[2] and (all(marks) or ax is right)  # (the right panel has two points)
    assert left.get_lines()[1].get_linewidth() > left.get_lines()[2].get_linewidth()  # the lower one shows as a rim
    assert figures.figure_problems(figures.figure_facts(fig)) == []
    plt.close(fig)
