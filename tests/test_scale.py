import pytest

from star.scale import Scale, get_scale, pick


def test_scale_from_env(monkeypatch):
    monkeypatch.setenv("STAR_SCALE", "smoke")
    assert get_scale() is Scale.SMOKE
    monkeypatch.setenv("STAR_SCALE", " Paper ")
    assert get_scale() is Scale.PAPER
    monkeypatch.delenv("STAR_SCALE")
    assert get_scale() is Scale.CPU


def test_pick(monkeypatch):
    monkeypatch.setenv("STAR_SCALE", "smoke")
    assert pick(1, 2, 3) == 1
    assert pick(1, 2, 3, scale="paper") == 3
    assert pick(1, 2, 3, scale=Scale.CPU) == 2


def test_bad_scale_names_the_variable(monkeypatch):
    monkeypatch.setenv("STAR_SCALE", "huge")
    with pytest.raises(ValueError, match="STAR_SCALE must be one of smoke, cpu, paper"):
        get_scale()
