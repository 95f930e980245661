"""How one recorded verdict is shown: its outcome badge, the table of its checks, and its budget beside the
paper's with the fractions (used by a chapter's :class:`Verdict` and by the status page, :mod:`star.book.status`).
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from star.book import labels
from star.book.claims import CLAIMS, FINDINGS, Budget, paper_scale_budget
from star.book.verdicts import CHECK_RULE, CHECK_STATUSES, CLAIM_RULE, Check

__all__ = ["badge", "budget_rows", "budget_html", "checks_html", "count_text", "Verdict", "FindingNote"]

_COLOURS = {"reproduced": "#1a7f37", "partly": "#9a6700", "not reproduced at this budget": "#57606a",
            "contradicted": "#cf222e", "not yet": "#8c959f", "supported": "#1a7f37", "inconclusive": "#57606a"}


def badge(status: str) -> str:
    """The outcome of a check or a claim, in its colour."""
    return (f'<strong class="star-status" style="color:{_COLOURS[status]};white-space:nowrap">'
            f"{html.escape(status)}</strong>")


def _n(x) -> str:
    return f"{x:,}" if isinstance(x, int) else "n/a"


def _fraction(ours, theirs) -> str:
    return f" ({100 * ours / theirs:.0f} %)" if isinstance(ours, int) and isinstance(theirs, int) else ""


def budget_rows(claim_id: str, budget: Budget | None) -> list[tuple[str, str, str]]:
    """``[(what, ours, the paper's with the fraction)]`` for a record's budget (empty for mathematics)."""
    claim = CLAIMS[claim_id]
    if budget is None:
        return []
    paper = claim.paper_budget(budget.task)
    ref = paper_scale_budget(claim, budget)
    rows = []
    if paper is not None:
        rows.append(("task", f"{labels.task_short(budget.task)} ({_n(budget.task_size)} parameters)",
                     f"{labels.task_short(paper.task)} ({_n(paper.task_size)} parameters)"
                     + _fraction(budget.task_size, paper.task_size)))
    for field, what in (("outer_steps", "outer steps"), ("num_tasks", "inner problems per estimate N"),
                        ("horizon", "inner horizon"), ("seeds", "seeds")):
        ours = getattr(budget, field)
        theirs = getattr(paper, field) if paper is not None else None
        if ours is None and theirs is None:
            continue
        if theirs is not None:
            text = f"{_n(theirs)}{_fraction(ours, theirs)}"
        elif ref is not None and getattr(ref, field) is not None and field != "seeds":
            text = f"not stated; the book's paper-scale setting {_n(getattr(ref, field))}" \
                   f"{_fraction(ours, getattr(ref, field))}"
        else:
            text = "not stated"
        rows.append((what, _n(ours), text))
    return rows


def budget_html(rec) -> str:
    """A record's budget beside the paper's (:func:`budget_rows`), its other departures and why it falls short of the
    paper's regime."""
    e = html.escape
    rows = budget_rows(rec.claim, rec.budget)
    if not rows:
        return "<p><em>Budget:</em> mathematics, checked numerically; no budget applies.</p>"
    body = "".join(f"<tr><td>{e(a)}</td><td>{e(b)}</td><td>{e(c)}</td></tr>" for a, b, c in rows)
    notes = "".join(f"<li>{e(n)}</li>" for n in rec.budget.notes)
    short = "".join(f"<li>{e(s)}</li>" for s in rec.shortfalls)
    out = (f'<table class="star-table star-budget"><thead><tr><th>budget</th><th>here</th><th>the paper'
           f"</th></tr></thead><tbody>{body}</tbody></table>")
    if notes:
        out += f"<p><em>Other departures:</em></p><ul>{notes}</ul>"
    out += (f"<p><em>Short of the paper's regime:</em></p><ul>{short}</ul>" if short else
            "<p><em>This budget reaches the paper's regime.</em></p>")
    return out


def checks_html(checks: Sequence[Check]) -> str:
    """The checks as a table: question, effect with its interval, outcome, how measured."""
    e = html.escape
    rows = "".join(f"<tr><td>{e(c.question)}</td><td><span style='white-space:nowrap'>"
                   f"{e(c.interval_text().removesuffix(' ' + c.unit) if c.unit else c.interval_text())}</span>"
                   + (f"<br/><small>{e(c.unit)}</small>" if c.unit else "") + "</td>"
                   f"<td>{badge(c.status)}</td><td>{e(c.how)}</td></tr>" for c in checks)
    return (f'<table class="star-table star-checks"><thead><tr><th>check</th><th>effect [95 % interval]</th>'
            f"<th>outcome</th><th>how measured</th></tr></thead><tbody>{rows}</tbody></table>")


def count_text(checks: Sequence[Check]) -> str:
    """``2 supported, 1 inconclusive``"""
    counts = {s: sum(c.status == s for c in checks) for s in CHECK_STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A recorded verdict as a chapter shows it: the claim, the verdict, the budget and (folded) the checks."""

    record: Any  # a star.book.records.ClaimRecord (which records the verdict and returns this)
    path: Path

    @property
    def status(self) -> str:
        return self.record.status

    def _repr_html_(self) -> str:
        r, claim = self.record, CLAIMS[self.record.claim]
        e = html.escape
        return (f'<div class="star-verdict"><p><strong>Verdict on the paper\'s claim “{e(claim.title)}”</strong> '
                f"({e(claim.paper)}): {badge(r.status)}. {e(r.summary)}</p>"
                f"<details><summary>Checks ({e(count_text(r.checks))}) and budget</summary>"
                f"<p><em>Claim.</em> {e(claim.statement)}</p>{checks_html(r.checks)}{budget_html(r)}"
                + (f"<p><em>Numbers.</em> {e(r.evidence)}</p>" if r.evidence else "")
                + f"<p><em>Rule.</em> {e(CHECK_RULE)}; a claim is {e(CLAIM_RULE)}.</p></details></div>")

    def __repr__(self) -> str:
        r = self.record
        lines = [f"Verdict on {CLAIMS[r.claim].title}: {r.status}. {r.summary}"]
        lines += [f"  {c.status:12s} {c.question}: {c.interval_text()}" for c in r.checks]
        lines += [f"  short of the paper's regime: {s}" for s in r.shortfalls]
        return "\n".join(lines)


class FindingNote:
    """One of the book's own findings as the chapter that records it shows it: its title and its sentence."""

    def __init__(self, rec):
        self.record = rec

    def _repr_html_(self) -> str:
        e = html.escape
        return (f'<div class="star-verdict star-finding"><p><strong>Our finding (not a claim of the paper): '
                f'{e(FINDINGS[self.record.finding])}.</strong> {e(self.record.summary)}</p></div>')

    def __repr__(self) -> str:
        return f"Our finding: {FINDINGS[self.record.finding]}. {self.record.summary}"

