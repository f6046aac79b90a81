"""Learning curves in the limit d -> infinity at fixed psi_p = p/d, psi_n = n/d (docs/theory.md §8).

The Gaussian-equivalent model U = G G^T/n + b_t^2 F F^T + s_t^2 I_p (F = W/sqrt(d), the n columns of G
i.i.d. N(0, K) given W, K = c^2 F F^T + v_t^2 I_p, c^2 = e^{-2t} a_t^2 sigma_x^2), V ~ V~ ~ b_t F and
U~ ~ a_t^2 Gamma_t^2 F F^T + (||sigma||^2 - mu_0^2 - mu_1^2) I has deterministic equivalents that give the
whole gradient-flow curves from A(0) = 0 (tau the paper's time, tau = inf included):

* train loss ([B25] Thm. 3.1 unknowns; any Sigma):
      L_train(tau) = 1 - b_t^2 psi_p int dnu_s(l) (1 - e^{-4 Delta_t l tau/psi_p})/l,
      L_train(inf) = 1 - b_t^2 psi_p s(0),
  where s(z) = (1/(p d)) Tr[W^T (U - z)^{-1} W] = int drho_Sigma(l)/(s^ + l r^) is the Stieltjes transform of
  the W-weighted spectral measure nu_s (mass 1);
* test loss and score error (any Sigma), with g_tau(l) = (1 - e^{-2 Delta_t l tau/psi_p})/l and
  U~ ~ a_t^2 F Sigma_t F^T + (s_t^2 + v_t^2) I:
      L_test(tau) = 1 + b_t^2 [a_t^2 calT_A(tau) + (s_t^2 + v_t^2) psi_p int dnu_s g_tau^2]
                    - 2 b_t^2 psi_p int dnu_s g_tau,
      calT_A(tau) = (1/(2 pi i))^2 oint oint g_tau(z1) g_tau(z2) T_A(z1, z2) dz1 dz2,
      T_A(z1, z2) = lim (1/d) Tr[F F^T R(z1) F Sigma_t F^T R(z2)],
      E_score = (L_test - 1)/Delta_t + (1/d) Tr Sigma_t^{-1},
      L_test(inf) = 1 + b_t^2 [a_t^2 T_A(0, 0) + (s_t^2 + v_t^2) psi_p s'(0)] - 2 b_t^2 psi_p s(0).

Conditionally on W the resolvent is R(z) ~ Rbar = (F M F^T + beta I)^{-1}, M = c~^2 Sigma/D + b_t^2 I
(c~^2 = a_t^2 e^{-2t}), beta = v_t^2/D + s_t^2 - z, D = 1 + (1/n) Tr K R with K = c~^2 F Sigma F^T + v_t^2 I
(the D of Thm. 3.1), and the pencil [[U - z1, -X], [0, U - z2]] gives
      T_A = t_BA + theta t_BK/(D_1 D_2),  theta = (t_KA/psi_n)/(1 - t_KK/(psi_n D_1 D_2)),
t_XY = (1/d) Tr[X Rbar_1 Y Rbar_2] (B = F F^T, A = F Sigma_t F^T).  For Sigma = sigma_x^2 I (M = alpha I,
c^2 = c~^2 sigma_x^2) these are expectations over mu, the eigenvalues of W^T W/d (psi_p times a
Marchenko–Pastur law of ratio 1/psi_p), with Pi = (alpha_1 mu + beta_1)(alpha_2 mu + beta_2):
      t_BB = E[mu^2/Pi],  t_KB = E[(c^2 mu + v_t^2) mu/Pi],
      t_KK = E[(c^2 mu + v_t^2)^2/Pi] + (psi_p - 1) v_t^4/(beta_1 beta_2),  T_A = Gamma_t^2 T_BB-form,
in closed form by partial fractions.  For any Sigma the traces reduce, by R F = F Q M^{-1},
Q = (F^T F + beta M^{-1})^{-1}, to one- and two-point traces of the d x d Wishart resolvent Q, closed by the
same pencil once more (:meth:`AsymptoticCurves._two_point_nested`); for Sigma = sigma_x^2 I both routes agree
to rounding (tested).

Contour: int dnu_s f = -(1/pi) Im int_{Gamma+} f(z) s(z) dz over the upper half of the image under z = e^w of
the rectangle [log a, log b] x [-pi/4, pi/4] (a = s_t^2/3 below the spectrum, b above it), counter-clockwise,
Gauss–Legendre panels of length <= 1 in w.  The rays at +-45 degrees make e^{-k z tau} decay at least as
fast as it oscillates, so the same nodes serve every tau.  (q, r) at every node solve Thm. 3.1 by Newton's
method continued down a vertical line from far above the spectrum (Im q > 0 kept), as in
:class:`rfdm.spectrum.SpectralProblem`.  Every value is computed with m and 2m nodes per panel and their
difference is reported (``.accuracy``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .activations import get_activation
from .diffusion import check_time, delta_t
from .dynamics import as_tau_array
from .errors import InvalidParameterError, NumericalError, check_finite_array, check_positive_float, check_positive_int
from .spectrum import SpectralProblem, gep_coefficients

#: Newton iterations per continuation step, and the relative step size that counts as converged
NEWTON_ITERS = 40
NEWTON_TOL = 1e-14
#: continuation steps per decade of eta (vertical path from far above the spectrum down to the node)
STEPS_PER_DECADE = 4
#: a node is accepted when its scaled residual is below this
RESIDUAL_TOL = 1e-10
#: curves(...)["converged"] is True when every node-doubling difference is below this
ACCURACY_TOL = 1e-8


# -- Marchenko–Pastur ------------------------------------------------------------------------------------
def mp_stieltjes(w, psi_p: float):
    """m(w) = E[1/(mu - w)] and m'(w) for mu the eigenvalues of W^T W/d (W p x d standard Gaussian) in the
    limit: mu = psi_p x, x Marchenko–Pastur of ratio gamma = 1/psi_p (atom 1 - psi_p at 0 when psi_p < 1).

    m_x(y) = (1 - gamma - y + S)/(2 gamma y), S = sqrt(y - x_+) sqrt(y - x_-) (principal roots: the cut is
    [x_-, x_+] and S ~ y at infinity), x_+- = (1 +- sqrt(gamma))^2; m(w) = m_x(w/psi_p)/psi_p."""
    gamma = 1.0 / psi_p
    y = np.asarray(w, dtype=complex) / psi_p
    xp, xm = (1 + math.sqrt(gamma)) ** 2, (1 - math.sqrt(gamma)) ** 2
    S = np.sqrt(y - xp) * np.sqrt(y - xm)
    num = 1 - gamma - y + S
    m = num / (2 * gamma * y)
    dS = (y - (1 + gamma)) / S
    dm = ((-1 + dS) * y - num) / (2 * gamma * y * y)
    return m / psi_p, dm / psi_p ** 2


def _two_point(f2, f_w1, f_w2, fp_w, m1, m2, dm, w1, w2, diagonal):
    """E[f(mu)/((mu - w1)(mu - w2))] for a quadratic f with leading coefficient f2 (partial fractions):
    f2 + (f(w1) m(w1) - f(w2) m(w2))/(w1 - w2); on the diagonal w1 = w2: f2 + f'(w) m(w) + f(w) m'(w)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        off = f2 + (f_w1 * m1 - f_w2 * m2) / (w1 - w2)
    on = f2 + fp_w * m1 + f_w1 * dm
    return np.where(diagonal, on, off)


