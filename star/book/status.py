"""The "Reproduction status" page (``book/status.ipynb``) and the introduction's summary: the two tallies of
claims, per claim its verdict, one plain sentence, its budget beside the paper's and (folded) its checks, and the
book's own findings; computed from the records the chapters of this build wrote (:mod:`star.book.records`).
"""

from __future__ import annotations

import html
import posixpath
from collections.abc import Mapping, Sequence

from star.book import labels
from star.book.claims import CLAIMS, FINDINGS, GROUPS, paper_scale_budget
from star.book.pages import find_book_root, normalize_page, page_title, toc_pages
from star.book.records import ClaimRecord, FindingRecord, StatusRow, claims_dir, load_findings, status_rows, tallies
from star.book.verdict_html import badge, budget_html, checks_html, count_text
from star.book.verdicts import STATUSES
from star.scale import Scale, get_scale

__all__ = ["budget_phrase", "group_budget", "render_status_html", "render_own_findings_html", "render_findings_html",
           "show_status", "show_findings"]


def _href(rec, here: str) -> str:
    return posixpath.relpath(rec.chapter, here or ".") + ".html" + (f"#{rec.anchor}" if rec.anchor else "")


def _finding_title(finding: FindingRecord, here: str, link_ok) -> str:
    """A finding's title, linked to its chapter where that page is linkable (``link_ok`` ``None``: any)."""
    title = html.escape(FINDINGS[finding.finding])
    if link_ok is None or finding.chapter in link_ok:
        title = f'<a href="{html.escape(_href(finding, here))}">{title}</a>'
    return title


def group_budget(rows: Sequence[StatusRow]) -> str:
    """How the budgets of a group of claims compare with the paper's, in a few words (computed from the records)."""
    recs = [r for row in rows for r in row.records]
    if not recs:
        return "not tested in this build"
    short = sum(bool(r.shortfalls) for r in recs)
    if not short:
        return "every budget reaches the paper's regime"
    steps = []
    for r in recs:
        b = r.budget
        if b is None or not b.outer_steps:
            continue
        claim = CLAIMS[r.claim]
        paper, ref = claim.paper_budget(b.task), paper_scale_budget(claim, b)
        theirs = (paper.outer_steps if paper else None) or (ref.outer_steps if ref else None)
        if theirs:
            steps.append((b.outer_steps, theirs))
    text = f"{short} of {len(recs)} records below the paper's regime"
    if steps:
        lo, hi = min(s for s, _ in steps), max(s for s, _ in steps)
        ref = max(t for _, t in steps)
        text += (f"; {lo:,}–{hi:,}" if lo != hi else f"; {lo:,}") + f" outer steps of {ref:,}†"
    return text


def _tally_html(rows: Sequence[StatusRow]) -> str:
    e = html.escape
    head = "".join(f'<th style="overflow-wrap:normal">{e(s)}</th>' for s in STATUSES)
    body = []
    for (title, counts), (_, kinds) in zip(tallies(rows), GROUPS):
        group = [r for r in rows if r.claim.kind in kinds]
        body.append(f"<tr><td><strong>{e(title)}</strong><br/><small>{len(group)} claims; "
                    f"{e(group_budget(group))}</small></td>" + "".join(f"<td>{counts[s]}</td>" for s in STATUSES)
                    + "</tr>")
    return (f'<table class="star-table star-tally"><thead><tr><th>claims</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>"
            "<p><small>†: the book's paper-scale setting; the paper does not state its number of outer steps."
            "</small></p>")


def budget_phrase(rec: ClaimRecord) -> str:
    """``Fashion-MNIST 8×8 MLP 64-32 (2 % of the paper's parameters), 200 outer steps (4 %†), horizon 2,000,
    3 seeds`` (†: of the book's paper-scale setting, the paper not stating it)."""
    b = rec.budget
    if b is None:
        return "mathematics"
    claim = CLAIMS[rec.claim]
    paper, ref = claim.paper_budget(b.task), paper_scale_budget(claim, b)
    task = labels.task_short(b.task)
    if paper is not None and paper.task != b.task and b.task_size and paper.task_size:
        task += f" ({100 * b.task_size / paper.task_size:.0f} % of the paper's parameters)"
    parts = [task]
    if b.outer_steps:
        theirs, mark = (paper.outer_steps if paper else None), ""
        if theirs is None and ref is not None and ref.outer_steps:
            theirs, mark = ref.outer_steps, "†"
        parts.append(f"{b.outer_steps:,} outer steps" + (f" ({100 * b.outer_steps / theirs:.0f} %{mark})"
                                                         if theirs else ""))
    if b.horizon:
        parts.append(f"horizon {b.horizon:,}")
    if b.seeds:
        parts.append(f"{b.seeds} seeds")
    return ", ".join(parts)


