"""Files of the repository that a chapter loads (``results/…``), found locally or, on Colab, fetched.

A chapter that shows a stored artefact calls ``repo_file("results/metatrain/star_cpu/log.jsonl")``, or
``stored_run("star_cpu")`` for a whole meta-training run folder.
In a checkout (``make book``, ``make test``, CI) that is the file under the book root — the first folder above
the working directory holding ``_toc.yml``. Where there is no checkout (Colab installs only the
package), the file is downloaded once from the repository on GitHub into ``~/.cache/star/`` so that the
chapter runs there too. ``$STAR_REPOSITORY_RAW`` replaces the GitHub address (any URL ``urllib`` opens, such as
``file:///path/to/a/checkout``); the install test uses it to stand a local copy in for GitHub.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import urllib.request
from pathlib import Path, PurePosixPath

from star.book.pages import find_book_root

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


@dataclasses.dataclass(frozen=True)
class StoredRun:
    """A meta-training run folder under ``results/metatrain/``, as a chapter reads it.

    ``log``: the per-step metrics (``{name: array}``, see :func:`star.runs.load_log`);
    ``config``: the run's settings (``config.json``); ``provenance``: command, commit, scale, seeds, wall time,
    device; ``curve``: ``meta_curve.json`` (the unperturbed meta-objective of each stored θ snapshot) or None
    when the run has none.
    """

    name: str
    log: dict
    config: dict
    provenance: dict
    curve: dict | None

    @property
    def folder(self) -> str:
        return f"results/metatrain/{self.name}"

    def json(self, filename: str) -> dict:
        """Another JSON file of the run folder, e.g. ``"evaluate.json"`` or ``"summary.json"``."""
        return repo_json(f"{self.folder}/{filename}")

    def theta(self, step: int) -> dict:
        """The θ snapshot stored after ``step`` outer steps, as ``{flattened key: array}``."""
        import numpy as np

        with np.load(repo_file(f"{self.folder}/thetas/theta_{int(step):08d}.npz")) as z:
            return {k: z[k] for k in z.files}

    def describe(self) -> str:
        """One line: the command, the commit, the wall time and the device (no machine paths)."""
        p = self.provenance
        dev = p.get("device", {})
        return (f"{self.folder}: {p.get('command', '?')} (commit {str(p.get('git_commit', '?'))[:7]}, "
                f"{p.get('wall_s_total', float('nan')):.0f} s on {dev.get('count', '?')} "
                f"{dev.get('platform', '?')} device(s))")


def stored_run(name: str) -> StoredRun:
    """Load the stored run ``results/metatrain/<name>`` (log, config, provenance and, if present, meta-curve).

    Raises:
        ValueError: ``name`` is not a folder name.
        FileNotFoundError: the run is not in this checkout (and cannot be fetched).
    """
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ValueError(f"name must be a run folder under results/metatrain/ such as 'star_fmnist_cpu'; "
                         f"got {name!r}")
    from star.runs import load_log

    folder = f"results/metatrain/{name}"
    log = load_log(repo_file(f"{folder}/log.jsonl").parent)
    try:
        curve = repo_json(f"{folder}/meta_curve.json")
    except FileNotFoundError:
        curve = None
    return StoredRun(name, log, repo_json(f"{folder}/config.json"), repo_json(f"{folder}/provenance.json"), curve)
