"""Self-describing results on disk: every file carries the resolved configuration, the package version
and the seed; files appear complete or not at all (written to a temporary name, then renamed)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np

from . import __version__


def to_jsonable(value):
    """Convert arrays and floats to JSON values; inf and nan become the strings "inf", "-inf", "nan"."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if math.isnan(x):
            return "nan"
        if math.isinf(x):
            return "inf" if x > 0 else "-inf"
        return x
    if isinstance(value, (np.bool_,)):
        return bool(value)
    return value


def provenance(config: dict, seed: int) -> dict:
    """The header every result carries (``device``: the default device in effect, rfdm.backend)."""
    from .backend import resolve_device

    return {"package": "rfdm", "version": __version__, "seed": int(seed), "config": to_jsonable(config),
            "python": platform.python_version(), "numpy": np.__version__, "device": resolve_device(None).describe()}


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path, payload: dict) -> None:
    path = Path(path)
    _atomic_write(path, lambda fh: fh.write(json.dumps(to_jsonable(payload), indent=1).encode()))


def write_npz(path, arrays: dict, header: dict) -> None:
    """Arrays plus a ``meta`` entry holding the JSON header (config, version, seed)."""
    path = Path(path)
    meta = np.array(json.dumps(to_jsonable(header)))
    _atomic_write(path, lambda fh: np.savez_compressed(fh, meta=meta, **arrays))


def read_npz(path) -> tuple[dict, dict]:
    """Return (arrays, header) of a file written by :func:`write_npz`."""
    with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files if k != "meta"}
        header = json.loads(str(data["meta"]))
    return arrays, header


@contextlib.contextmanager
def staged_output(out):
    """Yield a staging folder inside ``out``; on success its files replace those in ``out``, on any error
    the staging folder is removed, so a result is never half-written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=out, prefix=".staging-"))
    try:
        yield stage
        for f in sorted(stage.iterdir()):
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def save_dataset(out_dir, stem: str, arrays: dict, header: dict, summary: dict, plot, load, dpi: int = 120) -> dict:
    """The compute-then-plot pattern of an experiment: STEM.npz (arrays + header), STEM.json (summary +
    header) and STEM.png drawn by ``plot(load(STEM.npz), fig)`` from the saved file only, all written in a
    staging folder so that nothing is half-written.  Returns the paths (keys data, summary, figure)."""
    names = {"data": f"{stem}.npz", "summary": f"{stem}.json", "figure": f"{stem}.png"}
    with staged_output(out_dir) as stage:
        write_npz(stage / names["data"], arrays, header)
        write_json(stage / names["summary"], dict(summary, header=header))
        render(plot, load(stage / names["data"]), stage / names["figure"], dpi=dpi)
    return {k: str(Path(out_dir) / v) for k, v in names.items()}


def render(plot, data, path, dpi: int = 120) -> None:
    """Draw ``plot(data, fig)`` on a new matplotlib Figure and save it as ``path`` (PNG): the Agg canvas is used
    for this figure only; the global backend (a notebook's, say) is never switched."""
    from matplotlib.figure import Figure

    fig = Figure()
    plot(data, fig)
    fig.savefig(path, dpi=dpi)


def save_result(result, out_dir, stem: str, plot=None) -> dict:
    """The one save of a protocol result (rfdm.protocol.Result): STEM.npz (its arrays + header with the
    summary), STEM.json (summary + header) and, with ``plot``, STEM.png drawn by ``plot(load_result(npz),
    fig)`` from the saved file only; written in a staging folder, so nothing is half-written.  Returns the
    paths (keys data, summary, figure)."""
    header = dict(result.header, summary=result.summary)
    names = {"data": f"{stem}.npz", "summary": f"{stem}.json"}
    if plot is not None:
        names["figure"] = f"{stem}.png"
    with staged_output(out_dir) as stage:
        write_npz(stage / names["data"], result.arrays, header)
        write_json(stage / names["summary"], dict(result.summary, header=header))
        if plot is not None:
            render(plot, load_result(stage / names["data"]), stage / names["figure"])
    return {k: str(Path(out_dir) / v) for k, v in names.items()}


class Result(dict):
    """What ``compute(config)`` returns: the arrays, the scalar summary and the provenance ``header`` (config,
    version, seed, device) of one run.  A dict, so older code reads it by key; :attr:`arrays`,
    :attr:`summary` and :attr:`header` are the typed views the generic save/load (:func:`save_result`,
    :func:`load_result`) and plots use.  Build one as ``Result(t=..., loss=..., summary={...},
    header=provenance(...))``."""

    @property
    def header(self) -> dict:
        return self["header"]

    @property
    def arrays(self) -> dict:
        return {k: v for k, v in self.items() if isinstance(v, np.ndarray)}

    @property
    def summary(self) -> dict:
        return self.get("summary", {k: v for k, v in self.items() if k != "header" and not isinstance(v, np.ndarray)})


def load_result(path) -> Result:
    """A result saved by :func:`save_result` (arrays, summary, header)."""
    arrays, header = read_npz(path)
    return Result(arrays, header=header, summary=header.get("summary", {}))
