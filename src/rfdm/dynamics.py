"""Training dynamics of the random-features score at one diffusion time t (THEORY §2; [B25] Sec. 3).

The per-dimension denoising loss is quadratic in A,

    L(A) = 1 + (Delta_t/d) Tr(A U A^T)/p + (2 sqrt(Delta_t)/d) Tr(A V)/sqrt(p),

and gradient flow in the paper's time tau = k eta / d^2 (k steps of learning rate eta) is

    dA/dtau = -2 Delta_t (d/p) A U - (2 d sqrt(Delta_t)/sqrt(p)) V^T,

with the closed form A(tau)/sqrt(p) = -(1/sqrt(Delta_t)) V^T U^{-1}(I - e^{-2 Delta_t U tau/psi_p})
+ (A(0)/sqrt(p)) e^{-2 Delta_t U tau/psi_p}.  :class:`GradientFlow` factorises U = Q Lambda Q^T once, then
evaluates every loss at any array of tau (tau = inf is the ridgeless limit) as sums over modes, O(p^2) per
tau.  Mode k relaxes on the timescale psi_p/(Delta_t lambda_k) (the paper's convention, without the 2).
"""

from __future__ import annotations

import math

import numpy as np
import scipy.linalg

from .errors import InvalidParameterError, NumericalError, check_finite_array, check_positive_float, check_positive_int
from .features import PopulationStatistics, RandomFeatures, TrainingStatistics
from .diffusion import check_time, decay, delta_t

#: eigenvalues below this fraction of the largest are treated as the null space of U
NULL_RTOL = 1e-13


def as_tau_array(tau) -> np.ndarray:
    """Validate training times: a scalar or 1-D array of tau >= 0, inf allowed (None means inf)."""
    if tau is None:
        tau = np.inf
    try:
        arr = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    except (TypeError, ValueError):
        raise InvalidParameterError(f"tau must be numbers, got {tau!r}.") from None
    if arr.ndim != 1 or arr.size == 0:
        raise InvalidParameterError("tau must be a scalar or a non-empty 1-D array.")
    if np.any(np.isnan(arr)) or np.any(arr < 0):
        raise InvalidParameterError("tau must be >= 0 (inf allowed), got a negative or NaN value.")
    return arr


def loss_of_weights(A, stats: TrainingStatistics | PopulationStatistics) -> float:
    """Direct evaluation of L(A) = 1 + (Delta/d) Tr(A U A^T)/p + (2 sqrt(Delta)/d) Tr(A V)/sqrt(p).

    With training statistics this is the train loss; with population statistics, the test loss.
    """
    d, p = A.shape
    dt = float(delta_t(stats.t))
    return 1.0 + (dt / d) * np.einsum("ij,ij->", A @ stats.U, A) / p + 2 * math.sqrt(dt) / d * np.einsum(
        "ij,ji->", A, stats.V) / math.sqrt(p)


def score_error_of_weights(A, population: PopulationStatistics) -> float:
    """E_score = (1/d) E|S_A(y) - S(y)|^2 = (1/d)[Tr(A U~ A^T)/p + 2 Tr(A Y)/sqrt(p) + Tr Sigma_t^{-1}]."""
    d, p = A.shape
    return (np.einsum("ij,ij->", A @ population.U, A) / p + 2 * np.einsum("ij,ji->", A, population.Y)
            / math.sqrt(p) + population.score_norm) / d


