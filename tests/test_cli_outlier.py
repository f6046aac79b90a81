"""The `rfdm outlier` command as a user runs it: the JSON contract, the files on disk, the relation
tau_outlier = psi_p/(Delta_t lambda_out), the empirical columns against a recomputation with the library from
the documented seeds, several times at once, and bad input (one line on stderr, exit status 2, no folder).

The theory's numbers themselves are checked against closed forms and exact spectra in test_outlier.py; here
the command must report what the library computes, in the documented places."""

from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest

from rfdm.cli import main
from rfdm.data import MixtureData
from rfdm.features import RandomFeatures, noise_averaged_statistics
from rfdm.outlier import Modes, OutlierProblem
from rfdm.spectrum import gep_coefficients

SMALL = ["--d", "40", "--psi-p", "4", "--psi-n", "2", "--quiet"]
KEYS = ("outlier_theory", "threshold_m_norm", "bulk_right_edge", "outlier_empirical", "overlap_theory",
        "overlap_empirical", "tau_outlier")
FILES = ("outlier.json", "outlier_vs_t.png", "phase_diagram.png", "outlier_training.png")


def run_json(capsys, args):
    rc = main(["outlier", *args, "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def library_theory(t, m_norm, psi_p=4.0, psi_n=2.0, sigma_x=1.0):
    c = gep_coefficients("tanh", t, sigma_x ** 2)
    pr = OutlierProblem(c, psi_n, Modes.asymptotic(psi_p, c))
    lam, ov = pr.outlier(m_norm)
    return {"outlier": lam, "overlap": ov, "edge": pr.bulk_right_edge(), "threshold": pr.threshold_m_norm()}


def assert_theory_matches(obj, ref, i=None):
    """The command against the library.  The edge search warm-starts Newton from earlier solutions, so its
    last digits depend on the call history (~1e-11 relative); the threshold, read at the edge where delta
    has a square-root singularity, inherits ~sqrt(1e-11) ~ 3e-6: tolerances 1e-9 and 1e-4."""
    get = (lambda k: obj[k]) if i is None else (lambda k: obj[k][i])
    assert get("bulk_right_edge") == pytest.approx(ref["edge"], rel=1e-9)
    assert get("threshold_m_norm") == pytest.approx(ref["threshold"], rel=1e-4)
    if ref["outlier"] is None:
        assert get("outlier_theory") is None and get("overlap_theory") is None and get("tau_outlier") is None
    else:
        assert get("outlier_theory") == pytest.approx(ref["outlier"], rel=1e-9)
        assert get("overlap_theory") == pytest.approx(ref["overlap"], rel=1e-8)


@pytest.fixture(scope="module")
def contract_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("outlier") / "run"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["outlier", *SMALL, "--m-norm", "2", "--t", "0.1", "--out", str(out_dir), "--json"])
    assert rc == 0
    return json.loads(buf.getvalue()), out_dir


def test_json_contract_and_files(contract_run):
    obj, out_dir = contract_run
    for key in KEYS + ("t", "config", "version", "seed", "files"):
        assert key in obj, key
    assert obj["t"] == 0.1 and obj["config"]["d"] == 40 and obj["config"]["m_norm"] == 2.0
    # without --empirical the empirical columns are null
    assert obj["outlier_empirical"] is None and obj["overlap_empirical"] is None
    assert_theory_matches(obj, library_theory(0.1, 2.0))
    # the theory's own consistency: above the threshold the outlier sits above the edge
    assert obj["threshold_m_norm"] < 2.0 and obj["outlier_theory"] > obj["bulk_right_edge"]
    assert 0 < obj["overlap_theory"] < 1
    for name in FILES:
        assert (out_dir / name).is_file() and (out_dir / name).stat().st_size > 0, name
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(FILES)  # no staging leftovers
    assert {k: obj["files"][k].split("/")[-1] for k in obj["files"]} == {
        "data": "outlier.json", "figure_t": "outlier_vs_t.png", "figure_phase": "phase_diagram.png",
        "figure_training": "outlier_training.png"}
    with open(out_dir / "outlier.json") as fh:
        saved = json.load(fh)
    assert saved["summary"]["outlier_theory"] == obj["outlier_theory"]
    assert saved["header"]["seed"] == 0 and saved["header"]["config"]["psi_p"] == 4.0


def test_tau_outlier_relation(contract_run):
    obj, out_dir = contract_run
    # tau_outlier = psi_p/(Delta_t lambda_out), Delta_t = 1 - e^{-2t}, written here
    delta = 1.0 - math.exp(-2 * 0.1)
    assert obj["tau_outlier"] == pytest.approx(4.0 / (delta * obj["outlier_theory"]), rel=1e-12)
    with open(out_dir / "outlier.json") as fh:
        saved = json.load(fh)
    assert saved["training"]["tau_outlier"] == pytest.approx(obj["tau_outlier"], rel=1e-12)


def test_empirical_columns_match_a_library_recomputation(tmp_path, capsys):
    """--empirical at d = 60: the exact U of the sample the command draws (seed derivation of the
    configuration: SeedSequence(seed).spawn(3) -> W, direction of m, data) rebuilt here with the library;
    top eigenvalue and squared overlap with W m/|W m| computed here with numpy."""
    d, seed, t, m = 60, 3, 0.2, 2.5
    obj = run_json(capsys, ["--d", str(d), "--psi-p", "4", "--psi-n", "2", "--quiet", "--m-norm", str(m),
                            "--t", str(t), "--seed", str(seed), "--empirical", "--out", str(tmp_path / "emp")])
    rng_w, rng_m, rng_x = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    law = MixtureData(d, m_norm=m, direction=rng_m.standard_normal(d))
    feats = RandomFeatures.sample(d, 4 * d, "tanh", rng_w)
    X = law.sample(2 * d, rng_x)
    ev, vec = np.linalg.eigh(noise_averaged_statistics(feats, X, t).U)
    wm = feats.W @ law.m
    assert obj["top_eigenvalue"] == pytest.approx(ev[-1], rel=1e-9)
    assert obj["overlap_empirical"] == pytest.approx((vec[:, -1] @ wm) ** 2 / (wm @ wm), rel=1e-8)
    # an outlier at d = 60: reported as empirical outlier since it is above the theory's bulk edge
    assert obj["top_eigenvalue"] > obj["bulk_right_edge"]
    assert obj["outlier_empirical"] == obj["top_eigenvalue"]
    # and it is near the theory: at d = 60 the sample-to-sample spread is ~10 % (1/sqrt(d) scaling of
    # the ~4 % measured at d = 300), so 35 % (3.5 sd) is the tolerance; the overlap within 0.15
    assert obj["outlier_empirical"] == pytest.approx(obj["outlier_theory"], rel=0.35)
    assert obj["overlap_empirical"] == pytest.approx(obj["overlap_theory"], abs=0.15)


def test_bulk_eigenvalue_is_not_reported_as_empirical_outlier(tmp_path, capsys):
    """Below the threshold (|m| = 0.5 < |m|_c ~ 1.05) the top eigenvalue of the exact U is a bulk eigenvalue;
    at finite d it scatters around the asymptotic edge (Tracy-Widom scale ~ d^{-2/3}, ~7 % at d = 60), so
    "top eigenvalue > asymptotic edge" is no criterion for an outlier.  Here (d = 60, seed 8) it is 2.5 %
    above the edge, and the very same W and cluster noise with m = 0 (no spike at all) give a top eigenvalue
    above the edge too; its eigenvector has no overlap with W m (0.04, against ~0.8 for a real outlier).
    The command must not report it as outlier_empirical.  KNOWN BUG (experiments/outlier.py, compute():
    `above = ev[-1] > row["bulk_right_edge"]`): this test fails until the criterion accounts for finite d."""
    d, seed, t = 60, 8, 0.1
    obj = run_json(capsys, ["--d", str(d), "--psi-p", "4", "--psi-n", "2", "--quiet", "--m-norm", "0.5",
                            "--t", str(t), "--seed", str(seed), "--empirical", "--out", str(tmp_path / "bulk")])
    assert obj["outlier_theory"] is None and obj["threshold_m_norm"] > 0.5
    assert obj["overlap_empirical"] < 0.1
    # the same sample without any spike (m = 0; same W, labels and cluster noise from the same streams)
    rng_w, rng_m, rng_x = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    feats = RandomFeatures.sample(d, 4 * d, "tanh", rng_w)
    law0 = MixtureData(d, m_norm=0.0, direction=rng_m.standard_normal(d))
    top0 = np.linalg.eigvalsh(noise_averaged_statistics(feats, law0.sample(2 * d, rng_x), t).U)[-1]
    assert top0 > obj["bulk_right_edge"]  # a spike-free sample also pokes out of the asymptotic edge
    assert abs(obj["top_eigenvalue"] - top0) < 0.02 * top0
    assert obj["outlier_empirical"] is None, (
        f"a bulk eigenvalue ({obj['top_eigenvalue']:.4g}, edge {obj['bulk_right_edge']:.4g}; "
        f"{top0:.4g} with m = 0) is reported as an empirical outlier")


def test_several_times_m_tilde_balanced_and_below_threshold(tmp_path, capsys):
    """--t with three values gives lists; |m| = m_tilde sqrt(d) = 0.4 sqrt(40) ~ 2.53 with sigma_x = 0.8 is
    above the threshold at t = 0.1 and 0.5 and below it at t = 2 (|m|_c ~ 5.2 there), where the outlier,
    its overlap and tau_outlier are null."""
    obj = run_json(capsys, [*SMALL, "--m-tilde", "0.4", "--sigma-x", "0.8", "--balanced", "--t", "0.1,0.5,2",
                            "--out", str(tmp_path / "multi")])
    assert obj["t"] == [0.1, 0.5, 2.0]
    assert obj["config"]["m_tilde"] == 0.4 and obj["config"]["balanced"] is True
    for key in KEYS:
        assert isinstance(obj[key], list) and len(obj[key]) == 3, key
    m = 0.4 * math.sqrt(40)
    for i, t in enumerate((0.1, 0.5, 2.0)):
        ref = library_theory(t, m, sigma_x=0.8)
        assert_theory_matches(obj, ref, i)
        if i < 2:
            assert ref["outlier"] is not None and obj["threshold_m_norm"][i] < m
            delta = 1 - math.exp(-2 * t)
            assert obj["tau_outlier"][i] == pytest.approx(4.0 / (delta * obj["outlier_theory"][i]), rel=1e-12)
        else:
            assert ref["outlier"] is None and obj["threshold_m_norm"][i] > m
    assert all((tmp_path / "multi" / name).is_file() for name in FILES)


BAD = [
    (["--sigma-x", "0"], "sigma_x"),
    (["--m-norm", "1", "--m-tilde", "1"], "exactly one"),
    (["--t", "0"], "t must be"),
    (["--t", "0.1,-1"], "--t"),
    (["--t", "inf"], "finite"),
    (["--balanced", "--d", "101", "--psi-n", "1"], "even"),
    (["--d", "41", "--psi-p", "4.5"], "whole"),
    (["--d", "41", "--psi-n", "2.5"], "whole"),
    (["--m-norm", "-1"], "m_norm"),
    (["--activation", "nope"], "activation"),
    (["--d", "0"], "d must"),
    (["--psi-p", "0"], "psi_p"),
]


@pytest.mark.parametrize("args,fragment", BAD)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, capsys, args, fragment):
    out_dir = tmp_path / "never"
    rc = main(["outlier", "--quiet", "--out", str(out_dir), *args])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfdm: error: "), err
    assert fragment in lines[0]
    assert not out_dir.exists()


