"""The spectrum of U (the `rfdm spectrum` command; [B25] Fig. 4).

compute(): Gaussian-equivalence coefficients, the self-consistent equations solved on grids that resolve
each bulk, atoms, bulks, timescales; optionally the eigenvalues of the exact noise-averaged U at a finite
dimension D with the Kolmogorov–Smirnov distance to the theory.
plot(): lambda rho(lambda) (the mass per unit of log lambda) on a log axis, so that bulks four decades
apart are both visible, the atom as a vertical line, and the empirical histogram when computed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..data import GaussianData
from ..progress import messages
from ..protocol import POSITIVE, POSITIVE_INT, Config, SeedStreams, WholeTimes, param, register
from ..features import RandomFeatures, noise_averaged_statistics
from ..results import Result, provenance, render
from ..spectrum import SpectralProblem, gep_coefficients
from .common import activation_field, seed_field, sigma_spectrum_field, sigma_weights_field, t_field


@dataclass
class SpectrumConfig(Config):
    """The spectrum of the Gaussian-equivalent U at (psi_p, psi_n, t); optionally the exact U at dimension D."""

    psi_p: float = param(64.0, "p/d", label="psi_p", check=(POSITIVE, WholeTimes("empirical_d")))
    psi_n: float = param(8.0, "n/d", label="psi_n", check=(POSITIVE, WholeTimes("empirical_d")))
    t: float = t_field()
    activation: str = activation_field()
    sigma_spectrum: tuple = sigma_spectrum_field("comma list of covariance eigenvalues")
    sigma_weights: tuple | None = sigma_weights_field("comma list of their weights (sum 1; default equal)")
    empirical_d: int | None = param(None, "also compute the exact noise-averaged U at dimension D, overlay it and "
                                    "report KS", check=POSITIVE_INT, optional=True, metavar="D", label="empirical d",
                                    sweep=False)
    seed: int = seed_field("seed of W and X for --empirical-d")
    n_points: int = param(2000, "density points in all", check=POSITIVE_INT, flag="--points")

    def check(self):
        if self.sigma_weights is None:
            n = len(self.sigma_spectrum)
            self.sigma_weights = tuple(1.0 / n for _ in range(n))

    @property
    def sigma_x2(self) -> float:
        """sigma_x^2 = Tr Sigma / d, the mean eigenvalue."""
        return float(np.dot(self.sigma_spectrum, self.sigma_weights))


def compute(config: SpectrumConfig, quiet: bool = True) -> dict:
    log = messages("spectrum", quiet)
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
        streams = SeedStreams.ordered(config.seed, ("features", "train"))
        rng_w, rng_x = streams.generator("features"), streams.generator("train")
        law = GaussianData(D, eigenvalues=config.sigma_spectrum, weights=config.sigma_weights)
        features = RandomFeatures.sample(D, p, config.activation, rng_w)
        X = law.sample(n, rng_x)
        U = noise_averaged_statistics(features, X, config.t).U
        ev = np.linalg.eigvalsh(U)
        out["eigenvalues"] = ev
        out["ks_empirical"] = res.ks_distance(ev)
        out["ks_empirical_continuous"] = res.ks_distance_continuous(ev)
    out["header"] = provenance(asdict(config), config.seed)
    return Result(out)


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
        render(plot, load(stage / names["data"]), stage / names["figure"])
    return {k: str(Path(out_dir) / v) for k, v in names.items()}


def load(path) -> dict:
    from ..results import read_npz

    arrays, header = read_npz(path)
    return dict(arrays, header=header, **header["summary"])


def plot(data, fig) -> None:

    cfg = data["header"]["config"]
    fig.set_size_inches(7.5, 4.5)
    ax = fig.subplots()
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


def sweep_outputs(res: dict, config: SpectrumConfig) -> dict:
    """A sweep point: tau_gen, tau_mem (and their leading orders), the atom, the population and memorization
    bulks, and the edges and masses of every bulk.  A solve whose run-time checks fail raises NumericalError
    (the point is recorded as failed)."""
    import math

    from ..errors import NumericalError

    if not res["checks"]["converged"]:
        raise NumericalError(f"a run-time check of the spectral solver failed (max residual "
                             f"{res['checks'].get('max_residual', math.nan):.3g}).")
    ts, bulks, atoms = res["timescales"], res["bulks"], res["atoms"]
    biggest = max(atoms, key=lambda a: a["weight"]) if atoms else None
    num = lambda x: math.nan if x is None else float(x)  # noqa: E731

    def bulk(index, field):
        return math.nan if index is None else float(bulks[index][field])

    mem, pop = ts["memorization_bulk"], ts["population_bulk"]
    scalars = {"tau_gen": num(ts["tau_gen"]), "tau_mem": num(ts["tau_mem"]),
               "tau_gen_leading_order": num(ts["tau_gen_leading_order"]),
               "tau_mem_leading_order": num(ts["tau_mem_leading_order"]),
               "atom_weight": float(sum(a["weight"] for a in atoms)),
               "atom_position": math.nan if biggest is None else float(biggest["position"]),
               "n_bulks": float(len(bulks)), "total_mass": float(res["total_mass"]),
               "population_bulk_left": bulk(pop, "left"), "population_bulk_right": bulk(pop, "right"),
               "population_bulk_mass": bulk(pop, "mass"),
               "memorization_bulk_left": bulk(mem, "left"), "memorization_bulk_right": bulk(mem, "right"),
               "memorization_bulk_mass": bulk(mem, "mass")}
    vectors = {f"bulk_{f}": ("bulk", np.array([b[f] for b in bulks], dtype=np.float64))
               for f in ("left", "right", "mass", "mean")}
    return {"scalars": scalars, "vectors": vectors, "coords": {},
            "info": {"checks": res["checks"], "coefficients": res["coefficients"]}}


EXPERIMENT = register(
    "spectrum", SpectrumConfig, compute, plot=plot, stem="spectrum", summary=json_summary, sweep=sweep_outputs,
    description="spectrum of U from the self-consistent equations (rfdm spectrum)",
    descriptions={"tau_gen": "psi_p/(Delta_t lambda_mean) of the population bulk",
                  "tau_mem": "psi_p/(Delta_t lambda_left) of the memorization bulk",
                  "atom_weight": "total weight of the atoms", "atom_position": "position of the heaviest atom",
                  "n_bulks": "number of bulks", "bulk_left": "left edge of each bulk",
                  "bulk_right": "right edge of each bulk", "bulk_mass": "mass of each bulk",
                  "bulk_mean": "mean eigenvalue of each bulk"})
