"""The sweep driver: grids as data, recognising finished/partial/busy/foreign run folders, a whole smoke
sweep (meta-train, skip on rerun, post-processing, NOTE.md from the run's numbers), the command line, and a
sweep's run equal to the same settings given to ``meta-train``."""

import dataclasses
import json
import os
import shlex
import time
from pathlib import Path

import numpy as np
import pytest

from star import grids, sweep
from star.__main__ import main as cli_main

REPO = Path(__file__).resolve().parent.parent

# config.json as `python -m star meta-train` wrote it for the first run of the cpu grid (seed 0, STAR,
# wd 0.1), copied from results/metatrain/fmnist8_grid/star_wd0.1_s0.
CPU_GRID_CONFIG = {
    "checkpoint_every": 20, "clip": 1.0, "clip_mode": "value", "estimator": "pes", "horizon": 2000,
    "init": "reference", "keep_checkpoints": 3, "lr": 0.001, "num_tasks": 64, "optimizer": "star",
    "outer_steps": 200, "random_offset": True, "seed": 0, "shard": True, "std": 0.01, "task": "fmnist8_mlp32",
    "trunc_length": 50, "weight_decay": 0.1,
}


def _spec(name, scale="cpu"):
    grid = sweep.get_grid("indist", scale)
    return next(s for s in grid.runs() if s.name == name)


def test_cpu_grid_is_the_running_grid():
    grid = sweep.get_grid("indist", "cpu")
    runs = grid.runs()
    assert len(runs) == 30 and [r.seed for r in runs[:8]] == [0] * 8  # seed 0 of every member first
    # the 24 runs of seeds 0-2 come first, unchanged; then seeds 3 and 4 of Fig. 3's three members
    assert [r.name for r in runs[:24]] == [f"{m.label}_s{s}" for s in (0, 1, 2) for m in grid.members]
    assert [r.name for r in runs[24:]] == [f"{lab}_s{s}" for s in (3, 4)
                                           for lab in ("star_wd0.1", "hyperparam_wd0.0", "blackbox_wd0.0")]
    assert runs[24].expected_config() == dict(CPU_GRID_CONFIG, seed=3)
    names = [r.name for r in runs[:8]]
    assert names == ["star_wd0.1_s0", "hyperparam_wd0.0_s0", "blackbox_wd0.0_s0", "star_nonom_wd0.1_s0",
                     "star_nopre_wd0.1_s0", "star_wd0.0_s0", "star_wd0.5_s0", "star_wd1.0_s0"]
    spec = runs[0]
    assert spec.expected_config() == CPU_GRID_CONFIG
    assert spec.folder("/r") == Path("/r/results/metatrain/fmnist8_grid/star_wd0.1_s0")
    # The command recorded in provenance.json parses with the real CLI parser into the same settings.
    from star.__main__ import build_parser

    args = build_parser().parse_args(_argv(spec.command_line()))
    assert (args.std, args.lr, args.wd, args.num_tasks, args.init) == (0.01, 1e-3, 0.1, 64, "reference")
    assert args.out == "results/metatrain/fmnist8_grid/star_wd0.1_s0" and not args.resume
    assert build_parser().parse_args(_argv(spec.command_line(resume=True))).resume


def _argv(command: str) -> list[str]:
    """The arguments of a ``python -m star ...`` command line."""
    words = shlex.split(command)
    assert words[:3] == ["python", "-m", "star"], command
    return words[3:]


def test_stored_grid_folders_are_recognised():
    """Every committed run folder of the cpu grid has the settings the cpu grid asks for."""
    folder = REPO / "results/metatrain/fmnist8_grid"
    grid = sweep.get_grid("indist", "cpu")
    by_name = {s.name: s for s in grid.runs()}
    stored = sorted(p for p in folder.glob("*/config.json")) if folder.is_dir() else []
    for path in stored:
        assert path.parent.name in by_name, path
        assert sweep.run_status(by_name[path.parent.name], REPO) in ("finished", "partial", "busy")
    cfg = dict(CPU_GRID_CONFIG, seed=2, optimizer="blackbox", weight_decay=0.0)
    assert _spec("blackbox_wd0.0_s2").expected_config() == cfg


