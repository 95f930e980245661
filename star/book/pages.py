"""The book as a set of pages: its root folder, the pages ``_toc.yml`` lists, and their titles."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

__all__ = ["find_book_root", "normalize_page", "toc_pages", "page_title"]

_PAGE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*$")


def find_book_root(start: str | os.PathLike | None = None) -> Path | None:
    """The first folder at or above ``start`` (default: the working directory) that holds ``_toc.yml``."""
    here = Path(start if start is not None else os.getcwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").is_file():
            return folder
    return None


def normalize_page(page: str) -> str:
    """``"nqm_experiments"``, ``"book/nqm_experiments.ipynb"`` → ``"book/nqm_experiments"``.

    Raises:
        ValueError: ``page`` is not a page name (letters, digits, ``_ - / .``; no ``..``).
    """
    if not isinstance(page, str) or not _PAGE_RE.match(page) or ".." in page:
        raise ValueError(
            f"chapter must be a book page name such as 'nqm_experiments' or 'book/nqm_experiments' "
            f"(letters, digits, '_', '-', '/', '.'); got {page!r}")
    for ext in (".ipynb", ".md"):
        if page.endswith(ext):
            page = page[: -len(ext)]
    return page if "/" in page else f"book/{page}"


def toc_pages(root: str | os.PathLike) -> list[str] | None:
    """Every page named in ``<root>/_toc.yml`` (``root:`` and ``file:`` entries, in order), or None if
    there is no such file."""
    try:
        text = (Path(root) / "_toc.yml").read_text(encoding="utf-8")
    except OSError:
        return None
    # A regex rather than a YAML parser keeps PyYAML out of the package's dependencies.
    pages = re.findall(r"^\s*(?:-\s*)?(?:file|root)\s*:\s*['\"]?([^'\"\s#]+)", text, flags=re.M)
    return [normalize_page(p) for p in pages]


def page_title(root: str | os.PathLike, page: str) -> str | None:
    """The first level-1 heading of ``<root>/<page>.ipynb`` or ``.md``, without MyST markup; None if absent."""
    base = Path(root) / normalize_page(page)
    for path in (base.with_suffix(".ipynb"), base.with_suffix(".md")):
        if not path.is_file():
            continue
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".ipynb":
            cells = json.loads(text).get("cells", [])
            text = "\n".join("".join(c.get("source", "")) for c in cells if c.get("cell_type") == "markdown")
        m = re.search(r"^#\s+(.+?)\s*$", text, flags=re.M)
        return re.sub(r"[`*$]", "", m.group(1)) if m else None
    return None
