"""Numerical spectra of U and the scaling of the training timescales with n (docs/theory.md §4, §7).

`rfdm spectrum --model time-integrated`: the time integral breaks the Gaussian equivalence, so the spectrum of
the time-integrated U is computed numerically (exact noise average, quadrature in t) at dimension d, its
bulks found as clusters separated by gaps in log lambda, and tau_gen, tau_mem read from them.
`rfdm timescales`: tau_gen and tau_mem against n = psi_n d (per-time or time-integrated model), from the
spectrum and from the test-loss curves, with the fitted slope of log tau_mem against log n (theory: 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..data import GaussianData
from ..dynamics import GradientFlow
from ..errors import InvalidParameterError, check_positive_float, check_positive_int
from ..progress import messages, progress
from ..protocol import register, POSITIVE, POSITIVE_INT, FloatList, OneOf, Tau, WholeTimes, param
from ..features import RandomFeatures, noise_averaged_statistics, population_statistics
from ..results import Result, load_result, provenance, render
from ..time_integrated import (TimeIntegratedOptions, fit_slope, gap_share_timescales, timescales_from_curves,
                               timescales_from_spectrum)
from .common import TimeIntegratedFields, activation_field, d_field, psi_field, seed_field, t_field

MODELS = ("per-time", "time-integrated")


@dataclass
class TimescalesConfig(TimeIntegratedFields):
    """tau_gen and tau_mem against n = psi_n d (per-time or time-integrated model)."""

    model: str = param("per-time", "per-time: one network at time --t; time-integrated: one network for all "
                       "t ~ Q on [t-min, t-max]", check=OneOf(MODELS), label="model")
    d: int = d_field(24)
    psi_p: float = psi_field(16.0, "p")
    psi_n: tuple = param(factory=lambda: (1.0, 2.0, 4.0), help="comma list of n/d", label="psi_n",
                         check=(FloatList(POSITIVE), WholeTimes("d")), parse="floats")
    t: float = t_field(help="per-time model: diffusion time")
    activation: str = activation_field()
    seed: int = seed_field()
    draws: int = param(1, "independent draws of (W, X, b) per n", check=POSITIVE_INT, label="number of draws")
    curves: bool = param(True, "with the test-loss curves (without: skip them; the memorization modes are then "
                         "found by gaps in the spectrum)")
    tau: tuple = param(factory=lambda: tuple(np.logspace(-2, 8, 121)), help="training times of the loss curves",
                       check=Tau(), cli=False)

    def check(self):
        self.check_time_integrated()


def _statistics(config, features, X, law, rng_b, with_population):
    """(training statistics, population-like forms or None, kappa) for the configured model."""
    if config.model == "per-time":
        stats = noise_averaged_statistics(features, X, config.t)
        pop = population_statistics(features, law, config.t) if with_population else None
        return stats, pop, None
    model = config.sample_model(features, rng_b, sigma_x2=1.0)
    stats = model.training_statistics(X)
    pop = model.population_statistics(law) if with_population else None
    return stats, pop, model


def spectrum_point(config, n: int, log=lambda m: None, draw: int = 0) -> dict:
    """Eigenvalues of U at (d, p, n) for one draw of (W, X, b), its bulks and timescales; with config.curves,
    also the timescales read from the loss curves.  Draw k uses the children 3k..3k+2 of
    SeedSequence([seed, n]), so draw 0 does not depend on how many draws are asked for.  With the
    population statistics (config.curves), the memorization modes are identified by their eigenvectors
    (rfdm.time_integrated.memorization_modes); without, by gaps in the spectrum."""
    d = config.d
    p = int(round(config.psi_p * d))
    children = np.random.SeedSequence([config.seed, n]).spawn(3 * (draw + 1))[3 * draw:]
    rng_w, rng_x, rng_b = (np.random.default_rng(s) for s in children)
    law = GaussianData(d)
    features = RandomFeatures.sample(d, p, config.activation, rng_w)
    X = law.sample(n, rng_x)
    log(f"{config.model} statistics at d={d}, p={p}, n={n}" + (f", draw {draw}" if config.draws > 1 else ""))
    stats, pop, _ = _statistics(config, features, X, law, rng_b, config.curves)
    flow = GradientFlow(stats)
    ev = flow.eigenvalues
    if config.curves:
        flow.add_quadratic_form("test_loss", pop.U, pop.V, pop.kappa, pop.loss_constant)
    curvature = flow.curvature("test_loss") if config.curves else None
    out = {"n": n, "p": p, "draw": draw, **timescales_from_spectrum(ev, n, d, config.psi_p, stats.kappa, curvature),
           "eigenvalues": ev}
    if config.curves:
        tau = np.array(config.tau)
        train, L = flow.train_loss(tau), flow.test_loss(tau)
        cur = timescales_from_curves(tau, train, L)
        out.update(tau_gen_curves=cur["tau_gen"], tau_mem_curves=cur["tau_mem"], tau_test_min=cur["tau_test_min"],
                   test_loss=L, train_loss=train)
        for key, why in cur.get("why", {}).items():
            out.setdefault("why", {})[key + "_curves"] = why
        shares = gap_share_timescales(flow)
        out.update(tau_mem_gap_share=shares["tau_mem"], tau_gen_gap_share=shares["tau_gen"])
    return out


def eigenvalues_summary(ev) -> dict:
    ev = np.asarray(ev, dtype=float)
    q = np.quantile(ev, [0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0])
    return {"count": int(ev.size), "min": float(q[0]), "q01": float(q[1]), "q10": float(q[2]),
            "median": float(q[3]), "q90": float(q[4]), "q99": float(q[5]), "max": float(q[6])}


#: tau_mem / tau_gen read off the spectrum (slowest memorization mode; population cluster), the loss curves
#: and the spectrum by the modes' shares of the gap (rfdm.time_integrated.gap_share_timescales, docs/theory.md
#: §7.1: the reading whose n-scaling agrees with the curves')
TIMESCALE_KEYS = ("tau_gen", "tau_mem", "tau_gen_curves", "tau_mem_curves", "tau_gen_gap_share", "tau_mem_gap_share")


def compute_scaling(config: TimescalesConfig, quiet: bool = True) -> dict:
    """Timescales at each n = psi_n d for ``config.draws`` independent draws; per n the geometric mean over the
    draws, and the least-squares slope of log tau_mem against log n over all draws (with its standard error)."""
    log = messages("timescales", quiet)
    todo = [(psi, k) for psi in config.psi_n for k in range(config.draws)]
    with progress(total=len(todo), desc="timescales (n, draw)", disable_quiet=quiet) as bar:
        rows = []
        for psi, k in todo:
            rows.append(spectrum_point(config, int(round(psi * config.d)), log, k))
            bar.update(1)
    n = np.array([int(round(psi * config.d)) for psi in config.psi_n], dtype=float)
    notes = [f"{key} at n = {r['n']} (draw {r['draw']}): none, because {why}."
             for r in rows for key, why in r.get("why", {}).items()]
    for note in notes:
        log(note)
    out = {"rows": rows, "n": n, "header": provenance(asdict(config), config.seed), "notes": notes}
    for key in TIMESCALE_KEYS:
        if key not in rows[0]:
            continue
        per_draw = np.array([np.nan if r[key] is None else r[key] for r in rows]).reshape(n.size, config.draws)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[key] = [float(np.exp(np.mean(np.log(v)))) if np.all(np.isfinite(v)) else None for v in per_draw]
        if key.startswith("tau_mem"):
            slope, err = fit_slope(np.repeat(n, config.draws), per_draw.ravel())
            out["slope_" + key], out["slope_" + key + "_stderr"] = slope, err
            if slope is None:
                notes.append(f"slope of {key}: none, because fewer than two values of n have this reading.")
    return Result(out)


def scaling_summary(result: dict) -> dict:
    """The JSON summary: per n the timescales (geometric mean over the draws), the slopes with their standard
    errors, and every draw's readings (``draws``; with curves, its gap curve over ``tau``)."""
    rows = result["rows"]
    obj = {"n": [int(x) for x in result["n"]], "notes": result.get("notes", [])}
    for key in TIMESCALE_KEYS:
        if key in result:
            obj[key] = result[key]
    for key in [k for k in result if k.startswith("slope_")]:
        obj[key] = result[key]
    keep = ("n", "draw", "memorization_modes", "tau_mem_median", "tau_test_min", "bulks") + TIMESCALE_KEYS
    obj["draws"] = [{k: r[k] for k in keep if k in r} for r in rows]
    if "test_loss" in rows[0]:
        cfg = result["header"]["config"]
        obj["tau"] = cfg["tau"]
        for entry, r in zip(obj["draws"], rows):
            entry["generalization_gap"] = np.asarray(r["test_loss"]) - np.asarray(r["train_loss"])
    obj.update(config=result["header"]["config"], version=result["header"]["version"], seed=result["header"]["seed"])
    return obj