class GradientFlow:
    """Closed-form gradient flow of the per-time random-features score.

    Parameters
    ----------
    stats : noise-averaged (or Monte Carlo) training statistics U, V at time t.
    population : optional population statistics U~, V~, Y (test loss and score error need them).
    A0 : optional initial weights A(0) (d x p); default 0.
    overwrite : let the eigendecomposition overwrite ``stats.U`` (saves p^2 memory).

    After construction the object holds only the eigenbasis quantities; call :meth:`curves` (or the
    single-loss methods) with any array of tau, ``np.inf`` for the end of training.
    """

    def __init__(self, stats: TrainingStatistics, population: PopulationStatistics | None = None,
                 A0=None, overwrite: bool = False):
        U, V = stats.U, stats.V
        p, d = V.shape
        if U.shape != (p, p):
            raise InvalidParameterError(f"U has shape {U.shape} but V has shape {V.shape}.")
        self.p, self.d, self.t = p, d, stats.t
        self.psi_p = p / d
        self.delta = float(delta_t(stats.t))
        lam, Q = scipy.linalg.eigh(U, overwrite_a=overwrite, driver="evr", check_finite=False)
        if overwrite:
            stats.U = None  # its buffer now holds LAPACK workspace
        scale = max(float(lam[-1]), 0.0)
        if lam[0] < -1e-10 * max(scale, 1e-300):
            raise NumericalError(f"U is not positive semi-definite: smallest eigenvalue {lam[0]:.3g} "
                                 f"(largest {scale:.3g}).")
        self.eigenvalues = np.clip(lam, 0.0, None)
        self._null = self.eigenvalues <= NULL_RTOL * scale
        self.eigenvectors = Q
        B = Q.T @ V  # (p, d): B_k = Q_k^T V
        self._B = B
        self._c_bb = np.einsum("kj,kj->k", B, B)
        if A0 is None:
            self._A0 = None
        else:
            A0 = check_finite_array("A0", A0, ndim=2)
            if A0.shape != (d, p):
                raise InvalidParameterError(f"A0 must have shape ({d}, {p}), got {A0.shape}.")
            self._A0 = (A0 @ Q).T / math.sqrt(p)  # (p, d): row k is the mode-k component of A(0)/sqrt(p)
            self._c_ba = np.einsum("kj,kj->k", B, self._A0)
            self._c_aa = np.einsum("kj,kj->k", self._A0, self._A0)
        self.population = None
        if population is not None:
            self._set_population(population)

    # -- population part -----------------------------------------------------------------------------
    def _set_population(self, pop: PopulationStatistics):
        if pop.U.shape != (self.p, self.p) or pop.V.shape != (self.p, self.d):
            raise InvalidParameterError("population statistics do not match the training statistics' shapes.")
        Q, B = self.eigenvectors, self._B
        M = Q.T @ (pop.U @ Q)  # M~ = Q^T U~ Q
        vt = Q.T @ pop.V
        self._c_bv = np.einsum("kj,kj->k", B, vt)  # <B_k, V~'_k>
        self._H_bb = M * (B @ B.T)
        if self._A0 is not None:
            A = self._A0
            self._c_av = np.einsum("kj,kj->k", A, vt)
            self._H_ba = M * (B @ A.T)
            self._H_aa = M * (A @ A.T)
        self.score_norm = pop.score_norm
        self.population = pop.info
        del M

    # -- mode functions -----------------------------------------------------------------------------
    @property
    def timescales(self) -> np.ndarray:
        """psi_p/(Delta_t lambda_k) for every mode (inf for the null space of U)."""
        with np.errstate(divide="ignore"):
            return np.where(self._null, np.inf, self.psi_p / (self.delta * self.eigenvalues))

    def _modes(self, tau):
        """g_k(tau) = (1 - e^{-2 Delta lambda_k tau/psi_p})/lambda_k and e_k(tau) = e^{-2 Delta lambda_k tau/psi_p},
        shape (p, T); expm1 keeps g accurate when lambda tau is tiny; g = 2 Delta tau/psi_p in the null space."""
        tau = as_tau_array(tau)
        lam = self.eigenvalues[:, None]
        rate = 2.0 * self.delta / self.psi_p
        finite = np.isfinite(tau)
        taus = np.where(finite, tau, 0.0)[None, :]
        x = rate * lam * taus
        with np.errstate(divide="ignore", invalid="ignore"):
            g = np.where(self._null[:, None], rate * taus, -np.expm1(-x) / np.where(lam > 0, lam, 1.0))
        e = np.exp(-x)
        if not np.all(finite):
            inf_g = np.where(self._null, 0.0, 1.0 / np.where(self._null, 1.0, self.eigenvalues))
            g[:, ~finite] = inf_g[:, None]
            e[:, ~finite] = self._null[:, None].astype(float)
        return tau, g, e

    def weights(self, tau=None) -> np.ndarray:
        """A(tau), shape (d, p) (tau = None or inf: the end of training)."""
        tau, g, e = self._modes(tau)
        if tau.size != 1:
            raise InvalidParameterError("weights() takes a single tau.")
        coeff = -(g[:, 0, None] * self._B) / math.sqrt(self.delta)  # (p, d) mode components of A/sqrt(p)
        if self._A0 is not None:
            coeff += e[:, 0, None] * self._A0
        return math.sqrt(self.p) * (self.eigenvectors @ coeff).T

    def train_loss(self, tau) -> np.ndarray:
        """L_train(tau) = 1 + (1/d)[Delta sum_k lambda_k |D_k|^2 + 2 sqrt(Delta) sum_k <D_k, B_k>], D = A Q/sqrt(p)."""
        _, g, e = self._modes(tau)
        lam, sq = self.eigenvalues[:, None], math.sqrt(self.delta)
        bb = self._c_bb[:, None]
        quad = g * g * bb / self.delta
        lin = -g * bb / sq
        if self._A0 is not None:
            quad += -2.0 / sq * g * e * self._c_ba[:, None] + e * e * self._c_aa[:, None]
            lin += e * self._c_ba[:, None]
        return 1.0 + (self.delta * np.sum(lam * quad, axis=0) + 2 * sq * np.sum(lin, axis=0)) / self.d

    def _population_terms(self, g, e):
        """Tr(D M~ D^T) and Tr(D V~') for D(tau) = A(tau) Q/sqrt(p), vectorised over tau."""
        if self.population is None:
            raise InvalidParameterError("test loss and score error need population statistics.")
        sq = math.sqrt(self.delta)
        quad = np.einsum("kt,kt->t", g, self._H_bb @ g) / self.delta
        lin = -np.einsum("kt,k->t", g, self._c_bv) / sq
        if self._A0 is not None:
            quad += (-2.0 / sq) * np.einsum("kt,kt->t", g, self._H_ba @ e) + np.einsum("kt,kt->t", e, self._H_aa @ e)
            lin += np.einsum("kt,k->t", e, self._c_av)
        return quad, lin

    def test_loss(self, tau) -> np.ndarray:
        """L_test(tau) = 1 + (1/d)[Delta Tr(D M~ D^T) + 2 sqrt(Delta) Tr(D V~')]."""
        _, g, e = self._modes(tau)
        quad, lin = self._population_terms(g, e)
        return 1.0 + (self.delta * quad + 2 * math.sqrt(self.delta) * lin) / self.d

    def score_error(self, tau) -> np.ndarray:
        """E_score(tau) = (1/d)[Tr(D M~ D^T) + 2 Tr(D Y') + Tr Sigma_t^{-1}], with Y' = V~'/sqrt(Delta)."""
        _, g, e = self._modes(tau)
        quad, lin = self._population_terms(g, e)
        return (quad + 2 * lin / math.sqrt(self.delta) + self.score_norm) / self.d

    def curves(self, tau) -> dict:
        """All losses at the training times ``tau``: keys tau, train_loss and, with population
        statistics, test_loss, score_error and generalization_gap (test - train)."""
        tau = as_tau_array(tau)
        out = {"tau": tau, "train_loss": self.train_loss(tau)}
        if self.population is not None:
            out["test_loss"] = self.test_loss(tau)
            out["score_error"] = self.score_error(tau)
            out["generalization_gap"] = out["test_loss"] - out["train_loss"]
        return out


