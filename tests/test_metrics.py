"""Metrics (rfdm.metrics) against brute force on small cases, closed forms, and simulation."""

import math

import numpy as np
import pytest
from scipy import stats

from rfdm import InvalidParameterError, NumericalError
from rfdm.metrics import (binomial_interval, bootstrap_interval, distance_ratios, energy_distance, gaussian_kl, gaussian_kl_of_samples,
                          memorization_fraction, mixture_statistics, nearest_neighbours, sliced_wasserstein,
                          wasserstein_1d)


def brute_distances(q, r):
    return np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1))


@pytest.mark.parametrize("budget", [200, 3000, 10 ** 8])  # many tiny blocks, a few blocks, one block
@pytest.mark.parametrize("k", [1, 2, 5])
def test_nearest_neighbours_against_brute_force(budget, k):
    rng = np.random.default_rng(k)
    q, r = rng.standard_normal((37, 5)), rng.standard_normal((23, 5)) * 1.3
    dist, idx = nearest_neighbours(q, r, k, memory_budget=budget)
    D = brute_distances(q, r)
    order = np.argsort(D, axis=1)[:, :k]
    np.testing.assert_array_equal(idx, order)
    np.testing.assert_allclose(dist, np.take_along_axis(D, order, axis=1), rtol=1e-13, atol=0)


def test_nearest_neighbours_exact_distances_for_near_duplicates():
    """Points far from the origin and nearly coincident: the expansion |q|^2 - 2 q.r + |r|^2 loses all digits,
    the recomputed distance does not."""
    rng = np.random.default_rng(0)
    r = 1e4 + rng.standard_normal((10, 3))
    q = r[:4] + 1e-9 * rng.standard_normal((4, 3))
    dist, idx = nearest_neighbours(q, r, 2)
    np.testing.assert_array_equal(idx[:, 0], np.arange(4))
    np.testing.assert_allclose(dist[:, 0], np.linalg.norm(q - r[:4], axis=1), rtol=1e-6)


def test_memorization_fraction_against_brute_force():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((30, 4))
    Y = np.concatenate([X[:10] + 0.05 * rng.standard_normal((10, 4)), rng.standard_normal((50, 4))])
    D = np.sort(brute_distances(Y, X), axis=1)
    ratio = D[:, 0] / D[:, 1]
    for thr in (1 / 3, 0.5, 0.9):
        res = memorization_fraction(Y, X, threshold=thr, memory_budget=500)
        assert res.n_memorized == int(np.sum(ratio < thr))
        assert res.fraction == pytest.approx(np.mean(ratio < thr), abs=0)
        np.testing.assert_allclose(res.ratios, ratio, rtol=1e-12)
    assert memorization_fraction(Y, X).n_memorized >= 10  # the ten near-copies


def test_duplicate_training_points_count_as_memorized():
    X = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 1.0]])
    r = distance_ratios(np.array([[0.0, 0.0], [1.0, 1.0]]), X)
    assert r[0] == 0.0 and r[1] == pytest.approx(1.0)


def test_memorization_needs_two_training_points():
    with pytest.raises(InvalidParameterError, match="at least 2 training points"):
        memorization_fraction(np.zeros((3, 2)), np.zeros((1, 2)))
    with pytest.raises(InvalidParameterError, match="threshold"):
        memorization_fraction(np.zeros((3, 2)), np.ones((4, 2)), threshold=0)


def test_bootstrap_interval_against_resampling_and_wilson():
    """The binomial shortcut equals resampling the 0/1 outcomes: both intervals agree within the Monte Carlo
    error of the quantiles, and both agree with the Wilson score interval at this size."""
    n, k = 400, 92
    lo, hi = bootstrap_interval(k, n, 0.95, n_boot=20000, seed=3)
    outcomes = np.r_[np.ones(k), np.zeros(n - k)]
    rng = np.random.default_rng(4)
    reps = np.array([rng.choice(outcomes, n).mean() for _ in range(4000)])
    lo_r, hi_r = np.quantile(reps, [0.025, 0.975])
    # quantile Monte Carlo error ~ sqrt(q(1-q)/B)/density ~ 0.002 here; a grid step is 1/n = 0.0025
    assert abs(lo - lo_r) <= 0.006 and abs(hi - hi_r) <= 0.006
    p, z = k / n, stats.norm.ppf(0.975)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert abs(lo - (centre - half)) < 0.008 and abs(hi - (centre + half)) < 0.008
    assert lo < p < hi
    assert bootstrap_interval(0, 50) == (0.0, 0.0) and bootstrap_interval(50, 50) == (1.0, 1.0)


