"""Tests of rfdm.features: exact noise-averaged and population statistics of random features (THEORY §2).

Every check compares the library with an independent computation: a Monte Carlo loop written here
(tolerances from the per-entry standard errors of the same samples), one-dimensional quadrature with
scipy, or a closed form (linear activation; arcsine kernel for erf; arc-cosine kernel for ReLU).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.polynomial.hermite_e import hermegauss
from scipy import integrate
from scipy.special import erf as sp_erf
from scipy.special import ndtr

from rfdm.data import GaussianData
from rfdm.errors import InvalidParameterError
from rfdm.features import (RandomFeatures, monte_carlo_statistics, noise_averaged_statistics,
                           population_statistics)

# ---------------------------------------------------------------------------------------------------
# Independent reference implementations (numpy / scipy only, nothing from rfdm)
# ---------------------------------------------------------------------------------------------------

SIGMA = {
    "tanh": np.tanh,
    "erf": sp_erf,
    "relu": lambda x: np.maximum(x, 0.0),
}

# The default rtol for every activation.  (ReLU's Hermite tail decays only algebraically: at these small
# d, largest feature cosine ~0.86, the library reaches 1e-10 only by integrating the most correlated
# pairs directly, so these tests exercise that path too.)
RTOL = {"tanh": 1e-10, "erf": 1e-10, "relu": 1e-10}


def delta(t):
    return 1.0 - math.exp(-2.0 * t)


def mc_noise_moments(W, sigma, X, t, m, seed, chunk=1000):
    """Monte Carlo U, V with m noise draws per point, plus the per-entry standard errors.

    Draw j gives Z_j = (1/n) sum_nu phi_nu phi_nu^T (independent noise for each nu); the Z_j are i.i.d.
    with mean U, so U_mc = mean_j Z_j and SE = std_j(Z_j)/sqrt(m).  Same for V with phi xi^T.
    """
    rng = np.random.default_rng(seed)
    n, d = X.shape
    p = W.shape[0]
    a, sq = math.exp(-t), math.sqrt(delta(t))
    sU = np.zeros((p, p))
    sU2 = np.zeros((p, p))
    sV = np.zeros((p, d))
    sV2 = np.zeros((p, d))
    done = 0
    while done < m:
        b = min(chunk, m - done)
        xi = rng.standard_normal((b, n, d))
        phi = sigma(((a * X)[None] + sq * xi) @ W.T / math.sqrt(d))  # (b, n, p)
        phiT = phi.transpose(0, 2, 1)
        Z = phiT @ phi / n
        ZV = phiT @ xi / n
        sU += Z.sum(0)
        sU2 += (Z * Z).sum(0)
        sV += ZV.sum(0)
        sV2 += (ZV * ZV).sum(0)
        done += b
    U, V = sU / m, sV / m
    seU = np.sqrt(np.maximum(sU2 / m - U * U, 0.0) * m / (m - 1) / m)
    seV = np.sqrt(np.maximum(sV2 / m - V * V, 0.0) * m / (m - 1) / m)
    return U, V, seU, seV


def assert_within_se(est, ref, se, name, k_entry=5.0, k_frob=2.0):
    """Entrywise |est - ref| <= k_entry SE (5 SE: false-alarm rate ~6e-7 per entry, ~1e-3 for a
    40x40 matrix), and ||est - ref||_F <= k_frob sqrt(sum SE^2) (the expected size of the Frobenius
    error is sqrt(sum SE^2); a factor 2 covers its fluctuation with correlated entries)."""
    diff = np.abs(est - ref)
    worst = np.max(diff / se)
    assert worst <= k_entry, f"{name}: max |diff|/SE = {worst:.2f}"
    frob, expected = np.linalg.norm(est - ref), math.sqrt(np.sum(se ** 2))
    assert frob <= k_frob * expected, f"{name}: ||diff||_F = {frob:.3g} vs expected {expected:.3g}"


def setup_case(act, d=12, p=40, n=16, seed=1):
    feats = RandomFeatures.sample(d, p, act, rng=seed)
    X = GaussianData(d).sample(n, np.random.default_rng(seed + 100))
    return feats, X


def gaussian_moments_1d(f, m, s):
    """E f(m + s z), z ~ N(0,1), by adaptive quadrature."""
    val, _ = integrate.quad(lambda z: f(m + s * z) * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi),
                            -np.inf, np.inf, epsabs=1e-14, epsrel=1e-13, limit=200)
    return val


_GH_Z, _GH_W = hermegauss(160)
_GH_W = _GH_W / math.sqrt(2 * math.pi)


def inner_mean(act, mu, sd):
    """E_w sigma(mu + sd w): closed forms for erf and ReLU, 160-node Gauss-Hermite for tanh."""
    if act == "erf":
        return sp_erf(mu / math.sqrt(1.0 + 2.0 * sd * sd))
    if act == "relu":
        u = mu / sd
        return mu * ndtr(u) + sd * math.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
    return float(_GH_W @ np.tanh(mu + sd * _GH_Z))


def pair_moment(act, mi, si, mj, sj, rho):
    """E[sigma(h_i) sigma(h_j)] for (h_i, h_j) Gaussian, means mi, mj, stds si, sj, correlation rho:
    h_i = mi + si z, h_j | z ~ N(mj + sj rho z, sj^2 (1 - rho^2)); outer integral over z by quad."""
    sd = sj * math.sqrt(1.0 - rho * rho)
    sig = SIGMA[act]

    def integrand(z):
        return (float(sig(mi + si * z)) * inner_mean(act, mj + sj * rho * z, sd)
                * math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi))

    lo = -mi / si if act == "relu" else -np.inf
    val, _ = integrate.quad(integrand, lo, np.inf, epsabs=1e-14, epsrel=1e-12, limit=200)
    return val


# ---------------------------------------------------------------------------------------------------
# 1. Exact noise averages against Monte Carlo
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("act", ["tanh", "erf", "relu"])
@pytest.mark.parametrize("t", [0.01, 0.3, 1.5])
def test_noise_averaged_statistics_vs_monte_carlo(act, t):
    feats, X = setup_case(act)
    stats = noise_averaged_statistics(feats, X, t, rtol=RTOL[act])
    assert stats.U.shape == (40, 40) and stats.V.shape == (40, 12) and stats.n == 16
    assert stats.n_draws is None
    U_mc, V_mc, seU, seV = mc_noise_moments(feats.W, SIGMA[act], X, t, m=20000, seed=7)
    assert_within_se(stats.U, U_mc, seU, f"U[{act}, t={t}]")
    assert_within_se(stats.V, V_mc, seV, f"V[{act}, t={t}]")
    # The check has power: the MC error is well below the noise-dependent part of U (U minus the
    # noiseless second moment of sigma(e^{-t} W x/sqrt(d))), which is ~1% of U at t = 0.01.
    phi0 = SIGMA[act](math.exp(-t) * X @ feats.W.T / math.sqrt(X.shape[1]))
    noise_part = np.linalg.norm(stats.U - phi0.T @ phi0 / len(X))
    assert np.sqrt(np.sum(seU ** 2)) < 0.2 * noise_part


@pytest.mark.slow
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_noise_averaged_statistics_vs_monte_carlo_moderate_size(act):
    """Moderate size (d = 48, p = 128, n = 32, t = 0.1), same SE-based criterion."""
    d, p, n, t = 48, 128, 32, 0.1
    feats, X = setup_case(act, d=d, p=p, n=n, seed=5)
    stats = noise_averaged_statistics(feats, X, t)
    U_mc, V_mc, seU, seV = mc_noise_moments(feats.W, SIGMA[act], X, t, m=4000, seed=9, chunk=200)
    assert_within_se(stats.U, U_mc, seU, f"U[{act}] moderate")
    assert_within_se(stats.V, V_mc, seV, f"V[{act}] moderate")


@pytest.mark.parametrize("act", ["tanh", "erf", "relu"])
@pytest.mark.parametrize("t", [0.3, 1.5])
def test_noise_averaged_entries_vs_quadrature(act, t):
    """Diagonal, a few off-diagonal entries of U and all of V against adaptive 1-D quadrature
    (the second Gaussian direction integrated in closed form, or by 160-node Gauss-Hermite for tanh).
    Tolerance: the library's own truncation bound (a Frobenius bound, so also an entry bound) plus
    1e-9 for quadrature of both sides."""
    feats, X = setup_case(act, n=6)
    stats = noise_averaged_statistics(feats, X, t, rtol=RTOL[act])
    W = feats.W
    d = W.shape[1]
    dt = delta(t)
    norms = np.linalg.norm(W, axis=1)
    s = math.sqrt(dt / d) * norms
    rho = (W @ W.T) / np.outer(norms, norms)
    means = math.exp(-t) * X @ W.T / math.sqrt(d)  # (n, p)
    tol = stats.info["truncation_bound"] + 1e-9
    sig = SIGMA[act]
    # diagonal: E sigma(h_i)^2
    for i in range(0, 40, 7):
        ref = np.mean([gaussian_moments_1d(lambda x: sig(x) ** 2, means[nu, i], s[i]) for nu in range(len(X))])
        assert abs(stats.U[i, i] - ref) <= 1e-9, (i, stats.U[i, i], ref)
    # off-diagonal pairs, including the most correlated pair
    off = np.abs(rho - np.eye(40))
    imax, jmax = np.unravel_index(np.argmax(off), off.shape)
    for i, j in [(0, 1), (3, 17), (25, 39), (imax, jmax)]:
        ref = np.mean([pair_moment(act, means[nu, i], s[i], means[nu, j], s[j], rho[i, j])
                       for nu in range(len(X))])
        assert abs(stats.U[i, j] - ref) <= tol, (act, t, i, j, stats.U[i, j], ref)
        assert stats.U[i, j] == stats.U[j, i]
    # V = sqrt(Delta/d) diag(mean E sigma'(h)) W (Stein); E sigma' computed independently.
    if act == "relu":
        dmean = np.mean(ndtr(means / s), axis=0)
    elif act == "erf":
        dmean = np.mean((2 / math.sqrt(math.pi)) * np.exp(-means ** 2 / (1 + 2 * s ** 2))
                        / np.sqrt(1 + 2 * s ** 2), axis=0)
    else:
        dmean = np.mean((1 - np.tanh(means[..., None] + s[None, :, None] * _GH_Z) ** 2) @ _GH_W, axis=0)
    np.testing.assert_allclose(stats.V, math.sqrt(dt / d) * dmean[:, None] * W, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_monte_carlo_statistics(act):
    """monte_carlo_statistics (i) reproduces exactly the estimator computed here from the same noise
    stream, (ii) agrees with the exact average within 5 SE (SE from an independent MC run with the same m)."""
    t, m = 0.3, 400
    feats, X = setup_case(act)
    n, d = X.shape
    mc = monte_carlo_statistics(feats, X, t, m, rng=np.random.default_rng(11))
    assert mc.n_draws == m and mc.n == n
    # (i) the library draws, for each of the m rounds, one (n, d) block of noise (n <= batch_size)
    rng = np.random.default_rng(11)
    xi = np.stack([rng.standard_normal((n, d)) for _ in range(m)])
    phi = SIGMA[act]((math.exp(-t) * X[None] + math.sqrt(delta(t)) * xi) @ feats.W.T / math.sqrt(d))
    phi = phi.reshape(m * n, -1)
    np.testing.assert_allclose(mc.U, phi.T @ phi / (m * n), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(mc.V, phi.T @ xi.reshape(m * n, d) / (m * n), rtol=1e-12, atol=1e-14)
    # (ii) against the exact average
    exact = noise_averaged_statistics(feats, X, t, rtol=RTOL[act])
    _, _, seU, seV = mc_noise_moments(feats.W, SIGMA[act], X, t, m=m, seed=12)
    assert_within_se(mc.U, exact.U, seU, "MC U")
    assert_within_se(mc.V, exact.V, seV, "MC V")
    # a batch size smaller than n changes the draw layout but not the estimator's law; check one case
    mc2 = monte_carlo_statistics(feats, X, t, 1, rng=3, batch_size=5)
    rng = np.random.default_rng(3)
    xi2 = np.concatenate([rng.standard_normal((min(5, n - s0), d)) for s0 in range(0, n, 5)])
    phi2 = SIGMA[act]((math.exp(-t) * X + math.sqrt(delta(t)) * xi2) @ feats.W.T / math.sqrt(d))
    np.testing.assert_allclose(mc2.U, phi2.T @ phi2 / n, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------------------------------
# 2. Exact checks without Monte Carlo: closed forms
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("t", [0.01, 0.3, 1.5])
def test_linear_activation_closed_form(t):
    d, p, n = 10, 30, 14
    feats, X = setup_case("linear", d=d, p=p, n=n)
    W = feats.W
    stats = noise_averaged_statistics(feats, X, t)
    dt = delta(t)
    U_ref = math.exp(-2 * t) * W @ X.T @ X @ W.T / (n * d) + dt * W @ W.T / d
    # the series is exact at order 1 for a linear sigma: only rounding errors (~1e-15 relative)
    np.testing.assert_allclose(stats.U, U_ref, rtol=1e-11, atol=1e-12 * np.abs(U_ref).max())
    np.testing.assert_allclose(stats.V, math.sqrt(dt / d) * W, rtol=1e-12, atol=0)


def arcsine_kernel(C):
    dg = 1.0 + 2.0 * np.diag(C)
    arg = 2.0 * C / np.sqrt(np.outer(dg, dg))
    return (2.0 / math.pi) * np.arcsin(np.clip(arg, -1.0, 1.0))


def arccos_kernel(C):
    sd = np.sqrt(np.diag(C))
    cos = np.clip(C / np.outer(sd, sd), -1.0, 1.0)
    theta = np.arccos(cos)
    return np.outer(sd, sd) / (2 * math.pi) * (np.sin(theta) + (math.pi - theta) * cos)


LAWS = {
    "isotropic": lambda d: GaussianData(d),
    "anisotropic": lambda d: GaussianData(d, eigenvalues=(0.5, 2.0), rotation="random", seed=5),
}


def sigma_t_independent(law, t):
    """Sigma_t = e^{-2t} Sigma + Delta_t I, with Sigma rebuilt from the law's eigen-decomposition and
    checked against its defining spectrum (half the directions 0.5, half 2.0 for the anisotropic law)."""
    S = law.covariance()
    ev = np.sort(np.linalg.eigvalsh(S))
    expect = np.sort(np.repeat(law.eigenvalues, law.d // len(law.eigenvalues))) * law.variance
    np.testing.assert_allclose(ev, expect, rtol=1e-12)
    return math.exp(-2 * t) * S + delta(t) * np.eye(law.d)


@pytest.mark.parametrize("lawname", ["isotropic", "anisotropic"])
@pytest.mark.parametrize("t", [0.01, 0.3, 1.5])
def test_population_erf_arcsine(lawname, t):
    d, p = 16, 40
    law = LAWS[lawname](d)
    if lawname == "anisotropic":
        assert np.abs(law.covariance() - np.diag(np.diag(law.covariance()))).max() > 0.1  # really rotated
    feats = RandomFeatures.sample(d, p, "erf", rng=3)
    pop = population_statistics(feats, law, t)
    C = feats.W @ sigma_t_independent(law, t) @ feats.W.T / d
    U_ref = arcsine_kernel(C)
    err = np.linalg.norm(pop.U - U_ref)
    # truncation bound (<= rtol ||diag U||) plus quadrature/rounding (1e-12 per entry)
    assert err <= pop.info["truncation_bound"] + 1e-12 * p, (err, pop.info["truncation_bound"])
    assert err <= 1e-9 * np.linalg.norm(U_ref)
    # V~ = sqrt(Delta) Y, Y = diag(E erf'(h~)) W/sqrt(d), E erf'(h) = (2/sqrt(pi)) / sqrt(1 + 2 C_ii)
    dmean = 2 / math.sqrt(math.pi) / np.sqrt(1 + 2 * np.diag(C))
    np.testing.assert_allclose(pop.Y, dmean[:, None] * feats.W / math.sqrt(d), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(pop.V, math.sqrt(delta(t)) * pop.Y, rtol=1e-14, atol=0)
    np.testing.assert_allclose(pop.score_norm, np.trace(np.linalg.inv(sigma_t_independent(law, t))),
                               rtol=1e-12)


@pytest.mark.parametrize("lawname", ["isotropic", "anisotropic"])
@pytest.mark.parametrize("t", [0.01, 1.5])
def test_population_relu_arccosine(lawname, t):
    d, p = 24, 40
    law = LAWS[lawname](d)
    feats = RandomFeatures.sample(d, p, "relu", rng=4)
    pop = population_statistics(feats, law, t, rtol=1e-8)
    C = feats.W @ sigma_t_independent(law, t) @ feats.W.T / d
    U_ref = arccos_kernel(C)
    err = np.linalg.norm(pop.U - U_ref)
    assert err <= pop.info["truncation_bound"] + 1e-12 * p, (err, pop.info["truncation_bound"])
    assert err <= 1e-8 * np.linalg.norm(U_ref) * 2
    # E relu'(h) = P(h > 0) = 1/2 at zero mean
    np.testing.assert_allclose(pop.Y, 0.5 * feats.W / math.sqrt(d), rtol=1e-12, atol=0)


@pytest.mark.parametrize("act", ["erf", "relu"])
@pytest.mark.parametrize("lawname", ["isotropic", "anisotropic"])
@pytest.mark.parametrize("t", [0.3, 1.5])
def test_population_direct_pairs_small_d(act, lawname, t):
    """At d = 8 (feature cosines up to ~0.9) the series alone cannot reach rtol = 1e-10 by order 40 and
    the library integrates the most correlated pairs directly: those entries, and the whole matrix,
    against the arcsine / arc-cosine closed forms."""
    d, p = 8, 30
    law = LAWS[lawname](d)
    feats = RandomFeatures.sample(d, p, act, rng=1)
    pop = population_statistics(feats, law, t)
    C = feats.W @ sigma_t_independent(law, t) @ feats.W.T / d
    U_ref = arcsine_kernel(C) if act == "erf" else arccos_kernel(C)
    sd = np.sqrt(np.diag(C))
    rho = np.abs(C / np.outer(sd, sd)) - np.eye(p)
    cut = pop.info["direct_pair_cut"]
    strong = rho > cut
    assert pop.info["direct_pairs"] == np.sum(strong) // 2 > 0  # the path is exercised
    # direct 2-D quadrature: ~1e-13 absolute on O(1) entries; 1e-11 leaves margin
    np.testing.assert_allclose(pop.U[strong], U_ref[strong], rtol=0, atol=1e-11)
    err = np.linalg.norm(pop.U - U_ref)
    assert err <= pop.info["truncation_bound"] + 1e-11 * p, (err, pop.info["truncation_bound"])


@pytest.mark.parametrize("act,t", [("tanh", 1.5), ("erf", 1.5), ("relu", 0.3), ("relu", 1.5)])
def test_noise_averaged_direct_pairs_small_d(act, t):
    """Same with data (nonzero means): every directly integrated pair against the 1-D quadrature
    reference of this file (1e-9), and the diagonal too."""
    d, p, n = 8, 30, 5
    feats, X = setup_case(act, d=d, p=p, n=n)
    stats = noise_averaged_statistics(feats, X, t)
    assert stats.info["direct_pairs"] > 0
    W = feats.W
    norms = np.linalg.norm(W, axis=1)
    s = math.sqrt(delta(t) / d) * norms
    rho = (W @ W.T) / np.outer(norms, norms)
    means = math.exp(-t) * X @ W.T / math.sqrt(d)
    I, J = np.nonzero(np.triu(np.abs(rho), 1) > stats.info["direct_pair_cut"])
    assert I.size == stats.info["direct_pairs"]
    for i, j in zip(I, J):
        ref = np.mean([pair_moment(act, means[nu, i], s[i], means[nu, j], s[j], rho[i, j]) for nu in range(n)])
        assert abs(stats.U[i, j] - ref) <= 1e-9, (act, t, i, j, stats.U[i, j], ref)
        assert stats.U[j, i] == stats.U[i, j]


# ---------------------------------------------------------------------------------------------------
# 3. The truncation bound is honest
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("lawname", ["isotropic", "anisotropic"])
@pytest.mark.parametrize("rtol", [1e-2, 1e-4, 1e-7])
def test_truncation_bound_honest_erf(lawname, rtol):
    """Against the arcsine closed form: ||U_rtol - U_exact||_F <= reported bound <= rtol ||diag U||."""
    d, p, t = 16, 40, 0.3
    law = LAWS[lawname](d)
    feats = RandomFeatures.sample(d, p, "erf", rng=3)
    pop = population_statistics(feats, law, t, rtol=rtol)
    U_ref = arcsine_kernel(feats.W @ sigma_t_independent(law, t) @ feats.W.T / d)
    err = np.linalg.norm(pop.U - U_ref)
    bound = pop.info["truncation_bound"]
    assert err <= bound + 1e-12 * p, (err, bound)
    assert bound <= rtol * np.linalg.norm(np.diag(pop.U)) * (1 + 1e-12)
    # not vacuous: the loose result is really truncated (error well above rounding)
    if rtol >= 1e-4:
        assert err > 1e-10


@pytest.mark.parametrize("act", ["relu"])
def test_truncation_bound_honest_relu(act):
    d, p, t = 24, 40, 0.3
    law = LAWS["anisotropic"](d)
    feats = RandomFeatures.sample(d, p, act, rng=4)
    U_ref = arccos_kernel(feats.W @ sigma_t_independent(law, t) @ feats.W.T / d)
    for rtol in (1e-2, 1e-3, 1e-5):
        pop = population_statistics(feats, law, t, rtol=rtol)
        err = np.linalg.norm(pop.U - U_ref)
        assert err <= pop.info["truncation_bound"] + 1e-12 * p, (rtol, err, pop.info["truncation_bound"])
        assert err > 1e-9  # really truncated


@pytest.mark.parametrize("act", ["tanh", "erf", "relu"])
@pytest.mark.parametrize("t", [0.3, 1.5])
def test_truncation_bound_honest_noise_averaged(act, t):
    """With data (nonzero means): the loose result is within its bound of a tight reference (whose own
    bound is added, since the reference is itself truncated)."""
    feats, X = setup_case(act, d=16)
    tight_rtol = 1e-13 if act != "relu" else 1e-7
    ref = noise_averaged_statistics(feats, X, t, rtol=tight_rtol)
    for rtol in (1e-2, 1e-4):
        loose = noise_averaged_statistics(feats, X, t, rtol=rtol)
        err = np.linalg.norm(loose.U - ref.U)
        allowed = loose.info["truncation_bound"] + ref.info["truncation_bound"] + 1e-12 * 40
        assert err <= allowed, (act, t, rtol, err, allowed)
        assert loose.info["truncation_order"] <= ref.info["truncation_order"]
        np.testing.assert_allclose(loose.V, ref.V, rtol=1e-12)  # V is exact at any order


# ---------------------------------------------------------------------------------------------------
# 4. Batching invariance
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("act", ["tanh", "erf", "relu"])
def test_batching_invariance(act, monkeypatch):
    """memory_budget=1 is raised to the floor of p^2 doubles: that gives row blocks of p/4 rows and data
    batches of a few points in pass 2 (vs one block and one batch by default); a CHUNK_BYTES of one double
    splits the NumPy 1-D expectations of both passes pair by pair (by default whole batches of rows at once).
    The sums are the same up to rounding, so 1e-12 relative.  The batching is observed by wrapping the block
    and chunk iterators (test-side instrumentation only)."""
    import rfdm.features as F
    feats, X = setup_case(act, d=16, n=20)
    t = 0.3
    record = {"rows": [], "chunks": []}
    orig_blocks, orig_chunks = F._row_blocks, F._chunks

    def blocks(p, rows):
        record["rows"].append(rows)
        return orig_blocks(p, rows)

    def chunks(n, p, per_pair):
        for r, c in orig_chunks(n, p, per_pair):
            record["chunks"].append((r.stop - r.start, c.stop - c.start))
            yield r, c

    monkeypatch.setattr(F, "_row_blocks", blocks)
    monkeypatch.setattr(F, "_chunks", chunks)
    a = noise_averaged_statistics(feats, X, t, rtol=RTOL[act])
    assert set(record["rows"]) == {40}  # one block
    assert (20, 40) in record["chunks"]  # one chunk: all 20 points x 40 features at once
    record = {"rows": [], "chunks": []}
    monkeypatch.setattr(F, "CHUNK_BYTES", 8)  # one (point, feature) pair per chunk
    b = noise_averaged_statistics(feats, X, t, rtol=RTOL[act], memory_budget=1)
    assert max(record["rows"]) <= 10  # >= 4 row blocks
    assert set(record["chunks"]) == {(1, 1)}  # pair by pair
    monkeypatch.undo()
    c = noise_averaged_statistics(feats, X, t, rtol=RTOL[act], memory_budget=8 * 40 * 40 * 3)
    for other in (b, c):
        assert other.info["truncation_order"] == a.info["truncation_order"]
        assert np.linalg.norm(other.U - a.U) <= 1e-12 * np.linalg.norm(a.U)
        np.testing.assert_allclose(other.V, a.V, rtol=1e-13)
        assert np.array_equal(other.U, other.U.T)
    law = LAWS["anisotropic"](16)
    pa = population_statistics(feats, law, t, rtol=RTOL[act])
    pb = population_statistics(feats, law, t, rtol=RTOL[act], memory_budget=1)
    assert np.linalg.norm(pb.U - pa.U) <= 1e-12 * np.linalg.norm(pa.U)


# ---------------------------------------------------------------------------------------------------
# 5. Population statistics against Monte Carlo over y ~ P_t
# ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("act,lawname", [("tanh", "anisotropic"), ("relu", "isotropic"),
                                         ("relu", "anisotropic"), ("erf", "anisotropic")])
@pytest.mark.parametrize("t", [0.05, 1.0])
def test_population_vs_monte_carlo(act, lawname, t):
    d, p = 16, 32
    law = LAWS[lawname](d)
    feats = RandomFeatures.sample(d, p, act, rng=8)
    pop = population_statistics(feats, law, t, rtol=RTOL[act])
    sig = SIGMA[act]
    W = feats.W
    rng = np.random.default_rng(21)
    N, chunk = 100_000, 10_000
    Sigma = law.covariance()
    Lx = np.linalg.cholesky(Sigma)
    Sig_t = sigma_t_independent(law, t)
    Sig_t_inv = np.linalg.inv(Sig_t)
    a, sq = math.exp(-t), math.sqrt(delta(t))
    acc = {k: [np.zeros(s), np.zeros(s)] for k, s in (("U", (p, p)), ("V", (p, d)), ("Y", (p, d)))}
    for _ in range(N // chunk):
        x = rng.standard_normal((chunk, d)) @ Lx.T  # x ~ N(0, Sigma)
        xi = rng.standard_normal((chunk, d))
        y = a * x + sq * xi  # y ~ P_t
        phi = sig(y @ W.T / math.sqrt(d))
        z = y @ Sig_t_inv
        for key, (lhs, rhs) in (("U", (phi, phi)), ("V", (phi, xi)), ("Y", (phi, z))):
            acc[key][0] += lhs.T @ rhs
            acc[key][1] += (lhs ** 2).T @ (rhs ** 2)
    for key, ref in (("U", pop.U), ("V", pop.V), ("Y", pop.Y)):
        mean = acc[key][0] / N
        se = np.sqrt((acc[key][1] / N - mean ** 2) / (N - 1))
        assert_within_se(mean, ref, se, f"{key}~[{act}, {lawname}, t={t}]")
    # E|S(y)|^2 = Tr Sigma_t^{-1}: against its own closed form from the independently built Sigma_t
    assert pop.score_norm == pytest.approx(np.trace(Sig_t_inv), rel=1e-12)


# ---------------------------------------------------------------------------------------------------
# 6. Bad input
# ---------------------------------------------------------------------------------------------------

def test_bad_input_raises():
    feats, X = setup_case("tanh", d=8, p=12, n=5)
    law = GaussianData(8)
    with pytest.raises(InvalidParameterError):
        noise_averaged_statistics(feats, X[:, :7], 0.3)  # wrong number of columns
    with pytest.raises(InvalidParameterError):
        monte_carlo_statistics(feats, np.ones((5, 9)), 0.3, 4, rng=0)
    Xnan = X.copy()
    Xnan[2, 3] = np.nan
    with pytest.raises(InvalidParameterError):
        noise_averaged_statistics(feats, Xnan, 0.3)
    with pytest.raises(InvalidParameterError):
        monte_carlo_statistics(feats, Xnan, 0.3, 4, rng=0)
    Xinf = X.copy()
    Xinf[0, 0] = np.inf
    with pytest.raises(InvalidParameterError):
        noise_averaged_statistics(feats, Xinf, 0.3)
    with pytest.raises(InvalidParameterError):
        noise_averaged_statistics(feats, X[0], 0.3)  # 1-D array
    for bad_t in (0.0, -0.5, np.nan, np.inf):
        with pytest.raises(InvalidParameterError):
            noise_averaged_statistics(feats, X, bad_t)
        with pytest.raises(InvalidParameterError):
            monte_carlo_statistics(feats, X, bad_t, 4, rng=0)
        with pytest.raises(InvalidParameterError):
            population_statistics(feats, law, bad_t)
    for bad_m in (0, -3, 2.5):
        with pytest.raises(InvalidParameterError):
            monte_carlo_statistics(feats, X, 0.3, bad_m, rng=0)
    for d, p in ((0, 5), (5, 0), (-1, 5), (5, -2)):
        with pytest.raises(InvalidParameterError):
            RandomFeatures.sample(d, p, "tanh", rng=0)
    with pytest.raises(InvalidParameterError):
        RandomFeatures.sample(5, 5, "softplusplus", rng=0)
    with pytest.raises(InvalidParameterError):
        RandomFeatures(np.ones((3, 2)), "nope")
    with pytest.raises(InvalidParameterError):
        RandomFeatures(np.full((3, 2), np.nan), "tanh")
    with pytest.raises(InvalidParameterError):
        noise_averaged_statistics(feats, X, 0.3, rtol=0.0)
    with pytest.raises(InvalidParameterError):
        population_statistics(feats, GaussianData(9), 0.3)  # dimension mismatch
    # a zero weight vector makes a pre-activation degenerate
    W = feats.W.copy()
    W[4] = 0.0
    with pytest.raises(InvalidParameterError):
        noise_averaged_statistics(RandomFeatures(W, "tanh"), X, 0.3)


def test_population_statistics_rejects_bad_rtol():
    """rtol must be a finite number > 0, as in noise_averaged_statistics (which checks it)."""
    feats = RandomFeatures.sample(8, 12, "tanh", rng=0)
    law = GaussianData(8)
    for rtol in (0.0, -1.0, np.nan, np.inf, "x"):
        with pytest.raises(InvalidParameterError):
            population_statistics(feats, law, 0.3, rtol=rtol)


@pytest.mark.parametrize("t", [0.01, 2.0])
def test_first_pass_hint_and_coefficient_cache_leave_u_unchanged(t):
    """kmax_first and cache_budget change only how the passes are organised (rfdm.features docstring): the
    same order K is chosen by the same bound, and pass 2 reads the first pass's coefficients instead of
    recomputing them, so U agrees with the default path to rounding (1e-12 relative; observed 0).  At t = 2
    the series needs ~30 orders, so the default first pass (12 orders) is redone, while a hint of 40 is not."""
    from rfdm.features import _unit_rows, mehler_second_moment
    d, p, n = 16, 256, 64
    f = RandomFeatures.sample(d, p, "tanh", 0)
    X = GaussianData(d).sample(n, np.random.default_rng(1))
    b = np.random.default_rng(2).standard_normal(p)
    dirs, wn = _unit_rows(f.W)
    dt = 1 - math.exp(-2 * t)
    args = (dirs, math.sqrt(dt / d) * wn, math.exp(-t) * f.preactivations(X) + t * b, f.activation)
    U0, i0 = mehler_second_moment(*args)
    for kw, cached in [(dict(kmax_first=40, cache_budget=None), True), (dict(kmax_first=3, cache_budget=None), True),
                       (dict(kmax_first=40, cache_budget=1000), False)]:
        U1, i1 = mehler_second_moment(*args, **kw)
        assert i1["truncation_order"] == i0["truncation_order"] and i1["coefficients_cached"] is cached
        assert np.abs(U1 - U0).max() <= 1e-12 * np.abs(U0).max()


def test_horner_products_equal_the_power_sum():
    """Pass 2's NumPy products (Horner's rule in rho, each GEMM accumulating with beta = 1) against the
    power-sum form written here, sum_k rho^k o (A_k A_k^T), in dense NumPy; orders with a gap and a first
    kept order > 0 (the even orders of an odd sigma can be dropped).  Both are the same finite sum in a
    different order of operations: 1e-13 relative (rounding of ~10 terms of size ~b)."""
    from rfdm.features import _mehler_products_horner, _row_blocks
    rng = np.random.default_rng(5)
    p, r, b = 70, 9, 13
    dirs = rng.standard_normal((p, r))
    dirs /= np.linalg.norm(dirs, axis=1)[:, None]
    rho = dirs @ dirs.T
    for kept in ([0, 1, 2, 3, 4], [1, 3, 5, 6], [2]):
        coeffs = [rng.standard_normal((p, b)) for _ in kept]
        ref = sum(rho ** k * (A @ A.T) for k, A in zip(kept, coeffs))
        for rows in (70, 16, 7):
            M = np.full((p, p), 0.25)  # the products are added to what M holds
            _mehler_products_horner(M, dirs, coeffs, kept, list(_row_blocks(p, rows)))
            upper = np.triu_indices(p)
            np.testing.assert_allclose(M[upper], 0.25 + ref[upper], rtol=0, atol=1e-13 * np.abs(ref).max())


@pytest.mark.parametrize("act", ["tanh", "erf", "relu"])
def test_chunked_coefficients_equal_the_activation(act):
    """The Mehler passes' 1-D expectations (features._coefficients: chunks of CHUNK_BYTES, pass 2's a_k
    without E sigma^2) against one call of the activation's own gaussian_coefficients on all pairs: the same
    formulas node by node, so equal to rounding (1e-14 of the largest coefficient; observed 0)."""
    from rfdm.activations import get_activation
    import rfdm.features as F
    a_ = get_activation(act)
    rng = np.random.default_rng(3)
    means, stds = 2.0 * rng.standard_normal((7, 33)), 0.2 + rng.random(33)
    rule = a_.select_rule(float(np.abs(means).max()), float(stds.max()), 9)
    ref_a, ref_s = a_.gaussian_coefficients(means, stds, 9, rule=rule)
    for chunk in (F.CHUNK_BYTES, 8 * 64 * 5, 8):  # whole rows; pieces of rows
        old = F.CHUNK_BYTES
        F.CHUNK_BYTES = chunk
        try:
            a1, s1 = F._coefficients(a_, means, stds, 9, rule)
            a2, s2 = F._coefficients(a_, means, stds, 9, rule, second=False)
        finally:
            F.CHUNK_BYTES = old
        scale = np.abs(ref_a).max()
        assert np.abs(a1 - ref_a).max() <= 1e-14 * scale and np.abs(a2 - ref_a).max() <= 1e-14 * scale
        assert np.abs(s1 - ref_s).max() <= 1e-14 * np.abs(ref_s).max() and s2 is None


@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_mehler_assembly_equals_dense_truncated_series(act, monkeypatch):
    """The whole assembly (chunked 1-D expectations, Horner products in row blocks, symmetrisation) against
    the same truncated series written densely here: U_ij = (1/n) sum_nu sum_{k in orders used} rho_ij^k
    a_k(m_i^nu, s_i) a_k(m_j^nu, s_j) off the diagonal, (1/n) sum_nu E sigma(h_i^nu)^2 on it, with a_k from
    one call of the activation's own gaussian_coefficients (same rule) on all pairs.  Same finite sum, other
    order of operations: 1e-13 relative.  Run with the default sizes and with small blocks and chunks."""
    import rfdm.features as F
    from rfdm.features import _unit_rows, mehler_second_moment
    d, p, n, t = 24, 60, 15, 0.3
    f = RandomFeatures.sample(d, p, act, 4)
    X = GaussianData(d).sample(n, np.random.default_rng(5))
    dirs, wn = _unit_rows(f.W)
    stds = math.sqrt(delta(t) / d) * wn
    means = math.exp(-t) * f.preactivations(X)
    for small in (False, True):
        if small:
            monkeypatch.setattr(F, "CHUNK_BYTES", 8 * 64 * 7)
            monkeypatch.setattr(F, "PASS2_BLOCK_ROWS", 7)
        U, info = mehler_second_moment(dirs, stds, means, f.activation, memory_budget=1 if small else None)
        assert info["direct_pairs"] == 0
        rule = tuple(info["quadrature_rule"])
        a, sec = f.activation.gaussian_coefficients(means, stds, info["truncation_order"], rule=rule)
        rho = dirs @ dirs.T
        ref = sum(rho ** k * np.einsum("ni,nj->ij", a[..., k], a[..., k]) for k in info["orders_used"]) / n
        np.fill_diagonal(ref, sec.mean(axis=0))
        assert np.abs(U - ref).max() <= 1e-13 * np.abs(ref).max()
        assert np.array_equal(U, U.T)
