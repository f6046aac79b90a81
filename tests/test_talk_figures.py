"""The talk's own figures: each claim turned into criteria with a computed verdict (rfdm.experiments.talk_checks),
on the tiny presets, and the verdict logic on disagreeing inputs."""

import json
import math

import numpy as np
import pytest
from scipy import integrate

from rfdm.errors import InvalidParameterError
from rfdm.experiments import talk_checks as tc
from rfdm.experiments.sampling import mixture_excess_kurtosis
from rfdm.published.claims import AGREES, DIFFERS, NO_PUBLISHED, NOT_CONVERGED
from rfdm.registry import get_figure, run_figure, talk_setting

TALK_FIGURES = ("mixture-outlier", "two-regimes", "memorization-along-training", "time-integrated",
                "spectrum-isotropic", "speciation-collapse", "timescales")
SETTING = {"d": 1}


def _verdicts(claim):
    return {c.name: c.verdict for c in claim.checks}


# -- formulas against independent computations ------------------------------------------------------------

@pytest.mark.parametrize("mu,g2", [(0.0, 1.0), (2.0, 1.0), (1.0, 0.5), (8.0, 1.0)])
def test_mixture_excess_kurtosis_against_quadrature(mu, g2):
    # moments of (1/2) N(mu, g2) + (1/2) N(-mu, g2) by adaptive quadrature of the density (accurate to ~1e-10)
    dens = lambda x: 0.5 * (np.exp(-(x - mu) ** 2 / (2 * g2)) + np.exp(-(x + mu) ** 2 / (2 * g2))) / math.sqrt(2 * math.pi * g2)  # noqa: E731
    lim = mu + 40 * math.sqrt(g2)
    m2 = integrate.quad(lambda x: x ** 2 * dens(x), -lim, lim, points=[-mu, mu], limit=200)[0]
    m4 = integrate.quad(lambda x: x ** 4 * dens(x), -lim, lim, points=[-mu, mu], limit=200)[0]
    assert mixture_excess_kurtosis(mu, g2) == pytest.approx(m4 / m2 ** 2 - 3, abs=1e-8)


def test_phenomenology_on_curves_with_a_known_minimum():
    # test loss 1 - a(tau) + b(tau) with a known minimum; train loss falls below it
    tau = np.r_[0.0, np.logspace(-2, 6, 400)]
    test = 1.0 - 0.6 * (1 - np.exp(-tau / 10)) + 0.3 * (1 - np.exp(-tau / 1e4))
    train = test - 0.5 * (1 - np.exp(-tau / 1e4))
    ph = tc.phenomenology(tau, train, test, train_inf=0.2, test_inf=0.7)
    j = int(np.argmin(test))
    assert ph["tau_star"] == tau[j]
    assert ph["rise"] == pytest.approx((0.7 - test[j]) / 0.7, rel=1e-12)
    assert ph["growth"] == pytest.approx((0.5 - (test[j] - train[j])) / 0.5, rel=1e-12)
    # a monotone test loss: no minimum at finite tau, nothing rises
    mono = 1.0 - 0.6 * (1 - np.exp(-tau / 10))
    ph = tc.phenomenology(tau, mono - 0.01, mono, train_inf=0.389, test_inf=0.399)  # still falling at tau = inf
    assert ph["rise"] == 0.0 and ph["growth"] == 0.0 and ph["tau_star"] == math.inf
    with pytest.raises(InvalidParameterError):
        tc.phenomenology(tau[1:], train[1:], test[1:], 0.2, 0.7)


# -- the figures at their tiny presets --------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_entries(tmp_path_factory):
    out = tmp_path_factory.mktemp("talk")
    return {f: run_figure(f, "tiny", out) for f in TALK_FIGURES}, out


