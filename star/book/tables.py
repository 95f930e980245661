"""Tables that fit the page: a chapter shows rows of numbers as one HTML table instead of printed columns.

``table(["α", "L"], [[0.8, 1.909], [1.3, 15.39]], digits=4)`` displays as an HTML table (class
``star-table``, styled by ``book/_ext/static/starbook.css`` to wrap long cells and never overflow the
article) and as aligned plain text where there is no HTML.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

__all__ = ["Table", "table", "format_number", "column", "Prose"]


def format_number(x, digits: int = 4) -> str:
    """``x`` with ``digits`` significant digits (ints and strings as they are; bools as yes/no)."""
    if isinstance(x, bool) or type(x).__name__ == "bool_":
        return "yes" if x else "no"
    if isinstance(x, int) or type(x).__name__.startswith(("int", "uint")):
        return str(int(x))
    if isinstance(x, float) or type(x).__name__.startswith("float"):
        x = float(x)
        if not math.isfinite(x):
            return str(x)
        return f"{x:.{digits}g}"
    return str(x)


class Prose(str):
    """A sentence a cell returns for the reader: a ``str`` everywhere, shown by a notebook as Markdown (a plain
    ``str`` would show as its repr, in quotes)."""

    def _repr_markdown_(self) -> str:
        return str(self)


def column(t: Table, name: str) -> list:
    """The unformatted entries of ``t``'s column ``name``.

    Raises:
        ValueError: ``t`` has no column ``name``.
    """
    if name not in t.columns:
        raise ValueError(f"name must be one of the table's columns {t.columns}; got {name!r}")
    j = t.columns.index(name)
    return [r[j] for r in t.values]


class Table:
    """Rows under named columns; ``_repr_html_`` for notebooks, ``__repr__`` as aligned text."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence], caption: str | None = None,
                 digits: int = 4):
        columns = [str(c) for c in columns]
        if not columns:
            raise ValueError("columns must name at least one column")
        rows = [list(r) for r in rows]
        for i, r in enumerate(rows):
            if len(r) != len(columns):
                raise ValueError(f"rows[{i}] has {len(r)} entries; the table has {len(columns)} columns")
        self.columns, self.caption = columns, caption
        self.values = rows  # the unformatted entries, for prose computed from the same numbers
        self.cells = [[format_number(x, digits) for x in r] for r in rows]

    def _repr_html_(self) -> str:
        e = html.escape
        head = "".join(f"<th>{e(c)}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{e(x)}</td>" for x in r) + "</tr>" for r in self.cells)
        cap = f"<caption>{e(self.caption)}</caption>" if self.caption else ""
        return (f'<div class="star-table-wrap"><table class="star-table">{cap}<thead><tr>{head}</tr></thead>'
                f"<tbody>{body}</tbody></table></div>")

    def __repr__(self) -> str:
        widths = [max(len(c), *(len(r[j]) for r in self.cells)) if self.cells else len(c)
                  for j, c in enumerate(self.columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(self.columns, widths))]
        lines += ["  ".join(x.ljust(w) for x, w in zip(r, widths)) for r in self.cells]
        return "\n".join(([self.caption] if self.caption else []) + lines)


def table(columns: Sequence[str], rows: Sequence[Sequence], caption: str | None = None,
          digits: int = 4) -> Table:
    """A :class:`Table`; numbers are shown with ``digits`` significant digits.

    Raises:
        ValueError: no columns, or a row whose length differs from the number of columns.
    """
    return Table(columns, rows, caption, digits)
