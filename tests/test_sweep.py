"""rfdm.sweep: grid expansion, keys and seeds, resume without recomputation, failed points, the submitit path,
the collected dataset and its netCDF round trip, and the points' numbers against the library's own."""

import json
import math

import numpy as np
import pytest

from rfdm import __version__, sweep as sw
from rfdm.errors import InvalidParameterError, NumericalError
from rfdm.experiments import dynamics as dyn_exp
from rfdm.experiments import spectrum as spec_exp

BASE = """
[sweep]
kind = "dynamics"
out = "res"
seed = {seed}
[fixed]
d = 8
t = 0.1
tau = [1.0, 10.0, inf]
[grid]
{grid}
"""
GRID = "psi_n = [1.0, 2.0]\npsi_p = [2, 4.0]"


def write_cfg(tmp_path, name="cfg.toml", seed=0, grid=GRID, text=None):
    path = tmp_path / name
    path.write_text(text if text is not None else BASE.format(seed=seed, grid=grid))
    return path


def by_params(sweep):
    return {sw.canonical_json(p.params): (p.seed, p.key, p.name) for p in sweep.points}


def test_grid_expansion_keys_and_seeds_are_deterministic(tmp_path):
    a = sw.load_config(write_cfg(tmp_path))
    b = sw.load_config(write_cfg(tmp_path, "b.toml"))
    assert [p.key for p in a.points] == [p.key for p in b.points]
    assert len(a.points) == 4 and len({p.key for p in a.points}) == 4
    assert [p.grid for p in a.points] == [{"psi_n": 1.0, "psi_p": 2.0}, {"psi_n": 1.0, "psi_p": 4.0},
                                          {"psi_n": 2.0, "psi_p": 2.0}, {"psi_n": 2.0, "psi_p": 4.0}]
    assert a.points[1].index == (0, 1)
    # every parameter resolved (defaults included), int spelled as float gives the same point
    assert a.points[0].params == dict(sw.KINDS["dynamics"].defaults, d=8, t=0.1, tau=(1.0, 10.0, math.inf),
                                      psi_n=1.0, psi_p=2.0)
    # the seed of a point does not depend on the grid order nor on the other points
    c = sw.load_config(write_cfg(tmp_path, "c.toml", grid="psi_p = [4.0, 2.0, 8.0]\npsi_n = [2.0, 1.0]"))
    pa, pc = by_params(a), by_params(c)
    assert set(pa) <= set(pc)
    for k, v in pa.items():
        assert pc[k][:2] == v[:2]
    # but it depends on the sweep seed
    d = sw.load_config(write_cfg(tmp_path, "d.toml", seed=1))
    assert all(pa[k][0] != v[0] and pa[k][1] != v[1] for k, v in by_params(d).items())
    assert all(0 <= p.seed < 2 ** 31 for p in a.points)
    assert a.out == tmp_path / "res"


def test_run_then_rerun_computes_nothing(tmp_path):
    s = sw.load_config(write_cfg(tmp_path))
    first = sw.run_sweep(s, workers=1, quiet=True)
    assert (first["computed"], first["already_done"], first["failed"]) == (4, 0, [])
    files = sorted(s.points_dir.glob("*.json"))
    assert len(files) == 4
    stamp = {f.name: (f.stat().st_mtime_ns, f.stat().st_ino) for f in files}
    second = sw.run_sweep(sw.load_config(write_cfg(tmp_path)), workers=2, quiet=True)
    assert (second["computed"], second["already_done"]) == (0, 4)
    assert {f.name: (f.stat().st_mtime_ns, f.stat().st_ino) for f in s.points_dir.glob("*.json")} == stamp
    # a stale temporary file of a killed write is ignored by status and removed by the next run
    stale = s.points_dir / ".x.json.abc123.tmp"
    stale.write_text("{half")
    assert len(sw.sweep_status(s)["done"]) == 4
    sw.run_sweep(s, quiet=True)
    assert not stale.exists()
    # every stored point carries its resolved config, version and seed
    p = s.points[2]
    rec = json.loads(sw.point_paths(s.out, p.name)[0].read_text())
    assert rec["key"] == p.key and rec["seed"] == p.seed and rec["version"] == __version__
    assert rec["header"]["seed"] == p.seed and rec["header"]["version"] == __version__
    assert rec["header"]["config"]["params"]["psi_n"] == 2.0 and rec["header"]["config"]["sweep_seed"] == 0


