"""The multi-time Gaussian equivalent of the time-integrated U (rfdm.multitime): its coefficients against the
per-time Gaussian-equivalence coefficients of rfdm.spectrum and against nested adaptive quadrature, its
spectrum against the exact Mehler U, bad input."""

import dataclasses
import math

import numpy as np
import pytest
from scipy.integrate import quad

import rfdm
from rfdm.diffusion import delta_t
from rfdm.errors import InvalidParameterError
from rfdm.multitime import (equivalent_statistics, equivalent_training_matrix, ks_two_sample,
                            multitime_coefficients)
from rfdm.time_integrated import TimeIntegratedModel


def _model(d, p, seed, b=None, **kw):
    f = rfdm.RandomFeatures.sample(d, p, "tanh", seed)
    if b is None:
        return TimeIntegratedModel.sample(f, seed + 1, **kw)
    return TimeIntegratedModel(f, b, **kw)


def test_coefficients_reduce_to_the_per_time_gep_without_bias():
    """With b = 0 and rows of W of norm sqrt(d), every feature at node t has the per-time coefficients of
    docs/theory.md §4 (rfdm.spectrum.gep_coefficients, a different quadrature: Gauss-Legendre in u over
    pieces): alpha = e^{-t} a_t, beta = b_t, v^2 = v_t^2, mu0 = 0 (tanh odd), and the diagonal remainder plus the
    noise orders kept off the diagonal is s_t^2.  Both are quadratures converged to ~1e-13."""
    from rfdm.spectrum import gep_coefficients

    d, p = 8, 5
    f = rfdm.RandomFeatures.sample(d, p, "tanh", 0)
    W = f.W / np.linalg.norm(f.W, axis=1, keepdims=True) * math.sqrt(d)
    model = TimeIntegratedModel(rfdm.RandomFeatures(W, "tanh"), np.zeros(p), t_min=0.01, t_max=2.0)
    co = multitime_coefficients(model, 5)
    for j, t in enumerate(co.t):
        g = gep_coefficients("tanh", t)
        np.testing.assert_allclose(co.alpha[j], math.exp(-t) * g.a, rtol=1e-9)
        np.testing.assert_allclose(co.beta[j], g.b, rtol=1e-9)
        np.testing.assert_allclose(co.v2[j], g.v2, rtol=1e-7, atol=1e-14)
        np.testing.assert_allclose(co.mu0[j], 0.0, atol=1e-13)
        np.testing.assert_allclose(co.s2[j] + np.sum(co.noise[2:, j] ** 2, axis=0), g.s2, rtol=1e-7, atol=1e-13)


def test_cross_time_covariance_against_nested_adaptive_quadrature():
    """C_i(t, t') = E_u[rho_i(u, t) rho_i(u, t')] with g_i(u, t) = E_zeta tanh(t b_i + c_i u + r_i zeta), by
    scipy.integrate.quad in zeta inside quad in u (independent of the Gauss-Hermite rules); tolerance 1e-8
    relative to v^2 (quad's own tolerance ~1e-10 on each level)."""
    d, p = 8, 3
    model = _model(d, p, 3, t_min=0.05, t_max=1.5)
    co = multitime_coefficients(model, 5)
    W = model.features.W
    i = 1
    ell = np.linalg.norm(W[i]) / math.sqrt(d)
    pdf = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731

    def g(u, t):
        c, r = math.exp(-t) * ell, math.sqrt(float(delta_t(t))) * ell
        return quad(lambda z: math.tanh(t * model.b[i] + c * u + r * z) * pdf(z), -12, 12, epsabs=1e-13)[0]

    def moments(t):
        m0 = quad(lambda u: g(u, t) * pdf(u), -10, 10, epsabs=1e-12)[0]
        a = quad(lambda u: g(u, t) * u * pdf(u), -10, 10, epsabs=1e-12)[0]
        return m0, a

    j, k = 1, 3
    tj, tk = co.t[j], co.t[k]
    (m_j, a_j), (m_k, a_k) = moments(tj), moments(tk)
    np.testing.assert_allclose([co.mu0[j, i], co.alpha[j, i]], [m_j, a_j], atol=1e-9)
    ref = quad(lambda u: (g(u, tj) - m_j - a_j * u) * (g(u, tk) - m_k - a_k * u) * pdf(u), -10, 10,
               epsabs=1e-13)[0]
    np.testing.assert_allclose(co.cov[i, j, k], ref, rtol=1e-6, atol=1e-8 * co.cov[i, j, j])


