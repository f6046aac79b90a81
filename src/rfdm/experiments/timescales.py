"""Numerical spectra of U and the scaling of the training timescales with n (docs/theory.md §4, §7).

`rfdm spectrum --model time-integrated`: the time integral breaks the Gaussian equivalence, so the spectrum of
the time-integrated U is computed numerically (exact noise average, quadrature in t) at dimension d, its
bulks found as clusters separated by gaps in log lambda, and tau_gen, tau_mem read from them.
`rfdm timescales`: tau_gen and tau_mem against n = psi_n d (per-time or time-integrated model), from the
spectrum and from the test-loss curves, with the fitted slope of log tau_mem against log n (theory: 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..data import GaussianData
from ..dynamics import GradientFlow
from ..errors import InvalidParameterError, check_positive_float, check_positive_int
from ..progress import messages, progress
from ..protocol import register, Integer, POSITIVE, POSITIVE_INT, FloatList, OneOf, Tau, WholeTimes, param
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


def _floats(values) -> np.ndarray:
    """``values`` as a float array, None (a reading that is absent) as NaN."""
    return np.array([np.nan if v is None else v for v in values], dtype=float)


def _draw(config, n: int, draw: int = 0):
    """(features, X, law, the generator of b) of draw ``draw`` at n: the children 3k..3k+2 of
    SeedSequence([seed, n]) for W, X and b."""
    children = np.random.SeedSequence([config.seed, n]).spawn(3 * (draw + 1))[3 * draw:]
    rng_w, rng_x, rng_b = (np.random.default_rng(s) for s in children)
    law = GaussianData(config.d)
    features = RandomFeatures.sample(config.d, int(round(config.psi_p * config.d)), config.activation, rng_w)
    return features, law.sample(n, rng_x), law, rng_b


def spectrum_point(config, n: int, log=lambda m: None, draw: int = 0) -> dict:
    """Eigenvalues of U at (d, p, n) for one draw of (W, X, b), its bulks and timescales; with config.curves,
    also the timescales read from the loss curves.  Draw k uses the children 3k..3k+2 of
    SeedSequence([seed, n]), so draw 0 does not depend on how many draws are asked for.  With the
    population statistics (config.curves), the memorization modes are identified by their eigenvectors
    (rfdm.time_integrated.memorization_modes); without, by gaps in the spectrum."""
    d = config.d
    features, X, law, rng_b = _draw(config, n, draw)
    p = features.p
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
    draws, and for every reading the least-squares slope of log tau against log n over all draws with its
    standard error (``slope_<key>``, ``slope_<key>_stderr``; intervals: :func:`slope_interval`)."""
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
        per_draw = _floats(r[key] for r in rows).reshape(n.size, config.draws)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[key] = [float(np.exp(np.mean(np.log(v)))) if np.all(np.isfinite(v)) else None for v in per_draw]
        slope, err = fit_slope(np.repeat(n, config.draws), per_draw.ravel())
        out["slope_" + key], out["slope_" + key + "_stderr"] = slope, err
        if slope is None and key.startswith("tau_mem"):
            notes.append(f"slope of {key}: none, because fewer than two values of n have this reading.")
    return Result(out)


#: two-sided level of the slope intervals (Student t with m - 2 degrees of freedom over the m points)
SLOPE_LEVEL = 0.95


def slope_interval(n, tau, level: float = SLOPE_LEVEL) -> dict:
    """The least-squares slope of log tau against log n over all finite positive points (:func:`fit_slope`,
    every draw a point) with its two-sided ``level`` interval slope +- t_{(1+level)/2, m-2} SE (Student t,
    m the number of points used; the draws are independent, so the residuals are): {"slope", "stderr",
    "dof", "halfwidth", "interval"}.  With fewer than two distinct n: slope None; with fewer than three
    points: halfwidth and interval None."""
    from scipy.stats import t as student_t

    if not 0.0 < float(level) < 1.0:
        raise InvalidParameterError(f"the interval level must lie strictly between 0 and 1, got {level!r}.")
    n, tau = np.asarray(n, dtype=float), _floats(tau)
    if n.shape != tau.shape:
        raise InvalidParameterError(f"n and tau must have the same length, got {n.size} and {tau.size}.")
    slope, err = fit_slope(n, tau)
    m = int(np.sum(np.isfinite(tau) & (tau > 0)))
    out = {"slope": slope, "stderr": err, "dof": m - 2, "halfwidth": None, "interval": None}
    if slope is not None and err is not None:
        h = float(student_t.ppf(0.5 + level / 2, m - 2)) * err
        out.update(halfwidth=h, interval=(slope - h, slope + h))
    return out


