"""star.book.claims: the paper's claims, the budgets of their evidence and how far a budget is from the paper's
(and the budget beside the paper's as star.book.verdict_html shows it)."""


import pytest
from claim_evidence import SMALL

from star import sweep
from star.book import claims, verdict_html
from star.book.claims import CLAIMS, Budget


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
    rows = dict((a, (b, c)) for a, b, c in verdict_html.budget_rows("nominal_term", SMALL))
    assert rows["task"][1].endswith("(2 %)") and "118,282" in rows["task"][1]
    assert rows["outer steps"] == ("200", "not stated; the book's paper-scale setting 5,000 (4 %)")
    assert rows["inner horizon"] == ("2,000", "2,000 (100 %)")
    assert rows["seeds"] == ("3", "not stated")
    assert verdict_html.budget_rows("theorem1_stability", None) == []


@pytest.mark.parametrize("kwargs, match", [
    (dict(task=""), "task must be a task id"), (dict(outer_steps=0), "outer_steps must be a positive integer"),
    (dict(seeds=2.5), "seeds must be a positive integer"), (dict(horizon=True), "horizon must be"),
])
def test_budget_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Budget(**(dict(task="fmnist_mlp") | kwargs))
