"""Shared helpers of the benchmark scripts: machine description, timers, tables, JSON output.

Not part of the package; imported by the scripts in this folder (``python benchmarks/bench_*.py``).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import scipy

RESULTS_DIR = Path(__file__).resolve().parent / "results"

#: environment variables that change how many threads BLAS / OpenMP use
_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")


def loadavg() -> list | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def git_info() -> dict:
    """Commit of the working tree and whether src/ differs from it (the package is installed editable, so the
    code measured is the working tree's)."""
    import subprocess

    root = Path(__file__).resolve().parent.parent

    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    status = git("status", "--porcelain", "--", "src")
    return {"commit": git("rev-parse", "HEAD") or None, "src_modified_files": status.splitlines() if status else []}


def machine_info() -> dict:
    """Versions and machine description recorded in every JSON result."""
    import rfdm

    return {
        "rfdm_version": rfdm.__version__,
        "git": git_info(),
        "numpy_version": np.__version__,
        "scipy_version": scipy.__version__,
        "python_version": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "cpu_count": os.cpu_count(),
        "thread_env": {k: os.environ.get(k) for k in _THREAD_VARS},
        "loadavg_at_start": loadavg(),
        "argv": sys.argv,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


class Timer:
    """Wall-clock and process CPU time of a block.  cpu/wall close to the number of BLAS threads means the
    block ran unhindered; much lower means it shared the cores with other processes (inflated timings)."""

    def __enter__(self):
        self.load_before = loadavg()
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c
        self.load_after = loadavg()
        return False

    def record(self) -> dict:
        return {"wall_s": self.wall, "cpu_s": self.cpu,
                "cpu_over_wall": self.cpu / self.wall if self.wall > 0 else None,
                "loadavg_before": self.load_before, "loadavg_after": self.load_after}


def contention_warning(label: str, rec: dict, threshold: float = 1.1, min_wall: float = 0.0) -> str | None:
    """A warning when a timed block (of at least ``min_wall`` seconds) used much less CPU than wall time on a
    multi-core machine, or the load average exceeded the core count: its timing is probably inflated by other
    processes.  A heuristic: a single-threaded block can legitimately sit near CPU/wall = 1."""
    cores = os.cpu_count() or 1
    ratio = rec.get("cpu_over_wall")
    if rec.get("wall_s", 0.0) < min_wall:
        return None
    loads = [x for x in (rec.get("loadavg_before") or [])[:1] + (rec.get("loadavg_after") or [])[:1]]
    busy = bool(loads) and max(loads) > cores + 0.5
    if cores > 1 and ratio is not None and (ratio < threshold or busy):
        return (f"{label}: CPU/wall = {ratio:.2f} on {cores} cores, load average {loads}: timing likely "
                "inflated by other processes; rerun when the machine is idle")
    return None


def relative_frobenius(a, ref) -> float:
    return float(np.linalg.norm(a - ref) / np.linalg.norm(ref))


def to_jsonable(obj):
    """Recursively convert numpy scalars/arrays and non-finite floats to JSON-friendly values."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        x = float(obj)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    return obj


def write_json(name: str, payload: dict, out: str | None = None) -> Path:
    path = Path(out) if out else RESULTS_DIR / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(to_jsonable(payload), indent=2) + "\n")
    return path


def fmt(x, digits: int = 3) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, (bool, np.bool_)):
        return "yes" if x else "NO"
    if isinstance(x, (int, np.integer)):
        return f"{int(x):,}"
    x = float(x)
    if x == 0 or not math.isfinite(x):
        return str(x)
    if 1e-3 <= abs(x) < 1e5:
        return f"{x:.{digits}g}"
    return f"{x:.{digits - 1}e}"


def print_table(title: str, header: list, rows: list) -> None:
    cells = [[str(h) for h in header]] + [[c if isinstance(c, str) else fmt(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    print(f"\n{title}")
    line = "  ".join("-" * w for w in widths)
    print(line)
    for j, r in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))))
        if j == 0:
            print(line)
    print(line)
