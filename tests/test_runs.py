"""Run folders (star.runs) and the command line's failures: each case a user can cause ends in one
``error:`` line naming the file or argument and exit status 2, or in a refusal that changes nothing.
Sizes are tiny (the NQM with 4 inner problems; one STAR case on the 8x8 Fashion-MNIST MLP)."""

import dataclasses
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct

from star import runs
from star.__main__ import main as cli_main
from star.book import results_index

REPO = Path(__file__).resolve().parent.parent
THETA0 = {"alpha": jnp.asarray(0.1, jnp.float32), "P": jnp.zeros((2, 2), jnp.float32)}


def _nqm_args(out, steps=4, seed=3, extra=()):
    return ["meta-train", "--optimizer", "linear", "--task", "nqm", "--horizon", "20", "--trunc", "10",
            "--num-tasks", "4", "--outer-steps", str(steps), "--lr", "1e-2", "--std", "0.01", "--checkpoint-every",
            "2", "--seed", str(seed), "--out", str(out), "--no-progress", *extra]


def _error_line(capsys) -> str:
    """The command's stderr, which must be exactly one ``error: ...`` line (no traceback)."""
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def _snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _env(tmp_path, **extra):
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", **extra)
    return env


# ----------------------------------------------------------------------------------------------------
# the run folder API


def test_atomic_json_and_read_json_name_the_file(tmp_path):
    p = tmp_path / "a.json"
    runs.atomic_write_json(p, {"x": np.float32(1.5), "n": np.int64(2), "a": np.arange(2)})
    assert runs.read_json(p) == {"a": [0, 1], "n": 2, "x": 1.5}
    assert oct(p.stat().st_mode & 0o777) == "0o644"
    p.write_text('{"x": 1')  # cut by a kill
    with pytest.raises(runs.RunError, match="a.json.*not valid JSON"):
        runs.read_json(p)
    with pytest.raises(runs.RunError, match="missing.json.*does not exist"):
        runs.read_json(tmp_path / "missing.json")


def test_load_theta_names_missing_truncated_and_mismatched_files(tmp_path):
    p = tmp_path / "theta.npz"
    runs.save_theta(p, THETA0)
    back = runs.load_theta(p, THETA0)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(THETA0)))
    with pytest.raises(runs.RunError, match="missing"):
        runs.load_theta(p, {"beta": jnp.zeros(())})
    with pytest.raises(runs.RunError, match="shape"):
        runs.load_theta(p, {"alpha": jnp.zeros(()), "P": jnp.zeros((3, 3))})
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(runs.RunError, match="theta.npz.*truncated or corrupt"):
        runs.load_theta(p, THETA0)
    with pytest.raises(runs.RunError, match="nothing.npz.*does not exist"):
        runs.load_theta(tmp_path / "nothing.npz", THETA0)


def test_run_identity_ignores_resumable_fields_only():
    cfg = {"seed": 0, "std": 0.01, "outer_steps": 10}
    same = runs.run_identity(dict(cfg, outer_steps=20), ("outer_steps",))
    assert runs.run_identity(cfg, ("outer_steps",)) == same
    assert runs.run_identity(dict(cfg, seed=1), ("outer_steps",)) != same
    assert runs.run_identity(dict(cfg, std=0.02), ("outer_steps",)) != same


def test_checkpoint_of_another_run_is_refused_and_old_checkpoints_still_load(tmp_path):
    cfg = {"seed": 0, "std": 0.01, "outer_steps": 4}
    ident = runs.run_identity(cfg, ("outer_steps",))
    state = {"theta": jnp.arange(3.0), "step": jnp.asarray(2, jnp.int32)}
    d = tmp_path / "ckpt"
    # a checkpoint written before identities were recorded carries its configuration: accepted
    runs.save_checkpoint(d, state, {"config": dict(cfg, outer_steps=8)}, step=2)
    assert runs.load_latest_checkpoint(d, state, identity=ident, config=cfg, resumable=("outer_steps",))
    # another seed's checkpoint, newer: refused, naming the file and the difference
    other = dict(cfg, seed=1)
    runs.save_checkpoint(d, state, {"config": other, "identity": runs.run_identity(other, ("outer_steps",))}, step=4)
    with pytest.raises(runs.RunError,
                       match=r"ckpt_00000004.ckpt.*belongs to another run.*seed: saved 1 != requested 0"):
        runs.load_latest_checkpoint(d, state, identity=ident, config=cfg, resumable=("outer_steps",))
    # one with neither identity nor configuration cannot be attributed: refused
    runs.save_checkpoint(d, state, {}, step=6)
    with pytest.raises(runs.RunError, match="ckpt_00000006.ckpt.*records no run identity"):
        runs.load_latest_checkpoint(d, state, identity=ident, config=cfg)


