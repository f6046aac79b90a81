"""The `rfdm sample` and `rfdm regimes` commands as a user runs them: the JSON contract, files on disk,
reproducibility, and bad input (one sentence, exit status 2, nothing written)."""

import json
import math

import numpy as np
import pytest

import rfdm
from rfdm.cli import main
from rfdm.experiments import sampling as exp
from rfdm.results import read_npz

TINY_RF = ["--d", "6", "--psi-p", "4", "--n-train", "12", "--n-samples", "120", "--steps", "40", "--rf-times", "4",
           "--quiet"]
SAMPLE_KEYS = ("f_mem", "f_mem_ci", "mode_fractions", "mean_along_m", "var_along_m", "var_across_m",
               "distance_to_target")


def run_json(capsys, args):
    rc = main(args + ["--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def run_error(capsys, args, tmp_path):
    out_dir = tmp_path / "never"
    rc = main(args + ["--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    assert err.startswith("rfdm: error: ") and err.count("\n") == 1, err
    assert not out_dir.exists()
    return err


def test_sample_json_contract_and_files(tmp_path, capsys):
    out_dir = tmp_path / "run"
    obj = run_json(capsys, ["sample", *TINY_RF, "--out", str(out_dir)])
    for key in SAMPLE_KEYS + ("gaussian_kl", "kl_null", "config", "version", "seed", "files"):
        assert key in obj
    assert obj["mode_fractions"] is None and obj["gaussian_kl"] is not None  # Gaussian data
    lo, hi = obj["f_mem_ci"]
    assert 0 <= lo <= obj["f_mem"] <= hi <= 1
    assert obj["config"]["score"] == "rf" and obj["config"]["p"] == 24 and obj["config"]["n_train"] == 12
    arrays, header = read_npz(out_dir / "sample.npz")
    assert header["version"] == rfdm.__version__ and header["seed"] == 0
    assert arrays["samples"].shape == (120, 6) and arrays["training"].shape == (12, 6)
    assert header["summary"]["f_mem"] == obj["f_mem"]
    assert (out_dir / "sample.png").stat().st_size > 0
    saved = json.loads((out_dir / "sample.json").read_text())
    assert saved["distance_to_target"] == obj["distance_to_target"]


def test_sample_cli_matches_library(tmp_path, capsys):
    obj = run_json(capsys, ["sample", *TINY_RF, "--seed", "3", "--out", str(tmp_path)])
    cfg = exp.SampleConfig(d=6, psi_p=4, n_train=12, n_samples=120, steps=40, rf_times=4, seed=3)
    res = exp.compute(cfg)
    assert obj["distance_to_target"] == pytest.approx(res["summary"]["distance_to_target"], rel=1e-12)
    assert obj["f_mem"] == res["summary"]["f_mem"]


def test_same_seed_same_numbers_other_seed_differs(tmp_path, capsys):
    args = ["sample", "--score", "exact", "--data", "mixture", "--d", "5", "--n-samples", "200", "--steps", "50",
            "--quiet"]
    a = run_json(capsys, args + ["--out", str(tmp_path / "a")])
    b = run_json(capsys, args + ["--out", str(tmp_path / "b")])
    c = run_json(capsys, args + ["--seed", "1", "--out", str(tmp_path / "c")])
    assert a["var_along_m"] == b["var_along_m"] and a["distance_to_target"] == b["distance_to_target"]
    assert a["var_along_m"] != c["var_along_m"]


def test_mixture_exact_score_statistics(tmp_path, capsys):
    """Exact score on the mixture with |m| = 2 sqrt(d), d = 6: balanced modes (binomial s.e. 0.016 at n = 1000),
    within-mode variance along m and across it about Gamma^2_{t_min} = 1 (chi-square s.e. ~0.065 per mode)."""
    obj = run_json(capsys, ["sample", "--score", "exact", "--data", "mixture", "--m-tilde", "2", "--d", "6",
                            "--n-samples", "1000", "--steps", "200", "--quiet", "--out", str(tmp_path)])
    fr = obj["mode_fractions"]
    assert abs(fr[0] - 0.5) < 4 * 0.016 and fr[0] + fr[1] == pytest.approx(1.0)
    mu = 2 * math.sqrt(6) * math.exp(-0.01)
    assert obj["mean_along_m"][0] == pytest.approx(mu, abs=0.2) and obj["mean_along_m"][1] == pytest.approx(-mu, abs=0.2)
    for v in obj["var_along_m"] + obj["var_across_m"]:
        assert v == pytest.approx(1.0, abs=0.25)
    assert obj["f_mem"] < 0.05


def test_data_file_and_empirical_score(tmp_path, capsys):
    pts = np.random.default_rng(0).standard_normal((10, 5)) * 2.0
    path = tmp_path / "points.npy"
    np.save(path, pts)
    obj = run_json(capsys, ["sample", "--score", "empirical", "--data", str(path), "--n-samples", "100",
                            "--steps", "80", "--quiet", "--out", str(tmp_path / "o")])
    assert obj["config"]["d"] == 5 and obj["config"]["n_train"] == 10
    assert obj["f_mem"] > 0.8  # 10 points in d = 5: every sample collapses onto one (t_C ~ 0.9 >> t_min)
    obj = run_json(capsys, ["sample", "--score", "empirical", "--data", str(path), "--n-train", "4",
                            "--n-samples", "50", "--steps", "40", "--quiet", "--out", str(tmp_path / "p")])
    assert obj["config"]["n_train"] == 4


def test_time_integrated_score_runs(tmp_path, capsys):
    obj = run_json(capsys, ["sample", "--score", "rf-time-integrated", "--d", "4", "--psi-p", "4", "--n-train", "8",
                            "--n-samples", "60", "--steps", "30", "--quiet", "--out", str(tmp_path)])
    assert obj["config"]["score"] == "rf-time-integrated" and 0 <= obj["f_mem"] <= 1


@pytest.mark.parametrize("args,match", [
    (["--steps", "0"], "steps must be a positive integer"),
    (["--steps", "-2"], "steps must be a positive integer"),
    (["--T", "0.01", "--t-min", "0.01"], "must be larger than t_min"),
    (["--T", "0.5", "--t-min", "1"], "must be larger than t_min"),
    (["--n-train", "1"], "n_train >= 2"),
    (["--score", "magic"], "unknown score 'magic'"),
    (["--study", "everything"], "unknown study"),
    (["--tau", "1,10"], "one value"),
    (["--tau", "-1"], "--tau values must be >= 0"),
    (["--data", "gaussian", "--m-norm", "2"], "for --data mixture"),
    (["--data", "mixture", "--m-norm", "2", "--m-tilde", "1"], "either --m-norm or --m-tilde"),
    (["--data", "nothing.csv"], "must be gaussian, mixture or a .npy file"),
    (["--data", "missing.npy"], "cannot read data file"),
    (["--data", "missing.npy", "--score", "exact"], "exact score needs"),
    (["--grid", "cosine"], "unknown time grid"),
    (["--integrator", "rk4"], "unknown integrator"),
    (["--study", "memorization", "--score", "exact"], "drop --data and --score"),
    (["--threshold", "0"], "threshold must be > 0"),
    (["--n-samples", "1"], "n_samples >= 2"),
])
def test_sample_bad_input(tmp_path, capsys, args, match):
    err = run_error(capsys, ["sample", "--quiet", *args], tmp_path)
    assert match in err


def test_sample_output_must_be_a_folder(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    rc = main(["sample", "--quiet", "--out", str(f)])
    _, err = capsys.readouterr()
    assert rc == 2 and "is not a folder" in err
    assert f.read_text() == "x"


def test_regimes_json_contract(tmp_path, capsys):
    out_dir = tmp_path / "reg"
    obj = run_json(capsys, ["regimes", "--d", "4", "--n-train", "20", "--n-pairs", "300", "--n-trajectories", "100",
                            "--steps", "60", "--quiet", "--out", str(out_dir)])
    for key in ("t_speciation", "t_collapse", "phi_theory", "phi_simulated", "phi_t", "collapse_simulated",
                "collapse_weights", "t_collapse_isotropic", "config", "version", "seed", "files"):
        assert key in obj
    # default |m| = sqrt(d) = 2, sigma_x = 1: t_S = (1/2) log(d + 1)
    assert obj["t_speciation"] == pytest.approx(0.5 * math.log(5.0), rel=1e-12)
    assert obj["t_collapse_isotropic"] == pytest.approx(0.5 * math.log1p(1 / math.expm1(2 * math.log(20) / 4)))
    n = len(obj["phi_t"])
    assert len(obj["phi_theory"]) == n == len(obj["phi_simulated"])
    assert any(t == pytest.approx(obj["t_speciation"]) for t in obj["phi_t"])
    assert all(0 <= v <= 1 for v in obj["phi_simulated"])
    # 300 pairs: the simulated curve follows the formula within 5 binomial s.e. (+0.02 discretisation)
    for sim, th, se in zip(obj["phi_simulated"], obj["phi_theory"], obj["phi_simulated_stderr"]):
        assert abs(sim - th) < 5 * se + 0.02
    assert (out_dir / "regimes.png").stat().st_size > 0 and (out_dir / "regimes.npz").exists()


@pytest.mark.parametrize("args,match", [
    (["--n-train", "1"], "n_train >= 2"),
    (["--steps", "0"], "steps must be a positive integer"),
    (["--T", "0.001"], "must be larger than t_min"),
    (["--m-norm", "1", "--m-tilde", "1"], "either --m-norm or --m-tilde"),
    (["--sigma-x", "0"], "sigma_x must be > 0"),
])
def test_regimes_bad_input(tmp_path, capsys, args, match):
    err = run_error(capsys, ["regimes", "--quiet", *args], tmp_path)
    assert match in err


def test_studies_run_and_write(tmp_path, capsys):
    mem = run_json(capsys, ["sample", "--study", "memorization", "--d", "4", "--psi-p", "16", "--n-train", "6",
                            "--tau", "1,inf", "--n-samples", "60", "--steps", "40", "--rf-times", "3", "--quiet",
                            "--out", str(tmp_path / "m")])
    assert len(mem["f_mem"]) == 2 and mem["tau"][-1] == "inf"
    assert mem["f_mem_empirical"] >= 0.5 and "tau_mem_empirical" in mem
    assert (tmp_path / "m" / "memorization.png").exists()
    two = run_json(capsys, ["sample", "--study", "two-regimes", "--d", "4", "--psi-p", "8", "--n-train", "64",
                            "--n-samples", "100", "--steps", "40", "--rf-times", "3", "--quiet",
                            "--out", str(tmp_path / "t")])
    assert set(two["regimes"]) == {"norm", "tilde"}
    for r in two["regimes"].values():
        assert r["closer_to"] in ("mixture", "gaussian") and len(r["mode_fractions"]) == 2
    assert (tmp_path / "t" / "two_regimes.png").exists()
