"""What the chapters record about the paper's claims, and reading it back for the status page.

A chapter records its evidence and shows the verdict::

    from star.book import claims, records, verdicts
    check = verdicts.Check("the variance grows at least 100x towards the edge", *effect_low_high,
                           unit="decades above 100x", how="bootstrap over 500 seeds")
    records.record_claim("nqm_fig2a_variance", [check], summary="...", budget=claims.Budget(...),
                         chapter="nqm_experiments", anchor="fig2a")

A record holds evidence — the checks (:mod:`star.book.verdicts`), the budget and why it falls short of the paper's
regime (:func:`star.book.claims.shortfalls`) — not a verdict: statuses are computed from the checks whenever a page
shows them. Records are small JSON files, one per (claim, chapter, part), in ``claims_dir(scale)``:
``$STAR_CLAIMS_DIR/<scale>/`` when that variable is set, else ``<book root>/_build/claims/<scale>/`` (the book root
is the first folder above the working directory that holds ``_toc.yml``), else ``./star_claims/<scale>/`` (e.g. on
Colab). The book's own findings, which are not claims of the paper, are recorded beside them with
:func:`record_finding`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from star.book.claims import CLAIMS, FINDINGS, GROUPS, Budget, Claim, shortfalls
from star.book.pages import find_book_root, normalize_page
from star.book.verdict_html import FindingNote, Verdict
from star.book.verdicts import STATUSES, Check, claim_status
from star.scale import Scale, get_scale

__all__ = ["ClaimRecord", "FindingRecord", "StatusRow", "claims_dir", "record_claim", "record_finding",
           "load_records", "load_findings", "status_rows", "tallies"]

_ANCHOR_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
_PART_RE = re.compile(r"^[A-Za-z0-9_.-]*$")


def _as_checks(checks) -> tuple:
    if isinstance(checks, Mapping) or isinstance(checks, str) or not isinstance(checks, Sequence) or not checks:
        raise ValueError(f"checks must be a non-empty list of Check (an effect with its interval each), from which "
                         f"the status is computed; got {checks!r}"[:300])
    bad = [c for c in checks if not isinstance(c, Check)]
    if bad:
        raise ValueError(f"checks must be Check objects; got {bad[0]!r}"[:300])
    return tuple(checks)



@dataclasses.dataclass(frozen=True)
class ClaimRecord:
    """What one chapter found about one claim (one JSON file): its checks, a plain sentence, the budget and the
    reasons it falls short of the paper's regime (computed when recorded)."""

    claim: str
    checks: tuple
    summary: str
    scale: str
    chapter: str
    part: str = ""
    anchor: str | None = None
    budget: Budget | None = None
    shortfalls: tuple = ()
    evidence: str = ""
    recorded_at: str = ""

    @property
    def status(self) -> str:
        return claim_status([(self.checks, self.shortfalls)])

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["checks"] = [c.to_dict() for c in self.checks]
        return d

    @classmethod
    def from_dict(cls, raw: Mapping) -> ClaimRecord:
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in raw.items() if k in fields}
        kw["checks"] = tuple(Check(**c) for c in kw.get("checks", ()))
        if kw.get("budget") is not None:
            b = dict(kw["budget"])
            b["notes"] = tuple(b.get("notes", ()))
            kw["budget"] = Budget(**b)
        kw["shortfalls"] = tuple(kw.get("shortfalls", ()))
        return cls(**kw)


@dataclasses.dataclass(frozen=True)
class FindingRecord:
    """One of the book's own findings (not a claim of the paper): a sentence with its numbers, and where."""

    finding: str
    summary: str
    scale: str
    chapter: str
    anchor: str | None = None
    recorded_at: str = ""


@dataclasses.dataclass(frozen=True)
class StatusRow:
    """One claim of the status page: the claim, its verdict, and the records behind it."""

    claim: Claim
    status: str
    records: tuple