def save_scaling(result: dict, out_dir) -> dict:
    from pathlib import Path

    from ..results import staged_output, write_json

    names = {"summary": "timescales.json", "figure": "timescales.png"}
    with staged_output(out_dir) as stage:
        write_json(stage / names["summary"], dict(scaling_summary(result), header=result["header"]))
        render(plot_scaling, load_json(stage / names["summary"]), stage / names["figure"], dpi=110)
    return {k: str(Path(out_dir) / v) for k, v in names.items()}


def load_json(path) -> dict:
    import json
    return json.loads(open(path).read())


def plot_scaling(data, fig) -> None:
    """Left: tau_mem and tau_gen against n on log axes (every draw faint, the geometric means joined, the fitted
    lines of log tau_mem against log n).  Right, with curves: each n's generalization gap over tau divided by
    its final value, and against tau/tau_mem (the collapse)."""
    import matplotlib

    num = lambda xs: np.array([np.nan if x in (None, "inf", "nan") else x for x in xs], dtype=float)  # noqa: E731
    n = np.array(data["n"], dtype=float)
    draws = data["draws"]
    curves = "tau_mem_curves" in data
    fig.set_size_inches(15 if curves else 6.5, 4.5)
    axes = fig.subplots(1, 3 if curves else 1, squeeze=False)
    ax = axes[0, 0]
    series = [("tau_mem", "C3", "o-", r"$\tau_{mem}$ (spectrum: slowest memorization mode)"),
              ("tau_gen", "C0", "s-", r"$\tau_{gen}$ (spectrum: population cluster)")]
    if curves:
        series += [("tau_mem_curves", "C1", "o--", r"$\tau_{mem}$ (loss curves: half the final gap)"),
                   ("tau_gen_curves", "C2", "s--", r"$\tau_{gen}$ (loss curves: half the test-loss drop)")]
    for key, color, style, label in series:
        vals = num(data[key])
        slope = data.get("slope_" + key)
        if slope is not None:
            err = data.get("slope_" + key + "_stderr")
            label += f", slope {slope:.2f}" + (f" ± {err:.2g}" if err is not None else "")
        ax.plot(n, vals, style, color=color, label=label)
        ax.plot([r["n"] for r in draws], num([r.get(key) for r in draws]), ".", color=color, alpha=0.35)
        ok = np.isfinite(vals)
        if slope is not None and ok.sum() >= 2:
            c = np.polyfit(np.log(n[ok]), np.log(vals[ok]), 1)
            ax.plot(n, np.exp(np.polyval(c, np.log(n))), ":", color=color)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of training points n")
    ax.set_ylabel(r"training time $\tau$")
    cfg = data["config"]
    title = f"{cfg['model']}: d={cfg['d']}, psi_p={cfg['psi_p']:g}, {cfg.get('draws', 1)} draw(s) per n"
    if cfg["model"] == "time-integrated":
        title += f", Q {cfg.get('time_law', 'uniform')} on [{cfg['t_min']:g}, {cfg['t_max']:g}]"
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=7)
    if curves:
        tau = num(data["tau"])
        fin = np.isfinite(tau)
        for j, nv in enumerate(data["n"]):
            first = next(r for r in draws if r["n"] == nv)
            gap = num(first["generalization_gap"])
            g = gap / gap[-1]
            tm = data["tau_mem_curves"][j]
            axes[0, 1].plot(tau[fin], g[fin], color=matplotlib.colormaps["viridis"](j / max(1, len(n) - 1)), label=f"n={nv}")
            if tm:
                axes[0, 2].plot(tau[fin] / tm, g[fin], color=matplotlib.colormaps["viridis"](j / max(1, len(n) - 1)), label=f"n={nv}")
        for a, xl in [(axes[0, 1], r"$\tau$"), (axes[0, 2], r"$\tau/\tau_{mem}$")]:
            a.set_xscale("log")
            a.set_xlabel(xl)
            a.set_ylabel("generalization gap / final gap")
            a.axhline(0.5, color="k", lw=0.5, ls=":")
            a.legend(fontsize=7)
        axes[0, 1].set_title("gap builds up later for larger n", fontsize=8)
        axes[0, 2].set_title(r"collapse in $\tau/\tau_{mem}$ (first draw per n)", fontsize=8)
    fig.tight_layout()


