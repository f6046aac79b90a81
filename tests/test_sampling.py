"""The backward-process sampler and its score sources (rfdm.sampling).

Independent checks: for Gaussian data with the exact score every step is linear, so the covariance of the
discrete scheme follows an exact matrix recursion, computed here separately; the sampler's sample covariance
must match it within sampling error, and the recursion must approach Sigma_{t_min} as the steps shrink.
"""

import math

import numpy as np
import pytest

from rfdm import GaussianData, GradientFlow, InvalidParameterError, RandomFeatures, noise_averaged_statistics
from rfdm.data import MixtureData
from rfdm.metrics import gaussian_kl_of_samples, memorization_fraction
from rfdm.sampling import (CallableScore, EmpiricalScore, ExactScore, RandomFeaturesScore, sample, sample_stream,
                           time_grid, train_random_features)


def scheme_covariance(law, grid, integrator):
    """Covariance of x_K for x_0 ~ N(0, I) under the linear scheme x' = M_k x + sqrt(q_k) xi, with the exact
    Gaussian score S = -Sigma_t^{-1} x frozen at the start of each step."""
    d = law.d
    C = np.eye(d)
    for k in range(len(grid) - 1):
        t, h = grid[k], grid[k] - grid[k + 1]
        P = np.linalg.inv(law.covariance_t(t))
        if integrator == "exponential":
            M, q = math.exp(h) * np.eye(d) - 2 * math.expm1(h) * P, math.expm1(2 * h)
        else:
            M, q = (1 + h) * np.eye(d) - 2 * h * P, 2 * h
        C = M @ C @ M.T + q * np.eye(d)
    return C


LAW = GaussianData(4, eigenvalues=(0.3, 1.0, 2.0, 4.0), rotation="random", seed=1)


@pytest.mark.parametrize("integrator,grid", [("exponential", "geometric"), ("euler", "log-snr"),
                                             ("exponential", "uniform")])
def test_exact_gaussian_score_reproduces_the_scheme_covariance(integrator, grid):
    n = 20000
    g = time_grid(8.0, 0.01, 100, grid)
    run = sample(ExactScore(LAW), n, times=g, integrator=integrator, seed=5)
    C_scheme = scheme_covariance(LAW, g, integrator)
    C_hat = np.cov(run.noisy_samples, rowvar=False)  # the scheme's law at t_min, before the final denoising
    # sampling error of a covariance entry: Var(C_ij) = (C_ii C_jj + C_ij^2)/n; 5 standard errors
    se = np.sqrt((np.outer(np.diag(C_scheme), np.diag(C_scheme)) + C_scheme ** 2) / n)
    assert np.all(np.abs(C_hat - C_scheme) < 5 * se), np.max(np.abs(C_hat - C_scheme) / se)
    # the mean is 0 within 5 standard errors
    assert np.all(np.abs(run.noisy_samples.mean(axis=0)) < 5 * np.sqrt(np.diag(C_scheme) / n))


@pytest.mark.parametrize("integrator", ["exponential", "euler"])
def test_scheme_converges_to_the_target_covariance(integrator):
    """First-order schemes: the bias of the final covariance halves when the steps halve."""
    target = LAW.covariance_t(0.01)
    errs = [np.abs(scheme_covariance(LAW, time_grid(8.0, 0.01, k, "log-snr"), integrator) - target).max()
            for k in (200, 400, 800)]
    assert errs[2] < 0.02
    assert 1.7 < errs[0] / errs[1] < 2.3 and 1.7 < errs[1] / errs[2] < 2.3