def slopes_agree(a: dict, b: dict) -> dict:
    """Do two slopes (:func:`slope_interval` outputs) agree within their joint interval
    |s_a - s_b| <= sqrt(h_a^2 + h_b^2) (h the half-widths)?  {"difference", "halfwidth", "agree"} (agree None
    when either interval is missing).  For two readings of the same draws the errors are positively
    correlated, so this unpaired interval is conservative."""
    if a["slope"] is None or b["slope"] is None:
        return {"difference": None, "halfwidth": None, "agree": None}
    diff = a["slope"] - b["slope"]
    if a["halfwidth"] is None or b["halfwidth"] is None:
        return {"difference": diff, "halfwidth": None, "agree": None}
    h = math.hypot(a["halfwidth"], b["halfwidth"])
    return {"difference": diff, "halfwidth": h, "agree": bool(abs(diff) <= h)}


def per_time_theory_slopes(psi_p: float, psi_n, activation: str = "tanh", ts=(0.01, 0.1, 1.0),
                           n_points: int = 300) -> dict:
    """The per-time spectral theory's n-slope at finite psi_p/psi_n, the reference for the time-integrated
    slope: at each t in ``ts``, tau_mem = psi_p/(Delta_t lambda_left(rho_1)) ([B25] Sec. 3.2, Thm. 3.2;
    :meth:`rfdm.spectrum.SpectrumResult.timescales`) at every psi_n, and the least-squares slope of log tau_mem
    against log psi_n ({t: slope or None}).  The theorem's slope 1 is its limit psi_p >> psi_n."""
    from ..spectrum import SpectralProblem, gep_coefficients

    out = {}
    for t in ts:
        coeffs = gep_coefficients(activation, float(t))
        taus = []
        for psi in psi_n:
            ts_ = SpectralProblem(coeffs, float(psi_p), float(psi)).solve(n_points).timescales()
            taus.append(np.nan if ts_["tau_mem"] is None else ts_["tau_mem"])
        out[float(t)] = fit_slope(np.asarray(psi_n, dtype=float), np.asarray(taus))[0]
    return out


def per_time_tau_gen_ratio(psi_p: float, psi_n, activation: str = "tanh", ts=(0.01, 0.1, 1.0)) -> dict:
    """How much the per-time tau_gen moves over the psi_n range beyond [B25] Thm. 3.2's leading order: with the
    population mean's first correction, tau_gen = psi_p/(Delta_t (psi_p mu_1^2 + psi_p v_t^2/psi_n))
    (:func:`rfdm.spectrum.leading_order`, ``tau_gen_corrected``), the ratio tau_gen(largest psi_n) /
    tau_gen(smallest psi_n) at each t in ``ts`` ({t: ratio}; 1 at leading order)."""
    from ..spectrum import gep_coefficients, leading_order

    lo, hi = min(psi_n), max(psi_n)
    out = {}
    for t in ts:
        c = gep_coefficients(activation, float(t))
        out[float(t)] = (leading_order(c, float(psi_p), float(hi))["tau_gen_corrected"]
                         / leading_order(c, float(psi_p), float(lo))["tau_gen_corrected"])
    return out


def _per_point(result: dict, key: str):
    rows = result["rows"]
    return np.array([r["n"] for r in rows], dtype=float), _floats(r.get(key) for r in rows)


