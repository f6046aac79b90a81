"""Training curves of the per-time random-features score against tau (the `rfdm dynamics` command).

compute(): draws W and a Gaussian training set from one seed, computes the exact noise-averaged and
population statistics, and evaluates train loss, test loss, score error and generalization gap on a grid
of tau, either in closed form (method "exact") or by step-by-step training ("gd", "adam").
plot(): losses against tau on a log axis, with the mode timescales psi_p/(Delta_t lambda) below.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..backend import resolve_device
from ..data import GaussianData
from ..dynamics import (GradientFlow, loss_of_weights, max_stable_learning_rate,
                        score_error_of_weights, train_by_descent)
from ..errors import InvalidParameterError
from ..features import (PopulationStatistics, RandomFeatures, monte_carlo_statistics,
                        noise_averaged_statistics, population_statistics)
from ..results import Result, provenance
from ..progress import messages
from ..protocol import POSITIVE, POSITIVE_INT, TOLERANCE, OneOf, SeedStreams, Tau, param, parse_tau, register
from .common import (TimeIntegratedFields, activation_field, d_field, seed_field, sigma_spectrum_field,
                     sigma_weights_field, t_field)

METHODS = ("exact", "gd", "adam", "asymptotic")
MODELS = ("per-time", "time-integrated")
#: the default learning rate of gd/adam gives the first positive checkpoint at least this many steps
MIN_STEPS = 20


#: training times when none are given: the closed form reaches tau = inf, step-by-step training does not
DEFAULT_TAU = {"exact": "1e-1:1e7:161,inf", "gd": "1:1e3:31", "adam": "1:1e3:31", "asymptotic": "1e-1:1e7:161,inf"}


@dataclass
class DynamicsConfig(TimeIntegratedFields):
    """Resolved configuration of a dynamics run (every field is recorded with the result).  p and n default
    to psi_p d and psi_n d with psi_p = 16, psi_n = 4."""

    d: int = d_field(32)
    p: int | None = param(None, "number of features (instead of --psi-p)", check=POSITIVE_INT, label="p (--p)",
                          ratio=("--psi-p", 16.0, "d"))
    n: int | None = param(None, "number of training points (instead of --psi-n)", check=POSITIVE_INT,
                          label="n (--n)", ratio=("--psi-n", 4.0, "d"))
    t: float = t_field()
    activation: str = activation_field()
    sigma_spectrum: tuple = sigma_spectrum_field("comma list of covariance eigenvalues, equal weights")
    sigma_weights: tuple | None = sigma_weights_field()
    seed: int = seed_field()
    tau: tuple | None = param(None, "training times: numbers, 'inf', START:STOP:NUM log ranges, comma-separated",
                              check=Tau(), parse="tau", label="tau", optional=True,
                              show_default="1e-1:1e7:161,inf; 1:1e3:31 for gd/adam")
    method: str = param("exact", "exact: closed form at finite d; gd/adam: step-by-step training with fresh noise; "
                        "asymptotic: the limit d -> inf at psi_p, psi_n by contour quadrature (docs/theory.md §8; "
                        "d then only sets the resolution of --psi-p/--psi-n)",
                        check=OneOf(METHODS), label="method", sweep=False)
    noise_draws: int | None = param(None, "finite-m setting: M noise draws per point, fixed (Monte Carlo U, V for "
                                    "exact; fixed draws for gd/adam); default: exact noise average / fresh noise",
                                    check=POSITIVE_INT, optional=True, metavar="M", label="--noise-draws",
                                    sweep=False)
    learning_rate: float | None = param(None, "learning rate for gd/adam (default: half the stability limit for "
                                        "gd, reduced so that the first checkpoint takes 20 steps)", check=POSITIVE,
                                        optional=True, label="learning rate (--lr)", flag="--lr", sweep=False)
    rtol: float = param(1e-10, "relative truncation tolerance of the Mehler series", check=TOLERANCE)
    model: str = param("per-time", "per-time: one network at time --t; time-integrated: one network for all "
                       "t ~ Q on [t-min, t-max] (its score error is reported at --t)", check=OneOf(MODELS),
                       label="model", sweep=False)

    def check(self):
        if self.tau is None:
            self.tau = parse_tau(DEFAULT_TAU[self.method])
        if self.method in ("gd", "adam") and not all(math.isfinite(x) for x in self.tau):
            raise InvalidParameterError(f"method {self.method!r} trains step by step and cannot reach tau = inf.")
        if self.method in ("exact", "asymptotic") and self.learning_rate is not None:
            raise InvalidParameterError(f"--lr (learning rate) is for --method gd or adam; the {self.method} method "
                                        "has none.")
        if self.method == "asymptotic" and (self.model != "per-time" or self.noise_draws is not None):
            raise InvalidParameterError("--method asymptotic is the d -> inf limit of the per-time model with the "
                                        "exact noise average (no --model time-integrated, no --noise-draws).")
        self.check_time_integrated()  # the window is checked even when the per-time model ignores it
        if self.model == "time-integrated":
            if self.noise_draws is not None:
                raise InvalidParameterError("finite noise draws are supported for the per-time model only.")
        self.law()  # validates the spectrum

    @property
    def psi_p(self) -> float:
        return self.p / self.d

    @property
    def psi_n(self) -> float:
        return self.n / self.d

    def law(self) -> GaussianData:
        return GaussianData(self.d, eigenvalues=self.sigma_spectrum, weights=self.sigma_weights)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["psi_p"], out["psi_n"] = self.psi_p, self.psi_n
        return out


def _log(msg: str, quiet: bool) -> None:
    messages("dynamics", quiet)(msg)


def compute(config: DynamicsConfig, quiet: bool = True, device=None) -> dict:
    """Run the experiment; returns a dict of arrays plus ``header`` (config, version, seed, device) and
    ``info``.  ``device`` (:func:`rfdm.backend.resolve_device`): where the per-time statistics (exact or
    Monte Carlo), the eigendecomposition and the rotations of the closed form run; the time-integrated
    statistics and step-by-step training stay on NumPy."""
    bk = resolve_device(device)
    if config.method == "asymptotic":
        return _compute_asymptotic(config, quiet, bk)
    streams = SeedStreams.ordered(config.seed, ("features", "train", "noise", "time_integrated_b"))
    rng_w, rng_x, rng_noise = (streams.generator(k) for k in ("features", "train", "noise"))
    seeds_b = streams["time_integrated_b"]
    law = config.law()
    features = RandomFeatures.sample(config.d, config.p, config.activation, rng_w)
    X = law.sample(config.n, rng_x)
    tau = np.asarray(config.tau)
    _log(f"statistics of the training set (d={config.d}, p={config.p}, n={config.n}, t={config.t:g}, "
         f"model {config.model})", quiet)
    model = None
    if config.model == "time-integrated":
        model = config.sample_model(features, np.random.default_rng(seeds_b), sigma_x2=law.spectrum.mean())
        stats = model.training_statistics(X, rtol=config.rtol)
        _log("population statistics", quiet)
        pop = model.population_statistics(law, rtol=config.rtol)
        Us, Vs, cs = model.score_error_form(law, config.t, rtol=config.rtol)
        score_pop = PopulationStatistics(U=Us, V=Vs, Y=Vs, score_norm=cs * config.d, t=config.t)
    else:
        if config.noise_draws is not None and config.method == "exact":
            stats = monte_carlo_statistics(features, X, config.t, config.noise_draws, rng_noise, device=bk)
        else:
            stats = noise_averaged_statistics(features, X, config.t, rtol=config.rtol, device=bk)
        _log("population statistics", quiet)
        pop = score_pop = population_statistics(features, law, config.t, rtol=config.rtol, device=bk)
    info = {"truncation_order": stats.info.get("truncation_order"),
            "relative_truncation_bound": stats.info.get("relative_truncation_bound"),
            "population_truncation_order": pop.info.get("truncation_order"),
            "t_quadrature_nodes": stats.info.get("t_nodes"),
            "t_quadrature_change": stats.info.get("t_quadrature_change"), "device": bk.name}
    if config.method == "exact":
        _log("eigendecomposition of U and closed-form curves", quiet)
        flow = GradientFlow(stats, overwrite=True, device=bk)
        flow.add_quadratic_form("test_loss", pop.U, pop.V, pop.kappa, pop.loss_constant)
        flow.add_quadratic_form("score_error", score_pop.U, score_pop.Y, 1.0, score_pop.score_norm / config.d)
        curves = flow.curves(tau)
        if model is None:
            curves["gap_by_piece"] = _gap_by_piece(flow, tau, config.n)
        eigenvalues, timescales = flow.eigenvalues, flow.timescales
    else:
        flow = GradientFlow(stats, device=bk)  # its spectrum gives the stability limit and the mode timescales
        lr = config.learning_rate
        if lr is None:
            # half the stability limit (Adam: a nominal 1e-3 d^2), reduced so that the first positive
            # checkpoint takes at least MIN_STEPS steps
            lr = (0.5 * max_stable_learning_rate(stats, float(flow.eigenvalues[-1])) if config.method == "gd"
                  else 1e-3 * config.d ** 2)
            positive = tau[tau > 0]
            if positive.size:
                lr = min(lr, positive.min() * config.d ** 2 / MIN_STEPS)
        info["learning_rate"] = lr
        _log(f"{config.method} with {'fresh' if config.noise_draws is None else config.noise_draws} noise draws, "
             f"learning rate {lr:.4g}", quiet)
        if model is None:
            tau_reached, weights, step_seconds = train_by_descent(
                features, X, config.t, tau, lr, rng_noise, optimizer=config.method, n_draws=config.noise_draws)
        else:
            tau_reached, weights, step_seconds = model.train_by_descent(X, tau, lr, rng_noise, optimizer=config.method)
        info["seconds_per_step"] = step_seconds
        curves = {"tau": tau_reached,
                  "train_loss": np.array([loss_of_weights(A, stats) for A in weights]),
                  "test_loss": np.array([loss_of_weights(A, pop) for A in weights]),
                  "score_error": np.array([score_error_of_weights(A, score_pop) for A in weights])}
        curves["generalization_gap"] = curves["test_loss"] - curves["train_loss"]
        eigenvalues, timescales = flow.eigenvalues, flow.timescales
    by_piece = curves.pop("gap_by_piece", None)
    result = {k: np.asarray(v) for k, v in curves.items()}
    if by_piece is not None:
        result["gap_by_piece"] = by_piece
    result["eigenvalues"] = eigenvalues
    result["timescales"] = timescales
    result["header"] = dict(provenance(config.as_dict(), config.seed), device=bk.describe())
    result["info"] = info
    return Result(result)


def _gap_by_piece(flow, tau, n: int) -> dict:
    """The generalization gap at every tau split over the spectral pieces of U (atom, the cluster of d
    eigenvalues above s_t^2, rho_1, rho_2; :meth:`rfdm.dynamics.GradientFlow.gap_by_piece`): per piece its
    contribution and its share of the gap, the number of modes and their eigenvalue range."""
    split = flow.gap_by_piece(tau, n=n)
    return {name: {"contribution": np.asarray(split["pieces"][name]), "fraction": np.asarray(split["fractions"][name]),
                   "modes": int(split["counts"][name]),
                   "eigenvalue_range": (None if split["eigenvalue_range"][name] is None
                                        else [float(x) for x in split["eigenvalue_range"][name]])}
            for name in split["pieces"]}


def _compute_asymptotic(config: DynamicsConfig, quiet: bool, bk) -> dict:
    """The curves in the limit d -> inf at the config's psi_p, psi_n (rfdm.asymptotics.AsymptoticCurves); the
    contour's node-doubling accuracy and convergence flag go to ``info`` (a warning when not converged)."""
    from ..asymptotics import AsymptoticCurves

    _log(f"d -> inf curves at psi_p={config.psi_p:g}, psi_n={config.psi_n:g}, t={config.t:g}", quiet)
    model = AsymptoticCurves(config.activation, config.t, config.psi_p, config.psi_n,
                             sigma_eigenvalues=config.sigma_spectrum, sigma_weights=config.sigma_weights)
    curves = model.curves(np.asarray(config.tau))
    info = {"accuracy": curves["accuracy"], "converged": curves["converged"], "contour": curves["contour"],
            "asymptotic": curves["config"], "device": "numpy"}
    if not curves["converged"]:
        messages("dynamics", False)(f"warning: the contour quadrature reached only {max(curves['accuracy'].values()):.2g} "
                                    "under node doubling (target 1e-8); the result is marked converged = false.")
    result = {k: np.asarray(curves[k], dtype=float) for k in ("tau", "train_loss", "test_loss", "score_error",
                                                               "generalization_gap")}
    result["eigenvalues"] = np.empty(0)
    result["timescales"] = np.empty(0)
    result["header"] = dict(provenance(config.as_dict(), config.seed), device=bk.describe())
    result["info"] = info
    return Result(result)


