"""The paper's claims, the verdicts the chapters record on them, and the "Reproduction status" page.

A chapter that tests a claim states its checks — each one a yes/no question about its own results — and
records them; the verdict follows from the checks by one rule (:data:`RULE`), never typed in::

    from star.book import claims
    checks = {"variance grows >= 100x from mid-range to past 2/lambda_max (T >= 50)": ratio >= 100,
              "finite at every stable step size": finite}
    claims.record_claim("nqm_fig2a_variance", checks, evidence=f"trace ratio {ratio:.3g} at T=50",
                        chapter="nqm_experiments", anchor="fig2a")

:func:`record_claim` returns a :class:`Verdict`, which a notebook displays as the claim, the rule, every
check with its outcome and the resulting status. The rules of each claim live in
:mod:`star.book.verdicts`, where tests feed them evidence that must flip the verdict.

Records are small JSON files, one per (claim, chapter), in ``claims_dir(scale)``:
``$STAR_CLAIMS_DIR/<scale>/`` when that variable is set, else ``<book root>/_build/claims/<scale>/``
where the book root is the first folder above the working directory that holds ``_toc.yml`` (the
book executes notebooks with ``cwd=book/``), else ``./star_claims/<scale>/`` (e.g. on Colab). They
are keyed by the scale the book is built at, so a smoke build never shows up in a cpu build. The
status page (``book/status.ipynb``) calls :func:`show_status`, which reads the records of the
current scale and marks every claim that no chapter recorded as "not yet".
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import html
import json
import os
import posixpath
import re
from pathlib import Path
from typing import Mapping, Sequence

from star.book.pages import find_book_root, normalize_page, page_title, toc_pages
from star.scale import Scale, get_scale

__all__ = [
    "CLAIMS", "STATUSES", "RECORDABLE_STATUSES", "RULE", "Claim", "ClaimRecord", "StatusRow", "Verdict",
    "record_claim", "status_from_checks", "combine_statuses", "claims_dir", "load_records", "status_rows",
    "render_status_html", "show_status", "render_findings_html", "show_findings",
]

STATUSES = ("reproduced", "partly", "refuted", "not yet")
RECORDABLE_STATUSES = STATUSES[:3]
RULE = ("reproduced when every check passes, refuted when none passes, partly otherwise; "
        "a claim recorded by several chapters is partly unless they agree")
_ANCHOR_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
_COLOURS = {"reproduced": "#1a7f37", "partly": "#9a6700", "refuted": "#cf222e", "not yet": "#6e7781"}


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the paper: a stable id, a short title, where the paper makes it, what it says."""

    id: str
    title: str
    paper: str
    statement: str


