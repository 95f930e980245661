"""star.book.records: what the chapters record (evidence, not verdicts), validated when written and when read."""

import json

import pytest
from claim_evidence import CONTRADICTED, INCONCLUSIVE, PAPER_LIKE, SUPPORTED, record

from star import sweep
from star.book import records
from star.book.claims import CLAIMS, Budget
from star.book.records import load_records, record_claim, status_rows


def test_unrecorded_claims_are_not_yet(tmp_path):
    rows = status_rows(tmp_path / "missing")
    assert [r.claim.id for r in rows] == list(CLAIMS)
    assert {r.status for r in rows} == {"not yet"} and all(r.records == () for r in rows)


def test_records_store_evidence_and_the_verdict_is_recomputed(tmp_path):
    """A record holds checks and budget; its status is computed when read, so a rule change reaches it."""
    v = record(tmp_path, checks=[CONTRADICTED], budget=PAPER_LIKE)
    raw = json.loads(v.path.read_text())
    assert "status" not in raw and raw["checks"][0]["low"] == -0.5 and raw["budget"]["outer_steps"] == 5000
    assert raw["shortfalls"] == [] and v.status == "contradicted"
    record(tmp_path, checks=[CONTRADICTED])  # the same chapter again, at the small budget: replaces it
    (rec,) = load_records(tmp_path)["nominal_term"]
    assert rec.status == "not reproduced at this budget" and rec.shortfalls
    record(tmp_path, checks=[SUPPORTED], chapter="d")
    row = {r.claim.id: r for r in status_rows(tmp_path)}["nominal_term"]
    assert row.status == "partly" and [r.chapter for r in row.records] == ["book/c", "book/d"]
    assert {r.claim.id: r for r in status_rows(tmp_path, chapters=["book/d"])}["nominal_term"].status == "reproduced"


def test_parts_of_one_chapter_are_separate_records(tmp_path):
    record(tmp_path, cid="star_faster_metatraining", part="fmnist8_mlp32", checks=[INCONCLUSIVE])
    record(tmp_path, cid="star_faster_metatraining", part="fmnist8_conv", checks=[SUPPORTED],
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
        record(tmp_path, **kwargs)
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
    assert records.claims_dir() == tmp_path.resolve() / "_build" / "claims" / "smoke"
    assert records.claims_dir("cpu") == tmp_path.resolve() / "_build" / "claims" / "cpu"
    path = record_claim("theorem1_stability", [SUPPORTED], "s", chapter="c").path
    assert path.parent == tmp_path.resolve() / "_build" / "claims" / "smoke"
    monkeypatch.setenv("STAR_CLAIMS_DIR", str(tmp_path / "elsewhere"))
    assert records.claims_dir("paper") == tmp_path / "elsewhere" / "paper"


def test_claims_dir_without_a_book(tmp_path, monkeypatch):
    monkeypatch.delenv("STAR_CLAIMS_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    assert records.claims_dir("cpu", start=tmp_path) == tmp_path / "star_claims" / "cpu"
