"""star.book.status: the status page and the introduction's summary, computed from the records; the verdict a
chapter shows (star.book.verdict_html)."""

import html

import pytest
from claim_evidence import CONTRADICTED, INCONCLUSIVE, SUPPORTED, record

from star.book import pages, records, status, verdicts
from star.book.claims import CLAIMS
from star.book.records import record_claim, status_rows


def test_status_page_shows_tallies_plain_sentences_budgets_and_folded_checks(tmp_path):
    record(tmp_path, checks=[SUPPORTED, INCONCLUSIVE], summary="STAR <b>wins</b> on one check.", anchor="app4")
    record_claim("theorem1_stability", [SUPPORTED], "Every instance was stable.", chapter="proofs",
                 scale="smoke", claims_folder=tmp_path)
    rows = status_rows(tmp_path)
    page = status.render_status_html(rows, page="book/status", linkable=["book/c", "book/status"])
    tally = page[: page.index("</table>")]
    assert "Theory and the noisy quadratic model" in tally and "Meta-training" in tally
    assert "<td>1</td>" in tally  # one reproduced (theory), one partly (meta-training)
    assert '<a href="c.html#app4">c</a>' in page and 'href="proofs.html' not in page  # proofs not linkable
    assert "&lt;b&gt;wins&lt;/b&gt;" in page and "<b>wins</b>" not in page
    assert "<details><summary>Checks (1 supported, 1 inconclusive) and budget</summary>" in page
    assert "not stated; the book&#x27;s paper-scale setting 5,000 (4 %)" in page
    assert "Fashion-MNIST 8×8 MLP 64-32 (2 % of the paper&#x27;s parameters), 200 outer steps (4 %†)" in page
    assert page.count("No chapter of this build tests this claim") == len(CLAIMS) - 2
    assert "‡" in page and "“Generally, without the nominal term" in page  # quoted vs reconstructed statements


def test_findings_are_listed_apart_from_the_claims(tmp_path):
    note = records.record_finding("breakdown", "The first layer dies.", chapter="why_pes_breaks_star",
                                  anchor="x", scale="smoke", claims_folder=tmp_path)
    assert "Our finding (not a claim of the paper)" in note._repr_html_()
    with pytest.raises(ValueError, match="finding_id must be one of"):
        records.record_finding("nope", "s", chapter="c", claims_folder=tmp_path)
    found = records.load_findings(tmp_path)
    assert [f.finding for f in found] == ["breakdown"]
    intro = status.render_findings_html(status_rows(tmp_path), "cpu", linkable=["book/why_pes_breaks_star"],
                                        findings=found)
    assert "not claims of the paper" in intro and 'href="why_pes_breaks_star.html#x"' in intro
    assert "too small to settle" not in intro
    assert "too small to settle" in status.render_findings_html(status_rows(tmp_path), "smoke")


def test_the_verdict_a_chapter_shows(tmp_path):
    v = record(tmp_path, checks=[SUPPORTED, CONTRADICTED], summary="One for, one against.")
    shown = v._repr_html_()
    assert "partly" in shown and "One for, one against." in shown and "<details>" in shown
    assert "+0.3 [+0.1, +0.5]</span><br/><small>nats" in shown and "−0.3 [−0.5, −0.1]</span>" in shown
    assert "Short of the paper" in shown and html.escape(verdicts.CHECK_RULE) in shown
    assert str(tmp_path) not in shown and str(tmp_path) not in repr(v)


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
    record(tmp_path / "claims", chapter="nqm")
    page = status.render_status_html(status_rows(tmp_path / "claims"), titles={"book/nqm": "The NQM, verified"})
    assert '<a href="nqm.html">The NQM, verified</a>' in page
