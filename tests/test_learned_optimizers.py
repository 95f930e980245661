"""star.learned_optimizers: sources (RUN_DIR@STEP+TRANSFORM), θ snapshots and the zero-output transform, and the
named sets of rows naming runs of the grids."""

import jax
import numpy as np
import pytest

from star import learned_optimizers, ood_records
from star.optim import init_meta_params, preset, save_meta_params


def test_parse_source():
    assert learned_optimizers.parse_source("results/metatrain/x_s0") == ("results/metatrain/x_s0", None, ())
    assert learned_optimizers.parse_source("results/x_s0@0+zero_output") == ("results/x_s0", 0, ("zero_output",))
    assert learned_optimizers.parse_source("/abs/run@200") == ("/abs/run", 200, ())
    with pytest.raises(ValueError, match="non-negative integer"):
        learned_optimizers.parse_source("results/x@-1")
    with pytest.raises(ValueError, match="transforms of a learned source must be among"):
        learned_optimizers.parse_source("results/x@0+nope")
    with pytest.raises(ValueError, match="RUN_DIR"):
        learned_optimizers.parse_source("@3")


def test_learned_snapshots_and_zero_output(tmp_path):
    """``@0`` reads the initial θ snapshot; ``+zero_output`` makes it the nominal initialisation exactly."""
    from star import runs

    folder = tmp_path / "results" / "metatrain" / "run"
    cfg = preset("star")
    folder.mkdir(parents=True)
    final = init_meta_params(cfg, jax.random.key(5), init="reference")
    save_meta_params(folder / "meta_params.msgpack", cfg, jax.tree.map(lambda x: x + 1.0, final))
    runs.save_theta(runs.theta_snapshot_path(folder, 0), final)
    lo = learned_optimizers.load_learned("t0", [f"{folder}@0", f"{folder}@0+zero_output", str(folder)])
    th = [jax.tree.map(lambda x, i=i: x[i], lo.thetas) for i in range(3)]
    for a, b in zip(jax.tree.leaves(th[0]), jax.tree.leaves(final)):
        np.testing.assert_array_equal(a, b)
    nominal = init_meta_params(cfg, jax.random.key(5), init="nominal")
    for a, b in zip(jax.tree.leaves(th[1]), jax.tree.leaves(nominal)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree.leaves(th[2]), jax.tree.leaves(final)):
        np.testing.assert_array_equal(a, b + 1.0)
    assert lo.sources[0]["path"].endswith("thetas/theta_00000000.npz") and lo.sources[0]["step"] == 0
    assert lo.sources[1]["transforms"] == ["zero_output"] and "step" not in lo.sources[2]
    # the transform is part of the learned fingerprint (same file, different optimizer)
    keys = ood_records.learned_shas([lo])["t0"]
    assert keys[0] != keys[1] and keys[1].startswith(keys[0])
    with pytest.raises(ValueError, match="no θ snapshot after 7 outer steps"):
        learned_optimizers.load_learned("t7", [f"{folder}@7"])


def test_learned_sets_name_the_runs_of_the_grids():
    from star import sweep

    assert learned_optimizers.LEARNED_SETS["default"] is learned_optimizers.DEFAULT_LEARNED
    folders = {s.folder(".").as_posix().removeprefix("./") for g in ("indist", "ood_controls", "indist_long")
               for s in sweep.get_grid(g, "cpu").runs()}
    for set_name, rows in learned_optimizers.LEARNED_SETS.items():
        for row, sources in rows.items():
            for src in sources:
                assert learned_optimizers.parse_source(src)[0] in folders, (set_name, row, src)
