"""The time-integrated random-features model: t quadrature, closed form against an ODE, Monte Carlo and
gradient descent with random t, reduction to the per-time model, bad input."""

import json
import math

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import rfdm
from rfdm.cli import main
from rfdm.diffusion import delta_t
from rfdm.dynamics import GradientFlow, loss_of_weights
from rfdm.errors import InvalidParameterError
from rfdm.features import _unit_rows, mehler_second_moment
from rfdm.time_integrated import TimeIntegratedModel, clenshaw_curtis, timescales_from_curves

D, P, N = 8, 48, 12


@pytest.fixture(scope="module")
def setup():
    law = rfdm.GaussianData(D)
    f = rfdm.RandomFeatures.sample(D, P, "tanh", 0)
    X = law.sample(N, np.random.default_rng(1))
    model = TimeIntegratedModel.sample(f, 2, t_min=0.05, t_max=1.0, t_rtol=1e-7)
    return law, f, X, model


def test_clenshaw_curtis_integrates_polynomials_exactly():
    # an (N+1)-point Clenshaw-Curtis rule is exact for polynomials of degree <= N
    x, w = clenshaw_curtis(9)
    for k in range(9):
        exact = 0.0 if k % 2 else 2.0 / (k + 1)
        assert np.dot(w, x ** k) == pytest.approx(exact, abs=1e-14)


def test_t_quadrature_converges_to_an_independent_rule(setup):
    """U from the nested Clenshaw-Curtis rule in log t against 48-point Gauss-Legendre in t itself (a
    different rule in a different variable); agreement far below the tolerance requested."""
    law, f, X, model = setup
    U = model.training_statistics(X).U
    z, w = np.polynomial.legendre.leggauss(48)
    ts = 0.5 * (model.t_max + model.t_min) + 0.5 * (model.t_max - model.t_min) * z
    ref = np.zeros_like(U)
    directions, wnorm = _unit_rows(f.W)
    for t, wi in zip(ts, w * 0.5):
        dt = float(delta_t(t))
        Ut, _ = mehler_second_moment(directions, math.sqrt(dt / D) * wnorm,
                                     math.exp(-t) * f.preactivations(X) + t * model.b, f.activation)
        ref += wi * Ut  # kappa_t = 1 for alpha_t = 1/sqrt(Delta_t)
    assert np.linalg.norm(U - ref) / np.linalg.norm(ref) < 1e-6
    coarse = TimeIntegratedModel(f, model.b, t_min=0.05, t_max=1.0, t_rtol=1e-2).training_statistics(X).U
    err_coarse = np.linalg.norm(coarse - ref) / np.linalg.norm(ref)
    assert err_coarse > np.linalg.norm(U - ref) / np.linalg.norm(ref)  # refinement helps


def test_closed_form_against_ode(setup):
    law, f, X, model = setup
    stats = model.training_statistics(X)
    flow = GradientFlow(stats)
    U, V = stats.U, stats.V

    def rhs(tau, a):
        A = a.reshape(D, P)
        return (-2 * (D / P) * A @ U - 2 * D / math.sqrt(P) * V.T).ravel()

    taus = [0.5, 5.0, 50.0]
    sol = solve_ivp(rhs, (0, 50), np.zeros(D * P), t_eval=taus, rtol=1e-11, atol=1e-13, method="DOP853")
    for k, tau in enumerate(taus):
        A = sol.y[:, k].reshape(D, P)
        assert np.linalg.norm(flow.weights(tau) - A) <= 1e-7 * max(np.linalg.norm(A), 1)
        assert flow.train_loss(tau)[0] == pytest.approx(loss_of_weights(A, stats), abs=1e-9)