# -- the contour -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Contour:
    """Upper half of the image under z = e^w of the rectangle [log a, log b] x [-pi/4, pi/4] (counter-
    clockwise: the right arc up, the ray at 45 degrees leftwards, the left arc down), as Gauss–Legendre
    panels in w.  ``z`` are the nodes, ``dz`` the weights times dz/dw = z."""

    a: float
    b: float
    nodes_per_panel: int
    panel_length: float
    z: np.ndarray
    dz: np.ndarray

    @classmethod
    def build(cls, a: float, b: float, nodes_per_panel: int, panel_length: float = 1.0) -> "Contour":
        x, wts = np.polynomial.legendre.leggauss(nodes_per_panel)
        la, lb, top = math.log(a), math.log(b), math.pi / 4
        segments = []  # (w start, w end) straight segments in the w-plane
        n_arc = max(1, math.ceil(top / panel_length))
        arc = np.linspace(0.0, top, n_arc + 1)
        segments += [(complex(lb, arc[k]), complex(lb, arc[k + 1])) for k in range(n_arc)]
        n_ray = max(1, math.ceil((lb - la) / panel_length))
        ray = np.linspace(lb, la, n_ray + 1)
        segments += [(complex(ray[k], top), complex(ray[k + 1], top)) for k in range(n_ray)]
        segments += [(complex(la, arc[k + 1]), complex(la, arc[k])) for k in reversed(range(n_arc))]
        ws, dws = [], []
        for w0, w1 in segments:
            ws.append(0.5 * (w0 + w1) + 0.5 * (w1 - w0) * x)
            dws.append(0.5 * (w1 - w0) * wts)
        w, dw = np.concatenate(ws), np.concatenate(dws)
        z = np.exp(w)
        return cls(a=a, b=b, nodes_per_panel=nodes_per_panel, panel_length=panel_length, z=z, dz=z * dw)


