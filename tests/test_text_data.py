"""star.text_data: the KJV corpus (Debian bible-kjv or $STAR_DATA_DIR/kjv.txt), LM1B bytes through
tensorflow-datasets (downloading only when the host answers, failing fast offline), text batches."""

import socket
import sys
import time

import jax
import numpy as np
import pytest

from star import data_sources, text_data


@pytest.fixture
def no_tfds(monkeypatch):
    """Make ``import tensorflow_datasets`` fail, as on a machine without it."""
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)


# --- KJV --------------------------------------------------------------------------------------


@pytest.mark.debian_data("bible-kjv")
def test_kjv_corpus_from_debian_bible(monkeypatch):
    monkeypatch.delenv("STAR_DATA_DIR", raising=False)
    corpus = text_data.load_kjv()
    train, test = np.asarray(corpus.train), np.asarray(corpus.test)
    text = text_data.TextCorpus.decode(np.concatenate([train, test]))
    lines = text.splitlines()
    assert len(lines) == 31102  # verses of the KJV, Genesis 1:1 to Revelation 22:21
    assert lines[0] == "In the beginning God created the heaven and the earth."
    assert lines[-1] == "The grace of our Lord Jesus Christ be with you all. Amen."
    assert train.dtype == np.uint8 and train.max() < 128 and corpus.vocab_size == 256
    assert train[-1] == ord("\n")  # the split falls between verses
    assert abs(test.size / (train.size + test.size) - 0.1) < 0.001
    batch = jax.jit(text_data.sample_text_batch, static_argnums=(2, 3))(corpus.train, jax.random.key(0), 4, 32)
    inputs, targets = np.asarray(batch["inputs"]), np.asarray(batch["targets"])
    assert inputs.shape == targets.shape == (4, 32)
    np.testing.assert_array_equal(inputs[:, 1:], targets[:, :-1])
    for row, tgt in zip(inputs, targets):
        window = bytes(np.append(row, tgt[-1]).astype(np.uint8).tolist())
        assert window in train.tobytes()


def test_kjv_from_star_data_dir_and_errors(tmp_path, monkeypatch):
    (tmp_path / "kjv.txt").write_text("line one\nline two\nline three\nline four\n")
    monkeypatch.setenv("STAR_DATA_DIR", str(tmp_path))
    corpus = text_data.load_kjv(test_fraction=0.25)
    assert text_data.TextCorpus.decode(corpus.test) == "line four\n"
    with pytest.raises(ValueError, match="test_fraction must be in \\(0, 1\\); got 1.0"):
        text_data.load_kjv(test_fraction=1.0)
    with pytest.raises(ValueError, match="seq_len must be at most"):
        text_data.sample_text_batch(corpus.test, jax.random.key(0), 2, 10)
    with pytest.raises(ValueError, match="seq_len must be an integer >= 1; got 0"):
        text_data.sample_text_batch(corpus.train, jax.random.key(0), 2, 0)
    monkeypatch.setenv("STAR_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr(text_data.shutil, "which", lambda name: None)
    monkeypatch.setattr(text_data, "BIBLE_PROGRAM", tmp_path / "no-bible")
    with pytest.raises(data_sources.DataUnavailableError, match="bible-kjv"):
        text_data.load_kjv()


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
    text_data._lm1b_bytes.cache_clear()
    yield
    text_data._lm1b_bytes.cache_clear()


LM1B_FAKE = {"train": [b"The cat sat .", "Caf\u00e9 au lait .".encode(), b"Third one ."],
             "test": [b"A test sentence .", b"Unused ."]}


def test_lm1b_is_utf8_bytes_of_newline_joined_sentences(monkeypatch, lm1b_cache):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(LM1B_FAKE, calls))
    corpus = text_data.load_lm1b(train_sentences=2, test_sentences=1)
    assert calls == [("lm1b", "train[:2]", -1, False), ("lm1b", "test[:1]", -1, False)]  # no download
    assert np.asarray(corpus.train).dtype == np.uint8 and corpus.vocab_size == 256
    assert bytes(np.asarray(corpus.train).tolist()) == b"The cat sat .\nCaf\xc3\xa9 au lait .\n"
    assert bytes(np.asarray(corpus.test).tolist()) == b"A test sentence .\n"
    assert text_data.TextCorpus.decode(corpus.train).splitlines()[1] == "Caf\u00e9 au lait ."
    assert "train[:2]" in corpus.name and "test[:1]" in corpus.name
    whole = text_data.load_lm1b(train_sentences=None, test_sentences=None)  # None: the whole tfds split
    assert calls[-2:] == [("lm1b", "train", -1, False), ("lm1b", "test", -1, False)]
    assert bytes(np.asarray(whole.train).tolist()).count(b"\n") == 3
    assert bytes(np.asarray(whole.test).tolist()) == b"A test sentence .\nUnused .\n"


def test_lm1b_downloads_only_when_the_host_answers(monkeypatch, lm1b_cache):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(LM1B_FAKE, calls, lambda d: d))
    listener = socket.create_server(("127.0.0.1", 0))  # a host that answers, standing for www.statmt.org
    monkeypatch.setattr(text_data, "LM1B_HOST", listener.getsockname())
    monkeypatch.setattr(data_sources, "TFDS_HOST", ("127.0.0.1", 9))  # only the LM1B host answers
    corpus = text_data.load_lm1b(train_sentences=1, test_sentences=1)
    assert [c[3] for c in calls] == [False, True, True]  # the local copy is missing: download both splits
    assert bytes(np.asarray(corpus.train).tolist()) == b"The cat sat .\n"
    text_data._lm1b_bytes.cache_clear()
    calls.clear()
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(LM1B_FAKE, calls, lambda d: False))
    with pytest.raises(data_sources.DataUnavailableError, match="the tfds download of 'lm1b' failed"):
        text_data.load_lm1b(train_sentences=1, test_sentences=1)
    listener.close()


def test_lm1b_offline_fails_fast_without_downloading(monkeypatch, lm1b_cache):
    calls = []
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", fake_tfds(LM1B_FAKE, calls, lambda d: False))
    monkeypatch.setattr(text_data, "LM1B_HOST", ("127.0.0.1", 9))  # closed port: refused at once
    t0 = time.perf_counter()
    with pytest.raises(data_sources.DataUnavailableError,
                       match="LM1B .*only available through tensorflow-datasets") as err:
        text_data.load_lm1b()
    assert time.perf_counter() - t0 < 10.0
    assert "no local copy of 'lm1b' and 127.0.0.1 is unreachable" in str(err.value)
    assert "pip install 'star[online]'" in str(err.value) and "kjv_lstm" in str(err.value)
    assert [c[3] for c in calls] == [False]


def test_lm1b_without_tfds_names_the_download(no_tfds, lm1b_cache):
    t0 = time.perf_counter()
    with pytest.raises(data_sources.DataUnavailableError, match="tensorflow-datasets is not importable here"):
        text_data.load_lm1b()
    assert time.perf_counter() - t0 < 10.0


def test_lm1b_on_this_machine_is_available_or_a_fast_clear_error(lm1b_cache):
    """No monkeypatching: offline (this machine, with or without tfds) the error comes at once."""
    if data_sources.host_reachable(text_data.LM1B_HOST):
        pytest.skip("online: load_lm1b would download LM1B")
    t0 = time.perf_counter()
    try:
        corpus = text_data.load_lm1b(train_sentences=10, test_sentences=10)
    except data_sources.DataUnavailableError as err:
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
        text_data.load_lm1b(**kwargs)
    assert calls == []
