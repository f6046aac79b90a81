"""Shared pieces of the published figures computed in the limit d → ∞ (:mod:`rfdm.asymptotics`, docs/theory.md §8).

* :func:`limit_curves`: the curves of :class:`rfdm.asymptotics.AsymptoticCurves` (tanh, Σ = I) at given τ, with
  the largest node-doubling difference (the achieved accuracy) and the converged flag;
* :func:`gap_grid`: L_gen = L_test − L_train on a (ψ_p, ψ_n) grid at several τ (τ = ∞ by the closed forms);
* :func:`boundary_psi_n`: the ψ_n at which L_gen(τ) crosses a level ℓ at fixed ψ_p (Brent's method in log ψ_n on
  the limit curves, so the boundary is sharp: its error is that of the curves, ~1e-9, not a grid spacing);
* :func:`grid_boundary`: the same crossing read off a grid row by linear interpolation of log L_gen in log ψ_n
  (for drawing the boundary line on a heatmap).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq

from ..asymptotics import ACCURACY_TOL, AsymptoticCurves
from ..errors import NumericalError

#: Gauss–Legendre nodes per contour panel (the check uses twice as many; accuracy ~1e-10, reported)
NODES = 8


def limit_curves(t: float, psi_p: float, psi_n: float, tau, nodes: int = NODES,
                 keys=("train_loss", "test_loss", "generalization_gap")) -> dict:
    """Every limit curve at ``tau`` (an array; np.inf allowed) for tanh, Σ = I, with ``accuracy`` (node-doubling
    difference per curve) and ``converged``: the curves named in ``keys`` have accuracy ≤ 1e-8 (E_score =
    (L_test − 1)/Δ_t + const amplifies the losses' error by 1/Δ_t, so it is included only where it is used)."""
    ac = AsymptoticCurves("tanh", t, psi_p, psi_n, nodes_per_panel=nodes)
    c = ac.curves(np.asarray(tau, float))
    c["converged"] = bool(all(c["accuracy"][k] <= ACCURACY_TOL for k in keys))
    return c


def gap_grid(t: float, psi_ps, psi_ns, taus, nodes: int = NODES) -> dict:
    """L_gen(τ) on the grid: ``gap`` of shape (len(taus), len(psi_ps), len(psi_ns)) (rows ψ_p, columns ψ_n),
    ``accuracy`` the largest node-doubling difference, ``converged`` all cells converged."""
    psi_ps, psi_ns, taus = (np.asarray(x, float) for x in (psi_ps, psi_ns, taus))
    gap = np.empty((taus.size, psi_ps.size, psi_ns.size))
    acc, conv = 0.0, True
    for i, pp in enumerate(psi_ps):
        for j, pn in enumerate(psi_ns):
            c = limit_curves(t, pp, pn, taus, nodes)
            gap[:, i, j] = c["generalization_gap"]
            acc = max(acc, c["accuracy"]["generalization_gap"])
            conv &= c["converged"]
    return {"gap": gap, "psi_p": psi_ps, "psi_n": psi_ns, "tau": taus, "accuracy": acc, "converged": bool(conv)}


def boundary_psi_n(t: float, psi_p: float, tau: float, level: float, lo: float, hi: float,
                   nodes: int = NODES, xtol: float = 1e-6) -> float:
    """n*(τ)/d at fixed ψ_p: the root in ψ_n ∈ [lo, hi] of L_gen(τ; ψ_p, ψ_n) = ``level`` (L_gen falls with ψ_n;
    Brent's method on log ψ_n, relative tolerance ``xtol``).  Raises NumericalError when [lo, hi] does not
    bracket the crossing."""

    def f(x):
        return float(limit_curves(t, psi_p, math.exp(x), np.array([tau]), nodes)["generalization_gap"][0]) - level

    a, b = math.log(lo), math.log(hi)
    fa, fb = f(a), f(b)
    if not fa * fb < 0:
        raise NumericalError(f"L_gen(τ = {tau:g}) − {level:g} does not change sign between ψ_n = {lo:g} and {hi:g} "
                             f"at ψ_p = {psi_p:g} ({fa:.3g}, {fb:.3g}).")
    return math.exp(brentq(f, a, b, xtol=xtol))


def grid_boundary(psi_ns, gap_row, level: float):
    """The first ψ_n where a grid row of L_gen falls below ``level`` (log–log interpolation); None if it never
    crosses on the grid."""
    psi_ns, g = np.asarray(psi_ns, float), np.asarray(gap_row, float)
    for j in range(1, g.size):
        if g[j - 1] >= level > g[j] and g[j] > 0:
            x0, x1 = math.log(psi_ns[j - 1]), math.log(psi_ns[j])
            y0, y1 = math.log(g[j - 1]), math.log(g[j])
            return math.exp(x0 + (math.log(level) - y0) * (x1 - x0) / (y1 - y0))
    return None
