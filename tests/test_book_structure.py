"""The book's structure: every page in _toc.yml exists; every notebook is valid, has the Colab cell first
(tagged remove-cell) and no committed outputs; every {cite} key is in references.bib; environment.yml
installs the package. Iterates over _toc.yml, so it holds for whichever chapters exist."""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from star.book.claims import CLAIMS
from star.book.pages import toc_pages

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "book" / "references.bib"

COLAB_CELL = '''# Colab: install the `star` package from the repository (does nothing when run locally).
import sys, subprocess
if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+https://github.com/star-book/star.git"], check=True)'''

# {cite}`a,b`, {cite:p}`a`, {cite:t}`a; b` (MyST roles of sphinxcontrib-bibtex)
CITE_RE = re.compile(r"\{cite(?::[a-z]+)?\}`([^`]+)`")
# code that merely shows the syntax: ``…`` spans and fenced blocks that are not directives
CODE_RE = re.compile(r"^(`{3,}|~{3,})(?!\{)[^\n]*\n.*?^\1|``[^\n]+?``", re.S | re.M)
BIB_KEY_RE = re.compile(r"^@\s*([A-Za-z]+)\s*\{\s*([^,\s]+)\s*,", re.M)


def _toc_files(node):
    """Every 'file' (and the root) named anywhere in a jb-book _toc.yml tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root") and isinstance(value, str):
                yield value
            else:
                yield from _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            yield from _toc_files(item)


def _toc():
    with open(ROOT / "_toc.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


def _page_path(name):
    stem = ROOT / name
    for candidate in (stem, stem.with_suffix(".ipynb"), stem.with_suffix(".md")):
        if candidate.is_file() and candidate.suffix in (".ipynb", ".md"):
            return candidate
    return None


PAGES = list(_toc_files(_toc()))
NOTEBOOKS = [p for p in (_page_path(n) for n in PAGES) if p is not None and p.suffix == ".ipynb"]


def _bib_keys():
    return [key for kind, key in BIB_KEY_RE.findall(BIB.read_text(encoding="utf-8"))
            if kind.lower() not in ("comment", "string", "preamble")]


def _markdown_sources():
    for name in PAGES:
        path = _page_path(name)
        if path is None:
            continue
        if path.suffix == ".ipynb":
            nb = nbformat.read(path, as_version=4)
            for i, cell in enumerate(nb.cells):
                if cell.cell_type == "markdown":
                    yield f"{path.name} cell {i}", cell.source
        else:
            yield path.name, path.read_text(encoding="utf-8")
            for inc in re.findall(r"```\{include\}\s+(\S+)", path.read_text(encoding="utf-8")):
                inc_path = path.parent / inc
                if inc_path.is_file():
                    yield inc_path.name, inc_path.read_text(encoding="utf-8")


def test_toc_is_a_jupyter_book_toc_and_every_entry_exists():
    toc = _toc()
    assert toc["format"] == "jb-book" and toc["root"] == "book/intro"
    assert len(PAGES) == len(set(PAGES)), "a page is listed twice in _toc.yml"
    assert toc_pages(ROOT) == [re.sub(r"\.(ipynb|md)$", "", p) for p in PAGES], \
        "star.claims.toc_pages (a regex) disagrees with PyYAML"
    missing = [name for name in PAGES if _page_path(name) is None]
    assert not missing, f"_toc.yml names pages that do not exist: {missing}"
    for name in ("book/status", "book/bibliography"):
        assert name in PAGES


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_valid_colab_ready_and_stripped(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code, f"{path.name} has no code cell"
    first = code[0]
    assert first.source.strip() == COLAB_CELL, f"{path.name}: first code cell is not the Colab install cell"
    assert "remove-cell" in first.metadata.get("tags", []), f"{path.name}: Colab cell lacks 'remove-cell'"
    assert nb.cells[0] is first or all(c.cell_type != "code" for c in nb.cells[: nb.cells.index(first)])
    for i, cell in enumerate(code):
        assert cell.outputs == [], f"{path.name}: code cell {i} has committed outputs"
        assert cell.execution_count is None, f"{path.name}: code cell {i} has an execution count"
    assert nb.metadata.get("kernelspec", {}).get("language", "python") == "python"


def test_bibliography_keys_are_unique_and_parse():
    keys = _bib_keys()
    assert "harrison2022closer" in keys
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    assert not duplicates, f"duplicate keys in references.bib: {duplicates}"
    text = BIB.read_text(encoding="utf-8")
    assert text.count("{") == text.count("}"), "unbalanced braces in references.bib"


def test_every_cited_key_is_in_the_bibliography():
    keys = set(_bib_keys())
    cited = {}
    for where, source in _markdown_sources():
        for group in CITE_RE.findall(CODE_RE.sub("", source)):
            for key in re.split(r"[,;]\s*", group):
                cited.setdefault(key.strip(), where)
    assert "harrison2022closer" in cited, "the intro should cite the paper"
    unknown = {k: w for k, w in cited.items() if k not in keys}
    assert not unknown, f"cited but not in references.bib: {unknown}"


def test_claims_recorded_by_chapters_exist():
    """A chapter that calls record_claim("id", ...) must use an id of star.claims.CLAIMS."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                for cid in re.findall(r"record_claim\(\s*['\"]([^'\"]+)['\"]", cell.source):
                    assert cid in CLAIMS, f"{path.name} records unknown claim {cid!r}"


def test_intro_maps_every_appendix_section():
    intro = (ROOT / "book" / "intro.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\|\s*([ABC]\.\d)\s*\|", intro, flags=re.M)
    assert rows == ["A.1", "A.2", "A.3", "A.4", "B.1", "B.2", "B.3", "C.1", "C.2", "C.3"]
    assert "(scales)=" in intro and all(s in intro for s in ("`smoke`", "`cpu`", "`paper`"))


def test_environment_yml_installs_the_package():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    assert env["name"] and "conda-forge" in env["channels"]
    deps = env["dependencies"]
    assert any(isinstance(d, str) and d.startswith("python") for d in deps)
    pip = [d for d in deps if isinstance(d, dict) and "pip" in d]
    assert len(pip) == 1, "environment.yml needs one pip: section"
    assert any(re.fullmatch(r'(-e\s+)?["\']?\.(\[[a-z,]+\])?["\']?', p.strip()) for p in pip[0]["pip"]), \
        "environment.yml must pip-install this package (. or -e .[extras])"


def test_config_serves_mathjax_locally_and_has_launch_buttons():
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    assert cfg["execute"]["execute_notebooks"] == "cache" and cfg["execute"]["timeout"] > 0
    assert cfg["repository"]["url"] == "https://github.com/star-book/star"
    assert cfg["launch_buttons"]["colab_url"] and cfg["launch_buttons"]["binderhub_url"]
    assert cfg["bibtex_bibfiles"] == ["book/references.bib"]
    sphinx = cfg["sphinx"]
    assert "sphinx_proof" in sphinx["extra_extensions"]
    assert "://" not in sphinx["config"]["mathjax_path"], "MathJax must come from the local copy"
    assert sphinx["config"]["numfig"] and sphinx["config"]["math_numfig"]


def test_citation_licence_and_readme_links():
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text(encoding="utf-8"))
    assert cff["cff-version"] == "1.2.0" and cff["license"] == "Apache-2.0"
    pref = cff["preferred-citation"]
    assert pref["title"].startswith("A Closer Look at Learned Optimization")
    assert [a["family-names"] for a in pref["authors"]] == ["Harrison", "Metz", "Sohl-Dickstein"]
    assert pref["year"] == 2022
    licence = (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    cfg = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    repo, pages = cfg["repository"]["url"], cfg["html"]["baseurl"].rstrip("/")
    assert cff["repository-code"] == repo and cff["url"].rstrip("/") == pages
    assert repo in readme and pages in readme
    for page in re.findall(re.escape(pages) + r"/([\w/]+)\.html", readme):
        assert page in PAGES, f"README links to {page}.html, which is not in _toc.yml"
    for nb in re.findall(r"/blob/main/([\w/]+)\.ipynb", readme):
        assert (ROOT / f"{nb}.ipynb").is_file(), f"README's Colab badge points at a missing {nb}.ipynb"
