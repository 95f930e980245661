"""The one place where the book turns the package's ids into words a reader knows.

Run folders, grids, optimizer presets, tasks and network layers have ids (``star_wd0.1``, ``fmnist8_mlp32``,
``Dense_0/kernel``) that are right for code and wrong for a page. Every figure legend, title, table and verdict
of the book names them through this module, and ``tests/test_browser.py`` fails a page whose visible text (outside
code cells and "provenance" dropdowns) or whose figures show one of :func:`internal_ids`.

* :func:`optimizer` — ``"star_nopre"`` → ``"STAR without preconditioner"``;
* :func:`member` — a grid member (``star.grids.Member`` or its label ``"star_wd0.1"``) → ``"STAR (outer wd 0.1)"``;
* :func:`task` / :func:`task_short` — ``"fmnist8_mlp32"`` → ``"Fashion-MNIST 8×8, MLP 64-32"``;
* :func:`grid` — a grid's name → what it is;
* :func:`layer` — ``"Dense_0/kernel"`` → ``"first-layer weights"``.

An id the map does not know is turned into words by rule (underscores to spaces), never shown raw.
"""

from __future__ import annotations

import re

__all__ = ["OPTIMIZERS", "TASKS", "TASKS_SHORT", "TASK_LOSS", "GRIDS", "LAYERS", "optimizer", "member", "task",
           "task_short", "task_loss", "grid", "layer", "internal_ids", "ID_PATTERNS"]

OPTIMIZERS = {
    "star": "STAR",
    "hyperparam": "Hyperparam",
    "blackbox": "Blackbox",
    "star_nopre": "STAR without preconditioner",
    "star_nonom": "STAR without nominal term",
    "star_bc_eps1e-4": "STAR, bias-corrected preconditioner (ours)",
    "star_out0.1": "STAR, output layer ×0.1 (ours)",
    "star_out0.1_bc_eps1e-4": "STAR, both changes (ours)",
    "star_wd0.5": "STAR (outer wd 0.5)",
    "adam": "Adam (tuned learning rate)",
    "nadamw": "NAdamW (random search)",
    "nominal": "nominal optimizer",
    "released_star": "STAR, released checkpoint",
    "released_hyperparam": "Hyperparam, released checkpoint",
    "released_star_nonom": "STAR without nominal term, released checkpoint",
    # the OOD controls (star.learned_optimizers.CONTROLS_LEARNED) and the 2000-outer-step θ's (LONG_LEARNED)
    "star_theta0": "STAR at its reference initialisation θ₀",
    "star_output0": "STAR θ₀ with its output layer zero (the nominal optimizer)",
    "star_init_nominal": "STAR meta-trained from the zero-output start",
    "star_wd1.0": "STAR (outer wd 1)",
    "star_wd5.0": "STAR (outer wd 5)",
    "star_long": "STAR, 2000 outer steps",
    "star_wd1.0_long": "STAR (outer wd 1), 2000 outer steps",
    "star_nopre_long": "STAR without preconditioner, 2000 outer steps",
    "hyperparam_long": "Hyperparam, 2000 outer steps",
    "blackbox_long": "Blackbox, 2000 outer steps",
}

