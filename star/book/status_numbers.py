"""The numbers of the "Reproduction status" page that come from the stored runs under ``results/``, recomputed
without executing a chapter, so that a change of the package that should not move them can be shown not to.

The chapters that record verdicts and findings from stored runs — In-distribution meta-training (the ``indist``,
``indist_conv`` and ``indist_long`` grids), Out of distribution (the suite), The STAR optimizer and PES breaks
STAR (their stored runs and measurements) — read the stored cpu-scale results at every scale but ``paper``, so
these numbers are the same in the cpu and the smoke book. :func:`stored_status_numbers` makes the records those
chapters make, with the same package functions, into a temporary folder, reads them back the way the status page
does (:func:`star.book.records.status_rows`, :func:`star.book.records.load_findings`) and returns what the page shows
of them: per claim its verdict and, per record, its checks (effect, interval, outcome), the budget with the fractions
of the paper's, the reasons it falls short of the paper's regime, the sentences; the tallies; the findings.

The claims of the proofs and the noisy-quadratic-model chapters are left out: they are computed when the book is
built, at the size of its scale, not read from stored runs.

``tests/data/status_numbers_cpu.json`` holds a snapshot that ``tests/test_status_numbers.py`` compares with; after a
change that is meant to move the numbers (a new stored run, a new check), rewrite it on purpose from the
repository root::

    python -m star.book.status_numbers tests/data/status_numbers_cpu.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

__all__ = ["stored_status_numbers", "record_stored", "numbers_of", "to_json", "SNAPSHOT", "STORED_CHAPTERS",
           "STORED_KINDS"]

#: The snapshot the tests compare with, relative to the repository root.
SNAPSHOT = "tests/data/status_numbers_cpu.json"
#: The chapters (``book/<name>.ipynb``) whose verdicts and findings are computed from stored runs.
STORED_CHAPTERS = ("in_distribution", "ood", "star_optimizer", "pes_breaks_star")
#: The kinds of claim (:attr:`star.book.claims.Claim.kind`) whose evidence is read from stored runs.
STORED_KINDS = ("metatraining",)


def record_stored(folder: str | Path) -> None:
    """Record into ``folder`` every verdict and finding that the chapters compute from stored cpu-scale runs, as
    the chapters' own cells do (same functions, same arguments)."""
    from star import sweep
    from star.book import (
        grid_results,
        in_distribution_verdicts,
        labels,
        ood_results,
        ood_verdict,
        pes_mechanism,
        pes_n_runs,
        pes_remedies,
        records,
        star_optimizer,
    )
    from star.book.files import repo_json, stored_run
    from star.runs import EVALUATE_REPORT
    from star.tasks import OOD_SUITE

    # In-distribution meta-training (book/in_distribution.ipynb): Fig. 3 on both tasks, Figs. App.2-4, the long grid
    results = grid_results.load_grid(sweep.get_grid("indist", "cpu"))
    conv = grid_results.load_grid(sweep.get_grid("indist_conv", "cpu"))
    in_distribution_verdicts.record_verdict(results, "star_faster_metatraining", claims_folder=folder)
    in_distribution_verdicts.record_verdict(conv, "star_faster_metatraining", anchor="indist-fig3-conv",
                                            claims_folder=folder)
    for claim in ("weight_decay_tradeoff", "adam_preconditioning", "nominal_term"):
        in_distribution_verdicts.record_verdict(results, claim, claims_folder=folder)
    long = grid_results.load_grid(sweep.get_grid("indist_long", "cpu"))
    if long.runs:
        for claim in ("star_faster_metatraining", "weight_decay_tradeoff", "adam_preconditioning"):
            in_distribution_verdicts.verdict_or_reason(long, claim, anchor="indist-long", claims_folder=folder)

    # Out of distribution (book/ood.ipynb)
    suite, _ = ood_results.load_stored("cpu")
    if len(suite) == len(OOD_SUITE):
        checks = ood_verdict.ood_checks(suite)
        evidence = (ood_verdict.evidence_text(ood_results.summarize(suite)) + " "
                    + ood_verdict.meta_run_evidence_text(suite))
        records.record_claim(
            "ood_generalization", checks, ood_verdict.verdict_summary(suite, checks),
            budget=ood_verdict.learned_budget(suite), evidence=evidence,
            scale="cpu", chapter="ood", anchor="ood-verdict", claims_folder=folder)
        first_update = ood_verdict.first_update_sentence(ood_verdict.first_update_failures(suite))
        records.record_finding("ood_first_update", first_update, scale="cpu", chapter="ood", anchor="ood-verdict",
                               claims_folder=folder)

    # The STAR optimizer (book/star_optimizer.ipynb)
    runs = {"paper's settings, N = 8": stored_run("star_fmnist_cpu_paper_sigma"),
            "N = 32": stored_run("star_fmnist_cpu_n32"),
            **{f"N = {n}": stored_run(f"star_fmnist8_cpu_n{n}") for n in (64, 8)}}
    old = stored_run("star_fmnist_cpu").json(EVALUATE_REPORT)
    improvements = {f"the {labels.task_short(run.config['task'])}, {label}": (s["nominal"], s["end"])
                    for label, run in runs.items() for s in [star_optimizer.meta_curve_summary(run)]}
    improvements[f"the {labels.task_short('fmnist_mlp')}, σ = 1e-3, lr 3e-4, N = 8"] = (
        old["initial"]["mean_train_loss"], old["learned"]["mean_train_loss"])
    records.record_finding("star_metatraining", star_optimizer.metatraining_finding(improvements), scale="cpu",
                           chapter="star_optimizer", anchor="star-meta-training", claims_folder=folder)

    # PES breaks STAR (book/pes_breaks_star.ipynb)
    mech = repo_json("results/metatrain/breakdown/mechanism.json")
    iv = repo_json("results/metatrain/breakdown/interventions.json")
    records.record_finding("breakdown", pes_mechanism.breakdown_finding(mech, iv), scale="cpu",
                           chapter="pes_breaks_star", anchor="pes-breakdown", claims_folder=folder)
    records.record_finding("breakdown_n", pes_n_runs.n_finding(pes_n_runs.load_n_runs()), scale="cpu",
                           chapter="pes_breaks_star", anchor="pes-breakdown-n", claims_folder=folder)
    seeds = grid_results.load_grid(sweep.get_grid("remedies_seeds", "cpu"))
    records.record_finding("remedies", pes_remedies.remedies_finding(mech, seeds), scale="cpu",
                           chapter="pes_breaks_star", anchor="pes-remedies", claims_folder=folder)


