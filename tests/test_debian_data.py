"""The debian_data marker (tests/debian_data.py): without the package a marked test is skipped and the summary
names it; with $STAR_REQUIRE_DATA=1 it fails; an unmarked test that needs the data fails."""

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

CONFTEST = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(TESTS)!r})
from debian_data import pytest_configure, pytest_runtest_setup, pytest_terminal_summary  # noqa: F401
from star import image_data
image_data.DEBIAN_FASHION_MNIST_DIR = Path({{missing!r}})  # this machine "lacks" the package
"""

TESTS_FILE = """
import pytest
from star import image_data

@pytest.mark.debian_data("dataset-fashion-mnist")
def test_marked():
    image_data.load_fashion_mnist()

def test_unmarked():
    image_data.load_fashion_mnist()
"""


def _run(tmp_path, **env):
    (tmp_path / "conftest.py").write_text(CONFTEST.format(missing=str(tmp_path / "absent")))
    (tmp_path / "test_inner.py").write_text(TESTS_FILE)
    full = {k: v for k, v in os.environ.items() if k != "STAR_REQUIRE_DATA"}
    full.update(PYTHONPATH=str(REPO), JAX_PLATFORMS="cpu", STAR_DATA_DIR=str(tmp_path / "absent"), **env)
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           str(tmp_path)], cwd=tmp_path, env=full, capture_output=True, text=True, timeout=300)
    return done.stdout + done.stderr


def test_a_marked_test_is_skipped_and_named_an_unmarked_one_fails(tmp_path):
    out = _run(tmp_path)
    assert "1 failed, 1 skipped" in out, out
    assert "Debian data missing" in out
    assert "dataset-fashion-mnist: 1 test(s) not run: test_inner.py::test_marked" in out
    assert "FAILED test_inner.py::test_unmarked" in out


def test_star_require_data_turns_the_skip_into_a_failure(tmp_path):
    out = _run(tmp_path, STAR_REQUIRE_DATA="1")
    assert "1 failed, 1 error" in out, out  # the marked test fails in its setup
    assert "STAR_REQUIRE_DATA=1 and the Debian package dataset-fashion-mnist is not installed" in out