def scaling_claim(result: dict, theory_slopes: dict | None = None, level: float = SLOPE_LEVEL,
                  theory_tau_gen_ratio: dict | None = None):
    """The verdict of the time-integrated scaling figure (a :class:`rfdm.published.claims.FigureClaim`).

    Checked (each slope of log tau against log n over all draws, with its ``level`` Student-t interval,
    :func:`slope_interval`):

    * the two readings of tau_mem's n-scaling agree: the difference of the slopes (spectrum by the modes
      carrying half the gap, docs/theory.md §7.1, minus loss curves) is 0 within the joint interval
      (:func:`slopes_agree`);
    * tau_gen is flat in n: the slope of the paper's tau_gen (population cluster) is 0 within its interval,
      and the gap-share tau_gen's slope is compared with it (an internal check: named in the reason when
      they differ, without changing the verdict);
    * tau_mem grows like n: the loss-curve slope is 1 ([B25] Thm. 3.2, per-time model, psi_p >> psi_n)
      within its interval; when it is not, the reason quotes the per-time theory's slope at the same psi
      (``theory_slopes``, :func:`per_time_theory_slopes`).  A tau_gen drift is explained likewise by the
      per-time tau_gen's first correction (``theory_tau_gen_ratio``, :func:`per_time_tau_gen_ratio`).

    Shown, not checked: the slowest-memorization-mode reading (biased, docs/theory.md §7.1), tau_gen from
    the curves, the paired slope of log(gap-share / curves) and the
    per-time theory's slopes."""
    from ..published.claims import Check, FigureClaim, Tolerance, internal_disagreement

    cfg = result["header"]["config"]
    if "tau_mem_curves" not in result["rows"][0] or "tau_mem_gap_share" not in result["rows"][0]:
        raise InvalidParameterError("the scaling verdict needs the loss-curve and gap-share readings (curves on).")
    pct = f"{100 * level:g} %"
    sl = {k: slope_interval(*_per_point(result, k), level=level)
          for k in ("tau_mem_curves", "tau_mem_gap_share", "tau_mem", "tau_gen_gap_share", "tau_gen_curves", "tau_gen")
          if k in result["rows"][0]}
    ratio = np.asarray(cfg["psi_p"], dtype=float) / np.asarray(cfg["psi_n"], dtype=float)
    claim = FigureClaim("time-integrated-timescales",
                        "tau_mem grows like n (both readings, the same slope), tau_gen is flat in n",
                        {"model": "per-time", "psi_p/psi_n": ">> 1", "d": "-> infinity"},
                        {"model": cfg["model"], "psi_p/psi_n": f"{ratio.min():g} to {ratio.max():g}", "d": cfg["d"],
                         "psi_p": cfg["psi_p"], "psi_n": list(cfg["psi_n"]), "draws": cfg["draws"]})

    def tol(h, what):
        if h is None:
            return Tolerance(absolute=0.0, reason=f"no interval: fewer than three {what}."), False
        return Tolerance(absolute=h, reason=f"{pct} interval: slope +- t_(m-2) times its least-squares standard "
                         f"error over all draws ({what})"), True

    # 1. the two readings agree
    a, b = sl["tau_mem_gap_share"], sl["tau_mem_curves"]
    ag = slopes_agree(a, b)
    paired = fit_slope(*_ratio_points(result, "tau_mem_gap_share", "tau_mem_curves"))
    t_, ok = tol(ag["halfwidth"], "points per reading; joint half-width sqrt(h_spectrum^2 + h_curves^2), "
                 "conservative since both readings use the same draws")
    claim.add(Check(
        "slope of log tau_mem vs log n: spectrum (gap share) minus loss curves", 0.0,
        "claim (docs/theory.md §7.1): both readings of tau_mem have the same n-scaling",
        ag["difference"], t_, converged=ok and ag["difference"] is not None, kind="claim",
        difference_reason=(f"the spectral reading replaces each mode's relaxation by a step at its time tau_k, so "
                           f"its ratio to the curves' tau_mem follows the gap's relaxation profile, which can change "
                           f"with n (paired slope of log(spectrum/curves): {_fmt(paired[0])} +- {_fmt(paired[1])} SE)"),
        note=("" if ok else "fewer than three finite points in a reading: no interval.")))
    # 2. tau_gen flat: the paper's tau_gen = psi_p/(kappa lambda_mean) of the population cluster ([B25] Sec. 3.2)
    g = sl["tau_gen"]
    t_, ok = tol(g["halfwidth"], "points")
    n_pts, tg = _per_point(result, "tau_gen")
    if ok and theory_tau_gen_ratio:
        # "flat" is Thm. 3.2's leading order: allow the slope that the per-time first correction psi_p v_t^2/psi_n
        # produces over this n range (the largest over the t of theory_tau_gen_ratio)
        span = math.log(float(np.max(n_pts)) / float(np.min(n_pts)))
        corr = max(abs(math.log(v)) for v in theory_tau_gen_ratio.values()) / span if span > 0 else 0.0
        t_ = Tolerance(absolute=g["halfwidth"] + corr,
                       reason=f"{pct} interval of the slope ({g['halfwidth']:.2g}) plus {corr:.2g}, the slope of "
                       f"the per-time tau_gen's first correction psi_p v_t^2/psi_n over this n range (Thm. 3.2's "
                       f"'flat' is the leading order)")
    tm = _per_point(result, "tau_mem_curves")[1]
    claim.add(Check(
        "slope of log tau_gen vs log n (spectrum, population cluster)", 0.0,
        "[B25] Sec. 3.2 / the talk: tau_gen = psi_p/(Delta_t lambda_mean(rho_2)) does not depend on n",
        g["slope"], t_, converged=ok,
        difference_reason=(f"tau_gen changes by a factor {_span(n_pts, tg)} over the n range, against "
                           f"{_span(n_pts, tm)} for tau_mem (curves): Thm. 3.2's tau_gen = 1/(Delta_t mu_1^2) is "
                           f"the leading order, and the population mean's next term psi_p v_t^2/psi_n falls with n"
                           + ("; with it the per-time tau_gen rises by a factor " + ", ".join(
                               f"{v:.3f} at t = {k:.3g}" for k, v in theory_tau_gen_ratio.items())
                              + " over the same psi_n range" if theory_tau_gen_ratio else "")),
        note="" if ok else "fewer than three finite points: no interval."))
    # the gap-share reading of tau_gen against it (an internal comparison: reported, never silent)
    gs = sl.get("tau_gen_gap_share")
    ag_gen = slopes_agree(gs, g) if gs is not None else {"halfwidth": None}
    if ag_gen["halfwidth"] is not None:
        claim.add(internal_disagreement(
            "slope of log tau_gen vs log n", ("spectrum, gap share", gs["slope"]),
            ("spectrum, population cluster", g["slope"]),
            Tolerance(absolute=ag_gen["halfwidth"], reason=f"{pct} joint interval sqrt(h_1^2 + h_2^2) of the two slopes"),
            explanation=(f"the gap-share tau_gen (a factor {_span(n_pts, _per_point(result, 'tau_gen_gap_share')[1])} "
                         f"over the n range) is read off the step flow evaluated at the test-loss minimum tau*, "
                         f"which grows with n, so it inherits a drift that the population cluster does not have "
                         f"(docs/theory.md §7.1)")))
    # 3. tau_mem slope against the theory's 1
    t_, ok = tol(b["halfwidth"], "points")
    th = {k: v for k, v in (theory_slopes or {}).items() if v is not None}
    why = (f"Thm. 3.2's slope 1 is the limit psi_p >> psi_n; here psi_p/psi_n = {ratio.min():g} to {ratio.max():g}, "
           f"and the time-integrated model mixes all t ~ Q")
    if th:
        why += ("; the per-time spectral theory at the same psi_p, psi_n gives slope "
                + ", ".join(f"{v:.2f} at t = {k:.3g}" for k, v in th.items()) + ", not 1 either")
    claim.add(Check("slope of log tau_mem vs log n (loss curves)", 1.0,
                    "[B25] Thm. 3.2: tau_mem proportional to n for psi_p >> psi_n (per-time model)",
                    b["slope"], t_, converged=ok, difference_reason=why,
                    note="" if ok else "fewer than three finite points: no interval."))
    # shown, not checked
    info = {"tau_mem_gap_share": ("slope of log tau_mem vs log n (spectrum, gap share)", "the reading checked above"),
            "tau_mem": ("slope of log tau_mem vs log n (spectrum, slowest memorization mode)",
                        "biased (either way): a minimum over a noisy subset of modes, not the paper's lambda_min(rho_1) (docs/theory.md §7.1)"),
            "tau_gen_curves": ("slope of log tau_gen vs log n (loss curves, half the test-loss drop)",
                               "memorization shortens the descent it measures (docs/theory.md §7.1)"),
            "tau_gen_gap_share": ("slope of log tau_gen vs log n (spectrum, gap share)",
                                  "compared with the population cluster above")}
    for key, (name, text) in info.items():
        if key in sl and sl[key]["slope"] is not None:  # (a missing shown value must not read "not converged")
            s_ = sl[key]
            text += f"; {pct} interval [{s_['interval'][0]:.3g}, {s_['interval'][1]:.3g}]" if s_["interval"] else ""
            # the explanation goes in the source column of the report (shown there beside the value)
            claim.add(Check(name, None, "shown, not checked: " + text, s_["slope"], kind="shown", note=text))
    if paired[0] is not None:
        text = f"draw by draw; standard error {_fmt(paired[1])}"
        claim.add(Check("paired slope of log(tau_mem gap share / tau_mem curves)", None, "shown, not checked: " + text,
                        paired[0], kind="shown", note=text))
    for t, v in th.items():
        text = "psi_p/(Delta_t lambda_left(rho_1)) at the same psi_p, psi_n ([B25] Sec. 3.2)"
        claim.add(Check(f"per-time spectral theory: slope of tau_mem at t = {t:.3g}", None,
                        "shown, the finite-psi reference: " + text, v, kind="shown", note=text))
    return claim, sl


