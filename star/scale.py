"""Experiment scales.

Every long experiment in the book takes a scale, read from the environment variable ``STAR_SCALE``:

``smoke``
    CI and make test: tiny sizes, each chapter runs well under two minutes on two CPU cores.
``cpu``
    The default for ``make book``: real data, minutes per experiment, results meaningful.
``paper``
    The paper's settings, meant for a GPU or TPU.
"""

from __future__ import annotations

import enum
import os


class Scale(str, enum.Enum):
    SMOKE = "smoke"
    CPU = "cpu"
    PAPER = "paper"


def get_scale(value: str | Scale | None = None, default: str = "cpu") -> Scale:
    """Return the experiment scale: ``value`` if given, else ``$STAR_SCALE``, else ``default``.

    Raises:
        ValueError: if the scale is not one of ``smoke``, ``cpu``, ``paper``.
    """
    if isinstance(value, Scale):
        return value
    raw = value if value is not None else os.environ.get("STAR_SCALE", default)
    try:
        return Scale(str(raw).strip().lower())
    except ValueError:
        allowed = ", ".join(s.value for s in Scale)
        raise ValueError(f"STAR_SCALE must be one of {allowed}; got {raw!r}") from None


def pick(smoke, cpu, paper, scale: str | Scale | None = None):
    """Pick the value for the current scale, e.g. ``num_seeds = pick(10, 500, 500)``."""
    return {Scale.SMOKE: smoke, Scale.CPU: cpu, Scale.PAPER: paper}[get_scale(scale)]
