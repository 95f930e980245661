"""Truncated inner problems for PES: a task trained by a learned optimizer, one step at a time.

These adapters sit between the tasks/optimizers and the estimator (data → tasks → *inner loop* → PES →
outer loop) and implement :class:`star.pes.TruncatedProblem`:

* :class:`NQMProblem` — the noisy quadratic model of §4 with the linear learned optimizer
  :math:`\\phi_{t+1}=\\phi_t-(\\alpha I+P)\\nabla_t` (Eq. 6), meta-parameters ``{"alpha": α, "P": P}``
  (or only ``{"P": P}`` with a fixed nominal ``alpha``). Its expected meta-loss over a full episode is the
  closed form Eq. (8) of :func:`star.nqm.expected_loss` (arguments from :meth:`NQMProblem.closed_form_args`);
  the dynamics are :func:`star.nqm.unroll`.
* :class:`LearnedOptimizerProblem` — a :class:`star.tasks.base.Task` trained by a learned optimizer built
  from the meta-parameters (e.g. STAR, ``star.optim.star_optimizer``); the per-step meta-loss is the task's
  normalised training loss on the step's batch (appendix "PES in the code", ``meta_loss_split=None``).

Both are pytrees (array data are leaves, settings are static), so the estimator passes them to
``jax.jit`` as arguments instead of baking large data sets into the compiled program as constants.

:func:`build_problem` is the registry the command line, the experiments and the chapters share: an optimizer
name and a task name give ``(problem, theta0, optimizer_config)``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from star import _checks
from star import nqm as nqm_lib
from star.tasks.base import meta_loss_max
from star.train import train_step

PyTree = Any


@struct.dataclass
class NQMProblem:
    """The NQM as a truncated inner problem (App. B.1).

    Attributes:
        nqm: a :class:`star.nqm.NQM` (e.g. ``star.nqm.paper_nqm()``).
        horizon: episode length ``T`` (the paper's NQM experiments use T = 50 = truncation, i.e. ES).
        alpha: the fixed nominal step used when ``theta`` has no ``"alpha"`` entry (None: required in θ).
        optimizer: the inner optimizer of :func:`star.nqm.unroll`: ``"sgd"`` (Eq. 6, default), ``"heavy_ball"``
            or ``"nesterov"`` (the momentum extension beyond the paper).
        momentum: the momentum β of ``heavy_ball``/``nesterov`` (must be 0 for ``sgd``). A pytree leaf, so
            problems that differ only in β (or in ``nqm``) can be stacked and ``vmap``-ed in one program.

    Inner state: ``(NQMState, noise_key)``. A fresh episode draws φ0 ~ N(m0, S0) and an episode noise key;
    step ``t`` uses ξ_t = noise(``fold_in(noise_key, t)``) for the gradient and reports the minibatch loss
    ℓ_{t+1}(φ_{t+1}) on ξ_{t+1} (the batch that drives the next step), so the mean over an episode is an
    unbiased sample of Eq. (8). The PES step key is not needed: both antithetic sides share the episode's
    init and noise keys (common random numbers). Losses are not normalised; a diverging run produces
    ``inf``/``nan``, which the outer loop zeroes and counts.
    """

    nqm: nqm_lib.NQM
    horizon: int = struct.field(pytree_node=False)
    alpha: float | None = struct.field(pytree_node=False, default=None)
    optimizer: str = struct.field(pytree_node=False, default="sgd")
    momentum: Any = 0.0

    def _alpha_P(self, theta):
        alpha = theta["alpha"] if "alpha" in theta else self.alpha
        if alpha is None:
            raise ValueError("theta must contain 'alpha' when NQMProblem.alpha is None")
        return alpha, theta["P"]

    def init(self, theta, key):
        del theta
        k_phi, k_noise = jax.random.split(key)
        return nqm_lib.init_state(k_phi, self.nqm), k_noise

    def step(self, theta, inner_state, key):
        del key
        state, noise_key = inner_state
        alpha, P = self._alpha_P(theta)
        state, losses = nqm_lib.unroll(self.nqm, alpha, P, state, noise_key, 1, optimizer=self.optimizer,
                                       momentum=self.momentum)
        return (state, noise_key), losses[0].astype(jnp.float32), jnp.asarray(True)

    def closed_form_args(self, theta) -> dict:
        """The arguments of the closed form :func:`star.nqm.expected_loss` (Eq. 8) for ``theta``: the episode's
        expected meta-loss is ``nqm.expected_loss(problem.nqm, T=problem.horizon, **problem.closed_form_args(θ))``."""
        alpha, P = self._alpha_P(theta)
        return {"alpha": alpha, "P": P, "optimizer": self.optimizer, "momentum": self.momentum}


@struct.dataclass
class LearnedOptimizerProblem:
    """A task trained by a learned optimizer built from the meta-parameters.

    Attributes:
        task: a :class:`star.tasks.base.Task` pytree (``init``, ``loss``, ``sample_batch``, ``normalizer``).
        make_optimizer: ``(theta, num_steps) -> optax.GradientTransformationExtraArgs``, e.g.
            ``functools.partial(star.optim.star_optimizer, cfg)``; must be traceable in ``theta``.
        horizon: episode length ``T`` (paper: 2000); passed to the optimizer as its ``num_steps``.

    Inner state: ``(params, opt_state)``. One step samples a training batch from the step key, computes
    the loss and gradient at the current parameters, applies the optimizer, and reports the task's
    normalised loss (clipped to [0, 1.5 ln C], NaN/inf → the maximum) as the meta-loss of the step.
    """

    task: Any
    make_optimizer: Callable = struct.field(pytree_node=False)
    horizon: int = struct.field(pytree_node=False)

    @property
    def loss_ceiling(self) -> float:
        """The normaliser's clip ``1.5 ln C``: a step reporting it diverged (see :class:`star.pes.PESOutput`)."""
        return meta_loss_max(self.task.num_classes)

    def init(self, theta, key):
        params = self.task.init(key)
        return params, self.make_optimizer(theta, self.horizon).init(params)

    def step(self, theta, inner_state, key):
        params, opt_state = inner_state
        opt = self.make_optimizer(theta, self.horizon)
        params, opt_state, loss = train_step(self.task, opt, params, opt_state, self.task.sample_batch(key))
        return (params, opt_state), self.task.normalizer(loss).astype(jnp.float32), jnp.asarray(True)


# ----------------------------------------------------------------------------------------------------
# the registry of (optimizer, task) pairs

#: the linear learned optimizer θ = (α, P) of Eq. (6); goes with the task :data:`NQM_TASK` only
LINEAR_OPTIMIZER = "linear"
#: the noisy quadratic model of App. B.1 as a task name
NQM_TASK = "nqm"


def optimizer_names() -> tuple:
    """The STAR-family presets (:data:`star.optim.PRESETS`), our variants (:data:`star.optim.VARIANTS`) and
    ``"linear"``."""
    from star.optim import PRESETS, VARIANTS

    return tuple(PRESETS) + tuple(VARIANTS) + (LINEAR_OPTIMIZER,)


def task_names() -> tuple:
    """The registered tasks (:func:`star.tasks.list_tasks`) and ``"nqm"``."""
    from star.tasks import list_tasks

    return tuple(list_tasks()) + (NQM_TASK,)


def build_problem(optimizer: str, task: str, horizon: int, *, seed: int = 0, init: str = "nominal"):
    """``(problem, theta0, optimizer_config)`` for an optimizer/task pair (the command line's names).

    ``optimizer`` is a STAR-family preset (``star``, ``hyperparam``, ``blackbox``, ``star_nopre``,
    ``star_nonom``) with a registered task, or ``linear`` with ``nqm``. ``init`` picks the STAR-family
    initialisation (:data:`star.optim.star.INITS`): ``nominal`` (zero output layer: STAR starts as its
    nominal optimizer, so meta-training can start; the default) or ``reference`` (diverges on the
    Fashion-MNIST MLP, see the STAR chapter). The STAR-family θ0 is drawn from ``jax.random.key(seed + 1)``;
    the linear optimizer starts at α = 0.1, P = 0 (``optimizer_config`` is then ``None``).

    Raises:
        ValueError: unknown optimizer or task, an incompatible pair, a horizon outside [1, 2**31 - 1] or a
            seed outside [0, 2**31 - 2].
        star.data_sources.DataUnavailableError: the task's data set is not on this machine.
    """
    horizon = _checks.integer("horizon", horizon, maximum=_checks.MAX_STEPS)
    seed = _checks.seed("seed", seed)
    if task == NQM_TASK or optimizer == LINEAR_OPTIMIZER:
        if not (task == NQM_TASK and optimizer == LINEAR_OPTIMIZER):
            raise ValueError(f"optimizer {LINEAR_OPTIMIZER!r} goes with task {NQM_TASK!r} only; got "
                             f"optimizer={optimizer!r}, task={task!r}")
        problem = NQMProblem(nqm_lib.paper_nqm(), horizon=horizon)
        theta0 = {"alpha": jnp.asarray(0.1, jnp.float32), "P": jnp.zeros((2, 2), jnp.float32)}
        return problem, theta0, None

    from star.optim import PRESETS, VARIANTS, init_meta_params, preset
    from star.optim.star import INITS
    from star.tasks import get_task, list_tasks

    if optimizer not in PRESETS and optimizer not in VARIANTS:
        raise ValueError(f"optimizer must be one of {optimizer_names()}; got {optimizer!r}")
    if task not in list_tasks():
        raise ValueError(f"task must be one of {task_names()}; got {task!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}; got {init!r}")
    cfg = preset(optimizer)
    # jax.random.key and the older PRNGKey give identical draws here (same threefry bits).
    theta0 = init_meta_params(cfg, jax.random.key(seed + 1), init=init)
    problem = LearnedOptimizerProblem(task=get_task(task), make_optimizer=_optimizer_factory(cfg), horizon=horizon)
    return problem, theta0, cfg


@functools.cache
def _optimizer_factory(cfg):
    """``star_optimizer`` bound to ``cfg``, one object per configuration.

    A problem's ``make_optimizer`` is a static field, compared by identity when ``jax.jit`` looks up a
    compilation: problems built by separate :func:`build_problem` calls must share it, or every call (each
    resumed chunk of a run, each evaluation) compiles again.
    """
    from star.optim import star_optimizer

    return functools.partial(star_optimizer, cfg)


def data_sources(problem) -> dict | None:
    """``{data set name: where it was read from}`` for a problem's task, or for a task itself (e.g.
    ``{"fashion_mnist": "idx files in /usr/share/datasets/fashion-mnist"}``: ``$STAR_DATA_DIR``, the Debian
    package or tensorflow-datasets), for provenance; ``None`` without a data set (the NQM)."""
    task = getattr(problem, "task", problem)
    data = getattr(task, "data", None)
    name, source = getattr(data, "name", None), getattr(data, "source", None)
    return {name: source} if name and source else None
