"""Regimes of the backward dynamics (rfdm.regimes): t_S, phi(t), t_C, and their simulations.

Independent checks: phi against adaptive quadrature of THEORY's integral; phi(t_S) against a clone
simulation with the exact score; the entropies against scipy; t_C against the closed form and THEORY's
equation; the simulated collapse against t_C.
"""

import math

import numpy as np
import pytest
from scipy import integrate, stats

from rfdm import GaussianData, InvalidParameterError
from rfdm.data import MixtureData
from rfdm.regimes import (clone_agreement, collapse_time, collapse_time_isotropic, crossing_time, excess_entropy,
                          posterior_agreement, sign_agreement, simulate_phi, simulate_collapse, speciation_time)


def phi_quadrature(t, m_norm, sigma_x):
    """THEORY §6: phi = (1/2) int (G+^2 + G-^2)/(G+ + G-), G+- densities of N(+-|m| e^{-t}, Gamma_t^2)."""
    mu = m_norm * math.exp(-t)
    g = math.sqrt(-math.expm1(-2 * t) + sigma_x ** 2 * math.exp(-2 * t))

    def f(x):
        gp, gm = stats.norm.pdf(x, mu, g), stats.norm.pdf(x, -mu, g)
        s = gp + gm
        return 0.0 if s == 0 else 0.5 * (gp * gp + gm * gm) / s

    lim = mu + 12 * g
    return integrate.quad(f, -lim, lim, points=[-mu, 0.0, mu], epsabs=1e-13, epsrel=1e-12, limit=400)[0]


@pytest.mark.parametrize("t,m_norm,sigma_x", [(0.05, 1.0, 1.0), (0.5, 2.0, 0.5), (1.2, 5.66, 1.0),
                                              (3.0, 8.0, 2.0), (0.01, 3.0, 0.1), (2.0, 0.0, 1.0)])
def test_phi_formula_against_quadrature(t, m_norm, sigma_x):
    assert clone_agreement(t, m_norm, sigma_x) == pytest.approx(phi_quadrature(t, m_norm, sigma_x), abs=1e-10)


def test_phi_limits_and_vectorisation():
    assert clone_agreement(1e-3, 6.0, 1.0) == pytest.approx(1.0, abs=1e-8)      # separated clusters
    assert clone_agreement(12.0, 6.0, 1.0) == pytest.approx(0.5, abs=1e-4)      # pure noise: a coin flip
    t = np.array([0.1, 1.0, 3.0])
    v = clone_agreement(t, 4.0)
    np.testing.assert_allclose(v, [clone_agreement(x, 4.0) for x in t], rtol=1e-15)
    assert np.all(np.diff(v) < 0)


def test_speciation_time_against_the_covariance_spectrum():
    mix = MixtureData(6, m_norm=3.0, sigma_x=0.7, direction=np.arange(1.0, 7.0))
    lam = np.linalg.eigvalsh(mix.covariance())[-1]
    assert speciation_time(mix) == pytest.approx(0.5 * math.log(lam), rel=1e-12)
    g = GaussianData(5, eigenvalues=(0.5, 4.0), rotation="random", seed=2)
    assert speciation_time(g) == pytest.approx(0.5 * math.log(np.linalg.eigvalsh(g.covariance())[-1]), rel=1e-12)
    pts = np.random.default_rng(0).standard_normal((500, 3)) * [1.0, 2.0, 0.5]
    assert speciation_time(pts) == pytest.approx(0.5 * math.log(np.linalg.eigvalsh(np.cov(pts.T))[-1]), rel=1e-12)


def test_phi_at_speciation_time_by_clone_simulation():
    """phi(t_S) and phi at a later time from 4000 clone pairs with the exact score.  Tolerance: 4 binomial
    standard errors (0.0067 at phi = 0.77) plus 0.01 for the discretisation (200 steps: measured |bias| < 0.005
    with 8000 pairs at 200 and 800 steps)."""
    law = MixtureData(4, m_norm=5.66, sigma_x=1.0)
    t_s = speciation_time(law)
    res = simulate_phi(law, 4000, [t_s, 2.7], T=8.0, steps=200, seed=3)
    assert res["t"][0] == pytest.approx(t_s)
    for j in range(2):
        assert abs(res["agreement"][j] - res["theory"][j]) < 4 * res["stderr"][j] + 0.01
    assert res["theory"][0] == pytest.approx(clone_agreement(t_s, 5.66, 1.0))