def test_spectrum_matches_the_exact_mehler_u():
    """d = 16, psi_p = 8, psi_n = 4 (p = 128, n = 64), Q log-uniform on [0.01, 2]: the two-sample KS distance
    between the eigenvalues of the exact time-integrated U and of one sample of the equivalent (same W, X, b)
    is 0.10 for three Omega seeds (0.073-0.078 at d = 24, 0.063-0.070 at d = 32: the higher Hermite orders of
    the data part, O(psi_p/d) in operator norm, are the finite-d error).  Asserted: below 0.13.  The
    cross-time covariance matters: with independent Omega at every node (C_i diagonal, a per-time GEP summed
    over t) the KS distance is 0.23 (asserted above 1.5 times the multi-time one)."""
    d = 16
    law = rfdm.GaussianData(d)
    model = _model(d, 8 * d, 0, time_law="log-uniform")
    X = law.sample(4 * d, np.random.default_rng(1))
    exact = np.linalg.eigvalsh(model.training_statistics(X).U)
    co = multitime_coefficients(model, 33)
    ks = ks_two_sample(exact, np.linalg.eigvalsh(equivalent_training_matrix(model, co, X, 0)))
    assert ks < 0.13
    independent = dataclasses.replace(co, cov=co.cov * np.eye(co.t.size)[None])
    ks_independent = ks_two_sample(exact, np.linalg.eigvalsh(equivalent_training_matrix(model, independent, X, 0)))
    assert ks_independent > 1.5 * ks


@pytest.mark.parametrize("kw", [dict(t_nodes=1), dict(t_nodes=0), dict(t_nodes="many")])
def test_bad_input(kw):
    d = 4
    model = _model(d, 8, 0)
    X = rfdm.GaussianData(d).sample(8, np.random.default_rng(0))
    with pytest.raises(InvalidParameterError):
        equivalent_statistics(model, X, 0, **kw)


def test_gaussian_skip_is_refused():
    d = 4
    model = _model(d, 8, 0, beta="gaussian-skip")
    X = rfdm.GaussianData(d).sample(8, np.random.default_rng(0))
    with pytest.raises(InvalidParameterError, match="beta"):
        equivalent_statistics(model, X, 0)


# -- the self-consistent equations for the equivalent's spectrum (EquivalentSpectrum) ------------------------

from rfdm.multitime import EquivalentSpectrum  # noqa: E402


@pytest.mark.parametrize("psi_p, psi_n, t", [(8.0, 2.0, 0.01), (4.0, 8.0, 0.1), (64.0, 8.0, 0.01), (2.0, 16.0, 0.5)])
def test_one_node_reduces_to_b25_theorem_3_1(psi_p, psi_n, t):
    """One node and identical features (a_i = e^{-t} a_t, b_i = b_t, C_i = v_t^2, diag = s_t^2): the equations
    are [B25] Thm 3.1, which rfdm.spectrum.SpectralProblem solves by Newton's method on its own (q, r) form.
    Both are converged to ~1e-11 at z = lam + i 1e-3 min(lam) on both sides of the atom and in both regimes
    (psi_n < psi_p and psi_n > psi_p); asserted: relative difference below 1e-8."""
    from rfdm.spectrum import SpectralProblem, gep_coefficients

    d = 20  # only p/d and n/d enter when the features are identical
    p, n = int(psi_p * d), int(psi_n * d)
    g = gep_coefficients("tanh", t)
    problem = EquivalentSpectrum(np.full((p, 1), math.exp(-t) * g.a), np.full((p, 1), g.b), np.full((p, 1, 1), g.v2),
                                 np.full(p, g.s2), d, n)
    ref = SpectralProblem(g, psi_p, psi_n)
    lam = np.geomspace(g.s2 * 1.01, ref.upper_bound(), 40)
    eta = 1e-3 * lam.min()
    _, gm, ok = problem.stieltjes(lam, eta)
    assert ok.all()
    np.testing.assert_allclose(gm[-1], ref.stieltjes(lam, eta_min=np.full(lam.shape, eta), record_factor=1.0)[0],
                               rtol=1e-8)


