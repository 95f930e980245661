"""The paper's claims, the evidence the chapters record on them, the rule that turns evidence into a verdict,
and the "Reproduction status" page.

**Checks.** A chapter that tests a claim asks questions the claim answers and measures each as an *effect*,
oriented so that a positive value is the paper's direction, with a 95 % confidence interval
(:mod:`star.book.stats`). A :class:`Check` is then

* *supported* — the interval lies above zero;
* *contradicted* — it lies below zero (a significant difference the other way);
* *inconclusive* — it contains zero.

**Budget.** Every record states the :class:`Budget` its evidence was computed at — the task and its size, outer
steps, inner problems per estimate N, inner horizon, seeds — which the status page shows beside the paper's as
fractions. A budget reaches the paper's *regime* when it is on the paper's task with at least
:data:`REGIME_FRACTION` of the paper's outer steps and horizon (:func:`shortfalls`; where the paper does not
state a number, the book's own paper-scale setting stands in for it and is marked so).

**Claim verdict** (:func:`claim_status`, the rule :data:`CLAIM_RULE`): *reproduced* when every check is
supported; *partly* when some are; *contradicted* when none is and a check is contradicted on evidence whose
budget reaches the paper's regime; otherwise *not reproduced at this budget*. So no claim is contradicted on a
non-significant difference, nor on a significant one measured far from the paper's regime.

A chapter records its evidence and shows the verdict::

    from star.book import claims
    check = claims.Check("the variance grows at least 100x towards the edge", *effect_low_high,
                         unit="decades above 100x", how="bootstrap over 500 seeds")
    claims.record_claim("nqm_fig2a_variance", [check], summary="...", budget=claims.Budget(...),
                        chapter="nqm_experiments", anchor="fig2a")

Statuses are computed from the stored checks whenever a page shows them — a record holds evidence, not a
verdict — so a rule change reaches every page on the next build. Records are small JSON files, one per
(claim, chapter, part), in ``claims_dir(scale)``: ``$STAR_CLAIMS_DIR/<scale>/`` when that variable is set,
else ``<book root>/_build/claims/<scale>/`` (the book root is the first folder above the working directory
that holds ``_toc.yml``), else ``./star_claims/<scale>/`` (e.g. on Colab). The book's own findings, which are
not claims of the paper, are recorded beside them with :func:`record_finding`.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import html
import json
import math
import numbers
import os
import posixpath
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from star.book import labels
from star.book.pages import find_book_root, normalize_page, page_title, toc_pages
from star.scale import Scale, get_scale

__all__ = [
    "CLAIMS", "FINDINGS", "CHECK_STATUSES", "STATUSES", "GROUPS", "CHECK_RULE", "CLAIM_RULE", "REGIME_FRACTION",
    "Claim", "Check", "Budget", "ClaimRecord", "FindingRecord", "StatusRow", "Verdict", "task_size", "paper_budget",
    "shortfalls", "check_status", "claim_status", "summarize_checks", "count_sentence", "budget_rows", "budget_phrase",
    "group_budget", "record_claim",
    "record_finding", "claims_dir", "load_records", "load_findings", "status_rows", "tallies", "render_status_html",
    "render_findings_html", "show_status", "show_findings",
]

CHECK_STATUSES = ("supported", "inconclusive", "contradicted")
STATUSES = ("reproduced", "partly", "not reproduced at this budget", "contradicted", "not yet")
CHECK_RULE = ("each check measures an effect, signed so that a positive value is the paper's direction, with a "
              "95 % confidence interval: supported when the interval lies above zero, contradicted when it lies "
              "below zero, inconclusive when it contains zero")
CLAIM_RULE = ("reproduced when every check is supported; partly when some are; contradicted when none is and "
              "a check is contradicted at a budget that reaches the paper's regime; otherwise not reproduced "
              "at this budget")
REGIME_FRACTION = 0.5  # a budget reaches the paper's regime with at least this fraction of its outer steps
_ANCHOR_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]*$")
_PART_RE = re.compile(r"^[A-Za-z0-9_.-]*$")
_COLOURS = {"reproduced": "#1a7f37", "partly": "#9a6700", "not reproduced at this budget": "#57606a",
            "contradicted": "#cf222e", "not yet": "#8c959f", "supported": "#1a7f37", "inconclusive": "#57606a"}
ARXIV = "https://arxiv.org/abs/2209.11208"


# --------------------------------------------------------------------------------------------------------------
# budgets


@dataclasses.dataclass(frozen=True)
class Budget:
    """What an experiment spent: the inner task and its number of parameters, outer (meta-training) steps,
    inner problems per gradient estimate N, inner horizon, and independent seeds. ``None``: not applicable or not
    stated. ``notes``: departures the five numbers do not show (e.g. an outer learning rate other than the
    paper's)."""

    task: str
    task_size: int | None = None
    outer_steps: int | None = None
    num_tasks: int | None = None
    horizon: int | None = None
    seeds: int | None = None
    notes: tuple = ()

    def __post_init__(self):
        if not isinstance(self.task, str) or not self.task:
            raise ValueError(f"task must be a task id such as 'fmnist_mlp'; got {self.task!r}")
        for f in ("task_size", "outer_steps", "num_tasks", "horizon", "seeds"):
            v = getattr(self, f)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise ValueError(f"{f} must be a positive integer or None; got {v!r}")
        object.__setattr__(self, "notes", tuple(str(n) for n in self.notes))

    @classmethod
    def from_grid(cls, grid, seeds: int | None = None, notes: Sequence[str] = ()) -> Budget:
        """The budget of a grid of meta-training runs (``star.grids.Grid``): its task and that task's size, outer
        steps, N, horizon, and ``seeds`` (default: the grid's seeds; pass the number of seeds a comparison
        actually has). A grid whose outer learning rate is not the paper's 1e-4 says so in ``notes``."""
        n_seeds = seeds if seeds is not None else len(getattr(grid, "all_seeds", grid.seeds))
        extra = tuple(notes)
        if not math.isclose(float(grid.lr), 1e-4):
            extra += (f"outer learning rate {float(grid.lr):g} (the paper's: 1e-4)",)
        return cls(grid.task, task_size(grid.task), int(grid.outer_steps), int(grid.num_tasks), int(grid.horizon),
                   int(n_seeds), extra)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@functools.cache
def task_size(name: str) -> int | None:
    """Number of parameters of the inner model of task ``name`` (``None`` where it cannot be computed here);
    the 2-D noisy quadratic model has 2. Image tasks are counted from their architecture, without their data."""
    if name == "nqm":
        return 2
    try:
        import jax
        import jax.numpy as jnp
        import numpy as np

        from star.tasks import TASKS, get_task

        spec = TASKS.get(name)
        if spec is not None and spec.model is not None:
            hw = spec.image_size or ((32, 32) if name.startswith("cifar") else (28, 28))
            channels = 3 if name.startswith("cifar") else 1
            model = spec.model(10)
            shapes = jax.eval_shape(lambda k: model.init(k, jnp.zeros((1, *hw, channels))), jax.random.key(0))
        else:
            task = get_task(name)
            shapes = jax.eval_shape(task.init, jax.random.key(0))
        return int(sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(shapes)))
    except Exception:  # noqa: BLE001 - a task whose data are not here: the size is shown as unknown
        return None


