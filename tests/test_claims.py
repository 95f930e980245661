"""star.book.claims: checks with intervals, budgets, the verdict rule, records and the status page."""

import html
import json
import math

import numpy as np
import pytest

from star import sweep
from star.book import claims, pages
from star.book.claims import CLAIMS, Budget, Check, claim_status, load_records, record_claim, status_rows

SUPPORTED = Check("A is lower than B", 0.3, 0.1, 0.5, "nats")
INCONCLUSIVE = Check("A is lower than B", 0.3, -0.1, 0.7, "nats")
CONTRADICTED = Check("A is lower than B", -0.3, -0.5, -0.1, "nats")
SMALL = Budget("fmnist8_mlp32", 2410, 200, 64, 2000, 3)
PAPER_LIKE = Budget("fmnist_mlp", 118_282, 5000, 8, 2000, 3)


def _rec(folder, cid="nominal_term", checks=(SUPPORTED,), budget=SMALL, chapter="c", **kw):
    checks = list(checks) if isinstance(checks, tuple) else checks
    return record_claim(cid, checks, kw.pop("summary", "A plain sentence."), budget=budget, chapter=chapter,
                        scale="smoke", claims_folder=folder, **kw)


# ------------------------------------------------------------------------------------------------ the rule


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
    assert set(claims.STATUSES) == {"reproduced", "partly", "contradicted", "not reproduced at this budget",
                                    "not yet"}


def test_no_claim_is_contradicted_on_a_non_significant_difference():
    """Whatever the budget, a reversal whose interval includes zero never contradicts a claim."""
    reversed_but_noisy = Check("A is lower than B", -0.3, -0.8, 0.2)
    for short in ([], ["small"]):
        for others in ([], [INCONCLUSIVE], [reversed_but_noisy]):
            assert claim_status([([reversed_but_noisy, *others], short)]) == "not reproduced at this budget"


# ------------------------------------------------------------------------------------------------ budgets


def test_budget_from_a_grid_feeds_the_rule():
    """A grid's settings are the budget; a longer grid on the paper's task reaches the paper's regime."""
    g = sweep.get_grid("indist", "cpu")
    b = Budget.from_grid(g)
    assert (b.task, b.task_size, b.outer_steps, b.num_tasks, b.horizon, b.seeds) == \
        (g.task, 2410, g.outer_steps, g.num_tasks, g.horizon, len(g.all_seeds))
    assert Budget.from_grid(g, seeds=3).seeds == 3  # the seeds a comparison actually has
    assert any("outer learning rate" in n for n in b.notes)
    short = claims.shortfalls("nominal_term", b)
    assert any("not Fashion-MNIST MLP 784-128-128" in s for s in short)
    assert any(f"{g.outer_steps:,} outer steps of 5,000" in s for s in short)
    paper = Budget.from_grid(sweep.get_grid("indist", "paper"))
    assert claims.shortfalls("nominal_term", paper) == []
    import dataclasses
    half = Budget.from_grid(dataclasses.replace(sweep.get_grid("indist", "paper"), outer_steps=2000))
    assert claims.shortfalls("nominal_term", half) == ["2,000 outer steps of 5,000 (the book's paper-scale setting; "
                                                       "the paper does not state it)"]
    assert claims.shortfalls("nominal_term", paper, extra=["a reason"]) == ["a reason"]
    # the ConvNet substitute is compared with the paper's ConvNet
    conv = Budget.from_grid(sweep.get_grid("indist_conv", "cpu"))
    assert any("not CIFAR-10 ConvNet" in s for s in claims.shortfalls("star_faster_metatraining", conv))
    # mathematics has no budget
    assert claims.shortfalls("theorem1_stability", None) == []


def test_the_paper_budgets_hold_the_tasks_real_sizes():
    for claim in CLAIMS.values():
        for b in claim.paper_budgets:
            assert b.task_size == claims.task_size(b.task), (claim.id, b.task)


def test_budget_rows_state_fractions_of_the_papers():
    rows = dict((a, (b, c)) for a, b, c in claims.budget_rows("nominal_term", SMALL))
    assert rows["task"][1].endswith("(2 %)") and "118,282" in rows["task"][1]
    assert rows["outer steps"] == ("200", "not stated; the book's paper-scale setting 5,000 (4 %)")
    assert rows["inner horizon"] == ("2,000", "2,000 (100 %)")
    assert rows["seeds"] == ("3", "not stated")
    assert claims.budget_rows("theorem1_stability", None) == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(task=""), "task must be a task id"), (dict(outer_steps=0), "outer_steps must be a positive integer"),
    (dict(seeds=2.5), "seeds must be a positive integer"), (dict(horizon=True), "horizon must be"),
])
def test_budget_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Budget(**(dict(task="fmnist_mlp") | kwargs))


