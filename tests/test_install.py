"""The install path of a reader without a checkout (Colab), tested: a wheel of the package, a fresh virtual
environment, and each chapter's first cells run the way Colab runs them.

* The wheel is built from the working tree (``pip wheel``; without build isolation when setuptools is at hand,
  so that it works offline).
* The fresh environment has no ``star``; the packages the wheel requires (and IPython and pip, which Colab
  provides) come from this test environment through a ``.pth`` file that points at links to exactly those
  distributions, so nothing is downloaded.
* The chapter's cells run in an IPython shell in a folder outside any checkout, with ``google.colab`` imported
  as on Colab: the first cell (the Colab install cell) pip-installs the package — its GitHub address, the one
  in ``_config.yml``, replaced by the wheel's path, the only change to the cell — and the next cell imports the
  package and loads what the chapter needs. Stored results come from ``$STAR_REPOSITORY_RAW``, a ``file://``
  URL of this checkout standing in for GitHub. After the install cell ``star`` must come from the fresh
  environment, not from the checkout.

A broken install cell fails: shown on a cell with a mistyped pip command and on a cell whose Colab test is
never true (the package is then missing for the next cell).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest
import yaml
from cells import run_cells
from packaging.requirements import Requirement

from star.book.pages import toc_pages

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text(encoding="utf-8"))
GIT_URL = f"git+{CONFIG['repository']['url']}.git"
CHAPTERS = [p for p in toc_pages(ROOT) if (ROOT / f"{p}.ipynb").is_file()]
COLAB_PROVIDES = ("ipython", "pip")  # on every Colab runtime, and used by the chapters' first cells

# Before the chapter's cells: nothing named star is importable, and google.colab is imported, as on Colab.
PRELUDE = """
import importlib.util, sys, types
if importlib.util.find_spec("star") is not None:
    sys.exit("CELLS: star is importable before the install cell")
colab = sys.modules["google.colab"] = types.ModuleType("google.colab")
colab.output = sys.modules["google.colab.output"] = types.ModuleType("google.colab.output")  # JAX imports it
"""
EPILOGUE = "import star; print('CELLS: star from', star.__file__)"


def requirement_closure(names) -> list[importlib.metadata.Distribution]:
    """The installed distributions ``names`` need, themselves included, with the extras they ask for (markers
    that do not apply to this interpreter are left out)."""
    dists: dict[str, importlib.metadata.Distribution] = {}
    done: set[tuple[str, str]] = set()
    todo = [r for r in map(Requirement, names) if r.marker is None or r.marker.evaluate({"extra": ""})]
    while todo:
        req = todo.pop()
        key = re.sub(r"[-_.]+", "-", req.name).lower()
        for extra in ("", *sorted(req.extras)):
            if (key, extra) in done:
                continue
            done.add((key, extra))
            dist = dists.setdefault(key, importlib.metadata.distribution(req.name))
            for r in map(Requirement, dist.requires or []):
                if r.marker is None and extra == "" or r.marker is not None and r.marker.evaluate({"extra": extra}):
                    todo.append(r)
    return list(dists.values())


def link_distributions(dists, folder: Path) -> None:
    """Link each top-level file and folder of ``dists`` (from their RECORD) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for dist in dists:
        base = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or []} - {"..", "__pycache__"}:
            src, dst = base / top, folder / top
            if src.exists() and not dst.exists():
                dst.symlink_to(src, target_is_directory=src.is_dir())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of the working tree (its sources copied out, so that the build leaves nothing in the checkout)."""
    src, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "star", src / "star", ignore=shutil.ignore_patterns("__pycache__"))
    # offline with this environment's setuptools; where it has none (Python >= 3.12 venvs), pip fetches it
    have_backend = importlib.util.find_spec("setuptools") and importlib.util.find_spec("wheel")
    isolation = ["--no-build-isolation"] if have_backend else []
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", str(out),
                           str(src)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (built,) = out.glob("star-*.whl")
    return built


@pytest.fixture(scope="module")
def dependencies(wheel, tmp_path_factory) -> Path:
    """A folder with links to the distributions the wheel requires, and to IPython and pip."""
    import zipfile

    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        requires = [v for k, v in (line.split(": ", 1) for line in z.read(meta).decode().splitlines()
                                   if ": " in line) if k == "Requires-Dist"]
    assert requires, "the wheel declares no dependencies"
    folder = tmp_path_factory.mktemp("deps") / "site"
    link_distributions(requirement_closure([*requires, *COLAB_PROVIDES]), folder)
    assert not (folder / "star").exists()
    return folder


def fresh_venv(where: Path, dependencies: Path) -> Path:
    """A virtual environment without ``star`` that sees ``dependencies``; returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(where)], check=True, timeout=120)
    python = where / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    Path(purelib, "_star_test_dependencies.pth").write_text(f"{dependencies}\n")
    return python


