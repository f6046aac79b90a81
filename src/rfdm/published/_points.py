"""Resumable points of the expensive published figures: each exact gradient flow of B25-fig5, B25-SM-fig12,
B25-SM-fig13 and bridge-1-over-d (one point of the ``published-flow`` kind, :mod:`._flows`) is stored as a sweep
point (:mod:`rfdm.sweep`), so that a killed ``rfdm figure ID --preset paper`` resumes where it stopped and the
points can run in a local process pool, on SLURM (submitit) or on a GPU.

A :class:`PointRunner` (given to :func:`._flows.run_flows`) stores each point atomically under
``OUT/ID/points/`` keyed by its configuration and the package version (docs/sweeps.md), skips the points already
stored, recomputes any file that does not read back as a whole point of its configuration, and runs the missing
ones with the chosen executor; the figure is then assembled from the stored points, with the numbers of the
in-process computation to the bit (a point file holds every float exactly).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from ..errors import InvalidParameterError, NumericalError, RfdmError
from ..sweep.executors import MAX_WORKERS
from ._flows import (CURVES, DEFAULTS, KIND, MODE_READINGS, READINGS, STREAMS, compute_point, grid_points,  # noqa: F401
                     reading_names, run_flows, select)

#: the executors of ``rfdm figure --executor``: serial (one point after another in this process, the default),
#: local (a process pool of --workers), submitit-local and slurm (rfdm.sweep.executors)
EXECUTORS = ("serial", "local", "submitit-local", "slurm")


def decode_point(record: dict, params: dict) -> dict | None:
    """The results of a stored point (as :func:`._flows.run_flows` returns them), or None when the record is not a
    finished point of exactly these parameters with every curve and reading (then it is recomputed, never
    trusted)."""
    from ..sweep.spec import canonical_json

    try:
        if record.get("status") != "done" or record.get("kind") != KIND:
            return None
        if canonical_json(record.get("params")) != canonical_json(params):
            return None
        vectors, info = record["vectors"], record["info"]
        out = {}
        for name in CURVES:
            # float() reads JSON numbers and the strings "inf", "-inf", "nan" of rfdm.results.to_jsonable
            out[name] = np.array([float(v) for v in vectors[name]["values"]], dtype=np.float64)
        if out["tau"].size == 0 or any(out[k].shape != out["tau"].shape for k in CURVES):
            return None
        readings = info["readings"] if params["readings"] else {}
        for name in reading_names(params):
            v = readings[name]
            out[name] = v if v is None or isinstance(v, bool) else float(v)
        if params["readings"] and not isinstance(out["curves_converged"], bool):
            return None
        return out
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        return repr(float(v))  # 'inf' and 'nan' are TOML too
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"no TOML form for {v!r}")


def sweep_toml(fixed: dict, grid: dict, seed: int, slurm: dict | None = None) -> str:
    """The sweep config (TOML) of a figure's points: kind published-flow, the figure's seed, ``fixed`` and
    ``grid`` (every combination a point), the [slurm] settings; stored in the folder's manifest, so that
    ``rfdm sweep status OUT/ID`` reads it back."""
    lines = ["[sweep]", f"kind = {_toml_value(KIND)}", f"seed = {int(seed)}", "", "[fixed]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in fixed.items()]
    lines += ["", "[grid]"] + [f"{k} = {_toml_value(list(v))}" for k, v in grid.items()]
    if slurm:
        lines += ["", "[slurm]"] + [f"{k} = {_toml_value(v)}" for k, v in slurm.items()]
    return "\n".join(lines) + "\n"


def slurm_settings(fixed: dict, grid: dict) -> dict:
    """[slurm] resources of a figure's points from the largest p: 16 p² doubles of memory (U, its eigenvectors
    and the Mehler assembly's blocks, with room) and at least 4 GB; 4 hours when p ≥ 3000, else 1 hour."""
    ds = [int(x) for x in grid.get("d", [fixed.get("d", DEFAULTS["d"])])]
    psis = [float(x) for x in grid.get("psi_p", [fixed.get("psi_p", DEFAULTS["psi_p"])])]
    p = max(int(round(a * b)) for a in ds for b in psis)
    return {"timeout_min": 240 if p >= 3000 else 60, "mem_gb": float(max(4, math.ceil(16 * 8 * p * p / 1e9) + 1))}


