"""star.image_data and star.data_sources: idx parser, Fashion-MNIST sources and splits, batching, resizing, CIFAR-10
through tensorflow-datasets (failing fast offline)."""

import gzip
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star import data_sources, image_data


def write_idx(path, array, gz=True):
    """Write ``array`` as an idx file (the MNIST format), optionally gzip-compressed."""
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
             np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}
    array = np.asarray(array)
    be = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    header = bytes([0, 0, codes[np.dtype(be)], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    raw = header + array.astype(be).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)


def write_fashion_mnist(directory, n_train=100, n_test=20, seed=0, gz=True):
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train_labels": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "test_labels": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for key, stem in image_data.FASHION_MNIST_FILES.items():
        write_idx(directory / (stem + (".gz" if gz else "")), arrays[key], gz=gz)
    return arrays


@pytest.fixture
def no_tfds(monkeypatch):
    """Make ``import tensorflow_datasets`` fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)


# --- idx parser ------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dtype,shape", [(np.uint8, (5, 4, 3)), (np.uint8, (7,)), (">i4", (3, 2)),
                                         (">f4", (2, 2, 2)), (">f8", (4,)), (np.int8, (6,))])
def test_read_idx_roundtrip(tmp_path, gz, dtype, shape):
    rng = np.random.default_rng(1)
    arr = (rng.standard_normal(shape) * 100).astype(dtype)
    write_idx(tmp_path / "a.idx", arr, gz=gz)
    out = image_data.read_idx(tmp_path / "a.idx")
    assert out.shape == shape
    np.testing.assert_array_equal(out, arr)
    assert out.dtype.isnative


def test_read_idx_rejects_corrupt_files(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "ok", arr, gz=False)
    raw = (tmp_path / "ok").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="holds 23 bytes"):
        image_data.read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01" + raw[1:])
    with pytest.raises(ValueError, match="not an idx file"):
        image_data.read_idx(tmp_path / "magic")
    (tmp_path / "dtype").write_bytes(raw[:2] + b"\x07" + raw[3:])
    with pytest.raises(ValueError, match="unknown idx data type 0x07"):
        image_data.read_idx(tmp_path / "dtype")


# --- Fashion-MNIST from files ----------------------------------------------------------------


@pytest.mark.parametrize("sub, gz", [("", True), ("fashion-mnist", False)])
def test_fashion_mnist_from_star_data_dir(tmp_path, monkeypatch, sub, gz):
    arrays = write_fashion_mnist(tmp_path / sub if sub else tmp_path, gz=gz)
    monkeypatch.setenv("STAR_DATA_DIR", str(tmp_path))
    ds = image_data.load_fashion_mnist()
    assert str(tmp_path) in ds.source
    # the reference's splits: train[0:80%], train[80%:90%], train[90%:], test
    assert [ds.split(s).num_examples for s in image_data.IMAGE_SPLITS] == [80, 10, 10, 20]
    np.testing.assert_array_equal(ds.train.images[..., 0], arrays["train_images"][:80])
    np.testing.assert_array_equal(ds.inner_valid.labels, arrays["train_labels"][80:90])
    np.testing.assert_array_equal(ds.outer_valid.images[..., 0], arrays["train_images"][90:])
    np.testing.assert_array_equal(ds.test.labels, arrays["test_labels"])
    assert ds.train.images.dtype == jnp.uint8 and ds.train.labels.dtype == jnp.int32
    assert ds.image_shape == (28, 28, 1) and ds.num_classes == 10


def test_sample_batch_is_a_pure_function_of_the_key(tmp_path):
    arrays = write_fashion_mnist(tmp_path, n_train=200)
    split = image_data.load_fashion_mnist(data_dir=tmp_path).train
    key = jax.random.key(3)
    b1 = image_data.sample_batch(split, key, 16)
    b2 = jax.jit(image_data.sample_batch, static_argnums=2)(split, key, 16)
    np.testing.assert_array_equal(b1["image"], b2["image"])
    np.testing.assert_array_equal(b1["label"], b2["label"])
    b3 = image_data.sample_batch(split, jax.random.key(4), 16)
    assert not np.array_equal(b1["label"], b3["label"]) or not np.array_equal(b1["image"], b3["image"])
    # vmap over keys gives the per-key batches
    keys = jax.random.split(key, 3)
    bv = jax.vmap(lambda k: image_data.sample_batch(split, k, 16))(keys)
    np.testing.assert_array_equal(bv["image"][1], image_data.sample_batch(split, keys[1], 16)["image"])
    # float32 in [0, 1] with no mean subtraction: exactly uint8 / 255 of rows of the split
    img = np.asarray(b1["image"])
    assert img.dtype == np.float32 and img.shape == (16, 28, 28, 1)
    assert img.min() >= 0.0 and img.max() <= 1.0
    raw = arrays["train_images"][:160].reshape(160, -1).astype(np.float32) / 255.0
    for row, label in zip(img.reshape(16, -1), np.asarray(b1["label"])):
        match = np.flatnonzero(np.all(np.abs(raw - row) <= 1e-7, axis=1))
        assert match.size == 1 and arrays["train_labels"][match[0]] == label


def test_missing_fashion_mnist_is_a_fast_clear_error(tmp_path, monkeypatch, no_tfds):
    monkeypatch.setattr(image_data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    monkeypatch.setenv("STAR_DATA_DIR", str(tmp_path))
    image_data._from_tfds.cache_clear()
    t0 = time.perf_counter()
    with pytest.raises(data_sources.DataUnavailableError, match="dataset-fashion-mnist") as err:
        image_data.load_fashion_mnist()
    assert time.perf_counter() - t0 < 2.0
    assert "STAR_DATA_DIR" in str(err.value) and "tensorflow-datasets" in str(err.value)
    with pytest.raises(data_sources.DataUnavailableError, match="data_dir="):
        image_data.load_fashion_mnist(data_dir=tmp_path)


def test_offline_tfds_fails_fast_without_downloading(monkeypatch):
    """With tfds installed but no local copy and no network: no download attempt, error in < 2 s."""
    calls = []

    class FakeTfds:
        @staticmethod
        def load(name, split, batch_size, download):
            calls.append(download)
            raise AssertionError(f"Dataset {name} not found locally")

        as_numpy = staticmethod(lambda x: x)

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", FakeTfds)
    monkeypatch.setattr(data_sources, "TFDS_HOST", ("127.0.0.1", 9))  # closed port: refused at once
    image_data._from_tfds.cache_clear()
    t0 = time.perf_counter()
    with pytest.raises(data_sources.DataUnavailableError, match="CIFAR-10 .*tensorflow-datasets"):
        image_data.load_cifar10()
    assert time.perf_counter() - t0 < 2.0
    assert calls == [False]


def test_cifar10_without_tfds_names_the_download(no_tfds):
    image_data._from_tfds.cache_clear()
    t0 = time.perf_counter()
    with pytest.raises(data_sources.DataUnavailableError, match="pip install 'star\\[online\\]'"):
        image_data.load_cifar10()
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.debian_data("dataset-fashion-mnist")
def test_real_debian_fashion_mnist(monkeypatch):
    monkeypatch.delenv("STAR_DATA_DIR", raising=False)
    ds = image_data.load_fashion_mnist()
    assert "/usr/share/datasets/fashion-mnist" in ds.source
    assert [ds.split(s).num_examples for s in image_data.IMAGE_SPLITS] == [48000, 6000, 6000, 10000]
    assert ds.image_shape == (28, 28, 1) and ds.train.images.dtype == jnp.uint8
    # Fashion-MNIST's test set has exactly 1000 images of each of the 10 classes.
    np.testing.assert_array_equal(np.bincount(np.asarray(ds.test.labels)), [1000] * 10)
    assert int(ds.train.images.max()) == 255 and int(ds.train.images.min()) == 0
    # the 8x8 version of ImageMLP_FashionMnist8_Relu32: float32 in [0, 1]
    ds8 = image_data.load_fashion_mnist(image_size=(8, 8))
    assert ds8.image_shape == (8, 8, 1) and ds8.train.images.dtype == jnp.float32
    assert 0.0 <= float(ds8.test.images.min()) and float(ds8.test.images.max()) <= 1.0


# --- resizing ---------------------------------------------------------------------------------


def test_resize_matches_half_pixel_bilinear_closed_form():
    # A horizontal ramp x[w] = w: bilinear sampling at half-pixel centres returns the source
    # coordinate (j + 0.5)·(28/8) − 0.5 itself, which lies inside [0, 27] for 28 → 8.
    ramp = np.broadcast_to(np.arange(28, dtype=np.float32), (1, 28, 28)).copy()[..., None]
    out = image_data.resize_images(ramp, (8, 8))
    expected = (np.arange(8) + 0.5) * 3.5 - 0.5
    np.testing.assert_allclose(out[0, 3, :, 0], expected, rtol=1e-6)
    # constants stay constant, uint8 is scaled by 1/255
    const = np.full((2, 28, 28, 1), 200, np.uint8)
    np.testing.assert_allclose(image_data.resize_images(const, (8, 8)), 200 / 255, rtol=1e-6)
    # and agrees with jax.image.resize's independent implementation (linear, no antialias)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    ref = jax.image.resize(jnp.asarray(x, jnp.float32) / 255, (3, 8, 8, 1), "linear", antialias=False)
    np.testing.assert_allclose(image_data.resize_images(x, (8, 8)), ref, atol=1e-6)


# --- bad input --------------------------------------------------------------------------------


def test_bad_inputs_name_the_argument(tmp_path):
    write_fashion_mnist(tmp_path)
    ds = image_data.load_fashion_mnist(data_dir=tmp_path)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        image_data.sample_batch(ds.train, key, 0)
    for bad in (2.5, 4.0, True, np.bool_(True)):  # floats and bools are rejected even when integral
        with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1; got {bad!r} of type"):
            image_data.sample_batch(ds.train, key, bad)
    assert image_data.sample_batch(ds.train, key, np.int64(3))["label"].shape == (3,)
    with pytest.raises(ValueError, match="key must be a single PRNG key"):
        image_data.sample_batch(ds.train, jax.random.split(key, 2), 4)
    with pytest.raises(ValueError, match="key must be a PRNG key"):
        image_data.sample_batch(ds.train, 0, 4)
    with pytest.raises(ValueError, match="split must be one of train, inner_valid, outer_valid, test; got 'valid'"):
        ds.split("valid")
    with pytest.raises(ValueError, match="image_size must be None or"):
        image_data.load_fashion_mnist(data_dir=tmp_path, image_size=(8,))
    with pytest.raises(ValueError, match="size must be"):
        image_data.resize_images(np.zeros((1, 4, 4, 1)), (0, 2))