@pytest.mark.parametrize("fig_id", TALK_FIGURES)
def test_talk_figure_has_criteria_and_a_computed_verdict(tiny_entries, fig_id):
    entries, out = tiny_entries
    rep = entries[fig_id]["report"]
    assert set(rep) >= {"id", "setting", "published", "measured", "tolerance", "verdict", "reason", "checks"}
    assert rep["verdict"] == AGREES, rep["reason"]
    basis = {"spectrum-isotropic": tc.B25_REASON, "speciation-collapse": tc.B24_REASON,
             "timescales": "[B25]'s claims"}.get(fig_id, tc.TALK_REASON)
    assert rep["reason"].startswith(basis)
    assert rep["setting"]["source"] == talk_setting(fig_id) and "no setting" in rep["setting"]["source"]
    if fig_id != "spectrum-isotropic":  # every spectrum preset is [B25] Fig. 4's setting
        assert rep["setting"]["same_as_published"] is False  # tiny is not the paper preset
    criteria = [c for c in rep["checks"] if c["published"] is not None and c["kind"] != "internal"]
    assert len(criteria) >= 2
    for c in criteria:
        assert c["tolerance"]["reason"] and c["source"]
        lo, hi = c["acceptance"]
        assert lo <= c["measured"] <= hi
    on_disk = json.loads((out / fig_id / "entry.json").read_text())
    assert on_disk["report"]["verdict"] == rep["verdict"]


def test_paper_presets_are_the_documented_settings():
    assert get_figure("two-regimes").make_config("paper").m_tilde == 1.0  # [B24]: m~ = 1
    assert get_figure("mixture-outlier").make_config("paper").t == (0.01, 0.1)  # [B25]'s times
    cfg = get_figure("time-integrated").make_config("paper")
    assert (cfg.psi_p, cfg.psi_n) == (64.0, 8.0)  # [B25] Fig. 4
    mem = get_figure("memorization-along-training").make_config("paper")
    assert mem.psi_p * mem.d > 10 * mem.n_train  # p >> n


def test_outlier_below_threshold_is_the_same_bulk_with_a_smaller_m():
    from rfdm.data import MixtureData
    from rfdm.experiments import outlier as exp
    from rfdm.features import RandomFeatures
    from rfdm.outlier import paired_outlier_test
    from rfdm.protocol import SeedStreams

    cfg = get_figure("mixture-outlier").make_config("tiny")
    res = exp.compute(cfg)
    below = exp.below_threshold(cfg, 0.5)
    assert below["m_norm"] == pytest.approx(0.5 * res["rows"][0]["threshold_m_norm"], rel=1e-12)
    assert below["outlier"] is None and below["overlap"] < 0.4
    # independent construction: the same streams with |m| = 0.5 |m|_c from the start give the same training set
    # (x = c m' + sigma_x z with the same c and z), hence the same U and the same m = 0 control as the run above
    streams = SeedStreams.ordered(cfg.seed, ("features", "direction", "train"))
    rng_w, rng_m, rng_x = (streams.generator(k) for k in ("features", "direction", "train"))
    law = MixtureData(cfg.d, m_norm=below["m_norm"], direction=rng_m.standard_normal(cfg.d), sigma_x=cfg.sigma_x)
    feats = RandomFeatures.sample(cfg.d, cfg.p, cfg.activation, rng_w)
    X, c = law.sample(cfg.n, rng_x, return_labels=True)
    direct = paired_outlier_test(feats, X, c, law.m, below["t"])
    assert direct["top_eigenvalues"][0] == pytest.approx(below["top_eigenvalue"], rel=1e-10)
    assert direct["control_top_eigenvalues"][0] == pytest.approx(res["rows"][0]["control_top_eigenvalue"], rel=1e-10)
    with pytest.raises(InvalidParameterError):
        exp.below_threshold(cfg, 1.5)


# -- the verdict logic on disagreeing inputs --------------------------------------------------------------

def _regime(fractions=(0.5, 0.5), index=0.0, var_ratio=1.0, label="r"):
    return {"label": label, "mode_fractions": list(fractions), "bimodality_index": index,
            "target_excess_kurtosis_along_m": -1.28, "var_along_m_total": 5.0 * var_ratio,
            "target_var_along_m": 5.0, "train_plus_fraction": 0.5}


