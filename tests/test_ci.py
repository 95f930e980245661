"""CI as configuration: the GitHub workflows, actionlint over them, and nbval feeding the book's execution cache.

* ``.github/workflows/`` runs the commands the README gives users (``make test``, ``make book``) and nothing
  the Makefile does not define; the book workflow publishes with the official Pages actions.
* actionlint (``make lint``) passes on the workflows and fails on a broken one; ruff (``make lint``) covers
  the chapters.
* ``pytest --nbval-lax`` with ``book/conftest.py``: a chapter whose cells all pass is stored, figures included,
  in the jupyter-cache the book build reads; a chapter with a failing cell fails nbval and is not stored.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
# `make <target>` where a command starts: a line, or after &&, || or ;
MAKE_RE = re.compile(r"(?:^|&&|\|\||;)\s*make\s+([a-z][\w-]*)", re.M)


def actionlint() -> str:
    path = Path(sys.executable).parent / "actionlint"
    if path.is_file():
        return str(path)
    found = shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint not found: it is in the test extra (make setup installs it)")
    return found


def run_actionlint(*files: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """actionlint as ``make lint`` runs it (shellcheck and pyflakes off)."""
    return subprocess.run([actionlint(), "-shellcheck=", "-pyflakes=", "-no-color", *map(str, files)],
                          cwd=cwd, capture_output=True, text=True, timeout=120)


def workflow_run_steps(workflow: dict) -> list[str]:
    """The shell commands (``run:``) of every step of every job."""
    return [step["run"] for job in (workflow.get("jobs") or {}).values() for step in job.get("steps", [])
            if isinstance(step, dict) and "run" in step]


def workflow_uses(workflow: dict) -> list[str]:
    return [step["uses"] for job in (workflow.get("jobs") or {}).values() for step in job.get("steps", [])
            if isinstance(step, dict) and "uses" in step]


def readme_make_targets(readme: str) -> set[str]:
    """``make <target>`` in the README's shell code blocks and inline code."""
    code = "\n".join(re.findall(r"```(?:bash|sh|console)?\n(.*?)```", readme, flags=re.S))
    code += "\n" + "\n".join(re.findall(r"`([^`\n]+)`", readme))
    return set(MAKE_RE.findall(code))


def makefile_targets(makefile: str) -> set[str]:
    return set(re.findall(r"^([a-z][\w-]*)\s*:(?!=)", makefile, flags=re.M))


def target_problems(workflows: dict[str, dict], readme: str, makefile: str) -> list[str]:
    """What is wrong with the make targets the workflows call: one the README does not give users, one the
    Makefile lacks, or `make test` / `make book` not called by their workflows."""
    problems, documented, defined = [], readme_make_targets(readme), makefile_targets(makefile)
    called = {}
    for name, wf in workflows.items():
        called[name] = {t for cmd in workflow_run_steps(wf) for t in MAKE_RE.findall(cmd)}
        for target in sorted(called[name]):
            if target not in documented:
                problems.append(f"{name} calls `make {target}`, which the README does not give users")
            if target not in defined:
                problems.append(f"{name} calls `make {target}`, which the Makefile does not define")
    for name, target in (("test.yml", "test"), ("book.yml", "book")):
        if target not in called.get(name, set()):
            problems.append(f"{name} does not call `make {target}`")
    return problems


def _workflows() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text(encoding="utf-8")) for p in sorted(WORKFLOWS.glob("*.yml"))}


def test_the_workflows_call_the_make_targets_of_the_readme():
    readme, makefile = (ROOT / "README.md").read_text(encoding="utf-8"), (ROOT / "Makefile").read_text()
    assert {"test", "book"} <= readme_make_targets(readme)
    assert target_problems(_workflows(), readme, makefile) == []


def test_the_target_check_catches_a_workflow_that_calls_something_else():
    readme, makefile = (ROOT / "README.md").read_text(encoding="utf-8"), (ROOT / "Makefile").read_text()
    broken = _workflows()
    broken["test.yml"]["jobs"]["test"]["steps"][-2]["run"] = "make tests"
    problems = target_problems(broken, readme, makefile)
    assert "test.yml calls `make tests`, which the README does not give users" in problems
    assert "test.yml calls `make tests`, which the Makefile does not define" in problems
    assert "test.yml does not call `make test`" in problems


def test_test_workflow_runs_on_pull_requests_and_pushes_with_the_data_packages():
    wf = _workflows()["test.yml"]
    on = wf.get("on", wf.get(True))  # PyYAML reads the key `on` as True
    assert "pull_request" in on and "push" in on
    steps = "\n".join(workflow_run_steps(wf))
    assert "make sysdeps" in steps and "make test" in steps  # sysdeps: dataset-fashion-mnist, bible-kjv, chromium
    assert wf["jobs"]["test"]["container"].startswith("debian:")  # root, so that make sysdeps installs them


def test_book_workflow_builds_at_cpu_scale_and_deploys_with_the_pages_actions():
    wf = _workflows()["book.yml"]
    build = wf["jobs"]["build"]
    make_book = next(s for s in build["steps"] if s.get("run") == "make book")
    assert make_book["env"]["STAR_SCALE"] == "cpu"
    uses = workflow_uses(wf)
    assert any(u.startswith("actions/upload-pages-artifact@") for u in uses)
    assert any(u.startswith("actions/deploy-pages@") for u in uses)
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"  # where `make book` writes the cpu build
    deploy = wf["jobs"]["deploy"]
    assert deploy["needs"] == "build" and deploy["permissions"] == {"pages": "write", "id-token": "write"}
    paper = wf["jobs"]["paper"]
    assert "gpu" in paper["runs-on"] and paper["env"]["STAR_SCALE"] == "paper"