ARRAY_KEYS = ("tau", "train_loss", "test_loss", "score_error", "generalization_gap", "eigenvalues", "timescales")


def save(result: dict, out_dir) -> dict:
    """Write dynamics.npz (arrays + header), dynamics.json (the --json summary + header) and
    dynamics.png (plotted from the saved file).  Returns the paths."""
    from ..results import save_dataset

    header = dict(result["header"], info=result["info"])
    arrays = {k: result[k] for k in ARRAY_KEYS}
    for name, piece in result.get("gap_by_piece", {}).items():
        arrays[f"gap_piece_{name}"] = piece["contribution"]
    return save_dataset(out_dir, "dynamics", arrays, header, json_summary(result), plot, load)


def load(path) -> dict:
    """Read a dynamics.npz back into the dict that :func:`plot` and :func:`json_summary` take."""
    from ..results import read_npz

    arrays, header = read_npz(path)
    pieces = {k[len("gap_piece_"):]: {"contribution": arrays.pop(k)} for k in list(arrays) if k.startswith("gap_piece_")}
    out = dict(arrays, header=header, info=header.get("info", {}))
    if pieces:
        out["gap_by_piece"] = pieces
    return out


def json_summary(result: dict) -> dict:
    """The `--json` object: tau, train_loss, test_loss, score_error (equal lengths), config, and more."""
    header = result["header"]
    finite = result["timescales"][np.isfinite(result["timescales"])]
    return {"tau": result["tau"], "train_loss": result["train_loss"], "test_loss": result["test_loss"],
            "score_error": result["score_error"], "generalization_gap": result["generalization_gap"],
            "config": header["config"], "version": header["version"], "seed": header["seed"],
            "timescale_min": float(finite.min()) if finite.size else None,
            "timescale_max": float(finite.max()) if finite.size else None, "info": result["info"],
            **({"gap_by_piece": result["gap_by_piece"]} if "gap_by_piece" in result else {})}


