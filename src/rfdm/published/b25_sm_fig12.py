"""[B25] SM Fig. 12: the loss curves of Fig. 5 for data variance σ_x = 2 and σ_x = 0.5 (ψ_p = 64, t = 0.1,
d = 100): "τ_mem prediction holds for general variance".

Same computation as :mod:`.b25_fig5` with Σ = σ_x² I (Gaussian-equivalence coefficients at σ_x², the spectral
equations with ρ_Σ = δ(λ − σ_x²)).  The published claim is that the spectral τ_mem collapses the curves, so the check
per σ_x is the collapse in τ/τ_mem (the spread over ψ_n of τ_mem(curves)/τ_mem(spectrum)); the slopes in n are
shown without a published value, and the curve and spectral readings are compared per ψ_n.
"""

from __future__ import annotations

import time

import numpy as np

from . import check_preset
from ._flows import run_flows
from .b25_fig5 import compute_runs, flow_grid, slope_checks
from .claims import FigureClaim

FIGURE_ID = "B25-SM-fig12"
PSI_P, T = 64.0, 0.1
SIGMA_XS = (2.0, 0.5)
PUBLISHED_SETTING = {"activation": "tanh", "ψ_p": 64.0, "t": 0.1, "d": 100, "σ_x": [2.0, 0.5],
                     "ψ_n": "several (as Fig. 5: 4, 8, 16, 32)"}
PRESETS = {"paper": {"d": 100, "psi_ns": (4.0, 8.0, 16.0, 32.0)}, "quick": {"d": 12, "psi_ns": (4.0, 8.0, 16.0)}}


def compute(preset: str = "quick", seed: int = 0, points=None) -> dict:
    """The figure at ``preset``; its exact flows (every σ_x and ψ_n) run through ``points`` (a
    :class:`._points.PointRunner`: stored, resumable, any executor) or, when None, here one after another."""
    check_preset(preset)
    cfg = PRESETS[preset]
    t0 = time.perf_counter()
    setting = dict(PUBLISHED_SETTING, d=cfg["d"], ψ_n=list(cfg["psi_ns"]), preset=preset, seed=seed)
    claim = FigureClaim(FIGURE_ID, "the τ_mem prediction holds for σ_x ≠ 1", PUBLISHED_SETTING, setting)
    flows = run_flows(*flow_grid(cfg["d"], PSI_P, cfg["psi_ns"], T, seed, SIGMA_XS), seed, points)
    k = len(cfg["psi_ns"])
    panels = []
    for i, sx in enumerate(SIGMA_XS):
        runs = compute_runs(cfg["d"], PSI_P, cfg["psi_ns"], T, seed, sigma_x=sx, flows=flows[i * k:(i + 1) * k])
        slope_checks(claim, runs, label=f" (σ_x = {sx:g})", scaling=False)
        panels.append({"sigma_x": sx, "runs": runs})
    return {"panels": panels, "claim": claim, "setting": setting, "seconds": time.perf_counter() - t0}


def plot(result: dict, fig) -> None:
    """Per σ_x: train (solid) and test (dashed) against τ/τ_mem (spectral)."""
    axes = np.atleast_1d(fig.subplots(1, len(result["panels"])))
    for ax, pan in zip(axes, result["panels"]):
        for k, r in enumerate(pan["runs"]):
            tau, fin = np.asarray(r["tau"]), np.isfinite(r["tau"])
            tm = r["spectral"]["tau_mem"] or r["spectral"]["tau_mem_library"]
            ax.plot(tau[fin] / tm, np.asarray(r["train_loss"])[fin], color=f"C{k}", label=f"ψ_n = {r['psi_n']:g}")
            ax.plot(tau[fin] / tm, np.asarray(r["test_loss"])[fin], color=f"C{k}", ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("τ/τ_mem (spectral)")
        ax.set_title(f"σ_x = {pan['sigma_x']:g}", fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("L_train (solid), L_test (dashed)")
    fig.suptitle(f"[B25] SM Fig. 12: ψ_p = 64, t = 0.1, d = {result['setting']['d']}: {result['claim'].verdict}",
                 fontsize=10)
