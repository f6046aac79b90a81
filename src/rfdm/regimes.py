"""Regimes of the backward dynamics with the exact or the empirical score (THEORY §6; [B24]).

Formulas (each in one place):

* speciation time t_S = (1/2) log Lambda, Lambda the top eigenvalue of the data covariance
  (:func:`speciation_time`; for the mixture, Lambda = |m|^2 + sigma_x^2 and the formula is
  :meth:`rfdm.data.MixtureData.speciation_time`);
* clone-agreement probability at the branching time t for the two-cluster mixture,
  phi(t) = (1/2) int dx (G_+^2 + G_-^2)/(G_+ + G_-), G_+- the densities of N(+-|m| e^{-t}, Gamma_t^2).
  Writing it as E_{x ~ G_+}[P(+ | x)] gives phi(t) = 1/2 + (1/2) E_z tanh(mu (mu + Gamma_t z)/Gamma_t^2),
  mu = |m| e^{-t}, z ~ N(0, 1), computed by Gauss–Hermite quadrature (:func:`clone_agreement`);
* collapse time with the empirical score of n points: the trajectory collapses onto its training point
  when the information x_t carries about x_0 exceeds log n.  Per dimension,
  f_0(t) = I(x_0; x_t)/d = [H(P_t) - (d/2) log(2 pi e Delta_t)]/d (:func:`excess_entropy`), and t_C solves
  f_0(t_C) = alpha = log(n)/d (:func:`collapse_time`).  For Gaussian data this is THEORY's
  (1/d) sum_i log(1 + lambda_i/(e^{2 t_C} - 1)) = 2 alpha, and for isotropic data
  t_C = (1/2) log(1 + sigma_x^2/(e^{2 alpha} - 1)) (:func:`collapse_time_isotropic`).  For the mixture,
  f_0(t) = (1/2) log(Gamma_t^2/Delta_t) + (1/d)[log 2 - E_z softplus(-2 mu (mu + Gamma_t z)/Gamma_t^2)]
  (the entropy of the 1-D mixture along m by Gauss–Hermite); the isotropic formula is its d -> infinity limit.

Simulations:

* :func:`simulate_clone_agreement` — run the backward process from T, stop at a branching time t, continue
  a clone with independent noise down to t_min and compare the end modes (or end training points) of the
  clone and of the original trajectory: the fraction that agree estimates phi(t);
* :func:`simulate_collapse` — the backward process with the empirical score; at each recorded time t the
  probability that two clones from x_t end on the same training point, both by clone simulation and
  from the posterior weights, sum_mu w_mu(x_t)^2 (in continuous time the backward process with the exact
  score of the noised empirical law ends at a_mu with probability w_mu(x_t), so the two agree).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.optimize
from scipy.special import logsumexp, ndtr

from .activations import gauss_hermite
from .data import EmpiricalData, GaussianData, MixtureData
from .diffusion import check_time, decay, delta_t
from .errors import InvalidParameterError, check_finite_array, check_positive_float, check_positive_int
from .sampling import EmpiricalScore, sample, time_grid

#: Gauss–Hermite nodes of the one-dimensional averages over z ~ N(0, 1)
QUAD_NODES = 200


# -- speciation ----------------------------------------------------------------------------------------

def speciation_time(law) -> float:
    """t_S = (1/2) log Lambda, Lambda the top eigenvalue of the data covariance (negative when Lambda < 1:
    no speciation).  Takes a MixtureData, a GaussianData, an EmpiricalData (its sample covariance) or an
    (n, d) array of points."""
    if isinstance(law, MixtureData):
        return law.speciation_time()
    if isinstance(law, GaussianData):
        lam = float(np.max(law.spectrum))
    else:
        pts = law.points if isinstance(law, EmpiricalData) else check_finite_array("data", law, ndim=2)
        if pts.shape[0] < 2:
            raise InvalidParameterError("the covariance of the data needs at least 2 points.")
        lam = float(np.linalg.eigvalsh(np.atleast_2d(np.cov(pts, rowvar=False)))[-1])
    if lam <= 0:
        raise InvalidParameterError("the data covariance has no positive eigenvalue.")
    return 0.5 * math.log(lam)


def _mixture_params(t, m_norm, sigma_x):
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise InvalidParameterError("diffusion times must be finite and > 0.")
    m_norm = check_positive_float("m_norm", m_norm, allow_zero=True)
    sigma_x = check_positive_float("sigma_x", sigma_x)
    mu = m_norm * decay(t)
    g2 = delta_t(t) + sigma_x ** 2 * np.exp(-2 * t)
    return t, mu, g2


def clone_agreement(t, m_norm: float, sigma_x: float = 1.0):
    """phi(t) = (1/2) int (G_+^2 + G_-^2)/(G_+ + G_-) = 1/2 + (1/2) E_z tanh(mu (mu + Gamma_t z)/Gamma_t^2)
    for the mixture with |m| = ``m_norm`` (vectorised over t; a float for a scalar t)."""
    scalar = np.ndim(t) == 0
    t, mu, g2 = _mixture_params(t, m_norm, sigma_x)
    z, w = gauss_hermite(QUAD_NODES)
    x = mu[:, None] + np.sqrt(g2)[:, None] * z[None, :]
    phi = 0.5 + 0.5 * np.tanh(mu[:, None] * x / g2[:, None]) @ w
    return float(phi[0]) if scalar else phi


def label_posterior(t, m_norm: float, s, sigma_x: float = 1.0):
    """P(c = +1 | x_t) for the two-cluster mixture, a function of s = x_t.m/|m| only:
    sigmoid(2 mu s/Gamma_t^2), mu = |m| e^{-t} (the posterior weight of the + cluster in the exact score)."""
    t = check_time(t)
    _, mu, g2 = _mixture_params(t, m_norm, sigma_x)
    s = np.asarray(s, dtype=np.float64)
    return 0.5 * (1.0 + np.tanh(mu[0] * s / g2[0]))


def sign_agreement(t, m_norm: float, sigma_x: float = 1.0, t_end: float = 0.0):
    """Probability that two clones branched at time t end with the same sign of x.m at time t_end < t (exact
    score, continuous time): the sign-based counterpart of :func:`clone_agreement` (derived for this project).

    Along m the problem is one-dimensional.  At t_end the coordinate s_e = x_{t_end}.m/|m| is
    c mu_e + Gamma_e z (c = +-1, mu_e = |m| e^{-t_end}, Gamma_e^2 = Delta_{t_end} + sigma_x^2 e^{-2 t_end}); from
    t_end to t it follows the OU process for u = t - t_end, s_t = e^{-u} s_e + sqrt(Delta_u) xi, so
    Gamma_t^2 = e^{-2u} Gamma_e^2 + Delta_u.  Given c and s_t, s_e is Gaussian with mean
    m_c = c mu_e + Gamma_e^2 e^{-u}(s_t - c mu_e e^{-u})/Gamma_t^2 and variance Gamma_e^2 Delta_u/Gamma_t^2,
    so the backward process from s_t ends with s_e > 0 with probability
    p_+(s_t) = sum_c P(c | s_t) Phi(m_c/sd), and two independent clones agree with probability
    p_+^2 + (1 - p_+)^2.  Averaged over s_t ~ N(mu, Gamma_t^2) (by the symmetry s -> -s the - cluster gives
    the same), by composite Gauss–Legendre quadrature (pieces resolving the steps of Phi, which sharpen as
    t -> t_end):

        phi_sign(t) = E_{s_t ~ N(mu, Gamma_t^2)}[p_+(s_t)^2 + (1 - p_+(s_t))^2],   mu = |m| e^{-t}.

    It differs from the label agreement phi(t) of [B24] (:func:`clone_agreement`) where the clusters overlap
    (|m| = O(sigma_x)): at |m| = 2, sigma_x = 1, t = 0.05 phi = 0.957 and phi_sign = 0.978; the two coincide
    when the clusters are well separated.  Vectorised over t (all t > t_end)."""
    scalar = np.ndim(t) == 0
    t, mu, g2 = _mixture_params(t, m_norm, sigma_x)
    t_end = check_positive_float("t_end", t_end, allow_zero=True)
    if np.any(t <= t_end):
        raise InvalidParameterError(f"the branching times must be later than t_end = {t_end:g}.")
    mu_e = m_norm * math.exp(-t_end)
    g2_e = float(delta_t(t_end)) + sigma_x ** 2 * math.exp(-2 * t_end) if t_end > 0 else sigma_x ** 2
    xg, wg = np.polynomial.legendre.leggauss(SIGN_NODES)
    phi = np.empty(t.size)
    for i, (ti, mui, g2i) in enumerate(zip(t, mu, g2)):
        u = ti - t_end
        decay_u, delta_u = math.exp(-u), -math.expm1(-2 * u)
        sd = math.sqrt(g2_e * delta_u / g2i)
        gain = g2_e * decay_u / g2i
        gam = math.sqrt(g2i)
        # composite Gauss–Legendre in s_t over mu +- 12 Gamma_t, pieces no wider than a quarter of the scales
        # on which the integrand changes (Gamma_t, and the width sd/gain of the Phi steps)
        width = 0.25 * min(gam, sd / gain if gain > 0 else gam)
        lo, hi = mui - 12 * gam, mui + 12 * gam
        k = int(min(MAX_SIGN_PIECES, max(8, math.ceil((hi - lo) / width))))
        edges = np.linspace(lo, hi, k + 1)
        half = 0.5 * (edges[1:] - edges[:-1])
        st = (half[:, None] * xg[None, :] + 0.5 * (edges[1:] + edges[:-1])[:, None]).ravel()
        density = np.exp(-0.5 * ((st - mui) / gam) ** 2) / (gam * math.sqrt(2 * math.pi))
        w = (half[:, None] * wg[None, :]).ravel() * density
        post_plus = 0.5 * (1.0 + np.tanh(mui * st / g2i))
        mean_plus = mu_e + gain * (st - mu_e * decay_u)
        mean_minus = -mu_e + gain * (st + mu_e * decay_u)
        p_plus = post_plus * ndtr(mean_plus / sd) + (1 - post_plus) * ndtr(mean_minus / sd)
        phi[i] = float(np.dot(w, p_plus ** 2 + (1 - p_plus) ** 2))
    return float(phi[0]) if scalar else phi


#: Gauss–Legendre nodes per piece, and the largest number of pieces, of the s_t integral of sign_agreement
SIGN_NODES = 16
MAX_SIGN_PIECES = 20000


# -- collapse ------------------------------------------------------------------------------------------

def excess_entropy(law, t):
    """f_0(t) = I(x_0; x_t)/d = [H(P_t) - (d/2) log(2 pi e Delta_t)]/d for a GaussianData, a MixtureData, or
    a 1-D array of covariance eigenvalues (a Gaussian law).  Vectorised over t."""
    scalar = np.ndim(t) == 0
    t = np.atleast_1d(np.asarray(t, dtype=np.float64))
    if np.any(~np.isfinite(t)) or np.any(t <= 0):
        raise InvalidParameterError("diffusion times must be finite and > 0.")
    em1 = np.expm1(2 * t)  # e^{2t} - 1
    if isinstance(law, MixtureData):
        _, mu, g2 = _mixture_params(t, law.m_norm, law.sigma_x)
        z, w = gauss_hermite(QUAD_NODES)
        y = -2 * mu[:, None] * (mu[:, None] + np.sqrt(g2)[:, None] * z[None, :]) / g2[:, None]
        soft = np.logaddexp(0.0, y) @ w
        f = 0.5 * np.log1p(law.sigma_x ** 2 / em1) + (math.log(2.0) - soft) / law.d
    else:
        lam = law.spectrum if isinstance(law, GaussianData) else check_finite_array(
            "covariance eigenvalues", np.atleast_1d(law), ndim=1)
        if np.any(lam < 0):
            raise InvalidParameterError("covariance eigenvalues must be >= 0.")
        f = 0.5 * np.mean(np.log1p(lam[None, :] / em1[:, None]), axis=1)
    return float(f[0]) if scalar else f


def collapse_time(law, n: int) -> float:
    """t_C solving f_0(t_C) = log(n)/d (see :func:`excess_entropy`), for n training points of ``law``
    (a GaussianData, a MixtureData, or covariance eigenvalues).  f_0 decreases from +inf (t -> 0) to 0
    (t -> inf), so the root is unique; found by Brent's method in log(e^{2t} - 1)."""
    n = check_positive_int("n", n)
    if n < 2:
        raise InvalidParameterError("the collapse time needs at least 2 training points.")
    d = law.d if hasattr(law, "d") else np.atleast_1d(law).size
    alpha = math.log(n) / d

    def g(v):  # v = log(e^{2t} - 1)
        return excess_entropy(law, 0.5 * math.log1p(math.exp(v))) - alpha

    lo, hi = -60.0, 60.0
    if g(lo) < 0 or g(hi) > 0:
        raise InvalidParameterError("no collapse time in the range t in (1e-26, 30): check the data law and n.")
    v = scipy.optimize.brentq(g, lo, hi, xtol=1e-14, rtol=1e-14, maxiter=500)
    return 0.5 * math.log1p(math.exp(v))


