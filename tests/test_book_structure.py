"""The book's structure: every page in _toc.yml exists; every notebook is valid, has the Colab cell first
(tagged remove-cell) and no committed outputs; every {cite} key is in references.bib and no two citations
read the same; the repository the book points at is one setting (_config.yml) that the Colab cells, the
package and the README agree with; environment.yml installs the package; no page cites a document the reader
cannot open. Iterates over _toc.yml, so it holds for whichever chapters exist."""

import re
from pathlib import Path

import nbformat
import pytest
import yaml

from star.book import files
from star.book.claims import CLAIMS
from star.book.pages import toc_pages

ROOT = Path(__file__).resolve().parents[1]
BIB = ROOT / "book" / "references.bib"
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
REPOSITORY, BRANCH = CONFIG["repository"]["url"], CONFIG["repository"].get("branch", "main")

COLAB_CELL = f'''# Colab: install the `star` package from the repository (does nothing when run locally).
import subprocess
import sys

if "google.colab" in sys.modules:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q",
                    "git+{REPOSITORY}.git"], check=True)'''

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
        "star.book.pages.toc_pages (a regex) disagrees with PyYAML"
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
    """A chapter that calls record_claim("id", ...) must use an id of star.book.claims.CLAIMS."""
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                for cid in re.findall(r"record_claim\(\s*['\"]([^'\"]+)['\"]", cell.source):
                    assert cid in CLAIMS, f"{path.name} records unknown claim {cid!r}"


def test_intro_maps_every_appendix_section():
    intro = "\n".join(c.source for c in nbformat.read(ROOT / "book" / "intro.ipynb", as_version=4).cells
                      if c.cell_type == "markdown")
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
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", cfg["repository"]["url"])
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


def _author_year_labels():
    """The "Surname et al., year" label sphinxcontrib-bibtex's author_year style gives each entry."""
    text = BIB.read_text(encoding="utf-8")
    labels = {}
    for m in re.finditer(r"^@\s*\w+\s*\{\s*([^,\s]+)\s*,(.*?)^\}", text, flags=re.M | re.S):
        key, body = m.group(1), m.group(2)
        authors = re.search(r"author\s*=\s*\{(.*?)\}\s*,?\s*$", body, flags=re.M)
        year = re.search(r"year\s*=\s*\{([^}]*)\}", body)
        if not authors or not year:
            continue
        names = [a.strip() for a in authors.group(1).split(" and ")]
        surnames = [n.split(",")[0].strip() for n in names]
        if len(names) > 2 or "others" in surnames:
            who = f"{surnames[0]} et al."
        elif len(names) == 2:
            who = f"{surnames[0]} and {surnames[1]}"
        else:
            who = surnames[0]
        labels[key] = f"{who}, {year.group(1)}"
    return labels


def test_citation_labels_are_unambiguous():
    """Two works must not both read "Metz et al., 2022" in the text (the year carries a/b/c then)."""
    labels = _author_year_labels()
    assert labels["harrison2022closer"] == "Harrison et al., 2022"
    seen = {}
    for key, label in labels.items():
        seen.setdefault(label, []).append(key)
    clashes = {label: keys for label, keys in seen.items() if len(keys) > 1}
    assert not clashes, f"citations that would read the same: {clashes}"


def test_the_repository_is_one_setting_that_everything_agrees_with():
    """_config.yml names the repository; the package's downloads, the README's badges and the Colab cells
    (test above) use the same one."""
    slug = REPOSITORY.removeprefix("https://github.com/")
    assert (files.REPOSITORY, files.BRANCH) == (REPOSITORY, BRANCH)
    assert files.REPOSITORY_RAW == f"https://raw.githubusercontent.com/{slug}/{BRANCH}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    badges = re.findall(r"https://(?:colab\.research\.google\.com/github|mybinder\.org/v2/gh)/[^)\s]+", readme)
    assert len(badges) >= 2, "README has no Colab and Binder badges"
    for url in badges:
        assert f"/{slug}/" in url and (f"/blob/{BRANCH}/" in url or f"/{slug}/{BRANCH}" in url), url


