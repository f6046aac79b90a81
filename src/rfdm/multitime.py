"""A multi-time Gaussian equivalent of the time-integrated U (issue 15; docs/theory.md §7.2).

The time-integrated training matrix is U = sum_j w_j kappa_j^2 U_{t_j} over the nodes t_j of the t quadrature
(:class:`rfdm.time_integrated.TimeIntegratedModel`), each U_t the exact noise average of the features
sigma(h_i), h_i = W_i x_t/sqrt(d) + t b_i.  Per feature i and node t, with l_i = |w_i|/sqrt(d), data
x ~ N(0, sigma_x^2 I), u_i = w_i.x/(|w_i| sigma_x) ~ N(0, 1), c_i = e^{-t} sigma_x l_i, r_i = sqrt(Delta_t) l_i
and the noise-averaged feature g_i(u, t) = E_zeta sigma(t b_i + c_i u + r_i zeta):

    mu0_i(t)   = E_u g_i,                alpha_i(t) = E_u[g_i u] (= c_i E sigma', Stein),
    beta_i(t)  = r_i E sigma'(h_i)       (the noise-linear part),
    rho_i(u,t) = g_i(u, t) - mu0_i(t) - alpha_i(t) u          (the data-nonlinear part),
    C_i(t, t') = E_u[rho_i(u, t) rho_i(u, t')]                 (its cross-time covariance; v_i^2(t) = C_i(t, t)),
    s_i^2(t)   = E sigma(h_i)^2 - mu0_i^2 - alpha_i^2 - v_i^2 - beta_i^2.

The equivalent matrix replaces, for every training point nu, the data-nonlinear parts rho_i(u_{i nu}, t_j) by a
Gaussian vector Omega_{i nu} over the nodes with covariance C_i, independent across features and points:

    U_eq = sum_j w_j kappa_j^2 [ G_j G_j^T/n + diag(beta_j) R diag(beta_j) + diag(s_j^2) ],
    G_j[i, nu] = mu0_i(t_j) + alpha_i(t_j) u_{i nu} + Omega_{i nu}(t_j),      R_ik = w_i.w_k/(|w_i||w_k|),

the per-time Gaussian equivalence of docs/theory.md §4 applied node by node, with two changes the
time integral forces: the coefficients are per feature (the bias t b_i shifts each pre-activation), and the
random parts at different times of one data point are correlated (one Gaussian vector per (i, nu) across all
nodes, not an independent Omega per node).  Nothing here needs the Mehler series: the coefficients are 1-D
integrals (Gauss–Hermite in u, the activation's own rule in zeta), O(p m n_u) work, and sampling costs
O(m p^2 n) (m nodes).  ``equivalent_population`` gives the population counterpart
U~_eq = sum_j w_j kappa_j^2 [mu0 mu0^T + diag(alpha) R diag(alpha) + diag(beta) R diag(beta) + diag(...)]
(the diagonal set to E sigma^2), and V, V~ by Stein's lemma exactly as the exact statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .diffusion import delta_t
from .errors import InvalidParameterError, NumericalError, check_positive_int
from .features import PopulationStatistics, TrainingStatistics, _unit_rows
from .time_integrated import TimeIntegratedModel

#: Gauss–Hermite nodes in u (g(u) is smooth and bounded for tanh/erf: 1e-13 by 80 nodes)
U_NODES = 96
#: Hermite orders of the noise part kept off the diagonal (orders >= 2: R^{o k} o abar_k abar_k^T)
NOISE_ORDERS = 6
#: eigenvalues of C_i below this fraction of its trace are dropped when sampling (rank truncation)
RANK_RTOL = 1e-13


@dataclass
class MultiTimeCoefficients:
    """Per-node, per-feature coefficients of the multi-time equivalent (module docstring); arrays (m, p)
    except ``cov`` (p, m, m) and the node arrays (m,)."""

    t: np.ndarray
    weight: np.ndarray  # w_j kappa_j^2 (the weight of U_{t_j} in U)
    kappa_weight: np.ndarray  # w_j kappa_j (the weight of V_{t_j} in V)
    mu0: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    s2: np.ndarray
    second: np.ndarray  # E sigma(h_i)^2 (population)
    dmean: np.ndarray  # E sigma'(h_i) (population)
    cov: np.ndarray
    sigma_x2: float
    noise: np.ndarray  # (K + 1, m, p): abar_k(t_j)_i = E_u[a_k of sigma(t b_i + c_i u + r_i zeta) in zeta]

    @property
    def v2(self) -> np.ndarray:
        return np.einsum("ijj->ji", self.cov)


def multitime_coefficients(model: TimeIntegratedModel, t_nodes: int = 33, u_nodes: int = U_NODES,
                           sigma_x2: float = 1.0, noise_orders: int = NOISE_ORDERS,
                           block: int = 256) -> MultiTimeCoefficients:
    """The coefficients at the nodes of the model's Clenshaw–Curtis rule in log t with ``t_nodes`` nodes, for
    data N(0, sigma_x2 I) (module docstring).  Raises NumericalError if a diagonal remainder s_i^2 comes out
    below -1e-10 E sigma^2 (a quadrature failure)."""
    if not isinstance(model, TimeIntegratedModel):
        raise InvalidParameterError("the multi-time equivalent needs a TimeIntegratedModel.")
    t_nodes = check_positive_int("number of t nodes", t_nodes)
    noise_orders = check_positive_int("number of noise orders", noise_orders)
    u_nodes = check_positive_int("number of u nodes", u_nodes)
    if t_nodes < 2 or u_nodes < 8:
        raise InvalidParameterError("the multi-time equivalent needs at least 2 t nodes and 8 u nodes.")
    f = model.features
    act = f.activation
    p, d = f.p, f.d
    _, wnorm = _unit_rows(f.W)
    ell = wnorm / math.sqrt(d)
    t, w = model._t_rule(t_nodes)
    m = t.size
    z, wz = np.polynomial.hermite_e.hermegauss(u_nodes)
    wz = wz / math.sqrt(2 * math.pi)
    shape = (m, p)
    mu0, alpha, beta, second, dmean = (np.empty(shape) for _ in range(5))
    rho = np.empty((p, m, u_nodes))
    noise = np.empty((noise_orders + 1, m, p))  # abar_k: population means of the noise Hermite coefficients
    for j, tj in enumerate(t):
        dt = float(delta_t(tj))
        c = math.exp(-tj) * math.sqrt(sigma_x2) * ell  # (p,)
        r = math.sqrt(dt) * ell
        for s in range(0, p, block):
            sl = slice(s, min(s + block, p))
            means = tj * model.b[sl, None] + c[sl, None] * z[None, :]  # (blk, n_u)
            a, sec = act.gaussian_coefficients(means, np.broadcast_to(r[sl, None], means.shape), noise_orders)
            noise[:, j, sl] = np.einsum("iuk,u->ki", a, wz)
            g = a[..., 0]
            mu0[j, sl] = g @ wz
            alpha[j, sl] = (g * z) @ wz
            second[j, sl] = sec @ wz
            # E sigma'(h) = E_u[a_1(u)]/r_i (Stein in zeta)
            dmean[j, sl] = (a[..., 1] @ wz) / r[sl]
            beta[j, sl] = r[sl] * dmean[j, sl]
            rho[sl, j, :] = g - mu0[j, sl, None] - alpha[j, sl, None] * z[None, :]
    cov = np.einsum("imk,ink,k->imn", rho, rho, wz)
    v2 = np.einsum("ijj->ji", cov)
    s2 = second - mu0 ** 2 - alpha ** 2 - v2 - beta ** 2
    # the noise orders 2..K go off the diagonal (R^{o k} o abar_k abar_k^T), their diagonal mass out of s2
    s2 -= np.sum(noise[2:] ** 2, axis=0)
    if np.any(s2 < -1e-10 * second):
        raise NumericalError(f"a diagonal remainder s_i^2(t) is negative ({s2.min():.3g}); the u quadrature "
                             f"with {u_nodes} nodes is not accurate enough.")
    dts = delta_t(t)
    kap = np.sqrt(dts) * model.alpha(t)
    return MultiTimeCoefficients(t=t, weight=w * kap ** 2, kappa_weight=w * kap, mu0=mu0, alpha=alpha, beta=beta,
                                 s2=np.clip(s2, 0.0, None), second=second, dmean=dmean, cov=cov,
                                 sigma_x2=float(sigma_x2), noise=noise)


def _cov_factors(cov: np.ndarray) -> np.ndarray:
    """F_i (m, R) with F_i F_i^T = C_i up to the eigenvalues below RANK_RTOL of the largest trace, R the
    largest numerical rank over the features."""
    lam, vec = np.linalg.eigh(cov)  # ascending, (p, m), (p, m, m)
    scale = float(np.max(np.einsum("ijj->i", cov), initial=0.0))
    keep = lam > RANK_RTOL * max(scale, 1e-300)
    rank = max(1, int(keep.sum(axis=1).max()))
    lam, vec = lam[:, -rank:], vec[:, :, -rank:]
    return vec * np.sqrt(np.clip(lam, 0.0, None))[:, None, :]


def equivalent_training_matrix(model: TimeIntegratedModel, coeffs: MultiTimeCoefficients, X, rng) -> np.ndarray:
    """One sample of U_eq for the training set X (n, d) (module docstring); ``rng`` draws Omega.  Memory
    O(p n R + p^2), R the numerical rank of the C_i (a few); time O(m p^2 n)."""
    f = model.features
    X = f.check_data(X)
    n = X.shape[0]
    rng = np.random.default_rng(rng)
    directions, wnorm = _unit_rows(f.W)
    u = directions @ X.T / math.sqrt(coeffs.sigma_x2)  # (p, n): u_{i nu}
    F = _cov_factors(coeffs.cov)  # (p, m, R)
    Z = rng.standard_normal((f.p, n, F.shape[2]))
    R = directions @ directions.T
    U = np.zeros((f.p, f.p))
    for j in range(coeffs.t.size):
        G = coeffs.mu0[j][:, None] + coeffs.alpha[j][:, None] * u + np.einsum("ir,inr->in", F[:, j, :], Z)
        U += (coeffs.weight[j] / n) * (G @ G.T)
        bj = coeffs.beta[j]
        U += coeffs.weight[j] * (bj[:, None] * R * bj[None, :])
        U[np.diag_indices(f.p)] += coeffs.weight[j] * coeffs.s2[j]
    U += _noise_orders(coeffs, R)
    return U


def _noise_orders(coeffs, R):
    """sum_{k=2}^K R^{o k} o (sum_j w_j kappa_j^2 abar_k(t_j) abar_k(t_j)^T), a sum of PSD matrices."""
    out = np.zeros_like(R)
    Rk = R.copy()
    for k in range(2, coeffs.noise.shape[0]):
        Rk *= R
        A = coeffs.noise[k]  # (m, p)
        out += Rk * (A.T @ (coeffs.weight[:, None] * A))
    return out


def equivalent_population_matrix(model: TimeIntegratedModel, coeffs: MultiTimeCoefficients) -> np.ndarray:
    """U~_eq = sum_j w_j kappa_j^2 [mu0 mu0^T + (diag(alpha) R diag(alpha) + diag(beta) R diag(beta)) off the
    diagonal], diagonal E sigma^2: the linear (Hermite order <= 1) part of the population U~ off the diagonal."""
    directions, _ = _unit_rows(model.features.W)
    R = directions @ directions.T
    p = R.shape[0]
    U = np.zeros((p, p))
    for j in range(coeffs.t.size):
        a, b, m0 = coeffs.alpha[j], coeffs.beta[j], coeffs.mu0[j]
        U += coeffs.weight[j] * (np.outer(m0, m0) + (np.outer(a, a) + np.outer(b, b)) * R)
    U += _noise_orders(coeffs, R)
    U[np.diag_indices(p)] = coeffs.second.T @ coeffs.weight
    return U


def _v_matrices(model, coeffs):
    """V (noise part, Stein) and V~ for Gaussian data N(0, sigma_x2 I): sum_j w_j kappa_j [(1 + Delta beta_t)
    sqrt(Delta/d) diag(E sigma') W (+ sqrt(Delta) beta_t e^{-2t} sigma_x2 diag(E sigma') W/sqrt(d) for V~)]."""
    f = model.features
    V = np.zeros((f.p, f.d))
    Vp = np.zeros((f.p, f.d))
    for j, tj in enumerate(coeffs.t):
        dt, bt = float(delta_t(tj)), float(model.beta_t(tj))
        base = coeffs.dmean[j][:, None] * f.W
        V += coeffs.kappa_weight[j] * (1 + dt * bt) * math.sqrt(dt / f.d) * base
        Vp += coeffs.kappa_weight[j] * ((1 + dt * bt) * math.sqrt(dt / f.d) * base
                                        + math.sqrt(dt) * bt * math.exp(-2 * tj) * coeffs.sigma_x2 * base / math.sqrt(f.d))
    return V, Vp


def equivalent_statistics(model: TimeIntegratedModel, X, rng, t_nodes: int = 33,
                          coeffs: MultiTimeCoefficients | None = None):
    """(TrainingStatistics, PopulationStatistics) of the multi-time equivalent for the training set X, data
    N(0, sigma_x2 I) with the model's sigma_x2: U from :func:`equivalent_training_matrix`, U~ from
    :func:`equivalent_population_matrix` (no Mehler series at all), V and V~ by Stein's lemma with the
    population E sigma'; Y and E|S|^2 those of the score error at t_min (as
    TimeIntegratedModel.population_statistics).  Only beta = "none" (the gaussian-skip V has a data term
    E[phi] x^T that the equivalent does not model).

    (Mixing the exact population U~ with the equivalent's training fluctuation, U~ + U_eq - U~_eq, is not an
    option: U~ - U~_eq has a zero diagonal, so it is indefinite, and at psi_p >> psi_n the sum is not
    positive semi-definite.)"""
    if model.beta != "none":
        raise InvalidParameterError("the multi-time equivalent statistics support beta = 'none' only.")
    coeffs = coeffs or multitime_coefficients(model, t_nodes, sigma_x2=model.sigma_x2)
    X = model.features.check_data(X)
    U = equivalent_training_matrix(model, coeffs, X, rng)
    Up = equivalent_population_matrix(model, coeffs)
    V, Vp = _v_matrices(model, coeffs)
    c = 1.0  # beta = none: c = E_t[(1 + Delta beta)^2] = 1 for both losses
    info = {"t_nodes": int(coeffs.t.size), "equivalent": "multi-time Gaussian"}
    f, k, t0 = model.features, int(np.argmin(coeffs.t)), float(np.min(coeffs.t))
    Y = float(model.alpha(t0)) * coeffs.dmean[k][:, None] * f.W / math.sqrt(f.d)
    lam = coeffs.sigma_x2 * math.exp(-2 * t0) + float(delta_t(t0))  # Sigma_t = lam I
    pop = PopulationStatistics(U=Up, V=Vp, Y=Y, score_norm=f.d / lam, t=model.t_min, info=dict(info),
                               loss_scale=1.0, loss_constant=c)
    stats = TrainingStatistics(U=U, V=V, t=model.t_min, n=X.shape[0], info=dict(info), loss_scale=1.0,
                               loss_constant=c)
    return stats, pop


def ks_two_sample(a, b) -> float:
    """sup_x |F_a(x) - F_b(x)| of two samples (the two-sample Kolmogorov–Smirnov statistic)."""
    a, b = np.sort(np.asarray(a, float)), np.sort(np.asarray(b, float))
    x = np.concatenate([a, b])
    return float(np.max(np.abs(np.searchsorted(a, x, side="right") / a.size
                               - np.searchsorted(b, x, side="right") / b.size)))
