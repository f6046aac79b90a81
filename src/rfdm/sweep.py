"""Resumable parameter sweeps (the `rfdm sweep` command; see docs/sweeps.md).

A sweep is a TOML file naming a *point kind* (what one point computes), fixed parameters and a grid: every
combination of the grid values is one point.  Each point is computed by :func:`run_point`, which writes one
JSON file atomically (temporary file + ``os.replace``), keyed by a hash of the point's fully resolved
configuration, so a sweep can be killed at any moment (``kill -9`` included) and rerun: finished points are
read back, never recomputed, and no file is ever half-written.  :func:`run_point` is the one code path for
every executor: the serial loop, a local process pool and submitit (LocalExecutor, or AutoExecutor on SLURM).

Seeds: the point seed is derived from the sweep seed and the point's resolved parameters only (the first
31 bits of sha256 of their canonical JSON, :func:`point_seed`), so a point gets the same numbers whatever the
worker count, executor, order of execution or the other points of the grid.  ``replicates = K`` adds a
dimension "replicate"; replicate r >= 1 adds ``replicate = r`` to the hashed identity (replicate 0 is the
unreplicated point).

:func:`collect` gathers the finished points into one labelled :class:`xarray.Dataset` (one dimension per grid
parameter; vector outputs such as a loss curve over tau get one more dimension), written to netCDF by
:func:`write_netcdf`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from . import __version__
from .backend import check_device_name, default_device, resolve_device
from .errors import InvalidParameterError, NumericalError, RfdmError
from .results import _atomic_write, provenance, to_jsonable, write_json

POINT_FORMAT = "rfdm-sweep-point/1"
EXECUTORS = ("local", "submitit-local", "slurm")
SECTIONS = ("sweep", "fixed", "grid", "slurm")
SWEEP_KEYS = {"kind": str, "out": str, "executor": str, "workers": int, "seed": int, "device": str,
              "replicates": int}
#: [slurm] keys, their types and defaults (timeout_min also bounds a submitit-local job)
SLURM_DEFAULTS = {"partition": "", "account": "", "qos": "", "timeout_min": 60, "cpus_per_task": 1,
                  "mem_gb": 4.0, "array_parallelism": 64}
MANIFEST = "sweep.json"
#: seconds a run waits for the lock of another run on the same folder
LOCK_WAIT_S = 10.0
POINTS_DIR = "points"
SEED_RULE = ("point seed = first 31 bits of sha256(canonical JSON of {kind, params, sweep_seed}); "
             "params are the point's fully resolved parameters, plus replicate = r for replicates r >= 1")


class MissingExtraError(InvalidParameterError):
    """An optional dependency (xarray, submitit) is not installed; the message says which extra to install."""


# -- point kinds ---------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PointKind:
    """What one point computes.

    defaults : every parameter with its default; the default's type is the parameter's type (int, float, str,
        bool, or a tuple for a list of numbers).  A float parameter accepts integers.
    compute : ``compute(params, seed) -> dict`` with ``scalars`` ({name: float}), ``vectors`` ({name: (dim,
        values)}), ``coords`` ({dim: values}, optional; dims without coordinates are indexed 0, 1, ...) and
        ``info`` (anything JSON-able, stored with the point).
    validate : ``validate(params, seed)`` raises InvalidParameterError for a bad point (its return value is
        ignored); called for every point before the sweep starts, so bad input never starts a half sweep.
    descriptions : {output name: one line}, stored as the ``description`` attribute of collected variables.
    """

    defaults: dict
    compute: Callable[[dict, int], dict]
    validate: Callable[[dict, int], None] | None = None
    description: str = ""
    descriptions: dict = dataclasses.field(default_factory=dict)


KINDS: dict[str, PointKind] = {}


def register_kind(name: str, defaults: dict, compute, validate=None, description: str = "",
                  descriptions: dict | None = None) -> None:
    """Add a point kind to :data:`KINDS` (see :class:`PointKind`)."""
    KINDS[name] = PointKind(dict(defaults), compute, validate, description, dict(descriptions or {}))


def _whole(name: str, psi: float, d: int) -> int:
    """psi * d as a positive whole number (p = psi_p d, n = psi_n d)."""
    value = psi * d
    if not math.isfinite(value) or abs(value - round(value)) > 1e-9 or round(value) < 1:
        raise InvalidParameterError(f"{name} * d = {value:g} is not a positive whole number.")
    return int(round(value))


def _dynamics_config(params: dict, seed: int):
    from .experiments.dynamics import DynamicsConfig

    d = params["d"]
    if isinstance(d, bool) or not isinstance(d, int) or d < 1:
        raise InvalidParameterError(f"d must be a positive integer, got {d!r}.")
    p, n = _whole("psi_p", params["psi_p"], d), _whole("psi_n", params["psi_n"], d)
    # tau = inf is always appended: the end point of the flow (the minimum-norm interpolator)
    return DynamicsConfig(d=d, p=p, n=n, t=params["t"], activation=params["activation"],
                          sigma_spectrum=tuple(params["sigma_spectrum"]), seed=seed,
                          tau=tuple(params["tau"]) + (math.inf,), rtol=params["rtol"])


def _compute_dynamics(params: dict, seed: int) -> dict:
    """The per-time random-features score on Gaussian data, trained by the closed-form gradient flow:
    rfdm.experiments.dynamics.compute (the `rfdm dynamics` computation, method exact) at the params' tau and
    tau = inf; tau_gen and tau_mem read off the spectrum of this training set's U
    (rfdm.time_integrated.timescales_from_spectrum with the per-time loss scale kappa = Delta_t)."""
    from .diffusion import delta_t
    from .experiments import dynamics as exp
    from .time_integrated import timescales_from_spectrum

    config = _dynamics_config(params, seed)
    res = exp.compute(config, quiet=True)
    k = len(params["tau"])
    curves = {"train_loss": res["train_loss"], "test_loss": res["test_loss"],
              "gap": res["generalization_gap"], "score_error": res["score_error"]}
    ts = timescales_from_spectrum(res["eigenvalues"], config.n, config.d, config.psi_p, float(delta_t(config.t)))
    finite = res["timescales"][np.isfinite(res["timescales"])]
    scalars = {f"{name}_inf": float(v[k]) for name, v in curves.items()}
    scalars.update(tau_gen=_num(ts["tau_gen"]), tau_mem=_num(ts["tau_mem"]),
                   timescale_min=float(finite.min()) if finite.size else math.nan,
                   timescale_max=float(finite.max()) if finite.size else math.nan)
    return {"scalars": scalars,
            "vectors": {name: ("tau", np.asarray(v[:k], dtype=np.float64)) for name, v in curves.items()},
            "coords": {"tau": np.asarray(res["tau"][:k], dtype=np.float64)},
            "info": dict(res["info"], library_config=config.as_dict())}


def _spectrum_config(params: dict, seed: int):
    from .experiments.spectrum import SpectrumConfig

    return SpectrumConfig(psi_p=params["psi_p"], psi_n=params["psi_n"], t=params["t"],
                          activation=params["activation"], sigma_spectrum=tuple(params["sigma_spectrum"]),
                          seed=seed, n_points=params["n_points"])


def _compute_spectrum(params: dict, seed: int) -> dict:
    """The spectrum of U under the Gaussian equivalence (rfdm.experiments.spectrum.compute, the `rfdm
    spectrum` computation without --empirical-d): tau_gen, tau_mem (and their leading orders), the atom, the
    population and memorization bulks, and the edges and masses of every bulk.  A solve whose run-time checks
    fail raises NumericalError (the point is recorded as failed)."""
    from .experiments import spectrum as exp

    res = exp.compute(_spectrum_config(params, seed), quiet=True)
    if not res["checks"]["converged"]:
        raise NumericalError(f"a run-time check of the spectral solver failed (max residual "
                             f"{res['checks'].get('max_residual', math.nan):.3g}).")
    ts, bulks, atoms = res["timescales"], res["bulks"], res["atoms"]
    biggest = max(atoms, key=lambda a: a["weight"]) if atoms else None

    def bulk(index, field):
        return math.nan if index is None else float(bulks[index][field])

    mem, pop = ts["memorization_bulk"], ts["population_bulk"]
    scalars = {"tau_gen": _num(ts["tau_gen"]), "tau_mem": _num(ts["tau_mem"]),
               "tau_gen_leading_order": _num(ts["tau_gen_leading_order"]),
               "tau_mem_leading_order": _num(ts["tau_mem_leading_order"]),
               "atom_weight": float(sum(a["weight"] for a in atoms)),
               "atom_position": math.nan if biggest is None else float(biggest["position"]),
               "n_bulks": float(len(bulks)), "total_mass": float(res["total_mass"]),
               "population_bulk_left": bulk(pop, "left"), "population_bulk_right": bulk(pop, "right"),
               "population_bulk_mass": bulk(pop, "mass"),
               "memorization_bulk_left": bulk(mem, "left"), "memorization_bulk_right": bulk(mem, "right"),
               "memorization_bulk_mass": bulk(mem, "mass")}
    vectors = {f"bulk_{f}": ("bulk", np.array([b[f] for b in bulks], dtype=np.float64))
               for f in ("left", "right", "mass", "mean")}
    return {"scalars": scalars, "vectors": vectors, "coords": {},
            "info": {"checks": res["checks"], "coefficients": res["coefficients"]}}


def _num(x) -> float:
    return math.nan if x is None else float(x)


register_kind(
    "dynamics",
    defaults={"d": 16, "psi_p": 4.0, "psi_n": 2.0, "t": 0.01, "activation": "tanh",
              "tau": (0.1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7), "sigma_spectrum": (1.0,), "rtol": 1e-10},
    compute=_compute_dynamics, validate=_dynamics_config,
    description="per-time random-features score on Gaussian data, closed-form gradient flow (rfdm dynamics)",
    descriptions={"train_loss": "train loss at tau", "test_loss": "test loss at tau",
                  "gap": "generalization gap (test - train loss) at tau", "score_error": "score error at tau",
                  "train_loss_inf": "train loss at tau = inf", "test_loss_inf": "test loss at tau = inf",
                  "gap_inf": "generalization gap at tau = inf", "score_error_inf": "score error at tau = inf",
                  "tau_gen": "psi_p/(Delta_t lambda_mean) of the top cluster of eigenvalues of this U",
                  "tau_mem": "psi_p/(Delta_t lambda_left) of the memorization cluster of this U (NaN if n <= d)",
                  "timescale_min": "fastest mode timescale psi_p/(Delta_t lambda_max)",
                  "timescale_max": "slowest finite mode timescale"})

register_kind(
    "spectrum",
    defaults={"psi_p": 64.0, "psi_n": 8.0, "t": 0.01, "activation": "tanh", "sigma_spectrum": (1.0,),
              "n_points": 2000},
    compute=_compute_spectrum, validate=_spectrum_config,
    description="spectrum of U from the self-consistent equations (rfdm spectrum)",
    descriptions={"tau_gen": "psi_p/(Delta_t lambda_mean) of the population bulk",
                  "tau_mem": "psi_p/(Delta_t lambda_left) of the memorization bulk",
                  "atom_weight": "total weight of the atoms", "atom_position": "position of the heaviest atom",
                  "n_bulks": "number of bulks", "bulk_left": "left edge of each bulk",
                  "bulk_right": "right edge of each bulk", "bulk_mass": "mass of each bulk",
                  "bulk_mean": "mean eigenvalue of each bulk"})


# -- configuration -----------------------------------------------------------------------------------------

def canonical_json(obj) -> str:
    """Sorted keys, no spaces, floats by repr (inf/nan as strings): the text hashed for keys and seeds."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def point_seed(sweep_seed: int, kind: str, params: dict) -> int:
    """The seed of one point: the first 31 bits of sha256 of the canonical JSON of {kind, params,
    sweep_seed}; independent of the order of execution, the worker count and the rest of the grid."""
    digest = hashlib.sha256(canonical_json({"kind": kind, "params": params, "sweep_seed": int(sweep_seed)})
                            .encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def point_key(kind: str, params: dict, seed: int) -> str:
    """sha256 (hex) of the canonical JSON of the point's fully resolved configuration {kind, params, seed}."""
    return hashlib.sha256(canonical_json({"kind": kind, "params": params, "seed": int(seed)}).encode()).hexdigest()


def _coerce(name: str, value, default, where: str):
    """``value`` converted to the type of ``default``, or InvalidParameterError naming the key."""
    def bad(what):
        return InvalidParameterError(f"{where} {name} must be {what}, got {value!r}.")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in value):
            raise bad("a list of numbers")
        return tuple(float(v) for v in value)
    raise TypeError(f"unsupported default type for {name}")  # a mistake in a registered kind