# A document the reader cannot open: the private technical notes this project was started from, and the
# issue tracker of the development sessions.
UNREADABLE_RE = re.compile(r"REFERENCE\s*§|\bREFERENCE\.md\b|\bissues? #?\d+\b|(?<![\w&/#])#\d{1,3}\b(?![\w-])")
CITING_FOLDERS = ("star", "book", "tests", "bench", "results", "experiments")


def unreadable_citations(text: str) -> list[str]:
    return [text[max(m.start() - 30, 0): m.end() + 30].replace("\n", " ") for m in UNREADABLE_RE.finditer(text)]


def _text_files():
    import subprocess
    listed = subprocess.run(["git", "ls-files", *CITING_FOLDERS, "README.md", "Makefile", "_config.yml"], cwd=ROOT,
                            capture_output=True, text=True).stdout.split()
    for name in listed:
        path = ROOT / name
        if path.suffix in (".py", ".md", ".ipynb", ".yml", ".toml", ".txt", ".cfg") or path.name == "Makefile":
            if path.is_file() and path != Path(__file__).resolve():
                yield name, path


def test_no_page_or_docstring_cites_a_document_the_reader_cannot_open():
    found = {name: hits for name, path in _text_files()
             if (hits := unreadable_citations(path.read_text(encoding="utf-8", errors="replace")))}
    assert not found, f"citations of the project's private notes or issue tracker: {found}"


@pytest.mark.parametrize("text, bad", [
    ("the clipping (REFERENCE §5.1) is by value", True), ("see issue 4 §6", True), ("fixed in #12.", True),
    ("(issue #3)", True), ("see the book's appendix, section 'PES as implemented'", False),
    ("color: #1a7f37; &#10003; pass", False), ("cell [#]", False), ("Fig. 2a, T = 50", False)])
def test_the_citation_check_can_fail(text, bad):
    assert bool(unreadable_citations(text)) == bad


APPENDIX = ROOT / "book" / "reference_implementation.md"
APPENDIX_CITE_RE = re.compile(r'appendix "([^"]+)"')


def test_code_cites_sections_of_the_book_appendix_that_exist():
    """Docstrings cite the reference material as ``appendix "<section title>"``; every title must be a section
    of book/reference_implementation.md."""
    sections = set(re.findall(r"^##\s+(.+?)\s*$", APPENDIX.read_text(encoding="utf-8"), flags=re.M))
    cited = {}
    for name, path in _text_files():
        for title in APPENDIX_CITE_RE.findall(path.read_text(encoding="utf-8", errors="replace")):
            cited.setdefault(title, name)
    assert cited, "no code cites the appendix?"
    missing = {t: where for t, where in cited.items() if t not in sections}
    assert not missing, f"cited appendix sections that do not exist: {missing}; sections: {sorted(sections)}"
    assert "PES in the code" in sections and "STAR in the code" in sections


def test_binder_gets_the_debian_data_packages():
    """apt.txt (read by Binder) lists the data packages the Makefile installs, one per line, no comments."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    debian = re.search(r"^DEB_PKGS\s*:=\s*(.+)$", makefile, flags=re.M).group(1).split()
    apt = (ROOT / "apt.txt").read_text(encoding="utf-8").split("\n")
    assert [p for p in apt if p] == [p for p in debian if p.startswith(("dataset-", "bible-"))]


MAX_CELL_LINES = 16


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_chapters_are_thin_and_hide_their_bookkeeping(path):
    """Cells call the package: none defines a function or class (helpers live in star.book), none is longer
    than MAX_CELL_LINES lines; a cell that records a verdict shows only its output (tag remove-input)."""
    for i, cell in enumerate(nbformat.read(path, as_version=4).cells):
        if cell.cell_type != "code" or "remove-cell" in cell.metadata.get("tags", []):
            continue
        assert not re.search(r"^\s*(def|class)\s", cell.source, flags=re.M), \
            f"{path.name} cell {i} defines a function or class; move it into star.book"
        lines = [line for line in cell.source.splitlines() if line.strip()]
        assert len(lines) <= MAX_CELL_LINES, f"{path.name} cell {i} has {len(lines)} lines (at most {MAX_CELL_LINES})"
        if "record_claim(" in cell.source:
            assert "remove-input" in cell.metadata.get("tags", []), \
                f"{path.name} cell {i} records a verdict but shows its code (tag it remove-input)"
