"""The suite reads nothing beside the repository (tests/conftest.py); here the guard is shown to fire."""

import sys

import conftest
import pytest
from conftest import ROOT, outside_repository


@pytest.mark.parametrize("path, flagged", [
    (ROOT.parent / "shared" / "parity" / "star_parity.npz", True),
    (str(ROOT.parent / "other-checkout" / "x.py"), True),
    (ROOT / "tests" / "data" / "parity" / "star_parity.npz", False),
    (ROOT, False),
    (ROOT.parent / ".cache" / "matplotlib" / "fontlist.json", False),
    (sys.prefix, False),
    (3, False),
])
def test_what_counts_as_beside_the_repository(path, flagged):
    assert (outside_repository(path) is not None) == flagged


def test_an_open_beside_the_repository_is_caught():
    sibling = ROOT.parent / "no-such-folder-beside-the-checkout" / "data.npz"
    start = len(conftest._outside)
    with pytest.raises(FileNotFoundError):
        open(sibling, "rb")  # the audit hook sees the attempt before the operating system refuses it
    caught = conftest._outside[start:]
    del conftest._outside[start:]  # this test made the read on purpose; do not fail it
    assert caught == [str(sibling)]
