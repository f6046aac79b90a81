"""Tests of rfdm.data (THEORY §1): Gaussian data N(0, Sigma) and the empirical law of n points.

References are independent of the library: sampling statistics, scipy's multivariate normal log-density,
brute-force mixtures with scipy.special.logsumexp, hand-computed multiplicities, and exact identities.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import logsumexp, softmax
from scipy.stats import multivariate_normal

from rfdm.data import EmpiricalData, GaussianData
from rfdm.errors import InvalidParameterError

EPS = np.finfo(float).eps


def _orthogonal(d, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


def _sigma_t(sigma, t):
    """Sigma_t = e^{-2t} Sigma + (1 - e^{-2t}) I, computed here without the library."""
    return math.exp(-2 * t) * sigma + (-math.expm1(-2 * t)) * np.eye(sigma.shape[0])


# Three laws covering rotation = None / "random" / a given matrix, several eigenvalues, weights, variance.
# Each entry: constructor kwargs and the expected spectrum of Sigma (with multiplicity), computed by hand.
CONFIGS = {
    "diag": (dict(d=6, eigenvalues=(0.5, 2.0, 4.0), weights=(1 / 6, 1 / 2, 1 / 3), variance=1.5),
             1.5 * np.array([0.5, 2.0, 2.0, 2.0, 4.0, 4.0])),
    "random": (dict(d=6, eigenvalues=(0.3, 3.0), rotation="random", seed=3),
               np.array([0.3, 0.3, 0.3, 3.0, 3.0, 3.0])),
    "matrix": (dict(d=4, eigenvalues=(1.0, 2.0, 5.0), weights=(0.25, 0.25, 0.5), variance=0.7,
                    rotation=_orthogonal(4, 21)),
               0.7 * np.array([1.0, 2.0, 5.0, 5.0])),
}


@pytest.fixture(params=sorted(CONFIGS))
def gaussian(request):
    kwargs, spectrum = CONFIGS[request.param]
    return GaussianData(**kwargs), spectrum, kwargs


# --------------------------------------------------------------------------------------------------
# GaussianData: covariance, spectrum, rotation
# --------------------------------------------------------------------------------------------------
def test_gaussian_spectrum_and_covariance_structure(gaussian):
    data, spectrum, kwargs = gaussian
    np.testing.assert_allclose(np.sort(data.spectrum), np.sort(spectrum), rtol=1e-15)
    cov = data.covariance()
    # symmetric, eigenvalues equal to the hand-computed spectrum (eigvalsh error ~ eps * |Sigma|)
    np.testing.assert_allclose(cov, cov.T, rtol=0, atol=10 * EPS * spectrum.max())
    np.testing.assert_allclose(np.linalg.eigvalsh(cov), np.sort(spectrum), rtol=0, atol=50 * EPS * spectrum.max())
    r = data.rotation_matrix
    np.testing.assert_allclose(r.T @ r, np.eye(data.d), rtol=0, atol=1e-12)
    rot = kwargs.get("rotation")
    if rot is None:
        # diagonal Sigma
        np.testing.assert_array_equal(cov, np.diag(np.diag(cov)))
    elif isinstance(rot, np.ndarray):
        # the given matrix's columns are the eigenvectors, in the order of data.spectrum
        np.testing.assert_allclose(cov @ rot, rot * data.spectrum, rtol=0, atol=1e-13)
    else:
        # a genuine rotation: Sigma is not diagonal
        assert np.abs(cov - np.diag(np.diag(cov))).max() > 0.1


def test_gaussian_sample_covariance(gaussian):
    data, spectrum, _ = gaussian
    n = 200_000
    x = data.sample(n, np.random.default_rng(2024))
    assert x.shape == (n, data.d)
    # Mean: standard error (sample std)/sqrt(n), 5 sigma.
    se_mean = x.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(x.mean(axis=0)) <= 5 * se_mean)
    # Second moments: the law is centred, so E[x_i x_j] = Sigma_ij. Standard error of the mean of the
    # products from their sample std / sqrt(n) (same samples); 5 sigma per entry.
    prod = x[:, :, None] * x[:, None, :]
    emp = prod.mean(axis=0)
    se = prod.std(axis=0, ddof=1) / math.sqrt(n)
    assert np.all(np.abs(emp - data.covariance()) <= 5 * se)


def test_random_rotation_depends_on_seed_only():
    a = GaussianData(d=5, eigenvalues=(1.0, 4.0), rotation="random", seed=1)
    b = GaussianData(d=5, eigenvalues=(1.0, 4.0), rotation="random", seed=1)
    c = GaussianData(d=5, eigenvalues=(1.0, 4.0), rotation="random", seed=2)
    np.testing.assert_array_equal(a.rotation_matrix, b.rotation_matrix)
    assert not np.allclose(a.rotation_matrix, c.rotation_matrix)


def test_random_rotation_is_haar_on_average():
    # For a Haar rotation, E[R_ij] = 0 and E[R_ij^2] = 1/d. Over 400 seeds the sample mean of R_ij has
    # standard error sqrt(1/(d*400)) and the mean of R_ij^2 has std sqrt(Var(R_ij^2)/400) with
    # Var(R_ij^2) = 3/(d(d+2)) - 1/d^2; 5 sigma per entry (16 entries). A QR without the sign fix
    # gives E[R_11] != 0 and fails this.
    d, k = 4, 400
    rs = np.array([GaussianData(d=d, rotation="random", seed=s).rotation_matrix for s in range(k)])
    assert np.all(np.abs(rs.mean(axis=0)) <= 5 * math.sqrt(1.0 / (d * k)))
    var_sq = 3.0 / (d * (d + 2)) - 1.0 / d**2
    assert np.all(np.abs((rs**2).mean(axis=0) - 1.0 / d) <= 5 * math.sqrt(var_sq / k))


@pytest.mark.parametrize("d, weights, expected_counts", [
    (10, (1 / 3, 2 / 3), (3, 7)),          # 3.33 / 6.67: the larger remainder gets the spare slot
    (7, (0.15, 0.35, 0.5), (1, 2, 4)),     # 1.05 / 2.45 / 3.5
    (8, (0.25, 0.5, 0.25), (2, 4, 2)),     # exact
    (3, (0.0, 1.0), (0, 3)),               # a zero weight gives no direction
])
def test_spectrum_multiplicities_from_weights(d, weights, expected_counts):
    eigenvalues = (0.5, 1.0, 7.0)[:len(weights)]
    data = GaussianData(d=d, eigenvalues=eigenvalues, weights=weights)
    counts = [int(np.sum(data.spectrum == v)) for v in eigenvalues]
    assert tuple(counts) == expected_counts


def test_spectrum_multiplicities_random_weights():
    # Largest-remainder rounding: counts sum to d and each is within 1 of w * d.
    rng = np.random.default_rng(5)
    for _ in range(20):
        k = int(rng.integers(2, 6))
        d = int(rng.integers(k, 60))
        w = rng.dirichlet(np.ones(k))
        w = w / w.sum()
        eigenvalues = tuple(float(i + 1) for i in range(k))
        data = GaussianData(d=d, eigenvalues=eigenvalues, weights=tuple(w))
        counts = np.array([np.sum(data.spectrum == v) for v in eigenvalues])
        assert counts.sum() == d
        assert np.all(np.abs(counts - w * d) < 1.0)


# --------------------------------------------------------------------------------------------------
# GaussianData at time t: Sigma_t, its trace inverse, the score
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("t", [1e-3, 0.2, 1.5])
def test_gaussian_covariance_t_and_trace_inverse(gaussian, t):
    data, _, _ = gaussian
    ref = _sigma_t(data.covariance(), t)
    # covariance_t and spectrum_t against Sigma_t built here; both ~ a few eps * |Sigma| of rounding
    np.testing.assert_allclose(data.covariance_t(t), ref, rtol=0, atol=1e-13)
    np.testing.assert_allclose(np.sort(data.spectrum_t(t)), np.linalg.eigvalsh(ref), rtol=1e-12)
    root = data.sqrt_covariance_t(t)
    np.testing.assert_allclose(root, root.T, rtol=0, atol=1e-13)
    np.testing.assert_allclose(root @ root, ref, rtol=0, atol=1e-13)
    # Tr Sigma_t^{-1} vs a dense inverse: condition number <= ~4e3 here, so ~1e-12 relative is safe.
    np.testing.assert_allclose(data.trace_inverse_covariance_t(t), np.trace(np.linalg.inv(ref)), rtol=1e-11)


@pytest.mark.parametrize("t", [0.05, 0.7])
def test_gaussian_score_against_finite_difference_of_scipy_logpdf(gaussian, t):
    data, _, _ = gaussian
    mvn = multivariate_normal(mean=np.zeros(data.d), cov=_sigma_t(data.covariance(), t))
    rng = np.random.default_rng(17)
    xs = rng.standard_normal((4, data.d)) * 1.5
    scores = data.score(xs, t)
    assert scores.shape == xs.shape
    # log N(0, Sigma_t) is exactly quadratic, so a central difference has no truncation error: only
    # rounding, ~ eps * |log p| / h <~ 1e-12 for h = 1e-3. 1e-8 (times the scale) leaves a wide margin;
    # a wrong score (e.g. -Sigma^{-1} x or -x / Sigma_t-diagonal) is off by O(1).
    h = 1e-3
    for x, s in zip(xs, scores):
        fd = np.array([(mvn.logpdf(x + h * e) - mvn.logpdf(x - h * e)) / (2 * h) for e in np.eye(data.d)])
        np.testing.assert_allclose(s, fd, rtol=0, atol=1e-8 * (1 + np.abs(fd).max()))


def test_gaussian_score_fisher_information_by_monte_carlo():
    # E_{y ~ P_t} |S(y, t)|^2 = Tr Sigma_t^{-1} (THEORY §2). Draw y ~ N(0, Sigma_t) with scipy (independent
    # of the library); standard error of the mean of |S|^2 from its sample std / sqrt(n); 5 sigma.
    data = GaussianData(d=5, eigenvalues=(0.1, 1.0, 3.0), weights=(0.4, 0.2, 0.4), rotation="random", seed=8)
    t = 0.1
    ref_cov = _sigma_t(data.covariance(), t)
    y = multivariate_normal(mean=np.zeros(5), cov=ref_cov).rvs(size=100_000, random_state=np.random.default_rng(4))
    sq = np.sum(data.score(y, t) ** 2, axis=1)
    se = sq.std(ddof=1) / math.sqrt(sq.size)
    assert abs(sq.mean() - np.trace(np.linalg.inv(ref_cov))) <= 5 * se


def test_gaussian_score_accepts_any_leading_shape():
    data = GaussianData(d=3, eigenvalues=(0.5, 2.0, 3.0), rotation="random", seed=1)
    x = np.random.default_rng(0).standard_normal((2, 5, 3))
    s = data.score(x, 0.4)
    assert s.shape == x.shape
    np.testing.assert_allclose(s[1, 2], data.score(x[1, 2], 0.4), rtol=1e-14)
    # linear in x: S(x, t) = -Sigma_t^{-1} x, checked against a dense solve
    np.testing.assert_allclose(s[1, 2], -np.linalg.solve(_sigma_t(data.covariance(), 0.4), x[1, 2]),
                               rtol=1e-12, atol=1e-14)


# --------------------------------------------------------------------------------------------------
# GaussianData: bad input
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("d", [0, -3, 2.5, "four", None])
def test_gaussian_rejects_bad_dimension(d):
    with pytest.raises(InvalidParameterError, match="d must be a positive integer"):
        GaussianData(d=d)


@pytest.mark.parametrize("eigenvalues", [(1.0, 0.0), (-0.5,), (2.0, -1.0, 3.0)])
def test_gaussian_rejects_non_positive_eigenvalues(eigenvalues):
    with pytest.raises(InvalidParameterError, match="eigenvalues must be > 0"):
        GaussianData(d=4, eigenvalues=eigenvalues)


def test_gaussian_rejects_nan_eigenvalues():
    with pytest.raises(InvalidParameterError, match="eigenvalues contains NaN"):
        GaussianData(d=4, eigenvalues=(1.0, float("nan")))


@pytest.mark.parametrize("weights, message", [
    ((0.5, 0.4), "sum to 1"),
    ((0.7, 0.7), "sum to 1"),
    ((1.2, -0.2), ">= 0"),
    ((1.0,), "weights has 1 entries but there are 2 eigenvalues"),
    ((0.2, 0.3, 0.5), "weights has 3 entries"),
    ((0.5, float("nan")), "weights contains NaN"),
])
def test_gaussian_rejects_bad_weights(weights, message):
    with pytest.raises(InvalidParameterError, match=message):
        GaussianData(d=4, eigenvalues=(1.0, 2.0), weights=weights)


@pytest.mark.parametrize("variance", [0.0, -1.0, float("nan"), float("inf")])
def test_gaussian_rejects_bad_variance(variance):
    with pytest.raises(InvalidParameterError, match="variance must be"):
        GaussianData(d=3, variance=variance)


@pytest.mark.parametrize("rotation", [np.ones((3, 3)), np.eye(4), "haar", np.eye(3)[:, :2]])
def test_gaussian_rejects_bad_rotation(rotation):
    with pytest.raises(InvalidParameterError, match="rotation"):
        GaussianData(d=3, rotation=rotation)


@pytest.mark.parametrize("bad_t", [0.0, -0.1, float("nan"), float("inf")])
def test_gaussian_rejects_bad_time(bad_t):
    data = GaussianData(d=3)
    for call in (lambda: data.score(np.zeros(3), bad_t), lambda: data.covariance_t(bad_t),
                 lambda: data.trace_inverse_covariance_t(bad_t), lambda: data.spectrum_t(bad_t)):
        with pytest.raises(InvalidParameterError, match="t must be"):
            call()


def test_gaussian_score_rejects_wrong_last_dimension():
    data = GaussianData(d=3)
    with pytest.raises(InvalidParameterError, match="last dimension d = 3"):
        data.score(np.zeros((5, 4)), 0.5)
    with pytest.raises(InvalidParameterError, match="last dimension d = 3"):
        data.score(np.zeros(2), 0.5)


def test_gaussian_sample_rejects_bad_n():
    with pytest.raises(InvalidParameterError, match="n must be a positive integer"):
        GaussianData(d=3).sample(0, np.random.default_rng(0))


# --------------------------------------------------------------------------------------------------
# EmpiricalData
# --------------------------------------------------------------------------------------------------
def _brute_log_density(points, x, t):
    """log (1/n) sum_mu N(x; e^{-t} a_mu, Delta_t I) with scipy, one component at a time."""
    a, dt = math.exp(-t), -math.expm1(-2 * t)
    d = points.shape[1]
    comps = np.array([multivariate_normal(mean=a * p, cov=dt * np.eye(d)).logpdf(x) for p in points])
    return logsumexp(comps, axis=0) - math.log(points.shape[0])


def _brute_score(points, x, t):
    """[sum_mu w_mu e^{-t} a_mu - x] / Delta_t with w = softmax(-|x - e^{-t} a_mu|^2 / (2 Delta_t))."""
    a, dt = math.exp(-t), -math.expm1(-2 * t)
    diff = x[:, None, :] - a * points[None, :, :]
    w = softmax(-np.sum(diff**2, axis=2) / (2 * dt), axis=1)
    return (a * (w @ points) - x) / dt, w


@pytest.mark.parametrize("t", [0.05, 0.4, 2.0])
def test_empirical_log_density_against_brute_force_mixture(t):
    rng = np.random.default_rng(31)
    points = rng.standard_normal((7, 3))
    x = rng.standard_normal((5, 3)) * 1.2
    data = EmpiricalData(points)
    # Same quantity, different arithmetic (expanded squares vs scipy per component): rounding only.
    np.testing.assert_allclose(data.log_density(x, t), _brute_log_density(points, x, t), rtol=1e-11, atol=1e-11)


@pytest.mark.parametrize("t", [0.05, 0.4, 2.0])
def test_empirical_score_against_finite_difference_of_log_density(t):
    rng = np.random.default_rng(32)
    points = rng.standard_normal((9, 4))
    data = EmpiricalData(points)
    x = rng.standard_normal((5, 4))
    s = data.score(x, t)
    assert s.shape == x.shape
    # Central difference of log P_t with h = 1e-5: truncation h^2 |d^3 log p|/6 <~ 1e-10 * (1/Delta_t)^2,
    # rounding eps |log p| / h <~ 1e-10. Tolerance 1e-6 (times 1 + |S|) is far above both and far below
    # the O(1) error of a wrong weight or prefactor.
    h = 1e-5
    for xi, si in zip(x, s):
        fd = np.array([(data.log_density(xi + h * e, t)[0] - data.log_density(xi - h * e, t)[0]) / (2 * h)
                       for e in np.eye(4)])
        np.testing.assert_allclose(si, fd, rtol=0, atol=1e-6 * (1 + np.abs(fd).max()))
    # and against the brute-force posterior-mean formula of THEORY §1
    np.testing.assert_allclose(s, _brute_score(points, x, t)[0], rtol=1e-11, atol=1e-11)
    # 1-D input gives a 1-D score
    np.testing.assert_allclose(data.score(x[0], t), s[0], rtol=1e-14)


def test_empirical_log_weights_against_brute_force_softmax():
    rng = np.random.default_rng(33)
    points = rng.standard_normal((6, 3))
    x = rng.standard_normal((4, 3))
    data = EmpiricalData(points)
    lw = data.log_weights(x, 0.3)
    assert lw.shape == (4, 6)
    np.testing.assert_allclose(np.exp(lw).sum(axis=1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(np.exp(lw), _brute_score(points, x, 0.3)[1], rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("t", [1e-4, 1e-7])
def test_empirical_score_small_t_points_to_nearest_training_point(t):
    rng = np.random.default_rng(34)
    n, d = 20, 5
    points = rng.standard_normal((n, d))
    data = EmpiricalData(points)
    a, dt = math.exp(-t), -math.expm1(-2 * t)
    # queries near training points, and one far away from all of them (logits ~ |x||a|/Delta_t ~ 1e5-1e8,
    # which overflow exp without the shift)
    near = a * points[[0, 3, 7]] + 0.03 * rng.standard_normal((3, d))
    far = np.full((1, d), 20.0)
    x = np.vstack([near, far])
    s = data.score(x, t)
    assert np.all(np.isfinite(s))
    nearest = np.argmin(np.sum((x[:, None, :] - a * points[None]) ** 2, axis=2), axis=1)
    assert list(nearest[:3]) == [0, 3, 7]
    expected = (a * points[nearest] - x) / dt
    # The other weights are exp(-(gap in squared distance)/(2 Delta_t)) <= exp(-100): one-hot to double
    # precision, so only rounding of the final (a*mean - x)/Delta_t remains (~1e-16 |x|/Delta_t).
    np.testing.assert_allclose(s, expected, rtol=1e-10, atol=0)
    # log_density is finite too
    assert np.all(np.isfinite(data.log_density(x, t)))


def test_empirical_score_small_t_two_equidistant_points():
    # x equidistant from two training points and far from the rest: weights 1/2 each, so
    # S = (e^{-t} (a_1 + a_2)/2 - x)/Delta_t = -x/Delta_t with a_1 = -a_2.
    points = np.array([[1.0, 0.0, 0.0], [-1.0, 0.0, 0.0], [30.0, 30.0, 30.0], [-30.0, 40.0, 0.0]])
    data = EmpiricalData(points)
    t = 1e-4
    x = np.array([[0.0, 0.01, -0.02]])
    s = data.score(x, t)
    np.testing.assert_allclose(s, -x / (-math.expm1(-2 * t)), rtol=1e-9)
    np.testing.assert_allclose(np.exp(data.log_weights(x, t))[0, :2], 0.5, rtol=1e-12)


@pytest.mark.parametrize("t", [0.01, 1.0])
def test_empirical_score_does_not_depend_on_batch_size(t):
    rng = np.random.default_rng(35)
    points = rng.standard_normal((50, 4))
    x = rng.standard_normal((23, 4))
    ref = EmpiricalData(points, batch_size=10_000)
    s_ref, lp_ref = ref.score(x, t), ref.log_density(x, t)
    # The running log-sum-exp over blocks reorders sums only: differences are rounding, ~1e-15 relative;
    # 1e-12 relative to the largest entry.
    for bs in (1, 3, 7, 50):
        data = EmpiricalData(points, batch_size=bs)
        s = data.score(x, t)
        assert np.max(np.abs(s - s_ref)) <= 1e-12 * np.max(np.abs(s_ref))
        lp = data.log_density(x, t)
        assert np.max(np.abs(lp - lp_ref)) <= 1e-12 * np.max(np.abs(lp_ref))
    # the batched result is also the brute-force one
    np.testing.assert_allclose(EmpiricalData(points, batch_size=3).score(x, t), _brute_score(points, x, t)[0],
                               rtol=1e-10, atol=1e-10)


def test_empirical_from_npy_round_trip(tmp_path):
    rng = np.random.default_rng(36)
    points = rng.standard_normal((12, 3))
    path = tmp_path / "points.npy"
    np.save(path, points)
    data = EmpiricalData.from_npy(path, batch_size=5)
    assert (data.n, data.d, data.batch_size) == (12, 3, 5)
    np.testing.assert_array_equal(data.points, points)
    x = rng.standard_normal((4, 3))
    # batch_size 5 vs the default only reorders sums: rounding-level differences
    np.testing.assert_allclose(data.score(x, 0.3), EmpiricalData(points).score(x, 0.3), rtol=1e-12)
    # str paths work too
    np.testing.assert_array_equal(EmpiricalData.from_npy(str(path)).points, points)


def test_empirical_from_npy_bad_files(tmp_path):
    garbage = tmp_path / "garbage.npy"
    garbage.write_text("this is not a numpy file")
    with pytest.raises(InvalidParameterError, match="cannot read data file"):
        EmpiricalData.from_npy(garbage)
    with pytest.raises(InvalidParameterError, match="cannot read data file"):
        EmpiricalData.from_npy(tmp_path / "missing.npy")
    objects = tmp_path / "objects.npy"
    np.save(objects, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidParameterError, match="cannot read data file"):
        EmpiricalData.from_npy(objects)
    one_d = tmp_path / "one_d.npy"
    np.save(one_d, np.arange(5.0))
    with pytest.raises(InvalidParameterError, match="2-D"):
        EmpiricalData.from_npy(one_d)
    with_nan = tmp_path / "nan.npy"
    np.save(with_nan, np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(InvalidParameterError, match="NaN"):
        EmpiricalData.from_npy(with_nan)


# --------------------------------------------------------------------------------------------------
# EmpiricalData: bad input
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("points, message", [
    (np.array([[0.0, np.nan], [1.0, 2.0]]), "data contains NaN"),
    (np.array([[0.0, np.inf], [1.0, 2.0]]), "data contains NaN or infinite"),
    (np.zeros(4), "data must be a 2-D array"),
    (np.zeros((0, 3)), "data must not be empty"),
    ([["a", "b"]], "data must be a numeric array"),
])
def test_empirical_rejects_bad_data(points, message):
    with pytest.raises(InvalidParameterError, match=message):
        EmpiricalData(points)


def test_empirical_rejects_bad_batch_size():
    with pytest.raises(InvalidParameterError, match="batch_size"):
        EmpiricalData(np.zeros((3, 2)), batch_size=0)


@pytest.mark.parametrize("bad_t", [0.0, -1.0, float("nan"), float("inf")])
def test_empirical_rejects_bad_time(bad_t):
    data = EmpiricalData(np.eye(3))
    for call in (lambda: data.score(np.zeros(3), bad_t), lambda: data.log_density(np.zeros(3), bad_t),
                 lambda: data.log_weights(np.zeros(3), bad_t)):
        with pytest.raises(InvalidParameterError, match="t must be"):
            call()


def test_empirical_rejects_nan_queries():
    data = EmpiricalData(np.eye(3))
    with pytest.raises(InvalidParameterError, match="x contains NaN"):
        data.score(np.array([0.0, np.nan, 0.0]), 0.5)
    with pytest.raises(InvalidParameterError, match="x contains NaN"):
        data.log_density(np.array([0.0, np.nan, 0.0]), 0.5)


def test_empirical_score_rejects_wrong_last_dimension():
    data = EmpiricalData(np.eye(3))
    with pytest.raises(InvalidParameterError, match="last dimension d = 3"):
        data.score(np.zeros((2, 4)), 0.5)
    with pytest.raises(InvalidParameterError, match="last dimension d = 3"):
        data.score(np.zeros(2), 0.5)


def test_empirical_log_density_rejects_wrong_last_dimension():
    data = EmpiricalData(np.eye(3))
    with pytest.raises(InvalidParameterError, match="last dimension"):
        data.log_density(np.zeros((2, 4)), 0.5)


def test_empirical_log_weights_rejects_wrong_last_dimension():
    data = EmpiricalData(np.eye(3))
    with pytest.raises(InvalidParameterError, match="last dimension"):
        data.log_weights(np.zeros((2, 4)), 0.5)
