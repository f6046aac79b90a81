"""Resumable parameter sweeps (the `rfdm sweep` command; see docs/sweeps.md).

A sweep is a TOML file naming a *point kind* (what one point computes: any registered experiment with sweep
outputs, rfdm.protocol), fixed parameters and a grid: every combination of the grid values is one point.
The package: :mod:`.spec` (the config, the grid, keys and seeds), :mod:`.store` (one JSON file per point,
written atomically; :func:`run_point`, the one function every executor runs; status), :mod:`.executors`
(serial, process pool, submitit locally or on SLURM), :mod:`.collect` (one labelled xarray dataset, netCDF),
:mod:`.kinds` (the point kinds).

Keys: a point's key hashes its resolved configuration *and the package version*; a point written by another
version is recomputed unless ``reuse_older`` (``--reuse-older``) accepts points of older versions.
"""

from __future__ import annotations

from ..errors import InvalidParameterError, NumericalError, RfdmError
from .collect import _import_xarray, collect, write_netcdf
from .executors import EXECUTORS, MissingExtraError, run_sweep
from .kinds import KINDS, ExperimentKind, PointKind, register_kind
from .spec import (SEED_RULE, Point, Sweep, canonical_json, default_workers, load_config, open_sweep, parse_config,
                   point_key, point_seed)
from .store import LOCK_WAIT_S, MANIFEST, POINT_FORMAT, point_paths, read_point, run_point, sweep_status

__all__ = ["InvalidParameterError", "NumericalError", "RfdmError", "collect", "write_netcdf", "EXECUTORS",
           "MissingExtraError", "run_sweep", "KINDS", "ExperimentKind", "PointKind", "register_kind", "SEED_RULE",
           "Point", "Sweep", "canonical_json", "default_workers", "load_config", "open_sweep", "parse_config",
           "point_key", "point_seed", "LOCK_WAIT_S", "MANIFEST", "POINT_FORMAT", "point_paths", "read_point", "run_point",
           "sweep_status", "_import_xarray"]
