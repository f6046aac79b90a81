"""Sampling experiments (the `rfdm sample` command; docs/theory.md §1, §5, §6; the talk's two regimes).

* :class:`SampleConfig` / :func:`compute` / :func:`save` / :func:`plot` — one sampling run: a data law
  (Gaussian, two-cluster mixture, or an (n, d) .npy file), a training set, a score source (exact, empirical,
  random features trained in closed form at a grid of times, or the time-integrated model), the backward
  process, and the metrics: f_mem with its exact (Clopper–Pearson) interval, the mixture statistics, the energy distance and
  the sliced Wasserstein distance to fresh samples of the target P_{t_min}, the Gaussian KL for Gaussian data.
* :class:`TwoRegimesConfig` / :func:`compute_two_regimes` / ... — random-features scores on the mixture with
  |m| = O(1) and with |m| = m_tilde sqrt(d): the first gives one Gaussian stretched along m, the second two
  balanced modes (W_2 along m to the mixture and to the Gaussian with the same covariance).
* :class:`MemorizationConfig` / :func:`compute_memorization` / ... — for p >> n, f_mem of samples from the
  random-features scores stopped at training times tau from before tau_gen to well after tau_mem, with the
  empirical score's f_mem for reference.

Seeds: one SeedSequence(seed) is split into independent streams, in this order: the data law (the direction of
m), the training set, W (and b), the sampler, the target samples, the bootstrap and the projections.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..backend import resolve_device
from ..data import EmpiricalData, GaussianData, MixtureData
from ..diffusion import OrnsteinUhlenbeck, delta_t
from ..errors import InvalidParameterError
from ..progress import callback, messages
from ..protocol import (MAX_COUNT, POSITIVE, POSITIVE_INT, RATIO, TOLERANCE, Config, Integer, OneOf, SeedStreams, Tau,
                        param, register)
from ..time_integrated import BETAS, TIME_LAWS
from .common import (T_field, activation_field, d_field, grid_field, integrator_field, seed_field,
                     sigma_spectrum_field, sigma_weights_field, steps_field, t_min_field, denoise_field)
from ..features import RandomFeatures
from ..metrics import (energy_distance, gaussian_kl_of_samples, memorization_fraction, mixture_statistics,
                       sliced_wasserstein, wasserstein_1d)
from ..results import Result, load_result, provenance, read_npz, save_dataset
from ..sampling import (SCHEMES, CallableScore, EmpiricalScore, ExactScore,
                        check_times, sample, train_random_features, tweedie_denoise)

SCORES = ("exact", "empirical", "rf", "rf-time-integrated")
STREAMS = ("law", "train", "features", "sampler", "target", "bootstrap", "projections")


def _streams(seed: int) -> SeedStreams:
    return SeedStreams.ordered(int(seed), STREAMS)


def Progress(label: str, quiet: bool):
    """A ``progress(done, total)`` callback drawing a tqdm bar on stderr (silent when quiet)."""
    return callback(label, quiet)


def _log(msg: str, quiet: bool) -> None:
    messages("sample", quiet)(msg)


@dataclass
class BackwardProcessFields(Config):
    """The options of the backward process shared by the sampling configs (declared once)."""

    steps: int = steps_field()
    T: float = T_field(4.0)
    t_min: float = t_min_field()
    grid: str = grid_field()
    integrator: str = integrator_field()
    denoise: bool = denoise_field()


@dataclass
class SampleConfig(BackwardProcessFields):
    """Resolved configuration of one sampling run (every field is recorded with the result)."""

    score: str = param("rf", "score source", check=OneOf(SCORES), label="score")
    data: str = param("gaussian", "gaussian, mixture, or FILE.npy (an (n, d) array)", label="data")
    d: int = d_field(16, "data dimension (set by FILE.npy)")
    sigma_spectrum: tuple = sigma_spectrum_field("Gaussian data: comma list of covariance eigenvalues")
    sigma_weights: tuple | None = sigma_weights_field("Gaussian data: comma list of their weights (sum 1)")
    m_norm: float | None = param(None, "mixture: |m| (fixed as d grows)", check=POSITIVE, optional=True,
                                 label="m_norm")
    m_tilde: float | None = param(None, "mixture: |m| = m_tilde sqrt(d) (default 1 when --m-norm is not given)",
                                  check=POSITIVE, optional=True, label="m_tilde")
    sigma_x: float = param(1.0, "mixture: standard deviation of each cluster", check=POSITIVE, label="sigma_x")
    n_train: int | None = param(64, "training points (a FILE.npy: all rows by default)", optional=True,
                                check=Integer(2, MAX_COUNT), label="n_train")
    n_samples: int = param(500, "generated samples", check=Integer(2, MAX_COUNT), label="n_samples")
    tau: float = param(math.inf, "rf: training time tau (a number or inf)", check=Tau(single=True), label="tau",
                       parse="tau1")
    psi_p: float = param(16.0, "rf: p/d", check=POSITIVE, label="psi_p")
    activation: str = activation_field("rf: activation of the features")
    rf_times: int = param(12, "rf: number of diffusion times the scores are trained at (geometric from t_min to T)",
                          check=POSITIVE_INT, label="number of rf training times")
    rf_scheme: str = param("interpolate", "rf: interpolate or nearest between training times",
                           check=OneOf(SCHEMES), label="scheme")
    ti_beta: str = param("gaussian-skip", "rf-time-integrated: skip term beta_t x: gaussian-skip (-x/Gamma_t^2, the "
                         "linear part exact) or none (a bounded score then lets samples run away; docs/theory.md "
                         "§7.4)", check=OneOf(BETAS), label="ti_beta")
    ti_time_law: str = param("uniform", "rf-time-integrated: law Q of the training times on [t-min, T]",
                             check=OneOf(TIME_LAWS), label="time law", flag="--ti-t-law")
    rtol: float = param(1e-8, "relative truncation tolerance of the Mehler series", check=TOLERANCE, cli=False)
    threshold: float = param(1.0 / 3.0, "memorization threshold on the nearest/second-nearest distance ratio",
                             check=RATIO, label="threshold", show_default="1/3")
    n_target: int | None = param(None, "fresh target samples (default n_samples)", check=POSITIVE_INT,
                                 optional=True, cli=False)
    seed: int = seed_field()

    def check(self):
        self.T, self.t_min, self.steps = check_times(self.T, self.t_min, self.steps)
        if self.data in ("gaussian", "mixture") and self.n_train is None:
            self.n_train = 64
        if self.data == "mixture":
            if self.m_norm is not None and self.m_tilde is not None:
                raise InvalidParameterError("give either --m-norm or --m-tilde, not both.")
            if self.m_norm is None and self.m_tilde is None:
                self.m_tilde = 1.0
        elif self.m_norm is not None or self.m_tilde is not None:
            raise InvalidParameterError("--m-norm and --m-tilde are for --data mixture.")
        if self.data not in ("gaussian", "mixture"):
            if not str(self.data).endswith(".npy"):
                raise InvalidParameterError(f"--data must be gaussian, mixture or a .npy file, got {self.data!r}.")
            if self.score == "exact":
                raise InvalidParameterError("the exact score needs --data gaussian or mixture, not a data file.")
            _check_npy(self.data)
        if self.data == "gaussian":
            self.gaussian_law()  # validates the spectrum

    @property
    def p(self) -> int:
        return max(1, int(round(self.psi_p * self.d)))

    def gaussian_law(self) -> GaussianData:
        return GaussianData(self.d, eigenvalues=self.sigma_spectrum, weights=self.sigma_weights)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["p"] = self.p
        return out


def _check_npy(path) -> None:
    """A data file that exists must start with the .npy magic string (a text file named .npy is refused in
    one sentence; a missing file is reported by the loader)."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise InvalidParameterError(f"cannot read data file {path}: {exc.strerror or exc}.") from None
    if magic != b"\x93NUMPY":
        raise InvalidParameterError(f"data file {path} is not a NumPy .npy file (save an (n, d) float array "
                                    "with numpy.save).")