def _ratio_points(result, num, den):
    n, a = _per_point(result, num)
    _, b = _per_point(result, den)
    with np.errstate(invalid="ignore", divide="ignore"):
        return n, a / b


def _fmt(x) -> str:
    return "none" if x is None else f"{x:.3g}"


def _span(n, tau) -> str:
    """max/min of the per-n geometric means of tau (as text)."""
    ok = np.isfinite(tau) & (tau > 0)
    means = [np.exp(np.mean(np.log(tau[ok & (n == v)]))) for v in np.unique(n[ok])]
    return "none" if len(means) < 2 else f"{means[-1] / means[0]:.3g} (largest n / smallest n)"


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
    if "tau_mem_gap_share" in data:
        series[0] = ("tau_mem", "C3", "o-", r"$\tau_{mem}$ (spectrum: slowest mode; biased)")
        series += [("tau_mem_gap_share", "C4", "^-", r"$\tau_{mem}$ (spectrum: modes carrying half the gap)"),
                   ("tau_gen_gap_share", "C5", "v-", r"$\tau_{gen}$ (spectrum: gap shares)")]
    for key, color, style, label in series:
        vals = num(data[key])
        slope = data.get("slope_" + key)
        if slope is not None:
            iv = slope_interval([r["n"] for r in draws], num([r.get(key) for r in draws]))
            label += f", slope {slope:.2f}" + (f" ± {iv['halfwidth']:.2g} (95 %)" if iv["halfwidth"] else "")
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