def collapse_time_isotropic(alpha: float, sigma_x: float = 1.0) -> float:
    """t_C = (1/2) log(1 + sigma_x^2/(e^{2 alpha} - 1)) for isotropic Gaussian data and n = e^{alpha d}."""
    alpha = check_positive_float("alpha", alpha)
    sigma_x = check_positive_float("sigma_x", sigma_x)
    return 0.5 * math.log1p(sigma_x ** 2 / math.expm1(2 * alpha))


def posterior_agreement(points, x, t, memory_budget: int = 32 * 2 ** 20) -> np.ndarray:
    """sum_mu w_mu(x, t)^2 for every row of x, w the posterior weights of the empirical score of ``points``
    (softmax of -|x - e^{-t} a_mu|^2/(2 Delta_t)), in batches within ``memory_budget`` bytes."""
    data = points if isinstance(points, EmpiricalData) else EmpiricalData(points)
    t = check_time(t)
    x = check_finite_array("x", x, ndim=2)
    rows = max(1, min(x.shape[0], memory_budget // (8 * 3 * data.n)))
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], rows):
        lw = data.log_weights(x[s:s + rows], t)
        out[s:s + rows] = np.exp(logsumexp(2 * lw, axis=1))
    return out


def crossing_time(t, y, level: float = 0.5):
    """The time where y(t) crosses ``level`` going from above (small t) to below (large t), by linear
    interpolation in log t between the last point above and the next one; None if it never crosses."""
    t = np.asarray(t, dtype=float)
    y = np.asarray(y, dtype=float)
    order = np.argsort(t)
    t, y = t[order], y[order]
    above = np.nonzero(y >= level)[0]
    if above.size == 0 or above[-1] == t.size - 1:
        return None
    k = above[-1]
    w = (y[k] - level) / (y[k] - y[k + 1])
    return float(math.exp(math.log(t[k]) + w * (math.log(t[k + 1]) - math.log(t[k]))))