def test_figures_and_bad_arguments():
    grid = sweep.get_grid("indist", "cpu")
    assert [r.member.label for r in grid.runs(figure="app2", seeds=[1])] == [
        "star_wd0.1", "star_wd0.0", "star_wd0.5", "star_wd1.0"]
    assert {r.member.optimizer for r in grid.runs(figure="fig3")} == {"star", "hyperparam", "blackbox"}
    with pytest.raises(ValueError, match="figure must be one of"):
        grid.runs(figure="fig9")
    with pytest.raises(ValueError, match="subset of the grid's seeds"):
        grid.runs(seeds=[7])
    with pytest.raises(ValueError, match="grid must be one of"):
        sweep.get_grid("nope", "cpu")
    with pytest.raises(ValueError, match="has no 'paper' scale"):
        sweep.get_grid("remedies_long", "paper")
    conv = sweep.get_grid("indist_conv", "cpu")  # the offline ConvNet substitute: Fig. 3's members only
    assert conv.task == "fmnist8_conv"
    assert {r.member.optimizer for r in conv.runs()} == {"star", "hyperparam", "blackbox"}
    est = sweep.get_grid("indist", "paper").compute_estimate(1000.0)
    assert est["inner_steps_per_run"] == 5000 * 2 * 8 * 50 and est["runs"] == 24
    assert sweep.get_grid("indist", "cpu").compute_estimate(1000.0)["runs"] == 30
    with pytest.raises(ValueError, match="subset of the grid's seeds"):
        grid.runs(seeds=[5])
    assert [r.name for r in grid.runs(figure="app4", seeds=[3, 4])] == ["star_wd0.1_s3", "star_wd0.1_s4"]


def test_extra_seeds_are_validated():
    base = sweep.get_grid("indist", "smoke")
    grid = dataclasses.replace(base, extra_seeds=(1,), extra_members=("star_wd0.1",))
    assert [r.name for r in grid.runs()] == ["star_wd0.1_s0", "hyperparam_wd0.0_s0", "star_wd0.1_s1"]
    assert grid.member_seeds(grid.members[1]) == (0,) and grid.all_seeds == (0, 1)
    with pytest.raises(ValueError, match="extra_members must be labels"):
        dataclasses.replace(base, extra_members=("nope_wd0.0",))
    with pytest.raises(ValueError, match="must not repeat the grid's seeds"):
        dataclasses.replace(base, extra_seeds=(0,))
    with pytest.raises(ValueError, match="must be given together"):
        dataclasses.replace(base, extra_seeds=(5,), extra_members=())


def test_new_grids_long_and_controls():
    long = sweep.get_grid("indist_long", "cpu")
    assert (long.outer_steps, long.num_tasks, long.lr, long.task) == (2000, 16, 1e-3, "fmnist8_mlp32")
    assert [m.label for m in long.members] == ["star_wd0.1", "star_wd1.0", "star_nopre_wd0.1", "hyperparam_wd0.0",
                                               "blackbox_wd0.0"]
    assert len(long.runs()) == 15 and long.eval_steps == (2000, 10000)
    assert long.compute_estimate(4761.0)["inner_steps_per_run"] == 2000 * 2 * 16 * 50
    ctl = sweep.get_grid("ood_controls", "cpu")
    names = [r.name for r in ctl.runs(seeds=[0])]
    assert names == ["star_wd0.1_init-nominal_s0", "star_wd5.0_s0"]
    nominal, decayed = ctl.runs(seeds=[0])
    assert nominal.expected_config() == dict(CPU_GRID_CONFIG, init="nominal")
    assert decayed.expected_config() == dict(CPU_GRID_CONFIG, weight_decay=5.0)
    argv = _argv(nominal.command_line())
    assert argv[argv.index("--init") + 1] == "nominal" and argv[-1].endswith("star_wd0.1_init-nominal_s0")
    # the cumulative weight decay the notes state is the grid's own lr x wd x outer steps
    assert decayed.lr * decayed.member.weight_decay * ctl.outer_steps == pytest.approx(1.0)


@pytest.mark.parametrize("x", [0.01, 1e-3, 1e-4, 3e-4, 0.1, 0.5, 1.0, 0.0, 2.5e-3])
def test_number_spelling_round_trips(x):
    assert float(grids._num(x)) == x


def _write_config(spec, root, **changes):
    out = spec.folder(root)
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(dict(spec.expected_config(), **changes)))
    return out


