"""Checks and the one rule that turns them into a verdict on a claim of the paper.

A chapter that tests a claim asks questions the claim answers and measures each as an *effect*, oriented so that a
positive value is the paper's direction, with a 95 % confidence interval (:mod:`star.book.stats`). A :class:`Check`
is then

* *supported* — the interval lies above zero;
* *contradicted* — it lies below zero (a significant difference the other way);
* *inconclusive* — it contains zero.

**Claim verdict** (:func:`claim_status`, the rule :data:`CLAIM_RULE`): *reproduced* when every check is supported;
*partly* when some are; *contradicted* when none is and a check is contradicted on evidence whose budget reaches the
paper's regime (:func:`star.book.claims.shortfalls`); otherwise *not reproduced at this budget*. So no claim is
contradicted on a non-significant difference, nor on a significant one measured far from the paper's regime.

Statuses are computed from the checks whenever a page shows them — a record (:mod:`star.book.records`) holds
evidence, not a verdict — so a change of the rule reaches every page on the next build.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Sequence

__all__ = ["CHECK_STATUSES", "STATUSES", "CHECK_RULE", "CLAIM_RULE", "Check", "check_status", "claim_status",
           "count_sentence", "summarize_checks"]

CHECK_STATUSES = ("supported", "inconclusive", "contradicted")
STATUSES = ("reproduced", "partly", "not reproduced at this budget", "contradicted", "not yet")
CHECK_RULE = ("each check measures an effect, signed so that a positive value is the paper's direction, with a "
              "95 % confidence interval: supported when the interval lies above zero, contradicted when it lies "
              "below zero, inconclusive when it contains zero")
CLAIM_RULE = ("reproduced when every check is supported; partly when some are; contradicted when none is and "
              "a check is contradicted at a budget that reaches the paper's regime; otherwise not reproduced "
              "at this budget")


def check_status(effect: float, low: float, high: float) -> str:
    """``supported`` if ``low > 0``, ``contradicted`` if ``high < 0``, else ``inconclusive`` (:data:`CHECK_RULE`)."""
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "inconclusive"


@dataclasses.dataclass(frozen=True)
class Check:
    """One question a claim answers, measured: ``effect`` (positive = the paper's direction) with the 95 %
    interval ``[low, high]`` in ``unit``; ``how`` says how both were computed. ``effect`` may be NaN (e.g. a
    diverged run) only with an unbounded interval."""

    question: str
    effect: float
    low: float
    high: float
    unit: str = ""
    how: str = ""

    def __post_init__(self):
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError(f"question must be a non-empty sentence; got {self.question!r}")
        vals = []
        for f in ("effect", "low", "high"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"{f} must be a number (an effect and its interval, not a pass/fail); got {v!r}")
            vals.append(float(v))
            object.__setattr__(self, f, float(v))
        effect, low, high = vals
        if math.isnan(low) or math.isnan(high) or low > high:
            raise ValueError(f"low and high must bound an interval, low <= high; got [{low}, {high}]")
        if math.isnan(effect):
            if math.isfinite(low) or math.isfinite(high):
                raise ValueError("a NaN effect needs the interval (-inf, inf): the data cannot decide")
        elif not low - 1e-9 * (1 + abs(effect)) <= effect <= high + 1e-9 * (1 + abs(effect)):
            raise ValueError(f"effect {effect} must lie in its interval [{low}, {high}]")
        object.__setattr__(self, "question", self.question.strip())

    @property
    def status(self) -> str:
        return check_status(self.effect, self.low, self.high)

    def interval_text(self, digits: int = 3) -> str:
        """``+0.12 [+0.03, +0.21] nats``"""
        def f(x):
            return "−∞" if x == -math.inf else "+∞" if x == math.inf else "n/a" if math.isnan(x) else \
                f"{x:+.{digits}g}".replace("-", "−")
        return f"{f(self.effect)} [{f(self.low)}, {f(self.high)}]" + (f" {self.unit}" if self.unit else "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)



def count_sentence(checks: Sequence[Check]) -> str:
    """How the checks came out, in words: ``"all 3 checks are supported"``, ``"2 of 3 checks are supported and
    none is contradicted"``, ``"none of the 4 checks is beyond the noise"``."""
    n = len(checks)
    s = sum(c.status == "supported" for c in checks)
    c = sum(c.status == "contradicted" for c in checks)
    if s == n:
        return f"all {n} checks are supported" if n > 1 else "its check is supported"
    if s == 0 and c == 0:
        return f"none of the {n} checks is beyond the noise" if n > 1 else "its check is within the noise"
    contra = "none is contradicted" if c == 0 else f"{c} {'is' if c == 1 else 'are'} contradicted"
    if s == 0:
        return f"none of the {n} checks is supported and {contra}"
    return f"{s} of {n} checks {'is' if s == 1 else 'are'} supported and {contra}"


def summarize_checks(checks: Sequence[Check]) -> str:
    """The checks in one plain sentence per outcome: ``"Supported: A; B. Inconclusive: C."``"""
    out = []
    for status in CHECK_STATUSES:
        qs = [c.question.rstrip(".") for c in checks if c.status == status]
        if qs:
            out.append(f"{status.capitalize()}: " + "; ".join(qs) + ".")
    return " ".join(out)


def claim_status(parts: Sequence[tuple]) -> str:
    """The verdict on a claim from its evidence (:data:`CLAIM_RULE`).

    ``parts``: ``(checks, shortfalls)`` pairs, one per record — a record's checks and why its budget falls short of
    the paper's regime (empty: it reaches it). No parts: ``"not yet"``."""
    checks = [(c, bool(short)) for cs, short in parts for c in cs]
    if not checks:
        return "not yet"
    statuses = [c.status for c, _ in checks]
    if all(s == "supported" for s in statuses):
        return "reproduced"
    if "supported" in statuses:
        return "partly"
    if any(c.status == "contradicted" and not short for c, short in checks):
        return "contradicted"
    return "not reproduced at this budget"