@pytest.mark.parametrize("time_law", ["uniform", "log-uniform"])
def test_losses_against_monte_carlo(setup, time_law):
    """Integrated train and test losses and the score error at t = 0.3 of a fixed A, by direct simulation
    (fresh t ~ Q drawn here, noise, data); tolerance 5 standard errors from the samples."""
    law, f, X, model = setup
    model = TimeIntegratedModel(f, model.b, t_min=0.05, t_max=1.0, t_rtol=1e-7, time_law=time_law)
    flow = model.gradient_flow(X, law, score_times=(0.3,))
    A = flow.weights(20.0)
    rng = np.random.default_rng(7)
    M = 200_000

    def mc_loss(x):
        if time_law == "uniform":
            t = rng.uniform(model.t_min, model.t_max, size=x.shape[0])
        else:
            t = np.exp(rng.uniform(math.log(model.t_min), math.log(model.t_max), size=x.shape[0]))
        dt = delta_t(t)
        xi = rng.standard_normal(x.shape)
        xt = np.exp(-t)[:, None] * x + np.sqrt(dt)[:, None] * xi
        # sqrt(Delta_t) S_A(x_t, t) + xi with S_A = alpha_t A phi/sqrt(p) (beta = 0)
        res = np.sqrt(dt)[:, None] * (model.alpha(t)[:, None] * (model.phi(xt, t) @ A.T) / math.sqrt(P)) + xi
        v = np.sum(res ** 2, axis=1) / D
        return v.mean(), v.std() / math.sqrt(v.size)

    train_mc, se = mc_loss(X[rng.integers(0, N, M)])
    assert abs(flow.train_loss(20.0)[0] - train_mc) < 5 * se
    test_mc, se = mc_loss(law.sample(M, rng))
    assert abs(flow.test_loss(20.0)[0] - test_mc) < 5 * se
    y = law.sample(M, rng) * math.sqrt(1.0)  # Sigma = I: P_t = N(0, I)
    v = np.sum((model.score(A, y, 0.3) - law.score(y, 0.3)) ** 2, axis=1) / D
    assert abs(flow.quadratic_form("score_error@0.3", 20.0)[0] - v.mean()) < 5 * v.std() / math.sqrt(M)


def test_gradient_descent_with_random_t_tracks_closed_form(setup):
    """GD with fresh noise and fresh t per step: averaged over seeds, its train loss at tau = 5 matches the
    closed form within 3 standard errors of the seed average plus the O(eta) discretisation."""
    law, f, X, model = setup
    stats = model.training_statistics(X)
    flow = GradientFlow(stats)
    lam_max = np.linalg.eigvalsh(stats.U)[-1]
    lr = 0.1 * D * P / lam_max
    losses = []
    for seed in range(6):
        tau, W, _ = model.train_by_descent(X, [5.0], lr, seed)
        losses.append(loss_of_weights(W[0], stats))
    losses = np.array(losses)
    exact = flow.train_loss(tau)[0]
    assert abs(losses.mean() - exact) < 3 * losses.std(ddof=1) / math.sqrt(losses.size) + 0.02 * (1 - exact)


def test_point_mass_reduces_to_per_time_model(setup):
    """Q concentrated at t0 with b = 0: U, V equal the per-time ones, and since S = alpha A phi/sqrt(p) the
    flows agree with tau rescaled by Delta_t: L_TI(tau) = L_per-time(tau/Delta_t)."""
    law, f, X, _ = setup
    t0 = 0.3
    model = TimeIntegratedModel(f, np.zeros(P), t_min=t0, t_max=t0 * (1 + 1e-9), t_rtol=1e-10)
    ti = model.training_statistics(X)
    pt = rfdm.noise_averaged_statistics(f, X, t0)
    assert np.linalg.norm(ti.U - pt.U) / np.linalg.norm(pt.U) < 1e-7
    assert np.linalg.norm(ti.V - pt.V) / np.linalg.norm(pt.V) < 1e-7
    dt = float(delta_t(t0))
    taus = np.array([0.3, 3.0, 30.0])
    np.testing.assert_allclose(GradientFlow(ti).train_loss(taus), GradientFlow(pt).train_loss(taus / dt),
                               rtol=1e-6)


def test_gaussian_skip_makes_gaussian_part_exact(setup):
    """With beta_t = -1/Gamma_t^2 and A = 0 the score is exactly -x/Gamma_t^2, the exact score of N(0, I):
    the score error at A = 0 vanishes (checked by direct evaluation of the form)."""
    law, f, X, _ = setup
    model = TimeIntegratedModel.sample(f, 3, t_min=0.05, t_max=1.0, beta="gaussian-skip", t_rtol=1e-4)
    _, _, c = model.score_error_form(law, 0.4)
    assert c == pytest.approx(0.0, abs=1e-14)


