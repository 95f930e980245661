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
        ["optim_hazard", "perturbation_sensitivity", "pes_signal"])


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
