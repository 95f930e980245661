"""The built book: every page checked in a real browser.

The module builds the book at smoke scale exactly as CI would (``jupyter-book build . -W -n --keep-going``,
into ``_build/smoke`` so its execution cache never feeds the cpu-scale ``make book``). The chapters' cells are
checked by nbval (``pytest --nbval-lax book/``, the first step of ``make test``), which stores each chapter it
executed without error in this build's execution cache (``book/conftest.py``): the build then renders those
executions and runs only what the cache lacks (the pages executed on every build, a chapter nbval did not
pass). Run alone (``make test-nb``), the build executes every chapter itself. Then:

* the build succeeds with no warning (a cell that raises fails it);
* every page listed in ``_toc.yml`` is opened from disk in headless Chromium at 1280 px with no network: it
  loads; it shows at least as many images as its source has figures (a code cell that calls ``plt.show()``,
  ``plt.subplots()``, ``plt.figure()`` or a ``plot_*`` function of ``star.book``, a ``{figure}`` directive or a
  Markdown image — chapters added later are counted by the same rule), and every image is a non-blank picture;
  nothing in the article is wider than the article (tables, images, text outputs); no machine path shows;
  MathJax (the local copy) typeset every formula and no raw TeX is left; internal links and anchors resolve;
  notebook chapters carry Colab and Binder launch links for the repository of ``_config.yml``;
* every figure a chapter shows obeys the book's figure rules (``star.book.figures``: labelled axes, legends of at
  least 8 pt that cover no data, distinguishable series, no internal ids), read from the facts the kernel wrote
  into each PNG;
* no internal id of the package (a grid member such as ``star_wd0.1``, a task id, a layer id, a constant, a test
  name, an exception class, a Python repr, a commit hash: ``star.book.labels``), and no function name of the
  package in inline code, shows in a page's text outside code cells and dropdowns (where provenance belongs).

Each check is also run on a deliberately broken input to show that it can fail. Screenshots go to
``_build/screenshots/``. Set ``STAR_SKIP_BROWSER=1`` to skip the browser part on a machine without Chromium
(``make sysdeps`` installs it).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
import yaml

from star.book import figures as book_figures
from star.book.pages import toc_pages

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUILD_OUT = ROOT / "_build" / "smoke"
HTML = BUILD_OUT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
BUILD_TIMEOUT_S = 1500
WINDOW_WIDTH = 1280

# Raw TeX that MathJax should have consumed; checked in the visible text with formulas removed.
RAW_TEX_RE = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\[A-Za-z]{2,}|(?<![\w$])\$[A-Za-z\\{]")
# A code cell that draws a figure, and the Markdown that shows one.
FIGURE_CELL_RE = re.compile(r"\bplt\.(?:show|subplots|figure)\(|(?<![\w.])(?:\w+\.)?plot_\w+\(")
FIGURE_MARKDOWN_RE = re.compile(r"^[`:]{3,}\{figure\}|!\[[^\]]*\]\([^)]+\)", re.M)
# Paths of the machine that built the book, and Python's reprs of paths.
MACHINE_PATH_RE = re.compile(
    r"(?<![\w.~-])/(?:home|root|tmp|work|usr|opt|var|mnt|srv|Users|private|scratch)/[\w.@+-]+"
    r"|PosixPath\(|WindowsPath\(|file://|\b[A-Za-z]:\\\\")

PAGES = toc_pages(ROOT)
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))


def _source(page: str) -> Path | None:
    for ext in (".ipynb", ".md"):
        if (ROOT / f"{page}{ext}").is_file():
            return ROOT / f"{page}{ext}"
    return None


NOTEBOOK_PAGES = [p for p in PAGES if (_source(p) or Path()).suffix == ".ipynb"]


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def chromium():
    path = _chromium()
    if path is None:
        if os.environ.get("STAR_SKIP_BROWSER") == "1":
            pytest.skip("STAR_SKIP_BROWSER=1 and no Chromium")
        pytest.fail("Chromium not found: run `make sysdeps` (apt-get install chromium) "
                    "or set STAR_SKIP_BROWSER=1 to skip the browser test")
    return path


@dataclasses.dataclass
class Build:
    html: Path
    returncode: int
    log: str
    seconds: float


@pytest.fixture(scope="module")
def book_build() -> Build:
    """Build the book at smoke scale (cached notebooks are reused); one build at a time per checkout. The
    build's success is a test of its own, so that a failing cell still leaves the other pages to be checked."""
    BUILD_OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, STAR_SCALE="smoke", JAX_PLATFORMS="cpu")
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", ".", "--path-output", str(BUILD_OUT),
           "-W", "-n", "--keep-going"]
    with open(ROOT / "_build" / "smoke.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another engineer's or test's build of the same folder
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
        seconds = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    executed = sorted(set(re.findall(r"^(\S+): Executing notebook", log, flags=re.M)))
    print(f"book built at smoke scale in {seconds:.1f}s; executed by the build (not from the cache): {executed}")
    return Build(HTML, proc.returncode, log, seconds)


def test_the_book_builds_without_warnings(book_build):
    log = book_build.log
    warnings = [line for line in log.splitlines() if "WARNING" in line and "Kernel is running over TCP" not in line]
    assert book_build.returncode == 0 and "build succeeded" in log, \
        f"jupyter-book build failed (exit {book_build.returncode}) after {book_build.seconds:.0f}s; warnings:\n" + \
        "\n".join(warnings[:20]) + f"\n--- end of the log:\n{log[-4000:]}"


# ---------------------------------------------------------------------------------------------------------
# Every page, in Chromium


def expected_images(source: Path | None) -> int:
    """How many images the page of ``source`` must show: its figure cells (not removed) and Markdown figures."""
    if source is None:
        return 0
    if source.suffix == ".md":
        return len(FIGURE_MARKDOWN_RE.findall(source.read_text(encoding="utf-8")))
    count = 0
    for cell in nbformat.read(source, as_version=4).cells:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell.cell_type == "markdown":
            count += len(FIGURE_MARKDOWN_RE.findall(cell.source))
        elif not tags & {"remove-cell", "remove-output"}:
            code = "\n".join(line.split("#", 1)[0] for line in cell.source.splitlines())
            count += bool(FIGURE_CELL_RE.search(code))
    return count


# Measures, once MathJax has typeset the page, what sticks out of the article at this window width.
LAYOUT_SCRIPT = """<script>
(function () {
  function report() {
    var art = document.querySelector('article') || document.querySelector('main') || document.body;
    var box = art.getBoundingClientRect(), out = [];
    art.querySelectorAll('table, img, figure, div.output pre, div.cell_output pre').forEach(function (el) {
      var b = el.getBoundingClientRect();
      var text = (el.textContent || el.getAttribute('src') || '').trim().slice(0, 50);
      var what = el.tagName.toLowerCase() + ' "' + text + '"';
      if (b.width > 0 && (b.right > box.right + 2 || b.left < box.left - 2)) {
        out.push(what + ' is ' + Math.round(b.width) + ' px wide in an article of ' + Math.round(box.width) + ' px');
      } else if (el.tagName === 'PRE' && el.scrollWidth > el.clientWidth + 2) {
        out.push(what + ' needs ' + el.scrollWidth + ' px, has ' + el.clientWidth + ' px');
      }
    });
    var d = document.createElement('div');
    d.id = 'star-layout-report';
    d.setAttribute('data-overflow', JSON.stringify(out));
    document.body.appendChild(d);
  }
  window.addEventListener('load', function () {
    if (window.MathJax && MathJax.startup && MathJax.startup.promise) { MathJax.startup.promise.then(report); }
    else { report(); }
  });
})();
</script>"""


def _visit(chromium, url: str, screenshot: Path, budget_ms: int = 5000) -> str:
    """Load ``url`` in headless Chromium (no network needed), save a screenshot, return the DOM."""
    with tempfile.TemporaryDirectory(prefix="star-chromium-") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}",
               f"--virtual-time-budget={budget_ms}", f"--window-size={WINDOW_WIDTH},2000",
               f"--screenshot={screenshot}", "--dump-dom", url]
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS="disabled:")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"chromium failed on {url}: {proc.stderr[-2000:]}"
    return proc.stdout