def test_timescales_from_curves_on_a_synthetic_curve():
    tau = np.logspace(-2, 6, 400)
    train = 1 - 0.5 * (1 - np.exp(-tau / 1.0)) - 0.3 * (1 - np.exp(-tau / 1e3))
    test = 1 - 0.5 * (1 - np.exp(-tau / 1.0)) + 0.3 * (1 - np.exp(-tau / 1e3))
    out = timescales_from_curves(tau, train, test)
    # the test loss falls from its value at tau_0 = 0.01 to its minimum ~0.5025 (at tau ~ 7.4); the crossing of
    # the half-way level, found here by root finding on the formula, against the log-interpolated grid value
    from scipy.optimize import brentq, minimize_scalar
    f = lambda x: 1 - 0.5 * (1 - np.exp(-x)) + 0.3 * (1 - np.exp(-x / 1e3))  # noqa: E731
    lmin = minimize_scalar(f, bounds=(1, 50), method="bounded").fun
    level = f(0.01) - 0.5 * (f(0.01) - lmin)
    assert out["tau_gen"] == pytest.approx(brentq(lambda x: f(x) - level, 0.01, 7.0), rel=2e-3)
    assert 5 <= out["tau_test_min"] <= 10
    # the gap 0.6 (1 - e^{-tau/1e3}) reaches half its final value at tau = 1e3 ln 2
    assert out["tau_mem"] == pytest.approx(1e3 * math.log(2), rel=2e-3)


@pytest.mark.parametrize("t_min,t_max", [(0.01, 2.0), (0.05, 1.0)])
def test_time_law_weights_integrate_known_moments(setup, t_min, t_max):
    """The Clenshaw-Curtis weights in log t give E_Q[t^k] in closed form: uniform (b^{k+1} - a^{k+1})/((k+1)(b-a)),
    log-uniform (b^k - a^k)/(k log(b/a)) (log(b/a)/log(b/a) = 1 for k = 0)."""
    law, f, X, model = setup
    for time_law in ("uniform", "log-uniform"):
        m = TimeIntegratedModel(f, model.b, t_min=t_min, t_max=t_max, time_law=time_law)
        t, w = m._t_rule(65)
        for k in (-1, 0, 1, 2):
            if time_law == "uniform":
                exact = (math.log(t_max / t_min) if k == -1 else (t_max ** (k + 1) - t_min ** (k + 1)) / (k + 1)) / (t_max - t_min)
            else:
                exact = 1.0 if k == 0 else (t_max ** k - t_min ** k) / (k * math.log(t_max / t_min))
            assert np.dot(w, t ** k) == pytest.approx(exact, rel=1e-10), (time_law, k)


def test_sample_times_follow_q(setup):
    """t ~ Q from sample_times against the CDF of Q (KS test, 20000 draws; the p-value of a correct sampler is
    uniform, so p > 1e-3 fails with probability 1e-3 for this fixed seed; it is 0 for the other law)."""
    from scipy.stats import kstest
    law, f, X, model = setup
    a, b = 0.01, 2.0
    cdfs = {"uniform": lambda x: (x - a) / (b - a), "log-uniform": lambda x: np.log(x / a) / math.log(b / a)}
    for time_law, cdf in cdfs.items():
        m = TimeIntegratedModel(f, model.b, t_min=a, t_max=b, time_law=time_law)
        t = m.sample_times(np.random.default_rng(5), 20_000)
        assert kstest(t, cdf).pvalue > 1e-3
        other = cdfs["log-uniform" if time_law == "uniform" else "uniform"]
        assert kstest(t, other).pvalue < 1e-6


