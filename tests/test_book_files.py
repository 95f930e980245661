"""star.book.files: repo_file — stored results found in a checkout, fetched (once) where there is none."""

import io

import pytest

from star.book import files as book


def test_in_a_checkout_the_file_comes_from_the_book_root(tmp_path):
    (tmp_path / "_toc.yml").write_text("root: book/intro\n")
    (tmp_path / "results" / "nqm").mkdir(parents=True)
    (tmp_path / "results" / "nqm" / "a.json").write_text("{}")
    (tmp_path / "book").mkdir()
    assert book.repo_file("results/nqm/a.json", start=tmp_path / "book") == \
        (tmp_path / "results" / "nqm" / "a.json").resolve()
    with pytest.raises(FileNotFoundError, match="command that makes it"):
        book.repo_file("results/nqm/missing.json", start=tmp_path / "book")


def test_without_a_checkout_the_file_is_downloaded_once(tmp_path, monkeypatch):
    calls = []

    def fake_urlopen(url, timeout):
        calls.append(url)
        return io.BytesIO(b"payload")

    monkeypatch.setattr(book.urllib.request, "urlopen", fake_urlopen)
    where = tmp_path / "colab"
    where.mkdir()
    cache = tmp_path / "cache"
    with pytest.raises(FileNotFoundError, match="download=False"):
        book.repo_file("results/x.bin", start=where, cache_dir=cache, download=False)
    path = book.repo_file("results/x.bin", start=where, cache_dir=cache)
    assert path == cache / "results" / "x.bin" and path.read_bytes() == b"payload"
    assert calls == [f"{book.REPOSITORY_RAW}/results/x.bin"]
    assert book.repo_file("results/x.bin", start=where, cache_dir=cache) == path
    assert len(calls) == 1
    monkeypatch.setenv("STAR_REPOSITORY_RAW", "file:///mirror/star")  # a local copy standing in for GitHub
    book.repo_file("results/y.bin", start=where, cache_dir=cache)
    assert calls[-1] == "file:///mirror/star/results/y.bin"


@pytest.mark.parametrize("bad", ["", "/etc/passwd", "../secrets", "results/../../x", "a\\b", None])
def test_bad_relpath(bad, tmp_path):
    with pytest.raises(ValueError, match="relpath must be a relative path"):
        book.repo_file(bad, start=tmp_path, download=False)


def test_stored_run_reads_a_run_folder(tmp_path, monkeypatch):
    run = tmp_path / "results" / "metatrain" / "r1"
    (run / "thetas").mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text("root: book/intro\n")
    (run / "log.jsonl").write_text('{"step": 1, "meta_loss": 2.0}\n{"step": 2, "meta_loss": null}\n')
    (run / "config.json").write_text('{"num_tasks": 8}')
    (run / "provenance.json").write_text('{"command": "python -m star meta-train", "git_commit": "abcdef123", '
                                         '"wall_s_total": 12.0, "device": {"count": 1, "platform": "cpu"}}')
    import numpy as np
    np.savez(run / "thetas" / "theta_00000020.npz", w=np.ones(3))
    monkeypatch.chdir(tmp_path)
    r = book.stored_run("r1")
    assert list(r.log["step"]) == [1, 2] and np.isnan(r.log["meta_loss"][1]) and r.curve is None
    assert r.config == {"num_tasks": 8}
    assert r.theta(20)["w"].tolist() == [1, 1, 1]
    assert r.describe() == ("results/metatrain/r1: python -m star meta-train (commit abcdef1, 12 s on 1 cpu "
                            "device(s))")
    with pytest.raises(FileNotFoundError, match="does not exist in this checkout"):
        r.json("evaluate.json")
    for bad in ("", "a/b", ".hidden", None):
        with pytest.raises(ValueError, match="name must be a run folder"):
            book.stored_run(bad)
