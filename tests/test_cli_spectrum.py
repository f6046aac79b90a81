"""The `rfdm spectrum` command as a user runs it: the JSON contract, files on disk, the empirical
comparison at a finite dimension D, and bad input (one line on stderr, exit status 2, nothing written).

The numbers in the JSON are checked against independent computations where that is cheap: the atom
weight against the rank of U, the bulk masses against an own integration of the printed density, tau_gen
against its definition, the printed eigenvalues against the exact noise-averaged U rebuilt from the
documented seeds, and ks_empirical against an own KS computation from the printed density."""

import json
import math

import numpy as np
import pytest

import rfdm
from rfdm.cli import main
from rfdm.results import read_npz

SMALL = ["spectrum", "--psi-p", "4", "--psi-n", "2", "--t", "0.1", "--quiet"]


def run_json(capsys, args):
    rc = main(args + ["--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def empirical_run(tmp_path_factory):
    """One run with --empirical-d 16 (p = 64, n = 32), shared by the tests below."""
    import contextlib
    import io
    out_dir = tmp_path_factory.mktemp("spectrum") / "run"
    buf_out, buf_err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(buf_out), contextlib.redirect_stderr(buf_err):
        rc = main(SMALL + ["--empirical-d", "16", "--seed", "5", "--json", "--out", str(out_dir)])
    return {"rc": rc, "out": buf_out.getvalue(), "err": buf_err.getvalue(), "dir": out_dir}


def _cdf_from_json(obj):
    """Theoretical CDF from the printed density (trapezoid on each bulk's grid, with rho = 0 at the edges)
    and atoms.  Accuracy ~1e-4 (square-root edges, >= 64 points per bulk)."""
    grid, dens = np.array(obj["grid"]), np.array(obj["density"])
    pieces = []
    for b in obj["bulks"]:
        sel = (grid >= b["left"]) & (grid <= b["right"])
        x = np.concatenate([[b["left"]], grid[sel], [b["right"]]])
        y = np.concatenate([[0.0], dens[sel], [0.0]])
        cum = np.concatenate([[0.0], np.cumsum(0.5 * (y[1:] + y[:-1]) * np.diff(x))])
        pieces.append((x, cum))

    def cdf(v, left_limit=False):
        v = np.asarray(v, float)
        out = np.zeros_like(v)
        for a in obj["atoms"]:
            out += a["weight"] * ((v > a["position"]) if left_limit else (v >= a["position"]))
        for x, cum in pieces:
            out += np.interp(v, x, cum, left=0.0, right=cum[-1])
        return out

    return cdf, pieces


def test_json_contract(empirical_run):
    assert empirical_run["rc"] == 0, empirical_run["err"]
    obj = json.loads(empirical_run["out"])
    for key in ("atoms", "bulks", "total_mass", "tau_gen", "tau_mem", "grid", "density", "solver",
                "ks_empirical"):
        assert key in obj, key
    assert isinstance(obj["atoms"], list) and isinstance(obj["bulks"], list)
    assert all(set(a) == {"position", "weight"} for a in obj["atoms"])
    assert all({"left", "right", "mass"} <= set(b) for b in obj["bulks"])
    assert {"max_residual", "converged"} <= set(obj["solver"])
    assert obj["solver"]["converged"] is True and obj["solver"]["max_residual"] < 1e-8
    assert len(obj["grid"]) == len(obj["density"]) > 0
    assert 0.0 <= obj["ks_empirical"] <= 1.0


def test_json_numbers_against_independent_facts(empirical_run):
    """psi_p = 4, psi_n = 2: U has rank n + d = 3d of p = 4d, so one atom at s2 of weight 1/4 (to 1e-9);
    bulks sorted and disjoint, their masses plus the atom sum to 1 (1e-6), each mass equal to an own
    trapezoid integral of the printed density (2e-3 relative: square-root edges on >= 64 points);
    density >= 0 and every grid point inside a bulk; tau_gen = psi_p/(Delta <lambda>) with <lambda> the mean
    of the last bulk (own trapezoid integration of the printed density, 2e-3) and tau_mem =
    psi_p/(Delta lambda_left) of one of the other bulks."""
    obj = json.loads(empirical_run["out"])
    s2 = rfdm.spectrum.gep_coefficients("tanh", 0.1).s2
    delta = -math.expm1(-0.2)
    assert len(obj["atoms"]) == 1
    assert obj["atoms"][0]["weight"] == pytest.approx(1 - 3 / 4, abs=1e-9)
    assert obj["atoms"][0]["position"] == pytest.approx(s2, rel=1e-12)
    bulks = obj["bulks"]
    assert all(b["left"] < b["right"] for b in bulks)
    assert all(b1["right"] < b2["left"] for b1, b2 in zip(bulks[:-1], bulks[1:]))
    total = sum(b["mass"] for b in bulks) + obj["atoms"][0]["weight"]
    assert total == pytest.approx(1.0, abs=1e-6)
    assert obj["total_mass"] == pytest.approx(total, abs=1e-12)
    grid, dens = np.array(obj["grid"]), np.array(obj["density"])
    assert np.all(dens >= 0)
    inside = np.zeros(grid.size, bool)
    for b in bulks:
        inside |= (grid > b["left"]) & (grid < b["right"])
    assert inside.all()
    _, pieces = _cdf_from_json(obj)
    for b, (_, cum) in zip(bulks, pieces):
        assert cum[-1] == pytest.approx(b["mass"], rel=2e-3)
    sel = (grid >= bulks[-1]["left"]) & (grid <= bulks[-1]["right"])
    x = np.concatenate([[bulks[-1]["left"]], grid[sel], [bulks[-1]["right"]]])
    y = np.concatenate([[0.0], dens[sel], [0.0]])
    mean = np.sum(0.5 * (x[1:] * y[1:] + x[:-1] * y[:-1]) * np.diff(x)) / np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x))
    assert obj["tau_gen"] == pytest.approx(4 / (delta * mean), rel=2e-3)
    assert any(obj["tau_mem"] == pytest.approx(4 / (delta * b["left"]), rel=1e-12) for b in bulks[:-1])