@dataclasses.dataclass(frozen=True)
class Point:
    """One point of the grid: its index along each grid dimension, its grid values, its fully resolved
    parameters (fixed, grid and defaults), its seed, key and file name."""

    index: tuple
    grid: dict
    params: dict
    seed: int
    key: str
    name: str

    def config(self, kind: str, sweep_seed: int, device: str = "cpu") -> dict:
        """The picklable, JSON-able configuration :func:`run_point` takes (``device``: where the point's kernels
        run, rfdm.backend; not part of the key, since results agree across devices to rounding)."""
        return {"kind": kind, "params": self.params, "seed": self.seed, "sweep_seed": sweep_seed,
                "key": self.key, "name": self.name, "grid": self.grid, "device": device}


def _label_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v)
    return re.sub(r"[^A-Za-z0-9.+-]", "_", str(v))


def _point_name(grid: dict, key: str) -> str:
    label = "_".join(f"{k}={_label_value(v)}" for k, v in grid.items()) or "point"
    return f"{label[:120]}-{key[:16]}"


@dataclasses.dataclass
class Sweep:
    """A validated sweep: the kind, the sweep seed, the resolved fixed parameters (defaults included), the
    grid (name -> values, in file order), the output folder, executor settings and the expanded points."""

    kind: str
    seed: int
    fixed: dict
    grid: dict
    out: Path
    executor: str
    workers: int
    slurm: dict
    source: str
    toml_text: str
    points: list
    device: str = "cpu"

    @property
    def points_dir(self) -> Path:
        return self.out / POINTS_DIR

    def resolved_config(self) -> dict:
        """What the results depend on: kind, sweep seed, every non-grid parameter and the grid."""
        return {"kind": self.kind, "seed": self.seed, "fixed": self.fixed, "grid": self.grid}