def test_dynamics_point_is_the_library_computation(tmp_path):
    """A stored point holds exactly what rfdm.experiments.dynamics.compute gives with the point's seed."""
    s = sw.load_config(write_cfg(tmp_path, grid="psi_n = [2.0]"))
    sw.run_sweep(s, workers=1, quiet=True)
    p = s.points[0]
    rec = json.loads(sw.point_paths(s.out, p.name)[0].read_text())
    psi_p = sw.KINDS["dynamics"].defaults["psi_p"]  # the declared default of DynamicsConfig (16)
    ref = dyn_exp.compute(dyn_exp.DynamicsConfig(d=8, p=int(psi_p * 8), n=16, t=0.1, seed=p.seed,
                                                 tau=(1.0, 10.0, math.inf, math.inf)))
    np.testing.assert_array_equal(np.array(rec["vectors"]["test_loss"]["values"], dtype=float), ref["test_loss"][:3])
    np.testing.assert_array_equal(np.array(rec["vectors"]["gap"]["values"], dtype=float),
                                  ref["generalization_gap"][:3])
    assert rec["scalars"]["score_error_inf"] == ref["score_error"][-1]
    assert rec["scalars"]["train_loss_inf"] == ref["train_loss"][-1]
    assert 0 < rec["scalars"]["tau_gen"] < rec["scalars"]["tau_mem"] < math.inf
    assert rec["info"]["library_config"]["seed"] == p.seed


def test_spectrum_kind_and_netcdf_round_trip(tmp_path):
    xr = pytest.importorskip("xarray")
    text = """
[sweep]
kind = "spectrum"
out = "spec"
[fixed]
psi_p = 16.0
t = 0.01
n_points = 200
[grid]
psi_n = [4.0]
activation = ["tanh", "relu"]
"""
    s = sw.load_config(write_cfg(tmp_path, text=text))
    assert sw.run_sweep(s, workers=1, quiet=True)["computed"] == 2
    ds = sw.collect(s, strict=True)
    ref = spec_exp.compute(spec_exp.SpectrumConfig(psi_p=16.0, psi_n=4.0, t=0.01, activation="relu", n_points=200))
    point = ds.sel(psi_n=4.0, activation="relu")
    assert float(point.tau_gen) == ref["tau_gen"] and float(point.tau_mem) == ref["tau_mem"]
    assert float(point.atom_weight) == sum(a["weight"] for a in ref["atoms"])
    n_bulks = len(ref["bulks"])
    np.testing.assert_array_equal(point.bulk_left.values[:n_bulks], [b["left"] for b in ref["bulks"]])
    path = sw.write_netcdf(ds, tmp_path / "spec.nc")
    with xr.open_dataset(path, engine="scipy") as back:
        back.load()
    assert list(back.activation.values) == ["tanh", "relu"]
    assert back.attrs["version"] == __version__ and back.attrs["kind"] == "spectrum"
    assert json.loads(back.attrs["config"]) == json.loads(sw.canonical_json(s.resolved_config()))
    for name in ds.data_vars:
        np.testing.assert_array_equal(back[name].values, ds[name].values)


