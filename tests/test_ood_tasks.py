"""The out-of-distribution task suite (star.tasks.suite): registry, shapes, Adam makes progress, offline errors."""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from star import data_sources, image_data, text_data
from star.tasks import OOD_SUITE, TASKS, get_task
from star.tasks.es import es_gradient

SMALL_BATCH = 8


def adam_on_one_batch(task, params, batch, lr, steps):
    """The losses of ``steps`` Adam steps on one fixed batch (a scan; call it inside jit) and the loss after."""
    opt = optax.adam(lr)

    def step(carry, _):
        p, s = carry
        loss, g = jax.value_and_grad(task.loss)(p, batch)
        u, s = opt.update(g, s, p)
        return (optax.apply_updates(p, u), s), loss
    (p, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=steps)
    return losses, task.loss(p, batch)


def test_suite_has_16_described_tasks_with_counterparts():
    assert len(OOD_SUITE) == 16 and len(set(OOD_SUITE)) == 16
    for name in OOD_SUITE:
        spec = TASKS[name]
        assert spec.description and spec.reference and spec.data, name
    kinds = " ".join(TASKS[n].description for n in OOD_SUITE)
    for word in ("MLP", "ConvNet", "auto-encoder", "VAE", "LSTM", "transformer", "ES gradients"):
        assert word in kinds, word
    assert {TASKS[n].data for n in OOD_SUITE} >= {"Fashion-MNIST (Debian dataset-fashion-mnist)",
                                                   "UCI handwritten digits 8x8 (scikit-learn)",
                                                   "King James Bible bytes (Debian bible-kjv)"}


@pytest.mark.parametrize("name", OOD_SUITE)
def test_shapes_and_adam_lowers_the_loss_on_a_fixed_batch(name):
    """One compilation per task: init, a batch, and 30 Adam steps on that batch inside one jit."""
    task = get_task(name, batch_size=SMALL_BATCH)
    assert task.batch_size == SMALL_BATCH and task.name == name
    params = task.init(jax.random.key(0))
    batch = task.sample_batch(jax.random.key(1))
    leading = {int(np.shape(x)[0]) for x in jax.tree.leaves(batch) if np.ndim(x) >= 1
               and not jnp.issubdtype(getattr(x, "dtype", np.float32), jax.dtypes.prng_key)}
    assert leading == {SMALL_BATCH}, leading
    lr = 3e-2 if name.startswith("es_") else 3e-3

    @jax.jit
    def run(params, batch):
        losses, last = adam_on_one_batch(task, params, batch, lr, 30)
        return losses, last, task.normalizer(losses[0])

    losses, last, norm0 = run(params, batch)
    assert np.all(np.isfinite(losses)) and np.shape(losses[0]) == ()
    # ES gradients (one antithetic pair) are far noisier than backpropagation: ask for less progress
    factor = 0.99 if name.startswith("es_") else 0.9
    assert float(last) < factor * float(losses[0]), (name, float(losses[0]), float(last))
    assert 0.0 <= float(norm0) <= float(losses[0]) + 1e-6


def test_es_gradient_is_unbiased_on_a_quadratic():
    """E[ES estimate] = the gradient for a quadratic (antithetic pairs cancel the curvature term)."""
    a = jnp.arange(1.0, 6.0)
    loss = lambda p: 0.5 * jnp.sum(a * p["x"] ** 2) + jnp.sum(p["y"])  # noqa: E731
    params = {"x": jnp.ones(5), "y": jnp.zeros(3)}
    g = es_gradient(loss, params, jax.random.key(0), 20000, 0.01)
    # per coordinate the estimate (g.eps) eps_j has variance |g|^2 + g_j^2 <= 83: std 0.064 over 20000 pairs
    np.testing.assert_allclose(g["x"], a, atol=0.3)
    np.testing.assert_allclose(g["y"], 1.0, atol=0.3)
    assert np.max(np.abs(g["x"] - a)) > 1e-4  # an estimate, not the exact gradient


