"""Image data sets for the inner problems: Fashion-MNIST, CIFAR-10 and the UCI handwritten digits.

The meta-training tasks of the paper (App. B.2) train on Fashion-MNIST and CIFAR-10 through
``learned_optimization``'s image pipelines. We keep their numbers, not their machinery:

* Images are ``float32`` in ``[0, 1]`` (``uint8 / 255``), no mean subtraction, labels ``int32``.
* The 60 000 training images are split as ``train[0:80%]`` (``train``), ``train[80%:90%]``
  (``inner_valid``), ``train[90%:]`` (``outer_valid``), and the 10 000 test images are ``test``.
* Where the reference resizes (``ImageMLP_FashionMnist8_Relu32``), we resize bilinearly with
  half-pixel centres and no antialiasing, which is what ``tf.image.resize`` does by default.

Unlike the reference's shuffled Python iterators, batches here are a pure function of a PRNG key
(:func:`sample_batch`): indices are drawn uniformly with replacement, so a batch can be drawn inside
``jax.jit``/``jax.vmap`` and the same key always gives the same batch. The data stay on the device
as ``uint8`` and are converted per batch; the containers are pytrees, so pass them (or a task that
holds them) as *arguments* of jitted functions rather than closing over them (closed-over arrays
are baked into the compiled program as constants, which is several times slower to compile).

Where the data come from, in order:

1. Fashion-MNIST: ``$STAR_DATA_DIR`` (or its ``fashion-mnist/`` sub-folder), then the Debian package
   ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``), then tensorflow-datasets
   (``download=False`` first; a download only if the download host answers within a second,
   :func:`star.data_sources.tfds_call`).
2. CIFAR-10: tensorflow-datasets only (no Debian package ships it).
3. The UCI handwritten digits (8×8, 1 797 images): the copy bundled with scikit-learn
   (:func:`load_digits`).

Missing data is a :class:`star.data_sources.DataUnavailableError` that names the package or download providing
it, raised within a couple of seconds (no network retries).
"""

from __future__ import annotations

import functools
import gzip
import os
import zlib
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from star import _checks
from star.data_sources import DataUnavailableError, tfds_call

__all__ = [
    "ImageSplit",
    "ImageDataset",
    "IMAGE_SPLITS",
    "read_idx",
    "resize_images",
    "load_fashion_mnist",
    "load_cifar10",
    "load_digits",
    "sample_batch",
    "to_float",
]


DEBIAN_FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
IMAGE_SPLITS = ("train", "inner_valid", "outer_valid", "test")
# The reference's tfds splits "train[0:80%]", "train[80%:90%]", "train[90%:]".
_TRAIN_FRACTIONS = (0.8, 0.9)


_INSTALL_FMNIST = (
    "Fashion-MNIST was not found. Provide it in one of these ways: install the Debian package "
    "'dataset-fashion-mnist' (sudo apt-get install dataset-fashion-mnist; files in "
    f"{DEBIAN_FASHION_MNIST_DIR}), put the four idx files "
    f"({', '.join(f + '.gz' for f in FASHION_MNIST_FILES.values())}) in $STAR_DATA_DIR, or "
    "install tensorflow-datasets (pip install 'star[online]') on a machine with internet access."
)
_INSTALL_CIFAR = (
    "CIFAR-10 is only available through tensorflow-datasets with internet access "
    "(pip install 'star[online]'; it downloads cifar10 from storage.googleapis.com on first use); "
    "no Debian package provides it. Offline, use the same ConvNet on Fashion-MNIST "
    "(task 'fmnist_conv')."
)


# ----------------------------------------------------------------------------------------------
# Containers (pytrees: arrays are leaves, descriptions are static)


@struct.dataclass
class ImageSplit:
    """One split of an image data set, kept on the device.

    Attributes:
        images: ``[N, H, W, C]``, ``uint8`` (raw pixels) or ``float32`` already in ``[0, 1]``.
        labels: ``[N]`` ``int32`` class indices.
    """

    images: jax.Array
    labels: jax.Array

    @property
    def num_examples(self) -> int:
        return int(self.labels.shape[0])


