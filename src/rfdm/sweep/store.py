"""The point store: one JSON file per point, written atomically; the one function every executor runs
(:func:`run_point`), the status of a sweep, the lock of a running sweep and the manifest."""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

import numpy as np

from .. import __version__
from ..backend import default_device
from ..errors import RfdmError
from ..results import provenance, write_json
from .kinds import KINDS
from .spec import MANIFEST, POINTS_DIR, SEED_RULE, Sweep, version_tuple

POINT_FORMAT = "rfdm-sweep-point/1"
#: seconds a run waits for the lock of another run on the same folder
LOCK_WAIT_S = 10.0


def point_paths(out_dir, name: str) -> tuple[Path, Path]:
    """(result file, failed marker) of a point."""
    d = Path(out_dir) / POINTS_DIR
    return d / f"{name}.json", d / f"{name}.failed.json"


def read_point(path, key: str, identity: str | None = None, reuse_older: bool = False) -> dict | None:
    """The stored point at ``path`` if it exists, parses and has the expected key (this configuration computed
    by this package version); else None.  With ``reuse_older``, a point of the same configuration (same
    ``identity``) written by an older version is accepted too; never one of a newer version."""
    try:
        with open(path, encoding="utf-8") as fh:
            obj = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(obj, dict):
        return None
    if obj.get("key") == key:
        return obj
    if reuse_older and identity and obj.get("identity", obj.get("key")) == identity:
        if version_tuple(obj.get("version", "0")) <= version_tuple(__version__):
            return obj
    return None


def read_sweep_point(sweep: Sweep, point, failed: bool = False) -> dict | None:
    """The stored record (or failed marker) of ``point`` under the sweep's version policy."""
    path = point_paths(sweep.out, point.name)[1 if failed else 0]
    return read_point(path, point.key, point.identity, sweep.reuse_older and not failed)


def run_point(point_config: dict, out_dir) -> dict:
    """Compute one point and write it atomically to OUT/points/NAME.json (its outputs, full resolved config,
    the package version and the seed, in a results.provenance header).  A finished point is not recomputed.
    Any exception in the computation (NumericalError above all) is recorded as OUT/points/NAME.failed.json
    with its message and traceback instead, and reported, not raised.  Returns {name, key, status
    ("done", "cached" or "failed"), seconds, message, and error (the exception's type) when failed}.
    The one function every executor runs."""
    cfg = point_config
    done_path, failed_path = point_paths(out_dir, cfg["name"])
    if read_point(done_path, cfg["key"], cfg.get("identity"), cfg.get("reuse_older", False)) is not None:
        return {"name": cfg["name"], "key": cfg["key"], "status": "cached", "seconds": 0.0, "message": ""}
    done_path.parent.mkdir(parents=True, exist_ok=True)
    identity = {"kind": cfg["kind"], "params": cfg["params"], "sweep_seed": cfg["sweep_seed"]}
    base = {"format": POINT_FORMAT, "key": cfg["key"], "identity": cfg.get("identity"), "name": cfg["name"],
            "kind": cfg["kind"],
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


def sweep_status(sweep: Sweep) -> dict:
    """{total, done, pending, failed (lists of point names; failed: {name, message}), other_files (point files
    of other configurations in the same folder)}."""
    done, pending, failed = [], [], []
    for p in sweep.points:
        if read_sweep_point(sweep, p) is not None:
            done.append(p.name)
            continue
        marker = read_sweep_point(sweep, p, failed=True)
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
        from .. import sweep as package  # LOCK_WAIT_S may be set on the package (e.g. by a test)

        wait_s = package.LOCK_WAIT_S if wait_s is None else wait_s
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


def _write_manifest(sweep: Sweep) -> None:
    write_json(sweep.out / MANIFEST, {"format": "rfdm-sweep/1", "version": __version__,
                                      "source": str(Path(sweep.source).resolve()),
                                      "toml": sweep.toml_text, "config": sweep.resolved_config(),
                                      "seed_rule": SEED_RULE, "points": [
                                          {"name": p.name, "key": p.key, "seed": p.seed, "grid": p.grid}
                                          for p in sweep.points]})
