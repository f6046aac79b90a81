"""B25-sec2-nets (rfdm.published.b25_sec2_nets) and the train-net sweep kind (rfdm.experiments.train_net).

Torch-free: the pooled log-log slope against scipy's linregress on synthetic brackets, the verdicts of the claim
on synthetic measurements with a known exponent, the figure's registration and its one-sentence refusal without
PyTorch.  With torch: the figure at a tiny setting (seconds) and a two-point `rfdm sweep run` + `collect` of the
train-net kind, whose collected numbers must equal direct train_net runs of the same configurations.
"""

import json
import math

import numpy as np
import pytest
from scipy import stats

from rfdm import registry
from rfdm.errors import InvalidParameterError
from rfdm.published import FIGURES, b25_sec2_nets as nets
from rfdm.published.claims import AGREES, DIFFERS, NO_PUBLISHED


def synthetic_brackets(ns, seeds, exponent, rng, grid=10 ** (1 / 8), jitter=0.1, c=20.0):
    """τ = c n^exponent e^{jitter z} read on a log grid of ratio ``grid`` as the bracket [s₋, s₊] of grid points
    around it (the way train_net brackets τ_mem between evaluated steps)."""
    out = np.empty((seeds, len(ns)))
    brackets = []
    for s in range(seeds):
        row = []
        for k, n in enumerate(ns):
            tau = c * n ** exponent * math.exp(jitter * rng.standard_normal())
            j = math.ceil(math.log(tau) / math.log(grid))
            lo, hi = grid ** (j - 1), grid ** j
            row.append([lo, hi])
            out[s, k] = nets.bracket_middle([lo, hi])
        brackets.append(row)
    return out, brackets


def test_bracket_middle_is_the_geometric_middle():
    assert nets.bracket_middle([4, 9]) == pytest.approx(6.0)
    assert nets.bracket_middle([0, 9]) == pytest.approx(3.0)  # a lower end 0 counts as step 1
    assert math.isnan(nets.bracket_middle(None))


def test_pooled_slope_matches_scipy_linregress_on_synthetic_brackets():
    rng = np.random.default_rng(7)
    ns = np.array([16, 24, 32, 64, 128], float)
    mid, _ = synthetic_brackets(ns, 3, 0.8, rng)
    mid[1, 4] = np.nan  # a run that did not memorize is left out
    f = nets.pooled_slope(np.tile(ns, (3, 1)), mid)
    x, y = np.log(np.tile(ns, (3, 1))).ravel(), np.log(mid).ravel()
    ok = np.isfinite(y)
    ref = stats.linregress(x[ok], y[ok])
    # the same least-squares problem: equal to rounding
    assert f["slope"] == pytest.approx(ref.slope, rel=1e-10)
    assert f["stderr"] == pytest.approx(ref.stderr, rel=1e-10)
    assert (f["points"], f["left_out"]) == (14, 1)
    # and against numpy's polyfit with its covariance (residual variance / (N - 2))
    coef, cov = np.polyfit(x[ok], y[ok], 1, cov="unscaled")
    resid = y[ok] - np.polyval(coef, x[ok])
    assert f["stderr"] == pytest.approx(math.sqrt(cov[0, 0] * (resid @ resid) / (ok.sum() - 2)), rel=1e-8)
    # the fitted exponent recovers the true 0.8: jitter 0.1 in log τ and the bracket quantisation (≤ log 1.33 / 2
    # = 0.14) over log 8 = 2.1 of range give a standard error ≈ 0.03; 4 standard errors is a wide band
    assert abs(f["slope"] - 0.8) < 4 * f["stderr"] + 0.02


def _synthetic_measurement(exponent_n, exponent_w, rng, seeds=3):
    ns = np.array([16, 24, 32, 64, 128], float)
    widths = np.array([128, 192, 256], float)
    mem, _ = synthetic_brackets(ns, seeds, exponent_n, rng, jitter=0.03)
    gen, _ = synthetic_brackets(ns, seeds, 0.0, rng, jitter=0.03)
    wmem, _ = synthetic_brackets(widths, seeds, exponent_w, rng, jitter=0.03, c=1e5)
    wgen, _ = synthetic_brackets(widths, seeds, -1.0, rng, jitter=0.03, c=1e5)
    rf, _ = synthetic_brackets(ns, seeds, 1.0, rng, jitter=0.03)
    return {"n": ns, "widths": widths, "seeds": list(range(seeds)), "tau_mem_mid": mem, "tau_gen_mid": gen,
            "tau_mem_lo": mem / 1.1, "tau_mem_hi": mem * 1.1, "width_tau_mem_mid": wmem, "width_tau_gen_mid": wgen,
            "rf_tau_mem": rf, "rf_tau_gen": rf ** 0.5, "rf_converged": True,
            "f_mem": np.full((seeds, ns.size, 4), 0.5)}