@struct.dataclass
class ImageDataset:
    """An image-classification data set with the reference's four splits (see module docstring)."""

    train: ImageSplit
    inner_valid: ImageSplit
    outer_valid: ImageSplit
    test: ImageSplit
    name: str = struct.field(pytree_node=False)
    num_classes: int = struct.field(pytree_node=False)
    source: str = struct.field(pytree_node=False, default="")

    def split(self, name: str) -> ImageSplit:
        """Return the split ``name`` (one of ``train``, ``inner_valid``, ``outer_valid``, ``test``)."""
        if name not in IMAGE_SPLITS:
            raise ValueError(f"split must be one of {', '.join(IMAGE_SPLITS)}; got {name!r}")
        return getattr(self, name)

    @property
    def image_shape(self) -> tuple:
        return tuple(self.train.images.shape[1:])


# ----------------------------------------------------------------------------------------------
# idx files (the MNIST format: big-endian header, magic 0x0000 | dtype | ndim, then dims)


_IDX_DTYPES = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (optionally gzip-compressed, detected from its first bytes).

    Raises:
        ValueError: if the file cannot be decompressed or its header and payload size are inconsistent (a
            corrupt or truncated file); the message names the file.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(2)
    opener = gzip.open if head == b"\x1f\x8b" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (EOFError, OSError, zlib.error) as err:  # a cut or damaged .gz
        raise ValueError(f"{path}: cannot be decompressed, the file is truncated or corrupt "
                         f"({type(err).__name__}: {err}); download or install it again") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file (magic bytes {raw[:4]!r}; expected 00 00 TT NN)")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown idx data type 0x{code:02x}; allowed {sorted(_IDX_DTYPES)}")
    if ndim < 1 or len(raw) < 4 + 4 * ndim:
        raise ValueError(f"{path}: idx header declares {ndim} dimensions but is truncated")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = int(np.prod(dims)) * dtype.itemsize
    payload = len(raw) - 4 - 4 * ndim
    if payload != expected:
        raise ValueError(
            f"{path}: idx header says shape {dims} ({expected} bytes of {dtype}) but the file "
            f"holds {payload} bytes after the header"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=4 + 4 * ndim).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _find_idx(directory: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem, stem.replace("-idx", ".idx")):
        p = directory / name
        if p.is_file():
            return p
    return None


def _fashion_mnist_dirs(data_dir) -> list:
    if data_dir is not None:
        d = Path(data_dir)
        return [d, d / "fashion-mnist", d / "fashion_mnist"]
    dirs = []
    env = os.environ.get("STAR_DATA_DIR")
    if env:
        d = Path(env).expanduser()
        dirs += [d, d / "fashion-mnist", d / "fashion_mnist"]
    dirs.append(DEBIAN_FASHION_MNIST_DIR)
    return dirs


def _prepare_images(train_x, train_y, test_x, test_y, size):
    """Add the channel axis, resize if asked, labels to int32 (numpy, once per source)."""
    if train_x.ndim == 3:
        train_x, test_x = train_x[..., None], test_x[..., None]
    if train_x.shape[0] != train_y.shape[0] or test_x.shape[0] != test_y.shape[0]:
        raise ValueError(f"image and label counts differ: {train_x.shape[0]} vs {train_y.shape[0]} "
                         f"(train), {test_x.shape[0]} vs {test_y.shape[0]} (test)")
    if size is not None and size != tuple(train_x.shape[1:3]):
        train_x, test_x = resize_images(train_x, size), resize_images(test_x, size)
    return train_x, train_y.astype(np.int32), test_x, test_y.astype(np.int32)


@functools.lru_cache(maxsize=2)
def _read_idx_files(paths: tuple, mtimes: tuple) -> tuple:
    del mtimes  # part of the cache key only: a rewritten file is read again
    return tuple(read_idx(p) for p in paths)


@functools.lru_cache(maxsize=4)
def _fashion_mnist_from_files(paths: tuple, mtimes: tuple, size) -> tuple:
    return _prepare_images(*_read_idx_files(paths, mtimes), size)


@functools.lru_cache(maxsize=4)
def _from_tfds(name: str, size) -> tuple:
    hint = _INSTALL_FMNIST if name == "fashion_mnist" else _INSTALL_CIFAR
    return _prepare_images(*_tfds_numpy(name, hint), size)


