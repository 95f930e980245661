"""star.claims: recording the chapters' verdicts on the paper's claims and rendering the status table."""

import json

import numpy as np
import pytest

from star import claims
from star.claims import (
    CLAIMS,
    claims_dir,
    combine_statuses,
    load_records,
    record_claim,
    render_status_html,
    status_from_checks,
    status_rows,
)


def _rec(folder, cid="nqm_fig2a_variance", status="reproduced", chapter="nqm", **kw):
    return record_claim(cid, status, kw.pop("evidence", "ratio 1e4 at T=50"), scale="smoke",
                        chapter=chapter, claims_folder=folder, **kw)


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
    (dict(status="confirmed"), "status must be one of reproduced, partly, refuted; got 'confirmed'"),
    (dict(status="not yet"), "status must be one of"),
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
        record_claim("nominal_term", "refuted", "x", scale="huge", chapter="c", claims_folder=tmp_path)


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
    path = record_claim("nominal_term", "partly", "e", chapter="c")
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
    assert page.count("no chapter has recorded this claim yet") == len(CLAIMS) - 2


def test_toc_pages_reads_the_real_toc():
    root = claims.find_book_root(__file__)
    pages = claims.toc_pages(root)
    assert "book/intro" in pages
    for page in pages:
        assert any((root / (page + ext)).is_file() for ext in (".md", ".ipynb")), page


def test_page_titles_are_shown_instead_of_file_names(tmp_path):
    import nbformat
    (tmp_path / "book").mkdir()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_markdown_cell("(lbl)=\n# The `NQM`, *verified*\n\ntext")])
    nbformat.write(nb, tmp_path / "book" / "nqm.ipynb")
    (tmp_path / "book" / "notes.md").write_text("no heading here\n## only a section\n")
    assert claims.page_title(tmp_path, "nqm") == "The NQM, verified"
    assert claims.page_title(tmp_path, "book/notes") is None and claims.page_title(tmp_path, "nope") is None
    _rec(tmp_path / "claims", chapter="nqm")
    page = render_status_html(status_rows(tmp_path / "claims"), titles={"book/nqm": "The NQM, verified"})
    assert '<a href="nqm.html">The NQM, verified</a>' in page