def test_es_task_gradient_is_the_es_estimate_and_its_value_the_loss():
    task = get_task("es_fmnist8_mlp32", batch_size=SMALL_BATCH)
    params = task.init(jax.random.key(0))
    batch = task.sample_batch(jax.random.key(3))
    value, grad = jax.value_and_grad(task.loss)(params, batch)
    assert float(value) == pytest.approx(float(task.base.loss(params, batch["batch"])), rel=1e-6)
    expected = es_gradient(lambda p: task.base.loss(p, batch["batch"]), params, batch["es_key"], 1, 0.01)
    for a, b in zip(jax.tree.leaves(grad), jax.tree.leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    true = jax.grad(task.base.loss)(params, batch["batch"])
    assert not np.allclose(jax.tree.leaves(grad)[0], jax.tree.leaves(true)[0])  # not backprop


def test_digits_are_the_real_uci_images():
    d = image_data.load_digits()
    assert d.image_shape == (8, 8, 1) and d.num_classes == 10
    n = sum(d.split(s).num_examples for s in image_data.IMAGE_SPLITS)
    assert n == 1797 and d.test.num_examples == image_data.DIGITS_TEST_SIZE
    x = np.asarray(d.train.images)
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    # pixel values are counts 0..16 of a 4x4 block, divided by 16
    np.testing.assert_allclose(x * 16, np.round(x * 16), atol=1e-5)
    assert sorted(set(np.asarray(d.train.labels).tolist())) == list(range(10))


def test_digits_without_scikit_learn_is_a_fast_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    image_data._digits_numpy.cache_clear()
    t0 = time.perf_counter()
    with pytest.raises(data_sources.DataUnavailableError, match="pip install scikit-learn"):
        get_task("digits_mlp32")
    assert time.perf_counter() - t0 < 2.0
    image_data._digits_numpy.cache_clear()


def test_kjv_missing_is_a_fast_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("STAR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(text_data, "BIBLE_PROGRAM", tmp_path / "no-bible")
    t0 = time.perf_counter()
    with pytest.raises(data_sources.DataUnavailableError, match="bible-kjv"):
        get_task("kjv_lstm")
    assert time.perf_counter() - t0 < 2.0


# --- LM1B tasks (outside the suite; tensorflow-datasets online) -------------------------------

LM1B_TASKS = ("lm1b_lstm", "lm1b_gru", "lm1b_transformer")


def test_lm1b_tasks_are_registered_outside_the_suite():
    for name in LM1B_TASKS:
        spec = TASKS[name]
        assert name not in OOD_SUITE and spec.data == "LM1B bytes (tensorflow-datasets, online)"
        assert spec.description.startswith("LM1B bytes") and not spec.uses_data_dir
    assert TASKS["lm1b_lstm"].reference.startswith("RNNLM_lm1bbytes_Patch32_LSTM128_Embed64")
    assert TASKS["lm1b_gru"].reference.startswith("RNNLM_lm1bbytes_Patch32_GRU128_Embed64")
    assert TASKS["lm1b_transformer"].reference.startswith("TransformerLM_LM1B_5layer_32width")
    with pytest.raises(ValueError, match="data_dir is not used by task 'lm1b_lstm'"):
        get_task("lm1b_lstm", data_dir="/tmp")


@pytest.fixture
def without_tfds(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    text_data._lm1b_bytes.cache_clear()
    yield
    text_data._lm1b_bytes.cache_clear()


@pytest.mark.parametrize("name", LM1B_TASKS)
def test_lm1b_tasks_offline_are_a_fast_clear_error(without_tfds, name):
    t0 = time.perf_counter()
    with pytest.raises(data_sources.DataUnavailableError, match="LM1B .*only available through tensorflow-datasets"):
        get_task(name)
    assert time.perf_counter() - t0 < 10.0


def test_lm1b_task_on_this_machine_fails_fast_offline():
    """Unpatched: whatever this machine has (tfds or not), offline building lm1b_lstm fails at once."""
    if data_sources.host_reachable(text_data.LM1B_HOST):
        pytest.skip("online: building lm1b_lstm would download LM1B")
    text_data._lm1b_bytes.cache_clear()
    t0 = time.perf_counter()
    try:
        task = get_task("lm1b_lstm")
    except data_sources.DataUnavailableError as err:
        assert "tensorflow-datasets" in str(err)
    else:  # a local tfds copy of lm1b
        assert task.corpus.train.shape[0] > 0
    assert time.perf_counter() - t0 < 10.0


def _fake_lm1b(monkeypatch):
    class FakeTfds:
        @staticmethod
        def load(name, split, batch_size, download):
            return {"text": np.array([b"one two three four five six seven eight ."] * 4, dtype=object)}

        as_numpy = staticmethod(lambda x: x)

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", FakeTfds)
    text_data._lm1b_bytes.cache_clear()


def test_ood_cli_with_lm1b_offline_stops_before_any_work(without_tfds, monkeypatch, tmp_path, capsys):
    from star import learned_optimizers, ood_suite
    from star.__main__ import main

    work = []
    monkeypatch.setattr(learned_optimizers, "load_learned", lambda *a, **k: work.append("load_learned"))
    monkeypatch.setattr(ood_suite, "run_task", lambda *a, **k: work.append("run_task"))
    out = tmp_path / "out"
    t0 = time.perf_counter()
    assert main(["ood", "--tasks", "fmnist8_mlp32,lm1b_lstm", "--out", str(out), "--no-progress"]) == 2
    assert time.perf_counter() - t0 < 10.0
    err = capsys.readouterr().err
    assert "error: task lm1b_lstm: LM1B" in err and "tensorflow-datasets" in err
    assert work == [] and not out.exists()
    # the same command goes on to the work when the data are there (a tiny fake LM1B)
    _fake_lm1b(monkeypatch)
    record = {"wall_s": {"total": 0.0}, "adam": {"best_learning_rate": 1e-3}, "optimizers": {}}
    monkeypatch.setattr(ood_suite, "run_task", lambda name, *a, **k: work.append(name) or record)
    assert main(["ood", "--tasks", "lm1b_lstm", "--out", str(out), "--no-progress",
                 "--no-learned", "star", "--no-learned", "star_wd0.5", "--no-learned", "hyperparam",
                 "--no-learned", "blackbox"]) == 0
    assert work == ["lm1b_lstm"]
    text_data._lm1b_bytes.cache_clear()


# --- the GRU cell (in RNN_CELLS, used by lm1b_gru only) ---------------------------------------


def test_gru_language_model_shapes_and_adam_lowers_the_loss():
    from star.tasks.language import RNNLM, LanguageModelTask

    text = np.frombuffer(b"the quick brown fox jumps over the lazy dog\n" * 8, dtype=np.uint8)
    corpus = text_data.TextCorpus(train=jnp.asarray(text), test=jnp.asarray(text[:100]), name="tiny")
    task = LanguageModelTask(corpus=corpus, model=RNNLM("gru", 8, 4), name="tiny_gru", batch_size=4, seq_len=8)
    params = task.init(jax.random.key(0))
    shapes = jax.tree.map(lambda x: tuple(x.shape), params)
    gate_in, gate_h = {"kernel": (4, 8), "bias": (8,)}, {"kernel": (8, 8)}
    assert shapes == {"Embed_0": {"embedding": (256, 4)}, "Dense_0": {"kernel": (8, 256), "bias": (256,)},
                      "GRUCell_0": {"ir": gate_in, "iz": gate_in, "in": gate_in, "hr": gate_h, "hz": gate_h,
                                    "hn": {"kernel": (8, 8), "bias": (8,)}}}
    batch = task.sample_batch(jax.random.key(1))
    assert batch["inputs"].shape == batch["targets"].shape == (4, 8)

    run = jax.jit(lambda params, lr: adam_on_one_batch(task, params, batch, lr, 20))
    losses, last = run(params, 1e-2)
    first = float(losses[0])
    assert first == pytest.approx(np.log(256), rel=0.05)  # near-uniform logits at initialization
    assert float(last) < 0.8 * first, (first, float(last))
    losses0, last0 = run(params, 0.0)  # the check fails without training: no step, no decrease
    assert not float(last0) < 0.8 * float(losses0[0])
    with pytest.raises(ValueError, match="cell must be one of"):
        RNNLM("gru2", 8, 4).init(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))
