"""star.book holds what only the book uses: no science module of star imports from it."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "star"


def book_imports(source: str, module: str) -> list[str]:
    """The imports of ``star.book`` (absolute or relative) in ``source``, a module of the package."""
    found = []
    package = module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name == "star.book" or a.name.startswith("star.book.")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing module's package
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base == "star.book" or base.startswith("star.book."):
                found.append(base)
            elif base == "star":
                found += [f"star.{a.name}" for a in node.names if a.name == "book"]
    return found


#: The command line is the top layer, above the book: its ``index`` command runs the book's results index.
TOP = {("star", "__main__")}


def _science_modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if rel.parts[:2] != ("star", "book") and rel.parts not in TOP:
            yield ".".join(rel.parts).removesuffix(".__init__"), path


@pytest.mark.parametrize("module, path", list(_science_modules()), ids=lambda x: str(x))
def test_science_modules_do_not_import_the_book(module, path):
    assert book_imports(path.read_text(encoding="utf-8"), module) == [], \
        f"{module} imports star.book, which only the book may use"


@pytest.mark.parametrize("source", ["import star.book.claims", "from star.book import claims",
                                    "from star import book", "from .book.pages import toc_pages",
                                    "from star.book.figures import nqm as F"])
def test_the_check_catches_a_book_import(source):
    assert book_imports(source, "star.nqm") != []


def test_the_check_lets_other_imports_pass():
    assert book_imports("from star import nqm, stability\nimport star.bookkeeping\nfrom . import pes",
                        "star.metatrain") == []