def test_excess_entropy_gaussian_against_scipy():
    g = GaussianData(5, eigenvalues=(0.3, 1.0, 5.0), rotation="random", seed=1)
    for t in (0.05, 0.7, 2.0):
        h = stats.multivariate_normal(np.zeros(5), g.covariance_t(t)).entropy()
        noise = 0.5 * 5 * math.log(2 * math.pi * math.e * -math.expm1(-2 * t))
        assert excess_entropy(g, t) == pytest.approx((h - noise) / 5, rel=1e-10)


def test_excess_entropy_mixture_against_quadrature():
    """H(P_t) = (d-1)/2 log(2 pi e Gamma^2) + H_1, H_1 = -int p log p of the 1-D mixture (adaptive quadrature)."""
    d, m, sx = 7, 2.5, 0.8
    mix = MixtureData(d, m_norm=m, sigma_x=sx)
    for t in (0.1, 0.6, 1.5):
        mu, g2, dt = m * math.exp(-t), mix.gamma2_t(t), -math.expm1(-2 * t)

        def neg_p_log_p(x):
            p = 0.5 * (stats.norm.pdf(x, mu, math.sqrt(g2)) + stats.norm.pdf(x, -mu, math.sqrt(g2)))
            return -p * math.log(p) if p > 0 else 0.0

        lim = mu + 14 * math.sqrt(g2)
        h1 = integrate.quad(neg_p_log_p, -lim, lim, points=[-mu, 0, mu], epsabs=1e-13, limit=400)[0]
        h = 0.5 * (d - 1) * math.log(2 * math.pi * math.e * g2) + h1
        expect = (h - 0.5 * d * math.log(2 * math.pi * math.e * dt)) / d
        assert excess_entropy(mix, t) == pytest.approx(expect, rel=1e-9)


def test_collapse_time_formulas():
    for alpha, sx in ((0.1, 1.0), (0.3, 1.0), (0.5, 2.0)):
        d = 20
        n = math.exp(alpha * d)
        # n must be an integer: pass eigenvalues with the exact alpha through d
        lam = np.full(d, sx ** 2)
        t_iso = collapse_time_isotropic(alpha, sx)
        # t_C from THEORY's general equation (1/d) sum log(1 + lambda/(e^{2t} - 1)) = 2 alpha at that t
        lhs = np.mean(np.log(1 + lam / math.expm1(2 * t_iso)))
        assert lhs == pytest.approx(2 * alpha, rel=1e-12)
        # the root-finder on the isotropic law agrees with the closed form (n rounded: alpha from round(n))
        nr = int(round(n))
        assert collapse_time(lam, nr) == pytest.approx(collapse_time_isotropic(math.log(nr) / d, sx), rel=1e-10)
    # general Gaussian: THEORY's equation holds at the root
    lam = np.array([0.2, 0.5, 1.0, 3.0, 8.0])
    t_c = collapse_time(lam, 30)
    assert np.mean(np.log1p(lam / math.expm1(2 * t_c))) == pytest.approx(2 * math.log(30) / 5, rel=1e-10)
    g = GaussianData(5, eigenvalues=tuple(lam))
    assert collapse_time(g, 30) == pytest.approx(t_c, rel=1e-12)


def test_mixture_collapse_time_tends_to_the_isotropic_formula():
    """The direction m adds O(1/d) to the excess entropy: the mixture's t_C approaches the isotropic formula
    as d grows at fixed alpha (difference ~ 1/d)."""
    diffs = []
    for d in (20, 200, 2000):
        alpha = 0.2
        n = int(round(math.exp(alpha * d))) if alpha * d < 700 else None
        mix = MixtureData(d, m_tilde=1.0, sigma_x=1.0)
        if n is None or n > 10 ** 300:
            break
        diffs.append(abs(collapse_time(mix, n) - collapse_time_isotropic(math.log(n) / d)))
    assert diffs[0] > diffs[1] > 0 and diffs[1] < 0.02


def test_posterior_agreement_against_brute_force():
    rng = np.random.default_rng(0)
    X, x = rng.standard_normal((15, 3)), rng.standard_normal((7, 3))
    t = 0.4
    a, dt = math.exp(-t), -math.expm1(-2 * t)
    logits = -((x[:, None, :] - a * X[None]) ** 2).sum(-1) / (2 * dt)
    w = np.exp(logits - logits.max(axis=1, keepdims=True))
    w /= w.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(posterior_agreement(X, x, t, memory_budget=400), (w ** 2).sum(axis=1), rtol=1e-12)