# -- simulations ---------------------------------------------------------------------------------------

def _child(seed, *key) -> np.random.SeedSequence:
    ss = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
    return np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + tuple(key), pool_size=ss.pool_size)


def simulate_clone_agreement(score, classify, n: int, branch_times, T: float = 8.0, t_min: float = 0.01,
                             steps: int = 200, grid: str = "geometric", integrator: str = "exponential",
                             seed=0, progress=None, soft: bool = False, **sample_kwargs) -> dict:
    """Clone experiment: ``n`` trajectories of the backward process from T to t_min record their state at
    every branching time t_j; from each such state a clone continues to t_min with independent noise.
    ``classify(x) -> labels`` gives the end class (e.g. the sign of x.m, or the nearest training point), read
    on the states at t_min (the sampler's final denoising step is off unless ``denoise=True`` is passed).
    With ``soft=True``, ``classify(x)`` returns class probabilities (n, K) instead and a pair agrees with
    probability sum_k P_k(x) P_k(x') (e.g. the cluster labels drawn from their posterior at t_min).
    Returns the branching times, the mean agreement of the clone/original pairs, its standard error
    (binomial for hard classes), and the grid and final samples of the originals.

    Streams: originals use SeedSequence key (1,), the clones at branching time j key (2, j).
    """
    n = check_positive_int("n", n)
    sample_kwargs.setdefault("denoise", False)
    bt = np.sort(np.atleast_1d(np.asarray(branch_times, dtype=np.float64)))[::-1]
    grid_t = time_grid(T, t_min, steps, grid, include=bt)
    main = sample(score, n, times=grid_t, seed=_child(seed, 1), record_times=bt, integrator=integrator,
                  **sample_kwargs)
    ref = np.asarray(classify(main.samples))
    if soft and (ref.ndim != 2 or ref.shape[0] != n):
        raise InvalidParameterError("with soft=True, classify must return class probabilities of shape (n, K).")
    agree, var = np.empty(bt.size), np.empty(bt.size)
    for j, t in enumerate(bt):
        k = int(np.nonzero(np.isclose(grid_t, t, rtol=1e-12, atol=0))[0][0])
        clone = sample(score, n, times=grid_t[k:], seed=_child(seed, 2, j), x_init=main.recorded[j],
                       integrator=integrator, **sample_kwargs)
        end = np.asarray(classify(clone.samples))
        pair = np.sum(end * ref, axis=1) if soft else (end == ref).astype(float)
        agree[j] = float(np.mean(pair))
        var[j] = float(np.var(pair))
        if progress is not None:
            progress(j + 1, bt.size)
    stderr = np.sqrt(np.maximum(var, 0.25 / n) / n)
    return {"t": bt[::-1].copy(), "agreement": agree[::-1].copy(), "stderr": stderr[::-1].copy(), "n": n,
            "grid": grid_t, "samples": main.samples, "recorded": main.recorded[::-1].copy()}


