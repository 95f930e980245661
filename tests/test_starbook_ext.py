"""book/_ext/starbook.py: the local MathJax copy, its fallback, the per-scale cache, the status page last."""

import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "book" / "_ext"))
import starbook  # noqa: E402


def _fake_es5(folder: Path, with_entry=True) -> Path:
    es5 = folder / "package" / "es5"
    (es5 / "input" / "tex" / "extensions").mkdir(parents=True)
    (es5 / "input" / "tex" / "extensions" / "physics.js").write_text("/* ext */")
    (es5 / "output" / "chtml" / "fonts" / "woff-v2").mkdir(parents=True)
    (es5 / "tex-svg.js").write_text("/* not needed */")
    if with_entry:
        (es5 / starbook.MATHJAX_ENTRY).write_text("/* mathjax */")
    (folder / "package" / "LICENSE").write_text("Apache")
    return es5


def test_local_copy_from_an_unpacked_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("STAR_MATHJAX_DIR", str(_fake_es5(tmp_path / "src")))
    folder = starbook.ensure_local_mathjax(tmp_path / "_build")
    mj = folder / "_static" / "mathjax"
    assert (mj / starbook.MATHJAX_ENTRY).read_text() == "/* mathjax */"
    assert (mj / "input" / "tex" / "extensions" / "physics.js").is_file()
    assert (mj / "LICENSE").is_file() and not (mj / "tex-svg.js").exists()
    assert folder == tmp_path / "_build" / ".mathjax" / starbook.MATHJAX_VERSION
    monkeypatch.setenv("STAR_MATHJAX_DIR", str(tmp_path / "nowhere"))
    assert starbook.ensure_local_mathjax(tmp_path / "_build") == folder  # cached: not fetched again


def test_incomplete_folder_is_rejected_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("STAR_MATHJAX_DIR", str(_fake_es5(tmp_path / "src", with_entry=False)))
    with pytest.raises(FileNotFoundError, match=starbook.MATHJAX_ENTRY):
        starbook.ensure_local_mathjax(tmp_path / "_build")
    assert list((tmp_path / "_build" / ".mathjax").iterdir()) == []


def test_without_npm_the_build_falls_back_to_the_cdn_and_says_so(tmp_path, monkeypatch):
    monkeypatch.delenv("STAR_MATHJAX_DIR", raising=False)
    monkeypatch.setattr(starbook.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="npm is not installed"):
        starbook.ensure_local_mathjax(tmp_path / "_build")
    messages = []
    monkeypatch.setattr(starbook.logger, "info", lambda msg, *a, **k: messages.append(msg))
    config = types.SimpleNamespace(mathjax_path="mathjax/tex-mml-chtml.js", html_extra_path=[])
    starbook._setup_mathjax(types.SimpleNamespace(confdir=str(tmp_path)), config)
    assert config.mathjax_path == starbook.MATHJAX_CDN and config.html_extra_path == []
    assert len(messages) == 1 and "NO LOCAL MATHJAX" in messages[0] and "npm" in messages[0]


def test_local_copy_is_handed_to_sphinx_as_extra_path(tmp_path, monkeypatch):
    monkeypatch.setenv("STAR_MATHJAX_DIR", str(_fake_es5(tmp_path / "src")))
    config = types.SimpleNamespace(mathjax_path="mathjax/tex-mml-chtml.js", html_extra_path=["x"])
    starbook._setup_mathjax(types.SimpleNamespace(confdir=str(tmp_path)), config)
    assert config.mathjax_path == "mathjax/tex-mml-chtml.js"
    assert config.html_extra_path == ["x", f"_build/.mathjax/{starbook.MATHJAX_VERSION}"]


def test_cache_per_scale(tmp_path, monkeypatch):
    app = types.SimpleNamespace(outdir=str(tmp_path / "_build" / "html"))
    for scale in ("smoke", "cpu"):
        monkeypatch.setenv("STAR_SCALE", scale)
        config = types.SimpleNamespace(nb_execution_cache_path="", starbook_scale="")
        starbook._scale_aware_cache(app, config)
        assert config.starbook_scale == scale
        assert config.nb_execution_cache_path == str(tmp_path / "_build" / ".jupyter_cache" / scale)
    monkeypatch.setenv("STAR_SCALE", "huge")
    with pytest.raises(ValueError, match="STAR_SCALE must be one of"):
        starbook._scale_aware_cache(app, types.SimpleNamespace(nb_execution_cache_path=""))


def test_summary_pages_are_always_reread_and_read_last():
    app = types.SimpleNamespace(config=types.SimpleNamespace(starbook_read_last=["book/status"]))
    env = types.SimpleNamespace(found_docs={"book/intro", "book/status", "book/zeta"})
    assert starbook._always_outdated(app, env, set(), set(), set()) == ["book/status"]
    docs = ["book/intro", "book/status", "book/zeta"]
    starbook._read_last(app, env, docs)
    assert docs == ["book/intro", "book/zeta", "book/status"]
    docs = ["book/intro"]  # status not being read this time: nothing to move
    starbook._read_last(app, env, docs)
    assert docs == ["book/intro"]


def test_the_summary_pages_are_read_last_and_executed_on_every_build():
    """The default list names the intro and the status page, and both notebooks force their execution (a cached
    copy would show the verdicts of an earlier build)."""
    import json

    values = {}
    app = types.SimpleNamespace(add_config_value=lambda name, default, rebuild: values.__setitem__(name, default),
                                connect=lambda *a: None, add_css_file=lambda *a: None)
    starbook.setup(app)
    assert values["starbook_read_last"] == ["book/intro", "book/status"]
    root = Path(__file__).resolve().parents[1]
    for page in values["starbook_read_last"]:
        meta = json.loads((root / f"{page}.ipynb").read_text(encoding="utf-8"))["metadata"]
        assert meta.get("mystnb", {}).get("execution_mode") == "force", page


def test_kernels_get_the_inline_backend_whatever_the_caller_set(monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    starbook._inline_figures(None, None)
    import os
    assert os.environ["MPLBACKEND"] == starbook.INLINE_BACKEND