def test_crossing_time():
    t = np.array([0.1, 0.2, 0.4, 0.8])
    y = np.array([1.0, 0.9, 0.3, 0.0])
    # between 0.2 (0.9) and 0.4 (0.3): fraction 2/3 of the way in log t
    assert crossing_time(t, y) == pytest.approx(math.exp(math.log(0.2) + (2 / 3) * math.log(2)))
    assert crossing_time(t, np.zeros(4)) is None and crossing_time(t, np.ones(4)) is None


def test_simulated_collapse_is_consistent_with_t_c():
    """d = 16, n = 122 (alpha = 0.3), isotropic data, 400 trajectories with the empirical score, three training
    sets.  (1) The clone simulation agrees with sum_mu w_mu^2 at every time within 4 standard errors (the two
    estimate the same probability).  (2) The probability is > 0.85 at t_C/2 and < 0.25 at 2 t_C (measured 0.93 and 0.15 at worst).  (3) Its
    crossing of 1/2 lies within 20 % of t_C: at these sizes the measured crossings are 2-16 % above t_C (a
    finite-d shift; 2.5 % at d = 40, n = e^12), while t_C with alpha doubled (0.18) or halved (0.75) is far off."""
    d, n = 16, 122
    law = GaussianData(d)
    t_c = collapse_time(law, n)
    crossings = []
    for seed in range(3):
        X = law.sample(n, np.random.default_rng(seed))
        bt = np.r_[t_c / 2, np.geomspace(0.6 * t_c, 1.6 * t_c, 7), 2 * t_c]
        r = simulate_collapse(X, 400, bt, steps=150, seed=seed)
        assert np.all(np.abs(r["agreement"] - r["weights"]) < 4 * r["stderr"])
        assert r["weights"][0] > 0.85 and r["weights"][-1] < 0.25
        crossings.append(crossing_time(r["t"], r["weights"]))
    assert abs(np.mean(crossings) / t_c - 1) < 0.2, (crossings, t_c)


def test_regime_input_checks():
    with pytest.raises(InvalidParameterError, match="at least 2 training points"):
        collapse_time(GaussianData(3), 1)
    with pytest.raises(InvalidParameterError, match="at least 2 training points"):
        simulate_collapse(np.zeros((1, 3)), 10, [0.5])
    with pytest.raises(InvalidParameterError, match="two-cluster mixture"):
        simulate_phi(GaussianData(3), 10, [0.5])
    with pytest.raises(InvalidParameterError, match="> 0"):
        clone_agreement(0.0, 1.0)


# -- like with like: label agreement and sign agreement (issue 12, item 4) -------------------------------------
def _legendre_pieces(lo, hi, width=0.25, nodes=24):
    """Composite Gauss–Legendre rule on [lo, hi] (pieces of about ``width``)."""
    k = max(1, int(math.ceil((hi - lo) / width)))
    edges = np.linspace(lo, hi, k + 1)
    x, w = np.polynomial.legendre.leggauss(nodes)
    pts = (0.5 * (edges[1:] - edges[:-1])[:, None] * x[None, :] + 0.5 * (edges[1:] + edges[:-1])[:, None]).ravel()
    wts = (0.5 * (edges[1:] - edges[:-1])[:, None] * w[None, :]).ravel()
    return pts, wts


def sign_agreement_quadrature(t, m_norm, sigma_x, t_end):
    """Own computation of the sign agreement from the joint density, without the Gaussian-conditioning algebra:
    s_e ~ (1/2) N(+-mu_e, G_e^2) at t_end, s_t | s_e ~ N(e^{-u} s_e, Delta_u); P(s_e > 0 | s_t) as the ratio of
    the integrals of the joint density over s_e > 0 and over all s_e, then E_{s_t}[P^2 + (1 - P)^2]; all by
    composite Gauss–Legendre rules (pieces of 0.25, 24 nodes, split at s_e = 0) on +-10 standard deviations:
    accurate to ~1e-10 for these smooth integrands."""
    mu_e = m_norm * math.exp(-t_end)
    ge = math.sqrt(-math.expm1(-2 * t_end) + sigma_x ** 2 * math.exp(-2 * t_end))
    u = t - t_end
    a, du = math.exp(-u), math.sqrt(-math.expm1(-2 * u))
    lim = mu_e + 10 * ge
    sp, wp = _legendre_pieces(0.0, lim)
    se, we = np.concatenate([-sp[::-1], sp]), np.concatenate([wp[::-1], wp])
    mu = m_norm * math.exp(-t)
    g = math.sqrt(-math.expm1(-2 * t) + sigma_x ** 2 * math.exp(-2 * t))
    st, wt = _legendre_pieces(-(mu + 10 * g), mu + 10 * g)
    prior = 0.5 * (stats.norm.pdf(se, mu_e, ge) + stats.norm.pdf(se, -mu_e, ge))
    joint = prior[None, :] * stats.norm.pdf(st[:, None], a * se[None, :], du) * we[None, :]
    tot = joint.sum(axis=1)
    pos = joint[:, se > 0].sum(axis=1)
    p = np.where(tot > 0, pos / np.where(tot > 0, tot, 1.0), 0.5)
    return float(np.sum(wt * tot * (p * p + (1 - p) ** 2)))


