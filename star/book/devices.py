"""Which accelerators JAX sees, printed where a chapter's run time depends on it.

``STAR_SCALE=paper`` runs the paper's settings (thousands of meta-training steps, 2000-step inner
horizons) and is meant for a GPU or TPU; on a CPU use ``smoke`` or ``cpu``.
"""

from __future__ import annotations

from star.scale import Scale, get_scale

__all__ = ["describe_devices", "print_devices"]

_INSTALL_HINT = ('for an NVIDIA GPU install the CUDA build of JAX, pip install -U "jax[cuda12]"; '
                 'for a TPU, pip install -U "jax[tpu]"; then restart the kernel')


def describe_devices(scale: str | Scale | None = None) -> list[str]:
    """Lines describing the JAX backend and devices, the scale, and a warning for ``paper`` on a CPU.

    Args:
        scale: the experiment scale (default ``$STAR_SCALE``; see :mod:`star.scale`).

    Raises:
        ValueError: if ``scale`` is not ``smoke``, ``cpu`` or ``paper``.
    """
    scale = get_scale(scale)
    import jax  # imported on call: the package sets nothing at import time

    devices = jax.devices()
    kinds: dict[str, int] = {}
    for d in devices:
        kinds[d.device_kind] = kinds.get(d.device_kind, 0) + 1
    summary = ", ".join(f"{n} x {kind}" for kind, n in kinds.items())
    lines = [f"JAX {jax.__version__}, backend {jax.default_backend()}: {summary}",
             f"STAR_SCALE={scale.value}"]
    if jax.default_backend() == "cpu":
        if scale is Scale.PAPER:
            lines.append("WARNING: STAR_SCALE=paper is meant for a GPU or TPU and will take very long "
                         f"on a CPU; use STAR_SCALE=cpu, or {_INSTALL_HINT}.")
        else:
            lines.append(f"(CPU only; {_INSTALL_HINT}.)")
    return lines


def print_devices(scale: str | Scale | None = None) -> None:
    """Print :func:`describe_devices` (a chapter's first visible cell where run time matters)."""
    print("\n".join(describe_devices(scale)))