def make_law(config: SampleConfig, stream):
    """(law, training set X): the law is None for a data file (X is then its first n_train rows)."""
    rng_law = np.random.default_rng(stream["law"])
    rng_x = np.random.default_rng(stream["train"])
    if config.data == "gaussian":
        law = config.gaussian_law()
        return law, law.sample(config.n_train, rng_x)
    if config.data == "mixture":
        kw = {"m_norm": config.m_norm} if config.m_norm is not None else {"m_tilde": config.m_tilde}
        law = MixtureData(config.d, direction=rng_law.standard_normal(config.d), sigma_x=config.sigma_x, **kw)
        return law, law.sample(config.n_train, rng_x)
    emp = EmpiricalData.from_npy(config.data)
    X = emp.points
    if config.n_train is not None:
        if config.n_train > X.shape[0]:
            raise InvalidParameterError(f"--n-train {config.n_train} exceeds the {X.shape[0]} points of {config.data}.")
        X = X[:config.n_train]
    if X.shape[0] < 2:
        raise InvalidParameterError(f"the memorization fraction needs at least 2 training points, got {X.shape[0]}.")
    config.d = int(X.shape[1])
    config.n_train = int(X.shape[0])
    return None, X


def target_samples(law, X, n: int, t: float, rng, denoise: bool = False) -> np.ndarray:
    """n draws of P_t: the law's samples noised to time t (for a data file, its points resampled and noised).
    ``denoise``: the law a perfect sampler ends in after the final denoising step, i.e. those draws mapped by
    Tweedie's formula with the exact score of the law (for a data file: the empirical law's score)."""
    x0 = law.sample(n, rng) if law is not None else X[rng.integers(0, X.shape[0], size=n)]
    xt = OrnsteinUhlenbeck().forward(x0, t, rng)[0]
    if not denoise:
        return xt
    return tweedie_denoise(ExactScore(law) if law is not None else EmpiricalScore(X), xt, t)


