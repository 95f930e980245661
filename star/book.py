"""Files of the repository that a chapter loads (``results/…``), found locally or, on Colab, fetched.

A chapter that shows a stored artefact calls ``repo_file("results/metatrain/star_cpu/log.jsonl")``.
In a checkout (``make book``, nbval, CI) that is the file under the book root — the first folder above
the working directory holding ``_toc.yml``. Where there is no checkout (Colab installs only the
package), the file is downloaded once from the repository on GitHub into ``~/.cache/star/`` so that the
chapter runs there too.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from pathlib import Path, PurePosixPath

from star.claims import find_book_root

__all__ = ["REPOSITORY_RAW", "repo_file"]

REPOSITORY_RAW = "https://raw.githubusercontent.com/star-book/star/main"


def _check_relpath(relpath: str) -> PurePosixPath:
    p = PurePosixPath(relpath) if isinstance(relpath, str) else None
    if p is None or not relpath or p.is_absolute() or ".." in p.parts or "\\" in relpath:
        raise ValueError(f"relpath must be a relative path inside the repository such as "
                         f"'results/nqm/fig2a.npz' (no '..', not absolute); got {relpath!r}")
    return p


def repo_file(relpath: str, *, start: str | os.PathLike | None = None,
              cache_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Local path of the repository file ``relpath``; fetched from GitHub when there is no checkout.

    Args:
        relpath: path relative to the repository root, e.g. ``"results/nqm/fig2a.npz"``.
        start: where to look for the book root (default: the working directory).
        cache_dir: where downloads go (default ``~/.cache/star``).
        download: if False, raise instead of downloading.

    Raises:
        ValueError: ``relpath`` is absolute or leaves the repository.
        FileNotFoundError: in a checkout that lacks the file (regenerate it with the command the
            chapter shows), or with ``download=False`` outside a checkout.
    """
    rel = _check_relpath(relpath)
    root = find_book_root(start)
    if root is not None:
        path = root.joinpath(*rel.parts)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; the chapter shows the command that makes it")
        return path
    cache = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "star"
    path = cache.joinpath(*rel.parts)
    if path.is_file():
        return path
    if not download:
        raise FileNotFoundError(f"no checkout of the repository here and download=False: {relpath}")
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"{REPOSITORY_RAW}/{rel.as_posix()}"
    tmp = path.with_name(path.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out)
    tmp.replace(path)
    return path