def test_collect_dims_coords_attrs_and_missing_points(tmp_path):
    xr = pytest.importorskip("xarray")
    s = sw.load_config(write_cfg(tmp_path))
    sw.run_sweep(s, workers=1, quiet=True)
    ds = sw.collect(s, strict=True)
    assert dict(ds.sizes) == {"psi_n": 2, "psi_p": 2, "tau": 3}
    assert ds.test_loss.dims == ("psi_n", "psi_p", "tau") and ds.gap_inf.dims == ("psi_n", "psi_p")
    np.testing.assert_array_equal(ds.psi_p.values, [2.0, 4.0])
    np.testing.assert_array_equal(ds.tau.values, [1.0, 10.0, np.inf])
    assert ds.test_loss.dtype == np.float64
    # tau = inf in the list and the *_inf outputs agree
    np.testing.assert_array_equal(ds.test_loss.sel(tau=np.inf).values, ds.test_loss_inf.values)
    np.testing.assert_array_equal(ds.gap.values, ds.test_loss.values - ds.train_loss.values)
    np.testing.assert_array_equal(ds.point_seed.values.ravel(), [p.seed for p in s.points])
    cfg = json.loads(ds.attrs["config"])
    assert cfg["grid"] == {"psi_n": [1.0, 2.0], "psi_p": [2.0, 4.0]} and cfg["fixed"]["d"] == 8
    path = sw.write_netcdf(ds, tmp_path / "out" / "all.nc")
    with xr.open_dataset(path, engine="scipy") as back:
        back.load()
    assert back.attrs["version"] == __version__
    assert json.loads(back.attrs["config"]) == cfg
    for name in ds.data_vars:
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    for name in ds.coords:
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    # a missing point: NaN plus a warning, or an error when strict
    sw.point_paths(s.out, s.points[1].name)[0].unlink()
    warnings = []
    part = sw.collect(s, warn=warnings.append)
    assert len(warnings) == 1 and "1 of 4 points are missing" in warnings[0]
    assert np.isnan(part.test_loss.values[0, 1]).all() and not np.isnan(part.test_loss.values[1]).any()
    assert part.point_seed.values[0, 1] == -1 and part.attrs["points_missing"] == 1
    with pytest.raises(sw.RfdmError, match="1 of 4 points are missing"):
        sw.collect(s, strict=True)


def _toy(params, seed):
    if params["x"] == 2.0:
        raise NumericalError("toy failure at x = 2.")
    return {"scalars": {"y": params["x"] ** 2 + seed % 7}, "vectors": {}, "info": {}}


def test_failed_points_are_recorded_and_retried(tmp_path, monkeypatch):
    monkeypatch.setitem(sw.KINDS, "toy", sw.PointKind(defaults={"x": 0.0}, compute=_toy))
    cfg = write_cfg(tmp_path, text='[sweep]\nkind = "toy"\nout = "toy"\n[grid]\nx = [1.0, 2.0, 3.0]\n')
    s = sw.load_config(cfg)
    res = sw.run_sweep(s, workers=1, quiet=True)
    assert res["computed"] == 2 and len(res["failed"]) == 1
    assert res["failed"][0]["error"] == "NumericalError" and "toy failure" in res["failed"][0]["message"]
    st = sw.sweep_status(s)
    assert (len(st["done"]), len(st["pending"]), len(st["failed"])) == (2, 0, 1)
    marker = sw.point_paths(s.out, s.points[1].name)[1]
    assert json.loads(marker.read_text())["error"] == "NumericalError"
    # a larger grid: the new point is pending
    bigger = sw.load_config(write_cfg(tmp_path, text='[sweep]\nkind = "toy"\nout = "toy"\n[grid]\n'
                                      'x = [1.0, 2.0, 3.0, 4.0]\n'))
    st = sw.sweep_status(bigger)
    assert (len(st["done"]), len(st["pending"]), len(st["failed"])) == (2, 1, 1)
    # the rerun retries the failed point only (and computes the new one)
    monkeypatch.setitem(sw.KINDS, "toy", sw.PointKind(defaults={"x": 0.0}, compute=lambda p, s: {
        "scalars": {"y": p["x"] ** 2 + s % 7}}))
    res = sw.run_sweep(bigger, workers=1, quiet=True)
    assert (res["computed"], res["already_done"], res["failed"]) == (2, 2, [])
    assert not marker.exists()
    st = sw.sweep_status(bigger)
    assert (len(st["done"]), len(st["pending"]), len(st["failed"])) == (4, 0, 0)


