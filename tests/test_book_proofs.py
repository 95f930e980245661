"""star.book.proofs_trials, proofs_regions and proofs_verdicts: the proofs chapter's random-instance checks, region
and cancellation figures, and verdict rules."""

import numpy as np
import pytest

from star import nqm
from star.book.proofs_regions import plot_cancellation, plot_stability_regions, region_table, stability_regions
from star.book.proofs_trials import Trials, lemma3_trials, theorem1_trials
from star.book.proofs_verdicts import lemma2_checks, lemma3_checks, theorem1_checks
from star.book.verdicts import claim_status


def _status(checks):
    return claim_status([(checks, ())])


REGIONS = stability_regions(nqm.PAPER_H, np.linspace(0.01, 1.7, 40), np.linspace(-2, 3, 40), d_bars=(2.0,))


@pytest.mark.parametrize("worst, first, expected", [(0.99, "supported", "reproduced"),
                                                    (1.02, "contradicted", "partly"),
                                                    (float("nan"), "inconclusive", "partly")])
def test_theorem1_verdict_follows_its_evidence(worst, first, expected):
    """The effect is 1 − the largest spectral radius found: one unstable instance makes the check contradicted;
    no instance at all leaves it undecided."""
    checks = theorem1_checks(Trials("Theorem 1", 10, 6, 6, 10, 5, 5, worst_rho=worst), REGIONS)
    assert [c.status for c in checks] == [first, "supported"]  # the paper's H: Theorem 1's region is stable
    assert _status(checks) == expected


def test_a_region_outside_the_stable_one_contradicts_theorem1():
    import dataclasses
    bad = dataclasses.replace(REGIONS, masks={k: dict(m, theorem1=np.ones_like(m["theorem1"]))
                                              for k, m in REGIONS.masks.items()})
    checks = theorem1_checks(Trials("Theorem 1", 10, 6, 6, 10, 5, 5, worst_rho=0.9), bad)
    assert checks[1].status == "contradicted" and _status(checks) == "partly"
    checks = theorem1_checks(Trials("Theorem 1", 10, 6, 6, 10, 5, 5, worst_rho=1.1), bad)
    assert _status(checks) == "contradicted"


def test_lemma2_and_lemma3_verdicts_flip():
    ok = Trials("Lemma 2", 10, 4, 4, worst_rho=0.95)
    assert _status(lemma2_checks(ok, nqm.PAPER_H)) == "reproduced"
    # on a curvature below one, preconditioning shrinks the step range: the second check is contradicted
    assert _status(lemma2_checks(ok, 0.5 * np.eye(2))) == "partly"
    assert _status(lemma2_checks(Trials("Lemma 2", 10, 4, 3, worst_rho=1.2), 0.5 * np.eye(2))) \
        == "contradicted"
    good = Trials("Lemma 3", 10, 30, 30, unit="errors", worst_rho=0.97)
    assert _status(lemma3_checks(good, REGIONS)) == "reproduced"
    import dataclasses
    loose = dataclasses.replace(REGIONS, masks={k: {**m, ("robust_bound", 2.0): np.ones_like(m["exact"])}
                                                for k, m in REGIONS.masks.items()})
    assert _status(lemma3_checks(good, loose)) == "partly"
    bad = Trials("Lemma 3", 10, 30, 29, worst_rho=1.01)
    assert _status(lemma3_checks(bad, loose)) == "contradicted"


def test_random_trials_are_deterministic_and_consistent():
    a = theorem1_trials(np.random.default_rng(7), 30)
    assert a == theorem1_trials(np.random.default_rng(7), 30)
    assert a.total == 30 and 0 < a.held <= 30 and a.stable == a.held and a.agree == 30
    assert a.strict_stable == a.strict_held <= a.held and a.worst_rho < 1
    assert "held on" in str(a) and "exact criterion matched" in str(a)
    lemma3 = lemma3_trials(np.random.default_rng(3), 10)
    assert lemma3.stable == lemma3.held > 0 and "sampled diagonal errors" in str(lemma3)


def test_region_figure_and_table():
    import matplotlib.pyplot as plt
    regions = stability_regions(nqm.PAPER_H, np.linspace(0.01, 1.7, 12), np.linspace(-2, 3, 12), d_bars=(2.0,))
    assert set(regions.nested().values()) == {True}
    fig = plot_stability_regions(regions)
    assert len(fig.axes) == 3 and all(ax.get_xlabel().startswith("nominal step") for ax in fig.axes)
    # for P = pI the robust bounds are exact: the hidden dotted contour is named in that panel's title only
    assert ["coincide with the exact robust region" in ax.get_title() for ax in fig.axes] == [True, False, False]
    plt.close(fig)
    t = region_table(regions)
    assert t.columns[-1] == "nested" and len(t.cells) == 3 and all(r[-1] == "yes" for r in t.cells)


def test_cancellation_figure_shows_three_curves():
    import matplotlib.pyplot as plt
    fig = plot_cancellation(nqm.PAPER_H, 0.5, np.diag([0.0, 0.6]), eps=np.linspace(-0.5, 0.5, 11))
    lines = [l for l in fig.axes[0].get_lines() if len(l.get_xdata()) == 11]
    assert len(lines) == 3
    cancel_q0 = lines[0].get_ydata()
    assert np.all(cancel_q0[np.linspace(-0.5, 0.5, 11) > 0] > 1)  # any positive error destabilizes
    plt.close(fig)