#: The task a substitute stands in for, when the budget is compared with the paper's.
SUBSTITUTES = {"fmnist8_mlp32": "fmnist_mlp", "fmnist8_conv": "cifar10_conv", "fmnist_conv": "cifar10_conv"}


@functools.cache
def _paper_scale_reference(task: str) -> Budget | None:
    """The book's own paper-scale grid on ``task`` (it fills in what the paper does not state)."""
    try:
        from star.grids import GRIDS
    except ImportError:  # pragma: no cover
        return None
    for g in GRIDS.values():
        if g.scale == "paper" and g.task == task:
            return Budget.from_grid(g)
    return None


# --------------------------------------------------------------------------------------------------------------
# claims


@dataclasses.dataclass(frozen=True)
class Claim:
    """One claim of the paper.

    ``statement`` is the claim as the paper states it: a quotation where ``quoted`` (from the appendix, which we
    have), else our reconstruction of a statement of the main text or the abstract (cited as arXiv 2209.11208).
    ``kind`` is ``"theory"``, ``"nqm"`` or ``"metatraining"``; ``paper_budgets`` holds, per task of the paper the
    claim is made on, the paper's budget (``None`` for mathematics)."""

    id: str
    title: str
    paper: str
    statement: str
    kind: str
    quoted: bool = False
    paper_budgets: tuple = ()

    def paper_budget(self, task: str | None) -> Budget | None:
        """The paper's budget for the task ``task`` stands for (itself or a substitute's original); the first
        task of the claim when ``task`` is none of them."""
        if not self.paper_budgets:
            return None
        want = SUBSTITUTES.get(task, task)
        for b in self.paper_budgets:
            if b.task == want:
                return b
        return self.paper_budgets[0]


_MLP = Budget("fmnist_mlp", 118_282, None, None, 2000, None)
_CONV = Budget("cifar10_conv", 56_970, None, None, 2000, None)

CLAIMS: dict[str, Claim] = {c.id: c for c in (
    Claim("theorem1_stability", "Theorem 1: sufficient conditions for stable inner training",
          "§4, Thm. 1; App. A.2",
          "If conditions (9)–(10) hold on the eigenvalues of the learned P and of H, the NQM dynamics "
          "A = I − (αI + P)H are stable.", "theory"),
    Claim("lemma2_preconditioning", "Lemma 2: preconditioning relaxes the conditions",
          "§4, Lemma 2; App. A.2",
          "With the Hessian preconditioner H^(−1/2), Theorem 1's conditions hold with λ_max(H) replaced by its "
          "square root.", "theory"),
    Claim("lemma3_robust", "Lemma 3: robust stability under multiplicative output errors",
          "§4.3, Lemma 3, eqs. (16)–(17); App. A.3",
          "Bounds (16)–(17) keep the dynamics stable for any diagonal multiplicative error up to the stated "
          "size.", "theory"),
    Claim("nqm_fig2a_variance", "The meta-gradient's variance explodes at the stability edge",
          "Fig. 2a; App. B.1",
          "On the NQM the variance of the meta-gradient grows by orders of magnitude as the step size α "
          "approaches 2/λ_max(H), and more steeply for longer horizons T.", "nqm",
          paper_budgets=(Budget("nqm", 2, None, None, 1000, 500),)),
    Claim("nqm_metatraining_stability", "NQM meta-training reaches the stability boundary without a nominal term",
          "Fig. 2b–c; App. B.1",
          "Meta-trained with ES, a learned P alone reaches the stability boundary, while a nominal term with "
          "weight decay on the meta-parameters keeps the learned optimizer inside Theorem 1's region and "
          "meta-trains smoothly.", "nqm",
          paper_budgets=(Budget("nqm", 2, None, None, 50, 5),)),
    Claim("star_faster_metatraining", "STAR meta-trains faster than the blackbox optimizer",
          "Abstract; Fig. 3; App. B.2, C.1",
          "At matched optimizer compute, STAR meta-trains faster than the previous state-of-the-art blackbox "
          "learned optimizer (small_fc_lopt), on the Fashion-MNIST MLP and the CIFAR-10 ConvNet.", "metatraining",
          paper_budgets=(_MLP, _CONV)),
    Claim("weight_decay_tradeoff", "Outer weight decay trades stability against over-damping",
          "App. C.2, Fig. App.2",
          "“For values between 0.1 and 0.5 (times the learning rate) as we use in our experiments, a good "
          "tradeoff between stabilizing behavior outside of the training horizon and avoid over-damping the "
          "dynamics (as in the case of 1.0 weight decay) is achieved.”", "metatraining", quoted=True,
          paper_budgets=(_MLP,)),
    Claim("adam_preconditioning", "Adam-style normalization of the blackbox term gives better meta-losses",
          "App. C.2, Fig. App.3",
          "“Generally, better meta-losses are achieved with the preconditioning compared to without; it is less "
          "clear what the benefit for generalization is.”", "metatraining", quoted=True, paper_budgets=(_MLP,)),
    Claim("nominal_term", "The nominal term makes meta-training faster and better",
          "App. C.2, Fig. App.4",
          "“Generally, without the nominal term, meta-training is slower and converges to worse solutions.”",
          "metatraining", quoted=True, paper_budgets=(_MLP,)),
    Claim("ood_generalization", "Out of distribution the blackbox optimizer is the unstable one",
          "App. C.3, Figs. App.5–App.6",
          "“We find in almost all cases that the blackbox optimizer is unstable as compared to Hyperparam, or "
          "either of the STAR optimizers. The performance of the hyperparameter controller versus the STAR models "
          "is more mixed; [...] there are cases in which the STAR models substantially outperform the "
          "hyperparameter controller.”", "metatraining", quoted=True, paper_budgets=(_MLP,)),
)}