def visit_with_layout_report(chromium, html_file: Path, screenshot: Path, budget_ms: int = 5000) -> str:
    """:func:`_visit` a copy of ``html_file`` (beside it, so relative links resolve) with the layout probe."""
    probe = html_file.with_name(f"_layout_probe_{html_file.name}")
    text = html_file.read_text(encoding="utf-8")
    probe.write_text(text.replace("</body>", LAYOUT_SCRIPT + "</body>") if "</body>" in text else text + LAYOUT_SCRIPT,
                     encoding="utf-8")
    try:
        return _visit(chromium, probe.as_uri(), screenshot, budget_ms)
    finally:
        probe.unlink()


@pytest.fixture(scope="module")
def rendered(book_build, chromium):
    """{page: (html file, DOM after JavaScript)} for every page of the toc, two browsers at a time."""
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)

    def one(page):
        html_file = book_build.html / f"{page}.html"
        if not html_file.is_file():
            return page, (html_file, None)
        shot = SHOTS / (page.replace("/", "__") + ".png")
        dom = visit_with_layout_report(chromium, html_file, shot)
        if html_file.read_text(encoding="utf-8").count('class="math') > dom.count("<mjx-container"):
            dom = visit_with_layout_report(chromium, html_file, shot, budget_ms=20000)  # a slow machine
        return page, (html_file, dom)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, PAGES))


