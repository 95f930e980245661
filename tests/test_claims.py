"""star.book.claims: recording the chapters' verdicts on the paper's claims and rendering the status table."""

import json

import numpy as np
import pytest

from star.book import pages
from star.book.claims import (
    CLAIMS,
    RULE,
    claims_dir,
    combine_statuses,
    load_records,
    record_claim,
    render_status_html,
    status_from_checks,
    status_rows,
)

CHECKS = {"reproduced": {"grows 100x": True, "finite": True}, "partly": {"grows 100x": True, "finite": False},
          "refuted": {"grows 100x": False, "finite": False}}


def _rec(folder, cid="nqm_fig2a_variance", status="reproduced", chapter="nqm", **kw):
    checks = kw.pop("checks", CHECKS.get(status, status))
    return record_claim(cid, checks, kw.pop("evidence", "ratio 1e4 at T=50"), scale="smoke",
                        chapter=chapter, claims_folder=folder, **kw).path


def test_unrecorded_claims_are_not_yet(tmp_path):
    rows = status_rows(tmp_path / "missing")
    assert [r.claim.id for r in rows] == list(CLAIMS)
    assert {r.status for r in rows} == {"not yet"}
    assert all(r.records == () for r in rows)


def test_record_round_trip_and_overwrite(tmp_path):
    path = _rec(tmp_path, evidence="first")
    assert json.loads(path.read_text())["chapter"] == "book/nqm"
    _rec(tmp_path, status="partly", evidence="second")  # same chapter, same claim: replaces
    recs = load_records(tmp_path)["nqm_fig2a_variance"]
    assert len(recs) == 1 and recs[0].status == "partly" and recs[0].evidence == "second"
    assert recs[0].scale == "smoke"
    rows = {r.claim.id: r for r in status_rows(tmp_path)}
    assert rows["nqm_fig2a_variance"].status == "partly"
    assert rows["nominal_term"].status == "not yet"


def test_two_chapters_combine(tmp_path):
    _rec(tmp_path, chapter="a")
    _rec(tmp_path, chapter="b")
    assert {r.claim.id: r.status for r in status_rows(tmp_path)}["nqm_fig2a_variance"] == "reproduced"
    _rec(tmp_path, chapter="b", status="refuted")
    row = {r.claim.id: r for r in status_rows(tmp_path)}["nqm_fig2a_variance"]
    assert row.status == "partly" and [r.chapter for r in row.records] == ["book/a", "book/b"]


def test_records_of_pages_not_in_the_book_are_ignored(tmp_path):
    _rec(tmp_path, chapter="gone", status="refuted")
    _rec(tmp_path, chapter="here", status="reproduced")
    row = {r.claim.id: r for r in status_rows(tmp_path, chapters=["book/here"])}["nqm_fig2a_variance"]
    assert row.status == "reproduced" and len(row.records) == 1


@pytest.mark.parametrize("checks, expected", [
    ({"a": True, "b": True}, "reproduced"),
    ({"a": True, "b": False}, "partly"),
    ({"a": False}, "refuted"),
    ({"a": np.bool_(True), "b": np.float64(3.0) > 2}, "reproduced"),
])
def test_status_from_checks(checks, expected):
    assert status_from_checks(checks) == expected


@pytest.mark.parametrize("checks", [{}, {"a": 1}, {"a": "yes"}, [True]])
def test_status_from_checks_rejects_bad_input(checks):
    with pytest.raises(ValueError, match="checks"):
        status_from_checks(checks)


def test_combine_statuses():
    assert combine_statuses([]) == "not yet"
    assert combine_statuses(["refuted", "refuted"]) == "refuted"
    assert combine_statuses(["refuted", "reproduced"]) == "partly"
    with pytest.raises(ValueError, match="status must be one of"):
        combine_statuses(["not yet"])


@pytest.mark.parametrize("kwargs, match", [
    (dict(status="reproduced", checks="reproduced"), "checks must be a mapping .* got the string 'reproduced'"),
    (dict(checks={}), "checks must be a non-empty mapping"),
    (dict(checks={"a": 1}), r"checks\['a'\] must be a bool"),
    (dict(checks={" ": True}), "named by non-empty strings"),
    (dict(cid="theorem9"), "claim_id must be one of"),
    (dict(evidence="  "), "evidence must be a non-empty string"),
    (dict(chapter=""), "chapter must be a book page name"),
    (dict(chapter="../etc/passwd"), "chapter must be a book page name"),
    (dict(chapter="two words"), "chapter must be a book page name"),
    (dict(anchor="has space"), "anchor must be a label"),
])
def test_record_claim_rejects_bad_input(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _rec(tmp_path, **kwargs)
    assert not list(tmp_path.glob("*.json"))


def test_record_claim_rejects_bad_scale(tmp_path):
    with pytest.raises(ValueError, match="STAR_SCALE must be one of"):
        record_claim("nominal_term", {"a": False}, "x", scale="huge", chapter="c", claims_folder=tmp_path)


def test_corrupt_record_names_the_file(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_records(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"claim": "nope", "status": "reproduced",
                                                   "evidence": "e", "scale": "cpu", "chapter": "c"}))
    with pytest.raises(ValueError, match="unknown claim 'nope'"):
        load_records(tmp_path)


