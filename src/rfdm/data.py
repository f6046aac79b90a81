"""Data laws and their exact scores at diffusion time t (docs/theory.md §1).

Convention: a data set is an (n, d) array, one point per row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import logsumexp

from .diffusion import check_time, decay, delta_t
from .errors import InvalidParameterError, check_finite_array, check_positive_float, check_positive_int


def _resolve_counts(d: int, weights: np.ndarray) -> np.ndarray:
    """Integer multiplicities of each eigenvalue in dimension d (largest-remainder rounding of w d)."""
    raw = weights * d
    counts = np.floor(raw).astype(int)
    short = d - counts.sum()
    order = np.argsort(-(raw - counts), kind="stable")
    counts[order[:short]] += 1
    return counts


@dataclass
class GaussianData:
    """Centred Gaussian data N(0, Sigma), Sigma = variance * R diag(lambda) R^T.

    ``eigenvalues`` are the distinct eigenvalues of Sigma (before the overall ``variance`` factor),
    ``weights`` the fraction of the d directions carrying each (default equal).  ``rotation`` is None
    (Sigma diagonal), "random" (a Haar rotation drawn from ``seed``) or a d x d orthogonal matrix.
    """

    d: int
    eigenvalues: tuple = (1.0,)
    weights: tuple | None = None
    variance: float = 1.0
    rotation: object = None
    seed: int = 0
    _spectrum: np.ndarray = field(init=False, repr=False)
    _rotation: np.ndarray | None = field(init=False, repr=False)

    def __post_init__(self):
        self.d = check_positive_int("d", self.d)
        ev = check_finite_array("eigenvalues", np.atleast_1d(self.eigenvalues), ndim=1)
        if np.any(ev <= 0):
            raise InvalidParameterError("covariance eigenvalues must be > 0, got "
                                        f"{', '.join(f'{v:g}' for v in ev[ev <= 0])}.")
        if self.weights is None:
            w = np.full(ev.size, 1.0 / ev.size)
        else:
            w = check_finite_array("weights", np.atleast_1d(self.weights), ndim=1)
            if w.size != ev.size:
                raise InvalidParameterError(f"weights has {w.size} entries but there are {ev.size} eigenvalues.")
            if np.any(w < 0) or abs(w.sum() - 1.0) > 1e-9:
                raise InvalidParameterError(f"weights must be >= 0 and sum to 1, got sum {w.sum():g}.")
        self.variance = check_positive_float("variance", self.variance)
        counts = _resolve_counts(self.d, w)
        self.eigenvalues = tuple(float(v) for v in ev)
        self.weights = tuple(float(v) for v in w)
        self._spectrum = self.variance * np.repeat(ev, counts)
        if self.rotation is None:
            self._rotation = None
        elif isinstance(self.rotation, str):
            if self.rotation != "random":
                raise InvalidParameterError(f"rotation must be None, 'random' or a matrix, got {self.rotation!r}.")
            g = np.random.default_rng(self.seed).standard_normal((self.d, self.d))
            q, r = np.linalg.qr(g)
            self._rotation = q * np.sign(np.diag(r))
        else:
            rot = check_finite_array("rotation", self.rotation, ndim=2)
            if rot.shape != (self.d, self.d) or not np.allclose(rot.T @ rot, np.eye(self.d), atol=1e-8):
                raise InvalidParameterError(f"rotation must be an orthogonal {self.d}x{self.d} matrix.")
            self._rotation = rot

    @property
    def spectrum(self) -> np.ndarray:
        """The d eigenvalues of Sigma (with multiplicity)."""
        return self._spectrum.copy()

    @property
    def rotation_matrix(self) -> np.ndarray:
        """The orthogonal R with Sigma = R diag(spectrum) R^T."""
        return np.eye(self.d) if self._rotation is None else self._rotation

    def covariance(self) -> np.ndarray:
        """Sigma as a dense d x d matrix."""
        r = self.rotation_matrix
        return (r * self._spectrum) @ r.T

    def spectrum_t(self, t) -> np.ndarray:
        """Eigenvalues of Sigma_t = e^{-2t} Sigma + Delta_t I."""
        t = check_time(t)
        return np.exp(-2.0 * t) * self._spectrum + delta_t(t)

    def covariance_t(self, t) -> np.ndarray:
        """Sigma_t = e^{-2t} Sigma + Delta_t I (same eigenvectors as Sigma)."""
        r = self.rotation_matrix
        return (r * self.spectrum_t(t)) @ r.T

    def sqrt_covariance_t(self, t) -> np.ndarray:
        """Symmetric square root of Sigma_t."""
        r = self.rotation_matrix
        return (r * np.sqrt(self.spectrum_t(t))) @ r.T

    def trace_inverse_covariance_t(self, t) -> float:
        """Tr Sigma_t^{-1} = E|S(y, t)|^2 for y ~ P_t (the Fisher information of P_t)."""
        return float(np.sum(1.0 / self.spectrum_t(t)))

    def score_norm(self, t) -> float:
        """E|S(y, t)|^2 for y ~ P_t (= Tr Sigma_t^{-1})."""
        return self.trace_inverse_covariance_t(t)

    def noised_components(self, t):
        """P_t as an equal-weight mixture of Gaussians sharing one covariance: (centres (K, d), symmetric
        square root of the covariance).  Here K = 1: centre 0, Sigma_t^{1/2}."""
        return np.zeros((1, self.d)), self.sqrt_covariance_t(t)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n i.i.d. points, shape (n, d)."""
        n = check_positive_int("n", n)
        z = rng.standard_normal((n, self.d)) * np.sqrt(self._spectrum)
        return z if self._rotation is None else z @ self._rotation.T

    def score(self, x, t) -> np.ndarray:
        """Exact score of P_t: S(x, t) = -Sigma_t^{-1} x, for x of shape (..., d)."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.d:
            raise InvalidParameterError(f"x must have last dimension d = {self.d}, got shape {x.shape}.")
        r = self.rotation_matrix
        return -(((x @ r) / self.spectrum_t(t)) @ r.T)

    def describe(self) -> dict:
        """JSON-serialisable description of the law."""
        rot = None if self._rotation is None else ("random" if isinstance(self.rotation, str) else "matrix")
        return {"law": "gaussian", "d": self.d, "eigenvalues": list(self.eigenvalues),
                "weights": list(self.weights), "variance": self.variance, "rotation": rot, "seed": self.seed}


class MixtureData:
    """Two-cluster mixture P_0 = (1/2) N(m, sigma_x^2 I) + (1/2) N(-m, sigma_x^2 I) (docs/theory.md §5).

    Give ``m`` as a vector, or ``m_norm`` (|m| fixed) or ``m_tilde`` (|m| = m_tilde sqrt(d)) with a
    ``direction`` (any non-zero vector, normalised; default e_1).  Points are x = c m + sigma_x z, c = +-1.
    """

    def __init__(self, d: int, m=None, m_norm: float | None = None, m_tilde: float | None = None,
                 direction=None, sigma_x: float = 1.0):
        self.d = check_positive_int("d", d)
        self.sigma_x = check_positive_float("sigma_x", sigma_x)
        given = [x is not None for x in (m, m_norm, m_tilde)]
        if sum(given) != 1:
            raise InvalidParameterError("give exactly one of m, m_norm and m_tilde.")
        if m is not None:
            m = check_finite_array("m", m, ndim=1)
            if m.size != self.d:
                raise InvalidParameterError(f"m has length {m.size} but d = {self.d}.")
            self.m = m.copy()
        else:
            norm = (check_positive_float("m_norm", m_norm, allow_zero=True) if m_norm is not None
                    else check_positive_float("m_tilde", m_tilde, allow_zero=True) * math.sqrt(self.d))
            if direction is None:
                u = np.zeros(self.d)
                u[0] = 1.0
            else:
                u = check_finite_array("direction", direction, ndim=1)
                if u.size != self.d:
                    raise InvalidParameterError(f"the direction has length {u.size} but d = {self.d}.")
                if not np.any(u != 0):
                    raise InvalidParameterError("the direction of m must not be the zero vector.")
                u = u / np.linalg.norm(u)
            self.m = norm * u
        self.m_norm = float(np.linalg.norm(self.m))

    def gamma2_t(self, t) -> float:
        """Gamma_t^2 = Delta_t + sigma_x^2 e^{-2t}, the variance of each noised cluster."""
        t = check_time(t)
        return float(delta_t(t) + self.sigma_x ** 2 * np.exp(-2 * t))

    def covariance(self) -> np.ndarray:
        """sigma_x^2 I + m m^T."""
        return self.sigma_x ** 2 * np.eye(self.d) + np.outer(self.m, self.m)

    def sample(self, n: int, rng: np.random.Generator, balanced: bool = False, return_labels: bool = False):
        """n points (and their labels c = +-1 if asked); ``balanced`` gives exactly n/2 of each (n even)."""
        n = check_positive_int("n", n)
        if balanced:
            if n % 2:
                raise InvalidParameterError(f"balanced clusters need an even number of points, got n = {n}.")
            c = rng.permutation(np.repeat([1.0, -1.0], n // 2))
        else:
            c = rng.choice([1.0, -1.0], size=n)
        x = c[:, None] * self.m[None, :] + self.sigma_x * rng.standard_normal((n, self.d))
        return (x, c) if return_labels else x

    def score(self, x, t) -> np.ndarray:
        """S(x, t) = [m e^{-t} tanh(e^{-t} m.x/Gamma_t^2) - x]/Gamma_t^2."""
        x = np.asarray(x, dtype=np.float64)
        if x.shape[-1] != self.d:
            raise InvalidParameterError(f"x must have last dimension d = {self.d}, got shape {x.shape}.")
        g2, a = self.gamma2_t(t), float(decay(t))
        return (a * np.tanh(a * (x @ self.m) / g2)[..., None] * self.m - x) / g2

    def score_norm(self, t) -> float:
        """E|S(y, t)|^2 = (d - 1)/Gamma_t^2 + E[(|m| e^{-t} tanh(e^{-t}|m| y/Gamma_t^2) - y)^2]/Gamma_t^4 with
        y ~ N(|m| e^{-t}, Gamma_t^2) along m (both clusters contribute equally; adaptive quadrature)."""
        from scipy.integrate import quad

        g2, a = self.gamma2_t(t), float(decay(t))
        mu, g = a * self.m_norm, math.sqrt(g2)
        f = lambda z: (mu * math.tanh(mu * (mu + g * z) / g2) - mu - g * z) ** 2 * math.exp(-0.5 * z * z)  # noqa: E731
        par = quad(f, -np.inf, np.inf, epsabs=1e-14, epsrel=1e-13, limit=200)[0] / math.sqrt(2 * math.pi)
        return float((self.d - 1) / g2 + par / g2 ** 2)

    def noised_components(self, t):
        """P_t = (1/2) N(e^{-t} m, Gamma_t^2 I) + (1/2) N(-e^{-t} m, Gamma_t^2 I)."""
        a = float(decay(t))
        return np.stack([a * self.m, -a * self.m]), math.sqrt(self.gamma2_t(t)) * np.eye(self.d)

    def speciation_time(self) -> float:
        """t_S = (1/2) log(|m|^2 + sigma_x^2) [B24]."""
        return 0.5 * math.log(self.m_norm ** 2 + self.sigma_x ** 2)

    def describe(self) -> dict:
        return {"law": "mixture", "d": self.d, "m_norm": self.m_norm, "sigma_x": self.sigma_x}


class EmpiricalData:
    """The empirical law (1/n) sum_mu delta(x - a_mu) of a user's array of shape (n, d).

    Its score at time t is the exact minimiser of the empirical denoising loss (docs/theory.md §1):
    S^e(x, t) = [sum_mu w_mu e^{-t} a_mu - x] / Delta_t,  w = softmax_mu(-|x - e^{-t} a_mu|^2 / (2 Delta_t)).
    """

    def __init__(self, points, batch_size: int = 2048):
        self.points = check_finite_array("data", points, ndim=2)
        self.n, self.d = self.points.shape
        self.batch_size = check_positive_int("batch_size", batch_size)
        self._sqnorm = np.einsum("ij,ij->i", self.points, self.points)

    @classmethod
    def from_npy(cls, path, **kwargs) -> "EmpiricalData":
        """Load an (n, d) float array from a .npy file."""
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise InvalidParameterError(f"cannot read data file {path}: {exc}.") from None
        return cls(arr, **kwargs)

    def _check_query(self, x) -> np.ndarray:
        x = np.atleast_2d(check_finite_array("x", x))
        if x.shape[-1] != self.d:
            raise InvalidParameterError(f"x must have last dimension d = {self.d}, got shape {x.shape}.")
        return x

    def _logits(self, xb, t, sl) -> np.ndarray:
        """-|x - e^{-t} a_mu|^2/(2 Delta_t) up to an x-only constant, for the points in slice ``sl``."""
        a = decay(t)
        return (a * (xb @ self.points[sl].T) - 0.5 * a * a * self._sqnorm[sl]) / delta_t(t)

    def log_weights(self, x, t) -> np.ndarray:
        """Log-softmax weights log w_mu(x), shape (m, n), for x of shape (m, d) (small inputs only)."""
        logits = self._logits(self._check_query(x), check_time(t), slice(None))
        return logits - logsumexp(logits, axis=1, keepdims=True)

    def score(self, x, t) -> np.ndarray:
        """Empirical score S^e(x, t) for x of shape (m, d) or (d,).

        Computed with a running (shifted) log-sum-exp over blocks of training points, so memory is
        O(batch_size^2 + batch_size d) whatever n; at small t the weights become one-hot without overflow.
        """
        t = check_time(t)
        squeeze = np.ndim(x) == 1
        x = self._check_query(x)
        out = np.empty_like(x)
        a, dt, bs = decay(t), delta_t(t), self.batch_size
        for s in range(0, x.shape[0], bs):
            xb = x[s:s + bs]
            run_max = np.full(xb.shape[0], -np.inf)
            run_sum = np.zeros(xb.shape[0])
            run_mean = np.zeros_like(xb)
            for c in range(0, self.n, bs):
                sl = slice(c, c + bs)
                logits = self._logits(xb, t, sl)
                new_max = np.maximum(run_max, logits.max(axis=1))
                rescale = np.exp(run_max - new_max)
                w = np.exp(logits - new_max[:, None])
                run_sum = run_sum * rescale + w.sum(axis=1)
                run_mean = run_mean * rescale[:, None] + w @ self.points[sl]
                run_max = new_max
            out[s:s + bs] = (a * run_mean / run_sum[:, None] - xb) / dt
        return out[0] if squeeze else out

    def log_density(self, x, t) -> np.ndarray:
        """log P_t(x) of the noised empirical law (a mixture of n Gaussians N(e^{-t} a_mu, Delta_t I))."""
        t = check_time(t)
        x = self._check_query(x)
        a, dt = decay(t), delta_t(t)
        out = np.empty(x.shape[0])
        for s in range(0, x.shape[0], self.batch_size):
            xb = x[s:s + self.batch_size]
            sq = (np.einsum("ij,ij->i", xb, xb)[:, None] - 2 * a * (xb @ self.points.T)
                  + a * a * self._sqnorm[None, :])
            out[s:s + self.batch_size] = (logsumexp(-0.5 * sq / dt, axis=1) - np.log(self.n)
                                          - 0.5 * self.d * np.log(2 * np.pi * dt))
        return out

    def describe(self) -> dict:
        return {"law": "empirical", "n": self.n, "d": self.d}