def test_two_regimes_verdicts():
    good = {"norm": _regime(index=0.05), "tilde": _regime(index=0.95)}
    assert tc.two_regimes_claim(good, 2000, 1024, SETTING, SETTING).verdict == AGREES
    # unbalanced modes: 0.6 is 5.2 standard errors sqrt(1/(4N) + 1/(4n)) = 0.019 from 1/2
    bad = {"norm": _regime(index=0.05), "tilde": _regime((0.6, 0.4), index=0.95)}
    claim = tc.two_regimes_claim(bad, 2000, 1024, SETTING, SETTING)
    assert claim.verdict == DIFFERS and "not balanced" in claim.reason
    # a bimodal O(1) regime, and an unstretched one
    assert tc.two_regimes_claim({"norm": _regime(index=0.9), "tilde": _regime(index=0.95)}, 2000, 1024,
                                SETTING, SETTING).verdict == DIFFERS
    assert tc.two_regimes_claim({"norm": _regime(index=0.0, var_ratio=0.2), "tilde": _regime(index=0.95)}, 2000,
                                1024, SETTING, SETTING).verdict == DIFFERS
    # one mode where two are claimed
    assert tc.two_regimes_claim({"norm": _regime(), "tilde": _regime(index=0.1)}, 2000, 1024,
                                SETTING, SETTING).verdict == DIFFERS
    # a missing number is not converged, whatever else holds
    assert tc.two_regimes_claim({"norm": _regime(index=math.nan), "tilde": _regime(index=0.95)}, 2000, 1024,
                                SETTING, SETTING).verdict == NOT_CONVERGED
    with pytest.raises(InvalidParameterError):
        tc.two_regimes_claim({"norm": _regime()}, 2000, 1024, SETTING, SETTING)


def _mem_summary(early_lo=0.0, end_lo=0.3, emp_lo=0.95, exact_lo=0.0):
    tau = [1.0, 100.0, 1e4, 1e6, math.inf]
    ci = [[0.0, 0.01], [early_lo, early_lo + 0.02], [0.05, 0.1], [0.2, 0.3], [end_lo, end_lo + 0.05]]
    return {"tau": tau, "f_mem_ci": ci, "tau_mem_theory": 5e3, "tau_mem_empirical": 2e5,
            "f_mem_empirical_ci": [emp_lo, 1.0], "f_mem_exact_ci": [exact_lo, exact_lo + 0.01]}


def test_memorization_verdicts():
    claim = tc.memorization_claim(_mem_summary(), SETTING, SETTING)
    assert claim.verdict == AGREES
    names = _verdicts(claim)
    assert any(n.startswith("before τ_mem") and "2 τ < 5e+03" in n for n in names)  # tau = 1, 100 (the smaller reading)
    assert tc.memorization_claim(_mem_summary(early_lo=0.1), SETTING, SETTING).verdict == DIFFERS
    assert tc.memorization_claim(_mem_summary(end_lo=0.01), SETTING, SETTING).verdict == DIFFERS
    assert tc.memorization_claim(_mem_summary(emp_lo=0.2), SETTING, SETTING).verdict == DIFFERS
    assert tc.memorization_claim(_mem_summary(exact_lo=0.05), SETTING, SETTING).verdict == DIFFERS
    # no reading of tau_mem: the early check is left out, the others still decide
    s = dict(_mem_summary(), tau_mem_theory=None, tau_mem_empirical=None)
    claim = tc.memorization_claim(s, SETTING, SETTING)
    assert claim.verdict == AGREES and not any(n.startswith("before") for n in _verdicts(claim))
    with pytest.raises(InvalidParameterError):
        tc.memorization_claim(dict(_mem_summary(), f_mem_ci=[[0, 1]]), SETTING, SETTING)


def _row(top=8.0, overlap=0.82, found=True, theory=8.2, t=0.05):
    return {"t": t, "outlier_theory": theory, "overlap_theory": 0.83 if theory is not None else None,
            "top_eigenvalue": top, "overlap_empirical": overlap, "outlier_empirical": top if found else None}