def mode_classifier(m):
    """classify(x) = sign of x.m (the nearer of the two centres of the mixture)."""
    m = check_finite_array("m", m, ndim=1)
    return lambda x: np.where(x @ m > 0, 1, -1)


def nearest_point_classifier(points, memory_budget: int = 32 * 2 ** 20):
    """classify(x) = index of the nearest training point (blocked search of rfdm.metrics)."""
    from .metrics import nearest_neighbours

    points = check_finite_array("points", points, ndim=2)
    return lambda x: nearest_neighbours(x, points, 1, memory_budget)[1][:, 0]


def label_classifier(law: MixtureData, t_end: float):
    """classify(x) = (P(+ | x_{t_end}), P(- | x_{t_end})), the posterior of the cluster label given the state at
    t_end (:func:`label_posterior`), for soft clone simulations of the label agreement phi(t)."""
    if not isinstance(law, MixtureData):
        raise InvalidParameterError("cluster labels are defined for the two-cluster mixture.")
    t_end = check_time(t_end)
    u = law.m / law.m_norm if law.m_norm > 0 else law.m

    def classify(x):
        p = label_posterior(t_end, law.m_norm, np.asarray(x) @ u, law.sigma_x)
        return np.stack([p, 1.0 - p], axis=1)

    return classify