def reference_covariance(law, t: float, denoise: bool) -> np.ndarray:
    """Covariance of the exact target of the sampler for Gaussian data N(0, Sigma): Sigma_t at t_min, or, after
    the denoising step x0 = e^t (I - Delta_t Sigma_t^{-1}) x, e^{-2t} Sigma Sigma_t^{-1} Sigma."""
    cov_t = law.covariance_t(t)
    if not denoise:
        return cov_t
    cov = law.covariance()
    return math.exp(-2.0 * t) * cov @ np.linalg.solve(cov_t, cov)


def build_score(config, law, X, stream, taus=None, progress=None, device=None):
    """The score source(s) of ``config.score``; with ``taus`` (rf and rf-time-integrated) a list, one per tau.
    ``device``: where the rf scores' statistics and eigendecompositions run (rf only)."""
    kind = config.score
    if kind == "exact":
        return ExactScore(law)
    if kind == "empirical":
        return EmpiricalScore(X)
    features = RandomFeatures.sample(config.d, config.p, config.activation, np.random.default_rng(stream["features"]))
    tau_list = [config.tau] if taus is None else list(taus)
    if kind == "rf":
        times = np.geomspace(config.t_min, config.T, config.rf_times) if config.rf_times > 1 else np.array([config.t_min])
        scores = train_random_features(features, X, times, tau_list, scheme=config.rf_scheme, rtol=config.rtol,
                                       progress=progress, device=device)
    else:
        from ..time_integrated import TimeIntegratedModel

        sigma_x2 = float(np.mean(np.var(X, axis=0))) if law is None else (
            config.sigma_x ** 2 if isinstance(law, MixtureData) else float(np.mean(law.spectrum)))
        ss = stream["features"]
        rng_b = np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + (1,))
        model = TimeIntegratedModel.sample(features, np.random.default_rng(rng_b),
                                           t_min=config.t_min, t_max=config.T, beta=config.ti_beta,
                                           time_law=config.ti_time_law,
                                           sigma_x2=sigma_x2)
        flow = model.gradient_flow(X, rtol=config.rtol)
        scores = []
        for tau in tau_list:
            A = flow.weights(float(tau))
            src = CallableScore(lambda x, t, A=A: model.score(A, x, t), config.d, "rf-time-integrated",
                                flops_per_sample=4.0 * config.p * config.d)
            src.tau = float(tau)
            scores.append(src)
        if progress is not None:
            progress(1, 1)
    return scores[0] if taus is None else scores


def evaluate(samples, X, law, target, config, stream, device=None) -> dict:
    """Every metric of a set of samples (the keys of the --json object); the nearest neighbours of f_mem on
    ``device``."""
    mem = memorization_fraction(samples, X, threshold=config.threshold, seed=stream["bootstrap"], device=device)
    out = mem.as_dict()
    keys = ("mode_fractions", "mean_along_m", "var_along_m", "var_across_m")
    if isinstance(law, MixtureData):
        stats = mixture_statistics(samples, law.m)
        out.update(stats)
    else:
        out.update({k: None for k in keys})
    finite = bool(np.all(np.isfinite(samples)))
    out["distance_to_target"] = energy_distance(samples, target) if finite else math.inf
    out["sliced_wasserstein"] = sliced_wasserstein(samples, target, seed=stream["projections"]) if finite else math.inf
    if isinstance(law, GaussianData) and samples.shape[0] > law.d and finite:
        out.update(gaussian_kl_of_samples(samples, reference_covariance(law, config.t_min, config.denoise)))
    else:
        out.update({"gaussian_kl": None, "kl_null": None})
    out["mean_sq_norm_per_dim"] = float(np.mean(samples ** 2))
    return out, mem.ratios


def compute(config: SampleConfig, quiet: bool = True, device=None) -> dict:
    """Run the experiment; returns arrays (samples, training set, ratios, target samples) plus ``summary``
    (the metrics), ``header`` (config, version, seed, device) and ``info``.  ``device``
    (:func:`rfdm.backend.resolve_device`): where the rf training, the sampler and the nearest neighbours run
    (exact, empirical and time-integrated scores are evaluated on the host)."""
    bk = resolve_device(device)
    stream = _streams(config.seed)
    law, X = make_law(config, stream)
    _log(f"score {config.score} (d={config.d}, n_train={X.shape[0]}"
         + (f", p={config.p}, tau={config.tau:g}" if config.score.startswith("rf") else "") + ")", quiet)
    score = build_score(config, law, X, stream, progress=Progress("training", quiet) if config.score.startswith("rf") else None,
                        device=bk)
    run = sample(score, config.n_samples, T=config.T, t_min=config.t_min, steps=config.steps, grid=config.grid,
                 integrator=config.integrator, seed=stream["sampler"], progress=Progress("sampling", quiet), device=bk,
                 denoise=config.denoise)
    _log("metrics", quiet)
    target = target_samples(law, X, config.n_target or config.n_samples, config.t_min,
                            np.random.default_rng(stream["target"]), denoise=config.denoise)
    summary, ratios = evaluate(run.samples, X, law, target, config, stream, device=bk)
    info = dict(run.info)
    if getattr(score, "info", None):
        info["rf"] = {k: v for k, v in score.info.items()}
    result = {"samples": run.samples, "training": X, "ratios": ratios, "target": target, "times": run.times,
              "summary": summary, "info": info,
              "header": dict(provenance(config.as_dict(), config.seed), device=bk.describe())}
    if isinstance(law, MixtureData):
        result["m"] = law.m
        result["gamma2_t_min"] = np.array(law.gamma2_t(config.t_min))
    return Result(result)