# -- Thm 3.1 on arbitrary complex nodes -----------------------------------------------------------------
def solve_self_consistent(problem: SpectralProblem, z) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(q, r) of [B25] Thm. 3.1 at complex points z with Im z >= 0 (equations of
    :meth:`rfdm.spectrum.SpectralProblem._system`), and the scaled residual.

    Each point is reached along its vertical line x + i eta, eta geometric from 10 (scale + |x|) (where
    q ~ -1/z is the unique solution) down to Im z (or to 1e-13 scale for real z, then a last Newton solve at
    z itself), Newton at every step with the step halved while it would make Im q <= 0 (q is Herglotz), as in
    :meth:`SpectralProblem.stieltjes`.  Raises NumericalError if a point does not converge."""
    z = np.atleast_1d(np.asarray(z, dtype=complex))
    if np.any(z.imag < 0):
        raise InvalidParameterError("the self-consistent equations are solved for Im z >= 0 only.")
    scale = problem.upper_bound()
    x, y = z.real, z.imag
    eta0 = 10.0 * (scale + np.abs(x))
    eta_end = np.maximum(y, 1e-13 * scale)
    decades = float(np.max(np.log10(eta0 / eta_end)))
    n_steps = max(8, int(math.ceil(STEPS_PER_DECADE * decades)))
    frac = np.linspace(0.0, 1.0, n_steps)
    q = -1.0 / (x + 1j * eta0)
    r = float(np.dot(problem.sigma_weights, problem.sigma_eigenvalues)) * q
    path = [x + 1j * np.exp((1 - u) * np.log(eta0) + u * np.log(eta_end)) for u in frac]
    path.append(z)  # the node itself (equal to the last step unless z is real)
    ok = np.zeros(z.shape, bool)
    for k, zk in enumerate(path):
        keep_im = zk.imag > 0
        for _ in range(NEWTON_ITERS):
            with np.errstate(all="ignore"):
                F1, F2, J11, J12, J21, J22 = problem._system(q, r, zk)
                det = J11 * J22 - J12 * J21
                dq = (J22 * F1 - J12 * F2) / det
                dr = (-J21 * F1 + J11 * F2) / det
            step = np.ones(z.shape)
            for _ in range(30):
                bad = keep_im & ((q - step * dq).imag <= 0)
                if not bad.any():
                    break
                step = np.where(bad, 0.5 * step, step)
            finite = np.isfinite(dq) & np.isfinite(dr)
            q = np.where(finite, q - step * dq, q)
            r = np.where(finite, r - step * dr, r)
            ok = finite & (np.abs(step * dq) <= NEWTON_TOL * np.abs(q)) & (np.abs(step * dr) <= NEWTON_TOL * np.abs(r))
            if ok.all():
                break
    with np.errstate(all="ignore"):
        F1, F2, *_ = problem._system(q, r, z)
    residual = np.maximum(np.abs(F1) / np.abs(r), np.abs(F2) / (problem.psi_p * (np.abs(z) + problem.coeffs.s2)))
    bad = ~np.isfinite(residual) | (residual > RESIDUAL_TOL)
    if bad.any():
        k = int(np.argmax(np.where(np.isfinite(residual), residual, np.inf)))
        raise NumericalError(f"the self-consistent equations did not converge at z = {z[k]:.4g} "
                             f"(scaled residual {residual[k]:.2g}).")
    return q, r, residual


@dataclass
class NodeValues:
    """Everything the curves need at a set of complex points: Thm. 3.1's (q, r), s(z) (the W-weighted
    Stieltjes transform), D(z), beta(z), the nested resolvent's E, M, Gam, Qbar (per eigenvalue of Sigma);
    for isotropic data also alpha, w = -beta/alpha and the
    Marchenko–Pastur m(w), m'(w)."""

    z: np.ndarray
    q: np.ndarray
    r: np.ndarray
    s: np.ndarray
    D: np.ndarray
    residual: np.ndarray
    alpha: np.ndarray | None = None
    beta: np.ndarray | None = None
    w: np.ndarray | None = None
    m: np.ndarray | None = None
    dm: np.ndarray | None = None
    consistency: float | None = None
    E: np.ndarray | None = None
    M: np.ndarray | None = None
    Gam: np.ndarray | None = None
    Qbar: np.ndarray | None = None

    _FIELDS = ("z", "q", "r", "s", "D", "residual", "alpha", "beta", "w", "m", "dm", "E", "M", "Gam", "Qbar")

    def take(self, index) -> "NodeValues":
        """The values at a subset of the points (first axis)."""
        out = {f: (None if getattr(self, f) is None else getattr(self, f)[index]) for f in self._FIELDS}
        return NodeValues(consistency=self.consistency, **out)

    def conj(self) -> "NodeValues":
        """The values at the conjugate points (every function here is real on the real axis)."""
        out = {f: (None if getattr(self, f) is None else np.conj(getattr(self, f))) for f in self._FIELDS}
        out["residual"] = self.residual
        return NodeValues(consistency=self.consistency, **out)


