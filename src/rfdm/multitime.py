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
O(m p^2 n) (m nodes).  :class:`EquivalentSpectrum` solves the self-consistent equations of U_eq's spectrum
(one r x r and one (r+q) x (r+q) matrix per z, r, q <= m) instead of sampling it.  ``equivalent_population`` gives the population counterpart
U~_eq = sum_j w_j kappa_j^2 [mu0 mu0^T + diag(alpha) R diag(alpha) + diag(beta) R diag(beta) + diag(...)]
(the diagonal set to E sigma^2), and V, V~ by Stein's lemma exactly as the exact statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .diffusion import delta_t
from .errors import (InvalidParameterError, NumericalError, check_finite_array, check_positive_float,
                     check_positive_int)
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


# -- the self-consistent equations for the spectrum of U_eq (docs/theory.md §7.2) -----------------------------

#: node-space directions kept by the solver: eigenvalues of sum_i (a_i a_i^T + C_i) (and singular values of B)
#: above this fraction of the largest (the discarded part is ~1e-10 of the largest direction's weight)
SOLVER_RANK_RTOL = 1e-10
#: continuation in y = Im z: geometric steps of this factor; the trapezoid rule in log y on them integrates the
#: CDF to ~exp(-pi^2/log factor) (analytic integrand): 7e-7 at 2, 4e-11 at 1.5, 1e-4 at 3
ETA_FACTOR = 2.0
#: Anderson mixing: history length and iteration cap per eta step; a point is converged at this residual
ANDERSON_MEMORY = 6
MAX_ITERATIONS = 400
SOLVER_TOL = 1e-11


