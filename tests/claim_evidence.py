"""Checks and budgets shared by the tests of the status-page modules (tests/test_verdicts.py, test_claims.py,
test_records.py, test_status_page.py): one supported, one inconclusive and one contradicted check, a small budget
and one in the paper's regime, and a helper that records a claim into a folder."""

from star.book.claims import Budget
from star.book.records import record_claim
from star.book.verdicts import Check

SUPPORTED = Check("A is lower than B", 0.3, 0.1, 0.5, "nats")
INCONCLUSIVE = Check("A is lower than B", 0.3, -0.1, 0.7, "nats")
CONTRADICTED = Check("A is lower than B", -0.3, -0.5, -0.1, "nats")
SMALL = Budget("fmnist8_mlp32", 2410, 200, 64, 2000, 3)
PAPER_LIKE = Budget("fmnist_mlp", 118_282, 5000, 8, 2000, 3)


def record(folder, cid="nominal_term", checks=(SUPPORTED,), budget=SMALL, chapter="c", **kw):
    """Record ``checks`` on claim ``cid`` into ``folder`` at smoke scale (``summary`` defaults to a plain sentence)."""
    checks = list(checks) if isinstance(checks, tuple) else checks
    return record_claim(cid, checks, kw.pop("summary", "A plain sentence."), budget=budget, chapter=chapter,
                        scale="smoke", claims_folder=folder, **kw)