def test_memorization_modes_lie_in_the_memorization_bulk():
    """Per-time model, d = 64, psi_p = 8, psi_n = 2, t = 0.1 (p = 512, n = 128): the modes with lambda > q^T U~ q
    below the population cluster are memorization modes: their eigenvalues lie inside rho_1 of the spectral
    theory ([0.0154, 0.108]; observed [0.045, 0.116], the finite-d exact U spreads the bulk's right edge by ~7 %),
    not on the atom s_t^2 = 0.0136 nor in rho_2; there are fewer than n of them (rho_1 holds n eigenvalues; the
    criterion picks its upper part: 48 here).  The reversed criterion would pick atom and rho_1-bottom modes."""
    from rfdm.spectrum import SpectralProblem, gep_coefficients
    from rfdm.time_integrated import timescales_from_spectrum
    d, psi_p, psi_n, t = 64, 8, 2, 0.1
    law = rfdm.GaussianData(d)
    f = rfdm.RandomFeatures.sample(d, psi_p * d, "tanh", 1)
    X = law.sample(psi_n * d, np.random.default_rng(2))
    stats = rfdm.noise_averaged_statistics(f, X, t)
    pop = rfdm.population_statistics(f, law, t)
    flow = GradientFlow(stats, pop)
    theory = SpectralProblem(gep_coefficients("tanh", t), psi_p, psi_n).solve(400)
    rho1 = theory.bulks[-2]
    curvature = flow.curvature("test_loss")
    Q = flow.eigenvectors
    np.testing.assert_allclose(curvature, np.einsum("ik,ik->k", Q, pop.U @ Q), rtol=1e-10, atol=1e-14)
    out = timescales_from_spectrum(flow.eigenvalues, psi_n * d, d, psi_p, stats.kappa, curvature)
    lam = flow.eigenvalues[out["memorization_mask"]]
    assert psi_n * d / 8 < out["memorization_modes"] < psi_n * d
    assert lam.min() > rho1["left"] and lam.max() < 1.15 * rho1["right"]
    assert out["tau_mem"] == pytest.approx(psi_p / (stats.kappa * lam.min()))
    assert out["tau_gen"] == pytest.approx(theory.timescales()["tau_gen"], rel=0.1)


@pytest.mark.parametrize("kw", [dict(t_min=0.0), dict(t_min=-1.0), dict(t_min=2.0, t_max=1.0),
                                dict(t_min=1.0, t_max=1.0), dict(t_nodes_max=0), dict(beta="half")])
def test_bad_input(setup, kw):
    law, f, X, model = setup
    with pytest.raises(InvalidParameterError):
        TimeIntegratedModel(f, model.b, **kw)


@pytest.mark.parametrize("args", [["--t-min", "0"], ["--t-min", "2", "--t-max", "1"], ["--t-nodes-max", "0"],
                                  ["--t-quad-tol", "-1"]])