# -- the curves ------------------------------------------------------------------------------------------
class AsymptoticCurves:
    """Train loss, test loss, score error and generalization gap along gradient flow from A(0) = 0 in the
    limit d -> infinity at fixed psi_p, psi_n (module docstring; docs/theory.md §8).

    Factorise once (solve Thm. 3.1 at the contour nodes, build the two-point matrix T(z_j, z_k)), then
    evaluate at any array of tau >= 0 (np.inf: the closed forms at tau = inf, not the contour).

    Parameters
    ----------
    activation : name or :class:`rfdm.Activation`.
    t : diffusion time.
    psi_p, psi_n : p/d and n/d (> 0; both regimes psi_n < psi_p and psi_n > psi_p).
    sigma_eigenvalues, sigma_weights : spectrum of the data covariance Sigma (eigenvalues of Sigma itself,
        weights summing to 1; default Sigma = I).  Every curve is available for any Sigma: the test loss by
        the Marchenko–Pastur closed form for Sigma = sigma_x^2 I and by the nested pencil otherwise.
    nodes_per_panel : Gauss–Legendre nodes per panel (m); the check uses 2m.
    panel_length : panel length in w = log z (default 1).
    """

    def __init__(self, activation, t, psi_p, psi_n, sigma_eigenvalues=(1.0,), sigma_weights=None,
                 nodes_per_panel: int = 16, panel_length: float = 1.0):
        self.activation = get_activation(activation)
        self.t = check_time(t)
        self.psi_p = check_positive_float("psi_p", psi_p)
        self.psi_n = check_positive_float("psi_n", psi_n)
        lam = check_finite_array("sigma eigenvalues", np.atleast_1d(sigma_eigenvalues), ndim=1)
        if np.any(lam <= 0):
            raise InvalidParameterError("covariance eigenvalues must be > 0.")
        if sigma_weights is None:
            wts = np.full(lam.size, 1.0 / lam.size)
        else:
            wts = check_finite_array("sigma weights", np.atleast_1d(sigma_weights), ndim=1)
            if wts.shape != lam.shape or np.any(wts < 0) or abs(wts.sum() - 1) > 1e-9:
                raise InvalidParameterError("sigma weights must be >= 0, one per eigenvalue, and sum to 1.")
        self.nodes_per_panel = check_positive_int("nodes_per_panel", nodes_per_panel)
        self.panel_length = check_positive_float("panel_length", panel_length)
        self.sigma_x2 = float(np.dot(wts, lam))
        self.isotropic = bool(np.all(np.abs(lam - lam[0]) <= 1e-12 * lam[0]))
        c = self.coeffs = gep_coefficients(self.activation, self.t, self.sigma_x2)
        scale = max(c.norm2 - c.mu0 ** 2, 1e-300)
        if not (abs(c.b) > 1e-8 * math.sqrt(scale)):
            raise InvalidParameterError(f"the activation {self.activation.name!r} has b_t = E sigma'(Gamma_t z) "
                                        f"sqrt(Delta_t) = {c.b:.3g} at t = {self.t:g}: the score is not learned "
                                        "at all (every loss stays 1).")
        if not (c.s2 > 1e-10 * scale):
            raise InvalidParameterError(f"the activation {self.activation.name!r} has s_t^2 = {c.s2:.3g} at "
                                        f"t = {self.t:g}: without the noise floor the spectrum reaches 0 and the "
                                        "contour cannot pass below it.")
        self.problem = SpectralProblem(c, self.psi_p, self.psi_n, lam, wts)
        self.delta = float(delta_t(self.t))
        self.gamma2 = math.exp(-2 * self.t) * self.sigma_x2 + self.delta
        #: (1/d) Tr Sigma_t^{-1}, the constant of the score error
        self.trace_inv_sigma_t = float(np.dot(wts, 1.0 / (math.exp(-2 * self.t) * lam + self.delta)))
        self.c2 = c.a ** 2 * math.exp(-2 * self.t) * self.sigma_x2
        self.a, self.b = c.s2 / 3.0, 1.5 * self.problem.upper_bound()
        # every point where Thm. 3.1 is needed, solved in one vectorised call: the contour nodes for m and
        # 2m nodes per panel, z = 0 (tau = inf closed forms) and the upper half of a circle of radius s_t^2/4
        # around 0 (s'(0) by Cauchy's formula, trapezoid rule: error ~ 4^{-K}; the lower half by conjugation)
        contours = [Contour.build(self.a, self.b, m, self.panel_length)
                    for m in (self.nodes_per_panel, 2 * self.nodes_per_panel)]
        K = 64
        theta = 2 * math.pi * (np.arange(K) + 0.5) / K
        rho = c.s2 / 4.0
        circle = rho * np.exp(1j * theta[: K // 2])  # theta in (0, pi); theta_{K-1-k} = 2 pi - theta_k
        parts = [contours[0].z, contours[1].z, np.array([0.0 + 0.0j]), circle]
        allv = self._node_values(np.concatenate(parts))
        bounds = np.cumsum([0] + [x.size for x in parts])
        pieces = [allv.take(slice(bounds[i], bounds[i + 1])) for i in range(len(parts))]
        self._levels = {}
        for contour, nodes in zip(contours, pieces[:2]):
            self._levels[contour.nodes_per_panel] = (contour, nodes, None)  # T_A built on first use
        self._zero = pieces[2]
        sc = np.concatenate([pieces[3].s, np.conj(pieces[3].s[::-1])])
        self.s0 = float(self._zero.s[0].real)
        self.ds0 = float(np.real(np.mean(sc * np.exp(-1j * theta)) / rho))
        zn = self._zero
        T00 = self.gamma2 * self._two_point(zn, zn, same=True) if self.isotropic else self._two_point_nested(zn, zn)
        self.T00 = float(T00[0, 0].real)  # T_A(0, 0)

    # -- per-node quantities -------------------------------------------------------------------------
    def _node_values(self, z) -> NodeValues:
        c = self.coeffs
        q, r, res = solve_self_consistent(self.problem, z)
        alpha_c = c.a ** 2 * math.exp(-2 * c.t)
        D = 1.0 + (self.psi_p / self.psi_n) * (alpha_c * r + c.v2 * q)
        s_hat = c.b ** 2 * self.psi_p + 1.0 / q
        r_hat = self.psi_p * alpha_c / D
        lam, wts = self.problem.sigma_eigenvalues[:, None], self.problem.sigma_weights[:, None]
        s = np.sum(wts / (s_hat[None] + lam * r_hat[None]), axis=0)
        beta = c.v2 / D + c.s2 - z
        # the nested (d x d) problem: Q = (F^T F + Gam)^{-1}, Gam = beta M^{-1}, M = c~^2 Sigma/D + b_t^2 I,
        # Qbar = (psi_p/E + Gam)^{-1} with E = 1 + (1/d) Tr Qbar = 1/(beta q)
        E = 1.0 / (beta * q)
        M = alpha_c * lam.T / D[:, None] + c.b ** 2
        Gam = beta[:, None] / M
        Qbar = 1.0 / (self.psi_p / E[:, None] + Gam)
        nested = float(np.max(np.abs(Qbar @ self.problem.sigma_weights - (E - 1)) / np.abs(E)))
        if not nested < 1e-8:
            raise NumericalError(f"the nested resolvent disagrees with Thm. 3.1 by {nested:.2g}.")
        out = NodeValues(z=z, q=q, r=r, s=s, D=D, residual=res, beta=beta, E=E, M=M, Gam=Gam, Qbar=Qbar,
                         consistency=nested)
        if self.isotropic:
            alpha = self.c2 / D + c.b ** 2
            w = -beta / alpha
            m, dm = mp_stieltjes(w, self.psi_p)
            # consistency of the two descriptions: q = (1/psi_p) E 1/(alpha mu + beta) + (1 - 1/psi_p)/beta
            q_mp = m / (alpha * self.psi_p) + (1 - 1 / self.psi_p) / beta
            s_mp = (1 + w * m) / (alpha * self.psi_p)
            cons = float(max(np.max(np.abs(q_mp - q) / np.abs(q)), np.max(np.abs(s_mp - s) / np.abs(s))))
            out.alpha, out.w, out.m, out.dm, out.consistency = alpha, w, m, dm, max(cons, nested)
            if not cons < 1e-8:
                raise NumericalError(f"the Marchenko–Pastur form of q(z) disagrees with Thm. 3.1 by {cons:.2g}.")
        return out

    def _two_point(self, n1: NodeValues, n2: NodeValues, same: bool = False):
        """T(z1_j, z2_k) = t_BB + delta_12 t_KB/(D_1 D_2) for all pairs (a matrix)."""
        c2, v2 = self.c2, self.coeffs.v2
        w1, w2 = n1.w[:, None], n2.w[None, :]
        m1, m2 = n1.m[:, None], n2.m[None, :]
        dm = n1.dm[:, None]
        diag = np.zeros((n1.z.size, n2.z.size), bool)
        if same:
            np.fill_diagonal(diag, True)
        al = n1.alpha[:, None] * n2.alpha[None, :]
        # f_BB = mu^2, f_KB = (c^2 mu + v^2) mu, f_KK = (c^2 mu + v^2)^2
        tBB = _two_point(1.0, w1 ** 2, w2 ** 2, 2 * w1, m1, m2, dm, w1, w2, diag) / al
        tKB = _two_point(c2, (c2 * w1 + v2) * w1, (c2 * w2 + v2) * w2, 2 * c2 * w1 + v2, m1, m2, dm, w1, w2,
                         diag) / al
        tKK = (_two_point(c2 ** 2, (c2 * w1 + v2) ** 2, (c2 * w2 + v2) ** 2, 2 * c2 * (c2 * w1 + v2), m1, m2, dm,
                          w1, w2, diag) / al + (self.psi_p - 1) * v2 ** 2 / (n1.beta[:, None] * n2.beta[None, :]))
        DD = n1.D[:, None] * n2.D[None, :]
        delta12 = (tKB / self.psi_n) / (1 - tKK / (self.psi_n * DD))
        return tBB + delta12 * tKB / DD

    def _two_point_nested(self, n1: NodeValues, n2: NodeValues):
        """T_A(z1_j, z2_k) = lim (1/d) Tr[F F^T R(z1) F Sigma_t F^T R(z2)] for any Sigma (docs/theory.md §8).

        Outer pencil (the data given W): T_A = t_BA + theta t_BK/(D_1 D_2), theta = (t_KA/psi_n)/(1 - t_KK/
        (psi_n D_1 D_2)), t_XY = (1/d) Tr[X Rbar_1 Y Rbar_2], X = F N_X F^T + x_0 I (B: N = I; A: N = Sigma_t;
        K: N = c~^2 Sigma, x_0 = v_t^2).  With R_i F = F Q_i M_i^{-1}, F^T R_i F = (I - Gam_i Q_i) M_i^{-1} and
        Rbar_i = (I - F Q_i F^T)/beta_i, every t_XY is a sum of one-point traces (1/d) Tr[Q X] ~ E[Qbar X] and
        two-point traces of the inner Wishart problem (the same pencil once more, on the d x d side):
        (1/d) Tr[Q_1 X Q_2 Y] ~ E[Qbar_1 X Qbar_2 Y] + psi_p E[Qbar_1 X Qbar_2] E[Qbar_1 Qbar_2 Y]/(E_1 E_2 den),
        den = 1 - psi_p E[Qbar_1 Qbar_2]/(E_1 E_2), E over the spectrum of Sigma (all matrices diagonal there)."""
        c, pp = self.coeffs, self.psi_p
        lam, wts = self.problem.sigma_eigenvalues, self.problem.sigma_weights
        Q1, Q2 = n1.Qbar[:, None, :], n2.Qbar[None, :, :]
        iM1, iM2 = 1.0 / n1.M[:, None, :], 1.0 / n2.M[None, :, :]
        G1, G2 = n1.Gam[:, None, :], n2.Gam[None, :, :]
        EE = n1.E[:, None] * n2.E[None, :]
        bb = n1.beta[:, None] * n2.beta[None, :]
        DD = n1.D[:, None] * n2.D[None, :]

        wc = wts.astype(complex)

        def ex(f):  # E over the spectrum of Sigma (a matrix-vector product: fast for a short last axis)
            return np.broadcast_to(f, DD.shape + (wts.size,)) @ wc

        QQ = Q1 * Q2
        den = 1.0 - pp * ex(QQ) / EE

        def tp(X, Y):  # (1/d) Tr[Q_1 X Q_2 Y]
            return ex(QQ * X * Y) + pp * ex(QQ * X) * ex(QQ * Y) / (EE * den)

        def t(NX, x0, NY, y0):
            NXY = NX * NY * iM12
            out = (ex(NXY) - ex(Q1 * NXY * G1) - ex(Q2 * NXY * G2) + tp(NY * G2 * iM1, NX * G1 * iM2))
            if x0:
                out = out + x0 * (ex(Q1iM1 * NY * iM2) - tp(NY * G2 * iM1, iM2))
            if y0:
                out = out + y0 * (ex(Q2iM2 * NX * iM1) - tp(iM1, NX * G1 * iM2))
            if x0 and y0:
                out = out + x0 * y0 * ((pp - 1) + tp(G2, G1)) / bb
            return out

        Q1iM1, Q2iM2, iM12 = Q1 * iM1, Q2 * iM2, iM1 * iM2
        NB = np.ones_like(lam)
        NA = math.exp(-2 * self.t) * lam + self.delta
        NK = c.a ** 2 * math.exp(-2 * self.t) * lam
        tBA, tBK = t(NB, 0.0, NA, 0.0), t(NB, 0.0, NK, c.v2)
        tKA, tKK = t(NK, c.v2, NA, 0.0), t(NK, c.v2, NK, c.v2)
        theta = (tKA / self.psi_n) / (1 - tKK / (self.psi_n * DD))
        return tBA + theta * tBK / DD

    def _two_point_matrices(self, nodes: NodeValues):
        """T_A on (upper, upper) and (upper, lower) node pairs (the lower nodes are the conjugates):
        Gamma_t^2 T (Marchenko–Pastur closed form) for Sigma = sigma_x^2 I, the nested pencil otherwise."""
        lower = nodes.conj()
        if self.isotropic:
            return self.gamma2 * self._two_point(nodes, nodes, same=True), self.gamma2 * self._two_point(nodes, lower)
        return self._two_point_nested(nodes, nodes), self._two_point_nested(nodes, lower)

    # -- mode functions ------------------------------------------------------------------------------
    def _g(self, z, tau, factor: float):
        """(1 - e^{-factor Delta_t z tau/psi_p})/z for finite tau, shape (nodes, taus)."""
        x = (factor * self.delta / self.psi_p) * z[:, None] * tau[None, :]
        return -np.expm1(-x) / z[:, None]

    def _one_point(self, level, f):
        """int dnu_s f = -(1/pi) Im sum_j f(z_j) s(z_j) dz_j over the upper half of the contour."""
        contour, nodes, _ = self._levels[level]
        return -np.imag((contour.dz * nodes.s) @ f) / math.pi

    def _double(self, level, g):
        """calT = (1/(2 pi i))^2 (full double sum) = -(2 Re(a^T T_uu a) - 2 a^T T_ul conj(a))/(4 pi^2),
        a_j = dz_j g(z_j) (the lower half carries the conjugate nodes with weights -conj(dz))."""
        contour, nodes, Ts = self._levels[level]
        if Ts is None:
            Ts = self._two_point_matrices(nodes)
            self._levels[level] = (contour, nodes, Ts)
        Tuu, Tul = Ts
        a = contour.dz[:, None] * g
        s = 2 * np.real(np.einsum("jt,jt->t", a, Tuu @ a)) - 2 * np.real(np.einsum("jt,jt->t", a, Tul @ np.conj(a)))
        return -s / (4 * math.pi ** 2)

    # -- public curves -------------------------------------------------------------------------------
    def _evaluate(self, name, tau):
        tau = as_tau_array(tau)
        fin = np.isfinite(tau)
        c = self.coeffs
        out = {}
        for level in self._levels:
            z = self._levels[level][0].z
            vals = np.empty(tau.size)
            tf = tau[fin]
            if name == "train":
                vals[fin] = 1 - c.b ** 2 * self.psi_p * self._one_point(level, self._g(z, tf, 4.0))
                vals[~fin] = 1 - c.b ** 2 * self.psi_p * self.s0
            else:
                g = self._g(z, tf, 2.0)
                vals[fin] = (1 + c.b ** 2 * (c.a ** 2 * self._double(level, g)
                                             + (c.s2 + c.v2) * self.psi_p * self._one_point(level, g * g))
                             - 2 * c.b ** 2 * self.psi_p * self._one_point(level, g))
                vals[~fin] = self.test_loss_inf()
            if not np.all(np.isfinite(vals)):
                raise NumericalError(f"the asymptotic {name} loss is not finite at some tau.")
            out[level] = vals
        lo, hi = self.nodes_per_panel, 2 * self.nodes_per_panel
        return out[hi], np.abs(out[hi] - out[lo])

    def train_loss(self, tau, return_error: bool = False):
        """L_train(tau) = 1 - b_t^2 psi_p int dnu_s (1 - e^{-4 Delta_t l tau/psi_p})/l; at tau = inf
        1 - b_t^2 psi_p s(0).  With ``return_error`` also |value(2m) - value(m)| (node doubling)."""
        v, e = self._evaluate("train", tau)
        return (v, e) if return_error else v

    def test_loss(self, tau, return_error: bool = False):
        """L_test(tau) = 1 + b_t^2 [a_t^2 calT_A(tau) + (s_t^2 + v_t^2) psi_p int dnu_s g_tau^2]
        - 2 b_t^2 psi_p int dnu_s g_tau (module docstring; any Sigma)."""
        v, e = self._evaluate("test", tau)
        return (v, e) if return_error else v

    def score_error(self, tau, return_error: bool = False):
        """E_score = (L_test - 1)/Delta_t + (1/d) Tr Sigma_t^{-1} (the denoising identity; Y = V~/sqrt(Delta_t))."""
        v, e = self.test_loss(tau, return_error=True)
        out = (v - 1) / self.delta + self.trace_inv_sigma_t
        return (out, e / self.delta) if return_error else out

    def generalization_gap(self, tau, return_error: bool = False):
        """L_test - L_train."""
        vt, et = self.test_loss(tau, return_error=True)
        vr, er = self.train_loss(tau, return_error=True)
        return (vt - vr, et + er) if return_error else vt - vr

    def train_loss_inf(self) -> float:
        """Closed form L_train(inf) = 1 - b_t^2 psi_p s(0)."""
        return 1 - self.coeffs.b ** 2 * self.psi_p * self.s0

    def test_loss_inf(self) -> float:
        """Closed form L_test(inf) = 1 + b_t^2 [a_t^2 T_A(0, 0) + (s_t^2 + v_t^2) psi_p s'(0)]
        - 2 b_t^2 psi_p s(0)."""
        c = self.coeffs
        return float(1 + c.b ** 2 * (c.a ** 2 * self.T00 + (c.s2 + c.v2) * self.psi_p * self.ds0)
                     - 2 * c.b ** 2 * self.psi_p * self.s0)

    def contour_at_inf(self) -> dict:
        """The tau = inf values by the contour (g = 1/z), to compare with the closed forms."""
        out = {}
        for level in self._levels:
            z = self._levels[level][0].z
            g = (1.0 / z)[:, None]
            c = self.coeffs
            tr = 1 - c.b ** 2 * self.psi_p * self._one_point(level, g)[0]
            te = (1 + c.b ** 2 * (c.a ** 2 * self._double(level, g)[0]
                                  + (c.s2 + c.v2) * self.psi_p * self._one_point(level, g * g)[0])
                  - 2 * c.b ** 2 * self.psi_p * self._one_point(level, g)[0])
            out[level] = {"train_loss": float(tr), "test_loss": float(te)}
        return out

    def curves(self, tau, train_only: bool = False) -> dict:
        """Every curve at ``tau`` (the keys of :meth:`rfdm.GradientFlow.curves`) plus ``accuracy``: the
        largest |2m - m| node-doubling difference of each curve, ``converged``: all of them <= ACCURACY_TOL
        (1e-8), ``contour``: its shape (ends a, b, nodes, largest Thm. 3.1 residual, Marchenko–Pastur
        consistency) and ``config``: :meth:`describe`.  ``train_only``: the train loss alone (cheaper)."""
        tau = as_tau_array(tau)
        tr, etr = self.train_loss(tau, return_error=True)
        out = {"tau": tau, "train_loss": tr}
        acc = {"train_loss": float(np.max(etr))}
        if not train_only:
            te, ete = self.test_loss(tau, return_error=True)
            out["test_loss"] = te
            out["score_error"] = (te - 1) / self.delta + self.trace_inv_sigma_t
            out["generalization_gap"] = te - tr
            acc.update(test_loss=float(np.max(ete)), score_error=float(np.max(ete)) / self.delta,
                       generalization_gap=float(np.max(ete + etr)))
        out["accuracy"] = acc
        out["converged"] = bool(max(acc.values()) <= ACCURACY_TOL)
        out["contour"] = self.describe_contour()
        out["config"] = self.describe()
        return out

    def describe(self) -> dict:
        """The resolved setting: activation, t, psi_p, psi_n, Sigma's spectrum, the GEP coefficients."""
        c = self.coeffs
        return {"method": "asymptotic", "activation": self.activation.name, "t": self.t, "psi_p": self.psi_p,
                "psi_n": self.psi_n, "sigma_eigenvalues": self.problem.sigma_eigenvalues.tolist(),
                "sigma_weights": self.problem.sigma_weights.tolist(), "sigma_x2": self.sigma_x2,
                "isotropic": self.isotropic, "delta_t": self.delta,
                "coefficients": {"a_t": c.a, "b_t": c.b, "v_t2": c.v2, "s_t2": c.s2, "mu_0": c.mu0, "mu_1": c.mu1,
                                 "norm2": c.norm2},
                "nodes_per_panel": self.nodes_per_panel, "panel_length": self.panel_length}

    def describe_contour(self) -> dict:
        lv = self._levels[2 * self.nodes_per_panel]
        return {"a": self.a, "b": self.b, "nodes_per_panel": [self.nodes_per_panel, 2 * self.nodes_per_panel],
                "panel_length": self.panel_length, "nodes_upper_half": [self._levels[m][0].z.size for m in self._levels],
                "max_residual": float(max(np.max(self._levels[m][1].residual) for m in self._levels)),
                "mp_consistency": lv[1].consistency}

    def timescales(self) -> dict:
        """psi_p/(Delta_t lambda) at the contour's ends (bounds on every mode's timescale)."""
        return {"fastest": self.psi_p / (self.delta * self.b), "slowest": self.psi_p / (self.delta * self.a)}


# -- the 1/d bridge to finite d --------------------------------------------------------------------------
def finite_d_curves(activation, t, psi_p, psi_n, d, tau, seeds=(0,), sigma_x2: float = 1.0,
                    sigma_eigenvalues=None, sigma_weights=None) -> dict:
    """Exact finite-d curves (noise-averaged U, V and population U~, V~ of :mod:`rfdm.features`, closed-form
    flow of :class:`rfdm.GradientFlow`, A(0) = 0) for data N(0, sigma_x^2 I_d) (or, with
    ``sigma_eigenvalues``/``sigma_weights``, N(0, Sigma) with that spectrum, :class:`rfdm.GaussianData`
    rounding the multiplicities), p = round(psi_p d),
    n = round(psi_n d), averaged over ``seeds`` (each seed s draws W from SeedSequence([s, 0]) and the training
    set from SeedSequence([s, 1])).  Returns the mean curves, their standard errors over the seeds (``*_sem``,
    None for one seed) and the sizes."""
    from .data import GaussianData
    from .dynamics import GradientFlow
    from .features import RandomFeatures, noise_averaged_statistics, population_statistics

    d = check_positive_int("d", d)
    psi_p = check_positive_float("psi_p", psi_p)
    psi_n = check_positive_float("psi_n", psi_n)
    p, n = int(round(psi_p * d)), int(round(psi_n * d))
    if p < 1 or n < 1:
        raise InvalidParameterError(f"psi_p d = {psi_p * d:g} and psi_n d = {psi_n * d:g} must round to >= 1.")
    tau = as_tau_array(tau)
    seeds = list(seeds)
    if not seeds:
        raise InvalidParameterError("finite_d_curves needs at least one seed.")
    if sigma_eigenvalues is None:
        law = GaussianData(d, variance=sigma_x2)
    else:
        law = GaussianData(d, eigenvalues=tuple(np.atleast_1d(sigma_eigenvalues)),
                           weights=None if sigma_weights is None else tuple(np.atleast_1d(sigma_weights)))
    runs = []
    for s in seeds:
        features = RandomFeatures.sample(d, p, activation, rng=np.random.default_rng(np.random.SeedSequence([s, 0])))
        X = law.sample(n, np.random.default_rng(np.random.SeedSequence([s, 1])))
        flow = GradientFlow(noise_averaged_statistics(features, X, t), population_statistics(features, law, t),
                            overwrite=True)
        runs.append(flow.curves(tau))
    out = {"tau": tau, "d": d, "p": p, "n": n, "seeds": seeds}
    for key in ("train_loss", "test_loss", "score_error", "generalization_gap"):
        vals = np.array([r[key] for r in runs])
        out[key] = vals.mean(axis=0)
        out[key + "_sem"] = vals.std(axis=0, ddof=1) / math.sqrt(len(seeds)) if len(seeds) > 1 else None
    return out


def richardson_in_inverse_d(dims, values, order: int = 1, sems=None) -> dict:
    """Extrapolate finite-d curves to d -> infinity: least-squares fit, at every tau separately, of
    y(d) = y_inf + C_1/d (+ C_2/d^2 for ``order`` 2) over the given dimensions.

    ``values`` has one row per dimension (shape (len(dims), T)); ``sems`` optional standard errors of the
    same shape (the fit is then weighted by 1/sem^2 and ``limit_sem`` is the propagated standard error of
    y_inf).  Returns ``limit`` (y_inf), ``constant`` (C_1, the fitted 1/d constant), ``constant2``
    (order 2), ``limit_sem`` (None without sems) and ``residual`` (the largest misfit of the data)."""
    dims = check_finite_array("dims", dims, ndim=1)
    Y = np.asarray(values, dtype=float)
    if Y.ndim == 1:
        Y = Y[:, None]
    order = check_positive_int("order", order)
    if order > 2:
        raise InvalidParameterError("order must be 1 or 2.")
    if Y.shape[0] != dims.size or dims.size < order + 1:
        raise InvalidParameterError(f"need one row of values per dimension and at least {order + 1} dimensions.")
    if np.any(dims <= 0) or np.unique(dims).size != dims.size:
        raise InvalidParameterError("the dimensions must be distinct and > 0.")
    if not np.all(np.isfinite(Y)):
        raise InvalidParameterError("the finite-d values contain NaN or infinite entries.")
    basis = np.stack([np.ones_like(dims)] + [dims ** (-k) for k in range(1, order + 1)], axis=1)
    if sems is None:
        S = np.ones_like(Y)
    else:
        S = np.asarray(sems, dtype=float).reshape(Y.shape)
        if not np.all(np.isfinite(S)) or np.any(S <= 0):
            raise InvalidParameterError("sems must be finite and > 0.")
    coef = np.empty((order + 1, Y.shape[1]))
    limit_sem = np.empty(Y.shape[1])
    for j in range(Y.shape[1]):
        M = basis / S[:, j, None]
        P = np.linalg.pinv(M)  # coefficients = P (y/sem)
        coef[:, j] = P @ (Y[:, j] / S[:, j])
        limit_sem[j] = math.sqrt(float(np.sum(P[0] ** 2)))  # Var(sum P_0i y_i/sem_i) = sum P_0i^2
    residual = float(np.max(np.abs(basis @ coef - Y)))
    return {"limit": coef[0], "constant": coef[1], "constant2": coef[2] if order == 2 else None,
            "limit_sem": limit_sem if sems is not None else None, "residual": residual, "dims": dims,
            "order": order}
