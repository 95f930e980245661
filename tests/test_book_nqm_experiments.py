"""star.book.nqm_experiments: the NQM chapter's figures and the verdict rules of Figs. 2a and 2b–c."""

from types import SimpleNamespace

import numpy as np
import pytest

from star import nqm
from star import nqm_experiments as E
from star.book import nqm_experiments as F
from star.book.claims import status_from_checks

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


def test_fig2a_verdict_follows_the_grid():
    assert status_from_checks(F.fig2a_checks(ALPHAS, HORIZONS, _grid(), EDGE)) == "reproduced"
    # no explosion past the edge (growth < 100x): partly, then refuted when nothing grows with T either
    flat = _grid()
    flat[:, ALPHAS > EDGE] = 50.0
    assert status_from_checks(F.fig2a_checks(ALPHAS, HORIZONS, flat, EDGE)) == "refuted"
    same_for_all_T = _grid(past_grows_with_T=False)
    checks = F.fig2a_checks(ALPHAS, HORIZONS, same_for_all_T, EDGE)
    assert status_from_checks(checks) == "partly" and list(checks.values()) == [True, False, False]


def test_edge_columns_needs_points_on_both_sides():
    i_mid, i_in, i_out = F.edge_columns(ALPHAS, EDGE)
    assert ALPHAS[i_in] < EDGE < ALPHAS[i_out] and i_in + 1 == i_out
    with pytest.raises(ValueError, match="both sides of the edge"):
        F.edge_columns(ALPHAS[ALPHAS < EDGE], EDGE)


def test_fig2a_has_a_stable_range_panel_on_its_own_scale():
    import matplotlib.pyplot as plt
    var = _grid()
    fig = F.plot_fig2a(ALPHAS, HORIZONS, var, EDGE)
    stable, full = fig.axes[:2]
    assert all(np.max(l.get_xdata()) < EDGE for l in stable.get_lines() if len(l.get_xdata()) > 2)
    assert stable.get_ylim()[1] < var.max() / 1e3  # the explosion does not set the stable panel's scale
    assert full.get_ylim()[1] >= var.max()
    plt.close(fig)


def _fake_run(eig_alone, eig_nom, eig_wd, rho_alone_up=False):
    """An ES run of the three SGD variants, two seeds, three outer steps, with the given eigenvalue paths."""
    variants = (E.ESVariant("learned P alone", 0.0), E.ESVariant("nominal + P", 0.3),
                E.ESVariant("nominal + P + wd", 0.3, weight_decay=0.5))
    eig = np.stack([np.broadcast_to(np.asarray(e, float), (2, 3, 2)) for e in (eig_alone, eig_nom, eig_wd)])
    p = np.zeros((3, 2, 3, 3))
    for i in range(3):  # diagonal P with the final eigenvalues, so the spectral radius can be computed
        p[i, :, -1] = [eig[i, 0, -1, 0], 0.0, eig[i, 0, -1, 1]]
    if rho_alone_up:
        p[0, :, 0] = [0.5, 0.0, 0.5]  # start from a stable P: the end (diag(-0.1, ...)) is then less stable
    return SimpleNamespace(variants=variants, eigenvalues=eig, p=p, exact_loss=np.array([[[2.0, 1.0]] * 2] * 3),
                           nan_count=np.zeros((3, 2, 3)), meta_loss=np.ones((3, 2, 3)), exact_steps=np.array([0, 2]))


def test_fig2bc_verdict_follows_where_the_eigenvalues_go():
    H = nqm.PAPER_H
    inside, above = [[0.0, 0.2]] * 3, [[0.0, 0.2], [0.0, 1.2], [0.0, 1.8]]
    # what the chapter finds: P alone and nominal + P leave the band at the top, only weight decay stays inside
    found = F.es_summary(_fake_run(above, above, inside), H)
    checks = F.fig2bc_checks(found, "learned P alone", "nominal + P", "nominal + P + wd")
    assert status_from_checks(checks) == "partly"
    assert not checks["the nominal term alone (no weight decay) also keeps P inside Theorem 1's region"]
    # the paper's picture: P alone drifts towards instability, both nominal variants stay inside
    drift = [[0.0, 0.2], [-0.05, 0.5], [-0.1, 0.9]]
    paper = F.es_summary(_fake_run(drift, inside, inside, rho_alone_up=True), H)
    assert status_from_checks(F.fig2bc_checks(paper, *[v.name for v in _fake_run(drift, inside, inside).variants])) \
        == "reproduced"
    # weight decay fails too and P alone stays inside: nothing of the claim holds
    run = _fake_run(inside, above, above)
    run.exact_loss[2] = [[1.0, 2.0]] * 2  # and the decayed optimizer gets worse
    worst = F.es_summary(run, H)
    assert status_from_checks(F.fig2bc_checks(worst, "learned P alone", "nominal + P", "nominal + P + wd")) == "refuted"


def test_fig2c_shows_the_excess_over_the_best_p_on_a_log_axis():
    import matplotlib.pyplot as plt
    run = _fake_run([[0.0, 0.2]] * 3, [[0.0, 0.2]] * 3, [[0.0, 0.2]] * 3)
    run.meta_loss = np.full((3, 2, 60), 1.2) + np.linspace(0.1, 0.0, 60)
    run.meta_loss[0, :, :2] = 9.0  # P alone starts far above the others
    names = [v.name for v in run.variants]
    L_star = {n: 0.5 for n in names}
    fig = F.plot_fig2c(run, L_star, names, ema=0.0)
    left, right = fig.axes
    assert right.get_yscale() == "log"
    assert np.allclose(right.get_lines()[0].get_ydata(), [1.5, 0.5])  # L - L*, not L
    assert left.get_ylim()[1] < 9.0 and any("starts at" in t.get_text() for t in left.texts)
    plt.close(fig)
