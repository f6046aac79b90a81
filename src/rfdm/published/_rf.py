"""Shared pieces of the random-features figures of [B25]: one exact gradient flow per (d, ψ_p, ψ_n, t, σ_x),
the timescales read off its loss curves, the spectral timescales of Thm. 3.1/3.2, and a log-log slope fit.

Readings (docs/theory.md §2–3):
* spectral τ_mem = ψ_p/(Δ_t λ_min(ρ₁)), λ_min the left edge of the memorization bulk ρ₁ (identified by mass,
  :func:`rfdm.published.b25_fig4.identify_pieces`); spectral τ_gen = ψ_p/(Δ_t λ̄(ρ₂)), λ̄ the mean of the
  whole population bulk ρ₂ (every sub-bulk, mass-weighted); leading order τ_mem = ψ_p/(Δ_t λ₋),
  λ₋ = s_t² + v_t²(1 − √(ψ_p/ψ_n))² (Thm. 3.2) and τ_gen ≈ 1/(Δ_t μ₁²);
* from the curves (:func:`rfdm.time_integrated.timescales_from_curves`): τ_mem where the generalization gap
  reaches half its final value, τ_gen where the test loss has made half of its drop to its minimum.
"""

from __future__ import annotations

import math

import numpy as np

from ..data import GaussianData
from ..diffusion import delta_t
from ..dynamics import GradientFlow
from ..features import RandomFeatures, noise_averaged_statistics, population_statistics
from ..spectrum import SpectralProblem, gep_coefficients
from ..time_integrated import timescales_from_curves


def build_flow(d: int, psi_p: float, psi_n: float, t: float, seed: int, sigma_x: float = 1.0) -> GradientFlow:
    """The exact gradient flow (train loss, test loss, score error) of one draw of W and X (Σ = σ_x² I),
    W and X from children of SeedSequence([seed, n, p])."""
    p, n = int(round(psi_p * d)), int(round(psi_n * d))
    rng_w, rng_x = (np.random.default_rng(s) for s in np.random.SeedSequence([seed, n, p]).spawn(2))
    law = GaussianData(d, variance=sigma_x ** 2)
    features = RandomFeatures.sample(d, p, "tanh", rng_w)
    X = law.sample(n, rng_x)
    return GradientFlow(noise_averaged_statistics(features, X, t), population_statistics(features, law, t),
                        overwrite=True)


def slow_mode_mask(flow: GradientFlow, n: int) -> np.ndarray | None:
    """The modes of the atom at s_t² and of the d-eigenvalue cluster just above it: the p − n smallest
    eigenvalues of U (Thm. 3.1 counts: atom p − n − d, cluster d, ρ₁ n − d, ρ₂ d).  None when p <= n."""
    p = flow.p
    if p <= n:
        return None
    mask = np.zeros(p, bool)
    mask[np.argsort(flow.eigenvalues, kind="stable")[:p - n]] = True
    return mask


class FrozenModes:
    """Context manager: the flow's modes in ``mask`` stay at A(0) = 0 (their g = 0, e = 1), every other mode
    follows the gradient flow; the losses are then those of the network trained in the remaining modes only.
    Wraps :meth:`GradientFlow._modes` for the duration of the block (the mode functions g_k, e_k of the
    closed form; docs/theory.md §2)."""

    def __init__(self, flow: GradientFlow, mask: np.ndarray):
        self.flow, self.mask = flow, np.asarray(mask, bool)

    def __enter__(self):
        orig = self._orig = self.flow._modes
        mask = self.mask

        def modes(tau):
            tau, g, e = orig(tau)
            g, e = g.copy(), e.copy()
            g[mask], e[mask] = 0.0, 1.0
            return tau, g, e

        self.flow._modes = modes
        return self.flow

    def __exit__(self, *exc):
        del self.flow._modes  # back to the class method
        return False


def tau_grid(flow: GradientFlow, points_per_decade: int = 20) -> np.ndarray:
    """A log grid from 1e-2 to 100 times the slowest finite mode timescale (so the last point is the end
    of training to better than e^{-200}), with τ = ∞ appended."""
    ts = flow.timescales
    top = float(np.max(ts[np.isfinite(ts)]))
    hi = math.log10(100 * top)
    return np.r_[np.logspace(-2, hi, int((hi + 2) * points_per_decade) + 1), np.inf]