def test_bootstrap_interval_covers_at_its_nominal_rate():
    """Coverage by simulation: 400 experiments of n = 300 Bernoulli(0.2); a 95 % interval covers in about
    95 % of them (binomial s.d. of the count 4.4, so > 351 of 400 is a 5-sigma lower bound)."""
    rng = np.random.default_rng(7)
    cover = 0
    for j in range(400):
        k = int(rng.binomial(300, 0.2))
        lo, hi = bootstrap_interval(k, 300, 0.95, n_boot=2000, seed=j)
        cover += lo <= 0.2 <= hi
    assert cover > 351


def test_mixture_statistics_against_direct_computation():
    rng = np.random.default_rng(2)
    d = 5
    m = rng.standard_normal(d)
    c = rng.choice([-1.0, 1.0], size=300)
    x = c[:, None] * m + 0.7 * rng.standard_normal((300, d))
    st = mixture_statistics(x, 3.0 * m)  # any positive multiple of m
    u = m / np.linalg.norm(m)
    s = x @ u
    plus = s > 0
    Q = np.linalg.qr(np.column_stack([u, rng.standard_normal((d, d - 1))]))[0]  # Q[:, 0] = +-u
    for j, sel in enumerate((plus, ~plus)):
        assert st["mode_fractions"][j] == pytest.approx(sel.mean())
        assert st["mean_along_m"][j] == pytest.approx(s[sel].mean(), rel=1e-12)
        assert st["var_along_m"][j] == pytest.approx(s[sel].var(ddof=1), rel=1e-12)
        other = x[sel] @ Q[:, 1:]  # coordinates in an orthonormal basis of the complement of m
        assert st["var_across_m"][j] == pytest.approx(other.var(axis=0, ddof=1).mean(), rel=1e-10)
    assert st["var_along_m_total"] == pytest.approx(s.var(ddof=1), rel=1e-12)
    one = mixture_statistics(np.array([[1.0, 0], [2.0, 1.0], [-1.0, 0.0]]), np.array([1.0, 0.0]))
    assert one["mean_along_m"][1] == -1.0 and math.isnan(one["var_along_m"][1])  # one sample: no variance
    none = mixture_statistics(np.array([[1.0, 0], [2.0, 1.0]]), np.array([1.0, 0.0]))
    assert none["mode_fractions"] == [1.0, 0.0] and math.isnan(none["mean_along_m"][1])


def test_energy_distance_against_brute_force():
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((40, 3)), 0.5 + rng.standard_normal((27, 3))
    Dxy, Dxx, Dyy = brute_distances(x, y), brute_distances(x, x), brute_distances(y, y)
    expect = 2 * Dxy.mean() - Dxx.sum() / (40 * 39) - Dyy.sum() / (27 * 26)
    for budget in (300, 10 ** 8):
        assert energy_distance(x, y, memory_budget=budget) == pytest.approx(expect, rel=1e-12)