def test_cli_bad_input(tmp_path, capsys, args):
    rc = main(["dynamics", "--model", "time-integrated", "--d", "8", "--psi-p", "4", "--psi-n", "2", *args,
               "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("rfdm: error:") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_cli_dynamics_and_spectrum(tmp_path, capsys):
    rc = main(["dynamics", "--model", "time-integrated", "--d", "6", "--psi-p", "4", "--psi-n", "2", "--tau",
               "1,100,inf", "--t-quad-tol", "1e-3", "--json", "--quiet", "--out", str(tmp_path / "dyn")])
    obj = json.loads(capsys.readouterr().out)
    assert rc == 0 and obj["tau"][-1] == "inf" and len(obj["score_error"]) == 3
    assert obj["config"]["model"] == "time-integrated"
    rc = main(["spectrum", "--model", "time-integrated", "--d", "6", "--psi-p", "4", "--psi-n", "2",
               "--t-quad-tol", "1e-3", "--json", "--quiet", "--out", str(tmp_path / "sp")])
    obj = json.loads(capsys.readouterr().out)
    assert rc == 0
    for key in ("eigenvalues_summary", "bulks", "tau_gen", "tau_mem", "memorization_modes"):
        assert key in obj
    assert obj["eigenvalues_summary"]["count"] == 24


def test_comparison_with_per_time_models_on_the_same_data(tmp_path):
    """The comparison figure: at tau = 0 (A = 0) both networks have the score error E|S(y, t)|^2/d = 1/Gamma_t^2
    (Sigma = I: Gamma_t^2 = 1); the per-time curve at t is the per-time GradientFlow on the same W and X; the
    dataset on disk reproduces the returned numbers and carries the configuration."""
    from rfdm.experiments.figures import compute_time_integrated_comparison
    from rfdm.results import read_npz

    r = compute_time_integrated_comparison(tmp_path, d=6, psi_p=4.0, psi_n=2.0, times=(0.05, 0.5), t_rtol=1e-3)
    arrays, header = read_npz(r["data"])
    assert header["config"]["times"] == [0.05, 0.5] and "version" in header
    for t in (0.05, 0.5):
        assert arrays["tau"][0] == 0.0
        assert arrays[f"ti_score_{t:g}"][0] == pytest.approx(1.0, rel=1e-12)
        assert arrays[f"pt_score_{t:g}"][0] == pytest.approx(1.0, rel=1e-12)
        assert r["meta"]["score_error_inf"][f"{t:g}"]["per-time"] == arrays[f"pt_score_{t:g}"][-1]
    assert (tmp_path / "time_integrated.png").stat().st_size > 0


SPECTRUM_TI = ["spectrum", "--model", "time-integrated", "--d", "6", "--psi-p", "4", "--psi-n", "2", "--t-quad-tol",
               "1e-3", "--quiet"]


def test_cli_equivalent_spectrum(tmp_path, capsys):
    """--equivalent-spectrum: the JSON's KS distance is recomputed here from the CDF and the eigenvalues
    written to the npz (an own one-sample KS, not the library's), its checks hold, its mass is 1."""
    from rfdm.results import read_npz

    rc = main(SPECTRUM_TI + ["--t-law", "log-uniform", "--equivalent-spectrum", "--equivalent-points", "40", "--json",
                             "--out", str(tmp_path / "sp")])
    obj = json.loads(capsys.readouterr().out)
    assert rc == 0
    eq = obj["equivalent_spectrum"]
    assert eq["checks"] == {"converged": True, "cdf_monotone": True, "mass_is_one": True}
    assert eq["points"] == 40 and abs(eq["mass"] - 1) < 1e-4
    arrays, header = read_npz(tmp_path / "sp" / "spectrum.npz")
    assert header["config"]["equivalent_spectrum"] is True and header["config"]["equivalent_points"] == 40
    ev = np.sort(arrays["eigenvalues"])
    F = np.clip(np.interp(ev, arrays["equivalent_lam"], arrays["equivalent_cdf"], left=0.0, right=1.0), 0, 1)
    upper = np.arange(1, ev.size + 1) / ev.size
    ks = max(np.max(np.abs(F - upper)), np.max(np.abs(F - (upper - 1.0 / ev.size))))
    assert eq["ks_distance"] == pytest.approx(ks, rel=1e-12)
    assert (tmp_path / "sp" / "spectrum.png").exists()


def test_cli_equivalent_spectrum_alone(tmp_path, capsys):
    """--no-exact: the equivalent's spectrum without the exact U (no eigenvalues, no KS distance), its CDF in the
    npz rising from 0 to 1 over the grid, the figure drawn from it."""
    from rfdm.results import read_npz

    rc = main(SPECTRUM_TI + ["--equivalent-spectrum", "--no-exact", "--equivalent-points", "30", "--json", "--out",
                             str(tmp_path / "sp")])
    obj = json.loads(capsys.readouterr().out)
    assert rc == 0 and "eigenvalues_summary" not in obj and obj["equivalent_spectrum"]["ks_distance"] is None
    arrays, _ = read_npz(tmp_path / "sp" / "spectrum.npz")
    assert "eigenvalues" not in arrays
    F = arrays["equivalent_cdf"]
    assert abs(F[0]) < 1e-5 and abs(F[-1] - 1) < 1e-4 and np.all(np.diff(F) > -1e-5)
    assert (tmp_path / "sp" / "spectrum.png").exists()


@pytest.mark.parametrize("args", [["--equivalent-points", "40"], ["--no-exact"],
                                  ["--equivalent-spectrum", "--equivalent-points", "5"],
                                  ["--equivalent-spectrum", "--beta", "gaussian-skip"]])
def test_cli_equivalent_spectrum_bad_input(tmp_path, capsys, args):
    rc = main(SPECTRUM_TI + args + ["--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("rfdm: error:") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_cli_equivalent_spectrum_failure_is_exit_3(tmp_path, capsys, monkeypatch):
    """A solver that does not converge (iterations capped at 2): the result is written with its checks, one line
    on stderr names the failed check, exit status 3."""
    import rfdm.multitime as mt

    monkeypatch.setattr(mt, "MAX_ITERATIONS", 2)
    rc = main(SPECTRUM_TI + ["--equivalent-spectrum", "--equivalent-points", "20", "--json", "--out",
                             str(tmp_path / "sp")])
    captured = capsys.readouterr()
    assert rc == 3 and "converged" in captured.err and captured.err.count("\n") == 1
    assert json.loads(captured.out)["equivalent_spectrum"]["checks"]["converged"] is False
    assert (tmp_path / "sp" / "spectrum.json").exists()
