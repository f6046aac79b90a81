"""The published figures of [B25] and [B24], each at its published setting ("paper" preset) and at a
reduced one ("quick"), measured against the published numbers with a verdict (:mod:`.claims`).

Every figure module has ``compute(preset, seed) -> dict`` (numpy arrays, the resolved setting and a
:class:`~rfdm.published.claims.FigureClaim` under ``"claim"``) and ``plot(result, fig)`` drawing on a given
matplotlib Figure.  :data:`FIGURES` maps the figure ids to their modules (imported on demand).
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


__all__ = ["Check", "FigureClaim", "Tolerance", "internal_disagreement", "FIGURES", "PRESETS", "figure_module",
           "check_preset"]
