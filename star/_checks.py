"""Input validation shared by the public functions of :mod:`star` (NQM, stability, PES, data, training).

Every check raises ``ValueError`` naming the argument, the offending value and the allowed range.
Shape checks always run. Value checks (finiteness, symmetry, definiteness) run only on concrete
arrays: inside ``jax.jit``/``vmap``/``grad`` the inputs are tracers, their values are unknown, and
the checks are skipped so that the functions stay transformable.
"""

from __future__ import annotations

import numbers

import jax
import numpy as np

# Relative tolerance for symmetry and definiteness checks (float32 inputs round at ~1e-7).
_REL_TOL = 1e-6


def is_concrete(*xs) -> bool:
    """True when none of ``xs`` is a JAX tracer (i.e. values can be inspected)."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(xs))


def _short(x) -> str:
    text = np.array2string(np.asarray(x), precision=4, threshold=8)
    return text if len(text) < 120 else text[:117] + "..."


def _as_array(name: str, x):
    if isinstance(x, jax.core.Tracer):
        return x
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic inputs
        raise ValueError(f"{name} must be array-like; got {type(x).__name__}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ValueError(f"{name} must be a real numeric array; got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise ValueError(f"{name} must be real; got complex dtype {arr.dtype}")
    return x


def finite_scalar(name: str, x, *, low=None, high=None, low_open=False, high_open=False):
    """A real scalar, finite, optionally in [low, high] (open ends as requested). Returns ``x``."""
    x = _as_array(name, x)
    if np.ndim(x) != 0:
        raise ValueError(f"{name} must be a scalar; got shape {np.shape(x)}")
    if not is_concrete(x):
        return x
    v = float(np.asarray(x))
    if not np.isfinite(v):
        raise ValueError(f"{name} must be finite; got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}; got {v}")
    if high is not None and (v > high or (high_open and v == high)):
        raise ValueError(f"{name} must be {'<' if high_open else '<='} {high}; got {v}")
    return x


def integer(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """A static integer ``minimum <= value [<= maximum]`` (Python or numpy integer, not bool, not float).
    Returns ``int``."""
    bounds = f">= {minimum}" if maximum is None else f">= {minimum} and <= {maximum}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise ValueError(
            f"{name} must be an integer {bounds}; got {value!r} of type {type(value).__name__}")
    if int(value) < minimum or (maximum is not None and int(value) > maximum):
        raise ValueError(f"{name} must be an integer {bounds}; got {int(value)}")
    return int(value)


#: The largest step count or horizon: iteration counters are int32.
MAX_STEPS = 2**31 - 1
#: The largest PRNG seed: seeds (and seed + 1, the meta-parameters' key) fit a 32-bit signed integer.
MAX_SEED = 2**31 - 2


def seed(name: str, value) -> int:
    """A PRNG seed, an integer in ``[0, MAX_SEED]``."""
    return integer(name, value, minimum=0, maximum=MAX_SEED)


def horizon(name: str, T) -> int:
    """A static integer horizon ``T >= 1`` (see :func:`integer`)."""
    return integer(name, T, minimum=1)


def square_matrix(name: str, X, n: int | None = None):
    """A real ``(n, n)`` matrix with finite entries. Returns ``X``."""
    X = _as_array(name, X)
    shape = np.shape(X)
    if len(shape) != 2 or shape[0] != shape[1]:
        raise ValueError(f"{name} must be a square 2-D matrix; got shape {shape}")
    if shape[0] < 1:
        raise ValueError(f"{name} must have at least 1 row and column; got shape {shape}")
    if n is not None and shape[0] != n:
        raise ValueError(f"{name} must have shape ({n}, {n}) to match H; got shape {shape}")
    if is_concrete(X) and not np.all(np.isfinite(np.asarray(X))):
        raise ValueError(f"{name} must have finite entries; got {_short(X)}")
    return X


def _sym_err(X: np.ndarray) -> float:
    scale = max(1.0, float(np.max(np.abs(X))))
    return float(np.max(np.abs(X - X.T))) / scale


def symmetric_matrix(name: str, X, n: int | None = None):
    """A real symmetric ``(n, n)`` matrix (relative asymmetry <= 1e-6). Returns ``X``."""
    X = square_matrix(name, X, n)
    if is_concrete(X):
        err = _sym_err(np.asarray(X, dtype=np.float64))
        if err > _REL_TOL:
            raise ValueError(f"{name} must be symmetric; got relative asymmetry {err:.3g} in {_short(X)}")
    return X


def spd_matrix(name: str, X, n: int | None = None):
    """A symmetric positive-definite matrix. Returns ``X``."""
    X = symmetric_matrix(name, X, n)
    if is_concrete(X):
        lam = np.linalg.eigvalsh(np.asarray(X, dtype=np.float64))
        if lam[0] <= 0:
            raise ValueError(
                f"{name} must be positive definite; got smallest eigenvalue {lam[0]:.4g} in {_short(X)}")
    return X


def psd_matrix(name: str, X, n: int | None = None):
    """A symmetric positive-semidefinite matrix (eigenvalues >= -1e-6 * scale). Returns ``X``."""
    X = symmetric_matrix(name, X, n)
    if is_concrete(X):
        Xn = np.asarray(X, dtype=np.float64)
        lam = np.linalg.eigvalsh(Xn)
        if lam[0] < -_REL_TOL * max(1.0, float(np.max(np.abs(Xn)))):
            raise ValueError(
                f"{name} must be positive semidefinite; got smallest eigenvalue {lam[0]:.4g} in {_short(X)}")
    return X


def vector(name: str, v, n: int):
    """A real finite vector of shape ``(n,)``. Returns ``v``."""
    v = _as_array(name, v)
    if np.shape(v) != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match H; got shape {np.shape(v)}")
    if is_concrete(v) and not np.all(np.isfinite(np.asarray(v))):
        raise ValueError(f"{name} must have finite entries; got {_short(v)}")
    return v


def key(name: str, value):
    """A single PRNG key: a typed key (``jax.random.key(seed)``) or a raw ``uint32[2]`` one (``PRNGKey``)."""
    import jax.numpy as jnp

    if isinstance(value, (jax.Array, np.ndarray)):
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key) and value.shape == ():
            return value
        if value.dtype == jnp.uint32 and value.shape == (2,):
            return value
        raise ValueError(f"{name} must be a single PRNG key (jax.random.key(seed)); "
                         f"got an array of dtype {value.dtype} and shape {tuple(value.shape)}")
    raise ValueError(f"{name} must be a PRNG key (jax.random.key(seed)); got {type(value).__name__}")


def finite_tree(name: str, tree) -> None:
    """Every leaf of ``tree`` finite (checked only on concrete arrays; tracers pass)."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        if is_concrete(leaf) and not np.all(np.isfinite(np.asarray(leaf))):
            raise ValueError(f"{name} must be finite; {name}{jax.tree_util.keystr(path)} holds non-finite values "
                             f"{_short(leaf)}")


def choice(name: str, value, allowed):
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value