# ------------------------------------------------------------------------------------------------ records


def test_unrecorded_claims_are_not_yet(tmp_path):
    rows = status_rows(tmp_path / "missing")
    assert [r.claim.id for r in rows] == list(CLAIMS)
    assert {r.status for r in rows} == {"not yet"} and all(r.records == () for r in rows)


def test_records_store_evidence_and_the_verdict_is_recomputed(tmp_path):
    """A record holds checks and budget; its status is computed when read, so a rule change reaches it."""
    v = _rec(tmp_path, checks=[CONTRADICTED], budget=PAPER_LIKE)
    raw = json.loads(v.path.read_text())
    assert "status" not in raw and raw["checks"][0]["low"] == -0.5 and raw["budget"]["outer_steps"] == 5000
    assert raw["shortfalls"] == [] and v.status == "contradicted"
    _rec(tmp_path, checks=[CONTRADICTED])  # the same chapter again, at the small budget: replaces it
    (rec,) = load_records(tmp_path)["nominal_term"]
    assert rec.status == "not reproduced at this budget" and rec.shortfalls
    _rec(tmp_path, checks=[SUPPORTED], chapter="d")
    row = {r.claim.id: r for r in status_rows(tmp_path)}["nominal_term"]
    assert row.status == "partly" and [r.chapter for r in row.records] == ["book/c", "book/d"]
    assert {r.claim.id: r for r in status_rows(tmp_path, chapters=["book/d"])}["nominal_term"].status == "reproduced"


def test_parts_of_one_chapter_are_separate_records(tmp_path):
    _rec(tmp_path, cid="star_faster_metatraining", part="fmnist8_mlp32", checks=[INCONCLUSIVE])
    _rec(tmp_path, cid="star_faster_metatraining", part="fmnist8_conv", checks=[SUPPORTED],
         budget=Budget.from_grid(sweep.get_grid("indist_conv", "cpu")))
    row = {r.claim.id: r for r in status_rows(tmp_path)}["star_faster_metatraining"]
    assert len(row.records) == 2 and row.status == "partly"


@pytest.mark.parametrize("kwargs, match", [
    (dict(checks={"grows": True}), "checks must be a non-empty list of Check"),
    (dict(checks="reproduced"), "checks must be a non-empty list of Check"),
    (dict(checks=[]), "checks must be a non-empty list of Check"),
    (dict(checks=[True]), "checks must be Check objects"),
    (dict(cid="theorem9"), "claim_id must be one of"),
    (dict(summary="  "), "summary must be a non-empty sentence"),
    (dict(budget=None), "budget must be given"),
    (dict(budget={"task": "x"}), "budget must be a Budget"),
    (dict(chapter=""), "chapter must be a book page name"),
    (dict(chapter="../etc/passwd"), "chapter must be a book page name"),
    (dict(anchor="has space"), "anchor must be a label"),
    (dict(part="a b"), "part must be"),
])
def test_record_claim_rejects_bad_input(tmp_path, kwargs, match):
    with pytest.raises(ValueError, match=match):
        _rec(tmp_path, **kwargs)
    assert not list(tmp_path.glob("*.json"))


def test_record_claim_rejects_bad_scale(tmp_path):
    with pytest.raises(ValueError, match="STAR_SCALE must be one of"):
        record_claim("theorem1_stability", [SUPPORTED], "s", chapter="c", scale="huge", claims_folder=tmp_path)


def test_corrupt_records_name_the_file_and_old_ones_are_skipped(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="bad.json"):
        load_records(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"claim": "nominal_term", "summary": "s", "scale": "cpu",
                                                   "chapter": "c", "checks": [{"question": "q", "effect": 1}]}))
    with pytest.raises(ValueError, match="bad.json is not valid"):
        load_records(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"claim": "nominal_term", "status": "partly", "evidence": "e",
                                                   "scale": "cpu", "chapter": "c", "checks": {"a": True}}))
    assert load_records(tmp_path)["nominal_term"] == []  # an older book's pass/fail record


