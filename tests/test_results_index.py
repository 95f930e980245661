"""results/ holds data only, and its index README lists every stored result, up to date, with names that
follow the scheme (checked against each run's configuration and provenance)."""

import json
import shutil
from pathlib import Path

from star import runs
from star.__main__ import main as cli_main
from star.book import results_index

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"


def test_results_hold_no_code():
    assert [p.relative_to(REPO).as_posix() for p in RESULTS.rglob("*.py")] == []


def test_index_readme_is_up_to_date():
    text = (RESULTS / "README.md").read_text()
    assert results_index.update_index(text, RESULTS, REPO / "book") == text, \
        "results/README.md is stale: run 'python -m star index' and commit it"
    for r in results_index.list_runs(RESULTS):  # every stored result is in the table (sweeps as their folder)
        shown = r.name if r.kind != "run" or r.name.count("/") < 2 else r.name.rsplit("/", 1)[0]
        assert f"| `{shown}`" in text, r.name


def test_stored_run_names_follow_the_scheme():
    problems = []
    for r in results_index.list_runs(RESULTS):
        if r.kind == "run":
            folder = runs.RunFolder(r.path)
            problems += results_index.run_name_problems(r.name, folder.config(), folder.provenance())
    assert problems == []


def test_naming_check_and_stale_index_are_caught(tmp_path, capsys):
    """Broken inputs: a run named for the wrong task or scale, a sweep member under another optimizer, and a
    new run missing from the index."""
    assert results_index.run_name_problems("metatrain/star_fmnist_cpu", {"optimizer": "star", "task": "fmnist8_mlp32"})
    assert results_index.run_name_problems("metatrain/star_fmnist8_gpu", {"optimizer": "star", "task": "fmnist8_mlp32"})
    assert results_index.run_name_problems("metatrain/star_fmnist8_cpu", {"optimizer": "star", "task": "fmnist8_mlp32"},
                                           {"scale": "smoke"})
    assert results_index.run_name_problems("metatrain/fmnist8_grid/blackbox_s0",
                                           {"optimizer": "star", "task": "fmnist8_mlp32"})
    assert not results_index.run_name_problems("metatrain/fmnist8_grid/star_wd0.1_s0",
                                               {"optimizer": "star", "task": "fmnist8_mlp32"})
    root = tmp_path / "results"
    shutil.copytree(RESULTS, root, ignore=shutil.ignore_patterns("*.npz", "*.msgpack", "thetas"))
    argv = ["index", "--root", str(root), "--book", str(REPO / "book")]
    assert cli_main(argv + ["--check"]) == 0
    new = root / "metatrain" / "star_fmnist8_smoke_demo"
    new.mkdir()
    (new / "config.json").write_text(json.dumps({"optimizer": "star", "task": "fmnist8_mlp32"}))
    capsys.readouterr()
    assert cli_main(argv + ["--check"]) == 2
    assert "README.md is out of date" in capsys.readouterr().err
    assert cli_main(argv) == 0
    assert "| `metatrain/star_fmnist8_smoke_demo` |" in (root / "README.md").read_text()
    assert cli_main(argv + ["--check"]) == 0



def test_chapters_using_reads_path_templates(tmp_path):
    """A chapter that names its results by a template (``results/ood/{scale}/{task}.json``) uses each file; a
    bare short token or a template with a short fixed part names nothing (chapters b and c: broken inputs)."""
    (tmp_path / "a.md").write_text("Each task writes `results/ood/{scale}/{task}.json` and more.")
    (tmp_path / "b.md").write_text("the cpu results, digits")
    (tmp_path / "c.ipynb").write_text(json.dumps({"cells": [{"source": ["print(f'{name}.json')"]}]}))
    patterns = results_index._chapter_patterns(tmp_path)
    assert sorted(patterns) == ["a", "b", "c"]
    assert results_index.chapters_using("ood/cpu/digits_conv.json", patterns) == ["a"]
    assert results_index.chapters_using("metatrain/star_fmnist8_cpu_n64", patterns) == []