def plot(result, fig) -> None:
    """Losses against tau (log axis), tau = inf as markers at the right edge; below, the histogram of the
    mode timescales psi_p/(Delta_t lambda_k) with the fastest and slowest marked."""

    tau = np.asarray(result["tau"], dtype=float)
    finite = np.isfinite(tau) & (tau > 0)
    ts = result["timescales"][np.isfinite(result["timescales"])]
    cfg = result["header"]["config"]
    pieces = result.get("gap_by_piece")
    fig.set_size_inches(7, 8.5 if pieces else 6)
    if pieces:
        (ax, axg, axh) = fig.subplots(3, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2, 1]})
        _plot_gap_by_piece(axg, tau, finite, pieces)
    else:
        (ax, axh) = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    styles = {"train_loss": ("train loss", "C0"), "test_loss": ("test loss", "C1"),
              "score_error": ("score error", "C2")}
    for key, (label, color) in styles.items():
        y = np.asarray(result[key], dtype=float)
        ax.plot(tau[finite], y[finite], color=color, label=label)
        if np.any(np.isinf(tau)):
            ax.axhline(y[np.isinf(tau)][0], color=color, ls=":", lw=1)
    marks = [(ts.min(), "fastest mode"), (ts.max(), "slowest mode")] if ts.size else []
    for tmark, name in marks:
        for a in (ax, axh):
            a.axvline(tmark, color="0.4", ls="--", lw=1)
        ax.text(tmark, 1.0, f" {name}", rotation=90, va="top", fontsize=8, transform=ax.get_xaxis_transform())
    ax.set_xscale("log")
    if not finite.any():
        ax.text(0.5, 0.5, "no tau > 0 to plot", transform=ax.transAxes, ha="center")
    else:
        ax.set_yscale("log")
    ax.set_ylabel("loss (per dimension)")
    model = cfg.get("model", "per-time")
    ax.set_title(f"{model}: {cfg['activation']}, d={cfg['d']}, psi_p={cfg['psi_p']:g}, psi_n={cfg['psi_n']:g}, "
                 f"t={cfg['t']:g}, method={cfg['method']}  (dotted: tau = inf)", fontsize=9)
    ax.legend()
    if ts.size:
        bins = np.logspace(np.log10(ts.min()) - 0.05, np.log10(ts.max()) + 0.05, 60)
        axh.hist(ts, bins=bins, color="0.5")
    axh.set_yscale("log")
    axh.set_xlabel(r"training time $\tau$")
    axh.set_ylabel("modes")
    lo = min(tau[finite].min() if finite.any() else 1.0, ts.min() if ts.size else 1.0)
    hi = max(tau[finite].max() if finite.any() else 1.0, ts.max() if ts.size else 1.0)
    axh.set_xlim(lo / 2, hi * 2)
    fig.tight_layout()