def default_workers() -> int:
    return max(1, min(2, os.cpu_count() or 1))


def _load_toml_text(text: str, source: str) -> dict:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib
        except ImportError:
            raise InvalidParameterError("reading a sweep config on Python 3.10 needs tomli: "
                                        "pip install tomli.") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc).rstrip(".")
        line = getattr(exc, "lineno", None)
        if line is not None and "line" not in msg:
            msg += f" (at line {line})"
        raise InvalidParameterError(f"{source} is not valid TOML: {msg}.") from None


def load_config(path, out=None) -> Sweep:
    """Read and validate a sweep TOML file (see :func:`parse_config`); ``out`` overrides [sweep] out."""
    path = Path(path)
    if not path.is_file():
        raise InvalidParameterError(f"sweep config {path} does not exist or is not a file.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidParameterError(f"cannot read sweep config {path}: {exc}.") from None
    return parse_config(_load_toml_text(text, str(path)), source=str(path), base_dir=path.resolve().parent,
                        out=out, toml_text=text)


def parse_config(data: dict, source: str = "config", base_dir=".", out=None, toml_text: str = "") -> Sweep:
    """Validate a parsed sweep config strictly (unknown sections or keys, wrong types, a key both fixed and in
    the grid, an empty or repeated grid list, an unknown kind or executor) and every point's parameters;
    raise InvalidParameterError naming the key.  [sweep] out is relative to ``base_dir``."""
    for section in data:
        if section not in SECTIONS:
            what = "section" if isinstance(data[section], dict) else "top-level key"
            raise InvalidParameterError(f"unknown {what} {section!r} in {source}; the sections are "
                                        f"{', '.join('[' + s + ']' for s in SECTIONS)}.")
        if not isinstance(data[section], dict):
            raise InvalidParameterError(f"{section} in {source} must be a [{section}] table.")
    sw = data.get("sweep", {})
    for key, value in sw.items():
        if key not in SWEEP_KEYS:
            raise InvalidParameterError(f"unknown key {key!r} in [sweep] of {source}; the keys are "
                                        f"{', '.join(SWEEP_KEYS)}.")
        typ = SWEEP_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, typ):
            what = "an integer" if typ is int else "a string"
            raise InvalidParameterError(f"[sweep] {key} in {source} must be {what}, got {value!r}.")
    if "kind" not in sw:
        raise InvalidParameterError(f"[sweep] kind is missing in {source}; choose one of {', '.join(KINDS)}.")
    kind = sw["kind"]
    if kind not in KINDS:
        raise InvalidParameterError(f"unknown kind {kind!r} in [sweep] of {source}; choose one of {', '.join(KINDS)}.")
    executor = sw.get("executor", "local")
    if executor not in EXECUTORS:
        raise InvalidParameterError(f"unknown executor {executor!r} in [sweep] of {source}; choose one of "
                                    f"{', '.join(EXECUTORS)}.")
    workers = sw.get("workers", default_workers())
    if workers < 1:
        raise InvalidParameterError(f"[sweep] workers in {source} must be a positive integer, got {workers}.")
    device = check_device_name(sw.get("device", "cpu"))
    replicates = sw.get("replicates", 1)
    if replicates < 1:
        raise InvalidParameterError(f"[sweep] replicates in {source} must be a positive integer, got {replicates}.")
    seed = sw.get("seed", 0)
    if seed < 0:
        raise InvalidParameterError(f"[sweep] seed in {source} must be >= 0, got {seed}.")
    slurm = dict(SLURM_DEFAULTS)
    for key, value in data.get("slurm", {}).items():
        if key not in SLURM_DEFAULTS:
            raise InvalidParameterError(f"unknown key {key!r} in [slurm] of {source}; the keys are "
                                        f"{', '.join(SLURM_DEFAULTS)}.")
        slurm[key] = _coerce(key, value, SLURM_DEFAULTS[key], "[slurm]")
    for key in ("timeout_min", "cpus_per_task", "array_parallelism"):
        if slurm[key] < 1:
            raise InvalidParameterError(f"[slurm] {key} in {source} must be a positive integer, got {slurm[key]}.")
    if not slurm["mem_gb"] > 0:
        raise InvalidParameterError(f"[slurm] mem_gb in {source} must be > 0, got {slurm['mem_gb']:g}.")

    spec = KINDS[kind]
    names = ", ".join(spec.defaults)
    fixed_in, grid_in = data.get("fixed", {}), data.get("grid", {})
    for section, table in (("fixed", fixed_in), ("grid", grid_in)):
        for key in table:
            if key not in spec.defaults:
                raise InvalidParameterError(f"unknown key {key!r} in [{section}] of {source}; the {kind} kind "
                                            f"takes {names}.")
    for key in grid_in:
        if key in fixed_in:
            raise InvalidParameterError(f"{key!r} is both in [fixed] and in [grid] of {source}; keep one.")
    fixed = {}
    for key, default in spec.defaults.items():
        if key not in grid_in:
            fixed[key] = _coerce(key, fixed_in[key], default, "[fixed]") if key in fixed_in else default
    grid = {}
    for key, values in grid_in.items():
        default = spec.defaults[key]
        if isinstance(default, tuple):
            raise InvalidParameterError(f"[grid] {key} in {source}: {key} is a list parameter and cannot be "
                                        f"swept; put it in [fixed].")
        if not isinstance(values, list):
            raise InvalidParameterError(f"[grid] {key} in {source} must be a list of values, got {values!r}.")
        if not values:
            raise InvalidParameterError(f"[grid] {key} in {source} is an empty list.")
        coerced = [_coerce(key, v, default, "[grid]") for v in values]
        if len(set(coerced)) != len(coerced):
            raise InvalidParameterError(f"[grid] {key} in {source} repeats a value.")
        grid[key] = coerced

    if out is None:
        out_path = Path(os.path.normpath(Path(base_dir) / sw.get("out", f"{Path(source).stem}-results")))
    else:
        out_path = Path(out)
    if replicates > 1:  # one more grid dimension; replicate 0 is the point of the unreplicated sweep
        if "replicate" in spec.defaults:
            raise InvalidParameterError(f"the {kind} kind has a parameter named replicate; replicates cannot be used.")
        grid["replicate"] = list(range(replicates))
    points = []
    for index in itertools.product(*(range(len(v)) for v in grid.values())):
        gvals = {k: grid[k][i] for k, i in zip(grid, index)}
        params = {k: (gvals[k] if k in gvals else fixed[k]) for k in spec.defaults}
        r = gvals.get("replicate", 0)
        seed_k = point_seed(seed, kind, params if r == 0 else dict(params, replicate=r))
        key = point_key(kind, params, seed_k)
        point = Point(tuple(index), gvals, params, seed_k, key, _point_name(gvals, key))
        if spec.validate is not None:
            try:
                spec.validate(params, seed_k)
            except InvalidParameterError as exc:
                where = ", ".join(f"{k}={_label_value(v)}" for k, v in gvals.items()) or "the only point"
                raise InvalidParameterError(f"invalid point ({where}) in {source}: {str(exc).rstrip('.')}.") from None
        points.append(point)
    return Sweep(kind=kind, seed=seed, fixed=fixed, grid=grid, out=out_path, executor=executor,
                 workers=workers, slurm=slurm, source=source, toml_text=toml_text, points=points, device=device)


