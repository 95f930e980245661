"""star.data: idx parser, Fashion-MNIST sources and splits, batching, resizing, the KJV corpus."""

import gzip
import socket
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star import data


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
    for key, stem in data.FASHION_MNIST_FILES.items():
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
    out = data.read_idx(tmp_path / "a.idx")
    assert out.shape == shape
    np.testing.assert_array_equal(out, arr)
    assert out.dtype.isnative


def test_read_idx_rejects_corrupt_files(tmp_path):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "ok", arr, gz=False)
    raw = (tmp_path / "ok").read_bytes()
    (tmp_path / "short").write_bytes(raw[:-1])
    with pytest.raises(ValueError, match="holds 23 bytes"):
        data.read_idx(tmp_path / "short")
    (tmp_path / "magic").write_bytes(b"\x01" + raw[1:])
    with pytest.raises(ValueError, match="not an idx file"):
        data.read_idx(tmp_path / "magic")
    (tmp_path / "dtype").write_bytes(raw[:2] + b"\x07" + raw[3:])
    with pytest.raises(ValueError, match="unknown idx data type 0x07"):
        data.read_idx(tmp_path / "dtype")


# --- Fashion-MNIST from files ----------------------------------------------------------------


@pytest.mark.parametrize("sub, gz", [("", True), ("fashion-mnist", False)])
def test_fashion_mnist_from_star_data_dir(tmp_path, monkeypatch, sub, gz):
    arrays = write_fashion_mnist(tmp_path / sub if sub else tmp_path, gz=gz)
    monkeypatch.setenv("STAR_DATA_DIR", str(tmp_path))
    ds = data.load_fashion_mnist()
    assert str(tmp_path) in ds.source
    # the reference's splits: train[0:80%], train[80%:90%], train[90%:], test
    assert [ds.split(s).num_examples for s in data.IMAGE_SPLITS] == [80, 10, 10, 20]
    np.testing.assert_array_equal(ds.train.images[..., 0], arrays["train_images"][:80])
    np.testing.assert_array_equal(ds.inner_valid.labels, arrays["train_labels"][80:90])
    np.testing.assert_array_equal(ds.outer_valid.images[..., 0], arrays["train_images"][90:])
    np.testing.assert_array_equal(ds.test.labels, arrays["test_labels"])
    assert ds.train.images.dtype == jnp.uint8 and ds.train.labels.dtype == jnp.int32
    assert ds.image_shape == (28, 28, 1) and ds.num_classes == 10


def test_sample_batch_is_a_pure_function_of_the_key(tmp_path):
    arrays = write_fashion_mnist(tmp_path, n_train=200)
    split = data.load_fashion_mnist(data_dir=tmp_path).train
    key = jax.random.key(3)
    b1 = data.sample_batch(split, key, 16)
    b2 = jax.jit(data.sample_batch, static_argnums=2)(split, key, 16)
    np.testing.assert_array_equal(b1["image"], b2["image"])
    np.testing.assert_array_equal(b1["label"], b2["label"])
    b3 = data.sample_batch(split, jax.random.key(4), 16)
    assert not np.array_equal(b1["label"], b3["label"]) or not np.array_equal(b1["image"], b3["image"])
    # vmap over keys gives the per-key batches
    keys = jax.random.split(key, 3)
    bv = jax.vmap(lambda k: data.sample_batch(split, k, 16))(keys)
    np.testing.assert_array_equal(bv["image"][1], data.sample_batch(split, keys[1], 16)["image"])
    # float32 in [0, 1] with no mean subtraction: exactly uint8 / 255 of rows of the split
    img = np.asarray(b1["image"])
    assert img.dtype == np.float32 and img.shape == (16, 28, 28, 1)
    assert img.min() >= 0.0 and img.max() <= 1.0
    raw = arrays["train_images"][:160].reshape(160, -1).astype(np.float32) / 255.0
    for row, label in zip(img.reshape(16, -1), np.asarray(b1["label"])):
        match = np.flatnonzero(np.all(np.abs(raw - row) <= 1e-7, axis=1))
        assert match.size == 1 and arrays["train_labels"][match[0]] == label