@dataclass
class EquivalentSpectrum:
    """The self-consistent equations for the Stieltjes transform g(z) = (1/p) Tr (U_eq - z)^{-1} of the multi-time
    equivalent at fixed W and b (docs/theory.md §7.2), in the proportional limit (d, p, n large at fixed ratios,
    rows of W/sqrt(d) treated as i.i.d. N(0, I/d) directions; the rank-m mean part mu0 and the off-diagonal noise
    orders R^{o k}, k >= 2, of size O(psi_p/d), are left out: they move O(m) eigenvalues and vanish as d grows).

    Per feature i: a_i (r,) and b_i (q,) the data-linear and noise-linear loadings over the node space
    (a_i = V^T [sqrt(w_j) kappa_j alpha_i(t_j)]_j, compressed to the r directions that carry them; b_i likewise),
    C_i (r, r) the compressed cross-time covariance of Omega_i, diag_i = sum_j w_j kappa_j^2 (s_ij^2 +
    sum_{k>=2} abar_kij^2).  With Q = (I_r + Delta)^{-1}, J = blockdiag(Q, I_q), atilde_i = (a_i, b_i):

        D_i(z)  = diag_i - z + Tr(Q C_i),
        g_i     = 1 / (D_i + atilde_i^T Xi atilde_i),                      g(z) = (1/p) sum_i g_i,
        Xi      = (J^{-1} + (1/d) sum_i g_i atilde_i atilde_i^T)^{-1}                      ((r+q) x (r+q)),
        Delta   = (1/n) [sum_i g_i C_i + d ((I + Delta) - (I + Delta) Xi_aa (I + Delta))]  (r x r).

    Derivation: conditional on W, the n columns of data are independent with p x m blocks of covariance K, so
    (U_eq - z)^{-1} ~ (T - z + sum_jk Q_jk K_jk)^{-1} (a block sample-covariance equivalent, Delta_jk =
    Tr(K_kj G)/n); the W-dependent part of that inverse is a Gram matrix with independent rows atilde_i (x) what_i
    (what_i = w_i/|w_i|), whose equivalent is the Xi equation, and Tr(What^T A_k G A_j What) = d [J^{-1} -
    J^{-1} Xi J^{-1}]_kj by Woodbury (A_j = diag of the a's at node j).  For one node and identical features
    these are [B25] Thm 3.1 (tested against :class:`rfdm.spectrum.SpectralProblem`); with alpha = beta = 0 and
    independent nodes, the free additive convolution of Marchenko-Pastur laws (tested against its R-transform).
    Cost per z and iteration O(p (r + q)^2)."""

    a: np.ndarray
    b: np.ndarray
    C: np.ndarray
    diag: np.ndarray
    d: int
    n: int

    def __post_init__(self):
        self.d, self.n = check_positive_int("d", self.d), check_positive_int("n", self.n)
        a = np.atleast_2d(np.asarray(self.a, dtype=np.float64))
        p = a.shape[0]
        b = np.asarray(self.b, dtype=np.float64).reshape(p, -1)
        C = np.asarray(self.C, dtype=np.float64)
        diag = np.asarray(self.diag, dtype=np.float64).reshape(-1)
        if C.shape != (p, a.shape[1], a.shape[1]) or diag.shape != (p,):
            raise InvalidParameterError(f"the loadings must be a (p, r), b (p, q), C (p, r, r), diag (p,); got "
                                        f"{a.shape}, {b.shape}, {C.shape}, {diag.shape}.")
        if not all(np.all(np.isfinite(x)) for x in (a, b, C, diag)):
            raise InvalidParameterError("the coefficients of the equivalent spectrum hold NaN or inf.")
        if np.any(diag <= 0):
            raise InvalidParameterError("the diagonal remainder of every feature must be > 0 (the equations need "
                                        "U_eq >= diag > 0).")
        self.a, self.b, self.C, self.diag = a, b, 0.5 * (C + C.transpose(0, 2, 1)), diag

    @classmethod
    def from_coefficients(cls, coeffs: MultiTimeCoefficients, d: int, n: int,
                          rank_rtol: float = SOLVER_RANK_RTOL) -> "EquivalentSpectrum":
        """The compressed loadings of :func:`multitime_coefficients`' output for a training set of n points in
        dimension d (class docstring): the node space is rotated onto the eigenvectors of sum_i (a_i a_i^T + C_i)
        above ``rank_rtol`` of the largest, B onto its singular vectors likewise."""
        c = np.sqrt(coeffs.weight)
        a = (c[:, None] * coeffs.alpha).T
        b = (c[:, None] * coeffs.beta).T
        C = coeffs.cov * np.outer(c, c)[None]
        lam, vec = np.linalg.eigh(a.T @ a + C.sum(axis=0))
        vec = vec[:, lam > rank_rtol * lam.max()]
        ub, sb, _ = np.linalg.svd(b, full_matrices=False)
        keep = sb ** 2 > rank_rtol * max(sb[0] ** 2, 1e-300)
        diag = coeffs.weight @ (coeffs.s2 + np.sum(coeffs.noise[2:] ** 2, axis=0))
        return cls(a @ vec, ub[:, keep] * sb[keep], np.einsum("jr,ijk,ks->irs", vec, C, vec), diag, d, n)

    @property
    def p(self) -> int:
        return self.a.shape[0]

    def trace_bound(self) -> float:
        """p times the mean eigenvalue (1/p) Tr E U_eq = mean_i (diag_i + Tr C_i + |a_i|^2 + |b_i|^2): every
        eigenvalue of a PSD matrix is below its trace."""
        per = self.diag + np.einsum("irr->i", self.C) + np.sum(self.a ** 2, 1) + np.sum(self.b ** 2, 1)
        return float(np.sum(per))

    def _map(self, x, z):
        """One application of the fixed-point map to x = (Delta, Xi) flattened per z; returns (F(x), g_i)."""
        a, C, d, n = self.a, self.C, self.d, self.n
        p, r = a.shape
        At = np.concatenate([a, self.b], axis=1)
        k = At.shape[1]
        nz = z.size
        delta = x[:, :r * r].reshape(nz, r, r)
        xi = x[:, r * r:].reshape(nz, k, k)
        ipd = np.eye(r) + delta
        Q = np.linalg.inv(ipd)
        D = self.diag[None, :] - z[:, None] + Q.reshape(nz, r * r) @ C.reshape(p, r * r).T
        g = 1.0 / (D + np.einsum("zis,is->zi", At[None] @ xi, At))
        jinv = np.zeros((nz, k, k), complex)
        jinv[:, :r, :r] = ipd
        jinv[:, r:, r:] = np.eye(k - r)
        xi_new = np.linalg.inv(jinv + (At.T[None] * g[:, None, :]) @ At / d)
        delta_new = ((g @ C.reshape(p, r * r)).reshape(nz, r, r) + d * (ipd - ipd @ xi_new[:, :r, :r] @ ipd)) / n
        return np.concatenate([delta_new.reshape(nz, -1), xi_new.reshape(nz, -1)], axis=1), g

    def _anderson(self, x, z):
        """Anderson-accelerated fixed-point iteration from x at the points z, each point iterated until its own
        residual is below SOLVER_TOL (or MAX_ITERATIONS); returns (x, g_i, residual per point)."""
        x = x.copy()
        g = np.empty((z.size, self.p), complex)
        err = np.full(z.size, np.inf)
        active = np.arange(z.size)
        hist_x, hist_f = [], []
        for _ in range(MAX_ITERATIONS):
            xa = x[active]
            fx, g[active] = self._map(xa, z[active])
            res = fx - xa
            err[active] = np.abs(res).max(axis=1) / (1.0 + np.abs(xa).max(axis=1))
            keep = err[active] >= SOLVER_TOL
            if not keep.any():
                break
            if not keep.all():
                active, xa, res = active[keep], xa[keep], res[keep]
                hist_x, hist_f = [h[keep] for h in hist_x], [h[keep] for h in hist_f]
            hist_x.append(xa)
            hist_f.append(res)
            if len(hist_x) > ANDERSON_MEMORY + 1:
                hist_x.pop(0)
                hist_f.pop(0)
            if len(hist_x) < 2:
                x[active] = xa + res
                continue
            dF = np.stack([hist_f[i + 1] - hist_f[i] for i in range(len(hist_f) - 1)], axis=2)
            dX = np.stack([hist_x[i + 1] - hist_x[i] for i in range(len(hist_x) - 1)], axis=2)
            dFh = np.conj(dF.transpose(0, 2, 1))
            A = dFh @ dF
            h = A.shape[1]
            A = A + (1e-13 * np.trace(A, axis1=1, axis2=2).real + 1e-300)[:, None, None] * np.eye(h)
            gam = np.linalg.solve(A, dFh @ res[:, :, None])[..., 0]
            x[active] = xa + res - np.einsum("zkh,zh->zk", dX + dF, gam)
        return x, g, err

    def stieltjes(self, lam, eta_min: float, factor: float = ETA_FACTOR):
        """g(lam + i y) on the vertical lines above the real points ``lam`` by continuation in y from Y = 1e6 x the
        trace bound (where g ~ -1/z is the unique Herglotz solution; so high that the trapezoid rule in log y on
        the ladder has no endpoint error there) down to ``eta_min``, steps of ``factor``.
        Returns (y (S,), g (S, N): the mean of g_i, converged (N,)).  Converged: the final residual of every
        step below 10 SOLVER_TOL and every Im g_i >= 0 (each g_i is a diagonal entry of a resolvent, a Herglotz
        function; a solution that leaves that branch is rejected)."""
        lam = check_finite_array("lam", np.atleast_1d(lam), ndim=1)
        eta_min = check_positive_float("eta_min", eta_min)
        r, k = self.a.shape[1], self.a.shape[1] + self.b.shape[1]
        x = np.concatenate([np.zeros((lam.size, r * r), complex),
                            np.tile(np.eye(k).ravel().astype(complex), (lam.size, 1))], axis=1)
        Y = max(1e6 * self.trace_bound(), 10 * eta_min)
        steps = int(math.ceil(math.log(Y / eta_min) / math.log(factor)))
        y = Y * factor ** -np.arange(steps + 1.0)
        y[-1] = eta_min
        out = np.empty((y.size, lam.size), complex)
        converged = np.ones(lam.size, bool)
        for s, ys in enumerate(y):
            x, g, err = self._anderson(x, lam + 1j * ys)
            converged &= (err < 10 * SOLVER_TOL) & np.all(g.imag >= -1e-12 * np.abs(g), axis=1)
            out[s] = g.mean(axis=1)
        return y, out, converged

    def solve(self, n_points: int = 400, factor: float = ETA_FACTOR,
              eta_rel: float = 1e-8) -> "EquivalentSpectrumResult":
        """The CDF F and the density rho = Im g(lam + i eta)/pi on a log grid of ``n_points`` from half the
        smallest diag_i (U_eq >= diag, so F = 0 there) to 2x the right end of the spectrum (:meth:`_top_edge`).

        F without smoothing, by Cauchy's theorem on the rectangle lo -> lam -> lam + iY -> lo + iY:
        pi F(lam) = int_eta^Y Re g(lo + iy) dy - int_eta^Y Re g(lam + iy) dy + Im int_lo^lam g(x + iY) dx,
        the vertical integrals by the trapezoid rule in log y on the continuation ladder (``factor`` per step;
        the integrands are smooth in log y) down to eta = ``eta_rel`` lo, the horizontal one at Y by the
        trapezoid rule on the grid.  So F is exact at every grid point up to quadrature (no Lorentzian
        smoothing), whatever the fine structure between points (e.g. the comb of features' own floors diag_i
        when p > n + d)."""
        n_points = check_positive_int("number of points", n_points)
        factor = check_positive_float("factor", factor)
        eta_rel = check_positive_float("eta_rel", eta_rel)
        if eta_rel >= 1e-3:
            raise InvalidParameterError(f"eta_rel must be below 1e-3 (the CDF's truncation at eta), got {eta_rel:g}.")
        if n_points < 20 or not 1.0 < factor <= 4.0:
            raise InvalidParameterError("the equivalent spectrum needs at least 20 grid points and a ladder factor "
                                        "in (1, 4].")
        lo = 0.5 * float(self.diag.min())
        top = self._top_edge(lo)
        lam = np.geomspace(lo, 2.0 * top, n_points)
        y, g, converged = self.stieltjes(lam, eta_rel * lo, factor)
        # vertical integrals: int Re g dy = int Re g(y) y dlog y, trapezoid on the ladder, plus eta Re g(eta)
        f = g.real * y[:, None]
        dlog = -np.diff(np.log(y))
        vertical = np.sum(0.5 * (f[1:] + f[:-1]) * dlog[:, None], axis=0) + y[-1] * g[-1].real
        top_row = g[0]
        horizontal = np.concatenate([[0.0], np.cumsum(0.5 * (top_row[1:] + top_row[:-1]) * np.diff(lam))]).imag
        cdf = (vertical[0] - vertical + horizontal) / math.pi
        return EquivalentSpectrumResult(lam=lam, cdf=cdf, density=g[-1].imag / math.pi,
                                        converged_points=converged, eta=float(y[-1]))

    def _top_edge(self, lo: float) -> float:
        """The right end of the spectrum to a step of a coarse log grid (120 points from lo to the trace bound):
        the largest lam where Im g(lam + i 1e-3 lam) > 0.3 Im g(lam + i 1e-2 lam), i.e. where Im g does not
        fall with the height as it does outside the support (there Im g is proportional to it)."""
        coarse = np.geomspace(lo, self.trace_bound(), 120)
        r, k = self.a.shape[1], self.a.shape[1] + self.b.shape[1]
        x = np.concatenate([np.zeros((coarse.size, r * r), complex),
                            np.tile(np.eye(k).ravel().astype(complex), (coarse.size, 1))], axis=1)
        im = []
        for s in (1.0, 0.1, 1e-2, 1e-3):  # a short ladder in relative height: far from the real axis nothing is fine
            x, g, _ = self._anderson(x, coarse * (1 + 1j * s))
            im.append(g.mean(axis=1).imag)
        inside = np.nonzero(im[-1] > 0.3 * im[-2])[0]
        return float(coarse[min(inside[-1] + 1, coarse.size - 1)]) if inside.size else float(coarse[-1])


