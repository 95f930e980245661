import jax
import pytest

from star.book.devices import describe_devices, print_devices


def test_describe_devices_names_backend_devices_and_scale(capsys):
    lines = describe_devices("smoke")
    assert lines[0].startswith(f"JAX {jax.__version__}, backend {jax.default_backend()}: ")
    assert f"{jax.device_count()} x {jax.devices()[0].device_kind}" in lines[0]
    assert lines[1] == "STAR_SCALE=smoke"
    assert not any("WARNING" in line for line in lines)
    print_devices("smoke")
    assert capsys.readouterr().out.splitlines() == lines


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the warning is for CPU-only runs")
def test_paper_scale_on_cpu_warns(monkeypatch):
    monkeypatch.setenv("STAR_SCALE", "paper")
    warning = [line for line in describe_devices() if line.startswith("WARNING")]
    assert len(warning) == 1 and "jax[cuda12]" in warning[0] and "jax[tpu]" in warning[0]


def test_bad_scale():
    with pytest.raises(ValueError, match="STAR_SCALE must be one of"):
        describe_devices("gpu")