def render_status_html(rows: Sequence[StatusRow], page: str = "book/status",
                       linkable: Sequence[str] | None = None, titles: Mapping[str, str] | None = None,
                       findings: Sequence[FindingRecord] = ()) -> str:
    """The status page's body: the two tallies, then per claim its verdict, one plain sentence, the budget and
    (collapsed) the checks; then the book's own findings. Links are relative to ``page`` and made only to pages
    in ``linkable`` (default: any)."""
    link_ok = None if linkable is None else {normalize_page(c) for c in linkable}
    titles = titles or {}
    here = posixpath.dirname(page)
    e = html.escape
    out = [_tally_html(rows), '<div class="star-claims">']
    for row in rows:
        claim = row.claim
        mark = "" if claim.quoted else "‡"
        out.append(f'<div class="star-claim"><h3 class="star-claim-title">{e(claim.title)} '
                   f"<small>({e(claim.paper)})</small></h3>")
        out.append(f"<p>{badge(row.status)}. <em>The paper{mark}:</em> {e(claim.statement)}</p>")
        if not row.records:
            out.append("<p><em>No chapter of this build tests this claim.</em></p></div>")
            continue
        for r in row.records:
            name = titles.get(r.chapter) or posixpath.basename(r.chapter)
            where = (f'<a href="{e(_href(r, here))}">{e(name)}</a>' if link_ok is None or r.chapter in link_ok
                     else e(name))
            out.append(f"<p><em>Here</em> ({e(budget_phrase(r))}; {where}): {e(r.summary)}</p>")
        checks = [c for r in row.records for c in r.checks]
        details = "".join(
            (f"<p><strong>{e(budget_phrase(r))}</strong> — {badge(r.status)}</p>" if len(row.records) > 1 else "")
            + checks_html(r.checks) + budget_html(r) + (f"<p><em>Numbers.</em> {e(r.evidence)}</p>"
                                                          if r.evidence else "") for r in row.records)
        out.append(f"<details><summary>Checks ({e(count_text(checks))}) and budget</summary>{details}</details>"
                   "</div>")
    out.append("</div>")
    if findings:
        out.append(render_own_findings_html(findings, page, linkable))
    return "\n".join(out)


def render_own_findings_html(findings: Sequence[FindingRecord], page: str = "book/status",
                             linkable: Sequence[str] | None = None) -> str:
    """The book's own findings, apart from the paper's claims: a list of titled sentences with links."""
    link_ok = None if linkable is None else {normalize_page(c) for c in linkable}
    here = posixpath.dirname(page)
    e = html.escape
    items = [f"<li><strong>{_finding_title(f, here, link_ok)}.</strong> {e(f.summary)}</li>" for f in findings]
    return f'<ul class="star-findings">{"".join(items)}</ul>'


def _this_build(scale):
    """``(scale, book root, pages of the toc, status rows, findings)`` for the book built at ``scale``."""
    scale = get_scale(scale)
    root = find_book_root()
    pages = toc_pages(root) if root is not None else None
    folder = claims_dir(scale)
    keep = None if pages is None else set(pages)
    findings = [f for f in load_findings(folder) if keep is None or f.chapter in keep]
    return scale, root, pages, status_rows(folder, chapters=pages), findings


def show_status(scale: str | Scale | None = None, part: str = "claims"):
    """Display the status page's ``part`` for the book built at ``scale`` (default ``$STAR_SCALE``):
    ``"claims"`` (the tallies and every claim) or ``"findings"`` (the book's own findings)."""
    from IPython.display import HTML  # only where a notebook displays it

    if part not in ("claims", "findings"):
        raise ValueError(f"part must be 'claims' or 'findings'; got {part!r}")
    scale, root, pages, rows, findings = _this_build(scale)
    if part == "findings":
        if not findings:
            return HTML("<p><em>No chapter of this build recorded a finding of its own.</em></p>")
        return HTML(render_own_findings_html(findings, linkable=pages))
    titles = {p: page_title(root, p) for p in pages} if pages else {}
    return HTML(render_status_html(rows, linkable=pages, titles={k: v for k, v in titles.items() if v}))


def render_findings_html(rows: Sequence[StatusRow], scale: str, page: str = "book/intro",
                         linkable: Sequence[str] | None = None, findings: Sequence[FindingRecord] = ()) -> str:
    """The introduction's summary: the two tallies, one plain sentence per claim (linked to its chapter), and
    the book's own findings by title."""
    e = html.escape
    link_ok = None if linkable is None else {normalize_page(c) for c in linkable}
    here = posixpath.dirname(page)
    caveat = (" At this scale the experiments are far too small to settle anything." if scale == "smoke" else "")
    out = [f"<p>Computed from the chapters when this book was built ({e(scale)} scale).{caveat}</p>",
           _tally_html(rows)]
    for title, kinds in GROUPS:
        items = []
        for row in (r for r in rows if r.claim.kind in kinds):
            text = e(row.claim.title)
            rec = next((r for r in row.records if link_ok is None or r.chapter in link_ok), None)
            if rec is not None:
                text = f'<a href="{e(_href(rec, here))}">{text}</a>'
            sentence = " ".join(e(r.summary) for r in row.records) or "No chapter of this build tests it."
            items.append(f"<li>{badge(row.status)} — {text}: {sentence}</li>")
        out.append(f"<p><strong>{e(title)}</strong></p><ul>{''.join(items)}</ul>")
    if findings:
        titles = [f"<li>{_finding_title(f, here, link_ok)}</li>" for f in findings]
        out.append(f"<p><strong>Findings of this book that are not claims of the paper</strong></p>"
                   f"<ul>{''.join(titles)}</ul>")
    return "\n".join(out)


def show_findings(scale: str | Scale | None = None):
    """Display :func:`render_findings_html` for the book built at ``scale`` (default ``$STAR_SCALE``)."""
    from IPython.display import HTML

    scale, _, pages, rows, findings = _this_build(scale)
    return HTML(render_findings_html(rows, scale.value, linkable=pages, findings=findings))
