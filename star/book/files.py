"""Files of the repository that a chapter loads (``results/…``), found locally or, on Colab, fetched.

A chapter that shows a stored artefact calls ``repo_file("results/nqm/fig2a.npz")``, or
``stored_run("star_cpu")`` for a whole meta-training run folder.
In a checkout (``make book``, ``make test``, CI) that is the file under the book root — the first folder above
the working directory holding ``_toc.yml``. Where there is no checkout (Colab installs only the
package), the file is downloaded once from the repository on GitHub into ``~/.cache/star/`` so that the
chapter runs there too. ``$STAR_REPOSITORY_RAW`` replaces the GitHub address (any URL ``urllib`` opens, such as
``file:///path/to/a/checkout``); the install test uses it to stand a local copy in for GitHub.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.request
from pathlib import Path, PurePosixPath

from star.book.pages import find_book_root
from star.runs import StoredRun

__all__ = ["REPOSITORY", "REPOSITORY_RAW", "repo_file", "repo_json", "StoredRun", "stored_run"]

# The repository the book is published from; must agree with ``repository.url`` and ``repository.branch``
# in _config.yml (tests/test_book_structure.py checks it), which is what the launch buttons use.
REPOSITORY = "https://github.com/star-book/star"
BRANCH = "main"
REPOSITORY_RAW = REPOSITORY.replace("https://github.com/", "https://raw.githubusercontent.com/") + "/" + BRANCH


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
        download: if False, raise instead of downloading (from ``$STAR_REPOSITORY_RAW`` if set, else
            :data:`REPOSITORY_RAW`).

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
            raise FileNotFoundError(f"{rel.as_posix()} does not exist in this checkout; the chapter shows "
                                    f"the command that makes it")
        return path
    cache = Path(cache_dir) if cache_dir is not None else Path.home() / ".cache" / "star"
    path = cache.joinpath(*rel.parts)
    if path.is_file():
        return path
    if not download:
        raise FileNotFoundError(f"no checkout of the repository here and download=False: {relpath}")
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"{os.environ.get('STAR_REPOSITORY_RAW') or REPOSITORY_RAW}/{rel.as_posix()}"
    tmp = path.with_name(path.name + ".part")
    with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
        shutil.copyfileobj(response, out)
    tmp.replace(path)
    return path


def repo_json(relpath: str, **kwargs):
    """The JSON document stored at ``relpath`` (see :func:`repo_file`)."""
    return json.loads(repo_file(relpath, **kwargs).read_text(encoding="utf-8"))


def stored_run(name: str) -> StoredRun:
    """Load the stored run ``results/metatrain/<name>`` (log, config, provenance and, if present, meta-curve) as a
    :class:`star.runs.StoredRun` whose files are fetched with :func:`repo_file` (downloaded where there is no
    checkout).

    Raises:
        ValueError: ``name`` is not a folder name.
        FileNotFoundError: the run is not in this checkout (and cannot be fetched).
    """
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a run folder under results/metatrain/ such as 'star_fmnist_cpu'; "
                         f"got {name!r}")
    folder = f"results/metatrain/{name}"
    return StoredRun.read(cited=folder, fetch=lambda filename: repo_file(f"{folder}/{filename}"))
