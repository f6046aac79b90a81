"""Time-integrated random-features score: one network for all diffusion times (docs/theory.md §7; the talk).

    S_A(x, t) = alpha_t (A/sqrt(p)) sigma(W x/sqrt(d) + t b) + beta_t x,
    L(A) = (1/n) sum_nu (1/d) E_{t ~ Q} E_xi |sqrt(Delta_t) S_A(x_t^nu, t) + xi|^2.

Defaults (documented choices of this project): Q uniform on [t_min, t_max]; alpha_t = 1/sqrt(Delta_t) (the
network predicts the noise); beta_t = 0 ("none": the whole score is left to the features, both timescales
appear), or beta_t = -1/Gamma_t^2 ("gaussian-skip", Gamma_t^2 = Delta_t + sigma_x^2 e^{-2t}: the Gaussian
part of the score is exact, so for Gaussian data only memorization is left to learn); b ~ N(0, I_p).

With kappa_t = sqrt(Delta_t) alpha_t and r_t = sqrt(Delta_t) beta_t x_t + xi
= sqrt(Delta_t) beta_t e^{-t} x + (1 + Delta_t beta_t) xi, the loss is quadratic in A:

    L(A) = c + (1/d)[Tr(A U A^T)/p + 2 Tr(A V)/sqrt(p)],
    U = E_t[kappa_t^2 U_t],  V = E_t[kappa_t (sqrt(Delta_t) beta_t e^{-t} (1/n) sum_nu E_xi[phi^nu] x_nu^T
                                        + (1 + Delta_t beta_t) sqrt(Delta_t/d) diag(E sigma') W)],
    c = (1/d) E_t[Delta_t beta_t^2 e^{-2t} (1/n) sum_nu |x_nu|^2 + (1 + Delta_t beta_t)^2 d],

each U_t the exact noise average of :mod:`rfdm.features` with the pre-activation means shifted by t b.  The
t-average is a nested Clenshaw–Curtis rule in u = log t (5, 9, 17, ... nodes, each level reusing the
previous nodes) refined until successive levels agree to ``t_rtol`` in Frobenius norm.  The dynamics are
those of :class:`rfdm.dynamics.GradientFlow` with loss scale 1 and constant c.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .diffusion import decay, delta_t
from .dynamics import GradientFlow, checkpoint_steps, descend
from .errors import (InvalidParameterError, NumericalError, check_finite_array, check_positive_float,
                     check_positive_int)
from .features import (KMAX_FIRST, PopulationStatistics, RandomFeatures, TrainingStatistics, _unit_rows,
                       mehler_second_moment)

BETAS = ("none", "gaussian-skip")
#: laws Q of the diffusion time: uniform in t, or uniform in log t (density 1/(t log(t_max/t_min)))
TIME_LAWS = ("uniform", "log-uniform")


def check_model_options(t_min, t_max, beta: str, time_law: str, t_rtol, t_nodes_max) -> tuple:
    """The validated options of the time-integrated model: (t_min, t_max, beta, time_law, t_rtol, t_nodes_max);
    one sentence (InvalidParameterError) for a bad one."""
    t_min, t_max = check_time_window(t_min, t_max)
    if beta not in BETAS:
        raise InvalidParameterError(f"beta must be one of {', '.join(BETAS)}, got {beta!r}.")
    if time_law not in TIME_LAWS:
        raise InvalidParameterError(f"the time law must be one of {', '.join(TIME_LAWS)}, got {time_law!r}.")
    t_rtol = check_positive_float("t quadrature tolerance", t_rtol)
    t_nodes_max = check_positive_int("number of t quadrature nodes", t_nodes_max)
    return t_min, t_max, beta, time_law, t_rtol, t_nodes_max


def check_time_window(t_min, t_max) -> tuple[float, float]:
    t_min = check_positive_float("t_min", t_min)
    t_max = check_positive_float("t_max", t_max)
    if t_min >= t_max:
        raise InvalidParameterError(f"t_min must be < t_max, got t_min = {t_min:g} and t_max = {t_max:g}.")
    return t_min, t_max


def time_law_quantile(u, t_min: float, t_max: float, time_law: str = "uniform"):
    """The quantile function of the time law Q on [t_min, t_max]: t = Q^{-1}(u) for u in [0, 1], so that
    t ~ Q when u ~ U(0, 1) (any source of uniforms, e.g. a torch generator).  uniform: t = t_min + u (t_max -
    t_min); log-uniform (density 1/(t log(t_max/t_min))): t = t_min (t_max/t_min)^u.  Works on NumPy arrays
    and on torch tensors alike (only arithmetic and ``exp`` of a scalar)."""
    t_min, t_max = check_time_window(t_min, t_max)
    if time_law not in TIME_LAWS:
        raise InvalidParameterError(f"the time law must be one of {', '.join(TIME_LAWS)}, got {time_law!r}.")
    if time_law == "log-uniform":
        log_ratio = math.log(t_max / t_min)
        return t_min * (u * log_ratio).exp() if hasattr(u, "exp") else t_min * np.exp(u * log_ratio)
    return t_min + u * (t_max - t_min)


def clenshaw_curtis(level_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (cos(k pi/N), k = 0..N) and weights on [-1, 1] of the (N+1)-point Clenshaw–Curtis rule."""
    N = level_nodes - 1
    if N < 1:
        raise InvalidParameterError("a Clenshaw–Curtis rule needs at least 2 nodes.")
    k = np.arange(N + 1)
    x = np.cos(k * math.pi / N)
    w = np.zeros(N + 1)
    for i in range(N + 1):
        s = 0.0
        for j in range(1, N // 2 + 1):
            b = 1.0 if 2 * j == N else 2.0
            s += b * math.cos(2 * j * i * math.pi / N) / (4 * j * j - 1)
        c = 1.0 if i in (0, N) else 2.0
        w[i] = c / N * (1 - s)
    return x, w


@dataclass
class TimeIntegratedModel:
    """The time-integrated score model: features (W, sigma), biases b, the time law Q on [t_min, t_max]
    (``time_law``: "uniform" in t, the default, or "log-uniform", uniform in log t), alpha_t = 1/sqrt(Delta_t)
    and beta_t ("none" or "gaussian-skip" with the data variance sigma_x2)."""

    features: RandomFeatures
    b: np.ndarray
    t_min: float = 0.01
    t_max: float = 2.0
    beta: str = "none"
    sigma_x2: float = 1.0
    t_rtol: float = 1e-6
    t_nodes_max: int = 65
    t_nodes_min: int = 5
    time_law: str = "uniform"
    info: dict = field(default_factory=dict)
    #: speed options of the Mehler series across t nodes (rfdm.features.mehler_second_moment): the first pass
    #: examines up to the highest order any node needed so far (+1), and keeps its Hermite coefficients for
    #: pass 2 when they fit in 4 times the memory budget.  Same U to the quadrature's rounding (~1e-13).
    reuse_across_nodes: bool = True

    def __post_init__(self):
        (self.t_min, self.t_max, self.beta, self.time_law, self.t_rtol, self.t_nodes_max) = check_model_options(
            self.t_min, self.t_max, self.beta, self.time_law, self.t_rtol, self.t_nodes_max)
        self.sigma_x2 = check_positive_float("sigma_x^2", self.sigma_x2)
        self.t_nodes_min = check_positive_int("number of t quadrature nodes", self.t_nodes_min)
        if self.t_nodes_min < 2:
            raise InvalidParameterError("the t quadrature needs at least 2 nodes.")
        self.b = np.asarray(self.b, dtype=np.float64)
        if self.b.shape != (self.features.p,):
            raise InvalidParameterError(f"b must have shape ({self.features.p},), got {self.b.shape}.")

    @classmethod
    def sample(cls, features: RandomFeatures, rng, **kwargs) -> "TimeIntegratedModel":
        """Draw b ~ N(0, I_p) from ``rng``."""
        return cls(features, np.random.default_rng(rng).standard_normal(features.p), **kwargs)

    # -- the model ----------------------------------------------------------------------------------------
    def alpha(self, t):
        return 1.0 / np.sqrt(delta_t(t))

    def beta_t(self, t):
        if self.beta == "none":
            return np.zeros_like(np.asarray(t, dtype=float))
        return -1.0 / (delta_t(t) + self.sigma_x2 * np.exp(-2 * np.asarray(t, dtype=float)))

    def phi(self, x, t):
        """sigma(W x/sqrt(d) + t b) for x (N, d) and scalar t or t of shape (N,)."""
        t = np.asarray(t, dtype=float)
        shift = t[..., None] * self.b if t.ndim else t * self.b
        return self.features.activation(self.features.preactivations(x) + shift)

    def score(self, A, x, t):
        """S_A(x, t) = alpha_t A phi/sqrt(p) + beta_t x, for x (N, d), scalar t."""
        return (self.alpha(t) * (self.phi(x, t) @ A.T) / math.sqrt(self.features.p)
                + self.beta_t(t) * np.asarray(x, dtype=float))

    # -- t quadrature ---------------------------------------------------------------------------------
    def _t_rule(self, nodes: int):
        """Clenshaw–Curtis in u = log t, as weights of the average over Q (uniform: density 1/(t_max - t_min)
        in t, i.e. t/(t_max - t_min) in u; log-uniform: 1/log(t_max/t_min) in u)."""
        x, w = clenshaw_curtis(nodes)
        lo, hi = math.log(self.t_min), math.log(self.t_max)
        u = 0.5 * (hi + lo) + 0.5 * (hi - lo) * x
        t = np.exp(u)
        if self.time_law == "log-uniform":
            return t, 0.5 * w
        return t, w * 0.5 * (hi - lo) * t / (self.t_max - self.t_min)

    def sample_times(self, rng, size) -> np.ndarray:
        """Draws t ~ Q."""
        if self.time_law == "log-uniform":
            return np.exp(rng.uniform(math.log(self.t_min), math.log(self.t_max), size=size))
        return rng.uniform(self.t_min, self.t_max, size=size)

    def _integrate(self, per_time):
        """E_{t~Q}[per_time(t)] for a function returning a tuple of arrays, refined by nested levels until
        the first array changes by less than t_rtol (relative Frobenius)."""
        cache = {}
        prev = None
        nodes = self.t_nodes_min
        while True:
            t, w = self._t_rule(nodes)
            vals = []
            for ti in t:
                key = round(float(ti), 15)
                if key not in cache:
                    cache[key] = per_time(float(ti))
                vals.append(cache[key])
            total = [sum(wi * v[k] for wi, v in zip(w, vals)) for k in range(len(vals[0]))]
            if prev is not None:
                change = np.linalg.norm(np.asarray(total[0]) - np.asarray(prev[0])) / max(
                    np.linalg.norm(np.asarray(total[0])), 1e-300)
                if change <= self.t_rtol:
                    self.info.update(t_nodes=nodes, t_quadrature_change=float(change))
                    return total
            if 2 * nodes - 1 > self.t_nodes_max:
                raise NumericalError(f"the t quadrature did not reach t_rtol={self.t_rtol:g} with "
                                     f"{nodes} nodes (last change {change:.3g}); raise the node limit.")
            prev, nodes = total, 2 * nodes - 1

    # -- statistics -------------------------------------------------------------------------------------
    def training_statistics(self, X, rtol: float = 1e-10) -> TrainingStatistics:
        """U, V and c of the time-integrated loss on the training set X (exact noise average per t)."""
        f = self.features
        X = f.check_data(X)
        n, d = X.shape
        directions, wnorm = _unit_rows(f.W)
        h0 = f.preactivations(X)
        sq_norm = float(np.mean(np.sum(X * X, axis=1)))
        state = {"order": KMAX_FIRST - 1}  # the highest Mehler order a node has needed so far

        def per_time(t):
            dt, a = float(delta_t(t)), float(decay(t))
            kap = math.sqrt(dt) * float(self.alpha(t))
            beta = float(self.beta_t(t))
            stds = math.sqrt(dt / d) * wnorm
            means = a * h0 + t * self.b
            speed = ({"kmax_first": max(KMAX_FIRST, state["order"] + 1), "cache_budget": None}
                     if self.reuse_across_nodes else {})
            U_t, info = mehler_second_moment(directions, stds, means, f.activation, rtol, **speed)
            state["order"] = max(state["order"], int(info["truncation_order"]))
            V_t = (1 + dt * beta) * math.sqrt(dt / d) * info["mean_derivative"][:, None] * f.W
            if beta != 0.0:
                a0, _ = f.activation.gaussian_coefficients(means, stds, 0)
                V_t = V_t + math.sqrt(dt) * beta * a * (a0[..., 0].T @ X) / n
            c_t = (dt * beta ** 2 * a * a * sq_norm + (1 + dt * beta) ** 2 * d) / d
            return kap * kap * U_t, kap * V_t, c_t

        U, V, c = self._integrate(per_time)
        return TrainingStatistics(U=U, V=V, t=self.t_min, n=n, info=dict(self.info), loss_scale=1.0,
                                  loss_constant=float(c))

    def _population_at(self, law, t, rtol):
        """(U~_t, E[phi y^T] (p, d), Tr Sigma, Sigma_t) at time t for Gaussian data y ~ P_t."""
        f = self.features
        if not hasattr(law, "sqrt_covariance_t"):
            raise InvalidParameterError("population statistics of the time-integrated model need Gaussian data.")
        L = f.W @ law.sqrt_covariance_t(t) / math.sqrt(f.d)
        directions, stds = _unit_rows(L)
        U_t, info = mehler_second_moment(directions, stds, (t * self.b)[None, :], f.activation, rtol)
        return U_t, info["mean_derivative"]

    def population_statistics(self, law, rtol: float = 1e-10) -> PopulationStatistics:
        """Integrated test-loss statistics U~, V~, c for Gaussian data (Y and score_norm are those of the
        score error at t_min; use :meth:`score_error_form` for other times)."""
        f = self.features
        d = f.d
        cov = law.covariance()
        trace = float(np.trace(cov))

        def per_time(t):
            dt, a = float(delta_t(t)), float(decay(t))
            kap = math.sqrt(dt) * float(self.alpha(t))
            beta = float(self.beta_t(t))
            U_t, dmean = self._population_at(law, t, rtol)
            # E[phi xi^T] = sqrt(Delta/d) diag(E sigma') W;  E[phi x^T] = e^{-t} diag(E sigma') W Sigma/sqrt(d)
            V_t = (1 + dt * beta) * math.sqrt(dt / d) * dmean[:, None] * f.W
            if beta != 0.0:
                V_t = V_t + math.sqrt(dt) * beta * a * a * (dmean[:, None] * f.W) @ cov / math.sqrt(d)
            c_t = (dt * beta ** 2 * a * a * trace + (1 + dt * beta) ** 2 * d) / d
            return kap * kap * U_t, kap * V_t, c_t

        U, V, c = self._integrate(per_time)
        Us, Ys, cs = self.score_error_form(law, self.t_min, rtol)
        return PopulationStatistics(U=U, V=V, Y=Ys, score_norm=cs * d, t=self.t_min, info=dict(self.info),
                                    loss_scale=1.0, loss_constant=float(c))

    def score_error_form(self, law, t, rtol: float = 1e-10):
        """(U', V', c') with E_score(t) = c' + (1/d)[Tr(A U' A^T)/p + 2 Tr(A V')/sqrt(p)]:
        U' = alpha^2 U~_t, V' = alpha diag(E sigma') W (beta Sigma_t + I)/sqrt(d),
        c' = Tr((beta I + Sigma_t^{-1})^2 Sigma_t)/d (Stein's lemma for y ~ N(0, Sigma_t))."""
        f = self.features
        alpha, beta = float(self.alpha(t)), float(self.beta_t(t))
        U_t, dmean = self._population_at(law, t, rtol)
        lam = law.spectrum_t(t)
        sig_t = law.covariance_t(t)
        Vp = alpha * (dmean[:, None] * f.W) @ (beta * sig_t + np.eye(f.d)) / math.sqrt(f.d)
        c = float(np.sum((beta + 1.0 / lam) ** 2 * lam)) / f.d
        return alpha * alpha * U_t, Vp, c

    # -- dynamics ---------------------------------------------------------------------------------------
    def gradient_flow(self, X, law=None, score_times=(), rtol: float = 1e-10) -> GradientFlow:
        """GradientFlow of the integrated loss; with a Gaussian law, the integrated test loss and the score
        error at each time in ``score_times`` (forms named "score_error@t")."""
        flow = GradientFlow(self.training_statistics(X, rtol))
        if law is not None:
            pop = self.population_statistics(law, rtol)
            flow.add_quadratic_form("test_loss", pop.U, pop.V, 1.0, pop.loss_constant)
            for t in score_times:
                Us, Vs, cs = self.score_error_form(law, t, rtol)
                flow.add_quadratic_form(f"score_error@{t:g}", Us, Vs, 1.0, cs)
        return flow

    def train_by_descent(self, X, tau_checkpoints, learning_rate, rng, optimizer="gd", max_steps=10_000_000):
        """Gradient descent (or Adam) with fresh noise and a fresh t ~ Q per point and step (the
        procedure the closed form replaces); tau = k eta/d^2.  Returns (tau, weights, seconds per step)."""
        f = self.features
        X = f.check_data(X)
        n, d = X.shape
        lr = check_positive_float("learning_rate", learning_rate)
        steps = checkpoint_steps(tau_checkpoints, lr, d, max_steps)
        rng = np.random.default_rng(rng)

        def draw():
            t = self.sample_times(rng, n)
            dt = delta_t(t)
            xi = rng.standard_normal((n, d))
            xt = decay(t)[:, None] * X + np.sqrt(dt)[:, None] * xi
            kap = np.sqrt(dt) * self.alpha(t)
            r = (np.sqrt(dt) * self.beta_t(t))[:, None] * xt + xi
            return self.phi(xt, t), kap, r

        weights, sec = descend(draw, np.zeros((d, f.p)), lr, steps, optimizer)
        return steps * lr / (d * d), weights, sec


@dataclass
class TimeIntegratedOptions:
    """The time-integrated model's options as experiment configs carry them (the CLI defaults); configs
    inherit these fields."""

    t_min: float = 0.01
    t_max: float = 2.0
    beta: str = "none"
    time_law: str = "uniform"
    t_rtol: float = 1e-5
    t_nodes_max: int = 65

    def check_time_integrated(self) -> None:
        """Validate and normalise the options in place (:func:`check_model_options`)."""
        (self.t_min, self.t_max, self.beta, self.time_law, self.t_rtol, self.t_nodes_max) = check_model_options(
            self.t_min, self.t_max, self.beta, self.time_law, self.t_rtol, self.t_nodes_max)

    def sample_model(self, features: RandomFeatures, rng, sigma_x2: float) -> TimeIntegratedModel:
        """The model with these options, b drawn from ``rng``."""
        return TimeIntegratedModel.sample(features, rng, t_min=self.t_min, t_max=self.t_max, beta=self.beta,
                                          time_law=self.time_law, sigma_x2=sigma_x2, t_rtol=self.t_rtol,
                                          t_nodes_max=self.t_nodes_max)


def spectrum_bulks(eigenvalues, n: int, d: int, min_log_gap: float = 0.5) -> list:
    """Clusters of the sorted eigenvalues separated by gaps larger than ``min_log_gap`` in log lambda
    (at most the four largest such gaps).  Returns dicts with left, right, count, in increasing order;
    clusters of fewer than max(2, d/4) eigenvalues are flagged ``outlier`` (e.g. the rank-one mean term of
    a non-centred feature map)."""
    ev = np.sort(np.asarray(eigenvalues, dtype=float))
    ev = ev[ev > 0]
    if ev.size == 0:
        return []
    gaps = np.diff(np.log(ev))
    big = np.sort(np.argsort(gaps)[::-1][:4])
    big = big[gaps[big] > min_log_gap]
    cuts = [0, *(big + 1), ev.size]
    return [{"left": float(ev[a]), "right": float(ev[b - 1]), "count": int(b - a), "mean": float(ev[a:b].mean()),
             "outlier": bool(b - a < max(2, d // 4))} for a, b in zip(cuts[:-1], cuts[1:])]


def memorization_modes(eigenvalues, population_curvature, below: float) -> np.ndarray:
    """Boolean mask of the memorization modes of U: the modes with lambda_k < ``below`` (the left edge of the
    population cluster) along which the training set carries more feature variance than the population,

        lambda_k = q_k^T U q_k > q_k^T U~ q_k  (``population_curvature``, e.g. GradientFlow.curvature).

    For the per-time model these lie in rho_1 (the training set's mean features put variance v_t^2 psi_p/psi_n
    where the population spreads v_t^2; the atom's modes have q^T U~ q >= lambda); for the time-integrated
    model, whose memorization eigenvalues do not separate from the rest by a gap, it is the reading of the
    spectrum used here (U and U~ must share one loss scale)."""
    lam = np.asarray(eigenvalues, dtype=float)
    return (lam < below) & (lam > np.asarray(population_curvature, dtype=float))


def timescales_from_spectrum(eigenvalues, n: int, d: int, psi_p: float, kappa: float,
                             population_curvature=None) -> dict:
    """tau_gen = psi_p/(kappa lambda_mean(top cluster)) and tau_mem = psi_p/(kappa lambda_min) of the memorization
    modes.  With the population's curvature q_k^T U~ q_k along the eigenvectors of U, the memorization modes
    are those of :func:`memorization_modes` (``memorization_mask``; ``tau_mem_median`` is the median of their
    timescales, ``memorization_modes`` their number); without, they are the gap-separated cluster below the
    top whose size is closest to n - d (exists only for n > d; a heuristic that fails when no gap separates
    them).  Outlier clusters (e.g. the rank-one mean term) are ignored."""
    bulks = spectrum_bulks(eigenvalues, n, d)
    out = {"bulks": bulks, "tau_gen": None, "tau_mem": None}
    main = [b for b in bulks if not b["outlier"]]
    if not main:
        out["why"] = {"tau_gen": "the spectrum has no cluster of eigenvalues", "tau_mem": "the spectrum has no "
                      "cluster of eigenvalues"}
        return out
    out["tau_gen"] = psi_p / (kappa * main[-1]["mean"])
    if population_curvature is not None:
        lam = np.asarray(eigenvalues, dtype=float)
        mem = memorization_modes(lam, population_curvature, main[-1]["left"])
        out["memorization_modes"], out["memorization_mask"] = int(mem.sum()), mem
        if mem.any():
            out["tau_mem"] = psi_p / (kappa * float(lam[mem].min()))
            out["tau_mem_median"] = psi_p / (kappa * float(np.median(lam[mem])))
        else:
            out["why"] = {"tau_mem": "no eigenmode below the population cluster has more curvature on the training "
                                     "set than on the population (no memorization mode)"}
        return out
    others = main[:-1]
    if others and n > d:
        mem = min(others, key=lambda b: abs(b["count"] - (n - d)))
        out["tau_mem"] = psi_p / (kappa * mem["left"])
    else:
        out["why"] = {"tau_mem": f"n = {n} <= d = {d}: no memorization cluster" if n <= d else
                      "no gap in the spectrum separates a memorization cluster from the population one"}
    return out


def _first_crossing(tau, values, level) -> float | None:
    """First tau at which ``values`` reaches ``level`` from below, interpolated linearly in log tau."""
    k = np.nonzero(values >= level)[0]
    if k.size == 0:
        return None
    k = int(k[0])
    if k == 0:
        return float(tau[0])
    x0, x1, y0, y1 = math.log(tau[k - 1]), math.log(tau[k]), values[k - 1], values[k]
    return float(math.exp(x0 + (level - y0) / (y1 - y0) * (x1 - x0)))


def timescales_from_curves(tau, train_loss, test_loss) -> dict:
    """From loss curves on a log grid of tau (from near 0 to the end of training): tau_gen = the first tau at
    which the test loss has made half of its drop from tau_0 to its minimum; tau_mem = the first tau at which
    the generalization gap (test - train) reaches half its value at the largest tau (both interpolated in
    log tau); ``tau_test_min`` = the tau of the smallest test loss, which memorization pulls along with n."""
    tau = np.asarray(tau, dtype=float)
    fin = np.isfinite(tau)
    tau, train, test = tau[fin], np.asarray(train_loss, float)[fin], np.asarray(test_loss, float)[fin]
    gap = test - train
    k = int(np.argmin(test))
    drop = test[0] - test[k]
    tau_gen = _first_crossing(tau, -test, -(test[0] - 0.5 * drop)) if drop > 0 else None
    tau_mem = _first_crossing(tau, gap, 0.5 * gap[-1]) if gap[-1] > 0 else None
    out = {"tau_gen": tau_gen, "tau_mem": tau_mem, "tau_test_min": float(tau[k])}
    why = {}
    if tau_gen is None:
        why["tau_gen"] = ("the test loss never falls below its first value" if drop <= 0 else
                          "the test loss makes half its drop before the first tau of the grid")
    if tau_mem is None:
        why["tau_mem"] = ("the generalization gap at the largest tau is not positive" if gap[-1] <= 0 else
                          "the gap reaches half its final value before the first tau of the grid")
    if why:
        out["why"] = why
    return out


# -- memorization modes by their share of the generalization gap (issue 15) ------------------------------

@dataclass
class ModeContributions:
    """Per-mode contributions of U's eigenmodes to the train loss, the test loss and the gap at given tau.

    With A(0) = 0 the flow is D(tau) = A Q/sqrt(p) = -(1/sqrt(kappa)) diag(g) B, B = Q^T V, g_k = (1 - e^{-2 kappa
    lambda_k tau/psi_p})/lambda_k, and (dynamics.GradientFlow) the losses are quadratic in g:

        L_train - c  = (1/d) sum_k (lambda_k g_k^2 - 2 g_k) |B_k|^2,
        L_test  - c~ = (1/d) [ (s/kappa) g^T H g - 2 sqrt(s/kappa) g . b ],  H = (Q^T U~ Q) o (B B^T),
                                                                           b_k = B_k . (Q^T V~)_k.

    In the game "these modes trained to tau, the others frozen at A = 0", mode k's contribution is either
    its sequential marginal (modes added fastest first; :func:`mode_contributions`) or its Shapley value: for
    a quadratic f(g) = a . g + g^T H g, a_k g_k + g_k (H g)_k (each cross term split evenly), which equals
    (1/2)[f(only k) - f(none)] + (1/2)[f(all) - f(all but k)].  Either way the contributions sum exactly to
    L(tau) - L(0) (train, test) and to gap(tau) - gap(0).  Arrays are (p, T) for T values of tau; the
    timescales are psi_p/(kappa lambda_k) (docs/theory.md §7.1).
    """

    tau: np.ndarray
    timescales: np.ndarray
    eigenvalues: np.ndarray
    train: np.ndarray
    test: np.ndarray

    @property
    def gap(self) -> np.ndarray:
        return self.test - self.train


def _flow_with_form(flow_or_stats, form):
    if not isinstance(flow_or_stats, GradientFlow):
        raise InvalidParameterError("mode contributions need a GradientFlow (see mode_contributions_of_matrices).")
    flow = flow_or_stats
    if form not in flow._forms:
        raise InvalidParameterError(f"the flow has no quadratic form {form!r} (add the test loss first).")
    if flow._A0 is not None:
        raise InvalidParameterError("mode contributions are defined for training from A(0) = 0.")
    return flow


ATTRIBUTIONS = ("sequential", "shapley")


def mode_contributions(flow: GradientFlow, tau=np.inf, form: str = "test_loss",
                       attribution: str = "sequential") -> ModeContributions:
    """Contributions of every eigenmode of U to the train loss, to the registered form ``form`` (the test loss)
    and to their gap, at each tau (:class:`ModeContributions`; tau = inf is the ridgeless end).

    ``attribution``: "sequential" (default) adds the modes in the order of their timescales, fastest first,
    and gives mode k its marginal f(faster modes and k) - f(faster modes): a_k g_k + H_kk g_k^2 + 2 g_k
    sum_{l faster} H_kl g_l (each cross term to the slower mode of the pair, when it appears along the flow),
    so the cumulative sum over the modes faster than tau is the loss of the "step" flow in which those
    modes have relaxed and the others not yet moved; "shapley": a_k g_k + g_k (H g)_k (each cross term
    split evenly).  Both sum exactly to L(tau) - L(0).  The train loss is diagonal (both agree)."""
    from .dynamics import as_tau_array

    if attribution not in ATTRIBUTIONS:
        raise InvalidParameterError(f"attribution must be one of {', '.join(ATTRIBUTIONS)}, got {attribution!r}.")
    flow = _flow_with_form(flow, form)
    f = flow._forms[form]
    tau, g, _ = flow._modes(as_tau_array(tau))
    lam = flow.eigenvalues[:, None]
    bb = flow._c_bb[:, None]
    train = (lam * g * g - 2.0 * g) * bb / flow.d
    s, k = f["scale"], flow.kappa
    H = f["H_bb"]
    if attribution == "shapley":
        quad = g * (H @ g)
    else:
        # eigenvalues ascend, so the modes faster than k (larger lambda) are those with a larger index
        quad = g * (np.diag(H)[:, None] * g + 2.0 * (np.triu(H, 1) @ g))
    test = (s / k * quad - 2.0 * math.sqrt(s / k) * g * f["c_bv"][:, None]) / flow.d
    return ModeContributions(tau=tau, timescales=flow.timescales, eigenvalues=flow.eigenvalues.copy(),
                             train=train, test=test)


def flow_of_matrices(U, V, U_pop, V_pop, kappa: float = 1.0, kappa_pop: float | None = None) -> GradientFlow:
    """The GradientFlow of a training loss (U, V, kappa) with the test loss (U~, V~, kappa~) registered as
    "test_loss" (kappa~ defaults to kappa; the constants are 0, they do not enter the contributions), for
    :func:`mode_contributions` and :func:`gap_share_timescales` on matrices from any model."""
    U = check_finite_array("U", U, ndim=2)
    V = check_finite_array("V", V, ndim=2)
    kappa = check_positive_float("kappa", kappa)
    kappa_pop = kappa if kappa_pop is None else check_positive_float("kappa of the test loss", kappa_pop)
    stats = TrainingStatistics(U=U, V=V, t=1.0, n=1, loss_scale=kappa, loss_constant=0.0)
    flow = GradientFlow(stats)
    flow.add_quadratic_form("test_loss", check_finite_array("U~", U_pop, ndim=2),
                            check_finite_array("V~", V_pop, ndim=2), kappa_pop, 0.0)
    return flow


def mode_contributions_of_matrices(U, V, U_pop, V_pop, kappa: float = 1.0, kappa_pop: float | None = None,
                                   tau=np.inf, attribution: str = "sequential") -> ModeContributions:
    """:func:`mode_contributions` of :func:`flow_of_matrices`."""
    return mode_contributions(flow_of_matrices(U, V, U_pop, V_pop, kappa, kappa_pop), tau,
                              attribution=attribution)


def _weighted_quantile_time(timescales, weights, share: float) -> float | None:
    """The smallest mode timescale tau_k (modes sorted by tau_k, fastest first) at which the cumulative sum
    of ``weights`` first reaches ``share`` of their total; None if the total is not positive."""
    order = np.argsort(timescales, kind="stable")
    w = np.asarray(weights, dtype=float)[order]
    total = float(w.sum())
    if not total > 0:
        return None
    cum = np.cumsum(w)
    k = int(np.argmax(cum >= share * total - 1e-15 * abs(total)))
    return float(np.asarray(timescales)[order][k])


def check_share(share) -> float:
    share = check_positive_float("gap share", share)
    if share >= 1.0:
        raise InvalidParameterError(f"the gap share must lie in (0, 1), got {share:g}.")
    return share


def gap_share_timescales(flow: GradientFlow, share: float = 0.5, form: str = "test_loss",
                         grid_points: int = 400) -> dict:
    """tau_mem and tau_gen read off the spectrum by the modes' shares of the losses (issue 15).

    With the sequential contributions of :func:`mode_contributions` (modes added fastest first, tau_k =
    psi_p/(kappa lambda_k)), the cumulative sum over the modes with tau_k <= tau is the loss of the "step"
    flow in which those modes have fully relaxed and the slower ones not yet moved.  tau_mem is the first
    tau_k at which the step flow's generalization gap reaches ``share`` of gap(inf) - gap(0) (the spectral
    counterpart of "the gap reaches half its final value" on the loss curves; the modes up to it are the
    memorization modes that carry that share).  tau_gen is the first tau_k at which the step flow's test
    loss, with each mode at its value g_k(tau*) at the minimum tau* of the test loss (closed form, on a log
    grid of ``grid_points`` from 1e-2 of the fastest to 10 times the slowest finite timescale), has made
    ``share`` of its drop L(tau*) - L(0).

    The step flow replaces the gradual relaxation of g_k (e-folding time tau_k/2) by a step at tau_k, so each
    reading differs from its loss-curve counterpart by a factor of order one, the same at every n when the
    relaxation profile is: the n-scaling is what the two readings must share.  Also returned:
    ``memorization_modes`` (the number of modes up to tau_mem that add to the gap), the totals, tau* and the
    contributions at tau = inf."""
    share = check_share(share)
    grid_points = check_positive_int("number of grid points", grid_points)
    mc = mode_contributions(flow, np.inf, form)
    G = mc.gap[:, 0]
    ts = mc.timescales
    fin = np.isfinite(ts)
    if not fin.any():
        raise InvalidParameterError("U has no mode with a finite timescale (U = 0).")
    lo, hi = float(ts[fin].min()) * 1e-2, float(ts[fin].max()) * 10.0
    grid = np.geomspace(lo, hi, max(grid_points, 2))
    test = flow.quadratic_form(form, grid)
    tau_star = float(grid[int(np.argmin(test))])
    T = mode_contributions(flow, tau_star, form).test[:, 0]
    tau_mem = _weighted_quantile_time(ts[fin], G[fin], share)
    count = int(np.sum((ts <= tau_mem) & (G > 0))) if tau_mem is not None else 0
    return {"tau_mem": tau_mem, "tau_gen": _weighted_quantile_time(ts[fin], -T[fin], share),
            "gap_total": float(G.sum()), "test_drop_total": float(-T.sum()), "tau_test_min": tau_star,
            "memorization_modes": count, "share": share, "contributions": mc}


def generalized_curvature_modes(U, U_pop, floor_rtol: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """The generalized eigenproblem U q = mu U~ q: directions in which the training set's feature curvature
    exceeds the population's (mu > 1).  Returns (mu ascending, q as columns, U~-orthonormal:
    q^T U~ q = I, q^T U q = diag(mu)).  U~ must be positive definite (its eigenvalues above ``floor_rtol``
    times the largest), else NumericalError."""
    import scipy.linalg

    U = check_finite_array("U", U, ndim=2)
    U_pop = check_finite_array("U~", U_pop, ndim=2)
    if U.shape != U_pop.shape or U.shape[0] != U.shape[1]:
        raise InvalidParameterError(f"U and U~ must be square of one shape, got {U.shape} and {U_pop.shape}.")
    ev = np.linalg.eigvalsh(U_pop)
    if ev[0] <= floor_rtol * ev[-1]:
        raise NumericalError(f"U~ is not positive definite (smallest eigenvalue {ev[0]:.3g}, largest "
                             f"{ev[-1]:.3g}); the generalized eigenproblem is ill-posed.")
    mu, q = scipy.linalg.eigh(U, U_pop)
    return mu, q


# -- the n-scaling of tau_mem from both readings (issue 15) ---------------------------------------------------

def fit_slope(n, tau) -> tuple:
    """Least-squares slope of log tau against log n over the finite positive values, with its standard
    error sqrt(RSS/(m - 2) / sum (log n - mean)^2) ((None, None) with fewer than two distinct n; error None
    with fewer than three points)."""
    n, tau = np.asarray(n, dtype=float), np.asarray(tau, dtype=float)
    ok = np.isfinite(tau) & (tau > 0)
    x, y = np.log(n[ok]), np.log(tau[ok])
    if np.unique(x).size < 2:
        return None, None
    slope, icpt = np.polyfit(x, y, 1)
    if x.size < 3:
        return float(slope), None
    resid = y - (slope * x + icpt)
    return float(slope), math.sqrt(float(resid @ resid) / (x.size - 2) / float(np.sum((x - x.mean()) ** 2)))
