"""star.tasks: the meta-loss normalizer, architectures, initialization statistics, the registry."""

import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from star import data_sources, image_data
from star.tasks import (
    TASKS,
    ConvNet,
    ImageClassificationTask,
    Task,
    clip_normalizer,
    get_task,
    list_tasks,
    meta_loss_max,
    truncated_normal_fan_in,
)
from star.tasks.image import TRUNCATED_NORMAL_STD

LN10 = math.log(10.0)


@pytest.fixture(scope="module")
def fmnist_mlp():
    return get_task("fmnist_mlp")


# --- normalizer (the book's appendix) --------------------------------------------------------


def test_normalizer_clips_and_maps_nonfinite_to_the_maximum():
    top = 1.5 * LN10
    assert meta_loss_max(10) == pytest.approx(top)
    assert meta_loss_max(1000) == pytest.approx(1.5 * math.log(1000))
    losses = jnp.array([-1.0, 0.0, 0.5, 2.3, top, 3.5, 425.0, jnp.nan, jnp.inf, -jnp.inf])
    out = np.asarray(clip_normalizer(losses, 10))
    np.testing.assert_allclose(out, [0.0, 0.0, 0.5, 2.3, top, top, top, top, top, top], rtol=1e-6)
    assert out.dtype == np.float32


@settings(max_examples=200, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=32), st.integers(2, 2000))
def test_normalizer_range_property(loss, num_classes):
    top = np.float32(1.5 * math.log(num_classes))
    out = float(clip_normalizer(jnp.float32(loss), num_classes))
    assert 0.0 <= out <= top * (1 + 1e-6)
    if np.isfinite(loss) and 0.0 <= loss <= top:
        # the identity inside the admissible range (XLA on CPU flushes float32 subnormals to 0)
        assert out == np.float32(loss) or (abs(loss) < np.finfo(np.float32).tiny and out == 0.0)
    if not np.isfinite(loss):
        assert out == pytest.approx(top)


def test_normalizer_is_jittable_and_differentiable_inside_the_range():
    g = jax.grad(lambda x: clip_normalizer(x, 10))(jnp.float32(1.0))
    assert float(g) == 1.0
    assert float(jax.grad(lambda x: clip_normalizer(x, 10))(jnp.float32(10.0))) == 0.0


# --- architectures and initialization -------------------------------------------------------


def test_fmnist_mlp_architecture_and_loss_match_a_numpy_forward_pass(fmnist_mlp):
    task = fmnist_mlp
    assert isinstance(task, Task)
    params = task.init(jax.random.key(0))
    shapes = {k: {n: v.shape for n, v in layer.items()} for k, layer in params.items()}
    assert shapes == {"Dense_0": {"kernel": (784, 128), "bias": (128,)},
                      "Dense_1": {"kernel": (128, 128), "bias": (128,)},
                      "Dense_2": {"kernel": (128, 10), "bias": (10,)}}
    assert task.num_params(params) == 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    batch = task.sample_batch(jax.random.key(1))
    assert batch["image"].shape == (128, 28, 28, 1)
    # independent forward pass in float64 numpy: 784-128-128-10 with ReLU, softmax cross-entropy
    p = jax.tree.map(lambda x: np.asarray(x, np.float64), params)
    h = np.asarray(batch["image"], np.float64).reshape(128, 784)
    h = np.maximum(h @ p["Dense_0"]["kernel"] + p["Dense_0"]["bias"], 0)
    h = np.maximum(h @ p["Dense_1"]["kernel"] + p["Dense_1"]["bias"], 0)
    logits = h @ p["Dense_2"]["kernel"] + p["Dense_2"]["bias"]
    m = logits.max(1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(1, keepdims=True)))[:, 0]
    expected = np.mean(lse - logits[np.arange(128), np.asarray(batch["label"])])
    assert float(task.loss(params, batch)) == pytest.approx(expected, rel=1e-5)


def test_haiku_style_initialization_statistics(fmnist_mlp):
    """Weights: N(0,1) truncated to ±2, times 1/√fan_in (std 0.8796/√fan_in); biases 0."""
    params = fmnist_mlp.init(jax.random.key(42))
    for name, fan_in in [("Dense_0", 784), ("Dense_1", 128), ("Dense_2", 128)]:
        w = np.asarray(params[name]["kernel"], np.float64) * math.sqrt(fan_in)
        n = w.size
        assert np.all(np.abs(w) <= 2.0 + 1e-5)
        # sample std of n truncated normals: standard error ≈ std/√(2n); allow 5 standard errors
        assert w.std() == pytest.approx(TRUNCATED_NORMAL_STD, abs=5 * 0.88 / math.sqrt(2 * n))
        assert abs(w.mean()) < 5 * 0.88 / math.sqrt(n)
        np.testing.assert_array_equal(params[name]["bias"], 0.0)
    # conv kernels use fan_in = kh·kw·c_in
    k = np.asarray(truncated_normal_fan_in(jax.random.key(1), (3, 3, 32, 64)), np.float64)
    assert np.abs(k).max() <= 2 / math.sqrt(288) + 1e-6
    assert k.std() * math.sqrt(288) == pytest.approx(TRUNCATED_NORMAL_STD, abs=5 * 0.88 / math.sqrt(2 * k.size))


def test_init_depends_only_on_the_key(fmnist_mlp):
    a = fmnist_mlp.init(jax.random.key(7))
    b = fmnist_mlp.init(jax.random.key(7))
    c = fmnist_mlp.init(jax.random.key(8))
    assert all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert not np.array_equal(a["Dense_0"]["kernel"], c["Dense_0"]["kernel"])


