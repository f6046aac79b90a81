"""The BBP outlier of U for two-cluster mixture data (the `rfdm outlier` command; docs/theory.md §5).

compute(): for each diffusion time t, the Gaussian-equivalence coefficients of the cluster variance, the
bulk's right edge, the outlier's position and squared overlap with W m (d -> infinity theory), the threshold
|m|_c(t), and the outlier's training timescale psi_p/(Delta_t lambda_out); with ``empirical``, the exact
noise-averaged U of a sampled mixture at dimension d (top eigenvalue, overlap of its eigenvector with W m).
It also computes the phase diagram over (t, |m|) and the learned score's component along m over training
time tau at the first t.
plot(): outlier against t for several |m| (theory lines, empirical points), the phase diagram with the
speciation time, and the learned score along m against tau.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from ..data import MixtureData
from ..dynamics import GradientFlow
from ..errors import InvalidParameterError
from ..progress import messages
from ..protocol import SeedStreams, register, POSITIVE, Config, FloatList, Tau, param
from ..features import RandomFeatures, noise_averaged_statistics, population_statistics
from ..outlier import Modes, OutlierProblem, paired_outlier_test
from ..results import Result, provenance
from ..spectrum import gep_coefficients
from .common import TIME, activation_field, d_field, psi_field, seed_field


@dataclass
class OutlierConfig(Config):
    """The BBP outlier of U for (1/2) N(m, sigma_x^2 I) + (1/2) N(-m, sigma_x^2 I) data; |m| = m_norm, or
    m_tilde sqrt(d) (default: m_norm = 2)."""

    d: int = d_field(200, "data dimension for the exact U and the training figure")
    psi_p: float = psi_field(4.0, "p")
    psi_n: float = psi_field(2.0, "n")
    t: tuple = param(factory=lambda: (0.1,), help="diffusion time(s): numbers or START:STOP:NUM log ranges, "
                     "comma-separated", unit="OU time", check=FloatList(TIME), parse="tau", label="t")
    m_norm: float | None = param(None, "|m| (fixed as d grows; default 2 when --m-tilde is not given)",
                                 check=POSITIVE, optional=True, label="m_norm")
    m_tilde: float | None = param(None, "|m| = m_tilde sqrt(d)", check=POSITIVE, optional=True, label="m_tilde")
    sigma_x: float = param(1.0, "standard deviation of each cluster", check=POSITIVE, label="sigma_x")
    activation: str = activation_field()
    empirical: bool = param(False, "also compute the exact U at dimension d", sweep=False)
    balanced: bool = param(False, "exactly n/2 points in each cluster (n must be even)")
    seed: int = seed_field("seed of W, m's direction and the data")
    phase_t: tuple = param(factory=lambda: tuple(np.geomspace(0.01, 3.0, 30)), help="times of the phase diagram",
                           check=FloatList(POSITIVE), cli=False)
    training_tau: tuple = param(factory=lambda: tuple(np.logspace(-1, 7, 65)), help="training times of the "
                                "learned score along m", check=Tau(), cli=False)

    def check(self):
        if self.m_norm is not None and self.m_tilde is not None:
            raise InvalidParameterError("give exactly one of --m-norm and --m-tilde.")
        if self.m_norm is None and self.m_tilde is None:
            self.m_norm = 2.0
        if self.balanced and self.n % 2:
            raise InvalidParameterError(f"balanced clusters need an even number of points, got n = {self.n}.")

    @property
    def p(self) -> int:
        return int(round(self.psi_p * self.d))

    @property
    def n(self) -> int:
        return int(round(self.psi_n * self.d))

    @property
    def norm(self) -> float:
        """|m| (from m_norm, or m_tilde sqrt(d))."""
        return self.m_norm if self.m_norm is not None else self.m_tilde * math.sqrt(self.d)


def _theory(config: OutlierConfig, t: float, m_norm: float) -> dict:
    coeffs = gep_coefficients(config.activation, t, config.sigma_x ** 2)
    prob = OutlierProblem(coeffs, config.psi_n, Modes.asymptotic(config.psi_p, coeffs))
    lam, overlap = prob.outlier(m_norm)
    return {"bulk_right_edge": prob.bulk_right_edge(), "threshold_m_norm": prob.threshold_m_norm(),
            "outlier_theory": lam, "overlap_theory": overlap if lam is not None else None,
            "tau_outlier": config.psi_p / (coeffs.delta * lam) if lam is not None else None}


def _draw(config: OutlierConfig):
    """(law, features, X, labels) of one run: W, the direction of m and the training set from the config's seed
    (named streams), shared by :func:`compute` and :func:`below_threshold`."""
    streams = SeedStreams.ordered(config.seed, ("features", "direction", "train"))
    rng_w, rng_m, rng_x = (streams.generator(k) for k in ("features", "direction", "train"))
    law = MixtureData(config.d, m_norm=config.norm, direction=rng_m.standard_normal(config.d), sigma_x=config.sigma_x)
    features = RandomFeatures.sample(config.d, config.p, config.activation, rng_w)
    X, labels = law.sample(config.n, rng_x, balanced=config.balanced, return_labels=True)
    return law, features, X, labels


def compute(config: OutlierConfig, quiet: bool = True) -> dict:
    log = messages("outlier", quiet)
    law, features, X, labels = _draw(config)
    rows = []
    for t in config.t:
        log(f"theory at t={t:g}")
        row = {"t": t, **_theory(config, t, config.norm)}
        if config.empirical:
            log(f"exact U at d={config.d}, p={config.p}, n={config.n}, t={t:g}")
            # detected against the paired control (same W and z, m = 0) and by the overlap with W m
            # (rfdm.outlier.paired_outlier_test; the rule and its false-positive rate: docs/theory.md §5)
            test = paired_outlier_test(features, X, labels, law.m, t)
            coeffs = gep_coefficients(config.activation, t, config.sigma_x ** 2)
            row["bulk_right_edge_finite_d"] = OutlierProblem(
                coeffs, config.psi_n, Modes.from_weights(features.W, law.m, coeffs)).bulk_right_edge()
            row["top_eigenvalue"] = float(test["top_eigenvalues"][0])
            row["outlier_empirical"] = test["outlier"]
            row["overlap_empirical"] = test["overlap"]
            row["control_top_eigenvalue"] = float(test["control_top_eigenvalues"][0])
            row["control_overlap"] = test["control_overlap"]
            row["gap_ratio"] = test["gap_ratio"]
        rows.append(row)
    log("phase diagram over (t, |m|)")
    norms = config.norm * np.array([0.5, 1.0, 1.5, 2.0])
    curves = {"t": np.array(config.phase_t), "threshold_m_norm": [], "bulk_right_edge": [],
              "outlier": {f"{m:.6g}": [] for m in norms}}
    for t in config.phase_t:
        coeffs = gep_coefficients(config.activation, t, config.sigma_x ** 2)
        prob = OutlierProblem(coeffs, config.psi_n, Modes.asymptotic(config.psi_p, coeffs))
        curves["threshold_m_norm"].append(prob.threshold_m_norm())
        curves["bulk_right_edge"].append(prob.bulk_right_edge())
        for m in norms:
            curves["outlier"][f"{m:.6g}"].append(prob.outlier(m)[0])
    # the speciation time t_S = (1/2) log(|m|^2 + sigma_x^2) of each |m| of the phase diagram ([B24]; rfdm.regimes)
    t_s = {f"{m:.6g}": MixtureData(config.d, m_norm=float(m), sigma_x=config.sigma_x).speciation_time() for m in norms}
    out = {"rows": rows, "phase": curves, "speciation_t_of_m": t_s}
    log("training along m at the first t")
    out["training"] = _training(config, features, law, X, config.t[0])
    out["header"] = provenance(asdict(config), config.seed)
    return Result(out)


def below_threshold(config: OutlierConfig, fraction: float = 0.5, t: float | None = None) -> dict:
    """The paired-control test (:func:`rfdm.outlier.paired_outlier_test`) below the BBP threshold: the training set
    x_mu = c_mu m' + sigma_x z_mu with |m'| = ``fraction`` |m|_c(t) (d -> infinity threshold at ``t``, default the
    first t of ``config``), the same W, the same direction of m, the same labels c_mu and the same z_mu as
    :func:`compute` (so the bulk is the one of the run above threshold).  Theory: no outlier for |m'| < |m|_c;
    at fraction 0.5 the rule's false positives were 0/20 at d = 100 and 0/30 at d = 40 (docs/theory.md §5).
    Returns t, |m'|, |m|_c, the decision (``outlier``: the top eigenvalue or None), the squared overlap of the
    top eigenvector with W m and the control's, the gap ratio and the top eigenvalue."""
    if not (isinstance(fraction, (int, float)) and 0 < fraction < 1):
        raise InvalidParameterError(f"fraction must lie in (0, 1) (below the threshold), got {fraction!r}.")
    t = config.t[0] if t is None else float(t)
    law, features, X, labels = _draw(config)
    threshold = _theory(config, t, config.norm)["threshold_m_norm"]
    if threshold is None or not math.isfinite(threshold):
        raise InvalidParameterError(f"no finite BBP threshold |m|_c at t = {t:g}: nothing to test below it.")
    m_below = law.m * (fraction * threshold / config.norm)
    X_below = X + labels[:, None] * (m_below - law.m)[None, :]
    test = paired_outlier_test(features, X_below, labels, m_below, t)
    return {"t": t, "m_norm": fraction * threshold, "threshold_m_norm": threshold, "fraction": fraction,
            "outlier": test["outlier"], "overlap": test["overlap"], "control_overlap": test["control_overlap"],
            "gap_ratio": test["gap_ratio"], "top_eigenvalue": float(test["top_eigenvalues"][0])}


