"""The 1/d bridge: exact finite-d learning curves at several d, their Richardson extrapolation in 1/d, and the
limit d → ∞ (docs/theory.md §8).

Exact route: :func:`rfdm.asymptotics.finite_d_curves` (exact noise-averaged U, V, population Ũ, Ṽ, closed-form
gradient flow from A(0) = 0), averaged over seeds; extrapolation: :func:`rfdm.asymptotics.richardson_in_inverse_d`
(y(d) = y_∞ + C₁/d at every τ, weighted by 1/SE², with the propagated standard error of y_∞); limit:
:class:`rfdm.asymptotics.AsymptoticCurves`.

quick: ψ_p = 4, ψ_n = 2, t = 0.1, d = 12, 24, 48 (8 seeds); paper: ψ_p = 64, ψ_n = 8, t = 0.1, d = 25, 50, 100
(2 seeds; the d = 100 flow is p = 6400, ≈ 1 min each).  Check, per curve (train loss, test loss, score error): the
largest over τ of |y_Richardson − y_∞| against 4 propagated standard errors + an allowance for the neglected
O(1/d²) term (stated per preset).  The fitted 1/d constants C₁ at τ = ∞ and at the τ of the largest finite-size
difference are reported.  This is the project's own check (the papers state no number for it).
"""

from __future__ import annotations

import math
import time

import numpy as np

from . import check_preset
from ._limit import limit_curves
from .claims import Check, FigureClaim, Tolerance, internal_disagreement
from ._flows import run_flows
from ..asymptotics import richardson_in_inverse_d

FIGURE_ID = "bridge-1-over-d"
KEYS = ("train_loss", "test_loss", "score_error")
PUBLISHED_SETTING = {"activation": "tanh", "note": "no published figure: the project's check that exact finite-d "
                     "curves extrapolate in 1/d to the limit d → ∞"}
PRESETS = {"quick": {"psi_p": 4.0, "psi_n": 2.0, "t": 0.1, "dims": (12, 24, 48), "seeds": tuple(range(8)),
                     "allowance": 3e-3},
           "paper": {"psi_p": 64.0, "psi_n": 8.0, "t": 0.1, "dims": (25, 50, 100), "seeds": (0, 1),
                     "allowance": 3e-2}}
ALLOWANCE_REASON = {
    "quick": "the O(1/d²) term left out of the linear fit: with d ≥ 12 and C₂ of order C₁² ≲ 1 it is ≲ 3e-3 in the "
             "losses (docs/theory.md §8: the Richardson limit meets the curve within 3e-3 at (ψ_p, ψ_n) = (4, 2))",
    "paper": "the O(1/d²) term at d ≥ 25: the 1/d constant of the test loss at τ = ∞ is ≈ −10 here (docs/theory.md "
             "§8), and a C₂ of the same order gives C₂/d² ≈ 1.6e-2 at d = 25; 3e-2 allows twice that (two draws per d "
             "give only a rough standard error)"}


def finite_curves(psi_p: float, psi_n: float, t: float, dims, tau, seeds, points=None) -> list:
    """Per d, the exact curves averaged over ``seeds`` with their standard errors over the seeds: the result of
    :func:`rfdm.asymptotics.finite_d_curves` (same draws: W from SeedSequence([s, 0]), X from
    SeedSequence([s, 1])), with each (d, seed) flow one point of :mod:`._flows` (computed here when ``points`` is
    None, else through that :class:`._points.PointRunner`: stored, resumable, any executor)."""
    fixed = {"psi_p": float(psi_p), "psi_n": float(psi_n), "t": float(t), "sigma_x": 1.0, "streams": "finite_d_curves",
             "readings": False, "mode_split": False, "tau": [float(x) for x in tau]}
    grid = {"d": [int(d) for d in dims], "flow_seed": [int(s) for s in seeds]}
    flows = run_flows(fixed, grid, min(seeds), points)
    out = []
    for i, d in enumerate(dims):
        runs = flows[i * len(seeds):(i + 1) * len(seeds)]
        f = {"tau": np.asarray(tau, dtype=float), "d": int(d), "p": int(round(psi_p * d)), "n": int(round(psi_n * d)),
             "seeds": list(seeds)}
        for key in ("train_loss", "test_loss", "score_error", "generalization_gap"):
            vals = np.array([r[key] for r in runs])
            f[key] = vals.mean(axis=0)
            f[key + "_sem"] = vals.std(axis=0, ddof=1) / math.sqrt(len(seeds)) if len(seeds) > 1 else None
        out.append(f)
    return out