CLAIMS: dict[str, Claim] = {c.id: c for c in (
    Claim("theorem1_stability", "Theorem 1: sufficient conditions for stable inner training",
          "§4, Thm. 1; App. A.2",
          "If conditions (9)–(10) hold on the eigenvalues of H and of the learned P, the NQM dynamics "
          "A = I − (αI + P)H are stable (spectral radius below one)."),
    Claim("lemma2_preconditioning", "Lemma 2: preconditioning relaxes the conditions",
          "§4, Lemma 2; App. A.2",
          "With the Hessian preconditioner H^(-1/2) the conditions of Theorem 1 hold with lambda_max(H) "
          "replaced by its square root: the curvature scale and condition number are square-rooted."),
    Claim("lemma3_robust", "Lemma 3: robust stability under multiplicative output errors",
          "§4.3, Lemma 3, eqs. (16)–(17); App. A.3",
          "Bounds (16)–(17) keep the dynamics stable for any diagonal multiplicative error up to the "
          "stated size; the nominal term gives the margin."),
    Claim("nqm_fig2a_variance", "Meta-gradient variance explodes at the stability edge",
          "Fig. 2a; App. B.1",
          "On the NQM the variance of the meta-gradient grows by orders of magnitude as the step size α "
          "approaches 2/λ_max(H), and more steeply for longer horizons T."),
    Claim("nqm_metatraining_stability", "NQM meta-training stays stable with a nominal term",
          "Fig. 2b–c; App. B.1",
          "Meta-trained with ES, a learned P alone drifts towards the stability boundary, while a "
          "nominal term plus weight decay on the meta-parameters keeps the learned optimizer inside "
          "Theorem 1's region and meta-trains smoothly."),
    Claim("star_faster_metatraining", "STAR meta-trains faster than the blackbox optimizer",
          "Abstract; Fig. 3; App. B.2, C.1",
          "At matched optimizer compute, STAR reaches a lower meta-loss sooner than the blackbox "
          "small_fc_lopt optimizer on the Fashion-MNIST MLP and the CIFAR-10 ConvNet."),
    Claim("weight_decay_tradeoff", "Outer weight decay trades stability against over-damping",
          "App. C.2, Fig. App.2",
          "Weight decay of 0.1–0.5 × the outer learning rate keeps the learned optimizer stable beyond "
          "the training horizon; 1.0 over-damps it."),
    Claim("adam_preconditioning", "Adam-style normalization of the blackbox output helps",
          "App. C.2, Fig. App.3",
          "Normalizing the blackbox output Adam-style gives a better meta-loss; its effect out of "
          "distribution is mixed."),
    Claim("nominal_term", "The nominal term speeds up meta-training",
          "App. C.2, Fig. App.4",
          "Without the nominal term meta-training is slower and converges to worse solutions."),
    Claim("ood_generalization", "Out-of-distribution behaviour",
          "App. B.3, C.3, Figs. App.5–6",
          "Applied to tasks far from its meta-training task, the blackbox optimizer is unstable on "
          "almost all of them, while STAR and Hyperparam are stable; STAR vs. Hyperparam is mixed, "
          "with large STAR gains on some tasks."),
)}


@dataclasses.dataclass(frozen=True)
class ClaimRecord:
    """What one chapter found about one claim (the content of one JSON file)."""

    claim: str
    status: str
    evidence: str
    scale: str
    chapter: str
    anchor: "str | None" = None
    recorded_at: str = ""
    checks: "dict[str, bool]" = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class StatusRow:
    """One row of the status table: the claim, its overall status, and the records behind it."""

    claim: Claim
    status: str
    records: tuple[ClaimRecord, ...]


def claims_dir(scale: "str | Scale | None" = None, start: "str | os.PathLike | None" = None) -> Path:
    """Where the records of the book built at ``scale`` (default ``$STAR_SCALE``) live; see the module doc."""
    scale = get_scale(scale).value
    override = os.environ.get("STAR_CLAIMS_DIR")
    if override:
        return Path(override) / scale
    root = find_book_root(start)
    if root is None:
        return Path(start if start is not None else os.getcwd()) / "star_claims" / scale
    return root / "_build" / "claims" / scale


def _check_checks(checks) -> dict[str, bool]:
    if not isinstance(checks, Mapping) or len(checks) == 0:
        raise ValueError(f"checks must be a non-empty mapping of check name to bool; got {checks!r}")
    out = {}
    for name, ok in checks.items():
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"checks must be named by non-empty strings; got {name!r}")
        if type(ok).__name__ not in ("bool", "bool_"):  # Python or numpy bool
            raise ValueError(f"checks[{name!r}] must be a bool; got {ok!r} of type {type(ok).__name__}")
        out[name.strip()] = bool(ok)
    return out


def status_from_checks(checks: Mapping[str, bool]) -> str:
    """The status implied by a chapter's pass/fail checks of a claim (:data:`RULE`).

    All checks pass → ``"reproduced"``; none → ``"refuted"``; otherwise ``"partly"``.

    Raises:
        ValueError: if ``checks`` is empty or a value is not a bool (numpy bools are accepted).
    """
    values = list(_check_checks(checks).values())
    if all(values):
        return "reproduced"
    return "refuted" if not any(values) else "partly"