def test_run_status_finished_partial_busy_and_foreign(tmp_path):
    spec = _spec("star_wd0.1_s0")
    assert sweep.run_status(spec, tmp_path) == "missing"
    out = _write_config(spec, tmp_path)
    (out / "log.jsonl").write_text("".join(json.dumps({"step": i}) + "\n" for i in range(1, 51)))
    assert sweep.run_status(spec, tmp_path) == "busy"  # just written: another process owns it
    assert sweep.run_status(spec, tmp_path, now=time.time() + 3600) == "partial"
    (out / "theta_final.npz").write_bytes(b"")
    # theta_final.npz without all outer steps logged is not finished
    assert sweep.run_status(spec, tmp_path, now=time.time() + 3600) == "partial"
    (out / "log.jsonl").write_text("".join(json.dumps({"step": i}) + "\n" for i in range(1, 201)))
    assert sweep.run_status(spec, tmp_path) == "finished"
    # a resumable change (more checkpoints) is still this run; another learning rate is not
    (out / "config.json").write_text(json.dumps(dict(spec.expected_config(), checkpoint_every=5)))
    assert sweep.run_status(spec, tmp_path) == "finished"
    (out / "config.json").write_text(json.dumps(dict(spec.expected_config(), lr=1e-4)))
    with pytest.raises(sweep.SweepError, match="lr: saved 0.0001 != requested 0.001"):
        sweep.run_status(spec, tmp_path)
    other = _spec("star_wd0.5_s0").folder(tmp_path)
    other.mkdir(parents=True)
    (other / "stray.txt").write_text("x")
    os.utime(other / "stray.txt", (0, 0))
    os.utime(other, (0, 0))
    with pytest.raises(sweep.SweepError, match="no config.json"):
        sweep.run_status(_spec("star_wd0.5_s0"), tmp_path)


def test_a_foreign_folder_stops_the_sweep_before_anything_runs(tmp_path):
    grid = sweep.get_grid("indist", "smoke")
    first, spec = grid.runs()[0], grid.runs()[-1]
    _write_config(spec, tmp_path, std=0.5)
    with pytest.raises(sweep.SweepError, match="std: saved 0.5 != requested 0.01"):
        sweep.run_sweep(grid, tmp_path, progress=False, log=lambda s: None)
    assert not first.folder(tmp_path).exists()  # the first run, before the foreign one, was not started


@pytest.mark.slow
def test_smoke_sweep_runs_skips_and_post_processes(tmp_path):
    grid = dataclasses.replace(sweep.get_grid("indist", "smoke"), members=(sweep.Member("hyperparam", 0.0),))
    lines = []
    status = sweep.run_sweep(grid, tmp_path, progress=False, log=lines.append)
    assert status == {"hyperparam_wd0.0_s0": "finished"}
    out = grid.runs()[0].folder(tmp_path)
    for name in ("theta_final.npz", "meta_curve.json", "evaluate_10.json", "evaluate_20.json", "NOTE.md"):
        assert (out / name).is_file(), name
    ev = json.loads((out / "evaluate_20.json").read_text())
    assert ev["steps"] == 20 and len(ev["per_seed"][0]["curve"]) == 2
    assert 0.0 <= ev["per_seed"][0]["test_accuracy"] <= 1.0
    grid_note = (tmp_path / grid.folder / "NOTE.md").read_text()
    assert grid_note.startswith("# Grid `indist` (smoke scale)") and "1 of 1 runs finished" in grid_note
    base = json.loads((tmp_path / grid.folder / "baselines.json").read_text())
    assert base["adam_search"]["best_lr"] in grid.adam_lrs and set(base["nominal"]) == {"10", "20"}
    # NOTE.md carries numbers computed from the run's own files
    note = (out / "NOTE.md").read_text()
    curve = json.loads((out / "meta_curve.json").read_text())
    assert f"{curve['curve'][-1]['mean']:.3f}" in note
    final = np.mean([r["final_train_loss"] for r in ev["per_seed"]])
    assert f"final training loss {final:.3f}" in note
    # Rerun: nothing is trained or evaluated again (no file of the run or the grid is written), and the note is
    # not rewritten.
    files = [*out.rglob("*"), *(tmp_path / grid.folder).glob("*.*")]
    mtimes = {p: p.stat().st_mtime_ns for p in files}
    lines.clear()
    assert sweep.run_sweep(grid, tmp_path, progress=False, log=lines.append) == status
    assert {p: p.stat().st_mtime_ns for p in files} == mtimes
    assert set(out.rglob("*")) == {p for p in files if out in p.parents}  # and no new file
    assert len(lines) == 1 and "1 finished" in lines[0]  # one line of status, no action
    # A changed file changes the note: NOTE.md is computed, not typed.
    curve["curve"][-1]["mean"] = 9.87654
    (out / "meta_curve.json").write_text(json.dumps(curve))
    assert sweep.write_note(grid.runs()[0], tmp_path) and "9.877" in (out / "NOTE.md").read_text()


