"""What every figure of the book must satisfy, measured on the figure itself and carried into its picture.

A reader cannot check a legend's font size or whether it hides data from a PNG, so the book checks the
matplotlib figure when a chapter displays it: :func:`figure_facts` measures, per panel, the axis labels, each
legend's smallest font size and the fraction of the panel's data points it covers, and which series cannot be
told apart (same colour, line style and marker; or one curve lying exactly under another one of the same style),
plus every piece of text the figure shows. :func:`install` makes the notebook kernel write those facts into a
text chunk (``star-figure``) of every PNG it displays; ``tests/test_browser.py`` reads them back from the built
pages' images and applies :func:`figure_problems`, the rules:

* every panel with data has a label on both axes (or shares the axis with a labelled panel of its row/column);
* every legend's text is at least :data:`MIN_LEGEND_PT` points and covers no data point of any panel;
* series in one panel are distinguishable, and a legend entry looks like something that is drawn; a curve that
  lies under another one of a different style on most of its points must show markers where the upper one has
  none (or the legend must say that they coincide);
* no text is an internal id of the package (:func:`star.book.labels.internal_ids`,
  :data:`star.book.labels.ID_PATTERNS`).
"""

from __future__ import annotations

import json
import re

import numpy as np

__all__ = ["MIN_LEGEND_PT", "COINCIDE_PX", "COINCIDE_SHARE", "PNG_KEY", "figure_facts", "figure_problems",
           "png_with_facts", "install", "read_facts"]

MIN_LEGEND_PT = 8.0
PNG_KEY = "star-figure"
_SAMPLES = 24  # points per line segment when testing whether a legend covers a line
#: two curves closer than this (display pixels, about one line width) along this share of their length coincide
COINCIDE_PX = 3.0
COINCIDE_SHARE = 0.9


def _is_colorbar(ax) -> bool:
    return ax.get_label() == "<colorbar>" or hasattr(ax, "_colorbar")


def _data_lines(ax):
    """Lines drawn in data coordinates with at least two finite points (not axhline/axvline references)."""
    out = []
    for line in ax.get_lines():
        if line.get_transform() is not ax.transData or not line.get_visible():
            continue
        xy = np.asarray(line.get_xydata(), np.float64)
        if xy.ndim == 2 and np.isfinite(xy).all(axis=1).sum() >= 1:
            out.append(line)
    return out


def _has_data(ax) -> bool:
    return bool(_data_lines(ax) or ax.collections or ax.images or ax.patches and len(ax.patches) > 1)


def _display_points(ax, line) -> np.ndarray:
    """Display coordinates of a line's vertices and of points along its segments (where it is drawn)."""
    xy = np.asarray(line.get_xydata(), np.float64)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) == 0:
        return np.zeros((0, 2))
    pts = ax.transData.transform(xy)
    if line.get_linestyle() in ("None", "none", "", " ") or len(pts) < 2:
        return pts
    t = np.linspace(0.0, 1.0, _SAMPLES)[None, :, None]
    seg = pts[:-1, None, :] * (1 - t) + pts[1:, None, :] * t
    return np.concatenate([pts, seg.reshape(-1, 2)])


def _collection_points(ax) -> np.ndarray:
    """Display coordinates of scatter offsets and of filled bands' vertices in ``ax``."""
    pts = []
    for c in ax.collections:
        if not c.get_visible():
            continue
        offs = np.asarray(c.get_offsets(), np.float64)
        if offs.ndim == 2 and len(offs) and c.get_offset_transform() is ax.transData:
            pts.append(ax.transData.transform(offs[np.isfinite(offs).all(axis=1)]))
        elif c.get_transform() is ax.transData:
            for path in c.get_paths():
                v = np.asarray(path.vertices, np.float64)
                v = v[np.isfinite(v).all(axis=1)]
                if len(v):
                    pts.append(ax.transData.transform(v))
    return np.concatenate(pts) if pts else np.zeros((0, 2))


def _collection_styles(ax) -> set:
    """Line styles of the collections in ``ax`` (bands, contour lines), for matching legend entries: a filled band
    counts as a solid line; contour and line collections, whose dash patterns are not named, as any line style."""
    from matplotlib.collections import LineCollection

    out = set()
    for c in ax.collections:
        if isinstance(c, LineCollection) or type(c).__name__ in ("QuadContourSet", "ContourSet"):
            out |= {("-", "None"), ("--", "None"), (":", "None"), ("-.", "None")}
        else:
            out.add(("-", "None"))
    return out


def _in_box(points: np.ndarray, box) -> np.ndarray:
    return (points[:, 0] > box.x0) & (points[:, 0] < box.x1) & (points[:, 1] > box.y0) & (points[:, 1] < box.y1)