def test_claims_dir_finds_the_book_root(tmp_path, monkeypatch):
    monkeypatch.delenv("STAR_CLAIMS_DIR", raising=False)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")  # the book executes notebooks here
    monkeypatch.setenv("STAR_SCALE", "smoke")
    assert claims_dir() == tmp_path.resolve() / "_build" / "claims" / "smoke"
    assert claims_dir("cpu") == tmp_path.resolve() / "_build" / "claims" / "cpu"
    path = record_claim("nominal_term", CHECKS["partly"], "e", chapter="c").path
    assert path.parent == tmp_path.resolve() / "_build" / "claims" / "smoke"
    monkeypatch.setenv("STAR_CLAIMS_DIR", str(tmp_path / "elsewhere"))
    assert claims_dir("paper") == tmp_path / "elsewhere" / "paper"


def test_claims_dir_without_a_book(tmp_path, monkeypatch):
    monkeypatch.delenv("STAR_CLAIMS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert claims_dir("cpu", start=tmp_path) == tmp_path / "star_claims" / "cpu"


def test_render_links_only_to_existing_pages_and_escapes(tmp_path):
    _rec(tmp_path, chapter="nqm", anchor="fig2a", evidence="ratio <b>big</b>")
    _rec(tmp_path, cid="nominal_term", chapter="future", status="refuted")
    rows = status_rows(tmp_path)
    page = render_status_html(rows, page="book/status", linkable=["book/nqm", "book/status"])
    assert '<a href="nqm.html#fig2a">nqm</a>' in page
    assert "future" in page and 'href="future.html"' not in page
    assert "<b>big</b>" not in page and "&lt;b&gt;big&lt;/b&gt;" in page
    assert page.count("<tr>") == len(CLAIMS) + 1
    assert page.count("no chapter of this build tests this claim") == len(CLAIMS) - 2


def test_toc_pages_reads_the_real_toc():
    root = pages.find_book_root(__file__)
    names = pages.toc_pages(root)
    assert "book/intro" in names
    for page in names:
        assert any((root / (page + ext)).is_file() for ext in (".md", ".ipynb")), page


def test_page_titles_are_shown_instead_of_file_names(tmp_path):
    import nbformat
    (tmp_path / "book").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_markdown_cell("(lbl)=\n# The `NQM`, *verified*\n\ntext")])
    nbformat.write(nb, tmp_path / "book" / "nqm.ipynb")
    (tmp_path / "book" / "notes.md").write_text("no heading here\n## only a section\n")
    assert pages.page_title(tmp_path, "nqm") == "The NQM, verified"
    assert pages.page_title(tmp_path, "book/notes") is None and pages.page_title(tmp_path, "nope") is None
    _rec(tmp_path / "claims", chapter="nqm")
    page = render_status_html(status_rows(tmp_path / "claims"), titles={"book/nqm": "The NQM, verified"})
    assert '<a href="nqm.html">The NQM, verified</a>' in page


def test_the_verdict_follows_its_checks_and_shows_the_rule(tmp_path):
    """The status is computed from the checks; what a chapter displays states the rule and every check."""
    for status, checks in CHECKS.items():
        verdict = record_claim("nqm_fig2a_variance", checks, "e", scale="smoke", chapter="nqm",
                               claims_folder=tmp_path)
        assert verdict.status == status == load_records(tmp_path)["nqm_fig2a_variance"][0].status
        assert load_records(tmp_path)["nqm_fig2a_variance"][0].checks == checks
        shown = verdict._repr_html_()
        assert RULE.split(";")[0] in shown and "grows 100x" in shown and status in shown
        assert str(tmp_path) not in shown and str(tmp_path) not in repr(verdict)
        assert ("&#10007; fail" in shown) == (status != "reproduced")
    page = render_status_html(status_rows(tmp_path))
    assert "&#10007; fail</span>: grows 100x" in page  # the checks reach the status page


def test_records_written_before_checks_were_stored_still_load(tmp_path):
    (tmp_path / "old.json").write_text(json.dumps({"claim": "nominal_term", "status": "partly", "evidence": "e",
                                                   "scale": "cpu", "chapter": "book/c"}))
    assert load_records(tmp_path)["nominal_term"][0].checks == {}


def test_findings_summarize_the_verdicts_with_their_failed_checks(tmp_path):
    from star.book.claims import render_findings_html
    _rec(tmp_path, status="partly", anchor="fig2a")
    _rec(tmp_path, cid="theorem1_stability", chapter="proofs")
    rows = status_rows(tmp_path)
    page = render_findings_html(rows, "cpu", linkable=["book/nqm", "book/proofs"])
    assert "of the paper's 10 claims, 1 reproduced, 1 partly, 0 refuted, 8 not yet" in page
    assert '<a href="nqm.html#fig2a">' in page and "not confirmed: finite" in page
    assert "too small to settle" not in page and "too small to settle" in render_findings_html(rows, "smoke")
