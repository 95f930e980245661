"""Every failure loud, nothing lost: the bad command lines, faults during runs and bad library calls of a probe
of the package, each as a test. A command a user gets wrong ends in one ``error:`` line naming the argument or
the file and its allowed range, exit status 2, and writes nothing; a damaged run folder is reported and
repaired or refused, never silently cut; a library call with bad input raises ``ValueError`` naming the
argument. Sizes are tiny (the NQM with 4 inner problems)."""

import json
import os
import shutil
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star import runs
from star.__main__ import main as cli_main


def _nqm_args(out, steps=4, seed=3, extra=()):
    return ["meta-train", "--optimizer", "linear", "--task", "nqm", "--horizon", "20", "--trunc", "10",
            "--num-tasks", "4", "--outer-steps", str(steps), "--lr", "1e-2", "--std", "0.01", "--checkpoint-every",
            "2", "--seed", str(seed), "--out", str(out), "--no-progress", *extra]


def _error_line(capsys) -> str:
    """The command's stderr, which must be exactly one ``error: ...`` line (no traceback)."""
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if not ln.startswith("warning: ")]
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _steps(folder: Path) -> list:
    return [json.loads(line)["step"] for line in (folder / runs.LOG).read_text().splitlines()]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished 6-step NQM run (checkpoints at 2, 4, 6)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli_main(_nqm_args(out, steps=6)) == 0
    return out


def _copy(run: Path, tmp_path: Path, name: str = "copy") -> Path:
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


# ----------------------------------------------------------------------------------------------------
# meta-train: arguments out of range are refused before the folder is touched


@pytest.mark.parametrize("flag,value", [("--horizon", "1000000000000"), ("--seed", "100000000000000000000000")])
def test_huge_horizon_or_seed_is_one_line_and_writes_nothing(tmp_path, capsys, flag, value):
    out = tmp_path / "run"
    assert cli_main(_nqm_args(out, extra=[flag, value])) == 2
    line = _error_line(capsys)
    assert flag in line and "<=" in line
    assert not out.exists()


def test_a_new_run_that_fails_before_its_first_step_leaves_nothing(tmp_path):
    """A failure while a new run starts (here: the problem's first step raises) removes what the run wrote,
    so that a retry with other settings is not refused as "the folder already holds a run"."""
    from flax import struct

    from star.inner import build_problem
    from star.metatrain import meta_train
    from star.outer_step import MetaTrainConfig

    @struct.dataclass
    class Broken:
        horizon: int = struct.field(pytree_node=False, default=20)

        def init(self, theta, key):
            return jnp.zeros(())

        def step(self, theta, state, key):
            raise RuntimeError("broken inner step")

    problem, theta0, _ = build_problem("linear", "nqm", 20)
    cfg = MetaTrainConfig(outer_steps=2, num_tasks=2, trunc_length=5, checkpoint_every=1)
    out = tmp_path / "new" / "run"
    with pytest.raises(RuntimeError, match="broken inner step"):
        meta_train(Broken(), theta0, cfg, out_dir=out, progress=False)
    assert not (tmp_path / "new").exists()
    meta_train(problem, theta0, cfg, out_dir=out, progress=False)  # the retry is not refused
    assert _steps(out) == [1, 2]