def _soup(text):
    from bs4 import BeautifulSoup  # a dependency of the book theme
    return BeautifulSoup(text, "html.parser")


def _article(soup):
    return soup.find("article") or soup.find("main") or soup.body


def _local_target(page_file: Path, href: str):
    """(file, fragment) that a relative or file:// link points to, or None for external links."""
    parts = urllib.parse.urlsplit(href)
    if parts.scheme and parts.scheme != "file":
        return None
    if parts.scheme == "file":
        target = Path(urllib.parse.unquote(parts.path))
    elif parts.path:
        target = (page_file.parent / urllib.parse.unquote(parts.path)).resolve()
    else:
        target = page_file
    if target.is_dir():
        target = target / "index.html"
    return target, urllib.parse.unquote(parts.fragment)


def page_problems(html_file: Path, dom: str, expected: int = 0) -> list[str]:
    """What a reader would find wrong with one rendered page (empty list: nothing). ``expected``: the number
    of figures the page's source draws (:func:`expected_images`)."""
    problems = []
    soup = _soup(dom)
    article = _article(soup)
    if article is None or soup.find("h1") is None:
        return ["no article or heading"]
    if len(article.get_text(" ", strip=True)) < 100:
        problems.append("the page is (almost) empty")
    if soup.select(".output.traceback, .output.error"):
        problems.append("an executed cell shows an error")
    problems += figure_problems(html_file, article, expected)
    problems += layout_problems(soup)
    problems += machine_path_problems(article)
    problems += figure_rule_problems(html_file, article)
    problems += internal_id_problems(article, html_file.stem)
    problems += string_repr_problems(article)
    problems += math_problems(html_file, dom)
    problems += link_problems(html_file, soup)
    return problems


def figure_problems(html_file: Path, article, expected: int = 0) -> list[str]:
    """At least ``expected`` images; every figure holds an image; every image is a local, non-blank file."""
    import matplotlib.image as mpimg
    images = article.find_all("img")
    problems = []
    if len(images) < expected:
        problems.append(f"shows {len(images)} images, but its source draws {expected} figures")
    problems += [f"figure without an image: {str(f)[:80]}" for f in article.find_all("figure")
                 if f.find("img") is None and f.find("svg") is None]
    for img in images:
        src = img.get("src", "")
        if src.startswith("data:"):
            if len(src) < 100:
                problems.append("empty inline image")
            continue
        target = _local_target(html_file, src) if src else None
        if target is None:
            problems.append(f"image {src!r} is not a file of the book")
            continue
        path = target[0]
        if not path.is_file() or path.stat().st_size == 0:
            problems.append(f"image {src} is missing or empty")
        elif path.suffix.lower() in (".png", ".jpg", ".jpeg"):
            pixels = mpimg.imread(path)
            if min(pixels.shape[:2]) < 16 or pixels[..., :3].std() == 0:
                problems.append(f"image {src} is tiny or a single colour ({pixels.shape})")
        elif path.suffix.lower() == ".svg" and "<svg" not in path.read_text(errors="replace"):
            problems.append(f"image {src} is not an SVG")
    return problems


