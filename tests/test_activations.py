"""Tests of rfdm.activations (THEORY §2, "Exact noise averages").

a_k(m, s) = E[sigma(m + s z) He_k(z)] / sqrt(k!) and E[sigma(m + s z)^2], z ~ N(0, 1), are checked against
adaptive scipy quadrature (scipy.integrate.quad, independent of the library's Gauss–Hermite/trapezoid
rules), against closed forms (erf, linear, ReLU at m = 0), and against Stein's identity.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from numpy.polynomial import Polynomial
from numpy.polynomial.hermite_e import hermeval
from scipy.integrate import IntegrationWarning, quad
from scipy.special import erf, expit

import rfdm.activations as act_mod
from rfdm.activations import (Activation, available_activations, gauss_hermite, get_activation,
                              normalized_hermite, register_activation)
from rfdm.errors import InvalidParameterError, NumericalError

KMAX = 6
MEANS = (-3.0, -0.7, 0.0, 1.2, 3.0)
STDS = (0.1, 0.6, 1.5)
NAMES = ("tanh", "erf", "relu", "linear")
PHI = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)  # noqa: E731
# |z| <= 14 carries all but ~1e-43 of the Gaussian mass (times He_6(14) ~ 7e6): negligible.
ZMAX = 14.0


def _quad(g, kink=None):
    """Integral of g(z) phi(z) over |z| <= ZMAX with QUADPACK; a kink of g is passed as a breakpoint."""
    points = [kink] if kink is not None and abs(kink) < ZMAX else None
    # QUADPACK may warn of roundoff when an integral is ~0 (odd coefficients at m = 0): its absolute
    # error is then ~1e-16 * the integrand's size, well inside the fixed floor of _tol below.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", IntegrationWarning)
        val, err = quad(lambda z: g(z) * PHI(z), -ZMAX, ZMAX, points=points, epsabs=1e-13, epsrel=1e-12, limit=400)
    return val, err


def _quad_reference(f, m, s, kmax, kink=None):
    """(a_k for k <= kmax, E f^2, and the quadrature error estimates), by adaptive quadrature."""
    a, errs = [], []
    for k in range(kmax + 1):
        c = np.zeros(k + 1)
        c[k] = 1.0
        v, e = _quad(lambda z: f(m + s * z) * hermeval(z, c), kink)
        a.append(v / math.sqrt(math.factorial(k)))
        errs.append(e / math.sqrt(math.factorial(k)))
    sec, esec = _quad(lambda z: f(m + s * z) ** 2, kink)
    return np.array(a), sec, np.array(errs), esec


REFERENCE_FUNCTIONS = {
    "tanh": (math.tanh, None),
    "erf": (math.erf, None),
    "relu": (lambda x: max(x, 0.0), 0.0),  # kink at pre-activation 0, i.e. z = -m/s
    "linear": (lambda x: x, None),
}

# Tolerance against quad: the library's rules are converged to ~1e-13 (quadrature_tol) relative to
# max(1, |values|); QUADPACK to epsabs 1e-13 / epsrel 1e-12, with its own error estimate (observed
# agreement: <= 3e-14). 1e-12 relative to the same scale, plus 10x quad's estimate, is above both and
# far below the error of any wrong formula or badly converged rule.
def _tol(values, quad_err):
    return 1e-12 * max(1.0, float(np.max(np.abs(values)))) + 10 * quad_err


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("m", MEANS)
@pytest.mark.parametrize("s", STDS)
def test_gaussian_coefficients_against_quad(name, m, s):
    act = get_activation(name)
    f, kink = REFERENCE_FUNCTIONS[name]
    a, second = act.gaussian_coefficients(m, s, KMAX)
    assert a.shape == (KMAX + 1,) and np.ndim(second) == 0
    ref_a, ref_sec, err_a, err_sec = _quad_reference(f, m, s, KMAX, None if kink is None else (kink - m) / s)
    assert np.all(np.abs(a - ref_a) <= _tol(ref_a, err_a)), (a, ref_a)
    assert abs(second - ref_sec) <= _tol(ref_sec, err_sec), (second, ref_sec)


@pytest.mark.parametrize("name", ("tanh", "erf", "relu"))
def test_gaussian_coefficients_vectorised_grid_against_quad(name):
    # One broadcast call over the whole (m, s) grid (one rule selected for all), checked entry by entry.
    act = get_activation(name)
    f, kink = REFERENCE_FUNCTIONS[name]
    m = np.array(MEANS)[:, None]
    s = np.array(STDS)[None, :]
    a, second = act.gaussian_coefficients(m, s, KMAX)
    assert a.shape == (len(MEANS), len(STDS), KMAX + 1) and second.shape == (len(MEANS), len(STDS))
    for i, mi in enumerate(MEANS):
        for j, sj in enumerate(STDS):
            ref_a, ref_sec, err_a, err_sec = _quad_reference(f, mi, sj, KMAX, None if kink is None else (kink - mi) / sj)
            assert np.all(np.abs(a[i, j] - ref_a) <= _tol(ref_a, err_a))
            assert abs(second[i, j] - ref_sec) <= _tol(ref_sec, err_sec)


# --------------------------------------------------------------------------------------------------
# Closed forms
# --------------------------------------------------------------------------------------------------
def _erf_derivative(x, k):
    """erf^{(k)}(x) for k >= 1 = (2/sqrt(pi)) P_{k-1}(x) e^{-x^2}, P_0 = 1, P_{j+1} = P_j' - 2x P_j."""
    p = Polynomial([1.0])
    for _ in range(k - 1):
        p = p.deriv() - Polynomial([0.0, 2.0]) * p
    return 2.0 / math.sqrt(math.pi) * p(x) * np.exp(-x * x)


