"""The paper's claims and what this book's chapters found about each (the "Reproduction status" page).

A chapter that tests a claim computes its verdict from its own results and records it::

    from star import claims
    ok = {"variance grows >= 100x past 2/lambda_max": ratio >= 100, "finite inside": finite}
    claims.record_claim("nqm_fig2a_variance", claims.status_from_checks(ok),
                        evidence=f"trace ratio {ratio:.3g} at T=50", chapter="nqm_experiments",
                        anchor="fig2a")

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
from collections.abc import Mapping, Sequence
from pathlib import Path

from star.scale import Scale, get_scale

__all__ = [
    "CLAIMS", "STATUSES", "RECORDABLE_STATUSES", "Claim", "ClaimRecord", "StatusRow",
    "record_claim", "status_from_checks", "combine_statuses", "claims_dir", "find_book_root",
    "load_records", "status_rows", "toc_pages", "page_title", "render_status_html", "show_status",
]

STATUSES = ("reproduced", "partly", "refuted", "not yet")
RECORDABLE_STATUSES = STATUSES[:3]
_CHAPTER_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")
_ANCHOR_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")


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
          "On the NQM the variance of the meta-gradient grows with the horizon T and by orders of "
          "magnitude as the step size α approaches 2/λ_max(H)."),
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
    anchor: str | None = None
    recorded_at: str = ""


@dataclasses.dataclass(frozen=True)
class StatusRow:
    """One row of the status table: the claim, its overall status, and the records behind it."""

    claim: Claim
    status: str
    records: tuple[ClaimRecord, ...]


def find_book_root(start: str | os.PathLike | None = None) -> Path | None:
    """The first folder at or above ``start`` (default: the working directory) that holds ``_toc.yml``."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    return None


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


def _normalize_chapter(chapter: str) -> str:
    if not isinstance(chapter, str) or not _CHAPTER_RE.match(chapter) or ".." in chapter:
        raise ValueError(
            f"chapter must be a book page name such as 'nqm_experiments' or 'book/nqm_experiments' "
            f"(letters, digits, '_', '-', '/', '.'); got {chapter!r}")
    for ext in (".ipynb", ".md"):
        if chapter.endswith(ext):
            chapter = chapter[: -len(ext)]
    return chapter if "/" in chapter else f"book/{chapter}"


def status_from_checks(checks: Mapping[str, bool]) -> str:
    """The status implied by a chapter's pass/fail checks of a claim.

    All checks pass → ``"reproduced"``; none → ``"refuted"``; otherwise ``"partly"``.

    Raises:
        ValueError: if ``checks`` is empty or a value is not a bool (numpy bools are accepted).
    """
    if not isinstance(checks, Mapping) or len(checks) == 0:
        raise ValueError(f"checks must be a non-empty mapping of check name to bool; got {checks!r}")
    values = []
    for name, ok in checks.items():
        if type(ok).__name__ not in ("bool", "bool_"):  # Python or numpy bool
            raise ValueError(f"checks[{name!r}] must be a bool; got {ok!r} of type {type(ok).__name__}")
        values.append(bool(ok))
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


def record_claim(claim_id: str, status: str, evidence: str, scale: str | Scale | None = None,
                 chapter: str = "", *, anchor: str | None = None,
                 claims_folder: str | os.PathLike | None = None) -> Path:
    """Record what ``chapter`` found about the paper's claim ``claim_id``; returns the JSON file written.

    Args:
        claim_id: a key of :data:`CLAIMS`.
        status: ``"reproduced"``, ``"partly"`` or ``"refuted"`` — computed from the chapter's results
            (see :func:`status_from_checks`), never typed in.
        evidence: one or two sentences with the measured numbers.
        scale: the scale the evidence was computed at (default ``$STAR_SCALE``); may differ from the
            scale of the build when the evidence is a stored result under ``results/``.
        chapter: the page that holds the evidence, e.g. ``"nqm_experiments"``.
        anchor: optional label of the section or figure on that page (the link target).
        claims_folder: where to write (default :func:`claims_dir` of the current ``$STAR_SCALE``).

    Raises:
        ValueError: unknown claim, status not recordable, empty evidence, bad scale, chapter or anchor.
    """
    if claim_id not in CLAIMS:
        raise ValueError(f"claim_id must be one of {', '.join(CLAIMS)}; got {claim_id!r}")
    if status not in RECORDABLE_STATUSES:
        raise ValueError(f"status must be one of {', '.join(RECORDABLE_STATUSES)}; got {status!r}")
    if not isinstance(evidence, str) or not evidence.strip():
        raise ValueError(f"evidence must be a non-empty string stating what was measured; got {evidence!r}")
    evidence_scale = get_scale(scale).value
    page = _normalize_chapter(chapter)
    if anchor is not None and (not isinstance(anchor, str) or not _ANCHOR_RE.match(anchor)):
        raise ValueError(f"anchor must be a label like 'fig2a' (letters, digits, '_', '-', '.', ':'); "
                         f"got {anchor!r}")
    folder = Path(claims_folder) if claims_folder is not None else claims_dir()
    folder.mkdir(parents=True, exist_ok=True)
    rec = ClaimRecord(claim=claim_id, status=status, evidence=evidence.strip(), scale=evidence_scale,
                      chapter=page, anchor=anchor,
                      recorded_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    path = folder / f"{claim_id}--{page.replace('/', '__')}.json"
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(dataclasses.asdict(rec), indent=1, sort_keys=True), encoding="utf-8")
    tmp.replace(path)
    return path