def layout_problems(soup) -> list[str]:
    """Anything in the article wider than the article at the test's window width (the probe's report)."""
    probe = soup.find(id="star-layout-report")
    if probe is None:
        return ["the layout probe did not run"]
    return [f"wider than the page at {WINDOW_WIDTH} px: {x}" for x in json.loads(probe.get("data-overflow", "[]"))]


def machine_path_problems(article) -> list[str]:
    """Paths of the building machine (or Python path reprs) in the visible text of the article."""
    for tag in article.find_all(["script", "style", "noscript"]):
        tag.decompose()
    text = article.get_text(" ", strip=True)
    hits = [text[max(m.start() - 30, 0): m.end() + 30] for m in MACHINE_PATH_RE.finditer(text)]
    return [f"machine paths on the page: {hits[:5]}"] if hits else []


def figure_rule_problems(html_file: Path, article) -> list[str]:
    """Every image a cell output shows carries the facts ``star.book.figures`` measured on its figure, and they obey
    the figure rules (axis labels, legends of at least 8 pt that cover no data, distinguishable series, no ids)."""
    problems = []
    for img in article.select("div.cell_output img, div.output img"):
        target = _local_target(html_file, img.get("src", ""))
        if target is None or not target[0].is_file() or target[0].suffix.lower() != ".png":
            continue
        facts = book_figures.read_facts(target[0])
        name = target[0].name
        if facts is None:
            problems.append(f"figure {name} carries no measured facts (not shown through star.book's kernel hook)")
        elif "error" in facts:
            problems.append(f"figure {name} could not be measured: {facts['error']}")
        else:
            problems += [f"figure {name}: {p}" for p in book_figures.figure_problems(facts)]
    return problems


