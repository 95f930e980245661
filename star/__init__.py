"""star: the STAR learned optimizer, the noisy quadratic model and its stability theory.

A JAX companion to Harrison, Metz & Sohl-Dickstein, "A Closer Look at Learned Optimization:
Stability, Robustness, and Inductive Biases" (NeurIPS 2022).
"""

from star.scale import Scale, get_scale

__version__ = "0.1.0"

__all__ = ["Scale", "get_scale", "__version__"]
