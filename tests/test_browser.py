"""The built book, checked in a real browser (headless Chromium).

Builds the book at smoke scale exactly as CI would (``jupyter-book build . -W -n --keep-going``, into
``_build/smoke`` so its execution cache never feeds the cpu-scale ``make book``), then opens every page
listed in ``_toc.yml`` from disk with no network and checks what a reader would see: the page loads,
every figure image is a non-empty, non-blank picture, MathJax (the local copy) has typeset every formula
and no raw TeX delimiters are left, internal links and anchors resolve, notebook chapters carry Colab
and Binder launch links. Screenshots go to ``_build/screenshots/``.

Set ``STAR_SKIP_BROWSER=1`` to skip on a machine without Chromium (``make sysdeps`` installs it).
"""

from __future__ import annotations

import fcntl
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

import pytest

from star.book.pages import toc_pages

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BUILD_OUT = ROOT / "_build" / "smoke"
HTML = BUILD_OUT / "_build" / "html"
SHOTS = ROOT / "_build" / "screenshots"
BUILD_TIMEOUT_S = 1500

# Raw TeX that MathJax should have consumed; checked in the visible text with formulas removed.
RAW_TEX_RE = re.compile(r"\$\$|\\\(|\\\)|\\\[|\\\]|\\[A-Za-z]{2,}|(?<![\w$])\$[A-Za-z\\{]")


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


PAGES = toc_pages(ROOT)


@pytest.fixture(scope="module")
def chromium():
    path = _chromium()
    if path is None:
        if os.environ.get("STAR_SKIP_BROWSER") == "1":
            pytest.skip("STAR_SKIP_BROWSER=1 and no Chromium")
        pytest.fail("Chromium not found: run `make sysdeps` (apt-get install chromium) "
                    "or set STAR_SKIP_BROWSER=1 to skip the browser test")
    return path


@pytest.fixture(scope="module")
def built_book():
    """Build the book at smoke scale (cached notebooks are reused); one build at a time per checkout."""
    BUILD_OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, STAR_SCALE="smoke", JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    jb = Path(sys.executable).parent / "jupyter-book"
    cmd = [str(jb) if jb.exists() else "jupyter-book", "build", ".", "--path-output", str(BUILD_OUT),
           "-W", "-n", "--keep-going"]
    with open(ROOT / "_build" / "smoke.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another engineer's or test's build of the same folder
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=BUILD_TIMEOUT_S)
        seconds = time.perf_counter() - t0
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "build succeeded" in log, \
        f"jupyter-book build failed (exit {proc.returncode}) after {seconds:.0f}s:\n{log[-6000:]}"
    print(f"book built at smoke scale in {seconds:.1f}s")
    return HTML


def _visit(chromium, url: str, screenshot: Path, budget_ms: int = 5000) -> str:
    """Load ``url`` in headless Chromium (no network needed), save a screenshot, return the DOM."""
    with tempfile.TemporaryDirectory(prefix="star-chromium-") as profile:
        cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
               "--disable-extensions", "--mute-audio", f"--user-data-dir={profile}",
               f"--virtual-time-budget={budget_ms}", "--window-size=1280,2000",
               f"--screenshot={screenshot}", "--dump-dom", url]
        env = dict(os.environ, DBUS_SESSION_BUS_ADDRESS="disabled:")
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, f"chromium failed on {url}: {proc.stderr[-2000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def rendered(built_book, chromium):
    """{page: (html file, DOM after JavaScript)} for every page of the toc, two browsers at a time."""
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)

    def one(page):
        html_file = built_book / f"{page}.html"
        assert html_file.is_file(), f"{page}: no {html_file.relative_to(ROOT)} in the built book"
        shot = SHOTS / (page.replace("/", "__") + ".png")
        dom = _visit(chromium, html_file.as_uri(), shot)
        if html_file.read_text(encoding="utf-8").count('class="math') > dom.count("<mjx-container"):
            dom = _visit(chromium, html_file.as_uri(), shot, budget_ms=20000)  # a slow machine
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