# Names of other people's code that a page may print in inline code (the paper's optimizer, the reference library).
EXTERNAL_NAMES = {"small_fc_lopt", "learned_optimization", "tensorflow_datasets"}
SNAKE_RE = re.compile(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)+\b(?:\(|\.\w)?|\bstar(?:\.[a-z_0-9]+){2,}")
# pages about code itself, where the reference's function names are the subject
CODE_PAGES = {"reference_implementation"}


def _reader_text(article) -> object:
    """A copy of the article without code-cell inputs, Python code shown on purpose (the package's functions included
    where a chapter explains them), dropdowns (provenance, hidden cells), scripts, styles and formulas (a matrix
    typeset by MathJax reads like a NumPy array)."""
    article = _soup(str(article))
    for tag in article.select("div.cell_input, details, script, style, noscript, .toggle-hidden, "
                              "div.highlight-python, div.highlight-ipython3, mjx-container, .math"):
        tag.decompose()
    return article


def internal_id_problems(article, page_name: str = "") -> list[str]:
    """Internal ids in what a reader reads: the article's text outside code-cell inputs and dropdowns must not name
    a package id or id-shaped string (``star.book.labels``), and its inline code no function of the package."""
    text_part = _reader_text(article)
    hits = book_figures.id_hits(text_part.get_text(" ", strip=True))
    problems = [f"internal ids on the page: {hits[:16]}"] if hits else []
    if page_name not in CODE_PAGES:
        names = []
        for code in text_part.find_all("code"):
            if code.find_parent("pre") is not None:
                continue
            for m in SNAKE_RE.finditer(code.get_text()):
                if m.group(0).rstrip("(.") not in EXTERNAL_NAMES:
                    names.append(m.group(0))
        if names:
            problems.append(f"function or variable names in the prose: {sorted(set(names))[:8]}")
    return problems


def string_repr_problems(article) -> list[str]:
    """A cell whose output is a Python string in quotes (a sentence returned as ``str`` instead of shown as text)."""
    quoted = [pre.get_text().strip() for pre in article.select("div.cell_output pre")]
    quoted = [t for t in quoted if len(t) > 2 and t[0] in "'\"" and t[-1] == t[0]]
    return [f"a cell shows a Python string in quotes: {t[:60]!r}" for t in quoted[:3]]


def math_problems(html_file: Path, dom: str) -> list[str]:
    """MathJax, loaded from the book's own copy, typeset every formula without errors or leftovers."""
    problems = []
    n_math = len(_soup(html_file.read_text(encoding="utf-8")).select(".math"))
    soup = _soup(dom)
    scripts = [s.get("src", "") for s in soup.find_all("script") if "mathjax" in s.get("src", "").lower()]
    if n_math and not scripts:
        problems.append("has math but loads no MathJax")
    for src in scripts:
        target = _local_target(html_file, src)
        if target is None:
            problems.append(f"MathJax comes from the network ({src}), not the local copy")
        elif not target[0].is_file():
            problems.append(f"MathJax script {src} is missing from the build")
    containers = soup.find_all("mjx-container")
    if len(containers) < n_math:
        problems.append(f"{n_math} formulas but {len(containers)} typeset by MathJax")
    errors = soup.find_all("mjx-merror")
    if errors:
        problems.append(f"MathJax errors: {[e.get('data-mjx-error') for e in errors][:5]}")
    undefined = [m for m in soup.find_all("mjx-mtext") if "color: red" in m.get("style", "")]
    if undefined:  # MathJax's noundefined extension shows an unknown macro in red
        problems.append(f"{len(undefined)} undefined TeX macros")
    for tag in soup.find_all(["script", "style", "code", "pre", "textarea", "mjx-container", "noscript"]):
        tag.decompose()
    article = _article(soup)
    text = article.get_text(" ", strip=True) if article else ""
    raw = [text[max(m.start() - 40, 0): m.end() + 40] for m in RAW_TEX_RE.finditer(text)]
    if raw:
        problems.append(f"raw TeX left in the rendered text: {raw[:5]}")
    return problems


def link_problems(html_file: Path, soup) -> list[str]:
    """Every link into the book points at an existing file and, with a #fragment, an existing id."""
    ids_cache: dict = {}
    broken = []
    for a in soup.find_all("a", href=True):
        href = a["href"]
        if href.startswith(("javascript:", "mailto:")) or href == "#":
            continue
        target = _local_target(html_file, href)
        if target is None:
            continue
        path, fragment = target
        if not path.is_file():
            broken.append(href)
            continue
        if fragment and path.suffix == ".html":
            if path not in ids_cache:
                other = soup if path == html_file else _soup(path.read_text(encoding="utf-8"))
                ids_cache[path] = {t.get("id") for t in other.find_all(id=True)} | \
                                  {t.get("name") for t in other.find_all(attrs={"name": True})}
            if fragment not in ids_cache[path]:
                broken.append(href)
    return [f"broken internal links {sorted(set(broken))[:10]}"] if broken else []


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_correctly_in_chromium(rendered, page):
    """The page loads; its figures are all there and real; it fits the window; no machine path; math typeset
    locally; internal links resolve."""
    html_file, dom = rendered[page]
    assert dom is not None, f"{page}: no {html_file.relative_to(ROOT)} in the built book"
    assert page_problems(html_file, dom, expected_images(_source(page))) == [], page
    import matplotlib.image as mpimg
    pixels = mpimg.imread(SHOTS / (page.replace("/", "__") + ".png"))
    assert min(pixels.shape[:2]) >= 1000 and pixels[..., :3].std() > 0.02, f"{page}: blank screenshot"


def test_every_chapter_with_figures_shows_them(rendered):
    """The figures the chapters draw reach the pages at all (a kernel with a non-inline matplotlib backend
    draws nothing: the book then has no image anywhere)."""
    counts = {p: (expected_images(_source(p)), len(_article(_soup(dom)).find_all("img")))
              for p, (_, dom) in rendered.items() if dom is not None}
    assert sum(e for e, _ in counts.values()) > 0, "no chapter draws a figure?"
    assert all(shown >= expected for expected, shown in counts.values()), counts


def test_the_checks_catch_broken_pages(tmp_path, chromium):
    """The checks above must be able to fail: a page with unrendered TeX, a CDN MathJax, a broken link, a
    missing anchor, a missing and a blank image, fewer images than figures, a table wider than the page, a
    printed line too long for it, and machine paths, opened in the same browser."""
    import matplotlib.pyplot as plt
    blank = tmp_path / "blank.png"
    plt.imsave(blank, [[0.5] * 32] * 32, cmap="gray", vmin=0, vmax=1)
    (tmp_path / "other.html").write_text('<html><body><p id="here">x</p></body></html>')
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><script src='https://cdn.example.org/mathjax/tex-mml-chtml.js'></script></head><body>"
        "<article style='width: 800px'><h1>T</h1><p>" + "words " * 30 + "</p>"
        "<p>inline <span class='math notranslate nohighlight'>\\(\\alpha\\)</span> and $$x^2$$</p>"
        "<a href='other.html#here'>ok</a> <a href='other.html#nowhere'>bad anchor</a> "
        "<a href='missing.html'>bad</a> <a href='https://example.org/'>external</a>"
        "<figure><img src='blank.png'></figure><img src='gone.png'><figure><p>no image</p></figure>"
        "<table style='width: 2000px'><tr><td>a wide table</td></tr></table>"
        "<div class='output'><pre style='overflow: auto'>" + "x" * 400 + "</pre></div>"
        "<p>saved to PosixPath('/home/someone/_build/claims/smoke/x.json') and /work/main/results</p>"
        "</article></body></html>")
    dom = visit_with_layout_report(chromium, page, tmp_path / "shot.png", budget_ms=1000)
    problems = "\n".join(page_problems(page, dom, expected=5))
    assert "MathJax comes from the network" in problems
    assert "1 formulas but 0 typeset" in problems
    assert "raw TeX left" in problems and "$$x^2$$" in problems
    assert "other.html#nowhere" in problems and "missing.html" in problems
    assert "other.html#here'" not in problems and "example.org" not in problems.replace("cdn.example.org", "")
    assert "blank.png is tiny or a single colour" in problems and "gone.png is missing" in problems
    assert "figure without an image" in problems
    assert "shows 2 images, but its source draws 5 figures" in problems
    assert re.search(r"table \"a wide table\" is 2000 px wide in an article of 800 px", problems)
    assert re.search(r"pre \"x+\" needs \d+ px", problems)
    assert "PosixPath(" in problems and "/work/main" in problems