#: The two headline tallies: the theory and the NQM (run at the paper's settings), and meta-training.
GROUPS = (("Theory and the noisy quadratic model", ("theory", "nqm")),
          ("Meta-training of STAR and its ablations", ("metatraining",)))

#: The book's own findings — results that are not claims of the paper — by id: their titles.
FINDINGS = {
    "nqm_nominal_without_decay": "Without weight decay, a nominal term does not keep P inside Theorem 1's band",
    "star_metatraining": "PES improves STAR on a small MLP, not on the paper's MLP at CPU budgets",
    "breakdown": "Why PES at the paper's σ breaks STAR on the paper's MLP",
    "breakdown_n": "More inner problems per PES estimate do not prevent the breakdown",
    "remedies": "What lets meta-training on the paper's MLP survive",
    "ood_first_update": "Out of distribution, STAR fails within its first updates",
}


def paper_budget(claim_id: str, task: str | None = None) -> Budget | None:
    """The paper's budget for ``claim_id`` on ``task`` (see :meth:`Claim.paper_budget`)."""
    return CLAIMS[claim_id].paper_budget(task)


def _reference(claim: Claim, budget: Budget) -> Budget | None:
    paper = claim.paper_budget(budget.task)
    return _paper_scale_reference(paper.task) if paper is not None else None


def shortfalls(claim_id: str, budget: Budget | None, extra: Sequence[str] = ()) -> list[str]:
    """Why ``budget`` does not reach the paper's regime for ``claim_id`` (empty: it does).

    It falls short when it is not on the paper's task, or has less than :data:`REGIME_FRACTION` of the paper's
    outer steps or horizon (outer steps the paper does not state: the book's paper-scale setting); ``extra``
    adds reasons a chapter computed (e.g. a cumulative weight decay too small for over-damping)."""
    claim = CLAIMS[claim_id]
    out = list(extra)
    if budget is None:
        return out
    paper = claim.paper_budget(budget.task)
    if paper is None:
        return out
    if budget.task != paper.task:
        out.append(f"the task is {labels.task_short(budget.task)}, not {labels.task_short(paper.task)}")
    ref = _reference(claim, budget)
    for field, what in (("outer_steps", "outer steps"), ("horizon", "inner horizon")):
        ours, theirs = getattr(budget, field), getattr(paper, field)
        marked = ""
        if theirs is None and ref is not None:
            theirs, marked = getattr(ref, field), " (the book's paper-scale setting; the paper does not state it)"
        if ours is not None and theirs and ours < REGIME_FRACTION * theirs:
            out.append(f"{ours:,} {what} of {theirs:,}{marked}")
    return out


# --------------------------------------------------------------------------------------------------------------
# checks and the rule


def check_status(effect: float, low: float, high: float) -> str:
    """``supported`` if ``low > 0``, ``contradicted`` if ``high < 0``, else ``inconclusive`` (:data:`CHECK_RULE`)."""
    if low > 0:
        return "supported"
    if high < 0:
        return "contradicted"
    return "inconclusive"