def _training(config, features, law, X, t) -> dict:
    """Learned score along m over tau: E[mhat . S_A(tau)(y)] for y in the + cluster of P_t, against the
    exact score's value; A(tau) in closed form from the exact statistics."""
    stats = noise_averaged_statistics(features, X, t)
    pop = population_statistics(features, law, t)
    flow = GradientFlow(stats, pop)
    rng = np.random.default_rng(config.seed + 1)
    a, g2 = math.exp(-t), law.gamma2_t(t)
    y = a * law.m + math.sqrt(g2) * rng.standard_normal((2000, config.d))
    mhat = law.m / law.m_norm
    phi = features(y)
    taus = np.array(config.training_tau)
    along = np.array([float(np.mean(phi @ (flow.weights(tt).T @ mhat))) / math.sqrt(config.p) for tt in taus])
    exact = float(np.mean(law.score(y, t) @ mhat))
    theory = _theory(config, t, config.norm)
    return {"t": t, "tau": taus, "score_along_m": along, "exact_score_along_m": exact,
            "tau_outlier": theory["tau_outlier"], "top_timescale": float(np.min(flow.timescales))}


def json_summary(result: dict) -> dict:
    rows = result["rows"]
    keys = ("outlier_theory", "threshold_m_norm", "bulk_right_edge", "outlier_empirical", "overlap_theory",
            "overlap_empirical", "tau_outlier")
    single = len(rows) == 1
    obj = {k: (rows[0].get(k) if single else [r.get(k) for r in rows]) for k in keys}
    obj["t"] = rows[0]["t"] if single else [r["t"] for r in rows]
    if "top_eigenvalue" in rows[0]:
        obj["top_eigenvalue"] = rows[0]["top_eigenvalue"] if single else [r["top_eigenvalue"] for r in rows]
    obj["config"] = result["header"]["config"]
    obj["version"] = result["header"]["version"]
    obj["seed"] = result["header"]["seed"]
    return obj