def test_independent_nodes_give_the_free_convolution_of_marchenko_pastur_laws():
    """alpha = beta = 0, two nodes with independent Omega (C = diag(s1, s2)): U = s I + (s1/n) X1 X1^T + (s2/n)
    X2 X2^T, the free additive convolution of two Marchenko-Pastur laws of ratio gamma = p/n, whose R-transform
    is the sum: z = s + 1/G + sum_j s_j/(1 - gamma s_j G), G = -g, a cubic in G (np.roots; the root with
    Im G < 0 at Im z > 0 is unique here).  Asserted: 1e-9 relative; with full correlation between the
    nodes (C rank one) the law is a single Marchenko-Pastur of variance s1 + s2 + 2 sqrt(s1 s2), which differs."""
    d, p, n = 50, 200, 300
    s, s1, s2 = 0.05, 1.0, 0.3
    gamma = p / n
    problem = EquivalentSpectrum(np.zeros((p, 2)), np.zeros((p, 1)), np.tile(np.diag([s1, s2]), (p, 1, 1)),
                                 np.full(p, s), d, n)
    lam = np.linspace(0.02, 4.0, 30)
    eta = 0.05
    y, g, ok = problem.stieltjes(lam, eta)
    assert ok.all()
    for k, x in enumerate(lam):
        z = x + 1j * eta
        # (z - s) G (1 - a G)(1 - b G) - (1 - a G)(1 - b G) - s1 G (1 - b G) - s2 G (1 - a G) = 0
        a, b = gamma * s1, gamma * s2
        P1 = np.poly1d([-a, 1.0]) * np.poly1d([-b, 1.0])
        poly = np.poly1d([z - s, 0.0]) * P1 - P1 - s1 * np.poly1d([1.0, 0.0]) * np.poly1d([-b, 1.0]) \
            - s2 * np.poly1d([1.0, 0.0]) * np.poly1d([-a, 1.0])
        roots = [r for r in np.roots(poly.coeffs) if r.imag < 0]
        assert len(roots) == 1
        np.testing.assert_allclose(g[-1, k], -roots[0], rtol=1e-9)


def test_cdf_is_exact_for_marchenko_pastur():
    """alpha = beta = 0, one node: U = s I + (v/n) X X^T, F(lam) = int_{lam_-}^{lam - s} rho_MP (scipy quad).
    The CDF comes from Cauchy's theorem on a rectangle, integrated on the continuation ladder (no smoothing),
    whose trapezoid rule in log y has the error exp(-pi^2/log factor) of an analytic integrand: 7e-7 at the
    default factor 2 (asserted: 3e-6), 4e-11 at 1.5 (asserted: 1e-7, the other errors being ~1e-8)."""
    p, n, d, v, s = 200, 400, 50, 1.0, 0.1
    problem = EquivalentSpectrum(np.zeros((p, 1)), np.zeros((p, 1)), np.full((p, 1, 1), v), np.full(p, s), d, n)
    res = problem.solve(60)
    gamma = p / n
    lm, lp = v * (1 - math.sqrt(gamma)) ** 2, v * (1 + math.sqrt(gamma)) ** 2

    def rho(x):
        return math.sqrt(max((lp - x) * (x - lm), 0.0)) / (2 * math.pi * gamma * v * x)

    F = [quad(rho, lm, min(lam - s, lp), epsabs=1e-12)[0] if lam - s > lm else 0.0 for lam in res.lam]
    np.testing.assert_allclose(res.cdf, F, atol=3e-6)
    np.testing.assert_allclose(problem.solve(60, factor=1.5).cdf, F, atol=1e-7)
    assert res.ok and res.checks == {"converged": True, "cdf_monotone": True, "mass_is_one": True}


