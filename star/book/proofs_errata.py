"""The errata of Appendix A in the chapter "The appendix proofs, verified" (``book/proofs.ipynb``): the table of
E1–E12 with their computed evidence (:func:`errata_table`, from :mod:`star.errata`) and the numbers of erratum E11's
counterexample to Lemma 3 without its diagonal assumption (:func:`e11_summary`).
"""

from __future__ import annotations

import numpy as np

from star import errata as _errata
from star import stability as _st
from star.book.tables import Table, table

__all__ = ["errata_table", "e11_summary"]


def errata_table() -> Table:
    """The errata E1–E12 with their computed evidence (:func:`star.errata.errata`)."""
    rows = [[r.id, r.location, r.problem, r.fix, r.evidence,
             "—" if r.confirmed is None else ("yes" if r.confirmed else "NO")] for r in _errata.errata()]
    return table(["#", "where", "problem", "fix", "computed evidence", "confirmed"], rows)


def e11_summary(H) -> str:
    """The E11 counterexample: a non-diagonal P̃ within (16)–(17) and an admissible Δ that destabilizes."""
    c = _errata.E11_COUNTEREXAMPLE
    A = np.eye(2) - (c["alpha"] * np.eye(2) + np.diag(c["d"]) @ c["P_tilde"]) @ H
    (p11, p12), (p21, p22) = np.asarray(c["P_tilde"], np.float64)
    lam = np.linalg.eigvalsh(c["P_tilde"])
    return (f"E11: P̃ with rows ({p11:.3f}, {p12:.3f}) and ({p21:.3f}, {p22:.3f}), eigenvalues {lam[0]:.3f} and "
            f"{lam[1]:.3f}; α = {c['alpha']:g}, d̄ = {c['d_bar']:g}, Δ = diag({c['d'][0]:g}, {c['d'][1]:g}): "
            f"ρ(A) = {_st.spectral_radius(A):.3f}").replace("-", "−")
