"""The outer loop: determinism, NaN storm, checkpoints (atomic, corrupt → previous), kill/resume,
sharding over forced CPU devices, and the command line's guards. Sizes are tiny (NQM inner problems)."""

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star import nqm
from star.__main__ import main as cli_main
from star.inner import NQMProblem
from star.metatrain import meta_train
from star.outer_step import MetaTrainConfig, gradient_clipping, init_meta_state, outer_optimizer, zero_nonfinite
from star.runs import (
    CheckpointError,
    decode_checkpoint,
    encode_checkpoint,
    load_latest_checkpoint,
    load_log,
    load_theta,
    save_checkpoint,
)

REPO = Path(__file__).resolve().parent.parent
THETA0 = {"alpha": jnp.asarray(0.1, jnp.float32), "P": jnp.zeros((2, 2), jnp.float32)}
PROBLEM = NQMProblem(nqm.paper_nqm(), horizon=20)
CFG = MetaTrainConfig(outer_steps=6, num_tasks=4, trunc_length=10, lr=1e-2, checkpoint_every=2)


def _closed_form(theta) -> float:
    """Eq. (8) of PROBLEM's episode (star.nqm.expected_loss)."""
    return float(nqm.expected_loss(PROBLEM.nqm, T=PROBLEM.horizon, **PROBLEM.closed_form_args(theta)))


def _leaves_equal(a, b):
    return all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_determinism_and_learning_on_the_nqm():
    r1 = meta_train(PROBLEM, THETA0, CFG, progress=False)
    r2 = meta_train(PROBLEM, THETA0, CFG, progress=False)
    assert _leaves_equal(r1.theta, r2.theta)
    assert _leaves_equal(r1.state, r2.state)
    r3 = meta_train(PROBLEM, THETA0, MetaTrainConfig(**dict(CFG.to_dict(), seed=1)), progress=False)
    assert not _leaves_equal(r1.theta, r3.theta)
    assert int(r1.state.step) == CFG.outer_steps and len(r1.history) == CFG.outer_steps
    # Six AdamW steps of size ~lr move α upward from a too-small 0.1: the closed-form loss Eq. (8) drops.
    assert _closed_form(r1.theta) < _closed_form(THETA0)


def test_nan_storm_is_zeroed_counted_and_training_continues():
    """α = 1e4 is far beyond 2/λmax(H) ≈ 1.36: φ overflows float32 within the first truncation, so the PES
    estimate is NaN; the entries are zeroed and counted and the meta-parameters stay finite. (Same
    settings as CFG, so the compiled outer step is shared with the other tests.)"""
    theta = {"alpha": jnp.asarray(1e4, jnp.float32), "P": jnp.zeros((2, 2), jnp.float32)}
    cfg = MetaTrainConfig(**dict(CFG.to_dict(), outer_steps=3))
    with pytest.warns(UserWarning) as warned:
        res = meta_train(PROBLEM, theta, cfg, progress=False)
    assert [str(w.message).split(":")[0] for w in warned] == [
        "outer step 1", "the meta-gradient was exactly 0 in 3 of 3 outer steps (first at step 1)"]
    assert int(res.state.step) == 3
    assert all(h["nan_count"] > 0 for h in res.history)
    assert all(h["nonfinite_problems"] > 0 for h in res.history)
    assert all(h["diverged_losses"] > 0 for h in res.history)  # the non-finite inner losses are counted
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves((res.theta, res.state.opt_state)))
    assert all(h["grad_norm"] is not None and np.isfinite(h["grad_norm"]) for h in res.history)