def test_energy_distance_against_closed_form_for_1d_gaussians():
    """D^2 = 2 E|N(a-b, s1^2+s2^2)| - E|N(0, 2 s1^2)| - E|N(0, 2 s2^2)|, E|N(mu, s^2)| =
    s sqrt(2/pi) e^{-mu^2/(2 s^2)} + mu (1 - 2 Phi(-mu/s)).  20 replications of 600 + 600 points; the
    estimator is unbiased, so the mean of the replications is within 4 of its standard errors."""
    def fold(mu, s):
        return s * math.sqrt(2 / math.pi) * math.exp(-mu * mu / (2 * s * s)) + mu * (1 - 2 * stats.norm.cdf(-mu / s))

    a, s1, b, s2 = 0.0, 1.0, 0.6, 1.5
    exact = 2 * fold(a - b, math.hypot(s1, s2)) - fold(0, math.sqrt(2) * s1) - fold(0, math.sqrt(2) * s2)
    rng = np.random.default_rng(4)
    reps = [energy_distance(a + s1 * rng.standard_normal((600, 1)), b + s2 * rng.standard_normal((600, 1)))
            for _ in range(20)]
    assert abs(np.mean(reps) - exact) < 4 * np.std(reps, ddof=1) / math.sqrt(20)
    same = [energy_distance(rng.standard_normal((300, 2)), rng.standard_normal((300, 2))) for _ in range(20)]
    assert abs(np.mean(same)) < 4 * np.std(same, ddof=1) / math.sqrt(20)


def test_wasserstein_1d_exact():
    # equal sizes: the sorted pairing
    a, b = np.array([3.0, 1.0, 2.0]), np.array([0.0, 5.0, 1.0])
    assert wasserstein_1d(a, b) == pytest.approx(math.sqrt(((1 - 0) ** 2 + (2 - 1) ** 2 + (3 - 5) ** 2) / 3))
    # unequal sizes: quantile functions on the merged steps, by hand
    a, b = np.array([0.0, 1.0]), np.array([0.0, 1.0, 2.0])
    # u in (0,1/3): 0 vs 0; (1/3,1/2): 0 vs 1; (1/2,2/3): 1 vs 1; (2/3,1): 1 vs 2
    assert wasserstein_1d(a, b) == pytest.approx(math.sqrt(1 / 6 + 1 / 3))


def test_sliced_wasserstein_against_closed_form():
    """X ~ N(0, I), Y ~ N(mu, I): each projection theta gives W_2^2 = (theta.mu)^2, and the mean over uniform
    directions is |mu|^2/d = 1.  In d = 4, (theta.mu)^2 = 4 theta_1^2 with theta_1^2 ~ Beta(1/2, 3/2) has
    standard deviation 1, so the average over 2000 directions has s.e. 0.022; the sampling error of each 1-D
    W_2^2 with 2000 points is about 0.01.  Tolerance: 5 s.e. + 0.02."""
    rng = np.random.default_rng(6)
    d = 4
    mu = np.array([2.0, 0.0, 0.0, 0.0])
    x, y = rng.standard_normal((2000, d)), mu + rng.standard_normal((2000, d))
    sw = sliced_wasserstein(x, y, n_projections=2000, seed=1)
    assert sw ** 2 == pytest.approx(4.0 / d, abs=5 * 0.022 + 0.02)


def test_gaussian_kl_against_monte_carlo():
    rng = np.random.default_rng(8)
    d = 3
    A, B = rng.standard_normal((d, d)), rng.standard_normal((d, d))
    C, C0 = A @ A.T + 0.5 * np.eye(d), B @ B.T + 0.5 * np.eye(d)
    mu, mu0 = rng.standard_normal(d), rng.standard_normal(d)
    kl = gaussian_kl(mu, C, C0, mu0)
    p, q = stats.multivariate_normal(mu, C), stats.multivariate_normal(mu0, C0)
    x = p.rvs(size=200000, random_state=9)
    lr = p.logpdf(x) - q.logpdf(x)
    assert abs(kl - lr.mean()) < 5 * lr.std() / math.sqrt(x.shape[0])
    assert gaussian_kl(mu, C, C, mu) == pytest.approx(0.0, abs=1e-12)


def test_kl_of_exact_samples_has_its_null_value():
    """The fitted Gaussian of N exact samples has E KL = d(d+3)/(4N) to leading order: 300 replications."""
    d, n = 4, 2000
    rng = np.random.default_rng(10)
    C0 = np.diag([0.5, 1.0, 2.0, 3.0])
    kls = [gaussian_kl_of_samples(rng.standard_normal((n, d)) * np.sqrt(np.diag(C0)), C0)["gaussian_kl"]
           for _ in range(300)]
    null = d * (d + 3) / (4 * n)
    assert abs(np.mean(kls) - null) < 4 * np.std(kls, ddof=1) / math.sqrt(300) + 0.02 * null