PHI_KINDS = ("label", "sign")


def simulate_phi(law: MixtureData, n: int, branch_times, score=None, kind: str = "label", **kwargs) -> dict:
    """Clone simulation of the speciation curve with the exact mixture score (or ``score``), each reading
    against its own formula (key ``theory``):

    * ``kind="label"`` (default): the cluster label of each end point x_{t_min} is drawn from its posterior
      P(c | x_{t_min}) (soft: a pair agrees with probability sum_c P(c|x) P(c|x')).  In continuous time with
      the exact score, E[P(c | x_{t_min}) | x_t] = P(c | x_t) (the labels form a martingale backward), so the
      expected agreement is E sum_c P(c | x_t)^2 = phi(t) of [B24] (:func:`clone_agreement`) whatever t_min;
    * ``kind="sign"``: the class of an end point is the sign of x_{t_min}.m; its agreement probability is
      :func:`sign_agreement` (t_end = t_min), which differs from phi(t) where the clusters overlap.

    The end states are read at t_min, before any final denoising step."""
    from .sampling import ExactScore

    if not isinstance(law, MixtureData):
        raise InvalidParameterError("the clone-agreement probability phi is defined for the two-cluster mixture.")
    if kind not in PHI_KINDS:
        raise InvalidParameterError(f"kind must be one of {', '.join(PHI_KINDS)}, got {kind!r}.")
    t_min = kwargs.get("t_min", 0.01)
    if kind == "label":
        res = simulate_clone_agreement(score or ExactScore(law), label_classifier(law, t_min), n, branch_times,
                                       soft=True, **kwargs)
        res["theory"] = clone_agreement(res["t"], law.m_norm, law.sigma_x)
    else:
        res = simulate_clone_agreement(score or ExactScore(law), mode_classifier(law.m), n, branch_times, **kwargs)
        res["theory"] = sign_agreement(res["t"], law.m_norm, law.sigma_x, t_end=t_min)
    res["kind"] = kind
    return res