ARRAY_KEYS = ("samples", "training", "ratios", "target", "times", "m", "gamma2_t_min")


def save(result: dict, out_dir) -> dict:
    """Write sample.npz (arrays + header with the summary), sample.json (the --json object + header) and
    sample.png (plotted from the saved file).  Returns the paths."""
    header = dict(result["header"], info=result["info"], summary=result["summary"])
    return save_dataset(out_dir, "sample", {k: result[k] for k in ARRAY_KEYS if k in result}, header,
                        json_summary(result), plot, load, dpi=110)


def load(path) -> dict:
    arrays, header = read_npz(path)
    return dict(arrays, header=header, summary=header.get("summary", {}), info=header.get("info", {}))


def json_summary(result: dict) -> dict:
    header = result["header"]
    return dict(result["summary"], config=header["config"], version=header["version"], seed=header["seed"],
                info=result["info"])


def plot(result, fig) -> None:
    """Left: histogram of d_1/d_2 with the threshold.  Middle: samples and training points projected on the
    two leading principal axes of the training set (on m and the leading axis across it for the mixture).
    Right (mixture): histogram of the coordinate along m against the target density."""

    cfg, s = result["header"]["config"], result["summary"]
    X, Y = result["training"], result["samples"]
    mixture = "m" in result
    fig.set_size_inches(14 if mixture else 10, 4.2)
    axes = fig.subplots(1, 3 if mixture else 2)
    ax = axes[0]
    ratios = result["ratios"][np.isfinite(result["ratios"])]
    ax.hist(ratios, bins=np.linspace(0, 1, 41), color="C0")
    ax.axvline(cfg["threshold"], color="C3", ls="--", label=f"threshold {cfg['threshold']:.3g}")
    lo, hi = s["f_mem_ci"]
    ax.set_title(f"f_mem = {s['f_mem']:.3f}  [{lo:.3f}, {hi:.3f}]", fontsize=10)
    ax.set_xlabel("nearest / second-nearest training distance")
    ax.set_ylabel("samples")
    ax.legend(fontsize=8)
    ax = axes[1]
    Xc = X - X.mean(axis=0)
    if mixture:
        u = result["m"] / np.linalg.norm(result["m"])
        rest = Xc - np.outer(Xc @ u, u)
        v = np.linalg.svd(rest, full_matrices=False)[2][0] if X.shape[1] > 1 else u
        axes_uv, labels = np.stack([u, v], axis=1), ("along m", "across m")
    else:
        vt = np.linalg.svd(Xc, full_matrices=False)[2]
        axes_uv = vt[:2].T if vt.shape[0] > 1 else np.concatenate([vt[:1].T, vt[:1].T], axis=1)
        labels = ("principal axis 1", "principal axis 2")
    Yp = Y[np.all(np.isfinite(Y), axis=1)] @ axes_uv
    Xp = X @ axes_uv
    ax.scatter(Yp[:, 0], Yp[:, 1], s=4, alpha=0.4, color="C0", label="samples")
    ax.scatter(Xp[:, 0], Xp[:, 1], s=18, marker="x", color="C3", label="training points")
    if Yp.size:
        lim = np.percentile(np.abs(np.concatenate([Yp, Xp])), 99.5) * 1.1
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    ax.legend(fontsize=8)
    ax.set_title(f"score {cfg['score']}, data {Path(str(cfg['data'])).name}, d={cfg['d']}, n={cfg['n_train']}"
                 + (f", p={cfg['p']}, tau={cfg['tau']}" if str(cfg['score']).startswith("rf") else ""), fontsize=9)
    if mixture:
        ax = axes[2]
        m = result["m"]
        mn = float(np.linalg.norm(m))
        sy = Y[np.all(np.isfinite(Y), axis=1)] @ (m / mn)
        g2 = float(result["gamma2_t_min"])
        mu = mn * math.exp(-cfg["t_min"])
        span = max(mu + 4 * math.sqrt(g2), float(np.percentile(np.abs(sy), 99.5)) if sy.size else 1.0)
        grid = np.linspace(-span, span, 400)
        dens = 0.5 * (np.exp(-(grid - mu) ** 2 / (2 * g2)) + np.exp(-(grid + mu) ** 2 / (2 * g2))) / math.sqrt(2 * math.pi * g2)
        ax.hist(sy, bins=60, range=(-span, span), density=True, color="C0", alpha=0.6, label="samples")
        ax.plot(grid, dens, color="k", label="target mixture")
        ax.set_xlabel("coordinate along m")
        ax.set_title(f"mode fractions {s['mode_fractions'][0]:.3f} / {s['mode_fractions'][1]:.3f}", fontsize=10)
        ax.legend(fontsize=8)
    fig.tight_layout()