def run_colab_cells(python: Path, cells: list[str], work: Path):
    """Run ``cells`` with ``python`` in ``work`` (outside any checkout) as Colab would; stored results are read
    from this checkout through a file:// URL, downloads cached under a fresh home folder."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "STAR_"))}
    (work / "home").mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(work / "home"), STAR_SCALE="smoke", JAX_PLATFORMS="cpu", MPLBACKEND="Agg",
               STAR_REPOSITORY_RAW=ROOT.as_uri(), PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1",
               PATH=f"{python.parent}{os.pathsep}{os.environ.get('PATH', '')}")
    return run_cells(python, cells, work, env, prelude=PRELUDE, epilogue=EPILOGUE)


def first_cells(page: str, wheel: Path) -> list[str]:
    """The chapter's Colab cell (installing ``wheel`` instead of the repository) and the code cell after it."""
    code = [c.source for c in nbformat.read(ROOT / f"{page}.ipynb", as_version=4).cells if c.cell_type == "code"]
    assert code[0].count(GIT_URL) == 1, f"{page}: the install cell does not install {GIT_URL}"
    return [code[0].replace(GIT_URL, str(wheel)), *code[1:2]]


def test_the_chapters_are_found():
    assert "book/in_distribution" in CHAPTERS and len(CHAPTERS) >= 5


@pytest.mark.parametrize("page", CHAPTERS)
def test_a_chapter_starts_on_colab_from_the_wheel(page, wheel, dependencies, tmp_path):
    python = fresh_venv(tmp_path / "venv", dependencies)
    proc = run_colab_cells(python, first_cells(page, wheel), tmp_path / "work")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    where = re.search(r"CELLS: star from (\S+)", out).group(1)
    assert Path(where).is_relative_to(tmp_path / "venv"), f"star was imported from {where}, not the fresh venv"
    assert not Path(where).is_relative_to(ROOT)
    if page == "book/gpu":  # its first cell loads a stored result: fetched, not read from a checkout
        fetched = tmp_path / "work" / "home" / ".cache" / "star" / "results"
        assert (fetched / "timing" / "cpu" / "chapter_times.json").is_file()


@pytest.mark.parametrize("broken, expected", [
    (lambda cell: cell.replace('"pip", "install"', '"pip", "instal"'), "CalledProcessError"),
    (lambda cell: cell.replace('"google.colab" in sys.modules', '"google.colab" in sys.argv'),
     "No module named 'star'"),
])
def test_a_broken_install_cell_fails(broken, expected, wheel, dependencies, tmp_path):
    cells = first_cells("book/in_distribution", wheel)
    cells[0] = broken(cells[0])
    proc = run_colab_cells(fresh_venv(tmp_path / "venv", dependencies), cells, tmp_path / "work")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and expected in out, out[-4000:]


def test_the_dependency_links_leave_star_out(dependencies):
    """The fresh environment must not see this checkout's editable install."""
    names = {p.name for p in dependencies.iterdir()}
    assert "jax" in names and "IPython" in names and "pip" in names
    assert not any(n == "star" or n.startswith(("star-", "__editable__")) for n in names), sorted(names)
    assert sysconfig.get_paths()["purelib"]  # the interpreter has a site-packages to link from
