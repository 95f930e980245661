"""star.runs as the one run-folder module: its file names are spelled nowhere else in the package; the stored
JSON outputs (meta-curve, evaluations, baselines) have schemas with a version, checked when read, so that a
stale or foreign file is refused in one line naming it; and every such file stored under results/ loads
through the readers unchanged (files written before versions were recorded read as version 1)."""

import json
import re
import shutil
from pathlib import Path

import pytest

from star import runs
from star.runs import schemas

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
PACKAGE = REPO / "star"
# the names of the run folder's files (not the folder names "thetas", "checkpoints", nor NOTE.md, which prose names)
NAMES = sorted(v for k, v in vars(runs.names).items() if k.isupper() and isinstance(v, str)
               and v.endswith((".json", ".jsonl", ".npz", ".msgpack", ".txt")))


def literal_file_names(package: Path) -> list[str]:
    """``["path:line", ...]`` of the package's files outside ``runs/`` that spell a run folder's file name."""
    pattern = re.compile("|".join(re.escape(n) for n in NAMES))
    return [f"{p.relative_to(package).as_posix()}:{i}" for p in sorted(package.rglob("*.py"))
            if "runs" not in p.relative_to(package).parts[:1]
            for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]


def test_the_file_names_are_spelled_only_in_star_runs(tmp_path):
    assert {"log.jsonl", "provenance.json", "config.json", "meta_curve.json", "theta_final.npz"} <= set(NAMES)
    assert literal_file_names(PACKAGE) == []
    copy = tmp_path / "star"  # the check finds a reader that spells a name itself (a broken input)
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    with open(copy / "sweep.py", "a") as f:
        f.write('\n\ndef _steps(out):\n    return (out / "log.jsonl").read_text()\n')
    assert [h.split(":")[0] for h in literal_file_names(copy)] == ["sweep.py"]


def _stored(pattern: str) -> list[Path]:
    return sorted(p for p in RESULTS.rglob(pattern) if "checkpoints" not in p.parts)


def test_every_stored_output_loads_through_the_readers_unchanged():
    curves, evals, baselines = _stored(runs.META_CURVE), _stored("evaluate_*.json"), _stored(runs.BASELINES)
    assert len(curves) > 20 and len(evals) > 20 and baselines  # the stored results are really read
    for name in (runs.SUMMARY, runs.EVALUATE_REPORT):  # the files of single runs, read as the book reads them
        stored = _stored(name)
        assert stored, name
        for path in stored:
            assert runs.StoredRun.read(path.parent).json(name) == json.loads(path.read_text()), path
    for path in curves:
        assert runs.RunFolder(path.parent).meta_curve() == json.loads(path.read_text()), path
    for path in evals:
        steps = int(re.fullmatch(r"evaluate_(\d+)\.json", path.name).group(1))
        assert runs.RunFolder(path.parent).evaluation(steps) == json.loads(path.read_text()), path
    for path in baselines:
        assert runs.read_baselines(path.parent) == json.loads(path.read_text()), path
    meta_train = [p.parent for p in _stored(runs.CONFIG)]
    assert len(meta_train) > 20
    for folder in meta_train:  # every stored run: configuration, provenance and log read as one StoredRun
        run = runs.StoredRun.read(folder)
        assert run.config == json.loads((folder / runs.CONFIG).read_text()) and len(run.log["step"]) > 0


def test_a_missing_file_is_none_and_a_written_one_carries_its_version(tmp_path):
    folder = runs.RunFolder(tmp_path)
    assert folder.meta_curve() is None and folder.evaluation(2000) is None and runs.read_baselines(tmp_path) is None
    doc = schemas.stamp(runs.MetaCurve, {"curve": [{"step": 0, "mean": 1.0}], "num_seeds": 1})
    runs.atomic_write_json(folder.meta_curve_path, doc)
    assert doc["version"] == 1 and folder.meta_curve() == doc


def _curve(**change):
    doc = {"curve": [{"step": 0, "mean": 0.9, "per_seed": [0.9], "stderr": None}], "num_seeds": 1,
           "baselines": {"nominal": {"mean": 0.8}}}
    doc.update(change)
    return doc