def _style(line) -> tuple:
    from matplotlib.colors import to_hex

    return (to_hex(line.get_color()), str(line.get_linestyle()), str(line.get_marker()))


def _texts(fig) -> list[str]:
    out = []
    for t in fig.findobj(lambda a: hasattr(a, "get_text") and hasattr(a, "get_visible")):
        try:
            s = t.get_text()
        except TypeError:
            continue
        if isinstance(s, str) and s.strip() and t.get_visible():
            out.append(s.strip())
    return list(dict.fromkeys(out))


def figure_facts(fig) -> dict:
    """Measure ``fig`` (drawn once): per panel its title and axis labels (and which panels share an axis), per
    legend its smallest font size and the data points it covers, indistinguishable series, and all text."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = [ax for ax in fig.axes if ax.get_visible() and ax.axison and not _is_colorbar(ax)]
    index = {id(ax): i for i, ax in enumerate(axes)}
    panels, legends = [], []
    points = {}
    for i, ax in enumerate(axes):
        pts = [_display_points(ax, line) for line in _data_lines(ax)] + [_collection_points(ax)]
        points[i] = np.concatenate(pts) if pts else np.zeros((0, 2))
        shared = {k: sorted(index[id(o)] for o in getattr(ax, f"get_shared_{k}_axes")().get_siblings(ax)
                            if id(o) in index and o is not ax) for k in ("x", "y")}
        lines = _data_lines(ax)
        same_style, hidden = [], []
        styled: dict = {}
        for line in lines:
            label = line.get_label()
            if not label.startswith("_"):
                styled.setdefault(_style(line), []).append(label)
        same_style = [labels for labels in styled.values() if len(set(labels)) > 1]
        named = [line for line in lines if not line.get_label().startswith("_")]  # the series a reader can name
        for a in range(len(named)):
            for b in range(a + 1, len(named)):
                la, lb = named[a], named[b]
                if _style(la)[1:] != _style(lb)[1:]:
                    continue
                ya, yb = np.asarray(la.get_ydata(), float), np.asarray(lb.get_ydata(), float)
                xa, xb = np.asarray(la.get_xdata(), float), np.asarray(lb.get_xdata(), float)
                if ya.shape == yb.shape and xa.shape == xb.shape and len(ya) > 2 and np.allclose(xa, xb):
                    both = np.isfinite(ya) & np.isfinite(yb)
                    span = np.ptp(ya[both]) if both.any() else 0.0
                    pa, pb = ax.transData.transform(np.c_[xa, ya][both]), ax.transData.transform(np.c_[xb, yb][both])
                    if both.sum() > 2 and span > 0 and np.max(np.abs(pa[:, 1] - pb[:, 1])) < 1.5:
                        hidden.append([la.get_label(), lb.get_label()])
        coincident = _coincident(ax, named)
        panels.append({"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                       "has_data": _has_data(ax), "shares_x": shared["x"], "shares_y": shared["y"],
                       "row": ax.get_subplotspec().rowspan.start if ax.get_subplotspec() else i,
                       "col": ax.get_subplotspec().colspan.start if ax.get_subplotspec() else 0,
                       "same_style": same_style, "hidden": hidden, "coincident": coincident,
                       "drawn_styles": sorted({_style(line)[1:] for line in ax.get_lines() if line.get_visible()
                                               and len(line.get_xydata())}
                                              | _collection_styles(ax))})
    for owner, leg in [(index.get(id(ax)), ax.get_legend()) for ax in axes] + [(None, g) for g in fig.legends]:
        if leg is None or not leg.get_visible():
            continue
        box = leg.get_window_extent(renderer)
        covered = {i: int(_in_box(p, box).sum()) for i, p in points.items() if len(p)}
        sizes = [t.get_fontsize() for t in leg.get_texts()]
        entries = []
        for handle, text in zip(leg.legend_handles, leg.get_texts()):
            if handle is not None and hasattr(handle, "get_linestyle") and hasattr(handle, "get_marker"):
                entries.append({"label": text.get_text(), "style": [str(handle.get_linestyle()),
                                                                    str(handle.get_marker())]})
        legends.append({"panel": owner, "min_fontsize": min(sizes) if sizes else None,
                        "covered_points": {str(k): v for k, v in covered.items() if v},
                        "entries": entries})
    return {"panels": panels, "legends": legends, "texts": _texts(fig)}


def _marker_indices(line, n: int) -> set | None:
    """The indices of the points of ``line`` that show a marker (``None``: a spacing given in display units)."""
    if str(line.get_marker()) in _NONE:
        return set()
    every, idx = line.get_markevery(), np.arange(n)
    if every is None:
        return set(range(n))
    if isinstance(every, (int, np.integer)) and not isinstance(every, bool):
        return set(idx[:: int(every)].tolist())
    if isinstance(every, tuple) and len(every) == 2 and all(isinstance(v, (int, np.integer)) for v in every):
        return set(idx[int(every[0]):: int(every[1])].tolist())
    if isinstance(every, slice):
        return set(idx[every].tolist())
    arr = np.asarray(every)
    if arr.dtype == bool and arr.shape == (n,):
        return set(idx[arr].tolist())
    if arr.ndim == 1 and np.issubdtype(arr.dtype, np.integer):
        return set(arr.tolist())
    return None


def _near_share(pa: np.ndarray, pb: np.ndarray) -> float:
    """The share of the drawn length of polyline ``pa`` (display coordinates) that lies within
    :data:`COINCIDE_PX` of ``pb`` (same number of vertices, compared at the same place along each segment)."""
    t = np.linspace(0.0, 1.0, _SAMPLES)[None, :, None]
    sa = pa[:-1, None, :] * (1 - t) + pa[1:, None, :] * t
    sb = pb[:-1, None, :] * (1 - t) + pb[1:, None, :] * t
    near = np.linalg.norm(sa - sb, axis=-1) < COINCIDE_PX  # [segments, samples]
    length = np.linalg.norm(pa[1:] - pa[:-1], axis=-1) + 1e-9  # a flat stretch still counts
    return float(np.sum(length[:, None] * near) / (_SAMPLES * np.sum(length)))


def _coincident(ax, named) -> list:
    """Pairs ``[lower, upper, apart]`` of named curves in different styles that lie within :data:`COINCIDE_PX`
    of each other along at least :data:`COINCIDE_SHARE` of their drawn length, ``lower`` drawn first (under
    ``upper``). ``apart``: a reader can still see the lower one — it shows markers at points where the upper
    one shows none — or a legend label says that the two coincide."""
    order = sorted(range(len(named)), key=lambda k: (named[k].get_zorder(), k))
    out = []
    for ia in range(len(order)):
        for ib in range(ia + 1, len(order)):
            la, lb = named[order[ia]], named[order[ib]]
            if _style(la)[1:] == _style(lb)[1:]:
                continue  # the same line style and marker: the "hidden" rule's case
            xa, xb = np.asarray(la.get_xdata(), float), np.asarray(lb.get_xdata(), float)
            ya, yb = np.asarray(la.get_ydata(), float), np.asarray(lb.get_ydata(), float)
            if xa.shape != xb.shape or ya.shape != yb.shape or len(ya) < 3 or not np.allclose(xa, xb):
                continue
            both = np.isfinite(ya) & np.isfinite(yb) & np.isfinite(xa)
            if both.sum() < 3:
                continue
            pa, pb = ax.transData.transform(np.c_[xa, ya][both]), ax.transData.transform(np.c_[xb, yb][both])
            if _near_share(pa, pb) < COINCIDE_SHARE:
                continue
            low, up = _marker_indices(la, len(ya)), _marker_indices(lb, len(yb))
            told = any("coincid" in line.get_label().lower() for line in (la, lb))
            apart = told or low is None or bool(low - (up if up is not None else set()))
            out.append([la.get_label(), lb.get_label(), bool(apart)])
    return out


def figure_problems(facts: dict, ids=None, patterns=None) -> list[str]:
    """What breaks the book's figure rules in :func:`figure_facts` output (empty: nothing). ``ids`` and
    ``patterns`` default to :func:`star.book.labels.internal_ids` and :data:`star.book.labels.ID_PATTERNS`."""
    from star.book import labels

    ids = labels.internal_ids() if ids is None else ids
    patterns = labels.ID_PATTERNS if patterns is None else patterns
    out = []
    panels = facts.get("panels", [])
    for i, p in enumerate(panels):
        if not p["has_data"]:
            continue
        name = f"panel {i + 1}" + (f" ({p['title']})" if p["title"] else "")
        for axis, other in (("x", "col"), ("y", "row")):
            if p[f"{axis}label"].strip():
                continue
            # a shared axis may be labelled once, on another panel of the same column (x) or row (y)
            if any(panels[j][f"{axis}label"].strip() and panels[j][other] == p[other] for j in p[f"shares_{axis}"]):
                continue
            out.append(f"{name} has no {axis}-axis label")
        for labels_ in p["same_style"]:
            out.append(f"{name}: series {labels_} share one colour, line style and marker")
        for a, b in p["hidden"]:
            out.append(f"{name}: the curve {a!r} lies exactly under {b!r} in the same style")
        for a, b, apart in p.get("coincident", []):
            if not apart:
                out.append(f"{name}: the curve {a!r} lies under {b!r} (within {COINCIDE_PX:g} px along "
                           f"{COINCIDE_SHARE:.0%} of its length) and shows no marker of its own; stagger their "
                           "markers or say in the legend that they coincide")
    for leg in facts.get("legends", []):
        where = "figure legend" if leg["panel"] is None else f"legend of panel {leg['panel'] + 1}"
        if leg["min_fontsize"] is not None and leg["min_fontsize"] < MIN_LEGEND_PT:
            out.append(f"{where}: text at {leg['min_fontsize']:g} pt (at least {MIN_LEGEND_PT:g} pt)")
        for k, n in leg["covered_points"].items():
            out.append(f"{where} covers {n} data points of panel {int(k) + 1}")
        drawn = set()
        for j, p in enumerate(panels):
            if leg["panel"] is None or j == leg["panel"]:
                drawn |= {tuple(s) for s in p["drawn_styles"]}
        for e in leg["entries"]:
            if not _looks_drawn(tuple(e["style"]), drawn):
                out.append(f"{where}: the entry {e['label']!r} (line {e['style'][0]!r}, marker {e['style'][1]!r}) "
                           f"looks like nothing drawn")
    out += [f"figure text {hit!r} is an internal id" for hit in id_hits(" | ".join(facts.get("texts", [])),
                                                                        ids, patterns)]
    return out


_NONE = ("None", "none", "", " ")


def _looks_drawn(entry: tuple, drawn: set) -> bool:
    """A legend entry (line style, marker) is drawn if some series has its line style (when it shows a line) and
    its marker (when it shows one)."""
    ls, mk = entry
    if ls in _NONE and mk in _NONE:
        return True
    return any((ls in _NONE or ls == d_ls) and (mk in _NONE or mk == d_mk) for d_ls, d_mk in drawn)


def id_hits(text: str, ids=None, patterns=None) -> list[str]:
    """The internal ids (:func:`star.book.labels.internal_ids`) and id-shaped strings
    (:data:`star.book.labels.ID_PATTERNS`) in ``text``."""
    from star.book import labels

    ids = labels.internal_ids() if ids is None else ids
    patterns = labels.ID_PATTERNS if patterns is None else patterns
    hits = [i for i in sorted(ids, key=len, reverse=True)
            if re.search(r"(?<![\w./-])" + re.escape(i) + r"(?![\w-])", text)]
    for name, pat in patterns.items():
        hits += [f"{m.group(0)} ({name})" for m in re.finditer(pat, text) if m.group(0) not in hits]
    return list(dict.fromkeys(hits))


def png_with_facts(fig, **print_kwargs) -> bytes:
    """The PNG a notebook shows for ``fig``, with :func:`figure_facts` as JSON in its ``star-figure`` text chunk."""
    from IPython.core.pylabtools import print_figure

    try:
        facts = json.dumps(figure_facts(fig), ensure_ascii=True)
    except Exception as err:  # noqa: BLE001 - a figure the audit cannot measure still shows; the test reports it
        facts = json.dumps({"error": f"{type(err).__name__}: {err}"[:300]})
    kw = {"bbox_inches": "tight", **print_kwargs}
    metadata = {**kw.pop("metadata", {}), PNG_KEY: facts}
    return print_figure(fig, fmt="png", metadata=metadata, **kw)


def install() -> bool:
    """In an IPython kernel, make every displayed matplotlib figure a PNG carrying its facts; elsewhere do
    nothing. Returns whether it installed.

    matplotlib loads its backend lazily, and the inline backend registers its own PNG formatter when it loads (at
    the first figure); so the formatter is registered now and again before every cell runs."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with the book's dependencies
        return False
    ip = get_ipython()
    if ip is None or not hasattr(ip, "display_formatter"):
        return False
    from matplotlib.figure import Figure

    def register(*_):
        try:
            from matplotlib_inline.config import InlineBackend

            kwargs = dict(InlineBackend.instance().print_figure_kwargs)
        except ImportError:  # pragma: no cover
            kwargs = {}
        ip.display_formatter.formatters["image/png"].for_type(Figure, lambda fig: png_with_facts(fig, **kwargs))

    try:
        import matplotlib.pyplot as plt

        plt._get_backend_mod()  # load the inline backend now, so that it registers its formatter first
    except Exception:  # noqa: BLE001 - a backend that cannot load draws nothing either way
        pass
    register()
    if not getattr(ip, "_star_figures_hook", False):
        ip.events.register("pre_run_cell", register)
        ip._star_figures_hook = True
    return True


def read_facts(png_path) -> dict | None:
    """The facts stored in a PNG written by :func:`png_with_facts` (``None`` if it has none)."""
    from PIL import Image

    with Image.open(png_path) as im:
        raw = im.text.get(PNG_KEY) if hasattr(im, "text") else im.info.get(PNG_KEY)
    return None if raw is None else json.loads(raw)
