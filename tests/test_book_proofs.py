"""star.book.proofs: the proofs chapter's random-instance checks, figures and verdict rules."""

import numpy as np
import pytest

from star import nqm
from star.book import proofs
from star.book.claims import status_from_checks


def _regions(theorem1_inside=True, robust_inside=True):
    exact = np.array([[True, True], [False, False]])
    m = {"exact": exact, "theorem1": exact if theorem1_inside else np.ones_like(exact),
         ("robust_bound", 2.0): exact & np.array([[True, False], [False, False]]),
         ("robust_exact", 2.0): exact if robust_inside else np.zeros_like(exact)}
    return proofs.Regions(np.array([0.1, 0.2]), np.array([-1.0, 1.0]), (2.0,), 1.36, {"P = pI": m})


@pytest.mark.parametrize("trials, regions, expected", [
    (proofs.Trials("Theorem 1", 10, 6, 6, 10, 5, 5), _regions(), "reproduced"),
    (proofs.Trials("Theorem 1", 10, 6, 5, 10, 5, 5), _regions(), "partly"),  # one instance unstable
    (proofs.Trials("Theorem 1", 10, 6, 6, 10, 5, 4), _regions(theorem1_inside=False), "partly"),
    (proofs.Trials("Theorem 1", 10, 6, 5, 10, 5, 4), _regions(theorem1_inside=False), "refuted"),
    (proofs.Trials("Theorem 1", 10, 0, 0, 10, 0, 0), _regions(theorem1_inside=False), "refuted"),  # no evidence
])
def test_theorem1_verdict_follows_its_evidence(trials, regions, expected):
    assert status_from_checks(proofs.theorem1_checks(trials, regions)) == expected


def test_lemma2_and_lemma3_verdicts_flip():
    ok = proofs.Trials("Lemma 2", 10, 4, 4)
    assert status_from_checks(proofs.lemma2_checks(ok, nqm.PAPER_H)) == "reproduced"
    # on a curvature below one, preconditioning shrinks the step range: the second check fails
    assert status_from_checks(proofs.lemma2_checks(ok, 0.5 * np.eye(2))) == "partly"
    assert status_from_checks(proofs.lemma2_checks(proofs.Trials("Lemma 2", 10, 4, 3), 0.5 * np.eye(2))) == "refuted"
    good = proofs.Trials("Lemma 3", 10, 30, 30, unit="errors")
    assert status_from_checks(proofs.lemma3_checks(good, _regions())) == "reproduced"
    assert status_from_checks(proofs.lemma3_checks(good, _regions(robust_inside=False))) == "partly"
    assert status_from_checks(proofs.lemma3_checks(proofs.Trials("Lemma 3", 10, 30, 29), _regions(False, False))) \
        == "refuted"


def test_random_trials_are_deterministic_and_consistent():
    a = proofs.theorem1_trials(np.random.default_rng(7), 30)
    assert a == proofs.theorem1_trials(np.random.default_rng(7), 30)
    assert a.total == 30 and 0 < a.held <= 30 and a.stable == a.held and a.agree == 30
    assert a.strict_stable == a.strict_held <= a.held
    assert "held on" in str(a) and "exact criterion matched" in str(a)
    lemma3 = proofs.lemma3_trials(np.random.default_rng(3), 10)
    assert lemma3.stable == lemma3.held > 0 and "sampled diagonal errors" in str(lemma3)


def test_region_figure_and_table():
    import matplotlib.pyplot as plt
    regions = proofs.stability_regions(nqm.PAPER_H, np.linspace(0.01, 1.7, 12), np.linspace(-2, 3, 12), d_bars=(2.0,))
    assert set(regions.nested().values()) == {True}
    fig = proofs.plot_stability_regions(regions)
    assert len(fig.axes) == 3 and all(ax.get_xlabel().startswith("nominal step") for ax in fig.axes)
    plt.close(fig)
    t = proofs.region_table(regions)
    assert t.columns[-1] == "nested" and len(t.cells) == 3 and all(r[-1] == "yes" for r in t.cells)


def test_cancellation_figure_shows_three_curves():
    import matplotlib.pyplot as plt
    fig = proofs.plot_cancellation(nqm.PAPER_H, 0.5, np.diag([0.0, 0.6]), eps=np.linspace(-0.5, 0.5, 11))
    lines = [l for l in fig.axes[0].get_lines() if len(l.get_xdata()) == 11]
    assert len(lines) == 3
    cancel_q0 = lines[0].get_ydata()
    assert np.all(cancel_q0[np.linspace(-0.5, 0.5, 11) > 0] > 1)  # any positive error destabilizes
    plt.close(fig)
