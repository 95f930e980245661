"""Suite-wide guard: no test may open a file beside the repository (such as ``../shared``).

A user's ``git clone`` has nothing beside it. A test that reads a sibling folder of the checkout passes here
and fails for everyone else, so every ``open()`` of this process (Python's audit hook) is checked against the
repository's parent folder, and the test that did it fails. Reads of the interpreter's own files, of hidden
folders such as ``~/.cache`` and of the temporary folder are allowed. ``.ci/run`` goes further and runs the
whole of ``make test`` (the book build included) from a clone in an empty temporary folder.
"""

from __future__ import annotations

import os
import sys
import sysconfig
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Folders whose files any test may open; one that contains the checkout itself (a clone in /tmp) is not
# allowed wholesale, or it would hide the checkout's siblings.
_ALLOWED = tuple(a for a in (str(Path(p).resolve()) for p in {
    sys.prefix, sys.base_prefix, sys.exec_prefix, tempfile.gettempdir(),
    *(sysconfig.get_paths().get(k) for k in ("purelib", "platlib", "stdlib", "data"))} if p)
    if not (str(ROOT) + os.sep).startswith(a + os.sep))
_outside: list[str] = []


def outside_repository(path) -> str | None:
    """``path`` as an absolute string if it lies beside the repository (under its parent folder, outside it,
    not hidden, not the interpreter's or the temporary folder); else None."""
    if isinstance(path, int):
        return None  # a file descriptor: opened before
    try:
        p = os.path.abspath(os.fsdecode(path))
    except (TypeError, ValueError):
        return None
    parent, root = str(ROOT.parent), str(ROOT)
    if not p.startswith(parent + os.sep) or p == root or p.startswith(root + os.sep):
        return None
    if any(p == a or p.startswith(a + os.sep) for a in _ALLOWED):
        return None
    if p[len(parent) + 1:].startswith("."):
        return None  # ~/.cache, ~/.config, ... when the checkout sits in a home folder
    return p


def _audit(event, args):
    if event == "open" and args:
        hit = outside_repository(args[0])
        if hit is not None:
            _outside.append(hit)


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def _nothing_read_beside_the_repository():
    start = len(_outside)
    yield
    seen = sorted(set(_outside[start:]))
    if seen:
        pytest.fail(f"the test opened files outside the repository, which a fresh clone does not have: "
                    f"{seen[:5]}", pytrace=False)


def pytest_collection_finish(session):
    if _outside:  # a test module read such a file while it was imported
        raise pytest.UsageError(f"collecting the tests opened files outside the repository: "
                                f"{sorted(set(_outside))[:5]}")


# Tests that need a Debian data package: the debian_data marker (see tests/debian_data.py).
from debian_data import pytest_configure, pytest_runtest_setup, pytest_terminal_summary  # noqa: E402, F401