@dataclass
class NumericalSpectrumConfig(TimescalesConfig):
    """`rfdm spectrum --model time-integrated`: the exact time-integrated U at n = psi_n[0] d, optionally beside
    the spectrum of its multi-time Gaussian equivalent from the self-consistent equations."""

    equivalent_spectrum: bool = param(False, "also solve the self-consistent equations of the multi-time Gaussian "
                                      "equivalent (docs/theory.md §7.2) for the same W and b: its CDF and density "
                                      "beside the exact eigenvalues, and their KS distance")
    equivalent_points: int = param(300, "grid points of the equivalent spectrum (log-spaced)",
                                   check=Integer(20, 100_000), label="equivalent points")
    exact: bool = param(True, "with --equivalent-spectrum: also the exact time-integrated U (--no-exact: the "
                        "equivalent's spectrum alone, at a d where the exact U is out of reach)")


def compute_numerical_spectrum(config: TimescalesConfig, quiet: bool = True) -> dict:
    """Eigenvalues of the time-integrated U at n = psi_n[0] d, its clusters, tau_gen and tau_mem (with
    config.curves, the memorization modes found by their eigenvectors and marked); with
    config.equivalent_spectrum, the multi-time equivalent's spectrum (rfdm.multitime.EquivalentSpectrum) for the
    same draw of W and b, and its KS distance to the exact eigenvalues."""
    log = messages("spectrum", quiet)
    n = int(round(config.psi_n[0] * config.d))
    out = {"header": provenance(asdict(config), config.seed)}
    exact = getattr(config, "exact", True)
    if exact:
        row = spectrum_point(config, n, log)
        out.update(eigenvalues=row["eigenvalues"], eigenvalues_summary=eigenvalues_summary(row["eigenvalues"]))
        out.update({k: row[k] for k in ("bulks", "tau_gen", "tau_mem", "memorization_modes", "tau_mem_median",
                                        "memorization_mask") if k in row})
    if getattr(config, "equivalent_spectrum", False):
        import time

        from ..multitime import EquivalentSpectrum, multitime_coefficients

        features, _, _, rng_b = _draw(config, n)
        model = config.sample_model(features, rng_b, sigma_x2=1.0)
        log(f"self-consistent equations of the multi-time equivalent ({config.equivalent_points} points)")
        start = time.process_time()
        problem = EquivalentSpectrum.from_coefficients(multitime_coefficients(model, sigma_x2=1.0), config.d, n)
        res = problem.solve(config.equivalent_points)
        out["equivalent_arrays"] = {"lam": res.lam, "cdf": res.cdf, "density": res.density}
        out["equivalent_spectrum"] = {"ks_distance": res.ks_distance(row["eigenvalues"]) if exact else None,
                                      "checks": res.checks,
                                      "mass": res.mass, "node_rank": int(problem.a.shape[1]),
                                      "noise_rank": int(problem.b.shape[1]), "points": int(res.lam.size),
                                      "cpu_s": time.process_time() - start}
    return out