@pytest.mark.parametrize("m", MEANS)
@pytest.mark.parametrize("s", STDS)
def test_erf_closed_forms(m, s):
    # E[erf(m + s z)] = erf(m / sqrt(1 + 2 s^2)) =: g(m); differentiating under E in m,
    # E[erf^{(k)}(m + s z)] = g^{(k)}(m), so a_k = s^k g^{(k)}(m) / sqrt(k!) (Stein), with
    # g^{(k)}(m) = c^k erf^{(k)}(c m), c = 1/sqrt(1 + 2 s^2). All O(1) numbers: 1e-12 absolute covers the
    # library's ~1e-13 quadrature convergence.
    a, second = get_activation("erf").gaussian_coefficients(m, s, KMAX)
    c = 1.0 / math.sqrt(1.0 + 2.0 * s * s)
    expected = [erf(c * m)] + [s**k * c**k * _erf_derivative(c * m, k) / math.sqrt(math.factorial(k))
                               for k in range(1, KMAX + 1)]
    np.testing.assert_allclose(a, expected, rtol=0, atol=1e-12)
    if m == 0.0:
        # E[erf(s z)^2] = (2/pi) arcsin(2 s^2 / (1 + 2 s^2))
        np.testing.assert_allclose(second, 2 / math.pi * math.asin(2 * s * s / (1 + 2 * s * s)), rtol=0, atol=1e-12)


@pytest.mark.parametrize("m", MEANS)
@pytest.mark.parametrize("s", STDS)
def test_linear_closed_forms(m, s):
    a, second = get_activation("linear").gaussian_coefficients(m, s, KMAX)
    expected = np.zeros(KMAX + 1)
    expected[0], expected[1] = m, s
    np.testing.assert_allclose(a, expected, rtol=1e-15, atol=1e-15)
    np.testing.assert_allclose(second, m * m + s * s, rtol=1e-15)


