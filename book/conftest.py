"""pytest settings for the chapters: ``pytest --nbval-lax book/`` executes every chapter with nbval.

Two things plain nbval does not do:

1. **Figures are drawn**, as in the book build (``book/_ext/starbook.py``): each chapter's kernel starts with
   matplotlib's inline backend, whatever ``MPLBACKEND`` the test run has (the Makefile sets ``Agg``).
2. **One execution feeds the book.** With ``--book-cache=DIR``, a chapter whose every cell passed is stored,
   outputs included, in the jupyter-cache folder ``DIR`` — the execution cache ``jupyter-book build`` reads
   (``execute_notebooks: cache``, one cache per scale). ``make test`` points it at the smoke build's cache,
   so the smoke build that follows (``tests/test_browser.py``) renders these executions instead of running
   the chapters a second time. A chapter with a failing cell is not stored; the build then executes it and
   fails on it too.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import pytest

INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
_runs: dict[str, dict] = {}  # notebook path -> {"cells": [(source, outputs)], "ok": bool, "start": seconds}


def pytest_addoption(parser):
    parser.addoption("--book-cache", default=None, metavar="DIR",
                     help="store each chapter that nbval executed without error in this jupyter-cache folder "
                          "(the execution cache of a jupyter-book build)")


def _is_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item, "cell")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """Start the chapter's kernel (nbval does it in the setup of the first cell) with inline figures."""
    if not _is_cell(item):
        yield
        return
    old = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = INLINE_BACKEND
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = old


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    if not _is_cell(item) or item.config.getoption("book_cache") is None:
        return
    run = _runs.setdefault(str(item.fspath), {"cells": [], "ok": True, "start": time.time()})
    report = outcome.get_result()
    if call.when == "call":
        run["cells"].append((item.cell.source, list(item.test_outputs or [])))
    if report.failed or report.skipped:
        run["ok"] = False


def pytest_runtest_teardown(item, nextitem):
    cache = item.config.getoption("book_cache")
    if not _is_cell(item) or cache is None:
        return
    if nextitem is not None and nextitem.fspath == item.fspath:
        return  # not the chapter's last cell
    run = _runs.pop(str(item.fspath), None)
    if run is not None and run["ok"]:
        store_execution(Path(cache), Path(str(item.fspath)), run["cells"], time.time() - run["start"])


def executed_notebook(source: Path, cells):
    """The notebook ``source`` with the outputs nbval collected (``cells``: (source, outputs) per code cell,
    in order), numbered as a kernel numbers them; None if ``cells`` are not those of ``source``."""
    import nbformat
    from ipykernel.ipkernel import IPythonKernel

    nb = nbformat.read(source, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    if [c.source for c in code] != [s for s, _ in cells]:
        return None
    for count, (cell, (_, outputs)) in enumerate(zip(code, cells), start=1):
        cell.execution_count = count
        cell.outputs = [nbformat.from_dict(dict(o)) for o in outputs]
        for out in cell.outputs:
            if out.output_type == "execute_result":
                out.execution_count = count
            elif out.output_type in ("display_data", "execute_result"):
                out.setdefault("metadata", {})
    nb.metadata["language_info"] = dict(IPythonKernel.language_info)  # what the kernel reports
    nbformat.validate(nb)
    return nb


def store_execution(cache: Path, source: Path, cells, seconds: float) -> bool:
    """Store the execution of ``source`` in the jupyter-cache at ``cache`` as jupyter-book would have (keyed by
    the notebook's code, with its run time). Returns False if ``cells`` are not an execution of ``source``."""
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    nb = executed_notebook(source, cells)
    if nb is None:
        return False
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache.parent / f".{cache.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the other xdist worker writes to the same cache
        get_cache(str(cache)).cache_notebook_bundle(
            CacheBundleIn(nb, str(source), data={"execution_seconds": seconds}), check_validity=True,
            overwrite=True)
    return True