def test_metric_input_checks():
    with pytest.raises(InvalidParameterError, match="dimension"):
        nearest_neighbours(np.zeros((2, 3)), np.zeros((4, 2)))
    with pytest.raises(InvalidParameterError, match="nearest neighbours among"):
        nearest_neighbours(np.zeros((2, 3)), np.zeros((1, 3)), k=2)
    with pytest.raises(InvalidParameterError, match="positive definite"):
        gaussian_kl(np.zeros(2), np.zeros((2, 2)), np.eye(2))
    with pytest.raises(InvalidParameterError, match="more samples than dimensions"):
        gaussian_kl_of_samples(np.zeros((2, 3)), np.eye(3))


# -- intervals exact for a binomial proportion, input and overflow checks -------------------------------------

def test_clopper_pearson_at_zero_of_500_is_0_to_0_0074():
    """k = 0 of n = 500: the upper bound solves (1 - p)^n = alpha/2, p = 1 - 0.025^{1/500} = 0.00735 (closed
    form, not SciPy); the bootstrap interval collapses to (0, 0) there, the reason it is no longer the default."""
    lo, hi = binomial_interval(0, 500)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 500), rel=1e-9)
    assert round(hi, 4) == 0.0074
    lo, hi = binomial_interval(500, 500)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 500), rel=1e-9)
    X = np.eye(4) * 10.0  # training points far apart; samples far from all of them: none memorized
    Y = np.random.default_rng(0).standard_normal((500, 4)) * 0.01
    mem = memorization_fraction(Y, X)
    assert mem.n_memorized == 0 and mem.method == "clopper-pearson"
    assert mem.interval[0] == 0.0 and round(mem.interval[1], 4) == 0.0074
    assert mem.as_dict()["f_mem_ci_method"] == "clopper-pearson"
    assert memorization_fraction(Y, X, method="bootstrap").interval == (0.0, 0.0)


@pytest.mark.parametrize("k,n", [(1, 20), (7, 50), (92, 400), (499, 500)])
def test_clopper_pearson_bounds_are_the_beta_quantiles(k, n):
    """lo = Beta^{-1}(alpha/2; k, n-k+1), hi = Beta^{-1}(1-alpha/2; k+1, n-k) (the identity between binomial tail
    sums and the Beta law), checked by the binomial tails themselves: P(Bin(n, hi) <= k) = alpha/2 and
    P(Bin(n, lo) >= k) = alpha/2."""
    lo, hi = binomial_interval(k, n, 0.9)
    assert lo == pytest.approx(stats.beta.ppf(0.05, k, n - k + 1), rel=1e-8)
    assert hi == pytest.approx(stats.beta.ppf(0.95, k + 1, n - k), rel=1e-8)
    assert stats.binom.cdf(k, n, hi) == pytest.approx(0.05, rel=1e-6)
    assert stats.binom.sf(k - 1, n, lo) == pytest.approx(0.05, rel=1e-6)


def test_wilson_interval_closed_form():
    n, k = 400, 92
    p, z = k / n, stats.norm.ppf(0.975)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = binomial_interval(k, n, method="wilson")
    assert lo == pytest.approx(centre - half, rel=1e-10) and hi == pytest.approx(centre + half, rel=1e-10)


def test_clopper_pearson_coverage_is_at_least_nominal_exactly():
    """Exact coverage, no simulation: for a true p, the coverage is sum_k Binom(k; n, p) 1[lo_k <= p <= hi_k].
    Clopper-Pearson guarantees >= 95 % for every p; checked on 199 values of p at n = 60."""
    n = 60
    bounds = np.array([binomial_interval(k, n) for k in range(n + 1)])
    ks = np.arange(n + 1)
    for p in np.linspace(0.005, 0.995, 199):
        covered = (bounds[:, 0] <= p) & (p <= bounds[:, 1])
        assert stats.binom.pmf(ks, n, p)[covered].sum() >= 0.95 - 1e-12