def test_zero_nonfinite_and_clipping_modes():
    g = {"a": jnp.array([1.0, jnp.nan, -jnp.inf, 5.0])}
    z, n = zero_nonfinite(g)
    np.testing.assert_array_equal(np.asarray(z["a"]), [1.0, 0.0, 0.0, 5.0])
    assert int(n) == 2
    theta = {"a": jnp.zeros(4)}
    big = {"a": jnp.array([10.0, -10.0, 0.5, 0.0])}
    for mode, expected in (("value", [1.0, -1.0, 0.5, 0.0]),
                           ("global_norm", np.array([10.0, -10.0, 0.5, 0.0]) / np.linalg.norm([10, 10, 0.5])),
                           ("none", [10.0, -10.0, 0.5, 0.0])):
        clip = gradient_clipping(mode, 1.0)
        out, _ = clip.update(big, clip.init(theta))
        np.testing.assert_allclose(np.asarray(out["a"]), expected, rtol=1e-6)
    with pytest.raises(ValueError, match="clip_mode must be one of"):
        MetaTrainConfig(clip_mode="norm")


def test_weight_decay_is_a_multiple_of_the_learning_rate():
    """With a zero gradient AdamW's update is exactly −lr·wd·θ (optax semantics; the book's appendix)."""
    cfg = MetaTrainConfig(lr=1e-4, weight_decay=0.5)
    opt = outer_optimizer(cfg)
    theta = {"a": jnp.array([2.0, -4.0])}
    upd, _ = opt.update({"a": jnp.zeros(2)}, opt.init(theta), theta)
    np.testing.assert_allclose(np.asarray(upd["a"]), -1e-4 * 0.5 * np.array([2.0, -4.0]), rtol=1e-6)


