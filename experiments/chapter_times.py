"""How long each chapter takes to execute: the book built once from an empty execution cache, timed per chapter.

    STAR_SCALE=cpu python experiments/chapter_times.py --out results/timing/cpu/chapter_times.json

Builds the book with ``jupyter-book build`` at the scale of ``$STAR_SCALE`` into a temporary folder with an empty
execution cache, so that every chapter executes, and reads each chapter's run time from that cache (jupyter-cache
records ``execution_seconds`` for every notebook it executed: the same numbers as jupyter-book's execution
report). Chapters run one after the other in one process each, as in ``make book``. The machine's load matters on
a shared machine: the 1-minute load average is sampled every few seconds during the build and stored with the
times (with the core count), so a reader can tell a quiet measurement from a loaded one.

Writes ``--out`` (JSON): ``chapters`` ({page: seconds}), ``build_wall_s``, ``load_1min`` (min, median, max of the
samples), ``cpu_count`` and the provenance (command, commit, scale, device).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from star import runs  # noqa: E402
from star.book.pages import toc_pages  # noqa: E402
from star.scale import get_scale  # noqa: E402


def sample_load(samples: list[float], stop: threading.Event, every_s: float) -> None:
    while not stop.is_set():
        samples.append(os.getloadavg()[0])
        stop.wait(every_s)


def chapter_seconds(cache: Path, root: Path) -> dict[str, float]:
    """{page: execution seconds} of every notebook of the toc that the jupyter-cache at ``cache`` holds for its
    current source."""
    import nbformat
    from jupyter_cache import get_cache

    store, times = get_cache(str(cache)), {}
    for page in toc_pages(root):
        source = root / f"{page}.ipynb"
        if not source.is_file():
            continue
        try:
            record = store.match_cache_notebook(nbformat.read(source, as_version=4))
        except KeyError:
            continue
        seconds = record.data.get("execution_seconds")
        if seconds is not None:
            times[page] = float(seconds)
    return times


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, help="the JSON file written")
    ap.add_argument("--every-s", type=float, default=5.0, help="seconds between load samples")
    ap.add_argument("--book", default=str(ROOT), help="root folder of the book (default: this repository)")
    args = ap.parse_args(argv)
    if not args.every_s > 0:
        print(f"error: --every-s must be a positive number of seconds; got {args.every_s}", file=sys.stderr)
        return 2
    book = Path(args.book).resolve()
    if not (book / "_toc.yml").is_file():
        print(f"error: --book must be a folder holding _toc.yml; got {args.book}", file=sys.stderr)
        return 2
    scale = get_scale().value
    jb = Path(sys.executable).parent / "jupyter-book"
    samples: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_load, args=(samples, stop, args.every_s), daemon=True)
    with tempfile.TemporaryDirectory(prefix="star-chapter-times-") as tmp:
        cmd = [str(jb) if jb.exists() else "jupyter-book", "build", str(book), "--path-output", tmp, "-W", "-n",
               "--keep-going"]
        env = dict(os.environ, STAR_SCALE=scale)
        sampler.start()
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=book, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        stop.set()
        sampler.join()
        # book/_ext/starbook.py keeps one cache per scale beside the HTML folder
        times = chapter_seconds(Path(tmp) / "_build" / ".jupyter_cache" / scale, book)
        if proc.returncode != 0:
            print(proc.stdout[-3000:] + proc.stderr[-3000:], file=sys.stderr)
            print(f"error: the build failed (exit {proc.returncode}); chapters timed: {sorted(times)}", file=sys.stderr)
            return 1
        shutil.rmtree(Path(tmp) / "_build", ignore_errors=True)
    report = {
        "description": f"execution time of each chapter at STAR_SCALE={scale}: one jupyter-book build from an empty "
                       "execution cache, chapters executed one after the other (jupyter-cache's execution_seconds)",
        "scale": scale, "chapters": times, "build_wall_s": wall, "cpu_count": os.cpu_count(),
        "load_1min": {"min": min(samples), "median": statistics.median(samples), "max": max(samples),
                      "samples": len(samples), "every_s": args.every_s},
        "provenance": runs.provenance(runs.command_line(sys.argv[1:] if argv is None else argv,
                                                        prog=("python", "experiments/chapter_times.py")),
                                      seeds=[], wall_s=wall),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    runs.atomic_write_json(out, report)
    print(json.dumps({"out": str(out), "chapters": times, "build_wall_s": round(wall, 1),
                      "load_1min": report["load_1min"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
