"""The status page's numbers computed from the stored runs are those of the snapshot
``tests/data/status_numbers_cpu.json`` (:mod:`star.book.status_numbers`): a refactoring of the book's modules must
not move a verdict, an effect, an interval or a budget fraction. Floats are compared with a relative tolerance of
1e-9, strings exactly.

When a change is meant to move them (a new stored run, a new check), rewrite the snapshot on purpose from the
repository root and commit it with the change::

    python -m star.book.status_numbers tests/data/status_numbers_cpu.json
"""

import copy
import json
import math
from pathlib import Path

import pytest

from star.book import status_numbers
from star.runs import RunFolder

ROOT = Path(__file__).resolve().parents[1]
REL = 1e-9


def differences(expected, actual, path: str = "") -> list[str]:
    """Readable lines, one per difference between two JSON documents: ``claims.nominal_term.records[0].checks[1]
    .effect: 0.123 -> 0.124``. Floats within :data:`REL` (relative) are equal, NaN equals NaN."""
    where = path or "(the document)"
    if isinstance(expected, dict) and isinstance(actual, dict):
        out = [f"{path}.{k}: only in the snapshot" if path else f"{k}: only in the snapshot"
               for k in expected if k not in actual]
        out += [f"{path}.{k}: not in the snapshot" if path else f"{k}: not in the snapshot"
                for k in actual if k not in expected]
        for k in expected:
            if k in actual:
                out += differences(expected[k], actual[k], f"{path}.{k}" if path else str(k))
        return out
    if isinstance(expected, list) and isinstance(actual, list):
        out = [] if len(expected) == len(actual) else [f"{where}: {len(expected)} items -> {len(actual)}"]
        for i, (e, a) in enumerate(zip(expected, actual)):
            out += differences(e, a, f"{path}[{i}]")
        return out
    numbers = (int, float)
    if isinstance(expected, numbers) and isinstance(actual, numbers) \
            and not isinstance(expected, bool) and not isinstance(actual, bool):
        e, a = float(expected), float(actual)
        if (math.isnan(e) and math.isnan(a)) or math.isclose(e, a, rel_tol=REL, abs_tol=0.0):
            return []
        return [f"{where}: {expected!r} -> {actual!r}"]
    if type(expected) is not type(actual) or expected != actual:
        return [f"{where}: {expected!r} -> {actual!r}"]
    return []


@pytest.fixture(scope="module")
def snapshot():
    return json.loads((ROOT / status_numbers.SNAPSHOT).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def computed():
    numbers = status_numbers.stored_status_numbers()
    return json.loads(status_numbers.to_json(numbers))  # what a rewritten snapshot would hold


def test_the_status_numbers_of_the_stored_runs_are_those_of_the_snapshot(snapshot, computed):
    # the snapshot is not empty: every meta-training claim has its records, the findings are there
    assert len(snapshot["claims"]["star_faster_metatraining"]["records"]) >= 2
    assert {"ood_first_update", "breakdown", "remedies"} <= set(snapshot["findings"])
    diff = differences(snapshot, computed)
    assert not diff, ("the status page's numbers moved (rewrite the snapshot only if that is intended: python -m "
                      "star.book.status_numbers):\n  " + "\n  ".join(diff[:40]))


@pytest.mark.parametrize("change, expect", [
    (lambda d: d["claims"]["nominal_term"]["records"][0]["checks"][0].__setitem__(
        "effect", d["claims"]["nominal_term"]["records"][0]["checks"][0]["effect"] * (1 + 1e-6)),
     "claims.nominal_term.records[0].checks[0].effect"),
    (lambda d: d["claims"]["star_faster_metatraining"].__setitem__("status", "reproduced"),
     "claims.star_faster_metatraining.status: 'partly' -> 'reproduced'"),
    (lambda d: d["claims"]["ood_generalization"]["records"].pop(),
     "claims.ood_generalization.records: 1 items -> 0"),
    (lambda d: d["findings"].pop("remedies"), "findings.remedies: only in the snapshot"),
    (lambda d: d["tallies"][0]["counts"].__setitem__("partly", 2), "tallies[0].counts.partly: 1 -> 2"),
])
def test_a_changed_number_is_reported(snapshot, computed, change, expect):
    """A perturbed copy of the computed numbers differs from the snapshot, on the line that names the change."""
    assert snapshot["claims"]["star_faster_metatraining"]["status"] == "partly"  # what the cases assume
    broken = copy.deepcopy(computed)
    change(broken)
    diff = differences(snapshot, broken)
    assert len(diff) == 1 and diff[0].startswith(expect), diff


def test_a_changed_stored_number_moves_the_numbers(snapshot, monkeypatch):
    """One stored meta-curve read 0.05 nats higher at its last snapshot (STAR, outer wd 0.1, seed 0 of the
    in-distribution grid) moves the checks that read it, and the test says which."""
    read = RunFolder.meta_curve

    def shifted(self):
        doc = read(self)
        if doc is not None and self.path.name == "star_wd0.1_s0" and self.path.parent.name == "fmnist8_grid":
            doc = copy.deepcopy(doc)
            doc["curve"][-1]["mean"] += 0.05
        return doc

    monkeypatch.setattr(RunFolder, "meta_curve", shifted)
    diff = differences(snapshot, json.loads(status_numbers.to_json(status_numbers.stored_status_numbers())))
    assert any(d.startswith("claims.star_faster_metatraining.records[0].checks[2].effect") for d in diff), diff
    assert not any(d.startswith("claims.star_faster_metatraining.records[1]") for d in diff), diff  # the ConvNet's


def test_every_verdict_and_finding_a_chapter_records_from_stored_runs_is_in_the_snapshot(snapshot):
    """The cells of the chapters that read stored runs (:data:`status_numbers.STORED_CHAPTERS`) that record
    (``record_claim``, ``record_finding``, ``record_verdict``, ``verdict_or_reason``) name no claim and no finding
    that :func:`status_numbers.record_stored` leaves out; the other chapters' (the proofs', the NQM chapter's,
    computed when the book is built) are not in the snapshot."""
    from star.book.claims import CLAIMS, FINDINGS

    named = {}
    for nb in sorted((ROOT / "book").glob("*.ipynb")):
        for cell in json.loads(nb.read_text(encoding="utf-8"))["cells"]:
            text = "".join(cell["source"])
            if cell["cell_type"] == "code" and any(f"{f}(" in text for f in (
                    "record_claim", "record_finding", "record_verdict", "verdict_or_reason")):
                named.setdefault(nb.stem, set()).update(k for k in (*CLAIMS, *FINDINGS) if f'"{k}"' in text)
    stored = set().union(*(named.get(c, set()) for c in status_numbers.STORED_CHAPTERS))
    built = set().union(*(v for c, v in named.items() if c not in status_numbers.STORED_CHAPTERS))
    assert {"ood_generalization", "star_faster_metatraining", "remedies"} <= stored  # the cells are really read
    assert {"theorem1_stability", "nqm_nominal_without_decay"} <= built
    with_records = {k for k, v in snapshot["claims"].items() if v["records"]} | set(snapshot["findings"])
    assert stored - with_records == set(), "recorded by a chapter, missing from star.book.status_numbers"
    assert built & (set(snapshot["claims"]) | set(snapshot["findings"])) == set()