NUMERICAL_SUMMARY_KEYS = ("eigenvalues_summary", "bulks", "tau_gen", "tau_mem", "memorization_modes", "tau_mem_median",
                          "equivalent_spectrum")


def save_numerical_spectrum(result: dict, out_dir) -> dict:
    from pathlib import Path

    from ..results import staged_output, write_json, write_npz

    names = {"data": "spectrum.npz", "summary": "spectrum.json", "figure": "spectrum.png"}
    summary = {k: result[k] for k in NUMERICAL_SUMMARY_KEYS if k in result}
    summary.update(config=result["header"]["config"], version=result["header"]["version"], seed=result["header"]["seed"])
    arrays = {"eigenvalues": result["eigenvalues"]} if "eigenvalues" in result else {}
    arrays.update({"equivalent_" + k: v for k, v in result.get("equivalent_arrays", {}).items()})
    if "memorization_mask" in result:
        arrays["memorization_mask"] = np.asarray(result["memorization_mask"], dtype=bool)
    with staged_output(out_dir) as stage:
        write_npz(stage / names["data"], arrays, dict(result["header"], summary=summary))
        write_json(stage / names["summary"], summary)
        render(_plot_numerical, load_result(stage / names["data"]), stage / names["figure"])
    return {k: str(Path(out_dir) / v) for k, v in names.items()}


def _plot_numerical(data, fig) -> None:
    arrays, header = data.arrays, data.header
    if "eigenvalues" not in arrays:
        return _plot_equivalent_alone(data, fig)
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
    if "equivalent_cdf" in arrays:
        # expected counts per bin of the equivalent: p (F(right) - F(left)), the CDF being exact at every point
        F = np.interp(bins, arrays["equivalent_lam"], arrays["equivalent_cdf"], left=0.0, right=1.0)
        ax.stairs(arrays["eigenvalues"].size * np.diff(F), bins, color="k", lw=1.2,
                  label=f"multi-time equivalent, self-consistent (KS {s['equivalent_spectrum']['ks_distance']:.3f})")
        ax.set_ylim(bottom=0.1)  # expected counts below 0.1 per bin are the CDF's quadrature error, not mass
    if "memorization_mask" in arrays or "equivalent_cdf" in arrays:
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


def _plot_equivalent_alone(data, fig) -> None:
    """--no-exact: the equivalent's spectrum as the expected count of eigenvalues per log bin, p (F(b') - F(b))."""
    arrays, s = data.arrays, data.header["summary"]
    cfg = s["config"]
    lam, F = arrays["equivalent_lam"], arrays["equivalent_cdf"]
    p = int(round(cfg["psi_p"] * cfg["d"]))
    bins = np.geomspace(lam[0], lam[-1], 100)
    fig.set_size_inches(7, 4.2)
    ax = fig.subplots()
    ax.stairs(p * np.diff(np.interp(bins, lam, F)), bins, color="k", lw=1.2,
              label="multi-time equivalent, self-consistent")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.1)
    ax.set_xlabel(r"eigenvalue $\lambda$ of the time-integrated U (multi-time equivalent)")
    ax.set_ylabel("expected count per bin")
    ax.legend(fontsize=8)
    ax.set_title(f"multi-time equivalent, d={cfg['d']}, psi_p={cfg['psi_p']:g}, psi_n={cfg['psi_n'][0]:g} "
                 f"(p={p}): self-consistent spectrum", fontsize=9)
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
    def get(key):
        return _per_point(out, key)[1]

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