@pytest.mark.parametrize("s", (0.1, 0.6, 1.5, 4.0))
def test_relu_closed_form_at_zero_mean(s):
    # E relu(s z) = s/sqrt(2 pi), E relu(s z)^2 = s^2/2; E[relu(s z) z] = s/2 (= s P(z > 0));
    # a_2 = E[relu(s z)(z^2 - 1)]/sqrt(2) = s phi(0)/sqrt(2); odd k >= 3 vanish (relu(sz) - sz/2 is even).
    a, second = get_activation("relu").gaussian_coefficients(0.0, s, KMAX)
    np.testing.assert_allclose(a[0], s / math.sqrt(2 * math.pi), rtol=1e-14)
    np.testing.assert_allclose(second, s * s / 2, rtol=1e-14)
    np.testing.assert_allclose(a[1], s / 2, rtol=1e-14)
    np.testing.assert_allclose(a[2], s / math.sqrt(2 * math.pi) / math.sqrt(2), rtol=1e-14)
    np.testing.assert_allclose(a[3::2], 0.0, atol=1e-15 * s)


# --------------------------------------------------------------------------------------------------
# Stein's identity: a_k = s^k E[sigma^{(k)}(m + s z)] / sqrt(k!)
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("m", (-2.5, 0.0, 0.9))
@pytest.mark.parametrize("s", STDS)
def test_stein_identity_first_coefficient(name, m, s):
    act = get_activation(name)
    a, _ = act.gaussian_coefficients(m, s, 1)
    kink = -m / s if name == "relu" else None
    ref, err = _quad(lambda z: float(act.derivative(np.array(m + s * z), 1)), kink)
    assert abs(a[1] - s * ref) <= _tol(s * ref, s * err)


@pytest.mark.parametrize("name", ("tanh", "erf"))
@pytest.mark.parametrize("k", (2, 3))
@pytest.mark.parametrize("m, s", [(-1.0, 0.1), (0.3, 0.6), (2.0, 1.5)])
def test_stein_identity_higher_coefficients(name, k, m, s):
    act = get_activation(name)
    a, _ = act.gaussian_coefficients(m, s, k)
    ref, err = _quad(lambda z: float(act.derivative(np.array(m + s * z), k)))
    scale = s**k / math.sqrt(math.factorial(k))
    assert abs(a[k] - scale * ref) <= _tol(scale * ref, scale * err)


# --------------------------------------------------------------------------------------------------
# Derivatives
# --------------------------------------------------------------------------------------------------
X = np.linspace(-3.0, 3.0, 25)


def _tanh_derivative_closed(x, k):
    t = np.tanh(x)
    return {1: 1 - t**2, 2: -2 * t * (1 - t**2), 3: -2 * (1 - t**2) * (1 - 3 * t**2)}[k]


def _erf_derivative_closed(x, k):
    e = np.exp(-x * x) / math.sqrt(math.pi)
    return {1: 2 * e, 2: -4 * x * e, 3: (8 * x * x - 4) * e}[k]


@pytest.mark.parametrize("name, closed", [("tanh", _tanh_derivative_closed), ("erf", _erf_derivative_closed)])
def test_derivatives_against_finite_differences(name, closed):
    act = get_activation(name)
    f = act
    # Central stencils on sigma itself (all quantities O(1)):
    #  order 1, h = 1e-5: truncation h^2 |f'''|/6 ~ 1e-10, rounding eps/h ~ 1e-11   -> tol 1e-8
    #  order 2, h = 1e-4: truncation h^2 |f''''|/12 ~ 1e-8, rounding 4 eps/h^2 ~ 1e-7 -> tol 1e-6
    #  order 3, h = 1e-3: truncation h^2 |f^(5)|/4 ~ 1e-5, rounding 3 eps/h^3 ~ 1e-6 -> tol 1e-4
    h1, h2, h3 = 1e-5, 1e-4, 1e-3
    fd1 = (f(X + h1) - f(X - h1)) / (2 * h1)
    fd2 = (f(X + h2) - 2 * f(X) + f(X - h2)) / h2**2
    fd3 = (f(X + 2 * h3) - 2 * f(X + h3) + 2 * f(X - h3) - f(X - 2 * h3)) / (2 * h3**3)
    np.testing.assert_allclose(act.derivative(X, 1), fd1, rtol=0, atol=1e-8)
    np.testing.assert_allclose(act.derivative(X, 2), fd2, rtol=0, atol=1e-6)
    np.testing.assert_allclose(act.derivative(X, 3), fd3, rtol=0, atol=1e-4)
    # and against closed forms, to rounding
    for k in (1, 2, 3):
        np.testing.assert_allclose(act.derivative(X, k), closed(X, k), rtol=0, atol=1e-14)
    np.testing.assert_array_equal(act.derivative(X, 0), f(X))