@dataclasses.dataclass(frozen=True)
class Check:
    """One question a claim answers, measured: ``effect`` (positive = the paper's direction) with the 95 %
    interval ``[low, high]`` in ``unit``; ``how`` says how both were computed. ``effect`` may be NaN (e.g. a
    diverged run) only with an unbounded interval."""

    question: str
    effect: float
    low: float
    high: float
    unit: str = ""
    how: str = ""

    def __post_init__(self):
        if not isinstance(self.question, str) or not self.question.strip():
            raise ValueError(f"question must be a non-empty sentence; got {self.question!r}")
        vals = []
        for f in ("effect", "low", "high"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise ValueError(f"{f} must be a number (an effect and its interval, not a pass/fail); got {v!r}")
            vals.append(float(v))
            object.__setattr__(self, f, float(v))
        effect, low, high = vals
        if math.isnan(low) or math.isnan(high) or low > high:
            raise ValueError(f"low and high must bound an interval, low <= high; got [{low}, {high}]")
        if math.isnan(effect):
            if math.isfinite(low) or math.isfinite(high):
                raise ValueError("a NaN effect needs the interval (-inf, inf): the data cannot decide")
        elif not low - 1e-9 * (1 + abs(effect)) <= effect <= high + 1e-9 * (1 + abs(effect)):
            raise ValueError(f"effect {effect} must lie in its interval [{low}, {high}]")
        object.__setattr__(self, "question", self.question.strip())

    @property
    def status(self) -> str:
        return check_status(self.effect, self.low, self.high)

    def interval_text(self, digits: int = 3) -> str:
        """``+0.12 [+0.03, +0.21] nats``"""
        def f(x):
            return "−∞" if x == -math.inf else "+∞" if x == math.inf else "n/a" if math.isnan(x) else \
                f"{x:+.{digits}g}".replace("-", "−")
        return f"{f(self.effect)} [{f(self.low)}, {f(self.high)}]" + (f" {self.unit}" if self.unit else "")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _as_checks(checks) -> tuple:
    if isinstance(checks, Mapping) or isinstance(checks, str) or not isinstance(checks, Sequence) or not checks:
        raise ValueError(f"checks must be a non-empty list of Check (an effect with its interval each), from which "
                         f"the status is computed; got {checks!r}"[:300])
    bad = [c for c in checks if not isinstance(c, Check)]
    if bad:
        raise ValueError(f"checks must be Check objects; got {bad[0]!r}"[:300])
    return tuple(checks)


def count_sentence(checks: Sequence[Check]) -> str:
    """How the checks came out, in words: ``"all 3 checks are supported"``, ``"2 of 3 checks are supported and
    none is contradicted"``, ``"none of the 4 checks is beyond the noise"``."""
    n = len(checks)
    s = sum(c.status == "supported" for c in checks)
    c = sum(c.status == "contradicted" for c in checks)
    if s == n:
        return f"all {n} checks are supported" if n > 1 else "its check is supported"
    if s == 0 and c == 0:
        return f"none of the {n} checks is beyond the noise" if n > 1 else "its check is within the noise"
    contra = "none is contradicted" if c == 0 else f"{c} {'is' if c == 1 else 'are'} contradicted"
    if s == 0:
        return f"none of the {n} checks is supported and {contra}"
    return f"{s} of {n} checks {'is' if s == 1 else 'are'} supported and {contra}"


def summarize_checks(checks: Sequence[Check]) -> str:
    """The checks in one plain sentence per outcome: ``"Supported: A; B. Inconclusive: C."``"""
    out = []
    for status in CHECK_STATUSES:
        qs = [c.question.rstrip(".") for c in checks if c.status == status]
        if qs:
            out.append(f"{status.capitalize()}: " + "; ".join(qs) + ".")
    return " ".join(out)


def claim_status(parts: Sequence[tuple]) -> str:
    """The verdict on a claim from its evidence (:data:`CLAIM_RULE`).

    ``parts``: ``(checks, shortfalls)`` pairs, one per record — a record's checks and why its budget falls short of
    the paper's regime (empty: it reaches it). No parts: ``"not yet"``."""
    checks = [(c, bool(short)) for cs, short in parts for c in cs]
    if not checks:
        return "not yet"
    statuses = [c.status for c, _ in checks]
    if all(s == "supported" for s in statuses):
        return "reproduced"
    if "supported" in statuses:
        return "partly"
    if any(c.status == "contradicted" and not short for c, short in checks):
        return "contradicted"
    return "not reproduced at this budget"


# --------------------------------------------------------------------------------------------------------------
# records


@dataclasses.dataclass(frozen=True)
class ClaimRecord:
    """What one chapter found about one claim (one JSON file): its checks, a plain sentence, the budget and the
    reasons it falls short of the paper's regime (computed when recorded)."""

    claim: str
    checks: tuple
    summary: str
    scale: str
    chapter: str
    part: str = ""
    anchor: str | None = None
    budget: Budget | None = None
    shortfalls: tuple = ()
    evidence: str = ""
    recorded_at: str = ""

    @property
    def status(self) -> str:
        return claim_status([(self.checks, self.shortfalls)])

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["checks"] = [c.to_dict() for c in self.checks]
        return d

    @classmethod
    def from_dict(cls, raw: Mapping) -> ClaimRecord:
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in raw.items() if k in fields}
        kw["checks"] = tuple(Check(**c) for c in kw.get("checks", ()))
        if kw.get("budget") is not None:
            b = dict(kw["budget"])
            b["notes"] = tuple(b.get("notes", ()))
            kw["budget"] = Budget(**b)
        kw["shortfalls"] = tuple(kw.get("shortfalls", ()))
        return cls(**kw)


@dataclasses.dataclass(frozen=True)
class FindingRecord:
    """One of the book's own findings (not a claim of the paper): a sentence with its numbers, and where."""

    finding: str
    summary: str
    scale: str
    chapter: str
    anchor: str | None = None
    recorded_at: str = ""


@dataclasses.dataclass(frozen=True)
class StatusRow:
    """One claim of the status page: the claim, its verdict, and the records behind it."""

    claim: Claim
    status: str
    records: tuple


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


def _write(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    tmp.replace(path)


def _where(chapter: str, anchor: str | None) -> tuple[str, str | None]:
    page = normalize_page(chapter)
    if anchor is not None and (not isinstance(anchor, str) or not _ANCHOR_RE.match(anchor)):
        raise ValueError(f"anchor must be a label like 'fig2a' (letters, digits, '_', '-', '.', ':'); got {anchor!r}")
    return page, anchor


def _sentence(name: str, text) -> str:
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"{name} must be a non-empty sentence in words; got {text!r}")
    return text.strip()


