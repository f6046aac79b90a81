"""Sweep specification: the TOML config, its validation, the expanded grid of points, their keys and seeds."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import re
from pathlib import Path

from .. import __version__
from ..backend import check_device_name
from ..errors import InvalidParameterError
from ..results import to_jsonable
from .kinds import KINDS

EXECUTORS = ("local", "submitit-local", "slurm")
SECTIONS = ("sweep", "fixed", "grid", "slurm")
SWEEP_KEYS = {"kind": str, "out": str, "executor": str, "workers": int, "seed": int, "device": str,
              "replicates": int}
#: [slurm] keys, their types and defaults (timeout_min also bounds a submitit-local job)
SLURM_DEFAULTS = {"partition": "", "account": "", "qos": "", "timeout_min": 60, "cpus_per_task": 1,
                  "mem_gb": 4.0, "array_parallelism": 64}
POINTS_DIR = "points"
MANIFEST = "sweep.json"
SEED_RULE = ("point seed = first 31 bits of sha256(canonical JSON of {kind, params, sweep_seed}); "
             "params are the point's fully resolved parameters, plus replicate = r for replicates r >= 1")


def canonical_json(obj) -> str:
    """Sorted keys, no spaces, floats by repr (inf/nan as strings): the text hashed for keys and seeds."""
    return json.dumps(to_jsonable(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def point_seed(sweep_seed: int, kind: str, params: dict) -> int:
    """The seed of one point: the first 31 bits of sha256 of the canonical JSON of {kind, params,
    sweep_seed}; independent of the order of execution, the worker count and the rest of the grid."""
    digest = hashlib.sha256(canonical_json({"kind": kind, "params": params, "sweep_seed": int(sweep_seed)})
                            .encode()).hexdigest()
    return int(digest[:8], 16) & 0x7FFFFFFF


def point_identity(kind: str, params: dict, seed: int) -> str:
    """sha256 (hex) of the canonical JSON of {kind, params, seed}: the point whatever the package version (its
    file name; the key of points written before versions were keyed)."""
    return hashlib.sha256(canonical_json({"kind": kind, "params": params, "seed": int(seed)}).encode()).hexdigest()


def point_key(kind: str, params: dict, seed: int, version: str | None = None) -> str:
    """sha256 (hex) of the canonical JSON of the point's fully resolved configuration {kind, params, seed} and
    the package version that computes it (default: this one): a point of another version is not reused by
    default (docs/sweeps.md, "Versions")."""
    version = __version__ if version is None else version
    return hashlib.sha256(canonical_json({"kind": kind, "params": params, "seed": int(seed),
                                          "version": str(version)}).encode()).hexdigest()


def version_tuple(version) -> tuple:
    """'0.1.0' -> (0, 1, 0) (the numbers of a version string, for 'older than')."""
    return tuple(int(x) for x in re.findall(r"\d+", str(version))[:4])


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
    identity: str = ""

    def config(self, kind: str, sweep_seed: int, device: str = "cpu") -> dict:
        """The picklable, JSON-able configuration :func:`run_point` takes (``device``: where the point's kernels
        run, rfdm.backend; not part of the key, since results agree across devices to rounding)."""
        return {"kind": kind, "params": self.params, "seed": self.seed, "sweep_seed": sweep_seed,
                "key": self.key, "name": self.name, "grid": self.grid, "device": device, "identity": self.identity}


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
    #: accept stored points written by an older package version (docs/sweeps.md, "Versions")
    reuse_older: bool = False

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
        key, identity = point_key(kind, params, seed_k), point_identity(kind, params, seed_k)
        point = Point(tuple(index), gvals, params, seed_k, key, _point_name(gvals, identity), identity)
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