@dataclass
class EquivalentSpectrumResult:
    """CDF and density of the multi-time equivalent's spectrum on a log grid (:meth:`EquivalentSpectrum.solve`)."""

    lam: np.ndarray
    cdf: np.ndarray
    density: np.ndarray  # Im g(lam + i eta)/pi: the density, or a comb of narrow peaks where it is atomic
    converged_points: np.ndarray
    eta: float

    @property
    def mass(self) -> float:
        return float(self.cdf[-1])

    @property
    def checks(self) -> dict:
        """Every point converged on the Herglotz branch; F nondecreasing from 0 (to 1e-5, ten times the ladder's
        quadrature error at the default factor); the mass F(lam_max) within 1e-4 of 1."""
        steps = np.diff(self.cdf)
        return {"converged": bool(np.all(self.converged_points)),
                "cdf_monotone": bool(np.all(steps >= -1e-5) and abs(self.cdf[0]) < 1e-5),
                "mass_is_one": bool(abs(self.mass - 1.0) < 1e-4)}

    @property
    def ok(self) -> bool:
        return all(self.checks.values())

    def ks_distance(self, eigenvalues) -> float:
        """sup over the sample of |F(lam) - F_emp| at both one-sided limits: the one-sample Kolmogorov-Smirnov
        distance of the eigenvalues from this CDF (F linear between grid points, clipped to [0, 1])."""
        ev = np.sort(check_finite_array("eigenvalues", eigenvalues, ndim=1))
        F = np.clip(np.interp(ev, self.lam, self.cdf, left=0.0, right=1.0), 0.0, 1.0)
        k = np.arange(1, ev.size + 1) / ev.size
        return float(np.max(np.maximum(np.abs(F - k), np.abs(F - k + 1.0 / ev.size))))