def test_compression_keeps_the_trace():
    """from_coefficients rotates the node space onto the directions that carry a_i, C_i and b_i: the trace of
    E U_eq per feature, sum_j w_j kappa_j^2 E sigma(h_ij)^2 (the coefficients' own 'second'), equals
    diag_i + Tr C_i + |a_i|^2 + |b_i|^2 + sum_j w_j kappa_j^2 mu0_ij^2 (the mean part, left out of the equations):
    an identity of the Hermite decomposition, exact up to the dropped directions (rank_rtol 1e-10)."""
    d = 8
    model = _model(d, 4 * d, 2, time_law="log-uniform")
    co = multitime_coefficients(model, 9)
    problem = EquivalentSpectrum.from_coefficients(co, d, 2 * d)
    total = co.second.T @ co.weight
    assert problem.trace_bound() + float(np.sum(co.weight @ co.mu0 ** 2)) == pytest.approx(total.sum(), rel=1e-9)
    assert problem.a.shape[1] < co.t.size  # the compression does remove directions


@pytest.fixture(scope="module")
def equivalent_d24():
    d = 24
    model = _model(d, 8 * d, 0, time_law="log-uniform")
    X = rfdm.GaussianData(d).sample(4 * d, np.random.default_rng(1))
    co = multitime_coefficients(model, 17)
    return model, X, co, EquivalentSpectrum.from_coefficients(co, d, 4 * d).solve(120)


def test_equations_match_sampled_equivalent(equivalent_d24):
    """d = 24, psi_p = 8, psi_n = 4 (p = 192, n = 96), Q log-uniform: the one-sample KS distance between the
    self-consistent CDF and the eigenvalues of sampled U_eq (same W, X, b; three Omega seeds).  Measured
    0.025-0.028 here (other draws: 0.028-0.030 at d = 16, 0.019-0.020 at d = 64; docs/theory.md §7.2): the
    eigenvalues of one sample sit within O(1/p) of their deterministic equivalent's quantiles (rigidity), and
    what the equations leave out (the rank-m mean part, the noise orders k >= 2 off the diagonal, O(psi_p/d);
    unit rows of W treated as Gaussian) is a finite-d correction that decreases with d.  Asserted: below 0.05,
    which a deliberately wrong theory (the same equations with every C_i halved: measured 0.099) exceeds."""
    model, X, co, res = equivalent_d24
    assert res.ok
    ks = [res.ks_distance(np.linalg.eigvalsh(equivalent_training_matrix(model, co, X, s))) for s in range(3)]
    assert max(ks) < 0.05
    wrong = EquivalentSpectrum.from_coefficients(dataclasses.replace(co, cov=0.5 * co.cov), 24, 96).solve(120)
    ev = np.linalg.eigvalsh(equivalent_training_matrix(model, co, X, 0))
    assert wrong.ks_distance(ev) > 0.05


def test_non_convergence_is_reported(monkeypatch):
    """With too few iterations the solver does not reach its tolerance: the points say so and ok is False."""
    import rfdm.multitime as mt

    monkeypatch.setattr(mt, "MAX_ITERATIONS", 2)
    p, n, d = 40, 40, 10
    problem = EquivalentSpectrum(np.zeros((p, 1)), np.zeros((p, 1)), np.full((p, 1, 1), 1.0), np.full(p, 0.1), d, n)
    res = problem.solve(20)
    assert not res.checks["converged"] and not res.ok


@pytest.mark.parametrize("change", [dict(diag=np.zeros(4)), dict(diag=np.full(3, 1.0)),
                                    dict(C=np.full((4, 1, 1), np.nan)), dict(d=0), dict(n=-1)])
def test_equivalent_spectrum_bad_input(change):
    kw = dict(a=np.zeros((4, 1)), b=np.zeros((4, 1)), C=np.ones((4, 1, 1)), diag=np.ones(4), d=2, n=4)
    kw.update(change)
    with pytest.raises(InvalidParameterError):
        EquivalentSpectrum(**kw)


@pytest.mark.parametrize("kw", [dict(n_points=5), dict(factor=1.0), dict(factor=10.0), dict(eta_rel=0.0),
                                dict(eta_rel=0.1)])
def test_solve_bad_input(kw):
    problem = EquivalentSpectrum(np.zeros((4, 1)), np.zeros((4, 1)), np.ones((4, 1, 1)), np.ones(4), 2, 4)
    with pytest.raises(InvalidParameterError):
        problem.solve(**kw)