def test_interval_and_threshold_arguments_are_checked():
    with pytest.raises(InvalidParameterError, match="successes"):
        binomial_interval(5, 4)
    with pytest.raises(InvalidParameterError, match="successes"):
        binomial_interval(1.5, 4)
    with pytest.raises(InvalidParameterError, match="confidence"):
        binomial_interval(1, 4, confidence=1.0)
    with pytest.raises(InvalidParameterError, match="method"):
        binomial_interval(1, 4, method="agresti")
    X, Y = np.eye(3), np.ones((4, 3))
    with pytest.raises(InvalidParameterError, match=r"\(0, 1\]"):
        memorization_fraction(Y, X, threshold=1.5)  # d_1/d_2 <= 1: every sample would count
    with pytest.raises(InvalidParameterError, match="interval method"):
        memorization_fraction(Y, X, method="normal")
    assert memorization_fraction(Y + 0.1 * np.arange(3), X, threshold=1.0).threshold == 1.0


def test_energy_distance_is_unbiased_hence_negative_when_the_laws_coincide():
    """Two samples of the same law: the estimate has mean 0 (unbiased), so it is negative in a good part of
    40 replications (its law is skewed to the right, P(< 0) is about 0.6); it is returned unclipped.  A shifted
    law gives a positive value well above the spread of the null replications."""
    rng = np.random.default_rng(11)
    same = np.array([energy_distance(rng.standard_normal((100, 2)), rng.standard_normal((100, 2)))
                     for _ in range(40)])
    assert 5 <= np.sum(same < 0) <= 35
    shifted = energy_distance(rng.standard_normal((100, 2)), 1.0 + rng.standard_normal((100, 2)))
    assert shifted > same.max()


NAN_CASES = [np.nan, np.inf, -np.inf]


@pytest.mark.parametrize("bad", NAN_CASES)
def test_nan_and_inf_inputs_are_refused(bad):
    rng = np.random.default_rng(12)
    x, y = rng.standard_normal((10, 3)), rng.standard_normal((12, 3))
    xb = x.copy()
    xb[3, 1] = bad
    calls = [lambda: nearest_neighbours(xb, y), lambda: nearest_neighbours(y, xb),
             lambda: memorization_fraction(xb, y), lambda: memorization_fraction(y, xb),
             lambda: energy_distance(xb, y), lambda: energy_distance(y, xb), lambda: sliced_wasserstein(xb, y),
             lambda: wasserstein_1d(xb[:, 1], y[:, 0]), lambda: wasserstein_1d(y[:, 0], xb[:, 1]),
             lambda: mixture_statistics(xb, np.ones(3)), lambda: mixture_statistics(x, np.r_[1.0, bad, 0.0]),
             lambda: gaussian_kl(np.r_[0.0, bad], np.eye(2), np.eye(2)),
             lambda: gaussian_kl(np.zeros(2), np.eye(2), np.eye(2), np.r_[bad, 0.0]),
             lambda: gaussian_kl_of_samples(xb, np.eye(3)), lambda: distance_ratios(xb, y)]
    for call in calls:
        with pytest.raises(InvalidParameterError, match="NaN or infinite"):
            call()


def test_overflow_is_a_numerical_error_not_an_inf():
    """Points of size 1e200: their squared distances overflow float64.  The metrics raise NumericalError rather
    than return inf or NaN."""
    big = np.array([[1e200, 0.0], [-1e200, 1.0], [0.0, 1e200]])
    for call in (lambda: energy_distance(big, -big), lambda: nearest_neighbours(big, 0.5 * big, 2),
                 lambda: memorization_fraction(big, 0.5 * big), lambda: sliced_wasserstein(big, -big),
                 lambda: wasserstein_1d(big[:, 0], np.zeros(3))):
        with pytest.raises(NumericalError):
            call()
    with pytest.raises(NumericalError, match="Gaussian KL"):
        gaussian_kl(np.zeros(2), np.eye(2) * 1e300, np.eye(2) * 1e-300)