def test_exact_gaussian_samples_match_n0_sigma_within_statistical_error():
    """With fine steps the samples are N(0, Sigma_{t_min}): the KL of the fitted Gaussian is that of exact
    samples, d(d+3)/(4N) on average (std about sqrt(d(d+3)/2)/(2N) for chi-square-like fluctuations)."""
    n = 20000
    run = sample(ExactScore(LAW), n, steps=800, grid="log-snr", seed=11)
    kl = gaussian_kl_of_samples(run.noisy_samples, LAW.covariance_t(0.01))  # P_{t_min}: before the denoising
    # discretisation bias of the covariance at 800 steps is < 0.01 in every entry (previous test), which adds
    # < 1e-4 to the KL; the null value is 7e-4
    assert kl["gaussian_kl"] < kl["kl_null"] + 6 * math.sqrt(LAW.d * (LAW.d + 3) / 2) / (2 * n) + 2e-4


def test_samples_are_seeded_per_sample():
    score = ExactScore(MixtureData(3, m_norm=2.0))
    a = sample(score, 12, steps=30, seed=4).samples
    b = sample(score, 12, steps=30, seed=4, batch_size=5).samples  # other batching, other noise chunks
    c = sample(score, 5, steps=30, seed=4, first_index=7).samples   # samples 7..11 alone
    d = sample(score, 12, steps=30, seed=4, memory_budget=2000).samples
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[7:], c)
    np.testing.assert_array_equal(a, d)
    e = sample(score, 12, steps=30, seed=5).samples
    assert not np.any(a == e)
    # sample i starts from the first d normals of its own stream
    x0 = sample(CallableScore(lambda x, t: np.zeros_like(x), 3), 2, times=[1.0, 0.5], seed=4,
                integrator="euler").noisy_samples
    g = sample_stream(4, 1)
    start, xi = g.standard_normal(3), g.standard_normal(3)
    np.testing.assert_allclose(x0[1], 1.5 * start + math.sqrt(1.0) * xi, rtol=1e-14)


def test_memory_budget_bounds_the_batch_and_chunk():
    run = sample(ExactScore(GaussianData(8)), 300, steps=50, memory_budget=8 * 8 * 60, seed=0)
    info = run.info
    # the sampler's arrays per sample: x, score, step buffer (3 d), the score's scratch (2 d for the exact
    # Gaussian score) and a chunk of noise (chunk x d), float64
    assert info["batch_size"] * (3 * 8 + 2 * 8 + info["noise_chunk"] * 8) * 8 <= 8 * 8 * 60
    assert info["batch_size"] < 300 and info["noise_chunk"] < 50


def test_recorded_states_are_the_states_of_a_shorter_run():
    """A state recorded at grid time t_k is the final state of the same run stopped at t_k (same streams);
    a continuation from it with other streams has the right shape and differs."""
    score = ExactScore(GaussianData(2, eigenvalues=(0.5, 2.0)))
    g = time_grid(4.0, 0.05, 40, "geometric", include=[1.0])
    assert np.any(g == 1.0) and g.size == 42
    run = sample(score, 6, times=g, record_times=[1.0], seed=2)
    assert run.recorded.shape == (1, 6, 2) and run.record_times[0] == 1.0
    k = int(np.nonzero(g == 1.0)[0][0])
    short = sample(score, 6, times=g[:k + 1], seed=2)
    np.testing.assert_array_equal(run.recorded[0], short.noisy_samples)
    cont = sample(score, 6, times=g[k:], x_init=run.recorded[0], seed=99)
    assert cont.samples.shape == (6, 2) and not np.allclose(cont.samples, run.samples)


def test_empirical_score_samples_memorize_and_exact_do_not():
    law = GaussianData(8)
    X = law.sample(16, np.random.default_rng(0))
    emp = sample(EmpiricalScore(X), 400, steps=150, seed=1).samples
    exa = sample(ExactScore(law), 400, steps=150, seed=1).samples
    # n = 16 = e^{alpha d}, alpha = 0.35: t_C = 0.36 >> t_min = 0.01, so every empirical sample collapses;
    # at t_min the residual noise (sqrt(Delta d) = 0.4) is far below the spacing of the points (about 4)
    f_emp = memorization_fraction(emp, X).fraction
    f_exa = memorization_fraction(exa, X).fraction
    assert f_emp > 0.85
    # fresh N(0, I) samples in d = 8 are rarely 3x closer to one of 16 points than to the next: measured
    # rate for exact draws (below) sets the bound
    ref = memorization_fraction(law.sample(4000, np.random.default_rng(3)), X).fraction
    assert f_exa < ref + 5 * math.sqrt(max(ref, 1 / 400) / 400)