# -- the talk's two regimes -----------------------------------------------------------------------------

@dataclass
class TwoRegimesConfig(BackwardProcessFields):
    """Random-features scores on the mixture with |m| = m_norm (O(1)) and with |m| = m_tilde sqrt(d).

    Defaults: d = 32, p = 16 d = 512, n = 1024 > p (tau = inf is then the end of training without
    memorization), tanh, 10 training times, T = 4 (see docs/theory.md §6 for why not larger with tanh)."""

    d: int = d_field(32)
    psi_p: float = param(16.0, "rf: p/d", check=POSITIVE, label="psi_p")
    n_train: int = param(1024, "training points", check=Integer(2, MAX_COUNT), label="n_train")
    m_norm: float = param(2.0, "|m| of the first regime (O(1))", check=POSITIVE, label="m_norm")
    m_tilde: float = param(2.0, "|m| = m_tilde sqrt(d) of the second regime", check=POSITIVE, label="m_tilde")
    sigma_x: float = param(1.0, "standard deviation of each cluster", check=POSITIVE, label="sigma_x")
    activation: str = activation_field()
    tau: float = param(math.inf, "training time tau (a number or inf)", check=Tau(single=True), label="tau",
                       parse="tau1")
    rf_times: int = param(10, "number of diffusion times the scores are trained at", check=POSITIVE_INT,
                          label="number of rf training times")
    n_samples: int = param(2000, "generated samples per regime", check=Integer(2, MAX_COUNT), label="n_samples")
    rtol: float = param(1e-6, "relative truncation tolerance of the Mehler series", check=TOLERANCE, cli=False)
    seed: int = seed_field()

    def check(self):
        self.run_config("norm")  # validates the rest

    def run_config(self, which: str) -> SampleConfig:
        kw = {"m_norm": self.m_norm} if which == "norm" else {"m_tilde": self.m_tilde}
        return SampleConfig(score="rf", data="mixture", d=self.d, sigma_x=self.sigma_x, n_train=self.n_train,
                            n_samples=self.n_samples, steps=self.steps, T=self.T, t_min=self.t_min, grid=self.grid,
                            integrator=self.integrator, denoise=self.denoise, tau=self.tau, psi_p=self.psi_p,
                            activation=self.activation,
                            rf_times=self.rf_times, rtol=self.rtol, seed=self.seed, **kw)


def compute_two_regimes(config: TwoRegimesConfig, quiet: bool = True, device=None) -> dict:
    """Both regimes: samples, their coordinate along m, the metrics, and W_2 along m to the target mixture
    (the coordinate of P_{t_min}: (1/2) N(+-|m| e^{-t}, Gamma^2)) and to the Gaussian with the same
    covariance (N(0, |m|^2 e^{-2t} + Gamma^2) along m), each from fresh reference draws."""
    bk = resolve_device(device)
    out = {"regimes": {}, "header": dict(provenance(asdict(config), config.seed), device=bk.describe())}
    for which in ("norm", "tilde"):
        cfg = config.run_config(which)
        label = f"|m| = {config.m_norm:g}" if which == "norm" else f"|m| = {config.m_tilde:g} sqrt(d)"
        _log(f"regime {label}", quiet)
        res = compute(cfg, quiet=quiet, device=bk)
        m = res["m"]
        mn = float(np.linalg.norm(m))
        s = res["samples"] @ (m / mn)
        rng = np.random.default_rng(np.random.SeedSequence([config.seed, 7 if which == "norm" else 8]))
        g2 = float(res["gamma2_t_min"])
        mu = mn * math.exp(-config.t_min)
        n_ref = 20000
        mix_ref = rng.choice([-mu, mu], size=n_ref) + math.sqrt(g2) * rng.standard_normal(n_ref)
        gauss_ref = math.sqrt(mu * mu + g2) * rng.standard_normal(n_ref)
        finite = np.isfinite(s)
        summary = dict(res["summary"], m_norm=mn, mu_t_min=mu, gamma2_t_min=g2,
                       w2_along_m_to_mixture=wasserstein_1d(s[finite], mix_ref) if finite.any() else math.inf,
                       w2_along_m_to_gaussian=wasserstein_1d(s[finite], gauss_ref) if finite.any() else math.inf)
        summary["closer_to"] = ("mixture" if summary["w2_along_m_to_mixture"] < summary["w2_along_m_to_gaussian"]
                                else "gaussian")
        summary.update(_along_m_shape(s[finite], mn, g2, config, res["training"] @ (m / mn)))
        out["regimes"][which] = {"label": label, "along_m": s, "summary": summary, "config": cfg.as_dict()}
    return Result(out)