def combine_statuses(statuses: Sequence[str]) -> str:
    """The overall status of a claim from its records: the common status if they agree, else ``"partly"``.

    No records → ``"not yet"``.
    """
    for s in statuses:
        if s not in RECORDABLE_STATUSES:
            raise ValueError(f"status must be one of {', '.join(RECORDABLE_STATUSES)}; got {s!r}")
    distinct = set(statuses)
    if not distinct:
        return "not yet"
    return distinct.pop() if len(distinct) == 1 else "partly"


def _badge(status: str) -> str:
    return f'<strong style="color:{_COLOURS[status]};white-space:nowrap">{html.escape(status)}</strong>'


def _checks_html(checks: Mapping[str, bool]) -> str:
    items = "".join(f'<li><span style="color:{_COLOURS["reproduced" if ok else "refuted"]}">'
                    f'{"&#10003; pass" if ok else "&#10007; fail"}</span>: {html.escape(name)}</li>'
                    for name, ok in checks.items())
    return f'<ul class="star-checks">{items}</ul>'


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A recorded verdict, as a chapter displays it: the claim, the rule, the checks and the status."""

    record: ClaimRecord
    path: Path

    @property
    def status(self) -> str:
        return self.record.status

    def _repr_html_(self) -> str:
        r, claim = self.record, CLAIMS[self.record.claim]
        return (f'<div class="star-verdict"><p><strong>Verdict on the paper\'s claim "{html.escape(claim.title)}"'
                f"</strong> ({html.escape(claim.paper)}): {_badge(r.status)}</p>"
                f"<p><em>Claim.</em> {html.escape(claim.statement)}</p>"
                f"<p><em>Rule.</em> {html.escape(RULE.split(';')[0])}. Checks, computed above at "
                f"<code>{html.escape(r.scale)}</code> scale:</p>{_checks_html(r.checks)}"
                f"<p><em>Evidence.</em> {html.escape(r.evidence)}</p></div>")

    def __repr__(self) -> str:
        r = self.record
        lines = [f"Verdict on {r.claim!r}: {r.status} ({RULE.split(';')[0]})"]
        lines += [f"  {'PASS' if ok else 'FAIL'} {name}" for name, ok in r.checks.items()]
        return "\n".join(lines + [f"  evidence: {r.evidence}"])


def record_claim(claim_id: str, checks: Mapping[str, bool], evidence: str,
                 scale: "str | Scale | None" = None, chapter: str = "", *, anchor: "str | None" = None,
                 claims_folder: "str | os.PathLike | None" = None) -> Verdict:
    """Record what ``chapter`` found about the paper's claim ``claim_id``; the status follows from ``checks``.

    Args:
        claim_id: a key of :data:`CLAIMS`.
        checks: ``{question about the chapter's results: answer}``, e.g. from a rule of
            :mod:`star.book.verdicts`. The status is :func:`status_from_checks` of them.
        evidence: one or two sentences with the measured numbers.
        scale: the scale the evidence was computed at (default ``$STAR_SCALE``); may differ from the
            scale of the build when the evidence is a stored result under ``results/``.
        chapter: the page that holds the evidence, e.g. ``"nqm_experiments"``.
        anchor: optional label of the section or figure on that page (the link target).
        claims_folder: where to write (default :func:`claims_dir` of the current ``$STAR_SCALE``).

    Returns:
        The :class:`Verdict` (displayed by a notebook as the claim, the rule, the checks and the status).

    Raises:
        ValueError: unknown claim, checks not a non-empty mapping of bools (a status string is refused:
            verdicts are computed), empty evidence, bad scale, chapter or anchor. Nothing is written.
    """
    if claim_id not in CLAIMS:
        raise ValueError(f"claim_id must be one of {', '.join(CLAIMS)}; got {claim_id!r}")
    if isinstance(checks, str):
        raise ValueError(f"checks must be a mapping of check name to bool, from which the status is "
                         f"computed; got the string {checks!r}")
    checks = _check_checks(checks)
    if not isinstance(evidence, str) or not evidence.strip():
        raise ValueError(f"evidence must be a non-empty string stating what was measured; got {evidence!r}")
    evidence_scale = get_scale(scale).value
    page = normalize_page(chapter)
    if anchor is not None and (not isinstance(anchor, str) or not _ANCHOR_RE.match(anchor)):
        raise ValueError(f"anchor must be a label like 'fig2a' (letters, digits, '_', '-', '.', ':'); "
                         f"got {anchor!r}")
    folder = Path(claims_folder) if claims_folder is not None else claims_dir()
    folder.mkdir(parents=True, exist_ok=True)
    rec = ClaimRecord(claim=claim_id, status=status_from_checks(checks), evidence=evidence.strip(),
                      scale=evidence_scale, chapter=page, anchor=anchor,
                      recorded_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                      checks=checks)
    path = folder / f"{claim_id}--{page.replace('/', '__')}.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(dataclasses.asdict(rec), indent=1), encoding="utf-8")  # checks keep their order
    tmp.replace(path)
    return Verdict(rec, path)


def load_records(claims_folder: "str | os.PathLike | None" = None) -> dict[str, list[ClaimRecord]]:
    """All records in ``claims_folder`` (default :func:`claims_dir`), by claim id, sorted by chapter.

    Raises:
        ValueError: if a file is not a valid record (names the file).
    """
    folder = Path(claims_folder) if claims_folder is not None else claims_dir()
    out: dict[str, list[ClaimRecord]] = {cid: [] for cid in CLAIMS}
    if not folder.is_dir():
        return out
    fields = {f.name for f in dataclasses.fields(ClaimRecord)}
    for path in sorted(folder.glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            rec = ClaimRecord(**{k: v for k, v in raw.items() if k in fields})
        except (json.JSONDecodeError, TypeError) as err:
            raise ValueError(f"claim record {path.name} is not valid: {err}") from None
        if rec.claim not in CLAIMS or rec.status not in RECORDABLE_STATUSES:
            raise ValueError(f"claim record {path.name} has unknown claim {rec.claim!r} or status {rec.status!r}")
        out[rec.claim].append(rec)
    for recs in out.values():
        recs.sort(key=lambda r: r.chapter)
    return out


def status_rows(claims_folder: "str | os.PathLike | None" = None,
                chapters: "Sequence[str] | None" = None) -> list[StatusRow]:
    """One :class:`StatusRow` per claim in :data:`CLAIMS` order.

    ``chapters``: the pages the book contains (e.g. from ``_toc.yml``); records from other pages
    (a chapter renamed or removed since it wrote them) are ignored. ``None`` keeps all records.
    """
    keep = None if chapters is None else {normalize_page(c) for c in chapters}
    rows = []
    for cid, recs in load_records(claims_folder).items():
        recs = [r for r in recs if keep is None or r.chapter in keep]
        rows.append(StatusRow(CLAIMS[cid], combine_statuses([r.status for r in recs]), tuple(recs)))
    return rows


def render_status_html(rows: Sequence[StatusRow], page: str = "book/status",
                       linkable: "Sequence[str] | None" = None,
                       titles: "Mapping[str, str] | None" = None) -> str:
    """The status table as HTML: per claim, its status and, per chapter, the checks behind its verdict.

    Evidence links are relative to ``page``; a chapter is linked only if it is in ``linkable`` (default:
    every chapter), so the table never holds a broken link. ``titles`` maps a page (``"book/proofs"``) to
    the name shown (default: its file name)."""
    link_ok = None if linkable is None else {normalize_page(c) for c in linkable}
    titles = titles or {}
    here = posixpath.dirname(page)
    e = html.escape
    out = ['<table class="table star-claims star-table">',
           '<colgroup><col style="width:30%"/><col style="width:12%"/><col style="width:10%"/>'
           '<col style="width:48%"/></colgroup>',
           "<thead><tr><th>Claim</th><th>In the paper</th><th>Status</th><th>Evidence</th></tr></thead>",
           "<tbody>"]
    for row in rows:
        if row.records:
            items = []
            for r in row.records:
                name = titles.get(r.chapter) or posixpath.basename(r.chapter)
                if link_ok is None or r.chapter in link_ok:
                    href = posixpath.relpath(r.chapter, here or ".") + ".html"
                    if r.anchor:
                        href += "#" + r.anchor
                    where = f'<a href="{e(href)}">{e(name)}</a>'
                else:
                    where = e(name)
                checks = _checks_html(r.checks) if r.checks else ""
                items.append(f"<li>{where} ({e(r.scale)} scale, {_badge(r.status)}): {e(r.evidence)}{checks}</li>")
            evidence = "<ul>" + "".join(items) + "</ul>"
        else:
            evidence = "<em>no chapter of this build tests this claim</em>"
        out.append(f"<tr><td><strong>{e(row.claim.title)}</strong><br/>{e(row.claim.statement)}</td>"
                   f"<td>{e(row.claim.paper)}</td><td>{_badge(row.status)}</td><td>{evidence}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def _this_build(scale):
    """``(scale, book root, pages of the toc, status rows)`` for the book built at ``scale``."""
    scale = get_scale(scale)
    root = find_book_root()
    pages = toc_pages(root) if root is not None else None
    return scale, root, pages, status_rows(claims_dir(scale), chapters=pages)


def show_status(scale: "str | Scale | None" = None):
    """Display the status table for the book built at ``scale`` (default ``$STAR_SCALE``) in a notebook."""
    from IPython.display import HTML  # only where a notebook displays it

    scale, root, pages, rows = _this_build(scale)
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    note = (f"<p>Book built at <code>STAR_SCALE={html.escape(scale.value)}</code>: "
            f"{html.escape(summary)} (of {len(rows)} claims). Rule: {html.escape(RULE)}.</p>")
    titles = {p: page_title(root, p) for p in pages} if pages else {}
    return HTML(note + render_status_html(rows, linkable=pages, titles={k: v for k, v in titles.items() if v}))


def render_findings_html(rows: Sequence[StatusRow], scale: str, page: str = "book/intro",
                         linkable: "Sequence[str] | None" = None) -> str:
    """A short summary of the status table for the book's first page: how many claims came out how, and for
    each claim that did not reproduce, the checks that failed."""
    e = html.escape
    link_ok = None if linkable is None else {normalize_page(c) for c in linkable}
    here = posixpath.dirname(page)
    counts = {s: [r for r in rows if r.status == s] for s in STATUSES}
    caveat = "; at this scale the experiments are too small to settle anything" if scale == "smoke" else ""
    out = [f"<p><strong>What this book found</strong> (computed from the chapters when this book was built, at "
           f"<code>{e(scale)}</code> scale{caveat}): of the paper's {len(rows)} claims, "
           + ", ".join(f"{len(v)} {s}" for s, v in counts.items()) + ".</p>", "<ul>"]
    for status in ("reproduced", "partly", "refuted", "not yet"):
        if not counts[status]:
            continue
        items = []
        for row in counts[status]:
            text = e(row.claim.title)
            rec = next((r for r in row.records if link_ok is None or r.chapter in link_ok), None)
            if rec is not None:
                href = posixpath.relpath(rec.chapter, here or ".") + ".html" + (f"#{rec.anchor}" if rec.anchor else "")
                text = f'<a href="{e(href)}">{text}</a>'
            failed = [name for r in row.records for name, ok in r.checks.items() if not ok]
            if failed:
                text += " — not confirmed: " + "; ".join(e(f) for f in failed)
            items.append(text)
        out.append(f"<li>{_badge(status)}: " + " · ".join(items) + "</li>")
    out.append("</ul>")
    return "\n".join(out)


def show_findings(scale: "str | Scale | None" = None):
    """Display :func:`render_findings_html` for the book built at ``scale`` (default ``$STAR_SCALE``)."""
    from IPython.display import HTML

    scale, _, pages, rows = _this_build(scale)
    return HTML(render_findings_html(rows, scale.value, linkable=pages))