def test_missing_fashion_mnist_is_a_fast_clear_error(tmp_path, monkeypatch, no_tfds):
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST_DIR", tmp_path / "absent")
    monkeypatch.setenv("STAR_DATA_DIR", str(tmp_path))
    data._from_tfds.cache_clear()
    t0 = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="dataset-fashion-mnist") as err:
        data.load_fashion_mnist()
    assert time.perf_counter() - t0 < 2.0
    assert "STAR_DATA_DIR" in str(err.value) and "tensorflow-datasets" in str(err.value)
    with pytest.raises(data.DataUnavailableError, match="data_dir="):
        data.load_fashion_mnist(data_dir=tmp_path)


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
    monkeypatch.setattr(data, "TFDS_HOST", ("127.0.0.1", 9))  # closed port: refused at once
    data._from_tfds.cache_clear()
    t0 = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="CIFAR-10 .*tensorflow-datasets"):
        data.load_cifar10()
    assert time.perf_counter() - t0 < 2.0
    assert calls == [False]


def test_cifar10_without_tfds_names_the_download(no_tfds):
    data._from_tfds.cache_clear()
    t0 = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="pip install 'star\\[online\\]'"):
        data.load_cifar10()
    assert time.perf_counter() - t0 < 2.0


@pytest.mark.debian_data("dataset-fashion-mnist")
def test_real_debian_fashion_mnist(monkeypatch):
    monkeypatch.delenv("STAR_DATA_DIR", raising=False)
    ds = data.load_fashion_mnist()
    assert "/usr/share/datasets/fashion-mnist" in ds.source
    assert [ds.split(s).num_examples for s in data.IMAGE_SPLITS] == [48000, 6000, 6000, 10000]
    assert ds.image_shape == (28, 28, 1) and ds.train.images.dtype == jnp.uint8
    # Fashion-MNIST's test set has exactly 1000 images of each of the 10 classes.
    np.testing.assert_array_equal(np.bincount(np.asarray(ds.test.labels)), [1000] * 10)
    assert int(ds.train.images.max()) == 255 and int(ds.train.images.min()) == 0
    # the 8x8 version of ImageMLP_FashionMnist8_Relu32: float32 in [0, 1]
    ds8 = data.load_fashion_mnist(image_size=(8, 8))
    assert ds8.image_shape == (8, 8, 1) and ds8.train.images.dtype == jnp.float32
    assert 0.0 <= float(ds8.test.images.min()) and float(ds8.test.images.max()) <= 1.0


# --- resizing ---------------------------------------------------------------------------------


def test_resize_matches_half_pixel_bilinear_closed_form():
    # A horizontal ramp x[w] = w: bilinear sampling at half-pixel centres returns the source
    # coordinate (j + 0.5)·(28/8) − 0.5 itself, which lies inside [0, 27] for 28 → 8.
    ramp = np.broadcast_to(np.arange(28, dtype=np.float32), (1, 28, 28)).copy()[..., None]
    out = data.resize_images(ramp, (8, 8))
    expected = (np.arange(8) + 0.5) * 3.5 - 0.5
    np.testing.assert_allclose(out[0, 3, :, 0], expected, rtol=1e-6)
    # constants stay constant, uint8 is scaled by 1/255
    const = np.full((2, 28, 28, 1), 200, np.uint8)
    np.testing.assert_allclose(data.resize_images(const, (8, 8)), 200 / 255, rtol=1e-6)
    # and agrees with jax.image.resize's independent implementation (linear, no antialias)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 28, 28, 1), dtype=np.uint8)
    ref = jax.image.resize(jnp.asarray(x, jnp.float32) / 255, (3, 8, 8, 1), "linear", antialias=False)
    np.testing.assert_allclose(data.resize_images(x, (8, 8)), ref, atol=1e-6)


# --- bad input --------------------------------------------------------------------------------


def test_bad_inputs_name_the_argument(tmp_path):
    write_fashion_mnist(tmp_path)
    ds = data.load_fashion_mnist(data_dir=tmp_path)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1; got 0"):
        data.sample_batch(ds.train, key, 0)
    for bad in (2.5, 4.0, True, np.bool_(True)):  # floats and bools are rejected even when integral
        with pytest.raises(ValueError, match=f"batch_size must be an integer >= 1; got {bad!r} of type"):
            data.sample_batch(ds.train, key, bad)
    assert data.sample_batch(ds.train, key, np.int64(3))["label"].shape == (3,)
    with pytest.raises(ValueError, match="key must be a single PRNG key"):
        data.sample_batch(ds.train, jax.random.split(key, 2), 4)
    with pytest.raises(ValueError, match="key must be a PRNG key"):
        data.sample_batch(ds.train, 0, 4)
    with pytest.raises(ValueError, match="split must be one of train, inner_valid, outer_valid, test; got 'valid'"):
        ds.split("valid")
    with pytest.raises(ValueError, match="image_size must be None or"):
        data.load_fashion_mnist(data_dir=tmp_path, image_size=(8,))
    with pytest.raises(ValueError, match="size must be"):
        data.resize_images(np.zeros((1, 4, 4, 1)), (0, 2))


