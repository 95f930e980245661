"""Text corpora for the language-model tasks, as bytes: the King James Bible and LM1B.

A :class:`TextCorpus` holds ``train`` and ``test`` as ``uint8`` arrays of byte values (vocabulary: the 256 byte
values); :func:`sample_text_batch` draws windows for next-byte prediction as a pure function of a PRNG key, so a
batch can be drawn inside ``jax.jit``/``jax.vmap``.

Where the text comes from:

1. The KJV: ``$STAR_DATA_DIR/kjv.txt`` if present, else the ``bible`` program of the Debian packages ``bible-kjv``
   / ``bible-kjv-text`` (data in ``/usr/lib/bible.data``) (:func:`load_kjv`).
2. LM1B (the One Billion Word benchmark) as bytes: tensorflow-datasets only (:func:`load_lm1b`, through
   :func:`star.data_sources.tfds_call`).

Missing data is a :class:`star.data_sources.DataUnavailableError` that says what provides it.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from star import _checks
from star.data_sources import DataUnavailableError, tfds_call

__all__ = ["TextCorpus", "load_kjv", "load_lm1b", "sample_text_batch", "LM1B_SIZES"]


BIBLE_PROGRAM = Path("/usr/bin/bible")
LM1B_HOST = ("www.statmt.org", 80)  # tfds's lm1b builder downloads the benchmark's tarball from there


_INSTALL_KJV = (
    "The King James Bible text was not found. Install the Debian packages 'bible-kjv' and "
    "'bible-kjv-text' (sudo apt-get install bible-kjv; the program /usr/bin/bible reads "
    "/usr/lib/bible.data), or put a plain-text copy at $STAR_DATA_DIR/kjv.txt."
)

_INSTALL_LM1B = (
    "LM1B (the One Billion Word benchmark) is only available through tensorflow-datasets with "
    "internet access (pip install 'star[online]'; on first use tfds downloads lm1b, a 1.67 GiB archive "
    "from www.statmt.org, and prepares it); no Debian package provides it. Offline, use the same "
    "models on the King James Bible (tasks 'kjv_lstm', 'kjv_transformer')."
)


@struct.dataclass
class TextCorpus:
    """A byte-level text corpus: ``train`` and ``test`` are ``uint8`` arrays of byte values.

    The vocabulary is the 256 byte values (``vocab_size``); the KJV text is pure ASCII, LM1B is UTF-8.
    """

    train: jax.Array
    test: jax.Array
    name: str = struct.field(pytree_node=False)
    vocab_size: int = struct.field(pytree_node=False, default=256)

    def split(self, name: str) -> jax.Array:
        if name not in ("train", "test"):
            raise ValueError(f"split must be one of train, test; got {name!r}")
        return getattr(self, name)

    @staticmethod
    def decode(tokens) -> str:
        """Bytes back to text (UTF-8; for looking at samples)."""
        return bytes(np.asarray(tokens, dtype=np.uint8).tolist()).decode("utf-8", errors="replace")


# ----------------------------------------------------------------------------------------------
# The King James Bible as a byte-level corpus


def _kjv_text() -> tuple:
    env = os.environ.get("STAR_DATA_DIR")
    if env:
        p = Path(env).expanduser() / "kjv.txt"
        if p.is_file():
            return p.read_text(encoding="ascii", errors="replace"), str(p)
    program = shutil.which("bible") or (str(BIBLE_PROGRAM) if Path(BIBLE_PROGRAM).exists() else None)
    if program is None:
        raise DataUnavailableError(_INSTALL_KJV + " (the program 'bible' is not on PATH)")
    # -f switches pretty-printing off: one verse per line, "Ge1:1 In the beginning ...".
    try:
        out = subprocess.run([program, "-f", "gen1:1-rev22:21"], stdin=subprocess.DEVNULL,
                             capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataUnavailableError(f"{_INSTALL_KJV} (running {program} failed: {exc})") from None
    text = out.stdout.decode("ascii", errors="replace")
    verses = [line.split(" ", 1)[1] for line in text.splitlines() if " " in line]
    if out.returncode != 0 or len(verses) < 30000:
        raise DataUnavailableError(
            f"{_INSTALL_KJV} ({program} returned {out.returncode} with {len(verses)} verses; "
            f"stderr: {out.stderr.decode(errors='replace')[:200]!r}; is 'bible-kjv-text' installed?)"
        )
    return "\n".join(verses) + "\n", f"{program} (Debian bible-kjv)"


@functools.lru_cache(maxsize=2)
def _kjv_bytes(env_key) -> tuple:
    del env_key
    text, source = _kjv_text()
    return np.frombuffer(text.encode("ascii", errors="replace"), dtype=np.uint8).copy(), source


def load_kjv(test_fraction: float = 0.1) -> TextCorpus:
    """The King James Bible (31 102 verses, one per line, references stripped) as bytes.

    The split is contiguous: the first ``1 - test_fraction`` of the text (cut at a line break) is
    ``train``, the rest ``test``, as usual for character-level language models.

    Raises:
        ValueError: ``test_fraction`` outside (0, 1).
        DataUnavailableError: neither ``$STAR_DATA_DIR/kjv.txt`` nor the Debian ``bible`` program.
    """
    if not isinstance(test_fraction, (float, int)) or not 0.0 < float(test_fraction) < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction!r}")
    data, source = _kjv_bytes(os.environ.get("STAR_DATA_DIR"))
    cut = int(round((1.0 - float(test_fraction)) * data.size))
    newline = np.flatnonzero(data[cut - 1:] == ord("\n"))  # end the train part with a whole line
    cut = cut + int(newline[0]) if newline.size else cut
    if cut >= data.size:
        raise ValueError(f"test_fraction={test_fraction} leaves no whole line for the test split")
    return TextCorpus(train=jnp.asarray(data[:cut]), test=jnp.asarray(data[cut:]),
                      name=f"kjv ({source})")


# ----------------------------------------------------------------------------------------------
# LM1B (the One Billion Word benchmark) as bytes, through tensorflow-datasets


LM1B_SIZES = {"train": 30_301_028, "test": 306_688}  # sentences in tfds lm1b 1.1.0


def _sentences_to_bytes(sentences) -> np.ndarray:
    """UTF-8 bytes of the sentences, each followed by ``"\n"`` (tfds gives ``bytes``; ``str`` is encoded)."""
    parts = [t.encode("utf-8") if isinstance(t, str) else bytes(t) for t in np.asarray(sentences).ravel()]
    return np.frombuffer(b"".join(t + b"\n" for t in parts), dtype=np.uint8).copy()


@functools.lru_cache(maxsize=2)
def _lm1b_bytes(train_split: str, test_split: str) -> tuple:
    def load(tfds, download: bool):
        out = []
        for split in (train_split, test_split):
            ds = tfds.as_numpy(tfds.load("lm1b", split=split, batch_size=-1, download=download))
            out.append(_sentences_to_bytes(ds["text"]))
        return tuple(out)

    return tfds_call("lm1b", _INSTALL_LM1B, load, LM1B_HOST)


def _check_sentences(arg: str, value, split: str):
    limit = LM1B_SIZES[split]
    if value is None:
        return split
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 1 <= value <= limit:
        raise ValueError(f"{arg} must be None (the whole split) or an integer in [1, {limit}]; got {value!r}")
    return f"{split}[:{int(value)}]"


def load_lm1b(train_sentences: int | None = 100_000, test_sentences: int | None = 10_000) -> TextCorpus:
    """LM1B (Chelba et al., 2013, the One Billion Word benchmark) as a byte-level corpus, through tfds.

    The text of tfds ``lm1b`` (feature ``text``, one tokenized news sentence per example) becomes its
    UTF-8 bytes with the sentences joined by ``"\n"``: ``train`` from the tfds split ``train``, ``test``
    from ``test``, each read only up to a bound (the tfds slices ``train[:N]`` / ``test[:M]``) so that a CPU
    run does not read the 30 million training sentences. This is the data of ``learned_optimization``'s
    ``RNNLM_lm1bbytes_Patch32_*`` tasks (``tasks/fixed/rnn_lm.py`` with ``lm1b_bytes_datasets`` of
    ``tasks/datasets/language.py``): LM1B as bytes, windows of 32. The reference crops or zero-pads each
    sentence to 33 byte ids (``seqio``'s byte vocabulary, ids shifted by 3 for pad/EOS/UNK) and samples
    from ``train[2%:]``; here windows of any length are drawn uniformly from the joined bytes by
    :func:`sample_text_batch`, as for the KJV, so there are no padding tokens to predict.

    Args:
        train_sentences: how many sentences of ``train`` to read (None: all 30 301 028).
        test_sentences: how many sentences of ``test`` to read (None: all 306 688).

    Raises:
        ValueError: a bound that is not None or an integer from 1 to the split's size (before any I/O).
        DataUnavailableError: tensorflow-datasets missing, or no local copy and the download host
            unreachable (fails in about a second), or the download failed; the message says how to get it.
    """
    train_split = _check_sentences("train_sentences", train_sentences, "train")
    test_split = _check_sentences("test_sentences", test_sentences, "test")
    train, test = _lm1b_bytes(train_split, test_split)
    return TextCorpus(train=jnp.asarray(train), test=jnp.asarray(test),
                      name=f"lm1b bytes (tensorflow-datasets {train_split}, {test_split})")


# ----------------------------------------------------------------------------------------------
# Batches


def sample_text_batch(tokens: jax.Array, key, batch_size: int, seq_len: int) -> dict:
    """Random windows for next-byte prediction: ``{"inputs": [B, L], "targets": [B, L]}`` (int32).

    ``targets`` is ``inputs`` shifted by one byte. A pure function of ``key`` (jit/vmap-friendly).
    """
    _checks.integer("batch_size", batch_size)
    _checks.integer("seq_len", seq_len)
    _checks.key("key", key)
    n = tokens.shape[0]
    if seq_len + 1 > n:
        raise ValueError(f"seq_len must be at most {n - 1} for a corpus of {n} tokens; got {seq_len}")
    start = jax.random.randint(key, (batch_size, 1), 0, n - seq_len)
    window = tokens[start + jnp.arange(seq_len + 1)[None, :]].astype(jnp.int32)
    return {"inputs": window[:, :-1], "targets": window[:, 1:]}
