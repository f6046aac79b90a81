"""Additional figures of the talk built from the experiments: the generalization-gap heatmap over (psi_n,
psi_p) at finite d, the theoretical timescales against n and the time-integrated comparison ([B25] Fig. 5 at its
published setting is rfdm.published.b25_fig5).  Each has a declared config, compute() -> dataset on disk and plot(dataset, fig)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import GaussianData
from ..dynamics import GradientFlow
from ..features import RandomFeatures, noise_averaged_statistics, population_statistics
from ..results import load_result, provenance, render, staged_output, write_npz
from ..protocol import POSITIVE, TOLERANCE, Config, SeedStreams, make_config, FloatList, OneOf, WholeTimes, param
from ..spectrum import SpectralProblem, gep_coefficients
from ..time_integrated import TIME_LAWS
from .common import activation_field, d_field, psi_field, seed_field, t_field


def _save(out_dir, stem: str, arrays: dict, header: dict, plot) -> dict:
    """STEM.npz (arrays + header) and STEM.png drawn by ``plot(load_result(npz), fig)`` from the saved file, written in a
    staging folder (nothing half-written); returns the paths (keys data, figure)."""
    with staged_output(out_dir) as stage:
        write_npz(stage / f"{stem}.npz", arrays, header)
        render(plot, load_result(stage / f"{stem}.npz"), stage / f"{stem}.png", dpi=110)
    return {"data": str(Path(out_dir) / f"{stem}.npz"), "figure": str(Path(out_dir) / f"{stem}.png")}


def _flow(d, p, n, t, activation, seed):
    streams = SeedStreams.ordered([seed, n, p], ("features", "train"))
    rng_w, rng_x = streams.generator("features"), streams.generator("train")
    law = GaussianData(d)
    features = RandomFeatures.sample(d, p, activation, rng_w)
    X = law.sample(n, rng_x)
    return GradientFlow(noise_averaged_statistics(features, X, t), population_statistics(features, law, t),
                        overwrite=True)


# -- declared configurations of these figures (rfdm.protocol); compute_*(out_dir, **asdict(config)) ------------

@dataclass
class GapHeatmapConfig(Config):
    """The generalization gap at one tau over a grid of (psi_n, psi_p)."""

    d: int = d_field(16)
    psi_ps: tuple = param(factory=lambda: (4.0, 8.0, 16.0, 32.0), help="p/d values", label="psi_p",
                          check=(FloatList(POSITIVE), WholeTimes("d")), parse="floats")
    psi_ns: tuple = param(factory=lambda: (0.5, 1.0, 2.0, 4.0, 8.0), help="n/d values", label="psi_n",
                          check=(FloatList(POSITIVE), WholeTimes("d")), parse="floats")
    tau: float = param(1e4, "training time of the gap", check=POSITIVE)
    t: float = t_field()
    activation: str = activation_field()
    seed: int = seed_field()


@dataclass
class TheoryTimescalesConfig(Config):
    """tau_gen, tau_mem of the spectral theory against psi_n."""

    psi_p: float = param(1024.0, "p/d", check=POSITIVE, label="psi_p")
    psi_ns: tuple = param(factory=lambda: (2.0, 4.0, 8.0, 16.0, 32.0), help="n/d values", label="psi_n",
                          check=FloatList(POSITIVE), parse="floats")
    t: float = t_field()
    activation: str = activation_field()


@dataclass
class TimeIntegratedComparisonConfig(Config):
    """The time-integrated model against per-time models on the same data and W."""

    d: int = d_field(16)
    psi_p: float = psi_field(16.0, "p")
    psi_n: float = psi_field(2.0, "n")
    times: tuple = param(factory=lambda: (0.01, 0.1, 1.0), help="times of the score errors", unit="OU time",
                         check=FloatList(POSITIVE), parse="floats")
    t_min: float = param(0.01, "smallest diffusion time", check=POSITIVE)
    t_max: float = param(2.0, "largest diffusion time", check=POSITIVE)
    time_law: str = param("uniform", "law Q of the diffusion time", check=OneOf(TIME_LAWS), label="time law")
    activation: str = activation_field()
    t_rtol: float = param(1e-4, "relative tolerance of the quadrature in t", check=TOLERANCE)
    seed: int = seed_field()


def compute_gap_heatmap(out_dir, config: GapHeatmapConfig | None = None, **overrides):
    """Generalization gap (test - train) at a fixed tau over a grid of (psi_n, psi_p)."""
    c = config if config is not None else make_config(GapHeatmapConfig, **overrides)
    d, psi_ps, psi_ns, tau, t, activation, seed = (
        c.d, c.psi_ps, c.psi_ns, c.tau, c.t, c.activation, c.seed)
    gap = np.zeros((len(psi_ps), len(psi_ns)))
    for i, psi_p in enumerate(psi_ps):
        for j, psi_n in enumerate(psi_ns):
            c = _flow(d, int(round(psi_p * d)), int(round(psi_n * d)), t, activation, seed).curves(np.array([tau]))
            gap[i, j] = c["generalization_gap"][0]
    config = {"d": d, "psi_p": list(psi_ps), "psi_n": list(psi_ns), "tau": tau, "t": t, "activation": activation}
    return dict(_save(out_dir, "gap_heatmap", {"gap": gap}, provenance(config, seed), plot_gap_heatmap), gap=gap)


def plot_gap_heatmap(data, fig) -> None:

    arrays, header = data.arrays, data.header
    cfg = header["config"]
    fig.set_size_inches(6, 4.5)
    ax = fig.subplots()
    im = ax.imshow(np.log10(np.maximum(arrays["gap"], 1e-6)), origin="lower", aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(cfg["psi_n"])), [f"{x:g}" for x in cfg["psi_n"]])
    ax.set_yticks(range(len(cfg["psi_p"])), [f"{x:g}" for x in cfg["psi_p"]])
    ax.set_xlabel(r"$\psi_n = n/d$")
    ax.set_ylabel(r"$\psi_p = p/d$")
    fig.colorbar(im, label=r"$\log_{10}$ generalization gap")
    ax.set_title(f"gap at tau={cfg['tau']:g}, t={cfg['t']:g}, d={cfg['d']} (large for p > n)", fontsize=9)
    fig.tight_layout()


def compute_theory_timescales(out_dir, config: TheoryTimescalesConfig | None = None, **overrides):
    """tau_gen and tau_mem from the spectral theory against psi_n (tau_mem ~ n when psi_p >> psi_n; rho_1
    exists only for n > d, i.e. psi_n > 1)."""
    c = config if config is not None else make_config(TheoryTimescalesConfig, **overrides)
    psi_p, psi_ns, t, activation = (
        c.psi_p, c.psi_ns, c.t, c.activation)
    coeffs = gep_coefficients(activation, t)
    rows = [SpectralProblem(coeffs, psi_p, psi_n).solve(n_points=400).timescales() for psi_n in psi_ns]
    tm = np.array([r["tau_mem"] if r["tau_mem"] is not None else np.nan for r in rows])
    tg = np.array([r["tau_gen"] for r in rows])
    ok = np.isfinite(tm)
    slope = float(np.polyfit(np.log(np.array(psi_ns)[ok]), np.log(tm[ok]), 1)[0]) if ok.sum() >= 2 else None
    config = {"psi_p": psi_p, "psi_n": list(psi_ns), "t": t, "activation": activation}
    header = dict(provenance(config, 0), slope_tau_mem=slope)
    paths = _save(out_dir, "theory_timescales", {"psi_n": np.array(psi_ns), "tau_mem": tm, "tau_gen": tg}, header,
                  plot_theory_timescales)
    return dict(paths, slope_tau_mem=slope, tau_gen=tg.tolist(), tau_mem=tm.tolist())


def plot_theory_timescales(data, fig) -> None:

    arrays, header = data.arrays, data.header
    cfg = header["config"]
    fig.set_size_inches(6, 4.2)
    ax = fig.subplots()
    ax.plot(arrays["psi_n"], arrays["tau_mem"], "o-", color="C3", label=rf"$\tau_{{mem}}$ (slope {header['slope_tau_mem']:.2f})")
    ax.plot(arrays["psi_n"], arrays["tau_gen"], "s-", color="C0", label=r"$\tau_{gen}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\psi_n = n/d$")
    ax.set_ylabel(r"$\tau$")
    ax.set_title(f"spectral theory, psi_p={cfg['psi_p']:g}, t={cfg['t']:g}, {cfg['activation']}", fontsize=9)
    ax.legend()
    fig.tight_layout()


def compute_time_integrated_comparison(out_dir, config: TimeIntegratedComparisonConfig | None = None, **overrides):
    """The time-integrated model against per-time models on the same data and the same W (docs/theory.md §7): its
    integrated train/test losses; the score error at each t in ``times`` of the one time-integrated network
    and of the per-time network trained at that t; the spectra of the time-integrated U and of the per-time
    U_t.  Times of training are tau = k eta/d^2 for both (their own losses).  Returns the paths, ``meta`` (with the
    train and test losses at tau = inf of both models, ``losses_at_tau_inf``) and ``arrays`` (the curves: tau,
    ti_train, ti_test, and per time t pt_train_t, pt_test_t, pt_score_t)."""
    c = config if config is not None else make_config(TimeIntegratedComparisonConfig, **overrides)
    d, psi_p, psi_n, times, t_min, t_max, time_law, activation, t_rtol, seed = (
        c.d, c.psi_p, c.psi_n, c.times, c.t_min, c.t_max, c.time_law, c.activation, c.t_rtol, c.seed)
    from ..time_integrated import TimeIntegratedModel, spectrum_bulks

    p, n = int(round(psi_p * d)), int(round(psi_n * d))
    streams = SeedStreams.ordered([seed, n, p], ("features", "train", "time_integrated_b"))
    rng_w, rng_x, rng_b = (streams.generator(k) for k in ("features", "train", "time_integrated_b"))
    law = GaussianData(d)
    features = RandomFeatures.sample(d, p, activation, rng_w)
    X = law.sample(n, rng_x)
    model = TimeIntegratedModel.sample(features, rng_b, t_min=t_min, t_max=t_max, time_law=time_law, t_rtol=t_rtol)
    ti = model.gradient_flow(X, law, score_times=times)
    tau = np.r_[0.0, np.logspace(-2, 8, 201)]  # tau = 0: A = 0 (not plotted on the log axis)
    arrays = {"tau": tau, "ti_train": ti.train_loss(tau), "ti_test": ti.test_loss(tau),
              "ti_eigenvalues": ti.eigenvalues}
    # the losses at tau = inf exactly (the grid ends at 1e8): the ridgeless end of each flow
    at_inf = {"time-integrated": {"train": float(ti.train_loss(np.inf)[0]), "test": float(ti.test_loss(np.inf)[0])}}
    for t in times:
        arrays[f"ti_score_{t:g}"] = ti.quadratic_form(f"score_error@{t:g}", tau)
        flow = GradientFlow(noise_averaged_statistics(features, X, t), population_statistics(features, law, t))
        arrays[f"pt_score_{t:g}"] = flow.score_error(tau)
        arrays[f"pt_train_{t:g}"] = flow.train_loss(tau)
        arrays[f"pt_test_{t:g}"] = flow.test_loss(tau)
        arrays[f"pt_eigenvalues_{t:g}"] = flow.eigenvalues
        at_inf[f"{t:g}"] = {"train": float(flow.train_loss(np.inf)[0]), "test": float(flow.test_loss(np.inf)[0])}
    config = {"d": d, "psi_p": psi_p, "psi_n": psi_n, "times": list(times), "t_min": t_min, "t_max": t_max,
              "time_law": time_law, "activation": activation, "t_rtol": t_rtol, "seed": seed}
    meta = {"t_quadrature_nodes": model.info.get("t_nodes"),
            "ti_bulks": spectrum_bulks(ti.eigenvalues, n, d),
            "score_error_inf": {f"{t:g}": {"time-integrated": float(arrays[f"ti_score_{t:g}"][-1]),
                                           "per-time": float(arrays[f"pt_score_{t:g}"][-1])} for t in times},
            "score_error_min": {f"{t:g}": {"time-integrated": float(arrays[f"ti_score_{t:g}"].min()),
                                           "per-time": float(arrays[f"pt_score_{t:g}"].min())} for t in times},
            "losses_at_tau_inf": at_inf}
    header = dict(provenance(config, seed), meta=meta)
    return dict(_save(out_dir, "time_integrated", arrays, header, plot_time_integrated_comparison), meta=meta,
                arrays=arrays)


def plot_time_integrated_comparison(data, fig) -> None:

    arrays, header = data.arrays, data.header
    cfg = header["config"]
    pos = arrays["tau"] > 0
    tau = arrays["tau"][pos]
    fig.set_size_inches(16, 4.4)
    axes = fig.subplots(1, 3)
    ax = axes[0]
    ax.plot(tau, arrays["ti_train"][pos], color="C0", label="train loss")
    ax.plot(tau, arrays["ti_test"][pos], color="C1", label="test loss")
    ax.set_xscale("log")
    ax.set_xlabel(r"training time $\tau$")
    ax.set_ylabel("integrated loss (per dimension)")
    ax.set_title(f"time-integrated: Q {cfg['time_law']} on [{cfg['t_min']:g}, {cfg['t_max']:g}], d={cfg['d']}, "
                 f"psi_p={cfg['psi_p']:g}, psi_n={cfg['psi_n']:g}", fontsize=8)
    ax.legend(fontsize=8)
    ax = axes[1]
    for k, t in enumerate(cfg["times"]):
        ax.plot(tau, arrays[f"ti_score_{t:g}"][pos], color=f"C{k}", label=f"t={t:g}: time-integrated")
        ax.plot(tau, arrays[f"pt_score_{t:g}"][pos], color=f"C{k}", ls="--", label=f"t={t:g}: per-time")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"training time $\tau$")
    ax.set_ylabel("score error at t (per dimension)")
    ax.set_title("one network for all t (solid) against one network per t (dashed), same W and data", fontsize=8)
    ax.legend(fontsize=7)
    ax = axes[2]
    ev = arrays["ti_eigenvalues"]
    ev = ev[ev > 0]
    lo = min([ev.min()] + [arrays[f"pt_eigenvalues_{t:g}"][arrays[f"pt_eigenvalues_{t:g}"] > 0].min() for t in cfg["times"]])
    hi = max([ev.max()] + [arrays[f"pt_eigenvalues_{t:g}"].max() for t in cfg["times"]])
    bins = np.geomspace(lo * 0.9, hi * 1.1, 80)
    ax.hist(ev, bins=bins, color="k", alpha=0.5, label="time-integrated U")
    for k, t in enumerate(cfg["times"]):
        e = arrays[f"pt_eigenvalues_{t:g}"]
        ax.hist(e[e > 0], bins=bins, histtype="step", color=f"C{k}", label=f"per-time U at t={t:g}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"eigenvalue $\lambda$")
    ax.set_ylabel("count")
    ax.set_title("the time integral smears the atom and the bulks of the per-time spectra", fontsize=8)
    ax.legend(fontsize=7)
    fig.tight_layout()