def compute(preset: str = "quick", seed: int = 0, points=None) -> dict:
    """The figure at ``preset``; its exact flows (every d and seed) run through ``points`` (a
    :class:`._points.PointRunner`: stored, resumable, any executor) or, when None, here one after another."""
    check_preset(preset)
    cfg = PRESETS[preset]
    t0 = time.perf_counter()
    tau = np.r_[np.logspace(-1, 6, 29), np.inf]
    seeds = tuple(seed + s for s in cfg["seeds"])
    finite = finite_curves(cfg["psi_p"], cfg["psi_n"], cfg["t"], cfg["dims"], tau, seeds, points)
    lim = limit_curves(cfg["t"], cfg["psi_p"], cfg["psi_n"], tau, nodes=16, keys=KEYS)
    delta = 1 - np.exp(-2 * cfg["t"])
    setting = {"activation": "tanh", "ψ_p": cfg["psi_p"], "ψ_n": cfg["psi_n"], "t": cfg["t"], "d": list(cfg["dims"]),
               "seeds per d": len(seeds), "preset": preset, "seed": seed}
    claim = FigureClaim(FIGURE_ID, "the Richardson extrapolation in 1/d of exact finite-d curves meets the limit d → ∞",
                        PUBLISHED_SETTING, setting)
    rich = {}
    for key in KEYS:
        sems = [f[key + "_sem"] for f in finite]
        r = richardson_in_inverse_d(cfg["dims"], [f[key] for f in finite], sems=sems)
        rich[key] = r
        allow = cfg["allowance"] / (delta if key == "score_error" else 1.0)
        bound = 4 * r["limit_sem"] + allow
        dev = np.abs(r["limit"] - lim[key])
        k = int(np.argmax(dev / bound))
        claim.add(internal_disagreement(
            f"{key} at τ = {tau[k]:.3g} (the worst τ relative to its allowance)", ("Richardson in 1/d", r["limit"][k]),
            ("limit d → ∞", lim[key][k]),
            Tolerance(absolute=float(bound[k]), reason=f"4 propagated standard errors of the extrapolation "
                      f"({r['limit_sem'][k]:.2g}) + {allow:.2g}: " + ALLOWANCE_REASON[preset]
                      + (" (divided by Δ_t for E_score = (L_test − 1)/Δ_t + const)" if key == "score_error" else "")),
            "an O(1/d²) term larger than allowed, or a bias of the limit"))
        claim.add(Check(f"max over τ of |Richardson − limit|/(4 SE + allowance), {key}", None, "",
                        float(np.max(dev / bound)), converged=lim["converged"]))
        j = int(np.argmax(np.abs(r["constant"][:-1])))
        claim.add(Check(f"fitted 1/d constant C₁ of {key} at τ = ∞", None, "", float(r["constant"][-1]),
                        note=f"largest |C₁| over finite τ: {r['constant'][j]:.3g} at τ = {tau[j]:.3g}"))
    claim.add(Check("largest node-doubling difference of the limit curves", None, "",
                    float(max(lim["accuracy"][k] for k in KEYS)), converged=lim["converged"]))
    return {"tau": tau, "dims": cfg["dims"], "finite": finite, "limit": lim, "richardson": rich, "claim": claim,
            "setting": setting, "seconds": time.perf_counter() - t0}


def plot(result: dict, fig) -> None:
    """Per curve: exact at each d (thin), Richardson (dashed with ±2 SE band) and the limit (thick black)."""
    axes = fig.subplots(1, 3)
    tau = np.asarray(result["tau"])
    fin = np.isfinite(tau)
    for ax, key in zip(axes, KEYS):
        for i, (d, f) in enumerate(zip(result["dims"], result["finite"])):
            ax.plot(tau[fin], f[key][fin], color=f"C{i}", lw=0.9, label=f"exact d = {d}")
        r = result["richardson"][key]
        ax.plot(tau[fin], r["limit"][fin], "--", color="C3", label="Richardson in 1/d")
        ax.fill_between(tau[fin], (r["limit"] - 2 * r["limit_sem"])[fin], (r["limit"] + 2 * r["limit_sem"])[fin],
                        color="C3", alpha=0.2)
        ax.plot(tau[fin], result["limit"][key][fin], color="k", lw=1.8, label="limit d → ∞")
        ax.set_xscale("log")
        ax.set_xlabel("τ")
        ax.set_title(key.replace("_", " "), fontsize=9)
    axes[0].legend(fontsize=7)
    s = result["setting"]
    fig.suptitle(f"1/d bridge: ψ_p = {s['ψ_p']:g}, ψ_n = {s['ψ_n']:g}, t = {s['t']:g}: {result['claim'].verdict}",
                 fontsize=10)