def test_submitit_local_executor_gives_the_pool_numbers(tmp_path):
    pytest.importorskip("submitit")
    pytest.importorskip("xarray")
    pool = sw.load_config(write_cfg(tmp_path), out=tmp_path / "pool")
    sub = sw.load_config(write_cfg(tmp_path), out=tmp_path / "sub")
    assert sw.run_sweep(pool, executor="local", workers=2, quiet=True)["computed"] == 4
    res = sw.run_sweep(sub, executor="submitit-local", workers=2, quiet=True)
    assert (res["computed"], res["submitted"], res["failed"]) == (4, 4, [])
    a, b = sw.collect(pool, strict=True), sw.collect(sub, strict=True)
    assert set(a.data_vars) == set(b.data_vars)
    for name in a.data_vars:
        np.testing.assert_array_equal(a[name].values, b[name].values)
    assert sw.run_sweep(sub, executor="submitit-local", quiet=True)["submitted"] == 0


@pytest.mark.parametrize("text, match", [
    ('[sweep]\nkind = "dynamics"\n[fixed]\nD = 8\n', "unknown key 'D' in \\[fixed\\]"),
    ('[sweep]\nkind = "dynamics"\n[grid]\nfoo = [1]\n', "unknown key 'foo' in \\[grid\\]"),
    ('[sweep]\nkind = "dynamics"\nworkerz = 2\n', "unknown key 'workerz' in \\[sweep\\]"),
    ('[sweep]\nkind = "dynamics"\n[gird]\nd = [8]\n', "unknown section 'gird'"),
    ('[sweep]\nkind = "nope"\n', "unknown kind 'nope'"),
    ('[sweep]\nexecutor = "local"\n', "kind is missing"),
    ('[sweep]\nkind = "dynamics"\nexecutor = "pbs"\n', "unknown executor 'pbs'"),
    ('[sweep]\nkind = "dynamics"\n[fixed]\nd = 8\n[grid]\nd = [8, 16]\n',
     "'d' is both in \\[fixed\\] and in \\[grid\\]"),
    ('[sweep]\nkind = "dynamics"\n[grid]\npsi_n = []\n', "psi_n .* is an empty list"),
    ('[sweep]\nkind = "dynamics"\n[grid]\npsi_n = [1.0, 1]\n', "repeats a value"),
    ('[sweep]\nkind = "dynamics"\n[grid]\nd = [8, 16.5]\n', "d must be an integer"),
    ('[sweep]\nkind = "dynamics"\n[fixed]\nactivation = 3\n', "activation must be a string"),
    ('[sweep]\nkind = "dynamics"\n[fixed]\ntau = 3\n', "tau must be a list of numbers"),
    ('[sweep]\nkind = "dynamics"\n[grid]\ntau = [[1.0]]\n', "list parameter and cannot be swept"),
    ('[sweep]\nkind = "dynamics"\n[fixed]\nd = 8\n[grid]\npsi_n = [1.0, 0.3]\n', "psi_n=0.3.*not a positive whole"),
    ('[sweep]\nkind = "dynamics"\n[fixed]\nd = -2\n', "d must be a positive integer"),
    ('[sweep]\nkind = "dynamics"\n[grid]\nactivation = ["tanh", "soft"]\n', "unknown activation 'soft'"),
    ('[sweep]\nkind = "dynamics"\n[slurm]\ntimeout = 3\n', "unknown key 'timeout' in \\[slurm\\]"),
    ('[sweep]\nkind = "dynamics"\nseed = -1\n', "seed .* must be >= 0"),
    ('[sweep]\nkind = "dynamics"\n[fixed]\nd = \n', "not valid TOML: .*line 4"),
])
def test_bad_configs_are_one_sentence(tmp_path, text, match):
    with pytest.raises(InvalidParameterError, match=match) as info:
        sw.load_config(write_cfg(tmp_path, text=text))
    assert "\n" not in str(info.value)
    assert not (tmp_path / "cfg-results").exists()


