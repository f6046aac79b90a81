"""The spectrum of U (the `rfdm spectrum` command; [B25] Fig. 4).

compute(): Gaussian-equivalence coefficients, the self-consistent equations solved on grids that resolve
each bulk, atoms, bulks, timescales; optionally the eigenvalues of the exact noise-averaged U at a finite
dimension D with the Kolmogorov–Smirnov distance to the theory.
plot(): lambda rho(lambda) (the mass per unit of log lambda) on a log axis, so that bulks four decades
apart are both visible, the atom as a vertical line, and the empirical histogram when computed.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass

import numpy as np

from ..activations import get_activation
from ..data import GaussianData
from ..errors import InvalidParameterError, check_positive_float, check_positive_int
from ..features import RandomFeatures, noise_averaged_statistics
from ..results import provenance
from ..spectrum import SpectralProblem, gep_coefficients


@dataclass
class SpectrumConfig:
    psi_p: float = 64.0
    psi_n: float = 8.0
    t: float = 0.01
    activation: str = "tanh"
    sigma_spectrum: tuple = (1.0,)
    sigma_weights: tuple | None = None
    empirical_d: int | None = None
    seed: int = 0
    n_points: int = 2000

    def __post_init__(self):
        self.psi_p = check_positive_float("psi_p", self.psi_p)
        self.psi_n = check_positive_float("psi_n", self.psi_n)
        self.t = check_positive_float("t", self.t)
        get_activation(self.activation)
        lam = np.atleast_1d(np.asarray(self.sigma_spectrum, dtype=float))
        if lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
            raise InvalidParameterError("covariance eigenvalues must be finite and > 0.")
        w = np.full(lam.size, 1.0 / lam.size) if self.sigma_weights is None else np.asarray(self.sigma_weights, float)
        if w.shape != lam.shape:
            raise InvalidParameterError(f"{w.size} weights given for {lam.size} covariance eigenvalues.")
        if not np.all(np.isfinite(w)) or np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9:
            raise InvalidParameterError(f"covariance weights must be >= 0 and sum to 1, got sum {w.sum():g}.")
        self.sigma_spectrum = tuple(float(x) for x in lam)
        self.sigma_weights = tuple(float(x) for x in w)
        self.n_points = check_positive_int("n_points", self.n_points)
        if self.empirical_d is not None:
            self.empirical_d = check_positive_int("empirical d", self.empirical_d)
            for name, psi in (("psi_p", self.psi_p), ("psi_n", self.psi_n)):
                v = psi * self.empirical_d
                if abs(v - round(v)) > 1e-9:
                    raise InvalidParameterError(f"{name} * D = {v:g} must be a whole number for --empirical-d.")
        self.seed = int(self.seed)

    @property
    def sigma_x2(self) -> float:
        """sigma_x^2 = Tr Sigma / d, the mean eigenvalue."""
        return float(np.dot(self.sigma_spectrum, self.sigma_weights))


def compute(config: SpectrumConfig, quiet: bool = True) -> dict:
    log = (lambda m: None) if quiet else (lambda m: print(f"[rfdm spectrum] {m}", file=sys.stderr, flush=True))
    coeffs = gep_coefficients(config.activation, config.t, config.sigma_x2)
    problem = SpectralProblem(coeffs, config.psi_p, config.psi_n, np.array(config.sigma_spectrum),
                              np.array(config.sigma_weights))
    log("solving the self-consistent equations")
    res = problem.solve(n_points=config.n_points)
    ts = res.timescales()
    out = {"grid": res.grid, "density": res.density, "residual": res.residual, "atoms": res.atoms,
           "bulks": res.bulks, "total_mass": res.checks["total_mass"], "tau_gen": ts["tau_gen"],
           "tau_mem": ts["tau_mem"], "timescales": ts, "checks": res.checks,
           "coefficients": asdict(coeffs), "result": res}
    if config.empirical_d is not None:
        D = config.empirical_d
        p, n = int(round(config.psi_p * D)), int(round(config.psi_n * D))
        log(f"exact noise-averaged U at d={D}, p={p}, n={n} and its eigenvalues")
        rng_w, rng_x = (np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(2))
        law = GaussianData(D, eigenvalues=config.sigma_spectrum, weights=config.sigma_weights)
        features = RandomFeatures.sample(D, p, config.activation, rng_w)
        X = law.sample(n, rng_x)
        U = noise_averaged_statistics(features, X, config.t).U
        ev = np.linalg.eigvalsh(U)
        out["eigenvalues"] = ev
        out["ks_empirical"] = res.ks_distance(ev)
        out["ks_empirical_continuous"] = res.ks_distance_continuous(ev)
    out["header"] = provenance(asdict(config), config.seed)
    return out


JSON_KEYS = ("atoms", "bulks", "total_mass", "tau_gen", "tau_mem", "grid", "density")


def json_summary(result: dict) -> dict:
    obj = {k: result[k] for k in JSON_KEYS}
    obj["solver"] = {"max_residual": result["checks"]["max_residual"], "converged": result["checks"]["converged"],
                     "checks": result["checks"]}
    obj["timescales"] = result["timescales"]
    obj["coefficients"] = result["coefficients"]
    for k in ("ks_empirical", "ks_empirical_continuous"):
        if k in result:
            obj[k] = result[k]
    obj["config"] = result["header"]["config"]
    obj["version"] = result["header"]["version"]
    obj["seed"] = result["header"]["seed"]
    return obj


def save(result: dict, out_dir) -> dict:
    """spectrum.npz (grid, density, residual, eigenvalues; header with everything else), spectrum.json and
    spectrum.png (plotted from the saved file)."""
    from pathlib import Path

    from ..results import staged_output, to_jsonable, write_json, write_npz

    names = {"data": "spectrum.npz", "summary": "spectrum.json", "figure": "spectrum.png"}
    summary = json_summary(result)
    arrays = {k: result[k] for k in ("grid", "density", "residual", "eigenvalues") if k in result}
    header = dict(result["header"], summary={k: v for k, v in summary.items() if k not in ("grid", "density")})
    with staged_output(out_dir) as stage:
        write_npz(stage / names["data"], arrays, to_jsonable(header))
        write_json(stage / names["summary"], summary)
        plot(load(stage / names["data"]), stage / names["figure"])
    return {k: str(Path(out_dir) / v) for k, v in names.items()}


def load(path) -> dict:
    from ..results import read_npz

    arrays, header = read_npz(path)
    return dict(arrays, header=header, **header["summary"])


def plot(data: dict, path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = data["header"]["config"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    grid, dens = np.asarray(data["grid"]), np.asarray(data["density"])
    for b in data["bulks"]:
        sel = (grid >= b["left"]) & (grid <= b["right"])
        ax.plot(grid[sel], grid[sel] * dens[sel], color="C0")
        ax.axvspan(b["left"], b["right"], color="C0", alpha=0.06)
    ymax = max(float(np.max(grid * dens, initial=0.0)), 1e-12)
    if "eigenvalues" in data:
        ev = np.asarray(data["eigenvalues"])
        pos = ev[ev > 0]
        bins = np.geomspace(pos.min() * 0.95, pos.max() * 1.05, 120)
        counts, edges = np.histogram(pos, bins=bins)
        # mass per unit log(lambda): counts / (N d log lambda)
        ax.stairs(counts / (ev.size * np.diff(np.log(edges))), edges, color="C1", alpha=0.8,
                  label=f"exact U, d={cfg['empirical_d']} (KS {data.get('ks_empirical', float('nan')):.3f})")
    for a in data["atoms"]:
        ax.axvline(a["position"], color="C3", lw=2, label=f"atom at $s_t^2$ = {a['position']:.3g}, weight {a['weight']:.4f}")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.15 * ymax)
    ax.set_xlabel(r"eigenvalue $\lambda$ of U")
    ax.set_ylabel(r"$\lambda\,\rho(\lambda)$  (mass per unit $\log\lambda$)")
    ax.set_title(f"{cfg['activation']}, psi_p={cfg['psi_p']:g}, psi_n={cfg['psi_n']:g}, t={cfg['t']:g}; "
                 f"tau_gen={data['tau_gen']:.3g}, tau_mem={(data['tau_mem'] or float('nan')):.3g}", fontsize=9)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