def numbers_of(folder: str | Path) -> dict:
    """What the status page shows of the records in ``folder`` on the claims of :data:`STORED_KINDS` (each claim's
    verdict and records, their group's tally) and of the findings, as plain JSON (floats, ints, strings, lists)."""
    from star.book import claims, records, status

    rows = records.status_rows(folder)
    out = {"tallies": [{"group": title, "counts": counts,
                        "budget": status.group_budget([r for r in rows if r.claim.kind in kinds])}
                       for (title, counts), (_, kinds) in zip(records.tallies(rows), claims.GROUPS)
                       if set(kinds) <= set(STORED_KINDS)],
           "claims": {}, "findings": {}}
    for row in rows:
        if row.claim.kind in STORED_KINDS:
            out["claims"][row.claim.id] = {"status": row.status, "records": [_record(r) for r in row.records]}
    for f in records.load_findings(folder):
        out["findings"][f.finding] = {"summary": f.summary, "scale": f.scale, "chapter": f.chapter}
    return out


def _record(rec) -> dict:
    from star.book import status, verdict_html

    return {"chapter": rec.chapter, "part": rec.part, "scale": rec.scale, "status": rec.status,
            "summary": rec.summary, "evidence": rec.evidence, "shortfalls": list(rec.shortfalls),
            "budget": None if rec.budget is None else rec.budget.to_dict() | {"notes": list(rec.budget.notes)},
            "budget_phrase": status.budget_phrase(rec),
            "budget_rows": [list(r) for r in verdict_html.budget_rows(rec.claim, rec.budget)],
            "checks": [{"question": c.question, "effect": c.effect, "low": c.low, "high": c.high, "unit": c.unit,
                        "how": c.how, "status": c.status, "interval": c.interval_text()} for c in rec.checks]}


def stored_status_numbers() -> dict:
    """:func:`numbers_of` the records :func:`record_stored` makes (in a temporary folder, removed after)."""
    with tempfile.TemporaryDirectory(prefix="star-status-") as tmp:
        record_stored(tmp)
        return numbers_of(tmp)


def to_json(numbers: dict) -> str:
    """``numbers`` as the snapshot file holds them (non-finite floats as JSON's NaN/Infinity)."""
    return json.dumps(numbers, indent=1, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv=None) -> int:
    """``python -m star.book.status_numbers [FILE]``: write :func:`stored_status_numbers` to ``FILE`` (default
    :data:`SNAPSHOT`)."""
    argv = sys.argv[1:] if argv is None else argv
    path = Path(argv[0] if argv else SNAPSHOT)
    path.write_text(to_json(stored_status_numbers()), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