def test_rf_score_matches_the_closed_form_weights_at_grid_times():
    law = GaussianData(6)
    X = law.sample(24, np.random.default_rng(0))
    f = RandomFeatures.sample(6, 48, "tanh", 1)
    times = np.array([0.05, 0.2, 1.0])
    sc = RandomFeaturesScore.train(f, X, times, tau=50.0)
    x = np.random.default_rng(2).standard_normal((10, 6))
    for k, t in enumerate(times):
        A = GradientFlow(noise_averaged_statistics(f, X, t, rtol=1e-8)).weights(50.0)
        direct = f(x) @ A.T / math.sqrt(f.p)
        np.testing.assert_allclose(sc.score(x, t), direct, rtol=1e-9, atol=1e-12)
    # between grid times: the documented interpolation of the noise predictions sqrt(Delta) S, linear in log t
    t = 0.4
    w = (math.log(t) - math.log(0.2)) / (math.log(1.0) - math.log(0.2))
    dl = lambda s: -math.expm1(-2 * s)
    s1, s2 = sc.score(x, 0.2), sc.score(x, 1.0)
    expect = ((1 - w) * math.sqrt(dl(0.2)) * s1 + w * math.sqrt(dl(1.0)) * s2) / math.sqrt(dl(t))
    np.testing.assert_allclose(sc.score(x, t), expect, rtol=1e-12)
    near = RandomFeaturesScore(f, times, sc.weights, scheme="nearest")
    np.testing.assert_allclose(near.score(x, 0.3), s1, rtol=1e-12)   # log 0.3 is nearer log 0.2 than log 1
    np.testing.assert_allclose(near.score(x, 10.0), s2, rtol=1e-12)  # beyond the grid: the last time


def test_rf_score_error_against_monte_carlo():
    """The score error of the source, measured by Monte Carlo over y ~ P_t, equals the closed form of
    GradientFlow.score_error (an independent computation from U~, Y)."""
    from rfdm import population_statistics

    d, t, tau = 8, 0.3, 200.0
    law = GaussianData(d, eigenvalues=(0.5, 2.0))
    X = law.sample(40, np.random.default_rng(0))
    f = RandomFeatures.sample(d, 64, "tanh", 1)
    sc = RandomFeaturesScore.train(f, X, [t], tau=tau, rtol=1e-10)
    closed = float(GradientFlow(noise_averaged_statistics(f, X, t), population_statistics(f, law, t)).score_error(tau)[0])
    rng = np.random.default_rng(5)
    n = 200000
    y = rng.standard_normal((n, d)) @ law.sqrt_covariance_t(t)
    err = np.sum((sc.score(y, t) - law.score(y, t)) ** 2, axis=1) / d
    # Monte Carlo standard error from the sample itself; 5 of them
    assert abs(err.mean() - closed) < 5 * err.std() / math.sqrt(n)


def test_train_random_features_many_taus_share_the_training():
    law = GaussianData(4)
    X = law.sample(8, np.random.default_rng(0))
    f = RandomFeatures.sample(4, 32, "tanh", 1)
    many = train_random_features(f, X, [0.1, 1.0], [1.0, math.inf])
    one = RandomFeaturesScore.train(f, X, [0.1, 1.0], tau=math.inf)
    np.testing.assert_allclose(many[1].weights, one.weights, rtol=1e-12)
    assert many[0].tau == 1.0 and not np.allclose(many[0].weights, many[1].weights)


