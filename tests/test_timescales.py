"""rfdm.experiments.timescales: draws, geometric means, slopes, the CLI, and (slow) the scaling of the
time-integrated model's timescales with n."""

import json
import math

import numpy as np
import pytest

from rfdm.cli import main
from rfdm.errors import InvalidParameterError
from rfdm.experiments.timescales import TimescalesConfig, compute_scaling
from rfdm.time_integrated import fit_slope as _slope

TINY = dict(model="time-integrated", d=6, psi_p=4.0, psi_n=(2.0, 4.0), t_rtol=1e-3, time_law="log-uniform",
            tau=tuple(np.logspace(-2, 7, 91)))


@pytest.fixture(scope="module")
def two_draws():
    return compute_scaling(TimescalesConfig(draws=2, **TINY))


def test_draw_zero_does_not_depend_on_the_number_of_draws(two_draws):
    one = compute_scaling(TimescalesConfig(draws=1, **TINY))
    first = [r for r in two_draws["rows"] if r["draw"] == 0]
    for a, b in zip(one["rows"], first):
        np.testing.assert_array_equal(a["eigenvalues"], b["eigenvalues"])
        assert a["tau_mem_curves"] == b["tau_mem_curves"]
    second = [r for r in two_draws["rows"] if r["draw"] == 1]
    assert not np.array_equal(first[0]["eigenvalues"], second[0]["eigenvalues"])


def test_geometric_means_and_slope_over_all_draws(two_draws):
    rows = two_draws["rows"]
    for j, n in enumerate(two_draws["n"]):
        vals = [r["tau_mem_curves"] for r in rows if r["n"] == n]
        assert two_draws["tau_mem_curves"][j] == pytest.approx(math.exp(np.mean(np.log(vals))), rel=1e-12)
    x = np.log([r["n"] for r in rows])
    y = np.log([r["tau_mem_curves"] for r in rows])
    assert two_draws["slope_tau_mem_curves"] == pytest.approx(np.polyfit(x, y, 1)[0], rel=1e-12)
    assert two_draws["slope_tau_mem_curves_stderr"] > 0


def test_slope_and_its_standard_error_on_a_known_line():
    """log tau = 0.7 + 1.2 log n + noise of standard deviation 0.05 (40 points): the fitted slope lies within
    4 of its standard errors of 1.2, and the error is the textbook sigma/sqrt(sum (x - xbar)^2) within 30 %."""
    rng = np.random.default_rng(0)
    n = np.repeat([10.0, 20.0, 40.0, 80.0], 10)
    x = np.log(n)
    tau = np.exp(0.7 + 1.2 * x + 0.05 * rng.standard_normal(n.size))
    slope, err = _slope(n, tau)
    assert abs(slope - 1.2) < 4 * err
    assert err == pytest.approx(0.05 / math.sqrt(np.sum((x - x.mean()) ** 2)), rel=0.3)
    assert _slope(np.array([10.0, 10.0]), np.array([1.0, 2.0])) == (None, None)


def test_cli_json_keys(tmp_path, capsys):
    rc = main(["timescales", "--model", "time-integrated", "--t-law", "log-uniform", "--d", "6", "--psi-p", "4",
               "--psi-n", "2,4", "--draws", "2", "--t-quad-tol", "1e-3", "--json", "--quiet",
               "--out", str(tmp_path / "ts")])
    obj = json.loads(capsys.readouterr().out)
    assert rc == 0
    for key in ("n", "tau_gen", "tau_mem", "slope_tau_mem", "slope_tau_mem_curves", "slope_tau_mem_curves_stderr",
                "draws", "tau_gen_curves"):
        assert key in obj
    assert len(obj["draws"]) == 4 and obj["config"]["time_law"] == "log-uniform"
    assert (tmp_path / "ts" / "timescales.png").stat().st_size > 0


@pytest.mark.parametrize("args", [["--t-law", "gamma"], ["--draws", "0"], ["--psi-n", "2,x"]])
def test_cli_bad_input(tmp_path, capsys, args):
    rc = main(["timescales", "--model", "time-integrated", "--d", "6", "--psi-p", "4", *args,
               "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("rfdm: error:") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_bad_time_law_in_the_library():
    with pytest.raises(InvalidParameterError, match="time law"):
        TimescalesConfig(time_law="gamma")


@pytest.mark.slow
def test_time_integrated_scaling_tau_mem_grows_like_n_tau_gen_flat():
    """The scaling figure of the time-integrated model (Q log-uniform on [0.01, 2], d = 12, psi_p = 64,
    n = 24, 48, 96, one draw; a few minutes).  Observed over two draws: slope of log tau_mem (loss curves)
    against log n 1.15 +- 0.14 (1.0-1.25 at d = 16); tau_gen from the population cluster 3.0-3.1 at every n;
    tau_gen from the test-loss curves 0.49-0.69.  Bounds: the curve slope within [0.8, 1.5] (theory 1; the
    per-draw scatter is ~0.15), tau_gen (spectrum) within 15 % of its mean, and tau_mem >> tau_gen."""
    res = compute_scaling(TimescalesConfig(model="time-integrated", time_law="log-uniform", d=12, psi_p=64.0,
                                           psi_n=(2.0, 4.0, 8.0)))
    assert 0.8 <= res["slope_tau_mem_curves"] <= 1.5
    tg = np.array(res["tau_gen"])
    assert np.all(np.abs(tg / tg.mean() - 1) < 0.15)
    assert min(res["tau_mem_curves"]) > 50 * max(res["tau_gen_curves"])