def test_the_figure_and_id_rules_catch_a_bad_page(tmp_path):
    """A chapter page whose figure has an unlabelled axis, a 5 pt legend over the data, a curve hidden under
    another, a legend entry drawn nowhere and an id in its title, and whose prose names a grid member, a task id,
    a constant, a test and a package function, whose output prints a NumPy array, a nested list, a run folder and
    a string in quotes and whose table shows ``nan``, fails; the same ids in a code cell, a dropdown or a figure made by
    the rules pass."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.linspace(0.0, 1.0, 40)
    bad, ax = plt.subplots()
    ax.plot(x, x, label="one")
    ax.plot(x, x, color="C1", label="two, under one")
    ax.plot([], [], "k:", label="a dotted proxy")
    ax.legend(fontsize=5, loc="center")
    ax.set(title="task fmnist8_mlp32", xlabel="outer step")
    (tmp_path / "bad.png").write_bytes(book_figures.png_with_facts(bad))
    good, ax = plt.subplots()
    ax.plot(x, x, label="STAR")
    ax.plot(x, 1 - x, "--", label="Hyperparam")
    ax.legend(fontsize=9, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.set(xlabel="outer step", ylabel="meta-loss (nats)", title="Fashion-MNIST 8×8 MLP")
    (tmp_path / "good.png").write_bytes(book_figures.png_with_facts(good, bbox_inches="tight"))
    plt.close("all")
    page = tmp_path / "chapter.html"

    def write(prose, image):
        page.write_text(
            "<html><body><article><h1>Chapter</h1><p>" + "words " * 30 + prose + "</p>"
            "<div class='cell_input'><pre>res = D.load_grid(sweep.get_grid('indist', 'cpu')); star_wd0.1</pre></div>"
            f"<div class='cell_output'><img src='{image}'></div>"
            "<details><summary>Provenance</summary><p>run star_wd0.1_s0 at commit ca2aa69</p></details>"
            "</article></body></html>")
        return page_problems(page, page.read_text() + "<div id='star-layout-report' data-overflow='[]'></div>")

    problems = "\n".join(write("STAR (star_wd0.1) on <code>fmnist8_mlp32</code>, see <code>VERDICT_RULES</code>, "
                                "tests/test_ood.py::test_x and <code>star.book.claims.record_claim</code>, "
                                "<code>plot_remedies(ax)</code>.</p><div class='cell_output'><pre>eigenvalues "
                                "[0.1253 1.4707]; P = [[-0.25, 0.11], [0.11, -0.05]]; run fmnist_mlp_gpu_n64_s0"
                                "</pre></div><div class='cell_output'><pre>'Fig. 3: no verdict yet.'</pre></div>"
                                "<table><tr><td>loss</td><td>nan</td></tr></table><p>", "bad.png"))
    assert "bad.png: panel 1 (task fmnist8_mlp32) has no y-axis label" in problems
    assert "text at 5 pt (at least 8 pt)" in problems and re.search(r"legend of panel 1 covers \d+ data", problems)
    assert "the curve 'one' lies exactly under 'two, under one'" in problems
    assert "the entry 'a dotted proxy'" in problems and "figure text 'fmnist8_mlp32' is an internal id" in problems
    assert "internal ids on the page:" in problems and "'star_wd0.1'" in problems and "'fmnist8_mlp32'" in problems
    assert "VERDICT_RULES (constant name)" in problems and "test_ood.py" in problems
    assert "star.book.claims.record_claim" in problems and "plot_remedies(" in problems
    assert "[0.1253 1.4707] (Python repr)" in problems and "[[-0 (Python repr)" in problems
    assert "nan (not-a-number in a table or sentence)" in problems
    assert "fmnist_mlp_gpu_n64_s0 (run folder id)" in problems
    assert "a cell shows a Python string in quotes: \"'Fig. 3: no verdict yet.'\"" in problems
    assert "ca2aa69" not in problems and "load_grid" not in problems  # a dropdown and a code cell may name them
    assert write("STAR with outer weight decay 0.1, on the small Fashion-MNIST MLP, the "
                 "<code>small_fc_lopt</code> optimizer, a NaN guard, a curvature "
                 "<mjx-container>H = [ 1.11 0.596 0.596 0.486 ]</mjx-container>.", "good.png") == []
    (tmp_path / "plain.png").write_bytes((tmp_path / "good.png").read_bytes()[:8] + b"")  # no facts: not a PNG
    import matplotlib.image as mpimg
    mpimg.imsave(tmp_path / "plain.png", np.random.default_rng(0).random((20, 20)))
    assert "plain.png carries no measured facts" in "\n".join(write("Fine prose.", "plain.png"))


def test_an_image_less_page_fails_the_figure_count(tmp_path):
    """A chapter whose figure cells draw nothing (the MPLBACKEND=Agg failure) is caught by the count."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Chapter\n\n![a diagram](diagram.png)"),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt  # no figure here"),
        nbformat.v4.new_code_cell("fig, ax = plt.subplots()\nax.plot([1, 2])"),
        nbformat.v4.new_code_cell("fig = F.plot_fig2a(alphas, horizons, var, EDGE)"),
        nbformat.v4.new_code_cell("# plt.show() only in a comment\nx = 1"),
        nbformat.v4.new_code_cell("fig = plot_helper()", metadata={"tags": ["remove-cell"]})])
    nbformat.write(nb, tmp_path / "chapter.ipynb")
    assert expected_images(tmp_path / "chapter.ipynb") == 3
    (tmp_path / "page.md").write_text("# P\n\n```{figure} a.png\ncaption\n```\n\n![b](b.png)\n")
    assert expected_images(tmp_path / "page.md") == 2
    html = tmp_path / "chapter.html"
    html.write_text("<html><body><article><h1>Chapter</h1><p>" + "text " * 40 + "</p>"
                    "<div class='cell_output'><pre>&lt;Figure size 640x480 with 1 Axes&gt;</pre></div></article>"
                    "<div id='star-layout-report' data-overflow='[]'></div></body></html>")
    problems = figure_problems(html, _article(_soup(html.read_text())), expected_images(tmp_path / "chapter.ipynb"))
    assert problems == ["shows 0 images, but its source draws 3 figures"]


