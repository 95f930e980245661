"""star.train: determinism, learning on real Fashion-MNIST, optax extra args, evaluation, bad input."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from star.tasks import get_task
from star.train import batch_at, evaluate, train, train_keys, train_step


@pytest.fixture(scope="module")
def small_task():
    return get_task("fmnist8_mlp32")


def test_same_key_same_curve_independent_of_chunking(small_task):
    opt = optax.adam(3e-3)
    a = train(small_task, opt, 60, jax.random.key(0), chunk_size=30, progress=False)
    b = train(small_task, opt, 60, jax.random.key(0), chunk_size=60, progress=False)
    c = train(small_task, opt, 60, jax.random.key(1), chunk_size=60, progress=False)
    assert a.losses.shape == (60,) and a.losses.dtype == np.float32
    np.testing.assert_array_equal(a.losses, b.losses)  # bit for bit
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params)):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a.losses, c.losses)


def test_adam_learns_the_fashion_mnist_mlp():
    """ImageMLP_FashionMnist_Relu128x128 with Adam(1e-3): from ln 10 to well below 1 in 300 steps."""
    task = get_task("fmnist_mlp")
    result = train(task, optax.adam(1e-3), 300, jax.random.key(0), progress=False)
    assert abs(result.losses[0] - np.log(10)) < 0.2  # near-uniform predictions at init
    assert result.losses[-50:].mean() < 0.7
    ev = evaluate(task, result.params)
    assert ev["num_examples"] == 10000
    assert ev["accuracy"] > 0.75 and ev["loss"] < 0.75


class _SeenValue(NamedTuple):
    value: jax.Array


def _records_value():
    """An extra-args optimizer that needs ``value`` (like STAR) and keeps the last one in its state."""

    def init(params):
        return _SeenValue(jnp.float32(jnp.nan))

    def update(updates, state, params=None, *, value, **extra):
        return jax.tree.map(lambda g: -0.01 * g, updates), _SeenValue(jnp.asarray(value, jnp.float32))

    return optax.GradientTransformationExtraArgs(init, update)


def test_the_loss_is_passed_as_value_and_sgd_is_exact(small_task):
    result = train(small_task, _records_value(), 7, jax.random.key(2), progress=False)
    assert float(result.opt_state.value) == result.losses[-1]  # value = loss of the last step
    # one step of SGD through train_step moves params by exactly -lr * gradient
    params = small_task.init(jax.random.key(0))
    batch = small_task.sample_batch(jax.random.key(1))
    sgd = optax.sgd(0.1)
    new, _, loss = train_step(small_task, sgd, params, sgd.init(params), batch)
    loss_ref, grads = jax.value_and_grad(small_task.loss)(params, batch)
    assert float(loss) == float(loss_ref)
    for p, n, g in zip(jax.tree.leaves(params), jax.tree.leaves(new), jax.tree.leaves(grads)):
        np.testing.assert_allclose(n, p - 0.1 * g, rtol=1e-6, atol=1e-7)


def test_a_diverging_optimizer_gives_a_non_finite_or_huge_curve_that_the_normalizer_caps(small_task):
    result = train(small_task, optax.sgd(1e4), 20, jax.random.key(0), progress=False)
    late = result.losses[-5:]
    assert not np.all(np.isfinite(late) & (late < 3.0))
    capped = np.asarray(small_task.normalizer(jnp.asarray(result.losses)))
    assert np.all(capped <= 1.5 * np.log(10) + 1e-6) and np.all(capped >= 0)


def test_evaluate_is_exact_for_any_chunk_size(small_task):
    params = small_task.init(jax.random.key(3))
    full = evaluate(small_task, params, "test", chunk_size=10000)
    ragged = evaluate(small_task, params, "test", chunk_size=777)  # 10000 = 12·777 + 676
    assert ragged["loss"] == pytest.approx(full["loss"], rel=1e-5)
    assert ragged["accuracy"] == full["accuracy"]
    split = small_task.data.test
    logits = small_task.logits(params, split.images)
    acc = float(jnp.mean(jnp.argmax(logits, -1) == split.labels))
    assert full["accuracy"] == pytest.approx(acc, abs=1e-6)
    val = evaluate(small_task, params, "outer_valid")
    assert val["num_examples"] == 6000


@pytest.mark.parametrize("kwargs, match", [
    ({"num_steps": 0}, "num_steps must be an integer >= 1; got 0"),
    ({"num_steps": -5}, "num_steps must be an integer >= 1; got -5"),
    ({"num_steps": 2.5}, "num_steps must be an integer >= 1; got 2.5"),
    ({"num_steps": True}, "num_steps must be an integer >= 1; got True"),
    ({"chunk_size": 0}, "chunk_size must be an integer >= 1; got 0"),
    ({"key": 0}, "key must be a PRNG key"),
    ({"optimizer": "adam"}, "optimizer must be an optax GradientTransformation"),
    ({"task": "fmnist_mlp"}, "task must implement the Task protocol"),
])
def test_train_bad_input(small_task, kwargs, match):
    args = {"task": small_task, "optimizer": optax.adam(1e-3), "num_steps": 3, "key": jax.random.key(0)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        train(**args, progress=False)


def test_evaluate_bad_input(small_task):
    params = small_task.init(jax.random.key(0))
    with pytest.raises(ValueError, match="split must be one of train, inner_valid, outer_valid, test"):
        evaluate(small_task, params, "validation")
    with pytest.raises(ValueError, match="chunk_size must be an integer >= 1; got -1"):
        evaluate(small_task, params, chunk_size=-1)


def test_optimizer_factory_with_traced_meta_params_matches_and_reuses_the_compilation(small_task):
    """train(factory, meta_params=lr) equals train(factory(lr)) and compiles once for all lr."""
    factory = lambda lr: optax.adam(lr)  # noqa: E731
    key = jax.random.key(5)
    before = _compiled_chunks()
    runs = [train(small_task, factory, 12, key, meta_params=lr, chunk_size=12, progress=False)
            for lr in (1e-3, 1e-2)]
    assert _compiled_chunks() - before == 1  # one compilation for both learning rates
    direct = train(small_task, optax.adam(1e-2), 12, key, chunk_size=12, progress=False)
    np.testing.assert_allclose(runs[1].losses, direct.losses, rtol=1e-6)
    assert not np.allclose(runs[0].losses[1:], runs[1].losses[1:])
    with pytest.raises(ValueError, match="optimizer must be a function meta_params"):
        train(small_task, optax.adam(1e-3), 3, key, meta_params=1e-3, progress=False)


def _compiled_chunks():
    from star import train as train_module

    return train_module._run_chunk._cache_size()


def test_runs_of_any_length_share_one_compilation(small_task):
    opt = optax.sgd(0.05)
    before = _compiled_chunks()
    short = train(small_task, opt, 1, jax.random.key(9), chunk_size=16, progress=False)
    long = train(small_task, opt, 37, jax.random.key(9), chunk_size=16, progress=False)
    assert _compiled_chunks() - before == 1
    assert short.losses.shape == (1,) and long.losses.shape == (37,)
    assert np.all(np.isfinite(long.losses))
    assert short.losses[0] == long.losses[0]
    # the state after one step equals one explicit train_step from the same initialization
    init_key, data_key = train_keys(jax.random.key(9))
    params = small_task.init(init_key)
    batch = batch_at(small_task, data_key, 0)
    expected, _, _ = train_step(small_task, opt, params, opt.init(params), batch)
    for x, y in zip(jax.tree.leaves(short.params), jax.tree.leaves(expected)):
        np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
