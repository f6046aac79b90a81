"""The exact gradient flows of the expensive published figures, one per point: the ``published-flow``
experiment (rfdm.protocol; a sweep kind of rfdm.sweep, so ``rfdm sweep status|collect`` and submitit workers know
it) and :func:`run_flows`, which computes a grid of them here or through a stored, resumable
:class:`._points.PointRunner`.

A point is one exact run of the random-features score at (d, ψ_p, ψ_n, t, σ_x) with one draw of W and X: the
closed-form gradient flow of :class:`rfdm.dynamics.GradientFlow` (exact noise average, Σ = σ_x² I, tanh), its
curves L_train(τ), L_test(τ), E_score(τ) and, with ``readings``, the timescales read off them
(:func:`._rf.flow_readings`: τ_mem where the gap reaches half its final value, τ_gen where the test loss has made
half its drop; with ``mode_split`` also those of the network trained in ρ₁ ∪ ρ₂ only, docs/theory.md §2–3).  The
draws come from the point's ``flow_seed`` (the figure's own seeds), not from a sweep's derived point seed, so a
stored point holds the numbers the figure computes in one process:

* ``streams = "build_flow"``: W and X from the two children of SeedSequence([flow_seed, n, p])
  (:func:`._rf.build_flow`, [B25] Fig. 5, SM Figs. 12–13);
* ``streams = "finite_d_curves"``: W from SeedSequence([flow_seed, 0]) and X from SeedSequence([flow_seed, 1])
  (:func:`rfdm.asymptotics.finite_d_curves`, the 1/d bridge).

This module does not import rfdm.sweep (rfdm.experiments registers it, and rfdm.sweep reads rfdm.experiments).
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from ..errors import InvalidParameterError
from ..protocol import POSITIVE, POSITIVE_INT, SEED, Config, OneOf, defaults, param, register

KIND = "published-flow"
STREAMS = ("build_flow", "finite_d_curves")
CURVES = ("tau", "train_loss", "test_loss", "generalization_gap", "score_error")
READINGS = ("tau_mem_curves", "tau_gen_curves", "tau_test_min", "E_score_min", "tau_E_score_min", "curves_converged")
MODE_READINGS = ("tau_mem_curves_rho", "gap_inf_rho", "gap_inf", "gap_inf_no_atom")
DESCRIPTIONS = {
    "tau": "training times τ of the curves (the last one ∞)", "train_loss": "L_train(τ)", "test_loss": "L_test(τ)",
    "generalization_gap": "L_test(τ) − L_train(τ)", "score_error": "E_score(τ)",
    "tau_mem_curves": "τ where the gap reaches half its final value (NaN: not read)",
    "tau_gen_curves": "τ where the test loss has made half its drop (NaN: not read)",
    "E_score_min": "min over τ of E_score", "tau_E_score_min": "τ of the minimum of E_score",
    "curves_converged": "1 if the last finite τ is the end of training"}


def validate_point(params: dict) -> None:
    """A point's cross-field checks (each field's own range is declared on :class:`PublishedFlowConfig`):
    p = ψ_p d and n = ψ_n d at least 1, training times >= 0, curves-only points (``readings`` false) with their
    τ grid, ``mode_split`` only with readings."""
    d = params["d"]
    for name in ("psi_p", "psi_n"):
        if int(round(params[name] * d)) < 1:
            raise InvalidParameterError(f"{name} d = {params[name] * d:g} must round to at least 1.")
    tau = params["tau"]
    if any(not (v >= 0) for v in tau):
        raise InvalidParameterError("tau must hold training times >= 0.")
    if not params["readings"] and not tau:
        raise InvalidParameterError("a point without readings needs its tau grid.")
    if params["mode_split"] and not params["readings"]:
        raise InvalidParameterError("mode_split needs readings = true.")


def build_point_flow(params: dict):
    """The exact gradient flow of one point (see the module docstring for the two seed streams)."""
    from ._rf import build_flow

    d, t, sigma_x, s = int(params["d"]), float(params["t"]), float(params["sigma_x"]), int(params["flow_seed"])
    if params["streams"] == "build_flow":
        return build_flow(d, float(params["psi_p"]), float(params["psi_n"]), t, s, sigma_x)
    from ..data import GaussianData
    from ..dynamics import GradientFlow
    from ..features import RandomFeatures, noise_averaged_statistics, population_statistics

    p, n = int(round(params["psi_p"] * d)), int(round(params["psi_n"] * d))
    law = GaussianData(d, variance=sigma_x ** 2)
    features = RandomFeatures.sample(d, p, "tanh", rng=np.random.default_rng(np.random.SeedSequence([s, 0])))
    X = law.sample(n, np.random.default_rng(np.random.SeedSequence([s, 1])))
    return GradientFlow(noise_averaged_statistics(features, X, t), population_statistics(features, law, t),
                        overwrite=True)


def compute_point(params: dict) -> dict:
    """One point's results: the curves (NumPy arrays) and, with ``readings``, :func:`._rf.flow_readings`'s
    scalars (floats, None where a reading is absent, ``curves_converged`` a bool)."""
    from ._rf import flow_readings

    params = dataclasses.asdict(PublishedFlowConfig(**{**defaults(PublishedFlowConfig), **params}))  # validated
    flow = build_point_flow(params)
    tau = np.asarray(params["tau"], dtype=float) if len(params["tau"]) else None
    if params["readings"]:
        n = int(round(params["psi_n"] * params["d"]))
        return flow_readings(flow, tau, n=n if params["mode_split"] else None)
    return flow.curves(tau)


@dataclasses.dataclass
class PublishedFlowConfig(Config):
    """One exact gradient flow of the published figures (module docstring); validated by
    :func:`validate_point`."""

    d: int = param(16, "dimension d", check=POSITIVE_INT)
    psi_p: float = param(64.0, "ψ_p = p/d", check=POSITIVE)
    psi_n: float = param(4.0, "ψ_n = n/d", check=POSITIVE)
    t: float = param(0.1, "diffusion time t", check=POSITIVE)
    sigma_x: float = param(1.0, "data standard deviation σ_x (Σ = σ_x² I)", check=POSITIVE)
    flow_seed: int = param(0, "seed of the draws of W and X", check=SEED)
    streams: str = param("build_flow", "how W and X are drawn from flow_seed", check=OneOf(STREAMS))
    readings: bool = param(True, "also the timescales read off the curves")
    mode_split: bool = param(False, "also the readings of the network trained in ρ₁ ∪ ρ₂ only")
    tau: tuple = param((), "training times of the curves (empty: the automatic grid of _rf.tau_grid)")

    def check(self):
        object.__setattr__(self, "tau", tuple(float(v) for v in self.tau))
        validate_point(dataclasses.asdict(self))


#: the parameters of a point and their defaults at import (those of :class:`PublishedFlowConfig`, read at each use)
DEFAULTS = defaults(PublishedFlowConfig)


def _experiment_compute(config: PublishedFlowConfig) -> dict:
    return compute_point(dataclasses.asdict(config))


def sweep_outputs(res: dict, config: PublishedFlowConfig) -> dict:
    """A point's sweep outputs (rfdm.protocol): the arrays as vectors over ``index``, every scalar reading in
    ``info["readings"]`` (None kept: the stored record :mod:`._points` reads back) and among the scalars (NaN
    for an absent reading, 1/0 for ``curves_converged``), and p, n."""
    params = dataclasses.asdict(config)
    vectors, readings = {}, {}
    for name, value in res.items():
        if isinstance(value, np.ndarray):
            vectors[name] = ("index", value)
        else:
            readings[name] = None if value is None else (bool(value) if isinstance(value, (bool, np.bool_))
                                                         else float(value))
    scalars = {k: (float("nan") if v is None else float(v)) for k, v in readings.items()}
    d = int(params["d"])
    return {"scalars": scalars, "vectors": vectors,
            "info": {"readings": readings, "p": int(round(params["psi_p"] * d)), "n": int(round(params["psi_n"] * d))}}


EXPERIMENT = register(KIND, PublishedFlowConfig, _experiment_compute, sweep=sweep_outputs, command=False,
                      descriptions=DESCRIPTIONS,
                      description="one exact gradient flow of the published figures (rfdm.published._flows)")


def reading_names(params: dict) -> tuple:
    """The scalar readings a point of these parameters has (those of :func:`._rf.flow_readings`; the ρ₁ ∪ ρ₂
    ones only with ``mode_split`` and p > n)."""
    if not params["readings"]:
        return ()
    d = params["d"]
    split = params["mode_split"] and int(round(params["psi_p"] * d)) > int(round(params["psi_n"] * d))
    return READINGS + (MODE_READINGS if split else ())


def select(results: dict, params: dict) -> dict:
    """The curves and readings of :func:`compute_point`'s results that a stored point keeps (what
    :func:`decode_point` returns), so both routes of :func:`run_flows` give the same keys."""
    return {k: results[k] for k in CURVES + reading_names(params)}


def grid_points(fixed: dict, grid: dict) -> list:
    """Every point's parameters (defaults, ``fixed`` and one combination of ``grid``), in grid order."""
    out = []
    for values in itertools.product(*grid.values()):
        out.append({**defaults(PublishedFlowConfig), **fixed, **dict(zip(grid, values))})
    return out


def run_flows(fixed: dict, grid: dict, seed: int, runner=None) -> list:
    """The results (:func:`compute_point`) of every combination of ``grid`` with ``fixed``, in grid order:
    computed here one after another without a store (``runner`` None), else through ``runner`` (a
    :class:`._points.PointRunner`: stored, resumable, any executor).  Both give the same numbers (a point file holds every float exactly)."""
    if runner is None:
        return [select(compute_point(params), params) for params in grid_points(fixed, grid)]
    return runner.run(fixed, grid, seed)