# -- numerical spectrum of the time-integrated U ---------------------------------------------------------

def compute_numerical_spectrum(config: TimescalesConfig, quiet: bool = True) -> dict:
    """Eigenvalues of the time-integrated U at n = psi_n[0] d, its clusters, tau_gen and tau_mem (with
    config.curves, the memorization modes found by their eigenvectors and marked)."""
    log = messages("spectrum", quiet)
    n = int(round(config.psi_n[0] * config.d))
    row = spectrum_point(config, n, log)
    out = {"eigenvalues": row["eigenvalues"], "eigenvalues_summary": eigenvalues_summary(row["eigenvalues"]),
           "header": provenance(asdict(config), config.seed)}
    out.update({k: row[k] for k in ("bulks", "tau_gen", "tau_mem", "memorization_modes", "tau_mem_median",
                                    "memorization_mask") if k in row})
    return out


NUMERICAL_SUMMARY_KEYS = ("eigenvalues_summary", "bulks", "tau_gen", "tau_mem", "memorization_modes", "tau_mem_median")


def save_numerical_spectrum(result: dict, out_dir) -> dict:
    from pathlib import Path

    from ..results import staged_output, write_json, write_npz

    names = {"data": "spectrum.npz", "summary": "spectrum.json", "figure": "spectrum.png"}
    summary = {k: result[k] for k in NUMERICAL_SUMMARY_KEYS if k in result}
    summary.update(config=result["header"]["config"], version=result["header"]["version"], seed=result["header"]["seed"])
    arrays = {"eigenvalues": result["eigenvalues"]}
    if "memorization_mask" in result:
        arrays["memorization_mask"] = np.asarray(result["memorization_mask"], dtype=bool)
    with staged_output(out_dir) as stage:
        write_npz(stage / names["data"], arrays, dict(result["header"], summary=summary))
        write_json(stage / names["summary"], summary)
        render(_plot_numerical, load_result(stage / names["data"]), stage / names["figure"])
    return {k: str(Path(out_dir) / v) for k, v in names.items()}


