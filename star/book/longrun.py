"""Chapter cells that would start hours of work run only when asked to.

At ``paper`` scale a chapter can offer to compute what it otherwise reads from stored results — the
in-distribution chapter's paper-scale grid is 24 meta-training runs of 5000 outer PES steps each. Such a cell
first calls :func:`opt_in`, which prints what would run and how long it is estimated to take, and returns True
only when the reader has set ``STAR_RUN_LONG=1`` (in Colab: ``%env STAR_RUN_LONG=1`` before the cell). Otherwise
the chapter goes on with the stored results. ``tests/test_longrun.py`` checks that no chapter starts such work
without the opt-in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

__all__ = ["VARIABLE", "long_runs_allowed", "format_hours", "opt_in"]

VARIABLE = "STAR_RUN_LONG"


def long_runs_allowed() -> bool:
    """Whether ``$STAR_RUN_LONG`` asks for long work: ``1`` yes; ``0``, empty or unset no.

    Raises:
        ValueError: any other value (naming the variable and the allowed values).
    """
    raw = os.environ.get(VARIABLE, "").strip()
    if raw not in ("", "0", "1"):
        raise ValueError(f"{VARIABLE} must be 0 or 1 (1: let the chapters start work that takes hours); got {raw!r}")
    return raw == "1"


def format_hours(hours: float) -> str:
    """``0.25`` → ``"15 min"``, ``5.3`` → ``"5.3 h"``, ``50`` → ``"50 h (2.1 days)"``."""
    if hours != hours or hours < 0:
        raise ValueError(f"hours must be a non-negative number; got {hours!r}")
    if hours < 1:
        return f"{hours * 60:.0f} min"
    if hours < 24:
        return f"{hours:.1f} h"
    return f"{hours:.0f} h ({hours / 24:.1f} days)"


def opt_in(what: str, estimates: Mapping[str, float]) -> bool:
    """Print what a cell would start and its estimated duration; True only if ``$STAR_RUN_LONG=1``.

    Args:
        what: what would run, e.g. ``"the paper-scale grid: 24 meta-training runs of 5000 outer steps"``.
        estimates: ``{where: hours}`` from measured rates, e.g. ``{"2 CPU cores": 44.0}``; empty when no rate
            was measured for this work (the message then says so).

    Raises:
        ValueError: an estimate that is not a non-negative number, or a bad ``$STAR_RUN_LONG``.
    """
    times = "; ".join(f"{format_hours(float(h))} on {where}" for where, h in estimates.items()) or \
        "no estimate (no rate was measured for it)"
    if long_runs_allowed():
        print(f"{VARIABLE}=1: starting {what} (estimated {times}).")
        return True
    print(f"Not started: {what}, estimated {times}. To run it, set {VARIABLE}=1 before this cell "
          f"(`%env {VARIABLE}=1` in Colab or Jupyter); an interrupted run resumes where it stopped. "
          f"The chapter goes on with the stored results.")
    return False