def flow_readings(flow: GradientFlow, tau=None, n: int | None = None) -> dict:
    """Curves on ``tau`` (default :func:`tau_grid`) and the timescales read off them; ``converged`` is
    False if the last finite τ is not yet the end of training (gap there differs from the gap at ∞ by more
    than 1e-6 relative).  With the number of training points ``n``, also the half-gap τ_mem of the network
    trained in ρ₁ ∪ ρ₂ only (the atom and d-cluster modes frozen, :class:`FrozenModes`): ``tau_mem_curves_rho``,
    and the final gaps with and without those modes (``gap_inf_rho``, ``gap_inf``) and without the atom's modes only
(``gap_inf_no_atom``: the p − n − d smallest eigenvalues)."""
    tau = tau_grid(flow) if tau is None else tau
    curves = flow.curves(tau)
    reads = timescales_from_curves(tau, curves["train_loss"], curves["test_loss"])
    fin = np.isfinite(tau)
    gap = curves["generalization_gap"]
    end_ok = bool(np.isinf(tau[-1]) and abs(gap[fin][-1] - gap[-1]) <= 1e-6 * max(abs(gap[-1]), 1e-12))
    k = int(np.argmin(curves["score_error"]))
    frozen = {}
    if n is not None and (mask := slow_mode_mask(flow, n)) is not None:
        with FrozenModes(flow, mask):
            fc = flow.curves(tau)
        fr = timescales_from_curves(tau, fc["train_loss"], fc["test_loss"])
        order = np.argsort(flow.eigenvalues, kind="stable")
        atom = np.zeros(flow.p, bool)
        atom[order[:max(flow.p - n - flow.d, 0)]] = True
        with FrozenModes(flow, atom):
            gap_no_atom = float(flow.curves(np.array([np.inf]))["generalization_gap"][0])
        frozen = {"tau_mem_curves_rho": fr["tau_mem"], "gap_inf_rho": float(fc["generalization_gap"][-1]),
                  "gap_inf": float(gap[-1]), "gap_inf_no_atom": gap_no_atom}
    return {**frozen, "tau": tau, **curves, "tau_mem_curves": reads["tau_mem"], "tau_gen_curves": reads["tau_gen"],
            "tau_test_min": reads["tau_test_min"], "E_score_min": float(curves["score_error"][k]),
            "tau_E_score_min": float(tau[k]), "curves_converged": end_ok}


def spectral_timescales(psi_p: float, psi_n: float, t: float, sigma_x2: float = 1.0, n_points: int = 600) -> dict:
    """τ_mem and τ_gen from the spectrum of Thm. 3.1 (mass-based ρ₁, whole ρ₂), rfdm.spectrum's own readings
    and the leading-order formulas of Thm. 3.2."""
    from .b25_fig4 import identify_pieces

    coeffs = gep_coefficients("tanh", t, sigma_x2)
    res = SpectralProblem(coeffs, psi_p, psi_n, np.array([sigma_x2]), np.array([1.0])).solve(n_points=n_points)
    ts = res.timescales()
    dt = float(delta_t(t))
    pieces = identify_pieces(res.bulks, psi_p, psi_n)
    out = {"converged": res.converged, "tau_mem_library": ts["tau_mem"], "tau_gen_library": ts["tau_gen"],
           "tau_mem_leading_order": ts["tau_mem_leading_order"], "tau_gen_leading_order": ts["tau_gen_leading_order"],
           "tau_mem": None, "tau_gen": None, "lambda_min": None, "rho1_merged": None}
    if pieces is not None:
        lam_min = res.bulks[pieces["rho1"][0]]["left"]
        r2 = [res.bulks[k] for k in pieces["rho2"]]
        mean2 = sum(b["mass"] * b["mean"] for b in r2) / sum(b["mass"] for b in r2)
        out.update(tau_mem=psi_p / (dt * lam_min), tau_gen=psi_p / (dt * mean2), lambda_min=lam_min,
                   rho1_merged=pieces["merged"])
    return out


def loglog_slope(x, y) -> tuple:
    """Least-squares slope of log y against log x and its standard error (None with fewer than 3 finite
    points); the error is the usual residual-based one, so it includes any curvature of the law.  y may hold
    None (a missing reading); :func:`rfdm.time_integrated.fit_slope` does the fit."""
    from ..time_integrated import fit_slope

    x, y = np.asarray(x, float), np.asarray([np.nan if v is None else v for v in y], float)
    ok = np.isfinite(x)
    return fit_slope(x[ok], y[ok])
