"""Numerical spectra of U and the scaling of the training timescales with n (THEORY §3–§4).

`rfdm spectrum --model time-integrated`: the time integral breaks the Gaussian equivalence, so the spectrum of
the time-integrated U is computed numerically (exact noise average, quadrature in t) at dimension d, its
bulks found as clusters separated by gaps in log lambda, and tau_gen, tau_mem read from them.
`rfdm timescales`: tau_gen and tau_mem against n = psi_n d (per-time or time-integrated model), from the
spectrum and from the test-loss curves, with the fitted slope of log tau_mem against log n (theory: 1).
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field

import numpy as np

from ..activations import get_activation
from ..data import GaussianData
from ..dynamics import GradientFlow
from ..errors import InvalidParameterError, check_positive_float, check_positive_int
from ..features import RandomFeatures, noise_averaged_statistics, population_statistics
from ..results import provenance
from ..time_integrated import BETAS, TimeIntegratedModel, check_time_window, timescales_from_curves, \
    timescales_from_spectrum

MODELS = ("per-time", "time-integrated")


@dataclass
class TimescalesConfig:
    model: str = "time-integrated"
    d: int = 24
    psi_p: float = 16.0
    psi_n: tuple = (1.0, 2.0, 4.0)
    t: float = 0.01
    t_min: float = 0.01
    t_max: float = 2.0
    beta: str = "none"
    t_rtol: float = 1e-5
    t_nodes_max: int = 65
    activation: str = "tanh"
    seed: int = 0
    curves: bool = True
    tau: tuple = field(default_factory=lambda: tuple(np.logspace(-2, 8, 121)))

    def __post_init__(self):
        if self.model not in MODELS:
            raise InvalidParameterError(f"model must be one of {', '.join(MODELS)}, got {self.model!r}.")
        self.d = check_positive_int("d", self.d)
        self.psi_p = check_positive_float("psi_p", self.psi_p)
        self.psi_n = tuple(check_positive_float("psi_n", x) for x in np.atleast_1d(self.psi_n))
        self.t = check_positive_float("t", self.t)
        self.t_min, self.t_max = check_time_window(self.t_min, self.t_max)
        if self.beta not in BETAS:
            raise InvalidParameterError(f"beta must be one of {', '.join(BETAS)}, got {self.beta!r}.")
        self.t_rtol = check_positive_float("t quadrature tolerance", self.t_rtol)
        self.t_nodes_max = check_positive_int("number of t quadrature nodes", self.t_nodes_max)
        get_activation(self.activation)
        for name, psi in [("psi_p", self.psi_p)] + [("psi_n", x) for x in self.psi_n]:
            v = psi * self.d
            if abs(v - round(v)) > 1e-9 or round(v) < 1:
                raise InvalidParameterError(f"{name} * d = {v:g} must be a positive whole number.")
        self.seed = int(self.seed)


def _statistics(config, features, X, law, rng_b, with_population):
    """(training statistics, population-like forms or None, kappa) for the configured model."""
    if config.model == "per-time":
        stats = noise_averaged_statistics(features, X, config.t)
        pop = population_statistics(features, law, config.t) if with_population else None
        return stats, pop, None
    model = TimeIntegratedModel.sample(features, rng_b, t_min=config.t_min, t_max=config.t_max, beta=config.beta,
                                       sigma_x2=1.0, t_rtol=config.t_rtol, t_nodes_max=config.t_nodes_max)
    stats = model.training_statistics(X)
    pop = model.population_statistics(law) if with_population else None
    return stats, pop, model


def spectrum_point(config, n: int, log=lambda m: None) -> dict:
    """Eigenvalues of U at (d, p, n), its bulks and timescales; with config.curves, also the timescales read
    from the test-loss curve."""
    d = config.d
    p = int(round(config.psi_p * d))
    rng_w, rng_x, rng_b = (np.random.default_rng(s) for s in np.random.SeedSequence([config.seed, n]).spawn(3))
    law = GaussianData(d)
    features = RandomFeatures.sample(d, p, config.activation, rng_w)
    X = law.sample(n, rng_x)
    log(f"{config.model} statistics at d={d}, p={p}, n={n}")
    stats, pop, _ = _statistics(config, features, X, law, rng_b, config.curves)
    flow = GradientFlow(stats)
    ev = flow.eigenvalues
    out = {"n": n, "p": p, **timescales_from_spectrum(ev, n, d, config.psi_p, stats.kappa), "eigenvalues": ev}
    if config.curves:
        flow.add_quadratic_form("test_loss", pop.U, pop.V, pop.kappa, pop.loss_constant)
        L = flow.test_loss(np.array(config.tau))
        cur = timescales_from_curves(config.tau, flow.train_loss(np.array(config.tau)), L)
        out["tau_gen_curves"], out["tau_mem_curves"] = cur["tau_gen"], cur["tau_mem"]
        out["test_loss"] = L
    return out


def eigenvalues_summary(ev) -> dict:
    ev = np.asarray(ev, dtype=float)
    q = np.quantile(ev, [0.0, 0.01, 0.1, 0.5, 0.9, 0.99, 1.0])
    return {"count": int(ev.size), "min": float(q[0]), "q01": float(q[1]), "q10": float(q[2]),
            "median": float(q[3]), "q90": float(q[4]), "q99": float(q[5]), "max": float(q[6])}


def compute_scaling(config: TimescalesConfig, quiet: bool = True) -> dict:
    log = (lambda m: None) if quiet else (lambda m: print(f"[rfdm timescales] {m}", file=sys.stderr, flush=True))
    rows = [spectrum_point(config, int(round(psi * config.d)), log) for psi in config.psi_n]
    n = np.array([r["n"] for r in rows], dtype=float)
    tm = np.array([np.nan if r["tau_mem"] is None else r["tau_mem"] for r in rows])
    out = {"rows": rows, "n": n, "tau_gen": [r["tau_gen"] for r in rows], "tau_mem": [r["tau_mem"] for r in rows],
           "slope_tau_mem": _slope(n, tm), "header": provenance(asdict(config), config.seed)}
    if config.curves:
        out["slope_tau_mem_curves"] = _slope(n, np.array([np.nan if r["tau_mem_curves"] is None else r["tau_mem_curves"]
                                                          for r in rows]))
    return out


def _slope(n, tau) -> float | None:
    """Least-squares slope of log tau against log n over the finite values (None with fewer than two)."""
    ok = np.isfinite(tau) & (tau > 0)
    return float(np.polyfit(np.log(n[ok]), np.log(tau[ok]), 1)[0]) if ok.sum() >= 2 else None


def scaling_summary(result: dict) -> dict:
    rows = result["rows"]
    obj = {"n": [int(x) for x in result["n"]], "tau_gen": result["tau_gen"], "tau_mem": result["tau_mem"],
           "slope_tau_mem": result["slope_tau_mem"],
           "bulks": [r["bulks"] for r in rows]}
    if "tau_mem_curves" in rows[0]:
        obj["tau_gen_curves"] = [r["tau_gen_curves"] for r in rows]
        obj["tau_mem_curves"] = [r["tau_mem_curves"] for r in rows]
        obj["slope_tau_mem_curves"] = result.get("slope_tau_mem_curves")
    obj.update(config=result["header"]["config"], version=result["header"]["version"], seed=result["header"]["seed"])
    return obj


def save_scaling(result: dict, out_dir) -> dict:
    from pathlib import Path

    from ..results import staged_output, write_json

    names = {"summary": "timescales.json", "figure": "timescales.png"}
    with staged_output(out_dir) as stage:
        write_json(stage / names["summary"], dict(scaling_summary(result), header=result["header"]))
        plot_scaling(load_json(stage / names["summary"]), stage / names["figure"])
    return {k: str(Path(out_dir) / v) for k, v in names.items()}


def load_json(path) -> dict:
    import json
    return json.loads(open(path).read())


def plot_scaling(data: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    num = lambda xs: np.array([np.nan if x in (None, "inf", "nan") else x for x in xs], dtype=float)  # noqa: E731
    n = np.array(data["n"], dtype=float)
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    tm, tg = num(data["tau_mem"]), num(data["tau_gen"])
    ax.plot(n, tm, "o-", color="C3", label=r"$\tau_{mem}$ (spectrum)")
    ax.plot(n, tg, "s-", color="C0", label=r"$\tau_{gen}$ (spectrum)")
    if "tau_mem_curves" in data:
        sc = data.get("slope_tau_mem_curves")
        ax.plot(n, num(data["tau_mem_curves"]), "o--", color="C3", alpha=0.6,
                label=r"$\tau_{mem}$ (loss curves" + (f", slope {sc:.2f})" if sc is not None else ")"))
        ax.plot(n, num(data["tau_gen_curves"]), "s--", color="C0", alpha=0.6, label=r"$\tau_{gen}$ (test loss)")
    ok = np.isfinite(tm)
    if data["slope_tau_mem"] is not None and ok.sum() >= 2:
        c = np.polyfit(np.log(n[ok]), np.log(tm[ok]), 1)
        ax.plot(n, np.exp(np.polyval(c, np.log(n))), "k:", label=f"fit: slope {data['slope_tau_mem']:.2f}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of training points n")
    ax.set_ylabel(r"training time $\tau$")
    cfg = data["config"]
    ax.set_title(f"{cfg['model']}: d={cfg['d']}, psi_p={cfg['psi_p']:g}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# -- numerical spectrum of the time-integrated U ---------------------------------------------------------

def compute_numerical_spectrum(config: TimescalesConfig, quiet: bool = True) -> dict:
    log = (lambda m: None) if quiet else (lambda m: print(f"[rfdm spectrum] {m}", file=sys.stderr, flush=True))
    n = int(round(config.psi_n[0] * config.d))
    row = spectrum_point(config, n, log)
    return {"eigenvalues": row["eigenvalues"], "eigenvalues_summary": eigenvalues_summary(row["eigenvalues"]),
            "bulks": row["bulks"], "tau_gen": row["tau_gen"], "tau_mem": row["tau_mem"],
            "header": provenance(asdict(config), config.seed)}


def save_numerical_spectrum(result: dict, out_dir) -> dict:
    from pathlib import Path

    from ..results import staged_output, write_json, write_npz

    names = {"data": "spectrum.npz", "summary": "spectrum.json", "figure": "spectrum.png"}
    summary = {k: result[k] for k in ("eigenvalues_summary", "bulks", "tau_gen", "tau_mem")}
    summary.update(config=result["header"]["config"], version=result["header"]["version"], seed=result["header"]["seed"])
    with staged_output(out_dir) as stage:
        write_npz(stage / names["data"], {"eigenvalues": result["eigenvalues"]}, dict(result["header"], summary=summary))
        write_json(stage / names["summary"], summary)
        _plot_numerical(stage / names["data"], stage / names["figure"])
    return {k: str(Path(out_dir) / v) for k, v in names.items()}


def _plot_numerical(data_path, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..results import read_npz

    arrays, header = read_npz(data_path)
    ev = arrays["eigenvalues"]
    ev = ev[ev > 0]
    s = header["summary"]
    fig, ax = plt.subplots(figsize=(7, 4.2))
    bins = np.geomspace(ev.min() * 0.95, ev.max() * 1.05, 100)
    ax.hist(ev, bins=bins, color="C1")
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
    fig.savefig(path, dpi=120)
    plt.close(fig)
