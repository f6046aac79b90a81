"""The BBP outlier of U for two-cluster mixture data (docs/theory.md §5; method of [A25]; derived for this project).

Equivalent matrix.  With x = c m + sigma_x z (c = +-1) and the Gaussian-equivalence coefficients of the
cluster variance sigma_x^2 (|m| = O(1), so w.m/sqrt(d) = O(1/sqrt(d)) does not change them),
U ~ (1/n) G G^T + D with columns g = u c + Sigma_G^{1/2} zeta, i.e. a sample covariance whose population
covariance is Sigma_G + u u^T (a rank-one spike), plus the deterministic D:

  Sigma_G = e^{-2t} a_t^2 sigma_x^2 W W^T/d + v_t^2 I,   D = b_t^2 W W^T/d + s_t^2 I,   u = e^{-t} a_t W m/sqrt(d).

Deterministic equivalent of the resolvent ((U - z)^{-1} ~ (T/(1 + delta) + D - z)^{-1}, T the population
covariance, delta(z) = (1/n) Tr T (T/(1 + delta) + D - z)^{-1}) and Sherman–Morrison on the spike give:

- the outlier lambda > (right edge of the bulk) solves  u^T [lambda (1 + delta) I - Sigma_G - (1 + delta) D]^{-1} u = 1;
- the squared overlap of its eigenvector with u/|u| (i.e. with W m) is (1 + delta)^2/(|u|^2 f'(lambda)), where
  f(z) = 1 + delta + u^T A^{-1} u, A = Sigma_G/(1 + delta) + D - z, f' = delta' + u^T A^{-1}(I + Sigma_G delta'/(1 + delta)^2) A^{-1} u;
- the threshold: the left side scales as |m|^2, so |m|_c^2 = 1/F_1(edge), F_1 the left side for a unit m at the edge.

Every matrix here is a function of W W^T/d, so in its eigenbasis all of it is a sum over modes.  Two
versions: for a given W and m (finite d, to compare with exact spectra), and for d -> infinity with a random
direction of m (the d nonzero eigenvalues of W W^T/d follow psi_p times a Marchenko–Pastur law of ratio
1/psi_p, and each carries |m|^2/d of m), used for phase diagrams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from .errors import InvalidParameterError, NumericalError, check_finite_array, check_positive_float
from .spectrum import GEPCoefficients

MP_NODES = 400


@dataclass
class Modes:
    """Eigen-modes of W W^T/d: eigenvalue mu_k, multiplicity per data dimension (count_k/d), and the
    spike's weight u_k^2 per unit |m|^2, for the modes carrying u; plus the multiplicity per d of the null
    space (mu = 0, no spike)."""

    mu: np.ndarray
    count: np.ndarray
    spike: np.ndarray
    null_count: float

    @classmethod
    def from_weights(cls, W, m_direction, coeffs: GEPCoefficients) -> "Modes":
        """Finite d: the SVD of the actual W and the actual direction of m (normalised here to a unit vector;
        the zero vector, which has no direction, raises InvalidParameterError, as does a norm that is not a
        finite positive float)."""
        W = check_finite_array("W", W, ndim=2)
        p, d = W.shape
        m = check_finite_array("m direction", m_direction, ndim=1)
        if m.size != d:
            raise InvalidParameterError(f"m has length {m.size} but d = {d}.")
        norm = float(np.linalg.norm(m))
        if not (math.isfinite(norm) and norm > 0):
            raise InvalidParameterError(f"the m direction must be a nonzero vector of finite norm, got norm {norm:g}.")
        m = m / norm
        _, S, Vt = np.linalg.svd(W, full_matrices=False)
        mu = S ** 2 / d
        proj2 = (Vt @ m) ** 2
        alpha = math.exp(-2 * coeffs.t) * coeffs.a ** 2
        return cls(mu=mu, count=np.full(mu.size, 1.0 / d), spike=alpha * mu * proj2, null_count=(p - mu.size) / d)

    @classmethod
    def asymptotic(cls, psi_p: float, coeffs: GEPCoefficients, nodes: int = MP_NODES) -> "Modes":
        """d -> infinity: Marchenko–Pastur eigenvalues of W W^T/d by Gauss–Chebyshev quadrature, each
        mode carrying |m|^2/d of m (a direction independent of W)."""
        psi_p = check_positive_float("psi_p", psi_p)
        ratio, scale, rank = (1.0 / psi_p, psi_p, 1.0) if psi_p >= 1 else (psi_p, 1.0, psi_p)
        lo, hi = (1 - math.sqrt(ratio)) ** 2, (1 + math.sqrt(ratio)) ** 2
        theta = (np.arange(nodes) + 0.5) * math.pi / nodes
        x = 0.5 * (lo + hi) - 0.5 * (hi - lo) * np.cos(theta)
        # MP density sqrt((hi-x)(x-lo))/(2 pi ratio x): in theta the weight is proportional to sin^2/x
        w = np.sin(theta) ** 2 / x
        w /= w.sum()
        mu = scale * x
        alpha = math.exp(-2 * coeffs.t) * coeffs.a ** 2
        count = rank * w
        return cls(mu=mu, count=count, spike=alpha * mu * count, null_count=max(psi_p - 1.0, 0.0))


class OutlierProblem:
    """Outlier equation for mixture data: coefficients of the cluster variance, psi_n, and the modes."""

    def __init__(self, coeffs: GEPCoefficients, psi_n: float, modes: Modes):
        self.coeffs = coeffs
        self.psi_n = check_positive_float("psi_n", psi_n)
        self.modes = modes
        c = coeffs
        alpha = math.exp(-2 * c.t) * c.a ** 2 * c.sigma_x2
        # all modes, null space appended: population covariance T and deterministic part D
        self.T = np.append(alpha * modes.mu + c.v2, c.v2)
        self.D = np.append(c.b ** 2 * modes.mu + c.s2, c.s2)
        self.cnt = np.append(modes.count, modes.null_count) / self.psi_n  # (1/n) sums -> per-d counts / psi_n
        self.spike = np.append(modes.spike, 0.0)
        self._solved: dict[float, float] = {}
        self._edge: float | None = None

    # delta(lambda) for real lambda above the bulk: g(delta) = delta - sum cnt T/(T/(1+delta) + D - lambda)
    def _g(self, delta, lam):
        A = self.T / (1 + delta) + self.D - lam
        g = delta - np.sum(self.cnt * self.T / A)
        dg = 1 - np.sum(self.cnt * self.T ** 2 / ((1 + delta) ** 2 * A ** 2))
        return g, dg, A

    def delta(self, lam: float, start: float | None = None) -> tuple[float, float]:
        """The physical delta(lambda), continued from delta ~ -(1/n) Tr T/lambda at large lambda (Newton
        started from the solution at the nearest larger lambda already solved), and dg/d delta there;
        raises NumericalError below the bulk's right edge, where no real solution exists."""
        if start is None:
            start = (self._solved[min(self._solved, key=lambda k: abs(k - lam))] if self._solved
                     else -np.sum(self.cnt * self.T) / lam)
        d = start
        for _ in range(500):
            g, dg, A = self._g(d, lam)
            if np.any(A >= 0) or dg <= 0 or not np.isfinite(g):
                raise NumericalError("lambda is not above the bulk.")
            step = g / dg
            d -= step
            if abs(step) <= 1e-13 * (1 + abs(d)):
                g, dg, A = self._g(d, lam)
                if np.any(A >= 0) or dg <= 0:
                    raise NumericalError("lambda is not above the bulk.")
                self._solved[lam] = float(d)
                return float(d), float(dg)
        raise NumericalError(f"delta(lambda) did not converge at lambda = {lam:g}.")

    def bulk_right_edge(self) -> float:
        """Right edge of the bulk: the smallest lambda down to which delta(lambda) continues (dg/d delta > 0),
        found by a downward geometric scan and bisection (each step warm-started from the one above)."""
        if self._edge is not None:
            return self._edge
        hi = 2.0 * float(np.max(self.T + self.D)) * (1 + np.sum(self.cnt)) + 1.0
        lo = float(np.min(self.D))
        lam, hi_ok = hi, None
        while True:
            try:
                self.delta(lam)
            except NumericalError:
                break
            hi_ok, lam = lam, lo + (lam - lo) * 0.9
            if lam - lo < 1e-14 * hi:
                self._edge = lo
                return lo
        if hi_ok is None:
            raise NumericalError("delta(lambda) has no solution even far above the spectrum.")
        lo_bad = lam
        for _ in range(200):
            mid = 0.5 * (lo_bad + hi_ok)
            try:
                self.delta(mid)
                hi_ok = mid
            except NumericalError:
                lo_bad = mid
            if hi_ok - lo_bad <= 1e-13 * hi_ok:
                break
        self._edge = self._refine_fold(hi_ok)
        return self._edge

    def _refine_fold(self, lam: float) -> float:
        """The edge as the fold of g: Newton on (g, dg/d delta) = 0 in (delta, lambda), started from the
        bisection's last solvable lambda (where Newton on g alone slows down, so the bisection stops ~1e-8
        short and delta, hence F_1 and the threshold, would carry a square-root error).  Falls back to the
        bisection value if the joint Newton leaves the region above the bulk or does not converge."""
        delta = self._solved[lam]
        cnt, T, D = self.cnt, self.T, self.D
        d, x = delta, lam
        for _ in range(60):
            A = T / (1 + d) + D - x
            if np.any(A >= 0):
                return lam
            g = d - np.sum(cnt * T / A)
            h = 1 - np.sum(cnt * T ** 2 / ((1 + d) ** 2 * A ** 2))
            g_x = -np.sum(cnt * T / A ** 2)
            h_d = 2 * np.sum(cnt * T ** 2 * (1 / ((1 + d) ** 3 * A ** 2) - T / ((1 + d) ** 4 * A ** 3)))
            h_x = -2 * np.sum(cnt * T ** 2 / ((1 + d) ** 2 * A ** 3))
            det = h * h_x - g_x * h_d
            if det == 0 or not np.isfinite(det):
                return lam
            step_d = -(g * h_x - g_x * h) / det
            step_x = -(h * h - g * h_d) / det
            d, x = d + step_d, x + step_x
            if abs(step_x) <= 1e-15 * abs(x) and abs(step_d) <= 1e-15 * (1 + abs(d)):
                break
        else:
            return lam
        A = T / (1 + d) + D - x
        if np.any(A >= 0) or abs(x - lam) > 1e-4 * abs(lam):
            return lam
        self._solved[x] = float(d)
        return float(x)

    def _spike_form(self, lam):
        """F_1(lambda) = sum_k spike_k/(lambda (1 + delta) - T_k - (1 + delta) D_k) (per unit |m|^2)."""
        delta = self._solved[lam] if lam in self._solved else self.delta(lam)[0]
        den = lam * (1 + delta) - self.T - (1 + delta) * self.D
        return float(np.sum(self.spike / den)), delta

    def threshold_m_norm(self) -> float:
        """|m|_c = 1/sqrt(F_1(edge+)): the smallest |m| with an outlier."""
        edge = self.bulk_right_edge()
        f1, _ = self._spike_form(edge)
        return math.inf if f1 <= 0 else 1.0 / math.sqrt(f1)

    def outlier(self, m_norm: float):
        """(lambda_out, squared overlap with W m) or (None, 0.0) below threshold."""
        m2 = check_positive_float("|m|", m_norm, allow_zero=True) ** 2
        edge = self.bulk_right_edge()
        f_edge, _ = self._spike_form(edge)
        if m2 * f_edge <= 1.0:
            return None, 0.0
        hi = edge * 2 + 1.0
        while m2 * self._spike_form(hi)[0] > 1.0:
            hi *= 2
        lam = brentq(lambda x: m2 * self._spike_form(x)[0] - 1.0, edge, hi, xtol=1e-13 * hi, rtol=1e-13)
        return lam, self._overlap(lam, m2)

    def _overlap(self, lam, m2):
        delta, dg = self.delta(lam)
        g, _, A = self._g(delta, lam)
        dg_dlam = -np.sum(self.cnt * self.T / A ** 2)
        ddelta = -dg_dlam / dg
        u2 = m2 * self.spike
        fprime = ddelta + np.sum(u2 * (1 + self.T * ddelta / (1 + delta) ** 2) / A ** 2)
        return float((1 + delta) ** 2 / (np.sum(u2) * fprime))


