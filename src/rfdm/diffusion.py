"""The forward Ornstein–Uhlenbeck diffusion and its reverse-time SDE (docs/theory.md §1).

Forward: dx = -x dt + sqrt(2) dB, so x_t = e^{-t} x_0 + sqrt(Delta_t) xi with Delta_t = 1 - e^{-2t}
and xi ~ N(0, I_d) ([B24] eq. 1; [B25] eq. 1).  Backward, in tau' = T - t:
dx = [x + 2 S(x, t)] dtau' + sqrt(2) dB, started from N(0, I_d).
"""

from __future__ import annotations

import numpy as np

from .errors import InvalidParameterError, check_finite_array, check_positive_float

#: the time grids of the backward process (rfdm.sampling.time_grid) and its integrators
TIME_GRIDS = ("log-snr", "geometric", "uniform")
INTEGRATORS = ("exponential", "euler")
#: the one default of every experiment and command (the documented CLI default): a grid uniform in the
#: log signal-to-noise ratio log(e^{2t} - 1), integrated by Euler–Maruyama
DEFAULT_GRID = "log-snr"
DEFAULT_INTEGRATOR = "euler"


def delta_t(t):
    """Noise variance of the OU process at time t: Delta_t = 1 - e^{-2t}, computed as -expm1(-2t)."""
    return -np.expm1(-2.0 * np.asarray(t, dtype=np.float64))


def decay(t):
    """Signal factor e^{-t} of the OU process."""
    return np.exp(-np.asarray(t, dtype=np.float64))


def check_time(t, name: str = "t") -> float:
    """Validate a diffusion time: finite and > 0."""
    return check_positive_float(name, t)


class OrnsteinUhlenbeck:
    """The forward OU process dx = -x dt + sqrt(2) dB in the conventions of [B24, B25]."""

    def delta(self, t):
        """Delta_t = 1 - e^{-2t}."""
        return delta_t(t)

    def decay(self, t):
        """e^{-t}."""
        return decay(t)

    def forward(self, x0, t, rng: np.random.Generator):
        """Noise data at time t: return (x_t, xi) with x_t = e^{-t} x0 + sqrt(Delta_t) xi.

        ``x0`` has shape (n, d); ``rng`` is a numpy Generator (every draw flows from it).
        """
        t = check_time(t)
        x0 = check_finite_array("x0", x0, ndim=2)
        xi = rng.standard_normal(x0.shape)
        return decay(t) * x0 + np.sqrt(delta_t(t)) * xi, xi

    def marginal_covariance(self, covariance, t):
        """Covariance of x_t for data covariance Sigma: Sigma_t = e^{-2t} Sigma + Delta_t I."""
        t = check_time(t)
        cov = check_finite_array("covariance", covariance, ndim=2)
        if cov.shape[0] != cov.shape[1]:
            raise InvalidParameterError(f"covariance must be square, got shape {cov.shape}.")
        scale = max(1.0, float(np.abs(cov).max()))
        if not np.allclose(cov, cov.T, rtol=0, atol=1e-12 * scale):
            raise InvalidParameterError("covariance must be symmetric.")
        smallest = float(np.linalg.eigvalsh(cov)[0])
        if smallest < -1e-12 * scale:
            raise InvalidParameterError(f"covariance must be positive semi-definite, smallest eigenvalue {smallest:.3g}.")
        return np.exp(-2.0 * t) * cov + delta_t(t) * np.eye(cov.shape[0])

    def reverse_drift(self, x, t, score):
        """Drift of the backward process in tau' = T - t: x + 2 S(x, t)."""
        return x + 2.0 * score