TASKS = {
    "fmnist_mlp": "Fashion-MNIST 28×28, MLP 784-128-128 (the paper's task)",
    "fmnist8_mlp32": "Fashion-MNIST 8×8, MLP 64-32 (a small task, not the paper's)",
    "cifar10_conv": "CIFAR-10, ConvNet 32/64/64 (the paper's task)",
    "fmnist_conv": "Fashion-MNIST 28×28, the paper's ConvNet (substitute, not the paper's task)",
    "fmnist8_conv": "Fashion-MNIST 8×8, the paper's ConvNet at quarter width (substitute, not the paper's task)",
    "cifar10_mlp128x128x128": "CIFAR-10, MLP 3072-128-128-128",
    "fmnist_mlp_tanh": "Fashion-MNIST, MLP 128-128-128 with tanh",
    "fmnist_mlp_layernorm": "Fashion-MNIST, MLP 128-128-128 with LayerNorm",
    "fmnist_mlp_mse": "Fashion-MNIST, MLP 128-128-128, squared error",
    "fmnist16_mlp256x256": "Fashion-MNIST 16×16, MLP 256-256",
    "digits_mlp32": "UCI digits 8×8, MLP 64-32",
    "digits_mlp128x128x128": "UCI digits 8×8, MLP 128-128-128",
    "digits_conv": "UCI digits 8×8, ConvNet 16/32/32",
    "fmnist16_conv": "Fashion-MNIST 16×16, ConvNet 16/32/32",
    "fmnist_ae": "Fashion-MNIST auto-encoder 128-32-128",
    "fmnist_vae": "Fashion-MNIST VAE, latent 16",
    "kjv_lstm": "Bible bytes, LSTM 64",
    "kjv_rnn": "Bible bytes, vanilla RNN 64",
    "kjv_irnn": "Bible bytes, IRNN 64",
    "kjv_transformer": "Bible bytes, transformer 2×32",
    "es_fmnist8_mlp32": "Fashion-MNIST 8×8 MLP trained by ES gradients",
    "lm1b_lstm": "LM1B bytes, LSTM 64",
    "lm1b_gru": "LM1B bytes, GRU 64",
    "lm1b_transformer": "LM1B bytes, transformer 2×32",
    "nqm": "the 2-D noisy quadratic model of App. B.1",
}

#: Short task names for panel titles and table rows (the same tasks, fewer words).
TASKS_SHORT = {
    "fmnist_mlp": "Fashion-MNIST MLP 784-128-128",
    "fmnist8_mlp32": "Fashion-MNIST 8×8 MLP 64-32",
    "cifar10_conv": "CIFAR-10 ConvNet",
    "fmnist_conv": "Fashion-MNIST ConvNet",
    "fmnist8_conv": "Fashion-MNIST 8×8 ConvNet (¼ width)",
    "nqm": "2-D NQM",
}

#: What each task's training loss measures (the y-axis of its curves); image classifiers and language models:
#: cross-entropy in nats.
TASK_LOSS = {
    "fmnist_mlp_mse": "squared error to one-hot labels",
    "fmnist_ae": "squared error per pixel",
    "fmnist_vae": "negative ELBO per pixel (nats)",
    "kjv_lstm": "cross-entropy per byte (nats)", "kjv_rnn": "cross-entropy per byte (nats)",
    "kjv_irnn": "cross-entropy per byte (nats)", "kjv_transformer": "cross-entropy per byte (nats)",
    "lm1b_lstm": "cross-entropy per byte (nats)", "lm1b_gru": "cross-entropy per byte (nats)",
    "lm1b_transformer": "cross-entropy per byte (nats)",
}

GRIDS = {
    "indist": "the in-distribution grid (Fig. 3 and Figs. App.2–App.4)",
    "indist_conv": "the ConvNet grid (Fig. 3 on a ConvNet substitute)",
    "indist_long": "the long in-distribution grid (2000 outer steps)",
    "ood_controls": "the controls of the out-of-distribution chapter",
    "remedies": "the remedies on the paper's MLP (one seed)",
    "remedies_long": "the combined remedy for 200 outer steps",
    "remedies_seeds": "the remedies on three seeds",
}

LAYERS = {
    "Dense_0/kernel": "first-layer weights",
    "Dense_0/bias": "first-layer biases",
    "Dense_1/kernel": "second-layer weights",
    "Dense_1/bias": "second-layer biases",
    "Dense_2/kernel": "output-layer weights",
    "Dense_2/bias": "output-layer biases",
}

_MEMBER_RE = re.compile(r"^(?P<opt>.+?)_wd(?P<wd>[0-9.]+)(?:_lr(?P<lr>[0-9.e+-]+))?(?:_init-(?P<init>\w+))?(?:_s\d+)?$")


def _words(name: str) -> str:
    """An unknown id as words: ``some_new_thing`` → ``some new thing``."""
    return re.sub(r"[_/]+", " ", str(name)).strip()


def optimizer(name: str) -> str:
    """The reader's name of an optimizer preset, variant or baseline."""
    return OPTIMIZERS.get(name, _words(name))