# --- KJV --------------------------------------------------------------------------------------


@pytest.mark.debian_data("bible-kjv")
def test_kjv_corpus_from_debian_bible(monkeypatch):
    monkeypatch.delenv("STAR_DATA_DIR", raising=False)
    corpus = data.load_kjv()
    train, test = np.asarray(corpus.train), np.asarray(corpus.test)
    text = data.TextCorpus.decode(np.concatenate([train, test]))
    lines = text.splitlines()
    assert len(lines) == 31102  # verses of the KJV, Genesis 1:1 to Revelation 22:21
    assert lines[0] == "In the beginning God created the heaven and the earth."
    assert lines[-1] == "The grace of our Lord Jesus Christ be with you all. Amen."
    assert train.dtype == np.uint8 and train.max() < 128 and corpus.vocab_size == 256
    assert train[-1] == ord("\n")  # the split falls between verses
    assert abs(test.size / (train.size + test.size) - 0.1) < 0.001
    batch = jax.jit(data.sample_text_batch, static_argnums=(2, 3))(corpus.train, jax.random.key(0), 4, 32)
    inputs, targets = np.asarray(batch["inputs"]), np.asarray(batch["targets"])
    assert inputs.shape == targets.shape == (4, 32)
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
    for row, tgt in zip(inputs, targets):
        window = bytes(np.append(row, tgt[-1]).astype(np.uint8).tolist())
        assert window in train.tobytes()


def test_kjv_from_star_data_dir_and_errors(tmp_path, monkeypatch):
    (tmp_path / "kjv.txt").write_text("line one\nline two\nline three\nline four\n")
    monkeypatch.setenv("STAR_DATA_DIR", str(tmp_path))
    corpus = data.load_kjv(test_fraction=0.25)
    assert data.TextCorpus.decode(corpus.test) == "line four\n"
    with pytest.raises(ValueError, match="test_fraction must be in \\(0, 1\\); got 1.0"):
        data.load_kjv(test_fraction=1.0)
    with pytest.raises(ValueError, match="seq_len must be at most"):
        data.sample_text_batch(corpus.test, jax.random.key(0), 2, 10)
    with pytest.raises(ValueError, match="seq_len must be an integer >= 1; got 0"):
        data.sample_text_batch(corpus.train, jax.random.key(0), 2, 0)
    monkeypatch.setenv("STAR_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(data.shutil, "which", lambda name: None)
    monkeypatch.setattr(data, "BIBLE_PROGRAM", tmp_path / "no-bible")
    with pytest.raises(data.DataUnavailableError, match="bible-kjv"):
        data.load_kjv()


# --- LM1B (tensorflow-datasets only) ----------------------------------------------------------


def fake_tfds(sentences, calls, available=lambda download: True):
    """A stand-in for tensorflow_datasets serving ``sentences[split]`` for ``lm1b`` and slices ``x[:N]``."""

    class FakeTfds:
        @staticmethod
        def load(name, split, batch_size, download):
            calls.append((name, split, batch_size, download))
            if not available(download):
                raise AssertionError(f"Dataset {name} not found locally")
            base, _, rest = split.partition("[:")
            texts = sentences[base][: int(rest.rstrip("]"))] if rest else sentences[base]
            return {"text": np.array(texts, dtype=object)}

        as_numpy = staticmethod(lambda x: x)

    return FakeTfds


@pytest.fixture
def lm1b_cache():
    data._lm1b_bytes.cache_clear()
    yield
    data._lm1b_bytes.cache_clear()


LM1B_FAKE = {"train": [b"The cat sat .", "Caf\u00e9 au lait .".encode(), b"Third one ."],
             "test": [b"A test sentence .", b"Unused ."]}


def test_lm1b_is_utf8_bytes_of_newline_joined_sentences(monkeypatch, lm1b_cache):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(LM1B_FAKE, calls))
    corpus = data.load_lm1b(train_sentences=2, test_sentences=1)
    assert calls == [("lm1b", "train[:2]", -1, False), ("lm1b", "test[:1]", -1, False)]  # no download
    assert np.asarray(corpus.train).dtype == np.uint8 and corpus.vocab_size == 256
    assert bytes(np.asarray(corpus.train).tolist()) == b"The cat sat .\nCaf\xc3\xa9 au lait .\n"
    assert bytes(np.asarray(corpus.test).tolist()) == b"A test sentence .\n"
    assert data.TextCorpus.decode(corpus.train).splitlines()[1] == "Caf\u00e9 au lait ."
    assert "train[:2]" in corpus.name and "test[:1]" in corpus.name
    whole = data.load_lm1b(train_sentences=None, test_sentences=None)  # None: the whole tfds split
    assert calls[-2:] == [("lm1b", "train", -1, False), ("lm1b", "test", -1, False)]
    assert bytes(np.asarray(whole.train).tolist()).count(b"\n") == 3
    assert bytes(np.asarray(whole.test).tolist()) == b"A test sentence .\nUnused .\n"


