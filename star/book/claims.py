"""The paper's claims, the budgets their evidence is computed at, and how far a budget is from the paper's.

Each :class:`Claim` of :data:`CLAIMS` states what the paper claims (quoted from its appendix, or our reconstruction of
the main text) and, per task of the paper the claim is made on, the paper's :class:`Budget`. The book's own
findings, which are not claims of the paper, are :data:`FINDINGS`; the status page tallies the claims in the two
:data:`GROUPS`.

**Budget.** Every record states the :class:`Budget` its evidence was computed at — the task and its size, outer
steps, inner problems per estimate N, inner horizon, seeds — which the status page shows beside the paper's as
fractions. A budget reaches the paper's *regime* when it is on the paper's task with at least
:data:`REGIME_FRACTION` of the paper's outer steps and horizon (:func:`shortfalls`; where the paper does not
state a number, the book's own paper-scale setting (:func:`paper_scale_budget`) stands in for it and is marked so).

How a chapter checks a claim is :mod:`star.book.verdicts`; how it records the evidence, :mod:`star.book.records`;
the status page, :mod:`star.book.status`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

from star.book import labels

__all__ = ["CLAIMS", "FINDINGS", "GROUPS", "REGIME_FRACTION", "SUBSTITUTES", "Claim", "Budget", "task_size",
           "paper_budget", "paper_scale_budget", "shortfalls"]

REGIME_FRACTION = 0.5  # a budget reaches the paper's regime with at least this fraction of its outer steps
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


def paper_scale_budget(claim: Claim, budget: Budget) -> Budget | None:
    """The book's own paper-scale grid's budget on the paper's task that ``budget`` is compared with for ``claim``
    (it stands in where the paper does not state a number); ``None`` for mathematics or without such a grid."""
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
    ref = paper_scale_budget(claim, budget)
    for field, what in (("outer_steps", "outer steps"), ("horizon", "inner horizon")):
        ours, theirs = getattr(budget, field), getattr(paper, field)
        marked = ""
        if theirs is None and ref is not None:
            theirs, marked = getattr(ref, field), " (the book's paper-scale setting; the paper does not state it)"
        if ours is not None and theirs and ours < REGIME_FRACTION * theirs:
            out.append(f"{ours:,} {what} of {theirs:,}{marked}")
    return out