def member(m) -> str:
    """The reader's name of a grid member (a ``star.grids.Member`` or its label, e.g. ``"star_wd0.1_lr0.001"``):
    ``"STAR (outer wd 0.1, outer lr 0.001)"``. Weight decay is named for STAR-family members only when it is not
    the paper's 0.1, for Hyperparam and Blackbox (whose paper setting is 0) only when it is not 0."""
    if isinstance(m, str):
        match = _MEMBER_RE.match(m)
        if not match:
            return optimizer(m)
        opt, wd = match["opt"], float(match["wd"])
        lr = float(match["lr"]) if match["lr"] else None
        init = match["init"]
    else:
        opt, wd, lr, init = m.optimizer, float(m.weight_decay), getattr(m, "lr", None), getattr(m, "init", None)
    parts = []
    default_wd = 0.0 if opt in ("hyperparam", "blackbox") else 0.1
    if opt == "star" or wd != default_wd:
        parts.append(f"outer wd {wd:g}")
    if lr is not None:
        parts.append(f"outer lr {lr:g}")
    if init is not None:
        parts.append(f"{init} start")
    return optimizer(opt) + (f" ({', '.join(parts)})" if parts else "")


def task(name: str) -> str:
    """The reader's description of a task."""
    return TASKS.get(name, _words(name))


def task_short(name: str) -> str:
    """A short name of a task for panel titles (falls back to :func:`task` without its parenthesis)."""
    return TASKS_SHORT.get(name) or re.sub(r"\s*\(.*\)$", "", task(name))


def task_loss(name: str) -> str:
    """What the training loss of task ``name`` measures, with its unit."""
    return TASK_LOSS.get(name, "cross-entropy (nats)")


def grid(name: str) -> str:
    """What a grid of meta-training runs is."""
    return GRIDS.get(name, f"the {_words(name)} grid")


def layer(name: str) -> str:
    """The reader's name of a parameter tensor of an inner network."""
    return LAYERS.get(name, _words(name))


#: Shapes of ids that must not reach a reader's page (checked by ``tests/test_browser.py``): a grid member
#: (``star_wd0.1``), a run folder (``..._s0``), a layer (``Dense_0/kernel``), a test node id, a constant
#: (``VERDICT_RULES``), an exception class, a Python repr (a dict, a list, a NumPy array), ``nan``, a commit hash.
ID_PATTERNS = {
    "grid member or run id": r"\b[a-z][a-z0-9_.-]*_wd\d[\w.-]*",
    "network layer id": r"\bDense_\d+(?:/\w+)?",
    "run folder id": r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+_s\d+\b",
    "test name": r"\btests?/test_\w+\.py|::test_\w+|\btest_[a-z]\w+\b",
    # environment variables a reader sets (the scale, the opt-in to long cells, where the data are) are not ids
    "constant name": r"\b(?!(?:STAR_SCALE|STAR_RUN_LONG|STAR_DATA_DIR|TFDS_DATA_DIR)\b)[A-Z][A-Z0-9]+(?:_[A-Z0-9]+)+\b",
    "exception class": r"\b[A-Z][A-Za-z]+(?:Error|Exception)\b",
    "Python repr": r"\{'|\['|\bnp\.(?:float|int)\d+\(|\barray\(|\bdict_keys\(|<[a-z_.]+ object at 0x"
                   r"|\[\[\s*-?\d"  # a nested list of numbers
                   r"|\[\s*-?\d+\.\d*(?:e[+-]?\d+)?(?:\s+-?\d+\.?\d*(?:e[+-]?\d+)?)+\s*\]",  # a NumPy array
    "not-a-number in a table or sentence": r"\bnan\b",
    # a printed bool or None after a colon, an arrow or in parentheses ("strict version: False", "hold (True)")
    "Python bool or None": r"(?:[:→]\s*|\(\s*)(?:True|False)\b|→\s*None\b|\(\s*None\s*\)",
    "commit hash": r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b",
}


def internal_ids() -> set:
    """Every id of the package that a page must name by its label instead: the keys of the maps above that are
    not already words (``adam`` is a word, ``fmnist8_mlp32`` is not), every grid's name and member labels."""
    ids = {k for k in (*OPTIMIZERS, *TASKS, *GRIDS, *LAYERS) if re.search(r"[_/0-9]", k)}
    try:
        from star.grids import GRIDS as _grids
    except ImportError:  # pragma: no cover - the package always has it
        return ids
    for g in _grids.values():
        if re.search(r"[_0-9]", g.name):
            ids.add(g.name)
        ids.update(m.label for m in g.members)
        ids.add(g.task)
    return ids
