"""The figure registry: every reproduced result of the talk, with its claim, a compute step that writes a
self-describing dataset and figure, the measured numbers, and the published number where one exists.

``PRESETS``: "quick" (all figures in minutes on a laptop CPU) and "paper" (the published sizes, hours).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidParameterError

PRESETS = ("quick", "paper", "tiny")


@dataclass(frozen=True)
class Figure:
    id: str
    title: str
    claim: str
    published: str
    run: object  # run(preset, out_dir) -> {"figures": [png paths], "measured": {name: value}}


def _spectrum(sigma, weights):
    def run(preset, out):
        from .experiments import spectrum as exp
        emp = {"tiny": None, "quick": None, "paper": 100}[preset]
        cfg = exp.SpectrumConfig(psi_p=64.0, psi_n=8.0, t=0.01, sigma_spectrum=sigma, sigma_weights=weights,
                                 empirical_d=emp, n_points={"tiny": 400, "quick": 2000, "paper": 4000}[preset])
        res = exp.compute(cfg)
        paths = exp.save(res, out)
        b = res["bulks"]
        return {"figures": [paths["figure"]],
                "measured": {"rho_2 (population bulk)": f"[{b[-1]['left']:.3g}, {b[-1]['right']:.3g}]",
                             "rho_1 (memorization bulk)": f"[{b[-2]['left']:.3g}, {b[-2]['right']:.3g}]" if len(b) > 1 else "none",
                             "atom": ", ".join(f"{a['position']:.3g} (weight {a['weight']:.4f})" for a in res["atoms"]),
                             "total mass": f"{res['total_mass']:.10f}", "tau_gen": f"{res['tau_gen']:.3g}",
                             "tau_mem": f"{res['tau_mem']:.3g}" if res["tau_mem"] else "none"}}
    return run


def _loss_curves(preset, out):
    from .experiments.figures import compute_loss_curves
    kw = {"tiny": dict(d=12, psi_p=16.0, psi_ns=(2.0, 4.0)), "quick": dict(d=24, psi_p=32.0, psi_ns=(2.0, 4.0, 8.0)),
          "paper": dict(d=100, psi_p=64.0, psi_ns=(2.0, 4.0, 8.0, 16.0))}[preset]
    r = compute_loss_curves(out, **kw)
    return {"figures": [r["figure"]], "measured": {f"tau_mem (psi_n={a:g})": f"{b:.3g}"
                                                   for a, b in zip(r["meta"]["psi_n"], r["meta"]["tau_mem"])}}


def _gap_heatmap(preset, out):
    from .experiments.figures import compute_gap_heatmap
    kw = {"tiny": dict(d=8, psi_ps=(4.0, 8.0), psi_ns=(1.0, 4.0)), "quick": dict(d=16),
          "paper": dict(d=64)}[preset]
    r = compute_gap_heatmap(out, **kw)
    return {"figures": [r["figure"]], "measured": {"largest gap": f"{r['gap'].max():.3g}",
                                                   "smallest gap": f"{r['gap'].min():.3g}"}}


def _timescales(preset, out):
    from .experiments.figures import compute_theory_timescales
    r = compute_theory_timescales(out, psi_p=1024.0,
                                  psi_ns=(2.0, 4.0, 8.0) if preset == "tiny" else (2.0, 4.0, 8.0, 16.0, 32.0))
    return {"figures": [r["figure"]], "measured": {"slope of log tau_mem vs log n": f"{r['slope_tau_mem']:.3f}",
                                                   "tau_gen range": f"{min(r['tau_gen']):.3g} to {max(r['tau_gen']):.3g}"}}


def _time_integrated(preset, out):
    from .experiments.figures import compute_time_integrated_comparison
    size = {"tiny": dict(d=8, psi_p=8.0, psi_n=2.0), "quick": dict(d=16, psi_p=16.0, psi_n=2.0),
            "paper": dict(d=50, psi_p=64.0, psi_n=8.0, t_rtol=1e-6)}[preset]
    r = compute_time_integrated_comparison(out, **size)
    meta = r["meta"]
    measured = {"t quadrature nodes": str(meta["t_quadrature_nodes"])}
    for t, v in meta["score_error_min"].items():
        measured[f"smallest score error at t={t} (time-integrated / per-time)"] = \
            f"{v['time-integrated']:.3g} / {v['per-time']:.3g}"
    for t, v in meta["score_error_inf"].items():
        measured[f"score error at t={t}, tau=inf (time-integrated / per-time)"] = \
            f"{v['time-integrated']:.3g} / {v['per-time']:.3g}"
    return {"figures": [r["figure"]], "measured": measured}


def _time_integrated_timescales(preset, out):
    from .experiments import timescales as exp
    size = {"tiny": dict(d=8, psi_p=16.0, psi_n=(2.0, 4.0), draws=1),
            "quick": dict(d=16, psi_p=64.0, psi_n=(2.0, 4.0, 8.0), draws=2),
            "paper": dict(d=16, psi_p=128.0, psi_n=(2.0, 4.0, 8.0, 16.0), draws=3)}[preset]
    cfg = exp.TimescalesConfig(model="time-integrated", time_law="log-uniform", **size)
    res = exp.compute_scaling(cfg)
    paths = exp.save_scaling(res, out)

    def slope(key):
        v, e = res.get("slope_" + key), res.get("slope_" + key + "_stderr")
        return "none" if v is None else f"{v:.2f}" + (f" ± {e:.2g}" if e is not None else "")

    fmt = lambda xs: ", ".join("none" if x is None else f"{x:.3g}" for x in xs)  # noqa: E731
    return {"figures": [paths["figure"]],
            "measured": {"n": ", ".join(str(int(x)) for x in res["n"]),
                         "tau_mem (loss curves)": fmt(res["tau_mem_curves"]),
                         "slope of log tau_mem vs log n (loss curves)": slope("tau_mem_curves"),
                         "tau_mem (spectrum, slowest memorization mode)": fmt(res["tau_mem"]),
                         "slope (spectrum)": slope("tau_mem"),
                         "tau_gen (loss curves)": fmt(res["tau_gen_curves"]),
                         "tau_gen (spectrum)": fmt(res["tau_gen"])}}


def _outlier(preset, out):
    from .experiments import outlier as exp
    cfg = exp.OutlierConfig(d={"tiny": 40, "quick": 100, "paper": 400}[preset], m_norm=2.0,
                            t=(0.05, 0.2, 0.5) if preset != "tiny" else (0.1,), empirical=True,
                            phase_t=tuple(__import__("numpy").geomspace(0.01, 3, 8 if preset == "tiny" else 30)),
                            training_tau=tuple(__import__("numpy").logspace(-1, 6, 20 if preset == "tiny" else 50)))
    res = exp.compute(cfg)
    paths = exp.save(res, out)
    r0 = res["rows"][0]
    return {"figures": [paths["figure_t"], paths["figure_phase"], paths["figure_training"]],
            "measured": {f"outlier at t={r0['t']:g} (theory / exact U)":
                         f"{r0['outlier_theory']:.4g} / {r0['top_eigenvalue']:.4g}",
                         "overlap with Wm (theory / exact)": f"{r0['overlap_theory']:.3f} / {r0['overlap_empirical']:.3f}",
                         "BBP threshold |m|_c": f"{r0['threshold_m_norm']:.3f}"}}


def _two_regimes(preset, out):
    from .experiments import sampling as exp
    kw = {"tiny": dict(d=8, psi_p=8.0, n_train=128, n_samples=300, steps=60, rf_times=5),
          "quick": dict(), "paper": dict(d=64, n_samples=10000, steps=400)}[preset]
    res = exp.compute_two_regimes(exp.TwoRegimesConfig(**kw))
    paths = exp.save_two_regimes(res, out)
    summ = exp.two_regimes_summary(res)["regimes"]
    measured = {}
    for k, v in summ.items():
        measured[f"{v['label']}: mode fractions"] = ", ".join(f"{x:.3f}" for x in v["mode_fractions"])
        measured[f"{v['label']}: distance to target"] = f"{v['distance_to_target']:.3g}"
    return {"figures": [paths["figure"]], "measured": measured}


def _memorization(preset, out):
    from .experiments import sampling as exp
    kw = {"tiny": dict(d=6, psi_p=32.0, n_train=8, n_samples=100, steps=60, rf_times=5,
                       tau=(1.0, 1e4, math.inf)),
          "quick": dict(), "paper": dict(d=16, n_train=32, n_samples=2000, steps=400)}[preset]
    res = exp.compute_memorization(exp.MemorizationConfig(**kw))
    paths = exp.save_memorization(res, out)
    s = exp.memorization_summary(res)
    return {"figures": [paths["figure"]],
            "measured": {"f_mem at the smallest tau": f"{s['f_mem'][0]:.3f}", "f_mem at tau = inf": f"{s['f_mem'][-1]:.3f}",
                         "f_mem, empirical score": f"{s['f_mem_empirical']:.3f}", "f_mem, exact score": f"{s['f_mem_exact']:.3f}"}}


def _regimes(preset, out):
    from .experiments import regimes as exp
    kw = {"tiny": dict(d=8, n_pairs=200, n_trajectories=100, steps=60, n_times=5),
          "quick": dict(), "paper": dict(d=64, n_pairs=5000, n_trajectories=2000, steps=400)}[preset]
    res = exp.compute(exp.RegimesConfig(m_norm=2.0, **kw))
    paths = exp.save(res, out)
    s = exp.json_summary(res)
    return {"figures": [paths["figure"]],
            "measured": {"t_S (formula)": f"{s['t_speciation']:.4g}", "t_C (formula)": f"{s['t_collapse']:.4g}",
                         "t_C (simulated)": str(s.get("t_collapse_simulated"))}}


FIGURES = {f.id: f for f in [
    Figure("spectrum-isotropic", "Spectrum of U, Sigma = I ([B25] Fig. 4)",
           "U has an atom at s_t^2, a memorization bulk rho_1 far below and a population bulk rho_2 on the scale psi_p.",
           "rho_2 between about 10 and 45 (psi_p = 64, psi_n = 8, t = 0.01, tanh)", _spectrum((1.0,), None)),
    Figure("spectrum-two-eigenvalues", "Spectrum of U, two-eigenvalue Sigma ([B25] Fig. 4, second case)",
           "A non-isotropic covariance splits/broadens the population bulk; the memorization bulk stays.",
           "no number quoted", _spectrum((0.5, 2.0), (0.5, 0.5))),
    Figure("loss-curves", "Train/test loss over tau for several n ([B25] Fig. 5)",
           "The test loss departs from the train loss at tau_mem, which grows with n; in tau/tau_mem the curves collapse.",
           "tau_mem proportional to n", _loss_curves),
    Figure("gap-heatmap", "Generalization gap over (psi_n, psi_p) at fixed tau",
           "The gap is large where p > n (memorization possible) and small for n > p (architectural regularization).",
           "no number quoted", _gap_heatmap),
    Figure("timescales", "tau_mem proportional to n, tau_gen flat (spectral theory)",
           "tau_mem = psi_p/(Delta lambda_left(rho_1)) grows linearly in n when psi_p >> psi_n; tau_gen does not depend on n.",
           "slope 1 for psi_p >> psi_n (here psi_p = 1024)", _timescales),
    Figure("time-integrated", "Time-integrated random features against per-time models on the same data",
           "One network for all t shows the same generalization-then-memorization phenomenology as one network "
           "per t; its spectrum is a smeared version of the per-time spectra (no atom, no Gaussian equivalence).",
           "same phenomenology as the per-time model (talk)", _time_integrated),
    Figure("time-integrated-timescales", "Time-integrated model: tau_mem against n, tau_gen flat",
           "With one network for all t (Q log-uniform on [0.01, 2]), the memorization time grows with n and the "
           "generalization time does not; the spectrum is numerical, memorization modes found by their eigenvectors.",
           "same phenomenology as the per-time model (talk); no number quoted", _time_integrated_timescales),
    Figure("mixture-outlier", "Mixture data: BBP outlier of U, phase diagram, training along m",
           "A rank-one spike along W m pushes one eigenvalue out of the bulk above a threshold |m|_c(t).",
           "outlier predicted by the replica/diagram method (talk)", _outlier),
    Figure("two-regimes", "The two regimes of mixture sampling with random-features scores",
           "For |m| = O(1) the learned score is nearly linear and the backward process gives one Gaussian stretched "
           "along m; for |m| = O(sqrt(d)) it separates two balanced modes.", "qualitative (talk's conclusion)",
           _two_regimes),
    Figure("memorization-along-training", "Memorization fraction along training (p >> n)",
           "Samples from scores stopped before tau_mem are new; f_mem rises once tau passes tau_mem; the empirical score "
           "memorizes.", "qualitative ([B25])", _memorization),
    Figure("speciation-collapse", "Speciation and collapse of the backward dynamics ([B24])",
           "Clones separated after t_S end in the same mode with probability phi(t); with the empirical score the "
           "trajectories collapse onto training points below t_C.", "t_S = log(|m|^2 + sigma_x^2)/2", _regimes),
]}


def register(figure: Figure) -> Figure:
    """Add a figure (used by modules that provide more, e.g. sampling)."""
    FIGURES[figure.id] = figure
    return figure


def get_figure(fig_id: str) -> Figure:
    if fig_id not in FIGURES:
        raise InvalidParameterError(f"unknown figure {fig_id!r}; `rfdm figure --list` lists them.")
    return FIGURES[fig_id]


def all_figures() -> list:
    return list(FIGURES.values())


def run_figure(fig_id: str, preset: str, out_dir) -> dict:
    if preset not in PRESETS:
        raise InvalidParameterError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}.")
    fig = get_figure(fig_id)
    out = Path(out_dir) / fig.id
    t0 = time.perf_counter()
    res = fig.run(preset, out)
    return {"id": fig.id, "title": fig.title, "claim": fig.claim, "published": fig.published,
            "measured": res["measured"], "figures": res["figures"], "seconds": time.perf_counter() - t0}