def simulate_collapse(points, n: int, branch_times, clones: bool = True, **kwargs) -> dict:
    """Collapse onto the training points with the empirical score of ``points``.

    At each branching time t: ``weights``, the mean over trajectories of sum_mu w_mu(x_t)^2, with its
    standard error; and (``clones``) ``agreement``, the fraction of clone/original pairs that end nearest to
    the same training point.  Both estimate the probability that two clones from x_t end on the same point;
    it rises from about 0 above the collapse time to 1 below it.
    """
    points = check_finite_array("points", points, ndim=2)
    if points.shape[0] < 2:
        raise InvalidParameterError("the collapse simulation needs at least 2 training points.")
    data = EmpiricalData(points, batch_size=min(2048, points.shape[0]))
    score = EmpiricalScore(data)
    bt = np.sort(np.atleast_1d(np.asarray(branch_times, dtype=np.float64)))
    if clones:
        res = simulate_clone_agreement(score, nearest_point_classifier(points), n, bt, **kwargs)
    else:
        keys = {k: kwargs[k] for k in ("T", "t_min", "steps", "grid") if k in kwargs}
        run = sample(score, n, record_times=bt[::-1], seed=_child(kwargs.get("seed", 0), 1),
                     integrator=kwargs.get("integrator", "exponential"), **keys)
        res = {"t": bt, "n": n, "grid": run.times, "samples": run.samples, "recorded": run.recorded[::-1].copy()}
    w = np.array([posterior_agreement(data, x, t) for x, t in zip(res["recorded"], res["t"])])
    res["weights"] = w.mean(axis=1)
    res["weights_stderr"] = w.std(axis=1, ddof=1) / math.sqrt(n) if n > 1 else np.full(bt.size, np.nan)
    return res