#: default thresholds of :func:`paired_outlier_test` (calibrated in docs/theory.md §5)
GAP_RATIO_THRESHOLD = 0.0
OVERLAP_THRESHOLD = 0.4


def paired_outlier_test(features, X, labels, m, t, gap_ratio_threshold: float = GAP_RATIO_THRESHOLD,
                        overlap_threshold: float = OVERLAP_THRESHOLD, rtol: float = 1e-10, device=None) -> dict:
    """Is the top eigenvalue of the exact noise-averaged U of mixture data an outlier (finite d)?

    The training set is x_mu = c_mu m + sigma_x z_mu (``labels`` c_mu = +-1, from
    ``MixtureData.sample(..., return_labels=True)``).  The paired control is the same W, the same z and the
    same sigma_x with m = 0, X0 = X - c m^T: its U0 has the same bulk (the same finite-d fluctuations of the
    edge) and no spike.  With lambda_1 >= lambda_2 the top eigenvalues and q_1 the top eigenvector:

    * gap_ratio = (lambda_1(U) - lambda_1(U0))/(lambda_1(U0) - lambda_2(U0)): how far the top eigenvalue has left
      the control's bulk, in units of the control's own top spacing (the scale of the edge fluctuations);
    * overlap = (q_1(U).W m/|W m|)^2, which is O(1) for an outlier (theory: (1 + delta)^2/(|u|^2 f'), module docstring)
      and small for a bulk eigenvector.

    Rule: an outlier when the top eigenvalue has left the control's bulk, gap_ratio > ``gap_ratio_threshold``
    (default 0: lambda_1(U) > lambda_1(U0)), and its eigenvector points along W m, overlap > ``overlap_threshold``
    (default 0.4).  Measured at psi_p = 4, psi_n = 2, t = 0.05 (docs/theory.md §5): false positives 0/60 at
    0.75 and 0.9 |m|_c and 3/40 at |m|_c itself for d = 100 (1/30 and 4/30 at 0.75 and 0.9 |m|_c for d = 40);
    detections 60 % at 1.25 |m|_c and 97 % at 1.5 |m|_c for d = 100; at three other settings (docs/theory.md §5
    table) 0/90 false positives at 0.75 |m|_c and 89/90 detections at 1.5 |m|_c for d = 100, but up to 5/30 false
    positives at 0.75 |m|_c for d = 40 (psi_n > psi_p, t = 0.5).  An outlier whose overlap is below the
    threshold (just above |m|_c, where the BBP overlap starts from 0) is not reported.  Returns the decision
    (``outlier``: the top eigenvalue or None), the two statistics, the
    top three eigenvalues of U and of U0, and the control's overlap (the null level of the overlap).  The
    finite-d theory for this W and m is :class:`Modes.from_weights`."""
    from .features import noise_averaged_statistics

    X = features.check_data(X)
    n, d = X.shape
    c = check_finite_array("labels", labels, ndim=1)
    if c.size != n or not np.all(np.abs(c) == 1):
        raise InvalidParameterError(f"labels must be {n} values +-1, one per training point.")
    m = check_finite_array("m", m, ndim=1)
    if m.size != d:
        raise InvalidParameterError(f"m has length {m.size} but d = {d}.")
    gap_ratio_threshold = check_positive_float("gap_ratio_threshold", gap_ratio_threshold, allow_zero=True)
    overlap_threshold = check_positive_float("overlap_threshold", overlap_threshold, allow_zero=True)
    if overlap_threshold > 1:
        raise InvalidParameterError(f"overlap_threshold must be in [0, 1], got {overlap_threshold:g}.")
    wm = features.W @ m
    norm = float(np.linalg.norm(wm))
    if norm == 0:
        raise InvalidParameterError("W m = 0: the outlier test needs m != 0.")
    wm = wm / norm
    out = {}
    for key, data in (("", X), ("control_", X - c[:, None] * m[None, :])):
        U = noise_averaged_statistics(features, data, t, rtol=rtol, device=device).U
        ev, vec = np.linalg.eigh(U)
        out[key + "top_eigenvalues"] = ev[::-1][:3].tolist()
        out[key + "overlap"] = float((vec[:, -1] @ wm) ** 2)
    l1, l1c, l2c = out["top_eigenvalues"][0], out["control_top_eigenvalues"][0], out["control_top_eigenvalues"][1]
    spacing = l1c - l2c
    gap_ratio = (l1 - l1c) / spacing if spacing > 0 else (math.inf if l1 > l1c else 0.0)
    decision = gap_ratio > gap_ratio_threshold and out["overlap"] > overlap_threshold
    out.update(gap_ratio=float(gap_ratio), outlier=float(l1) if decision else None,
               rule={"gap_ratio_threshold": gap_ratio_threshold, "overlap_threshold": overlap_threshold})
    return out