def open_sweep(target, out=None) -> Sweep:
    """A sweep from its CONFIG.toml, or from its output folder (which holds the sweep.json manifest written by
    :func:`run_sweep`; the folder is then the output folder)."""
    target = Path(target)
    if target.is_dir():
        manifest = target / MANIFEST
        if not manifest.is_file():
            raise InvalidParameterError(f"{target} is a folder without {MANIFEST}; give the sweep's CONFIG.toml "
                                        f"or an output folder written by `rfdm sweep run`.")
        try:
            meta = json.loads(manifest.read_text(encoding="utf-8"))
            text, source = meta["toml"], meta["source"]
        except (OSError, ValueError, KeyError, TypeError):
            raise InvalidParameterError(f"{manifest} is not a sweep manifest.") from None
        data = _load_toml_text(text, source)
        return parse_config(data, source=source, out=target if out is None else out, toml_text=text)
    return load_config(target, out=out)


# -- one point -----------------------------------------------------------------------------------------------

def point_paths(out_dir, name: str) -> tuple[Path, Path]:
    """(result file, failed marker) of a point."""
    d = Path(out_dir) / POINTS_DIR
    return d / f"{name}.json", d / f"{name}.failed.json"


def read_point(path, key: str) -> dict | None:
    """The stored point at ``path`` if it exists, parses and has the expected key; else None."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, ValueError):
        return None
    return obj if isinstance(obj, dict) and obj.get("key") == key else None


def run_point(point_config: dict, out_dir) -> dict:
    """Compute one point and write it atomically to OUT/points/NAME.json (its outputs, full resolved config,
    the package version and the seed, in a results.provenance header).  A finished point is not recomputed.
    Any exception in the computation (NumericalError above all) is recorded as OUT/points/NAME.failed.json
    with its message and traceback instead, and reported, not raised.  Returns {name, key, status
    ("done", "cached" or "failed"), seconds, message, and error (the exception's type) when failed}.
    The one function every executor runs."""
    cfg = point_config
    done_path, failed_path = point_paths(out_dir, cfg["name"])
    if read_point(done_path, cfg["key"]) is not None:
        return {"name": cfg["name"], "key": cfg["key"], "status": "cached", "seconds": 0.0, "message": ""}
    done_path.parent.mkdir(parents=True, exist_ok=True)
    identity = {"kind": cfg["kind"], "params": cfg["params"], "sweep_seed": cfg["sweep_seed"]}
    base = {"format": POINT_FORMAT, "key": cfg["key"], "name": cfg["name"], "kind": cfg["kind"],
            "grid": cfg["grid"], "params": cfg["params"], "seed": cfg["seed"], "sweep_seed": cfg["sweep_seed"],
            "version": __version__, "header": provenance(identity, cfg["seed"]),
            "device": cfg.get("device", "cpu")}
    start = time.perf_counter()
    try:
        if cfg["kind"] not in KINDS:  # e.g. a kind registered at run time, unknown to a worker process
            raise RfdmError(f"unknown point kind {cfg['kind']!r} in this process.")
        with default_device(cfg.get("device", "cpu")):
            result = KINDS[cfg["kind"]].compute(dict(cfg["params"]), int(cfg["seed"]))
    except Exception as exc:  # recorded, not fatal for the sweep; a rerun retries the point
        seconds = time.perf_counter() - start
        message = " ".join(str(exc).split()) or type(exc).__name__
        write_json(failed_path, dict(base, status="failed", error=type(exc).__name__, message=message,
                                     traceback=traceback.format_exc(), seconds=seconds))
        return {"name": cfg["name"], "key": cfg["key"], "status": "failed", "seconds": seconds,
                "error": type(exc).__name__, "message": f"{type(exc).__name__}: {message}"}
    seconds = time.perf_counter() - start
    vectors = {name: {"dim": dim, "values": np.asarray(values, dtype=np.float64)}
               for name, (dim, values) in result.get("vectors", {}).items()}
    payload = dict(base, status="done", seconds=seconds,
                   scalars={k: float(v) for k, v in result.get("scalars", {}).items()}, vectors=vectors,
                   coords={k: np.asarray(v, dtype=np.float64) for k, v in result.get("coords", {}).items()},
                   info=result.get("info", {}))
    write_json(done_path, payload)
    try:
        failed_path.unlink()
    except FileNotFoundError:
        pass
    return {"name": cfg["name"], "key": cfg["key"], "status": "done", "seconds": seconds, "message": ""}


# -- status ------------------------------------------------------------------------------------------------

def sweep_status(sweep: Sweep) -> dict:
    """{total, done, pending, failed (lists of point names; failed: {name, message}), other_files (point files
    of other configurations in the same folder)}."""
    done, pending, failed = [], [], []
    for p in sweep.points:
        done_path, failed_path = point_paths(sweep.out, p.name)
        if read_point(done_path, p.key) is not None:
            done.append(p.name)
            continue
        marker = read_point(failed_path, p.key)
        if marker is not None:
            failed.append({"name": p.name, "message": f"{marker.get('error', 'error')}: {marker.get('message', '')}"})
        else:
            pending.append(p.name)
    known = {f"{p.name}.json" for p in sweep.points} | {f"{p.name}.failed.json" for p in sweep.points}
    other = 0
    if sweep.points_dir.is_dir():
        other = sum(1 for f in sweep.points_dir.iterdir()
                    if f.name.endswith(".json") and not f.name.startswith(".") and f.name not in known)
    return {"total": len(sweep.points), "done": done, "pending": pending, "failed": failed, "other_files": other,
            "out": str(sweep.out)}


# -- running ------------------------------------------------------------------------------------------------

def _clean_temporaries(out: Path) -> int:
    """Remove the temporary files of writes interrupted by a kill (hidden ``.NAME.*.tmp``)."""
    removed = 0
    for folder in (out, out / POINTS_DIR):
        if folder.is_dir():
            for f in folder.glob(".*.tmp"):
                try:
                    f.unlink()
                    removed += 1
                except FileNotFoundError:
                    pass
    return removed


class _Lock:
    """An exclusive flock on OUT/.lock while a run is active (released by the kernel when the process dies,
    kill -9 included), so that two runs never share a folder and cleaning temporaries is safe."""

    def __init__(self, out: Path, wait_s: float | None = None):
        wait_s = LOCK_WAIT_S if wait_s is None else wait_s
        self.fd = None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return
        self.fd = os.open(out / ".lock", os.O_RDWR | os.O_CREAT, 0o666)
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(self.fd)
                    self.fd = None
                    raise RfdmError(f"another `rfdm sweep run` is using {out}; wait for it to finish.") from None
                time.sleep(0.1)
            except OSError:  # e.g. a file system without locks
                return

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _worker_init(lock_fd):
    """Pool worker: leave SIGINT to the parent, drop the inherited copy of the lock descriptor, and exit when
    the parent dies (a worker of a killed run would otherwise wait for work forever)."""
    import signal
    import threading

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if lock_fd is not None:
        try:
            os.close(lock_fd)
        except OSError:
            pass
    threading.Thread(target=_exit_with_parent, args=(os.getppid(),), daemon=True).start()


def _exit_with_parent(ppid: int, period: float = 0.5) -> None:
    while True:
        time.sleep(period)
        if os.getppid() != ppid:
            os._exit(1)  # a point being computed is abandoned; nothing is half-written


def _import_submitit():
    try:
        import submitit
    except ImportError:
        raise MissingExtraError("the submitit executors need submitit: pip install 'rfdm[slurm]'.") from None
    return submitit


def _import_xarray():
    try:
        import xarray
    except ImportError:
        raise MissingExtraError("collecting a sweep needs xarray: pip install 'rfdm[sweep]'.") from None
    return xarray


def _write_manifest(sweep: Sweep) -> None:
    write_json(sweep.out / MANIFEST, {"format": "rfdm-sweep/1", "version": __version__,
                                      "source": str(Path(sweep.source).resolve()),
                                      "toml": sweep.toml_text, "config": sweep.resolved_config(),
                                      "seed_rule": SEED_RULE, "points": [
                                          {"name": p.name, "key": p.key, "seed": p.seed, "grid": p.grid}
                                          for p in sweep.points]})


def run_sweep(sweep: Sweep, executor: str | None = None, workers: int | None = None, quiet: bool = False,
              wait: bool = True, device: str | None = None) -> dict:
    """Compute every point of ``sweep`` not already done (failed points are retried) with the executor
    (``local``: serial when workers = 1, else a process pool; ``submitit-local``; ``slurm``), printing
    progress to stderr.  Holds an exclusive lock on OUT/.lock meanwhile and first removes the temporary files
    of writes a kill interrupted.  Returns {total, already_done, computed, failed: [{name, error, message}],
    submitted, out}; ``wait=False`` (slurm) returns once the job array is submitted."""
    executor = executor or sweep.executor
    workers = workers or sweep.workers
    if executor not in EXECUTORS:
        raise InvalidParameterError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}.")
    if workers < 1:
        raise InvalidParameterError(f"workers must be a positive integer, got {workers}.")
    device = check_device_name(device or sweep.device)
    if executor != "slurm":  # on SLURM the device is resolved on the nodes (a failure marks the points failed)
        resolve_device(device)
    ex = None if executor == "local" else _submitit_executor(sweep, executor)  # before anything is written
    log = (lambda m: None) if quiet else (lambda m: print(f"[rfdm sweep] {m}", file=sys.stderr, flush=True))
    sweep.points_dir.mkdir(parents=True, exist_ok=True)
    lock = _Lock(sweep.out)
    try:
        _clean_temporaries(sweep.out)
        _write_manifest(sweep)
        status = sweep_status(sweep)
        done_names = set(status["done"])
        todo = [p for p in sweep.points if p.name not in done_names]
        total, already = len(sweep.points), len(done_names)
        summary = {"total": total, "already_done": already, "computed": 0, "failed": [], "submitted": 0,
                   "out": str(sweep.out)}
        if not todo:
            log(f"all {total} points already done in {sweep.out}")
            return summary
        log(f"{total} points: {already} already done, {len(todo)} to compute ({executor}, "
            f"{workers} worker{'s' if workers > 1 else ''}) into {sweep.out}")
        counter = {"done": already}

        def report(res):
            if res["status"] == "failed":
                summary["failed"].append({"name": res["name"], "error": res.get("error", ""),
                                          "message": res["message"]})
            else:
                summary["computed"] += res["status"] == "done"
                counter["done"] += 1
            state = "FAILED, " + res["message"] if res["status"] == "failed" else f"{res['seconds']:.2f} s"
            log(f"{counter['done']}/{total} points done ({res['name']}: {state})")

        configs = [p.config(sweep.kind, sweep.seed, device) for p in todo]
        if executor == "local":
            _run_local(configs, sweep.out, workers, lock.fd, report)
        else:
            submitted = _run_submitit(ex, configs, sweep, executor, workers, report, wait, log)
            summary["submitted"] = submitted
        return summary
    finally:
        lock.release()


def _run_local(configs, out, workers, lock_fd, report):
    workers = min(workers, len(configs))
    if workers == 1:
        for cfg in configs:
            report(run_point(cfg, out))
        return
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    pool = ProcessPoolExecutor(max_workers=workers, initializer=_worker_init, initargs=(lock_fd,))
    try:
        futures = [pool.submit(run_point, cfg, out) for cfg in configs]
        for fut in as_completed(futures):
            report(fut.result())
    except BrokenProcessPool:
        raise RfdmError("a worker process died (out of memory?); finished points are kept, rerun to resume.") from None
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _submitit_executor(sweep: Sweep, executor: str):
    """submitit's LocalExecutor (``submitit-local``) or AutoExecutor on SLURM (``slurm``, one job array with
    the [slurm] settings), logging to OUT/submitit; built before anything is written."""
    submitit = _import_submitit()
    folder = sweep.out / "submitit"
    s = sweep.slurm
    if executor == "submitit-local":
        ex = submitit.LocalExecutor(folder=folder)
        ex.update_parameters(timeout_min=s["timeout_min"])
        return ex
    try:
        ex = submitit.AutoExecutor(folder=folder, cluster="slurm")
    except RuntimeError as exc:  # e.g. no srun: not on a SLURM cluster
        msg = " ".join(str(exc).split()).rstrip(".")
        raise InvalidParameterError(f"--executor slurm needs a SLURM cluster ({msg}); use local or "
                                    f"submitit-local.") from None
    params = {"timeout_min": s["timeout_min"], "cpus_per_task": s["cpus_per_task"], "mem_gb": s["mem_gb"],
              "name": f"rfdm-sweep-{Path(sweep.source).stem}", "slurm_array_parallelism": s["array_parallelism"]}
    for key in ("partition", "account", "qos"):
        if s[key]:
            params[f"slurm_{key}"] = s[key]
    ex.update_parameters(**params)
    return ex


def _run_submitit(ex, configs, sweep, executor, workers, report, wait, log) -> int:
    """Dispatch run_point through a submitit executor: on SLURM one job array (at most [slurm]
    array_parallelism jobs at once), waited for unless ``wait`` is false; with LocalExecutor at most
    ``workers`` jobs at once.  Returns the number of jobs submitted."""
    if executor == "slurm":
        jobs = ex.map_array(run_point, configs, [sweep.out] * len(configs))
        log(f"submitted {len(jobs)} SLURM jobs (array {str(jobs[0].job_id).split('_')[0]}); logs in "
            f"{sweep.out / 'submitit'}")
        if wait:
            _wait_jobs(list(zip(jobs, configs)), report, sweep.out)
        return len(jobs)
    queue, running, submitted = list(configs), [], 0
    while queue or running:
        while queue and len(running) < workers:
            cfg = queue.pop(0)
            running.append((ex.submit(run_point, cfg, sweep.out), cfg))
            submitted += 1
        running = _wait_jobs(running, report, sweep.out, first_only=True)
    return submitted


def _wait_jobs(running, report, out, first_only: bool = False):
    """Poll submitit jobs; report each finished one (a job that died without writing its point, e.g. killed at
    its time limit, is recorded as a failed point).  With first_only, return the jobs still running as soon as
    one has finished."""
    while running:
        still, finished = [], 0
        for job, cfg in running:
            if not job.done():
                still.append((job, cfg))
                continue
            finished += 1
            try:
                res = job.result()
            except Exception as exc:  # the job died (timeout, node failure, ...): record it
                message = " ".join(str(exc).split())[:500] or type(exc).__name__
                done_path, failed_path = point_paths(out, cfg["name"])
                if read_point(done_path, cfg["key"]) is None:
                    write_json(failed_path, {"format": POINT_FORMAT, "status": "failed", "key": cfg["key"],
                                             "name": cfg["name"], "kind": cfg["kind"], "params": cfg["params"],
                                             "seed": cfg["seed"], "error": type(exc).__name__, "message": message,
                                             "version": __version__})
                res = {"name": cfg["name"], "key": cfg["key"], "status": "failed", "seconds": 0.0,
                       "error": type(exc).__name__, "message": f"job failed: {type(exc).__name__}: {message}"}
            report(res)
        running = still
        if first_only and finished:
            return running
        if running:
            time.sleep(0.1)
    return running


# -- collecting ---------------------------------------------------------------------------------------------

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
        rec = read_point(point_paths(sweep.out, p.name)[0], p.key)
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