def test_files_written_and_consistent(empirical_run):
    out_dir = empirical_run["dir"]
    obj = json.loads(empirical_run["out"])
    for name in ("spectrum.npz", "spectrum.json", "spectrum.png"):
        assert (out_dir / name).stat().st_size > 0, name
    assert (out_dir / "spectrum.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out_dir.iterdir()) == ["spectrum.json", "spectrum.npz", "spectrum.png"]
    on_disk = json.loads((out_dir / "spectrum.json").read_text())
    for key in ("atoms", "bulks", "total_mass", "tau_gen", "tau_mem", "ks_empirical", "solver"):
        assert on_disk[key] == obj[key], key
    arrays, header = read_npz(out_dir / "spectrum.npz")
    np.testing.assert_array_equal(arrays["grid"], obj["grid"])
    np.testing.assert_array_equal(arrays["density"], obj["density"])
    assert header["seed"] == 5 and header["config"]["empirical_d"] == 16
    assert header["version"] == rfdm.__version__


def test_empirical_eigenvalues_and_ks(empirical_run):
    """The saved eigenvalues are those of the exact noise-averaged U at D = 16 built from the documented
    seed derivation (SeedSequence(seed).spawn(2): W, then X), to 1e-10 relative; ks_empirical equals an own
    KS distance (both one-sided limits at every eigenvalue) against the CDF integrated here from the printed
    density, within 2e-3 (accuracy of that CDF ~1e-4 plus the grid's resolution of the bulks)."""
    out_dir = empirical_run["dir"]
    obj = json.loads(empirical_run["out"])
    arrays, _ = read_npz(out_dir / "spectrum.npz")
    ev = np.sort(arrays["eigenvalues"])
    assert ev.size == 64
    rng_w, rng_x = (np.random.default_rng(s) for s in np.random.SeedSequence(5).spawn(2))
    features = rfdm.RandomFeatures.sample(16, 64, "tanh", rng_w)
    X = rfdm.GaussianData(16).sample(32, rng_x)
    ev_ref = np.linalg.eigvalsh(rfdm.noise_averaged_statistics(features, X, 0.1).U)
    np.testing.assert_allclose(ev, ev_ref, rtol=1e-10, atol=1e-12 * ev_ref.max())
    cdf, _ = _cdf_from_json(obj)
    k = np.arange(1, ev.size + 1)
    own = max(np.max(np.abs(cdf(ev) - k / ev.size)), np.max(np.abs(cdf(ev, left_limit=True) - (k - 1) / ev.size)))
    assert obj["ks_empirical"] == pytest.approx(own, abs=2e-3)


def test_without_empirical_d_no_ks(tmp_path, capsys):
    """Also: --quiet means nothing on stderr; the figure code must not emit a warning (it did, from
    matplotlib's legend(), when there is neither an atom nor an empirical histogram to label)."""
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        obj = run_json(capsys, SMALL + ["--psi-n", "8", "--out", str(tmp_path / "r")])
    assert "ks_empirical" not in obj
    # psi_n > psi_p - 1: rank(U) = p, no atom, and the bulks carry all the mass
    assert obj["atoms"] == []
    assert sum(b["mass"] for b in obj["bulks"]) == pytest.approx(1.0, abs=1e-6)
    arrays, _ = read_npz(tmp_path / "r" / "spectrum.npz")
    assert "eigenvalues" not in arrays
    assert [str(w.message) for w in caught] == []


@pytest.mark.parametrize("extra", [
    ["--psi-p", "0"],
    ["--psi-n=-2"],
    ["--psi-p", "nan"],
    ["--t", "0"],
    ["--t=-0.5"],
    ["--sigma-spectrum", "1,2", "--sigma-weights", "0.5,0.6"],
    ["--sigma-spectrum", "1,2", "--sigma-weights", "1"],
    ["--sigma-spectrum=-1,2"],
    ["--sigma-spectrum", "1,abc"],
    ["--activation", "softsign"],
    ["--empirical-d", "3", "--psi-p", "4.5"],
    ["--empirical-d", "0"],
], ids=["psi_p=0", "psi_n<0", "psi_p=nan", "t=0", "t<0", "weights-sum", "weights-count", "negative-eigenvalue",
        "bad-list", "unknown-activation", "psi_p*D-not-integer", "D=0"])
def test_bad_input(tmp_path, capsys, extra):
    out_dir = tmp_path / "never"
    # later options override SMALL's
    rc = main(SMALL + extra + ["--json", "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rfdm: error:"), err
    assert not out_dir.exists()


@pytest.mark.parametrize("extra", [
    ["--activation", "relu", "--t", "0.01"],   # the relu coefficients at small t
    ["--activation", "linear"],                # the run-time checks with s2 = 0
], ids=["relu-t0.01", "linear"])
def test_valid_activations_run(tmp_path, capsys, extra):
    """Every registered activation is valid input; a correct result must exit with status 0."""
    rc = main(SMALL + extra + ["--out", str(tmp_path / "r")])
    _, err = capsys.readouterr()
    assert rc == 0, err
