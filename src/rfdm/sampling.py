"""Sampling: the backward process with a score source (docs/theory.md §6; [B24], [B25]).

The backward process in tau' = T - t is dx = [x + 2 S(x, t)] dtau' + sqrt(2) dB, started at t = T from
N(0, I_d) and run down to t = t_min > 0.  :func:`sample` integrates it on a decreasing grid of diffusion
times T = t_0 > t_1 > ... > t_K = t_min with one of two schemes; over a step h = t_k - t_{k+1} the score is
frozen at S(x, t_k):

* ``"euler"`` (Euler–Maruyama):  x' = x + h [x + 2 S] + sqrt(2 h) xi;
* ``"exponential"`` (exact for the linear part; the default):
  x' = e^h x + 2 (e^h - 1) S + sqrt(e^{2h} - 1) xi,
  the exact solution of dx = [x + 2 S] dtau' + sqrt(2) dB over h when S is constant.

Grids (:func:`time_grid`): ``"uniform"`` (equal steps in t) or ``"geometric"`` (equal steps in log t,
fine near t_min where the score varies fastest; the default).

Final denoising step (on by default, ``denoise=False`` turns it off): the samples returned are Tweedie's
posterior mean at the last grid time, x^_0 = E[x_0 | x_{t_min}] = e^{t_min} (x + Delta_{t_min} S(x, t_min))
(:func:`tweedie_denoise`; for x_t = e^{-t} x_0 + sqrt(Delta_t) xi, Tweedie's formula reads
E[e^{-t} x_0 | x_t] = x_t + Delta_t grad log p_t(x_t)), as the conventional samplers do (score_sde's
``noise_removal``, EDM's last step to sigma = 0).  Without it they are x at t = t_min, draws of P_{t_min}; both
are kept (``SamplingResult.noisy_samples``).

Seeding.  Sample i draws everything (its start x_T ~ N(0, I_d), then the d normals of each step, in order)
from its own stream ``SeedSequence(entropy=seed, spawn_key=base + (i,))``, so a sample does not depend on the
batch size, on the chunking of the noise or on which other samples are drawn with it.

Memory.  Samples are processed in batches; the noise of a batch is drawn for a chunk of steps at a time.
Batch and chunk are sized so that the sampler's own arrays stay within ``memory_budget`` bytes (plus what
the score source needs per sample, which it declares in ``work_per_sample``).

Score sources implement the small protocol :class:`ScoreSource`: an attribute ``d`` and a method
``score(x, t) -> (batch, d)``; optionally ``flops_per_sample(t)`` (for throughput figures),
``work_per_sample`` (float64 scratch per sample) and ``describe()``.  Provided here:

* :class:`ExactScore` — the exact score of a Gaussian or two-cluster mixture law (``law.score``);
* :class:`EmpiricalScore` — the score of the empirical law of a training set (:class:`rfdm.data.EmpiricalData`);
* :class:`RandomFeaturesScore` — random-features scores S_k(x) = A_k sigma(W x/sqrt(d))/sqrt(p) trained in
  closed form (:class:`rfdm.dynamics.GradientFlow`, stopped at training time tau) at a grid of diffusion
  times t_1 < ... < t_K, one W shared by all of them; see the class for the scheme used between grid times;
* :class:`CallableScore` — any object with a ``score(x, t)`` method (or a function), e.g. the
  time-integrated model of :mod:`rfdm.time_integrated`.

Devices.  ``sample(..., device="cuda")`` (or "torch-cpu", :mod:`rfdm.backend`) keeps the states x on the
device and applies the steps there; the noise is still drawn on the host from the per-sample streams and
moved to the device one chunk at a time, so a seed gives the same samples on every device up to rounding.
A source with a ``to_backend(backend)`` method runs on the device (:class:`RandomFeaturesScore`: both
products and the activation); the others (exact, empirical, callable) are evaluated on the host, x going
back and forth at every step.  Samples come back as NumPy arrays.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Protocol, runtime_checkable

import numpy as np

from .activations import evaluate
from .backend import NUMPY, resolve_device
from .data import EmpiricalData
from .diffusion import DEFAULT_GRID, DEFAULT_INTEGRATOR, INTEGRATORS, TIME_GRIDS, delta_t
from .errors import (InvalidParameterError, NumericalError, check_finite_array, check_positive_float,
                     check_positive_int)

#: default working memory of the sampler's own arrays, in bytes
DEFAULT_MEMORY_BUDGET = 64 * 2 ** 20
#: largest batch of samples advanced together
MAX_BATCH = 4096
#: largest number of steps whose noise is drawn at once
MAX_CHUNK = 256
GRIDS = TIME_GRIDS  # declared once, with the defaults, by the OU process (rfdm.diffusion)
#: spawn-key tag of the sampler's per-sample streams (keeps them apart from other uses of a seed)
SAMPLER_STREAM = 0x5A3


# -- score sources -------------------------------------------------------------------------------------

@runtime_checkable
class ScoreSource(Protocol):
    """What the sampler needs: the dimension ``d`` and ``score(x, t)`` for x of shape (batch, d)."""

    d: int

    def score(self, x: np.ndarray, t: float) -> np.ndarray:  # pragma: no cover - protocol
        ...


class ExactScore:
    """Exact score of a data law with a ``score(x, t)`` method (:class:`rfdm.data.GaussianData`,
    :class:`rfdm.data.MixtureData`)."""

    def __init__(self, law):
        if not hasattr(law, "score") or not hasattr(law, "d"):
            raise InvalidParameterError("the exact score needs a Gaussian or mixture data law.")
        self.law = law
        self.d = int(law.d)
        self.work_per_sample = 2 * self.d

    def score(self, x, t):
        return self.law.score(x, t)

    def flops_per_sample(self, t=None) -> float:
        """Gaussian: two d x d products with the rotation (4 d^2), or 2 d without rotation; mixture: a dot
        product and an update (about 6 d)."""
        rot = getattr(self.law, "_rotation", None)
        if hasattr(self.law, "spectrum"):
            return 4.0 * self.d ** 2 if rot is not None else 2.0 * self.d
        return 6.0 * self.d

    def describe(self) -> dict:
        return {"score": "exact", **self.law.describe()}


class EmpiricalScore:
    """Score of the empirical law of a training set (docs/theory.md §1), computed by
    :meth:`rfdm.data.EmpiricalData.score` (streaming log-sum-exp, bounded memory)."""

    def __init__(self, points, batch_size: int = 1024):
        self.data = points if isinstance(points, EmpiricalData) else EmpiricalData(points, batch_size=batch_size)
        self.d = self.data.d
        self.n = self.data.n
        self.work_per_sample = 3 * self.d + 2 * min(self.n, self.data.batch_size)

    def score(self, x, t):
        return self.data.score(x, t)

    def flops_per_sample(self, t=None) -> float:
        """Two (batch x d) x (d x n)-type products: 4 n d."""
        return 4.0 * self.n * self.d

    def describe(self) -> dict:
        return {"score": "empirical", "n": self.n, "d": self.d}


class CallableScore:
    """Adapter for any model with a ``score(x, t)`` method, or a plain function ``f(x, t)``."""

    def __init__(self, model, d: int, name: str = "callable", flops_per_sample: float | None = None):
        self.model = model
        self._fn = model.score if hasattr(model, "score") else model
        if not callable(self._fn):
            raise InvalidParameterError("a score source needs a score(x, t) method or must be callable.")
        self.d = check_positive_int("d", d)
        self.name = name
        self._flops = flops_per_sample
        self.work_per_sample = 4 * self.d

    def score(self, x, t):
        return np.asarray(self._fn(x, t), dtype=np.float64)

    def flops_per_sample(self, t=None) -> float | None:
        return self._flops

    def describe(self) -> dict:
        return {"score": self.name, "d": self.d}


SCHEMES = ("interpolate", "nearest")


class RandomFeaturesScore:
    """Random-features scores trained in closed form at a grid of diffusion times, used between them.

    At each grid time t_k (ascending) the score S_k(x) = A_k sigma(W x/sqrt(d))/sqrt(p) has the weights
    A_k = A(tau) of the closed-form gradient flow from A(0) = 0 on the exact noise-averaged statistics of the
    training set at t_k (docs/theory.md §3), every k sharing one W and one training time tau.

    Between grid times (documented scheme):

    * ``"interpolate"`` (default): linear interpolation in log t of the *noise predictions*
      sqrt(Delta_t) S, i.e. with w = (log t - log t_k)/(log t_{k+1} - log t_k),
      S(x, t) = [(1 - w) sqrt(Delta_{t_k}) S_k(x) + w sqrt(Delta_{t_{k+1}}) S_{k+1}(x)] / sqrt(Delta_t).
      It is exact at the grid times and keeps the 1/sqrt(Delta_t) growth of the score at small t.  Because
      W is shared, it is one network with weights (1 - w) c_k A_k + w c_{k+1} A_{k+1}: one evaluation.
    * ``"nearest"``: S(x, t) = S_k(x) for the grid time nearest to t in log t.

    Outside [t_1, t_K] the nearest end is used (with the 1/sqrt(Delta_t) rescaling for "interpolate").
    Cost of one evaluation: two matrix products, 4 p d flops per sample, plus p activations.
    """

    def __init__(self, features, times, weights, tau: float = math.inf, scheme: str = "interpolate",
                 info: dict | None = None):
        from .features import RandomFeatures

        if not isinstance(features, RandomFeatures):
            raise InvalidParameterError("features must be rfdm.RandomFeatures.")
        if scheme not in SCHEMES:
            raise InvalidParameterError(f"scheme must be one of {', '.join(SCHEMES)}, got {scheme!r}.")
        times = check_finite_array("times", np.atleast_1d(times), ndim=1)
        if np.any(times <= 0) or np.any(np.diff(times) <= 0):
            raise InvalidParameterError("the training times must be > 0 and strictly increasing.")
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (times.size, features.d, features.p):
            raise InvalidParameterError(f"weights must have shape ({times.size}, {features.d}, {features.p}), "
                                        f"got {weights.shape}.")
        self.features = features
        self.times = times
        self.tau = float(tau)
        self.scheme = scheme
        self.d, self.p = features.d, features.p
        self.info = dict(info or {})
        # pre-scaled factors: h = x Wt, S = sigma(h) At_k with Wt = W^T/sqrt(d), At_k = A_k^T/sqrt(p)
        self._Wt = np.ascontiguousarray(features.W.T) / math.sqrt(self.d)
        self._At = np.ascontiguousarray(np.transpose(weights, (0, 2, 1))) / math.sqrt(self.p)
        self._sqd = np.sqrt(delta_t(times))
        self._logt = np.log(times)
        self.work_per_sample = 2 * self.p + 2 * self.d
        self._bk = NUMPY  # the weights are NumPy arrays until to_backend
        self._cache = (None, None)
        self._buffer = None

    def to_backend(self, backend) -> "RandomFeaturesScore":
        """This score with its weights on ``backend`` (a device name or :class:`rfdm.backend.Backend`): its
        ``score(x, t)`` then takes and returns arrays of that backend."""
        bk = resolve_device(backend)
        if bk is self._bk:
            return self
        new = copy.copy(self)
        new._bk, new._Wt, new._At = bk, bk.asarray(self._Wt), bk.asarray(self._At)
        new._cache, new._buffer = (None, None), None
        return new

    @property
    def weights(self) -> np.ndarray:
        """A_k for every grid time, shape (K, d, p)."""
        return np.transpose(self._bk.to_numpy(self._At), (0, 2, 1)) * math.sqrt(self.p)

    def readout(self, t: float) -> np.ndarray:
        """The effective A(t)^T/sqrt(p), shape (p, d), used at diffusion time t (the scheme above)."""
        return np.array(self._bk.to_numpy(self._readout(t)))

    def _readout(self, t: float) -> np.ndarray:
        """As :meth:`readout`, into buffers reused from call to call (valid until the next new t), without
        allocating (allocating p x d arrays at every step costs more than the arithmetic)."""
        t = float(t)
        if self._cache[0] == t:
            return self._cache[1]
        lt, K = math.log(t), self.times.size
        if self.scheme == "nearest" or K == 1:
            k = int(np.argmin(np.abs(self._logt - lt)))
            out = self._At[k]
        else:
            j = int(np.clip(np.searchsorted(self._logt, lt) - 1, 0, K - 2))
            w = float(np.clip((lt - self._logt[j]) / (self._logt[j + 1] - self._logt[j]), 0.0, 1.0))
            sq = math.sqrt(float(delta_t(t)))
            if self._buffer is None:
                self._buffer = self._bk.empty((2, self.p, self.d))
            out, tmp = self._buffer
            xp = self._bk.xp
            xp.multiply(self._At[j], float((1 - w) * self._sqd[j] / sq), out=out)
            xp.multiply(self._At[j + 1], float(w * self._sqd[j + 1] / sq), out=tmp)
            out += tmp
        self._cache = (t, out)
        return out

    def score(self, x, t):
        """S(x, t) for x of shape (batch, d), on the backend of this score (NumPy unless :meth:`to_backend`)."""
        h = x @ self._Wt
        h = evaluate(self.features.activation, h, inplace=True)
        return h @ self._readout(t)

    def flops_per_sample(self, t=None) -> float:
        """Two products, x W^T and sigma(.) A^T: 4 p d (activations not counted)."""
        return 4.0 * self.p * self.d

    def describe(self) -> dict:
        return {"score": "rf", "d": self.d, "p": self.p, "tau": self.tau, "scheme": self.scheme,
                "activation": self.features.activation.name, "times": self.times.tolist(), **self.info}

    @classmethod
    def train(cls, features, X, times, tau=math.inf, scheme: str = "interpolate", rtol: float = 1e-8,
              progress: Callable | None = None) -> "RandomFeaturesScore":
        """Train at every time of ``times`` in closed form and stop at one training time ``tau``."""
        return train_random_features(features, X, times, [tau], scheme=scheme, rtol=rtol, progress=progress)[0]


def train_random_features(features, X, times, taus, scheme: str = "interpolate", rtol: float = 1e-8,
                          progress: Callable | None = None, device=None) -> list:
    """One :class:`RandomFeaturesScore` per training time in ``taus`` (tau = inf: the end of training).

    For each diffusion time t_k: exact noise-averaged U, V of the training set X (rfdm.features,
    truncation ``rtol``), one eigendecomposition (rfdm.dynamics.GradientFlow), then A_k(tau) for every tau.
    ``progress(k, K)`` is called after each time.  ``device``: where U is assembled and factorised; the
    scores returned hold NumPy weights (``sample(..., device=...)`` moves them).
    """
    from .dynamics import GradientFlow, as_tau_array
    from .features import noise_averaged_statistics

    times = np.sort(check_finite_array("times", np.atleast_1d(times), ndim=1))
    if np.any(times <= 0):
        raise InvalidParameterError("the training times must be > 0.")
    taus = as_tau_array(taus)
    X = features.check_data(X)
    W = np.empty((taus.size, times.size, features.d, features.p))
    orders = []
    for k, t in enumerate(times):
        stats = noise_averaged_statistics(features, X, float(t), rtol=rtol, device=device)
        orders.append(stats.info.get("truncation_order"))
        flow = GradientFlow(stats, overwrite=True, device=device)
        for j, tau in enumerate(taus):
            W[j, k] = flow.weights(float(tau))
        del flow, stats
        if progress is not None:
            progress(k + 1, times.size)
    info = {"n_train": int(X.shape[0]), "rtol": rtol, "truncation_orders": orders}
    return [RandomFeaturesScore(features, times, W[j], tau=float(tau), scheme=scheme, info=info)
            for j, tau in enumerate(taus)]


# -- time grids ----------------------------------------------------------------------------------------

def check_times(T, t_min, steps):
    """Validate (T, t_min, steps): 0 < t_min < T finite, steps a positive integer."""
    t_min = check_positive_float("t_min", t_min)
    T = check_positive_float("T", T)
    if isinstance(steps, (float, np.floating)) and float(steps).is_integer():
        steps = int(steps)
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps <= 0:
        raise InvalidParameterError(f"steps must be a positive integer, got {steps!r}.")
    if T <= t_min:
        raise InvalidParameterError(f"the start time T = {T:g} must be larger than t_min = {t_min:g}.")
    return float(T), float(t_min), int(steps)


def time_grid(T: float, t_min: float, steps: int, kind: str = DEFAULT_GRID, include=()) -> np.ndarray:
    """Decreasing diffusion times T = t_0 > ... > t_K = t_min (K = ``steps``): equal steps in t
    ("uniform") or in log t ("geometric").  Times in ``include`` (inside (t_min, T)) are merged in, so the
    grid then has K + len(include) steps."""
    T, t_min, steps = check_times(T, t_min, steps)
    if kind == "uniform":
        g = np.linspace(T, t_min, steps + 1)
    elif kind == "geometric":
        g = np.geomspace(T, t_min, steps + 1)
    elif kind == "log-snr":
        v = np.linspace(math.log(math.expm1(2 * T)), math.log(math.expm1(2 * t_min)), steps + 1)
        g = 0.5 * np.log1p(np.exp(v))
    else:
        raise InvalidParameterError(f"the time grid must be one of {', '.join(GRIDS)}, got {kind!r}.")
    g[0], g[-1] = T, t_min
    extra = np.atleast_1d(np.asarray(include, dtype=np.float64))
    if extra.size:
        if not np.all(np.isfinite(extra)) or np.any(extra <= t_min) or np.any(extra >= T):
            raise InvalidParameterError(f"times to include must lie strictly between t_min = {t_min:g} and T = {T:g}.")
        g = np.unique(np.concatenate([g, extra]))[::-1]
    return g


def _check_grid(times) -> np.ndarray:
    g = check_finite_array("times", np.atleast_1d(times), ndim=1)
    if g.size < 2 or np.any(g <= 0) or np.any(np.diff(g) >= 0):
        raise InvalidParameterError("the time grid must hold at least two strictly decreasing times > 0.")
    return g


# -- per-sample random streams -------------------------------------------------------------------------

def _seed_sequence(seed) -> np.random.SeedSequence:
    if isinstance(seed, np.random.SeedSequence):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise InvalidParameterError(f"seed must be a non-negative integer, got {seed!r}.")
    return np.random.SeedSequence(int(seed))


def sample_stream(seed, index: int) -> np.random.Generator:
    """The generator of sample ``index``: SeedSequence(entropy, spawn_key=key + (SAMPLER_STREAM, index))."""
    ss = _seed_sequence(seed)
    child = np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + (SAMPLER_STREAM, int(index)),
                                   pool_size=ss.pool_size)
    return np.random.Generator(np.random.PCG64(child))


# -- the sampler ---------------------------------------------------------------------------------------

@dataclass
class SamplingResult:
    """Output of :func:`sample`: ``samples`` (n, d), Tweedie's denoised x^_0 from the last grid time (or x at the
    last grid time with ``denoise=False``), ``noisy_samples`` x at the last grid time; ``recorded`` (R, n, d), the
    states at the grid times ``record_times`` (if asked); ``times`` the grid; ``info`` counts and timing."""

    samples: np.ndarray
    times: np.ndarray
    recorded: np.ndarray | None = None
    record_times: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    #: x at the last grid time before the final denoising step (the same array as ``samples`` without it)
    noisy_samples: np.ndarray | None = None


def _batch_plan(n: int, d: int, steps: int, work: int, budget: int, batch_size: int | None):
    """(batch, chunk): the sampler's arrays per sample are x, the score and a step buffer (3 d), the
    score's scratch (``work``) and a chunk of noise (chunk x d), all float64, within ``budget`` bytes."""
    words = max(1, budget // 8)
    if batch_size is not None:
        batch = check_positive_int("batch_size", batch_size)
    else:
        per = 3 * d + work + min(steps, 16) * d
        batch = int(max(1, min(n, MAX_BATCH, words // per)))
    chunk = int(max(1, min(steps, MAX_CHUNK, (words // batch - 3 * d - work) // d)))
    return min(batch, n), chunk


class _HostScore:
    """A score source without a device version, used by a device sampler: x goes to the host and back."""

    def __init__(self, source, backend):
        self.source, self.backend = source, backend

    def score(self, x, t):
        return self.backend.asarray(self.source.score(self.backend.to_numpy(x), t))


def _score_on(score, backend):
    """The score source to call with arrays of ``backend``."""
    if backend.is_numpy:
        return score
    move = getattr(score, "to_backend", None)
    return move(backend) if callable(move) else _HostScore(score, backend)


def tweedie_denoise(score, x, t: float) -> np.ndarray:
    """Tweedie's posterior mean E[x_0 | x_t = x] = e^{t} (x + Delta_t S(x, t)) for the OU convention
    x_t = e^{-t} x_0 + sqrt(Delta_t) xi, Delta_t = 1 - e^{-2t} (docs/theory.md §1; Tweedie/Robbins:
    E[e^{-t} x_0 | x_t] = x_t + Delta_t grad log p_t(x_t)).  ``score`` is a score source (``score(x, t)``) or a
    function f(x, t); x has shape (batch, d)."""
    from .diffusion import check_time

    t = check_time(t)
    x = check_finite_array("x", x, ndim=2)
    fn = score.score if hasattr(score, "score") else score
    if not callable(fn):
        raise InvalidParameterError("the score must have a score(x, t) method or be callable.")
    s = np.asarray(fn(x, t), dtype=np.float64)
    if s.shape != x.shape:
        raise InvalidParameterError(f"the score returned shape {s.shape} for x of shape {x.shape}.")
    return math.exp(t) * (x + float(delta_t(t)) * s)


def sample(score: ScoreSource, n_samples: int, *, T: float = 8.0, t_min: float = 0.01, steps: int = 200,
           grid: str = DEFAULT_GRID, integrator: str = DEFAULT_INTEGRATOR, times=None, seed=0, x_init=None,
           record_times=(), first_index: int = 0, batch_size: int | None = None,
           memory_budget: int = DEFAULT_MEMORY_BUDGET, progress: Callable | None = None,
           device=None, denoise: bool = True) -> SamplingResult:
    """Integrate the backward process for ``n_samples`` samples.

    The grid is ``times`` (strictly decreasing) if given, else :func:`time_grid` (T, t_min, steps, grid)
    with ``record_times`` merged in.  With ``x_init`` (shape (n_samples, d)) the process starts from those
    states at times[0] instead of N(0, I_d) (e.g. clones continuing from a branching time).  Sample i uses
    the stream :func:`sample_stream` (seed, first_index + i).  ``progress(done, total)`` is called with the
    number of sample-steps done.  ``device``: where the states and the score evaluations live (see the
    module docstring; the noise is drawn on the host).  ``denoise`` (default True): end with the final
    denoising step x^_0 = e^{t_K} (x + Delta_{t_K} S(x, t_K)) at the last grid time t_K (:func:`tweedie_denoise`);
    the states before it are ``noisy_samples``.  Returns a :class:`SamplingResult` of NumPy arrays.
    """
    if not isinstance(denoise, (bool, np.bool_)):
        raise InvalidParameterError(f"denoise must be True or False, got {denoise!r}.")
    n = check_positive_int("n_samples", n_samples)
    if integrator not in INTEGRATORS:
        raise InvalidParameterError(f"the integrator must be one of {', '.join(INTEGRATORS)}, got {integrator!r}.")
    if not hasattr(score, "score") or not hasattr(score, "d"):
        raise InvalidParameterError("the score source needs a dimension d and a score(x, t) method.")
    d = int(score.d)
    rec = np.atleast_1d(np.asarray(record_times, dtype=np.float64))
    if times is None:
        g = time_grid(T, t_min, steps, grid, include=rec[(rec != T) & (rec != t_min)] if rec.size else ())
    else:
        g = _check_grid(times)
    K = g.size - 1
    rec_idx = []
    for r in rec:
        hit = np.nonzero(np.isclose(g, r, rtol=1e-12, atol=0))[0]
        if hit.size == 0:
            raise InvalidParameterError(f"record time {r:g} is not on the time grid.")
        rec_idx.append(int(hit[0]))
    if x_init is not None:
        x_init = check_finite_array("x_init", x_init, ndim=2)
        if x_init.shape != (n, d):
            raise InvalidParameterError(f"x_init must have shape ({n}, {d}), got {x_init.shape}.")
    first_index = int(first_index)
    if first_index < 0:
        raise InvalidParameterError("first_index must be >= 0.")
    budget = check_positive_int("memory_budget", memory_budget)
    ss = _seed_sequence(seed)
    bk = resolve_device(device)
    source = _score_on(score, bk)
    batch, chunk = _batch_plan(n, d, K, int(getattr(score, "work_per_sample", 4 * d)), budget, batch_size)

    h = g[:-1] - g[1:]
    if integrator == "exponential":
        c_x = np.exp(h)
        c_s = 2.0 * np.expm1(h)
        c_n = np.sqrt(np.expm1(2.0 * h))
    else:
        c_x = 1.0 + h
        c_s = 2.0 * h
        c_n = np.sqrt(2.0 * h)

    out = np.empty((n, d))
    den = np.empty((n, d)) if denoise else out
    recorded = np.empty((len(rec_idx), n, d)) if rec_idx else None
    where = {k: j for j, k in enumerate(rec_idx)}
    total, done = n * K, 0
    t0 = time.perf_counter()
    noise = np.empty((batch, chunk, d))
    for b0 in range(0, n, batch):
        b1 = min(n, b0 + batch)
        B = b1 - b0
        gens = [sample_stream(ss, first_index + i) for i in range(b0, b1)]
        if x_init is None:
            x = np.empty((B, d))
            for j, gen in enumerate(gens):
                gen.standard_normal(out=x[j])
        else:
            x = x_init[b0:b1].copy()
        x = bk.asarray(x)  # a fresh host array: the device copy (or, on the CPU, the same memory) is ours
        if 0 in where:
            recorded[where[0], b0:b1] = bk.to_numpy(x)
        for c0 in range(0, K, chunk):
            c1 = min(K, c0 + chunk)
            buf = noise[:B, :c1 - c0]
            for j, gen in enumerate(gens):
                gen.standard_normal(out=buf[j])
            buf = bk.asarray(buf)  # one transfer per chunk of steps
            for k in range(c0, c1):
                s = source.score(x, float(g[k]))
                x *= c_x[k]
                x += c_s[k] * s
                x += c_n[k] * buf[:, k - c0]
                if k + 1 in where:
                    recorded[where[k + 1], b0:b1] = bk.to_numpy(x)
            done += B * (c1 - c0)
            if progress is not None:
                progress(done, total)
        out[b0:b1] = bk.to_numpy(x)
        if denoise:
            s = source.score(x, float(g[-1]))
            x += float(delta_t(float(g[-1]))) * s
            x *= math.exp(float(g[-1]))
            den[b0:b1] = bk.to_numpy(x)
    seconds = time.perf_counter() - t0
    if not (np.all(np.isfinite(out)) and np.all(np.isfinite(den))):
        raise NumericalError("the backward process diverged (non-finite samples): the score does not hold the "
                             "process back; use more steps, a smaller T or a better-trained score.")
    flops = getattr(score, "flops_per_sample", None)
    fl = flops() if callable(flops) else None
    info = {"steps": K, "integrator": integrator, "batch_size": batch, "noise_chunk": chunk, "device": bk.name,
            "seconds": seconds, "score_evaluations": n * (K + int(denoise)),
            "score_flops": None if fl is None else float(fl) * n * (K + int(denoise)), "denoised": bool(denoise)}
    return SamplingResult(samples=den, times=g, recorded=recorded,
                          record_times=g[rec_idx] if rec_idx else None, info=info, noisy_samples=out)
