"""Run a chapter's code cells in an IPython shell in a child process, as a notebook kernel would, one after
the other, stopping at the first that fails (its error is printed on a line starting with ``CELLS:``).
Used by tests/test_install.py (the Colab install path) and tests/test_longrun.py (the paper-scale opt-in)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

RUNNER = r'''
import json, sys, types
spec = json.load(open(sys.argv[1]))
exec(spec["prelude"])
from IPython.core.interactiveshell import InteractiveShell
shell = InteractiveShell.instance(colors="nocolor")
for i, source in enumerate(spec["cells"]):
    result = shell.run_cell(source)
    if not result.success:
        sys.exit(f"CELLS: cell {i} failed: {result.error_in_exec or result.error_before_exec!r}")
exec(spec["epilogue"])
print("CELLS: all", len(spec["cells"]), "ran")
'''


def run_cells(python: str | Path, cells: list[str], work: Path, env: dict, *, prelude: str = "",
              epilogue: str = "", cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run ``cells`` with the interpreter ``python`` (which must have IPython), in ``cwd`` (default ``work``);
    ``prelude`` and ``epilogue`` are plain Python run before the shell starts and after the last cell.
    ``work`` holds the runner's files."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "cells.json").write_text(json.dumps({"cells": cells, "prelude": prelude, "epilogue": epilogue}))
    (work / "runner.py").write_text(RUNNER)
    return subprocess.run([str(python), str(work / "runner.py"), str(work / "cells.json")], cwd=cwd or work,
                          env=env, capture_output=True, text=True, timeout=timeout)
