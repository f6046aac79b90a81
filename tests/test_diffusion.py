"""Tests of rfdm.diffusion (THEORY §1): Delta_t, forward noising, marginal covariance, reverse drift.

Every formula is checked against something computed independently of the library: a Taylor series,
a Monte Carlo simulation with a tolerance from its own standard error, or an exact identity.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from rfdm.data import GaussianData
from rfdm.diffusion import OrnsteinUhlenbeck, check_time, decay, delta_t
from rfdm.errors import InvalidParameterError

OU = OrnsteinUhlenbeck()


# --------------------------------------------------------------------------------------------------
# Delta_t = 1 - e^{-2t}
# --------------------------------------------------------------------------------------------------
def test_delta_t_matches_definition_at_moderate_t():
    t = np.logspace(-2, 1.5, 40)
    # Reference 1 - exp(-2t) in plain double precision: its rounding error is ~eps / Delta_t relative,
    # at most ~1e-14 for t >= 0.01, so 1e-13 relative is a safe bound.
    ref = 1.0 - np.exp(-2.0 * t)
    np.testing.assert_allclose(delta_t(t), ref, rtol=1e-13, atol=0)
    # vectorised shape is preserved, and scalars give a 0-d result
    assert delta_t(t).shape == t.shape
    assert np.ndim(delta_t(0.3)) == 0


@pytest.mark.parametrize("t", [1e-14, 1e-12, 1e-9, 1e-6, 1e-4])
def test_delta_t_tiny_t_matches_series(t):
    # 1 - e^{-2t} = 2t - 2t^2 + 4t^3/3 - 2t^4/3 + ...; truncating after t^3 leaves a relative error
    # of about t^3/3 (<= 4e-13 at t = 1e-4); plus a few ulps of rounding in both expressions.
    series = 2 * t - 2 * t**2 + 4 * t**3 / 3
    rel_tol = 4 * np.finfo(float).eps + t**3
    assert abs(float(delta_t(t)) - series) <= rel_tol * series
    # The check discriminates: the naive 1 - exp(-2t) is far off at very small t (cancellation).
    if t <= 1e-9:
        naive = 1.0 - math.exp(-2.0 * t)
        assert abs(naive - series) > 1e3 * rel_tol * series


def test_delta_t_and_decay_satisfy_identity():
    # Delta_t + (e^{-t})^2 = 1 exactly in real arithmetic; rounding of two O(1) terms: a few eps.
    t = np.logspace(-8, 1.5, 50)
    np.testing.assert_allclose(delta_t(t) + decay(t) ** 2, 1.0, rtol=0, atol=4 * np.finfo(float).eps)
    np.testing.assert_allclose(decay(t), [math.exp(-x) for x in t], rtol=1e-15)
    # OrnsteinUhlenbeck exposes the same functions
    np.testing.assert_array_equal(OU.delta(t), delta_t(t))
    np.testing.assert_array_equal(OU.decay(t), decay(t))


# --------------------------------------------------------------------------------------------------
# Forward noising: x_t = e^{-t} x0 + sqrt(Delta_t) xi
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.01, 0.3, 2.0])
def test_forward_moments_by_simulation(t):
    rng = np.random.default_rng(1234)
    n = 200_000
    x0_row = np.array([1.5, -0.7, 0.0, 3.0])
    x0 = np.tile(x0_row, (n, 1))
    xt, xi = OU.forward(x0, t, rng)
    assert xt.shape == x0.shape and xi.shape == x0.shape

    # Mean: sample mean of n i.i.d. draws, standard error = (sample std)/sqrt(n), 5 sigma per coordinate.
    mean = xt.mean(axis=0)
    se_mean = xt.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(mean - math.exp(-t) * x0_row) <= 5 * se_mean)

    # Variance: the sample variance of Gaussian draws has standard error sqrt(2/(n-1)) * variance;
    # the expected value Delta_t = 1 - e^{-2t} is computed here from exp, not with the library.
    var = xt.var(axis=0, ddof=1)
    expected_var = 1.0 - math.exp(-2.0 * t)
    se_var = math.sqrt(2.0 / (n - 1)) * expected_var
    assert np.all(np.abs(var - expected_var) <= 5 * se_var)

    # Coordinates are independent: sample correlations are ~N(0, 1/n); 5 sigma.
    corr = np.corrcoef(xt, rowvar=False)
    off = corr[~np.eye(4, dtype=bool)]
    assert np.all(np.abs(off) <= 5 / math.sqrt(n))

    # The returned noise is the one used: x_t - e^{-t} x0 = sqrt(Delta_t) xi (up to rounding).
    np.testing.assert_allclose(xt - math.exp(-t) * x0, math.sqrt(expected_var) * xi, rtol=0, atol=1e-12)


def test_forward_is_reproducible_from_the_generator():
    x0 = np.random.default_rng(0).standard_normal((5, 3))
    a, _ = OU.forward(x0, 0.5, np.random.default_rng(7))
    b, _ = OU.forward(x0, 0.5, np.random.default_rng(7))
    c, _ = OU.forward(x0, 0.5, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_forward_x0_is_not_modified():
    x0 = np.random.default_rng(0).standard_normal((4, 3))
    keep = x0.copy()
    OU.forward(x0, 0.2, np.random.default_rng(1))
    np.testing.assert_array_equal(x0, keep)


# --------------------------------------------------------------------------------------------------
# Marginal covariance Sigma_t = e^{-2t} Sigma + Delta_t I
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.05, 0.5])
def test_marginal_covariance_against_simulation(t):
    data = GaussianData(d=4, eigenvalues=(0.2, 1.0, 5.0), weights=(0.25, 0.25, 0.5), rotation="random", seed=11)
    rng = np.random.default_rng(99)
    n = 200_000
    x0 = data.sample(n, rng)
    xt, _ = OU.forward(x0, t, rng)
    sigma_t = OU.marginal_covariance(data.covariance(), t)

    # x_t is centred, so E[x_i x_j] = (Sigma_t)_ij. The standard error of the sample mean of the
    # products x_i x_j is their sample standard deviation / sqrt(n), estimated from the same samples;
    # 5 sigma per entry (10 distinct entries).
    prod = xt[:, :, None] * xt[:, None, :]
    emp = prod.mean(axis=0)
    se = prod.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(emp - sigma_t) <= 5 * se)
    # and the check discriminates between the right formula and the Sigma_{t=0} or Sigma e^{-t} ones
    assert np.any(np.abs(emp - data.covariance()) > 5 * se)
    wrong = math.exp(-t) * data.covariance() + (1 - math.exp(-2 * t)) * np.eye(4)
    assert np.any(np.abs(emp - wrong) > 5 * se)


def test_marginal_covariance_fixed_points_and_limits():
    rng = np.random.default_rng(3)
    # The OU process is stationary at N(0, I): Sigma = I stays I for every t (up to rounding).
    for t in (1e-6, 0.3, 4.0):
        np.testing.assert_allclose(OU.marginal_covariance(np.eye(3), t), np.eye(3), rtol=0, atol=4e-16)
    # At large t every law relaxes to N(0, I); at e^{-2t} ~ 1e-26 nothing of Sigma is left in double.
    g = rng.standard_normal((3, 3))
    sigma = g @ g.T + 0.1 * np.eye(3)
    np.testing.assert_allclose(OU.marginal_covariance(sigma, 30.0), np.eye(3), rtol=0, atol=1e-15)
    # At tiny t, Sigma_t -> Sigma: the difference is (e^{-2t} - 1) Sigma + Delta_t I = O(t).
    t = 1e-9
    np.testing.assert_allclose(OU.marginal_covariance(sigma, t), sigma, rtol=0, atol=10 * t * (1 + np.abs(sigma).max()))


# --------------------------------------------------------------------------------------------------
# Reverse drift: consistent with the time evolution of Sigma_t (Fokker–Planck identity)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [0.1, 1.0])
def test_reverse_drift_transports_the_marginal_covariance(t):
    # For Gaussian data the backward drift x + 2 S(x, t) = (I - 2 Sigma_t^{-1}) x =: A x is linear, and the
    # backward SDE dx = A x dtau' + sqrt(2) dB (tau' = T - t) evolves the covariance C by
    # dC/dtau' = A C + C A^T + 2 I. Reversing the forward process requires C = Sigma_t along the way,
    # i.e. A Sigma_t + Sigma_t A^T + 2 I = -d Sigma_t / dt. We check this with a central finite
    # difference of Sigma_t in t: the truncation error is h^2 |Sigma'''|/6 <= ~1e-8 * |Sigma|, the
    # rounding error eps/h ~ 1e-12, so 1e-6 absolute leaves a wide margin while any error in the drift
    # or in the score is O(1).
    data = GaussianData(d=3, eigenvalues=(0.3, 2.0, 6.0), rotation="random", seed=5)
    sigma_t = OU.marginal_covariance(data.covariance(), t)
    eye = np.eye(3)
    drift_matrix = OU.reverse_drift(eye, t, data.score(eye, t)).T  # column j = drift of basis vector e_j
    h = 1e-4
    d_sigma_dt = (OU.marginal_covariance(data.covariance(), t + h)
                  - OU.marginal_covariance(data.covariance(), t - h)) / (2 * h)
    lhs = drift_matrix @ sigma_t + sigma_t @ drift_matrix.T + 2 * eye
    np.testing.assert_allclose(lhs, -d_sigma_dt, rtol=0, atol=1e-6)


# --------------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("bad_t", [0.0, -1.0, -1e-12, float("nan"), float("inf"), -float("inf"), "soon", None])
def test_check_time_rejects_bad_times(bad_t):
    with pytest.raises(InvalidParameterError, match=r"^t must be"):
        check_time(bad_t)


def test_check_time_accepts_and_converts():
    assert check_time(0.25) == 0.25
    assert isinstance(check_time(np.float32(0.5)), float)
    assert check_time(1) == 1.0


@pytest.mark.parametrize("bad_t", [0.0, -0.5, float("nan"), float("inf")])
def test_forward_and_marginal_covariance_reject_bad_times(bad_t):
    with pytest.raises(InvalidParameterError, match="t must be"):
        OU.forward(np.zeros((2, 2)), bad_t, np.random.default_rng(0))
    with pytest.raises(InvalidParameterError, match="t must be"):
        OU.marginal_covariance(np.eye(2), bad_t)


def test_forward_rejects_bad_x0():
    rng = np.random.default_rng(0)
    with pytest.raises(InvalidParameterError, match="x0 contains NaN"):
        OU.forward(np.array([[0.0, np.nan]]), 0.5, rng)
    with pytest.raises(InvalidParameterError, match="x0 must be a 2-D array"):
        OU.forward(np.zeros(3), 0.5, rng)


def test_marginal_covariance_rejects_non_square_and_nan():
    with pytest.raises(InvalidParameterError, match="square"):
        OU.marginal_covariance(np.zeros((2, 3)), 0.5)
    with pytest.raises(InvalidParameterError, match="NaN"):
        OU.marginal_covariance(np.array([[1.0, np.nan], [np.nan, 1.0]]), 0.5)


def test_marginal_covariance_rejects_negative_eigenvalues():
    # A covariance with a negative eigenvalue is not a covariance; Sigma_t would not be one either
    # (here e^{-2t}(-1) + Delta_t < 0 at t = 0.1).
    bad = np.diag([1.0, -1.0])
    with pytest.raises(InvalidParameterError, match="eigenvalue"):
        OU.marginal_covariance(bad, 0.1)