def test_outlier_verdicts():
    below = {"fraction": 0.5, "t": 0.05, "outlier": None, "overlap": 0.002}
    assert tc.outlier_claim([_row()], below, 100, SETTING, SETTING).verdict == AGREES
    # tolerance at d = 100: 3 * 0.65/10 = 19.5 % on the position, 0.105 on the overlap
    assert tc.outlier_claim([_row(top=6.0)], below, 100, SETTING, SETTING).verdict == DIFFERS
    assert tc.outlier_claim([_row(top=8.0)], below, 10000, SETTING, SETTING).verdict == DIFFERS  # 2.4 % > 1.95 %
    assert tc.outlier_claim([_row(overlap=0.6)], below, 100, SETTING, SETTING).verdict == DIFFERS
    assert tc.outlier_claim([_row(found=False)], below, 100, SETTING, SETTING).verdict == DIFFERS
    claim = tc.outlier_claim([_row()], dict(below, outlier=6.0), 100, SETTING, SETTING)
    assert claim.verdict == DIFFERS and "below" in claim.reason
    # below the threshold at this t the theory predicts no outlier: finding none agrees
    assert tc.outlier_claim([_row(theory=None, found=False)], None, 100, SETTING, SETTING).verdict == AGREES
    assert tc.outlier_claim([_row(theory=None, found=True)], None, 100, SETTING, SETTING).verdict == DIFFERS


def test_time_integrated_verdicts():
    good = {"rise": 0.01, "growth": 0.1, "tau_star": 200.0}
    flat = {"rise": 0.0, "growth": 0.0, "tau_star": math.inf}
    other = {"rise": 1e-6, "growth": 1e-5, "tau_star": 5e3}
    assert tc.time_integrated_claim(good, {0.01: good, 1.0: other}, 1e-3, SETTING, SETTING).verdict == AGREES
    claim = tc.time_integrated_claim(flat, {0.01: good, 1.0: other}, 1e-3, SETTING, SETTING)
    assert claim.verdict == DIFFERS and "no minimum at finite τ" in claim.reason
    # the per-time model at the smallest t is the reference phenomenology; the larger t are only shown
    assert tc.time_integrated_claim(good, {0.01: flat}, 1e-3, SETTING, SETTING).verdict == DIFFERS
    shown = [c for c in tc.time_integrated_claim(good, {0.01: good, 1.0: other}, 1e-3, SETTING, SETTING).checks
             if "t = 1" in c.name]
    assert shown and all(c.verdict == NO_PUBLISHED for c in shown)
    with pytest.raises(InvalidParameterError):
        tc.time_integrated_claim(good, {}, 0.0, SETTING, SETTING)


def test_report_entry_of_a_talk_figure():
    claim = tc.two_regimes_claim({"norm": _regime(index=0.05), "tilde": _regime((0.7, 0.3), index=0.95)}, 2000,
                                 1024, SETTING, SETTING)
    entry = tc.talk_report_entry(claim, "the setting's source")
    assert entry["verdict"] == DIFFERS and entry["reason"].startswith(tc.TALK_REASON)
    assert "not balanced" in entry["reason"] and entry["setting"]["source"] == "the setting's source"
    # a solver that did not converge decides the verdict
    good = tc.two_regimes_claim({"norm": _regime(index=0.05), "tilde": _regime(index=0.95)}, 2000, 1024,
                                SETTING, SETTING)
    entry = tc.talk_report_entry(good, "src", converged=False)
    assert entry["verdict"] == NOT_CONVERGED and "solver failed" in entry["reason"]


def _bulks(psi_p=64.0, psi_n=8.0, rho2=(9.8, 44.7)):
    return [{"left": 0.0037, "right": 0.0102, "mass": 1 / psi_p}, {"left": 0.09, "right": 0.36, "mass": (psi_n - 1) / psi_p},
            {"left": rho2[0], "right": rho2[1], "mass": 1 / psi_p}]


