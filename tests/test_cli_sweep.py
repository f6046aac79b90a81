"""`rfdm sweep` as a user runs it: kill -9 in the middle of a run and resume to the same numbers, status and
collect from the command line, bad input (one sentence, exit status 2, nothing written) and missing extras."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from rfdm import sweep as sw
from rfdm.cli import main

# 12 points of about 0.2-0.4 s each (d = 32, p = 512): a wide window to kill the run in the middle
SLOW = """
[sweep]
kind = "dynamics"
out = "{out}"
workers = 2
seed = 3
[fixed]
d = 32
psi_p = 16.0
tau = [1.0, 100.0, 10000.0]
[grid]
psi_n = [2.0, 3.0, 4.0, 5.0]
t = [0.05, 0.1, 0.2]
"""
TINY = """
[sweep]
kind = "dynamics"
out = "res"
[fixed]
d = 8
t = 0.1
tau = [1.0, 10.0]
[grid]
psi_n = [1.0, 2.0]
"""


def done_files(folder):
    points = folder / "points"
    if not points.is_dir():
        return []
    return [f for f in points.iterdir() if f.name.endswith(".json") and not f.name.startswith(".")
            and not f.name.endswith(".failed.json")]


def all_files(folder):
    return [p for p in folder.rglob("*") if p.is_file()]


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_numbers(tmp_path):
    xr = pytest.importorskip("xarray")
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    killed_at = None
    for attempt, poll in enumerate((0.01, 0.002, 0.001)):
        cfg = tmp_path / f"killed{attempt}.toml"
        out = tmp_path / f"killed{attempt}"
        cfg.write_text(SLOW.format(out=out.name))
        proc = subprocess.Popen([sys.executable, "-m", "rfdm", "sweep", "run", str(cfg), "--workers", "2"],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                start_new_session=True)
        deadline = time.monotonic() + 120
        while not done_files(out) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(poll)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close()
        before = {f.name: (f.stat().st_mtime_ns, f.stat().st_ino) for f in done_files(out)}
        if 0 < len(before) < 12:
            killed_at = len(before)
            break
    assert killed_at is not None, "the run could not be killed in the middle"
    # every file there is complete: points parse and carry their key
    sweep = sw.load_config(cfg)
    names = {p.name: p.key for p in sweep.points}
    for f in done_files(out):
        assert sw.read_point(f, names[f.name[:-5]]) is not None
    # resume (the lock of the killed run is gone), then an uninterrupted serial run elsewhere; both in the
    # environment of the killed run (one BLAS thread), since the BLAS thread count changes the last bits
    def run(config, workers):
        return subprocess.run([sys.executable, "-m", "rfdm", "sweep", "run", str(config), "--workers", str(workers),
                               "--quiet"], env=env, capture_output=True).returncode

    assert run(cfg, 2) == 0
    after = {f.name: (f.stat().st_mtime_ns, f.stat().st_ino) for f in done_files(out)}
    assert len(after) == 12
    assert {k: after[k] for k in before} == before, "points finished before the kill were recomputed"
    assert not [f for f in all_files(out) if f.name.endswith(".tmp") or f.name.startswith(".staging")]
    ref_cfg = tmp_path / "ref.toml"
    ref_cfg.write_text(SLOW.format(out="ref"))
    assert run(ref_cfg, 1) == 0
    assert main(["sweep", "collect", str(cfg), "--strict", "--quiet"]) == 0
    assert main(["sweep", "collect", str(tmp_path / "ref"), "--strict", "--quiet"]) == 0
    with xr.open_dataset(out / "collected.nc", engine="scipy") as a, \
            xr.open_dataset(tmp_path / "ref" / "collected.nc", engine="scipy") as b:
        a.load()
        b.load()
    assert set(a.data_vars) == set(b.data_vars) and len(a.data_vars) >= 12
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    for name in a.coords:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert not np.isnan(a.test_loss.values).any()


def test_status_and_collect_from_the_command_line(tmp_path, capsys):
    pytest.importorskip("xarray")
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    assert main(["sweep", "status", str(cfg), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert (st["done_count"], st["pending_count"], st["failed_count"]) == (0, 2, 0)
    assert not (tmp_path / "res").exists()  # status writes nothing
    assert main(["sweep", "run", str(cfg), "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["computed"] == 2
    assert "2/2 points done" in err
    assert main(["sweep", "status", str(tmp_path / "res")]) == 0
    assert "done 2, pending 0, failed 0" in capsys.readouterr().out
    target = tmp_path / "x.nc"
    assert main(["sweep", "collect", str(tmp_path / "res"), "--output", str(target), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["dims"] == {"psi_n": 2, "tau": 2} and target.is_file()
    # a missing point: a warning line and NaN, or exit status 1 with --strict (nothing written)
    p = sw.load_config(cfg).points[0]
    sw.point_paths(tmp_path / "res", p.name)[0].unlink()
    assert main(["sweep", "collect", str(cfg)]) == 0
    err = capsys.readouterr().err
    assert err.startswith("rfdm: warning: 1 of 2 points are missing")
    strict = tmp_path / "strict.nc"
    assert main(["sweep", "collect", str(cfg), "--strict", "--output", str(strict)]) == 1
    assert capsys.readouterr().err.startswith("rfdm: error: 1 of 2 points are missing")
    assert not strict.exists()


def _toy(params, seed):
    if params["x"] == 2.0:
        raise sw.NumericalError("toy failure.")
    return {"scalars": {"y": params["x"]}}


def test_failed_point_exit_status_and_status_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sw.KINDS, "toy", sw.PointKind(defaults={"x": 0.0}, compute=_toy))
    cfg = tmp_path / "toy.toml"
    cfg.write_text('[sweep]\nkind = "toy"\nout = "toy"\nworkers = 1\n[grid]\nx = [1.0, 2.0]\n')
    assert main(["sweep", "run", str(cfg), "--quiet"]) == 3
    err = capsys.readouterr().err
    assert err.startswith("rfdm: numerical error: 1 of 2 points failed") and err.count("\n") == 1
    assert main(["sweep", "status", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "done 1, pending 0, failed 1" in out and "toy failure" in out


BAD = {
    "unknown key": '[sweep]\nkind = "dynamics"\nout = "never"\n[fixed]\ndee = 8\n',
    "unknown section": '[sweep]\nkind = "dynamics"\nout = "never"\n[fix]\nd = 8\n',
    "unknown kind": '[sweep]\nkind = "dynamic"\nout = "never"\n',
    "malformed TOML": '[sweep]\nkind = "dynamics"\nout = "never"\n[grid\npsi_n = [1.0]\n',
    "fixed and grid": '[sweep]\nkind = "dynamics"\nout = "never"\n[fixed]\nt = 0.1\n[grid]\nt = [0.1, 0.2]\n',
    "bad point": '[sweep]\nkind = "dynamics"\nout = "never"\n[fixed]\nd = 8\n[grid]\npsi_p = [2.0, 2.1]\n',
}


@pytest.mark.parametrize("case", sorted(BAD))
@pytest.mark.parametrize("action", ["run", "status", "collect"])
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, capsys, case, action):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(BAD[case])
    rc = main(["sweep", action, str(cfg)])
    out, err = capsys.readouterr()
    assert rc == 2 and out == ""
    assert err.startswith("rfdm: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not (tmp_path / "never").exists()
    if case == "malformed TOML":
        assert "line 4" in err


def test_bad_input_in_a_subprocess_has_no_traceback(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(BAD["unknown key"])
    res = subprocess.run([sys.executable, "-m", "rfdm", "sweep", "run", str(cfg)], capture_output=True, text=True)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.startswith("rfdm: error: unknown key 'dee' in [fixed]") and res.stderr.count("\n") == 1
    assert not (tmp_path / "never").exists()


@pytest.mark.parametrize("args", [["sweep"], ["sweep", "run"], ["sweep", "go", "x.toml"],
                                  ["sweep", "run", "missing.toml"], ["sweep", "run", "{cfg}", "--workers", "0"],
                                  ["sweep", "run", "{cfg}", "--executor", "pbs"]])
def test_bad_arguments(tmp_path, capsys, args):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    rc = main([a.replace("{cfg}", str(cfg)) for a in args])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("rfdm: error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "res").exists()


def test_missing_extras_are_one_sentence_exit_2(tmp_path, capsys, monkeypatch):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    monkeypatch.setitem(sys.modules, "xarray", None)
    monkeypatch.setitem(sys.modules, "submitit", None)
    assert main(["sweep", "collect", str(cfg)]) == 2
    assert capsys.readouterr().err == "rfdm: error: collecting a sweep needs xarray: pip install 'rfdm[sweep]'.\n"
    assert main(["sweep", "run", str(cfg), "--executor", "submitit-local"]) == 2
    assert capsys.readouterr().err == ("rfdm: error: the submitit executors need submitit: "
                                       "pip install 'rfdm[slurm]'.\n")
    assert not (tmp_path / "res").exists()


def test_kinds_lists_parameters(capsys):
    assert main(["sweep", "kinds", "--json"]) == 0
    kinds = json.loads(capsys.readouterr().out)
    assert {"dynamics", "spectrum"} <= set(kinds)
    # one source: the sweep kind's defaults are DynamicsConfig's declared defaults (the `rfdm dynamics` ones)
    assert kinds["dynamics"]["defaults"]["d"] == 32 and kinds["dynamics"]["defaults"]["psi_p"] == 16


def test_device_setting(tmp_path, capsys):
    """[sweep] device / --device: a bad name or cuda without a GPU is one sentence, exit 2, nothing written; with
    torch installed, the points computed on torch-cpu agree with the NumPy ones to rounding (1e-10) and record
    their device; the device is not part of a point's key (same files, same names)."""
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace('out = "res"', 'out = "res"\ndevice = "tpu"'))
    assert main(["sweep", "run", str(bad), "--quiet"]) == 2
    assert "unknown device" in capsys.readouterr().err and not (tmp_path / "res").exists()
    torch = pytest.importorskip("torch")
    xr = pytest.importorskip("xarray")
    cfg = tmp_path / "ok.toml"
    cfg.write_text(TINY)
    if not torch.cuda.is_available():
        assert main(["sweep", "run", str(cfg), "--device", "cuda", "--quiet"]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err and not (tmp_path / "res").exists()
    assert main(["sweep", "run", str(cfg), "--device", "torch-cpu", "--workers", "1", "--quiet"]) == 0
    torch_files = sorted(f.name for f in done_files(tmp_path / "res"))
    assert all(json.loads(f.read_text())["device"] == "torch-cpu" for f in done_files(tmp_path / "res"))
    assert main(["sweep", "collect", str(cfg), "--output", str(tmp_path / "torch.nc"), "--quiet"]) == 0
    ref = tmp_path / "ref.toml"
    ref.write_text(TINY.replace('out = "res"', 'out = "ref"'))
    assert main(["sweep", "run", str(ref), "--workers", "1", "--quiet"]) == 0
    assert sorted(f.name for f in done_files(tmp_path / "ref")) == torch_files
    assert main(["sweep", "collect", str(ref), "--output", str(tmp_path / "numpy.nc"), "--quiet"]) == 0
    with xr.open_dataset(tmp_path / "torch.nc", engine="scipy") as a, \
            xr.open_dataset(tmp_path / "numpy.nc", engine="scipy") as b:
        for name in b.data_vars:
            np.testing.assert_allclose(a[name].values, b[name].values, rtol=1e-10, atol=1e-14)


def test_replicates_add_a_dimension_and_keep_replicate_zero(tmp_path):
    """[sweep] replicates = 3: one more dimension "replicate"; replicate 0 is the point of the unreplicated sweep
    (same key and numbers: an existing sweep can be extended with replicates); the other replicates draw
    other W and data (other seeds, other numbers); replicates = 0 is bad input."""
    xr = pytest.importorskip("xarray")
    plain, repl = tmp_path / "plain.toml", tmp_path / "repl.toml"
    plain.write_text(TINY.replace('out = "res"', 'out = "plain"'))
    repl.write_text(TINY.replace('out = "res"', 'out = "repl"\nreplicates = 3'))
    one, three = sw.load_config(plain), sw.load_config(repl)
    assert len(three.points) == 3 * len(one.points)
    keys0 = {p.key for p in three.points if p.grid["replicate"] == 0}
    assert keys0 == {p.key for p in one.points}
    assert len({p.seed for p in three.points}) == len(three.points)
    for cfg in (plain, repl):
        assert main(["sweep", "run", str(cfg), "--workers", "1", "--quiet"]) == 0
        assert main(["sweep", "collect", str(cfg), "--strict", "--quiet"]) == 0
    with xr.open_dataset(tmp_path / "plain" / "collected.nc", engine="scipy") as a, \
            xr.open_dataset(tmp_path / "repl" / "collected.nc", engine="scipy") as b:
        assert b.sizes["replicate"] == 3 and list(b["replicate"].values) == [0, 1, 2]
        np.testing.assert_array_equal(b["test_loss_inf"].sel(replicate=0).values, a["test_loss_inf"].values)
        assert not np.allclose(b["test_loss_inf"].sel(replicate=1).values, a["test_loss_inf"].values)
    bad = tmp_path / "bad.toml"
    bad.write_text(TINY.replace('out = "res"', 'out = "bad"\nreplicates = 0'))
    assert main(["sweep", "run", str(bad), "--quiet"]) == 2 and not (tmp_path / "bad").exists()