@pytest.mark.parametrize("kwargs,match", [
    (dict(steps=0), "steps must be a positive integer"),
    (dict(steps=-3), "steps must be a positive integer"),
    (dict(T=0.01, t_min=0.01), "must be larger than t_min"),
    (dict(T=0.005, t_min=0.01), "must be larger than t_min"),
    (dict(t_min=0.0), "t_min must be > 0"),
    (dict(grid="cosine"), "time grid must be one of"),
    (dict(integrator="rk4"), "integrator must be one of"),
    (dict(seed=-1), "seed must be"),
])
def test_bad_sampler_input(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        sample(ExactScore(GaussianData(2)), 3, **kwargs)


def test_bad_score_source_and_shapes():
    with pytest.raises(InvalidParameterError):
        sample(object(), 3)
    with pytest.raises(InvalidParameterError, match="x_init must have shape"):
        sample(ExactScore(GaussianData(2)), 3, x_init=np.zeros((2, 2)))
    with pytest.raises(InvalidParameterError, match="not on the time grid"):
        sample(ExactScore(GaussianData(2)), 3, times=[1.0, 0.5, 0.1], record_times=[0.3])
    with pytest.raises(InvalidParameterError, match="strictly decreasing"):
        sample(ExactScore(GaussianData(2)), 3, times=[0.1, 0.5])
    from rfdm import NumericalError

    with pytest.raises(NumericalError, match="diverged"):
        sample(CallableScore(lambda x, t: np.full_like(x, np.nan), 2), 3, steps=5)


def test_progress_is_reported():
    calls = []
    sample(ExactScore(GaussianData(2)), 10, steps=20, batch_size=4, progress=lambda a, b: calls.append((a, b)))
    assert calls[-1] == (200, 200) and all(b == 200 for _, b in calls)
    assert [a for a, _ in calls] == sorted(a for a, _ in calls)


@pytest.mark.slow
def test_two_regimes_of_random_features_scores():
    """The talk's claim at the default size (d = 32, p = 512, n = 1024, tanh, tau = inf): with |m| = 2 the
    samples along m are closer (W_2) to the Gaussian with the data covariance than to the mixture, with
    |m| = 2 sqrt(d) closer to the mixture, with balanced modes (4 binomial s.e. = 0.045 at 2000 samples) whose
    means are within 10 % of +-|m| e^{-t_min}."""
    from rfdm.experiments.sampling import TwoRegimesConfig, compute_two_regimes

    res = compute_two_regimes(TwoRegimesConfig())
    norm, tilde = res["regimes"]["norm"]["summary"], res["regimes"]["tilde"]["summary"]
    assert norm["closer_to"] == "gaussian" and tilde["closer_to"] == "mixture"
    assert abs(tilde["mode_fractions"][0] - 0.5) < 0.045
    mu = tilde["mu_t_min"]
    assert tilde["mean_along_m"][0] == pytest.approx(mu, rel=0.1)
    assert tilde["mean_along_m"][1] == pytest.approx(-mu, rel=0.1)
    # one Gaussian split at 0: per-mode mean^2/var = (2/pi)/(1 - 2/pi) = 1.75; two separated modes: >> 1
    assert norm["mean_along_m"][0] ** 2 / norm["var_along_m"][0] < 3.0
    assert tilde["mean_along_m"][0] ** 2 / tilde["var_along_m"][0] > 10.0


@pytest.mark.slow
def test_memorization_rises_after_tau_mem():
    """Default memorization study (d = 8, p = 1024, n = 16): no memorization up to tau_gen, memorization after
    tau_mem (f_mem at tau = inf with its bootstrap interval above 0.15), never more than the empirical score,
    which memorizes (> 0.9); the exact score does not (< 0.02)."""
    from rfdm.experiments.sampling import MemorizationConfig, compute_memorization

    res = compute_memorization(MemorizationConfig())
    tau, f, ci = res["tau"], res["f_mem"], res["f_mem_ci"]
    ts = res["timescales"]
    assert res["references"]["empirical"]["f_mem"] > 0.9 and res["references"]["exact"]["f_mem"] < 0.02
    assert np.all(f[tau <= ts["tau_gen_theory"]] <= 0.01)
    late = tau >= 10 * ts["tau_mem_theory"]
    assert np.all(ci[late, 0] > 0.05) and ci[-1, 0] > 0.15
    assert f[-1] < res["references"]["empirical"]["f_mem"]
    # the rise: f_mem after tau_mem exceeds f_mem before tau_gen by more than the intervals
    assert ci[late, 0].min() > ci[tau <= ts["tau_gen_theory"], 1].max()


# -- the final denoising step (issue 12, item 4) ------------------------------------------------------------
def test_tweedie_matches_the_exact_gaussian_posterior_mean():
    """For Gaussian data N(0, diag(lambda)) and x_t = e^{-t} x_0 + sqrt(Delta_t) xi, the posterior mean is
    E[x_0 | x_t] = e^{-t} lambda/(e^{-2t} lambda + Delta_t) x_t per coordinate (Gaussian conditioning, written
    here from the eigenvalues, not from the library's covariance); Tweedie's formula with the exact score must
    give it to rounding.  And sample() ends with exactly this step on its noisy states."""
    from rfdm.sampling import tweedie_denoise

    lam = np.array([0.3, 1.0, 2.0])
    law = GaussianData(3, eigenvalues=tuple(lam))
    x = np.random.default_rng(0).standard_normal((50, 3)) * 2
    for t in (0.001, 0.05, 0.7):
        dt = -math.expm1(-2 * t)
        exact = math.exp(-t) * lam / (math.exp(-2 * t) * lam + dt) * x
        np.testing.assert_allclose(tweedie_denoise(ExactScore(law), x, t), exact, rtol=1e-12, atol=1e-13)
    run = sample(ExactScore(law), 40, steps=30, seed=3, t_min=0.05)
    np.testing.assert_allclose(run.samples, tweedie_denoise(ExactScore(law), run.noisy_samples, 0.05), rtol=1e-13)
    assert run.info["denoised"] is True
    raw = sample(ExactScore(law), 40, steps=30, seed=3, t_min=0.05, denoise=False)
    np.testing.assert_array_equal(raw.samples, run.noisy_samples)
    assert raw.info["denoised"] is False
    with pytest.raises(InvalidParameterError):
        sample(ExactScore(law), 4, steps=3, denoise="yes")


def test_memorization_fraction_of_denoised_samples_does_not_read_the_leftover_noise():
    """The exact empirical score of 200 of scikit-learn's digits (standardised) memorizes: every sample
    collapses onto a training point.  Measured on x_{t_min} the criterion d_1/d_2 < 1/3 reads the leftover
    noise sqrt(Delta_{t_min} d) instead (f_mem 0.4 at t_min = 0.01 against 1.0 at 0.001: the test on main,
    which has no final denoising step, fails here); on the denoised samples f_mem is the same (1.0) at both
    t_min.  Tolerance: the two fractions of 200 samples agree within 3 binomial standard errors of their
    difference (at most 0.15, and f_mem >= 0.95)."""
    from sklearn.datasets import load_digits

    X = load_digits().data[:200].astype(np.float64)
    X = (X - X.mean(axis=0)) / X.std()
    f = {}
    for t_min in (0.01, 0.001):
        run = sample(EmpiricalScore(X), 200, T=4.0, t_min=t_min, steps=150, grid="log-snr", seed=3)
        f[t_min] = memorization_fraction(run.samples, X).fraction
        f[("raw", t_min)] = memorization_fraction(run.noisy_samples, X).fraction
    p = 0.5 * (f[0.01] + f[0.001])
    se = math.sqrt(max(p * (1 - p), 0.25 / 200) * 2 / 200)
    assert abs(f[0.01] - f[0.001]) <= 3 * se
    assert min(f[0.01], f[0.001]) >= 0.95
    # the undenoised reading does depend on the leftover noise (the defect)
    assert f[("raw", 0.001)] - f[("raw", 0.01)] > 0.3
