"""The ``debian_data`` marker, loaded by ``tests/conftest.py``.

A test that needs a Debian data package says so with ``@pytest.mark.debian_data("<package>")``. Without the
package such a test is skipped (with ``$STAR_REQUIRE_DATA=1`` it fails instead), and the summary names every
package missing and the tests it skipped, so that missing coverage is never silent. A test that needs the data
without the marker simply fails without them (``star.data_sources.DataUnavailableError``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest


def _debian_package_installed(package: str) -> bool:
    from star import image_data, text_data

    if package == "dataset-fashion-mnist":
        return image_data.DEBIAN_FASHION_MNIST_DIR.is_dir()
    if package == "bible-kjv":
        return shutil.which("bible") is not None or Path(text_data.BIBLE_PROGRAM).exists()
    raise pytest.UsageError(f"debian_data marker: unknown package {package!r} (dataset-fashion-mnist, bible-kjv)")


_DEBIAN_SKIP = "debian_data: the Debian package {} is not installed (make sysdeps installs it)"


def pytest_configure(config):
    config.addinivalue_line("markers", "debian_data(package): needs a Debian data package; skipped without it "
                                       "(named in the summary), failed without it when $STAR_REQUIRE_DATA=1")


def pytest_runtest_setup(item):
    for mark in item.iter_markers("debian_data"):
        package = mark.args[0]
        if not _debian_package_installed(package):
            if os.environ.get("STAR_REQUIRE_DATA") == "1":
                pytest.fail(f"$STAR_REQUIRE_DATA=1 and the Debian package {package} is not installed", pytrace=False)
            pytest.skip(_DEBIAN_SKIP.format(package))


def pytest_terminal_summary(terminalreporter):
    missing: dict[str, list[str]] = {}
    for rep in terminalreporter.stats.get("skipped", []):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        if "debian_data: the Debian package " in reason:
            package = reason.split("debian_data: the Debian package ", 1)[1].split(" ", 1)[0]
            missing.setdefault(package, []).append(rep.nodeid)
    if missing:
        terminalreporter.section("Debian data missing: tests skipped (marker debian_data)", yellow=True)
        for package, nodes in sorted(missing.items()):
            terminalreporter.line(f"{package}: {len(nodes)} test(s) not run: {', '.join(nodes)}")