def test_claims_dir_finds_the_book_root(tmp_path, monkeypatch):
    monkeypatch.delenv("STAR_CLAIMS_DIR", raising=False)
    (tmp_path / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (tmp_path / "book").mkdir()
    monkeypatch.chdir(tmp_path / "book")  # the book executes notebooks here
    monkeypatch.setenv("STAR_SCALE", "smoke")
    assert claims.claims_dir() == tmp_path.resolve() / "_build" / "claims" / "smoke"
    assert claims.claims_dir("cpu") == tmp_path.resolve() / "_build" / "claims" / "cpu"
    path = record_claim("theorem1_stability", [SUPPORTED], "s", chapter="c").path
    assert path.parent == tmp_path.resolve() / "_build" / "claims" / "smoke"
    monkeypatch.setenv("STAR_CLAIMS_DIR", str(tmp_path / "elsewhere"))
    assert claims.claims_dir("paper") == tmp_path / "elsewhere" / "paper"


def test_claims_dir_without_a_book(tmp_path, monkeypatch):
    monkeypatch.delenv("STAR_CLAIMS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert claims.claims_dir("cpu", start=tmp_path) == tmp_path / "star_claims" / "cpu"


# ------------------------------------------------------------------------------------------------ pages


def test_status_page_shows_tallies_plain_sentences_budgets_and_folded_checks(tmp_path):
    _rec(tmp_path, checks=[SUPPORTED, INCONCLUSIVE], summary="STAR <b>wins</b> on one check.", anchor="app4")
    record_claim("theorem1_stability", [SUPPORTED], "Every instance was stable.", chapter="proofs",
                 scale="smoke", claims_folder=tmp_path)
    rows = status_rows(tmp_path)
    page = claims.render_status_html(rows, page="book/status", linkable=["book/c", "book/status"])
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
    note = claims.record_finding("breakdown", "The first layer dies.", chapter="why_pes_breaks_star",
                                 anchor="x", scale="smoke", claims_folder=tmp_path)
    assert "Our finding (not a claim of the paper)" in note._repr_html_()
    with pytest.raises(ValueError, match="finding_id must be one of"):
        claims.record_finding("nope", "s", chapter="c", claims_folder=tmp_path)
    found = claims.load_findings(tmp_path)
    assert [f.finding for f in found] == ["breakdown"]
    intro = claims.render_findings_html(status_rows(tmp_path), "cpu", linkable=["book/why_pes_breaks_star"],
                                        findings=found)
    assert "not claims of the paper" in intro and 'href="why_pes_breaks_star.html#x"' in intro
    assert "too small to settle" not in intro
    assert "too small to settle" in claims.render_findings_html(status_rows(tmp_path), "smoke")


def test_the_verdict_a_chapter_shows(tmp_path):
    v = _rec(tmp_path, checks=[SUPPORTED, CONTRADICTED], summary="One for, one against.")
    shown = v._repr_html_()
    assert "partly" in shown and "One for, one against." in shown and "<details>" in shown
    assert "+0.3 [+0.1, +0.5]</span><br/><small>nats" in shown and "−0.3 [−0.5, −0.1]</span>" in shown
    assert "Short of the paper" in shown and html.escape(claims.CHECK_RULE) in shown
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
    _rec(tmp_path / "claims", chapter="nqm")
    page = claims.render_status_html(status_rows(tmp_path / "claims"), titles={"book/nqm": "The NQM, verified"})
    assert '<a href="nqm.html">The NQM, verified</a>' in page


def test_interval_text_and_summaries():
    assert Check("q", float("nan"), -math.inf, math.inf).interval_text() == "n/a [−∞, +∞]"
    text = claims.summarize_checks([SUPPORTED, INCONCLUSIVE, CONTRADICTED])
    assert text == ("Supported: A is lower than B. Inconclusive: A is lower than B. "
                    "Contradicted: A is lower than B.")
    assert np.isclose(Check("q", np.float32(0.5), 0, 1).effect, 0.5)


def test_count_sentence_says_how_the_checks_came_out():
    assert claims.count_sentence([SUPPORTED, SUPPORTED]) == "all 2 checks are supported"
    assert claims.count_sentence([SUPPORTED, INCONCLUSIVE]) == "1 of 2 checks is supported and none is contradicted"
    assert claims.count_sentence([INCONCLUSIVE] * 4) == "none of the 4 checks is beyond the noise"
    assert claims.count_sentence([CONTRADICTED, INCONCLUSIVE]) == \
        "none of the 2 checks is supported and 1 is contradicted"