def test_slurm_path_dispatches_run_point_as_a_job_array(tmp_path, monkeypatch):
    """The slurm executor's code path (AutoExecutor, [slurm] settings, map_array, waiting), with submitit's
    LocalExecutor standing in for the cluster."""
    submitit = pytest.importorskip("submitit")
    made = {}

    class FakeAuto:
        def __init__(self, folder, cluster):
            made.update(folder=folder, cluster=cluster)
            self.inner = submitit.LocalExecutor(folder=folder)

        def update_parameters(self, **kwargs):
            made.update(kwargs)

        def map_array(self, fn, *iterables):
            return [self.inner.submit(fn, *args) for args in zip(*iterables)]

    monkeypatch.setattr(submitit, "AutoExecutor", FakeAuto)
    text = BASE.format(seed=0, grid="psi_n = [1.0, 2.0]") + '[slurm]\npartition = "cpu"\ntimeout_min = 5\n'
    s = sw.load_config(write_cfg(tmp_path, text=text))
    res = sw.run_sweep(s, executor="slurm", quiet=True)
    assert (res["computed"], res["submitted"], res["failed"]) == (2, 2, [])
    assert made["cluster"] == "slurm" and made["slurm_partition"] == "cpu" and made["timeout_min"] == 5
    assert "slurm_account" not in made and made["folder"] == s.out / "submitit"
    assert len(sw.sweep_status(s)["done"]) == 2


def test_slurm_without_a_cluster_is_bad_input(tmp_path):
    pytest.importorskip("submitit")
    import shutil

    if shutil.which("srun"):
        pytest.skip("srun is installed here")
    s = sw.load_config(write_cfg(tmp_path))
    with pytest.raises(InvalidParameterError, match="needs a SLURM cluster"):
        sw.run_sweep(s, executor="slurm", quiet=True)
    assert not s.out.exists()


def test_a_second_run_on_the_same_folder_is_refused(tmp_path, monkeypatch):
    fcntl = pytest.importorskip("fcntl")
    import os

    s = sw.load_config(write_cfg(tmp_path))
    s.out.mkdir()
    fd = os.open(s.out / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        monkeypatch.setattr(sw, "LOCK_WAIT_S", 0.3)
        with pytest.raises(sw.RfdmError, match="another `rfdm sweep run` is using"):
            sw.run_sweep(s, workers=1, quiet=True)
    finally:
        os.close(fd)
    assert sw.run_sweep(s, workers=1, quiet=True)["computed"] == 4


def test_points_of_another_version_are_recomputed_unless_reuse_older(tmp_path, monkeypatch, capsys):
    """The key holds the package version: points written by an older version are pending (and recomputed) by
    default, reused with reuse_older / --reuse-older (same numbers: the seed does not depend on the version);
    points of a newer version are never reused."""
    import rfdm.sweep.spec as spec
    import rfdm.sweep.store as store
    from rfdm.cli import main

    cfg = write_cfg(tmp_path, grid="psi_n = [1.0, 2.0]")
    for module in (spec, store):
        monkeypatch.setattr(module, "__version__", "0.0.1")
    old = sw.load_config(cfg)
    assert sw.run_sweep(old, workers=1, quiet=True)["computed"] == 2
    old_values = {p.name: json.loads(sw.point_paths(old.out, p.name)[0].read_text())["scalars"] for p in old.points}
    monkeypatch.undo()
    now = sw.load_config(cfg)
    assert [p.name for p in now.points] == list(old_values)  # same files, other keys
    assert all(p.key != q.key for p, q in zip(now.points, old.points))
    assert len(sw.sweep_status(now)["pending"]) == 2
    now.reuse_older = True
    assert len(sw.sweep_status(now)["done"]) == 2
    assert main(["sweep", "status", str(cfg), "--reuse-older", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["done_count"] == 2
    res = sw.run_sweep(now, workers=1, quiet=True)
    assert (res["computed"], res["already_done"]) == (0, 2)
    # without the option the points are recomputed by this version, to the same numbers
    now.reuse_older = False
    assert sw.run_sweep(now, workers=1, quiet=True)["computed"] == 2
    for p in now.points:
        rec = json.loads(sw.point_paths(now.out, p.name)[0].read_text())
        assert rec["version"] == __version__ and rec["scalars"] == old_values[p.name]
    # a newer version's points are never reused
    for module in (spec, store):
        monkeypatch.setattr(module, "__version__", "99.0.0")
    newer = sw.load_config(cfg)
    sw.run_sweep(newer, workers=1, quiet=True)
    monkeypatch.undo()
    now.reuse_older = True
    assert len(sw.sweep_status(now)["pending"]) == 2