def page_problems(html_file: Path, dom: str) -> list[str]:
    """What a reader would find wrong with one rendered page (empty list: nothing)."""
    problems = []
    soup = _soup(dom)
    article = _article(soup)
    if article is None or soup.find("h1") is None:
        return ["no article or heading"]
    if len(article.get_text(" ", strip=True)) < 100:
        problems.append("the page is (almost) empty")
    if soup.select(".output.traceback, .output.error"):
        problems.append("an executed cell shows an error")
    problems += figure_problems(html_file, article)
    problems += math_problems(html_file, dom)
    problems += link_problems(html_file, soup)
    return problems


def figure_problems(html_file: Path, article) -> list[str]:
    """Every figure holds an image; every image is a local, non-empty, non-blank file."""
    import matplotlib.image as mpimg
    problems = [f"figure without an image: {str(f)[:80]}" for f in article.find_all("figure")
                if f.find("img") is None and f.find("svg") is None]
    for img in article.find_all("img"):
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
    """The page loads; figures are real images; math is typeset locally; internal links resolve."""
    html_file, dom = rendered[page]
    assert page_problems(html_file, dom) == [], page
    import matplotlib.image as mpimg
    pixels = mpimg.imread(SHOTS / (page.replace("/", "__") + ".png"))
    assert min(pixels.shape[:2]) >= 1000 and pixels[..., :3].std() > 0.02, f"{page}: blank screenshot"


def test_the_checks_catch_broken_pages(tmp_path, chromium):
    """The checks above must be able to fail: a page with unrendered TeX, a CDN MathJax, a broken link,
    a missing anchor, a missing and a blank image, opened in the same browser."""
    import matplotlib.pyplot as plt
    blank = tmp_path / "blank.png"
    plt.imsave(blank, [[0.5] * 32] * 32, cmap="gray", vmin=0, vmax=1)
    (tmp_path / "other.html").write_text('<html><body><p id="here">x</p></body></html>')
    page = tmp_path / "page.html"
    page.write_text(
        "<html><head><script src='https://cdn.example.org/mathjax/tex-mml-chtml.js'></script></head><body>"
        "<article><h1>T</h1><p>" + "words " * 30 + "</p>"
        "<p>inline <span class='math notranslate nohighlight'>\\(\\alpha\\)</span> and $$x^2$$</p>"
        "<a href='other.html#here'>ok</a> <a href='other.html#nowhere'>bad anchor</a> "
        "<a href='missing.html'>bad</a> <a href='https://example.org/'>external</a>"
        "<figure><img src='blank.png'></figure><img src='gone.png'><figure><p>no image</p></figure>"
        "</article></body></html>")
    dom = _visit(chromium, page.as_uri(), tmp_path / "shot.png", budget_ms=1000)
    problems = "\n".join(page_problems(page, dom))
    assert "MathJax comes from the network" in problems
    assert "1 formulas but 0 typeset" in problems
    assert "raw TeX left" in problems and "$$x^2$$" in problems
    assert "other.html#nowhere" in problems and "missing.html" in problems
    assert "other.html#here'" not in problems and "example.org" not in problems.replace("cdn.example.org", "")
    assert "blank.png is tiny or a single colour" in problems and "gone.png is missing" in problems
    assert "figure without an image" in problems


@pytest.mark.parametrize("page", [p for p in PAGES if (ROOT / f"{p}.ipynb").is_file()])
def test_notebook_pages_have_launch_buttons(rendered, page):
    _, dom = rendered[page]
    hrefs = [a["href"] for a in _soup(dom).find_all("a", href=True)]
    colab = f"https://colab.research.google.com/github/star-book/star/blob/main/{page}.ipynb"
    assert colab in hrefs, f"{page}: no Colab launch link"
    assert any(h.startswith("https://mybinder.org/v2/gh/star-book/star/main") for h in hrefs), \
        f"{page}: no Binder launch link"
    assert "https://github.com/star-book/star" in hrefs, f"{page}: no repository button"


def test_bibliography_lists_the_paper(rendered):
    _, dom = rendered["book/bibliography"]
    text = _article(_soup(dom)).get_text(" ", strip=True)
    assert "a closer look at learned optimization" in text.lower() and "Harrison" in text


def test_the_local_mathjax_typesets_and_errors_are_caught(tmp_path, built_book, chromium):
    """The book's own MathJax copy typesets a formula from disk; an undefined macro and unbalanced
    braces are reported."""
    mathjax = built_book / "_static" / "mathjax" / "tex-mml-chtml.js"
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