def test_actionlint_passes_on_the_workflows():
    proc = run_actionlint(*sorted(WORKFLOWS.glob("*.yml")))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_actionlint_fails_on_a_broken_workflow(tmp_path):
    """An undefined runner label, a misspelt key and an expression on a context that does not exist."""
    (tmp_path / ".github" / "workflows").mkdir(parents=True)
    broken = tmp_path / ".github" / "workflows" / "broken.yml"
    shutil.copy(ROOT / ".github" / "actionlint.yaml", tmp_path / ".github" / "actionlint.yaml")
    text = (WORKFLOWS / "test.yml").read_text(encoding="utf-8")
    text = text.replace("runs-on: ubuntu-latest", "runs-on: ubuntu-lastest")
    text = text.replace("timeout-minutes: 60", "timeout-minute: 60")
    text = text.replace("${{ github.ref }}", "${{ github.reff.name }}")
    broken.write_text(text, encoding="utf-8")
    proc = run_actionlint(broken, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert 'label "ubuntu-lastest" is unknown' in out
    assert 'unexpected key "timeout-minute"' in out
    assert 'property "reff" is not defined' in out


def ruff() -> str:
    path = Path(sys.executable).parent / "ruff"
    found = str(path) if path.is_file() else shutil.which("ruff")
    if found is None:
        pytest.fail("ruff not found: it is in the test extra (make setup installs it)")
    return found


def lint_paths(makefile: str) -> list[str]:
    """The paths ``make lint`` gives ruff."""
    recipe = re.search(r"^lint:.*\n((?:\t.*\n)+)", makefile, flags=re.M).group(1)
    return next(line for line in recipe.splitlines() if "ruff check" in line).split("ruff check", 1)[1].split()


def test_lint_covers_the_chapters(tmp_path):
    """``make lint`` runs ruff over book/ with the repository's configuration: the chapters pass, and a copy of
    one whose Colab cell imports two modules on one line fails (as it would if pyproject.toml excluded book/)."""
    assert "book" in lint_paths((ROOT / "Makefile").read_text())
    proc = subprocess.run([ruff(), "check", "book"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "book").mkdir()
    nb = nbformat.read(ROOT / "book" / "intro.ipynb", as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "import subprocess\nimport sys\n" in first.source
    first.source = first.source.replace("import subprocess\nimport sys\n", "import sys, subprocess\n")
    nbformat.write(nb, tmp_path / "book" / "intro.ipynb")
    proc = subprocess.run([ruff(), "check", "--no-cache", "book"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 1 and "E401" in proc.stdout, proc.stdout + proc.stderr


# ---------------------------------------------------------------------------------------------------------
# nbval feeding the execution cache of the book build (book/conftest.py)


def _book_conftest():
    spec = importlib.util.spec_from_file_location("star_book_conftest", ROOT / "book" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_executed_notebook_matches_the_chapter_or_is_refused(tmp_path):
    conftest = _book_conftest()
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# T"), nbformat.v4.new_code_cell("x = 1"),
                                         nbformat.v4.new_code_cell("x")])
    nbformat.write(nb, tmp_path / "chapter.ipynb")
    result = {"output_type": "execute_result", "data": {"text/plain": "1"}, "metadata": {}}
    executed = conftest.executed_notebook(tmp_path / "chapter.ipynb", [("x = 1", []), ("x", [result])])
    code = [c for c in executed.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2] and code[1].outputs[0]["data"]["text/plain"] == "1"
    assert code[1].outputs[0]["execution_count"] == 2
    assert conftest.executed_notebook(tmp_path / "chapter.ipynb", [("x = 2", []), ("x", [result])]) is None
    assert conftest.executed_notebook(tmp_path / "chapter.ipynb", [("x = 1", [])]) is None


def test_nbval_stores_a_passing_chapter_for_the_build_and_fails_a_broken_one(tmp_path):
    """``pytest --nbval-lax`` with the book's conftest, on a two-chapter folder: the chapter whose cells pass
    is in the cache with its figure (inline backend even under MPLBACKEND=Agg) and is what jupyter-cache
    returns for it; the chapter with a failing cell fails nbval and is not stored."""
    from jupyter_cache import get_cache

    folder = tmp_path / "chapters"
    folder.mkdir()
    shutil.copy(ROOT / "book" / "conftest.py", folder / "conftest.py")
    good = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nprint('hello')"),
        nbformat.v4.new_code_cell("plt.plot([1, 2])\nplt.show()")])
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0")])
    for name, nb in (("good", good), ("bad", bad)):
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")
    cache = tmp_path / "cache"
    env = dict(os.environ, MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--nbval-lax",
                           "--nbval-current-env", f"--book-cache={cache}", "--rootdir", str(folder), str(folder)],
                          cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "1 failed, 3 passed" in out, out
    assert "bad.ipynb::Cell 1" in out and "ZeroDivisionError" in out
    store = get_cache(str(cache))
    assert [Path(r.uri).name for r in store.list_cache_records()] == ["good.ipynb"]
    _, merged = store.merge_match_into_notebook(nbformat.read(folder / "good.ipynb", as_version=4))
    outputs = [o for c in merged.cells for o in c.outputs]
    assert outputs[0]["text"] == "hello\n" and "image/png" in outputs[-1]["data"]
    assert [c.execution_count for c in merged.cells] == [1, 2]
    with pytest.raises(KeyError):
        store.match_cache_notebook(nbformat.read(folder / "bad.ipynb", as_version=4))