def test_relu_and_linear_derivatives():
    x = np.array([-2.0, -0.1, 0.1, 3.0])
    np.testing.assert_array_equal(get_activation("relu").derivative(x, 1), [0.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(get_activation("linear").derivative(x, 1), np.ones(4))
    np.testing.assert_array_equal(get_activation("linear").derivative(x, 2), np.zeros(4))


# --------------------------------------------------------------------------------------------------
# Hermite basis and quadrature rules
# --------------------------------------------------------------------------------------------------
def test_gauss_hermite_moments():
    # The n-point rule integrates polynomials of degree <= 2n - 1 exactly: E z^{2j} = (2j - 1)!!.
    z, w = gauss_hermite(20)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-14)
    for j in range(0, 10):
        double_fact = float(np.prod(np.arange(2 * j - 1, 0, -2))) if j else 1.0
        np.testing.assert_allclose(np.sum(w * z ** (2 * j)), double_fact, rtol=1e-12)
        np.testing.assert_allclose(np.sum(w * z ** (2 * j + 1)), 0.0, atol=1e-12 * max(1.0, double_fact))


def test_normalized_hermite_matches_hermeval_and_is_orthonormal():
    kmax = 20
    z = np.linspace(-4, 4, 33)
    h = normalized_hermite(z, kmax)
    assert h.shape == (33, kmax + 1)
    for k in range(kmax + 1):
        c = np.zeros(k + 1)
        c[k] = 1.0
        ref = hermeval(z, c) / math.sqrt(math.factorial(k))
        np.testing.assert_allclose(h[:, k], ref, rtol=1e-11, atol=1e-11 * max(1.0, np.abs(ref).max()))
    # Orthonormality under N(0, 1): the 60-node rule is exact up to degree 119 >= 2 * kmax.
    zq, wq = gauss_hermite(60)
    hq = normalized_hermite(zq, kmax)
    gram = hq.T @ (wq[:, None] * hq)
    np.testing.assert_allclose(gram, np.eye(kmax + 1), rtol=0, atol=1e-12)
    # shape handling for multi-dimensional z
    assert normalized_hermite(np.zeros((2, 3)), 4).shape == (2, 3, 5)
    np.testing.assert_array_equal(normalized_hermite(np.array([0.5]), 0), [[1.0]])


@pytest.mark.parametrize("name", ("tanh", "erf"))
def test_select_rule_achieves_its_target(name):
    # The selected rule must agree with a much finer trapezoid rule (step 0.02: for tanh the error
    # ~ exp(-2 pi a / step) with strip half-width a = pi/(2 s) ~ 1.2 at s = 1.3 is < 1e-150) to the
    # target ~1e-13; we allow 1e-12 (successive-rung agreement is an estimate of the error, not a bound).
    act = get_activation(name)
    rule = act.select_rule(2.0, 1.3, KMAX)
    m = np.linspace(-2.0, 2.0, 9)[:, None]
    s = np.array([1.3, 0.65, 0.13])[None, :]
    a, sec = act.gaussian_coefficients(m, s, KMAX, rule=rule)
    a_fine, sec_fine = act.gaussian_coefficients(m, s, KMAX, rule=("trapezoid", 0.02))
    assert np.max(np.abs(a - a_fine)) <= 1e-12
    assert np.max(np.abs(sec - sec_fine)) <= 1e-12
    # the check is not vacuous: the coarsest rung is not that accurate for tanh/erf at s = 1.3
    a_coarse, _ = act.gaussian_coefficients(m, s, KMAX, rule=("gauss-hermite", 4))
    assert np.max(np.abs(a_coarse - a_fine)) > 1e-8


def test_select_rule_raises_when_quadrature_cannot_converge():
    # sign(x) is discontinuous: no rule of the ladder reaches 1e-13, so a NumericalError is due.
    sign = Activation.from_function("sign", np.sign)
    with pytest.raises(NumericalError, match="did not converge"):
        sign.select_rule(0.5, 1.0, 4)


# --------------------------------------------------------------------------------------------------
# Custom activations and the registry
# --------------------------------------------------------------------------------------------------
def _softplus(x):
    return np.log1p(np.exp(x))


@pytest.fixture
def private_registry(monkeypatch):
    """Run the test on a copy of the registry so that registrations do not leak into other tests."""
    monkeypatch.setattr(act_mod, "_REGISTRY", dict(act_mod._REGISTRY))


@pytest.mark.parametrize("m", (-3.0, 0.0, 1.2, 3.0))
@pytest.mark.parametrize("s", (0.1, 1.5))
def test_custom_activation_from_function(m, s):
    soft = Activation.from_function("softplus-test", _softplus, derivative=expit)
    assert soft.name == "softplus-test"
    np.testing.assert_allclose(soft(np.array([0.0, 1.0])), [math.log(2.0), math.log1p(math.e)], rtol=1e-15)
    a, second = soft.gaussian_coefficients(m, s, KMAX)
    f = lambda x: math.log1p(math.exp(x))  # noqa: E731
    ref_a, ref_sec, err_a, err_sec = _quad_reference(f, m, s, KMAX)
    assert np.all(np.abs(a - ref_a) <= _tol(ref_a, err_a))
    assert abs(second - ref_sec) <= _tol(ref_sec, err_sec)
    # Stein with the supplied derivative
    ref1, err1 = _quad(lambda z: float(expit(m + s * z)))
    assert abs(a[1] - s * ref1) <= _tol(s * ref1, s * err1)


def test_custom_activation_derivatives():
    soft = Activation.from_function("softplus-test", _softplus, derivative=expit)
    x = np.linspace(-3, 3, 13)
    h = 1e-5  # central difference: truncation h^2|f'''|/6 ~ 1e-11, rounding eps/h ~ 1e-11
    np.testing.assert_allclose(soft.derivative(x, 1), (_softplus(x + h) - _softplus(x - h)) / (2 * h), atol=1e-8)
    np.testing.assert_array_equal(soft.derivative(x, 0), _softplus(x))
    with pytest.raises(InvalidParameterError, match="does not provide derivative order 2"):
        soft.derivative(x, 2)
    bare = Activation.from_function("bare", _softplus)
    with pytest.raises(InvalidParameterError, match="does not provide derivative order 1"):
        bare.derivative(x, 1)


def test_register_and_get_activation_round_trip(private_registry):
    soft = Activation.from_function("softplus-test", _softplus, derivative=expit)
    assert "softplus-test" not in available_activations()
    assert register_activation(soft) is soft
    assert get_activation("softplus-test") is soft
    assert "softplus-test" in available_activations()
    assert get_activation(soft) is soft
    for name in NAMES:
        assert get_activation(name).name == name


def test_get_activation_unknown_name():
    with pytest.raises(InvalidParameterError, match=r"unknown activation 'swish'; choose one of .*tanh"):
        get_activation("swish")
    with pytest.raises(InvalidParameterError, match="unknown activation"):
        get_activation(None)


def test_builtin_activations_are_available():
    assert set(NAMES) <= set(available_activations())