# -- step-by-step training (the published procedure), for cross-checks and finite-m training ------------

def max_stable_learning_rate(stats: TrainingStatistics) -> float:
    """eta_max = d p / (Delta_t lambda_max(U)): gradient descent on L is stable for eta < eta_max."""
    lam_max = float(scipy.linalg.eigvalsh(stats.U, subset_by_index=[stats.U.shape[0] - 1] * 2)[0])
    return stats.V.shape[1] * stats.V.shape[0] / (float(delta_t(stats.t)) * lam_max)


def train_by_descent(features: RandomFeatures, X, t, tau_checkpoints, learning_rate: float,
                     rng, optimizer: str = "gd", n_draws: int | None = None, A0=None,
                     betas=(0.9, 0.999), eps: float = 1e-8, max_steps: int = 10_000_000,
                     callback=None):
    """Full-batch gradient descent (or Adam) on the denoising loss at time t.

    Each step draws noise xi for every training point (``n_draws=None``: fresh noise every step, the
    published procedure; ``n_draws=m``: m draws per point fixed once, the finite-m loss of [GVM]),
    forms x_t = e^{-t} x + sqrt(Delta_t) xi, and steps along the explicit gradient
    dL/dA = (2 sqrt(Delta)/(n m d sqrt(p))) R^T phi, R = sqrt(Delta) phi A^T/sqrt(p) + xi.
    Time is converted to tau = k eta / d^2 (for Adam this is nominal: Adam rescales the step).
    Returns (tau_reached, list of A at each checkpoint, step_seconds).
    """
    import time

    if optimizer not in ("gd", "adam"):
        raise InvalidParameterError(f"optimizer must be 'gd' or 'adam', got {optimizer!r}.")
    t = check_time(t)
    X = features.check_data(X)
    taus = as_tau_array(tau_checkpoints)
    if not np.all(np.isfinite(taus)):
        raise InvalidParameterError("step-by-step training cannot reach tau = inf; give finite tau.")
    lr = check_positive_float("learning_rate", learning_rate)
    rng = np.random.default_rng(rng)
    n, d = X.shape
    p = features.p
    dt = float(delta_t(t))
    a_t, sq = float(decay(t)), math.sqrt(dt)
    steps = np.rint(taus * d * d / lr).astype(np.int64)
    if steps.max(initial=0) > max_steps:
        raise InvalidParameterError(f"reaching tau = {taus.max():g} needs {steps.max()} steps at learning rate "
                                    f"{lr:g}, more than max_steps = {max_steps}.")
    A = np.zeros((d, p)) if A0 is None else check_finite_array("A0", A0, ndim=2).copy()
    if A.shape != (d, p):
        raise InvalidParameterError(f"A0 must have shape ({d}, {p}), got {A.shape}.")
    if n_draws is not None:
        m = check_positive_int("n_draws", n_draws)
        xi_fixed = rng.standard_normal((m, n, d))
        phi_fixed = features(a_t * X[None] + sq * xi_fixed).reshape(m * n, p)
        xi_fixed = xi_fixed.reshape(m * n, d)
    m1 = np.zeros_like(A)
    m2 = np.zeros_like(A)
    order = np.argsort(steps, kind="stable")
    out = [None] * len(steps)
    k = 0
    t0 = time.perf_counter()
    for idx in order:
        while k < steps[idx]:
            if n_draws is None:
                xi = rng.standard_normal((n, d))
                phi = features(a_t * X + sq * xi)
            else:
                xi, phi = xi_fixed, phi_fixed
            R = (sq / math.sqrt(p)) * (phi @ A.T) + xi
            grad = (2 * sq / (xi.shape[0] * d * math.sqrt(p))) * (R.T @ phi)
            k += 1
            if optimizer == "gd":
                A -= lr * grad
            else:
                m1 = betas[0] * m1 + (1 - betas[0]) * grad
                m2 = betas[1] * m2 + (1 - betas[1]) * grad * grad
                mhat = m1 / (1 - betas[0] ** k)
                vhat = m2 / (1 - betas[1] ** k)
                A -= lr * mhat / (np.sqrt(vhat) + eps)
            if callback is not None:
                callback(k)
        out[idx] = A.copy()
    elapsed = time.perf_counter() - t0
    return steps * lr / (d * d), out, elapsed / max(int(steps.max(initial=0)), 1)
