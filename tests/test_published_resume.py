"""Resumable points of the expensive published figures (rfdm.published._points; docs/sweeps.md, "Published
figures"): each exact flow of B25-fig5, B25-SM-fig12, B25-SM-fig13 and bridge-1-over-d is a sweep point under
OUT/ID/points/.  Checked here at the quick preset (or a smaller one): the stored route gives the numbers of the
in-process route bit for bit, and the points are those of the independent functions they replace; a run killed
with SIGKILL, a failed point and corrupt point files are resumed by computing only what is missing; bad
--executor/--workers are one sentence and exit status 2; the local pool and the torch device give the same
numbers.  Bit-for-bit comparisons need the same BLAS thread count in both runs: the subprocesses pin it to 1
and in-process comparisons share the process's own."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rfdm.cli import main
from rfdm.errors import NumericalError
from rfdm.published import _points, figure_module, run
from rfdm.results import to_jsonable
from rfdm.sweep import KINDS, PointKind

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ("runtime_s", "cpu_s")


def _numbers(entry: dict) -> dict:
    """A report entry without its timings, as JSON values (what must agree bit for bit)."""
    return json.loads(json.dumps(to_jsonable({k: v for k, v in entry.items() if k not in RUNTIME})))


def _done_files(folder: Path) -> dict:
    """{name: (inode, mtime_ns)} of the finished point files under folder/points."""
    pts = folder / "points"
    return {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in pts.glob("*.json")
            if not f.name.endswith(".failed.json")}


def _env() -> dict:
    return dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                PYTHONPATH=os.pathsep.join([str(ROOT / "src")] + [p for p in [os.environ.get("PYTHONPATH")] if p]))


def _wrap_kind(monkeypatch, compute):
    """Replace the published-flow kind's compute for this test (serial executor: the points run here)."""
    kind = KINDS[_points.KIND]
    monkeypatch.setitem(KINDS, _points.KIND, PointKind(kind.defaults, compute, kind.validate, kind.description,
                                                       kind.descriptions))
    return kind.compute


def test_points_are_the_flows_they_replace():
    """A build_flow point holds flow_readings(build_flow(...), n) (the fig5/SM12 computation before points), and
    the bridge's per-d curves over finite_d_curves points equal rfdm.asymptotics.finite_d_curves: the same
    arrays to the bit (same draws, same operations)."""
    from rfdm.asymptotics import finite_d_curves
    from rfdm.published._rf import build_flow, flow_readings
    from rfdm.published.bridge_1_over_d import finite_curves

    fixed = {"d": 4, "psi_p": 16.0, "t": 0.1, "flow_seed": 3, "readings": True, "mode_split": True}
    [got] = _points.run_flows(fixed, {"psi_n": [2.0]}, 3)
    ref = flow_readings(build_flow(4, 16.0, 2.0, 0.1, 3), n=8)
    assert set(got) == set(_points.CURVES + _points.READINGS + _points.MODE_READINGS)
    for k, v in got.items():
        assert np.array_equal(v, ref[k]) if isinstance(v, np.ndarray) else v == ref[k], k

    tau = np.r_[np.logspace(-1, 4, 6), np.inf]
    mine = finite_curves(4.0, 2.0, 0.1, (6, 12), tau, (5, 6))
    for d, f in zip((6, 12), mine):
        r = finite_d_curves("tanh", 0.1, 4.0, 2.0, d, tau, seeds=(5, 6))
        for key in ("train_loss", "test_loss", "score_error", "generalization_gap"):
            assert np.array_equal(f[key], r[key]) and np.array_equal(f[key + "_sem"], r[key + "_sem"])


@pytest.mark.parametrize("fid", ["B25-fig5", pytest.param("B25-SM-fig12", marks=pytest.mark.slow),
                                 pytest.param("B25-SM-fig13", marks=pytest.mark.slow), "bridge-1-over-d"])
def test_stored_points_give_the_in_process_numbers(fid, tmp_path, monkeypatch):
    """Each figure with points: its entry through stored points (rfdm.published.run with out_dir, serial) equals
    module.compute(preset, seed) without a store, every number; a second run reuses every point (nothing
    computed) and gives the same entry (SM12 and SM13 are slow-marked: SM13's stored route is also checked by the
    kill test and the SLURM test).  fig5 and SM12 run at d = 4, ψ_n = 4, 8 here (quick is d = 16, 25 s), with
    the spectral readings (computed in this process by both routes, not points) memoized so each is solved once."""
    import functools

    from rfdm.published import b25_fig5

    mod = figure_module(fid)
    if fid in ("B25-fig5", "B25-SM-fig12"):
        monkeypatch.setitem(mod.PRESETS, "quick", {"d": 4, "psi_ns": (4.0, 8.0)})
        monkeypatch.setattr(b25_fig5, "spectral_timescales", functools.lru_cache(b25_fig5.spectral_timescales))
    direct = mod.compute("quick", 1)
    entry = run(fid, "quick", 1, out_dir=tmp_path)
    ref = direct["claim"].to_report_entry()
    assert _numbers(entry) == _numbers(dict(ref, preset="quick", seed=1))
    files = _done_files(tmp_path)
    n_points = {"B25-fig5": 2, "B25-SM-fig12": 4, "B25-SM-fig13": 15, "bridge-1-over-d": 24}[fid]
    assert len(files) == n_points and (tmp_path / f"{fid}.png").stat().st_size > 0

    from rfdm.published import _points as pts

    calls = []
    real = KINDS[pts.KIND].compute
    _wrap_kind(monkeypatch, lambda p, s: calls.append(p) or real(p, s))
    again = run(fid, "quick", 1, out_dir=tmp_path)
    assert calls == [] and _done_files(tmp_path) == files and _numbers(again) == _numbers(entry)


