"""Random instances in the chapter "The appendix proofs, verified" (``book/proofs.ipynb``): Theorem 1 and the exact
stability criterion, Lemma 2 (Hessian preconditioning) and Lemma 3 (multiplicative errors), each checked on random
NQMs (:func:`random_instance`), with the counts in a :class:`Trials` that the verdict rules read
(:mod:`star.book.proofs_verdicts`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from star import stability as _st

__all__ = ["random_instance", "Trials", "theorem1_trials", "lemma2_trials", "lemma3_trials",
           "preconditioning_summary"]


def random_instance(rng: np.random.Generator, sqrt_curvature: bool = False):
    """Random SPD H (N ≤ 4, condition number up to 1e3), α, and symmetric P whose eigenvalues lie around
    Theorem 1's band [−α, e − α], e = 2/λ_max (2/√λ_max for Lemma 2)."""
    n = rng.integers(2, 5)
    U, W = np.linalg.qr(rng.normal(size=(n, n)))[0], np.linalg.qr(rng.normal(size=(n, n)))[0]
    H = (U * 10.0 ** rng.uniform(-3, 0, size=n)) @ U.T
    H = (H + H.T) / 2
    lmax = np.linalg.eigvalsh(H)[-1]
    e = 2 / (np.sqrt(lmax) if sqrt_curvature else lmax)
    a = rng.uniform(0.01, 1.2) * e
    P = (W * (-a + rng.uniform(-0.1, 1.1, size=n) * e)) @ W.T
    return H, a, (P + P.T) / 2


@dataclasses.dataclass(frozen=True)
class Trials:
    """Outcome of a random-instance check: ``held`` instances met the result's conditions, ``stable`` of them
    were stable; ``agree``/``total`` count instances where the exact criterion matched ρ < 1 (Theorem 1) and
    ``strict_held``/``strict_stable`` the strict version (ρ < 1)."""

    name: str
    total: int
    held: int
    stable: int
    agree: int = 0
    strict_held: int = 0
    strict_stable: int = 0
    unit: str = ""  # what ``held`` counts when it is not random instances
    worst_rho: float = float("nan")  # the largest ρ among the instances that met the strict conditions

    def __str__(self) -> str:
        if self.unit:
            out = f"{self.name}: {self.held} {self.unit} (from {self.total} random instances); stable on " \
                  f"{self.stable}/{self.held}"
        else:
            out = f"{self.name}: conditions held on {self.held} of {self.total} random instances; stable on " \
                  f"{self.stable}/{self.held}"
        if self.strict_held:
            out += f"; strict conditions held on {self.strict_held}, ρ(A) < 1 on {self.strict_stable}"
        if self.agree:
            out += f"; the exact criterion matched ρ(A) < 1 on {self.agree}/{self.total}"
        return out


class _Tally:
    """The counts of a :class:`Trials`, one instance at a time: :meth:`held` for an instance (or error) that met the
    conditions, :meth:`strict` for one that met the strict ones, each with its spectral radius ρ."""

    def __init__(self):
        self.held = self.stable = self.strict_held = self.strict_stable = 0
        self.worst = float("nan")

    def held_one(self, rho):
        self.held += 1
        self.stable += rho <= 1 + 1e-9

    def strict_one(self, rho):
        self.strict_held += 1
        self.strict_stable += rho < 1
        self.worst = float(np.fmax(self.worst, rho))

    def trials(self, name: str, total: int, agree: int = 0, unit: str = "") -> Trials:
        return Trials(name, total, self.held, self.stable, agree, self.strict_held, self.strict_stable, unit=unit,
                      worst_rho=self.worst)


def theorem1_trials(rng: np.random.Generator, num: int) -> Trials:
    """Theorem 1 (non-strict: ρ ≤ 1; strict: ρ < 1) and the exact criterion on ``num`` random instances."""
    tally, agree = _Tally(), 0
    for _ in range(num):
        H, a, P = random_instance(rng)
        rho = _st.spectral_radius(np.eye(len(H)) - (a * np.eye(len(H)) + P) @ H)
        agree += _st.exact_stability_criterion(H, a, P) == (rho < 1)
        if _st.theorem1_holds(H, a, P):
            tally.held_one(rho)
        if _st.theorem1_holds(H, a, P, strict=True):
            tally.strict_one(rho)
    return tally.trials("Theorem 1", num, agree)


def lemma2_trials(rng: np.random.Generator, num: int) -> Trials:
    """Lemma 2's conditions against ρ(A′) of the preconditioned dynamics on ``num`` random instances."""
    tally = _Tally()
    for _ in range(num):
        H, a, P = random_instance(rng, sqrt_curvature=True)
        if _st.lemma2_holds(H, a, P):
            rho = _st.spectral_radius(_st.lemma2_dynamics_matrix(H, a, P))
            tally.held_one(rho)
            if _st.lemma2_holds(H, a, P, strict=True):
                tally.strict_one(rho)
    return tally.trials("Lemma 2", num)


def lemma3_trials(rng: np.random.Generator, num: int, errors_per_instance: int = 5) -> Trials:
    """Lemma 3: a diagonal P̃ within (16)–(17), then random errors Δ in the box 0 < d_i ≤ d̄_i and its corner
    Δ = diag(d̄). ``held`` counts the errors tried, ``stable`` those with ρ ≤ 1."""
    tally = _Tally()
    for _ in range(num):
        H, a, _ = random_instance(rng)
        n, e = len(H), 2 / np.linalg.eigvalsh(H)[-1]
        d_bar = rng.uniform(1, 5, size=n)
        P_tilde = np.diag((-a + rng.uniform(size=n) * e) / d_bar.max())
        if not _st.robust_bounds_hold(H, a, P_tilde, d_bar):
            continue
        errors = [np.diag(d_bar * rng.uniform(1e-3, 1, size=n)) for _ in range(errors_per_instance)]
        strict = _st.robust_bounds_hold(H, a, P_tilde, d_bar, strict=True)
        for Delta in errors + [np.diag(d_bar)]:
            rho = _st.spectral_radius(np.eye(n) - (a * np.eye(n) + Delta @ P_tilde) @ H)
            tally.held_one(rho)
            if strict:
                tally.strict_one(rho)
    return tally.trials("Lemma 3", num, unit="sampled diagonal errors within (16)-(17)")


def preconditioning_summary(H) -> str:
    """The largest stable nominal step for P = 0 and the condition number, without and with H^(-1/2)."""
    lam = np.linalg.eigvalsh(H)
    return (f"largest stable α for P = 0: 2/λmax = {2 / lam[-1]:.3f} without, 2/√λmax = "
            f"{2 / np.sqrt(lam[-1]):.3f} with preconditioning; condition number {lam[-1] / lam[0]:.1f} → "
            f"{np.sqrt(lam[-1] / lam[0]):.2f}")