def test_checkpoint_roundtrip_and_truncated_falls_back_with_warning(tmp_path):
    state = init_meta_state(PROBLEM, THETA0, CFG)
    d = tmp_path / "ckpt"
    s1 = state._replace(step=jnp.asarray(1, jnp.int32))
    s2 = state._replace(step=jnp.asarray(2, jnp.int32), theta={"alpha": jnp.asarray(0.5), "P": jnp.ones((2, 2))})
    save_checkpoint(d, s1, {"x": 1})
    p2 = save_checkpoint(d, s2, {"x": 2})
    restored, meta, path = load_latest_checkpoint(d, state)
    assert path == p2 and meta["step"] == 2 and _leaves_equal(restored, s2)
    data = p2.read_bytes()
    p2.write_bytes(data[: len(data) // 2])  # a kill in the middle of a non-atomic write
    with pytest.warns(UserWarning, match="skipping unreadable checkpoint"):
        restored, meta, _ = load_latest_checkpoint(d, state)
    assert meta["step"] == 1 and _leaves_equal(restored, s1)
    flipped = bytearray(data)
    flipped[-10] ^= 0xFF
    with pytest.raises(CheckpointError, match="digest"):
        decode_checkpoint(bytes(flipped), state)
    with pytest.raises(CheckpointError, match="arrays"):
        decode_checkpoint(encode_checkpoint({"a": jnp.zeros(1)}, {}), state)
    assert not list(d.glob("*.tmp"))  # no temporary files left behind


def _cli_args(out, steps=12, extra=()):
    return ["meta-train", "--optimizer", "linear", "--task", "nqm", "--horizon", "20", "--trunc", "10",
            "--num-tasks", "4", "--outer-steps", str(steps), "--lr", "1e-2", "--std", "0.01", "--checkpoint-every", "3",
            "--seed", "3", "--out", str(out), "--no-progress", *extra]


def _env(tmp_path):
    env = dict(os.environ)
    env.update(JAX_PLATFORMS="cpu", JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", PYTHONPATH=str(REPO))
    return env


def test_sigkill_at_random_step_then_resume_is_bit_identical(tmp_path):
    """Kill a long run with SIGKILL once its log reaches a random step; resume it for 4 more steps than its
    last checkpoint; the result equals an uninterrupted run of that many steps bit for bit."""
    out = tmp_path / "run"
    kill_at = random.Random(1234).randint(4, 10)
    proc = subprocess.Popen([sys.executable, "-m", "star", *_cli_args(out, steps=100000)], cwd=REPO,
                            env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    log = out / "log.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and len(log.read_text().splitlines()) >= kill_at:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert not (out / "theta_final.npz").exists()
    last_ckpt = max(int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("ckpt_*.ckpt"))
    assert last_ckpt >= 3
    total = last_ckpt + 4
    done = subprocess.run([sys.executable, "-m", "star", *_cli_args(out, steps=total, extra=["--resume"])],
                          cwd=REPO, env=_env(tmp_path), capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["sessions"][-1]["resumed_from_step"] == last_ckpt
    # the killed session left its record (written at its first step); the resumed one finished
    assert [s["status"] for s in prov["sessions"]] == ["running", "finished"]

    # The uninterrupted run, in this process.
    cfg = MetaTrainConfig(outer_steps=total, num_tasks=4, trunc_length=10, lr=1e-2, checkpoint_every=3, seed=3)
    ref = meta_train(PROBLEM, THETA0, cfg, progress=False)
    theta = load_theta(out / "theta_final.npz", THETA0)
    assert _leaves_equal(theta, ref.theta), (theta, ref.theta)
    logged = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, total + 1))
    assert [r["meta_loss"] for r in logged] == [r["meta_loss"] for r in ref.history]


def test_sharded_equals_unsharded_on_four_forced_cpu_devices(tmp_path):
    script = textwrap.dedent("""
        import json, jax, jax.numpy as jnp, numpy as np
        from star import nqm
        from star.inner import NQMProblem
        from star.metatrain import meta_train
        from star.outer_step import MetaTrainConfig
        assert len(jax.local_devices()) == 4
        problem = NQMProblem(nqm.paper_nqm(), horizon=20)
        theta0 = {"alpha": jnp.asarray(0.1, jnp.float32), "P": jnp.zeros((2, 2), jnp.float32)}
        runs = {}
        for shard in (True, False):
            cfg = MetaTrainConfig(outer_steps=3, num_tasks=8, trunc_length=10, lr=1e-2, shard=shard)
            runs[shard] = meta_train(problem, theta0, cfg, progress=False)
        leaf = jax.tree.leaves(runs[True].state.pes_state)[0]
        diff = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
                   for a, b in zip(jax.tree.leaves(runs[True].state), jax.tree.leaves(runs[False].state)))
        print(json.dumps({"devices": len(leaf.sharding.device_set), "max_abs_diff": diff,
                          "loss_sharded": [h["meta_loss"] for h in runs[True].history],
                          "loss_single": [h["meta_loss"] for h in runs[False].history]}))
    """)
    env = _env(tmp_path)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(done.stdout.strip().splitlines()[-1])
    assert res["devices"] == 4  # the PES state really is split over the 4 devices
    assert res["max_abs_diff"] < 1e-5
    np.testing.assert_allclose(res["loss_sharded"], res["loss_single"], rtol=1e-5)


@pytest.mark.parametrize("argv, match", [
    (["--optimizer", "adam9"], "--optimizer must be one of"),
    (["--task", "imagenet"], "--task must be one of"),
    (["--std", "0"], "std must be a finite float > 0"),
    (["--std", "-1"], "std must be a finite float > 0"),
    (["--num-tasks", "0"], "num_tasks must be an integer >= 1"),
    (["--trunc", "30"], "trunc_length must be in \\[1, horizon=20\\]"),
    (["--lr", "0"], "lr must be"),
])
def test_cli_bad_input(tmp_path, capsys, argv, match):
    args = _cli_args(tmp_path / "run")
    for flag, value in zip(argv[::2], argv[1::2]):
        args[args.index(flag) + 1] = value
    assert cli_main(args) == 2
    assert __import__("re").search(match, capsys.readouterr().err)
    assert not (tmp_path / "run").exists() or not any((tmp_path / "run").iterdir())


def test_cli_folder_guards_never_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(_cli_args(out, steps=2)) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    # the folder holds a run: refused without --resume
    assert cli_main(_cli_args(out, steps=2)) == 2
    assert "already holds a run" in capsys.readouterr().err
    # resuming with a different configuration: refused, naming the difference
    assert cli_main(_cli_args(out, steps=2, extra=["--resume", "--std", "0.02"])) == 2
    assert "std: saved 0.01 != requested 0.02" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    # a folder with other files in it, and a folder that cannot be written
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert cli_main(_cli_args(other, steps=2)) == 2
    assert "not empty" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine"
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    assert cli_main(_cli_args(blocker / "sub", steps=2)) == 2  # cannot create a folder under a file
    assert "not writable" in capsys.readouterr().err
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not os.access(locked, os.W_OK):  # (root can write anywhere: then only the case above applies)
            assert cli_main(_cli_args(locked / "sub", steps=2)) == 2
            assert "not writable" in capsys.readouterr().err
    finally:
        locked.chmod(0o700)
    # resuming a folder without a run
    assert cli_main(_cli_args(tmp_path / "empty", steps=2, extra=["--resume"])) == 2
    assert "holds no run" in capsys.readouterr().err


def test_cli_evaluate_nqm_run(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(_cli_args(out, steps=6)) == 0
    capsys.readouterr()
    assert cli_main(["evaluate", "--run", str(out), "--seed", "1", "--out", str(tmp_path / "eval.json")]) == 0
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["steps"] == 20 and report["task"] == "nqm"
    assert np.isfinite(report["simulated_loss"])
    # the learned (α, P) improves the closed-form meta-loss Eq. (8) over the starting point
    assert report["expected_loss"] < report["expected_loss_initial"]
    log = load_log(out)
    np.testing.assert_array_equal(log["step"], np.arange(1, 7))
    assert np.all(np.isfinite(log["meta_loss"])) and np.all(log["nan_count"] == 0)
    assert np.all(log["diverged_losses"] == 0)  # a healthy run: no inner loss diverged


def test_cli_smoke_star_on_fashion_mnist_mlp(tmp_path, capsys):
    """A few outer steps of STAR on the Fashion-MNIST MLP end to end through the command line."""
    from star.optim.convert import load_meta_params

    out = tmp_path / "star"
    argv = ["meta-train", "--optimizer", "star", "--task", "fmnist_mlp", "--outer-steps", "2", "--num-tasks", "1",
            "--trunc", "2", "--horizon", "4", "--std", "0.01", "--lr", "1e-4", "--wd", "0.1", "--seed", "0",
            "--checkpoint-every", "1", "--out", str(out), "--no-progress"]
    assert cli_main(argv) == 0, capsys.readouterr().err
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]
    assert all(r["meta_loss"] is not None and 0.0 <= r["meta_loss"] <= 1.5 * np.log(10) + 1e-6 for r in log)
    prov = json.loads((out / "provenance.json").read_text())
    for key in ("command", "git_commit", "scale", "seeds", "wall_s_total", "device"):
        assert key in prov
    # which Fashion-MNIST source was read ($STAR_DATA_DIR, the Debian package or tensorflow-datasets)
    assert list(prov["data"]) == ["fashion_mnist"] and prov["data"]["fashion_mnist"].startswith("idx files in")
    # at σ = 0.01 a few perturbed STAR runs already reach the meta-loss ceiling: counted, and summed in provenance
    assert prov["diverged_losses_total"] == sum(r["diverged_losses"] for r in log)
    assert prov["zero_gradient_steps"] == sum(r["grad_norm"] == 0.0 for r in log)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["optimizer"] == "star" and cfg["weight_decay"] == 0.1 and cfg["horizon"] == 4
    opt_cfg, theta = load_meta_params(out / "meta_params.msgpack")
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(theta))
    assert len(list((out / "checkpoints").glob("ckpt_*.ckpt"))) == 2


def test_meta_objective_is_an_unbiased_sample_of_the_closed_form_eq8():
    """``meta_objective`` at θ (no perturbation) averages fresh episodes; on the NQM its mean matches Eq. (8)."""
    from star.meta_objective import meta_objective

    theta = {"alpha": jnp.asarray(0.3, jnp.float32), "P": jnp.asarray([[0.1, 0.0], [0.0, -0.05]], jnp.float32)}
    losses = meta_objective(PROBLEM, theta, jax.random.PRNGKey(3), num_seeds=4000)
    assert losses.shape == (4000,)
    exact = _closed_form(theta)
    se = float(np.std(losses, ddof=1) / np.sqrt(losses.size))
    assert abs(float(np.mean(losses)) - exact) < 4 * se, (float(np.mean(losses)), exact, se)
    # common random numbers: the same key gives the same episodes, another key different ones
    np.testing.assert_array_equal(meta_objective(PROBLEM, theta, jax.random.PRNGKey(3), num_seeds=4000), losses)
    assert not np.array_equal(meta_objective(PROBLEM, theta, jax.random.PRNGKey(4), num_seeds=4000), losses)
    with pytest.raises(ValueError, match="num_seeds must be an integer >= 1"):
        meta_objective(PROBLEM, theta, jax.random.PRNGKey(3), num_seeds=0)
    with pytest.raises(ValueError, match="num_steps must be an integer >= 1"):
        meta_objective(PROBLEM, theta, jax.random.PRNGKey(3), num_steps=2.5)


def test_cli_meta_curve_evaluates_every_theta_snapshot(tmp_path, capsys):
    from star.meta_objective import meta_objective
    from star.runs import list_theta_snapshots

    out = tmp_path / "run"
    assert cli_main(_cli_args(out, steps=7)) == 0  # checkpoint_every 3 → θ snapshots at 0, 3, 6 and the end
    snaps = list_theta_snapshots(out)
    assert [s for s, _ in snaps] == [0, 3, 6, 7]
    assert _leaves_equal(load_theta(snaps[-1][1], THETA0), load_theta(out / "theta_final.npz", THETA0))
    assert _leaves_equal(load_theta(snaps[0][1], THETA0), THETA0)
    capsys.readouterr()
    assert cli_main(["meta-curve", "--run", str(out), "--seeds", "3", "--seed", "7", "--no-progress"]) == 0
    report = json.loads((out / "meta_curve.json").read_text())
    assert [r["step"] for r in report["curve"]] == [0, 3, 6, 7]
    assert report["inner_steps"] == 20 and report["num_seeds"] == 3
    for key in ("command", "git_commit", "scale", "wall_s", "device"):
        assert key in report["provenance"]
    # each row is meta_objective at that snapshot with the evaluation key (recomputed here, not trusted)
    for row, (_, path) in zip(report["curve"], snaps):
        expect = meta_objective(PROBLEM, load_theta(path, THETA0), jax.random.PRNGKey(7), num_seeds=3)
        np.testing.assert_allclose(row["per_seed"], expect, rtol=1e-6)
        assert row["mean"] == pytest.approx(float(np.mean(expect)), rel=1e-6)
    # --every keeps every k-th snapshot and always the last
    assert cli_main(["meta-curve", "--run", str(out), "--seeds", "2", "--every", "2", "--out",
                     str(tmp_path / "c.json"), "--no-progress"]) == 0
    assert [r["step"] for r in json.loads((tmp_path / "c.json").read_text())["curve"]] == [0, 6, 7]
    # bad input: nothing written
    capsys.readouterr()
    assert cli_main(["meta-curve", "--run", str(out), "--seeds", "0", "--out", str(tmp_path / "bad.json")]) == 2
    assert "--seeds must be an integer >= 1" in capsys.readouterr().err
    assert cli_main(["meta-curve", "--run", str(tmp_path / "nothing"), "--out", str(tmp_path / "bad.json")]) == 2
    assert "holds no run" in capsys.readouterr().err
    assert not (tmp_path / "bad.json").exists()


def test_equal_problems_share_one_compilation():
    """Two build_problem calls with the same optimizer give the same static structure, so a resumed run or an
    evaluation reuses the outer step compiled for the first (a new functools.partial per call compiled again)."""
    from star.inner import build_problem

    a, _, _ = build_problem("star", "fmnist8_mlp32", 20, seed=0)
    b, _, _ = build_problem("star", "fmnist8_mlp32", 20, seed=5)
    c, _, _ = build_problem("blackbox", "fmnist8_mlp32", 20, seed=0)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    assert jax.tree.structure(a) != jax.tree.structure(c)
    f = jax.jit(lambda p: p.horizon)
    f(a)
    before = f._cache_size()
    f(b)
    assert f._cache_size() == before
