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
