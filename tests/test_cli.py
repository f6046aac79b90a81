"""The `rfdm dynamics` command as a user runs it: the JSON contract, files on disk, reproducibility,
and bad input (one sentence, exit status 2, nothing written)."""

import json
import math

import numpy as np
import pytest

import rfdm
from rfdm.cli import main, parse_tau
from rfdm.experiments import dynamics as exp
from rfdm.results import read_npz

SMALL = ["--d", "8", "--psi-p", "4", "--psi-n", "2", "--t", "0.1", "--quiet"]


def run_json(capsys, args):
    rc = main(args + ["--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    return json.loads(out)


def test_json_contract_and_files(tmp_path, capsys):
    out_dir = tmp_path / "run"
    obj = run_json(capsys, ["dynamics", *SMALL, "--tau", "0,1e-1:1e3:5,inf", "--out", str(out_dir)])
    for key in ("tau", "train_loss", "test_loss", "score_error", "config"):
        assert key in obj
    n = len(obj["tau"])
    assert n == 7 and all(len(obj[k]) == n for k in ("train_loss", "test_loss", "score_error"))
    assert obj["tau"][-1] == "inf" and obj["tau"][0] == 0.0
    assert obj["config"]["d"] == 8 and obj["config"]["p"] == 32 and obj["config"]["n"] == 16
    # at tau = 0 (A = 0) every loss is exactly 1 (train/test) or Tr Sigma_t^{-1}/d = 1 (Sigma = I)
    assert obj["train_loss"][0] == pytest.approx(1.0, abs=1e-14)
    assert obj["test_loss"][0] == pytest.approx(1.0, abs=1e-14)
    assert obj["score_error"][0] == pytest.approx(1.0, abs=1e-12)
    arrays, header = read_npz(out_dir / "dynamics.npz")
    assert header["version"] == rfdm.__version__ and header["seed"] == 0
    assert header["config"]["method"] == "exact"
    np.testing.assert_allclose(arrays["train_loss"], obj["train_loss"], rtol=0, atol=0)
    assert (out_dir / "dynamics.png").stat().st_size > 0
    summary = json.loads((out_dir / "dynamics.json").read_text())
    assert summary["header"]["config"] == header["config"]


def test_cli_matches_library(tmp_path, capsys):
    """The command computes what the library computes from the same seed (the seed derivation is part
    of the documented configuration)."""
    obj = run_json(capsys, ["dynamics", *SMALL, "--tau", "10,inf", "--seed", "7", "--out", str(tmp_path)])
    cfg = exp.DynamicsConfig(d=8, p=32, n=16, t=0.1, seed=7, tau=(10.0, math.inf))
    res = exp.compute(cfg)
    np.testing.assert_allclose(obj["test_loss"], res["test_loss"], rtol=1e-13)


def test_same_seed_same_numbers_other_seed_differs(tmp_path, capsys):
    a = run_json(capsys, ["dynamics", *SMALL, "--tau", "100", "--seed", "3", "--out", str(tmp_path / "a")])
    b = run_json(capsys, ["dynamics", *SMALL, "--tau", "100", "--seed", "3", "--out", str(tmp_path / "b")])
    c = run_json(capsys, ["dynamics", *SMALL, "--tau", "100", "--seed", "4", "--out", str(tmp_path / "c")])
    assert a["test_loss"] == b["test_loss"]
    assert a["test_loss"] != c["test_loss"]


def test_gd_method_runs_and_tracks_closed_form(tmp_path, capsys):
    """Fresh-noise GD at tau = 1 (few hundred steps) lands near the closed form: the train-loss drop
    1 - L is of order 0.1 here; the fluctuation of GD's A from the noise is a few percent of it."""
    exact = run_json(capsys, ["dynamics", *SMALL, "--tau", "1", "--out", str(tmp_path / "e")])
    gd = run_json(capsys, ["dynamics", *SMALL, "--tau", "1", "--method", "gd", "--out", str(tmp_path / "g")])
    drop_exact = 1 - exact["train_loss"][0]
    drop_gd = 1 - gd["train_loss"][0]
    assert drop_exact > 0.01
    assert abs(drop_gd - drop_exact) < 0.2 * drop_exact
    assert "learning_rate" in gd["info"]


@pytest.mark.parametrize("args, fragment", [
    (["--d", "0"], "--d"),
    (["--d", "-3"], "--d"),
    (["--p", "0"], "--p"),
    (["--n", "-1"], "--n"),
    (["--psi-p", "-1"], "psi-p"),
    (["--psi-p", "4", "--p", "12"], "either"),
    (["--t", "0"], "t must be"),
    (["--t", "nan"], "t must be"),
    (["--t", "inf"], "t must be"),
    (["--activation", "swish"], "unknown activation"),
    (["--sigma-spectrum", "1,-2"], "eigenvalues"),
    (["--sigma-spectrum", "1,x"], "sigma-spectrum"),
    (["--sigma-spectrum", "1,2", "--sigma-weights", "0.3,0.3"], "sum to 1"),
    (["--tau", "-1"], "tau"),
    (["--tau", "1:2"], "START:STOP:NUM"),
    (["--tau", "abc"], "tau"),
    (["--method", "gd", "--tau", "1,inf"], "inf"),
    (["--method", "sgd"], "invalid choice"),
    (["--noise-draws", "0"], "noise-draws"),
    (["--lr", "-1", "--method", "gd", "--tau", "1"], "learning rate"),
    (["--bogus"], "unrecognized"),
])
def test_bad_input_one_sentence_exit_2_nothing_written(tmp_path, capsys, args, fragment):
    out_dir = tmp_path / "never"
    rc = main(["dynamics", "--d", "8", "--psi-p", "4", "--psi-n", "2", *args, "--out", str(out_dir)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.startswith("rfdm: error: ") and err.count("\n") == 1 and fragment in err
    assert "Traceback" not in err and out == ""
    assert not out_dir.exists()


def test_out_is_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["dynamics", *SMALL, "--out", str(f)]) == 2
    assert "not a folder" in capsys.readouterr().err
    assert f.read_text() == "x"


def test_parse_tau_ranges():
    tau = parse_tau("1e-1:1e3:5,inf,0")
    np.testing.assert_allclose(tau[:5], [0.1, 1, 10, 100, 1000], rtol=1e-12)
    assert tau[5] == math.inf and tau[6] == 0.0


@pytest.mark.parametrize("argv", [
    ["dynamics", "--seed", "-3"],
    ["spectrum", "--empirical-d", "4", "--psi-p", "4", "--psi-n", "2", "--seed", "-3"],
    ["outlier", "--seed", "-3"],
    ["timescales", "--seed", "-3"],
    ["dynamics", "--model", "time-integrated", "--t-nodes-max", "5"],
    ["sample", "--T", "400"],
    ["sample", "--threshold", "1.5"],
    ["timescales", "--psi-n", "2,,4"],
    ["dynamics", "--sigma-spectrum", "1,,2"],
    ["dynamics", "--lr", "0.1"],
    ["dynamics", "--out", "/proc/x"],
    ["sample", "--data", "TEXT.npy"],
    ["sample", "--study", "two-regimes", "--threshold", "0.2"],
], ids=lambda a: " ".join(a))
def test_issue_13_bad_inputs_are_one_sentence_exit_2(tmp_path, capsys, argv):
    """The bad inputs of issue 13 item 1: each is one sentence on stderr, exit 2, no traceback, nothing written."""
    text = tmp_path / "text.npy"
    text.write_text("not an array\n")
    argv = [str(text) if a == "TEXT.npy" else a for a in argv]
    out_dir = tmp_path / "never"
    if "--out" not in argv:
        argv = argv + ["--out", str(out_dir)]
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2 and err.startswith("rfdm: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err and out == ""
    assert not out_dir.exists()


@pytest.mark.parametrize("exc, status", [(OverflowError("math range error"), 3), (FloatingPointError("overflow"), 3),
                                         (ZeroDivisionError("float division by zero"), 3), (MemoryError(), 3)])
def test_arithmetic_trouble_and_out_of_memory_exit_3(tmp_path, capsys, monkeypatch, exc, status):
    def boom(*args, **kwargs):
        raise exc

    monkeypatch.setattr(exp, "compute", boom)
    monkeypatch.setattr(rfdm.protocol.EXPERIMENTS["dynamics"], "compute", boom)
    rc = main(["dynamics", *SMALL, "--out", str(tmp_path / "o")])
    _, err = capsys.readouterr()
    assert rc == status and err.startswith("rfdm: numerical error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()