def test_bogus_scale_is_refused_before_compiling(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("STAR_SCALE", "bogus")
    out = tmp_path / "run"
    assert cli_main(_nqm_args(out)) == 2
    assert "STAR_SCALE must be one of smoke, cpu, paper; got 'bogus'" in _error_line(capsys)
    assert not out.exists()


def test_garbage_provenance_refuses_a_resume_before_any_step(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    (run / runs.PROVENANCE).write_text("garbage")
    before = _snapshot(run)
    capsys.readouterr()
    assert cli_main(_nqm_args(run, steps=8, extra=["--resume"])) == 2
    line = _error_line(capsys)
    assert runs.PROVENANCE in line and "not valid JSON" in line
    assert _snapshot(run) == before
    (run / runs.PROVENANCE).write_text("[1, 2]")  # valid JSON, not a provenance record
    assert cli_main(_nqm_args(run, steps=8, extra=["--resume"])) == 2
    assert runs.PROVENANCE in _error_line(capsys)
    assert _snapshot(run) == dict(before, **{runs.PROVENANCE: b"[1, 2]"})


# ----------------------------------------------------------------------------------------------------
# the log: reported, repaired from the checkpoints or refused; never cut silently


def test_a_damaged_log_line_is_repaired_from_the_checkpoint_on_resume(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    lines = (run / runs.LOG).read_text().splitlines(keepends=True)
    original = [json.loads(x) for x in lines]
    lines[2] = '{"step": 3, "meta_lo\x00\x00\n'  # line 3 of 6 damaged
    (run / runs.LOG).write_text("".join(lines))
    capsys.readouterr()
    assert cli_main(_nqm_args(run, steps=8, extra=["--resume"])) == 0
    warned = capsys.readouterr().err.splitlines()
    assert any(w.startswith("warning: ") and "log.jsonl" in w and "line 3" in w and "restored from the checkpoint"
               in w for w in warned), warned
    assert _steps(run) == [1, 2, 3, 4, 5, 6, 7, 8]
    repaired = [json.loads(x) for x in (run / runs.LOG).read_text().splitlines()]
    assert repaired[:6] == original  # the valid records 4-6 kept, record 3 restored from the checkpoint
    assert "meta_lo" in (run / runs.DAMAGED_LOG).read_text()  # the damaged line itself is kept


def test_a_damaged_log_without_a_copy_in_the_checkpoint_refuses_the_resume(finished_run, tmp_path, capsys):
    """Checkpoints written before they carried the log cannot repair it: the resume is refused, nothing
    changes."""
    run = _copy(finished_run, tmp_path)
    for _, path in runs.list_checkpoints(run / runs.CHECKPOINTS):  # strip the log from the checkpoints
        data = path.read_bytes()
        import io

        payload = runs.checkpoints._verified_payload(data)
        with np.load(io.BytesIO(payload)) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(bytes(arrays.pop("meta_json")).decode())
        meta.pop("log", None)
        leaves = [arrays[k] for k in sorted(arrays)]
        path.write_bytes(runs.encode_checkpoint(leaves, meta))
    lines = (run / runs.LOG).read_text().splitlines(keepends=True)
    lines[2] = "garbage\n"
    (run / runs.LOG).write_text("".join(lines))
    before = _snapshot(run)
    capsys.readouterr()
    assert cli_main(_nqm_args(run, steps=8, extra=["--resume"])) == 2
    line = _error_line(capsys)
    assert "log.jsonl" in line and "line 3" in line and "nothing was changed" in line
    assert _snapshot(run) == before


def test_a_cut_last_line_before_the_checkpoint_is_rewritten(finished_run, tmp_path):
    """The record of step 6 cut (the log was not on disk when checkpoint 6 was): the resume restores it."""
    run = _copy(finished_run, tmp_path)
    text = (run / runs.LOG).read_text()
    (run / runs.LOG).write_text(text[: len(text) - 40])
    assert cli_main(_nqm_args(run, steps=8, extra=["--resume"])) == 0
    assert _steps(run) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_the_log_is_on_disk_before_each_checkpoint(tmp_path, monkeypatch):
    """fsync of log.jsonl precedes every checkpoint (a flushed log may still be lost on a power cut)."""
    events = []
    real_fsync, real_save = os.fsync, runs.save_checkpoint

    def fsync(fd):
        try:
            events.append(("fsync", os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))))
        except OSError:
            pass
        return real_fsync(fd)

    def save_checkpoint(ckpt_dir, state, meta, *a, **k):
        events.append(("checkpoint", int(state.step)))
        return real_save(ckpt_dir, state, meta, *a, **k)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(runs, "save_checkpoint", save_checkpoint)
    assert cli_main(_nqm_args(tmp_path / "run", steps=4)) == 0
    for i, ev in enumerate(events):
        if ev[0] == "checkpoint":
            last_log_sync = max(j for j in range(i) if events[j] == ("fsync", runs.LOG))
            assert all(events[j][0] != "checkpoint" for j in range(last_log_sync, i)), events


def test_load_log_reports_a_damaged_line_and_keeps_the_records_after_it(finished_run, tmp_path):
    run = _copy(finished_run, tmp_path)
    lines = (run / runs.LOG).read_text().splitlines(keepends=True)
    lines[2] = "garbage\n"
    (run / runs.LOG).write_text("".join(lines))
    with pytest.warns(UserWarning, match=r"log.jsonl.*line 3"):
        log = runs.load_log(run)
    assert list(log["step"]) == [1, 2, 4, 5, 6]


# ----------------------------------------------------------------------------------------------------
# θ files: non-finite values are refused when read; meta_params.msgpack is written atomically


def test_a_nan_theta_is_refused_by_evaluate_and_meta_curve(finished_run, tmp_path, capsys):
    run = _copy(finished_run, tmp_path)
    nan = {"alpha": jnp.asarray(np.nan, jnp.float32), "P": jnp.zeros((2, 2), jnp.float32)}
    runs.save_theta(run / runs.FINAL_THETA, nan)
    capsys.readouterr()
    assert cli_main(["evaluate", "--run", str(run), "--no-progress"]) == 2
    line = _error_line(capsys)
    assert runs.FINAL_THETA in line and "non-finite" in line
    runs.save_theta(runs.theta_snapshot_path(run, 4), nan)
    assert cli_main(["meta-curve", "--run", str(run), "--seeds", "2", "--no-progress"]) == 2
    line = _error_line(capsys)
    assert "theta_00000004.npz" in line and "non-finite" in line
    assert not (run / "meta_curve.json").exists()


def test_meta_params_file_is_written_atomically(tmp_path, monkeypatch):
    from star.optim import convert, init_meta_params, preset

    p = tmp_path / "meta_params.msgpack"
    theta = init_meta_params(preset("star"), jax.random.key(0))
    convert.save_meta_params(p, preset("star"), theta)

    def fail(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(convert.serialization, "msgpack_serialize", fail)
    with pytest.raises(OSError, match="disk full"):
        convert.save_meta_params(p, preset("star"), theta)
    monkeypatch.undo()
    cfg, back = convert.load_meta_params(p)  # the old file is intact
    assert cfg == preset("star")
    payload = convert.serialization.msgpack_restore(p.read_bytes())  # NaN written by another program
    payload["theta"]["mlp"]["w0"] = np.full_like(payload["theta"]["mlp"]["w0"], np.nan)
    p.write_bytes(convert.serialization.msgpack_serialize(payload))
    with pytest.raises(ValueError, match="meta_params.msgpack.*non-finite"):
        convert.load_meta_params(p)
    with pytest.raises(ValueError, match="theta must be finite"):  # and it is not written in the first place
        convert.save_meta_params(p, preset("star"), jax.tree.map(lambda x: x * np.nan, theta))


# ----------------------------------------------------------------------------------------------------
# evaluate, meta-curve and summarize on damaged run folders


@pytest.mark.parametrize("config", [{}, [1, 2]], ids=["empty", "list"])
@pytest.mark.parametrize("command", ["evaluate", "meta-curve", "summarize"])
def test_a_config_that_is_not_a_run_is_one_line(finished_run, tmp_path, capsys, config, command):
    run = _copy(finished_run, tmp_path)
    (run / runs.CONFIG).write_text(json.dumps(config))
    capsys.readouterr()
    assert cli_main([command, "--run", str(run)] + (["--no-progress"] if command != "summarize" else [])) == 2
    line = _error_line(capsys)
    assert runs.CONFIG in line and str(run) in line


@pytest.mark.parametrize("damage", ["empty log", "garbage log", "no horizon"])
def test_summarize_on_a_damaged_run_is_one_line(finished_run, tmp_path, capsys, damage):
    run = _copy(finished_run, tmp_path)
    if damage == "empty log":
        (run / runs.LOG).write_text("")
    elif damage == "garbage log":
        (run / runs.LOG).write_text("garbage\n")
    else:
        cfg = json.loads((run / runs.CONFIG).read_text())
        del cfg["horizon"]
        (run / runs.CONFIG).write_text(json.dumps(cfg))
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert cli_main(["summarize", "--run", str(run)]) == 2
    line = _error_line(capsys)
    assert (runs.CONFIG if damage == "no horizon" else runs.LOG) in line
    assert not (run / "summary.json").exists()


# ----------------------------------------------------------------------------------------------------
# sweep, ood, index: arguments named, files named


@pytest.mark.parametrize("extra,flag", [
    (["--estimate", "0"], "--estimate"), (["--estimate", "-100"], "--estimate"), (["--estimate", "nan"], "--estimate"),
    (["--busy-after", "-5", "--dry-run"], "--busy-after"), (["--seeds", "a,b", "--dry-run"], "--seeds"),
    (["--root", "{file}", "--dry-run"], "--root")])
def test_sweep_arguments_out_of_range_are_one_line(tmp_path, capsys, extra, flag):
    (tmp_path / "afile").write_text("x")
    extra = [x.replace("{file}", str(tmp_path / "afile")) for x in extra]
    root = [] if "--root" in extra else ["--root", str(tmp_path)]
    assert cli_main(["sweep", "--grid", "indist", "--scale", "cpu", *root, *extra]) == 2
    assert flag in _error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


@pytest.mark.parametrize("text", ["[1, 2]", '{"lr": 0.0'], ids=["list", "cut"])
def test_a_sweep_member_config_that_is_not_a_run_names_the_file(tmp_path, capsys, text):
    member = tmp_path / "results/metatrain/fmnist8_grid/star_wd0.1_s0"
    member.mkdir(parents=True)
    (member / runs.CONFIG).write_text(text)
    assert cli_main(["sweep", "--grid", "indist", "--scale", "cpu", "--root", str(tmp_path), "--dry-run"]) == 2
    assert str(member / runs.CONFIG) in _error_line(capsys)


def test_ood_with_no_tasks_is_refused(tmp_path, capsys):
    assert cli_main(["ood", "--tasks", "", "--out", str(tmp_path / "ood"), "--no-progress"]) == 2
    assert "--tasks" in _error_line(capsys)
    assert not (tmp_path / "ood").exists()


def test_index_names_an_unreadable_json_file(tmp_path, capsys):
    root = tmp_path / "results"
    root.mkdir()
    (root / "bin.json").write_bytes(b"\xff\xfe\x00\x81")
    assert cli_main(["index", "--root", str(root), "--book", str(tmp_path / "book")]) == 2
    assert str(root / "bin.json") in _error_line(capsys)
    assert not (root / "README.md").exists()


# ----------------------------------------------------------------------------------------------------
# the library: bad input raises ValueError naming the argument


def test_empty_matrices_are_named():
    from star import nqm, stability

    with pytest.raises(ValueError, match="H must .*at least 1"):
        nqm.make_nqm(np.zeros((0, 0)), np.zeros((0, 0)))
    with pytest.raises(ValueError, match="A must .*at least 1"):
        stability.spectral_radius(np.zeros((0, 0)))


def test_a_non_key_where_a_key_is_expected_is_named():
    from star import nqm
    from star.optim import init_meta_params, preset

    with pytest.raises(ValueError, match="key must be a PRNG key"):
        nqm.simulated_loss(0, nqm.paper_nqm(), 0.1, np.zeros((2, 2)), 5)
    with pytest.raises(ValueError, match="key must be a PRNG key"):
        nqm.init_state(0, nqm.paper_nqm())
    with pytest.raises(ValueError, match="key must be a PRNG key"):
        init_meta_params(preset("star"), 0)


def _tiny_task(n_train=8, n_test=4):
    from star.image_data import ImageDataset, ImageSplit
    from star.tasks import MLP, ImageClassificationTask

    rng = np.random.default_rng(0)

    def split(n):
        return ImageSplit(jnp.asarray(rng.integers(0, 255, (n, 4, 4, 1)), jnp.uint8),
                          jnp.asarray(rng.integers(0, 3, n), jnp.int32))

    data = ImageDataset(split(n_train), split(n_train), split(n_train), split(n_test), name="tiny", num_classes=3)
    return ImageClassificationTask(data=data, model=MLP((5,), num_classes=3), name="tiny", batch_size=4)


def test_params_of_another_task_are_named():
    import optax

    from star.tasks import MLP
    from star.train import evaluate, train

    task = _tiny_task()
    other = task.replace(model=MLP((7, 7), num_classes=3))
    wrong = other.init(jax.random.key(0))
    with pytest.raises(ValueError, match="params .*do not fit task"):
        evaluate(task, wrong)
    with pytest.raises(ValueError, match="params .*do not fit task"):
        train(task, optax.sgd(0.1), 2, jax.random.key(0), params=wrong, progress=False)
    ok = task.init(jax.random.key(0))
    assert 0.0 <= evaluate(task, ok)["accuracy"] <= 1.0


def test_an_empty_split_is_named():
    from star.image_data import sample_batch
    from star.train import evaluate

    task = _tiny_task(n_test=0)
    with pytest.raises(ValueError, match="split 'test' .*no examples"):
        evaluate(task, task.init(jax.random.key(0)))
    with pytest.raises(ValueError, match="split .*no examples"):
        sample_batch(task.data.test, jax.random.key(0), 4)


def test_lyapunov_covariance_of_an_unstable_matrix_is_refused():
    from star import nqm

    with pytest.raises(ValueError, match=r"A must have spectral radius < 1 .*; got 2"):
        nqm.lyapunov_covariance(2 * np.eye(2), np.eye(2))
    X = nqm.lyapunov_covariance(0.5 * np.eye(2), np.eye(2))
    np.testing.assert_allclose(X, np.eye(2) / 0.75, rtol=1e-5)


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_symmetric_kappa_needs_a_positive_step(alpha):
    from star import stability

    with pytest.raises(ValueError, match="alpha must be > 0"):
        stability.symmetric_kappa(alpha)
    assert stability.symmetric_kappa(0.5) == 1.0


def test_non_finite_meta_parameters_and_std_are_refused():
    from star import pes
    from star.inner import build_problem
    from star.optim import init_meta_params, preset, star_optimizer

    theta = init_meta_params(preset("star"), jax.random.key(0))
    bad = jax.tree.map(lambda x: x.at[(0,) * x.ndim].set(jnp.inf) if x.size else x, theta)
    with pytest.raises(ValueError, match="theta .*non-finite"):
        star_optimizer(preset("star"), bad, 10)
    problem, theta0, _ = build_problem("linear", "nqm", 10)
    state = pes.init_state(problem, theta0, jax.random.key(0), 2)
    with pytest.raises(ValueError, match="std must be a finite float > 0; got nan"):
        pes.estimate_gradient(problem, theta0, state, jax.random.key(1), std=float("nan"), trunc_length=5)
    with pytest.raises(ValueError, match="std must be a finite float > 0; got nan"):
        pes.sample_perturbations(theta0, jax.random.key(1), float("nan"), 2)
    with pytest.raises(ValueError, match="theta .*non-finite"):
        pes.estimate_gradient(problem, dict(theta0, alpha=jnp.asarray(np.nan)), state, jax.random.key(1),
                              std=0.01, trunc_length=5)


def test_zero_problems_and_non_positive_horizons_are_refused():
    from star import pes
    from star.inner import build_problem

    problem, theta0, _ = build_problem("linear", "nqm", 10)
    with pytest.raises(ValueError, match="num_tasks must be an integer >= 1; got 0"):
        pes.init_state(problem, theta0, jax.random.key(0), 0)
    for horizon in (0, -3):
        with pytest.raises(ValueError, match=f"horizon must be an integer >= 1 and <= 2147483647; got {horizon}"):
            build_problem("linear", "nqm", horizon)