def mixture_excess_kurtosis(mu: float, g2: float) -> float:
    """Excess kurtosis of the coordinate along m of (1/2) N(+mu, g2) + (1/2) N(-mu, g2):
    E s^4 / (E s^2)^2 - 3 with E s^2 = mu^2 + g2 and E s^4 = mu^4 + 6 mu^2 g2 + 3 g2^2 (0 for mu = 0, -> -2 as
    mu/sqrt(g2) -> inf)."""
    v = mu * mu + g2
    return (mu ** 4 + 6.0 * mu * mu * g2 + 3.0 * g2 * g2) / (v * v) - 3.0


def _along_m_shape(s, m_norm: float, g2_t_min: float, config, train_along_m) -> dict:
    """The shape of the samples' coordinate s along m against the target's (the talk's two regimes): the sample
    excess kurtosis (0 for one Gaussian, :func:`mixture_excess_kurtosis` for the target mixture) and their ratio,
    the bimodality index (0: one Gaussian, 1: the target's two modes); the target's variance along m; the
    fraction of training points on the + side.  The target is the law the sampler aims at: P_0 (centres
    +-|m|, variance sigma_x^2) after the final denoising step, P_{t_min} without it."""
    if config.denoise:
        mu, g2 = m_norm, config.sigma_x ** 2
    else:
        mu, g2 = m_norm * math.exp(-config.t_min), g2_t_min
    s = np.asarray(s, dtype=np.float64)
    kurt = float(np.mean((s - s.mean()) ** 4) / np.var(s) ** 2 - 3.0) if s.size > 3 else math.nan
    target_kurt = mixture_excess_kurtosis(mu, g2)
    return {"excess_kurtosis_along_m": kurt, "target_excess_kurtosis_along_m": target_kurt,
            "bimodality_index": kurt / target_kurt if target_kurt != 0 else math.nan,
            "var_along_m_total": float(np.var(s, ddof=1)) if s.size > 1 else math.nan,
            "target_var_along_m": mu * mu + g2, "target_centre_along_m": mu,
            "train_plus_fraction": float(np.mean(np.asarray(train_along_m) > 0))}


def save_two_regimes(result: dict, out_dir) -> dict:
    regs = result["regimes"]
    header = dict(result["header"], regimes={k: {"label": v["label"], "summary": v["summary"], "config": v["config"]}
                                             for k, v in regs.items()})
    return save_dataset(out_dir, "two_regimes", {f"along_m_{k}": v["along_m"] for k, v in regs.items()}, header,
                        two_regimes_summary(result), plot_two_regimes, load_result, dpi=110)


def two_regimes_summary(result: dict) -> dict:
    h = result["header"]
    return {"regimes": {k: dict(v["summary"], label=v["label"]) for k, v in result["regimes"].items()},
            "config": h["config"], "version": h["version"], "seed": h["seed"]}


def plot_two_regimes(data, fig) -> None:
    """For each regime, the histogram of the samples' coordinate along m (in units of |m|) against the target
    mixture and the Gaussian with the same covariance."""

    arrays, header = data.arrays, data.header
    fig.set_size_inches(11, 4.2)
    axes = fig.subplots(1, 2)
    for ax, key in zip(axes, ("norm", "tilde")):
        info = header["regimes"][key]
        s = info["summary"]
        mn, mu, g2 = s["m_norm"], s["mu_t_min"], s["gamma2_t_min"]
        y = arrays[f"along_m_{key}"]
        y = y[np.isfinite(y)] / mn
        span = max(2.0, (mu + 4 * math.sqrt(g2)) / mn)
        grid = np.linspace(-span, span, 500)
        x = grid * mn
        mix = 0.5 * (np.exp(-(x - mu) ** 2 / (2 * g2)) + np.exp(-(x + mu) ** 2 / (2 * g2))) / math.sqrt(2 * math.pi * g2)
        v = mu * mu + g2
        gau = np.exp(-x * x / (2 * v)) / math.sqrt(2 * math.pi * v)
        ax.hist(y, bins=60, range=(-span, span), density=True, color="C0", alpha=0.55, label="random-features samples")
        ax.plot(grid, mix * mn, color="k", label="target mixture")
        ax.plot(grid, gau * mn, color="C3", ls="--", label="Gaussian, same covariance")
        fr = s["mode_fractions"]
        ax.set_title(f"{info['label']}: modes {fr[0]:.2f}/{fr[1]:.2f}, W2 to mixture {s['w2_along_m_to_mixture']:.2f}, "
                     f"to Gaussian {s['w2_along_m_to_gaussian']:.2f}", fontsize=8.5)
        ax.set_xlabel("coordinate along m / |m|")
        ax.set_ylabel("density")
        ax.legend(fontsize=7.5)
    cfg = header["config"]
    fig.suptitle(f"random-features scores on the two-cluster mixture (d={cfg['d']}, p={int(round(cfg['psi_p'] * cfg['d']))}, "
                 f"n={cfg['n_train']}, {cfg['activation']}, tau={cfg['tau']})", fontsize=10)
    fig.tight_layout()


# -- memorization along training -------------------------------------------------------------------------

