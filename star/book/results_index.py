"""The index of stored results (``results/README.md``): every run folder and JSON measurement under
``results/``, what it shows, the command that made it, and the chapters of ``book/`` that use it
(``python -m star index`` regenerates it; a test checks it is up to date and that run names follow the scheme).

It reads the chapters' text to find which results they name, so it is book code; the run folders themselves
are read through :mod:`star.runs`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from pathlib import Path

from star.runs import CONFIG, NOTE, RunFolder, read_json

__all__ = ["StoredResult", "list_runs", "run_name_problems", "SCALES", "chapters_using", "index_rows",
           "render_index", "update_index"]


@dataclasses.dataclass(frozen=True)
class StoredResult:
    """One entry of the index of stored results: a run folder or a single JSON measurement."""

    name: str  # path relative to the results root, e.g. "metatrain/star_fmnist8_cpu_n64"
    path: Path
    kind: str  # "run" (a folder with a configuration, star.runs.CONFIG) or "measurement" (a JSON file with provenance)
    command: str | list | None
    scale: str | None
    description: str | None


def _note_heading(path: Path) -> str | None:
    """The first Markdown heading of a NOTE.md, or ``None``."""
    if not path.exists():
        return None
    return next((ln.lstrip("# ").strip() for ln in path.read_text().splitlines() if ln.startswith("#")), None)


def list_runs(root: str | os.PathLike) -> list[StoredResult]:
    """Every stored result under ``root``: run folders (with a configuration, :data:`star.runs.CONFIG`) and JSON
    measurements (top-level ``provenance`` with a ``command``), sorted by name. A run's description is the first
    heading of its ``NOTE.md``; a measurement's is its ``"description"`` field, else the heading of the
    ``NOTE.md`` beside it.

    Raises:
        RunError: a ``.json`` file under ``root`` cannot be read as JSON, or a run's provenance is damaged
            (names the file).
    """
    root = Path(root)
    out = []
    for cfg in sorted(root.rglob(CONFIG)):
        run = RunFolder(cfg.parent)
        prov = run.provenance()
        out.append(StoredResult(run.path.relative_to(root).as_posix(), run.path, "run", prov.get("command"),
                             prov.get("scale"), _note_heading(run.note_path)))
    run_dirs = {r.path for r in out}
    for f in sorted(root.rglob("*.json")):
        if any(p in run_dirs for p in f.parents):
            continue
        d = read_json(f, "stored result")  # an unreadable .json among the results stops the index, naming it
        prov = d.get("provenance") if isinstance(d, dict) else None
        if isinstance(prov, dict) and prov.get("command"):
            out.append(StoredResult(f.relative_to(root).as_posix(), f, "measurement", prov["command"],
                                 prov.get("scale"), d.get("description") or _note_heading(f.parent / NOTE)))
    return sorted(out, key=lambda r: r.name)


SCALES = ("smoke", "cpu", "paper")


def run_name_problems(name: str, config: dict, provenance: dict | None = None) -> list[str]:
    """How a stored run's name breaks the naming scheme (empty if it follows it).

    The scheme (``results/README.md``): a single run is ``<category>/<optimizer>_<task>_<scale>[_<what
    differs>]``, e.g. ``metatrain/star_fmnist8_cpu_n64``; a sweep member is ``<category>/<task>_<sweep>/
    <optimizer>[_<what differs>]``, e.g. ``metatrain/fmnist8_grid/star_wd0.1_s0``. ``<task>`` is the registered
    task's name up to its first underscore (``fmnist_mlp`` → ``fmnist``, ``fmnist8_mlp32`` → ``fmnist8``),
    ``<scale>`` the ``STAR_SCALE`` the run was made at (checked against its provenance where recorded).
    """
    parts = name.split("/")
    opt, task = str(config.get("optimizer", "")), str(config.get("task", ""))
    short = task.split("_")[0]
    problems = []
    if len(parts) == 2:
        base = parts[1]
        prefix = f"{opt}_{short}_"
        if not base.startswith(prefix):
            return [f"{name}: should start with '<optimizer>_<task>_' = {prefix!r} (config: optimizer {opt!r}, "
                    f"task {task!r})"]
        scale = base[len(prefix):].split("_")[0]
        if scale not in SCALES:
            problems.append(f"{name}: the part after {prefix!r} should be a scale {SCALES}; got {scale!r}")
        recorded = (provenance or {}).get("scale")
        if recorded is not None and recorded != scale:
            problems.append(f"{name}: named for scale {scale!r} but made at scale {recorded!r}")
    elif len(parts) == 3:
        group, member = parts[1], parts[2]
        if not group.startswith(f"{short}_"):
            problems.append(f"{name}: the sweep folder should start with the task {short + '_'!r}")
        if member != opt and not member.startswith(f"{opt}_"):
            problems.append(f"{name}: a sweep member should start with its optimizer {opt!r}")
    else:
        problems.append(f"{name}: should be <category>/<run> or <category>/<sweep>/<run>")
    return problems


INDEX_START = "<!-- index:start (generated by 'python -m star index'; do not edit by hand) -->"
INDEX_END = "<!-- index:end -->"
_TOKEN_RE = re.compile(r"[A-Za-z0-9_.{}\-/]+")


def _chapter_patterns(book_dir: Path) -> dict[str, list[re.Pattern]]:
    """For every chapter, the names it refers to: literal tokens, and f-string templates as patterns."""
    out = {}
    for f in sorted(book_dir.glob("*.ipynb")) + sorted(book_dir.glob("*.md")):
        text = f.read_text()
        if f.suffix == ".ipynb":  # search the cells' sources only
            text = "\n".join("".join(c.get("source", [])) for c in json.loads(text).get("cells", []))
        pats = set()
        for tok in _TOKEN_RE.findall(text):
            tok = tok.strip("./-")
            literal = tok.split("{", 1)[0]
            # too unspecific to name a result: a short last component ("cpu"), or a template whose fixed
            # part is short ("{x}.json"); a template of a path ("results/ood/cpu/{task}.json") names its files
            if len(literal if "{" in tok else literal.rsplit("/", 1)[-1]) < 6:
                continue
            pats.add(_template_regex(tok))
        out[f.stem] = [re.compile(p) for p in pats]
    return out


def _template_regex(tok: str) -> str:
    parts = re.split(r"\{[^{}]*\}", tok)
    return "[^/]*".join(re.escape(p) for p in parts)


def chapters_using(name: str, patterns: dict[str, list[re.Pattern]]) -> list[str]:
    """The chapters that name a stored result (its path under ``results/``, or its last component)."""
    keys = {name, f"results/{name}", name.rsplit("/", 1)[-1]}
    return [ch for ch, pats in patterns.items() if any(p.fullmatch(k) for p in pats for k in keys)]


def index_rows(root: str | os.PathLike, book_dir: str | os.PathLike) -> list[dict]:
    """The rows of the results index: one per stored run or measurement, one per sweep folder."""
    root, book_dir = Path(root), Path(book_dir)
    patterns = _chapter_patterns(book_dir) if book_dir.is_dir() else {}
    rows, groups = [], {}
    for r in list_runs(root):
        parts = r.name.split("/")
        if r.kind == "run" and len(parts) > 2:  # a member of a sweep: one row per sweep folder
            groups.setdefault("/".join(parts[:-1]), []).append(r)
            continue
        rows.append({"name": r.name, "kind": r.kind, "description": r.description, "command": r.command,
                     "scale": r.scale, "chapters": chapters_using(r.name, patterns)})
    for g, members in groups.items():
        desc = _note_heading(root / g / NOTE)
        scales = sorted({m.scale for m in members if m.scale})
        used = sorted({c for m in members for c in chapters_using(m.name, patterns)} |
                      set(chapters_using(g, patterns)))
        rows.append({"name": g, "kind": "sweep: one row for all its runs", "description": desc,
                     "command": members[0].command, "scale": ", ".join(scales) or None, "chapters": used})
    return sorted(rows, key=lambda row: row["name"])


def _cell(x) -> str:
    if x is None or x == []:
        return "—"
    if isinstance(x, list):
        x = x[-1] if all(isinstance(c, str) and " " in c for c in x) else ", ".join(map(str, x))
    return str(x).replace("|", "\\|").replace("\n", " ")


def render_index(rows: list[dict]) -> str:
    """The generated Markdown table of :func:`index_rows` (between the index markers)."""
    lines = [INDEX_START, "",
             "| result | what it shows | command (as recorded; the latest session of a resumed run) | scale | "
             "used by |", "|---|---|---|---|---|"]
    for row in rows:
        kind = "" if row["kind"] in ("run", "measurement") else f" ({row['kind']})"
        cmd = _cell(row["command"])
        lines.append(f"| `{row['name']}`{kind} | {_cell(row['description'])} | "
                     f"{'`' + cmd + '`' if cmd != '—' else cmd} | {_cell(row['scale'])} | "
                     f"{', '.join(f'`book/{c}`' for c in row['chapters']) or '—'} |")
    lines += ["", INDEX_END]
    return "\n".join(lines)


def update_index(text: str, root: str | os.PathLike, book_dir: str | os.PathLike) -> str:
    """``text`` (a README) with its generated index replaced by the current one (appended if absent)."""
    table = render_index(index_rows(root, book_dir))
    if INDEX_START in text and INDEX_END in text:
        head, rest = text.split(INDEX_START, 1)
        return head + table + rest.split(INDEX_END, 1)[1]
    return (text.rstrip("\n") + "\n\n" if text else "") + table + "\n"