def test_convnet_shapes_for_cifar_and_fashion_mnist_inputs():
    net = ConvNet((32, 64, 64), 10)
    for shape, c_in in [((2, 32, 32, 3), 3), ((2, 28, 28, 1), 1)]:
        x = jax.ShapeDtypeStruct(shape, jnp.float32)
        variables = jax.eval_shape(net.init, jax.random.key(0), x)  # shapes only, nothing computed
        params = variables["params"]
        assert params["Conv_0"]["kernel"].shape == (3, 3, c_in, 32)
        assert params["Conv_1"]["kernel"].shape == (3, 3, 32, 64)
        assert params["Conv_2"]["kernel"].shape == (3, 3, 64, 64)
        assert params["Dense_0"]["kernel"].shape == (64, 10)
        n = sum(math.prod(x.shape) for x in jax.tree.leaves(params))
        assert n == (9 * c_in + 1) * 32 + (288 + 1) * 64 + (576 + 1) * 64 + 65 * 10
        logits, inter = jax.eval_shape(
            lambda v, x: net.apply(v, x, capture_intermediates=True), variables, x)
        conv0 = inter["intermediates"]["Conv_0"]["__call__"][0]
        assert conv0.shape == (2, shape[1] // 2, shape[2] // 2, 32)  # stride 2, SAME padding
        conv2 = inter["intermediates"]["Conv_2"]["__call__"][0]
        assert conv2.shape == (2, shape[1] // 2, shape[2] // 2, 64)  # strides 1 keep the size
        assert logits.shape == (2, 10)


def test_global_average_pooling_makes_the_logits_translation_invariant():
    """Convolutions are translation-equivariant and the global mean is invariant, so a pattern on
    a zero background, moved by an even offset (the stride-2 grid) and kept away from the border,
    gives the same logits."""
    net = ConvNet((4, 4, 4), 3)
    variables = net.init(jax.random.key(0), jnp.zeros((1, 28, 28, 1)))
    img = np.zeros((1, 28, 28, 1), np.float32)
    img[0, 8:14, 8:14, 0] = np.arange(36).reshape(6, 6) / 36
    shifted = np.roll(img, (2, 4), axis=(1, 2))
    logits = jax.jit(net.apply)(variables, np.concatenate([img, shifted]))
    assert np.abs(logits[0]).max() > 1e-3  # a non-trivial output
    np.testing.assert_allclose(logits[0], logits[1], rtol=1e-5, atol=1e-6)


# --- the task as a pytree, jit and vmap -----------------------------------------------------


def test_task_is_a_pytree_usable_under_jit_and_vmap(fmnist_mlp):
    task = fmnist_mlp
    leaves = jax.tree.leaves(task)
    assert any(leaf.shape == (48000, 28, 28, 1) for leaf in leaves)  # data are leaves, not constants
    params = task.init(jax.random.key(0))

    @jax.jit
    def batch_losses(task, params, keys):
        return jax.vmap(lambda k: task.normalizer(task.loss(params, task.sample_batch(k))))(keys)

    keys = jax.random.split(jax.random.key(1), 3)
    out = batch_losses(task, params, keys)
    expected = [float(task.loss(params, task.sample_batch(k))) for k in keys]
    np.testing.assert_allclose(out, expected, rtol=1e-5)
    assert len({float(x) for x in out}) == 3


def test_registry_lists_the_paper_tasks_and_the_offline_substitute():
    assert {"cifar10_conv", "fmnist8_mlp32", "fmnist_conv", "fmnist_mlp"} <= set(list_tasks())
    assert list_tasks() == sorted(TASKS)
    assert TASKS["fmnist_mlp"].reference == "ImageMLP_FashionMnist_Relu128x128"
    assert TASKS["cifar10_conv"].reference == "Conv_Cifar10_32x64x64"
    assert "OFFLINE SUBSTITUTE" in TASKS["fmnist_conv"].description
    small = get_task("fmnist8_mlp32", batch_size=16)
    assert small.image_shape == (8, 8, 1) and small.batch_size == 16
    assert small.sample_batch(jax.random.key(0))["image"].shape == (16, 8, 8, 1)
    assert isinstance(small, ImageClassificationTask)


def test_registry_bad_input():
    with pytest.raises(ValueError, match="name must be one of cifar10_conv, .*; got 'mnist'"):
        get_task("mnist")
    with pytest.raises(ValueError, match="batch_size must be a positive integer; got 0"):
        get_task("fmnist_mlp", batch_size=0)
    with pytest.raises(ValueError, match="data_dir is not used by task 'cifar10_conv'"):
        get_task("cifar10_conv", data_dir="/tmp")
    with pytest.raises(ValueError, match="key must be a PRNG key"):
        get_task("fmnist8_mlp32").init(3)
    with pytest.raises(ValueError, match="num_classes must be an integer >= 2"):
        meta_loss_max(1)


@pytest.mark.parametrize("name, match", [
    ("cifar10_conv", "fmnist_conv"),  # the message names the offline substitute
    ("cifar10_mlp128x128x128", "CIFAR-10 is only available through tensorflow-datasets"),
])
def test_cifar10_tasks_offline_are_fast_clear_errors(monkeypatch, name, match):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    image_data._from_tfds.cache_clear()
    t0 = time.perf_counter()
    with pytest.raises(data_sources.DataUnavailableError, match=match):
        get_task(name)
    assert time.perf_counter() - t0 < 2.0