def test_folder_lock_refuses_a_second_holder(tmp_path):
    with runs.folder_lock(tmp_path):
        with pytest.raises(runs.RunError, match="in use by another process"):
            with runs.folder_lock(tmp_path):
                pass
    with runs.folder_lock(tmp_path):  # released on exit
        pass
    assert list(tmp_path.iterdir()) == []  # the lock leaves no file behind


def test_list_runs_finds_run_folders_and_measurements(tmp_path):
    run = tmp_path / "metatrain" / "star_x_cpu"
    run.mkdir(parents=True)
    runs.atomic_write_json(run / "config.json", {"seed": 0})
    runs.atomic_write_json(run / "provenance.json", {"command": "python -m star meta-train", "scale": "cpu"})
    (run / "NOTE.md").write_text("# What it shows\n\nmore\n")
    runs.atomic_write_json(run / "summary.json", {"provenance": {"command": "inside the run: not separate"}})
    runs.atomic_write_json(tmp_path / "m.json", {
        "description": "a measurement", "provenance": {"command": "python experiments/m.py", "scale": "smoke"}})
    runs.atomic_write_json(tmp_path / "plain.json", {"no": "provenance"})
    found = results_index.list_runs(tmp_path)
    assert [(r.name, r.kind, r.command, r.scale, r.description) for r in found] == [
        ("m.json", "measurement", "python experiments/m.py", "smoke", "a measurement"),
        ("metatrain/star_x_cpu", "run", "python -m star meta-train", "cpu", "What it shows")]


# ----------------------------------------------------------------------------------------------------
# meta-train: refusals


