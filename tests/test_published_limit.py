"""The published figures computed in the limit d → ∞ (rfdm.published.*_limit, bridge_1_over_d): each checked number
at a reduced size against an independent oracle — the exact finite-d route (rfdm.asymptotics.finite_d_curves:
exact noise-averaged U, V and the closed-form gradient flow, no deterministic equivalent), the leading-order
closed forms of Thm. 3.2 — and the figure modules end to end at the quick preset (slow)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rfdm.asymptotics import finite_d_curves, richardson_in_inverse_d
from rfdm.published._limit import boundary_psi_n, grid_boundary, limit_curves
from rfdm.published._rf import loglog_slope
from rfdm.time_integrated import _first_crossing


def test_fig5c_boundary_moves_with_tau_exact_route():
    """Fig. 5C check n*(10⁴) > n*(10³), at ψ_p = 8: the limit gives n*(10³) ≈ 12.1, n*(10⁴) ≈ 17.0 (level 0.1).  At
    ψ_n between them (the geometric mean) the exact finite-d gap at d = 32 (3 draws) must be below the level at τ = 10³
    and above it at τ = 10⁴ — the boundary lies on the two sides at the two τ.  Measured: 0.077 and 0.124 with SE
    ≈ 0.001; the margin required, 4 SE + 0.5/d (the 1/d constants of L_gen at these ψ are |C| ≲ 0.5, measured
    d (L_d − L_∞) ≈ −0.3 … −0.1 at (4, 8) in the quick preset), is ≈ 0.02."""
    lo = boundary_psi_n(0.1, 8.0, 1e3, 0.1, 1.0, 128.0)
    hi = boundary_psi_n(0.1, 8.0, 1e4, 0.1, 1.0, 128.0)
    assert hi > lo
    pn = math.sqrt(lo * hi)
    d = 32
    f = finite_d_curves("tanh", 0.1, 8.0, pn, d, np.array([1e3, 1e4]), seeds=(0, 1, 2))
    g, se = f["generalization_gap"], f["generalization_gap_sem"]
    margin = 4 * se + 0.5 / d
    assert g[0] + margin[0] < 0.1 < g[1] - margin[1]


def test_fig5c_gap_small_for_n_above_p_exact_route():
    """'Architectural regularization' (Fig. 5C bottom): at ψ_p = 4, L_gen(10⁴) at n = 4p over L_gen(10⁴) at n = p/4
    is below 0.1 both in the limit and by the exact route at d = 24 (4 draws; the ratio's finite-d shift is O(1/d))."""
    tau = np.array([1e4])
    lim = [limit_curves(0.1, 4.0, pn, tau)["generalization_gap"][0] for pn in (16.0, 1.0)]
    ex = [finite_d_curves("tanh", 0.1, 4.0, pn, 24, tau, seeds=(0, 1, 2, 3))["generalization_gap"][0]
          for pn in (16.0, 1.0)]
    assert lim[0] / lim[1] < 0.1
    assert ex[0] / ex[1] < 0.1
    # the two routes agree on the small gap itself within 4 SE + 1/d (|C| ≤ 1 for L_gen at n = 4p)
    f = finite_d_curves("tanh", 0.1, 4.0, 16.0, 24, tau, seeds=(0, 1, 2, 3))
    assert abs(f["generalization_gap"][0] - lim[0]) <= 4 * f["generalization_gap_sem"][0] + 1 / 24


def test_grid_boundary_interpolation():
    """grid_boundary against a hand computation: a row 1, 0.2, 0.05 on ψ_n = 1, 2, 4 crosses 0.1 between 2 and 4 at
    log-log interpolation 2·(0.1/0.2)^{log 2/log(0.05/0.2)} = 2·2^{1/2}."""
    x = grid_boundary([1.0, 2.0, 4.0], [1.0, 0.2, 0.05], 0.1)
    assert x == pytest.approx(2 * math.sqrt(2), rel=1e-12)
    assert grid_boundary([1.0, 2.0], [1.0, 0.5], 0.1) is None


def test_fig1_gap_at_tau_inf_on_n_equals_p_exact_richardson():
    """Fig. 1's iso-gap boundary is built from L_gen(∞) in the limit; at (ψ_p, ψ_n) = (8, 8) (on n = p) the exact
    finite-d gaps at d = 12, 24 (4 draws each) extrapolated in 1/d meet it within 4 propagated SE + 1e-2 (the O(1/d²)
    term at d ≥ 12).  And scale invariance (iso-gap lines parallel to n = p): the exact d = 24 gaps at (8, 8) and
    (16, 16) differ by < 15 % (limit: 0.272 vs 0.251)."""
    tau = np.array([np.inf])
    lim = limit_curves(0.1, 8.0, 8.0, tau)["generalization_gap"][0]
    fs = [finite_d_curves("tanh", 0.1, 8.0, 8.0, d, tau, seeds=(0, 1, 2, 3)) for d in (12, 24)]
    r = richardson_in_inverse_d([12, 24], [f["generalization_gap"] for f in fs],
                                sems=[f["generalization_gap_sem"] for f in fs])
    assert abs(r["limit"][0] - lim) <= 4 * r["limit_sem"][0] + 1e-2
    g16 = finite_d_curves("tanh", 0.1, 16.0, 16.0, 24, tau, seeds=(0, 1, 2))["generalization_gap"][0]
    assert abs(g16 / fs[1]["generalization_gap"][0] - 1) < 0.15


def test_fig1_window_slopes_against_leading_order():
    """Fig. 1's window checks (τ_mem slope 1, τ_gen slope 0 at ψ_p = 2048, ψ_n = 2, 4, 8) against Thm. 3.2's closed
    forms: the spectral slopes (Thm. 3.1 solved numerically) equal the leading-order ones within 0.02 (the leading
    order drops O(ψ_n/ψ_p) ≤ 0.4 % corrections), and the leading-order τ_mem slope is 1 + O(1/√(ψ_p/ψ_n)) ≈ 1.045."""
    from rfdm.published.b25_fig1_limit import window

    w = window(2048.0, (2.0, 4.0, 8.0))
    n = [x["psi_n"] for x in w]
    s_mem, _ = loglog_slope(n, [x["tau_mem"] for x in w])
    s_lo, _ = loglog_slope(n, [x["tau_mem_leading_order"] for x in w])
    s_gen, _ = loglog_slope(n, [x["tau_gen"] for x in w])
    assert abs(s_mem - s_lo) < 0.02
    assert abs(s_lo - 1) < 0.1 and abs(s_mem - 1) < 0.1
    assert abs(s_gen) < 0.05
    # the half-gap time of the limit curves is within a factor 3 of the spectral τ_mem (two definitions)
    for x in w:
        assert 1 / 3 < x["tau_mem_curves"] / x["tau_mem"] < 3


def test_sm_fig11_collapse_exact_route():
    """SM Fig. 11 collapse in τ/τ_gen, by the exact route at d = 24, ψ_p = 8, ψ_n = 2 (2 draws), t = 0.01, 0.1, 0.5:
    rescaling by τ_gen = 1/(Δ_t μ₁²) reduces the spread over t of τ_ε (L_gen(τ_ε) = 10⁻³) by more than 10× (from ≈ 95
    to ≈ 3; the limit: ≈ 58 to ≈ 2.1 at ψ_p = 32).  The rescaled spread at d = 24 is below 3.5: finite d raises the
    early gap (∝ 1/n, here n = 48) unevenly in t."""
    from rfdm.published.b25_sm_fig11_limit import tau_gen_leading

    te, tg = [], []
    for t in (0.01, 0.1, 0.5):
        g = tau_gen_leading(t)
        tau = g * np.logspace(-2, 3, 101)
        f = finite_d_curves("tanh", t, 8.0, 2.0, 24, tau, seeds=(0, 1))
        te.append(_first_crossing(tau, f["generalization_gap"], 1e-3))
        tg.append(g)
    resc = [a / b for a, b in zip(te, tg)]
    plain_spread, resc_spread = max(te) / min(te), max(resc) / min(resc)
    assert plain_spread / resc_spread > 10
    assert resc_spread < 3.5


def test_sm_fig11_tau_gen_is_leading_order_formula():
    """τ_gen used for the rescaling is 1/(Δ_t μ₁²), μ₁ = E[z tanh(Γ_t z)]... checked against Gauss–Hermite
    quadrature (independent of rfdm.activations): μ₁ = E_z[tanh(Γ_t z) z] with Γ_t² = e^{-2t} + Δ_t = 1 for σ_x = 1."""
    from rfdm.published.b25_sm_fig11_limit import tau_gen_leading

    x, w = np.polynomial.hermite_e.hermegauss(120)
    w = w / w.sum()
    for t in (0.01, 0.1, 0.5):
        dt = 1 - math.exp(-2 * t)
        gamma = math.sqrt(math.exp(-2 * t) + dt)
        mu1 = float(np.sum(w * x * np.tanh(gamma * x)))
        assert tau_gen_leading(t) == pytest.approx(1 / (dt * mu1 ** 2), rel=1e-10)


@pytest.mark.slow
def test_sm_fig13_limit_e_star_against_exact_richardson():
    """E*_score in the limit (ψ_p = 32, t = 0.01) at ψ_n = 1 and 4 against the exact finite-d minima at d = 12, 24
    (3 draws each; min over a 40-per-decade τ grid, whose relative grid error is ≲ 1e-3) extrapolated in 1/d: within
    4 propagated SE + 5e-3 (the O(1/d²) term: d (E*_d − E*_∞) ≈ 0.15–0.3 at d = 12, so C₂/d² ≲ 5e-3); and the local exponent between ψ_n = 1 and 4
    from the two extrapolations is within 0.1 of the limit's (≈ −0.35)."""
    from rfdm.published.b25_sm_fig13_limit import e_star

    tau = np.logspace(0, 6, 241)
    ext, lims = [], []
    for pn in (1.0, 4.0):
        lim = e_star(pn)["E_star"]
        vals, sems = [], []
        for d in (12, 24):
            fs = [finite_d_curves("tanh", 0.01, 32.0, pn, d, tau, seeds=(s,))["score_error"].min() for s in (0, 1, 2)]
            vals.append([np.mean(fs)])
            sems.append([np.std(fs, ddof=1) / math.sqrt(3)])
        r = richardson_in_inverse_d([12, 24], vals, sems=sems)
        assert abs(r["limit"][0] - lim) <= 4 * r["limit_sem"][0] + 5e-3
        ext.append(r["limit"][0])
        lims.append(lim)
    assert abs(math.log(ext[1] / ext[0]) / math.log(4) - math.log(lims[1] / lims[0]) / math.log(4)) < 0.1


def test_sm_fig13_limit_minimum_is_interior_and_refined():
    """e_star: the minimum lies inside the τ grid and the Brent refinement is no worse than the grid minimum
    (an independent dense grid at 400 per decade around τ* finds nothing lower by more than 1e-10)."""
    from rfdm.asymptotics import AsymptoticCurves
    from rfdm.published.b25_sm_fig13_limit import e_star

    r = e_star(4.0)
    assert r["interior"] and r["accuracy"] < 1e-8
    ac = AsymptoticCurves("tanh", 0.01, 32.0, 4.0, nodes_per_panel=16)
    dense = ac.score_error(r["tau_star"] * np.logspace(-0.5, 0.5, 401))
    assert r["E_star"] <= dense.min() + 1e-10


def test_bridge_quick_meets_limit():
    """bridge-1-over-d at the quick preset (ψ_p = 4, ψ_n = 2, t = 0.1, d = 12, 24, 48, 8 draws): every internal check
    (Richardson vs limit within 4 propagated SE + 3e-3) agrees, and a limit shifted by 0.05 would not (the tolerance
    is not vacuous)."""
    from rfdm.published import bridge_1_over_d

    res = bridge_1_over_d.compute("quick", 0)
    for c in res["claim"].internal_checks:
        assert c.verdict == "agrees", c.as_dict()
        lo, hi = c.acceptance
        # the loss windows are narrow (score error: the same window divided by Δ_t ≈ 0.18)
        assert hi - lo < (0.1 if "score_error" not in c.name else 0.6)
    r = res["richardson"]["train_loss"]
    assert np.all(np.abs(r["limit"] + 0.05 - res["limit"]["train_loss"]) > 4 * r["limit_sem"] + 3e-3)


@pytest.mark.slow
@pytest.mark.parametrize("fid", ["B25-fig5C", "B25-fig1", "B25-SM-fig11", "B25-SM-fig13-limit"])
def test_limit_figures_quick_end_to_end(fid, tmp_path):
    """Each limit figure at the quick preset through rfdm.published.run: an entry with a verdict and the PNG."""
    from rfdm.published import run

    entry = run(fid, "quick", 0, out_dir=tmp_path)
    assert entry["id"] == fid and entry["verdict"] in ("agrees", "differs", "no published number", "not converged")
    assert (tmp_path / f"{fid}.png").exists()
    assert entry["verdict"] != "not converged"
