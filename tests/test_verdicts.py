"""star.book.verdicts: a check is decided by its interval, a claim by the rule over its checks and budgets."""

import math

import numpy as np
import pytest
from claim_evidence import CONTRADICTED, INCONCLUSIVE, SUPPORTED

from star.book import verdicts
from star.book.verdicts import Check, claim_status


@pytest.mark.parametrize("effect, low, high, status", [
    (0.3, 0.1, 0.5, "supported"), (0.3, -0.1, 0.7, "inconclusive"), (-0.3, -0.5, -0.1, "contradicted"),
    (0.0, 0.0, 0.0, "inconclusive"), (float("nan"), -math.inf, math.inf, "inconclusive"),
])
def test_a_check_is_decided_by_its_interval(effect, low, high, status):
    assert Check("q", effect, low, high).status == status


def test_a_significant_check_becomes_inconclusive_when_its_interval_widens():
    """The same effect: supported with a narrow interval, inconclusive with a wide one; reversed, contradicted."""
    assert Check("q", 0.2, 0.05, 0.35).status == "supported"
    assert Check("q", 0.2, -0.05, 0.45).status == "inconclusive"
    assert Check("q", -0.2, -0.35, -0.05).status == "contradicted"


@pytest.mark.parametrize("kwargs, match", [
    (dict(question=" "), "question must be a non-empty sentence"),
    (dict(effect=True), "effect must be a number"),
    (dict(low="0.1"), "low must be a number"),
    (dict(low=0.6, high=0.5), "low <= high"),
    (dict(effect=0.9), "must lie in its interval"),
    (dict(effect=float("nan")), "NaN effect needs the interval"),
])
def test_check_rejects_bad_input(kwargs, match):
    args = dict(question="q", effect=0.3, low=0.1, high=0.5) | kwargs
    with pytest.raises(ValueError, match=match):
        Check(**args)


def test_every_claim_status_is_reachable_and_follows_the_evidence():
    """All supported → reproduced; some → partly; none supported with a contradicted check at a budget in the
    paper's regime → contradicted; the same contradicted check at a small budget, or only inconclusive checks →
    not reproduced at this budget; no evidence → not yet."""
    assert claim_status([([SUPPORTED, SUPPORTED], ["small"])]) == "reproduced"
    assert claim_status([([SUPPORTED, INCONCLUSIVE], [])]) == "partly"
    assert claim_status([([SUPPORTED, CONTRADICTED], [])]) == "partly"
    assert claim_status([([CONTRADICTED, INCONCLUSIVE], [])]) == "contradicted"
    assert claim_status([([CONTRADICTED, INCONCLUSIVE], ["200 outer steps of 5000"])]) == \
        "not reproduced at this budget"
    assert claim_status([([INCONCLUSIVE, INCONCLUSIVE], [])]) == "not reproduced at this budget"
    assert claim_status([]) == "not yet"
    # two records: the contradiction counts only where its own budget reaches the regime
    assert claim_status([([CONTRADICTED], ["small"]), ([INCONCLUSIVE], [])]) == "not reproduced at this budget"
    assert claim_status([([INCONCLUSIVE], ["small"]), ([CONTRADICTED], [])]) == "contradicted"
    assert claim_status([([INCONCLUSIVE], ["small"]), ([SUPPORTED], [])]) == "partly"
    assert set(verdicts.STATUSES) == {"reproduced", "partly", "contradicted", "not reproduced at this budget",
                                    "not yet"}


def test_no_claim_is_contradicted_on_a_non_significant_difference():
    """Whatever the budget, a reversal whose interval includes zero never contradicts a claim."""
    reversed_but_noisy = Check("A is lower than B", -0.3, -0.8, 0.2)
    for short in ([], ["small"]):
        for others in ([], [INCONCLUSIVE], [reversed_but_noisy]):
            assert claim_status([([reversed_but_noisy, *others], short)]) == "not reproduced at this budget"


def test_interval_text_and_summaries():
    assert Check("q", float("nan"), -math.inf, math.inf).interval_text() == "n/a [−∞, +∞]"
    text = verdicts.summarize_checks([SUPPORTED, INCONCLUSIVE, CONTRADICTED])
    assert text == ("Supported: A is lower than B. Inconclusive: A is lower than B. "
                    "Contradicted: A is lower than B.")
    assert np.isclose(Check("q", np.float32(0.5), 0, 1).effect, 0.5)


def test_count_sentence_says_how_the_checks_came_out():
    assert verdicts.count_sentence([SUPPORTED, SUPPORTED]) == "all 2 checks are supported"
    assert verdicts.count_sentence([SUPPORTED, INCONCLUSIVE]) == "1 of 2 checks is supported and none is contradicted"
    assert verdicts.count_sentence([INCONCLUSIVE] * 4) == "none of the 4 checks is beyond the noise"
    assert verdicts.count_sentence([CONTRADICTED, INCONCLUSIVE]) == \
        "none of the 2 checks is supported and 1 is contradicted"