def record_claim(claim_id: str, checks: Sequence[Check], summary: str, *, chapter: str,
                 budget: Budget | None = None, regime: Sequence[str] = (), evidence: str = "",
                 scale: str | Scale | None = None, part: str = "", anchor: str | None = None,
                 claims_folder: str | os.PathLike | None = None) -> Verdict:
    """Record what ``chapter`` found about the paper's claim ``claim_id``; the verdict follows from ``checks``.

    Args:
        claim_id: a key of :data:`CLAIMS`.
        checks: the :class:`Check` s (effects with intervals); a status or a pass/fail mapping is refused.
        summary: one plain sentence for the status page and the introduction (no ids, no code).
        chapter: the page that holds the evidence, e.g. ``"nqm_experiments"``.
        budget: what the evidence cost (:class:`Budget`, e.g. ``Budget.from_grid(grid)``); required for a
            meta-training or NQM claim, ``None`` for mathematics.
        regime: further reasons, computed by the chapter, why this budget cannot reach the claim's regime.
        evidence: optional detail (numbers behind the checks) for the collapsible part of the status page.
        scale: the scale the evidence was computed at (default ``$STAR_SCALE``); a stored result's own scale.
        part: distinguishes several records of one chapter on one claim (e.g. one per task).
        anchor: optional label of the section on that page (the link target).
        claims_folder: where to write (default :func:`claims_dir` of the current ``$STAR_SCALE``).

    Returns:
        The :class:`Verdict` (a notebook shows the claim, the budget, the checks and the verdict).

    Raises:
        ValueError: unknown claim; checks not a non-empty list of :class:`Check`; an empty summary; no budget for
            a claim that has one in the paper; a bad scale, chapter, part or anchor. Nothing is written then.
    """
    if claim_id not in CLAIMS:
        raise ValueError(f"claim_id must be one of {', '.join(CLAIMS)}; got {claim_id!r}")
    claim = CLAIMS[claim_id]
    checks = _as_checks(checks)
    summary = _sentence("summary", summary)
    if budget is not None and not isinstance(budget, Budget):
        raise ValueError(f"budget must be a Budget; got {budget!r}")
    if budget is None and claim.paper_budgets:
        raise ValueError(f"budget must be given for {claim_id!r}: the status page shows it beside the paper's")
    if not isinstance(part, str) or not _PART_RE.match(part):
        raise ValueError(f"part must be letters, digits, '_', '-', '.'; got {part!r}")
    page, anchor = _where(chapter, anchor)
    scale = get_scale(scale).value
    rec = ClaimRecord(claim=claim_id, checks=checks, summary=summary, scale=scale, chapter=page, part=part,
                      anchor=anchor, budget=budget, shortfalls=tuple(shortfalls(claim_id, budget, regime)),
                      evidence=str(evidence).strip(),
                      recorded_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    folder = Path(claims_folder) if claims_folder is not None else claims_dir()
    name = f"{claim_id}--{page.replace('/', '__')}" + (f"--{part}" if part else "")
    path = folder / f"{name}.json"
    _write(path, rec.to_dict())
    return Verdict(rec, path)


def record_finding(finding_id: str, summary: str, *, chapter: str, anchor: str | None = None,
                   scale: str | Scale | None = None, claims_folder: str | os.PathLike | None = None):
    """Record one of the book's own findings (:data:`FINDINGS`): a sentence with its numbers, computed by
    ``chapter``. Returns the :class:`FindingRecord`; a notebook displays it as a short note."""
    if finding_id not in FINDINGS:
        raise ValueError(f"finding_id must be one of {', '.join(FINDINGS)}; got {finding_id!r}")
    summary = _sentence("summary", summary)
    page, anchor = _where(chapter, anchor)
    rec = FindingRecord(finding_id, summary, get_scale(scale).value, page, anchor,
                        _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    folder = Path(claims_folder) if claims_folder is not None else claims_dir()
    _write(folder / "findings" / f"{finding_id}.json", dataclasses.asdict(rec))
    return _FindingNote(rec)


class _FindingNote:
    def __init__(self, rec: FindingRecord):
        self.record = rec

    def _repr_html_(self) -> str:
        e = html.escape
        return (f'<div class="star-verdict star-finding"><p><strong>Our finding (not a claim of the paper): '
                f'{e(FINDINGS[self.record.finding])}.</strong> {e(self.record.summary)}</p></div>')

    def __repr__(self) -> str:
        return f"Our finding: {FINDINGS[self.record.finding]}. {self.record.summary}"


def load_records(claims_folder: str | os.PathLike | None = None) -> dict[str, list[ClaimRecord]]:
    """All claim records in ``claims_folder`` (default :func:`claims_dir`), by claim id, sorted by chapter.

    A record written by an older book, whose checks were pass/fail, is skipped (its chapter writes a new one when it
    runs again).

    Raises:
        ValueError: a file is not a valid record (names the file).
    """
    folder = Path(claims_folder) if claims_folder is not None else claims_dir()
    out: dict[str, list[ClaimRecord]] = {cid: [] for cid in CLAIMS}
    if not folder.is_dir():
        return out
    for path in sorted(folder.glob("*.json")):
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(raw, dict) and isinstance(raw.get("checks"), dict):
                continue  # written by an older book (pass/fail checks): the chapter writes a new record when run
            rec = ClaimRecord.from_dict(raw)
        except (json.JSONDecodeError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"claim record {path.name} is not valid: {err}") from None
        if rec.claim not in CLAIMS:
            raise ValueError(f"claim record {path.name} has unknown claim {rec.claim!r}")
        out[rec.claim].append(rec)
    for recs in out.values():
        recs.sort(key=lambda r: (r.chapter, r.part))
    return out


def load_findings(claims_folder: str | os.PathLike | None = None) -> list[FindingRecord]:
    """The findings recorded in ``claims_folder``, in :data:`FINDINGS` order."""
    folder = (Path(claims_folder) if claims_folder is not None else claims_dir()) / "findings"
    found = {}
    if folder.is_dir():
        for path in folder.glob("*.json"):
            try:
                rec = FindingRecord(**json.loads(path.read_text(encoding="utf-8")))
            except (json.JSONDecodeError, TypeError) as err:
                raise ValueError(f"finding record {path.name} is not valid: {err}") from None
            if rec.finding in FINDINGS:
                found[rec.finding] = rec
    return [found[k] for k in FINDINGS if k in found]


def status_rows(claims_folder: str | os.PathLike | None = None,
                chapters: Sequence[str] | None = None) -> list[StatusRow]:
    """One :class:`StatusRow` per claim in :data:`CLAIMS` order; records of pages not in ``chapters`` (e.g. from
    ``_toc.yml``) are ignored (``None`` keeps all)."""
    keep = None if chapters is None else {normalize_page(c) for c in chapters}
    rows = []
    for cid, recs in load_records(claims_folder).items():
        recs = tuple(r for r in recs if keep is None or r.chapter in keep)
        rows.append(StatusRow(CLAIMS[cid], claim_status([(r.checks, r.shortfalls) for r in recs]), recs))
    return rows


def tallies(rows: Sequence[StatusRow]) -> list[tuple[str, dict]]:
    """``[(group title, {status: count})]`` for the two groups of :data:`GROUPS`."""
    out = []
    for title, kinds in GROUPS:
        group = [r for r in rows if r.claim.kind in kinds]
        out.append((title, {s: sum(r.status == s for r in group) for s in STATUSES}))
    return out


# --------------------------------------------------------------------------------------------------------------
# rendering


def _badge(status: str) -> str:
    return (f'<strong class="star-status" style="color:{_COLOURS[status]};white-space:nowrap">'
            f"{html.escape(status)}</strong>")


def _n(x) -> str:
    return f"{x:,}" if isinstance(x, int) else "n/a"


def _fraction(ours, theirs) -> str:
    return f" ({100 * ours / theirs:.0f} %)" if isinstance(ours, int) and isinstance(theirs, int) else ""


def budget_rows(claim_id: str, budget: Budget | None) -> list[tuple[str, str, str]]:
    """``[(what, ours, the paper's with the fraction)]`` for a record's budget (empty for mathematics)."""
    claim = CLAIMS[claim_id]
    if budget is None:
        return []
    paper = claim.paper_budget(budget.task)
    ref = _reference(claim, budget)
    rows = []
    if paper is not None:
        rows.append(("task", f"{labels.task_short(budget.task)} ({_n(budget.task_size)} parameters)",
                     f"{labels.task_short(paper.task)} ({_n(paper.task_size)} parameters)"
                     + _fraction(budget.task_size, paper.task_size)))
    for field, what in (("outer_steps", "outer steps"), ("num_tasks", "inner problems per estimate N"),
                        ("horizon", "inner horizon"), ("seeds", "seeds")):
        ours = getattr(budget, field)
        theirs = getattr(paper, field) if paper is not None else None
        if ours is None and theirs is None:
            continue
        if theirs is not None:
            text = f"{_n(theirs)}{_fraction(ours, theirs)}"
        elif ref is not None and getattr(ref, field) is not None and field != "seeds":
            text = f"not stated; the book's paper-scale setting {_n(getattr(ref, field))}" \
                   f"{_fraction(ours, getattr(ref, field))}"
        else:
            text = "not stated"
        rows.append((what, _n(ours), text))
    return rows


def _budget_html(rec: ClaimRecord) -> str:
    e = html.escape
    rows = budget_rows(rec.claim, rec.budget)
    if not rows:
        return "<p><em>Budget:</em> mathematics, checked numerically; no budget applies.</p>"
    body = "".join(f"<tr><td>{e(a)}</td><td>{e(b)}</td><td>{e(c)}</td></tr>" for a, b, c in rows)
    notes = "".join(f"<li>{e(n)}</li>" for n in rec.budget.notes)
    short = "".join(f"<li>{e(s)}</li>" for s in rec.shortfalls)
    out = (f'<table class="star-table star-budget"><thead><tr><th>budget</th><th>here</th><th>the paper'
           f"</th></tr></thead><tbody>{body}</tbody></table>")
    if notes:
        out += f"<p><em>Other departures:</em></p><ul>{notes}</ul>"
    out += (f"<p><em>Short of the paper's regime:</em></p><ul>{short}</ul>" if short else
            "<p><em>This budget reaches the paper's regime.</em></p>")
    return out


def _checks_html(checks: Sequence[Check]) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(c.question)}</td><td><span style='white-space:nowrap'>"
                   f"{e(c.interval_text().removesuffix(' ' + c.unit) if c.unit else c.interval_text())}</span>"
                   + (f"<br/><small>{e(c.unit)}</small>" if c.unit else "") + "</td>"
                   f"<td>{_badge(c.status)}</td><td>{e(c.how)}</td></tr>" for c in checks)
    return (f'<table class="star-table star-checks"><thead><tr><th>check</th><th>effect [95 % interval]</th>'
            f"<th>outcome</th><th>how measured</th></tr></thead><tbody>{rows}</tbody></table>")


