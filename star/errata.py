"""The errata E1–E12 of the appendix proofs (errata table, proofs chapter), each with a computed demonstration.

:func:`errata` returns one :class:`Erratum` per item; ``confirmed`` is ``True`` when the computation shows what
the erratum claims, ``None`` for purely notational items that have nothing to compute (E6, E12). Every number
in ``evidence`` is computed here, in float64, from :mod:`star.nqm` and :mod:`star.stability`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from star import nqm as _nqm
from star import stability as _st

__all__ = ["Erratum", "errata", "E11_COUNTEREXAMPLE"]


class Erratum(NamedTuple):
    id: str
    location: str
    problem: str
    fix: str
    evidence: str
    confirmed: bool | None


def _rot(theta):
    return np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])


#: A non-diagonal P̃ that satisfies the eigenvalue bounds (16)-(17) for d̄ = 4.3, and a diagonal Δ with
#: 0 < d_i <= d̄ that makes the paper's NQM unstable (found by random search, then rounded).
E11_COUNTEREXAMPLE = dict(alpha=1.3, d_bar=4.3, P_tilde=_rot(2.73) @ np.diag([-0.3, 0.0]) @ _rot(2.73).T,
                          d=np.array([0.03, 4.0]))


def _A(H, alpha, P):
    return np.eye(H.shape[0]) - (alpha * np.eye(H.shape[0]) + P) @ H


def errata() -> list[Erratum]:
    """Compute the demonstrations (about a second)."""
    H = _nqm.PAPER_H
    nqm = _nqm.paper_nqm()
    edge = 2.0 / np.linalg.eigvalsh(H)[-1]
    out = []

    with _nqm.float64():
        L = float(_nqm.expected_loss(nqm, 0.8, None, 50))
        Lbar = float(_nqm.noise_free_loss(nqm, 0.8, None, 50))
        # With phi0 = 0 the loss is exactly the trace term (1/T) sum 1/2 tr(H (Sigma_t + Sigma_xi)).
        gap = float(_nqm.expected_loss(nqm._replace(S0=np.zeros((2, 2))), 0.8, None, 50))
        steps = np.asarray(_nqm.expected_losses(nqm, 0.8, None, 100))
    out.append(Erratum(
        "E1", "Lemma 4, (A.2)", "L and L̄ swapped: as printed, (A.2) gives L̄ ≥ L, the opposite of (A.1).",
        "L = L̄ + (1/T)Σ ½tr(H(Σ_t+Σ_ξ)), trace term ≥ 0.",
        f"α=0.8, T=50: L̄={Lbar:.3f}, L={L:.3f}, trace term={gap:.3f}; L̄+term={Lbar + gap:.3f} (=L), "
        f"L+term={L + gap:.3f} (≠L̄)",
        bool(abs(L - (Lbar + gap)) < 1e-9 * L and Lbar < L)))

    P2 = np.diag([1.2, 0.0])
    A2 = _A(H, 0.05, P2)
    rho, nrm = _st.spectral_radius(A2), float(np.linalg.norm(A2, 2))
    powers = [np.linalg.matrix_power(A2, k) for k in range(400)]
    lhs = float(sum(np.linalg.norm(Ak, 2) ** 2 for Ak in powers))
    rhs = float(sum(rho ** (2 * k) for k in range(400)))
    kappa = _st.eigenvector_condition_number(A2)
    out.append(Erratum(
        "E2", "Lemma 5, (A.14)", "Σ‖A^k‖² = Σρ(A^k)² is false for non-normal A.",
        "‖A^k‖₂ ≤ κ(V)ρ(A)^k, so Σ‖A^k‖² ≤ κ(V)²/(1−ρ²).",
        f"α=0.05, P=diag(1.2,0) (Thm 1 holds): ρ(A)={rho:.4f} < 1 < ‖A‖₂={nrm:.3f}; "
        f"Σ_(k<400)‖A^k‖²={lhs:.1f} vs Σρ^2k={rhs:.1f}; κ(V)²/(1−ρ²)={kappa ** 2 / (1 - rho ** 2):.1f}",
        bool(_st.theorem1_holds(H, 0.05, P2) and rho < 1 < nrm and lhs > rhs + 1
             and lhs <= kappa ** 2 / (1 - rho ** 2))))

    ks = np.array([1, 10, 100])
    rho_k = [_st.spectral_radius(np.linalg.matrix_power(A2, int(k))) for k in ks]
    out.append(Erratum(
        "E3", "Lemma 5, end of proof", "ρ(A^k) < 1 for each k does not by itself bound the infinite sum.",
        "Use geometric decay ρ(A^k) = ρ(A)^k with the κ(V) bound of E2.",
        "ρ(A^k) for k=1,10,100: " + ", ".join(f"{r:.4f}" for r in rho_k) + " = ρ(A)^k: "
        + ", ".join(f"{rho ** k:.4f}" for k in ks),
        bool(np.allclose(rho_k, rho ** ks, rtol=1e-8))))

    LT = np.cumsum(steps) / np.arange(1, 101)
    Ts = [1, 2, 3, 5, 10, 20, 50, 100]
    out.append(Erratum(
        "E4", "Lemma 5, first line", "L(θ;T) ≤ L(θ;T+1) holds for the sum T·L, not for the time average L.",
        "Only sup_T L < ∞ is needed; it follows from a uniform bound on every step's expected loss.",
        "α=0.8: L(T) for T=" + ",".join(map(str, Ts)) + ": " + ", ".join(f"{LT[T - 1]:.2f}" for T in Ts),
        bool(np.all(np.diff(LT[np.array(Ts) - 1]) < 0))))

    P5 = np.array([[0.0, 1.0], [-1.0, 0.0]])  # a non-symmetric P: A has complex eigenvalues
    A5 = _A(H, 0.5, P5)
    lam, V = np.linalg.eig(A5)
    phi0, t = np.array([1.0, 2.0]), 3
    z = np.linalg.solve(V, phi0)
    W = np.diag(z) @ V.T @ H @ V @ np.diag(z)  # Zᵀ Vᵀ H V Z of (A.6), with the plain transpose
    x = lam ** t
    exact = phi0 @ np.linalg.matrix_power(A5, t).T @ H @ np.linalg.matrix_power(A5, t) @ phi0
    lhs5, rhs5 = abs(x @ W @ x), np.linalg.norm(W, 2) * np.sum(np.abs(x) ** 2)
    herm = float(np.max(np.abs(W - W.conj().T)))
    out.append(Erratum(
        "E5", "Lemma 5, (A.5)–(A.7)", "Plain transposes with a complex eigendecomposition: ZᵀVᵀHVZ is not "
        "Hermitian, so (A.7) is not a Rayleigh-quotient bound.",
        "Use conjugate transposes (V*HV, (λ^t)*); the bound (A.7) survives (Cauchy–Schwarz).",
        f"α=0.5, P with rows (0, 1) and (−1, 0): λ(A)={lam[0]:.3f}, {lam[1]:.3f}; ‖W−W*‖={herm:.2f}; "
        f"(λ³)ᵀWλ³={(x @ W @ x).real:.4f} (= φ0ᵀ(A³)ᵀHA³φ0 = {exact:.4f}) ≤ ‖W‖Σ|λ|⁶={rhs5:.4f}",
        bool(np.any(np.abs(lam.imag) > 1e-6) and herm > 1e-6 and abs(x @ W @ x - exact) < 1e-9
             and lhs5 <= rhs5)))

    out.append(Erratum("E6", "heading 'Proof of Theorem 7'", "The main text calls it Theorem 1.",
                       "A label typo.", "— (nothing to compute)", None))

    r7 = _st.spectral_radius(_A(H, edge, np.zeros((2, 2))))
    out.append(Erratum(
        "E7", "Theorem 1 proof, (A.15)", "|I − λ_i| should be |1 − λ_i|; non-strict (9)–(10) give only ρ ≤ 1.",
        "Strict inequalities give ρ(A) < 1.",
        f"α=2/λmax(H)={edge:.4f}, P=0: Thm 1 holds, ρ(A)={r7:.6f}; strict version "
        f"{'holds' if _st.theorem1_holds(H, edge, None, strict=True) else 'fails'}",
        bool(_st.theorem1_holds(H, edge, None) and abs(r7 - 1) < 1e-9
             and not _st.theorem1_holds(H, edge, None, strict=True))))

    P8 = np.array([[0.2, 0.1], [0.1, -0.4]])
    lhs8 = float(np.linalg.eigvalsh(-0.3 * np.eye(2) + P8)[-1])
    rhs8 = -0.3 + float(np.linalg.eigvalsh(P8)[-1])
    out.append(Erratum(
        "E8", "Theorem 1 proof, (A.18)", "λmax(αI+P)=α+λmax(P) does not need α > 0.",
        "A spectral shift, valid for every scalar α.",
        f"α=−0.3: λmax(αI+P)={lhs8:.4f}, α+λmax(P)={rhs8:.4f}", bool(abs(lhs8 - rhs8) < 1e-12)))

    X, Y = np.array([[1.0, 4.0], [0.0, 1.0]]), np.array([[2.0, 1.0], [1.0, 1.0]])
    lxy = float(np.max(np.linalg.eigvals(X @ Y).real))
    bound = float(np.max(np.linalg.eigvals(X).real) * np.linalg.eigvalsh(Y)[-1])
    P9 = np.array([[0.3, -0.2], [-0.2, 0.1]])
    A9 = _st.lemma2_dynamics_matrix(H, 0.4, P9)
    w, U = np.linalg.eigh(H)
    ref9 = _A((U * np.sqrt(w)) @ U.T, 0.4, P9)
    same = np.allclose(np.sort_complex(np.linalg.eigvals(A9)), np.sort_complex(np.linalg.eigvals(ref9)))
    out.append(Erratum(
        "E9", "Lemma 2 proof", "(A.16) is applied to X = αI + H^(−1/2)PH^(1/2), which is not symmetric.",
        "Use the similarity H^(1/2)(H^(−1/2)MH)H^(−1/2) = MH^(1/2) with M symmetric PSD.",
        f"for the non-symmetric X with rows (1, 4), (0, 1) and Y with rows (2, 1), (1, 1): "
        f"λmax(XY)={lxy:.3f} > λmax(X)λmax(Y)={bound:.3f}; "
        f"the similarity holds (spectra equal: {'yes' if same else 'no'})",
        bool(lxy > bound and same)))

    P10 = np.diag([-0.05, -0.05])
    r10 = _st.spectral_radius(_A(H, 1.5, 0.1 * P10))
    out.append(Erratum(
        "E10", "Lemma 3 proof, max-eigenvalue case", "'If λmin(P̃) ≤ 0 the bound is immediately satisfied' — "
        "should be λmax(P̃) ≤ 0, and even then α ≤ 2/λmax(H) is needed.",
        "(17) with max(λmax(P̃),0): α + d̄·max(λmax(P̃),0) ≤ 2/λmax(H).",
        f"α=1.5 > 2/λmax={edge:.3f}, P̃=−0.05I, Δ=0.1I: ρ(A)={r10:.3f}; (16)–(17) hold: "
        f"{'yes' if _st.robust_bounds_hold(H, 1.5, P10, 2.0) else 'no'}",
        bool(r10 > 1 and not _st.robust_bounds_hold(H, 1.5, P10, 2.0))))

    c = E11_COUNTEREXAMPLE
    lamP = np.linalg.eigvalsh(c["P_tilde"])
    bounds_ok = (-c["alpha"] <= c["d_bar"] * min(lamP[0], 0.0)) and (
        c["alpha"] + c["d_bar"] * max(lamP[-1], 0.0) <= edge)
    r11 = _st.spectral_radius(_A(H, c["alpha"], np.diag(c["d"]) @ c["P_tilde"]))
    out.append(Erratum(
        "E11", "Lemma 3 assumptions", "Simultaneous diagonalizability with a diagonal Δ of distinct entries "
        "forces a diagonal P̃.",
        "Natural for coordinate-wise learned optimizers (STAR); without it (16)–(17) can fail.",
        f"non-diagonal P̃ with λ(P̃)=({lamP[0]:.2f},{lamP[1]:.2f}), α={c['alpha']}, d̄={c['d_bar']}: (16)–(17) "
        f"{'hold' if bounds_ok else 'do not hold'}, yet Δ=diag({c['d'][0]},{c['d'][1]}) gives ρ(A)={r11:.3f}",
        bool(bounds_ok and r11 > 1 and np.all(c["d"] <= c["d_bar"]))))

    out.append(Erratum("E12", "notation", "μ_t, Σ_μ (main text) vs ξ_t, Σ_ξ (appendix).", "Same object.",
                       "— (nothing to compute)", None))
    return out
