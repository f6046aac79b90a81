"""Spectrum of the Gram matrix U under the Gaussian equivalence (docs/theory.md §4; [B25] Sec. 3, Thm. 3.1).

Coefficients (u, v, w, z independent N(0, 1); c = e^{-t} sigma_x; Gamma_t^2 = c^2 + Delta_t):
  a_t = E[sigma(c u + sqrt(Delta_t) v) u]/c = E sigma'(Gamma_t z),   b_t = sqrt(Delta_t) a_t,
  v_t^2 = E[sigma(c u + sqrt(Delta_t) v) sigma(c u + sqrt(Delta_t) w)] - mu_0^2 - a_t^2 c^2,
  ||sigma||^2 = E[sigma(Gamma_t z)^2],   s_t^2 = ||sigma||^2 - mu_0^2 - a_t^2 c^2 - v_t^2 - b_t^2,
  mu_0 = E sigma(Gamma_t z),   mu_1 = E[sigma'(Gamma_t z)] Gamma_t.
For odd sigma mu_0 = 0 and these are the definitions of docs/theory.md §4; for a non-centred sigma (relu) the mean adds the
rank-one term mu_0^2 1 1^T to U, which moves one eigenvalue but not the bulks, and is kept out of v_t^2, s_t^2.
All are computed from the normalised Hermite coefficients of sigma along N(0, Gamma_t^2) (Mehler):
E[sigma(h) sigma(h')] = sum_k (c^2/Gamma_t^2)^k a_k^2 for the pair sharing u.

Equivalent matrix: U ~ G G^T/n + b_t^2 W W^T/d + s_t^2 I_p, G = e^{-t} a_t (W/sqrt(d)) X + v_t Omega.

Self-consistent equations for q(z) = (1/p) Tr (U - z)^{-1} (unknowns q, r; r normalised as a 1/(pd) trace):
  s^ = b_t^2 psi_p + 1/q,   D = 1 + (psi_p/psi_n)(a_t^2 e^{-2t} r + v_t^2 q),   r^ = psi_p a_t^2 e^{-2t}/D,
  r = int drho_Sigma(l) l/(s^ + l r^),   s = int drho_Sigma(l) 1/(s^ + l r^),
  psi_p (s_t^2 - z) + psi_p v_t^2/D + (1 - psi_p)/q - s/q^2 = 0.
Here l runs over the eigenvalues of Sigma itself (not normalised by sigma_x^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .activations import get_activation
from .diffusion import check_time, delta_t
from .errors import InvalidParameterError, NumericalError, check_finite_array, check_positive_float

#: Gauss–Legendre nodes per smooth piece (length <= 4) of the u-integral for v_t^2
V2_NODES = 100


@dataclass(frozen=True)
class GEPCoefficients:
    """Gaussian-equivalence coefficients at time t for data variance sigma_x^2 (docs/theory.md §4)."""

    t: float
    sigma_x2: float
    a: float
    b: float
    v2: float
    s2: float
    mu0: float
    mu1: float
    norm2: float

    @property
    def delta(self) -> float:
        return float(delta_t(self.t))


def gep_coefficients(activation, t, sigma_x2: float = 1.0) -> GEPCoefficients:
    """a_t, b_t, v_t^2, s_t^2, mu_0, mu_1, ||sigma||^2 by quadrature (near machine precision).

    v_t^2 = E_u[(g(u) - mu_0 - a_t c u)^2] with g(u) = E_v sigma(c u + sqrt(Delta_t) v) (the activation's own
    1-D expectation), integrated over u by Gauss–Legendre on pieces of [-14, 14] split also where g bends (at
    the kinks of sigma divided by c): exact to rounding for smooth and kinked activations alike (the Hermite series
    sum_k (c^2/Gamma^2)^k a_k^2 converges only algebraically for relu at small t)."""
    act = get_activation(activation)
    t = check_time(t)
    sigma_x2 = check_positive_float("sigma_x^2", sigma_x2)
    c2 = math.exp(-2 * t) * sigma_x2
    dt = float(delta_t(t))
    gamma = math.sqrt(c2 + dt)
    a, second = act.gaussian_coefficients(np.array([0.0]), np.array([gamma]), 1)
    a, second = a[0], float(second[0])
    a_t = a[1] / gamma
    b_t = math.sqrt(dt) * a_t
    c = math.sqrt(c2)
    half = 14.0
    kinks = np.clip(np.asarray(getattr(act, "kinks", ()), dtype=float) / c, -half, half)
    edges = np.unique(np.concatenate([np.linspace(-half, half, 8), kinks]))  # pieces of length <= 4
    x, wl = np.polynomial.legendre.leggauss(V2_NODES)
    u = np.concatenate([0.5 * (b - a_) * x + 0.5 * (b + a_) for a_, b in zip(edges[:-1], edges[1:])])
    wu = np.concatenate([0.5 * (b - a_) * wl for a_, b in zip(edges[:-1], edges[1:])]) * np.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
    g, _ = act.gaussian_coefficients(c * u, np.full(u.shape, math.sqrt(dt)), 0)
    v2 = float(np.dot(wu, (g[:, 0] - a[0] - a_t * c * u) ** 2))
    s2 = second - a[0] ** 2 - a_t ** 2 * c2 - v2 - b_t ** 2
    return GEPCoefficients(t=t, sigma_x2=sigma_x2, a=float(a_t), b=float(b_t), v2=v2, s2=float(s2),
                           mu0=float(a[0]), mu1=float(a[1]), norm2=second)


def gep_matrix(W, X, coeffs: GEPCoefficients, rng) -> np.ndarray:
    """A sample of the equivalent matrix G G^T/n + b_t^2 W W^T/d + s_t^2 I_p with G = e^{-t} a_t W X^T/sqrt(d)
    + v_t Omega (X is the (n, d) data, Omega a fresh p x n standard Gaussian from ``rng``)."""
    W = check_finite_array("W", W, ndim=2)
    X = check_finite_array("X", X, ndim=2)
    p, d = W.shape
    n = X.shape[0]
    if X.shape[1] != d:
        raise InvalidParameterError(f"X has {X.shape[1]} columns but W has d = {d}.")
    rng = np.random.default_rng(rng)
    G = math.exp(-coeffs.t) * coeffs.a * (W @ X.T) / math.sqrt(d) + math.sqrt(coeffs.v2) * rng.standard_normal((p, n))
    return G @ G.T / n + coeffs.b ** 2 * (W @ W.T) / d + coeffs.s2 * np.eye(p)


#: continuation steps in eta, from far above the spectrum down to eta_min
ETA_STEPS = 56
#: eta_min relative to |lambda| + s_t^2
ETA_REL = 1e-11
NEWTON_ITERS = 30
NEWTON_TOL = 1e-13
#: a Newton step below this (relative) that no longer shrinks is at the rounding floor: the point is done
NEWTON_STALL = 1e-11
#: the same for r, whose rounding floor (relative to |r|) is ~30x q's near the edges
NEWTON_STALL_R = 1e-9


@dataclass
class SpectralProblem:
    """The self-consistent equations for given coefficients, psi_p, psi_n and a discrete spectrum of
    Sigma (eigenvalues with weights summing to 1)."""

    coeffs: GEPCoefficients
    psi_p: float
    psi_n: float
    sigma_eigenvalues: np.ndarray = field(default_factory=lambda: np.ones(1))
    sigma_weights: np.ndarray = field(default_factory=lambda: np.ones(1))

    def __post_init__(self):
        self.psi_p = check_positive_float("psi_p", self.psi_p)
        self.psi_n = check_positive_float("psi_n", self.psi_n)
        lam = check_finite_array("sigma eigenvalues", np.atleast_1d(self.sigma_eigenvalues), ndim=1)
        w = check_finite_array("sigma weights", np.atleast_1d(self.sigma_weights), ndim=1)
        if np.any(lam <= 0):
            raise InvalidParameterError("covariance eigenvalues must be > 0.")
        if w.shape != lam.shape:
            raise InvalidParameterError(f"{w.size} weights for {lam.size} covariance eigenvalues.")
        if np.any(w < 0) or abs(w.sum() - 1) > 1e-9:
            raise InvalidParameterError(f"covariance weights must be >= 0 and sum to 1, got sum {w.sum():g}.")
        self.sigma_eigenvalues, self.sigma_weights = lam, w / w.sum()

    # -- the equations -------------------------------------------------------------------------------
    def _system(self, q, r, z):
        """Residuals (F1, F2) and their Jacobian with respect to (q, r), elementwise over arrays."""
        c = self.coeffs
        psi_p, kappa = self.psi_p, self.psi_p / self.psi_n
        alpha = c.a ** 2 * math.exp(-2 * c.t)
        D = 1.0 + kappa * (alpha * r + c.v2 * q)
        r_hat = psi_p * alpha / D
        if self.sigma_eigenvalues.size == 1:
            # one eigenvalue l (weight 1): the sums over Sigma's spectrum are single terms; the same formulas
            # with the powers of 1/q and 1/D computed once (fewer array operations: this is called thousands
            # of times by the continuation)
            l1 = float(self.sigma_eigenvalues[0])
            iq = 1.0 / q
            iq2 = iq * iq
            iD = 1.0 / D
            iD2 = iD * iD
            rk = r_hat * iD  # r_hat/D
            inv = 1.0 / (c.b ** 2 * psi_p + iq + l1 * r_hat)
            inv2 = inv * inv
            g = inv2 * (-iq2 - (l1 * kappa * c.v2) * rk)  # = -s_q
            s_r = ((l1 * kappa * alpha) * inv2) * rk
            F1 = r - l1 * inv
            F2 = psi_p * (c.s2 - z) + (psi_p * c.v2) * iD + (1.0 - psi_p) * iq - inv * iq2
            J11, J12 = l1 * g, 1.0 - l1 * s_r
            J21 = -(psi_p * c.v2 * kappa * c.v2) * iD2 - (1.0 - psi_p) * iq2 + g * iq2 + 2.0 * inv * iq2 * iq
            J22 = -(psi_p * c.v2 * kappa * alpha) * iD2 - s_r * iq2
            return F1, F2, J11, J12, J21, J22
        else:
            s_hat = c.b ** 2 * psi_p + 1.0 / q
            # d(den)/dq = -1/q^2 - lam r_hat kappa v2 / D ; d(den)/dr = -lam r_hat kappa alpha / D
            dden_dq_a, dden_dq_b = -1.0 / q ** 2, -r_hat * kappa * c.v2 / D
            dden_dr_b = -r_hat * kappa * alpha / D
            lam, w = self.sigma_eigenvalues[:, None], self.sigma_weights[:, None]
            inv = 1.0 / (s_hat[None] + lam * r_hat[None])
            inv2 = inv * inv
            s = np.sum(w * inv, axis=0)
            r_int = np.sum(w * lam * inv, axis=0)
            s_q = -np.sum(w * inv2 * (dden_dq_a + lam * dden_dq_b), axis=0)
            s_r = -np.sum(w * inv2 * lam * dden_dr_b, axis=0)
            r_q = -np.sum(w * lam * inv2 * (dden_dq_a + lam * dden_dq_b), axis=0)
            r_r = -np.sum(w * lam * lam * inv2 * dden_dr_b, axis=0)
        F1 = r - r_int
        F2 = psi_p * (c.s2 - z) + psi_p * c.v2 / D + (1.0 - psi_p) / q - s / q ** 2
        J11, J12 = -r_q, 1.0 - r_r
        J21 = -psi_p * c.v2 * kappa * c.v2 / D ** 2 - (1.0 - psi_p) / q ** 2 - s_q / q ** 2 + 2.0 * s / q ** 3
        J22 = -psi_p * c.v2 * kappa * alpha / D ** 2 - s_r / q ** 2
        # order the unknowns as (q, r): rows F1, F2
        return F1, F2, J11, J12, J21, J22

    def upper_bound(self) -> float:
        """A generous upper bound of the spectrum of the equivalent matrix (used to start the continuation)."""
        c = self.coeffs
        alpha = c.a ** 2 * math.exp(-2 * c.t)
        lmax = float(self.sigma_eigenvalues.max())
        top = (c.v2 * (1 + math.sqrt(self.psi_p / self.psi_n)) ** 2
               + (self.psi_p + 1) * (alpha * lmax * (1 + 1 / math.sqrt(self.psi_n)) ** 2 + c.b ** 2) * 2)
        return c.s2 + 2 * top

    def stieltjes(self, lam, eta_min=None, record_factor: float = 10.0):
        """q(lam + i eta_min) for an array of real lam, by continuation in eta along vertical lines from
        far above the spectrum (where q ~ -1/z is the unique Herglotz solution) down to eta_min, keeping
        Im q > 0 at every Newton step, so the spurious real branch can never be reached.

        Returns (q, residual, converged, q_coarse) where q_coarse = q(lam + i record_factor eta_min)."""
        lam = np.atleast_1d(np.asarray(lam, dtype=np.float64))
        scale = self.upper_bound()
        if eta_min is None:
            eta_min = ETA_REL * (np.abs(lam) + self.coeffs.s2)
        eta_min = np.broadcast_to(np.asarray(eta_min, dtype=np.float64), lam.shape)
        eta0 = 10.0 * (scale + np.abs(lam))
        ladder = np.linspace(0.0, 1.0, ETA_STEPS)
        z0 = lam + 1j * eta0
        q = -1.0 / z0
        r = float(np.dot(self.sigma_weights, self.sigma_eigenvalues)) * q
        converged = np.ones(lam.shape, bool)
        q_coarse = None
        eta_rec = record_factor * eta_min
        steps = list(np.exp(np.log(eta0)[None, :] * (1 - ladder[:, None]) + np.log(eta_rec)[None, :] * ladder[:, None]))
        steps.append(eta_min)
        with np.errstate(all="ignore"):
            for k, eta in enumerate(steps):
                z = lam + 1j * eta
                done = np.zeros(lam.shape, bool)
                # Newton on the points not yet done only (``idx``; q, r updated in place as they finish)
                idx = np.arange(lam.size)
                qa, ra, za = q.copy(), r.copy(), z
                prev_aq = prev_ar = np.full(lam.shape, np.inf)
                for _ in range(NEWTON_ITERS):
                    F1, F2, J11, J12, J21, J22 = self._system(qa, ra, za)
                    det = J11 * J22 - J12 * J21
                    dq = (J22 * F1 - J12 * F2) / det
                    dr = (-J21 * F1 + J11 * F2) / det
                    if ((qa - dq).imag <= 0).any():
                        step = np.ones(qa.shape)
                        for _ in range(12):  # backtrack until Im q stays positive
                            bad = (qa - step * dq).imag <= 0
                            if not bad.any():
                                break
                            step = np.where(bad, 0.5 * step, step)
                        dq, dr = step * dq, step * dr
                    finite = np.isfinite(dq) & np.isfinite(dr)
                    qa = np.where(finite, qa - dq, qa)
                    ra = np.where(finite, ra - dr, ra)
                    aq, ar, scale_q, scale_r = np.abs(dq), np.abs(dr), np.abs(qa), np.abs(ra) + 1e-300
                    ok = finite & (aq <= NEWTON_TOL * scale_q) & (ar <= NEWTON_TOL * scale_r)
                    # at the rounding floor: the step no longer shrinks (Newton converges quadratically until
                    # rounding stops it) and is already below NEWTON_STALL; iterating on only repeats rounding
                    # noise (near an edge the ill-conditioned Jacobian puts that floor above NEWTON_TOL)
                    stalled = (finite & (aq >= 0.5 * prev_aq) & (ar >= 0.5 * prev_ar)
                               & (aq <= NEWTON_STALL * scale_q) & (ar <= NEWTON_STALL_R * scale_r))
                    fin = ok | stalled
                    q[idx], r[idx] = qa, ra
                    if fin.all():
                        done[idx] = True
                        break
                    if fin.any():  # a point once done stays done: further steps would only move it by rounding
                        done[idx[fin]] = True
                        keep = ~fin
                        idx, qa, ra, za = idx[keep], qa[keep], ra[keep], za[keep]
                        aq, ar = aq[keep], ar[keep]
                    prev_aq, prev_ar = aq, ar
                if k == len(steps) - 2:
                    q_coarse = q.copy()
                if k == len(steps) - 1:
                    converged &= done
        with np.errstate(all="ignore"):
            F1, F2, *_ = self._system(q, r, lam + 1j * eta_min)
        # F2's terms are of the size psi_p (|z| + s_t^2); |z| >= eta keeps the scale > 0 at z = i eta (s_t^2 = 0)
        residual = np.maximum(np.abs(F1) / (np.abs(r) + 1e-300),
                              np.abs(F2) / (self.psi_p * (np.abs(lam + 1j * eta_min) + self.coeffs.s2)))
        # near a square-root edge the Jacobian is nearly singular: a tiny residual is convergence too
        converged = (converged | (residual < 1e-12)) & np.isfinite(q) & (q.imag >= 0) & (residual < 1e-8)
        return q, residual, converged, q_coarse

    def density(self, lam):
        """rho(lam) = Im q(lam + i0)/pi on a grid (eta = ETA_REL (|lam| + s_t^2))."""
        q, residual, converged, _ = self.stieltjes(lam)
        return q.imag / math.pi, residual, converged

    # -- support, edges, atoms, bulks ----------------------------------------------------------------
    def in_bulk(self, lam):
        """True where lam is inside the continuous support: there Im q(lam + i eta) hardly changes with
        eta, while in a gap it is proportional to eta (ratio test between eta_min and 10 eta_min)."""
        q, _, _, q10 = self.stieltjes(lam)
        return (q.imag > 0) & (q10.imag < 3.0 * q.imag), q

    def _bisect_edges(self, left, right, inside_left, rounds: int = 5, per_round: int = 48):
        """Locate the support boundary between left (flag inside_left) and right (the opposite flag) in
        log(lam - s_t^2): each round evaluates ``per_round`` points inside every bracket at once and keeps
        the sub-bracket where the flag changes (a 48-fold bisection; 5 rounds shrink a 1 % bracket to
        about 1e-12 relative)."""
        s2 = self.coeffs.s2
        lo, hi = np.log(left - s2), np.log(right - s2)
        frac = np.linspace(0.0, 1.0, per_round + 2)[1:-1]
        for _ in range(rounds):
            pts = lo[:, None] + (hi - lo)[:, None] * frac[None, :]
            flag, _ = self.in_bulk(s2 + np.exp(pts.ravel()))
            same = flag.reshape(pts.shape) == inside_left[:, None]
            # last point still on the left side of the change
            k = np.where(same.all(axis=1), per_round - 1, np.argmin(same, axis=1) - 1)
            new_lo = np.where(k >= 0, pts[np.arange(len(lo)), np.clip(k, 0, None)], lo)
            new_hi = np.where(k + 1 < per_round, pts[np.arange(len(lo)), np.clip(k + 1, 0, per_round - 1)], hi)
            lo, hi = new_lo, new_hi
        return s2 + np.exp(0.5 * (lo + hi))

    def _atom_eta(self, position: float) -> float:
        """The height at which an atom at ``position`` is weighed: ETA_REL |position|, or ETA_REL 1e-6 times the
        upper bound when the position is 0 or nearly (s_t^2 = 0 for the linear activation: a height relative to 0
        would underflow)."""
        return ETA_REL * max(abs(position), 1e-6 * self.upper_bound())

    def atom_weight(self, position: float) -> tuple[float, float]:
        """Weight of an atom at ``position``: lim eta Im q(position + i eta); returns (weight, change
        between eta and 10 eta, an error estimate)."""
        eta = self._atom_eta(position)
        q, _, _, q10 = self.stieltjes(np.array([position]), eta_min=np.array([eta]))
        w, w10 = eta * q.imag[0], 10 * eta * q10.imag[0]
        return float(w), float(abs(w10 - w))

    def _integrate_bulk(self, lft, rgt, m, computed=None):
        """Density on Chebyshev points of [lft, rgt] and the quadrature weights of its mass.

        lam = c - h cos(theta), d lam = h sin(theta) d theta; rho ~ sin(theta) at square-root edges, so the
        trapezoid rule in theta converges spectrally.  Every other node gives the rule with twice the step;
        if the two disagree (an interior cusp, where two sub-bulks nearly touch, makes the rule only
        algebraically convergent), the mass is recomputed by adaptive Gauss–Kronrod quadrature of the
        density with a break point at the interior minimum, and the weights rescaled to it.
        ``computed``: (q, residual, converged) of :meth:`stieltjes` at these nodes (:meth:`_bulk_nodes`),
        when the caller has evaluated several bulks in one call."""
        half = 0.5 * (rgt - lft)
        theta = np.arange(1, m + 1) * math.pi / (m + 1)
        lam = self._bulk_nodes(lft, rgt, m)
        q_b, res, conv = self.stieltjes(lam)[:3] if computed is None else computed
        rho = q_b.imag / math.pi
        weights = rho * np.sin(theta) * half * math.pi / (m + 1)
        mass = float(np.sum(weights))
        change = abs(mass - 2 * float(np.sum(weights[1::2])))
        if change > 1e-11 * max(mass, 1e-300):
            inner = slice(m // 10, m - m // 10)
            exact, change = self._adaptive_mass(lft, rgt, lam[inner.start + int(np.argmin(rho[inner]))])
            weights = weights * (exact / mass)
        return lam, rho, weights, res, conv, change

    @staticmethod
    def _bulk_nodes(lft, rgt, m):
        """The m Chebyshev nodes c - h cos(k pi/(m + 1)), k = 1..m, of [lft, rgt]."""
        return 0.5 * (lft + rgt) - 0.5 * (rgt - lft) * np.cos(np.arange(1, m + 1) * math.pi / (m + 1))

    def _adaptive_mass(self, lft, rgt, split, tol: float = 1e-12, rounds: int = 80):
        """Mass of [lft, rgt] by adaptive Gauss–Legendre (24 against 12 nodes per interval, bisecting the
        intervals where they disagree), every round's nodes evaluated in one vectorised call.  Returns
        (mass, error estimate)."""
        x24, w24 = np.polynomial.legendre.leggauss(24)
        x12, w12 = np.polynomial.legendre.leggauss(12)
        intervals = [(lft, split), (split, rgt)]
        total, err = 0.0, 0.0
        for _ in range(rounds):
            if not intervals:
                break
            a = np.array([i[0] for i in intervals])[:, None]
            b = np.array([i[1] for i in intervals])[:, None]
            mid, half = 0.5 * (a + b), 0.5 * (b - a)
            pts = np.concatenate([(mid + half * x24).ravel(), (mid + half * x12).ravel()])
            rho = self.stieltjes(pts)[0].imag / math.pi
            r24 = rho[:x24.size * len(intervals)].reshape(len(intervals), -1)
            r12 = rho[x24.size * len(intervals):].reshape(len(intervals), -1)
            i24 = (half[:, 0]) * (r24 @ w24)
            i12 = (half[:, 0]) * (r12 @ w12)
            nxt = []
            for (lo, hi), v24, v12 in zip(intervals, i24, i12):
                if abs(v24 - v12) <= tol * (hi - lo) / (rgt - lft) + 1e-16 or hi - lo < 1e-14 * (rgt - lft):
                    total += v24
                    err += abs(v24 - v12)
                else:
                    nxt += [(lo, 0.5 * (lo + hi)), (0.5 * (lo + hi), hi)]
            intervals = nxt
        if intervals:
            raise NumericalError("adaptive integration of a bulk's mass did not converge.")
        return float(total), float(err)

    def solve(self, n_points: int = 2000, coarse_points: int = 1500) -> "SpectrumResult":
        """Full spectral analysis: the atom at s_t^2, every bulk with precise edges and mass, the density
        on Chebyshev grids inside each bulk (resolving each bulk on its own scale), run-time checks."""
        c = self.coeffs
        s2, top = c.s2, self.upper_bound()
        grid = s2 + np.logspace(math.log10(max(1e-10 * top, 1e-14)), math.log10(top - s2), coarse_points)
        flags, q = self.in_bulk(grid)
        # Mass hidden between two gap points shows as Re q decreasing (q increases on every gap).
        for _ in range(6):
            gap_pair = ~flags[:-1] & ~flags[1:]
            hidden = np.nonzero(gap_pair & (q.real[1:] < q.real[:-1] - 1e-9 * np.abs(q.real[:-1])))[0]
            if hidden.size == 0:
                break
            extra = np.concatenate([s2 + np.geomspace(grid[i] - s2, grid[i + 1] - s2, 66)[1:-1] for i in hidden])
            f2, q2 = self.in_bulk(extra)
            order = np.argsort(np.concatenate([grid, extra]))
            grid = np.concatenate([grid, extra])[order]
            flags = np.concatenate([flags, f2])[order]
            q = np.concatenate([q, q2])[order]
        change = np.nonzero(flags[1:] != flags[:-1])[0]
        if flags[-1]:
            raise NumericalError("the spectrum reaches the end of the search range; the upper bound is wrong.")
        edges = self._bisect_edges(grid[change], grid[change + 1], flags[change]) if change.size else np.empty(0)
        if flags[0]:  # a hard edge at s_t^2 (psi_p = 1 + psi_n: the atom has just emptied; U_eq >= s_t^2 I)
            edges = np.concatenate([[s2], edges])
        lefts, rights = edges[0::2], edges[1::2]
        per_bulk = max(64, -(-n_points // max(len(lefts), 1)))  # ceil: at least n_points in all
        per_bulk += 1 - per_bulk % 2  # odd, so that every other node is the rule with twice the step
        # one vectorised continuation for the atom (at eta = ETA_REL s_t^2, as atom_weight), the nodes of every
        # bulk and the two probes below the spectrum (the points are independent; one call saves the per-call
        # cost of the continuation ladder)
        probe = np.array([-top, -1e-3 * top])
        pts = np.concatenate([[s2]] + [self._bulk_nodes(l_, r_, per_bulk) for l_, r_ in zip(lefts, rights)] + [probe])
        eta_pts = ETA_REL * (np.abs(pts) + s2)
        eta_pts[0] = self._atom_eta(s2)
        q_all, res_pts, conv_pts, q10_all = self.stieltjes(pts, eta_min=eta_pts)
        atom_w = float(eta_pts[0] * q_all.imag[0])
        atom_err = float(abs(10 * eta_pts[0] * q10_all.imag[0] - atom_w))
        atoms = [{"position": s2, "weight": atom_w}] if atom_w > 1e-9 else []
        bulks, grids, dens, res_all, conv_all, wts = [], [], [], [], [], []
        for j, (lft, rgt) in enumerate(zip(lefts, rights)):
            cut = slice(1 + j * per_bulk, 1 + (j + 1) * per_bulk)
            lam, rho, weights, res, conv, change = self._integrate_bulk(
                lft, rgt, per_bulk, computed=(q_all[cut], res_pts[cut], conv_pts[cut]))
            mass = float(np.sum(weights))
            bulks.append({"left": float(lft), "right": float(rgt), "mass": mass,
                          "mean": float(np.sum(lam * weights) / mass), "quadrature_change": change})
            grids.append(lam)
            dens.append(rho)
            res_all.append(res)
            conv_all.append(conv)
            wts.append(weights)
        grid_all = np.concatenate(grids) if grids else np.empty(0)
        density = np.concatenate(dens) if dens else np.empty(0)
        residual = np.concatenate(res_all) if res_all else np.empty(0)
        converged = np.concatenate(conv_all) if conv_all else np.empty(0, bool)
        total = sum(b["mass"] for b in bulks) + sum(a["weight"] for a in atoms)
        q_below = q_all[-2:]
        eta = eta_pts[-2:]
        # minus the atom's Lorentzian tail w eta/((lambda - s2)^2 + eta^2), which is not density below 0
        below = (q_below.imag - atom_w * eta / ((probe - s2) ** 2 + eta ** 2)) / math.pi
        checks = {"max_residual": float(residual.max(initial=0.0)), "all_points_converged": bool(converged.all()),
                  "min_density": float(density.min()) if density.size else 0.0, "max_density_below_zero": float(np.max(below)),
                  "total_mass": float(total), "atom_weight_error": atom_err}
        ok = (checks["all_points_converged"] and checks["min_density"] >= 0
              and checks["max_density_below_zero"] < 1e-6 * max(float(density.max(initial=1.0)), 1.0)
              and abs(total - 1.0) < MASS_TOL)
        checks["converged"] = bool(ok)
        return SpectrumResult(problem=self, atoms=atoms, bulks=bulks, grid=grid_all, density=density,
                              residual=residual, point_converged=converged, checks=checks,
                              bulk_sizes=[g.size for g in grids], weights=np.concatenate(wts) if wts else np.empty(0))


#: tolerated |total mass - 1| (atoms included) before the result is flagged as not converged
MASS_TOL = 1e-6


@dataclass
class SpectrumResult:
    """Output of :meth:`SpectralProblem.solve`: atoms, bulks (sorted by position, each with edges and
    mass), the density on the union of the bulk grids, per-point residuals and the run-time checks."""

    problem: SpectralProblem
    atoms: list
    bulks: list
    grid: np.ndarray
    density: np.ndarray
    residual: np.ndarray
    point_converged: np.ndarray
    checks: dict
    bulk_sizes: list
    weights: np.ndarray

    @property
    def converged(self) -> bool:
        return self.checks["converged"]

    def cdf(self, x) -> np.ndarray:
        """Theoretical CDF (atoms included) at the points x."""
        x = np.atleast_1d(np.asarray(x, dtype=float))
        out = np.zeros_like(x)
        for a in self.atoms:
            out += a["weight"] * (x >= a["position"])
        start = 0
        for b, m in zip(self.bulks, self.bulk_sizes):
            lam, w = self.grid[start:start + m], self.weights[start:start + m]
            start += m
            order = np.argsort(lam)
            # cumulative mass at the nodes (each node's weight split evenly around it), 0 and mass at the edges
            cum = np.cumsum(w[order]) - 0.5 * w[order]
            xs = np.concatenate([[b["left"]], lam[order], [b["right"]]])
            cs = np.concatenate([[0.0], cum * b["mass"] / max(float(np.sum(w)), 1e-300), [b["mass"]]])
            out += np.interp(x, xs, cs, left=0.0, right=b["mass"])
        return out

    def ks_distance(self, eigenvalues, atom_rtol: float = 1e-8) -> float:
        """Kolmogorov–Smirnov distance sup_x |F(x) - F_emp(x)| between the theoretical CDF (atoms
        included) and the empirical CDF of ``eigenvalues``.  Eigenvalues within ``atom_rtol`` (relative)
        of an atom are taken to sit on it (a numerical eigensolver spreads a degenerate eigenvalue by
        rounding); both one-sided limits are compared at every jump."""
        ev = np.sort(np.asarray(eigenvalues, dtype=float))
        scale = max(float(np.max(np.abs(ev))), 1e-300)  # eigensolver rounding scales with ||U||
        for a in self.atoms:
            ev[np.abs(ev - a["position"]) <= atom_rtol * max(abs(a["position"]), scale)] = a["position"]
        x = np.unique(ev)
        emp_right = np.searchsorted(ev, x, side="right") / ev.size
        emp_left = np.searchsorted(ev, x, side="left") / ev.size
        th_right = self.cdf(x)
        th_left = th_right.copy()
        for a in self.atoms:
            th_left -= a["weight"] * (x == a["position"])
        return float(max(np.max(np.abs(th_right - emp_right)), np.max(np.abs(th_left - emp_left))))

    def ks_distance_continuous(self, eigenvalues) -> float:
        """KS distance of the continuous part alone: the round(w N) eigenvalues nearest to each atom (of
        weight w) are removed and the rest is compared with the bulks' CDF renormalised to 1.  At finite d
        the atom of the exact U is smeared over a small interval, which dominates the full KS distance."""
        ev = np.sort(np.asarray(eigenvalues, dtype=float))
        keep = np.ones(ev.size, bool)
        for a in self.atoms:
            k = int(round(a["weight"] * ev.size))
            keep[np.argsort(np.abs(ev - a["position"]), kind="stable")[:k]] = False
        ev = ev[keep]
        atom_mass = sum(a["weight"] for a in self.atoms)
        cont = 1.0 - atom_mass
        if ev.size == 0 or cont <= 0:
            return 0.0
        F = (self.cdf(ev) - np.array([sum(a["weight"] for a in self.atoms if a["position"] <= x) for x in ev])) / cont
        k = np.arange(1, ev.size + 1)
        return float(max(np.max(np.abs(F - k / ev.size)), np.max(np.abs(F - (k - 1) / ev.size))))

    def pieces(self, mass_atol: float = 1e-6) -> dict:
        """Which bulks are which, identified by their masses (counting directions, not by position).

        Counting the directions of U ~ G G^T/n + b_t^2 W W^T/d + s_t^2 I: the population part of G holds d
        eigenvalues (the population bulk rho_2, mass 1/psi_p, split into sub-bulks when Sigma has several
        well separated eigenvalues), the rest of G holds n - d (the memorization bulk rho_1, mass
        (psi_n - 1)/psi_p), b_t^2 W W^T/d the d of the small cluster (mass 1/psi_p) and the atom the rest.
        So rho_2 is the set of rightmost bulks whose masses add up to 1/psi_p, and rho_1 the bulks just
        left of it adding up to (psi_n - 1)/psi_p (or to psi_n/psi_p when rho_1 has merged with the small
        cluster, or when p <= n + d, where the p - d directions left form one bulk; then rho_1's left edge is
        that of the merged bulk).  Returns the bulk indices
        ``population`` and ``memorization`` (lists, left to right; None where the masses do not match, e.g.
        when rho_1 and rho_2 have merged) and ``memorization_merged_with_cluster``."""
        pr = self.problem
        masses = [b["mass"] for b in self.bulks]
        out = {"population": None, "memorization": None, "memorization_merged_with_cluster": False}
        target = 1.0 / pr.psi_p
        acc, k = 0.0, len(masses)
        while k > 0 and acc < target - mass_atol:
            k -= 1
            acc += masses[k]
        if k == len(masses) or abs(acc - target) > mass_atol:
            return out
        out["population"] = list(range(k, len(masses)))
        if pr.psi_n <= 1:
            return out
        acc, j = 0.0, k
        # rho_1 alone (n - d directions), or merged with the small cluster (n directions; all p - d left when
        # p <= n + d)
        for goal, merged in (((pr.psi_n - 1) / pr.psi_p, False), (min(pr.psi_n, pr.psi_p - 1) / pr.psi_p, True)):
            while j > 0 and acc < goal - mass_atol:
                j -= 1
                acc += masses[j]
            if abs(acc - goal) <= mass_atol:
                out["memorization"] = list(range(j, k))
                out["memorization_merged_with_cluster"] = merged
                return out
        return out

    def timescales(self) -> dict:
        """psi_p/(Delta_t lambda) at the edges of every bulk, and the two timescales ([B25] Sec. 3.2):

        * tau_gen = psi_p/(Delta_t lambda_mean(rho_2)), lambda_mean the mass-weighted mean eigenvalue of the
          whole population bulk rho_2 (all its sub-bulks when Sigma is not isotropic; its mean, unlike its
          edges, does not depend on n at leading order); rho_2 is identified by its mass (:meth:`pieces`);
        * tau_mem = psi_p/(Delta_t lambda_left(rho_1)), rho_1 the memorization bulk identified by its mass
          (n - d directions) just left of rho_2;
        * their leading-order counterparts ([B25] Thm. 3.2, :func:`leading_order`): tau_gen ~ 1/(Delta_t mu_1^2),
          tau_mem = psi_p/(Delta_t lambda_-), lambda_- = s_t^2 + v_t^2 (1 - sqrt(psi_p/psi_n))^2.

        When the masses do not identify the pieces (merged bulks), rho_2 falls back to the rightmost bulk
        and rho_1 to the other bulk overlapping most the leading-order interval (``identified_by``:
        "mass" or "position")."""
        pr = self.problem
        c = pr.coeffs
        dt = c.delta
        edges = [{"left": pr.psi_p / (dt * b["right"]), "right": pr.psi_p / (dt * b["left"])} for b in self.bulks]
        lead = leading_order(c, pr.psi_p, pr.psi_n, sigma_eigenvalues=pr.sigma_eigenvalues,
                             sigma_weights=pr.sigma_weights)
        lam_minus, lam_plus = lead["memorization_bulk"]
        out = {"bulk_timescales": edges, "tau_gen": None, "tau_mem": None,
               "population_bulk": None, "memorization_bulk": None,
               "population_bulks": None, "memorization_bulks": None, "population_mean": None,
               "memorization_edges": None, "identified_by": None,
               "tau_gen_leading_order": lead["tau_gen"],
               "tau_mem_leading_order": pr.psi_p / (dt * lam_minus),
               "memorization_bulk_leading_order": [lam_minus, lam_plus]}
        if not self.bulks:
            return out
        ids = self.pieces()
        pop = ids["population"]
        out["identified_by"] = "mass" if pop is not None else "position"
        if pop is None:
            pop = [len(self.bulks) - 1]
        mass = sum(self.bulks[k]["mass"] for k in pop)
        mean = sum(self.bulks[k]["mass"] * self.bulks[k]["mean"] for k in pop) / mass
        out["population_bulks"] = pop
        out["population_bulk"] = pop[-1]
        out["population_mean"] = mean
        out["tau_gen"] = pr.psi_p / (dt * mean)
        mem = ids["memorization"]
        if mem is None:
            others = self.bulks[:pop[0]]
            if not others:
                return out
            out["identified_by"] = "position"

            # rho_1: the bulk that overlaps the leading-order interval most (in log lambda)
            def overlap(b):
                lo, hi = max(b["left"], lam_minus), min(b["right"], lam_plus)
                return math.log(hi / lo) if hi > lo else -abs(math.log(
                    math.sqrt(b["left"] * b["right"]) / math.sqrt(lam_minus * lam_plus)))
            mem = [max(range(len(others)), key=lambda k: overlap(others[k]))]
        out["memorization_bulks"] = mem
        out["memorization_bulk"] = mem[-1]
        out["memorization_edges"] = [self.bulks[mem[0]]["left"], self.bulks[mem[-1]]["right"]]
        out["tau_mem"] = pr.psi_p / (dt * self.bulks[mem[0]]["left"])
        return out


def leading_order(coeffs: GEPCoefficients, psi_p: float, psi_n: float, sigma_eigenvalues=(1.0,),
                  sigma_weights=(1.0,)) -> dict:
    """Leading-order spectrum of U and the two timescales ([B25] Thm. 3.2; docs/theory.md §4), in both regimes.

    The memorization bulk is the Marchenko–Pastur law of v_t^2 Omega Omega^T/n shifted by s_t^2:
    rho_1 on [lambda_-, lambda_+], lambda_+- = s_t^2 + v_t^2 (1 +- sqrt(psi_p/psi_n))^2, and
    tau_mem = psi_p/(Delta_t lambda_-).  The population bulk rho_2 sits on the scale psi_p: its mean eigenvalue
    is psi_p (e^{-2t} a_t^2 lambda_mean(Sigma) + b_t^2) (= psi_p mu_1^2 when Tr Sigma/d = sigma_x^2 of the
    coefficients), so tau_gen = psi_p/(Delta_t lambda_mean(rho_2)) = 1/(Delta_t mu_1^2).

    * psi_n < psi_p (p > n, "memorization possible"): an atom at s_t^2 of weight 1 - psi_n/psi_p
      (the leading-order theorem lumps the small cluster of d eigenvalues with it: 1 - (1 + psi_n)/psi_p
      at finite psi), rho_1 of weight psi_n/psi_p with lambda_- ~ v_t^2 psi_p/psi_n (1 - sqrt(psi_n/psi_p))^2,
      so tau_mem ~ psi_n/(Delta_t v_t^2) grows linearly with n when p >> n;
    * psi_n > psi_p (n > p, "architectural regularization"): no atom, rho_1 of weight 1 (the whole
      spectrum but the population's 1/psi_p), lambda_- -> s_t^2 + v_t^2 as n/p -> infinity, so tau_mem
      saturates at psi_p/(Delta_t (s_t^2 + v_t^2)) and the gap between train and test closes.

    Returns a dict with the regime, the atom (position, weight), memorization_bulk [lambda_-, lambda_+]
    and its weight, population_mean, tau_gen, tau_mem and tau_mem_limit (the n -> infinity limit), and
    ``population_mean_corrected`` / ``tau_gen_corrected``: the population mean with its first correction
    psi_p v_t^2/psi_n (the v_t Omega part of G seen along the d population directions; not part of Thm 3.2,
    it brings the leading order within 0.1 % of the full solution at psi_p/psi_n = 512)."""
    psi_p = check_positive_float("psi_p", psi_p)
    psi_n = check_positive_float("psi_n", psi_n)
    lam = check_finite_array("sigma eigenvalues", np.atleast_1d(np.asarray(sigma_eigenvalues, dtype=float)), ndim=1)
    w = check_finite_array("sigma weights", np.atleast_1d(np.asarray(sigma_weights, dtype=float)), ndim=1)
    if w.shape != lam.shape or np.any(w < 0) or w.sum() <= 0:
        raise InvalidParameterError("covariance weights must be >= 0, one per eigenvalue, with a positive sum.")
    lam_sigma = float(np.dot(w, lam) / w.sum())
    c = coeffs
    dt = c.delta
    r = math.sqrt(psi_p / psi_n)
    lam_minus = c.s2 + c.v2 * (1 - r) ** 2
    lam_plus = c.s2 + c.v2 * (1 + r) ** 2
    pop_mean = psi_p * (math.exp(-2 * c.t) * c.a ** 2 * lam_sigma + c.b ** 2)
    over = psi_n < psi_p
    return {"regime": "p > n" if over else "n >= p",
            "atom": {"position": c.s2, "weight": 1 - psi_n / psi_p} if over else None,
            "memorization_bulk": [lam_minus, lam_plus],
            "memorization_weight": psi_n / psi_p if over else 1.0 - 1.0 / psi_p,
            "population_mean": pop_mean,
            "tau_gen": psi_p / (dt * pop_mean),
            # first correction (not part of Thm 3.2): v_t^2 Omega Omega^T/n adds v_t^2 psi_p/psi_n to every
            # population eigenvalue when psi_p >> psi_n
            "population_mean_corrected": pop_mean + c.v2 * psi_p / psi_n,
            "tau_gen_corrected": psi_p / (dt * (pop_mean + c.v2 * psi_p / psi_n)),
            "tau_mem": psi_p / (dt * lam_minus),
            "tau_mem_limit": psi_p / (dt * (c.s2 + c.v2))}
