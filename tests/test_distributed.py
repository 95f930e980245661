"""Meta-training under jax.distributed: two CPU processes on localhost, one problem shard each, give the
same θ as one process, identical on both processes, with process 0 writing the run folder (fresh and
resumed)."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from star.__main__ import main as cli_main
from star.runs import load_theta

REPO = Path(__file__).resolve().parent.parent
THETA0 = {"alpha": jnp.asarray(0.1, jnp.float32), "P": jnp.zeros((2, 2), jnp.float32)}


def _args(out, steps, extra=()):
    return ["meta-train", "--optimizer", "linear", "--task", "nqm", "--horizon", "20", "--trunc", "10",
            "--num-tasks", "4", "--outer-steps", str(steps), "--lr", "1e-2", "--checkpoint-every", "2",
            "--seed", "5", "--out", str(out), "--no-progress", *extra]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _two_processes(tmp_path, out, steps, extra=()):
    port = _free_port()
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO), XLA_FLAGS="")
    procs = [subprocess.Popen([sys.executable, "-m", "star", *_args(out, steps, extra), "--distributed",
                               "--coordinator", f"localhost:{port}", "--num-processes", "2", "--process-id", str(i)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    # only process 0 reports (the collectives library may print a line of its own)
    assert not [line for line in outs[1][0].splitlines() if line.startswith("{")], outs[1][0]
    return json.loads(outs[0][0].strip().splitlines()[-1])


def test_two_processes_give_the_single_process_theta(tmp_path):
    out = tmp_path / "dist"
    assert _two_processes(tmp_path, out, 3)["steps"] == 3
    assert _two_processes(tmp_path, out, 5, ["--resume"])["steps"] == 5   # process 0 reads the step-3 checkpoint
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["device"]["processes"] == 2 and prov["device"]["count"] == 2
    assert prov["sessions"][-1]["resumed_from_step"] == 3
    logged = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3, 4, 5]

    single = tmp_path / "single"
    assert cli_main(_args(single, 5)) == 0
    dist_theta, one_theta = load_theta(out / "theta_final.npz", THETA0), load_theta(single / "theta_final.npz", THETA0)
    for a, b in zip(jax.tree.leaves(dist_theta), jax.tree.leaves(one_theta)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    one_log = [json.loads(line) for line in (single / "log.jsonl").read_text().splitlines()]
    np.testing.assert_allclose([r["meta_loss"] for r in logged], [r["meta_loss"] for r in one_log], rtol=1e-6)
    # the checkpoint gathered from both processes holds all 4 problems
    from star.inner import build_problem
    from star.outer_step import MetaTrainConfig, init_meta_state
    from star.runs import load_latest_checkpoint

    problem, theta0, _ = build_problem("linear", "nqm", 20)
    template = init_meta_state(problem, theta0, MetaTrainConfig(num_tasks=4, trunc_length=10, seed=5))
    state, meta, _ = load_latest_checkpoint(out / "checkpoints", template)
    assert meta["step"] == 5 and state.pes_state.iteration.shape == (4,)


def test_distributed_flags_need_distributed(tmp_path, capsys):
    assert cli_main(_args(tmp_path / "x", 1, ["--process-id", "1"])) == 2
    assert "--process-id needs --distributed" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
