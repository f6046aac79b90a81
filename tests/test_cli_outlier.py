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


def test_below_threshold_reports_no_outlier(tmp_path, capsys):
    obj = run_json(capsys, [*SMALL, "--m-norm", "0.5", "--out", str(tmp_path / "below")])
    assert obj["threshold_m_norm"] > 0.5
    assert obj["outlier_theory"] is None and obj["overlap_theory"] is None and obj["tau_outlier"] is None
    assert_theory_matches(obj, library_theory(0.1, 0.5))
    assert all((tmp_path / "below" / name).is_file() for name in FILES)


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


def test_several_times_give_lists(contract_run, tmp_path, capsys):
    single, _ = contract_run
    obj = run_json(capsys, [*SMALL, "--m-norm", "2", "--t", "0.1,0.5,2", "--out", str(tmp_path / "multi")])
    assert obj["t"] == [0.1, 0.5, 2.0]
    for key in KEYS:
        assert isinstance(obj[key], list) and len(obj[key]) == 3, key
    # the entry at t = 0.1 is the single-time run's
    for key in ("outlier_theory", "bulk_right_edge", "overlap_theory", "tau_outlier"):
        assert obj[key][0] == pytest.approx(single[key], rel=1e-9)
    for i, t in enumerate((0.1, 0.5, 2.0)):
        ref = library_theory(t, 2.0)
        assert_theory_matches(obj, ref, i)
        if ref["outlier"] is not None:
            assert obj["tau_outlier"][i] == pytest.approx(4.0 / ((1 - math.exp(-2 * t)) * obj["outlier_theory"][i]),
                                                          rel=1e-12)


def test_m_tilde_and_balanced(tmp_path, capsys):
    obj = run_json(capsys, [*SMALL, "--m-tilde", "0.4", "--sigma-x", "0.8", "--balanced", "--t", "0.3",
                            "--out", str(tmp_path / "mt")])
    assert obj["config"]["m_tilde"] == 0.4 and obj["config"]["balanced"] is True
    assert_theory_matches(obj, library_theory(0.3, 0.4 * math.sqrt(40), sigma_x=0.8))


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
