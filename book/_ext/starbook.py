"""Sphinx extension for the STAR book (loaded through ``sphinx.local_extensions`` in ``_config.yml``).

What plain configuration cannot do:

1. **MathJax from a local copy.** ``mathjax_path`` in ``_config.yml`` points at
   ``_static/mathjax/tex-mml-chtml.js``. This extension provides those files: it takes the official
   MathJax 3 distribution from the npm registry (``npm pack mathjax@3.2.2``; the npm registry is reachable
   wherever the book is built, and the package is the MathJax project's own build, pinned, with its
   fonts and TeX extensions), keeps one unpacked copy under ``_build/.mathjax/<version>/`` and hands it
   to Sphinx through ``html_extra_path`` so it lands in ``_build/html/_static/mathjax/``. The built
   HTML then renders math with no network. (Not ``_static/``: Jupyter Book adds every ``.js`` file
   found under ``_static`` as a ``<script>`` tag on every page.) ``$STAR_MATHJAX_DIR`` may point at
   an unpacked ``es5`` folder instead. Without npm the build falls back to the CDN and says so loudly.

2. **The execution cache knows the scale.** ``execute_notebooks: cache`` keys a notebook by its code,
   not by ``$STAR_SCALE``: a smoke build would feed its outputs to a later cpu build. The cache is
   therefore ``.jupyter_cache/<scale>/`` next to the HTML folder, and the scale is a Sphinx config
   value, so a build at another scale than the last one re-reads every page.

3. **Figures are drawn.** The kernels that execute the chapters inherit this process's environment. With
   ``MPLBACKEND=Agg`` (set for headless test runs) ``plt.show()`` would draw nothing into the page, so the
   kernels are given matplotlib's inline backend, whatever the caller set.

4. **Wide display math and wide tables stay readable** (``static/starbook.css``).

5. **The pages that summarize the verdicts are read last, on every build.** The introduction's "what this
   book found" and the reproduction-status table are computed from the claim records that the chapters
   write while they execute (``star.book.records``). Sphinx reads documents in alphabetical order and skips
   unchanged ones, so the pages listed in ``starbook_read_last`` are marked outdated on every build and
   moved to the end of the reading order; their notebooks ask for ``execution_mode: force`` (the execution
   cache keys a notebook by its code, which does not change when the records do).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from sphinx.util import logging
from sphinx.util.console import bold, red

logger = logging.getLogger(__name__)

MATHJAX_VERSION = "3.2.2"
MATHJAX_ENTRY = "tex-mml-chtml.js"
# What tex-mml-chtml.js loads at run time: TeX extensions (autoload), CHTML fonts, the menu and the
# accessibility/speech components the menu can switch on.
MATHJAX_PARTS = (MATHJAX_ENTRY, "input", "output", "a11y", "ui", "adaptors", "sre")
MATHJAX_CDN = f"https://cdn.jsdelivr.net/npm/mathjax@{MATHJAX_VERSION}/es5/{MATHJAX_ENTRY}"


def _copy_es5(es5: Path, dest: Path) -> None:
    """Copy the parts of a MathJax ``es5`` folder that the CHTML component needs into ``dest``."""
    tmp = Path(tempfile.mkdtemp(prefix="mathjax-", dir=dest.parent))
    target = tmp / "_static" / "mathjax"
    target.mkdir(parents=True)
    for part in MATHJAX_PARTS:
        src = es5 / part
        if src.is_dir():
            shutil.copytree(src, target / part)
        elif src.is_file():
            shutil.copy2(src, target / part)
    licence = es5.parent / "LICENSE"
    if licence.is_file():
        shutil.copy2(licence, target / "LICENSE")
    if not (target / MATHJAX_ENTRY).is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        raise FileNotFoundError(f"{es5} has no {MATHJAX_ENTRY}")
    if dest.exists():  # another build finished first
        shutil.rmtree(tmp, ignore_errors=True)
        return
    tmp.rename(dest)  # atomic: a half-copied folder is never used


def ensure_local_mathjax(build_root: Path) -> Path:
    """Return a folder holding ``_static/mathjax/tex-mml-chtml.js``, fetching MathJax if needed.

    Raises:
        RuntimeError: if neither ``$STAR_MATHJAX_DIR`` nor ``npm`` can provide the files.
    """
    dest = build_root / ".mathjax" / MATHJAX_VERSION
    if (dest / "_static" / "mathjax" / MATHJAX_ENTRY).is_file():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    override = os.environ.get("STAR_MATHJAX_DIR")
    if override:
        _copy_es5(Path(override), dest)
        return dest
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError("npm is not installed (Debian: apt-get install npm)")
    with tempfile.TemporaryDirectory(prefix="mathjax-npm-") as tmp:
        proc = subprocess.run(
            [npm, "pack", f"mathjax@{MATHJAX_VERSION}", "--silent", "--no-audit", "--no-fund"],
            cwd=tmp, capture_output=True, text=True, timeout=300,
        )
        tarballs = list(Path(tmp).glob("mathjax-*.tgz"))
        if proc.returncode != 0 or not tarballs:
            raise RuntimeError(f"`npm pack mathjax@{MATHJAX_VERSION}` failed: {proc.stderr.strip()[-500:]}")
        with tarfile.open(tarballs[0]) as tar:
            tar.extractall(tmp, filter="data")
        _copy_es5(Path(tmp) / "package" / "es5", dest)
    return dest


def _setup_mathjax(app, config) -> None:
    if "://" in str(config.mathjax_path):
        return  # the book asked for a remote MathJax; nothing to provide
    build_root = Path(app.confdir) / "_build"
    try:
        folder = ensure_local_mathjax(build_root)
    except (RuntimeError, OSError, subprocess.SubprocessError, tarfile.TarError) as err:
        config.mathjax_path = MATHJAX_CDN
        logger.info(bold(red(
            f"starbook: NO LOCAL MATHJAX ({err}). The book will load MathJax from {MATHJAX_CDN} "
            "and will NOT render math offline. Install Node.js/npm, or set STAR_MATHJAX_DIR to an "
            "unpacked mathjax es5 folder, and rebuild.")))
        return
    extra = os.path.relpath(folder, app.confdir)
    if extra not in config.html_extra_path:
        config.html_extra_path = [*config.html_extra_path, extra]


def _scale_aware_cache(app, config) -> None:
    from star.scale import get_scale  # raises a ValueError naming STAR_SCALE if it is bad

    scale = get_scale().value
    config.starbook_scale = scale  # an "env" value: when it changes, Sphinx re-reads every page
    if not config.nb_execution_cache_path:
        config.nb_execution_cache_path = str(Path(app.outdir).parent / ".jupyter_cache" / scale)


INLINE_BACKEND = "module://matplotlib_inline.backend_inline"


def _inline_figures(app, config) -> None:
    os.environ["MPLBACKEND"] = INLINE_BACKEND  # read by the kernels jupyter-cache starts


def _add_static(app, config) -> None:
    static = str(Path(__file__).parent / "static")
    if static not in config.html_static_path:
        config.html_static_path = [*config.html_static_path, static]


def _always_outdated(app, env, added, changed, removed):
    return [d for d in app.config.starbook_read_last if d in env.found_docs]


def _read_last(app, env, docnames):
    last = [d for d in app.config.starbook_read_last if d in docnames]
    for d in last:
        docnames.remove(d)
    docnames.extend(last)


def setup(app):
    app.add_config_value("starbook_read_last", ["book/intro", "book/status"], "env")
    app.add_config_value("starbook_scale", "", "env")
    app.connect("config-inited", _setup_mathjax)
    app.connect("config-inited", _scale_aware_cache)
    app.connect("config-inited", _inline_figures)
    app.connect("config-inited", _add_static)
    app.add_css_file("starbook.css")  # static/starbook.css: display math that overflows stays readable
    app.connect("env-get-outdated", _always_outdated)
    app.connect("env-before-read-docs", _read_last)
    return {"version": "1.0", "parallel_read_safe": False, "parallel_write_safe": True}
