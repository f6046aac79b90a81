"""Training curves of the per-time random-features score against tau (the `rfdm dynamics` command).

compute(): draws W and a Gaussian training set from one seed, computes the exact noise-averaged and
population statistics, and evaluates train loss, test loss, score error and generalization gap on a grid
of tau, either in closed form (method "exact") or by step-by-step training ("gd", "adam").
plot(): losses against tau on a log axis, with the mode timescales psi_p/(Delta_t lambda) below.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from ..activations import get_activation
from ..backend import resolve_device
from ..data import GaussianData
from ..dynamics import (GradientFlow, as_tau_array, loss_of_weights, max_stable_learning_rate,
                        score_error_of_weights, train_by_descent)
from ..errors import InvalidParameterError, check_positive_float, check_positive_int
from ..features import (PopulationStatistics, RandomFeatures, monte_carlo_statistics,
                        noise_averaged_statistics, population_statistics)
from ..results import provenance
from ..time_integrated import TimeIntegratedOptions

METHODS = ("exact", "gd", "adam")
MODELS = ("per-time", "time-integrated")
#: the default learning rate of gd/adam gives the first positive checkpoint at least this many steps
MIN_STEPS = 20


@dataclass
class DynamicsConfig(TimeIntegratedOptions):
    """Resolved configuration of a dynamics run (every field is recorded with the result)."""

    d: int = 32
    p: int = 512
    n: int = 128
    t: float = 0.01
    activation: str = "tanh"
    sigma_spectrum: tuple = (1.0,)
    sigma_weights: tuple | None = None
    seed: int = 0
    tau: tuple = field(default_factory=lambda: tuple(np.logspace(-1, 7, 161)) + (math.inf,))
    method: str = "exact"
    noise_draws: int | None = None
    learning_rate: float | None = None
    rtol: float = 1e-10
    model: str = "per-time"

    def __post_init__(self):
        self.d = check_positive_int("d", self.d)
        self.p = check_positive_int("p", self.p)
        self.n = check_positive_int("n", self.n)
        self.t = check_positive_float("t", self.t)
        get_activation(self.activation)
        if self.method not in METHODS:
            raise InvalidParameterError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}.")
        tau = as_tau_array(self.tau)
        if self.method != "exact" and not np.all(np.isfinite(tau)):
            raise InvalidParameterError(f"method {self.method!r} trains step by step and cannot reach tau = inf.")
        self.tau = tuple(float(x) for x in tau)
        if self.noise_draws is not None:
            self.noise_draws = check_positive_int("noise draws m", self.noise_draws)
        if self.learning_rate is not None:
            self.learning_rate = check_positive_float("learning rate", self.learning_rate)
        self.rtol = check_positive_float("rtol", self.rtol)
        if self.model not in MODELS:
            raise InvalidParameterError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}.")
        if self.model == "time-integrated":
            self.check_time_integrated()
            if self.noise_draws is not None:
                raise InvalidParameterError("finite noise draws are supported for the per-time model only.")
        self.seed = int(self.seed)
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
    if not quiet:
        print(f"[rfdm dynamics] {msg}", file=sys.stderr, flush=True)


def compute(config: DynamicsConfig, quiet: bool = True, device=None) -> dict:
    """Run the experiment; returns a dict of arrays plus ``header`` (config, version, seed, device) and
    ``info``.  ``device`` (:func:`rfdm.backend.resolve_device`): where the per-time statistics (exact or
    Monte Carlo), the eigendecomposition and the rotations of the closed form run; the time-integrated
    statistics and step-by-step training stay on NumPy."""
    bk = resolve_device(device)
    seeds = np.random.SeedSequence(config.seed).spawn(4)
    rng_w, rng_x, rng_noise = (np.random.default_rng(s) for s in seeds[:3])
    seeds_b = seeds[3]
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
    result = {k: np.asarray(v) for k, v in curves.items()}
    result["eigenvalues"] = eigenvalues
    result["timescales"] = timescales
    result["header"] = dict(provenance(config.as_dict(), config.seed), device=bk.describe())
    result["info"] = info
    return result


ARRAY_KEYS = ("tau", "train_loss", "test_loss", "score_error", "generalization_gap", "eigenvalues", "timescales")


def save(result: dict, out_dir) -> dict:
    """Write dynamics.npz (arrays + header), dynamics.json (the --json summary + header) and
    dynamics.png (plotted from the saved file).  Returns the paths."""
    from ..results import save_dataset

    header = dict(result["header"], info=result["info"])
    return save_dataset(out_dir, "dynamics", {k: result[k] for k in ARRAY_KEYS}, header, json_summary(result),
                        plot, load)


def load(path) -> dict:
    """Read a dynamics.npz back into the dict that :func:`plot` and :func:`json_summary` take."""
    from ..results import read_npz

    arrays, header = read_npz(path)
    return dict(arrays, header=header, info=header.get("info", {}))


def json_summary(result: dict) -> dict:
    """The `--json` object: tau, train_loss, test_loss, score_error (equal lengths), config, and more."""
    header = result["header"]
    finite = result["timescales"][np.isfinite(result["timescales"])]
    return {"tau": result["tau"], "train_loss": result["train_loss"], "test_loss": result["test_loss"],
            "score_error": result["score_error"], "generalization_gap": result["generalization_gap"],
            "config": header["config"], "version": header["version"], "seed": header["seed"],
            "timescale_min": float(finite.min()) if finite.size else None,
            "timescale_max": float(finite.max()) if finite.size else None, "info": result["info"]}


def plot(result: dict, path) -> None:
    """Losses against tau (log axis), tau = inf as markers at the right edge; below, the histogram of the
    mode timescales psi_p/(Delta_t lambda_k) with the fastest and slowest marked."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tau = np.asarray(result["tau"], dtype=float)
    finite = np.isfinite(tau) & (tau > 0)
    ts = result["timescales"][np.isfinite(result["timescales"])]
    cfg = result["header"]["config"]
    fig, (ax, axh) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