def test_spectrum_verdicts():
    setting = dict(tc.B25_FIG4_SETTING, n_points=400)
    atoms = [{"position": 0.0019, "weight": 1 - 9 / 64}]
    assert tc.spectrum_claim(_bulks(), atoms, 1.0, 0.0019, True, setting).verdict == AGREES
    # rho_2 read off a different setting: the caption's numbers do not apply
    assert tc.spectrum_claim(_bulks(), atoms, 1.0, 0.0019, True, dict(setting, t=0.1)).verdict == NO_PUBLISHED
    # a bulk outside the caption's range (+-2.5)
    claim = tc.spectrum_claim(_bulks(rho2=(14.0, 44.7)), atoms, 1.0, 0.0019, True, setting)
    assert claim.verdict == DIFFERS and "ρ₂ left edge" in claim.reason
    # a solver that did not converge
    assert tc.spectrum_claim(_bulks(), atoms, 1.0, 0.0019, False, setting).verdict == NOT_CONVERGED
    # a wrong mass is an internal disagreement: named in the reason, the verdict stays the published one
    claim = tc.spectrum_claim(_bulks(), atoms, 0.98, 0.0019, True, setting)
    assert claim.verdict == AGREES and "total mass" in claim.reason


def test_speciation_verdicts():
    t = np.array([0.1, 0.5, 1.0, 2.0])
    theory = np.array([0.99, 0.9, 0.75, 0.6])
    se = np.full(4, 0.01)
    setting = {"n_pairs": 2000, "n_trajectories": 400}
    scal = {"t_collapse": 0.64, "t_collapse_simulated": 0.68, "t_collapse_weights": 0.675, "t_speciation": 0.8}
    phi = {"t": t, "theory": theory, "simulated": theory + 0.01, "stderr": se}
    assert tc.speciation_claim(scal, phi, setting, setting).verdict == AGREES
    # z_K for K = 4 is Phi^-1(1 - 0.005/4) = 3.02: a 4 sd deviation differs
    assert tc.speciation_claim(scal, dict(phi, simulated=theory + 0.04), setting, setting).verdict == DIFFERS
    assert tc.speciation_claim(dict(scal, t_collapse_simulated=0.9), phi, setting, setting).verdict == DIFFERS
    claim = tc.speciation_claim(dict(scal, t_collapse_weights=0.5), phi, setting, setting)
    assert claim.verdict == AGREES and "(internal)" in claim.reason
    assert tc.speciation_claim(dict(scal, t_collapse_simulated=None), phi, setting, setting).verdict == NOT_CONVERGED


def test_timescales_verdicts():
    from rfdm.spectrum import gep_coefficients, leading_order

    psi_ns = (2.0, 4.0, 8.0, 16.0)
    lead = [leading_order(gep_coefficients("tanh", 0.01), 1024.0, n) for n in psi_ns]
    lo_tm, lo_tg = [x["tau_mem"] for x in lead], [x["tau_gen_corrected"] for x in lead]
    setting = {"psi_p": 1024.0}
    # the leading order itself satisfies the criteria (slope within its own bend, tau_gen within its own drift)
    assert tc.timescales_claim(psi_ns, lo_tm, lo_tg, lo_tm, lo_tg, setting, setting).verdict == AGREES
    # tau_mem ~ n^0.7 and a tau_gen that grows by 20 %: both differ
    sub = [4000.0 * (n / 2) ** 0.7 for n in psi_ns]
    assert tc.timescales_claim(psi_ns, sub, lo_tg, lo_tm, lo_tg, setting, setting).verdict == DIFFERS
    drift = [lo_tg[0] * (1 + 0.2 * k / 3) for k in range(4)]
    claim = tc.timescales_claim(psi_ns, lo_tm, drift, lo_tm, lo_tg, setting, setting)
    assert claim.verdict == DIFFERS and "τ_gen depends on n" in claim.reason
    # a missing tau_mem at one psi_n leaves the slope of the others; none at all is not converged
    assert tc.timescales_claim(psi_ns, [None] + lo_tm[1:], lo_tg, lo_tm, lo_tg, setting, setting).verdict == AGREES
    assert tc.timescales_claim(psi_ns, [None] * 4, lo_tg, lo_tm, lo_tg, setting, setting).verdict == NOT_CONVERGED