def test_post_processing_refuses_an_unfinished_run(tmp_path):
    spec = _spec("star_wd0.1_s0")
    _write_config(spec, tmp_path)
    with pytest.raises(sweep.SweepError, match="not finished"):
        sweep.post_process(spec, tmp_path, progress=False)


def test_cli(tmp_path, capsys):
    assert cli_main(["sweep", "--grid", "nope"]) == 2
    assert "grid must be one of" in capsys.readouterr().err
    assert cli_main(["sweep", "--grid", "indist", "--scale", "paper", "--estimate", "500"]) == 0
    est = json.loads(capsys.readouterr().out)
    assert est["inner_steps"] == 24 * 5000 * 2 * 8 * 50
    assert cli_main(["sweep", "--grid", "indist", "--scale", "cpu", "--root", str(tmp_path), "--dry-run",
                     "--figure", "fig3", "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "3 runs" in out and "star_wd0.1_s0" in out and not (tmp_path / "results").exists()
    assert cli_main(["sweep", "--grid", "indist", "--scale", "cpu", "--root", str(tmp_path), "--dry-run",
                     "--seeds", "3,4"]) == 0
    out = capsys.readouterr().out
    assert "6 runs" in out and "blackbox_wd0.0_s4" in out and "star_wd0.5" not in out


def test_every_grid_member_is_a_known_optimizer_and_task():
    from star.__main__ import optimizer_names, task_names

    for (name, scale), grid in sweep.GRIDS.items():
        assert grid.task in task_names(), (name, scale)
        assert grid.init in ("nominal", "reference")
        for m in grid.members:
            assert m.optimizer in optimizer_names(), (name, scale, m)
        assert len({s.name for s in grid.runs()}) == len(grid.runs())  # folder names are unique
        assert grid.purpose and grid.notes, (name, scale)  # every grid says what it is for (its NOTE.md heading)
    lr_member = next(m for m in sweep.get_grid("remedies", "cpu").members if m.lr is not None)
    spec = sweep.RunSpec(sweep.get_grid("remedies", "cpu"), lr_member, 0)
    assert spec.name.endswith("_lr1e-3_s0") and spec.expected_config()["lr"] == 1e-3


@pytest.mark.slow
def test_smoke_controls_member_starts_from_its_own_init_as_on_the_command_line(tmp_path, monkeypatch):
    """A member's init overrides the grid's: the run starts from a zero output layer (the nominal init); and the
    sweep's run is the run ``meta-train`` makes with the same settings."""
    from star import runs as runs_lib

    grid = sweep.get_grid("ood_controls", "smoke")
    grid = dataclasses.replace(grid, members=grid.members[:1])
    assert grid.init == "reference" and grid.members[0].init == "nominal"
    status = sweep.run_sweep(grid, tmp_path / "sweep", post=False, progress=False, log=lambda s: None)
    assert status == {"star_wd0.1_init-nominal_s0": "finished"}
    spec = grid.runs()[0]
    out = spec.folder(tmp_path / "sweep")
    assert json.loads((out / runs_lib.CONFIG).read_text())["init"] == "nominal"
    with np.load(out / runs_lib.THETA_SNAPSHOT_DIR / "theta_00000000.npz") as z:
        weights = sorted(k for k in z.files if "['mlp']['w" in k)
        assert len(weights) >= 2 and not np.any(z[weights[-1]]) and np.any(z[weights[0]])
    # The command the sweep records, run on the command line from another root, makes the same run: the same
    # config.json (byte for byte, and what the grid expects) and the same final θ.
    command = json.loads((out / runs_lib.PROVENANCE).read_text())["command"]
    assert command == spec.command_line()
    cli_root = tmp_path / "cli"
    cli_root.mkdir()
    monkeypatch.chdir(cli_root)
    assert cli_main(_argv(command) + ["--no-progress"]) == 0
    other = spec.folder(cli_root)
    assert (other / runs_lib.CONFIG).read_bytes() == (out / runs_lib.CONFIG).read_bytes()
    assert json.loads((out / runs_lib.CONFIG).read_text()) == spec.expected_config()
    with np.load(out / runs_lib.FINAL_THETA) as a, np.load(other / runs_lib.FINAL_THETA) as b:
        assert a.files == b.files and all(np.array_equal(a[k], b[k]) for k in a.files)
    assert (other / runs_lib.META_PARAMS).is_file() and (out / runs_lib.META_PARAMS).is_file()
