"""The figure registry: every reproduced result of the talk, with its claim, a compute step that writes a
self-describing dataset and figure, the measured numbers, and the published number where one exists.

``PRESETS``: "quick" (all figures in minutes on a laptop CPU) and "paper" (the published sizes, hours).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InvalidParameterError
from .protocol import make_config

PRESETS = ("quick", "paper", "tiny")


@dataclass(frozen=True)
class Figure:
    """A registered figure: its claim and published number, the experiment configuration it runs (``config``,
    a declared config class), the overrides of every preset (``fixed``) and of each preset (``presets``; a
    preset not listed uses the declared defaults), and ``run(config, out_dir) -> {"figures": [png paths],
    "measured": {name: value}}``."""

    id: str
    title: str
    claim: str
    published: str
    config: type
    run: object
    presets: dict = field(default_factory=dict)
    fixed: dict = field(default_factory=dict)

    def make_config(self, preset: str):
        """The validated configuration of this figure at ``preset`` (declared defaults + fixed + preset)."""
        if preset not in PRESETS:
            raise InvalidParameterError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}.")
        return make_config(self.config, **dict(self.fixed, **self.presets.get(preset, {})))


def _spectrum(cfg, out):
    from .experiments import spectrum as exp
    from .experiments.talk_checks import B25_REASON, spectrum_claim
    res = exp.compute(cfg)
    paths = exp.save(res, out)
    b = res["bulks"]
    converged = bool(res["checks"]["converged"])
    claim = spectrum_claim(b, res["atoms"], res["total_mass"], res["coefficients"]["s2"], converged, cfg.as_dict())
    return {"figures": [paths["figure"]],
            "measured": {"rho_2 (population bulk)": f"[{b[-1]['left']:.3g}, {b[-1]['right']:.3g}]",
                         "rho_1 (memorization bulk)": f"[{b[-2]['left']:.3g}, {b[-2]['right']:.3g}]" if len(b) > 1 else "none",
                         "atom": ", ".join(f"{a['position']:.3g} (weight {a['weight']:.4f})" for a in res["atoms"]),
                         "total mass": f"{res['total_mass']:.10f}", "tau_gen": f"{res['tau_gen']:.3g}",
                         "tau_mem": f"{res['tau_mem']:.3g}" if res["tau_mem"] else "none"},
            "converged": converged, "claim": claim, "basis": B25_REASON}


def _gap_heatmap(cfg, out):
    from .experiments.figures import compute_gap_heatmap
    r = compute_gap_heatmap(out, cfg)
    return {"figures": [r["figure"]], "measured": {"largest gap": f"{r['gap'].max():.3g}",
                                                   "smallest gap": f"{r['gap'].min():.3g}"}}


def _timescales(cfg, out):
    from .experiments.figures import compute_theory_timescales
    from .experiments.talk_checks import timescales_claim
    from .spectrum import gep_coefficients, leading_order
    r = compute_theory_timescales(out, cfg)
    coeffs = gep_coefficients(cfg.activation, cfg.t)
    lead = [leading_order(coeffs, cfg.psi_p, n) for n in cfg.psi_ns]
    keys = ("psi_p", "psi_ns", "t", "activation")
    claim = timescales_claim(cfg.psi_ns, r["tau_mem"], r["tau_gen"], [x["tau_mem"] for x in lead],
                             [x["tau_gen_corrected"] for x in lead], {k: cfg.as_dict()[k] for k in keys},
                             _paper_setting("timescales", keys))
    slope = "none" if r["slope_tau_mem"] is None else f"{r['slope_tau_mem']:.3f}"
    return {"figures": [r["figure"]], "measured": {"slope of log tau_mem vs log n": slope,
                                                   "tau_gen range": f"{min(r['tau_gen']):.3g} to {max(r['tau_gen']):.3g}"},
            "claim": claim, "basis": "[B25]'s claims (τ_mem ∝ n, τ_gen flat) with the tolerance of their leading-order "
            "finite-ψ_n/ψ_p corrections"}


def _paper_setting(fig_id: str, keys) -> dict:
    """The values of ``keys`` in the "paper" preset of a talk figure: its documented setting (see TALK_SETTINGS)."""
    cfg = FIGURES[fig_id].make_config("paper").as_dict()
    return {k: cfg[k] for k in keys}


#: where the "paper" setting of each talk figure comes from (the talk states no setting and no number); the
#: {fields} are filled from the figure's "paper" preset by :func:`talk_setting`, so the prose cannot drift from it
TALK_SETTINGS = {
    "timescales": (
        "The talk states no setting. Paper preset: ψ_p = {psi_p:g} ≫ ψ_n = {psi_n_lo:g} … {psi_n_hi:g} (where [B25]'s "
        "τ_mem ∝ n holds), {activation}, t = {t:g} ([B25] Fig. 5's t), spectral theory (d → ∞)."),
    "spectrum-isotropic": (
        "The talk states no setting. Every preset is [B25] Fig. 4's setting (ψ_p = {psi_p:g}, ψ_n = {psi_n:g}, "
        "t = {t:g}, {activation}, Σ = I), whose caption gives ρ₂ between ≈ 10 and ≈ 45; paper adds the exact U at "
        "d = {empirical_d} ([B25]'s d)."),
    "speciation-collapse": (
        "The talk states no setting. Paper preset: [B24]'s |m| = m̃√d with m̃ = {m_tilde:g}, σ_x = {sigma_x:g} ([B24] "
        "Fig. 2) at d = {d}, n = {n_train} training points for the collapse (α = log n/d), {n_pairs} clone pairs, "
        "{n_trajectories} trajectories, {steps} steps."),
    "time-integrated": (
        "The talk states no setting. Paper preset: [B25] Fig. 4's ψ_p = {psi_p:g}, ψ_n = {psi_n:g}, {activation}, "
        "Σ = I at d = {d} (p = {p}, n = {n}; [B25] has d = 100), score errors at t = {times_list} ([B25] Figs. 4-5 "
        "have 0.01 and 0.1), Q {time_law} on [{t_min:g}, {t_max:g}], quadrature in t to {t_rtol:g}."),
    "mixture-outlier": (
        "The talk's outlier slides state no setting, and the outlier paper it cites (Annesi, Bocchi, Cammarota 2025, "
        "arXiv 2510.18435) treats another matrix, whose setting is not used here. Paper preset: [B25]'s times "
        "t = {t_list}, {activation}, σ_x = {sigma_x:g} ([B24]), |m| = {m_norm:g} = O(1) (the talk's 'GEP holds!' "
        "regime; |m|_c ≈ 1.03-1.05), ψ_p = {psi_p:g}, ψ_n = {psi_n:g} (the setting where docs/theory.md §5 "
        "calibrates the finite-d test), d = {d} (p = {p})."),
    "two-regimes": (
        "The talk states no setting. Paper preset: [B24]'s well-separated regime |m| = m̃√d with m̃ = {m_tilde:g}, "
        "σ_x = {sigma_x:g} ([B24] Fig. 2), and |m| = {m_norm:g} = O(1) for the other (a bimodal target, centres "
        "±{m_norm:g}σ_x); d = {d}, {activation}, ψ_p = {psi_p:g} (p = {p}), n = {n_train} > p (τ = ∞ does not "
        "memorize), {n_samples} samples, {steps} steps."),
    "memorization-along-training": (
        "The talk states no setting; [B25] measures f_mem along training with U-Nets (§2) and analyses random "
        "features with p ≫ n (§3). Paper preset: Gaussian data N(0, I), {activation}, t_min = {t_min:g} ([B25] "
        "Fig. 4's t), d = {d}, n = {n_train} (ψ_n = {psi_n:g}), ψ_p = {psi_p:g} (p = {p} ≫ n), {n_samples} samples "
        "per τ, {steps} steps (d small enough for the criterion d₁/d₂ < 1/3 of [B25] to fire)."),
}


def talk_setting(fig_id: str) -> str:
    """TALK_SETTINGS[fig_id] with the values of the figure's "paper" preset filled in (and p = psi_p d, n = psi_n d
    or n_train/d, the range of psi_ns, the lists t and times)."""
    cfg = FIGURES[fig_id].make_config("paper").as_dict()
    extra = {}
    if "d" in cfg and "psi_p" in cfg:
        extra["p"] = int(round(cfg["psi_p"] * cfg["d"]))
    if "d" in cfg and "psi_n" in cfg:
        extra["n"] = int(round(cfg["psi_n"] * cfg["d"]))
    if "d" in cfg and "n_train" in cfg and "psi_n" not in cfg:
        extra["psi_n"] = cfg["n_train"] / cfg["d"]
    if "psi_ns" in cfg:
        extra["psi_n_lo"], extra["psi_n_hi"] = min(cfg["psi_ns"]), max(cfg["psi_ns"])
    for key in ("t", "times"):
        if isinstance(cfg.get(key), (tuple, list)):
            extra[key + "_list"] = ", ".join(f"{x:g}" for x in cfg[key])
    return TALK_SETTINGS[fig_id].format(**cfg, **extra)


def _time_integrated(cfg, out):
    from .experiments.figures import compute_time_integrated_comparison
    from .experiments.talk_checks import phenomenology, time_integrated_claim
    r = compute_time_integrated_comparison(out, cfg)
    meta, arrays = r["meta"], r["arrays"]
    measured = {"t quadrature nodes": str(meta["t_quadrature_nodes"])}
    for t, v in meta["score_error_min"].items():
        measured[f"smallest score error at t={t} (time-integrated / per-time)"] = \
            f"{v['time-integrated']:.3g} / {v['per-time']:.3g}"
    for t, v in meta["score_error_inf"].items():
        measured[f"score error at t={t}, tau=1e8 (time-integrated / per-time)"] = \
            f"{v['time-integrated']:.3g} / {v['per-time']:.3g}"
    inf = meta["losses_at_tau_inf"]
    ti = phenomenology(arrays["tau"], arrays["ti_train"], arrays["ti_test"], inf["time-integrated"]["train"],
                       inf["time-integrated"]["test"])
    per_time = {float(t): phenomenology(arrays["tau"], arrays[f"pt_train_{t:g}"], arrays[f"pt_test_{t:g}"],
                                        inf[f"{t:g}"]["train"], inf[f"{t:g}"]["test"]) for t in sorted(cfg.times)}
    keys = ("d", "psi_p", "psi_n", "times", "t_min", "t_max", "time_law", "activation", "t_rtol")
    claim = time_integrated_claim(ti, per_time, 10 * cfg.t_rtol, _paper_setting("time-integrated", keys),
                                  {k: cfg.as_dict()[k] for k in keys})
    return {"figures": [r["figure"]], "measured": measured, "claim": claim}


def _time_integrated_timescales(cfg, out):
    """Both readings of tau_mem and tau_gen against n with their slopes and 95 % intervals, and the verdict
    (rfdm.experiments.timescales.scaling_claim): the readings agree, tau_gen flat, tau_mem's slope against
    [B25] Thm. 3.2's 1 with the per-time theory's slope at the same psi (t = t_min, sqrt(t_min t_max), t_max)
    as the reason when they differ."""
    from .experiments import timescales as exp
    res = exp.compute_scaling(cfg)
    paths = exp.save_scaling(res, out)
    ts = (cfg.t_min, math.sqrt(cfg.t_min * cfg.t_max), cfg.t_max)
    theory = exp.per_time_theory_slopes(cfg.psi_p, cfg.psi_n, cfg.activation, ts)
    claim, sl = exp.scaling_claim(res, theory,
                                  theory_tau_gen_ratio=exp.per_time_tau_gen_ratio(cfg.psi_p, cfg.psi_n, cfg.activation, ts))

    def slope(key):
        s = sl.get(key)
        if s is None or s["slope"] is None:
            return "none"
        if s["interval"] is None:
            return f"{s['slope']:.2f} (no interval)"
        return f"{s['slope']:.2f} ± {s['halfwidth']:.2f} (95 %: [{s['interval'][0]:.2f}, {s['interval'][1]:.2f}])"

    fmt = lambda xs: ", ".join("none" if x is None else f"{x:.3g}" for x in xs)  # noqa: E731
    measured = {"n": ", ".join(str(int(x)) for x in res["n"]),
                "draws per n": str(cfg.draws),
                "tau_mem (loss curves)": fmt(res["tau_mem_curves"]),
                "slope of log tau_mem vs log n (loss curves)": slope("tau_mem_curves"),
                "tau_mem (spectrum, modes carrying half the gap)": fmt(res["tau_mem_gap_share"]),
                "slope (spectrum, gap share)": slope("tau_mem_gap_share"),
                "tau_mem (spectrum, slowest memorization mode; biased, docs/theory.md §7.1)": fmt(res["tau_mem"]),
                "slope (spectrum, slowest mode)": slope("tau_mem"),
                "tau_gen (spectrum, gap share)": fmt(res["tau_gen_gap_share"]),
                "slope of log tau_gen vs log n (gap share)": slope("tau_gen_gap_share"),
                "tau_gen (loss curves)": fmt(res["tau_gen_curves"]),
                "slope of log tau_gen vs log n (loss curves)": slope("tau_gen_curves"),
                "tau_gen (spectrum, population cluster)": fmt(res["tau_gen"]),
                "per-time theory slope of tau_mem": ", ".join(
                    f"{'none' if v is None else f'{v:.2f}'} at t = {t:g}" for t, v in theory.items())}
    return {"figures": [paths["figure"]], "measured": measured, "claim": claim,
            "basis": ("the talk quotes no number for the time-integrated model: its scaling is checked against the "
                      "per-time theory ([B25] Thm. 3.2) and the two readings against each other")}


def _outlier(cfg, out):
    from .experiments import outlier as exp
    from .experiments.talk_checks import outlier_claim
    res = exp.compute(cfg)
    paths = exp.save(res, out)
    r0 = res["rows"][0]
    below = exp.below_threshold(cfg, 0.5) if cfg.empirical else None
    measured = {f"outlier at t={r0['t']:g} (theory / exact U)": f"{r0['outlier_theory']:.4g} / {r0['top_eigenvalue']:.4g}",
                "overlap with Wm (theory / exact)": f"{r0['overlap_theory']:.3f} / {r0['overlap_empirical']:.3f}",
                "BBP threshold |m|_c": f"{r0['threshold_m_norm']:.3f}"}
    if below is not None:
        measured[f"paired control at |m| = 0.5 |m|_c, t={below['t']:g}"] = (
            "outlier" if below["outlier"] is not None else f"no outlier (overlap {below['overlap']:.3f})")
    keys = ("d", "psi_p", "psi_n", "t", "m_norm", "sigma_x", "activation")
    claim = outlier_claim(res["rows"], below, cfg.d, _paper_setting("mixture-outlier", keys),
                          {k: cfg.as_dict()[k] for k in keys})
    return {"figures": [paths["figure_t"], paths["figure_phase"], paths["figure_training"]], "measured": measured,
            "claim": claim}


def _two_regimes(cfg, out):
    from .experiments import sampling as exp
    from .experiments.talk_checks import two_regimes_claim
    res = exp.compute_two_regimes(cfg)
    paths = exp.save_two_regimes(res, out)
    summ = exp.two_regimes_summary(res)["regimes"]
    measured = {}
    for k, v in summ.items():
        measured[f"{v['label']}: mode fractions"] = ", ".join(f"{x:.3f}" for x in v["mode_fractions"])
        measured[f"{v['label']}: distance to target"] = f"{v['distance_to_target']:.3g}"
        measured[f"{v['label']}: bimodality index (excess kurtosis along m / target's)"] = f"{v['bimodality_index']:.3f}"
        measured[f"{v['label']}: variance along m (target)"] = f"{v['var_along_m_total']:.3g} ({v['target_var_along_m']:.3g})"
    keys = ("d", "psi_p", "n_train", "m_norm", "m_tilde", "sigma_x", "activation", "tau", "n_samples")
    claim = two_regimes_claim(summ, cfg.n_samples, cfg.n_train, _paper_setting("two-regimes", keys),
                              {k: cfg.as_dict()[k] for k in keys})
    return {"figures": [paths["figure"]], "measured": measured, "claim": claim}


def _memorization(cfg, out):
    from .experiments import sampling as exp
    from .experiments.talk_checks import memorization_claim
    res = exp.compute_memorization(cfg)
    paths = exp.save_memorization(res, out)
    s = exp.memorization_summary(res)
    keys = ("d", "psi_p", "n_train", "activation", "t_min", "n_samples", "steps")
    claim = memorization_claim(s, _paper_setting("memorization-along-training", keys), {k: cfg.as_dict()[k] for k in keys})
    return {"figures": [paths["figure"]],
            "measured": {"f_mem at the smallest tau": f"{s['f_mem'][0]:.3f}", "f_mem at tau = inf": f"{s['f_mem'][-1]:.3f}",
                         "f_mem, empirical score": f"{s['f_mem_empirical']:.3f}", "f_mem, exact score": f"{s['f_mem_exact']:.3f}",
                         "tau_mem (spectral theory / this U)": f"{s.get('tau_mem_theory') or float('nan'):.3g} / "
                                                               f"{s.get('tau_mem_empirical') or float('nan'):.3g}"},
            "claim": claim}


def _regimes(cfg, out):
    from .experiments import regimes as exp
    from .experiments.talk_checks import B24_REASON, speciation_claim
    res = exp.compute(cfg)
    paths = exp.save(res, out)
    s = exp.json_summary(res)
    keys = ("d", "m_norm", "m_tilde", "sigma_x", "n_train", "n_pairs", "n_trajectories", "steps")
    setting = {k: cfg.as_dict()[k] for k in keys}
    claim = speciation_claim(res["scalars"], {"t": res["phi_t"], "theory": res["phi_theory"],
                                              "simulated": res["phi_simulated"], "stderr": res["phi_simulated_stderr"]},
                             setting, _paper_setting("speciation-collapse", keys))
    return {"figures": [paths["figure"]],
            "measured": {"t_S (formula)": f"{s['t_speciation']:.4g}", "t_C (formula)": f"{s['t_collapse']:.4g}",
                         "t_C (simulated)": str(s.get("t_collapse_simulated"))},
            "claim": claim, "basis": B24_REASON}


def _configs():
    """The config classes of the figures (imported on first use: the registry is imported by the CLI)."""
    from .experiments import figures, outlier, regimes, sampling, spectrum, timescales
    return {"spectrum": spectrum.SpectrumConfig, "gap": figures.GapHeatmapConfig,
            "theory": figures.TheoryTimescalesConfig, "ti": figures.TimeIntegratedComparisonConfig,
            "tits": timescales.TimescalesConfig, "outlier": outlier.OutlierConfig,
            "two": sampling.TwoRegimesConfig, "mem": sampling.MemorizationConfig, "regimes": regimes.RegimesConfig}


_C = _configs()
_SPECTRUM_PRESETS = {"tiny": {"n_points": 400}, "paper": {"empirical_d": 100, "n_points": 4000}}

FIGURES = {f.id: f for f in [
    Figure("spectrum-isotropic", "Spectrum of U, Σ = I, from the self-consistent equations",
           "U has an atom at s_t², a memorization bulk ρ₁ far below and a population bulk ρ₂ on the scale ψ_p "
           "(B25-fig4 checks the published setting against the caption).",
           "ρ₂ between about 10 and 45 (ψ_p = 64, ψ_n = 8, t = 0.01, tanh; [B25] Fig. 4 caption)", _C["spectrum"],
           _spectrum, _SPECTRUM_PRESETS, {"sigma_spectrum": (1.0,)}),
    Figure("gap-heatmap", "Generalization gap over (ψ_n, ψ_p) at fixed τ, finite d (B25-fig5C: the limit d → ∞)",
           "The gap is large where p > n (memorization possible) and small for n > p (architectural regularization).",
           "no number quoted", _C["gap"], _gap_heatmap,
           {"tiny": dict(d=8, psi_ps=(4.0, 8.0), psi_ns=(1.0, 4.0)), "paper": dict(d=64)}),
    Figure("timescales", "τ_mem ∝ n, τ_gen flat (spectral theory)",
           "τ_mem = ψ_p/(Δ_t λ_left(ρ₁)) grows linearly in n when ψ_p ≫ ψ_n; τ_gen does not depend on n.",
           "[B25]: τ_mem ∝ n (slope 1) and τ_gen flat for ψ_p ≫ ψ_n, within their leading-order corrections "
           "(here ψ_p = 1024; paper preset at [B25] Fig. 5's t = 0.1)", _C["theory"], _timescales,
           {"tiny": dict(psi_ns=(2.0, 4.0, 8.0)), "paper": dict(t=0.1)}),
    Figure("time-integrated", "Time-integrated random features against per-time models on the same data",
           "One network for all t shows the same generalization-then-memorization phenomenology as one network "
           "per t; its spectrum is a smeared version of the per-time spectra (no atom, no Gaussian equivalence).",
           "talk: 'same phenomenology' (no number); checked: the test loss rises after a minimum at finite τ and the "
           "gap grows after it, as for one network per t (paper preset: [B25] Fig. 4's ψ_p = 64, ψ_n = 8 at d = 50)",
           _C["ti"], _time_integrated,
           {"tiny": dict(d=8, psi_p=8.0, psi_n=2.0), "paper": dict(d=50, psi_p=64.0, psi_n=8.0, t_rtol=1e-6)}),
    Figure("time-integrated-timescales", "Time-integrated model: τ_mem against n, τ_gen flat",
           "With one network for all t (Q log-uniform on [0.01, 2]), τ_mem grows with n, with the same slope from the "
           "loss curves and from the spectrum (the modes carrying half the gap), and τ_gen does not; checked: the "
           "two slopes agree within their joint 95 % interval, τ_gen's slope is 0, τ_mem's is 1 (ψ_p ≫ ψ_n).",
           "slope 1 for ψ_p ≫ ψ_n and τ_gen flat ([B25] Thm. 3.2, per-time model); the talk quotes no number for "
           "the time-integrated model", _C["tits"],
           _time_integrated_timescales,
           {"tiny": dict(d=8, psi_p=16.0, psi_n=(2.0, 4.0), draws=2),
            "quick": dict(d=32, psi_p=16.0, psi_n=(1.5, 3.0, 6.0), draws=2),
            "paper": dict(d=64, psi_p=32.0, psi_n=(2.0, 4.0, 8.0), draws=3)},
           {"model": "time-integrated", "time_law": "log-uniform"}),
    Figure("mixture-outlier", "Mixture data: BBP outlier of U, phase diagram, training along m",
           "A rank-one spike along W m pushes one eigenvalue out of the bulk above a threshold |m|_c(t).",
           "talk: outlier above |m|_c(t) (no number); checked: the exact U's top eigenvalue and overlap against the "
           "d → ∞ theory, found by the paired control above |m|_c and not at 0.5 |m|_c (paper preset: [B25]'s "
           "t = 0.01, 0.1, |m| = 2, ψ_p = 4, ψ_n = 2, d = 400)", _C["outlier"], _outlier,
           {"tiny": dict(d=40, t=(0.1,), phase_t=tuple(np.geomspace(0.01, 3, 8)),
                         training_tau=tuple(np.logspace(-1, 6, 20))),
            "quick": dict(d=100), "paper": dict(d=400, t=(0.01, 0.1))},
           {"m_norm": 2.0, "t": (0.05, 0.2, 0.5), "empirical": True, "training_tau": tuple(np.logspace(-1, 6, 50))}),
    Figure("two-regimes", "The two regimes of mixture sampling with random-features scores",
           "For |m| = O(1) the learned score is nearly linear and the backward process gives one Gaussian stretched "
           "along m; for |m| = O(sqrt(d)) it separates two balanced modes.",
           "talk's conclusion (no number); checked: bimodality index, variance along m, mode balance (paper preset: "
           "[B24]'s |m| = √d m̃, m̃ = 1, σ_x = 1 against |m| = 2, d = 64)",
           _C["two"], _two_regimes,
           {"tiny": dict(d=8, psi_p=8.0, n_train=128, n_samples=300, steps=60, rf_times=5),
            "paper": dict(d=64, psi_p=16.0, n_train=2048, m_norm=2.0, m_tilde=1.0, n_samples=10000, steps=400)}),
    Figure("memorization-along-training", "Memorization fraction along training (p ≫ n)",
           "Samples from scores stopped before τ_mem are new; f_mem rises once τ passes τ_mem; the empirical score "
           "memorizes.",
           "talk and [B25] (no number); checked: lower Clopper–Pearson bound of f_mem ≤ 2 % before τ_mem, > 2 % at the "
           "end, > 1/2 for the empirical score (paper preset: d = 16, n = 32, ψ_p = 128, t_min = 0.01)",
           _C["mem"], _memorization,
           {"tiny": dict(d=6, psi_p=32.0, n_train=8, n_samples=100, steps=60, rf_times=5, tau=(1.0, 1e4, math.inf)),
            "paper": dict(d=16, psi_p=128.0, n_train=32, n_samples=2000, steps=400)}),
    Figure("speciation-collapse", "Speciation and collapse of the backward dynamics ([B24])",
           "Clones separated after t_S end in the same mode with probability phi(t); with the empirical score the "
           "trajectories collapse onto training points below t_C.",
           "[B24]'s φ(t) and t_C (formulas) against the clone simulations; t_S = log(|m|² + σ_x²)/2 (paper preset: "
           "|m| = √d m̃, m̃ = 1, σ_x = 1, d = 64)", _C["regimes"], _regimes,
           {"tiny": dict(d=8, n_pairs=200, n_trajectories=100, steps=60, n_times=5),
            "paper": dict(d=64, m_norm=None, m_tilde=1.0, n_pairs=5000, n_trajectories=2000, steps=400)},
           {"m_norm": 2.0}),
]}


@dataclass(frozen=True)
class PublishedFigure:
    """A published figure at its published setting ("paper" preset) or a reduced one ("quick"; "tiny" runs
    "quick"): computed by its module in rfdm.published, with the verdict of every check against the paper."""

    id: str
    title: str
    claim: str
    published: str
    #: no declared configuration: the module's "paper" setting is the published one, "quick" its reduction
    config = None

    def preset(self, preset: str) -> str:
        if preset not in PRESETS:
            raise InvalidParameterError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}.")
        return "paper" if preset == "paper" else "quick"


PUBLISHED = [
    PublishedFigure("B25-fig4", "[B25] Fig. 4 / SM Fig. 14: spectrum of U, Σ = I and Σ eigenvalues {0.5, 1.5}",
                    "ρ₂ lies between ≈ 10 and ≈ 45; ρ₁ is unchanged and ρ₂ changes for a two-eigenvalue Σ with σ_x² = 1.",
                    "ψ_p = 64, ψ_n = 8 (and 32), t = 0.01, tanh, d = 100"),
    PublishedFigure("B25-fig5", "[B25] Fig. 5 A/B: score error and losses against τ, τ/τ_mem collapse",
                    "τ_mem ∝ n and τ_gen flat; the curves collapse in τ/τ_mem.",
                    "d = 100, ψ_p = 64, t = 0.1, ψ_n = 4, 8, 16, 32"),
    PublishedFigure("B25-fig5C", "[B25] Fig. 5C: generalization gap over (ψ_n, ψ_p) at τ = 10³ and 10⁴, limit d → ∞",
                    "The memorization boundary n*(τ) moves with τ; the gap is small for n > p.",
                    "t = 0.1, heatmaps at τ = 10³ and 10⁴"),
    PublishedFigure("B25-fig1", "[B25] Fig. 1: the (n, p) phase diagram, limit d → ∞",
                    "Memorization needs n < p; the window τ_gen < τ < τ_mem widens with n; n > p regularizes.",
                    "qualitative phase diagram"),
    PublishedFigure("B25-SM-fig11", "[B25] SM Fig. 11: L_gen against τ and τ/τ_gen, limit d → ∞",
                    "Early-time generalization curves collapse in τ/τ_gen.", "ψ_p = 32, several ψ_n and t"),
    PublishedFigure("B25-SM-fig12", "[B25] SM Fig. 12: τ_mem for σ_x = 2 and 0.5",
                    "The τ_mem prediction holds for a general variance.", "ψ_p = 64, t = 0.1, d = 100"),
    PublishedFigure("B25-SM-fig13", "[B25] SM Fig. 13: E*_score against ψ_n, finite d",
                    "E*_score = min_τ E_score ∝ ψ_n^(−0.59).", "ψ_p = 32, t = 0.01, 10 runs"),
    PublishedFigure("B25-SM-fig13-limit", "[B25] SM Fig. 13 in the limit d → ∞",
                    "E*_score = min_τ E_score ∝ ψ_n^(−0.59).", "ψ_p = 32, t = 0.01"),
    PublishedFigure("bridge-1-over-d", "Finite d → ∞: exact curves at several d, Richardson in 1/d, the limit",
                    "Exact finite-d curves approach the d → ∞ curves like 1/d.", "no published figure (rfdm)"),
    PublishedFigure("B24-fig2", "[B24] Fig. 2: speciation, φ(t) against t/t_S",
                    "φ(t_S) = 0.775 at every d; the clone simulation follows the formula.",
                    "|m| = √d, σ = 1, d = 256 … 16384"),
    PublishedFigure("B24-fig3", "[B24] Fig. 3: collapse, excess entropy f(t)/α",
                    "The estimate from log P_t^e follows α + ½ log(Δ_t/Γ_t²) clipped at 0; collapse at t_C.",
                    "P = 20 000, d = 256, 1024, 4096"),
    PublishedFigure("B25-sec2-nets", "[B25] §2 with real networks: residual MLPs on the digits, τ_mem and τ_gen against n and W",
                    "τ_gen flat in n, τ_mem ∝ n; τ_gen ∝ 1/W, τ_mem ∝ n/W (the random-features model's exact τ_mem beside).",
                    "U-Nets of base width W on grey-scale CelebA 32×32, n = 128 … 32 768"),
]


def run_experiment(name: str, measured=None):
    """The ``run`` of a figure made by one registered experiment (rfdm.protocol.register): compute, the generic
    save with its plot, and ``measured(result) -> {name: text}`` (default: the summary's numbers)."""
    def run(config, out):
        from .protocol import get

        exp = get(name)
        result = exp.compute(config)
        paths = exp.save(result, out)
        shown = measured(result) if measured is not None else {
            k: f"{v:.4g}" if isinstance(v, float) else str(v) for k, v in result.summary.items()}
        return {"figures": [paths["figure"]], "measured": shown}
    return run


FIGURES.update({f.id: f for f in PUBLISHED})

#: figures `rfdm reproduce` skips unless named with --only (too slow for its few-minutes budget)
NOT_IN_REPRODUCE: set = {"B25-sec2-nets"}


def register(figure: Figure) -> Figure:
    """Add a figure (one line per new figure: see docs/architecture.md)."""
    FIGURES[figure.id] = figure
    return figure


def get_figure(fig_id: str) -> Figure:
    if fig_id not in FIGURES:
        raise InvalidParameterError(f"unknown figure {fig_id!r}; `rfdm figure --list` lists them.")
    return FIGURES[fig_id]


def all_figures() -> list:
    return list(FIGURES.values())


def run_figure(fig_id: str, preset: str, out_dir, **points) -> dict:
    """Compute one figure into ``out_dir/ID/`` and return its entry: id, title, claim, published, measured
    (name -> text), figures (PNG paths), seconds and ``report``, the verdict entry {"id", "setting",
    "published", "measured", "tolerance", "verdict", "reason"} (rfdm.published.claims); the entry is also
    written as ``out_dir/ID/entry.json`` (atomically), so a report can be rebuilt from the figures done.
    ``points`` (executor, workers, device, quiet) go to :func:`rfdm.published.run`: the exact flows of its
    POINT_FIGURES are stored, resumable points under ``out_dir/ID/points/``."""
    from .results import write_json

    fig = get_figure(fig_id)
    out = Path(out_dir) / fig.id
    t0 = time.perf_counter()
    if isinstance(fig, PublishedFigure):
        from . import published

        report = published.run(fig.id, preset=fig.preset(preset), seed=0, out_dir=out, **points)
        measured = {c["name"]: _text(c.get("measured")) for c in report["checks"]}
        figures = [str(out / f"{fig.id}.png")]
    else:
        config = fig.make_config(preset)
        res = fig.run(config, out)
        measured, figures = res["measured"], res["figures"]
        converged = res.get("converged", True)
        if res.get("claim") is not None:  # a talk figure with its claims turned into criteria
            from .experiments.talk_checks import talk_report_entry

            report = talk_report_entry(res["claim"], talk_setting(fig.id) if fig.id in TALK_SETTINGS
                                       else fig.published, converged,
                                       **({"basis": res["basis"]} if res.get("basis") else {}))
        else:
            report = {"id": fig.id, "setting": {"measured": config.as_dict(), "published": None,
                                                "same_as_published": False},
                      "published": {"statement": {"value": None, "source": fig.published}},
                      "measured": measured, "tolerance": None,
                      "verdict": "no published number" if converged else "not converged",
                      "reason": ("a figure of the talk without a published number to compare with; the measured values "
                                 "are shown." if converged else "a run-time check of the solver failed (see the "
                                 "figure's result): its numbers are not to be trusted.")}
    entry = {"id": fig.id, "title": fig.title, "claim": fig.claim, "published": fig.published, "measured": measured,
             "figures": figures, "seconds": time.perf_counter() - t0, "preset": preset, "report": report}
    write_json(out / "entry.json", entry)
    return entry


def _text(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text(v) for v in value) + "]"
    return "—" if value is None else str(value)