def _plot_numerical(data, fig) -> None:
    import matplotlib

    from ..results import read_npz

    arrays, header = data.arrays, data.header
    ev = arrays["eigenvalues"]
    ev = ev[ev > 0]
    s = header["summary"]
    fig.set_size_inches(7, 4.2)
    ax = fig.subplots()
    bins = np.geomspace(ev.min() * 0.95, ev.max() * 1.05, 100)
    ax.hist(ev, bins=bins, color="C1", label="all eigenvalues")
    if "memorization_mask" in arrays:
        mask = arrays["memorization_mask"][arrays["eigenvalues"] > 0]
        ax.hist(ev[mask], bins=bins, color="C3", label=f"memorization modes ({int(mask.sum())}: "
                r"$\lambda > q^T \tilde U q$)")
        ax.legend(fontsize=8)
    for b in s["bulks"]:
        ax.axvspan(b["left"], b["right"], color="C0", alpha=0.1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"eigenvalue $\lambda$ of the time-integrated U")
    ax.set_ylabel("count")
    cfg = s["config"]
    ax.set_title(f"time-integrated, d={cfg['d']}, psi_p={cfg['psi_p']:g}, psi_n={cfg['psi_n'][0]:g}: "
                 f"tau_gen={s['tau_gen']:.3g}, tau_mem={(s['tau_mem'] or float('nan')):.3g}", fontsize=9)
    fig.tight_layout()


EXPERIMENT = register(
    "timescales", TimescalesConfig, compute_scaling, plot=plot_scaling, stem="timescales", summary=scaling_summary,
    command=True, saver=save_scaling,
    help="tau_gen and tau_mem against n (tau_mem grows like n, tau_gen flat).",
    long_description="Timescales from the spectrum of U and from the test-loss curves over a range of n (psi_n d), "
    "with the fitted slope of log tau_mem against log n.")


# -- the n-scaling of tau_mem from both readings on any model (docs/theory.md §7.1) ----------------------------

#: "time-integrated-equivalent": the multi-time Gaussian equivalent (rfdm.multitime) of the time-integrated model
SCALING_MODELS = ("per-time", "time-integrated", "time-integrated-equivalent")


