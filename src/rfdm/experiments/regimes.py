"""Regimes of the backward dynamics on the two-cluster mixture (the `rfdm regimes` command; docs/theory.md §6; [B24]).

compute(): the speciation time t_S, the clone-agreement probability phi(t) from its formula and by simulation
with the exact score (clones branched at t, continued with independent noise, end modes compared), the
collapse time t_C of the empirical score of n training points (mixture entropy, and the isotropic formula),
and the simulated collapse: the probability that two clones branched at t end nearest to the same training
point, by clone simulation and from the posterior weights sum_mu w_mu^2.
plot(): phi against t (theory line, simulated points with binomial error bars, t_S marked); the collapse
probability against t with t_C marked.

Seeds: SeedSequence(seed) is split into the direction of m, the training set, the phi simulation and the
collapse simulation.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..data import MixtureData
from ..errors import InvalidParameterError
from ..progress import messages
from ..protocol import MAX_COUNT, POSITIVE, POSITIVE_INT, Config, Integer, SeedStreams, param, register
from ..regimes import (collapse_time, collapse_time_isotropic, crossing_time, simulate_collapse, simulate_phi,
                       speciation_time)
from ..results import Result, provenance, read_npz, save_dataset
from ..sampling import check_times
from .common import T_field, d_field, grid_field, integrator_field, seed_field, steps_field, t_min_field


def _log(msg: str, quiet: bool) -> None:
    messages("regimes", quiet)(msg)


@dataclass
class RegimesConfig(Config):
    """Resolved configuration (recorded with the result).  Branching times: ``n_times`` geometric between
    ``t_lo`` and ``t_hi`` (clipped to (t_min, T)), plus t_S for phi and t_C for the collapse."""

    d: int = d_field(32)
    m_norm: float | None = param(None, "|m| (fixed as d grows)", check=POSITIVE, optional=True, label="m_norm")
    m_tilde: float | None = param(None, "|m| = m_tilde sqrt(d) (default 1 when --m-norm is not given)",
                                  check=POSITIVE, optional=True, label="m_tilde")
    sigma_x: float = param(1.0, "standard deviation of each cluster", check=POSITIVE, label="sigma_x")
    n_train: int = param(256, "training points of the empirical score", check=Integer(2, MAX_COUNT), label="n_train")
    n_pairs: int = param(1000, "clone pairs for phi", check=POSITIVE_INT, label="number of clone pairs")
    n_trajectories: int = param(400, "clone pairs for the collapse", check=POSITIVE_INT,
                                label="number of trajectories")
    steps: int = steps_field()
    T: float = T_field(8.0)
    t_min: float = t_min_field()
    grid: str = grid_field()
    integrator: str = integrator_field()
    n_times: int = param(12, "number of branching times", check=POSITIVE_INT, cli=False)
    t_lo: float = param(0.05, "smallest branching time", check=POSITIVE, cli=False)
    t_hi: float = param(4.0, "largest branching time", check=POSITIVE, cli=False)
    seed: int = seed_field()

    def check(self):
        if self.m_norm is not None and self.m_tilde is not None:
            raise InvalidParameterError("give either --m-norm or --m-tilde, not both.")
        if self.m_norm is None and self.m_tilde is None:
            self.m_tilde = 1.0
        self.T, self.t_min, self.steps = check_times(self.T, self.t_min, self.steps)
        if self.t_lo >= self.t_hi:
            raise InvalidParameterError("the branching times need t_lo < t_hi.")

    @property
    def norm(self) -> float:
        return self.m_norm if self.m_norm is not None else self.m_tilde * math.sqrt(self.d)

    def branch_times(self, extra: float | None = None) -> np.ndarray:
        t = np.geomspace(self.t_lo, self.t_hi, self.n_times)
        if extra is not None and math.isfinite(extra):
            t = np.append(t, extra)
        t = t[(t > self.t_min * (1 + 1e-9)) & (t < self.T * (1 - 1e-9))]
        return np.unique(t)


def compute(config: RegimesConfig, quiet: bool = True) -> dict:
    streams = SeedStreams.ordered(config.seed, ("direction", "train", "phi", "collapse"))
    rng_m, rng_x, ss_phi, ss_col = (streams[k] for k in ("direction", "train", "phi", "collapse"))
    law = MixtureData(config.d, m_norm=config.norm, direction=np.random.default_rng(rng_m).standard_normal(config.d),
                      sigma_x=config.sigma_x)
    X = law.sample(config.n_train, np.random.default_rng(rng_x))
    t_s = speciation_time(law)
    t_c = collapse_time(law, config.n_train)
    alpha = math.log(config.n_train) / config.d
    t_c_iso = collapse_time_isotropic(alpha, config.sigma_x)
    kw = dict(T=config.T, t_min=config.t_min, steps=config.steps, grid=config.grid, integrator=config.integrator)
    _log(f"phi(t): {config.n_pairs} clone pairs, exact mixture score (d={config.d}, |m|={law.m_norm:.4g}, "
         f"t_S={t_s:.4g})", quiet)
    phi = simulate_phi(law, config.n_pairs, config.branch_times(t_s if t_s > 0 else None), seed=ss_phi, **kw)
    _log(f"collapse: {config.n_trajectories} trajectories, empirical score of n={config.n_train} (t_C={t_c:.4g})", quiet)
    col = simulate_collapse(X, config.n_trajectories, config.branch_times(t_c), seed=ss_col, **kw)
    i_s = int(np.argmin(np.abs(phi["t"] - t_s))) if t_s > 0 else None
    result = {
        "phi_t": phi["t"], "phi_theory": phi["theory"], "phi_simulated": phi["agreement"],
        "phi_simulated_stderr": phi["stderr"],
        "collapse_t": col["t"], "collapse_simulated": col["agreement"], "collapse_simulated_stderr": col["stderr"],
        "collapse_weights": col["weights"], "collapse_weights_stderr": col["weights_stderr"],
        "m": law.m, "training": X,
        "scalars": {"t_speciation": t_s, "t_collapse": t_c, "t_collapse_isotropic": t_c_iso, "alpha": alpha,
                    "m_norm": law.m_norm,
                    "phi_theory_at_t_speciation": float(phi["theory"][i_s]) if i_s is not None else None,
                    "phi_simulated_at_t_speciation": float(phi["agreement"][i_s]) if i_s is not None else None,
                    "t_collapse_simulated": crossing_time(col["t"], col["agreement"]),
                    "t_collapse_weights": crossing_time(col["t"], col["weights"])},
        "header": provenance(dict(asdict(config), m_norm_resolved=law.m_norm), config.seed),
    }
    return Result(result)


ARRAY_KEYS = ("phi_t", "phi_theory", "phi_simulated", "phi_simulated_stderr", "collapse_t", "collapse_simulated",
              "collapse_simulated_stderr", "collapse_weights", "collapse_weights_stderr", "m", "training")


def json_summary(result: dict) -> dict:
    h = result["header"]
    out = dict(result["scalars"])
    for k in ARRAY_KEYS[:9]:
        out[k] = result[k]
    out.update(config=h["config"], version=h["version"], seed=h["seed"])
    return out


def save(result: dict, out_dir) -> dict:
    header = dict(result["header"], scalars=result["scalars"])
    return save_dataset(out_dir, "regimes", {k: result[k] for k in ARRAY_KEYS}, header, json_summary(result),
                        plot, load, dpi=110)


def load(path) -> dict:
    arrays, header = read_npz(path)
    return dict(arrays, header=header, scalars=header["scalars"])


def plot(result, fig) -> None:

    s, cfg = result["scalars"], result["header"]["config"]
    fig.set_size_inches(11, 4.2)
    (a1, a2) = fig.subplots(1, 2)
    t = result["phi_t"]
    fine = np.geomspace(t.min(), t.max(), 300)
    from ..regimes import clone_agreement

    a1.plot(fine, clone_agreement(fine, s["m_norm"], cfg["sigma_x"]), color="k", label="phi(t), formula")
    a1.errorbar(t, result["phi_simulated"], yerr=2 * result["phi_simulated_stderr"], fmt="o", color="C0", ms=4,
                label="clone simulation (exact score), 2 s.e.")
    if s["t_speciation"] > 0:
        a1.axvline(s["t_speciation"], color="C3", ls="--", label=f"t_S = {s['t_speciation']:.3g}")
    a1.set_xscale("log")
    a1.set_xlabel("branching time t")
    a1.set_ylabel("P(two clones end in the same mode)")
    a1.set_title(f"speciation: d={cfg['d']}, |m|={s['m_norm']:.3g}, sigma_x={cfg['sigma_x']:g}", fontsize=9)
    a1.legend(fontsize=8)
    tc = result["collapse_t"]
    a2.errorbar(tc, result["collapse_simulated"], yerr=2 * result["collapse_simulated_stderr"], fmt="o", color="C0",
                ms=4, label="clone simulation (empirical score), 2 s.e.")
    a2.plot(tc, result["collapse_weights"], "s-", color="C2", ms=3, lw=1, label="sum of squared posterior weights")
    a2.axvline(s["t_collapse"], color="C3", ls="--", label=f"t_C = {s['t_collapse']:.3g}")
    a2.axvline(s["t_collapse_isotropic"], color="C3", ls=":", label=f"t_C isotropic = {s['t_collapse_isotropic']:.3g}")
    a2.set_xscale("log")
    a2.set_xlabel("branching time t")
    a2.set_ylabel("P(two clones end on the same training point)")
    a2.set_title(f"collapse: n={cfg['n_train']} (alpha = log n / d = {s['alpha']:.3g})", fontsize=9)
    a2.legend(fontsize=8)
    fig.tight_layout()


EXPERIMENT = register(
    "regimes", RegimesConfig, compute, plot=plot, stem="regimes", summary=json_summary, command=True, saver=save,
    help="speciation time t_S, clone-agreement probability phi(t) (formula and simulation), collapse time t_C "
    "and the simulated collapse onto training points.",
    long_description="Regimes of the backward dynamics on the two-cluster mixture (docs/theory.md §6, [B24]): "
    "t_S = (1/2) log(|m|^2 + sigma_x^2), phi(t) against a clone simulation with the exact score, t_C of n "
    "training points against a clone simulation with the empirical score.")
