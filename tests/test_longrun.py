"""No chapter cell starts hours of work without saying so and without an opt-in (``star.book.longrun``).

* The opt-in itself: ``STAR_RUN_LONG`` must be 0 or 1; without it :func:`opt_in` prints what would run with its
  estimate and returns False.
* Every chapter cell that calls one of the package's long-running drivers (a sweep of meta-training runs, a
  meta-training run, the out-of-distribution suite, the command line) calls ``longrun.opt_in`` in the same cell.
* At ``paper`` scale, each chapter with such a cell is executed up to and including it, in an IPython shell,
  with the drivers replaced by a stub that fails the run if called: without ``STAR_RUN_LONG`` the cell prints
  its estimate and nothing starts; with ``STAR_RUN_LONG=1`` the stub is reached (the check can fail).
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import nbformat
import pytest
from cells import run_cells

from star.book import longrun
from star.book.pages import toc_pages

ROOT = Path(__file__).resolve().parents[1]
CHAPTERS = [p for p in toc_pages(ROOT) if (ROOT / f"{p}.ipynb").is_file()]
# The drivers that run for hours at paper scale: a grid of meta-training runs, one run, the OOD suite, the CLI.
LONG_CALL_RE = re.compile(r"\b(?:run_sweep|meta_train|run_task|post_process|write_baselines)\s*\("
                          r"|[\"']-m[\"'],\s*[\"']star[\"']|python -m star (?:meta-train|sweep|ood)\b")
STUB = """
import star.metatrain, star.ood_suite, star.sweep

class LongWorkStarted(RuntimeError):
    pass

def _started(*args, **kwargs):
    raise LongWorkStarted("LONGRUN: long work started without being asked to")

for _module, _name in ((star.sweep, "run_sweep"), (star.sweep, "post_process"), (star.sweep, "write_baselines"),
                       (star.metatrain, "meta_train"), (star.ood_suite, "run_task")):
    setattr(_module, _name, _started)
"""


def code_cells(path: Path) -> list[str]:
    return [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]


def ungated_long_cells(cells: list[str]) -> list[int]:
    """Indices of the code cells that call a long-running driver without ``opt_in(`` in the same cell (comments
    and the shell examples of Markdown cells do not count)."""
    bad = []
    for i, source in enumerate(cells):
        code = "\n".join(line.split("#", 1)[0] for line in source.splitlines())
        if LONG_CALL_RE.search(code) and "opt_in(" not in code:
            bad.append(i)
    return bad


def test_the_opt_in_variable(monkeypatch):
    monkeypatch.delenv(longrun.VARIABLE, raising=False)
    assert longrun.long_runs_allowed() is False
    for value, allowed in (("0", False), ("", False), ("1", True), (" 1 ", True)):
        monkeypatch.setenv(longrun.VARIABLE, value)
        assert longrun.long_runs_allowed() is allowed
    monkeypatch.setenv(longrun.VARIABLE, "yes")
    with pytest.raises(ValueError, match="STAR_RUN_LONG must be 0 or 1.*'yes'"):
        longrun.long_runs_allowed()


def test_opt_in_prints_the_estimate_and_starts_only_when_asked(monkeypatch, capsys):
    monkeypatch.delenv(longrun.VARIABLE, raising=False)
    assert longrun.opt_in("24 runs", {"2 CPU cores": 44.4, "one GPU": 0.5}) is False
    out = capsys.readouterr().out
    assert out.startswith("Not started: 24 runs, estimated 44 h (1.8 days) on 2 CPU cores; 30 min on one GPU.")
    assert "STAR_RUN_LONG=1" in out
    monkeypatch.setenv(longrun.VARIABLE, "1")
    assert longrun.opt_in("24 runs", {"2 CPU cores": 3.0}) is True
    assert "starting 24 runs (estimated 3.0 h on 2 CPU cores)" in capsys.readouterr().out
    monkeypatch.delenv(longrun.VARIABLE)
    assert longrun.opt_in("9 runs", {}) is False
    assert "9 runs, estimated no estimate (no rate was measured for it)" in capsys.readouterr().out
    with pytest.raises(ValueError, match="non-negative"):
        longrun.opt_in("24 runs", {"cpu": float("nan")})


def test_every_long_cell_of_every_chapter_is_gated():
    problems = {page: ungated_long_cells(code_cells(ROOT / f"{page}.ipynb")) for page in CHAPTERS}
    assert {p: cells for p, cells in problems.items() if cells} == {}
    assert any("opt_in(" in "\n".join(code_cells(ROOT / f"{p}.ipynb")) for p in CHAPTERS)


def test_the_static_check_catches_an_ungated_cell():
    cells = ["from star import sweep", "sweep.run_sweep(GRID, ROOT)  # the grid",
             "if longrun.opt_in('grid', {'cpu': 40.0}):\n    sweep.run_sweep(GRID, ROOT)",
             "# sweep.run_sweep(GRID) only in a comment", "subprocess.run([sys.executable, '-m', 'star', 'ood'])"]
    assert ungated_long_cells(cells) == [1, 4]


GATED = [p for p in CHAPTERS if any("opt_in(" in c for c in code_cells(ROOT / f"{p}.ipynb"))]


def _run_to_the_gate(page: str, tmp_path: Path, opt_in: bool):
    cells = code_cells(ROOT / f"{page}.ipynb")
    last = max(i for i, c in enumerate(cells) if "opt_in(" in c)
    env = {k: v for k, v in os.environ.items() if k != longrun.VARIABLE}
    env.update(STAR_SCALE="paper", JAX_PLATFORMS="cpu", MPLBACKEND="Agg")
    if opt_in:
        env[longrun.VARIABLE] = "1"
    return run_cells(sys.executable, cells[1:last + 1], tmp_path, env, prelude=STUB, cwd=ROOT / "book")


@pytest.mark.parametrize("page", GATED)
def test_at_paper_scale_the_long_cell_waits_for_the_opt_in(page, tmp_path):
    proc = _run_to_the_gate(page, tmp_path, opt_in=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "LONGRUN" not in out, out[-3000:]
    assert "Not started:" in out and "estimated" in out and "STAR_RUN_LONG=1" in out, out[-3000:]


def test_with_the_opt_in_the_long_cell_starts(tmp_path):
    """The same run with STAR_RUN_LONG=1 reaches the stub: the check above would see a cell that starts."""
    proc = _run_to_the_gate(GATED[0], tmp_path, opt_in=True)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "LONGRUN: long work started" in out, out[-3000:]