def test_claim_agrees_with_a_linear_law_and_differs_from_a_square_root_with_its_reason():
    cfg = nets.PRESETS["quick"]
    m = _synthetic_measurement(1.0, -1.0, np.random.default_rng(1))
    claim = nets.build_claim(m, cfg, {"preset": "synthetic"})
    by = {c.name: c for c in claim.checks}
    assert by["slope of log τ_mem against log n (network)"].verdict == AGREES
    assert by["slope of log τ_gen against log n (network)"].verdict == AGREES
    assert claim.verdict == AGREES, claim.reason
    # τ_mem ∝ n^0.5: half the published exponent, far outside 2 standard errors (≈ 0.03 here) or one grid step
    # (log 1.33 / log 8 = 0.14), so it differs, with the stated reason
    m = _synthetic_measurement(0.5, -1.0, np.random.default_rng(2))
    claim = nets.build_claim(m, cfg, {"preset": "synthetic"})
    check = next(c for c in claim.checks if c.name == "slope of log τ_mem against log n (network)")
    assert check.verdict == DIFFERS and "sub-linearly" in check.reason
    assert claim.verdict == DIFFERS and "sub-linearly" in claim.reason
    rf = next(c for c in claim.checks if c.name.startswith("slope of log τ_mem against log n, random features"))
    assert rf.verdict == NO_PUBLISHED and abs(rf.measured_value - 1.0) < 0.2
    json.dumps(claim.to_report_entry())


def test_registered_outside_the_quick_reproduce():
    assert FIGURES["B25-sec2-nets"] == "b25_sec2_nets"
    assert "B25-sec2-nets" in registry.NOT_IN_REPRODUCE
    assert any(f.id == "B25-sec2-nets" for f in registry.PUBLISHED)
    registry.get_figure("B25-sec2-nets")


def test_without_torch_one_sentence(monkeypatch, tmp_path, capsys):
    import importlib.util

    from rfdm.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    with pytest.raises(InvalidParameterError) as info:
        nets.compute("quick", 0)
    msg = str(info.value)
    assert "PyTorch" in msg and msg.endswith(".") and "\n" not in msg
    with pytest.raises(InvalidParameterError):
        nets.compute("no-such-preset", 0)
    # from the command line: exit status 2, the sentence on one line, nothing written
    assert main(["figure", "B25-sec2-nets", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert "PyTorch" in err and err.count("\n") == 1 and not (tmp_path / "x").exists()


TINY = dict(nets.PRESETS["quick"], ns=(8, 16, 32), seeds=1, steps=120, widths=(64, 96), n_width=8, width=64,
            evals_per_decade=4, n_samples=24, sample_steps=8, eval_noise=1, n_test=48, rf_p=96)


def test_tiny_figure_returns_the_claim_with_finite_numbers():
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    r = nets.compute_setting(TINY, 0, "tiny")
    claim = r["claim"]
    steps = r["steps"]
    assert steps[0] == 0 and steps[-1] == TINY["steps"]
    assert r["f_mem"].shape == (1, 3, steps.size) and np.all((r["f_mem"] >= 0) & (r["f_mem"] <= 1))
    assert np.all(np.isfinite(r["quality"])) and np.all(r["quality"] > 0)
    # the RF model's exact timescales: finite, positive, converged at every n
    assert r["rf_converged"] and np.all(np.isfinite(r["rf_tau_mem"])) and np.all(r["rf_tau_mem"] > 0)
    rf = next(c for c in claim.checks if c.name.startswith("slope of log τ_mem against log n, random features"))
    assert rf.measured_value is not None
    # every check has a finite number or says why not; the entry is JSON
    for c in claim.checks:
        assert c.measured_value is not None or c.reason, c.name
    entry = json.loads(json.dumps(claim.to_report_entry()))
    assert entry["id"] == "B25-sec2-nets" and entry["verdict"] in ("agrees", "differs", "not converged")
    from matplotlib.figure import Figure

    nets.plot(r, Figure(figsize=(13, 4.8)))


SWEEP = """
[sweep]
kind = "train-net"
out = "res"
seed = 5
[fixed]
steps = 12
width = 16
n_samples = 16
sample_steps = 5
eval_noise = 1
n_test = 32
evals_per_decade = 2
[grid]
n_train = [8, 16]
"""


def test_train_net_sweep_run_and_collect(tmp_path, monkeypatch, capsys):
    pytest.importorskip("torch")
    xr = pytest.importorskip("xarray")
    from rfdm import sweep as sw
    from rfdm.cli import main
    from rfdm.nets import TrainNetConfig, train_net

    monkeypatch.chdir(tmp_path)
    cfg = tmp_path / "nets.toml"
    cfg.write_text(SWEEP)
    assert main(["sweep", "run", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["computed"] == 2
    target = tmp_path / "x.nc"
    assert main(["sweep", "collect", str(tmp_path / "res"), "--output", str(target), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dims"] == {"n_train": 2}
    ds = xr.open_dataset(target)
    points = sw.load_config(cfg).points
    for k, p in enumerate(points):
        n = int(ds["n_train"].values[k])
        assert int(ds["point_seed"].values[k]) == p.seed
        # an independent path: train_net on the same configuration gives the collected numbers
        direct = train_net(TrainNetConfig(n_train=n, steps=12, width=16, n_samples=16, sample_steps=5, eval_noise=1,
                                          n_test=32, evals_per_decade=2, seed=p.seed))
        assert float(ds["f_mem_final"].values[k]) == pytest.approx(direct["f_mem"][-1], abs=0)
        assert float(ds["train_loss_final"].values[k]) == pytest.approx(direct["train_loss"][-1], rel=1e-12)
        assert float(ds["quality_best"].values[k]) == pytest.approx(min(direct["quality"]), rel=1e-12)
        assert 0.0 <= float(ds["f_mem_final"].values[k]) <= 1.0
        assert np.isfinite(float(ds["test_loss_final"].values[k]))
    assert "description" in ds["tau_mem"].attrs
    ds.close()