def save(result: dict, out_dir) -> dict:
    from pathlib import Path

    from ..results import render, staged_output, to_jsonable, write_json

    names = {"data": "outlier.json", "figure_t": "outlier_vs_t.png", "figure_phase": "phase_diagram.png",
             "figure_training": "outlier_training.png"}
    payload = to_jsonable({"summary": json_summary(result), "rows": result["rows"], "phase": result["phase"],
                           "training": result["training"], "header": result["header"]})
    with staged_output(out_dir) as stage:
        write_json(stage / names["data"], payload)
        data = load(stage / names["data"])
        for name, draw in PLOTS:
            render(draw, data, stage / name)
    return {k: str(Path(out_dir) / v) for k, v in names.items()}


def load(path) -> dict:
    import json

    def num(x):
        return math.inf if x == "inf" else (math.nan if x in ("nan", None) else x)

    data = json.loads(open(path).read())
    data["_num"] = num
    return data


def _title(cfg) -> str:
    return f"{cfg['activation']}, psi_p={cfg['psi_p']:g}, psi_n={cfg['psi_n']:g}, sigma_x={cfg['sigma_x']:g}"


def plot_vs_t(data: dict, fig) -> None:
    """The outlier against t for several |m| (theory lines, exact-U points) with the bulk's right edge."""
    num = data["_num"]
    cfg = data["header"]["config"]
    phase = data["phase"]
    ts = np.array(phase["t"], dtype=float)
    fig.set_size_inches(7, 4.5)
    ax = fig.subplots()
    ax.plot(ts, [num(x) for x in phase["bulk_right_edge"]], "k--", label="bulk right edge")
    for k, (m, vals) in enumerate(phase["outlier"].items()):
        ax.plot(ts, [num(x) for x in vals], color=f"C{k}", label=f"outlier, |m| = {float(m):.3g}")
    rows = data["rows"]
    if "top_eigenvalue" in rows[0]:
        m_given = f"{float(list(phase['outlier'])[1]):.3g}"
        ax.plot([r["t"] for r in rows], [r["top_eigenvalue"] for r in rows], "o", color="C1",
                label=f"exact U, d={cfg['d']}, |m| = {m_given} (top eigenvalue)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("diffusion time t")
    ax.set_ylabel("eigenvalue of U")
    ax.set_title(_title(cfg), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()


def plot_phase(data: dict, fig) -> None:
    """The phase diagram over (t, |m|): where the outlier exists, and the speciation time."""
    num = data["_num"]
    cfg = data["header"]["config"]
    phase = data["phase"]
    ts = np.array(phase["t"], dtype=float)
    fig.set_size_inches(6.5, 4.5)
    ax = fig.subplots()
    thr = np.array([num(x) for x in phase["threshold_m_norm"]], dtype=float)
    mmax = float(np.nanmax(thr[np.isfinite(thr)])) * 2 if np.any(np.isfinite(thr)) else 5.0
    ax.fill_between(ts, np.where(np.isfinite(thr), thr, mmax), mmax, color="C0", alpha=0.2, label="outlier exists")
    ax.plot(ts, thr, "C0", label=r"BBP threshold $|m|_c(t)$")
    sx2 = cfg["sigma_x"] ** 2
    tsp = ts[np.exp(2 * ts) > sx2]
    ax.plot(tsp, np.sqrt(np.exp(2 * tsp) - sx2), "C3--", label=r"speciation $t_S = \log(|m|^2+\sigma_x^2)/2$")
    ax.set_xscale("log")
    ax.set_ylim(0, mmax)
    ax.set_xlabel("diffusion time t")
    ax.set_ylabel("|m|")
    ax.set_title("phase diagram of the outlier; " + _title(cfg), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()


def plot_training(data: dict, fig) -> None:
    """The learned score's component along m against training time tau, with tau_out marked."""
    cfg = data["header"]["config"]
    tr = data["training"]
    fig.set_size_inches(6.5, 4.2)
    ax = fig.subplots()
    ax.plot(tr["tau"], tr["score_along_m"], "C0", label=r"learned score along $\hat m$ (+ cluster)")
    ax.axhline(tr["exact_score_along_m"], color="k", ls=":", label="exact score")
    if tr["tau_outlier"] is not None:
        ax.axvline(tr["tau_outlier"], color="C3", ls="--", label=r"$\tau_{out} = \psi_p/(\Delta_t \lambda_{out})$")
    ax.axvline(tr["top_timescale"], color="0.5", ls="--", lw=1, label="fastest mode (exact U)")
    ax.set_xscale("log")
    ax.set_xlabel(r"training time $\tau$")
    ax.set_ylabel(r"$E[\hat m \cdot S_A(y)]$")
    ax.set_title(f"t = {tr['t']:g}, d = {cfg['d']}", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()


#: the three figures of a result: (file name, plot)
PLOTS = (("outlier_vs_t.png", plot_vs_t), ("phase_diagram.png", plot_phase), ("outlier_training.png", plot_training))


EXPERIMENT = register(
    "outlier", OutlierConfig, compute, plot=plot_vs_t, stem="outlier", summary=json_summary, command=True, saver=save,
    help="BBP outlier of U for two-cluster mixture data: position, threshold, overlap with W m, phase diagram, "
    "training timescale.",
    long_description="The outlier of U for data (1/2)N(m, sigma_x^2 I) + (1/2)N(-m, sigma_x^2 I) (docs/theory.md "
    "§5): theory (d -> infinity) and, with --empirical, the exact U at dimension d.")