@dataclasses.dataclass
class PointRunner:
    """Where and how a figure's points run: ``out`` is the figure's folder (points under ``out/points/``, the
    sweep manifest ``out/sweep.json``); ``executor`` one of :data:`EXECUTORS` (serial: in this process, one
    point after another, the default); ``workers`` (local: default min(2, CPU count); submitit-local: jobs at
    once; must be 1 or None for serial); ``device`` where each point's kernels run (rfdm.backend; default the
    current default device); ``quiet`` silences the progress messages on stderr; ``slurm`` overrides the
    [slurm] settings of the points' jobs."""

    out: Path
    executor: str = "serial"
    workers: int | None = None
    device: str | None = None
    quiet: bool = True
    name: str = "figure"
    #: [slurm] settings overriding :func:`slurm_settings` (e.g. partition, account; :func:`parse_slurm`)
    slurm: dict = dataclasses.field(default_factory=dict)
    #: the summaries of rfdm.sweep.run_sweep of every run (total, already_done, computed, failed, ...)
    summaries: list = dataclasses.field(default_factory=list)

    def __post_init__(self):
        from ..backend import check_device_name, resolve_device

        self.out = Path(self.out)
        self.device = check_device_name(self.device if self.device is not None else resolve_device(None).name)
        check_executor(self.executor, self.workers, self.device)

    def sweep(self, fixed: dict, grid: dict, seed: int):
        """The rfdm.sweep.Sweep of these points in :attr:`out`."""
        from ..sweep.spec import _load_toml_text, parse_config

        text = sweep_toml(fixed, grid, seed, {**slurm_settings(fixed, grid), **self.slurm})
        source = str(self.out / f"{self.name}.toml")
        return parse_config(_load_toml_text(text, source), source=source, out=self.out, toml_text=text)

    def run(self, fixed: dict, grid: dict, seed: int) -> list:
        """Compute the points not stored yet and return every point's results in grid order
        (itertools.product over ``grid``).  A stored file that parses with the right key but does not hold a
        whole point of these parameters is removed and the point computed again."""
        from ..sweep import run_sweep
        from ..sweep.store import point_paths, read_sweep_point

        sweep = self.sweep(fixed, grid, seed)
        executor, workers = ("local", 1) if self.executor == "serial" else (self.executor, self.workers)
        for attempt in range(2):
            summary = run_sweep(sweep, executor=executor, workers=workers, quiet=self.quiet, wait=True,
                                device=self.device)
            self.summaries.append(summary)
            if summary["failed"]:
                failed = summary["failed"]
                msg = (f"{len(failed)} of {summary['total']} points of {self.name} failed (first: {failed[0]['name']}: "
                       f"{failed[0]['message'].rstrip('.')}); finished points are kept in {self.out / 'points'} and a "
                       f"rerun retries the others.")
                raise (NumericalError if all(f.get("error") == "NumericalError" for f in failed) else RfdmError)(msg)
            results, bad = [], []
            for p in sweep.points:
                rec = read_sweep_point(sweep, p)
                res = None if rec is None else decode_point(rec, p.params)
                if res is None:
                    bad.append(p)
                results.append(res)
            if not bad:
                return results
            for p in bad:  # a stored file that is not a whole point of this configuration: never trusted
                point_paths(sweep.out, p.name)[0].unlink(missing_ok=True)
        raise RfdmError(f"{len(bad)} points of {self.name} could not be read back after recomputing them "
                        f"(first: {bad[0].name}).")


def parse_slurm(items) -> dict:
    """``--slurm KEY=VALUE`` settings (the [slurm] keys of a sweep config: partition, account, qos, timeout_min,
    cpus_per_task, mem_gb, array_parallelism; docs/sweeps.md) as a dict, checked: a known key, a value of its
    type, positive numbers.  They override the figure's own sizing (:func:`slurm_settings`)."""
    from ..sweep.spec import SLURM_DEFAULTS

    out = {}
    for item in items or ():
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or key not in SLURM_DEFAULTS:
            raise InvalidParameterError(f"--slurm takes KEY=VALUE with KEY one of {', '.join(SLURM_DEFAULTS)}, "
                                        f"got {item!r}.")
        kind = type(SLURM_DEFAULTS[key])
        try:
            v = kind(value.strip())
        except ValueError:
            raise InvalidParameterError(f"--slurm {key} must be {'an integer' if kind is int else 'a number'}, "
                                        f"got {value!r}.") from None
        if kind is not str and not v > 0:
            raise InvalidParameterError(f"--slurm {key} must be positive, got {value!r}.")
        out[key] = v
    return out


def check_executor(executor: str, workers: int | None, device: str | None = None) -> None:
    """--executor one of :data:`EXECUTORS`; --workers an integer in [1, 4096], and 1 with serial; no CUDA
    device with the local pool (its workers are forked from a process that has initialized CUDA, which CUDA
    does not allow)."""
    if executor not in EXECUTORS:
        raise InvalidParameterError(f"--executor must be one of {', '.join(EXECUTORS)}, got {executor!r}.")
    if workers is not None:
        if isinstance(workers, bool) or not isinstance(workers, (int, np.integer)) or not 1 <= workers <= MAX_WORKERS:
            raise InvalidParameterError(f"--workers must be an integer in [1, {MAX_WORKERS}], got {workers!r}.")
        if executor == "serial" and workers != 1:
            raise InvalidParameterError(f"--workers {workers} needs --executor local, submitit-local or slurm "
                                        "(serial computes one point at a time).")
    if (executor == "local" and (workers is None or workers > 1) and device is not None
            and str(device).strip().lower().startswith("cuda")):
        raise InvalidParameterError(f"--device {device} cannot be used by the forked workers of --executor local; "
                                    "use --executor serial, submitit-local or slurm.")

