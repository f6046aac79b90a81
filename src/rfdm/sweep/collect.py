"""Collecting a sweep: one labelled xarray.Dataset of its finished points, written to netCDF."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import RfdmError
from ..results import _atomic_write
from .executors import MissingExtraError
from .kinds import KINDS
from .spec import SEED_RULE, Sweep, canonical_json
from .store import read_sweep_point, sweep_status


def _import_xarray():
    try:
        import xarray
    except ImportError:
        raise MissingExtraError("collecting a sweep needs xarray: pip install 'rfdm[sweep]'.") from None
    return xarray


def collect(sweep: Sweep, strict: bool = False, warn=None):
    """One labelled xarray.Dataset of the sweep: one dimension per grid parameter (coordinates = its values, in
    file order), one variable per scalar output, vector outputs with their own extra dimension (e.g. tau;
    shorter vectors padded with NaN), ``point_seed`` (int, -1 where missing); attrs: package, version, kind,
    config (JSON of :meth:`Sweep.resolved_config`), sweep_seed, seed_rule, point counts and the versions that
    computed the points.  Missing (pending or failed) points are NaN, with one warning line through ``warn``;
    with ``strict`` they are an error instead."""
    xr = _import_xarray()
    status = sweep_status(sweep)
    missing = len(status["pending"]) + len(status["failed"])
    if missing and strict:
        raise RfdmError(f"{missing} of {status['total']} points are missing ({len(status['pending'])} pending, "
                        f"{len(status['failed'])} failed); run `rfdm sweep run` or drop --strict.")
    if missing and warn is not None:
        warn(f"{missing} of {status['total']} points are missing ({len(status['pending'])} pending, "
             f"{len(status['failed'])} failed); their values are NaN.")
    dims = list(sweep.grid)
    shape = tuple(len(v) for v in sweep.grid.values())
    records = []
    for p in sweep.points:
        rec = read_sweep_point(sweep, p)
        if rec is not None:
            records.append((p, rec))
    scalar_names, vector_dims, lengths, coords = [], {}, {}, {}
    for _, rec in records:
        for name in rec["scalars"]:
            if name not in scalar_names:
                scalar_names.append(name)
        for name, v in rec["vectors"].items():
            dim = v["dim"]
            if vector_dims.setdefault(name, dim) != dim:
                raise RfdmError(f"output {name} has different dimensions across points.")
            lengths[dim] = max(lengths.get(dim, 0), len(v["values"]))
        for dim, values in rec.get("coords", {}).items():
            values = _floats(values)
            if dim in coords and not np.array_equal(coords[dim], values):
                raise RfdmError(f"the {dim} coordinates differ across points; collect one sweep at a time.")
            coords[dim] = values
    for dim in lengths:
        if dim in dims:
            raise RfdmError(f"the output dimension {dim} is also a grid parameter.")
        if dim in coords and coords[dim].size != lengths[dim]:
            raise RfdmError(f"the {dim} coordinates do not match the outputs' length.")
    data = {name: np.full(shape, np.nan) for name in scalar_names}
    vdata = {name: np.full(shape + (lengths[dim],), np.nan) for name, dim in vector_dims.items()}
    seeds = np.full(shape, -1, dtype=np.int32)
    versions = set()
    for p, rec in records:
        for name, value in rec["scalars"].items():
            data[name][p.index] = _floats(value)
        for name, v in rec["vectors"].items():
            values = _floats(v["values"])
            vdata[name][p.index + (slice(0, values.size),)] = values
        seeds[p.index] = p.seed
        versions.add(str(rec.get("version", "unknown")))
    descriptions = KINDS[sweep.kind].descriptions
    variables = {}
    for name in scalar_names:
        variables[name] = (dims, data[name], {"description": descriptions.get(name, name)})
    for name, dim in vector_dims.items():
        variables[name] = (dims + [dim], vdata[name], {"description": descriptions.get(name, name)})
    variables["point_seed"] = (dims, seeds, {"description": "seed of each point (-1: missing); " + SEED_RULE})
    coord_vars = {k: np.asarray(v) for k, v in sweep.grid.items()}
    for dim, n in lengths.items():
        coord_vars[dim] = coords.get(dim, np.arange(n))
    attrs = {"package": "rfdm", "version": __version__, "kind": sweep.kind,
             "config": canonical_json(sweep.resolved_config()), "sweep_seed": int(sweep.seed),
             "seed_rule": SEED_RULE, "source": str(Path(sweep.source).resolve()), "points_total": status["total"],
             "points_done": len(records), "points_missing": status["total"] - len(records),
             "point_versions": ",".join(sorted(versions))}
    return xr.Dataset(variables, coords=coord_vars, attrs=attrs)


def _floats(value):
    """JSON numbers back to float64 ("inf", "-inf", "nan" strings included)."""
    if isinstance(value, list):
        return np.array([float(v) for v in value], dtype=np.float64)
    return float(value)


def write_netcdf(dataset, path) -> Path:
    """Write ``dataset`` to netCDF (xarray's scipy engine: netCDF3, no netCDF library needed), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = bytes(dataset.to_netcdf(path=None, engine="scipy"))
    _atomic_write(path, lambda fh: fh.write(data))
    return path
