"""The published figures of [B25] and [B24], each at its published setting ("paper" preset) and at a
reduced one ("quick"), measured against the published numbers with a verdict (:mod:`.claims`).

Every figure module has ``compute(preset, seed) -> dict`` (numpy arrays, the resolved setting and a
:class:`~rfdm.published.claims.FigureClaim` under ``"claim"``) and ``plot(result, fig)`` drawing on a given
matplotlib Figure.  :data:`FIGURES` maps the figure ids to their modules (imported on demand), and :func:`run` computes one
figure and writes its report entry (JSON) and plot (PNG)::

    from rfdm.published import run
    entry = run("B25-fig4", preset="quick", seed=0, out_dir="published_out")
    print(entry["verdict"], entry["reason"])
"""

from __future__ import annotations

import importlib

from .claims import Check, FigureClaim, Tolerance, internal_disagreement

#: figure id -> module name under rfdm.published
FIGURES = {
    "B25-fig4": "b25_fig4",
    "B25-fig5": "b25_fig5",
    "B25-SM-fig13": "b25_sm_fig13",
    "B25-SM-fig12": "b25_sm_fig12",
    "B24-fig3": "b24_fig3",
    "B24-fig2": "b24_fig2",
    "B25-fig5C": "b25_fig5c_limit",
    "B25-fig1": "b25_fig1_limit",
    "B25-SM-fig11": "b25_sm_fig11_limit",
    "B25-SM-fig13-limit": "b25_sm_fig13_limit",
    "bridge-1-over-d": "bridge_1_over_d",
    "B25-sec2-nets": "b25_sec2_nets",
}

PRESETS = ("quick", "paper")


def figure_module(figure_id: str):
    """The module that computes and plots ``figure_id``."""
    from ..errors import InvalidParameterError

    if figure_id not in FIGURES:
        raise InvalidParameterError(f"unknown published figure {figure_id!r} (known: {', '.join(FIGURES)}).")
    return importlib.import_module(f".{FIGURES[figure_id]}", __name__)


def check_preset(preset: str) -> str:
    from ..errors import InvalidParameterError

    if preset not in PRESETS:
        raise InvalidParameterError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}.")
    return preset


#: the figures whose exact flows are resumable points (rfdm.published._points): ``compute(preset, seed, points)``
POINT_FIGURES = ("B25-fig5", "B25-SM-fig12", "B25-SM-fig13", "bridge-1-over-d")


def run(figure_id: str, preset: str = "quick", seed: int = 0, out_dir=None, executor: str = "serial",
        workers: int | None = None, device: str | None = None, quiet: bool = True, slurm: dict | None = None) -> dict:
    """Compute one figure and return its report entry (:meth:`FigureClaim.to_report_entry`) with the wall and
    CPU seconds of the computation (``runtime_s``, ``cpu_s``); with ``out_dir`` (one folder per figure), also
    write ``<out_dir>/<figure_id>.json`` (the entry) and ``<out_dir>/<figure_id>.png`` (the plot), each complete
    or absent (:mod:`rfdm.results`).

    For the figures of :data:`POINT_FIGURES` with ``out_dir``, every exact flow is a sweep point stored under
    ``<out_dir>/points/`` (rfdm.published._points, docs/sweeps.md): a rerun after a kill computes only the
    missing points, and the points run with ``executor`` (serial, the default: here one after another; local: a
    process pool of ``workers``; submitit-local; slurm, with ``slurm`` overriding the jobs' [slurm] settings) on
    ``device`` (default: the current default device).
    The numbers are the same as without ``out_dir`` (same BLAS thread count).  Other figures run here whatever
    the executor."""
    import time
    from pathlib import Path

    from ..results import staged_output, write_json
    from ._points import PointRunner, check_executor

    check_preset(preset)
    mod = figure_module(figure_id)
    check_executor(executor, workers, device)
    points = None
    if figure_id in POINT_FIGURES and out_dir is not None:
        points = PointRunner(Path(out_dir), executor, workers, device, quiet, name=figure_id, slurm=dict(slurm or {}))
    elif executor != "serial" and out_dir is None:
        from ..errors import InvalidParameterError

        raise InvalidParameterError(f"executor {executor!r} needs an output folder for the points (out_dir).")
    wall, cpu = time.perf_counter(), time.process_time()
    result = mod.compute(preset, seed) if points is None else mod.compute(preset, seed, points=points)
    entry = result["claim"].to_report_entry()
    entry.update(runtime_s=time.perf_counter() - wall, cpu_s=time.process_time() - cpu, preset=preset, seed=int(seed))
    if out_dir is not None:
        from matplotlib.figure import Figure

        with staged_output(out_dir) as stage:
            write_json(Path(stage) / f"{figure_id}.json", entry)
            fig = Figure(figsize=(13, 4.8))
            mod.plot(result, fig)
            fig.savefig(Path(stage) / f"{figure_id}.png", dpi=110)
    return entry


__all__ = ["run", "POINT_FIGURES", "Check", "FigureClaim", "Tolerance", "internal_disagreement", "FIGURES", "PRESETS", "figure_module",
           "check_preset"]
