"""The package's import graph, read from the code (every ``import`` statement, function-local ones included):
no cycle, and nothing below the command line imports it (``star/__main__.py`` parses arguments and calls the
library; the library never calls back up into it). Both checks are shown to fail on a copy of the package
with a cycle or an upward import put in."""

import ast
import shutil
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "star"
CLI = "star.__main__"


def _module_name(path: Path, package: Path) -> str:
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph(package: Path) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}``. ``from a import b`` names the submodule ``a.b`` when
    there is one, else the module ``a``; the implicit import of a parent package is not an edge."""
    files = {_module_name(p, package): p for p in sorted(package.rglob("*.py"))}
    root = package.name
    graph = {}
    for name, path in files.items():
        is_package = path.name == "__init__.py"
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.split(".")[0] == root}
            elif isinstance(node, ast.ImportFrom):
                if node.level:  # relative: resolve against this module's package
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[:len(base) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != root:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in files else target)
        graph[name] = {d for d in deps if d in files and d != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node):
        state[node] = 1
        path.append(node)
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state:
                found = visit(dep)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def importers_of_cli(graph: dict[str, set[str]]) -> list[str]:
    return sorted(m for m, deps in graph.items() if CLI in deps and m != CLI)


def test_the_package_has_no_import_cycle_and_nothing_imports_the_command_line():
    graph = import_graph(PACKAGE)
    assert len(graph) > 30 and "star.sweep" in graph["star.__main__"]  # the graph is really read
    assert "star.metatrain" in graph["star.sweep"] and "star.grids" in graph["star.sweep"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))
    assert importers_of_cli(graph) == []


def test_the_sweep_calls_the_library_not_the_command_line():
    """The driver reaches meta-training through functions: no argv and no change of working directory."""
    text = (PACKAGE / "sweep.py").read_text()
    assert "chdir" not in text and "argv" not in text


@pytest.mark.parametrize("where, line, members", [
    ("scale.py", "from star import grids\n", {"star.grids", "star.scale"}),  # a top-level cycle
    ("runs/__init__.py", "def _f():\n    from star.sweep import run_sweep\n",  # in a function
     {"star.runs", "star.sweep"}),
])
def test_a_cycle_put_into_a_copy_is_found(tmp_path, where, line, members):
    copy = tmp_path / "star"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    assert find_cycle(import_graph(copy)) is None
    with open(copy / where, "a") as f:
        f.write("\n\n" + line)
    found = find_cycle(import_graph(copy))
    assert found is not None and found[0] == found[-1] and members <= set(found)
    assert all(b in import_graph(copy)[a] for a, b in zip(found, found[1:]))  # each step is a real import


def test_an_import_of_the_command_line_put_into_a_copy_is_found(tmp_path):
    copy = tmp_path / "star"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "sweep.py", "a") as f:  # what the sweep did before it called the library
        f.write("\n\ndef _cli(argv):\n    from star.__main__ import main\n\n    return main(argv)\n")
    graph = import_graph(copy)
    assert importers_of_cli(graph) == ["star.sweep"]
    assert find_cycle(graph) is not None  # the command line imports the sweep: a cycle too
