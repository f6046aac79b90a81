"""Tests of the two-cluster mixture law (rfdm.data.MixtureData) and of the exact statistics of random
features on mixture data (rfdm.features.noise_averaged_statistics / population_statistics) (THEORY §5).

Every formula is checked against an independent computation written here with numpy / scipy only:
moments of samples (tolerances from the standard errors of the same samples, 5 sigma), a central finite
difference of the log density built with scipy.stats, adaptive quadrature (scipy.integrate.quad),
two-dimensional Gauss-Hermite quadrature, and Monte Carlo over the noise / over y ~ P_t.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate
from scipy.stats import multivariate_normal, norm

from rfdm.data import GaussianData, MixtureData
from rfdm.errors import InvalidParameterError
from rfdm.features import RandomFeatures, noise_averaged_statistics, population_statistics


# ---------------------------------------------------------------------------------------------------
# Independent references (nothing from rfdm)
# ---------------------------------------------------------------------------------------------------

def gamma2(t, sigma_x):
    """Gamma_t^2 = Delta_t + sigma_x^2 e^{-2t} (THEORY §1)."""
    return (1.0 - math.exp(-2 * t)) + sigma_x ** 2 * math.exp(-2 * t)


def mixture_logpdf(x, m, t, sigma_x):
    """log of (1/2) N(e^{-t} m, Gamma_t^2 I) + (1/2) N(-e^{-t} m, Gamma_t^2 I), with scipy.stats."""
    a, g2 = math.exp(-t), gamma2(t, sigma_x)
    cov = g2 * np.eye(m.size)
    lp = multivariate_normal(mean=a * m, cov=cov).logpdf(x)
    lm = multivariate_normal(mean=-a * m, cov=cov).logpdf(x)
    return float(np.logaddexp(lp, lm) - math.log(2.0))


def mixture_score(y, m, t, sigma_x):
    """THEORY §1: S(y) = [m e^{-t} tanh(e^{-t} m.y / Gamma_t^2) - y] / Gamma_t^2 (written here)."""
    a, g2 = math.exp(-t), gamma2(t, sigma_x)
    return (a * np.tanh(a * (y @ m) / g2)[:, None] * m[None, :] - y) / g2


def sample_noised_mixture(rng, N, m, t, sigma_x):
    """y = e^{-t} x0 + sqrt(Delta_t) xi with x0 = c m + sigma_x z; returns (y, xi)."""
    d = m.size
    c = rng.choice([-1.0, 1.0], size=N)
    x0 = c[:, None] * m[None, :] + sigma_x * rng.standard_normal((N, d))
    xi = rng.standard_normal((N, d))
    return math.exp(-t) * x0 + math.sqrt(1.0 - math.exp(-2 * t)) * xi, xi


def assert_within_se(est, ref, se, name, k_entry=5.0, k_frob=2.0):
    """Entrywise |est - ref| <= 5 SE (false-alarm rate ~6e-7 per entry, < 1e-3 for the ~1000 entries
    checked at once) and ||est - ref||_F <= 2 sqrt(sum SE^2) (the expected Frobenius error is
    sqrt(sum SE^2); the factor 2 covers its fluctuation when entries are correlated)."""
    worst = float(np.max(np.abs(est - ref) / se))
    assert worst <= k_entry, f"{name}: max |diff|/SE = {worst:.2f}"
    frob, expected = float(np.linalg.norm(est - ref)), math.sqrt(float(np.sum(se ** 2)))
    assert frob <= k_frob * expected, f"{name}: ||diff||_F = {frob:.3g}, expected ~{expected:.3g}"


# ---------------------------------------------------------------------------------------------------
# 1. Sampling
# ---------------------------------------------------------------------------------------------------

M_VEC = np.array([1.5, -0.5, 0.0, 0.8, 0.0])


def test_sample_moments_and_labels():
    """Mean 0, covariance sigma_x^2 I + m m^T, label-conditional means +-m, residual x - c m ~ N(0, s^2 I).
    Every tolerance: 5 standard errors estimated from the same samples."""
    sx = 0.7
    law = MixtureData(5, m=M_VEC, sigma_x=sx)
    n = 200_000
    x, c = law.sample(n, np.random.default_rng(3), return_labels=True)
    assert x.shape == (n, 5) and c.shape == (n,)
    assert set(np.unique(c)) == {-1.0, 1.0}
    # unbalanced labels: the count of +1 is Binomial(n, 1/2): sd = sqrt(n)/2
    assert abs(np.sum(c > 0) - n / 2) <= 5 * math.sqrt(n) / 2
    # mean
    se_mean = x.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(x.mean(axis=0)) <= 5 * se_mean)
    # covariance E[x x^T] (the mean is 0): per-entry SE from the sample variance of x_i x_j
    prod = x[:, :, None] * x[:, None, :]
    cov = prod.mean(axis=0)
    se_cov = prod.std(axis=0, ddof=1) / math.sqrt(n)
    ref = sx ** 2 * np.eye(5) + np.outer(M_VEC, M_VEC)
    assert_within_se(cov, ref, se_cov, "covariance")
    # label-conditional means: each cluster's mean is c m, SE sigma_x/sqrt(n_c) (exact variance known)
    for sign in (1.0, -1.0):
        sel = c == sign
        assert np.all(np.abs(x[sel].mean(axis=0) - sign * M_VEC) <= 5 * sx / math.sqrt(sel.sum()))
    # residual x - c m: isotropic with variance sigma_x^2 (sample variance SE ~ s^2 sqrt(2/n))
    res = x - c[:, None] * M_VEC[None, :]
    rcov = res.T @ res / n
    assert np.all(np.abs(rcov - sx ** 2 * np.eye(5)) <= 5 * sx ** 2 * math.sqrt(2.0 / n))


def test_balanced_sampling_exact_halves_and_random_order():
    law = MixtureData(3, m_norm=2.0)
    x, c = law.sample(1000, np.random.default_rng(0), balanced=True, return_labels=True)
    assert np.sum(c == 1) == 500 and np.sum(c == -1) == 500
    # the labels are shuffled: among the first 100 both clusters appear (probability of failure ~1e-29)
    assert 0 < np.sum(c[:100] == 1) < 100
    # the points follow their labels: x . e1 = 2 c + N(0, 1); a mislabelled point would be ~4 away
    assert np.all(np.abs(x[:, 0] - 2.0 * c) < 6.0)
    # the same generator state gives the same draw; a different seed a different one
    x2 = law.sample(1000, np.random.default_rng(0), balanced=True)
    np.testing.assert_array_equal(x, x2)
    assert not np.array_equal(x, law.sample(1000, np.random.default_rng(1), balanced=True))


def test_balanced_sample_conditional_means():
    law = MixtureData(4, m=np.array([0.0, 1.0, -2.0, 0.5]), sigma_x=1.3)
    n = 40_000
    x, c = law.sample(n, np.random.default_rng(11), balanced=True, return_labels=True)
    for sign in (1.0, -1.0):
        sel = c == sign
        assert sel.sum() == n // 2
        # SE of a cluster mean: sigma_x / sqrt(n/2) per coordinate; 5 sigma
        assert np.all(np.abs(x[sel].mean(axis=0) - sign * law.m) <= 5 * 1.3 / math.sqrt(n / 2))


# ---------------------------------------------------------------------------------------------------
# 2. The ways of giving m
# ---------------------------------------------------------------------------------------------------

def test_m_as_vector():
    law = MixtureData(5, m=M_VEC)
    np.testing.assert_array_equal(law.m, M_VEC)
    assert law.m_norm == pytest.approx(math.sqrt(1.5 ** 2 + 0.5 ** 2 + 0.8 ** 2), rel=1e-15)
    # the law keeps a copy: changing the caller's array later does not change the law
    v = M_VEC.copy()
    law2 = MixtureData(5, m=v)
    v[0] = 100.0
    assert law2.m[0] == 1.5


def test_m_norm_with_direction_and_default_direction():
    direction = np.array([3.0, 0.0, -4.0])
    law = MixtureData(3, m_norm=2.0, direction=direction)
    np.testing.assert_allclose(law.m, 2.0 * direction / 5.0, rtol=0, atol=1e-15)
    assert law.m_norm == pytest.approx(2.0, rel=1e-15)
    default = MixtureData(3, m_norm=2.0)
    np.testing.assert_array_equal(default.m, [2.0, 0.0, 0.0])


@pytest.mark.parametrize("d", [4, 100])
def test_m_tilde_scaling(d):
    rng = np.random.default_rng(d)
    direction = rng.standard_normal(d)
    law = MixtureData(d, m_tilde=0.3, direction=direction)
    assert law.m_norm == pytest.approx(0.3 * math.sqrt(d), rel=1e-14)
    np.testing.assert_allclose(law.m / law.m_norm, direction / np.linalg.norm(direction), rtol=0, atol=1e-15)
    default = MixtureData(d, m_tilde=0.3)
    assert default.m[0] == pytest.approx(0.3 * math.sqrt(d), rel=1e-15) and np.all(default.m[1:] == 0)


def test_zero_mean_allowed_and_gives_the_gaussian_score():
    # |m| = 0 is the Gaussian limit: S(x, t) = -x/Gamma_t^2
    law = MixtureData(4, m_norm=0.0, sigma_x=0.6)
    x = np.random.default_rng(0).standard_normal((7, 4))
    np.testing.assert_allclose(law.score(x, 0.3), -x / gamma2(0.3, 0.6), rtol=1e-14)


# ---------------------------------------------------------------------------------------------------
# 3. Score, score norm, speciation time
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0.02, 0.4, 2.0])
@pytest.mark.parametrize("sigma_x,m", [(1.0, [1.2, -0.7, 0.3, 0.0]), (0.5, [2.5, 0.0, 1.0, -1.0]),
                                       (1.7, [0.3, 0.2, 0.1, 0.0])])
def test_score_against_finite_difference_of_scipy_log_density(t, sigma_x, m):
    m = np.asarray(m, dtype=float)
    law = MixtureData(4, m=m, sigma_x=sigma_x)
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((5, 4)) * 1.5
    xs[0] = 0.0
    s = law.score(xs, t)
    assert s.shape == xs.shape
    # Central difference with h = 1e-5: truncation h^2 |f'''|/6, where f''' along m is that of
    # log cosh(k y), k = |m| e^{-t}/Gamma_t^2 <= 10.1 here, so |f'''| <= 0.77 k^3 ~ 800 -> <= 1.3e-8;
    # rounding eps |log p| / h ~ 2e-16 * 30 / 1e-5 ~ 1e-9.  Tolerance 1e-6 (times the scale); a wrong
    # factor anywhere in the score changes it by O(0.1) or more.
    h = 1e-5
    for x, sx in zip(xs, s):
        fd = np.array([(mixture_logpdf(x + h * e, m, t, sigma_x) - mixture_logpdf(x - h * e, m, t, sigma_x)) / (2 * h)
                       for e in np.eye(4)])
        np.testing.assert_allclose(sx, fd, rtol=0, atol=1e-6 * (1 + np.abs(fd).max()))


def test_score_large_m_far_from_origin_and_any_leading_shape():
    # |m| = O(sqrt(d)) with points far out: tanh saturates, the log density is computed with logaddexp.
    d = 6
    law = MixtureData(d, m_tilde=1.5, direction=np.arange(1.0, d + 1), sigma_x=0.8)
    t = 0.05
    x = np.random.default_rng(2).standard_normal((2, 3, d)) * 4.0
    s = law.score(x, t)
    assert s.shape == x.shape
    np.testing.assert_allclose(s[1, 2], law.score(x[1, 2], t), rtol=1e-14)
    h = 1e-5
    # k = |m| e^{-t}/Gamma_t^2 ~ 5.2 here: truncation <= 1e-10 * 0.77 k^3 / 6 ~ 2e-9; rounding
    # ~ 2e-16 * |log p| (<~ 200) / 1e-5 ~ 4e-9; tolerance 1e-6 (times the scale)
    for pt in x.reshape(-1, d):
        fd = np.array([(mixture_logpdf(pt + h * e, law.m, t, 0.8) - mixture_logpdf(pt - h * e, law.m, t, 0.8)) / (2 * h)
                       for e in np.eye(d)])
        np.testing.assert_allclose(law.score(pt, t), fd, rtol=0, atol=1e-6 * (1 + np.abs(fd).max()))


def _parallel_part_quad(m_norm, t, sigma_x):
    """int p_1(y) s(y)^2 dy: the part of E|S|^2 along m, p_1 the 1-D mixture (adaptive quad)."""
    a, g2 = math.exp(-t), gamma2(t, sigma_x)
    mu, sd = a * m_norm, math.sqrt(g2)

    def integrand(y):
        dens = 0.5 * (norm.pdf(y, mu, sd) + norm.pdf(y, -mu, sd))
        return dens * ((mu * math.tanh(mu * y / g2) - y) / g2) ** 2

    lo, hi = -mu - 40 * sd, mu + 40 * sd
    val, _ = integrate.quad(integrand, lo, hi, points=sorted({-mu, 0.0, mu}), epsabs=0, epsrel=1e-13, limit=1000)
    return val


def _score_norm_quad(d, m_norm, t, sigma_x):
    """E|S|^2 = (d - 1)/Gamma^2 (directions orthogonal to m) + the part along m."""
    return (d - 1) / gamma2(t, sigma_x) + _parallel_part_quad(m_norm, t, sigma_x)


@pytest.mark.parametrize("m_norm", [0.0, 0.5, 2.0, 8.0])
@pytest.mark.parametrize("t", [0.01, 0.3, 2.0])
def test_score_norm_against_quadrature(m_norm, t):
    d, sx = 7, 0.9
    law = MixtureData(d, m_norm=m_norm, direction=np.ones(d), sigma_x=sx)
    # The library integrates the part along m with a 200-node Gauss-Hermite rule; the integrand's tanh has
    # poles at +-i pi Gamma_t^2/(2 e^{-t}|m|), which limit that rule to ~1e-6 relative on this part in the
    # worst cases (measured against quad over t in [1e-3, 1], sigma_x in [0.05, 2], |m| in [0.05, 10]);
    # quad itself is converged to ~1e-13.  So: the part along m to 2e-6, the total to 1e-12 + that.
    par = _parallel_part_quad(m_norm, t, sx)
    perp = (d - 1) / gamma2(t, sx)
    assert law.score_norm(t) - perp == pytest.approx(par, rel=2e-6, abs=1e-12)
    assert law.score_norm(t) == pytest.approx(perp + par, rel=1e-12, abs=2e-6 * par)


@pytest.mark.parametrize("m_norm,t", [(1.5, 0.1), (4.0, 0.6)])
def test_score_norm_against_monte_carlo(m_norm, t):
    # E_{y ~ P_t} |S(y)|^2 by Monte Carlo with the score written here; SE = sample std / sqrt(N); 5 sigma
    d, sx = 6, 1.2
    law = MixtureData(d, m_norm=m_norm, direction=np.arange(d) - 2.0, sigma_x=sx)
    y, _ = sample_noised_mixture(np.random.default_rng(9), 200_000, law.m, t, sx)
    sq = np.sum(mixture_score(y, law.m, t, sx) ** 2, axis=1)
    se = sq.std(ddof=1) / math.sqrt(sq.size)
    assert abs(sq.mean() - law.score_norm(t)) <= 5 * se


@pytest.mark.parametrize("m,sigma_x", [([3.0, 4.0], 1.0), ([0.1, 0.0], 2.0), ([0.0, 0.0], 0.5)])
def test_speciation_time(m, sigma_x):
    m = np.asarray(m, dtype=float)
    law = MixtureData(2, m=m, sigma_x=sigma_x)
    # t_S = (1/2) log Lambda, Lambda the top eigenvalue of the data covariance (built here, dense eigvalsh)
    lam = np.linalg.eigvalsh(sigma_x ** 2 * np.eye(2) + np.outer(m, m))[-1]
    assert law.speciation_time() == pytest.approx(0.5 * math.log(lam), rel=1e-13, abs=1e-15)


# ---------------------------------------------------------------------------------------------------
# 4. Bad input
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sigma_x", [0.0, -1.0, float("nan"), float("inf"), "one"])
def test_rejects_bad_sigma_x(sigma_x):
    with pytest.raises(InvalidParameterError, match="sigma_x"):
        MixtureData(3, m_norm=1.0, sigma_x=sigma_x)


def test_rejects_bad_direction():
    with pytest.raises(InvalidParameterError, match="length"):
        MixtureData(3, m_norm=1.0, direction=[1.0, 0.0])
    with pytest.raises(InvalidParameterError, match="zero"):
        MixtureData(3, m_norm=1.0, direction=[0.0, 0.0, 0.0])
    with pytest.raises(InvalidParameterError):
        MixtureData(3, m_tilde=1.0, direction=[1.0, float("nan"), 0.0])


def test_rejects_bad_m():
    with pytest.raises(InvalidParameterError, match="length"):
        MixtureData(3, m=[1.0, 2.0])
    with pytest.raises(InvalidParameterError):
        MixtureData(3, m=[1.0, float("inf"), 0.0])
    with pytest.raises(InvalidParameterError):
        MixtureData(3, m_norm=-1.0)
    with pytest.raises(InvalidParameterError):
        MixtureData(3, m_tilde=float("nan"))


@pytest.mark.parametrize("kwargs", [{}, {"m": [1.0, 0.0, 0.0], "m_norm": 1.0}, {"m_norm": 1.0, "m_tilde": 1.0},
                                    {"m": [1.0, 0.0, 0.0], "m_tilde": 1.0},
                                    {"m": [1.0, 0.0, 0.0], "m_norm": 1.0, "m_tilde": 1.0}])
def test_rejects_none_or_several_of_m_m_norm_m_tilde(kwargs):
    with pytest.raises(InvalidParameterError, match="exactly one"):
        MixtureData(3, **kwargs)


@pytest.mark.parametrize("n", [1, 7, 101])
def test_rejects_odd_n_when_balanced(n):
    law = MixtureData(3, m_norm=1.0)
    with pytest.raises(InvalidParameterError, match="even"):
        law.sample(n, np.random.default_rng(0), balanced=True)
    assert law.sample(n, np.random.default_rng(0)).shape == (n, 3)  # fine without balancing


def test_rejects_bad_dimension_time_and_queries():
    with pytest.raises(InvalidParameterError):
        MixtureData(0, m_norm=1.0)
    law = MixtureData(3, m_norm=1.0)
    with pytest.raises(InvalidParameterError):
        law.score(np.zeros(4), 0.1)
    for bad_t in (0.0, -1.0, float("nan")):
        with pytest.raises(InvalidParameterError):
            law.score(np.zeros(3), bad_t)
        with pytest.raises(InvalidParameterError):
            law.score_norm(bad_t)
    with pytest.raises(InvalidParameterError):
        law.sample(0, np.random.default_rng(0))


# ---------------------------------------------------------------------------------------------------
# 5. Statistics of random features on mixture data
# ---------------------------------------------------------------------------------------------------

def test_noise_averaged_statistics_on_mixture_data_vs_monte_carlo():
    """U, V of a mixture training set (|m| = O(sqrt d), so the per-point means of the pre-activations are
    O(1)) against Monte Carlo over the noise written here: draw j gives Z_j = (1/n) sum phi phi^T with fresh
    xi for every point; the Z_j are i.i.d. with mean U, so SE = std_j(Z_j)/sqrt(M)."""
    d, p, n, t = 10, 30, 20, 0.15
    law = MixtureData(d, m_tilde=0.8, direction=np.random.default_rng(1).standard_normal(d), sigma_x=0.7)
    X = law.sample(n, np.random.default_rng(2), balanced=True)
    feats = RandomFeatures.sample(d, p, "tanh", rng=3)
    st = noise_averaged_statistics(feats, X, t)
    rng = np.random.default_rng(4)
    a, sq = math.exp(-t), math.sqrt(1 - math.exp(-2 * t))
    M, chunk = 6000, 1000
    sums = {k: [np.zeros(s), np.zeros(s)] for k, s in (("U", (p, p)), ("V", (p, d)))}
    for _ in range(M // chunk):
        xi = rng.standard_normal((chunk, n, d))
        phi = np.tanh((a * X[None] + sq * xi) @ feats.W.T / math.sqrt(d))
        ZU = phi.transpose(0, 2, 1) @ phi / n
        ZV = phi.transpose(0, 2, 1) @ xi / n
        for k, Z in (("U", ZU), ("V", ZV)):
            sums[k][0] += Z.sum(0)
            sums[k][1] += (Z * Z).sum(0)
    for k, ref in (("U", st.U), ("V", st.V)):
        mean = sums[k][0] / M
        se = np.sqrt(np.maximum(sums[k][1] / M - mean ** 2, 0.0) / (M - 1))
        assert_within_se(mean, ref, se, k)
    # the pre-activation means are indeed O(1) (the mixture's structure matters for this check)
    assert np.max(np.abs(a * X @ feats.W.T / math.sqrt(d))) > 1.0


ACTIVATIONS = {"tanh": np.tanh, "relu": lambda x: np.maximum(x, 0.0)}


@pytest.mark.parametrize("act,t", [("tanh", 0.05), ("tanh", 0.8), ("relu", 0.1)])
def test_population_statistics_mixture_vs_monte_carlo(act, t):
    """U~ = E phi phi^T, V~ = E phi xi^T and Y = -E[phi(y) S(y)^T] (S the mixture score written here) by
    Monte Carlo over y = e^{-t} x0 + sqrt(Delta_t) xi, x0 from the mixture; per-entry SE from the second
    moments of the same samples; 5 sigma per entry.  score_norm against quadrature.  (For an odd
    activation the two clusters give the same U~, V~, Y, so a non-odd one, ReLU, is needed to see that
    both are included.)"""
    d, p, sx = 8, 24, 0.8
    law = MixtureData(d, m_norm=2.5, direction=np.random.default_rng(0).standard_normal(d), sigma_x=sx)
    feats = RandomFeatures.sample(d, p, act, rng=5)
    sig = ACTIVATIONS[act]
    pop = population_statistics(feats, law, t)
    rng = np.random.default_rng(6)
    N, chunk = 200_000, 20_000
    acc = {k: [np.zeros(s), np.zeros(s)] for k, s in (("U", (p, p)), ("V", (p, d)), ("Y", (p, d)))}
    for _ in range(N // chunk):
        y, xi = sample_noised_mixture(rng, chunk, law.m, t, sx)
        phi = sig(y @ feats.W.T / math.sqrt(d))
        negS = -mixture_score(y, law.m, t, sx)
        for k, (lhs, rhs) in (("U", (phi, phi)), ("V", (phi, xi)), ("Y", (phi, negS))):
            acc[k][0] += lhs.T @ rhs
            acc[k][1] += (lhs ** 2).T @ (rhs ** 2)
    for k, ref in (("U", pop.U), ("V", pop.V), ("Y", pop.Y)):
        mean = acc[k][0] / N
        se = np.sqrt(np.maximum(acc[k][1] / N - mean ** 2, 0.0) / (N - 1))
        assert_within_se(mean, ref, se, f"{k}~ ({act}, t={t})")
    # score_norm = E|S|^2: quadrature reference; 2e-6 on the part along m (see test_score_norm_against_quadrature)
    assert pop.score_norm == pytest.approx(_score_norm_quad(d, 2.5, t, sx), rel=1e-12,
                                           abs=2e-6 * _parallel_part_quad(2.5, t, sx))


_GH_Z, _GH_W = hermegauss(200)
_GH_W = _GH_W / math.sqrt(2 * math.pi)


def test_population_U_entries_against_two_dimensional_quadrature():
    """A few entries of U~ to high precision: conditionally on the cluster c, (h_i, h_j) is Gaussian with
    mean c e^{-t} (w_i.m, w_j.m)/sqrt(d) and covariance Gamma_t^2 (w_i.w_j)/d; a 200 x 200 tensor
    Gauss-Hermite rule on its Cholesky factor (tanh is entire in a strip, so the rule converges
    geometrically: 1e-10 is a safe tolerance)."""
    d, p, t, sx = 5, 12, 0.3, 1.1
    law = MixtureData(d, m=np.array([1.5, -1.0, 0.5, 0.0, 2.0]), sigma_x=sx)
    feats = RandomFeatures.sample(d, p, "tanh", rng=7)
    pop = population_statistics(feats, law, t)
    W, a, g2 = feats.W, math.exp(-t), gamma2(t, sx)
    Z1, Z2 = np.meshgrid(_GH_Z, _GH_Z, indexing="ij")
    WW = np.outer(_GH_W, _GH_W)
    for i, j in [(0, 0), (0, 1), (3, 7), (5, 11), (9, 9)]:
        C = g2 * np.array([[W[i] @ W[i], W[i] @ W[j]], [W[j] @ W[i], W[j] @ W[j]]]) / d
        # h = mu + L (z1, z2); on the diagonal h_i = h_j (a rank-one factor)
        L = (np.array([[1.0, 0.0], [1.0, 0.0]]) * math.sqrt(C[0, 0]) if i == j else np.linalg.cholesky(C))
        val = 0.0
        for c in (1.0, -1.0):
            mu = c * a * np.array([W[i] @ law.m, W[j] @ law.m]) / math.sqrt(d)
            hi = mu[0] + L[0, 0] * Z1 + L[0, 1] * Z2
            hj = mu[1] + L[1, 0] * Z1 + L[1, 1] * Z2
            val += 0.5 * np.sum(WW * np.tanh(hi) * np.tanh(hj))
        tol = 1e-10 * np.linalg.norm(np.diag(pop.U)) + 1e-13
        assert abs(pop.U[i, j] - val) <= tol, (i, j, pop.U[i, j] - val)


@pytest.mark.parametrize("t", [0.02, 0.5])
def test_population_statistics_gaussian_limit(t):
    """|m| -> 0: the mixture's population statistics equal those of N(0, sigma_x^2 I) (a different code
    path: one component with Sigma_t^{1/2} against two with Gamma_t I).  The difference is O(|m|^2) =
    1e-12 here, below the Mehler truncation tolerance 1e-10 used by both, so 1e-9 relative."""
    d, p, sx = 12, 36, 0.9
    feats = RandomFeatures.sample(d, p, "tanh", rng=12)
    mix = population_statistics(feats, MixtureData(d, m_norm=1e-6, direction=np.ones(d), sigma_x=sx), t)
    gau = population_statistics(feats, GaussianData(d, variance=sx ** 2), t)
    for name in ("U", "V", "Y"):
        ref = getattr(gau, name)
        assert np.linalg.norm(getattr(mix, name) - ref) <= 1e-9 * np.linalg.norm(ref), name
    assert mix.score_norm == pytest.approx(gau.score_norm, rel=1e-10)
    # and with a finite |m| they do differ (so the check above can fail): |m| = 2 changes U~ at O(1e-2)
    big = population_statistics(feats, MixtureData(d, m_norm=2.0, direction=np.ones(d), sigma_x=sx), t)
    assert np.linalg.norm(big.U - gau.U) > 1e-3 * np.linalg.norm(gau.U)


def test_population_statistics_rejects_dimension_mismatch():
    feats = RandomFeatures.sample(4, 8, "tanh", rng=0)
    with pytest.raises(InvalidParameterError):
        population_statistics(feats, MixtureData(5, m_norm=1.0), 0.1)