def _fashion_mnist_numpy(data_dir, size):
    """(train_images, train_labels, test_images, test_labels, source) as numpy arrays."""
    for d in _fashion_mnist_dirs(data_dir):
        found = [_find_idx(d, stem) for stem in FASHION_MNIST_FILES.values()]
        if all(found):
            arrays = _fashion_mnist_from_files(tuple(str(p) for p in found),
                                               tuple(p.stat().st_mtime_ns for p in found), size)
            return (*arrays, f"idx files in {d}")
    if data_dir is not None:
        raise DataUnavailableError(
            f"data_dir={str(data_dir)!r} does not hold the Fashion-MNIST idx files. " + _INSTALL_FMNIST
        )
    return (*_from_tfds("fashion_mnist", size), "tensorflow-datasets fashion_mnist")


# ----------------------------------------------------------------------------------------------
# tensorflow-datasets (optional, online): CIFAR-10, and Fashion-MNIST where no file has it


def _tfds_numpy(name: str, install_hint: str):
    """The ``train`` and ``test`` splits of a tfds image data set as numpy arrays
    (:func:`star.data_sources.tfds_call`)."""

    def load(tfds, download: bool):
        out = []
        for split in ("train", "test"):
            ds = tfds.as_numpy(tfds.load(name, split=split, batch_size=-1, download=download))
            out += [np.asarray(ds["image"], dtype=np.uint8), np.asarray(ds["label"], dtype=np.int32)]
        return tuple(out)

    return tfds_call(name, install_hint, load)


# ----------------------------------------------------------------------------------------------
# Images


