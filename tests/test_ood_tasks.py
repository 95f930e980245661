"""The out-of-distribution task suite (star.tasks.suite): registry, shapes, Adam makes progress, offline errors."""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from star import data
from star.tasks import OOD_SUITE, TASKS, get_task
from star.tasks.es import es_gradient

SMALL_BATCH = 8


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
    opt = optax.adam(lr)

    @jax.jit
    def run(params, batch):
        def step(carry, _):
            p, s = carry
            loss, g = jax.value_and_grad(task.loss)(p, batch)
            u, s = opt.update(g, s, p)
            return (optax.apply_updates(p, u), s), loss
        (p, _), losses = jax.lax.scan(step, (params, opt.init(params)), None, length=30)
        return losses, task.loss(p, batch), task.normalizer(losses[0])

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
    d = data.load_digits()
    assert d.image_shape == (8, 8, 1) and d.num_classes == 10
    n = sum(d.split(s).num_examples for s in data.IMAGE_SPLITS)
    assert n == 1797 and d.test.num_examples == data.DIGITS_TEST_SIZE
    x = np.asarray(d.train.images)
    assert x.dtype == np.float32 and x.min() == 0.0 and x.max() == 1.0
    # pixel values are counts 0..16 of a 4x4 block, divided by 16
    np.testing.assert_allclose(x * 16, np.round(x * 16), atol=1e-5)
    assert sorted(set(np.asarray(d.train.labels).tolist())) == list(range(10))


def test_digits_without_scikit_learn_is_a_fast_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    data._digits_numpy.cache_clear()
    t0 = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="pip install scikit-learn"):
        get_task("digits_mlp32")
    assert time.perf_counter() - t0 < 2.0
    data._digits_numpy.cache_clear()


def test_cifar10_mlp_offline_is_a_fast_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    data._from_tfds.cache_clear()
    t0 = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="CIFAR-10 is only available through tensorflow-datasets"):
        get_task("cifar10_mlp128x128x128")
    assert time.perf_counter() - t0 < 2.0


def test_kjv_missing_is_a_fast_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("STAR_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(data, "BIBLE_PROGRAM", tmp_path / "no-bible")
    t0 = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="bible-kjv"):
        get_task("kjv_lstm")
    assert time.perf_counter() - t0 < 2.0