def _plot_gap_by_piece(ax, tau, finite, pieces) -> None:
    """The generalization gap's contribution of each spectral piece of U against tau (docs/theory.md §3)."""
    lowest = 0.0
    labels = {"atom": "atom at $s_t^2$", "cluster": "cluster of d modes", "rho_1": r"$\rho_1$", "rho_2": r"$\rho_2$"}
    for k, (name, piece) in enumerate(pieces.items()):
        y = np.asarray(piece["contribution"], dtype=float)
        ax.plot(tau[finite], y[finite], color=f"C{k + 3}", label=labels.get(name, name))
        lowest = min(lowest, float(np.min(y[finite], initial=0.0)))
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=1e-6)
    ax.set_ylim(bottom=lowest)
    ax.set_ylabel("gap by piece")
    ax.legend(fontsize=7)


def sweep_outputs(result: dict, config: DynamicsConfig) -> dict:
    """A sweep point of the per-time model under the closed-form flow: the curves at the point's tau (the last
    entry of config.tau is the appended tau = inf), their values at tau = inf, and tau_gen, tau_mem read off the
    spectrum of this training set's U (rfdm.time_integrated.timescales_from_spectrum with kappa = Delta_t)."""
    from ..diffusion import delta_t
    from ..time_integrated import timescales_from_spectrum

    k = len(config.tau) - 1
    curves = {"train_loss": result["train_loss"], "test_loss": result["test_loss"],
              "gap": result["generalization_gap"], "score_error": result["score_error"]}
    ts = timescales_from_spectrum(result["eigenvalues"], config.n, config.d, config.psi_p, float(delta_t(config.t)))
    finite = result["timescales"][np.isfinite(result["timescales"])]
    scalars = {f"{name}_inf": float(v[k]) for name, v in curves.items()}
    scalars.update(tau_gen=_num(ts["tau_gen"]), tau_mem=_num(ts["tau_mem"]),
                   timescale_min=float(finite.min()) if finite.size else math.nan,
                   timescale_max=float(finite.max()) if finite.size else math.nan)
    return {"scalars": scalars,
            "vectors": {name: ("tau", np.asarray(v[:k], dtype=np.float64)) for name, v in curves.items()},
            "coords": {"tau": np.asarray(result["tau"][:k], dtype=np.float64)},
            "info": dict(result["info"], library_config=config.as_dict())}