def test_lm1b_downloads_only_when_the_host_answers(monkeypatch, lm1b_cache):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(LM1B_FAKE, calls, lambda d: d))
    listener = socket.create_server(("127.0.0.1", 0))  # a host that answers, standing for www.statmt.org
    monkeypatch.setattr(data, "LM1B_HOST", listener.getsockname())
    monkeypatch.setattr(data, "TFDS_HOST", ("127.0.0.1", 9))  # only the LM1B host answers
    corpus = data.load_lm1b(train_sentences=1, test_sentences=1)
    assert [c[3] for c in calls] == [False, True, True]  # the local copy is missing: download both splits
    assert bytes(np.asarray(corpus.train).tolist()) == b"The cat sat .\n"
    data._lm1b_bytes.cache_clear()
    calls.clear()
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(LM1B_FAKE, calls, lambda d: False))
    with pytest.raises(data.DataUnavailableError, match="the tfds download of 'lm1b' failed"):
        data.load_lm1b(train_sentences=1, test_sentences=1)
    listener.close()


def test_lm1b_offline_fails_fast_without_downloading(monkeypatch, lm1b_cache):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(LM1B_FAKE, calls, lambda d: False))
    monkeypatch.setattr(data, "LM1B_HOST", ("127.0.0.1", 9))  # closed port: refused at once
    t0 = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="LM1B .*only available through tensorflow-datasets") as err:
        data.load_lm1b()
    assert time.perf_counter() - t0 < 10.0
    assert "no local copy of 'lm1b' and 127.0.0.1 is unreachable" in str(err.value)
    assert "pip install 'star[online]'" in str(err.value) and "kjv_lstm" in str(err.value)
    assert [c[3] for c in calls] == [False]


def test_lm1b_without_tfds_names_the_download(no_tfds, lm1b_cache):
    t0 = time.perf_counter()
    with pytest.raises(data.DataUnavailableError, match="tensorflow-datasets is not importable here"):
        data.load_lm1b()
    assert time.perf_counter() - t0 < 10.0


def test_lm1b_on_this_machine_is_available_or_a_fast_clear_error(lm1b_cache):
    """No monkeypatching: offline (this machine, with or without tfds) the error comes at once."""
    if data.host_reachable(data.LM1B_HOST):
        pytest.skip("online: load_lm1b would download LM1B")
    t0 = time.perf_counter()
    try:
        corpus = data.load_lm1b(train_sentences=10, test_sentences=10)
    except data.DataUnavailableError as err:
        assert "LM1B" in str(err) and "tensorflow-datasets" in str(err)
    else:  # a local tfds copy of lm1b
        assert corpus.train.shape[0] > 10
    assert time.perf_counter() - t0 < 10.0


@pytest.mark.parametrize("kwargs,message", [
    ({"train_sentences": 0}, "train_sentences must be None (the whole split) or an integer in [1, 30301028]; got 0"),
    ({"train_sentences": 30_301_029}, "train_sentences must be .* got 30301029"),
    ({"train_sentences": 2.5}, "train_sentences must be .* got 2.5"),
    ({"train_sentences": True}, "train_sentences must be .* got True"),
    ({"test_sentences": -1}, "test_sentences must be None (the whole split) or an integer in [1, 306688]; got -1"),
    ({"test_sentences": "10"}, "test_sentences must be .* got '10'"),
])
def test_lm1b_rejects_bad_bounds_before_any_io(monkeypatch, lm1b_cache, kwargs, message):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(LM1B_FAKE, calls))
    with pytest.raises(ValueError, match=message.replace("(", "\\(").replace(")", "\\)").replace("[", "\\[")):
        data.load_lm1b(**kwargs)
    assert calls == []