def test_the_local_mathjax_typesets_and_errors_are_caught(tmp_path, book_build, chromium):
    """The book's own MathJax copy typesets a formula from disk; an undefined macro and unbalanced
    braces are reported."""
    mathjax = book_build.html / "_static" / "mathjax" / "tex-mml-chtml.js"
    assert mathjax.is_file() and mathjax.stat().st_size > 100_000
    page = tmp_path / "page.html"
    page.write_text(
        f"<html><head><script defer src='{mathjax.as_uri()}'></script></head><body><article><h1>T</h1>"
        "<p>" + "words " * 30 + "</p><p>good <span class='math'>\\(\\alpha_t\\)</span></p></article>"
        "</body></html>")
    dom = _visit(chromium, page.as_uri(), tmp_path / "good.png")
    assert math_problems(page, dom) == [] and dom.count("<mjx-container") == 1
    page.write_text(page.read_text().replace(
        "\\(\\alpha_t\\)</span>", "\\(\\foo{x}\\)</span> <span class='math'>\\(x^{\\)</span>"))
    problems = "\n".join(math_problems(page, _visit(chromium, page.as_uri(), tmp_path / "bad.png")))
    assert "1 undefined TeX macros" in problems and "2 formulas but 1 typeset" in problems
    assert "raw TeX left" in problems