def _num(x) -> float:
    return math.nan if x is None else float(x)


EXPERIMENT = register(
    "dynamics", DynamicsConfig, compute, plot=plot, stem="dynamics", summary=json_summary, sweep=sweep_outputs,
    command=True, saver=save,
    help="train / test loss and score error of the random-features score against training time tau (closed "
    "form or step-by-step).",
    long_description="Closed-form gradient-flow curves of the per-time random-features score on Gaussian data "
    "(docs/theory.md §3), or gradient descent / Adam with fresh noise.",
    sweep_params=("d", "p", "n", "t", "activation", "tau", "sigma_spectrum", "rtol"),
    # tau = inf is always appended: the end point of the flow (the minimum-norm interpolator)
    sweep_overrides=lambda params: {"tau": tuple(params["tau"]) + (math.inf,)},
    description="per-time random-features score on Gaussian data, closed-form gradient flow (rfdm dynamics)",
    descriptions={"train_loss": "train loss at tau", "test_loss": "test loss at tau",
                  "gap": "generalization gap (test - train loss) at tau", "score_error": "score error at tau",
                  "train_loss_inf": "train loss at tau = inf", "test_loss_inf": "test loss at tau = inf",
                  "gap_inf": "generalization gap at tau = inf", "score_error_inf": "score error at tau = inf",
                  "tau_gen": "psi_p/(Delta_t lambda_mean) of the top cluster of eigenvalues of this U",
                  "tau_mem": "psi_p/(Delta_t lambda_left) of the memorization cluster of this U (NaN if n <= d)",
                  "timescale_min": "fastest mode timescale psi_p/(Delta_t lambda_max)",
                  "timescale_max": "slowest finite mode timescale"})