@pytest.mark.parametrize("doc, match", [
    ({"optimizer": "star", "task": "nqm", "seed": 0}, r"is not a meta-curve of version 1 \(no field 'curve'\)"),
    ([1, 2], r"is not a meta-curve \(a JSON object; got a list\)"),
    (_curve(version=2), r"has version 2, this code reads meta-curve files up to version 1"),
    (_curve(version="1"), r"has version '1'; versions are integers from 1"),
    (_curve(curve=[{"step": 0, "mean": "low"}]), r"field 'curve\[0\].mean' is a string, not a number or null"),
    (_curve(curve=[{"mean": 0.5}]), r"no field 'curve\[0\].step'"),
    (_curve(num_seeds=2.5), r"field 'num_seeds' is a number, not an integer"),
])
def test_a_foreign_or_stale_meta_curve_is_refused_naming_the_file(tmp_path, doc, match):
    path = tmp_path / runs.META_CURVE
    path.write_text(json.dumps(doc))
    with pytest.raises(runs.RunError, match=match) as err:
        runs.RunFolder(tmp_path).meta_curve()
    line = str(err.value)
    assert "\n" not in line and str(path) in line


def test_a_stored_runs_other_files_are_checked_by_their_name(tmp_path):
    """StoredRun.json checks the files that have a schema (here a summary that is another file) and reads the
    rest as plain JSON."""
    runs.atomic_write_json(tmp_path / runs.CONFIG, {"seed": 0})
    (tmp_path / runs.LOG).write_text('{"step": 1, "meta_loss": 1.0}\n')
    run = runs.StoredRun.read(tmp_path)
    runs.atomic_write_json(tmp_path / runs.SUMMARY, {"optimizer": "star"})
    with pytest.raises(runs.RunError, match=r"summary\.json.*is not a summary of version 1 \(no field 'run'\)"):
        run.json(runs.SUMMARY)
    runs.atomic_write_json(tmp_path / "other.json", {"anything": 1})
    assert run.json("other.json") == {"anything": 1}
    assert runs.schema_of("evaluate_10000.json") is runs.Evaluation and runs.schema_of("evaluate_x.json") is None


def test_evaluations_and_baselines_are_checked_too(tmp_path):
    runs.atomic_write_json(tmp_path / runs.evaluation_file(2000), {"steps": 2000, "per_seed": {"seed": 0}})
    with pytest.raises(runs.RunError, match=r"evaluate_2000\.json.*field 'per_seed' is an object, not a list"):
        runs.RunFolder(tmp_path).evaluation(2000)
    runs.atomic_write_json(tmp_path / runs.BASELINES, {"adam": {}})  # a foreign file: no nominal optimizer
    with pytest.raises(runs.RunError, match=r"baselines\.json.*no field 'nominal'"):
        runs.read_baselines(tmp_path)
    (tmp_path / runs.BASELINES).write_text('{"adam": {}, "nom')  # cut by a kill
    with pytest.raises(runs.RunError, match=r"baselines\.json.*not valid JSON"):
        runs.read_baselines(tmp_path)


def test_the_book_reads_a_grid_through_the_same_checks(tmp_path):
    """A foreign meta-curve in a grid's run folder stops the chapter's reader with the file named."""
    from star.book import grid_results
    from star.grids import get_grid

    grid = get_grid("indist", "cpu")
    src = REPO / grid.folder
    if not src.is_dir():
        pytest.fail(f"the stored grid {grid.folder} is missing")
    dst = tmp_path / grid.folder
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("thetas", "*.msgpack"))
    before = grid_results.load_grid(grid, tmp_path)
    assert before.runs and not before.missing
    victim = next(p for p in sorted(dst.rglob(runs.META_CURVE)))
    victim.write_text(json.dumps({"optimizer": "star"}))
    with pytest.raises(runs.RunError, match=re.escape(str(victim))):
        grid_results.load_grid(grid, tmp_path)