@dataclass
class MemorizationConfig(BackwardProcessFields):
    """f_mem of samples from random-features scores stopped at tau, for p >> n (defaults: Gaussian data
    N(0, I), d = 8, p = 128 d = 1024, n = 16, tanh, 12 training times)."""

    d: int = d_field(8)
    psi_p: float = param(128.0, "rf: p/d", check=POSITIVE, label="psi_p")
    n_train: int = param(16, "training points", check=Integer(2, MAX_COUNT), label="n_train")
    sigma_spectrum: tuple = sigma_spectrum_field()
    activation: str = activation_field()
    tau: tuple = param(factory=lambda: tuple(np.logspace(0, 8, 13)) + (math.inf,), help="training times tau",
                       check=Tau(sort=True), label="tau", parse="tau", show_default="1:1e8:13,inf")
    rf_times: int = param(12, "number of diffusion times the scores are trained at", check=POSITIVE_INT,
                          label="number of rf training times")
    n_samples: int = param(500, "generated samples per tau", check=Integer(2, MAX_COUNT), label="n_samples")
    threshold: float = param(1.0 / 3.0, "memorization threshold on the nearest/second-nearest distance ratio",
                             check=RATIO, label="threshold", show_default="1/3")
    rtol: float = param(1e-6, "relative truncation tolerance of the Mehler series", check=TOLERANCE, cli=False)
    seed: int = seed_field()

    def check(self):
        self.run_config("rf")

    def run_config(self, score: str) -> SampleConfig:
        return SampleConfig(score=score, data="gaussian", d=self.d, sigma_spectrum=self.sigma_spectrum,
                            n_train=self.n_train, n_samples=self.n_samples, steps=self.steps, T=self.T,
                            t_min=self.t_min, grid=self.grid, integrator=self.integrator, denoise=self.denoise,
                            tau=self.tau[-1],
                            psi_p=self.psi_p, activation=self.activation, rf_times=self.rf_times,
                            threshold=self.threshold, rtol=self.rtol, seed=self.seed)


def memorization_timescales(config: MemorizationConfig, X, stream, device=None) -> dict:
    """tau_gen and tau_mem at t_min: from the spectral theory (rfdm.spectrum, d -> infinity at the same psi's)
    and from the exact U of this training set, where with p > n + d the eigenvalues sort into the population
    bulk (the top d), the memorization bulk (the next n) and the rest: tau_gen = psi_p/(Delta lambda_d),
    tau_mem = psi_p/(Delta lambda_{d+n})."""
    from ..dynamics import GradientFlow
    from ..features import noise_averaged_statistics
    from ..spectrum import SpectralProblem, gep_coefficients

    cfg = config.run_config("rf")
    features = RandomFeatures.sample(cfg.d, cfg.p, cfg.activation, np.random.default_rng(stream["features"]))
    flow = GradientFlow(noise_averaged_statistics(features, X, config.t_min, rtol=config.rtol, device=device),
                        overwrite=True, device=device)
    lam = np.sort(flow.eigenvalues)[::-1]
    dt = float(delta_t(config.t_min))
    out = {"tau_gen_empirical": cfg.psi_p / (dt * lam[cfg.d - 1]) if lam.size >= cfg.d else None,
           "tau_mem_empirical": cfg.psi_p / (dt * lam[cfg.d + cfg.n_train - 1]) if lam.size >= cfg.d + cfg.n_train else None}
    try:
        law = cfg.gaussian_law()
        coeffs = gep_coefficients(cfg.activation, config.t_min, float(np.mean(law.spectrum)))
        ts = SpectralProblem(coeffs, cfg.psi_p, cfg.n_train / cfg.d).solve(n_points=400).timescales()
        out.update(tau_gen_theory=ts["tau_gen"], tau_mem_theory=ts["tau_mem"])
    except Exception as exc:  # the theory is a guide on the figure, not part of the measurement
        out.update(tau_gen_theory=None, tau_mem_theory=None, theory_error=str(exc))
    return out


def compute_memorization(config: MemorizationConfig, quiet: bool = True, device=None) -> dict:
    """f_mem (with bootstrap interval) against tau; the empirical score's and the exact score's f_mem; the
    timescales at t_min.  ``device``: as for :func:`compute`."""
    bk = resolve_device(device)
    cfg = config.run_config("rf")
    stream = _streams(config.seed)
    law, X = make_law(cfg, stream)
    _log(f"training the random-features scores (d={cfg.d}, p={cfg.p}, n={cfg.n_train}, {cfg.rf_times} times, "
         f"{len(config.tau)} values of tau)", quiet)
    scores = build_score(cfg, law, X, stream, taus=config.tau, progress=Progress("training", quiet), device=bk)
    target = target_samples(law, X, cfg.n_samples, cfg.t_min, np.random.default_rng(stream["target"]),
                            denoise=cfg.denoise)
    kw = dict(T=cfg.T, t_min=cfg.t_min, steps=cfg.steps, grid=cfg.grid, integrator=cfg.integrator,
              seed=stream["sampler"], device=bk, denoise=cfg.denoise)
    rows = []
    bar = Progress("sampling", quiet)
    for j, sc in enumerate(scores):
        run = sample(sc, cfg.n_samples, **kw)
        summ, _ = evaluate(run.samples, X, law, target, cfg, stream, device=bk)
        rows.append(summ)
        bar(j + 1, len(scores))
    refs = {}
    for name in ("empirical", "exact"):
        src = EmpiricalScore(X) if name == "empirical" else ExactScore(law)
        run = sample(src, cfg.n_samples, **kw)
        refs[name] = evaluate(run.samples, X, law, target, cfg, stream, device=bk)[0]
    _log("timescales at t_min", quiet)
    times = memorization_timescales(config, X, stream, device=bk)
    return Result({"tau": np.array(config.tau), "f_mem": np.array([r["f_mem"] for r in rows]),
            "f_mem_ci": np.array([r["f_mem_ci"] for r in rows]),
            "distance_to_target": np.array([r["distance_to_target"] for r in rows]),
            "mean_sq_norm_per_dim": np.array([r["mean_sq_norm_per_dim"] for r in rows]),
            "references": refs, "timescales": times,
            "header": dict(provenance(dict(asdict(config), p=cfg.p), config.seed), device=bk.describe())})