@pytest.mark.parametrize("t,m_norm,sigma_x,t_end", [(0.05, 2.0, 1.0, 0.0), (0.05, 2.0, 1.0, 0.01),
                                                    (0.8, 2.0, 1.0, 0.01), (0.4, 1.0, 0.5, 0.0),
                                                    (1.5, 5.66, 1.0, 0.01)])
def test_sign_agreement_against_quadrature(t, m_norm, sigma_x, t_end):
    """The 1-D formula (Gaussian conditioning + Gauss–Hermite, 200 nodes) against a two-dimensional quadrature
    of the joint density (accurate to ~1e-12; observed agreement 1e-15): tolerance 1e-10."""
    assert sign_agreement(t, m_norm, sigma_x, t_end=t_end) == pytest.approx(
        sign_agreement_quadrature(t, m_norm, sigma_x, t_end), abs=1e-10)


def test_sign_and_label_agreement_differ_where_clusters_overlap():
    """|m| = 2, sigma_x = 1, t = 0.05: phi = 0.957 (labels) and phi_sign = 0.978 (signs, t_end = 0): different
    quantities; for well separated clusters (|m| = 8) they coincide (to 1e-6 at t = 0.5)."""
    assert clone_agreement(0.05, 2.0) == pytest.approx(0.957, abs=5e-4)
    assert sign_agreement(0.05, 2.0) == pytest.approx(0.978, abs=5e-4)
    assert sign_agreement(0.5, 8.0) == pytest.approx(clone_agreement(0.5, 8.0), abs=1e-6)
    v = sign_agreement(np.array([0.1, 1.0, 3.0]), 4.0, t_end=0.01)
    assert np.all(np.diff(v) < 0) and v[-1] > 0.5
    with pytest.raises(InvalidParameterError):
        sign_agreement(0.01, 2.0, t_end=0.05)
    with pytest.raises(InvalidParameterError):
        simulate_phi(MixtureData(3, m_norm=2.0), 10, [0.5], kind="nearest")


@pytest.mark.parametrize("m_norm", [2.0, pytest.param(5.66, marks=pytest.mark.slow)])
def test_clone_simulations_each_against_its_own_formula(m_norm):
    """d = 32, exact score, 3000 clone pairs from T = 8 (200 geometric steps), t_min = 0.01, branching at t = 0.05,
    0.3 and t_S.  The label-based simulation (labels drawn from their posterior at t_min) estimates phi(t), the
    sign-based one phi_sign(t) with t_end = t_min; each agrees with its own formula within 4 standard errors
    plus 0.01 (discretisation, as in the test above).  At |m| = 2 the sign simulation is far (> 6 standard
    errors) from phi(t) at t = 0.05: the comparison on main (sign simulation against phi) fails here."""
    law = MixtureData(32, m_norm=m_norm, direction=np.random.default_rng(0).standard_normal(32))
    bt = [0.05, 0.3, speciation_time(law)]
    for kind in ("label", "sign"):
        res = simulate_phi(law, 3000, bt, kind=kind, T=8.0, steps=200, seed=3)
        assert res["kind"] == kind
        assert np.all(np.abs(res["agreement"] - res["theory"]) < 4 * res["stderr"] + 0.01)
        theory = clone_agreement(res["t"], m_norm) if kind == "label" else sign_agreement(res["t"], m_norm, t_end=0.01)
        np.testing.assert_allclose(res["theory"], theory, rtol=1e-14)
        if kind == "sign" and m_norm == 2.0:
            assert res["agreement"][0] - clone_agreement(0.05, m_norm) > 6 * res["stderr"][0]