def load_records(claims_folder: str | os.PathLike | None = None) -> dict[str, list[ClaimRecord]]:
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
            raise ValueError(f"claim record {path} is not valid: {err}") from None
        if rec.claim not in CLAIMS or rec.status not in RECORDABLE_STATUSES:
            raise ValueError(f"claim record {path} has unknown claim {rec.claim!r} or status {rec.status!r}")
        out[rec.claim].append(rec)
    for recs in out.values():
        recs.sort(key=lambda r: r.chapter)
    return out


def status_rows(claims_folder: str | os.PathLike | None = None,
                chapters: Sequence[str] | None = None) -> list[StatusRow]:
    """One :class:`StatusRow` per claim in :data:`CLAIMS` order.

    ``chapters``: the pages the book contains (e.g. from ``_toc.yml``); records from other pages
    (a chapter renamed or removed since it wrote them) are ignored. ``None`` keeps all records.
    """
    keep = None if chapters is None else {_normalize_chapter(c) for c in chapters}
    rows = []
    for cid, recs in load_records(claims_folder).items():
        recs = [r for r in recs if keep is None or r.chapter in keep]
        rows.append(StatusRow(CLAIMS[cid], combine_statuses([r.status for r in recs]), tuple(recs)))
    return rows


_COLOURS = {"reproduced": "#1a7f37", "partly": "#9a6700", "refuted": "#cf222e", "not yet": "#6e7781"}


def render_status_html(rows: Sequence[StatusRow], page: str = "book/status",
                       linkable: Sequence[str] | None = None,
                       titles: Mapping[str, str] | None = None) -> str:
    """The status table as HTML. Evidence links are relative to ``page``; a chapter is linked only if
    it is in ``linkable`` (default: every chapter), so the table never holds a broken link.
    ``titles`` maps a page (``"book/proofs"``) to the name shown (default: its file name)."""
    link_ok = None if linkable is None else {_normalize_chapter(c) for c in linkable}
    titles = titles or {}
    here = posixpath.dirname(page)
    e = html.escape
    out = ['<table class="table star-claims">',
           "<thead><tr><th>Claim</th><th>In the paper</th><th>Status</th><th>Evidence</th></tr></thead>",
           "<tbody>"]
    for row in rows:
        colour = _COLOURS[row.status]
        badge = f'<strong style="color:{colour}">{e(row.status)}</strong>'
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
                items.append(f"<li>{where} ({e(r.scale)} scale, {e(r.status)}): {e(r.evidence)}</li>")
            evidence = "<ul>" + "".join(items) + "</ul>"
        else:
            evidence = "<em>no chapter has recorded this claim yet</em>"
        out.append(f"<tr><td><strong>{e(row.claim.title)}</strong><br/>{e(row.claim.statement)}</td>"
                   f"<td>{e(row.claim.paper)}</td><td>{badge}</td><td>{evidence}</td></tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def toc_pages(root: str | os.PathLike) -> list[str] | None:
    """Every page named in ``<root>/_toc.yml`` (``root:`` and ``file:`` entries, in order), or None if
    there is no such file."""
    try:
        text = (Path(root) / "_toc.yml").read_text(encoding="utf-8")
    except OSError:
        return None
    # A regex rather than a YAML parser keeps PyYAML out of the package's dependencies.
    pages = re.findall(r"^\s*(?:-\s*)?(?:file|root)\s*:\s*['\"]?([^'\"\s#]+)", text, flags=re.M)
    return [_normalize_chapter(p) for p in pages]


def page_title(root: str | os.PathLike, page: str) -> str | None:
    """The first level-1 heading of ``<root>/<page>.ipynb`` or ``.md``, without MyST markup; None if absent."""
    base = Path(root) / _normalize_chapter(page)
    for path in (base.with_suffix(".ipynb"), base.with_suffix(".md")):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":
            cells = json.loads(text).get("cells", [])
            text = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "markdown")
        m = re.search(r"^#\s+(.+?)\s*$", text, flags=re.M)
        return re.sub(r"[`*$]", "", m.group(1)) if m else None
    return None


def show_status(scale: str | Scale | None = None):
    """Display the status table for the book built at ``scale`` (default ``$STAR_SCALE``) in a notebook."""
    from IPython.display import HTML  # only where a notebook displays it

    scale = get_scale(scale)
    root = find_book_root()
    pages = toc_pages(root) if root is not None else None
    rows = status_rows(claims_dir(scale), chapters=pages)
    counts = {s: sum(r.status == s for r in rows) for s in STATUSES}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items())
    note = (f"<p>Book built at <code>STAR_SCALE={html.escape(scale.value)}</code>: "
            f"{html.escape(summary)} (of {len(rows)} claims).</p>")
    titles = {p: page_title(root, p) for p in pages} if pages else {}
    return HTML(note + render_status_html(rows, linkable=pages, titles={k: v for k, v in titles.items() if v}))