MEM_ARRAYS = ("tau", "f_mem", "f_mem_ci", "distance_to_target", "mean_sq_norm_per_dim")


def memorization_summary(result: dict) -> dict:
    h = result["header"]
    refs = result["references"]
    return {"tau": result["tau"], "f_mem": result["f_mem"], "f_mem_ci": result["f_mem_ci"],
            "distance_to_target": result["distance_to_target"],
            "f_mem_empirical": refs["empirical"]["f_mem"], "f_mem_empirical_ci": refs["empirical"]["f_mem_ci"],
            "f_mem_exact": refs["exact"]["f_mem"], "f_mem_exact_ci": refs["exact"]["f_mem_ci"],
            **result["timescales"], "config": h["config"], "version": h["version"], "seed": h["seed"]}


def save_memorization(result: dict, out_dir) -> dict:
    summary = memorization_summary(result)
    header = dict(result["header"], summary={k: v for k, v in summary.items() if k not in MEM_ARRAYS})
    return save_dataset(out_dir, "memorization", {k: result[k] for k in MEM_ARRAYS}, header, summary,
                        plot_memorization, load_result, dpi=110)


def plot_memorization(data, fig) -> None:
    """f_mem against tau with its bootstrap band; the empirical and exact scores' f_mem as horizontal
    lines; tau_gen and tau_mem at t_min (theory: dashed, this training set: dotted).  tau = inf at the right."""

    arrays, header = data.arrays, data.header
    s, cfg = header["summary"], header["config"]
    tau, f, ci = arrays["tau"], arrays["f_mem"], arrays["f_mem_ci"]
    fin = np.isfinite(tau)
    fig.set_size_inches(7.5, 4.5)
    ax = fig.subplots()
    x = tau.copy()
    if (~fin).any():
        x[~fin] = tau[fin].max() * 10 if fin.any() else 1.0
    ax.fill_between(x[fin], ci[fin, 0], ci[fin, 1], color="C0", alpha=0.25)
    ax.plot(x[fin], f[fin], "o-", color="C0", label="random-features score stopped at tau")
    if (~fin).any():
        ax.errorbar(x[~fin], f[~fin], yerr=np.abs(np.stack([f[~fin] - ci[~fin, 0], ci[~fin, 1] - f[~fin]])),
                    fmt="s", color="C0", label="tau = inf")
    for key, color, name in (("f_mem_empirical", "C3", "empirical score"), ("f_mem_exact", "C2", "exact score")):
        if s.get(key) is not None:
            ax.axhline(s[key], color=color, ls="-", lw=1, label=f"{name}: {s[key]:.2f}")
    for key, ls, name in (("tau_gen_theory", "--", "tau_gen (theory)"), ("tau_mem_theory", "--", "tau_mem (theory)"),
                          ("tau_gen_empirical", ":", "tau_gen (this U)"), ("tau_mem_empirical", ":", "tau_mem (this U)")):
        v = s.get(key)
        if v is not None and np.isfinite(v) and v > 0:
            ax.axvline(v, color="C1" if "gen" in key else "C4", ls=ls, lw=1, label=f"{name} = {v:.3g}")
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(r"training time $\tau$ (at every diffusion time)")
    ax.set_ylabel("memorization fraction f_mem")
    ax.set_title(f"d={cfg['d']}, p={cfg['p']}, n={cfg['n_train']}, {cfg['activation']}, t_min={cfg['t_min']:g}, "
                 f"timescales at t_min", fontsize=9)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()


EXPERIMENT = register("sample", SampleConfig, compute, plot=plot, stem="sample", summary=json_summary)
TWO_REGIMES = register("two-regimes", TwoRegimesConfig, compute_two_regimes, stem="two_regimes",
                       summary=two_regimes_summary)
MEMORIZATION = register("memorization", MemorizationConfig, compute_memorization, stem="memorization",
                        summary=memorization_summary)
