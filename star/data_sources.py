"""Where the data sets that are not local files come from, and the error when none has them.

Missing data is a :class:`DataUnavailableError` that names the package or download providing it, raised within a
couple of seconds (no network retries). Data sets that only tensorflow-datasets provides (CIFAR-10,
:func:`star.image_data.load_cifar10`; LM1B, :func:`star.text_data.load_lm1b`) are loaded through
:func:`tfds_call`, which tries the local tfds copy first and downloads only when the download host answers
(:func:`host_reachable`), so an offline machine fails at once. tensorflow-datasets is imported lazily: it is
never needed offline.
"""

from __future__ import annotations

import socket

__all__ = ["DataUnavailableError", "host_reachable", "tfds_call", "TFDS_HOST"]


TFDS_HOST = ("storage.googleapis.com", 443)


class DataUnavailableError(FileNotFoundError):
    """A data set is not on this machine and cannot be fetched; the message says what provides it."""


def host_reachable(host_port=TFDS_HOST, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to ``host_port`` (``(host, port)``) opens within ``timeout`` seconds: how the
    loaders (and :mod:`star.optim.released`) tell an offline machine before trying a download."""
    try:
        with socket.create_connection(host_port, timeout=timeout):
            return True
    except OSError:
        return False


def tfds_call(name: str, install_hint: str, load, host_port=None):
    """``load(tfds, download)`` with tensorflow-datasets, failing fast when the data cannot be had.

    Tries ``download=False`` first and downloads only when the download host (``host_port``, default
    :data:`TFDS_HOST`) answers within a second, so that an offline machine raises a
    :class:`DataUnavailableError` carrying ``install_hint`` at once instead of waiting on retries.
    """
    host_port = TFDS_HOST if host_port is None else host_port
    try:
        import tensorflow_datasets as tfds  # noqa: PLC0415 (optional dependency)
    except Exception as exc:  # ImportError, or a broken tensorflow install
        raise DataUnavailableError(
            f"{install_hint} (tensorflow-datasets is not importable here: {exc})"
        ) from None
    try:
        return load(tfds, download=False)
    except Exception as first:  # tfds raises AssertionError / DatasetNotFoundError when absent
        if not host_reachable(host_port):
            raise DataUnavailableError(
                f"{install_hint} (tensorflow-datasets has no local copy of {name!r} and "
                f"{host_port[0]} is unreachable: {type(first).__name__})"
            ) from None
    try:
        return load(tfds, download=True)
    except Exception as exc:
        raise DataUnavailableError(f"{install_hint} (the tfds download of {name!r} failed: {exc})") from None