_SLOW_RUN = """
import sys, time
from rfdm.sweep import KINDS, PointKind
from rfdm.published import _points
kind = KINDS[_points.KIND]
def slow(params, seed):
    out = kind.compute(params, seed)
    time.sleep(0.4)
    return out
KINDS[_points.KIND] = PointKind(kind.defaults, slow, kind.validate, kind.description, kind.descriptions)
from rfdm.cli import main
sys.exit(main(["figure", "B25-SM-fig13", "--out", sys.argv[1]]))
"""


def test_kill_9_then_rerun_computes_only_the_missing_points(tmp_path):
    """`rfdm figure B25-SM-fig13` (quick, 15 points) killed with SIGKILL after some points are stored, then rerun:
    the stored points keep their files (same inode and mtime), the rerun says it computes only the others, and
    the entry equals that of an uninterrupted run, every number."""
    out, ref_out = tmp_path / "killed", tmp_path / "reference"
    folder = out / "B25-SM-fig13"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, str(out)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if (folder / "points").is_dir() and len(_done_files(folder)) >= 4:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished (or died) before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _done_files(folder)
    k = len(before)
    assert 4 <= k < 15 and not (folder / "B25-SM-fig13.json").exists()

    rerun = subprocess.run([sys.executable, "-m", "rfdm", "figure", "B25-SM-fig13", "--out", str(out)], env=_env(),
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"15 points: {k} already done, {15 - k} to compute" in rerun.stderr
    after = _done_files(folder)
    assert len(after) == 15 and all(after[name] == before[name] for name in before)
    assert not list((folder / "points").glob(".*.tmp"))

    ref = subprocess.run([sys.executable, "-m", "rfdm", "figure", "B25-SM-fig13", "--out", str(ref_out)], env=_env(),
                         capture_output=True, text=True, timeout=300)
    assert ref.returncode == 0, ref.stderr
    resumed, uninterrupted = (json.loads((o / "B25-SM-fig13" / "B25-SM-fig13.json").read_text()) for o in (out, ref_out))
    assert _numbers(resumed) == _numbers(uninterrupted)
    assert json.loads(rerun.stdout)["measured"] == json.loads(ref.stdout)["measured"]

    status = subprocess.run([sys.executable, "-m", "rfdm", "sweep", "status", str(folder), "--json"], env=_env(),
                            capture_output=True, text=True, timeout=120)  # the points folder is a sweep
    st = json.loads(status.stdout)
    assert st["kind"] == "published-flow" and st["total"] == st["done_count"] == 15


def test_a_failed_point_is_retried_alone(tmp_path, monkeypatch):
    """A point that raises NumericalError: the run stores every other point and ends with NumericalError (exit
    status 3 on the command line); the rerun computes that one point only and gives the uninterrupted numbers."""
    real = KINDS[_points.KIND].compute

    def flaky(params, seed):
        if params["d"] == 24 and params["flow_seed"] == 3:
            raise NumericalError("injected failure.")
        return real(params, seed)

    _wrap_kind(monkeypatch, flaky)
    with pytest.raises(NumericalError, match="1 of 24 points of bridge-1-over-d failed"):
        run("bridge-1-over-d", "quick", 0, out_dir=tmp_path)
    before = _done_files(tmp_path)
    assert len(before) == 23 and len(list((tmp_path / "points").glob("*.failed.json"))) == 1
    calls = []
    _wrap_kind(monkeypatch, lambda p, s: calls.append((p["d"], p["flow_seed"])) or real(p, s))
    entry = run("bridge-1-over-d", "quick", 0, out_dir=tmp_path)
    assert calls == [(24, 3)] and all(_done_files(tmp_path)[n] == v for n, v in before.items())
    assert not list((tmp_path / "points").glob("*.failed.json"))
    ref = figure_module("bridge-1-over-d").compute("quick", 0)["claim"].to_report_entry()
    assert _numbers(entry) == _numbers(dict(ref, preset="quick", seed=0))

    monkeypatch.setitem(KINDS, _points.KIND, PointKind(KINDS[_points.KIND].defaults, flaky))
    assert main(["figure", "bridge-1-over-d", "--out", str(tmp_path / "cli")]) == 3


def test_corrupt_point_files_are_recomputed_never_trusted(tmp_path, monkeypatch):
    """After a full run: a truncated point file (a write cut short outside the atomic store), a file with the
    right key but no curves, one whose parameters were edited, and a leftover temporary file.  The rerun
    recomputes exactly those three points (new files), keeps the others untouched, removes the temporary
    file and gives the same numbers."""
    first = run("bridge-1-over-d", "quick", 0, out_dir=tmp_path)
    files = _done_files(tmp_path)
    names = sorted(files)
    pts = tmp_path / "points"
    text = (pts / names[0]).read_text()
    (pts / names[0]).write_text(text[:len(text) // 2])
    rec = json.loads((pts / names[1]).read_text())
    del rec["vectors"]
    (pts / names[1]).write_text(json.dumps(rec))
    rec = json.loads((pts / names[2]).read_text())
    rec["params"]["psi_p"] = 5.0
    (pts / names[2]).write_text(json.dumps(rec))
    (pts / f".{names[3]}.abc.tmp").write_text("{")
    time.sleep(0.01)
    edited = _done_files(tmp_path)

    calls = []
    real = KINDS[_points.KIND].compute
    _wrap_kind(monkeypatch, lambda p, s: calls.append(p) or real(p, s))
    again = run("bridge-1-over-d", "quick", 0, out_dir=tmp_path)
    assert len(calls) == 3
    after = _done_files(tmp_path)
    assert set(after) == set(files) and all(after[n] == files[n] for n in names[3:])
    assert all(after[n] != edited[n] for n in names[:3])
    assert not list(pts.glob(".*.tmp"))
    assert _numbers(again) == _numbers(first)


@pytest.mark.parametrize("args, words", [
    (["--executor", "gpu"], "--executor"), (["--workers", "0"], "--workers"), (["--workers", "x"], "--workers"),
    (["--workers", "2"], "serial"), (["--executor", "local", "--workers", "5000"], "--workers"),
    (["--executor", "slurm", "--slurm", "nodes=2"], "--slurm"), (["--executor", "slurm", "--slurm", "mem_gb=lots"], "mem_gb"),
    (["--slurm", "partition=gpu"], "--executor slurm"),
])
@pytest.mark.parametrize("command", ["figure", "reproduce"])
def test_bad_executor_or_workers_is_one_sentence_exit_2(tmp_path, capsys, args, words, command):
    target = ["figure", "bridge-1-over-d"] if command == "figure" else ["reproduce", "--only", "bridge-1-over-d"]
    rc = main([*target, *args, "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("rfdm: error:") and words in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_cuda_with_the_forked_pool_is_refused():
    """CUDA cannot be used in workers forked from a process that initialized it: --device cuda with the local
    pool is one sentence (checked before any device is touched); serial and submitit executors take it."""
    from rfdm.errors import InvalidParameterError

    with pytest.raises(InvalidParameterError, match="forked workers"):
        _points.check_executor("local", 2, "cuda:0")
    for executor, workers in (("serial", None), ("local", 1), ("submitit-local", 2), ("slurm", None)):
        _points.check_executor(executor, workers, "cuda")


def test_local_pool_and_torch_device_reach_the_points(tmp_path):
    """--executor local --workers 2 gives the serial numbers bit for bit (each point computed alone); --device
    torch-cpu reaches every point (recorded in its file) and agrees with NumPy to rounding (rtol 1e-9: the two
    backends run the same float64 algorithms in different orders, the curves differ by ~1e-13 relative)."""
    serial = run("bridge-1-over-d", "quick", 0, out_dir=tmp_path / "serial")
    pool = run("bridge-1-over-d", "quick", 0, out_dir=tmp_path / "pool", executor="local", workers=2)
    assert _numbers(pool) == _numbers(serial)
    pytest.importorskip("torch")
    pytest.importorskip("array_api_compat")
    torch_run = run("bridge-1-over-d", "quick", 0, out_dir=tmp_path / "torch", device="torch-cpu")
    recs = [json.loads(f.read_text()) for f in (tmp_path / "torch" / "points").glob("*.json")]
    assert len(recs) == 24 and {r["device"] for r in recs} == {"torch-cpu"}
    # every stored number of every point agrees
    def values(folder):
        out = {}
        for f in (folder / "points").glob("*.json"):
            r = json.loads(f.read_text())
            out[f.name.rsplit("-", 1)[0]] = {**r["scalars"], **{k: v["values"] for k, v in r["vectors"].items()}}
        return out

    a, b = values(tmp_path / "serial"), values(tmp_path / "torch")
    assert a.keys() == b.keys() and len(a) == 24
    for point in a:
        for key, value in a[point].items():
            assert np.asarray(b[point][key], dtype=float) == pytest.approx(
                np.asarray(value, dtype=float), rel=1e-9, abs=1e-12, nan_ok=True), (point, key)
    # and so do the figure's readings; a row named after "the worst τ" may name another τ when two τ are within
    # rounding of each other (a near-tie the 1e-13 differences can flip), so rows are compared by name where
    # both runs have them, and all but such rows must be shared
    shared = [k for k in serial["measured"] if k in torch_run["measured"]]
    assert all("worst" in k for k in serial["measured"] if k not in torch_run["measured"])
    assert len(shared) >= len(serial["measured"]) - 3
    for name in shared:
        value = serial["measured"][name]
        if isinstance(value, float):
            assert torch_run["measured"][name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
