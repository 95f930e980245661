"""Every script in experiments/ runs end to end at a tiny size and writes its JSON with provenance."""

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PROVENANCE_KEYS = ("command", "git_commit", "scale", "seeds", "wall_s", "device", "data")


def _load(name):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"experiments_{name}", REPO / "experiments" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _check(path, rows_key, expected_rows):
    out = json.loads(Path(path).read_text())
    assert out["description"]
    assert len(out[rows_key]) == expected_rows
    for key in PROVENANCE_KEYS:
        assert key in out["provenance"], key
    assert out["provenance"]["data"]["fashion_mnist"]
    return out


def test_every_experiment_is_smoke_tested():
    assert sorted(p.stem for p in (REPO / "experiments").glob("*.py")) == sorted(
        ["accelerator", "chapter_times", "indist_breakdown", "optim_hazard", "perturbation_sensitivity",
         "pes_signal"])


def test_pes_signal_tiny(tmp_path):
    out = tmp_path / "pes_signal.json"
    _load("pes_signal").main(["--task", "fmnist8_mlp32", "--num-tasks", "2", "--trunc", "2", "--horizon", "4",
                              "--sigmas", "1e-5", "--estimates", "3", "--advance", "1", "--out", str(out)])
    res = _check(out, "rows", 2)  # two initialisations x one sigma (σ = 1e-5 as the advance: one compilation)
    assert {r["init"] for r in res["rows"]} == {"nominal", "reference"}
    assert all(-1.0 <= r["signal_fraction"] <= 1.0 for r in res["rows"])


def test_perturbation_sensitivity_tiny(tmp_path):
    out = tmp_path / "ps.json"
    _load("perturbation_sensitivity").main(["--task", "fmnist8_mlp32", "--steps", "3", "--sigmas", "0", "1e-3",
                                            "--seeds", "0", "--out", str(out)])
    res = _check(out, "rows", 2)  # sigma 0 once, sigma 1e-3 for one seed
    assert res["rows"][0]["loss_at_step"].keys() == {"0", "1", "2"}


def test_optim_hazard_tiny(tmp_path):
    out = tmp_path / "hazard.json"
    _load("optim_hazard").main(["--task", "fmnist8_mlp32", "--steps", "3", "--seeds", "2", "--configs", "star",
                                "--out", str(out)])
    res = json.loads(out.read_text())
    assert set(res["runs"]) == {"star/nominal", "star/reference"}
    assert len(res["runs"]["star/nominal"]["losses"]) == 2
    for key in PROVENANCE_KEYS:
        assert key in res["provenance"], key


@pytest.mark.parametrize("name", ["pes_signal", "perturbation_sensitivity", "optim_hazard"])
def test_bad_arguments_are_refused(name, capsys):
    with pytest.raises(SystemExit) as exc:
        _load(name).main(["--no-such-flag"])
    assert exc.value.code == 2


def test_indist_breakdown_tiny(tmp_path):
    """All three parts on the small MLP only (standing in for the paper's), a few steps each."""
    mod = _load("indist_breakdown")
    tiny = ["--tasks", "fmnist8_mlp32", "--paper-task", "fmnist8_mlp32", "--configs", "star", "--steps", "3",
            "--anatomy-steps", "1", "--seeds", "1", "--sigmas", "1e-2", "--biases", "1e-3", "--checkpoints", "1"]
    for part, key, n in (("mechanism", "groups", 7), ("interventions", "interventions", 4),
                         ("second_moments", "tasks", 1)):
        out = tmp_path / f"{part}.json"
        assert mod.main(["--part", part, "--out", str(out)] + tiny) == 0
        res = _check(out, key, n)
        assert res["provenance"]["command"].startswith("python experiments/indist_breakdown.py --part")
    mech = json.loads((tmp_path / "mechanism.json").read_text())
    assert mech["direction_bias"]["fmnist8_mlp32"]["star"]["outcome"][0] in ("ok", "degraded", "dead", "diverged")
    assert mech["anatomy"]["fmnist8_mlp32"]["star"]["steps"][0]["layers"]["Dense_0/kernel"]["eps_dominated"] > 0.9


def test_chapter_times_tiny(tmp_path):
    """experiments/chapter_times.py on a one-chapter book built with the book's own extension: the chapter's run
    time comes from the build's execution cache, with the load samples and the provenance."""
    book = tmp_path / "site"
    (book / "book").mkdir(parents=True)
    (book / "_toc.yml").write_text("format: jb-book\nroot: book/intro\n")
    (book / "_config.yml").write_text(
        "title: tiny\nexecute:\n  execute_notebooks: cache\nsphinx:\n  local_extensions:\n"
        f"    starbook: {REPO / 'book' / '_ext'}\n  config:\n    mathjax_path: https://example.org/tex-mml-chtml.js\n")
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Tiny"),
                                         nbformat.v4.new_code_cell("import time\ntime.sleep(1.5)")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, book / "book" / "intro.ipynb")
    out = tmp_path / "times.json"
    assert _load("chapter_times").main(["--book", str(book), "--out", str(out), "--every-s", "0.5"]) == 0
    res = json.loads(out.read_text())
    assert list(res["chapters"]) == ["book/intro"] and res["chapters"]["book/intro"] >= 1.5
    assert res["load_1min"]["samples"] >= 1 and res["cpu_count"] >= 1 and res["build_wall_s"] > 0
    assert res["description"] and all(k in res["provenance"] for k in ("command", "git_commit", "scale", "device"))
    assert _load("chapter_times").main(["--book", str(tmp_path), "--out", str(out)]) == 2  # no _toc.yml there


def test_accelerator_tiny(tmp_path):
    """The accelerator script end to end on the CPU at smoke size: timing on every device JAX sees, both runs
    (the first complete, the second at least one chunk), meta-curves, provenance."""
    out = tmp_path / "acc.json"
    assert _load("accelerator").main(["--smoke", "--out", str(out), "--runs", str(tmp_path / "runs"), "--n", "2",
                                      "--outer-steps", "2", "--big-n", "4", "--chunk", "1", "--repeats", "1",
                                      "--curve-seeds", "2", "--budget-s", "100000", "--big-steps", "2"]) == 0
    res = json.loads(out.read_text())
    assert [r["platform"] for r in res["timing"]][0] == "cpu"
    assert all(r["pes_inner_steps_per_s"] > 0 and r["star_step_ms"] > 0 for r in res["timing"])
    first, big = res["runs"]
    assert (first["num_tasks"], first["steps"], big["num_tasks"]) == (2, 2, 4) and big["steps"] >= 1
    assert all(r["meta_curve"]["first"] > 0 for r in res["runs"]) and not res["skipped"]
    for key in PROVENANCE_KEYS:
        assert key in res["provenance"], key
    from star import runs
    from star.book import results_index

    for r in res["runs"]:  # the folders follow the naming scheme of results/README.md
        folder = runs.RunFolder(tmp_path / "runs" / r["folder"])
        assert results_index.run_name_problems(f"metatrain/{r['folder']}", folder.config(), folder.provenance()) == []
    log = (tmp_path / "runs" / first["folder"] / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in log] == [1, 2]  # two chunks of one step, resumed


@pytest.mark.parametrize("bad", [["--budget-s", "0"], ["--budget-s", "nan"], ["--n", "0"], ["--big-n", "-1"]])
def test_accelerator_bad_arguments(bad, capsys, tmp_path):
    out = tmp_path / "acc.json"
    assert _load("accelerator").main(["--smoke", "--out", str(out)] + bad) == 2
    assert capsys.readouterr().err.startswith("error: --") and not out.exists()