def _count_text(checks: Sequence[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in CHECK_STATUSES}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A recorded verdict as a chapter shows it: the claim, the verdict, the budget and (folded) the checks."""

    record: ClaimRecord
    path: Path

    @property
    def status(self) -> str:
        return self.record.status

    def _repr_html_(self) -> str:
        r, claim = self.record, CLAIMS[self.record.claim]
        e = html.escape
        return (f'<div class="star-verdict"><p><strong>Verdict on the paper\'s claim “{e(claim.title)}”</strong> '
                f"({e(claim.paper)}): {_badge(r.status)}. {e(r.summary)}</p>"
                f"<details><summary>Checks ({e(_count_text(r.checks))}) and budget</summary>"
                f"<p><em>Claim.</em> {e(claim.statement)}</p>{_checks_html(r.checks)}{_budget_html(r)}"
                + (f"<p><em>Numbers.</em> {e(r.evidence)}</p>" if r.evidence else "")
                + f"<p><em>Rule.</em> {e(CHECK_RULE)}; a claim is {e(CLAIM_RULE)}.</p></details></div>")

    def __repr__(self) -> str:
        r = self.record
        lines = [f"Verdict on {CLAIMS[r.claim].title}: {r.status}. {r.summary}"]
        lines += [f"  {c.status:12s} {c.question}: {c.interval_text()}" for c in r.checks]
        lines += [f"  short of the paper's regime: {s}" for s in r.shortfalls]
        return "\n".join(lines)


def _href(rec, here: str) -> str:
    return posixpath.relpath(rec.chapter, here or ".") + ".html" + (f"#{rec.anchor}" if rec.anchor else "")


def group_budget(rows: Sequence[StatusRow]) -> str:
    """How the budgets of a group of claims compare with the paper's, in a few words (computed from the records)."""
    recs = [r for row in rows for r in row.records]
    if not recs:
        return "not tested in this build"
    short = sum(bool(r.shortfalls) for r in recs)
    if not short:
        return "every budget reaches the paper's regime"
    steps = []
    for r in recs:
        b = r.budget
        if b is None or not b.outer_steps:
            continue
        claim = CLAIMS[r.claim]
        paper, ref = claim.paper_budget(b.task), _reference(claim, b)
        theirs = (paper.outer_steps if paper else None) or (ref.outer_steps if ref else None)
        if theirs:
            steps.append((b.outer_steps, theirs))
    text = f"{short} of {len(recs)} records below the paper's regime"
    if steps:
        lo, hi = min(s for s, _ in steps), max(s for s, _ in steps)
        ref = max(t for _, t in steps)
        text += (f"; {lo:,}–{hi:,}" if lo != hi else f"; {lo:,}") + f" outer steps of {ref:,}†"
    return text


def _tally_html(rows: Sequence[StatusRow]) -> str:
    e = html.escape
    head = "".join(f'<th style="overflow-wrap:normal">{e(s)}</th>' for s in STATUSES)
    body = []
    for (title, counts), (_, kinds) in zip(tallies(rows), GROUPS):
        group = [r for r in rows if r.claim.kind in kinds]
        body.append(f"<tr><td><strong>{e(title)}</strong><br/><small>{len(group)} claims; "
                    f"{e(group_budget(group))}</small></td>" + "".join(f"<td>{counts[s]}</td>" for s in STATUSES)
                    + "</tr>")
    return (f'<table class="star-table star-tally"><thead><tr><th>claims</th>{head}</tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>"
            "<p><small>†: the book's paper-scale setting; the paper does not state its number of outer steps."
            "</small></p>")


def budget_phrase(rec: ClaimRecord) -> str:
    """``Fashion-MNIST 8×8 MLP 64-32 (2 % of the paper's parameters), 200 outer steps (4 %†), horizon 2,000,
    3 seeds`` (†: of the book's paper-scale setting, the paper not stating it)."""
    b = rec.budget
    if b is None:
        return "mathematics"
    claim = CLAIMS[rec.claim]
    paper, ref = claim.paper_budget(b.task), _reference(claim, b)
    task = labels.task_short(b.task)
    if paper is not None and paper.task != b.task and b.task_size and paper.task_size:
        task += f" ({100 * b.task_size / paper.task_size:.0f} % of the paper's parameters)"
    parts = [task]
    if b.outer_steps:
        theirs, mark = (paper.outer_steps if paper else None), ""
        if theirs is None and ref is not None and ref.outer_steps:
            theirs, mark = ref.outer_steps, "†"
        parts.append(f"{b.outer_steps:,} outer steps" + (f" ({100 * b.outer_steps / theirs:.0f} %{mark})"
                                                         if theirs else ""))
    if b.horizon:
        parts.append(f"horizon {b.horizon:,}")
    if b.seeds:
        parts.append(f"{b.seeds} seeds")
    return ", ".join(parts)


def render_status_html(rows: Sequence[StatusRow], page: str = "book/status",
                       linkable: Sequence[str] | None = None, titles: Mapping[str, str] | None = None,
                       findings: Sequence[FindingRecord] = ()) -> str:
    """The status page's body: the two tallies, then per claim its verdict, one plain sentence, the budget and
    (collapsed) the checks; then the book's own findings. Links are relative to ``page`` and made only to pages
    in ``linkable`` (default: any)."""
    link_ok = None if linkable is None else {normalize_page(c) for c in linkable}
    titles = titles or {}
    here = posixpath.dirname(page)
    e = html.escape
    out = [_tally_html(rows), '<div class="star-claims">']
    for row in rows:
        claim = row.claim
        mark = "" if claim.quoted else "‡"
        out.append(f'<div class="star-claim"><h3 class="star-claim-title">{e(claim.title)} '
                   f"<small>({e(claim.paper)})</small></h3>")
        out.append(f"<p>{_badge(row.status)}. <em>The paper{mark}:</em> {e(claim.statement)}</p>")
        if not row.records:
            out.append("<p><em>No chapter of this build tests this claim.</em></p></div>")
            continue
        for r in row.records:
            name = titles.get(r.chapter) or posixpath.basename(r.chapter)
            where = (f'<a href="{e(_href(r, here))}">{e(name)}</a>' if link_ok is None or r.chapter in link_ok
                     else e(name))
            out.append(f"<p><em>Here</em> ({e(budget_phrase(r))}; {where}): {e(r.summary)}</p>")
        checks = [c for r in row.records for c in r.checks]
        details = "".join(
            (f"<p><strong>{e(budget_phrase(r))}</strong> — {_badge(r.status)}</p>" if len(row.records) > 1 else "")
            + _checks_html(r.checks) + _budget_html(r) + (f"<p><em>Numbers.</em> {e(r.evidence)}</p>"
                                                          if r.evidence else "") for r in row.records)
        out.append(f"<details><summary>Checks ({e(_count_text(checks))}) and budget</summary>{details}</details>"
                   "</div>")
    out.append("</div>")
    if findings:
        out.append(render_own_findings_html(findings, page, linkable))
    return "\n".join(out)


def render_own_findings_html(findings: Sequence[FindingRecord], page: str = "book/status",
                             linkable: Sequence[str] | None = None) -> str:
    """The book's own findings, apart from the paper's claims: a list of titled sentences with links."""
    link_ok = None if linkable is None else {normalize_page(c) for c in linkable}
    here = posixpath.dirname(page)
    e = html.escape
    items = []
    for f in findings:
        title = e(FINDINGS[f.finding])
        if link_ok is None or f.chapter in link_ok:
            title = f'<a href="{e(_href(f, here))}">{title}</a>'
        items.append(f"<li><strong>{title}.</strong> {e(f.summary)}</li>")
    return f'<ul class="star-findings">{"".join(items)}</ul>'


def _this_build(scale):
    """``(scale, book root, pages of the toc, status rows, findings)`` for the book built at ``scale``."""
    scale = get_scale(scale)
    root = find_book_root()
    pages = toc_pages(root) if root is not None else None
    folder = claims_dir(scale)
    keep = None if pages is None else set(pages)
    findings = [f for f in load_findings(folder) if keep is None or f.chapter in keep]
    return scale, root, pages, status_rows(folder, chapters=pages), findings


def show_status(scale: str | Scale | None = None, part: str = "claims"):
    """Display the status page's ``part`` for the book built at ``scale`` (default ``$STAR_SCALE``):
    ``"claims"`` (the tallies and every claim) or ``"findings"`` (the book's own findings)."""
    from IPython.display import HTML  # only where a notebook displays it

    if part not in ("claims", "findings"):
        raise ValueError(f"part must be 'claims' or 'findings'; got {part!r}")
    scale, root, pages, rows, findings = _this_build(scale)
    if part == "findings":
        if not findings:
            return HTML("<p><em>No chapter of this build recorded a finding of its own.</em></p>")
        return HTML(render_own_findings_html(findings, linkable=pages))
    titles = {p: page_title(root, p) for p in pages} if pages else {}
    return HTML(render_status_html(rows, linkable=pages, titles={k: v for k, v in titles.items() if v}))


def render_findings_html(rows: Sequence[StatusRow], scale: str, page: str = "book/intro",
                         linkable: Sequence[str] | None = None, findings: Sequence[FindingRecord] = ()) -> str:
    """The introduction's summary: the two tallies, one plain sentence per claim (linked to its chapter), and
    the book's own findings by title."""
    e = html.escape
    link_ok = None if linkable is None else {normalize_page(c) for c in linkable}
    here = posixpath.dirname(page)
    caveat = (" At this scale the experiments are far too small to settle anything." if scale == "smoke" else "")
    out = [f"<p>Computed from the chapters when this book was built ({e(scale)} scale).{caveat}</p>",
           _tally_html(rows)]
    for title, kinds in GROUPS:
        items = []
        for row in (r for r in rows if r.claim.kind in kinds):
            text = e(row.claim.title)
            rec = next((r for r in row.records if link_ok is None or r.chapter in link_ok), None)
            if rec is not None:
                text = f'<a href="{e(_href(rec, here))}">{text}</a>'
            sentence = " ".join(e(r.summary) for r in row.records) or "No chapter of this build tests it."
            items.append(f"<li>{_badge(row.status)} — {text}: {sentence}</li>")
        out.append(f"<p><strong>{e(title)}</strong></p><ul>{''.join(items)}</ul>")
    if findings:
        titles = []
        for f in findings:
            t = e(FINDINGS[f.finding])
            if link_ok is None or f.chapter in link_ok:
                t = f'<a href="{e(_href(f, here))}">{t}</a>'
            titles.append(f"<li>{t}</li>")
        out.append(f"<p><strong>Findings of this book that are not claims of the paper</strong></p>"
                   f"<ul>{''.join(titles)}</ul>")
    return "\n".join(out)


def show_findings(scale: str | Scale | None = None):
    """Display :func:`render_findings_html` for the book built at ``scale`` (default ``$STAR_SCALE``)."""
    from IPython.display import HTML

    scale, _, pages, rows, findings = _this_build(scale)
    return HTML(render_findings_html(rows, scale.value, linkable=pages, findings=findings))