@pytest.mark.parametrize("page", NOTEBOOK_PAGES)
def test_notebook_pages_have_launch_buttons(rendered, page):
    """Colab, Binder and the repository button point at the repository named in _config.yml."""
    _, dom = rendered[page]
    assert dom is not None, page
    repo, branch = CONFIG["repository"]["url"], CONFIG["repository"].get("branch", "main")
    slug = urllib.parse.urlsplit(repo).path.strip("/")
    hrefs = [a["href"] for a in _soup(dom).find_all("a", href=True)]
    assert f"https://colab.research.google.com/github/{slug}/blob/{branch}/{page}.ipynb" in hrefs, \
        f"{page}: no Colab launch link"
    assert any(h.startswith(f"https://mybinder.org/v2/gh/{slug}/{branch}") for h in hrefs), \
        f"{page}: no Binder launch link"
    assert repo in hrefs, f"{page}: no repository button"


def test_bibliography_lists_the_paper(rendered):
    _, dom = rendered["book/bibliography"]
    text = _article(_soup(dom)).get_text(" ", strip=True)
    assert "a closer look at learned optimization" in text.lower() and "Harrison" in text


def test_theorem_and_lemma_numbers_match_the_paper(rendered):
    """The proofs chapter's results read "Lemma 4 (…)", "Theorem 1 (…)" as in the paper, not a count of their own."""
    _, dom = rendered["book/proofs"]
    titles = [t.get_text(" ", strip=True) for t in _soup(dom).select("div.proof p.admonition-title")]
    numbered = [re.match(r"(Lemma|Theorem|Proposition) (\w+) \(", t) for t in titles]
    assert all(numbered), titles
    assert [f"{m.group(1)} {m.group(2)}" for m in numbered] == [
        "Lemma 4", "Lemma 5", "Theorem 1", "Proposition A", "Lemma 2", "Lemma 3", "Proposition B", "Proposition C"]