def scaling_point(model: str, d: int, psi_p: float, n: int, draw: int = 0, seed: int = 0, t: float = 0.1,
                  activation: str = "tanh", share: float = 0.5, tau=None, **options) -> dict:
    """One draw of (W, X, b) at (d, p = psi_p d, n) for the per-time model at time t, the time-integrated
    model (``options``: the fields of :class:`TimeIntegratedOptions`) or its multi-time Gaussian equivalent
    (rfdm.multitime; Omega drawn from the b generator after b), Gaussian data N(0, I_d): tau_mem and
    tau_gen from the gap shares (:func:`gap_share_timescales`) and from the loss curves
    (:func:`timescales_from_curves` on ``tau``, default 10^-2..10^9, 12 points per decade).  Draw k uses the
    children 3k..3k+2 of SeedSequence([seed, n]) (as ``rfdm timescales``)."""
    if model not in SCALING_MODELS:
        raise InvalidParameterError(f"model must be one of {', '.join(SCALING_MODELS)}, got {model!r}.")
    
    d, n = check_positive_int("d", d), check_positive_int("n", n)
    p = int(round(check_positive_float("psi_p", psi_p) * d))
    children = np.random.SeedSequence([int(seed), n]).spawn(3 * (draw + 1))[3 * draw:]
    rng_w, rng_x, rng_b = (np.random.default_rng(s) for s in children)
    law = GaussianData(d)
    features = RandomFeatures.sample(d, p, activation, rng_w)
    X = law.sample(n, rng_x)
    if model == "per-time":
        stats, pop = noise_averaged_statistics(features, X, t), population_statistics(features, law, t)
    else:
        opts = TimeIntegratedOptions(**options)
        opts.check_time_integrated()
        m = opts.sample_model(features, rng_b, sigma_x2=1.0)
        if model == "time-integrated":
            stats, pop = m.training_statistics(X), m.population_statistics(law)
        else:
            from ..multitime import equivalent_statistics

            stats, pop = equivalent_statistics(m, X, rng_b)
    flow = GradientFlow(stats)
    flow.add_quadratic_form("test_loss", pop.U, pop.V, pop.kappa, pop.loss_constant)
    tau = np.logspace(-2, 9, 133) if tau is None else np.asarray(tau, dtype=float)
    cur = timescales_from_curves(tau, flow.train_loss(tau), flow.test_loss(tau))
    gs = gap_share_timescales(flow, share)
    return {"n": n, "p": p, "draw": draw, "tau_mem_spectrum": gs["tau_mem"], "tau_gen_spectrum": gs["tau_gen"],
            "tau_mem_curves": cur["tau_mem"], "tau_gen_curves": cur["tau_gen"],
            "memorization_modes": gs["memorization_modes"], "eigenvalues": flow.eigenvalues}


def timescale_scaling(model: str, d: int, psi_p: float, psi_n, draws: int = 3, seed: int = 0,
                      log=None, **kwargs) -> dict:
    """tau_mem and tau_gen against n = psi_n d from both readings, ``draws`` draws per n
    (:func:`scaling_point`), and the slopes of log tau against log n over all draws with standard errors
    (``slope_<key>``, ``slope_<key>_stderr``).  ``slope_ratio`` is the slope of log(tau_mem spectrum /
    tau_mem curves), paired draw by draw: the two readings share the n-scaling when it is 0 within its
    error (the pairing removes the draw-to-draw scatter common to both)."""
    draws = check_positive_int("number of draws", draws)
    psi_n = [check_positive_float("psi_n", x) for x in np.atleast_1d(psi_n)]
    rows = []
    for psi in psi_n:
        n = int(round(psi * d))
        for k in range(draws):
            if log is not None:
                log(f"{model}: d={d}, psi_p={psi_p:g}, n={n}, draw {k}")
            rows.append(scaling_point(model, d, psi_p, n, k, seed, **kwargs))
    n = np.array([r["n"] for r in rows], dtype=float)
    out = {"model": model, "d": d, "psi_p": psi_p, "psi_n": psi_n, "draws": draws, "rows": rows}
    get = lambda key: np.array([np.nan if r[key] is None else r[key] for r in rows], dtype=float)  # noqa: E731
    for key in ("tau_mem_spectrum", "tau_mem_curves", "tau_gen_spectrum", "tau_gen_curves"):
        out["slope_" + key], out["slope_" + key + "_stderr"] = fit_slope(n, get(key))
    out["slope_ratio"], out["slope_ratio_stderr"] = fit_slope(n, get("tau_mem_spectrum") / get("tau_mem_curves"))
    if model == "per-time":
        # the paper's reading: tau_mem = psi_p/(Delta_t lambda_min(rho_1)) from the spectral theory
        from ..spectrum import SpectralProblem, gep_coefficients

        t = kwargs.get("t", 0.1)
        coeffs = gep_coefficients(kwargs.get("activation", "tanh"), t)
        theory = []
        for psi in psi_n:
            ts = SpectralProblem(coeffs, psi_p, psi).solve(300).timescales()
            theory.append(np.nan if ts["tau_mem"] is None else ts["tau_mem"])
        out["tau_mem_theory"] = theory
        out["slope_tau_mem_theory"], _ = fit_slope(np.array(psi_n) * d, np.array(theory))
    return out