def _bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``[out, in]`` weights of 1-D linear interpolation with half-pixel centres (TF semantics)."""
    src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
    lo_f = np.floor(src)
    frac = src - lo_f
    lo = np.clip(lo_f, 0, in_size - 1).astype(int)
    hi = np.clip(np.ceil(src), 0, in_size - 1).astype(int)
    m = np.zeros((out_size, in_size))
    np.add.at(m, (np.arange(out_size), lo), 1.0 - frac)
    np.add.at(m, (np.arange(out_size), hi), frac)
    return m


def resize_images(images, size) -> np.ndarray:
    """Bilinear resize to ``size=(h, w)``, half-pixel centres, no antialiasing; float32 in [0, 1].

    This is ``tf.image.resize(images, size)`` (its defaults) followed by ``/ 255``, as in the
    reference's ``_image_map_fn`` for ``ImageMLP_FashionMnist8_Relu32``. Bilinear interpolation is
    separable, so the resize is ``R_h · X · R_wᵀ`` with two small interpolation matrices.
    """
    try:
        size = tuple(int(s) for s in size)
    except TypeError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"size must be (height, width) with positive entries; got {size!r}")
    x = np.asarray(images)
    if x.ndim != 4:
        raise ValueError(f"images must have shape [N, H, W, C]; got shape {tuple(x.shape)}")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    rh = _bilinear_matrix(x.shape[1], size[0]).astype(np.float32)
    rw = _bilinear_matrix(x.shape[2], size[1]).astype(np.float32)
    chw = np.moveaxis(x, 3, 1).astype(np.float32) / scale  # [N, C, H, W]
    out = rh @ chw @ rw.T  # [N, C, h, w]
    return np.ascontiguousarray(np.moveaxis(out, 1, 3), dtype=np.float32)


def _as_image_dataset(name, num_classes, source, train_x, train_y, test_x, test_y) -> ImageDataset:
    n = train_x.shape[0]
    a, b = (int(round(f * n)) for f in _TRAIN_FRACTIONS)

    def split(x, y):
        return ImageSplit(images=jnp.asarray(x), labels=jnp.asarray(y, dtype=jnp.int32))

    return ImageDataset(
        train=split(train_x[:a], train_y[:a]),
        inner_valid=split(train_x[a:b], train_y[a:b]),
        outer_valid=split(train_x[b:], train_y[b:]),
        test=split(test_x, test_y),
        name=name,
        num_classes=num_classes,
        source=source,
    )


def _check_image_size(image_size):
    if image_size is None:
        return None
    try:
        size = tuple(int(s) for s in image_size)
    except TypeError:
        size = ()
    if len(size) != 2 or min(size) < 1:
        raise ValueError(f"image_size must be None or (height, width) with positive entries; "
                         f"got {image_size!r}")
    return size


def load_fashion_mnist(data_dir=None, image_size=None) -> ImageDataset:
    """Fashion-MNIST (28×28×1, 10 classes) with the reference's four splits.

    Args:
        data_dir: a folder holding the four idx files (``.gz`` or not). If None: ``$STAR_DATA_DIR``,
            then the Debian package ``dataset-fashion-mnist``, then tensorflow-datasets.
        image_size: optional ``(h, w)``; images are then resized (:func:`resize_images`) and stored
            as float32 in [0, 1] instead of uint8.

    Raises:
        DataUnavailableError: no source has the data (the message says how to install it).
        ValueError: a corrupt idx file, or a bad ``image_size``.
    """
    size = _check_image_size(image_size)
    *arrays, source = _fashion_mnist_numpy(data_dir, size)
    return _as_image_dataset("fashion_mnist", 10, source, *arrays)


def load_cifar10(image_size=None) -> ImageDataset:
    """CIFAR-10 (32×32×3, 10 classes) through tensorflow-datasets; needs internet on first use.

    Raises:
        DataUnavailableError: tfds missing, or offline without a local tfds copy (fails in ~1 s).
    """
    size = _check_image_size(image_size)
    return _as_image_dataset("cifar10", 10, "tensorflow-datasets cifar10", *_from_tfds("cifar10", size))


def to_float(images: jax.Array) -> jax.Array:
    """Pixels as float32 in [0, 1]: ``uint8 / 255``; float images are returned as float32."""
    if images.dtype == jnp.uint8:
        return images.astype(jnp.float32) / 255.0
    return images.astype(jnp.float32)


def sample_batch(split: ImageSplit, key, batch_size: int) -> dict:
    """A batch ``{"image": float32 [B, H, W, C] in [0, 1], "label": int32 [B]}`` drawn from a key.

    Indices are uniform with replacement, a pure function of ``key``: usable inside ``jit`` and
    ``vmap`` (``batch_size`` must be a Python int).
    """
    _checks.integer("batch_size", batch_size)
    _checks.key("key", key)
    if split.labels.shape[0] == 0:  # randint(0, 0) would index an empty array: garbage, silently
        raise ValueError("split has no examples; a batch needs at least one")
    idx = jax.random.randint(key, (batch_size,), 0, split.labels.shape[0])
    return {"image": to_float(split.images[idx]), "label": split.labels[idx]}


# ----------------------------------------------------------------------------------------------
# The UCI "Optical Recognition of Handwritten Digits" images bundled with scikit-learn


_INSTALL_DIGITS = (
    "The UCI handwritten digits were not found: they ship with scikit-learn "
    "(pip install scikit-learn; file sklearn/datasets/data/digits.csv.gz)."
)
DIGITS_TEST_SIZE = 297  # the last 297 of the 1 797 images; the first 1 500 are split 80/10/10


@functools.lru_cache(maxsize=1)
def _digits_numpy() -> tuple:
    try:
        from sklearn.datasets import load_digits as _sk_load_digits  # noqa: PLC0415 (lazy)
    except Exception as exc:  # ImportError or a broken install
        raise DataUnavailableError(f"{_INSTALL_DIGITS} (import failed: {exc})") from None
    bunch = _sk_load_digits()
    images = (np.asarray(bunch.images, np.float32) / 16.0)[..., None]  # counts 0..16 -> [0, 1]
    labels = np.asarray(bunch.target, np.int32)
    return images, labels


def load_digits() -> ImageDataset:
    """The UCI handwritten digits (Alpaydin & Kaynak, 1998): 1 797 images of 8×8×1, 10 classes.

    Real scanned digits from 43 writers, as bundled with scikit-learn (BSD-3; the data set itself is
    distributed by the UCI Machine Learning Repository under CC BY 4.0). Each pixel is a count of
    0–16 set bits of a 4×4 block of the 32×32 bitmap; we divide by 16, so images are float32 in
    [0, 1]. The last :data:`DIGITS_TEST_SIZE` images are ``test``; the first 1 500 are split 80/10/10
    into ``train`` / ``inner_valid`` / ``outer_valid`` as for Fashion-MNIST.

    Raises:
        DataUnavailableError: scikit-learn is not installed.
    """
    images, labels = _digits_numpy()
    cut = images.shape[0] - DIGITS_TEST_SIZE
    return _as_image_dataset("uci_digits", 10, "scikit-learn sklearn.datasets.load_digits (UCI)",
                             images[:cut], labels[:cut], images[cut:], labels[cut:])