def test_foreign_checkpoint_in_a_run_folder_is_refused_on_resume(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli_main(_nqm_args(a, steps=4, seed=3)) == 0
    assert cli_main(_nqm_args(b, steps=6, seed=4)) == 0  # same settings, another seed
    shutil.copy(b / "checkpoints" / "ckpt_00000006.ckpt", a / "checkpoints")
    capsys.readouterr()
    before = _snapshot(a)
    assert cli_main(_nqm_args(a, steps=8, seed=3, extra=["--resume"])) == 2
    line = _error_line(capsys)
    assert "ckpt_00000006.ckpt" in line and "belongs to another run" in line and "seed: saved 4 != requested 3" in line
    assert _snapshot(a) == before


def test_resume_with_fewer_steps_than_done_is_refused_and_config_kept(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(_nqm_args(out, steps=6)) == 0
    capsys.readouterr()
    before = _snapshot(out)
    assert cli_main(_nqm_args(out, steps=4, extra=["--resume"])) == 2
    assert "has already done 6 steps" in _error_line(capsys)
    assert _snapshot(out) == before  # config.json still says 6
    assert json.loads((out / "config.json").read_text())["outer_steps"] == 6


def test_refused_resume_of_a_missing_folder_leaves_nothing(tmp_path, capsys):
    missing = tmp_path / "new" / "deeper"
    assert cli_main(_nqm_args(missing, extra=["--resume"])) == 2
    assert "holds no run" in _error_line(capsys)
    assert not (tmp_path / "new").exists()
    # the library call refuses the same way
    with pytest.raises(runs.RunError, match="holds no run"):
        with runs.writing_run(missing, {"seed": 0}, resume=True):
            pass
    assert not (tmp_path / "new").exists()


def test_two_resumes_of_one_folder_cannot_run_at_once(tmp_path, capsys):
    """A resumed run holds the folder's lock while it trains; a second --resume is refused meanwhile."""
    out = tmp_path / "run"
    assert cli_main(_nqm_args(out, steps=2)) == 0
    capsys.readouterr()
    proc = subprocess.Popen([sys.executable, "-m", "star", *_nqm_args(out, steps=100000, extra=["--resume"])],
                            cwd=REPO, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:  # wait until it is training (past step 2)
            if len((out / "log.jsonl").read_text().splitlines()) > 3:
                break
            time.sleep(0.05)
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert cli_main(_nqm_args(out, steps=100000, extra=["--resume"])) == 2
        assert "in use by another process" in _error_line(capsys)
    finally:
        proc.kill()
        proc.wait(timeout=60)


@struct.dataclass
class _ClippedQuadratic:
    """A one-parameter inner problem whose normalised loss min(10 θ², 1) saturates at its ceiling 1, like a
    diverging STAR run under the image tasks' normaliser (``--lr 1e6 --std 10`` on the Fashion-MNIST MLP)."""

    horizon: int = struct.field(pytree_node=False, default=4)
    loss_ceiling: float = struct.field(pytree_node=False, default=1.0)

    def init(self, theta, key):
        return jnp.zeros(())

    def step(self, theta, t, key):
        return t + 1, jnp.minimum(10.0 * theta["a"] ** 2, 1.0), jnp.asarray(True)


def test_divergence_is_counted_logged_and_a_zero_meta_gradient_warned(tmp_path, capsys):
    """θ far out: every inner loss on both antithetic sides sits at the ceiling, so the PES estimate is exactly 0
    — counted per step in the log and the provenance, and warned about (once, then a summary)."""
    from star.metatrain import meta_train
    from star.outer_step import MetaTrainConfig

    cfg = MetaTrainConfig(outer_steps=3, num_tasks=2, trunc_length=2, std=0.01, lr=1e6, clip_mode="none",
                          checkpoint_every=3)
    with pytest.warns(UserWarning) as warned:
        res = meta_train(_ClippedQuadratic(), {"a": jnp.asarray(5.0)}, cfg, out_dir=tmp_path / "div", progress=False)
    assert [str(w.message).split(":")[0] for w in warned] == [
        "outer step 1", "the meta-gradient was exactly 0 in 3 of 3 outer steps (first at step 1)"]
    assert "8 of 8 inner losses diverged" in str(warned[0].message)
    log = [json.loads(line) for line in (tmp_path / "div" / "log.jsonl").read_text().splitlines()]
    assert [(r["grad_norm"], r["diverged_losses"]) for r in log] == [(0.0, 8)] * 3
    prov = json.loads((tmp_path / "div" / "provenance.json").read_text())
    assert prov["zero_gradient_steps"] == 3 and prov["diverged_losses_total"] == 24
    assert float(res.theta["a"]) == 5.0  # θ never moved
    # near θ = 0 nothing saturates: no divergence counted, a non-zero gradient, no warning
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ok = meta_train(_ClippedQuadratic(), {"a": jnp.asarray(0.1)}, dataclasses.replace(cfg, lr=1e-3),
                        progress=False)
    assert all(h["diverged_losses"] == 0 and h["grad_norm"] > 0 for h in ok.history)


def test_zero_gradient_warning_does_not_claim_theta_stands_still():
    """After one informative step the inner losses saturate: the meta-gradient is 0, yet AdamW's momentum still
    moves θ; the warning must say so rather than "θ does not move"."""
    from star.metatrain import meta_train
    from star.outer_step import MetaTrainConfig

    cfg = MetaTrainConfig(outer_steps=3, num_tasks=2, trunc_length=2, std=0.01, lr=1.0, clip_mode="none",
                          checkpoint_every=3)
    with pytest.warns(UserWarning) as warned:
        res = meta_train(_ClippedQuadratic(), {"a": jnp.asarray(0.1)}, cfg, progress=False)
    zero = [h for h in res.history if h["grad_norm"] == 0.0]
    assert zero and all(h["update_norm"] > 0 for h in zero)  # θ moves without a gradient
    text = " ".join(str(w.message) for w in warned)
    assert "does not move" not in text and "did not move" not in text
    assert "momentum" in text


@pytest.mark.debian_data("dataset-fashion-mnist")
def test_truncated_fashion_mnist_gz_is_one_line_naming_the_file(tmp_path, capsys, monkeypatch):
    from star.image_data import DEBIAN_FASHION_MNIST_DIR as src
    data = tmp_path / "fmnist"
    data.mkdir()
    for f in src.iterdir():
        shutil.copy(f, data / f.name)
    labels = data / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-200])  # cut in the middle of the compressed stream
    with pytest.raises(EOFError):
        gzip.decompress(labels.read_bytes())
    monkeypatch.setenv("STAR_DATA_DIR", str(data))
    out = tmp_path / "run"
    argv = ["meta-train", "--optimizer", "star", "--task", "fmnist8_mlp32", "--outer-steps", "1", "--num-tasks", "1",
            "--trunc", "2", "--horizon", "4", "--out", str(out), "--no-progress"]
    assert cli_main(argv) == 2
    line = _error_line(capsys)
    assert str(labels) in line and "truncated or corrupt" in line
    assert not out.exists()


def test_cifar10_offline_is_one_line(tmp_path, capsys, monkeypatch):
    from star import data_sources, image_data

    monkeypatch.setattr(data_sources, "TFDS_HOST", ("127.0.0.1", 9))  # closed port: offline
    image_data._from_tfds.cache_clear()
    argv = ["meta-train", "--optimizer", "star", "--task", "cifar10_conv", "--outer-steps", "1", "--num-tasks", "1",
            "--trunc", "2", "--horizon", "4", "--out", str(tmp_path / "run"), "--no-progress"]
    t0 = time.perf_counter()
    assert cli_main(argv) == 2
    assert time.perf_counter() - t0 < 30
    assert "CIFAR-10 is only available through tensorflow-datasets" in _error_line(capsys)
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------------------------------
# evaluate and meta-curve on damaged runs


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli_main(_nqm_args(out, steps=4)) == 0
    return out


def test_evaluate_a_killed_run_names_the_missing_file(finished_run, tmp_path, capsys):
    killed = tmp_path / "killed"
    shutil.copytree(finished_run, killed)
    (killed / "theta_final.npz").unlink()
    capsys.readouterr()
    assert cli_main(["evaluate", "--run", str(killed), "--no-progress"]) == 2
    line = _error_line(capsys)
    assert "theta_final.npz" in line and "did not finish" in line and "--resume" in line


def test_evaluate_a_truncated_theta_final_names_it(finished_run, tmp_path, capsys):
    cut = tmp_path / "cut"
    shutil.copytree(finished_run, cut)
    p = cut / "theta_final.npz"
    p.write_bytes(p.read_bytes()[:100])
    capsys.readouterr()
    assert cli_main(["evaluate", "--run", str(cut), "--no-progress"]) == 2
    line = _error_line(capsys)
    assert str(p) in line and "truncated or corrupt" in line


def test_evaluate_steps_and_seed_are_checked(finished_run, tmp_path, capsys):
    capsys.readouterr()
    assert cli_main(["evaluate", "--run", str(finished_run), "--steps", "0", "--out", str(tmp_path / "e.json")]) == 2
    assert "--steps must be an integer >= 1 and <= 2147483647; got 0" in _error_line(capsys)
    assert cli_main(["evaluate", "--run", str(finished_run), "--seed", "-1", "--out", str(tmp_path / "e.json")]) == 2
    assert "--seed must be an integer >= 0" in _error_line(capsys)
    assert not (tmp_path / "e.json").exists()
    # a good call records provenance next to the numbers
    assert cli_main(["evaluate", "--run", str(finished_run), "--steps", "5", "--out", str(tmp_path / "e.json")]) == 0
    report = json.loads((tmp_path / "e.json").read_text())
    assert report["steps"] == 5
    for key in ("command", "git_commit", "scale", "seeds", "wall_s", "device"):
        assert key in report["provenance"]


def test_meta_curve_with_a_truncated_snapshot_fails_before_evaluating(finished_run, tmp_path, capsys,
                                                                       monkeypatch):
    cut = tmp_path / "cut"
    shutil.copytree(finished_run, cut)
    snap = cut / "thetas" / "theta_00000004.npz"
    snap.write_bytes(snap.read_bytes()[:50])
    from star import meta_objective

    def no_evaluation(*a, **k):
        raise AssertionError("meta_objective ran before every snapshot was read")

    monkeypatch.setattr(meta_objective, "meta_objective", no_evaluation)
    capsys.readouterr()
    assert cli_main(["meta-curve", "--run", str(cut), "--seeds", "2", "--no-progress"]) == 2
    line = _error_line(capsys)
    assert str(snap) in line and "truncated or corrupt" in line
    assert not (cut / "meta_curve.json").exists()


def test_corrupt_config_json_is_one_line(finished_run, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(finished_run, bad)
    (bad / "config.json").write_text("{")
    capsys.readouterr()
    assert cli_main(["evaluate", "--run", str(bad), "--no-progress"]) == 2
    assert "config.json" in _error_line(capsys)


def test_load_meta_params_on_a_corrupt_file_names_it(tmp_path):
    from star.optim import init_meta_params, preset
    from star.optim.convert import load_meta_params, save_meta_params

    p = tmp_path / "meta_params.msgpack"
    save_meta_params(p, preset("star"), init_meta_params(preset("star"), jax.random.key(0)))
    p.write_bytes(p.read_bytes()[:-300])
    with pytest.raises(ValueError, match="meta_params.msgpack.*truncated or corrupt"):
        load_meta_params(p)
    with pytest.raises(ValueError, match="nothing.msgpack.*does not exist"):
        load_meta_params(tmp_path / "nothing.msgpack")


def test_subprocess_failure_has_no_traceback(tmp_path):
    """The same through a real process: one line on stderr, exit status 2."""
    done = subprocess.run([sys.executable, "-m", "star", "evaluate", "--run", str(tmp_path / "none")], cwd=REPO,
                          env=_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [f"error: run folder {str(tmp_path / 'none')!r} holds no run "
                                                "(no config.json)"]


def test_git_commit_named_by_whoever_copied_the_tree(monkeypatch, tmp_path):
    """$STAR_GIT_COMMIT wins over a .git found beside the code (a copy sent to another machine may carry a stale
    one); without it, a folder outside any repository has no commit."""
    monkeypatch.setenv("STAR_GIT_COMMIT", "abc123")
    assert runs.git_commit() == "abc123"
    monkeypatch.delenv("STAR_GIT_COMMIT")
    assert runs.git_commit() != "abc123"
    assert runs.git_commit(tmp_path) is None