def test_the_issue_case_outlier_is_found_against_the_paired_control(tmp_path, capsys):
    """d = 100, psi_p = 4, psi_n = 2, t = 0.05, |m| = 1.3 (threshold |m|_c = 1.04): the exact U's top eigenvalue
    5.46 (overlap 0.46 with W m; theory 5.61, 0.47) is an outlier.  The former edge-plus-margin rule reported
    none; the paired control (same W and noise, m = 0) finds it (rfdm.outlier.paired_outlier_test)."""
    import json

    rc = main(["outlier", "--d", "100", "--psi-p", "4", "--psi-n", "2", "--t", "0.05", "--m-norm", "1.3",
               "--empirical", "--out", str(tmp_path), "--json", "--quiet"])
    assert rc == 0
    res = json.loads(capsys.readouterr().out)
    assert res["threshold_m_norm"] < 1.3
    assert res["outlier_empirical"] is not None
    # the exact top eigenvalue within 5 % of the d -> infinity theory (finite-d shift O(d^{-1/2})), the overlap
    # within 0.1 (its fluctuation at d = 100)
    assert abs(res["outlier_empirical"] - res["outlier_theory"]) < 0.05 * res["outlier_theory"]
    assert abs(res["overlap_empirical"] - res["overlap_theory"]) < 0.1
