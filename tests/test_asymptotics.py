"""Tests of rfdm.asymptotics (docs/theory.md §8): the d -> infinity learning curves.

Each test compares the contour formulas with an independent computation: node doubling and a different
contour (quadrature), the closed forms at tau = inf, sampled Gaussian-equivalent matrices (eigendecomposition
of a finite matrix model), the exact finite-d model of rfdm.features/rfdm.dynamics (with a 1/d fit), and the
spectral solver's bulk edges (Thm. 3.1 on the real axis).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rfdm import InvalidParameterError
from rfdm.activations import Activation
from rfdm.asymptotics import AsymptoticCurves, finite_d_curves, mp_stieltjes, richardson_in_inverse_d

T = 0.1
OVER = (4.0, 2.0)    # psi_p > psi_n: memorization possible
UNDER = (2.0, 8.0)   # psi_n > psi_p
TAU = np.array([0.3, 3.0, 30.0, 300.0, 3e3, np.inf])


@pytest.fixture(scope="module")
def over():
    return AsymptoticCurves("tanh", T, *OVER)


@pytest.fixture(scope="module")
def under():
    return AsymptoticCurves("tanh", T, *UNDER)


# -- quadrature ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("regime", ["over", "under"])
def test_node_doubling_converges_to_1e8(regime, request):
    ac = request.getfixturevalue(regime)
    tau = np.r_[np.logspace(-2, 7, 40), np.inf]
    cur = ac.curves(tau)
    for key in ("train_loss", "test_loss", "score_error", "generalization_gap"):
        assert cur["accuracy"][key] <= 1e-8, (key, cur["accuracy"][key])
    assert cur["converged"]
    # an independent contour: half-length panels with 12 nodes (other nodes, other panel ends)
    other = AsymptoticCurves("tanh", T, *ac_args(ac), nodes_per_panel=12, panel_length=0.5)
    np.testing.assert_allclose(other.train_loss(tau), cur["train_loss"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(other.test_loss(tau), cur["test_loss"], rtol=0, atol=1e-8)


def ac_args(ac):
    return ac.psi_p, ac.psi_n


def test_coarse_contour_reports_its_error(over):
    """With 3 nodes per panel the node-doubling estimate is large, and it bounds the true error of the
    coarse level (measured against the converged 16/32-node values) within a factor 10."""
    coarse = AsymptoticCurves("tanh", T, *OVER, nodes_per_panel=3)
    tau = np.logspace(-1, 5, 13)
    v, est = coarse.test_loss(tau, return_error=True)
    true = np.abs(over.test_loss(tau) - v)
    assert est.max() > 1e-6  # the control sees something at this resolution
    assert not coarse.curves(tau)["converged"]
    # the returned value is the 2m level; its true error is (much) smaller than the m-vs-2m difference
    assert np.all(true <= est + 1e-12)


@pytest.mark.parametrize("regime", ["over", "under"])
def test_tau_inf_closed_forms_match_contour(regime, request):
    ac = request.getfixturevalue(regime)
    for level, vals in ac.contour_at_inf().items():
        assert abs(vals["train_loss"] - ac.train_loss_inf()) <= 1e-9
        assert abs(vals["test_loss"] - ac.test_loss_inf()) <= 1e-9
    # the finite-tau contour formula at a tau where every mode has relaxed (e^{-2 Delta s_t^2 tau/psi_p}
    # < e^{-1e4}) equals the closed form
    big = 1e6 * ac.psi_p / (ac.delta * ac.coeffs.s2)
    np.testing.assert_allclose(ac.train_loss([big]), ac.train_loss_inf(), rtol=0, atol=1e-9)
    np.testing.assert_allclose(ac.test_loss([big]), ac.test_loss_inf(), rtol=0, atol=1e-9)
    assert ac.train_loss([0.0])[0] == pytest.approx(1.0, abs=1e-14)
    assert ac.test_loss([0.0])[0] == pytest.approx(1.0, abs=1e-14)


def test_marchenko_pastur_stieltjes_against_quadrature():
    """m(w) = E[1/(mu - w)] for mu = psi_p x, x Marchenko–Pastur(1/psi_p), against Gauss–Chebyshev
    quadrature of the density (smooth integrand away from the support: spectral accuracy)."""
    for psi_p in (4.0, 0.5):
        gamma = 1 / psi_p
        xp, xm = (1 + math.sqrt(gamma)) ** 2, (1 - math.sqrt(gamma)) ** 2
        k = np.arange(1, 4001)
        th = k * math.pi / 4001
        x = 0.5 * (xp + xm) - 0.5 * (xp - xm) * np.cos(th)
        dens = np.sqrt((xp - x) * (x - xm)) / (2 * math.pi * gamma * x)
        wq = dens * 0.5 * (xp - xm) * np.sin(th) * math.pi / 4001
        atom = max(0.0, 1 - psi_p)
        for w in (-1.0, 2.0 + 3.0j, 0.3j, 10.0):
            ref = np.sum(wq / (psi_p * x - w)) + atom / (0.0 - w)
            m, dm = mp_stieltjes(np.array([w]), psi_p)
            assert abs(m[0] - ref) <= 1e-9 * abs(ref)
            dref = np.sum(wq / (psi_p * x - w) ** 2) + atom / w ** 2
            assert abs(dm[0] - dref) <= 1e-8 * abs(dref)


# -- sampled Gaussian-equivalent matrices ------------------------------------------------------------------
def gep_curves(ac, d, seed, tau):
    """Train loss, test loss and score error of the finite equivalent model with one draw of (F, X, Omega):
    U = G G^T/n + b^2 F F^T + s^2 I, G = c F X + v Omega, V = V~ = b F, U~ = a^2 Gamma^2 F F^T + (s^2 + v^2) I,
    Y = V~/sqrt(Delta); A(tau)/sqrt(p) = -(1/sqrt(Delta)) V^T g(U) by eigendecomposition, losses from A."""
    c = ac.coeffs
    rng = np.random.default_rng(seed)
    p, n = int(round(ac.psi_p * d)), int(round(ac.psi_n * d))
    F = rng.standard_normal((p, d)) / math.sqrt(d)
    G = math.sqrt(ac.c2) * F @ rng.standard_normal((d, n)) + math.sqrt(c.v2) * rng.standard_normal((p, n))
    U = G @ G.T / n + c.b ** 2 * F @ F.T + c.s2 * np.eye(p)
    Ut = c.a ** 2 * ac.gamma2 * F @ F.T + (c.s2 + c.v2) * np.eye(p)
    V = c.b * F
    lam, Q = np.linalg.eigh(U)
    P = Q.T @ F  # rotated features: V = b F -> B = b P, U~ -> a^2 Gamma^2 P P^T + (s^2 + v^2) I
    B = c.b * P
    BB = B @ B.T
    H = (c.a ** 2 * ac.gamma2 * (P @ P.T) + (c.s2 + c.v2) * np.eye(p)) * BB  # (Q^T U~ Q) o (B B^T)
    bb = np.diag(BB)
    out = []
    for ta in tau:
        g = 1 / lam if np.isinf(ta) else -np.expm1(-2 * ac.delta * lam * ta / (p / d)) / lam
        # A/sqrt(p) = -(1/sqrt(Delta)) B^T diag(g) Q^T: Tr(A U A^T)/p = sum lam g^2 |B_k|^2/Delta,
        # Tr(A U~ A^T)/p = g^T H g/Delta, Tr(A V~)/sqrt(p) = -sum g |B_k|^2/sqrt(Delta)
        lin = -np.sum(g * bb) / math.sqrt(ac.delta)
        train = 1 + (np.sum(lam * g * g * bb) + 2 * math.sqrt(ac.delta) * lin) / d
        quad = g @ H @ g / ac.delta
        test = 1 + (ac.delta * quad + 2 * math.sqrt(ac.delta) * lin) / d
        score = (quad + 2 * lin / math.sqrt(ac.delta)) / d + 1 / ac.gamma2
        out.append((train, test, score))
    return np.array(out)


@pytest.mark.parametrize("regime", ["over", "under"])
def test_against_sampled_gep_matrices(regime, request):
    """Mean over draws of the finite equivalent model at d = 200 agrees with the limit within 4 standard
    errors plus 0.5/d (a bias of order 1/d is allowed, not required); the spread over draws shrinks like
    1/d: std(d = 200)/std(d = 25) must be within [1/8/2.2, 1/8*2.2] (16 draws: the ratio of two sample
    standard deviations has a relative error ~ 0.26, so the factor 2.2 is ~ 3 sigma in log; a 1/sqrt(d)
    law would give 0.35 and fail)."""
    ac = request.getfixturevalue(regime)
    tau = np.array([3.0, 300.0, np.inf])
    ref = np.stack([ac.train_loss(tau), ac.test_loss(tau), ac.score_error(tau)], axis=1)
    draws = {d: np.array([gep_curves(ac, d, [d, s], tau) for s in range(16)]) for d in (25, 200)}
    big = draws[200]
    mean, sem = big.mean(0), big.std(0, ddof=1) / math.sqrt(big.shape[0])
    assert np.all(np.abs(mean - ref) <= 4 * sem + 0.5 / 200), (mean - ref, sem)
    ratio = big.std(0, ddof=1) / draws[25].std(0, ddof=1)
    assert np.all((ratio > 1 / 8 / 2.2) & (ratio < 2.2 / 8)), ratio


@pytest.mark.parametrize("psi", [OVER, UNDER])
def test_train_loss_inf_against_large_gep_sample_identity_sigma(psi):
    """Sigma = I, tau = inf: one draw at d = 300 (fluctuations O(1/d); tolerance 2/d)."""
    ac = AsymptoticCurves("tanh", T, *psi)
    val = gep_curves(ac, 300, 7, [np.inf])[0, 0]
    assert abs(val - ac.train_loss_inf()) <= 2 / 300


def gep_general(ac, spectrum, d, seed, tau):
    """Train and test loss of the finite equivalent model for Sigma = diag(spectrum) (d entries): X ~ N(0, Sigma),
    G = a_t e^{-t} F X + v Omega, U~ = a_t^2 F Sigma_t F^T + (s^2 + v^2) I, V = V~ = b F; eigendecomposition."""
    c = ac.coeffs
    rng = np.random.default_rng(seed)
    p, n = int(round(ac.psi_p * d)), int(round(ac.psi_n * d))
    F = rng.standard_normal((p, d)) / math.sqrt(d)
    X = np.sqrt(spectrum)[:, None] * rng.standard_normal((d, n))
    G = c.a * math.exp(-T) * F @ X + math.sqrt(c.v2) * rng.standard_normal((p, n))
    U = G @ G.T / n + c.b ** 2 * F @ F.T + c.s2 * np.eye(p)
    Ut = c.a ** 2 * (F * (math.exp(-2 * T) * spectrum + ac.delta)) @ F.T + (c.s2 + c.v2) * np.eye(p)
    lam, Q = np.linalg.eigh(U)
    B = Q.T @ (c.b * F)
    BB = B @ B.T
    H = (Q.T @ Ut @ Q) * BB
    bb = np.diag(BB)
    out = []
    for ta in tau:
        g = 1 / lam if np.isinf(ta) else -np.expm1(-2 * ac.delta * lam * ta / (p / d)) / lam
        lin = -np.sum(g * bb) / math.sqrt(ac.delta)
        out.append((1 + (np.sum(lam * g * g * bb) + 2 * math.sqrt(ac.delta) * lin) / d,
                    1 + (g @ H @ g + 2 * math.sqrt(ac.delta) * lin) / d))
    return np.array(out)


@pytest.mark.parametrize("psi", [OVER, UNDER])
def test_general_sigma_against_gep_samples(psi):
    """Sigma with eigenvalues 0.2 (weight 3/4) and 3 (1/4): train loss (Thm. 3.1) and test loss (nested
    pencil) against the mean of 6 draws of the equivalent matrix at d = 200, within 4 standard errors +
    0.5/d (a finite-d bias of order 1/d is allowed); the isotropic formulas at the same sigma_x^2 are
    further away than that (the test sees the anisotropy); the score error is the test loss's affine
    image with (1/d) Tr Sigma_t^{-1}."""
    ev, wt = np.array([0.2, 3.0]), np.array([0.75, 0.25])
    ac = AsymptoticCurves("tanh", T, *psi, sigma_eigenvalues=ev, sigma_weights=wt)
    tau = np.array([3.0, 30.0, 300.0, np.inf])
    cur = ac.curves(tau)
    assert cur["converged"]
    d = 200
    spectrum = np.repeat(ev, [150, 50])
    draws = np.array([gep_general(ac, spectrum, d, [d, s], tau) for s in range(6)])
    mean, sem = draws.mean(0), draws.std(0, ddof=1) / math.sqrt(draws.shape[0])
    ref = np.stack([cur["train_loss"], cur["test_loss"]], axis=1)
    assert np.all(np.abs(mean - ref) <= 4 * sem + 0.5 / d), (mean - ref, sem)
    iso = AsymptoticCurves("tanh", T, *psi, sigma_eigenvalues=(float(np.dot(ev, wt)),))
    assert np.max(np.abs(iso.test_loss(tau) - mean[:, 1])) > 4 * np.max(sem[:, 1]) + 0.5 / d
    tr_inv = np.dot(wt, 1 / (math.exp(-2 * T) * ev + ac.delta))
    np.testing.assert_allclose(cur["score_error"], (cur["test_loss"] - 1) / ac.delta + tr_inv, rtol=1e-13)


def test_nested_pencil_reduces_to_the_marchenko_pastur_form():
    """For Sigma = sigma_x^2 I the two-point function from the nested pencil (any Sigma) equals Gamma_t^2 times
    the Marchenko–Pastur partial-fraction form, at every pair of contour nodes (two derivations)."""
    for sx2 in (1.0, 2.0):
        ac = AsymptoticCurves("tanh", T, *OVER, sigma_eigenvalues=(sx2,))
        nodes = ac._levels[ac.nodes_per_panel][1]
        Tuu, Tul = ac._two_point_matrices(nodes)  # isotropic: the Marchenko–Pastur form
        nested_uu = ac._two_point_nested(nodes, nodes)
        nested_ul = ac._two_point_nested(nodes, nodes.conj())
        scale = np.max(np.abs(Tuu))
        assert np.max(np.abs(nested_uu - Tuu)) <= 1e-10 * scale
        assert np.max(np.abs(nested_ul - Tul)) <= 1e-10 * scale


def test_train_loss_general_sigma_against_gep_sample():
    """Sigma with eigenvalues 0.5 and 1.5 (half each): the train loss from Thm. 3.1 against one draw of the
    equivalent matrix with X ~ N(0, Sigma) at d = 300, tau = 30 and inf (tolerance 2/d, fluctuations O(1/d))."""
    lam = np.array([0.5, 1.5])
    ac = AsymptoticCurves("tanh", T, *OVER, sigma_eigenvalues=lam)
    d = 300
    sample = gep_general(ac, np.repeat(lam, d // 2), d, 11, [30.0, np.inf])[:, 0]
    np.testing.assert_allclose(sample, ac.train_loss([30.0, np.inf]), rtol=0, atol=2 / d)
    assert "test_loss" not in ac.curves([1.0], train_only=True)


# -- the exact finite-d model and the 1/d bridge ------------------------------------------------------------
ANISO = ((0.2, 3.0), (0.75, 0.25))


@pytest.mark.parametrize("psi, sigma, activation", [
    (OVER, ((1.0,), None), "tanh"), (OVER, ((4.0,), None), "tanh"), (OVER, ((0.25,), None), "tanh"),
    (UNDER, ((1.0,), None), "tanh"), (OVER, ANISO, "tanh"),
    pytest.param(UNDER, ANISO, "tanh", marks=pytest.mark.slow),
    pytest.param(OVER, ((1.0,), None), "relu", marks=pytest.mark.slow),
    pytest.param(OVER, ((1.0,), None), "erf", marks=pytest.mark.slow)])
def test_exact_finite_d_differences_scale_like_inverse_d_and_richardson_meets_limit(psi, sigma, activation):
    """Exact noise-averaged model (rfdm.features + GradientFlow) for data N(0, sigma_x^2 I) at d = 20, 40, 80
    (6 draws each): the Richardson extrapolation in 1/d meets the limit within 4 propagated standard errors
    + 3e-3 (the neglected 1/d^2 term, ~ C_2/20^2 with |C_2| of order 1); d (L_d - L_inf) agrees between d = 40
    and d = 80 within 4 standard errors + 0.15 (a difference proportional to 1/d).  sigma_x^2 = 4 and 1/4
    check the sigma_x conventions (taking sigma_x for sigma_x^2 moves the limit by 0.04-4 here); Sigma with
    eigenvalues 0.2 (3/4) and 3 (1/4) checks the nested pencil (the isotropic formulas at the same sigma_x^2
    are 0.13-1.4 away); relu (slow) checks that the rank-one mean term mu_0^2 1 1^T left out of the
    equivalent model is O(1/d)."""
    ev, wt = sigma
    ac = AsymptoticCurves(activation, T, *psi, sigma_eigenvalues=ev, sigma_weights=wt)
    tau = np.array([1.0, 30.0, 1e3, np.inf])
    dims = [20, 40, 80]
    runs = [finite_d_curves(activation, T, *psi, d, tau, seeds=range(6), sigma_eigenvalues=ev, sigma_weights=wt)
            for d in dims]
    for key in ("train_loss", "test_loss", "score_error"):
        lim = getattr(ac, key)(tau)
        vals = np.array([r[key] for r in runs])
        sems = np.array([r[key + "_sem"] for r in runs])
        fit = richardson_in_inverse_d(dims, vals, sems=sems)
        assert np.all(np.abs(fit["limit"] - lim) <= 4 * fit["limit_sem"] + 3e-3), (key, fit["limit"] - lim)
        scaled = [d * (v - lim) for d, v in zip(dims, vals)]
        err = np.sqrt((40 * sems[1]) ** 2 + (80 * sems[2]) ** 2)
        assert np.all(np.abs(scaled[1] - scaled[2]) <= 4 * err + 0.15), (key, scaled)


def test_richardson_recovers_a_polynomial_in_inverse_d():
    dims = np.array([10.0, 20.0, 40.0, 80.0])
    y = 0.7 + 1.3 / dims[:, None] * np.array([1.0, -2.0]) + 0.4 / dims[:, None] ** 2
    fit = richardson_in_inverse_d(dims, y, order=2)
    np.testing.assert_allclose(fit["limit"], 0.7, atol=1e-12)
    np.testing.assert_allclose(fit["constant"], [1.3, -2.6], atol=1e-10)
    fit1 = richardson_in_inverse_d(dims, y, order=1)
    assert fit1["residual"] > 1e-5  # the 1/d^2 term is seen as a misfit
    with pytest.raises(InvalidParameterError):
        richardson_in_inverse_d([10.0], [[1.0]])


# -- timescales ---------------------------------------------------------------------------------------------
def test_curves_bend_at_the_leading_order_timescales():
    """Thm. 3.2 at leading order (psi_p = 64, psi_n = 8, t = 0.1, the [B25] Fig. 5 setting):
    tau_gen = 1/(Delta mu_1^2) and tau_mem = psi_p/(Delta [s_t^2 + v_t^2 (1 - sqrt(psi_p/psi_n))^2]).  The
    test loss is smallest within a factor 2 of tau_gen, and the generalization gap reaches half its final
    value within a factor 2 of tau_mem (a mode of timescale tau_l contributes e^{-2 tau/tau_l} to the test
    loss; the half-rise of a spread of modes sits below the slowest one, tau_mem, by a factor of order 1)."""
    ac = AsymptoticCurves("tanh", T, 64.0, 8.0)
    c = ac.coeffs
    tau_gen = 1 / (ac.delta * c.mu1 ** 2)
    tau_mem = ac.psi_p / (ac.delta * (c.s2 + c.v2 * (1 - math.sqrt(ac.psi_p / ac.psi_n)) ** 2))
    grid = np.logspace(-1, 6, 281)
    assert tau_gen / 2 <= grid[np.argmin(ac.test_loss(grid))] <= 2 * tau_gen
    gap = ac.generalization_gap(grid)
    half = grid[np.argmax(gap >= 0.5 * (ac.test_loss_inf() - ac.train_loss_inf()))]
    assert tau_mem / 2 <= half <= 2 * tau_mem, (half, tau_mem)


@pytest.mark.slow
def test_curves_bend_at_the_spectral_timescales():
    """psi_p = 16, psi_n = 2.  (i) Late training: L_train(tau) - L_train(inf) = b^2 psi_p int e^{-4 Delta l
    tau/psi_p}/l dnu_s is a mixture of exponentials over the support of nu_s, so its decay rate
    -d log/d tau at tau = 3 psi_p/(Delta l_min) lies in [1, 1.25] x 4 Delta l_min/psi_p, l_min the left edge
    of the lowest bulk from the spectral solver (square-root edge: the rate is 4 Delta l_min/psi_p +
    3/(2 tau), i.e. a factor 1.125 there).  (ii) Early training: the test loss is smallest within a factor
    2 of tau_gen = psi_p/(Delta mean(rho_2)) of Thm. 3.2, and the generalization gap reaches half its final
    value between tau_mem/30 and tau_mem (tau_mem = psi_p/(Delta l_left(rho_1)); the modes of rho_1 relax
    on timescales down to psi_p/(Delta l_right(rho_1)), here tau_mem/9)."""
    ac = AsymptoticCurves("tanh", T, 16.0, 2.0)
    res = ac.problem.solve(n_points=128)
    assert res.converged
    ts = res.timescales()
    lmin = res.bulks[0]["left"]
    rate0 = 4 * ac.delta * lmin / ac.psi_p
    tau = 3 * ac.psi_p / (ac.delta * lmin)
    h = 1e-3 * tau
    tail = ac.train_loss([tau - h, tau + h]) - ac.train_loss_inf()
    rate = -(math.log(tail[1]) - math.log(tail[0])) / (2 * h)
    assert 1.0 <= rate / rate0 <= 1.25, rate / rate0
    grid = np.logspace(-1, 6, 281)
    test = ac.test_loss(grid)
    assert ts["tau_gen"] / 2 <= grid[np.argmin(test)] <= 2 * ts["tau_gen"]
    gap = ac.generalization_gap(grid)
    final = ac.test_loss_inf() - ac.train_loss_inf()
    half = grid[np.argmax(gap >= 0.5 * final)]
    assert ts["tau_mem"] / 30 <= half <= ts["tau_mem"], (half, ts["tau_mem"])


# -- bad input ----------------------------------------------------------------------------------------------
def test_bad_input_raises_one_sentence():
    with pytest.raises(InvalidParameterError, match="psi_p"):
        AsymptoticCurves("tanh", T, 0.0, 2.0)
    with pytest.raises(InvalidParameterError, match="psi_p"):
        AsymptoticCurves("tanh", T, -1.0, 2.0)
    square = Activation.from_function("square-test", lambda x: x * x, derivative=lambda x: 2 * x)
    with pytest.raises(InvalidParameterError, match="b_t"):
        AsymptoticCurves(square, T, *OVER)
    with pytest.raises(InvalidParameterError, match="s_t"):
        AsymptoticCurves("linear", T, *OVER)
    with pytest.raises(InvalidParameterError):
        AsymptoticCurves("tanh", T, *OVER, sigma_eigenvalues=(1.0, -1.0))
    with pytest.raises(InvalidParameterError, match="sigma weights"):
        AsymptoticCurves("tanh", T, *OVER, sigma_eigenvalues=(1.0, 2.0), sigma_weights=(0.5, 0.6))
    with pytest.raises(InvalidParameterError, match="psi_n"):
        AsymptoticCurves("tanh", T, 4.0, 0.0)
    with pytest.raises(InvalidParameterError, match="tau"):
        AsymptoticCurves("tanh", T, *OVER).train_loss([-1.0])