def claims_dir(scale: str | Scale | None = None, start: str | os.PathLike | None = None) -> Path:
    """Where the records of the book built at ``scale`` (default ``$STAR_SCALE``) live; see the module doc."""
    scale = get_scale(scale).value
    override = os.environ.get("STAR_CLAIMS_DIR")
    if override:
        return Path(override) / scale
    root = find_book_root(start)
    if root is None:
        return Path(start if start is not None else os.getcwd()) / "star_claims" / scale
    return root / "_build" / "claims" / scale


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(path)


def _where(chapter: str, anchor: str | None) -> tuple[str, str | None]:
    page = normalize_page(chapter)
    if anchor is not None and (not isinstance(anchor, str) or not _ANCHOR_RE.match(anchor)):
        raise ValueError(f"anchor must be a label like 'fig2a' (letters, digits, '_', '-', '.', ':'); got {anchor!r}")
    return page, anchor


def _sentence(name: str, text) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name} must be a non-empty sentence in words; got {text!r}")
    return text.strip()


def record_claim(claim_id: str, checks: Sequence[Check], summary: str, *, chapter: str,
                 budget: Budget | None = None, regime: Sequence[str] = (), evidence: str = "",
                 scale: str | Scale | None = None, part: str = "", anchor: str | None = None,
                 claims_folder: str | os.PathLike | None = None) -> Verdict:
    """Record what ``chapter`` found about the paper's claim ``claim_id``; the verdict follows from ``checks``.

    Args:
        claim_id: a key of :data:`CLAIMS`.
        checks: the :class:`Check` s (effects with intervals); a status or a pass/fail mapping is refused.
        summary: one plain sentence for the status page and the introduction (no ids, no code).
        chapter: the page that holds the evidence, e.g. ``"nqm_experiments"``.
        budget: what the evidence cost (:class:`Budget`, e.g. ``Budget.from_grid(grid)``); required for a
            meta-training or NQM claim, ``None`` for mathematics.
        regime: further reasons, computed by the chapter, why this budget cannot reach the claim's regime.
        evidence: optional detail (numbers behind the checks) for the collapsible part of the status page.
        scale: the scale the evidence was computed at (default ``$STAR_SCALE``); a stored result's own scale.
        part: distinguishes several records of one chapter on one claim (e.g. one per task).
        anchor: optional label of the section on that page (the link target).
        claims_folder: where to write (default :func:`claims_dir` of the current ``$STAR_SCALE``).

    Returns:
        The :class:`Verdict` (a notebook shows the claim, the budget, the checks and the verdict).

    Raises:
        ValueError: unknown claim; checks not a non-empty list of :class:`Check`; an empty summary; no budget for
            a claim that has one in the paper; a bad scale, chapter, part or anchor. Nothing is written then.
    """
    if claim_id not in CLAIMS:
        raise ValueError(f"claim_id must be one of {', '.join(CLAIMS)}; got {claim_id!r}")
    claim = CLAIMS[claim_id]
    checks = _as_checks(checks)
    summary = _sentence("summary", summary)
    if budget is not None and not isinstance(budget, Budget):
        raise ValueError(f"budget must be a Budget; got {budget!r}")
    if budget is None and claim.paper_budgets:
        raise ValueError(f"budget must be given for {claim_id!r}: the status page shows it beside the paper's")
    if not isinstance(part, str) or not _PART_RE.match(part):
        raise ValueError(f"part must be letters, digits, '_', '-', '.'; got {part!r}")
    page, anchor = _where(chapter, anchor)
    scale = get_scale(scale).value
    rec = ClaimRecord(claim=claim_id, checks=checks, summary=summary, scale=scale, chapter=page, part=part,
                      anchor=anchor, budget=budget, shortfalls=tuple(shortfalls(claim_id, budget, regime)),
                      evidence=str(evidence).strip(),
                      recorded_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    folder = Path(claims_folder) if claims_folder is not None else claims_dir()
    name = f"{claim_id}--{page.replace('/', '__')}" + (f"--{part}" if part else "")
    path = folder / f"{name}.json"
    _write(path, rec.to_dict())
    return Verdict(rec, path)


def record_finding(finding_id: str, summary: str, *, chapter: str, anchor: str | None = None,
                   scale: str | Scale | None = None, claims_folder: str | os.PathLike | None = None):
    """Record one of the book's own findings (:data:`FINDINGS`): a sentence with its numbers, computed by
    ``chapter``. Returns the :class:`FindingRecord`; a notebook displays it as a short note."""
    if finding_id not in FINDINGS:
        raise ValueError(f"finding_id must be one of {', '.join(FINDINGS)}; got {finding_id!r}")
    summary = _sentence("summary", summary)
    page, anchor = _where(chapter, anchor)
    rec = FindingRecord(finding_id, summary, get_scale(scale).value, page, anchor,
                        _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    folder = Path(claims_folder) if claims_folder is not None else claims_dir()
    _write(folder / "findings" / f"{finding_id}.json", dataclasses.asdict(rec))
    return FindingNote(rec)


def load_records(claims_folder: str | os.PathLike | None = None) -> dict[str, list[ClaimRecord]]:
    """All claim records in ``claims_folder`` (default :func:`claims_dir`), by claim id, sorted by chapter.

    A record written by an older book, whose checks were pass/fail, is skipped (its chapter writes a new one when it
    runs again).

    Raises:
        ValueError: a file is not a valid record (names the file).
    """
    folder = Path(claims_folder) if claims_folder is not None else claims_dir()
    out: dict[str, list[ClaimRecord]] = {cid: [] for cid in CLAIMS}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(raw, dict) and isinstance(raw.get("checks"), dict):
                continue  # written by an older book (pass/fail checks): the chapter writes a new record when run
            rec = ClaimRecord.from_dict(raw)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"claim record {path.name} is not valid: {err}") from None
        if rec.claim not in CLAIMS:
            raise ValueError(f"claim record {path.name} has unknown claim {rec.claim!r}")
        out[rec.claim].append(rec)
    for recs in out.values():
        recs.sort(key=lambda r: (r.chapter, r.part))
    return out


def load_findings(claims_folder: str | os.PathLike | None = None) -> list[FindingRecord]:
    """The findings recorded in ``claims_folder``, in :data:`FINDINGS` order."""
    folder = (Path(claims_folder) if claims_folder is not None else claims_dir()) / "findings"
    found = {}
    if folder.is_dir():
        for path in folder.glob("*.json"):
            try:
                rec = FindingRecord(**json.loads(path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, TypeError) as err:
                raise ValueError(f"finding record {path.name} is not valid: {err}") from None
            if rec.finding in FINDINGS:
                found[rec.finding] = rec
    return [found[k] for k in FINDINGS if k in found]


def status_rows(claims_folder: str | os.PathLike | None = None,
                chapters: Sequence[str] | None = None) -> list[StatusRow]:
    """One :class:`StatusRow` per claim in :data:`CLAIMS` order; records of pages not in ``chapters`` (e.g. from
    ``_toc.yml``) are ignored (``None`` keeps all)."""
    keep = None if chapters is None else {normalize_page(c) for c in chapters}
    rows = []
    for cid, recs in load_records(claims_folder).items():
        recs = tuple(r for r in recs if keep is None or r.chapter in keep)
        rows.append(StatusRow(CLAIMS[cid], claim_status([(r.checks, r.shortfalls) for r in recs]), recs))
    return rows


def tallies(rows: Sequence[StatusRow]) -> list[tuple[str, dict]]:
    """``[(group title, {status: count})]`` for the two groups of :data:`GROUPS`."""
    out = []
    for title, kinds in GROUPS:
        group = [r for r in rows if r.claim.kind in kinds]
        out.append((title, {s: sum(r.status == s for r in group) for s in STATUSES}))
    return out

